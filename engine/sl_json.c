/* sl_json.c - strict JSON checking and top-level member scanning on yajl's callbacks. */
#include "sl_json.h"
#include "sl_buf.h"
#include "sl_hash.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

const char *sl_json_kind_name(enum sl_json_kind k)
{
	static const char *const names[] = {
		[SL_JSON_NULL] = "null",       [SL_JSON_BOOLEAN] = "boolean",
		[SL_JSON_INTEGER] = "integer", [SL_JSON_FLOAT] = "number",
		[SL_JSON_STRING] = "string",   [SL_JSON_ARRAY] = "array",
		[SL_JSON_OBJECT] = "object",
	};

	if ((unsigned)k >= sizeof(names) / sizeof(names[0]))
		return "unknown";
	return names[k];
}

/* ---- The parse, shared with sl_luajson.c ---- */

size_t sl_json_offset(const struct sl_json_parser *p)
{
	/* yajl_complete_parse feeds yajl a one-space chunk of its own and counts bytes in
	 * that chunk: whatever it finds belongs at the end of our text. */
	if (p->finishing)
		return p->len;
	return yajl_get_bytes_consumed(p->h);
}

int sl_json_fail(struct sl_json_parser *p, int code, const char *fmt, ...)
{
	char msg[SL_DIAG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!p->err)
		p->err = code;
	sl_diag_set(p->d, code, "%s", msg);
	return 0;
}

/* Returns 1 if s[0..n) is nothing but JSON whitespace (or empty). */
static int blank(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
		s++, n--;
	return n == 0;
}

/* Returns the offset of the first \v or \f in s[0..n), or n. yajl skips both as
 * whitespace; JSON allows them nowhere (in a string they would be raw control
 * characters, which yajl refuses anyway), so any occurrence is an error. */
static size_t bad_space(const char *s, size_t n)
{
	const char *v = memchr(s, '\v', n);
	const char *f = memchr(s, '\f', v ? (size_t)(v - s) : n);

	if (f)
		return (size_t)(f - s);
	if (v)
		return (size_t)(v - s);
	return n;
}

/* Records yajl's error with its short message: "lexical error: invalid char in json
 * text.\n" becomes "malformed JSON at byte 2: invalid char in json text". */
static int malformed(struct sl_json_parser *p)
{
	size_t at = sl_json_offset(p), n;
	unsigned char *e;
	const char *msg, *colon;

	e = yajl_get_error(p->h, 0, (const unsigned char *)p->text, p->len);
	msg = e ? (const char *)e : "";
	colon = strstr(msg, ": ");
	if (colon)
		msg = colon + 2;
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
		n--;
	/* Other errors count the offending byte as read; a comment's '/' is not. */
	if (strstr(msg, "comment") && at < p->len)
		at++;
	sl_json_fail(p, SL_EINVAL, "malformed JSON at byte %zu%s%.*s", at, n ? ": " : "", (int)n,
	             msg);
	if (e)
		yajl_free_error(p->h, e);
	return SL_EINVAL;
}

int sl_json_parse(struct sl_json_parser *p)
{
	size_t stop;
	yajl_status st;

	p->err = 0;
	p->finishing = 0;
	if (blank(p->text, p->len)) {
		sl_json_fail(p, SL_EINVAL, "malformed JSON: empty input");
		return SL_EINVAL;
	}
	/* Parse up to the first \v or \f only, so an earlier error is still the one
	 * reported; yajl would take the character itself as whitespace. */
	stop = bad_space(p->text, p->len);
	st = yajl_parse(p->h, (const unsigned char *)p->text, stop);
	if (st == yajl_status_ok && stop < p->len) {
		sl_json_fail(p, SL_EINVAL, "malformed JSON at byte %zu: invalid char in json text",
		             stop + 1);
		return SL_EINVAL;
	}
	if (st == yajl_status_ok) {
		p->finishing = 1;
		st = yajl_complete_parse(p->h);
	}
	if (st == yajl_status_ok)
		return 0;
	if (st == yajl_status_client_canceled) {
		if (!p->err)
			sl_json_fail(p, SL_EINVAL, "malformed JSON: parse cancelled");
		return p->err;
	}
	return malformed(p);
}

int sl_json_number(struct sl_json_parser *p, const char *lit, size_t n, int64_t *i, double *f)
{
	char tmp[64], *buf = tmp;
	int kind = SL_JSON_FLOAT, neg = n && lit[0] == '-';
	size_t k = (size_t)neg;
	uint64_t u = 0;
	long long v;

	/* Fast path: digits only, at most 18 of them, cannot overflow int64. */
	for (; k < n && k - (size_t)neg < 18 && lit[k] >= '0' && lit[k] <= '9'; k++)
		u = u * 10 + (uint64_t)(lit[k] - '0');
	if (k == n && n > (size_t)neg) {
		*i = neg ? -(int64_t)u : (int64_t)u;
		return SL_JSON_INTEGER;
	}
	/* The literal is not NUL-terminated; the rare long one gets a heap copy. */
	if (n >= sizeof(tmp) && !(buf = malloc(n + 1))) {
		sl_json_fail(p, SL_ENOMEM, "out of memory");
		return -1;
	}
	memcpy(buf, lit, n);
	buf[n] = '\0';
	if (!strpbrk(buf, ".eE")) {
		errno = 0;
		v = strtoll(buf, NULL, 10);
		if (errno != ERANGE) {
			*i = (int64_t)v;
			kind = SL_JSON_INTEGER;
		}
	}
	if (kind == SL_JSON_FLOAT) {
		*f = strtod(buf, NULL);
		if (isinf(*f)) {
			sl_json_fail(p, SL_EINVAL,
			             "malformed JSON at byte %zu: number out of range",
			             sl_json_offset(p));
			kind = -1;
		}
	}
	if (buf != tmp)
		free(buf);
	return kind;
}

/* The value of four hex digits (yajl's lexer has checked that they are hex). */
static unsigned hex4(const char *s)
{
	unsigned v = 0;
	int k;

	for (k = 0; k < 4; k++)
		v = v * 16 + (unsigned)(s[k] <= '9' ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10);
	return v;
}

/* The offset of the opening quote of the string token whose closing quote is at
 * `close`: the nearest '"' before it not preceded by an odd number of backslashes. */
static size_t string_open(const char *t, size_t close)
{
	size_t i = close, n;

	while (i-- > 0) {
		if (t[i] != '"')
			continue;
		for (n = 0; n < i && t[i - 1 - n] == '\\'; n++)
			;
		if (n % 2 == 0)
			return i;
	}
	return 0;
}

/* yajl decodes a lone high surrogate escape to "?", a lone low one to invalid UTF-8,
 * and pairs a high surrogate with whatever \u escape follows it. So the raw token of
 * a string that had escapes is read again and every surrogate must be half of a
 * proper pair. Returns 1 if so, else 0 (failed). */
static int check_escapes(struct sl_json_parser *p)
{
	const char *t = p->text;
	size_t end = sl_json_offset(p), close, i;
	unsigned cp;

	if (end < 2 || end > p->len || t[end - 1] != '"')
		return 1; /* not at a closing quote: cannot happen with one chunk */
	close = end - 1;
	for (i = string_open(t, close) + 1; i < close; i++) {
		if (t[i] != '\\' || t[++i] != 'u')
			continue;
		cp = hex4(t + i + 1);
		if (cp >= 0xd800 && cp <= 0xdbff && i + 10 < close && t[i + 5] == '\\' &&
		    t[i + 6] == 'u' && (hex4(t + i + 7) & 0xfc00) == 0xdc00) {
			i += 10;
			continue;
		}
		if ((cp & 0xf800) == 0xd800)
			return sl_json_fail(
				p, SL_EINVAL,
				"malformed JSON at byte %zu: lone surrogate in \\u escape", i);
		i += 4;
	}
	return 1;
}

/* Returns 1 if s[0..n) is well-formed UTF-8. Most strings are ASCII: skip it eight
 * bytes at a time, then let sl_utf8_valid look at the rest. */
static int utf8_ok(const char *s, size_t n)
{
	size_t i;
	uint64_t w;

	for (i = 0; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		if (w & UINT64_C(0x8080808080808080))
			break;
	}
	return sl_utf8_valid(s + i, n - i);
}

int sl_json_string(struct sl_json_parser *p, const char *s, size_t n)
{
	uintptr_t a = (uintptr_t)s, t = (uintptr_t)p->text;

	/* yajl passes a string without escapes as a pointer into the text, one with
	 * escapes decoded into a buffer of its own. */
	if ((a < t || a >= t + p->len) && !check_escapes(p))
		return 0;
	if (!utf8_ok(s, n))
		return sl_json_fail(p, SL_EINVAL,
		                    "malformed JSON at byte %zu: invalid UTF-8 in string",
		                    sl_json_offset(p));
	return 1;
}

int sl_json_dupkey(struct sl_json_parser *p, const char *key, size_t n)
{
	size_t show = n;

	if (show > 64) {
		show = 64;
		while (show && ((unsigned char)key[show] & 0xc0) == 0x80)
			show--;
	}
	return sl_json_fail(p, SL_EINVAL, "duplicate key '%.*s%s'", (int)show, key,
	                    show < n ? "..." : "");
}

/* ---- Checking and member scanning ---- */

/* A key of an open object: its bytes are at `off` in scan.keys. */
struct key {
	size_t off;
	size_t len;
};

/* One open array or object. An object with more than LINEAR_KEYS keys gets a hash
 * set of its keys (open addressing; each slot holds a key's index in scan.recs
 * plus one, 0 when empty), so 100k keys cost n, not n squared. */
struct frame {
	size_t open;   /* offset of the opening bracket */
	size_t first;  /* OBJECT: index of its first key in scan.recs */
	size_t bytes;  /* OBJECT: length of scan.keys when it opened */
	size_t *slots; /* OBJECT: the hash set, or NULL */
	size_t nslots; /* a power of two, more than twice the keys in it */
	int object;
};

#define LINEAR_KEYS 8

struct scan {
	struct sl_json_parser p;
	sl_json_member_fn fn; /* NULL when only checking */
	void *ud;
	enum sl_json_kind kind; /* of the top-level value */
	int depth;
	/* The keys of all open objects, innermost last: an object's keys are dropped
	 * when it closes, so they always form a stack. */
	struct key *recs;
	size_t nrecs, caprecs;
	struct sl_buf keys;
	struct frame frames[SL_JSON_MAX_DEPTH + 1];
};

static int same_key(const struct scan *s, size_t a, size_t b)
{
	const struct key *x = &s->recs[a], *y = &s->recs[b];

	return x->len == y->len && !memcmp(s->keys.ptr + x->off, s->keys.ptr + y->off, x->len);
}

/* Puts key `idx` into the hash set of fr; returns the index of an equal key already
 * there, or (size_t)-1. */
static size_t set_put(const struct scan *s, struct frame *fr, size_t idx)
{
	const struct key *k = &s->recs[idx];
	size_t i = (size_t)sl_hash_bytes(SL_HASH_INIT, s->keys.ptr + k->off, k->len);

	for (i &= fr->nslots - 1; fr->slots[i]; i = (i + 1) & (fr->nslots - 1))
		if (same_key(s, fr->slots[i] - 1, idx))
			return fr->slots[i] - 1;
	fr->slots[i] = idx + 1;
	return (size_t)-1;
}

/* Makes the hash set of fr large enough for n keys, holding keys first..first+n-1.
 * Returns 1, or 0 (failed: out of memory). */
static int set_grow(struct scan *s, struct frame *fr, size_t n)
{
	size_t cap = fr->nslots ? fr->nslots : 32, i;

	if (fr->slots && n * 2 < fr->nslots)
		return 1;
	while (cap <= n * 2)
		cap *= 2;
	free(fr->slots);
	if (cap > SIZE_MAX / sizeof(*fr->slots) || !(fr->slots = calloc(cap, sizeof(*fr->slots)))) {
		fr->slots = NULL;
		fr->nslots = 0;
		return sl_json_fail(&s->p, SL_ENOMEM, "out of memory");
	}
	fr->nslots = cap;
	for (i = fr->first; i < fr->first + n - 1; i++)
		set_put(s, fr, i);
	return 1;
}

/* Checks the key just recorded (the last of scan.recs) against the earlier keys of
 * its object, at the moment it is read, as sl_lj_decode does: the first duplicate in
 * document order is the one reported, and an error later in the text is never
 * reached. Returns 1, or 0 (failed). */
static int new_key(struct scan *s)
{
	struct frame *fr = &s->frames[s->depth];
	size_t idx = s->nrecs - 1, n = s->nrecs - fr->first, i, dup;

	if (n <= LINEAR_KEYS && !fr->slots) {
		for (i = fr->first; i < idx; i++)
			if (same_key(s, i, idx))
				goto dup;
		return 1;
	}
	if (!set_grow(s, fr, n))
		return 0;
	if ((dup = set_put(s, fr, idx)) == (size_t)-1)
		return 1;
dup:
	return sl_json_dupkey(&s->p, s->keys.ptr + s->recs[idx].off, s->recs[idx].len);
}

/* Records the kind of the top-level value; sl_json_members wants an object. */
static int top_value(struct scan *s, enum sl_json_kind kind)
{
	s->kind = kind;
	if (s->fn && kind != SL_JSON_OBJECT)
		return sl_json_fail(&s->p, SL_EINVAL, "must be a JSON object, got %s",
		                    sl_json_kind_name(kind));
	return 1;
}

/* Reports a member of the top-level object: its key is the last one recorded. */
static int member(struct scan *s, enum sl_json_kind kind, const char *text, size_t len, int64_t i,
                  double f)
{
	const struct key *k = &s->recs[s->nrecs - 1];
	struct sl_json_member m = {
		.key = s->keys.ptr + k->off,
		.keylen = k->len,
		.kind = kind,
		.text = text,
		.len = len,
		.integer = i,
		.number = f,
	};
	int rc = s->fn(s->ud, &m, s->p.d);

	if (rc < 0) {
		s->p.err = rc;
		return 0;
	}
	return 1;
}

/* A complete value was read at the current depth. */
static int value(struct scan *s, enum sl_json_kind kind, const char *text, size_t len, int64_t i,
                 double f)
{
	if (s->depth == 0)
		return top_value(s, kind);
	if (s->depth == 1 && s->fn)
		return member(s, kind, text, len, i, f);
	return 1;
}

static int scan_null(void *ctx)
{
	return value(ctx, SL_JSON_NULL, "null", 4, 0, 0);
}

static int scan_boolean(void *ctx, int v)
{
	return value(ctx, SL_JSON_BOOLEAN, v ? "true" : "false", v ? 4 : 5, !!v, 0);
}

static int scan_number(void *ctx, const char *lit, size_t n)
{
	struct scan *s = ctx;
	int64_t i = 0;
	double f = 0;
	int kind = sl_json_number(&s->p, lit, n, &i, &f);

	if (kind < 0)
		return 0;
	if (kind == SL_JSON_INTEGER)
		f = (double)i;
	return value(s, (enum sl_json_kind)kind, lit, n, i, f);
}

static int scan_string(void *ctx, const unsigned char *v, size_t n)
{
	struct scan *s = ctx;

	if (!sl_json_string(&s->p, (const char *)v, n))
		return 0;
	return value(s, SL_JSON_STRING, (const char *)v, n, 0, 0);
}

static int scan_key(void *ctx, const unsigned char *k, size_t n)
{
	struct scan *s = ctx;
	struct key *r;
	size_t cap;

	if (!sl_json_string(&s->p, (const char *)k, n))
		return 0;
	if (s->nrecs == s->caprecs) {
		cap = s->caprecs ? s->caprecs * 2 : 64;
		r = cap < SIZE_MAX / sizeof(*r) ? realloc(s->recs, cap * sizeof(*r)) : NULL;
		if (!r)
			return sl_json_fail(&s->p, SL_ENOMEM, "out of memory");
		s->recs = r;
		s->caprecs = cap;
	}
	r = &s->recs[s->nrecs++];
	r->off = s->keys.len;
	r->len = n;
	sl_buf_add(&s->keys, k, n);
	if (!sl_buf_ok(&s->keys))
		return sl_json_fail(&s->p, SL_ENOMEM, "out of memory");
	return new_key(s);
}

static int scan_open(struct scan *s, enum sl_json_kind kind)
{
	struct frame *fr;

	if (s->depth == 0 && !top_value(s, kind))
		return 0;
	if (s->depth == SL_JSON_MAX_DEPTH)
		return sl_json_fail(&s->p, SL_EINVAL, "nesting deeper than %d levels",
		                    SL_JSON_MAX_DEPTH);
	fr = &s->frames[++s->depth];
	fr->open = sl_json_offset(&s->p) - 1; /* the bracket is the token's last byte */
	fr->first = s->nrecs;
	fr->bytes = s->keys.len;
	fr->slots = NULL;
	fr->nslots = 0;
	fr->object = kind == SL_JSON_OBJECT;
	return 1;
}

static int scan_close(struct scan *s, enum sl_json_kind kind)
{
	struct frame *fr = &s->frames[s->depth];
	size_t end = sl_json_offset(&s->p);

	if (fr->object) {
		free(fr->slots); /* the keys were checked as they came */
		s->nrecs = fr->first;
		s->keys.len = fr->bytes; /* drop its key bytes; keep the NUL invariant */
		if (s->keys.cap)
			s->keys.ptr[s->keys.len] = '\0';
	}
	s->depth--;
	if (s->depth == 1 && s->fn)
		return member(s, kind, s->p.text + fr->open, end - fr->open, 0, 0);
	return 1;
}

static int scan_start_map(void *ctx)
{
	return scan_open(ctx, SL_JSON_OBJECT);
}

static int scan_end_map(void *ctx)
{
	return scan_close(ctx, SL_JSON_OBJECT);
}

static int scan_start_array(void *ctx)
{
	return scan_open(ctx, SL_JSON_ARRAY);
}

static int scan_end_array(void *ctx)
{
	return scan_close(ctx, SL_JSON_ARRAY);
}

static const yajl_callbacks scan_callbacks = {
	.yajl_null = scan_null,
	.yajl_boolean = scan_boolean,
	.yajl_number = scan_number, /* raw literals: integer/double stay unused */
	.yajl_string = scan_string,
	.yajl_start_map = scan_start_map,
	.yajl_map_key = scan_key,
	.yajl_end_map = scan_end_map,
	.yajl_start_array = scan_start_array,
	.yajl_end_array = scan_end_array,
};

static int scan_run(struct scan *s, const char *text, size_t len, struct sl_diag *d)
{
	yajl_handle h;
	int rc;

	s->p.text = text;
	s->p.len = len;
	s->p.d = d;
	s->kind = SL_JSON_NULL;
	s->depth = 0;
	s->recs = NULL;
	s->nrecs = s->caprecs = 0;
	sl_buf_init(&s->keys);
	h = yajl_alloc(&scan_callbacks, NULL, s);
	if (!h)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	s->p.h = h;
	rc = sl_json_parse(&s->p);
	for (; s->depth > 0; s->depth--) /* the objects an error left open */
		if (s->frames[s->depth].object)
			free(s->frames[s->depth].slots);
	yajl_free(h);
	free(s->recs);
	sl_buf_release(&s->keys);
	return rc;
}

int sl_json_check(const char *text, size_t len, enum sl_json_kind *kind, struct sl_diag *d)
{
	struct scan s;
	int rc;

	s.fn = NULL;
	s.ud = NULL;
	rc = scan_run(&s, text, len, d);
	if (!rc && kind)
		*kind = s.kind;
	return rc;
}

int sl_json_members(const char *text, size_t len, sl_json_member_fn fn, void *ud, struct sl_diag *d)
{
	struct scan s;

	s.fn = fn;
	s.ud = ud;
	return scan_run(&s, text, len, d);
}
