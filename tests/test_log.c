/* test_log.c - unit tests of sl_log: both formats, escaping, absent fields, the level
 * filter, one write per record. */
#define _XOPEN_SOURCE 700 /* posix_openpt, for the terminal default */
#include "sl_buf.h"
#include "sl_error.h"
#include "sl_json.h"
#include "sl_log.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The log writes to one end of a SOCK_SEQPACKET pair: each write(2) arrives as one
 * packet, so a record that took two writes would show as a cut line. */
static int sv[2];
static char got[65536];

/* Returns the next record written (one packet), or "" if none was. */
static const char *next(void)
{
	ssize_t n = recv(sv[1], got, sizeof(got) - 1, MSG_DONTWAIT);

	got[n > 0 ? n : 0] = '\0';
	return got;
}

/* 1 if s starts with a timestamp like 2026-12-03T06:00:00.123Z. */
static int is_time(const char *s)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	size_t i;

	for (i = 0; pat[i]; i++)
		if (pat[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != pat[i])
			return 0;
	return 1;
}

/* The text record after its timestamp, or "(no timestamp)". */
static const char *text_rest(const char *line)
{
	return is_time(line) && line[24] == ' ' ? line + 24 : "(no timestamp)";
}

/* The JSON record after {"time":"<timestamp>", or "(no time)". */
static const char *json_rest(const char *line)
{
	static const char head[] = "{\"time\":\"";
	size_t n = sizeof(head) - 1;

	if (strncmp(line, head, n) || !is_time(line + n) || strncmp(line + n + 24, "\",", 2))
		return "(no time)";
	return line + n + 26;
}

static void test_text(void)
{
	sl_log_set_format(SL_LOG_TEXT);
	sl_log(SL_LOG_INFO, "counter", "counters/a", 5, "hello %d", 42);
	ok(is_time(next()), "text: the line starts with the time");
	is_str(text_rest(got), " info counter counters/a: hello 42\n",
	       "text: time level processor stream: message (no offset)");
	sl_log(SL_LOG_WARN, "counter", NULL, 0, "m");
	is_str(text_rest(next()), " warn counter: m\n", "text: without a stream");
	sl_log(SL_LOG_ERROR, NULL, "s/1", 3, "m");
	is_str(text_rest(next()), " error s/1: m\n", "text: without a processor");
	sl_log(SL_LOG_ERROR, "", "", 0, "shutdown: %s", "now");
	is_str(text_rest(next()), " error shutdown: now\n", "text: \"\" is absent too");
	sl_log(SL_LOG_INFO, "p", NULL, 0, "a\nb\tc\x1b[31md\r\x7f é");
	is_str(text_rest(next()), " info p: a\\nb\\tc\\x1b[31md\\r\\x7f é\n",
	       "text: control characters are escaped, the record stays one line");
}

struct msg_of {
	char msg[256];
	int members;
};

static int find_msg(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct msg_of *mo = ud;

	(void)d;
	mo->members++;
	if (m->keylen == 3 && !memcmp(m->key, "msg", 3) && m->kind == SL_JSON_STRING)
		snprintf(mo->msg, sizeof(mo->msg), "%.*s", (int)m->len, m->text);
	return 0;
}

/* Parses a JSON line (without its newline) with the engine's strict parser. */
static int parse(const char *line, struct msg_of *mo)
{
	size_t n = strlen(line);

	memset(mo, 0, sizeof(*mo));
	if (!n || line[n - 1] != '\n')
		return -1;
	return sl_json_members(line, n - 1, find_msg, mo, NULL);
}

static void test_json(void)
{
	struct msg_of mo;

	sl_log_set_format(SL_LOG_JSON);
	sl_log(SL_LOG_INFO, "counter", "counters/a", 5, "hello %d", 42);
	is_str(json_rest(next()),
	       "\"level\":\"info\",\"msg\":\"hello 42\",\"processor\":\"counter\","
	       "\"stream\":\"counters/a\",\"offset\":5}\n",
	       "json: time, level, msg, processor, stream, offset in that order");
	ok(parse(got, &mo) == 0 && mo.members == 6, "json: the line is one strict JSON object");
	sl_log(SL_LOG_WARN, NULL, NULL, 0, "m");
	is_str(json_rest(next()), "\"level\":\"warn\",\"msg\":\"m\"}\n",
	       "json: absent processor, stream and offset are omitted");
	sl_log(SL_LOG_ERROR, "", "s/1", 0, "m");
	is_str(json_rest(next()), "\"level\":\"error\",\"msg\":\"m\",\"stream\":\"s/1\"}\n",
	       "json: \"\" is absent, offset 0 is absent");
	sl_log(SL_LOG_INFO, "p", NULL, 0, "q\"b\\s\nt\tc\x01 é");
	is_str(json_rest(next()),
	       "\"level\":\"info\",\"msg\":\"q\\\"b\\\\s\\nt\\tc\\u0001 é\",\"processor\":\"p\"}\n",
	       "json: quotes, backslashes and control characters are escaped");
	ok(parse(got, &mo) == 0 && !strcmp(mo.msg, "q\"b\\s\nt\tc\x01 é"),
	   "json: the message decodes back to what was logged");
	sl_log(SL_LOG_INFO, "p\xff", NULL, 0, "a\xff\xc3(b\xed\xa0\x80z");
	ok(parse(next(), &mo) == 0, "json: a line with bytes that are not UTF-8 still parses");
	is_str(mo.msg, "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz",
	       "json: each stray byte (and each byte of a surrogate) became U+FFFD");
	ok(strstr(got, "\"processor\":\"p\xef\xbf\xbd\"") != NULL,
	   "json: the processor name is cleaned too");
}

static void test_levels(void)
{
	sl_log_set_format(SL_LOG_JSON);
	is(sl_log_enabled(SL_LOG_DEBUG), 0, "the default level is info: debug is off");
	ok(sl_log_enabled(SL_LOG_INFO), "the default level is info: info is on");
	sl_log(SL_LOG_DEBUG, NULL, NULL, 0, "hidden");
	is_str(next(), "", "a debug record is dropped at level info");
	sl_log_set_level(SL_LOG_WARN);
	sl_log(SL_LOG_INFO, NULL, NULL, 0, "hidden");
	is_str(next(), "", "an info record is dropped at level warn");
	sl_log(SL_LOG_WARN, NULL, NULL, 0, "shown");
	ok(strstr(next(), "\"msg\":\"shown\""), "a warn record is written at level warn");
	sl_log(SL_LOG_ERROR, NULL, NULL, 0, "shown");
	ok(strstr(next(), "\"level\":\"error\""), "an error record is written at level warn");
	sl_log_set_level(SL_LOG_DEBUG);
	sl_log(SL_LOG_DEBUG, NULL, NULL, 0, "shown");
	ok(strstr(next(), "\"level\":\"debug\""), "a debug record is written at level debug");
	sl_log_set_level(SL_LOG_INFO);
}

static void test_parse(void)
{
	enum sl_log_level level = SL_LOG_ERROR;
	enum sl_log_format format = SL_LOG_AUTO;

	ok(sl_log_parse_level("debug", &level) == 0 && level == SL_LOG_DEBUG, "parse: debug");
	ok(sl_log_parse_level("warn", &level) == 0 && level == SL_LOG_WARN, "parse: warn");
	is(sl_log_parse_level("warning", &level), SL_EINVAL, "parse: 'warning' is refused");
	ok(sl_log_parse_format("json", &format) == 0 && format == SL_LOG_JSON, "parse: json");
	ok(sl_log_parse_format("text", &format) == 0 && format == SL_LOG_TEXT, "parse: text");
	is(sl_log_parse_format("auto", &format), SL_EINVAL, "parse: 'auto' is not offered");
	is_str(sl_log_level_name(SL_LOG_WARN), "warn", "the name of warn");
}

static void test_limits(void)
{
	char *big = malloc(SL_LOG_MSG_MAX + 100);
	size_t n;

	sl_log_set_format(SL_LOG_TEXT);
	memset(big, 'x', SL_LOG_MSG_MAX + 99);
	big[SL_LOG_MSG_MAX - 1] = '\xc3'; /* an é across the cut */
	big[SL_LOG_MSG_MAX] = '\xa9';
	big[SL_LOG_MSG_MAX + 99] = '\0';
	sl_log(SL_LOG_INFO, NULL, NULL, 0, "%s", big);
	n = strlen(text_rest(next()));
	is(n, strlen(" info ") + SL_LOG_MSG_MAX - 1 + strlen(" [truncated]\n"),
	   "a long message is cut before the character that crosses the cap");
	ok(n > 13 && !strcmp(got + strlen(got) - 13, " [truncated]\n"), "and marked");
	free(big);

	errno = ERANGE;
	sl_log(SL_LOG_INFO, NULL, NULL, 0, "m");
	next();
	is(errno, ERANGE, "a log call leaves errno alone");
}

/* SL_LOG_AUTO: json off a terminal, text on one. */
static void test_auto(void)
{
	int master, slave;
	ssize_t n;

	sl_log_set_format(SL_LOG_AUTO);
	sl_log(SL_LOG_INFO, NULL, NULL, 0, "m");
	ok(next()[0] == '{', "auto: json when the descriptor is not a terminal");
	master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master) ||
	    (slave = open(ptsname(master), O_RDWR | O_NOCTTY)) < 0) {
		ok(1, "# SKIP auto: no pseudo-terminal");
		if (master >= 0)
			close(master);
		return;
	}
	sl_log_set_fd(slave);
	sl_log(SL_LOG_INFO, NULL, NULL, 0, "m");
	n = read(master, got, sizeof(got) - 1);
	got[n > 0 ? n : 0] = '\0';
	ok(is_time(got) && strstr(got, " info m"), "auto: text on a terminal");
	sl_log_set_fd(sv[0]);
	close(slave);
	close(master);
}

int main(void)
{
	plan(34);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv)) {
		perror("socketpair");
		return 1;
	}
	sl_log_set_fd(sv[0]);
	test_levels();
	test_text();
	test_json();
	test_parse();
	test_limits();
	test_auto();
	return check_plan();
}
