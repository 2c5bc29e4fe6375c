/* sl_sandbox_strict.c - strict mode's deep snapshots and comparisons (sl_sandbox.h):
 * they tell which field of a value a hook changed in place.
 * The walks count steps against the time budget through sl_sandbox_tick.
 */
#include "sl_sandbox.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "sl_luajson.h"

#define STRICT_DEPTH 300 /* nesting the strict-mode walks follow */

/* Private keys of the snapshot tables. */
static const char orig_key = 0, mt_key = 0;

/* Pushes a copy of the value at v (absolute); memo (absolute) maps originals to
 * their copies, so shared tables and cycles are copied once. [-0, +1, m] */
static void snap_value(lua_State *L, int v, int memo, int depth)
{
	int copy;

	if (!lua_istable(L, v)) {
		lua_pushvalue(L, v);
		return;
	}
	lua_pushvalue(L, v);
	if (lua_rawget(L, memo) != LUA_TNIL)
		return;
	lua_pop(L, 1);
	if (depth > STRICT_DEPTH)
		luaL_error(L, "strict: a table given to a hook is nested deeper than %d levels",
		           STRICT_DEPTH);
	luaL_checkstack(L, 6, "strict: nesting too deep");
	lua_newtable(L);
	copy = lua_gettop(L);
	lua_pushvalue(L, v);
	lua_pushvalue(L, copy);
	lua_rawset(L, memo);
	lua_pushvalue(L, v);
	lua_rawsetp(L, copy, &orig_key);
	if (lua_getmetatable(L, v))
		lua_rawsetp(L, copy, &mt_key);
	lua_pushnil(L);
	while (lua_next(L, v)) {
		snap_value(L, lua_gettop(L), memo, depth + 1); /* key, value, copy */
		lua_pushvalue(L, -3);
		lua_insert(L, -2);   /* key, value, key, copy */
		lua_rawset(L, copy); /* key, value */
		lua_pop(L, 1);
	}
}

void sl_sandbox_snapshot(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_newtable(L);
	snap_value(L, idx, lua_gettop(L), 0);
	lua_remove(L, -2);
}

/* A walk of two values with the path of where it is. */
struct cmp {
	lua_State *L;
	int seen; /* absolute index of a table of visited tables */
	char path[512];
	size_t len;
	char *out;
	size_t n;
	unsigned nodes;
};

/* Appends ".key", "[n]" or "[?]" for the key at idx to the path; returns the old
 * length, to restore. */
static size_t path_push(struct cmp *c, int idx)
{
	size_t old = c->len, room = sizeof(c->path) - c->len;
	const char *k, *p;
	int ident;

	if (lua_type(c->L, idx) == LUA_TSTRING) {
		k = lua_tostring(c->L, idx);
		ident = (*k < '0' || *k > '9') && *k;
		for (p = k; *p && ident; p++)
			ident = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			        (*p >= '0' && *p <= '9') || *p == '_';
		snprintf(c->path + c->len, room, ident ? ".%s" : "[\"%s\"]", k);
	} else if (lua_isinteger(c->L, idx)) {
		snprintf(c->path + c->len, room, "[%lld]", (long long)lua_tointeger(c->L, idx));
	} else {
		snprintf(c->path + c->len, room, "[%s]", luaL_typename(c->L, idx));
	}
	c->len = strlen(c->path);
	return old;
}

static int report(struct cmp *c, const char *what)
{
	snprintf(c->out, c->n, "%s %s", c->path, what);
	return 1;
}

/* Whether two non-table values are the same (1 and 1.0 are not; NaN is NaN). */
static int same_scalar(lua_State *L, int a, int b)
{
	if (lua_type(L, a) == LUA_TNUMBER && lua_type(L, b) == LUA_TNUMBER) {
		lua_Number x = lua_tonumber(L, a), y = lua_tonumber(L, b);
		if (lua_isinteger(L, a) != lua_isinteger(L, b))
			return 0;
		return lua_rawequal(L, a, b) || (isnan(x) && isnan(y));
	}
	return lua_rawequal(L, a, b);
}

/* Marks the table at idx visited; returns whether it had been. */
static int visited(struct cmp *c, int idx)
{
	int was;

	lua_pushvalue(c->L, idx);
	was = lua_rawget(c->L, c->seen) != LUA_TNIL;
	lua_pop(c->L, 1);
	if (!was) {
		lua_pushvalue(c->L, idx);
		lua_pushboolean(c->L, 1);
		lua_rawset(c->L, c->seen);
	}
	return was;
}

static int diff_table(struct cmp *c, int a, int s, int depth);

/* Compares the current value at a with its snapshot at s. */
static int diff_value(struct cmp *c, int a, int s, int depth)
{
	lua_State *L = c->L;
	int rc;

	if (!lua_istable(L, s))
		return same_scalar(L, a, s)
		               ? 0
		               : report(c, lua_isnil(L, a) ? "was removed" : "was changed");
	lua_rawgetp(L, s, &orig_key); /* the table that was there */
	rc = !lua_rawequal(L, a, -1);
	lua_pop(L, 1);
	if (rc)
		return report(c, lua_isnil(L, a) ? "was removed" : "was replaced");
	if (visited(c, a))
		return 0;
	return diff_table(c, a, s, depth + 1);
}

static int diff_table(struct cmp *c, int a, int s, int depth)
{
	lua_State *L = c->L;
	size_t old;
	int top = lua_gettop(L), rc = 0;

	if (++c->nodes % 1024 == 0)
		sl_sandbox_tick(L, 1024);
	if (depth > STRICT_DEPTH)
		return 0;
	luaL_checkstack(L, 8, "strict: nesting too deep");
	if (!lua_getmetatable(L, a))
		lua_pushnil(L);
	lua_rawgetp(L, s, &mt_key);
	if (!lua_rawequal(L, -1, -2))
		return lua_settop(L, top), report(c, "had its metatable changed");
	lua_settop(L, top);
	lua_pushnil(L);
	while (!rc && lua_next(L, s)) { /* every key of the snapshot: changed or removed */
		if (lua_type(L, -2) == LUA_TLIGHTUSERDATA) { /* orig_key, mt_key */
			lua_pop(L, 1);
			continue;
		}
		lua_pushvalue(L, -2);
		lua_rawget(L, a);
		old = path_push(c, top + 1);
		rc = diff_value(c, top + 3, top + 2, depth);
		c->path[c->len = old] = '\0';
		lua_settop(L, top + 1);
	}
	lua_settop(L, top);
	lua_pushnil(L);
	while (!rc && lua_next(L, a)) { /* every key now: added */
		lua_pushvalue(L, -2);
		if (lua_rawget(L, s) == LUA_TNIL) {
			path_push(c, top + 1);
			rc = report(c, "was added");
		}
		lua_settop(L, top + 1);
	}
	lua_settop(L, top);
	return rc;
}

/* Starts a comparison at path `root`; pushes the table of visited pairs.
 * [-0, +1, m] */
static void cmp_init(struct cmp *c, lua_State *L, const char *root, char *out, size_t n)
{
	memset(c, 0, sizeof(*c));
	c->L = L;
	c->out = out;
	c->n = n;
	snprintf(c->path, sizeof(c->path), "%s", root);
	c->len = strlen(c->path);
	lua_newtable(L);
	c->seen = lua_gettop(L);
}

int sl_sandbox_diff(lua_State *L, int idx, int snap, const char *root, char *out, size_t n)
{
	struct cmp c;
	int rc;

	idx = lua_absindex(L, idx);
	snap = lua_absindex(L, snap);
	cmp_init(&c, L, root, out, n);
	rc = diff_value(&c, idx, snap, 0);
	lua_pop(L, 1);
	return rc;
}

/* Compares two independent values by content. */
static int cmp_value(struct cmp *c, int a, int b, int depth)
{
	lua_State *L = c->L;
	int top = lua_gettop(L), rc = 0;
	size_t old;

	if (!lua_istable(L, a) || !lua_istable(L, b))
		return same_scalar(L, a, b) ? 0 : report(c, "differs");
	if (++c->nodes % 1024 == 0)
		sl_sandbox_tick(L, 1024);
	if (depth > STRICT_DEPTH || lua_rawequal(L, a, b) || visited(c, a))
		return 0; /* a table reached twice (shared, or a cycle) is compared once */
	if (sl_lj_isarray(L, a) != sl_lj_isarray(L, b))
		return report(c, "differs (array or object)");
	luaL_checkstack(L, 6, "strict: nesting too deep");
	lua_pushnil(L);
	while (!rc && lua_next(L, a)) {
		lua_pushvalue(L, -2);
		lua_rawget(L, b);
		old = path_push(c, top + 1);
		rc = cmp_value(c, top + 2, top + 3, depth + 1);
		c->path[c->len = old] = '\0';
		lua_settop(L, top + 1);
	}
	lua_settop(L, top);
	lua_pushnil(L);
	while (!rc && lua_next(L, b)) {
		lua_pushvalue(L, -2);
		if (lua_rawget(L, a) == LUA_TNIL) {
			path_push(c, top + 1);
			rc = report(c, "differs");
		}
		lua_settop(L, top + 1);
	}
	lua_settop(L, top);
	return rc;
}

int sl_sandbox_compare(lua_State *L, int a, int b, const char *root, char *out, size_t n)
{
	struct cmp c;
	int rc;

	a = lua_absindex(L, a);
	b = lua_absindex(L, b);
	cmp_init(&c, L, root, out, n);
	rc = cmp_value(&c, a, b, 0);
	lua_pop(L, 1);
	return rc;
}
