/* sl_buf.h - a growable byte buffer (after git's strbuf), used to build JSON and SQL.
 *
 * Invariants: `ptr` is always NUL-terminated once anything was added (or after
 * sl_buf_init, where it points at a static empty string); `len` excludes the NUL.
 * Allocation failure is sticky: the first failed growth sets `oom`, later additions
 * do nothing, and the owner checks sl_buf_ok() once when the text is complete.
 * A buffer never grows beyond SL_BUF_MAX bytes (a hard cap; exceeding it counts as
 * an allocation failure).
 */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define SL_BUF_MAX ((size_t)1 << 30)

struct sl_buf {
	char *ptr;
	size_t len, cap;
	int oom;
};

void sl_buf_init(struct sl_buf *b);
/* Frees the storage; the buffer is reinitialized and can be used again. */
void sl_buf_release(struct sl_buf *b);
/* Empties the buffer but keeps its storage. */
void sl_buf_reset(struct sl_buf *b);
/* Hands the text to the caller (who frees it) and reinitializes the buffer.
 * Returns NULL after an allocation failure. */
char *sl_buf_detach(struct sl_buf *b, size_t *len);
/* Makes room for `extra` more bytes. Returns 0, or SL_ENOMEM (and sets oom). */
int sl_buf_grow(struct sl_buf *b, size_t extra);
static inline int sl_buf_ok(const struct sl_buf *b)
{
	return !b->oom;
}

void sl_buf_add(struct sl_buf *b, const void *p, size_t n);
void sl_buf_addc(struct sl_buf *b, char c);
void sl_buf_adds(struct sl_buf *b, const char *s);
void sl_buf_addf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sl_buf_vaddf(struct sl_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
void sl_buf_addi(struct sl_buf *b, int64_t v);
/* Appends `s` as a quoted, escaped JSON string. Bytes >= 0x80 are copied as they
 * are (the caller guarantees valid UTF-8); control characters become \u00hh escapes. */
void sl_buf_addjstr(struct sl_buf *b, const char *s, size_t n);
/* The length sl_buf_addjstr would append for `s`, quotes included. */
size_t sl_jstr_len(const char *s, size_t n);

/* Returns 1 if s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
int sl_utf8_valid(const char *s, size_t n);

#endif
