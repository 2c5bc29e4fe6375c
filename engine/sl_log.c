/* sl_log.c - formats log records and writes each as one line with one write(2). */
#include "sl_log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "sl_buf.h"
#include "sl_error.h"
#include "sl_store.h" /* sl_store_now: records carry the store's timestamp format */

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const format_names[] = {"auto", "text", "json"};

/* Process settings, written at start-up only (see the header's thread rules). */
static enum sl_log_level min_level = SL_LOG_INFO;
static enum sl_log_format log_format = SL_LOG_AUTO;
static int log_fd = 2;
static void (*before_fn)(void *ud); /* run before a line is written (progress lines) */
static void *before_ud;

/* ---- settings ------------------------------------------------------------------------ */

void sl_log_set_level(enum sl_log_level level)
{
	min_level = level;
}

void sl_log_set_format(enum sl_log_format format)
{
	log_format = format;
}

void sl_log_set_fd(int fd)
{
	log_fd = fd;
}

int sl_log_enabled(enum sl_log_level level)
{
	return level >= min_level && level <= SL_LOG_ERROR;
}

const char *sl_log_level_name(enum sl_log_level level)
{
	return level >= SL_LOG_DEBUG && level <= SL_LOG_ERROR ? level_names[level] : "?";
}

int sl_log_parse_level(const char *name, enum sl_log_level *level)
{
	int i;

	for (i = SL_LOG_DEBUG; i <= SL_LOG_ERROR; i++)
		if (!strcmp(name, level_names[i])) {
			*level = (enum sl_log_level)i;
			return 0;
		}
	return SL_EINVAL;
}

int sl_log_parse_format(const char *name, enum sl_log_format *format)
{
	int i;

	/* "auto" is the default, not a choice the command line offers. */
	for (i = SL_LOG_TEXT; i <= SL_LOG_JSON; i++)
		if (!strcmp(name, format_names[i])) {
			*format = (enum sl_log_format)i;
			return 0;
		}
	return SL_EINVAL;
}

/* ---- formatting ---------------------------------------------------------------------- */

/* Appends s[0..n) for a text line: control characters are escaped so that a record
 * stays one line and a processor cannot send escape sequences to a terminal. */
static void add_text(struct sl_buf *b, const char *s, size_t n)
{
	size_t i, run = 0;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c != 0x7f)
			continue;
		sl_buf_add(b, s + run, i - run);
		run = i + 1;
		if (c == '\n')
			sl_buf_adds(b, "\\n");
		else if (c == '\t')
			sl_buf_adds(b, "\\t");
		else if (c == '\r')
			sl_buf_adds(b, "\\r");
		else
			sl_buf_addf(b, "\\x%02x", c);
	}
	sl_buf_add(b, s + run, n - run);
}

/* The length of the UTF-8 sequence that starts s[0..n), or 0 if none does. */
static size_t utf8_seq(const char *s, size_t n)
{
	unsigned char c = (unsigned char)s[0];
	size_t k = c < 0x80                 ? 1
	           : c >= 0xc2 && c <= 0xdf ? 2
	           : c >= 0xe0 && c <= 0xef ? 3
	           : c >= 0xf0 && c <= 0xf4 ? 4
	                                    : 0;

	return k && k <= n && sl_utf8_valid(s, k) ? k : 0;
}

/* Appends s[0..n) as a JSON string; each byte that is not part of well-formed UTF-8
 * becomes U+FFFD, so the line parses whatever a processor logged. */
static void add_jstr(struct sl_buf *b, const char *s, size_t n)
{
	struct sl_buf clean;
	size_t i, k;

	if (sl_utf8_valid(s, n)) {
		sl_buf_addjstr(b, s, n);
		return;
	}
	sl_buf_init(&clean);
	for (i = 0; i < n; i += k ? k : 1) {
		if ((k = utf8_seq(s + i, n - i)))
			sl_buf_add(&clean, s + i, k);
		else
			sl_buf_adds(&clean, "\xef\xbf\xbd");
	}
	if (sl_buf_ok(&clean))
		sl_buf_addjstr(b, clean.ptr, clean.len);
	else
		b->oom = 1;
	sl_buf_release(&clean);
}

/* Cuts msg to SL_LOG_MSG_MAX bytes, at the start of a UTF-8 sequence. */
static void truncate_msg(struct sl_buf *msg)
{
	size_t cut = SL_LOG_MSG_MAX;

	if (!sl_buf_ok(msg) || msg->len <= cut)
		return;
	while (cut > 0 && ((unsigned char)msg->ptr[cut] & 0xc0) == 0x80)
		cut--;
	msg->len = cut;
	msg->ptr[cut] = '\0';
	sl_buf_adds(msg, " [truncated]");
}

struct record {
	enum sl_log_level level;
	const char *processor, *stream; /* NULL when absent */
	int64_t offset;                 /* 0 when absent */
	const char *msg;
	size_t len;
};

static void format_json(struct sl_buf *b, const char *time, const struct record *r)
{
	sl_buf_adds(b, "{\"time\":\"");
	sl_buf_adds(b, time);
	sl_buf_adds(b, "\",\"level\":\"");
	sl_buf_adds(b, level_names[r->level]);
	sl_buf_adds(b, "\",\"msg\":");
	add_jstr(b, r->msg, r->len);
	if (r->processor) {
		sl_buf_adds(b, ",\"processor\":");
		add_jstr(b, r->processor, strlen(r->processor));
	}
	if (r->stream) {
		sl_buf_adds(b, ",\"stream\":");
		add_jstr(b, r->stream, strlen(r->stream));
	}
	if (r->offset) {
		sl_buf_adds(b, ",\"offset\":");
		sl_buf_addi(b, r->offset);
	}
	sl_buf_adds(b, "}\n");
}

/* DESIGN §8 gives the text line no offset: it is in the JSON form only. */
static void format_text(struct sl_buf *b, const char *time, const struct record *r)
{
	sl_buf_adds(b, time);
	sl_buf_addc(b, ' ');
	sl_buf_adds(b, level_names[r->level]);
	if (r->processor) {
		sl_buf_addc(b, ' ');
		add_text(b, r->processor, strlen(r->processor));
	}
	if (r->stream) {
		sl_buf_addc(b, ' ');
		add_text(b, r->stream, strlen(r->stream));
	}
	sl_buf_adds(b, r->processor || r->stream ? ": " : " ");
	add_text(b, r->msg, r->len);
	sl_buf_addc(b, '\n');
}

/* ---- writing --------------------------------------------------------------------------- */

void sl_log_write(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void write_line(const char *p, size_t n)
{
	sl_log_write(log_fd, p, n);
}

void sl_logv(enum sl_log_level level, const char *processor, const char *stream, int64_t offset,
             const char *fmt, va_list ap)
{
	static const char oom_text[] = "error: out of memory while logging\n";
	static const char oom_json[] =
		"{\"level\":\"error\",\"msg\":\"out of memory while logging\"}\n";
	enum sl_log_format format = log_format;
	struct record r = {level,
	                   processor && *processor ? processor : NULL,
	                   stream && *stream ? stream : NULL,
	                   offset > 0 ? offset : 0,
	                   NULL,
	                   0};
	struct sl_buf msg, line;
	char time[32];
	int saved = errno; /* a log call must not disturb the caller's errno */

	if (!sl_log_enabled(level))
		return;
	if (format == SL_LOG_AUTO)
		format = isatty(log_fd) ? SL_LOG_TEXT : SL_LOG_JSON;
	sl_buf_init(&msg);
	sl_buf_init(&line);
	sl_buf_vaddf(&msg, fmt, ap);
	truncate_msg(&msg);
	r.msg = msg.ptr;
	r.len = msg.len;
	sl_store_now(time, sizeof(time));
	if (format == SL_LOG_JSON)
		format_json(&line, time, &r);
	else
		format_text(&line, time, &r);
	if (before_fn)
		before_fn(before_ud);
	if (sl_buf_ok(&msg) && sl_buf_ok(&line))
		write_line(line.ptr, line.len);
	else if (format == SL_LOG_JSON)
		write_line(oom_json, sizeof(oom_json) - 1);
	else
		write_line(oom_text, sizeof(oom_text) - 1);
	sl_buf_release(&msg);
	sl_buf_release(&line);
	errno = saved;
}

void sl_log(enum sl_log_level level, const char *processor, const char *stream, int64_t offset,
            const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sl_logv(level, processor, stream, offset, fmt, ap);
	va_end(ap);
}

void sl_log_set_before(void (*fn)(void *ud), void *ud)
{
	before_fn = fn;
	before_ud = ud;
}
