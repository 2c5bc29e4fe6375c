/* fuzz_schema.c - libFuzzer target: JSON Schema compile and validate. The input is a
 * JSON array [schema, instance, instance, ...]: the schema is compiled and every
 * instance validated against it. */
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "fuzz_util.h"
#include "sl_luajson.h"
#include "sl_schema.h"

static lua_State *L;

/* Protected: decodes the input (light userdata at 1, length at 2) and runs the
 * schema over it. [-2, +0, m] */
static int run(lua_State *Ls)
{
	const char *text = lua_touserdata(Ls, 1);
	size_t len = (size_t)lua_tointeger(Ls, 2), i, n;
	struct sl_schema *s = NULL;
	struct sl_diag d;

	lua_settop(Ls, 0);
	sl_diag_init(&d);
	if (sl_lj_decode(Ls, text, len, SL_LJ_STRICT, &d) || !sl_lj_isarray(Ls, 1))
		return 0;
	n = (size_t)lua_rawlen(Ls, 1);
	if (n < 1)
		return 0;
	lua_rawgeti(Ls, 1, 1);
	if (sl_schema_compile(Ls, 2, "fuzz", &s, &d)) {
		FUZZ_ASSERT(d.msg[0], "a compile error without a message");
		return 0;
	}
	for (i = 2; i <= n; i++) {
		lua_rawgeti(Ls, 1, (lua_Integer)i);
		sl_diag_init(&d);
		if (sl_schema_validate(s, Ls, 3, &d))
			FUZZ_ASSERT(d.msg[0], "a validation error without a message");
		lua_pop(Ls, 1);
	}
	sl_schema_free(s); /* a memory error above leaks it: harmless while fuzzing */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!L && !(L = luaL_newstate()))
		abort();
	lua_pushcfunction(L, run);
	lua_pushlightuserdata(L, (void *)data);
	lua_pushinteger(L, (lua_Integer)size);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK)
		lua_pop(L, 1);
	FUZZ_ASSERT(lua_gettop(L) == 0, "stack at %d", lua_gettop(L));
	return 0;
}
