/* test_luajson.c - unit tests of sl_luajson: JSON <-> Lua, always inside lua_pcall. */
#include "sl_buf.h"
#include "sl_json.h"
#include "sl_luajson.h"
#include "unit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

static lua_State *L;
static int nested_runs, nested_bad, nested_in_decode; /* see test_reentrant */

/* One call of the bridge and what it did. */
struct job {
	const char *text; /* decode input */
	size_t len;
	int flags;
	const char *path; /* encode path */
	int rc, erc;      /* decode and encode results */
	int dpushed;      /* net stack change of sl_lj_decode */
	int epushed;      /* net stack change of sl_lj_encode */
	struct sl_buf out;
	struct sl_diag d;
};

static void job_init(struct job *j, const char *text, size_t len)
{
	memset(j, 0, sizeof(*j));
	j->text = text;
	j->len = len;
	j->rc = j->erc = 1; /* "not run" */
	j->path = "payload";
	sl_buf_init(&j->out);
	sl_diag_init(&j->d);
}

/* decode(job) -> value or nothing. [-1, +(0|1), m] */
static int do_decode(lua_State *l)
{
	struct job *j = lua_touserdata(l, 1);
	int top;

	lua_pop(l, 1);
	top = lua_gettop(l);
	j->rc = sl_lj_decode(l, j->text, j->len, j->flags, &j->d);
	j->dpushed = lua_gettop(l) - top;
	return j->dpushed;
}

/* encode(job, value). [-0, +0, m] */
static int do_encode(lua_State *l)
{
	struct job *j = lua_touserdata(l, 1);
	int top = lua_gettop(l);

	j->erc = sl_lj_encode(l, 2, j->path, &j->out, &j->d);
	j->epushed = lua_gettop(l) - top;
	return 0;
}

/* roundtrip(job) -> value or nothing: decodes, then encodes what came out.
 * [-1, +(0|1), m] */
static int do_roundtrip(lua_State *l)
{
	struct job *j = lua_touserdata(l, 1);
	int before = nested_runs, n = do_decode(l), top;

	nested_in_decode += nested_runs - before; /* decodes run by finalizers meanwhile */
	if (n) {
		top = lua_gettop(l);
		j->erc = sl_lj_encode(l, -1, j->path, &j->out, &j->d);
		j->epushed = lua_gettop(l) - top;
	}
	return n;
}

/* Decodes in a protected call; leaves the value, or nil, on the stack. [-0, +1, -] */
static int decode(struct job *j)
{
	lua_pushcfunction(L, do_decode);
	lua_pushlightuserdata(L, j);
	return lua_pcall(L, 1, 1, 0);
}

/* Encodes the value at idx in a protected call. [-0, +0, -] */
static int encode(struct job *j, int idx)
{
	idx = lua_absindex(L, idx);
	lua_pushcfunction(L, do_encode);
	lua_pushlightuserdata(L, j);
	lua_pushvalue(L, idx);
	return lua_pcall(L, 2, 0, 0);
}

/* Runs Lua code returning one value and leaves that value on the stack. [-0, +1, -] */
static void run(const char *code)
{
	if (luaL_loadstring(L, code) || lua_pcall(L, 0, 1, 0)) {
		diag("Lua error: %s", lua_tostring(L, -1));
		lua_pop(L, 1);
		lua_pushnil(L);
	}
}

/* array(t) tags t as an array and returns it. [-0, +0, e] */
static int l_array(lua_State *l)
{
	luaL_checktype(l, 1, LUA_TTABLE);
	lua_settop(l, 1);
	sl_lj_pusharraymt(l);
	lua_setmetatable(l, 1);
	return 1;
}

/* Decodes in, encodes the result; the text must be want. [-0, +0, -] */
static void check_roundtrip(const char *in, const char *want)
{
	struct job j;
	int st;

	job_init(&j, in, strlen(in));
	lua_pushcfunction(L, do_roundtrip);
	lua_pushlightuserdata(L, &j);
	st = lua_pcall(L, 1, 1, 0);
	ok(st == LUA_OK && j.rc == 0 && j.erc == 0 && j.dpushed == 1 && j.epushed == 0 &&
	           !strcmp(j.out.ptr, want),
	   "round trip %s -> %s (got %s %s)", in, want, j.out.ptr, j.d.msg);
	lua_pop(L, 1);
	sl_buf_release(&j.out);
}

static void test_roundtrips(void)
{
	check_roundtrip("[]", "[]");
	check_roundtrip("{}", "{}");
	check_roundtrip("[[],{},[[]],{\"a\":[]}]", "[[],{},[[]],{\"a\":[]}]");
	check_roundtrip("{\"a\":[null,{\"b\":null}]}", "{\"a\":[null,{\"b\":null}]}");
	check_roundtrip("9007199254740993", "9007199254740993");
	check_roundtrip("-9223372036854775808", "-9223372036854775808");
	check_roundtrip("9223372036854775807", "9223372036854775807");
	check_roundtrip("[999999999999999999,-999999999999999999,1000000000000000000]",
	                "[999999999999999999,-999999999999999999,1000000000000000000]");
	check_roundtrip("[9999999999999999999,-9223372036854775809]",
	                "[1e+19,-9.223372036854776e+18]");
	check_roundtrip("[0,-0,7,-7,10]", "[0,0,7,-7,10]");
	check_roundtrip("1e308", "1e+308");
	check_roundtrip("-0.0", "-0.0");
	check_roundtrip("-0", "0");
	check_roundtrip("1.0", "1.0");
	check_roundtrip("0.1", "0.1");
	check_roundtrip("1E2", "100.0");
	check_roundtrip("0.30000000000000004", "0.30000000000000004");
	check_roundtrip("100000000000000000000", "1e+20");
	check_roundtrip("\"\\u0000\"", "\"\\u0000\"");
	check_roundtrip("\"\\ud83d\\ude00\\u00e9\"", "\"\xf0\x9f\x98\x80\xc3\xa9\"");
	check_roundtrip("\"\\/\\b\\f\\n\\r\\t\\\"\\\\\\u001f\"",
	                "\"/\\b\\f\\n\\r\\t\\\"\\\\\\u001f\"");
	check_roundtrip(" { \"b\" : 1 , \"a\" : [ true , false , \"x\" ] } ",
	                "{\"a\":[true,false,\"x\"],\"b\":1}");
	check_roundtrip("{\"\":1,\"a\\u0000\":2,\"a\":3}", "{\"\":1,\"a\":3,\"a\\u0000\":2}");
	is(lua_gettop(L), 0, "round trips: stack at baseline");
}

static void test_values(void)
{
	struct job j;

	job_init(&j, "{\"a\":[null,{\"b\":null}]}", 23);
	ok(decode(&j) == LUA_OK && j.rc == 0 && lua_type(L, -1) == LUA_TTABLE, "decode an object");
	ok(!sl_lj_isarray(L, -1), "an object is not tagged as an array");
	lua_pushliteral(L, "a");
	lua_rawget(L, -2);
	ok(sl_lj_isarray(L, -1) && lua_rawlen(L, -1) == 2, "an array is tagged, with its items");
	lua_rawgeti(L, -1, 1);
	lua_pushlightuserdata(L, NULL);
	ok(sl_lj_isnull(L, -2) && lua_touserdata(L, -2) == NULL && lua_rawequal(L, -1, -2),
	   "null decodes to the sentinel, equal to lightuserdata NULL (cjson.null)");
	lua_pop(L, 2);
	lua_rawgeti(L, -1, 2);
	lua_pushliteral(L, "b");
	lua_rawget(L, -2);
	ok(sl_lj_isnull(L, -1), "a nested null decodes to the sentinel");
	lua_pop(L, 4);
	is(lua_gettop(L), 0, "values: stack at baseline");
}

static void test_numbers(void)
{
	struct job j;
	size_t n;
	const char *s;

	job_init(&j, "9007199254740993", 16);
	decode(&j);
	ok(lua_isinteger(L, -1) && lua_tointeger(L, -1) == INT64_C(9007199254740993),
	   "2^53+1 is an exact Lua integer");
	lua_pop(L, 1);
	job_init(&j, "-9223372036854775808", 20);
	decode(&j);
	ok(lua_isinteger(L, -1) && lua_tointeger(L, -1) == INT64_MIN,
	   "-2^63 is an exact Lua integer");
	lua_pop(L, 1);
	job_init(&j, "9223372036854775808", 19);
	decode(&j);
	ok(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 9223372036854775808.0,
	   "2^63 becomes a float");
	lua_pop(L, 1);
	job_init(&j, "1e308", 5);
	decode(&j);
	ok(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 1e308, "1e308 is a float");
	lua_pop(L, 1);
	job_init(&j, "-0.0", 4);
	decode(&j);
	ok(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 0 && signbit(lua_tonumber(L, -1)),
	   "-0.0 stays a negative zero float");
	lua_pop(L, 1);
	job_init(&j, "42", 2);
	decode(&j);
	ok(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 42, "a top-level integer");
	lua_pop(L, 1);

	job_init(&j, "\"\\u0000\"", 8);
	decode(&j);
	s = lua_tolstring(L, -1, &n);
	ok(s && n == 1 && s[0] == '\0', "\\u0000 decodes to a 1-byte string holding NUL");
	lua_pop(L, 1);
	job_init(&j, "\"\\ud83d\\ude00\"", 14);
	decode(&j);
	s = lua_tolstring(L, -1, &n);
	ok(s && n == 4 && !memcmp(s, "\xf0\x9f\x98\x80", 4),
	   "a surrogate pair decodes to F0 9F 98 80");
	lua_pop(L, 1);
	is(lua_gettop(L), 0, "numbers and strings: stack at baseline");
}

/* Encodes the value the Lua code returns; checks the text or the error message.
 * [-0, +0, -] */
static void check_encode(const char *code, const char *path, int want_rc, const char *want)
{
	struct job j;
	int st;

	job_init(&j, NULL, 0);
	j.path = path;
	run(code);
	st = encode(&j, -1);
	lua_pop(L, 1);
	if (want_rc == 0)
		ok(st == LUA_OK && j.erc == 0 && j.epushed == 0 && !strcmp(j.out.ptr, want),
		   "encode %s -> %s (got %s %s)", code, want, j.out.ptr, j.d.msg);
	else
		ok(st == LUA_OK && j.erc == want_rc && j.epushed == 0 && !strcmp(j.d.msg, want),
		   "encode %s refused: %s (got '%s')", code, want, j.d.msg);
	sl_buf_release(&j.out);
}

static void test_encode(void)
{
	check_encode("return {b=1,a=2}", "payload", 0, "{\"a\":2,\"b\":1}");
	check_encode("return {1,2,3}", "payload", 0, "[1,2,3]");
	check_encode("return array({})", "payload", 0, "[]");
	check_encode("return {}", "payload", 0, "{}");
	check_encode("return array({1, nil, 3, x = 1})", "payload", 0, "[1,null,3]");
	check_encode("return {z={y={x=array{}}}, a=null, n=nil}", "payload", 0,
	             "{\"a\":null,\"z\":{\"y\":{\"x\":[]}}}");
	check_encode("return {ab=1, a=2, b=3, ['\xc3\xa9']=4, Z=5, ['']=6, ['a\\0']=7}", "payload",
	             0, "{\"\":6,\"Z\":5,\"a\":2,\"a\\u0000\":7,\"ab\":1,\"b\":3,\"\xc3\xa9\":4}");
	check_encode("return 1.0", "payload", 0, "1.0");
	check_encode("return 0.1", "payload", 0, "0.1");
	check_encode("return -0.0", "payload", 0, "-0.0");
	check_encode("return 100.0", "payload", 0, "100.0");
	check_encode("return 2^53", "payload", 0, "9007199254740992.0");
	check_encode("return 1e15", "payload", 0, "1e+15");
	check_encode("return 123.456", "payload", 0, "123.456");
	check_encode("return 0.1 + 0.2", "payload", 0, "0.30000000000000004");
	check_encode("return 1", "payload", 0, "1");
	check_encode("return math.mininteger", "payload", 0, "-9223372036854775808");
	check_encode("return 'a\"\\n\\0'", "payload", 0, "\"a\\\"\\n\\u0000\"");
	check_encode("return nil", "payload", 0, "null");
	check_encode("return null", "payload", 0, "null");
	check_encode("return {false, true}", "payload", 0, "[false,true]");
	check_encode("return setmetatable({a = 1}, {__index = error, __newindex = error,"
	             " __pairs = error, __len = error, __tojson = error})",
	             "payload", 0, "{\"a\":1}");
	check_encode("return setmetatable({1, 2}, {__index = error, __len = error})", "payload", 0,
	             "[1,2]");
	is(lua_gettop(L), 0, "encode: stack at baseline");
}

static void test_encode_errors(void)
{
	check_encode("return {items = {1, 2, function() end}}", "payload", SL_EINVAL,
	             "payload.items[3]: cannot encode a function as JSON");
	check_encode("return {['a b'] = {ok = {1, function() end}}}", "payload", SL_EINVAL,
	             "payload[\"a b\"].ok[2]: cannot encode a function as JSON");
	check_encode("return {x = {_y1 = {['1x'] = print}}}", "state", SL_EINVAL,
	             "state.x._y1[\"1x\"]: cannot encode a function as JSON");
	check_encode("return print", NULL, SL_EINVAL, "cannot encode a function as JSON");
	check_encode("return {a = {print}}", NULL, SL_EINVAL,
	             "a[1]: cannot encode a function as JSON");
	check_encode("return {t = coroutine.create(print)}", "payload", SL_EINVAL,
	             "payload.t: cannot encode a thread as JSON");
	check_encode("return {io.stdout}", "payload", SL_EINVAL,
	             "payload[1]: cannot encode a userdata as JSON");
	check_encode("return {1, 2, x = 3}", "payload", SL_EINVAL,
	             "payload: cannot encode a table with both integer and string keys as JSON");
	check_encode("return {[1] = 1, [3] = 3}", "payload", SL_EINVAL,
	             "payload: cannot encode a table whose integer keys are not exactly 1..n as "
	             "JSON (a sparse array?)");
	check_encode("return {[0] = 1, [1] = 1}", "payload", SL_EINVAL,
	             "payload: cannot encode a table whose integer keys are not exactly 1..n as "
	             "JSON (a sparse array?)");
	check_encode("return {a = {[1.5] = 1}}", "payload", SL_EINVAL,
	             "payload.a: cannot encode a table with a non-integer number key as JSON");
	check_encode("return {[true] = 1}", "payload", SL_EINVAL,
	             "payload: cannot encode a table with a boolean key as JSON");
	check_encode("return {s = '\\xff'}", "payload", SL_EINVAL,
	             "payload.s: string is not valid UTF-8");
	check_encode("return {['\\xc0\\x80'] = 1}", "payload", SL_EINVAL,
	             "payload: object key is not valid UTF-8");
	check_encode("return {x = 0/0}", "payload", SL_EINVAL,
	             "payload.x: cannot encode NaN as JSON");
	check_encode("return {x = {-math.huge}}", "payload", SL_EINVAL,
	             "payload.x[1]: cannot encode -inf as JSON");
	check_encode("return math.huge", "payload", SL_EINVAL,
	             "payload: cannot encode inf as JSON");
	is(lua_gettop(L), 0, "encode errors: stack at baseline");
}

/* Encodes a value that nests too deep or cycles; checks the message. [-0, +0, -] */
static void check_too_deep(const char *code, const char *head)
{
	struct job j;
	int st;

	job_init(&j, NULL, 0);
	run(code);
	st = encode(&j, -1);
	lua_pop(L, 1);
	ok(st == LUA_OK && j.erc == SL_EINVAL && j.epushed == 0 &&
	           !strncmp(j.d.msg, head, strlen(head)) && strstr(j.d.msg, "...") &&
	           strstr(j.d.msg, ": nesting deeper than 256 levels (or a cycle)") &&
	           strlen(j.d.msg) < 400,
	   "refused: %s (%s)", code, j.d.msg);
	sl_buf_release(&j.out);
}

static void test_encode_deep(void)
{
	char code[256];
	struct sl_buf want;
	int i;

	check_too_deep("local t = {} t.self = t return t", "payload.self.self.self");
	check_too_deep("local t = {a = {}} t.a.b = t return {t}", "payload[1].a.b.a.b");
	check_too_deep("local t = array({}) t[1] = t return t", "payload[1][1][1]");
	check_too_deep("local t = {} for i = 1, 300 do t = {t} end return t", "payload[1][1]");
	snprintf(code, sizeof(code), "local t = 1 for i = 1, %d do t = {t} end return t",
	         SL_JSON_MAX_DEPTH);
	sl_buf_init(&want);
	for (i = 0; i < SL_JSON_MAX_DEPTH; i++)
		sl_buf_addc(&want, '[');
	sl_buf_addc(&want, '1');
	for (i = 0; i < SL_JSON_MAX_DEPTH; i++)
		sl_buf_addc(&want, ']');
	check_encode(code, "payload", 0, want.ptr);
	sl_buf_release(&want);
}

/* A Lua table of n keys k1..kn encodes with its keys in byte order. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void test_encode_large(void)
{
	static char names[100][8];
	const char *sorted[100];
	struct sl_buf want;
	char code[128];
	int i;

	for (i = 0; i < 100; i++) {
		snprintf(names[i], sizeof(names[i]), "k%d", i + 1);
		sorted[i] = names[i];
	}
	qsort(sorted, 100, sizeof(sorted[0]), cmp_str);
	sl_buf_init(&want);
	sl_buf_addc(&want, '{');
	for (i = 0; i < 100; i++)
		sl_buf_addf(&want, "%s\"%s\":%s", i ? "," : "", sorted[i], sorted[i] + 1);
	sl_buf_addc(&want, '}');
	snprintf(code, sizeof(code), "local t = {} for i = 1, 100 do t['k' .. i] = i end return t");
	check_encode(code, "payload", 0, want.ptr);
	sl_buf_release(&want);
}

/* Checks that decoding text fails with a message starting with want and pushes
 * nothing. [-0, +0, -] */
static void check_bad_decode(const char *text, size_t len, int flags, const char *want)
{
	struct job j;
	int st;

	job_init(&j, text, len);
	j.flags = flags;
	st = decode(&j);
	ok(st == LUA_OK && j.rc == SL_EINVAL && j.dpushed == 0 && lua_isnil(L, -1) &&
	           !strncmp(j.d.msg, want, strlen(want)),
	   "decode refused: %s (%s)", want, j.d.msg);
	lua_pop(L, 1);
}

/* Malformed documents and the start of the message each gives. */
static const struct {
	const char *text, *msg;
} bad_docs[] = {
	{"", "malformed JSON: empty input"},
	{"  \n ", "malformed JSON: empty input"},
	{"{", "malformed JSON at byte 1: premature EOF"},
	{"[1,]", "malformed JSON at byte 4: unallowed token"},
	{"{\"a\":1,}", "malformed JSON at byte 8: invalid object key"},
	{"{'a':1}", "malformed JSON at byte 2: invalid char in json text"},
	{"{\"a\" 1}", "malformed JSON at byte 6: object key and value must be separated"},
	{"tru", "malformed JSON at byte 3: invalid string in json text"},
	{"nul", "malformed JSON at byte 3: invalid string in json text"},
	{"01", "malformed JSON at byte 2: trailing garbage"},
	{"1.", "malformed JSON at byte 2: malformed number"},
	{".5", "malformed JSON at byte 1: invalid char"},
	{"+1", "malformed JSON at byte 1: invalid char"},
	{"NaN", "malformed JSON at byte 1: invalid char"},
	{"Infinity", "malformed JSON at byte 1: invalid char"},
	{"\"abc", "malformed JSON at byte 4: premature EOF"},
	{"\"\\x\"", "malformed JSON at byte 2: inside a string"},
	{"[\"a\nb\"]", "malformed JSON at byte 3: invalid character inside string"},
	{"\"\xff\"", "malformed JSON at byte 2: invalid bytes in UTF8 string"},
	{"[\"\xc0\x80\"]", "malformed JSON at byte 5: invalid UTF-8 in string"},
	{"{} x", "malformed JSON at byte 4: trailing garbage"},
	{"1 2", "malformed JSON at byte 3: trailing garbage"},
	{"[1,2] [", "malformed JSON at byte 7: trailing garbage"},
	{"{} // x", "malformed JSON at byte 3: trailing garbage"},
	{"[\"\\ud800\"]", "malformed JSON at byte 3: lone surrogate in \\u escape"},
	{"{\"a\":\"\\udc00\"}", "malformed JSON at byte 7: lone surrogate"},
	{"[1,\v2]", "malformed JSON at byte 4: invalid char in json text"},
	{"[1e400]", "malformed JSON at byte 6: number out of range"},
	{"{\"a\":[1,{\"b\":[1,2,}]}", "malformed JSON at byte 19: unallowed token"},
};

static void test_bad_decode(void)
{
	size_t i;
	char *deep;
	struct sl_buf b;

	for (i = 0; i < sizeof(bad_docs) / sizeof(bad_docs[0]); i++)
		check_bad_decode(bad_docs[i].text, strlen(bad_docs[i].text), 0, bad_docs[i].msg);
	check_bad_decode(NULL, 0, 0, "malformed JSON: empty input");

	check_bad_decode("{\"a\":1,\"a\":2}", 13, SL_LJ_STRICT, "duplicate key 'a'");
	check_bad_decode("{\"a\":null,\"b\":1,\"a\":1}", 22, SL_LJ_STRICT, "duplicate key 'a'");
	check_bad_decode("[{\"x\":[{\"k\":1,\"k\":2}]}]", 23, SL_LJ_STRICT, "duplicate key 'k'");

	sl_buf_init(&b);
	for (i = 0; i < 10000; i++)
		sl_buf_addc(&b, '[');
	for (i = 0; i < 10000; i++)
		sl_buf_addc(&b, ']');
	deep = sl_buf_detach(&b, NULL);
	check_bad_decode(deep, 20000, 0, "nesting deeper than 256 levels");
	free(deep);
	for (i = 0; i < 10000; i++)
		sl_buf_adds(&b, "{\"a\":");
	for (i = 0; i < 10000; i++)
		sl_buf_addc(&b, '}');
	check_bad_decode(b.ptr, b.len, 0, "nesting deeper than 256 levels");
	sl_buf_release(&b);
	is(lua_gettop(L), 0, "bad decode: stack at baseline");
}

static void test_duplicates_lax(void)
{
	struct job j;

	job_init(&j, "{\"a\":1,\"b\":[],\"a\":2}", 20);
	ok(decode(&j) == LUA_OK && j.rc == 0, "without SL_LJ_STRICT duplicate keys are accepted");
	lua_pushliteral(L, "a");
	lua_rawget(L, -2);
	ok(lua_tointeger(L, -1) == 2, "and the last one wins");
	lua_pop(L, 2);
	job_init(&j, "{\"a\":1,\"b\":{\"a\":[1]}}", 21);
	j.flags = SL_LJ_STRICT;
	ok(decode(&j) == LUA_OK && j.rc == 0 && lua_istable(L, -1),
	   "SL_LJ_STRICT accepts one key in two different objects");
	lua_pop(L, 1);
	is(lua_gettop(L), 0, "duplicates: stack at baseline");
}

static void test_depth_limit(void)
{
	struct sl_buf b;
	struct job j;
	int i, st;

	sl_buf_init(&b);
	for (i = 0; i < SL_JSON_MAX_DEPTH; i++)
		sl_buf_adds(&b, i % 2 ? "[" : "{\"k\":");
	sl_buf_adds(&b, "null");
	for (i = SL_JSON_MAX_DEPTH - 1; i >= 0; i--)
		sl_buf_addc(&b, i % 2 ? ']' : '}');
	job_init(&j, b.ptr, b.len);
	lua_pushcfunction(L, do_roundtrip);
	lua_pushlightuserdata(L, &j);
	st = lua_pcall(L, 1, 1, 0);
	ok(st == LUA_OK && j.rc == 0 && j.erc == 0 && !strcmp(j.out.ptr, b.ptr),
	   "256 levels decode and encode back identically (%s)", j.d.msg);
	lua_pop(L, 1);
	sl_buf_release(&j.out);
	sl_buf_release(&b);
	is(lua_gettop(L), 0, "depth: stack at baseline");
}

/* ---- Memory errors raised inside the bridge ---- */

static long alloc_left = -1; /* allocations that may still succeed; -1 = no limit */

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	if (ptr == NULL || nsize > osize) {
		if (alloc_left == 0)
			return NULL;
		if (alloc_left > 0)
			alloc_left--;
	}
	return realloc(ptr, nsize);
}

/* Decodes text failing the Nth Lua allocation for N = 0, 1, ... until it succeeds,
 * leaving the value on the stack; counts the failures in *errmem. Every failure must
 * be a clean LUA_ERRMEM that leaves the stack where it was and leaks nothing (the
 * yajl handle's box is collected). Returns the number of anomalies. [-0, +1, -] */
static int decode_failing(const char *text, size_t len, int *errmem)
{
	struct job j;
	int n, st = LUA_ERRMEM, bad = 0, top = lua_gettop(L);

	*errmem = 0;
	for (n = 0; st != LUA_OK && n < 100000; n++) {
		job_init(&j, text, len);
		alloc_left = n;
		st = decode(&j);
		alloc_left = -1;
		*errmem += st == LUA_ERRMEM;
		bad += (st != LUA_OK && st != LUA_ERRMEM) || lua_gettop(L) != top + 1;
		if (st == LUA_OK)
			bad += j.rc != 0 || !lua_istable(L, -1);
		else
			lua_pop(L, 1); /* the error message */
	}
	return bad + (st != LUA_OK);
}

/* The same for an encode of the value at idx, which must give `want`. [-0, +0, -] */
static int encode_failing(int idx, const char *want, int *errmem)
{
	struct job j;
	int n, st = LUA_ERRMEM, bad = 0, top = lua_gettop(L);

	*errmem = 0;
	for (n = 0; st != LUA_OK && n < 100000; n++) {
		job_init(&j, NULL, 0);
		alloc_left = n;
		st = encode(&j, idx);
		alloc_left = -1;
		*errmem += st == LUA_ERRMEM;
		bad += st != LUA_OK && st != LUA_ERRMEM;
		if (st == LUA_OK)
			bad += j.erc != 0 || (want && strcmp(j.out.ptr, want) != 0);
		else
			lua_pop(L, 1); /* the error message */
		bad += lua_gettop(L) != top;
		sl_buf_release(&j.out);
	}
	return bad + (st != LUA_OK);
}

static void test_memory_errors(void)
{
	static const char doc[] = /* in key order, so it encodes back identically */
		"{\"a\":[1,2,{\"b\":\"a string long enough to be a long Lua string, over forty "
		"bytes\",\"c\":[[[[]]]]}],\"d\":{\"e\":null,\"f\":1.5,\"g\":[true,false]},"
		"\"h\":\"x\",\"i\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}";
	lua_State *saved = L;
	int bad, errmem;

	L = lua_newstate(limited_alloc, NULL);
	luaL_openlibs(L);
	bad = decode_failing(doc, sizeof(doc) - 1, &errmem);
	ok(!bad && errmem > 5, "decode: %d allocation failures raised cleanly, then success",
	   errmem);
	bad = encode_failing(1, doc, &errmem);
	ok(!bad && errmem == 0, "encode of small objects allocates no Lua memory");
	run("local t = {} for i = 1, 40 do t['k' .. i] = {i} end return t");
	bad = encode_failing(2, NULL, &errmem);
	ok(!bad && errmem > 0, "encode of a large object: %d allocation failures raised cleanly",
	   errmem);
	lua_settop(L, 0);
	is(lua_gettop(L), 0, "memory errors: stack at baseline");
	lua_close(L);
	L = saved;
}

/* ---- A decode started by a finalizer while another decode runs ---- */

/* nested() decodes and re-encodes a small document (called from __gc). [-0, +0, m] */
static int l_nested(lua_State *l)
{
	struct job j;
	int top = lua_gettop(l);

	job_init(&j, "{\"n\":[1,2,{\"m\":null}]}", 22);
	j.rc = sl_lj_decode(l, j.text, j.len, 0, &j.d);
	nested_runs++;
	if (j.rc != 0 || lua_gettop(l) != top + 1 || sl_lj_encode(l, -1, "x", &j.out, &j.d) != 0 ||
	    strcmp(j.out.ptr, "{\"n\":[1,2,{\"m\":null}]}") != 0) {
		nested_bad++;
		if (nested_bad < 3)
			diag("nested: rc %d top %d/%d out %s msg %s", j.rc, lua_gettop(l), top,
			     j.out.ptr, j.d.msg);
	}
	sl_buf_release(&j.out);
	lua_settop(l, top);
	return 0;
}

static void test_reentrant(void)
{
	struct sl_buf doc;
	struct job j;
	int i, st;

	lua_register(L, "nested", l_nested);
	run("local mt = {} mt.__gc = function() nested() "
	    "if N < 500 then N = N + 1; setmetatable({}, mt) end end "
	    "N = 0 for i = 1, 200 do setmetatable({}, mt) end "
	    "collectgarbage('incremental', 100, 400) return true");
	lua_pop(L, 1);
	sl_buf_init(&doc);
	sl_buf_addc(&doc, '[');
	for (i = 0; i < 2000; i++)
		sl_buf_addf(&doc, "%s{\"k%d\":[%d,\"v\"]}", i ? "," : "", i % 7, i);
	sl_buf_addc(&doc, ']');
	job_init(&j, doc.ptr, doc.len);
	lua_pushcfunction(L, do_roundtrip);
	lua_pushlightuserdata(L, &j);
	st = lua_pcall(L, 1, 1, 0);
	ok(st == LUA_OK && j.rc == 0 && j.erc == 0 && !strcmp(j.out.ptr, doc.ptr),
	   "a big document decodes and encodes back while finalizers run");
	ok(nested_in_decode > 0 && nested_bad == 0,
	   "%d decodes ran from finalizers inside it (%d during the decode), all right",
	   nested_runs, nested_in_decode);
	lua_pop(L, 1);
	run("collectgarbage('incremental', 200, 100) N = 1e9 collectgarbage() return true");
	lua_pop(L, 1);
	sl_buf_release(&j.out);
	sl_buf_release(&doc);
	is(lua_gettop(L), 0, "reentrant: stack at baseline");
}

/* The checker and the decoder accept the same documents and give the same message
 * for each bad one (sl_luajson.h): a table of bad inputs, both run on each, with
 * SL_LJ_STRICT (the checker always refuses duplicate keys). Duplicate keys are
 * reported where the second one is read, so an earlier error still comes first and a
 * later one is never reached. */
static const char *const same_bad[] = {
	"",
	" ",
	"{",
	"[",
	"[1,]",
	"{\"a\":1,}",
	"{'a':1}",
	"{\"a\" 1}",
	"tru",
	"01",
	"1.",
	"-",
	"+1",
	".5",
	"NaN",
	"[-Infinity]",
	"\"abc",
	"\"\\x\"",
	"\"\\u12\"",
	"\"a\tb\"",
	"\"\xff\"",
	"\"\xc0\x80\"",
	"\"\xed\xa0\x80\"",
	"{\"\xc0\xaf\":1}",
	"{} x",
	"1 2",
	"{}{}",
	"{} // x",
	"/* c */ {}",
	"[1 /* c */]",
	"\"\\ud800\"",
	"\"\\udc00\"",
	"\"\\ud800\\u0041\"",
	"{\"\\ud800\":1}",
	"\v1",
	"[1,\f2]",
	"[\"a\v\"]",
	"1e400",
	"[-1e999]",
	"{\"a\":1,\"a\":2}",
	"{\"a\":1,\"a\":2,\"b\":",
	"{\"a\":1,\"a\":{\"b\":1,\"b\":2}}",
	"{\"a\":{\"b\":1,\"b\":2},\"a\":1}",
	"{\"a\":1,\"a\":2,\"b\":1,\"b\":2}",
	"[{\"k\":1,\"k\":2}, x]",
	"{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,"
	"\"zz\":1,\"k9\":0,\"a\":1,\"a\":2}",
	"{\"a\\u0062\":1,\"ab\":2}",
	"{\"a\":1,\"a\":1e400}",
	"{\"a\":1,\"a\":\"\\ud800\"}",
	"{\"x\":[1,2,{\"y\":{}, \"y\":[]}]}",
	"{\"a\":[],\"a\":{}}",
};

static void test_same_messages(void)
{
	struct sl_diag dc, dd;
	size_t i, n = sizeof(same_bad) / sizeof(same_bad[0]);
	struct job j;
	int rc, st, same = 0;

	for (i = 0; i < n; i++) {
		sl_diag_init(&dc);
		rc = sl_json_check(same_bad[i], strlen(same_bad[i]), NULL, &dc);
		job_init(&j, same_bad[i], strlen(same_bad[i]));
		j.flags = SL_LJ_STRICT;
		st = decode(&j);
		dd = j.d;
		lua_pop(L, 1);
		if (rc == SL_EINVAL && st == LUA_OK && j.rc == SL_EINVAL && !strcmp(dc.msg, dd.msg))
			same++;
		else
			diag("input %zu: checker '%s', decoder '%s'", i, dc.msg, dd.msg);
	}
	is(same, (int)n, "checker and decoder refuse all %zu bad inputs with the same message", n);
}

/* ---- The fast path against the yajl path ---- */

/* Decodes text with flags (0: the fast path when it can; SL_LJ_SLOW: yajl only) and
 * describes the outcome in out: "ok <encoded value>" or "error <message>". */
static void outcome(const char *text, size_t len, int flags, struct sl_buf *out)
{
	struct job j;
	int st;

	job_init(&j, text, len);
	j.flags = flags;
	lua_pushcfunction(L, do_roundtrip);
	lua_pushlightuserdata(L, &j);
	st = lua_pcall(L, 1, 1, 0);
	sl_buf_reset(out);
	if (st != LUA_OK)
		sl_buf_addf(out, "raised %s", lua_tostring(L, -1));
	else if (j.rc)
		sl_buf_addf(out, "error %d %s pushed %d", j.rc, j.d.msg, j.dpushed);
	else
		sl_buf_addf(out, "ok %s %d pushed %d", j.out.ptr, j.erc, j.dpushed);
	lua_pop(L, 1);
	sl_buf_release(&j.out);
}

static const char *const fast_docs[] = {
	"{}",
	"[]",
	"{\"by\":1}",
	" {\"a\" : [ 1 , 2 ,3 ] ,\"b\":{ }}\r\n\t",
	"0",
	"-0",
	"-0.0",
	"1.5",
	"-12.5e3",
	"1E+2",
	"1e-2",
	"123456789012345678",
	"-123456789012345678",
	"1234567890123456789",
	"9223372036854775807",
	"-9223372036854775808",
	"9223372036854775808",
	"-9223372036854775809",
	"123456789012345678901234567890",
	"1e308",
	"1e309",
	"-1e400",
	"4.9e-324",
	"true",
	"false",
	"null",
	"[null,true,false]",
	"\"\"",
	"\"caf\xc3\xa9\"",
	"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
	"\"a\\u0041\"",
	"\"\\ud83d\\ude00\"",
	"\"\\ud83d\"",
	"\"\x7f\"",
	"\"\xc0\xaf\"",
	"\"\xed\xa0\x80\"",
	"\"\xf4\x90\x80\x80\"",
	"\"\xe2\x82\"",
	"{\"a\":1,\"a\":2}",
	"{\"a\":{\"b\":[{}]},\"a\":[]}",
	"01",
	"1.",
	".5",
	"+1",
	"-",
	"1e",
	"1e+",
	"[1,]",
	"{\"a\":1,}",
	"{,}",
	"[,1]",
	"{\"a\"}",
	"{\"a\":}",
	"{1:2}",
	"[1 2]",
	"tru",
	"nul",
	"falsey",
	"\"abc",
	"\"a\nb\"",
	"\"\\x\"",
	"[1]]",
	"{}{}",
	"1 2",
	"",
	"   ",
	"\v1",
	"1\f",
	"[\"a\",\v1]",
	"{\"a\":\"\\u00\"}",
	"\"\\",
	"[",
	"{",
	"{\"a\":",
	"{\"a\"",
	"\"\t\"",
	"[1e400]",
	"{\"k\":1e400}",
	"[\"\xff\"]",
	"{\"\xc3\xa9\":1}",
	"{\"\\n\":\"\\t\"}",
};

/* A deterministic generator of documents, most valid, some broken by one byte. */
static uint32_t fast_seed = 12345;
static uint32_t fast_rand(void)
{
	fast_seed = fast_seed * 1103515245u + 12345u;
	return fast_seed >> 8;
}

static void gen_value(struct sl_buf *b, int depth)
{
	static const char *const atoms[] = {"0",
	                                    "-7",
	                                    "3.25",
	                                    "1e3",
	                                    "true",
	                                    "false",
	                                    "null",
	                                    "\"x\"",
	                                    "\"\\n\"",
	                                    "\"\xc3\xa9\"",
	                                    "99999999999999999999",
	                                    "\"k\\\"\""};
	int i, n;

	switch (depth > 5 || b->len > 20000 ? 2 : fast_rand() % 4) {
	case 0:
		n = (int)(fast_rand() % (depth < 2 && fast_rand() % 8 == 0 ? 200 : 5));
		sl_buf_addc(b, '[');
		for (i = 0; i < n; i++) {
			if (i)
				sl_buf_adds(b, fast_rand() % 3 ? "," : " , ");
			gen_value(b, depth + 1);
		}
		sl_buf_addc(b, ']');
		break;
	case 1:
		n = (int)(fast_rand() % (depth < 2 && fast_rand() % 8 == 0 ? 200 : 5));
		sl_buf_addc(b, '{');
		for (i = 0; i < n; i++) {
			if (i)
				sl_buf_addc(b, ',');
			sl_buf_addf(b, "\"k%u\":", fast_rand() % (n + 1));
			gen_value(b, depth + 1);
		}
		sl_buf_addc(b, '}');
		break;
	default:
		sl_buf_adds(b, atoms[fast_rand() % (sizeof(atoms) / sizeof(atoms[0]))]);
		break;
	}
}

static void test_fast_vs_slow(void)
{
	static const char broken[] = "\"\\{}[],:x0\x01\xff \v";
	struct sl_buf a, b, doc;
	size_t i, n = sizeof(fast_docs) / sizeof(fast_docs[0]), same = 0, valid = 0;
	int k;

	sl_buf_init(&a);
	sl_buf_init(&b);
	sl_buf_init(&doc);
	for (i = 0; i < n; i++) {
		outcome(fast_docs[i], strlen(fast_docs[i]), 0, &a);
		outcome(fast_docs[i], strlen(fast_docs[i]), SL_LJ_SLOW, &b);
		if (!strcmp(a.ptr, b.ptr))
			same++;
		else
			diag("'%s': fast '%s', yajl '%s'", fast_docs[i], a.ptr, b.ptr);
	}
	is((int)same, (int)n, "the fast path and the yajl path agree on %zu documents", n);
	for (same = 0, k = 0; k < 2000; k++) {
		sl_buf_reset(&doc);
		gen_value(&doc, 0);
		if (k % 3 == 0 && doc.len) /* one byte changed */
			doc.ptr[fast_rand() % doc.len] = broken[fast_rand() % (sizeof(broken) - 1)];
		outcome(doc.ptr, doc.len, 0, &a);
		outcome(doc.ptr, doc.len, SL_LJ_SLOW, &b);
		valid += !strncmp(b.ptr, "ok", 2);
		if (!strcmp(a.ptr, b.ptr))
			same++;
		else if (k - (int)same < 5)
			diag("'%s': fast '%s', yajl '%s'", doc.ptr, a.ptr, b.ptr);
	}
	is((int)same, 2000, "and on 2000 generated documents (%zu of them valid)", valid);
	/* the deepest document the grammar allows, and one level more */
	for (k = SL_JSON_MAX_DEPTH; k <= SL_JSON_MAX_DEPTH + 1; k++) {
		int d;
		sl_buf_reset(&doc);
		for (d = 0; d < k; d++)
			sl_buf_adds(&doc, d % 2 ? "[" : "{\"k\":");
		sl_buf_adds(&doc, "1");
		for (d = k - 1; d >= 0; d--)
			sl_buf_addc(&doc, d % 2 ? ']' : '}');
		outcome(doc.ptr, doc.len, 0, &a);
		outcome(doc.ptr, doc.len, SL_LJ_SLOW, &b);
		ok(!strcmp(a.ptr, b.ptr) &&
		           !strncmp(a.ptr, k > SL_JSON_MAX_DEPTH ? "error" : "ok", 2),
		   "%d levels: both %s", k, k > SL_JSON_MAX_DEPTH ? "refuse" : "decode");
	}
	sl_buf_release(&a);
	sl_buf_release(&b);
	sl_buf_release(&doc);
	is(lua_gettop(L), 0, "fast path: stack at baseline");
}

int main(void)
{
	plan(143);
	L = luaL_newstate();
	luaL_openlibs(L);
	lua_register(L, "array", l_array);
	sl_lj_pushnull(L);
	lua_setglobal(L, "null");
	test_roundtrips();
	test_values();
	test_numbers();
	test_encode();
	test_encode_errors();
	test_encode_deep();
	test_encode_large();
	test_bad_decode();
	test_duplicates_lax();
	test_depth_limit();
	test_memory_errors();
	test_reentrant();
	test_same_messages();
	test_fast_vs_slow();
	is(lua_gettop(L), 0, "stack at baseline before lua_close");
	lua_close(L);
	return check_plan();
}
