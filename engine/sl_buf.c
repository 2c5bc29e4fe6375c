/* sl_buf.c - growable byte buffer and JSON string escaping. */
#include "sl_buf.h"
#include "sl_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char empty[1];

void sl_buf_init(struct sl_buf *b)
{
	b->ptr = empty;
	b->len = b->cap = 0;
	b->oom = 0;
}

void sl_buf_release(struct sl_buf *b)
{
	if (b->cap)
		free(b->ptr);
	sl_buf_init(b);
}

void sl_buf_reset(struct sl_buf *b)
{
	b->len = 0;
	b->oom = 0;
	if (b->cap)
		b->ptr[0] = '\0';
}

char *sl_buf_detach(struct sl_buf *b, size_t *len)
{
	char *p;

	if (b->oom || sl_buf_grow(b, 0)) {
		sl_buf_release(b);
		return NULL;
	}
	p = b->ptr;
	if (len)
		*len = b->len;
	sl_buf_init(b);
	return p;
}

int sl_buf_grow(struct sl_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (b->oom)
		return SL_ENOMEM;
	if (extra > SL_BUF_MAX - b->len - 1)
		goto fail;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap * 2 > SL_BUF_MAX ? SL_BUF_MAX : cap * 2;
	p = realloc(b->cap ? b->ptr : NULL, cap);
	if (!p)
		goto fail;
	if (!b->cap)
		p[0] = '\0';
	b->ptr = p;
	b->cap = cap;
	return 0;
fail:
	b->oom = 1;
	return SL_ENOMEM;
}

void sl_buf_add(struct sl_buf *b, const void *p, size_t n)
{
	if (sl_buf_grow(b, n))
		return;
	memcpy(b->ptr + b->len, p, n);
	b->len += n;
	b->ptr[b->len] = '\0';
}

void sl_buf_addc(struct sl_buf *b, char c)
{
	if (b->len + 1 < b->cap) {
		b->ptr[b->len++] = c;
		b->ptr[b->len] = '\0';
		return;
	}
	sl_buf_add(b, &c, 1);
}

void sl_buf_adds(struct sl_buf *b, const char *s)
{
	sl_buf_add(b, s, strlen(s));
}

void sl_buf_addf(struct sl_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sl_buf_vaddf(b, fmt, ap);
	va_end(ap);
}

void sl_buf_vaddf(struct sl_buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0 || sl_buf_grow(b, (size_t)n))
		return;
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void sl_buf_addi(struct sl_buf *b, int64_t v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	sl_buf_add(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Escape for each byte below 0x20, '"' and '\\'; 0 means "copy as is". */
static const char *escape_of(unsigned char c)
{
	static const char *short_esc[32] = {
		['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t",
	};
	if (c == '"')
		return "\\\"";
	if (c == '\\')
		return "\\\\";
	if (c < 0x20)
		return short_esc[c] ? short_esc[c] : "";
	return NULL;
}

size_t sl_jstr_len(const char *s, size_t n)
{
	size_t i, len = 2;
	const char *e;

	for (i = 0; i < n; i++) {
		e = escape_of((unsigned char)s[i]);
		len += !e ? 1 : *e ? strlen(e) : 6;
	}
	return len;
}

void sl_buf_addjstr(struct sl_buf *b, const char *s, size_t n)
{
	size_t i, run = 0;
	const char *e;
	char hex[8];

	sl_buf_addc(b, '"');
	for (i = 0; i < n; i++) {
		e = escape_of((unsigned char)s[i]);
		if (!e)
			continue;
		sl_buf_add(b, s + run, i - run);
		run = i + 1;
		if (*e) {
			sl_buf_adds(b, e);
		} else {
			snprintf(hex, sizeof(hex), "\\u%04x", (unsigned char)s[i]);
			sl_buf_add(b, hex, 6);
		}
	}
	sl_buf_add(b, s + run, n - run);
	sl_buf_addc(b, '"');
}

int sl_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + n;
	unsigned c, need;
	uint32_t cp, min;

	while (s < end) {
		c = *s++;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07, min = 0x10000;
		else
			return 0;
		if ((size_t)(end - s) < need)
			return 0;
		while (need--) {
			if ((*s & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (*s++ & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
	}
	return 1;
}
