/* fuzz_json.c - libFuzzer target: the strict JSON checker (sl_json_check,
 * sl_json_members) and the decoder (sl_lj_decode) on the same input.
 *
 * Checks, besides the sanitizers: both accept exactly the same documents and refuse
 * the others with the same message (sl_luajson.h says so); a decoded document
 * encodes to text the checker accepts, which decodes and encodes to the same text
 * again; sl_json_members accepts exactly the objects the checker accepts; the lax
 * decoder's fast path and its yajl path (SL_LJ_SLOW) give the same value or the same
 * message. */
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "fuzz_util.h"
#include "sl_buf.h"
#include "sl_json.h"
#include "sl_luajson.h"

static lua_State *L;

struct job {
	const char *text;
	size_t len;
	int rc;
	struct sl_buf out; /* the encoded value */
	struct sl_buf again;
	struct sl_diag d;
};

/* Protected: decodes j->text, encodes the value, and re-decodes and re-encodes that
 * text. [-1, +0, m] */
static int run(lua_State *Ls)
{
	struct job *j = lua_touserdata(Ls, 1);
	struct sl_diag d2;

	lua_settop(Ls, 0);
	if ((j->rc = sl_lj_decode(Ls, j->text, j->len, SL_LJ_STRICT, &j->d)))
		return 0;
	sl_diag_init(&d2);
	FUZZ_ASSERT(!sl_lj_encode(Ls, 1, "value", &j->out, &d2), "encode: %s", d2.msg);
	FUZZ_ASSERT(!sl_json_check(j->out.ptr, j->out.len, NULL, &d2), "check of '%s': %s",
	            j->out.ptr, d2.msg);
	FUZZ_ASSERT(!sl_lj_decode(Ls, j->out.ptr, j->out.len, SL_LJ_STRICT, &d2), "decode: %s",
	            d2.msg);
	FUZZ_ASSERT(!sl_lj_encode(Ls, 2, "value", &j->again, &d2), "encode: %s", d2.msg);
	FUZZ_ASSERT(j->out.len == j->again.len && !memcmp(j->out.ptr, j->again.ptr, j->out.len),
	            "'%s' encodes again as '%s'", j->out.ptr, j->again.ptr);
	lua_settop(Ls, 0);
	return 0;
}

/* Protected: the lax decode of j->text, fast path (flags 0) or yajl (SL_LJ_SLOW), its
 * outcome described in j->out: the encoded value or the message. [-2, +0, m] */
static int lax(lua_State *Ls)
{
	struct job *j = lua_touserdata(Ls, 1);
	int flags = (int)lua_tointeger(Ls, 2);
	struct sl_diag d2;

	lua_settop(Ls, 0);
	sl_diag_init(&d2);
	if ((j->rc = sl_lj_decode(Ls, j->text, j->len, flags, &j->d))) {
		sl_buf_addf(&j->out, "error %d %s", j->rc, j->d.msg);
		return 0;
	}
	FUZZ_ASSERT(lua_gettop(Ls) == 1, "lax decode pushed %d values", lua_gettop(Ls));
	FUZZ_ASSERT(!sl_lj_encode(Ls, 1, "value", &j->out, &d2), "encode: %s", d2.msg);
	lua_settop(Ls, 0);
	return 0;
}

/* Runs lax() in a protected call; 0 when memory ran out (nothing to compare). */
static int lax_outcome(struct job *j, int flags)
{
	lua_pushcfunction(L, lax);
	lua_pushlightuserdata(L, j);
	lua_pushinteger(L, flags);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
		lua_settop(L, 0);
		return 0;
	}
	return j->rc != SL_ENOMEM;
}

static int count(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	(void)m;
	(void)d;
	++*(int *)ud;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct job j = {(const char *)data, size, 0, {0}, {0}, {0}};
	enum sl_json_kind kind = SL_JSON_NULL;
	struct sl_diag dc, dm;
	int rc, mrc, n = 0;

	if (!L && !(L = luaL_newstate()))
		abort();
	sl_diag_init(&dc);
	sl_diag_init(&dm);
	sl_diag_init(&j.d);
	sl_buf_init(&j.out);
	sl_buf_init(&j.again);
	rc = sl_json_check(j.text, size, &kind, &dc);
	mrc = sl_json_members(j.text, size, count, &n, &dm);
	lua_pushcfunction(L, run);
	lua_pushlightuserdata(L, &j);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		lua_pop(L, 1); /* out of memory: nothing to compare */
	} else if (rc != SL_ENOMEM && j.rc != SL_ENOMEM) {
		FUZZ_ASSERT(!rc == !j.rc, "checker %d ('%s'), decoder %d ('%s')", rc, dc.msg, j.rc,
		            j.d.msg);
		FUZZ_ASSERT(!rc || !strcmp(dc.msg, j.d.msg), "checker '%s', decoder '%s'", dc.msg,
		            j.d.msg);
	}
	if (rc != SL_ENOMEM && mrc != SL_ENOMEM)
		FUZZ_ASSERT(!mrc == (!rc && kind == SL_JSON_OBJECT), "members %d ('%s'), check %d",
		            mrc, dm.msg, rc);
	{
		struct job fast = {(const char *)data, size, 0, {0}, {0}, {0}};
		struct job slow = {(const char *)data, size, 0, {0}, {0}, {0}};
		sl_diag_init(&fast.d);
		sl_diag_init(&slow.d);
		if (lax_outcome(&fast, 0) && lax_outcome(&slow, SL_LJ_SLOW))
			FUZZ_ASSERT(fast.out.len == slow.out.len &&
			                    !memcmp(fast.out.ptr, slow.out.ptr, fast.out.len),
			            "fast path '%s', yajl path '%s'", fast.out.ptr, slow.out.ptr);
		sl_buf_release(&fast.out);
		sl_buf_release(&slow.out);
	}
	sl_buf_release(&j.out);
	sl_buf_release(&j.again);
	lua_settop(L, 0);
	return 0;
}
