/* sl_luacore.c - the Lua C module `require "sluice.core"`: the real engine for busted
 * specs and Lua tools.
 *
 *   core.open(path [, {durability = "full"|"normal", namespace = NS, replicas = N}])
 *       -> store | nil, message (namespace and replicas: a nats:// store only)
 *   store:append(stream, type [, payload [, {key=, metadata=, offset=}]])
 *       -> {offset=, position=, duplicate=} | nil, message
 *   store:append_batch({ {stream=, type=, payload=, metadata=, idempotencyKey=,
 *       offset=}, ... }) -> array of results | nil, message, failed_index
 *   store:events(stream [, {from=, limit=, type=}]) -> array of events
 *   store:streams([prefix]) -> array of {stream=, head=, paused=, metadata=}
 *   store:all([from [, limit]]) -> events of every stream in position order
 *   store:close()                      (also __gc and __close)
 *   core.decode(json) -> value | nil, message
 *   core.encode(value) -> json | nil, message
 *   core.null, core.array([t]), core.isarray(t)
 *   core.check(deployment) -> true | nil, {errors...}
 *   core.run(deployment [, {untilCaughtUp = true, strict = true}]) -> true | nil, message
 *   core.state(deployment, processor [, stream]) -> array of {processor=, stream=,
 *       offset=, status=, state=} | nil, message
 *   core.status(deployment) -> array of status rows | nil, message
 *   core.reset(deployment, processor [, stream [, {withEffects = true}]])
 *       -> true | nil, message
 *
 * The deployment functions run the engine in this process (sluice run's code).
 *
 * Payloads and metadata are Lua tables (encoded by sl_luajson) or JSON strings.
 * Expected failures (bad input, paused stream, conflicts) return nil and a message;
 * misuse (wrong argument types, a closed store) raises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <sqlite3.h>
#include <strings.h>
#include <lua.h>

#include "sl_buf.h"
#include "sl_checkpoint.h"
#include "sl_contract.h"
#include "sl_dbapi.h"
#include "sl_deploy.h"
#include "sl_home.h"
#include "sl_host.h"
#include "sl_luajson.h"
#include "sl_sandbox.h"
#include "sl_store.h"

#define STORE_MT "sluice.store"

/* The store userdata owns the store, the core validator that checks its appends and
 * the buffers that encoding writes into, so a Lua error raised mid-way leaks nothing:
 * __gc releases them. */
struct lstore {
	struct sl_store *s;
	struct sl_core_validator *core;
	struct sl_buf buf; /* encoded payloads and metadata of one call */
};

/* [-0, +0, v] */
static struct lstore *check_store(lua_State *L, int idx)
{
	struct lstore *ls = luaL_checkudata(L, idx, STORE_MT);

	if (!ls->s)
		luaL_error(L, "store is closed");
	return ls;
}

/* [-0, +0, -] */
static int store_close(lua_State *L)
{
	struct lstore *ls = luaL_checkudata(L, 1, STORE_MT);

	sl_store_close(ls->s);
	ls->s = NULL;
	sl_core_validator_free(ls->core);
	ls->core = NULL;
	sl_buf_release(&ls->buf);
	return 0;
}

/* Pushes nil and the diag's message. [-0, +2, m] */
static int push_fail(lua_State *L, const struct sl_diag *d)
{
	lua_pushnil(L);
	lua_pushstring(L, sl_diag_msg(d));
	return 2;
}

/* core.open(path [, opts]) [-0, +1|2, m] */
static int core_open(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct sl_store_opts so = {SL_DURABILITY_FULL, 0, sl_core_validate, NULL, NULL, 0, NULL};
	char ns[SL_STORE_NS_MAX + 1] = "";
	struct lstore *ls;
	struct sl_diag d;

	if (lua_istable(L, 2)) {
		if (lua_getfield(L, 2, "durability") == LUA_TSTRING &&
		    !strcmp(lua_tostring(L, -1), "normal"))
			so.durability = SL_DURABILITY_NORMAL;
		if (lua_getfield(L, 2, "namespace") == LUA_TSTRING) {
			if (!sl_store_ns_valid(lua_tostring(L, -1)))
				return luaL_error(L, "namespace: must be 1 to %d of [A-Za-z0-9_-]",
				                  SL_STORE_NS_MAX);
			snprintf(ns, sizeof(ns), "%s", lua_tostring(L, -1));
			so.ns = ns;
		}
		if (lua_getfield(L, 2, "replicas") == LUA_TNUMBER)
			so.replicas = (int)lua_tointeger(L, -1); /* the store checks the range */
	}
	lua_settop(L, 1);
	ls = lua_newuserdatauv(L, sizeof(*ls), 0);
	ls->s = NULL;
	ls->core = NULL;
	sl_buf_init(&ls->buf);
	luaL_setmetatable(L, STORE_MT);
	sl_diag_init(&d);
	if (sl_core_validator_new(&ls->core, &d))
		return push_fail(L, &d);
	so.check_ud = ls->core;
	if (sl_store_open(&ls->s, path, &so, &d))
		return push_fail(L, &d);
	return 1;
}

/* A JSON text for the value at idx (nil -> none, string -> as is, table -> encoded
 * into ls->buf at *used). Offsets, not pointers, because buf may move.
 * [-0, +0, m] */
static int json_arg(lua_State *L, struct lstore *ls, int idx, const char *field, size_t *off,
                    size_t *len, struct sl_diag *d)
{
	size_t start = ls->buf.len;
	int rc;

	*off = 0;
	*len = 0;
	if (lua_isnoneornil(L, idx))
		return 1;
	if (lua_type(L, idx) == LUA_TSTRING) {
		const char *s = lua_tolstring(L, idx, len);
		sl_buf_add(&ls->buf, s, *len);
	} else if ((rc = sl_lj_encode(L, idx, field, &ls->buf, d))) {
		return rc;
	}
	sl_buf_addc(&ls->buf, '\0');
	if (!sl_buf_ok(&ls->buf))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	*off = start;
	*len = ls->buf.len - start - 1;
	return 0;
}

/* Reads one event description (table at idx, or positional arguments) into ev,
 * with JSON offsets stored in the pointers for now. [-0, +0, m] */
struct pending {
	size_t poff, plen, moff, mlen;
	int has_p, has_m;
};

static int read_event_table(lua_State *L, struct lstore *ls, int idx, struct sl_event_in *ev,
                            struct pending *pd, struct sl_diag *d)
{
	int rc;

	lua_getfield(L, idx, "stream");
	lua_getfield(L, idx, "type");
	lua_getfield(L, idx, "payload");
	lua_getfield(L, idx, "metadata");
	lua_getfield(L, idx, "idempotencyKey");
	lua_getfield(L, idx, "offset");
	ev->stream = lua_type(L, -6) == LUA_TSTRING ? lua_tostring(L, -6) : NULL;
	ev->type = lua_type(L, -5) == LUA_TSTRING ? lua_tostring(L, -5) : NULL;
	ev->key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
	ev->offset = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
	rc = json_arg(L, ls, lua_absindex(L, -4), "payload", &pd->poff, &pd->plen, d);
	if (rc < 0)
		goto out;
	pd->has_p = rc == 0;
	rc = json_arg(L, ls, lua_absindex(L, -3), "metadata", &pd->moff, &pd->mlen, d);
	if (rc < 0)
		goto out;
	pd->has_m = rc == 0;
	rc = 0;
out:
	lua_pop(L, 6); /* strings stay reachable: the caller keeps the event table */
	return rc;
}

/* Pushes {offset=, position=, duplicate=}. [-0, +1, m] */
static void push_result(lua_State *L, const struct sl_append_result *r)
{
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, r->offset);
	lua_setfield(L, -2, "offset");
	lua_pushinteger(L, r->position);
	lua_setfield(L, -2, "position");
	lua_pushboolean(L, r->duplicate);
	lua_setfield(L, -2, "duplicate");
}

static void resolve(struct lstore *ls, struct sl_event_in *ev, const struct pending *pd)
{
	ev->payload = pd->has_p ? ls->buf.ptr + pd->poff : NULL;
	ev->payload_len = pd->plen;
	ev->metadata = pd->has_m ? ls->buf.ptr + pd->moff : NULL;
	ev->metadata_len = pd->mlen;
}

/* store:append(stream, type [, payload [, opts]]) [-0, +1|2, m] */
static int store_append(lua_State *L)
{
	struct lstore *ls = check_store(L, 1);
	struct sl_event_in ev = {0};
	struct sl_append_result res;
	struct pending pd = {0, 0, 0, 0, 0, 0};
	struct sl_diag d;
	int rc;

	ev.stream = luaL_checkstring(L, 2);
	ev.type = luaL_checkstring(L, 3);
	lua_settop(L, 5);
	sl_diag_init(&d);
	sl_buf_reset(&ls->buf);
	if ((rc = json_arg(L, ls, 4, "payload", &pd.poff, &pd.plen, &d)) < 0)
		return push_fail(L, &d);
	pd.has_p = rc == 0;
	if (lua_istable(L, 5)) {
		lua_getfield(L, 5, "key");
		lua_getfield(L, 5, "offset");
		lua_getfield(L, 5, "metadata"); /* index 8 */
		ev.key = lua_type(L, 6) == LUA_TSTRING ? lua_tostring(L, 6) : NULL;
		ev.offset = lua_isinteger(L, 7) ? lua_tointeger(L, 7) : 0;
		if ((rc = json_arg(L, ls, 8, "metadata", &pd.moff, &pd.mlen, &d)) < 0)
			return push_fail(L, &d);
		pd.has_m = rc == 0;
	}
	resolve(ls, &ev, &pd);
	if (sl_store_append(ls->s, &ev, 1, &res, 0, NULL, &d))
		return push_fail(L, &d);
	push_result(L, &res);
	return 1;
}

/* store:append_batch(events) [-0, +1|3, m] */
static int store_append_batch(lua_State *L)
{
	struct lstore *ls = check_store(L, 1);
	lua_Integer i, n;
	struct sl_event_in *ev;
	struct pending *pd;
	struct sl_append_result *res;
	struct sl_diag d;
	size_t failed = 0;
	int rc = 0;

	luaL_checktype(L, 2, LUA_TTABLE);
	n = (lua_Integer)lua_rawlen(L, 2);
	luaL_argcheck(L, n > 0, 2, "empty batch");
	/* One userdata holds the arrays, so an error anywhere frees them. */
	ev = lua_newuserdatauv(L, (size_t)n * (sizeof(*ev) + sizeof(*pd) + sizeof(*res)), 0);
	pd = (struct pending *)(ev + n);
	res = (struct sl_append_result *)(pd + n);
	memset(ev, 0, (size_t)n * (sizeof(*ev) + sizeof(*pd)));
	sl_diag_init(&d);
	sl_buf_reset(&ls->buf);
	for (i = 0; i < n && !rc; i++) {
		if (lua_rawgeti(L, 2, i + 1) != LUA_TTABLE)
			luaL_error(L, "event %d is not a table", (int)(i + 1));
		rc = read_event_table(L, ls, lua_gettop(L), &ev[i], &pd[i], &d);
		lua_pop(L, 1);
		failed = (size_t)i;
	}
	for (i = 0; i < n && !rc; i++)
		resolve(ls, &ev[i], &pd[i]);
	if (rc || sl_store_append(ls->s, ev, (size_t)n, res, 0, &failed, &d)) {
		push_fail(L, &d);
		lua_pushinteger(L, (lua_Integer)failed + 1);
		return 3;
	}
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		push_result(L, &res[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* Pushes a JSON text as a Lua value, raising on malformed stored data.
 * [-0, +1, m] */
static void push_json(lua_State *L, const char *text, size_t len)
{
	struct sl_diag d;

	sl_diag_init(&d);
	if (sl_lj_decode(L, text, len, 0, &d))
		luaL_error(L, "stored JSON: %s", sl_diag_msg(&d));
}

/* Sets t[k] = the string s (if not NULL) on the table at -1. [-0, +0, m] */
static void set_str(lua_State *L, const char *k, const char *s)
{
	if (s) {
		lua_pushstring(L, s);
		lua_setfield(L, -2, k);
	}
}

/* Protected body of the read callback: appends the event (light userdata at 1) to
 * the array at 2. [-2, +0, m] */
static int push_event(lua_State *L)
{
	const struct sl_event *ev = lua_touserdata(L, 1);

	lua_createtable(L, 0, 8);
	set_str(L, "stream", ev->stream);
	lua_pushinteger(L, ev->offset);
	lua_setfield(L, -2, "offset");
	lua_pushinteger(L, ev->position);
	lua_setfield(L, -2, "position");
	set_str(L, "type", ev->type);
	push_json(L, ev->payload, ev->payload_len);
	lua_setfield(L, -2, "payload");
	if (ev->metadata) {
		push_json(L, ev->metadata, ev->metadata_len);
		lua_setfield(L, -2, "metadata");
	}
	set_str(L, "idempotencyKey", ev->key);
	set_str(L, "createdAt", ev->created_at);
	lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
	return 0;
}

/* The store calls back while its statement is open, so Lua is entered only through
 * a protected call here: an error becomes a return code and the statement is reset. */
static int on_event(void *ud, const struct sl_event *ev)
{
	lua_State *L = ud;

	lua_pushcfunction(L, push_event);
	lua_pushlightuserdata(L, (void *)ev);
	lua_pushvalue(L, -3);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK)
		return SL_ELUA; /* the message stays on the stack */
	return 0;
}

/* store:events(stream [, {from=, limit=, type=}]) [-0, +1, m] */
static int store_events(lua_State *L)
{
	struct lstore *ls = check_store(L, 1);
	const char *stream = luaL_checkstring(L, 2), *type = NULL;
	lua_Integer from = 1, limit = 0;
	struct sl_diag d;
	int rc;

	if (lua_istable(L, 3)) {
		lua_getfield(L, 3, "from");
		lua_getfield(L, 3, "limit");
		lua_getfield(L, 3, "type");
		from = luaL_optinteger(L, -3, 1);
		limit = luaL_optinteger(L, -2, 0);
		type = luaL_optstring(L, -1, NULL);
	}
	lua_newtable(L);
	luaL_checkstack(L, 8, NULL);
	sl_diag_init(&d);
	rc = sl_store_read(ls->s, stream, from, limit, type, on_event, L, &d);
	if (rc == SL_ELUA)
		return lua_error(L);
	if (rc)
		return luaL_error(L, "%s", sl_diag_msg(&d));
	return 1;
}

/* store:all([from [, limit]]) -> the events of every stream in position order, from
 * position `from` (1), at most `limit` (1000). [-0, +1, m] */
static int store_all(lua_State *L)
{
	struct lstore *ls = check_store(L, 1);
	lua_Integer from = luaL_optinteger(L, 2, 1), limit = luaL_optinteger(L, 3, 1000);
	struct sl_diag d;
	int rc;

	lua_settop(L, 3);
	lua_newtable(L);
	luaL_checkstack(L, 8, NULL);
	sl_diag_init(&d);
	rc = sl_store_read_all(ls->s, from, limit, on_event, L, &d);
	if (rc == SL_ELUA)
		return lua_error(L);
	if (rc)
		return luaL_error(L, "%s", sl_diag_msg(&d));
	return 1;
}

/* store:head() -> the highest position in the store (0 when empty). [-0, +1, m] */
static int store_head(lua_State *L)
{
	struct lstore *ls = check_store(L, 1);
	struct sl_diag d;
	int64_t pos = 0;

	sl_diag_init(&d);
	if (sl_store_head_position(ls->s, &pos, &d))
		return luaL_error(L, "%s", sl_diag_msg(&d));
	lua_pushinteger(L, pos);
	return 1;
}

/* Protected body of the streams callback. [-2, +0, m] */
static int push_stream(lua_State *L)
{
	const struct sl_stream_info *info = lua_touserdata(L, 1);

	lua_createtable(L, 0, 5);
	set_str(L, "stream", info->stream);
	lua_pushinteger(L, info->head);
	lua_setfield(L, -2, "head");
	lua_pushboolean(L, info->paused);
	lua_setfield(L, -2, "paused");
	set_str(L, "pauseReason", info->pause_reason);
	push_json(L, info->metadata, strlen(info->metadata));
	lua_setfield(L, -2, "metadata");
	lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
	return 0;
}

static int on_stream(void *ud, const struct sl_stream_info *info)
{
	lua_State *L = ud;

	lua_pushcfunction(L, push_stream);
	lua_pushlightuserdata(L, (void *)info);
	lua_pushvalue(L, -3);
	return lua_pcall(L, 2, 0, 0) == LUA_OK ? 0 : SL_ELUA;
}

/* store:streams([prefix]) [-0, +1, m] */
static int store_streams(lua_State *L)
{
	struct lstore *ls = check_store(L, 1);
	const char *prefix = luaL_optstring(L, 2, NULL);
	struct sl_diag d;
	int rc;

	lua_newtable(L);
	luaL_checkstack(L, 8, NULL);
	sl_diag_init(&d);
	rc = sl_store_streams(ls->s, prefix, on_stream, L, &d);
	if (rc == SL_ELUA)
		return lua_error(L);
	if (rc)
		return luaL_error(L, "%s", sl_diag_msg(&d));
	return 1;
}

/* core.decode(json) [-0, +1|2, m] */
static int core_decode(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	struct sl_diag d;

	sl_diag_init(&d);
	if (sl_lj_decode(L, text, len, SL_LJ_STRICT, &d))
		return push_fail(L, &d);
	return 1;
}

/* core.encode(value) [-0, +1|2, m]. The buffer lives in a userdata so that a
 * memory error during encoding frees it. */
static int buf_gc(lua_State *L)
{
	sl_buf_release(lua_touserdata(L, 1));
	return 0;
}

static int core_encode(lua_State *L)
{
	struct sl_buf *b;
	struct sl_diag d;

	luaL_checkany(L, 1);
	lua_settop(L, 1);
	b = lua_newuserdatauv(L, sizeof(*b), 0);
	sl_buf_init(b);
	lua_newtable(L);
	lua_pushcfunction(L, buf_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	sl_diag_init(&d);
	if (sl_lj_encode(L, 1, "value", b, &d))
		return push_fail(L, &d);
	lua_pushlstring(L, b->ptr, b->len);
	sl_buf_release(b);
	return 1;
}

/* core.array([t]) tags t (or a new table) as a JSON array. [-0, +1, m] */
static int core_array(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	sl_lj_pusharraymt(L);
	lua_setmetatable(L, 1);
	return 1;
}

/* core.isarray(v) [-0, +1, -] */
static int core_isarray(lua_State *L)
{
	lua_pushboolean(L, sl_lj_isarray(L, 1));
	return 1;
}

/* Opens a host; on failure pushes nil and an array of messages.
 * [-0, +0|2, m] */
static struct sl_host *open_host(lua_State *L, const char *file, int flags)
{
	struct sl_host *h = NULL;
	struct sl_errs errs;
	size_t i;

	sl_errs_init(&errs);
	if (sl_host_open(&h, file, flags, &errs)) {
		lua_pushnil(L);
		lua_createtable(L, (int)errs.n, 0);
		for (i = 0; i < errs.n; i++) {
			lua_pushstring(L, errs.msg[i]);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		sl_errs_release(&errs); /* lua_pushstring copied; a raise above leaks only on OOM */
		return NULL;
	}
	sl_errs_release(&errs);
	return h;
}

/* core.check(deployment) [-0, +1|2, m] */
static int core_check(lua_State *L)
{
	struct sl_host *h = open_host(L, luaL_checkstring(L, 1), SL_HOST_NO_STORE);

	if (!h)
		return 2;
	sl_host_free(h);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.run(deployment [, opts]) [-0, +1|2, m] */
static int core_run(lua_State *L)
{
	const char *file = luaL_checkstring(L, 1);
	int until = 1, flags = SL_HOST_RUN, rc;
	struct sl_host *h;
	struct sl_diag d;

	if (lua_istable(L, 2) && lua_getfield(L, 2, "untilCaughtUp") != LUA_TNIL)
		until = lua_toboolean(L, -1);
	if (lua_istable(L, 2) && lua_getfield(L, 2, "strict") != LUA_TNIL && lua_toboolean(L, -1))
		flags |= SL_HOST_STRICT;
	if (!(h = open_host(L, file, flags))) {
		lua_rawgeti(L, -1, 1); /* nil, errors, first error */
		lua_remove(L, -2);
		return 2;
	}
	sl_diag_init(&d);
	rc = sl_host_run(h, until, &d);
	sl_host_free(h);
	if (rc)
		return push_fail(L, &d);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- host queries: rows become tables ------------------------------------------------ */

/* Where the rows of a host query go: the array at index t of L. The host is open
 * while rows arrive, so each row is converted in a protected call and a Lua error
 * (out of memory) ends the query with rc instead of unwinding through the host. */
struct rows_in {
	lua_State *L;
	int t;
	lua_Integer n;
	const void *row;
	int (*push)(lua_State *L, const void *row, struct sl_diag *d);
	struct sl_diag *d;
	const char *proc, *stream; /* the query's arguments */
};

/* Sets t[k] = the string v, or the null sentinel if v is NULL, on the table at -1.
 * [-0, +0, m] */
static void set_str_or_null(lua_State *L, const char *k, const char *v)
{
	if (v)
		lua_pushstring(L, v);
	else
		sl_lj_pushnull(L);
	lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, int64_t v)
{
	lua_pushinteger(L, (lua_Integer)v);
	lua_setfield(L, -2, k);
}

/* [-0, +1, m] */
static int push_state_row(lua_State *L, const void *row, struct sl_diag *d)
{
	const struct sl_state_row *r = row;
	int rc;

	lua_createtable(L, 0, 5);
	set_str(L, "processor", r->processor);
	set_str_or_null(L, "stream", r->stream);
	set_int(L, "offset", r->offset);
	set_str(L, "status", r->status);
	if ((rc = sl_lj_decode(L, r->state_json, r->state_len, 0, d)))
		return rc;
	lua_setfield(L, -2, "state");
	return 0;
}

/* [-0, +1, m] */
static int push_status_row(lua_State *L, const void *row, struct sl_diag *d)
{
	const struct sl_status_row *r = row;

	(void)d;
	lua_createtable(L, 0, 11);
	set_str(L, "processor", r->processor);
	set_str_or_null(L, "stream", r->stream);
	set_int(L, "offset", r->offset);
	set_int(L, "head", r->head);
	set_int(L, "lag", r->lag);
	set_str(L, "status", r->status);
	set_str_or_null(L, "lastError", r->last_error);
	set_int(L, "backgroundFailures", r->background_failures);
	if (r->partition >= 0)
		set_int(L, "partition", r->partition);
	set_str_or_null(L, "runner", r->runner);
	lua_pushnumber(L, r->rate);
	lua_setfield(L, -2, "rate");
	set_str_or_null(L, "reloadError", r->reload_error);
	return 0;
}

/* The protected part of add_row: the rows_in at 1, the array at 2. [-0, +0, m] */
static int add_row_protected(lua_State *L)
{
	struct rows_in *in = lua_touserdata(L, 1);
	int rc;

	if ((rc = in->push(L, in->row, in->d))) {
		lua_pushinteger(L, rc);
		return 1;
	}
	lua_rawseti(L, 2, ++in->n);
	return 0;
}

/* Appends one row to the array; returns 0 or an error code with in->d filled.
 * [-0, +0, -] */
static int add_row(struct rows_in *in, const void *row)
{
	lua_State *L = in->L;
	int top = lua_gettop(L), st, rc = 0;

	in->row = row;
	lua_pushcfunction(L, add_row_protected);
	lua_pushlightuserdata(L, in);
	lua_pushvalue(L, in->t);
	st = lua_pcall(L, 2, LUA_MULTRET, 0);
	if (st != LUA_OK)
		rc = sl_diag_set(in->d, st == LUA_ERRMEM ? SL_ENOMEM : SL_ELUA, "%s",
		                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
		                                                : "Lua error");
	else if (lua_gettop(L) > top)
		rc = (int)lua_tointeger(L, -1);
	lua_settop(L, top);
	return rc;
}

static int add_state_row(void *ud, const struct sl_state_row *row)
{
	return add_row(ud, row);
}

static int add_status_row(void *ud, const struct sl_status_row *row)
{
	return add_row(ud, row);
}

static int run_state(struct sl_host *h, struct rows_in *in)
{
	in->push = push_state_row;
	return sl_host_state(h, in->proc, in->stream, add_state_row, in, in->d);
}

static int run_status(struct sl_host *h, struct rows_in *in)
{
	in->push = push_status_row;
	return sl_host_status(h, add_status_row, in, in->d);
}

/* Opens the deployment, runs one query into a new array, closes the host and
 * returns the array, or nil and a message. [-0, +1|2, m] */
static int query_rows(lua_State *L, const char *file, const char *proc, const char *stream,
                      int (*run)(struct sl_host *, struct rows_in *))
{
	struct sl_diag d;
	struct rows_in in = {L, 0, 0, NULL, NULL, &d, proc, stream};
	struct sl_host *h;
	int rc;

	lua_newtable(L);
	in.t = lua_gettop(L);
	luaL_checkstack(L, 5, NULL); /* add_row's pcall needs room; raise before opening */
	if (!(h = open_host(L, file, 0))) {
		lua_rawgeti(L, -1, 1); /* nil, errors, first error */
		lua_remove(L, -2);
		return 2;
	}
	sl_diag_init(&d);
	rc = run(h, &in);
	sl_host_free(h);
	if (rc)
		return push_fail(L, &d);
	return 1;
}

/* core.state(deployment, processor [, stream]) [-0, +1|2, m] */
static int core_state(lua_State *L)
{
	const char *file = luaL_checkstring(L, 1), *proc = luaL_checkstring(L, 2);

	return query_rows(L, file, proc, luaL_optstring(L, 3, NULL), run_state);
}

/* core.status(deployment) [-0, +1|2, m] */
static int core_status(lua_State *L)
{
	return query_rows(L, luaL_checkstring(L, 1), NULL, NULL, run_status);
}

/* core.reset(deployment, processor [, stream [, opts]]) [-0, +1|2, m] */
static int core_reset(lua_State *L)
{
	const char *proc = luaL_checkstring(L, 2), *stream = luaL_optstring(L, 3, NULL);
	int fx = lua_istable(L, 4) && lua_getfield(L, 4, "withEffects") && lua_toboolean(L, -1);
	struct sl_host *h = open_host(L, luaL_checkstring(L, 1), 0);
	struct sl_diag d;
	int rc;

	if (!h) {
		lua_rawgeti(L, -1, 1); /* nil, errors, first error */
		lua_remove(L, -2);
		return 2;
	}
	sl_diag_init(&d);
	rc = sl_host_reset(h, proc, stream, fx, &d);
	sl_host_free(h);
	if (rc)
		return push_fail(L, &d);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.info(deployment) -> {store=, namespace=, replicas= (0: not set), schemas = the contract
 * search path (the built-in directory last), processors = array of {name=, script=, streams=,
 * mode=, contract=, version=, error=}} | nil, message: what the deployment holds, scripts loaded
 * leniently (a processor whose script fails has error set). */
static int core_info(lua_State *L)
{
	struct sl_host *h =
		open_host(L, luaL_checkstring(L, 1), SL_HOST_NO_STORE | SL_HOST_LENIENT);
	const struct sl_errs *skipped;
	size_t i, k;

	if (!h) {
		lua_rawgeti(L, -1, 1); /* nil, errors, first error */
		lua_remove(L, -2);
		return 2;
	}
	skipped = sl_host_skipped(h);
	lua_createtable(L, 0, 2);
	lua_pushstring(L, sl_host_deploy(h)->store);
	lua_setfield(L, -2, "store");
	lua_pushstring(L, sl_host_deploy(h)->ns);
	lua_setfield(L, -2, "namespace");
	lua_pushinteger(L, sl_host_deploy(h)->replicas);
	lua_setfield(L, -2, "replicas");
	lua_createtable(L, (int)sl_host_deploy(h)->nschemas + 1, 0);
	for (k = 0; k < sl_host_deploy(h)->nschemas; k++) {
		lua_pushstring(L, sl_host_deploy(h)->schemas[k]);
		lua_rawseti(L, -2, (lua_Integer)k + 1);
	}
	lua_pushstring(L, sl_home_schemas());
	lua_rawseti(L, -2, (lua_Integer)k + 1);
	lua_setfield(L, -2, "schemas");
	lua_createtable(L, (int)sl_host_nprocs(h), 0);
	for (i = 0; i < sl_host_nprocs(h); i++) {
		struct sl_proc_info pi;
		sl_host_proc_info(h, i, &pi);
		lua_createtable(L, 0, 7);
		lua_pushstring(L, pi.name);
		lua_setfield(L, -2, "name");
		lua_pushstring(L, pi.script);
		lua_setfield(L, -2, "script");
		lua_pushstring(L, pi.streams);
		lua_setfield(L, -2, "streams");
		lua_pushstring(L, pi.mode_all ? "all" : "each");
		lua_setfield(L, -2, "mode");
		if (pi.contract) {
			lua_pushstring(L, pi.contract);
			lua_setfield(L, -2, "contract");
			lua_pushinteger(L, pi.version);
			lua_setfield(L, -2, "version");
		} else {
			for (k = 0; k < skipped->n; k++)
				if (strstr(skipped->msg[k], pi.script)) {
					lua_pushstring(L, skipped->msg[k]);
					lua_setfield(L, -2, "error");
					break;
				}
		}
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "processors");
	sl_host_free(h);
	return 1;
}

static int push_dead(void *ud, const struct sl_dead_letter *dl)
{
	lua_State *L = ud;

	/* Room was checked by core_dead_letters; a raise here would leak the host. */
	lua_createtable(L, 0, 8);
	lua_pushstring(L, dl->processor);
	lua_setfield(L, -2, "processor");
	lua_pushstring(L, dl->stream);
	lua_setfield(L, -2, "stream");
	lua_pushinteger(L, dl->offset);
	lua_setfield(L, -2, "offset");
	lua_pushinteger(L, dl->position);
	lua_setfield(L, -2, "position");
	lua_pushstring(L, dl->type);
	lua_setfield(L, -2, "type");
	lua_pushstring(L, dl->error);
	lua_setfield(L, -2, "error");
	lua_pushinteger(L, dl->attempts);
	lua_setfield(L, -2, "attempts");
	lua_pushstring(L, dl->at);
	lua_setfield(L, -2, "at");
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	return 0;
}

/* core.deadLetters(deployment) -> array of dead letters | nil, message [-0, +1|2, m] */
static int core_dead_letters(lua_State *L)
{
	struct sl_host *h = open_host(L, luaL_checkstring(L, 1), SL_HOST_ROWS | SL_HOST_READONLY);
	struct sl_diag d;
	int rc;

	if (!h) {
		lua_rawgeti(L, -1, 1);
		lua_remove(L, -2);
		return 2;
	}
	luaL_checkstack(L, 8, NULL);
	lua_newtable(L);
	sl_diag_init(&d);
	rc = sl_host_dead_letters(h, push_dead, L, &d);
	sl_host_free(h);
	if (rc)
		return push_fail(L, &d);
	return 1;
}

/* core.resume(deployment, processor [, stream [, {skip=, skipAll=}]]) -> true |
 * nil, message [-0, +1|2, m] */
static int core_resume(lua_State *L)
{
	const char *proc = luaL_checkstring(L, 2), *stream = luaL_optstring(L, 3, NULL);
	int skip = 0;
	struct sl_host *h;
	struct sl_diag d;
	int rc;

	if (lua_istable(L, 4)) {
		if (lua_getfield(L, 4, "skipAll") && lua_toboolean(L, -1))
			skip = SL_RESUME_SKIP_ALL;
		else if (lua_getfield(L, 4, "skip") && lua_toboolean(L, -1))
			skip = SL_RESUME_SKIP;
	}
	if (!(h = open_host(L, luaL_checkstring(L, 1), SL_HOST_WRITE))) {
		lua_rawgeti(L, -1, 1);
		lua_remove(L, -2);
		return 2;
	}
	sl_diag_init(&d);
	rc = sl_host_resume(h, proc, stream, skip, NULL, NULL, &d);
	sl_host_free(h);
	if (rc)
		return push_fail(L, &d);
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- core.query: read-only SQL on one processor's own tables -------------------- */

struct query_auth {
	const char *proc;
	char **own; /* the processor's tables (sl_tables), read before the query */
	size_t nown;
	char deny[256];
};

/* Reads the names of q->proc's tables (the authorizer may not run SQL itself). */
static int load_owned(sqlite3 *db, struct query_auth *q)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT name FROM sl_tables WHERE processor = ?1", -1, &st,
	                       NULL) != SQLITE_OK)
		return 0; /* a store without projection tables */
	sqlite3_bind_text(st, 1, q->proc, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		char **grown = realloc(q->own, (q->nown + 1) * sizeof(*grown));
		if (!grown)
			break;
		q->own = grown;
		if ((q->own[q->nown] = strdup((const char *)sqlite3_column_text(st, 0))))
			q->nown++;
	}
	sqlite3_finalize(st);
	return 0;
}

/* Whether table t belongs to q->proc. */
static int owned_by(struct query_auth *q, const char *t)
{
	size_t i;

	for (i = 0; i < q->nown; i++)
		if (!strcasecmp(q->own[i], t))
			return 1;
	return 0;
}

static void free_owned(struct query_auth *q)
{
	size_t i;

	for (i = 0; i < q->nown; i++)
		free(q->own[i]);
	free(q->own);
}

static int query_authorize(void *ud, int action, const char *a1, const char *a2, const char *dbn,
                           const char *trig)
{
	struct query_auth *q = ud;

	(void)trig;
	switch (action) {
	case SQLITE_SELECT:
	case SQLITE_RECURSIVE:
		return SQLITE_OK;
	case SQLITE_FUNCTION:
		if (a2 && !strcasecmp(a2, "load_extension")) {
			snprintf(q->deny, sizeof(q->deny), "function '%s' is not allowed", a2);
			return SQLITE_DENY;
		}
		return SQLITE_OK;
	case SQLITE_READ:
		if (!dbn ||
		    (a1 && (!strcasecmp(a1, "sqlite_master") || !strcasecmp(a1, "sqlite_schema"))))
			return SQLITE_OK;
		if (a1 && owned_by(q, a1))
			return SQLITE_OK;
		snprintf(q->deny, sizeof(q->deny), "table '%s' does not belong to processor '%s'",
		         a1 ? a1 : "?", q->proc);
		return SQLITE_DENY;
	}
	snprintf(q->deny, sizeof(q->deny),
	         "query is read-only (only SELECT on the processor's "
	         "own tables)");
	return SQLITE_DENY;
}

/* The body of core.query, protected so that the connection is closed on any raise:
 * (lightuserdata stmt at 1, params at 2). Leaves the array of rows. [-2, +1, e] */
static int query_body(lua_State *L)
{
	sqlite3_stmt *st = lua_touserdata(L, 1);
	int i, rc, cols;

	sl_dbapi_bind_params(L, st, 2);
	lua_newtable(L);
	cols = sqlite3_column_count(st);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		lua_createtable(L, 0, cols);
		for (i = 0; i < cols; i++) {
			sl_dbapi_push_column(L, st, i);
			lua_setfield(L, -2, sqlite3_column_name(st, i));
		}
		lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	}
	if (rc != SQLITE_DONE)
		return luaL_error(L, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
	return 1;
}

/* SQLite's progress handler of a query: in a budgeted session (the console's) the
 * budget stops a query that runs too long. */
static int query_progress(void *ud)
{
	return sl_sandbox_poll(ud);
}

/* core.query(deployment, processor, sql [, params]) -> array of rows | nil, message:
 * a read-only query (a read-only connection, and an authorizer that admits SELECT on
 * the processor's own tables only). [-0, +1|2, m] */
static int core_query(lua_State *L)
{
	const char *proc = luaL_checkstring(L, 2), *sql = luaL_checkstring(L, 3);
	struct query_auth q = {proc, NULL, 0, ""};
	sqlite3 *db = NULL;
	struct sl_host *h = open_host(L, luaL_checkstring(L, 1), SL_HOST_NO_STORE | SL_HOST_ROWS);
	sqlite3_stmt *st = NULL;
	char path[4200];
	int known = 0, status, nats;
	size_t i;

	if (!h) {
		lua_rawgeti(L, -1, 1);
		lua_remove(L, -2);
		return 2;
	}
	for (i = 0; i < sl_host_nprocs(h); i++) {
		struct sl_proc_info pi;
		sl_host_proc_info(h, i, &pi);
		known |= !strcmp(pi.name, proc);
	}
	/* A nats:// store keeps projection tables in a file of their own on this machine. */
	nats = sl_host_deploy(h)->projections != NULL;
	snprintf(path, sizeof(path), "%s",
	         nats ? sl_host_deploy(h)->projections : sl_host_deploy(h)->store);
	sl_host_free(h);
	if (!known) {
		lua_pushnil(L);
		lua_pushfstring(L, "unknown processor '%s'", proc);
		return 2;
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		lua_pushnil(L);
		lua_pushfstring(L, "cannot open %s '%s': %s",
		                nats ? "projection database" : "store", path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return 2;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_progress_handler(db, 1000, query_progress, L);
	load_owned(db, &q);
	sqlite3_set_authorizer(db, query_authorize, &q);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		lua_pushnil(L);
		lua_pushfstring(L, "query: %s", *q.deny ? q.deny : sqlite3_errmsg(db));
		sqlite3_close(db);
		free_owned(&q);
		return 2;
	}
	lua_settop(L, 4);
	lua_pushcfunction(L, query_body);
	lua_pushlightuserdata(L, st);
	lua_pushvalue(L, 4);
	status = lua_pcall(L, 2, 1, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free_owned(&q);
	if (status != LUA_OK) {
		lua_pushnil(L);
		lua_pushfstring(L, "query: %s", lua_tostring(L, -2));
		return 2;
	}
	return 1;
}

/* core.sleep(ms): waits (for tools polling the store, as the REPL's tail); a signal
 * ends it early. [-1, +0, -] */
static int core_sleep(lua_State *L)
{
	lua_Number ms = luaL_checknumber(L, 1);
	struct timespec ts;

	if (ms > 0) {
		ts.tv_sec = (time_t)(ms / 1000);
		ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1e6);
		nanosleep(&ts, NULL);
	}
	return 0;
}

int luaopen_sluice_core(lua_State *L);

int luaopen_sluice_core(lua_State *L)
{
	static const luaL_Reg store_methods[] = {
		{"append", store_append}, {"append_batch", store_append_batch},
		{"events", store_events}, {"streams", store_streams},
		{"all", store_all},       {"head", store_head},
		{"close", store_close},   {NULL, NULL},
	};
	static const luaL_Reg funcs[] = {
		{"open", core_open},       {"decode", core_decode},
		{"encode", core_encode},   {"array", core_array},
		{"isarray", core_isarray}, {"check", core_check},
		{"run", core_run},         {"state", core_state},
		{"status", core_status},   {"reset", core_reset},
		{"info", core_info},       {"deadLetters", core_dead_letters},
		{"resume", core_resume},   {"sleep", core_sleep},
		{"query", core_query},     {NULL, NULL},
	};

	if (luaL_newmetatable(L, STORE_MT)) {
		luaL_newlib(L, store_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, store_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, store_close);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	sl_lj_pushnull(L);
	lua_setfield(L, -2, "null");
	lua_pushstring(L, SL_VERSION);
	lua_setfield(L, -2, "version");
	return 1;
}
