/* test_error.c - unit tests of sl_error's helpers: Lua messages in the form of DESIGN
 * §7, echo clipping, sorted error lists and an order-free "did you mean". */
#include "sl_error.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>

static const char *lua_msg(const char *file, const char *msg)
{
	static char out[SL_DIAG_MAX];

	sl_lua_message(out, sizeof(out), file, msg);
	return out;
}

static const char *echo(const char *s)
{
	static char out[256];

	snprintf(out, sizeof(out), "%.*s%s", SL_ECHO(s));
	return out;
}

static void test_lua_message(void)
{
	const char *f = "processors/counter.lua";
	const char *longf =
		"/very/long/directory/name/that/lua/shortens/in/its/messages/counter.lua";

	is_str(lua_msg(f, "processors/counter.lua:5: unexpected symbol near '}'"),
	       "processors/counter.lua: line 5: unexpected symbol near '}'", "a syntax error");
	is_str(lua_msg(f, "processors/counter.lua:12: boom\nstack traceback:\n\t..."),
	       "processors/counter.lua: line 12: boom", "only the first line");
	is_str(lua_msg(f, "cannot open processors/counter.lua"),
	       "processors/counter.lua: cannot open processors/counter.lua", "no position");
	is_str(lua_msg(f, "other.lua:3: x"), "processors/counter.lua: other.lua:3: x",
	       "another chunk's position is kept as text");
	is_str(lua_msg(f, "processors/counter.lua:x: y"),
	       "processors/counter.lua: processors/counter.lua:x: y", "no line number");
	is_str(lua_msg(longf, "...in/its/messages/counter.lua:7: oops"),
	       "/very/long/directory/name/that/lua/shortens/in/its/messages/counter.lua: line 7: "
	       "oops",
	       "Lua's shortened chunk name");
	is_str(lua_msg(longf, "...not/its/tail.lua:7: oops"),
	       "/very/long/directory/name/that/lua/shortens/in/its/messages/counter.lua: "
	       "...not/its/tail.lua:7: oops",
	       "a shortened name that is not the file's");
	is_str(lua_msg(f, NULL),
	       "processors/counter.lua: unknown error (the error value is not a string)",
	       "a non-string error");
}

static void test_echo(void)
{
	char big[200], utf[200];
	int i;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	is(strlen(echo(big)), (size_t)SL_ECHO_MAX + 3, "a long value is cut to 64 bytes plus ...");
	ok(!strcmp(echo(big) + SL_ECHO_MAX, "..."), "and ends in ...");
	big[SL_ECHO_MAX] = '\0';
	is_str(echo(big), big, "64 bytes are echoed whole");
	is_str(echo(""), "", "an empty value");
	utf[0] = 'a'; /* then é (2 bytes) from byte 1 on: byte 64 is in the middle of one */
	for (i = 1; i + 2 < (int)sizeof(utf); i += 2)
		utf[i] = (char)0xC3, utf[i + 1] = (char)0xA9;
	utf[i] = '\0';
	is(strlen(echo(utf)), (size_t)SL_ECHO_MAX - 1 + 3, "a cut never splits a UTF-8 character");
}

static void test_sort_and_closest(void)
{
	struct sl_errs e;
	struct sl_closest c;

	sl_errs_init(&e);
	sl_errs_add(&e, "first");
	sl_errs_add(&e, "z");
	sl_errs_add(&e, "b");
	sl_errs_add(&e, "m");
	sl_errs_sort(&e, 1);
	ok(!strcmp(e.msg[0], "first") && !strcmp(e.msg[1], "b") && !strcmp(e.msg[2], "m") &&
	           !strcmp(e.msg[3], "z"),
	   "sl_errs_sort sorts from the given index on");
	sl_errs_release(&e);

	sl_closest_init(&c, "abc");
	sl_closest_try(&c, "abd");
	sl_closest_try(&c, "abb");
	is_str(sl_closest_best(&c), "abb", "of equals, the first in strcmp order (b, d)");
	sl_closest_init(&c, "abc");
	sl_closest_try(&c, "abb");
	sl_closest_try(&c, "abd");
	is_str(sl_closest_best(&c), "abb", "the same answer in the other order (d, b)");
	sl_closest_try(&c, "abc");
	is_str(sl_closest_best(&c), "abc", "a closer one wins");
}

int main(void)
{
	plan(17);
	test_lua_message();
	test_echo();
	test_sort_and_closest();
	return check_plan();
}
