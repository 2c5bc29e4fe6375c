/* sl_sandbox_lib.c - the library functions scripts get in budgeted form.
 *
 * A budget is checked by the count hook between VM instructions, by the allocator
 * and by loops that call sl_sandbox_tick(). A library function that runs a long loop
 * in C without allocating escapes all three, and a script calling it over and over
 * runs thousands of such calls between two runs of the count hook. Every function
 * the sandbox allows was sorted into one of these kinds (the README's "Sandbox and
 * budgets" lists them for users):
 *
 *   - constant time, or linear in what it allocates (the allocator checks the clock
 *     before every block of 64 KiB or more): left as they are (math.*, string.len,
 *     sub, lower, upper, reverse, char, utf8.char, table.pack, select, type, ...);
 *   - linear in the size of their arguments, which the memory budget bounds, but
 *     allocating less than they scan: one call takes at most a few tens of
 *     milliseconds, so each long call checks the budgets, and a loop of them stops
 *     at the first call past the wall clock. string.byte, tonumber and rawequal are
 *     reimplemented here and count a scan of more than SCAN_FREE bytes (a short
 *     call costs what the stock one does); string.format, pack, packsize, unpack,
 *     utf8.codepoint, len, offset, codes and its iterator, and table.unpack are the
 *     stock functions, checked on every call ("checked" below); next (and the next
 *     pairs returns) checks on every call;
 *   - loops not bounded by their arguments' size: string.rep (its count), table.sort
 *     (n log n comparisons), table.insert/remove/move/concat (a __len or a range),
 *     the pattern functions (sl_strmatch.c): implemented here (or there) with a step
 *     count inside the loop.
 *
 * A checked function calls the stock one from C. Such a call would change the stock
 * function's error messages: luaL_argerror finds no name for a function called from
 * C ("bad argument #1 to '?'") and luaL_error no position. So the stock function
 * runs under a message handler that notes whether it raised the error itself, and
 * such an error is raised again from the wrapper's own frame: through luaL_argerror
 * for an argument error (the name and "calling on bad self" come out as stock Lua
 * makes them), with the caller's position for any other message.
 *
 * Parts of this file follow Lua 5.4.4's lstrlib.c and ltablib.c (str_rep, sort,
 * luaB_pairs, luaB_next), under Lua's license (see sl_strmatch.c).
 */
#include "sl_sandbox_int.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "sl_lstack.h"
#include "sl_sandbox.h"

#define REP_CHUNK 65536u              /* bytes string.rep copies between two budget checks */
#define SORT_STEP 256u                /* comparisons of table.sort between two budget checks */
#define MAXSIZE_REP ((size_t)INT_MAX) /* lstrlib's MAXSIZE on 64-bit systems */
#define SCAN_FREE 4096u               /* bytes a call may scan in C without a budget check */

/* ---- checked calls of stock functions ------------------------------------------ */

/* Set by the message handler of a checked call: whether the error being raised was
 * raised by the stock function itself (its frame is level 1). A state is used by one
 * thread at a time, and the handler's result is read right after the pcall that ran
 * it (an inner checked call re-raises from its own frame, which resets the flag). */
static _Thread_local int raised_by_stock;

/* Message handler of a checked call (the stock function at upvalue 1): notes the
 * origin of the error and passes it on unchanged. [-1, +1, -] */
static int note_origin(lua_State *L)
{
	lua_Debug ar;

	raised_by_stock = 0;
	if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "f", &ar)) {
		raised_by_stock = lua_rawequal(L, -1, lua_upvalueindex(1));
		lua_pop(L, 1);
	}
	return 1;
}

/* Whether msg is an error of Lua's core (lvm, ltable, ldo), which never carries a
 * position when it happens in a C function; any other message of a stock function
 * comes from luaL_error, which adds the position of the function's caller. */
static int is_core_error(const char *msg)
{
	static const char *const core[] = {"attempt to ",
	                                   "table index is ",
	                                   "stack overflow",
	                                   "C stack overflow",
	                                   "string length overflow",
	                                   "'__index' chain too long",
	                                   "'__newindex' chain too long",
	                                   NULL};
	int i;

	for (i = 0; core[i]; i++)
		if (!strncmp(msg, core[i], strlen(core[i])))
			return 1;
	return 0;
}

/* Raises the error on top of the stack, which a checked call's pcall returned with
 * `status`, as if the wrapper had raised it. [-1, +0, v] */
static int raise_as_own(lua_State *L, int status)
{
	const char *msg;
	int arg = 0, off = 0;
	size_t len;

	sl_sandbox_rethrow(L, status); /* budget errors go on as they are */
	if (status != LUA_ERRRUN || !raised_by_stock || lua_type(L, -1) != LUA_TSTRING)
		return lua_error(L);
	msg = lua_tolstring(L, -1, &len);
	if (sscanf(msg, "bad argument #%d to '?' (%n", &arg, &off) == 1 && off > 0 &&
	    msg[len - 1] == ')') {
		lua_pushlstring(L, msg + off, len - (size_t)off - 1);
		return luaL_argerror(L, arg, lua_tostring(L, -1));
	}
	if (!is_core_error(msg)) { /* luaL_error found no position: a C function */
		luaL_where(L, 1);
		lua_insert(L, -2);
		lua_concat(L, 2);
	}
	return lua_error(L);
}

/* Calls the stock function (upvalue 1, its handler at upvalue 2) with the arguments
 * and returns its results. [-n, +m, e] */
static int call_stock(lua_State *L)
{
	int n = lua_gettop(L), status;

	lua_pushvalue(L, lua_upvalueindex(2));
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_rotate(L, 1, 2); /* handler, function, arguments */
	status = lua_pcall(L, n, LUA_MULTRET, 1);
	if (status != LUA_OK)
		return raise_as_own(L, status);
	return lua_gettop(L) - 1;
}

/* A checked function: the budgets are checked, then the stock function runs.
 * [-n, +m, e] */
static int checked(lua_State *L)
{
	sl_sandbox_tick(L, 1);
	return call_stock(L);
}

/* math.random and math.randomseed: checked, and refused in reduce. [-n, +m, e] */
static int checked_random(lua_State *L)
{
	sl_sandbox_no_reduce(L, lua_tostring(L, lua_upvalueindex(3)));
	return call_stock(L);
}

/* Pushes the stock function at idx wrapped by fn, with the handler, and `extra`
 * further upvalues from the top of the stack (they are popped). [-extra, +1, m] */
static void push_wrapped(lua_State *L, int idx, lua_CFunction fn, int extra)
{
	idx = lua_absindex(L, idx);
	lua_pushvalue(L, idx);
	lua_pushvalue(L, idx);
	lua_pushcclosure(L, note_origin, 1);
	if (extra)
		lua_rotate(L, -2 - extra, 2);
	lua_pushcclosure(L, fn, 2 + extra);
}

/* Replaces field `name` of the table at -1 by the checked form of it. [-0, +0, m] */
static void check_field(lua_State *L, const char *name, lua_CFunction fn)
{
	lua_getfield(L, -1, name);
	push_wrapped(L, -1, fn, 0);
	lua_setfield(L, -3, name);
	lua_pop(L, 1);
}

/* utf8.codes(s [, lax]): checked, and so is the iterator it returns. The stock
 * iterators are upvalues 3 and 5, their checked forms 4 and 6. [-(1|2), +3, e] */
static int checked_codes(lua_State *L)
{
	int n = checked(L), i;

	for (i = 3; i <= 5; i += 2)
		if (n == 3 && lua_rawequal(L, -3, lua_upvalueindex(i))) {
			lua_pushvalue(L, lua_upvalueindex(i + 1));
			lua_replace(L, -4);
		}
	return n;
}

/* Replaces utf8.codes (the utf8 table at -1) by checked_codes. [-0, +0, e] */
static void check_codes(lua_State *L)
{
	int i;

	lua_getfield(L, -1, "codes");
	for (i = 0; i < 2; i++) { /* the strict and the lax iterator */
		lua_pushvalue(L, -1 - 2 * i);
		lua_pushliteral(L, "");
		lua_pushboolean(L, i);
		lua_call(L, 2, 1);
		push_wrapped(L, -1, checked, 0);
	}
	push_wrapped(L, -5, checked_codes, 4);
	lua_setfield(L, -3, "codes");
	lua_pop(L, 1);
}

/* Counts a scan of n bytes in C (as the pattern functions do: a step per 64
 * bytes); short scans cost nothing, so the common calls stay as fast as stock
 * Lua's. [-0, +0, v] */
static void tick_scan(lua_State *L, size_t n)
{
	if (n >= SCAN_FREE)
		sl_sandbox_tick(L, (unsigned)(n / 64 < UINT_MAX ? n / 64 : UINT_MAX));
}

/* ---- base functions ------------------------------------------------------------------ */

/* next(t [, k]), as luaB_next, checked: a table with a large empty array part makes
 * one call scan it. [-(1|2), +(1|2), e] */
static int sb_next(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	sl_sandbox_tick(L, 1);
	lua_settop(L, 2);
	if (lua_next(L, 1))
		return 2;
	lua_pushnil(L);
	return 1;
}

/* Continuation of pairs after a __pairs metamethod: its three results. [-0, +0, -] */
static int pairs_cont(lua_State *L, int status, lua_KContext k)
{
	(void)L;
	(void)status;
	(void)k;
	return 3;
}

/* pairs(t), as luaB_pairs, handing out the checked next. [-1, +3, e] */
static int sb_pairs(lua_State *L)
{
	luaL_checkany(L, 1);
	if (luaL_getmetafield(L, 1, "__pairs") == LUA_TNIL) {
		lua_pushcfunction(L, sb_next);
		lua_pushvalue(L, 1);
		lua_pushnil(L);
	} else {
		lua_pushvalue(L, 1);
		lua_callk(L, 1, 3, 0, pairs_cont);
	}
	return 3;
}

/* tonumber's conversion in a base (lbaselib's b_str2int). */
static const char *b_str2int(const char *s, int base, lua_Integer *pn)
{
	lua_Unsigned n = 0;
	int neg = 0, digit;

	s += strspn(s, " \f\n\r\t\v");
	if (*s == '-') {
		s++;
		neg = 1;
	} else if (*s == '+') {
		s++;
	}
	if (!isalnum((unsigned char)*s))
		return NULL;
	do {
		digit = isdigit((unsigned char)*s) ? *s - '0'
		                                   : (toupper((unsigned char)*s) - 'A') + 10;
		if (digit >= base)
			return NULL;
		n = n * (lua_Unsigned)base + (lua_Unsigned)digit;
		s++;
	} while (isalnum((unsigned char)*s));
	s += strspn(s, " \f\n\r\t\v");
	*pn = (lua_Integer)(neg ? 0u - n : n);
	return s;
}

/* tonumber(v [, base]), as luaB_tonumber, counting the scan of a long string.
 * [-(1|2), +1, e] */
static int sb_tonumber(lua_State *L)
{
	size_t l;
	const char *s;
	lua_Integer n = 0, base;

	if (lua_isnoneornil(L, 2)) {
		if (lua_type(L, 1) == LUA_TNUMBER) {
			lua_settop(L, 1);
			return 1;
		}
		if ((s = lua_tolstring(L, 1, &l)) != NULL) {
			tick_scan(L, l);
			if (lua_stringtonumber(L, s) == l + 1)
				return 1;
		}
		luaL_checkany(L, 1);
	} else {
		base = luaL_checkinteger(L, 2);
		luaL_checktype(L, 1, LUA_TSTRING);
		s = lua_tolstring(L, 1, &l);
		luaL_argcheck(L, 2 <= base && base <= 36, 2, "base out of range");
		tick_scan(L, l);
		if (b_str2int(s, (int)base, &n) == s + l) {
			lua_pushinteger(L, n);
			return 1;
		}
	}
	lua_pushnil(L);
	return 1;
}

/* rawequal(a, b), as luaB_rawequal: comparing two long strings is a memcmp.
 * [-2, +1, e] */
static int sb_rawequal(lua_State *L)
{
	luaL_checkany(L, 1);
	luaL_checkany(L, 2);
	if (lua_type(L, 1) == LUA_TSTRING && lua_type(L, 2) == LUA_TSTRING)
		tick_scan(L, lua_rawlen(L, 1));
	lua_pushboolean(L, lua_rawequal(L, 1, 2));
	return 1;
}

/* ---- string.byte and string.rep
 * -------------------------------------------------------------------- */

/* As lstrlib's posrelatI: a start position in [1, inf). */
static size_t posrelat_start(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	if (pos == 0 || pos < -(lua_Integer)len)
		return 1;
	return len + (size_t)pos + 1;
}

/* As lstrlib's getendpos: an end position in [0, len]. [-0, +0, v] */
static size_t end_pos(lua_State *L, int arg, lua_Integer def, size_t len)
{
	lua_Integer pos = luaL_optinteger(L, arg, def);

	if (pos > (lua_Integer)len)
		return len;
	if (pos >= 0)
		return (size_t)pos;
	if (pos < -(lua_Integer)len)
		return 0;
	return len + (size_t)pos + 1;
}

/* string.byte(s [, i [, j]]), as str_byte, counting what it pushes.
 * [-(1..3), +n, e] */
static int sb_byte(lua_State *L)
{
	size_t l, posi, pose;
	const char *s = luaL_checklstring(L, 1, &l);
	lua_Integer pi = luaL_optinteger(L, 2, 1);
	int n, i;

	posi = posrelat_start(pi, l);
	pose = end_pos(L, 3, pi, l);
	if (posi > pose)
		return 0;
	if (pose - posi >= (size_t)INT_MAX)
		return luaL_error(L, "string slice too long");
	n = (int)(pose - posi) + 1;
	luaL_checkstack(L, n, "string slice too long");
	tick_scan(L, (size_t)n * 16);
	for (i = 0; i < n; i++)
		lua_pushinteger(L, (unsigned char)s[posi + (size_t)i - 1]);
	return n;
}

/* string.rep(s, n [, sep]), as str_rep, counting its copies: with empty strings the
 * stock loop runs n times without allocating. [-(2|3), +1, m] */
static int sb_rep(lua_State *L)
{
	size_t l, lsep, total, work = 0;
	const char *s = luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	const char *sep = luaL_optlstring(L, 3, "", &lsep);
	luaL_Buffer b;
	char *p;

	if (n <= 0 || l + lsep == 0) { /* the stock loop would copy nothing, n times */
		lua_pushliteral(L, "");
		return 1;
	}
	if (l + lsep < l || l + lsep > MAXSIZE_REP / (size_t)n)
		return luaL_error(L, "resulting string too large");
	total = (size_t)n * l + (size_t)(n - 1) * lsep;
	p = luaL_buffinitsize(L, &b, total);
	while (n-- > 1) {
		memcpy(p, s, l);
		p += l;
		if (lsep > 0) {
			memcpy(p, sep, lsep);
			p += lsep;
		}
		if ((work += l + lsep + 16) >= REP_CHUNK) {
			sl_sandbox_tick(L, (unsigned)(work / 64));
			work = 0;
		}
	}
	memcpy(p, s, l);
	luaL_pushresultsize(&b, total);
	return 1;
}

/* ---- table.sort ------------------------------------------------------------------------ */

typedef unsigned int IdxT;
#define RANLIMIT 100u

struct sort {
	lua_State *L;
	unsigned steps;
	unsigned seed; /* for pivots of imbalanced partitions */
};

/* Stock Lua randomizes a pivot from the clock; reduce must be deterministic, so the
 * sandbox draws it from a fixed sequence. */
static unsigned next_rnd(struct sort *st)
{
	st->seed = st->seed * 1103515245u + 12345u;
	return st->seed | 1u;
}

/* t[i] = top, t[j] = the value below it. [-2, +0, e] */
static void set2(lua_State *L, IdxT i, IdxT j)
{
	lua_seti(L, 1, i);
	lua_seti(L, 1, j);
}

/* Whether a < b (values at a and b), by the order function at 2 or by "<".
 * [-0, +0, e] */
static int sort_comp(struct sort *st, int a, int b)
{
	lua_State *L = st->L;
	int res;

	if (++st->steps >= SORT_STEP) {
		sl_sandbox_tick(L, SORT_STEP / 4);
		st->steps = 0;
	}
	if (lua_isnil(L, 2))
		return lua_compare(L, a, b, LUA_OPLT);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, a - 1);
	lua_pushvalue(L, b - 2);
	lua_call(L, 2, 1);
	res = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return res;
}

/* Partitions t[lo..up] around the pivot P on top (a[up - 1] == P); returns P's
 * final index. [-1, +0, e] */
static IdxT partition(struct sort *st, IdxT lo, IdxT up)
{
	lua_State *L = st->L;
	IdxT i = lo, j = up - 1;

	for (;;) {
		while (lua_geti(L, 1, ++i), sort_comp(st, -1, -2)) {
			if (i == up - 1)
				luaL_error(L, "invalid order function for sorting");
			lua_pop(L, 1);
		}
		while (lua_geti(L, 1, --j), sort_comp(st, -3, -1)) {
			if (j < i)
				luaL_error(L, "invalid order function for sorting");
			lua_pop(L, 1);
		}
		if (j < i) {
			lua_pop(L, 1);
			set2(L, up - 1, i);
			return i;
		}
		set2(L, i, j);
	}
}

static IdxT choose_pivot(IdxT lo, IdxT up, unsigned rnd)
{
	IdxT r4 = (up - lo) / 4;

	return rnd % (r4 * 2) + (lo + r4);
}

/* Orders a[lo], a[p] and a[up]; returns 0 when [lo, up] is sorted by that.
 * [-0, +0, e] */
static int sort3(struct sort *st, IdxT lo, IdxT p, IdxT up)
{
	lua_State *L = st->L;

	lua_geti(L, 1, lo);
	lua_geti(L, 1, up);
	if (sort_comp(st, -1, -2))
		set2(L, lo, up);
	else
		lua_pop(L, 2);
	if (up - lo == 1)
		return 0;
	lua_geti(L, 1, p);
	lua_geti(L, 1, lo);
	if (sort_comp(st, -2, -1)) {
		set2(L, p, lo);
	} else {
		lua_pop(L, 1);
		lua_geti(L, 1, up);
		if (sort_comp(st, -1, -2))
			set2(L, p, up);
		else
			lua_pop(L, 2);
	}
	return up - lo != 2;
}

/* Sorts t[lo..up] (ltablib's auxsort). [-0, +0, e] */
static void auxsort(struct sort *st, IdxT lo, IdxT up, unsigned rnd)
{
	lua_State *L = st->L;

	while (lo < up) { /* a loop for the tail call */
		IdxT p, n;

		p = up - lo < RANLIMIT || rnd == 0 ? (lo + up) / 2 : choose_pivot(lo, up, rnd);
		if (!sort3(st, lo, p, up))
			break;
		lua_geti(L, 1, p); /* the pivot */
		lua_pushvalue(L, -1);
		lua_geti(L, 1, up - 1);
		set2(L, p, up - 1);
		p = partition(st, lo, up);
		if (p - lo < up - p) {
			auxsort(st, lo, p - 1, rnd);
			n = p - lo;
			lo = p + 1;
		} else {
			auxsort(st, p + 1, up, rnd);
			n = up - p;
			up = p - 1;
		}
		if ((up - lo) / 128 > n)
			rnd = next_rnd(st);
	}
}

/* As ltablib's checktab for table.sort: a table, or a value with __index,
 * __newindex and __len. [-0, +0, v] */
static void check_sortable(lua_State *L)
{
	static const char *const fields[] = {"__index", "__newindex", "__len"};
	int ok = 0, i;

	if (lua_type(L, 1) == LUA_TTABLE)
		return;
	if (lua_getmetatable(L, 1)) {
		for (ok = 1, i = 0; i < 3; i++) {
			lua_pushstring(L, fields[i]);
			ok = lua_rawget(L, -2) != LUA_TNIL && ok;
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	if (!ok)
		luaL_checktype(L, 1, LUA_TTABLE); /* raises */
}

/* table.sort(t [, comp]), as ltablib's sort, counting its comparisons.
 * [-(1|2), +0, e] */
static int sb_sort(lua_State *L)
{
	struct sort st = {L, 0, 0x2545f491u};
	lua_Integer n;

	check_sortable(L);
	n = luaL_len(L, 1);
	if (n > 1) {
		luaL_argcheck(L, n < INT_MAX, 1, "array too big");
		if (!lua_isnoneornil(L, 2))
			luaL_checktype(L, 2, LUA_TFUNCTION);
		lua_settop(L, 2);
		auxsort(&st, 1, (IdxT)n, 0);
	}
	return 0;
}

/* ---- the libraries ------------------------------------------------------------------- */

static const char *const checked_string[] = {"format", "pack", "packsize", "unpack", NULL};
static const char *const checked_utf8[] = {"codepoint", "len", "offset", NULL};

/* Applies check_field to each name of the library table at -1. [-0, +0, m] */
static void check_fields(lua_State *L, const char *const *names)
{
	int i;

	for (i = 0; names[i]; i++)
		check_field(L, names[i], checked);
}

void sl_sandbox_budget_libs(lua_State *L)
{
	SL_STACK_ENTER(L);
	static const char *const randoms[] = {"random", "randomseed"};
	char what[32];
	int i;

	lua_pushglobaltable(L);
	lua_pushcfunction(L, sb_tonumber);
	lua_setfield(L, -2, "tonumber");
	lua_pushcfunction(L, sb_rawequal);
	lua_setfield(L, -2, "rawequal");
	lua_pushcfunction(L, sb_next);
	lua_setfield(L, -2, "next");
	lua_pushcfunction(L, sb_pairs);
	lua_setfield(L, -2, "pairs");
	lua_getfield(L, -1, LUA_STRLIBNAME);
	check_fields(L, checked_string);
	lua_pushcfunction(L, sb_rep);
	lua_setfield(L, -2, "rep");
	lua_pushcfunction(L, sb_byte);
	lua_setfield(L, -2, "byte");
	lua_pop(L, 1);
	lua_getfield(L, -1, LUA_TABLIBNAME);
	check_field(L, "unpack", checked);
	lua_pushcfunction(L, sb_sort);
	lua_setfield(L, -2, "sort");
	lua_pop(L, 1);
	lua_getfield(L, -1, LUA_UTF8LIBNAME);
	check_fields(L, checked_utf8);
	check_codes(L);
	lua_pop(L, 1);
	lua_getfield(L, -1, LUA_MATHLIBNAME);
	for (i = 0; i < 2; i++) {
		lua_getfield(L, -1, randoms[i]);
		snprintf(what, sizeof(what), "math.%s", randoms[i]);
		lua_pushstring(L, what);
		push_wrapped(L, -2, checked_random, 1);
		lua_setfield(L, -3, randoms[i]);
		lua_pop(L, 1);
	}
	lua_pop(L, 2);
	SL_STACK_CHECK(L, 0);
}
