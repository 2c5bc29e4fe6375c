/* test_buf.c - unit tests of sl_buf: growth, JSON string escaping, UTF-8 checking. */
#include "sl_buf.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>

/* Returns the text sl_buf_addjstr makes of s[0..n) (static storage). */
static const char *jstr(const char *s, size_t n)
{
	static char out[256];
	struct sl_buf b;

	sl_buf_init(&b);
	sl_buf_addjstr(&b, s, n);
	snprintf(out, sizeof(out), "%s", b.ptr);
	sl_buf_release(&b);
	return out;
}

/* Checks that sl_jstr_len predicts what sl_buf_addjstr appends after some text. */
static void check_len(const char *s, size_t n, const char *what)
{
	struct sl_buf b;

	sl_buf_init(&b);
	sl_buf_adds(&b, "prefix");
	sl_buf_addjstr(&b, s, n);
	is(sl_jstr_len(s, n), b.len - 6, "sl_jstr_len matches addjstr for %s", what);
	sl_buf_release(&b);
}

static void test_basics(void)
{
	struct sl_buf b;
	char *p;
	size_t n;
	int i;

	sl_buf_init(&b);
	is_str(b.ptr, "", "a fresh buffer reads as an empty string");
	sl_buf_addi(&b, INT64_MIN);
	sl_buf_addc(&b, ' ');
	sl_buf_addi(&b, INT64_MAX);
	sl_buf_addc(&b, ' ');
	sl_buf_addi(&b, 0);
	sl_buf_addf(&b, " %s=%d", "x", 42);
	is_str(b.ptr, "-9223372036854775808 9223372036854775807 0 x=42",
	       "addi writes int64 extremes exactly, addf formats");
	for (i = 0; i < 1000; i++)
		sl_buf_addc(&b, 'z');
	is(b.len, strlen(b.ptr), "len matches the NUL-terminated text after growth");
	ok(sl_buf_ok(&b), "no allocation failure");
	p = sl_buf_detach(&b, &n);
	ok(p && n == 1047 && strlen(p) == n, "detach hands over the text and its length");
	is(b.len, 0, "the buffer is empty after detach");
	free(p);
	sl_buf_release(&b);
}

static void test_escaping(void)
{
	is_str(jstr("plain", 5), "\"plain\"", "plain text is quoted");
	is_str(jstr("a\"b", 3), "\"a\\\"b\"", "a quote is escaped");
	is_str(jstr("a\\b", 3), "\"a\\\\b\"", "a backslash is escaped");
	is_str(jstr("\n\t\r\b\f", 5), "\"\\n\\t\\r\\b\\f\"",
	       "short escapes for \\n \\t \\r \\b \\f");
	is_str(jstr("\x01\x1f", 2), "\"\\u0001\\u001f\"",
	       "other control characters become \\u00XX");
	is_str(jstr("a\0b", 3), "\"a\\u0000b\"", "NUL becomes \\u0000 and does not end the string");
	is_str(jstr("\x7f/", 2), "\"\x7f/\"", "DEL and '/' are copied as they are");
	is_str(jstr("\xc3\xa9\xf0\x9f\x98\x80", 6), "\"\xc3\xa9\xf0\x9f\x98\x80\"",
	       "UTF-8 bytes are copied as they are");
	is_str(jstr("", 0), "\"\"", "the empty string is two quotes");
	check_len("", 0, "the empty string");
	check_len("abc", 3, "ASCII");
	check_len("\"\\\n\x01\0", 5, "escapes of every width");
	check_len("\xe2\x82\xac x", 5, "UTF-8");
}

static void test_utf8(void)
{
	ok(sl_utf8_valid("", 0), "empty text is valid");
	ok(sl_utf8_valid("ascii \0 nul", 11), "ASCII with NUL is valid");
	ok(sl_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13),
	   "2, 3 and 4-byte sequences up to U+10FFFF are valid");
	ok(sl_utf8_valid("\xed\x9f\xbf\xee\x80\x80", 6),
	   "U+D7FF and U+E000 around surrogates are valid");
	ok(!sl_utf8_valid("\xc0\x80", 2), "overlong C0 80 is refused");
	ok(!sl_utf8_valid("\xe0\x80\xaf", 3), "overlong 3-byte '/' is refused");
	ok(!sl_utf8_valid("\xf0\x82\x82\xac", 4), "overlong 4-byte sequence is refused");
	ok(!sl_utf8_valid("\xed\xa0\x80", 3), "encoded surrogate ED A0 80 is refused");
	ok(!sl_utf8_valid("\xed\xbf\xbf", 3), "encoded surrogate ED BF BF is refused");
	ok(!sl_utf8_valid("\xe2\x82", 2), "truncated 3-byte sequence is refused");
	ok(!sl_utf8_valid("a\xf0\x9f\x98", 4), "truncated 4-byte sequence is refused");
	ok(!sl_utf8_valid("\xe2\x28\xa1", 3),
	   "a non-continuation byte inside a sequence is refused");
	ok(!sl_utf8_valid("\xf4\x90\x80\x80", 4), "U+110000 (F4 90 80 80) is refused");
	ok(!sl_utf8_valid("\xf5\x80\x80\x80", 4), "lead byte F5 is refused");
	ok(!sl_utf8_valid("\x80", 1), "a lone continuation byte is refused");
	ok(!sl_utf8_valid("\xff", 1), "byte FF is refused");
}

int main(void)
{
	plan(35);
	test_basics();
	test_escaping();
	test_utf8();
	return check_plan();
}
