/* sl_error.h - error codes and the caller-owned diagnostic that carries their detail.
 *
 * Every fallible function in libsluice returns an int: 0 on success, a negative
 * SL_E<NAME> code on failure. The codes come from one X-macro table, which also
 * yields sl_strerror() (the libuv UV_ERRNO_MAP habit).
 *
 * Detail travels in a struct sl_diag owned by the caller. The function that detects
 * an error fills it with sl_diag_set(); callers add context in front of the message
 * with sl_diag_prefix() rather than overwriting it, so a user finally reads
 * "line 3: payload: must be a JSON object, got array".
 */
#ifndef SL_ERROR_H
#define SL_ERROR_H

#include <stddef.h>

#define SL_ERRNO_MAP(X)                                                                            \
	X(INVAL, -1, "invalid input")                                                              \
	X(NOMEM, -2, "out of memory")                                                              \
	X(IO, -3, "store I/O error")                                                               \
	X(CONFLICT, -4, "offset conflict")                                                         \
	X(PAUSED, -5, "stream paused")                                                             \
	X(NOTFOUND, -6, "not found")                                                               \
	X(TOOBIG, -7, "too large")                                                                 \
	X(BUSY, -8, "store busy")                                                                  \
	X(VERSION, -9, "unsupported store version")                                                \
	X(LUA, -10, "Lua error")                                                                   \
	X(USAGE, -11, "usage error")                                                               \
	X(FENCED, -12, "lease lost")                                                               \
	X(NOTSUP, -13, "not supported")                                                            \
	X(CORRUPT, -14, "store damaged")

enum sl_errno {
#define SL_ERRNO_ENUM(name, val, text) SL_E##name = (val),
	SL_ERRNO_MAP(SL_ERRNO_ENUM)
#undef SL_ERRNO_ENUM
};

/* Returns a static, human-readable text for an SL_E* code. */
const char *sl_strerror(int code);

#define SL_DIAG_MAX 1024

/* A diagnostic: the first error's code and its message, plus context. */
struct sl_diag {
	int code; /* 0 while no error has been recorded */
	char msg[SL_DIAG_MAX];
};

/* Clears `d` (NULL is allowed everywhere a diag is taken: detail is then dropped). */
void sl_diag_init(struct sl_diag *d);

/* Records an error unless one is already recorded (the first error wins, so the
 * deepest, most precise message survives). Returns `code`, so callers can write
 * `return sl_diag_set(d, SL_EINVAL, "...")`. */
int sl_diag_set(struct sl_diag *d, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Puts "<context>: " in front of the recorded message. Returns d->code (or 0). */
int sl_diag_prefix(struct sl_diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message, or sl_strerror(code) when no message was recorded. */
const char *sl_diag_msg(const struct sl_diag *d);

/* A list of error messages, for checks that report every error (sluice check). */
struct sl_errs {
	char **msg;
	size_t n, cap;
	int nomem; /* a message could not be stored */
};

void sl_errs_init(struct sl_errs *e);
void sl_errs_release(struct sl_errs *e);
/* Adds a formatted message (copied). */
void sl_errs_add(struct sl_errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sorts the messages from index `from` on (strcmp order): a check that walks a Lua
 * table calls it so that its errors do not come in the table's (random) order. */
void sl_errs_sort(struct sl_errs *e, size_t from);

/* Adds the message `msg` of a Lua error raised while loading or running the chunk
 * of `file` in the form of DESIGN §7, "<file>: line N: <message>", when msg starts
 * with Lua's "<chunk>:N:" position (also when Lua shortened a long chunk name to
 * "...<tail>"); otherwise as "<file>: <msg>". Only msg's first line is kept. */
void sl_errs_add_lua(struct sl_errs *e, const char *file, const char *msg);

/* The same rewriting into out[0..n) (always terminated). */
void sl_lua_message(char *out, size_t n, const char *file, const char *msg);

/* Echoing user input in a message: at most SL_ECHO_MAX bytes of it, cut at a UTF-8
 * character boundary, then "..." when something was cut. Use with "%.*s%s":
 *	fail("--from: must be an integer, got '%.*s%s'", SL_ECHO(text));
 */
#define SL_ECHO_MAX 64
#define SL_ECHO(s) (int)sl_echo_len(s), (s), sl_echo_more(s)
size_t sl_echo_len(const char *s);
const char *sl_echo_more(const char *s);

/* Levenshtein distance between a and b, capped at 100. */
int sl_edit_distance(const char *a, const char *b);

/* "Did you mean": the one place that picks the closest valid name for a typo.
 * Feed every candidate to sl_closest_try; sl_closest_best is the closest one at edit
 * distance 3 or less (of equals, the one first in strcmp order, so the answer does
 * not depend on the order the candidates come in), or NULL. The
 * candidates are borrowed: the result lives as long as the best candidate does.
 *
 *	struct sl_closest c;
 *	sl_closest_init(&c, key);
 *	for (i = 0; i < n; i++)
 *		sl_closest_try(&c, names[i]);
 *	hint = sl_closest_best(&c);
 */
struct sl_closest {
	const char *word, *best;
	int dist;
};
void sl_closest_init(struct sl_closest *c, const char *word);
void sl_closest_try(struct sl_closest *c, const char *candidate);
const char *sl_closest_best(const struct sl_closest *c);

#endif
