/* test_sandbox.c - unit tests of the processor sandbox (sl_sandbox.h) and of the
 * budgeted pattern functions (sl_strmatch.h).
 *
 * Each snippet runs as one budgeted hook call in a sandboxed state, the way the
 * processor runs hooks: loaded as text with a script environment, called under
 * sl_sandbox_enter/leave inside lua_pcall. The checks look at the status, the budget
 * that was exceeded (if any), the message, the time taken, and the stack, which must
 * be back at its baseline; every state is closed at the end, under ASan in the
 * sanitizer build. The pattern functions are also compared with the stock ones of a
 * plain state on a corpus of patterns (same results, same errors).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sl_sandbox.h"
#include "unit.h"

struct outcome {
	int status;
	enum sl_budget budget;
	char msg[512];
	double ms;
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static lua_State *sandbox(double instructions, double memory, double wallclock_ms)
{
	struct sl_limits lim = {instructions, memory, wallclock_ms};
	struct sl_diag d;
	lua_State *L = NULL;

	sl_diag_init(&d);
	if (sl_sandbox_new(&L, "t", &lim, &d))
		diag("sl_sandbox_new: %s", sl_diag_msg(&d));
	return L;
}

/* pause(ms): the calling thread does not run for ms milliseconds of wall time, as
 * when it waits for a core on a busy machine: it sleeps with every signal blocked,
 * so that one sent meanwhile (the sandbox's watchdog) is handled only after.
 * [-1, +0, -] */
static int l_pause(lua_State *L)
{
	struct timespec until;
	double ms = luaL_checknumber(L, 1);
	sigset_t all, old;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL))
		;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return 0;
}

static lua_CFunction with_pause; /* when set, the snippet's global pause (l_pause) */

/* Runs code (chunk name "=snippet.lua") as one budgeted call; with reducing, as
 * reduce. The first result, if any, is turned into a string in o->msg. */
static struct outcome run_as(lua_State *L, const char *code, int reducing)
{
	struct outcome o;
	struct sl_sbmark m;
	int top = lua_gettop(L);
	double t0 = now_ms();

	memset(&o, 0, sizeof(o));
	o.status = luaL_loadbufferx(L, code, strlen(code), "=snippet.lua", "t");
	if (o.status == LUA_OK) {
		sl_sandbox_pushenv(L);
		if (with_pause) { /* (a script cannot declare globals: the test can) */
			lua_pushliteral(L, "pause");
			lua_pushcfunction(L, with_pause);
			lua_rawset(L, -3);
		}
		lua_setupvalue(L, -2, 1);
		m = sl_sandbox_enter(L);
		if (reducing)
			sl_sandbox_reducing(L, 1);
		o.status = lua_pcall(L, 0, 1, 0);
		o.budget = sl_sandbox_exceeded(L, o.status);
		sl_sandbox_leave(L, m);
	}
	o.ms = now_ms() - t0;
	snprintf(o.msg, sizeof(o.msg), "%s",
	         lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
	lua_settop(L, top);
	return o;
}

static struct outcome run(lua_State *L, const char *code)
{
	return run_as(L, code, 0);
}

/* The snippet runs and returns the string `want`. */
static void returns(lua_State *L, const char *code, const char *want, const char *what)
{
	struct outcome o = run(L, code);

	if (!ok(o.status == LUA_OK && !strcmp(o.msg, want), "%s", what))
		diag("status %d, got '%s', want '%s'", o.status, o.msg, want);
}

/* The snippet fails with a message containing `want` and no budget. */
static void fails(lua_State *L, const char *code, const char *want, const char *what)
{
	struct outcome o = run(L, code);

	if (!ok(o.status != LUA_OK && !o.budget && strstr(o.msg, want), "%s", what))
		diag("status %d, budget %d, message '%s', want '%s'", o.status, o.budget, o.msg,
		     want);
}

/* The snippet exceeds budget b, within max_ms, and the message is the budget's. */
static void exceeds(lua_State *L, const char *code, enum sl_budget b, double max_ms,
                    const char *what)
{
	struct outcome o = run(L, code);
	const char *want = sl_sandbox_message(L, b);

	if (!ok(o.status != LUA_OK && o.budget == b && o.ms < max_ms, "%s", what))
		diag("status %d, budget %d (want %d), %.0f ms, message '%s'", o.status, o.budget, b,
		     o.ms, o.msg);
	else if (o.status != LUA_ERRMEM && strcmp(o.msg, want))
		diag("note: message '%s'", o.msg);
}

/* ---- the environment ------------------------------------------------------------ */

static void test_environment(void)
{
	lua_State *L = sandbox(1e7, 16 << 20, 2000);
	int top = lua_gettop(L);

	fails(L, "return io.open('/etc/passwd')", "'io' is not available", "no io");
	fails(L, "return os.execute('true')", "'os' is not available", "no os");
	fails(L, "return os.time()", "'os' is not available", "no os.time");
	fails(L, "debug.sethook()", "'debug' is not available", "no debug (nor debug.sethook)");
	fails(L, "return package.loadlib('x', 'y')", "'package' is not available", "no package");
	fails(L, "print('x')", "use ctx.log", "no print, with a hint");
	fails(L, "return dofile('/etc/passwd')", "'dofile' is not available", "no dofile");
	fails(L, "return loadfile('/etc/passwd')", "'loadfile' is not available", "no loadfile");
	fails(L, "return coroutine.create(print)", "'coroutine' is not available", "no coroutine");
	returns(L, "return tostring(string.dump)", "nil", "string.dump is absent");
	returns(L, "return tostring(('').dump)", "nil", "and absent through the string metatable");
	fails(L, "collectgarbage()", "only 'count'", "collectgarbage() refused");
	fails(L, "collectgarbage('step')", "only 'count'", "collectgarbage('step') refused");
	returns(L, "return type(collectgarbage('count'))", "number", "collectgarbage('count')");
	fails(L, "x = 1", "snippet.lua:1: assignment to undeclared global 'x'",
	      "a global write names the script and line");
	fails(L, "local a = 1\npairs = nil",
	      "snippet.lua:2: assignment to undeclared global 'pairs'",
	      "overwriting a standard global is a global write too");
	returns(L, "return tostring(undefined_name)", "nil", "reading an unknown global gives nil");
	fails(L, "string.upper = nil", "read-only table 'string'", "string is read-only");
	fails(L, "table.x = 1", "read-only table 'table'", "table is read-only");
	fails(L, "math.pi = 3", "read-only table 'math'", "math is read-only");
	fails(L, "sluice.null = 1", "read-only table 'sluice'", "sluice is read-only");
	fails(L, "rawset(string, 'upper', string.lower)", "read-only",
	      "rawset on a library is refused");
	fails(L, "rawset(_ENV, 'x', 1)", "read-only", "rawset on _ENV is refused");
	fails(L, "setmetatable(string, {})", "protected metatable", "a proxy's metatable stays");
	fails(L, "setmetatable(_ENV, {__index = function() end})", "protected metatable",
	      "setmetatable(_ENV, ...) fails");
	returns(L, "return tostring(getmetatable(''))", "false",
	        "getmetatable('') does not reach the string table");
	returns(L, "return tostring(getmetatable(_ENV))", "false", "nor does getmetatable(_ENV)");
	returns(L, "return ('abc'):upper() .. string.format('%d', 3)", "ABC3",
	        "string methods still work");
	returns(L, "local n = 0 for k in pairs(string) do n = n + 1 end return tostring(n > 10)",
	        "true", "pairs() over a library proxy lists the library");
	returns(L, "local f, s, k = pairs(string) return tostring(s == string)", "true",
	        "pairs() over a proxy does not hand out the table behind it");
	fails(L, "local f, s = pairs(string) local k, v = f(s) s[k] = 1", "read-only",
	      "so the library stays read-only");
	fails(L, "setmetatable({}, {__gc = function() end})", "__gc metamethods are not allowed",
	      "setmetatable with __gc is refused");
	returns(L,
	        "local t = setmetatable({}, {__index = function() return 7 end}) return "
	        "tostring(t.x)",
	        "7", "other metatables are fine");
	returns(L, "return tostring(getmetatable(sluice.array({})))", "false",
	        "the engine's array metatable is locked");
	returns(L, "return tostring(sluice.isarray(sluice.array({})))", "true",
	        "sluice.array works");
	fails(L, "return assert(load(string.char(27) .. 'LuaT'))", "binary chunk",
	      "load of a binary chunk fails");
	returns(L, "local f, e = load(string.char(27) .. 'LuaT') return tostring(e)",
	        "attempt to load a binary chunk (mode is 't')", "load returns nil, message for it");
	returns(L,
	        "local n = 0 return tostring(load(function() n = n + 1 if n == 1 then return"
	        " 'return 3' end end)())",
	        "3", "load of a reader function works");
	returns(L, "local f, e = load('return 1', 'c', 'b') return tostring(e)",
	        "attempt to load a text chunk (mode is 'b')", "load in mode 'b' refuses text");
	returns(L, "local f, e = load(string.char(27) .. 'LuaT', 'c', 'bt') return tostring(e)",
	        "attempt to load a binary chunk (processors may load text chunks only)",
	        "a binary chunk is refused in mode 'bt' too");
	returns(L, "local f, e = load(function() return {} end) return tostring(e)",
	        "snippet.lua:1: reader function must return a string",
	        "a bad reader is returned as nil, message");
	returns(L, "return load('return 1 + 1')() .. ''", "2", "load of text works");
	fails(L, "load('y = 1')()", "assignment to undeclared global 'y'",
	      "a loaded chunk cannot write globals either");
	returns(L, "local e = {} load('z = 5', 'c', 't', e)() return tostring(e.z)", "5",
	        "load with an explicit environment");
	fails(L, "require 'os'", "module 'os' is not available", "require 'os' is refused");
	fails(L, "require 'io'", "not available", "require 'io' is refused");
	fails(L, "require 'sluice.core'", "not available to processors", "sluice.core is refused");
	fails(L, "require 'sluice.testing'", "not available", "sluice.testing is refused");
	fails(L, "require 'sluice.../../etc/x'", "not a valid module name", "odd module names");
	fails(L, "require 'sluice.nosuchmodule'", "not found", "a missing sluice module");
	returns(L, "local c = require 'cjson' return c.encode({a = {1, 2}})", "{\"a\":[1,2]}",
	        "cjson.encode");
	returns(L, "local c = require 'cjson' return tostring(c.decode('[1,2]')[2])", "2.0",
	        "cjson.decode (Debian's cjson reads floats)");
	returns(L, "local c = require 'cjson' return tostring(c.decode('null') == c.null)", "true",
	        "cjson.null");
	returns(L,
	        "local c = require 'cjson' return tostring(c.encode_max_depth) .. tostring(c.new)"
	        " .. tostring(c.decode_max_depth) .. tostring(c.encode_keep_buffer)",
	        "nilnilnilnil", "cjson settings are not reachable");
	fails(L, "local c = require 'cjson' c.encode_max_depth = function() end",
	      "read-only table 'cjson'", "cjson is read-only");
	fails(L,
	      "local c = require 'cjson' local t = {} for i = 1, 40 do t = {t, t} end return "
	      "c.encode(t)",
	      "too large", "cjson.encode of a small graph with a huge JSON form is refused");
	returns(L, "return tostring(require('cjson') == require('cjson'))", "true",
	        "require caches cjson");
	is(lua_gettop(L), top, "the stack is back at its baseline");
	sl_sandbox_close(L);
}

/* ---- budgets --------------------------------------------------------------------------- */

static void test_budgets(void)
{
	lua_State *L = sandbox(1e6, 16 << 20, 3000);

	exceeds(L, "while true do end", SL_BUDGET_INSTRUCTIONS, 2500, "while true do end");
	exceeds(L, "while true do pcall(function() while true do end end) end",
	        SL_BUDGET_INSTRUCTIONS, 2500, "an infinite loop inside pcall");
	exceeds(L, "local ok = pcall(function() while true do end end) while not ok do end",
	        SL_BUDGET_INSTRUCTIONS, 2500, "pcall returns no false for a budget error");
	exceeds(L, "xpcall(function() while true do end end, function() while true do end end)",
	        SL_BUDGET_INSTRUCTIONS, 2500, "an xpcall handler never runs for a budget error");
	exceeds(L, "xpcall(function() error('x') end, function(m) while true do end end)",
	        SL_BUDGET_INSTRUCTIONS, 2500, "an xpcall handler that loops is stopped");
	exceeds(L,
	        "do local x <close> = setmetatable({}, {__close = function() while true do end "
	        "end}) end",
	        SL_BUDGET_INSTRUCTIONS, 2500, "a __close metamethod that loops");
	exceeds(L,
	        "local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
	        "while true do end",
	        SL_BUDGET_INSTRUCTIONS, 2500,
	        "a __close metamethod that loops after a budget error");
	exceeds(L, "local function f(n) return f(n + 1) + 1 end return f(1)", SL_BUDGET_MEMORY,
	        2500, "deep recursion ends at the memory budget");
	exceeds(L, "local s = string.rep('x', 64 << 20)", SL_BUDGET_MEMORY, 2500, "a string bomb");
	exceeds(L, "local s = 'x' while true do s = s .. s end", SL_BUDGET_MEMORY, 2500,
	        "a doubling string");
	exceeds(L, "return string.find(string.rep('a', 40), '(.-)(.-)(.-)(.-)(.-)(.-)x')",
	        SL_BUDGET_INSTRUCTIONS, 2500, "catastrophic pattern matching");
	exceeds(L, "return pcall(string.find, string.rep('a', 40), '(.-)(.-)(.-)(.-)(.-)(.-)x')",
	        SL_BUDGET_INSTRUCTIONS, 2500, "catastrophic pattern matching inside pcall");
	exceeds(L, "return ('a'):rep(40):match('(.-)(.-)(.-)(.-)(.-)(.-)x')",
	        SL_BUDGET_INSTRUCTIONS, 2500, "through the string metatable too");
	exceeds(L, "for a in ('('):rep(1e6):gmatch('%b()') do end", SL_BUDGET_INSTRUCTIONS, 2500,
	        "a quadratic %b scan");
	exceeds(L, "return ('a'):rep(2e6):find(('a'):rep(1e6) .. 'b', 1, true)",
	        SL_BUDGET_INSTRUCTIONS, 2500, "a quadratic plain find");
	returns(L, "return '[' .. string.rep('', 1 << 60) .. string.rep('', 1e15, '') .. ']'", "[]",
	        "string.rep of empty strings returns at once");
	exceeds(L, "table.move({}, 1, math.maxinteger - 1, 1, {})", SL_BUDGET_INSTRUCTIONS, 2500,
	        "table.move over a huge range");
	exceeds(L,
	        "local t = setmetatable({}, {__len = function() return 1 << 50 end}) "
	        "table.insert(t, 1, 0)",
	        SL_BUDGET_INSTRUCTIONS, 2500, "table.insert with a huge length");
	exceeds(L,
	        "local t = setmetatable({}, {__len = function() return 1 << 50 end}) "
	        "table.remove(t, 1)",
	        SL_BUDGET_INSTRUCTIONS, 2500, "table.remove with a huge length");
	exceeds(L,
	        "local t = setmetatable({}, {__index = function() return '' end}) table.concat(t, "
	        "'', 1, 1 << 50)",
	        SL_BUDGET_INSTRUCTIONS, 2500, "table.concat over a huge range");
	exceeds(L, "table.sort({3, 2, 1, 5, 4}, function(a, b) while true do end end)",
	        SL_BUDGET_INSTRUCTIONS, 2500, "a table.sort comparator that loops");
	returns(L, "local s = 0 for i = 1, 1000 do s = s + i end return tostring(s)", "500500",
	        "after budget errors the state works normally");
	sl_sandbox_close(L);

	/* Memory bombs that would take many instructions. */
	L = sandbox(1e9, 16 << 20, 5000);
	exceeds(L, "local t = {} for i = 1, 1e9 do t[i] = i end", SL_BUDGET_MEMORY, 4000,
	        "a table bomb");
	exceeds(L, "local t = {} while true do pcall(function() t[#t + 1] = {} end) end",
	        SL_BUDGET_MEMORY, 4000, "a table bomb inside pcall");
	exceeds(L, "local t = {} while true do t[#t + 1] = ('x'):rep(1000) .. #t end",
	        SL_BUDGET_MEMORY, 4000, "many strings");
	returns(L, "local t = {} for i = 1, 1e5 do t[i] = i end return tostring(#t)", "100000",
	        "the memory is back after a memory budget error");
	sl_sandbox_close(L);

	/* Wall clock only: the count hook still runs, to read the clock. */
	L = sandbox(0, 16 << 20, 300);
	exceeds(L, "while true do end", SL_BUDGET_WALLCLOCK, 2000, "the wall-clock budget");
	exceeds(L, "return string.find(string.rep('a', 60), '(.-)(.-)(.-)(.-)(.-)(.-)(.-)x')",
	        SL_BUDGET_WALLCLOCK, 2000, "a pattern stops at the wall clock");
	exceeds(L, "local s = ('return 1 ' .. ('+ 1 '):rep(1e6)) while true do load(s) end",
	        SL_BUDGET_WALLCLOCK, 2000, "compiling chunks stops at the wall clock");
	sl_sandbox_close(L);

	/* The default instruction budget: calls start without the hook, a watchdog
	 * samples long ones (sl_sandbox.c, "The late count hook"). Without the credit
	 * between the samples, 1e8 instructions would take minutes to be counted. */
	L = sandbox(1e8, 16 << 20, 0);
	exceeds(L, "while true do end", SL_BUDGET_INSTRUCTIONS, 4000,
	        "a loop under the late hook stops at the instruction budget");
	exceeds(L, "local i = 0 while true do i = i + 1 end", SL_BUDGET_INSTRUCTIONS, 4000,
	        "and so does one with arithmetic");
	returns(L, "local s = 0 for i = 1, 1.5e7 do s = s + i end return tostring(s)",
	        "112500007500000", "a long call within the budget runs to its end");
	/* Time the thread does not run (it waits for a core on a busy machine) is not
	 * credited as instructions: 2 s of it in a call that runs about 1e7 instructions
	 * stays within 1e8. */
	with_pause = l_pause;
	returns(L,
	        "local s = 0 for i = 1, 2e6 do s = s + i if i % 2e5 == 0 then pause(200) end end"
	        " return tostring(s)",
	        "2000001000000", "a long call is not charged for time it did not run");
	with_pause = NULL;
	returns(L, "local s = 0 for i = 1, 100 do s = s + i end return tostring(s)", "5050",
	        "and so does a short one");
	sl_sandbox_close(L);

	/* A memory budget too small to start. */
	{
		struct sl_limits lim = {0, 1000, 0};
		struct sl_diag d;
		lua_State *S = NULL;
		sl_diag_init(&d);
		ok(sl_sandbox_new(&S, "tiny", &lim, &d) && !S && strstr(d.msg, "memory budget"),
		   "a memory budget too small for Lua is reported: %s", d.msg);
	}
	/* No budgets at all: no hook. */
	L = sandbox(0, 0, 0);
	returns(L, "local s = 0 for i = 1, 1e6 do s = s + 1 end return tostring(s)", "1000000",
	        "without budgets code just runs");
	sl_sandbox_close(L);
}

static void test_reduce(void)
{
	lua_State *L = sandbox(1e7, 16 << 20, 2000);
	struct outcome o;

	o = run_as(L, "return math.random(10)", 1);
	ok(o.status != LUA_OK && strstr(o.msg, "math.random is not available in reduce"),
	   "math.random raises in reduce: %s", o.msg);
	o = run_as(L, "math.randomseed(1)", 1);
	ok(o.status != LUA_OK && strstr(o.msg, "math.randomseed is not available in reduce"),
	   "math.randomseed raises in reduce");
	o = run_as(L, "return collectgarbage('count')", 1);
	ok(o.status != LUA_OK && strstr(o.msg, "not available in reduce"),
	   "collectgarbage('count') raises in reduce");
	o = run_as(L, "return tostring(math.random(10) <= 10)", 0);
	ok(o.status == LUA_OK && !strcmp(o.msg, "true"), "math.random works outside reduce");
	ok(!sl_sandbox_in_reduce(L), "the flag is cleared after the call");
	sl_sandbox_close(L);
}

/* ---- strict mode helpers ---------------------------------------------------------------- */

/* Runs `change(t)` on t = `make()` after a snapshot and returns the diff. */
static int diff_after(lua_State *L, const char *make, const char *change, char *out, size_t n)
{
	int top = lua_gettop(L), rc;

	luaL_dostring(L, make);          /* top + 1: t */
	sl_sandbox_snapshot(L, top + 1); /* top + 2 */
	luaL_loadstring(L, change);
	lua_pushvalue(L, top + 1);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK)
		diag("change failed: %s", lua_tostring(L, -1));
	rc = sl_sandbox_diff(L, top + 1, top + 2, "state", out, n);
	lua_settop(L, top);
	return rc;
}

static void test_strict(void)
{
	static const char make[] = "local shared = {1, 2}\n"
				   "local t = {count = 1, items = {{name = 'a'}, {name = 'b'}},"
				   " a = shared, b = shared, f = 1.5}\n"
				   "t.self = t\n"
				   "return t";
	lua_State *L = luaL_newstate();
	char out[600];
	int top;

	luaL_openlibs(L);
	top = lua_gettop(L);
	ok(!diff_after(L, make, "local t = ...", out, sizeof(out)), "no change, no diff");
	ok(!diff_after(L, make, "local t = ... local x = t.items[1].name .. t.count", out,
	               sizeof(out)),
	   "reading is no change");
	ok(diff_after(L, make, "local t = ... t.count = 2", out, sizeof(out)) &&
	           !strcmp(out, "state.count was changed"),
	   "a changed field is named: %s", out);
	ok(diff_after(L, make, "local t = ... t.items[2].name = 'z'", out, sizeof(out)) &&
	           !strcmp(out, "state.items[2].name was changed"),
	   "a nested field is named: %s", out);
	ok(diff_after(L, make, "local t = ... t.items[2].extra = 1", out, sizeof(out)) &&
	           !strcmp(out, "state.items[2].extra was added"),
	   "an added field: %s", out);
	ok(diff_after(L, make, "local t = ... t.items[1].name = nil", out, sizeof(out)) &&
	           !strcmp(out, "state.items[1].name was removed"),
	   "a removed field: %s", out);
	ok(diff_after(L, make, "local t = ... t.items = {{name = 'a'}, {name = 'b'}}", out,
	              sizeof(out)) &&
	           !strcmp(out, "state.items was replaced"),
	   "a table replaced by an equal one: %s", out);
	ok(diff_after(L, make, "local t = ... t.b[1] = 9", out, sizeof(out)) &&
	           strstr(out, "[1] was changed"),
	   "a change through a shared table: %s", out);
	ok(diff_after(L, make, "local t = ... t.count = 1.0", out, sizeof(out)),
	   "an integer that became a float is a change");
	ok(diff_after(L, make, "local t = ... setmetatable(t.items, {})", out, sizeof(out)) &&
	           strstr(out, "metatable"),
	   "a new metatable is a change: %s", out);
	ok(diff_after(L, make, "local t = ... t['odd key'] = 1", out, sizeof(out)) &&
	           !strcmp(out, "state[\"odd key\"] was added"),
	   "keys that are not names are quoted: %s", out);
	luaL_dostring(L, "return {a = {1, 2, {x = 0/0}}}");
	luaL_dostring(L, "return {a = {1, 2, {x = 0/0}}}");
	ok(!sl_sandbox_compare(L, -2, -1, "state", out, sizeof(out)), "equal tables compare equal");
	lua_settop(L, top);
	luaL_dostring(L, "return {a = {1, 2, {x = 1}}}");
	luaL_dostring(L, "return {a = {1, 2, {x = 2}}}");
	ok(sl_sandbox_compare(L, -2, -1, "state", out, sizeof(out)) &&
	           !strcmp(out, "state.a[3].x differs"),
	   "a difference is named: %s", out);
	lua_settop(L, top);
	is(lua_gettop(L), top, "the stack is back at its baseline");
	lua_close(L);
}

/* ---- the pattern functions against the stock ones ------------------------------------------ */

static const char *const pattern_cases[] = {
	"return string.find('hello world', 'o w')",
	"return string.find('hello world', 'l+')",
	"return string.find('hello world', 'l+', 5)",
	"return string.find('hello world', 'l+', -3)",
	"return string.find('hello', '')",
	"return string.find('hello', '', 10)",
	"return string.find('a.b', '.', 1, true)",
	"return string.find('a+b', '+', 1, true)",
	"return string.find('abc', '^b')",
	"return string.find('abc', 'c$')",
	"return string.find('a$c', '$c')",
	"return string.match('key = value', '(%w+)%s*=%s*(%w+)')",
	"return string.match('  trim  ', '^%s*(.-)%s*$')",
	"return string.match('hello', '()ll()')",
	"return string.match('THE (quick) fox', '%((%a+)%)')",
	"return string.match('f(a(b)c)d', '%b()')",
	"return string.match('THE (quick) fox', '%f[%a]%a+')",
	"return string.match('abcabc', '(abc)%1')",
	"return string.match('2024-01-05', '(%d+)-(%d+)-(%d+)')",
	"return string.match('[x]', '[%[%]]')",
	"return string.match('a-z', '[a%-z]+')",
	"return string.match('abc123', '[^%d]+')",
	"return string.match('abc', 'b?c')",
	"return string.match('aaa', 'a-b')",
	"return string.match('aaab', 'a-b')",
	"return string.match('x', '%')",
	"return string.match('x', '[a')",
	"return string.match('x', '(x')",
	"return string.match('x', 'x)')",
	"return string.match('x', '%1')",
	"return string.match('x', '%b')",
	"return string.match('x', '%fx')",
	"return string.match('\\0a\\0', '%z*')",
	"return string.gsub('hello world', 'o', '0')",
	"return string.gsub('hello world', '(o)', '[%1]', 1)",
	"return string.gsub('hello', '', '-')",
	"return string.gsub('abc', '%w', '%0%0')",
	"return string.gsub('abc', '%w', '%%')",
	"return string.gsub('abc', '%w', '%2')",
	"return string.gsub('abc', '%w', '%x')",
	"return string.gsub('$name is $age', '%$(%w+)', {name = 'bob', age = 3})",
	"return string.gsub('a b c', '%a', function(c) if c == 'b' then return nil end return "
	"c:upper() end)",
	"return string.gsub('abc', '()', '%1')",
	"return string.gsub('^^x', '^%^', '')",
	"return string.gsub('abc', '.', {a = true})",
	"local r = {} for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') do r[#r+1] = k .. v end"
	" return table.concat(r, ',')",
	"local r = {} for w in string.gmatch('one two  three', '%a+') do r[#r+1] = w end"
	" return table.concat(r, ',')",
	"local r = {} for p in string.gmatch('abc', '()') do r[#r+1] = p end return "
	"table.concat(r, ',')",
	"local r = {} for w in string.gmatch('abcabc', 'b', 3) do r[#r+1] = w end return #r",
	"local r = {} for w in string.gmatch('xyz', '^x') do r[#r+1] = w end return #r",
	"return string.find(string.rep('a', 20) .. 'b', '(a*)(a*)b')",
	"return string.match(string.rep('(', 300) .. string.rep(')', 300), '%b()')",
	"return pcall(string.match, string.rep('a', 300), string.rep('(a)', 33))",
	"return pcall(string.match, 'a', string.rep('a?', 250))",
};

/* Runs code and serializes its results (or its error) into out. */
static void results_of(lua_State *L, const char *code, char *out, size_t n)
{
	int top = lua_gettop(L), i;
	size_t len = 0;

	out[0] = '\0';
	if (luaL_loadstring(L, code) || lua_pcall(L, 0, LUA_MULTRET, 0)) {
		snprintf(out, n, "error: %s", lua_tostring(L, -1));
		lua_settop(L, top);
		return;
	}
	for (i = top + 1; i <= lua_gettop(L) && len < n; i++) {
		snprintf(out + len, n - len, "%s%s:%s", i > top + 1 ? "|" : "", luaL_typename(L, i),
		         luaL_tolstring(L, i, NULL));
		lua_pop(L, 1);
		len = strlen(out);
	}
	lua_settop(L, top);
}

static void test_patterns(void)
{
	lua_State *stock = luaL_newstate();
	lua_State *L = sandbox(0, 0, 0);
	char want[2048], got[2048];
	size_t i, same = 0, n = sizeof(pattern_cases) / sizeof(pattern_cases[0]);
	int top;

	luaL_openlibs(stock);
	/* The snippets run with the sandbox's string table as the global `string`. */
	lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
	top = lua_gettop(L);
	for (i = 0; i < n; i++) {
		results_of(stock, pattern_cases[i], want, sizeof(want));
		results_of(L, pattern_cases[i], got, sizeof(got));
		if (!strcmp(want, got))
			same++;
		else
			diag("%s\n#   stock:   %s\n#   sandbox: %s", pattern_cases[i], want, got);
	}
	is(same, n, "the budgeted pattern functions agree with Lua's on %zu cases", n);
	lua_settop(L, top - 1);
	sl_sandbox_close(L);
	lua_close(stock);
}

int main(void)
{
	plan(114);
	test_environment();
	test_budgets();
	test_reduce();
	test_strict();
	test_patterns();
	return check_plan();
}
