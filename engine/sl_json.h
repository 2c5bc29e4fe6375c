/* sl_json.h - strict JSON checking and top-level member scanning in C (yajl inside).
 *
 * This is the only module, with sl_luajson.c, that includes yajl. It never builds a
 * tree: sl_json_check validates a document, sl_json_members validates it and reports
 * the members of its top-level object with their decoded values or exact text spans.
 *
 * "Strict" means: RFC 8259 grammar only (no comments, no trailing garbage, one value),
 * well-formed UTF-8 in strings, no duplicate key within one object, and nesting no
 * deeper than SL_JSON_MAX_DEPTH arrays/objects. A number literal without fraction or
 * exponent that fits in int64 is an INTEGER; every other number is a FLOAT (strtod).
 * A string may contain U+0000 (escaped as \u0000); decoded strings are passed with
 * their length. Error messages look like "malformed JSON at byte 12: ..." or
 * "duplicate key 'a'" or "nesting deeper than 256 levels".
 *
 * Where yajl is laxer than RFC 8259, this module closes the gap: yajl takes \v and \f
 * as whitespace, checks only the byte structure of UTF-8 (it lets overlongs, encoded
 * surrogates and code points above U+10FFFF through) and decodes a lone surrogate
 * escape to "?" (high) or to invalid UTF-8 (low); all of these are refused here. A
 * number too large for a double (1e400) is refused too ("number out of range"), so a
 * checked document always decodes to finite numbers. Empty or all-whitespace input
 * gives "malformed JSON: empty input". In "at byte N", N is the 1-based position of
 * the byte at which the error was detected (the end of the text for a premature end).
 * A duplicate key is reported when its second occurrence is read, so the first
 * error in document order is the one reported, whatever kind it is: sl_lj_decode
 * (with SL_LJ_STRICT) gives the same message for every bad document
 * (tests/test_luajson.c compares them over a table of bad inputs).
 */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"

#define SL_JSON_MAX_DEPTH 256

enum sl_json_kind {
	SL_JSON_NULL,
	SL_JSON_BOOLEAN,
	SL_JSON_INTEGER,
	SL_JSON_FLOAT,
	SL_JSON_STRING,
	SL_JSON_ARRAY,
	SL_JSON_OBJECT
};

/* "null", "boolean", "integer", "number", "string", "array", "object". */
const char *sl_json_kind_name(enum sl_json_kind k);

/* Checks that text[0..len) is one strict JSON value. On success stores its kind in
 * *kind (if not NULL) and returns 0; otherwise returns SL_EINVAL with a message in d
 * (SL_ENOMEM if memory ran out). */
int sl_json_check(const char *text, size_t len, enum sl_json_kind *kind, struct sl_diag *d);

/* One member of a top-level object, as reported to an sl_json_member_fn. Every
 * pointer is borrowed and valid only during the callback. */
struct sl_json_member {
	const char *key; /* decoded key and its length */
	size_t keylen;
	enum sl_json_kind kind;
	/* STRING: the decoded string. INTEGER, FLOAT, NULL, BOOLEAN: the literal's text.
	 * ARRAY, OBJECT: the exact bytes of the value in the input, from its opening
	 * bracket to its closing one. */
	const char *text;
	size_t len;
	int64_t integer; /* INTEGER: the value; BOOLEAN: 0 or 1 */
	double number;   /* INTEGER and FLOAT: the value as a double */
};

/* Called once per member, in document order, after the member's value was read.
 * Return 0 to go on; a negative code stops the scan and is returned by
 * sl_json_members (the callback fills d itself). */
typedef int (*sl_json_member_fn)(void *ud, const struct sl_json_member *m, struct sl_diag *d);

/* Checks text[0..len) as sl_json_check does and requires it to be an object; calls
 * fn for each of its members. Members are reported as they are read, so fn may have
 * been called for earlier members when a later part of the document turns out to be
 * malformed: callers must treat their results as void unless 0 is returned.
 * A document that is not an object gives SL_EINVAL "must be a JSON object, got <kind>". */
int sl_json_members(const char *text, size_t len, sl_json_member_fn fn, void *ud,
                    struct sl_diag *d);

/* --- Internal: shared by sl_json.c and sl_luajson.c, the two users of yajl. ---
 *
 * Each drives a yajl handle with its own callbacks; these helpers make both accept
 * exactly the same documents and word their errors alike. yajl's type is only
 * declared here, so including this header does not pull in yajl.
 *
 * A callback that finds an error calls sl_json_fail (directly or through a helper)
 * and returns 0, which makes yajl cancel the parse; sl_json_parse then returns the
 * recorded code. The helpers below that return an int for a callback follow yajl's
 * convention: nonzero means go on. */
struct yajl_handle_t;

struct sl_json_parser {
	struct yajl_handle_t *h; /* the caller's handle: yajl_alloc(&callbacks, NULL, ctx) */
	const char *text;        /* the document (borrowed) and its length */
	size_t len;
	struct sl_diag *d; /* may be NULL */
	int err;           /* the code recorded by sl_json_fail, else 0 */
	int finishing;     /* 1 while yajl_complete_parse runs */
};

/* Parses p->text[0..p->len) with p->h as one complete strict document. Returns 0; the
 * code a callback recorded with sl_json_fail; or SL_EINVAL for malformed input (d
 * filled). The handle is not freed: it is the caller's. */
int sl_json_parse(struct sl_json_parser *p);

/* In a callback: the offset in text just past the token being reported (yajl counts
 * the whitespace before a token as part of it, so a bracket is at offset - 1). */
size_t sl_json_offset(const struct sl_json_parser *p);

/* Records code and message (first error wins) for the parse to return; returns 0. */
int sl_json_fail(struct sl_json_parser *p, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Converts the literal of a yajl_number callback: returns SL_JSON_INTEGER with *i set,
 * SL_JSON_FLOAT with *f set, or -1 after sl_json_fail (out of range, out of memory). */
int sl_json_number(struct sl_json_parser *p, const char *lit, size_t n, int64_t *i, double *f);

/* Checks a string or key as decoded by yajl (s[0..n) as the callback got it): refuses
 * lone surrogate escapes and ill-formed UTF-8. Returns 1 if fine, else 0 (failed). */
int sl_json_string(struct sl_json_parser *p, const char *s, size_t n);

/* Fails with "duplicate key '<key>'" (long keys shortened); returns 0. */
int sl_json_dupkey(struct sl_json_parser *p, const char *key, size_t n);

#endif
