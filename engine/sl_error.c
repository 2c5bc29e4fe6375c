/* sl_error.c - error texts and the diagnostic helpers. */
#include "sl_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sl_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define SL_ERRNO_TEXT(name, val, text)                                                             \
	case (val):                                                                                \
		return (text);
		SL_ERRNO_MAP(SL_ERRNO_TEXT)
#undef SL_ERRNO_TEXT
	}
	return "unknown error";
}

void sl_diag_init(struct sl_diag *d)
{
	if (d) {
		d->code = 0;
		d->msg[0] = '\0';
	}
}

int sl_diag_set(struct sl_diag *d, int code, const char *fmt, ...)
{
	va_list ap;

	if (!d || d->code)
		return code;
	d->code = code;
	va_start(ap, fmt);
	vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
	va_end(ap);
	return code;
}

int sl_diag_prefix(struct sl_diag *d, const char *fmt, ...)
{
	char head[256], old[SL_DIAG_MAX];
	va_list ap;

	if (!d)
		return 0;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, d->msg, sizeof(old));
	snprintf(d->msg, sizeof(d->msg), "%.255s: %.760s", head,
	         old[0] ? old : sl_strerror(d->code));
	return d->code;
}

const char *sl_diag_msg(const struct sl_diag *d)
{
	if (!d)
		return "";
	return d->msg[0] ? d->msg : sl_strerror(d->code);
}

void sl_errs_init(struct sl_errs *e)
{
	e->msg = NULL;
	e->n = e->cap = 0;
	e->nomem = 0;
}

void sl_errs_release(struct sl_errs *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	sl_errs_init(e);
}

void sl_errs_add(struct sl_errs *e, const char *fmt, ...)
{
	char buf[SL_DIAG_MAX], **grown;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 8;
		if (!(grown = realloc(e->msg, cap * sizeof(*grown)))) {
			e->nomem = 1;
			return;
		}
		e->msg = grown;
		e->cap = cap;
	}
	if (!(e->msg[e->n] = strdup(buf)))
		e->nomem = 1;
	else
		e->n++;
}

/* The length of the "<chunk>:N:" position msg starts with when the chunk is `file`
 * (or Lua's "...<tail of file>" for a long name), with *line set to N; else 0. */
static size_t lua_position(const char *file, const char *msg, long *line)
{
	size_t flen = strlen(file), n;
	const char *colon, *p;
	char *end;

	if (!strncmp(msg, file, flen) && msg[flen] == ':') {
		colon = msg + flen;
	} else if (!strncmp(msg, "...", 3) && (colon = strchr(msg + 3, ':'))) {
		n = (size_t)(colon - (msg + 3));
		if (n > flen || strncmp(file + flen - n, msg + 3, n))
			return 0;
	} else {
		return 0;
	}
	p = colon + 1;
	if (*p < '0' || *p > '9')
		return 0;
	*line = strtol(p, &end, 10);
	if (*end != ':')
		return 0;
	return (size_t)(end + 1 - msg);
}

void sl_lua_message(char *out, size_t n, const char *file, const char *msg)
{
	size_t skip, len;
	long line = 0;

	if (!msg)
		msg = "unknown error (the error value is not a string)";
	skip = lua_position(file, msg, &line);
	msg += skip;
	if (skip && *msg == ' ')
		msg++;
	len = strcspn(msg, "\n");
	if (skip)
		snprintf(out, n, "%s: line %ld: %.*s", file, line, (int)len, msg);
	else
		snprintf(out, n, "%s: %.*s", file, (int)len, msg);
}

void sl_errs_add_lua(struct sl_errs *e, const char *file, const char *msg)
{
	char buf[SL_DIAG_MAX];

	sl_lua_message(buf, sizeof(buf), file, msg);
	sl_errs_add(e, "%s", buf);
}

size_t sl_echo_len(const char *s)
{
	size_t n = strnlen(s, SL_ECHO_MAX + 1);

	if (n <= SL_ECHO_MAX)
		return n;
	n = SL_ECHO_MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--; /* s[n] continues a character: cut before it starts */
	return n;
}

const char *sl_echo_more(const char *s)
{
	return strnlen(s, SL_ECHO_MAX + 1) > SL_ECHO_MAX ? "..." : "";
}

static int cmp_msg(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void sl_errs_sort(struct sl_errs *e, size_t from)
{
	if (from < e->n)
		qsort(e->msg + from, e->n - from, sizeof(*e->msg), cmp_msg);
}

int sl_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	int row[101], prev, tmp, best;

	if (la > 100 || lb > 100)
		return 100;
	for (j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = (int)i;
		for (j = 1; j <= lb; j++) {
			tmp = row[j];
			best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

void sl_closest_init(struct sl_closest *c, const char *word)
{
	c->word = word;
	c->best = NULL;
	c->dist = 4;
}

void sl_closest_try(struct sl_closest *c, const char *candidate)
{
	int dist;

	if (!candidate)
		return;
	dist = sl_edit_distance(c->word, candidate);
	if (dist < c->dist || (dist == c->dist && c->best && strcmp(candidate, c->best) < 0)) {
		c->dist = dist;
		c->best = candidate;
	}
}

const char *sl_closest_best(const struct sl_closest *c)
{
	return c->best;
}
