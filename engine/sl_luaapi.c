/* sl_luaapi.c - the ctx table: one table of primitives with where each may run, and
 * the primitives that belong to no other module (append, fanOut, block, background,
 * log). The work primitives live in sl_work.c, ctx.db in sl_dbapi.c.
 */
#include "sl_luaapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "sl_buf.h"
#include "sl_contract.h"
#include "sl_dbapi.h"
#include "sl_json.h"
#include "sl_log.h"
#include "sl_lstack.h"
#include "sl_luajson.h"
#include "sl_processor_int.h"
#include "sl_sandbox.h"
#include "sl_schema.h"
#include "sl_work.h"

/* Where a primitive may be called (sl_luaapi.h has the table in words). */
enum {
	IN_HOOK = 1 << 0,    /* processEvent, processEventBatch of a running batch */
	IN_REDUCE = 1 << 1,  /* no primitive allows it: reduce must be deterministic */
	IN_PREPARE = 1 << 2, /* prepare */
	IN_WORK = 1 << 3,    /* a ctx.block or ctx.background coroutine */
	IN_OTHER = 1 << 4,   /* anywhere else (a closure kept and called later) */
	YIELDS = 1 << 5,     /* the primitive yields: the coroutine must be yieldable */
	NEEDS_LOOP = 1 << 6  /* registered only once the processor has its loop */
};

typedef int (*prim_fn)(lua_State *L, struct sl_proc *p, int arg);

struct prim {
	const char *sub;  /* subtable of ctx ("log"), or NULL */
	const char *name; /* the field */
	const char *what; /* the name in messages */
	prim_fn fn;
	int arg; /* passed to fn (the level of ctx.log.*) */
	unsigned where;
	const char *only;    /* "<what> is available only <only>" */
	const char *in_work; /* the message in work, when work may not call it */
};

static int ctx_append(lua_State *L, struct sl_proc *p, int arg);
static int ctx_fanout(lua_State *L, struct sl_proc *p, int arg);
static int ctx_block(lua_State *L, struct sl_proc *p, int arg);
static int ctx_background(lua_State *L, struct sl_proc *p, int arg);
static int ctx_log(lua_State *L, struct sl_proc *p, int arg);
static int ctx_sleep(lua_State *L, struct sl_proc *p, int arg);
static int ctx_exec(lua_State *L, struct sl_proc *p, int arg);
static int ctx_http(lua_State *L, struct sl_proc *p, int arg);

#define LOG_WHERE (IN_HOOK | IN_PREPARE | IN_WORK | IN_OTHER)
#define WORK_WHERE (IN_WORK | YIELDS | NEEDS_LOOP)
#define WORK_ONLY "inside ctx.block or ctx.background work"
#define NO_MORE_WORK "work cannot start more work"

/* Every ctx primitive, and where it may be called. ctx.db is not here: it is a
 * userdata whose methods check themselves (sl_dbapi.c check_api). */
static const struct prim prims[] = {
	{NULL, "append", "ctx.append", ctx_append, 0, IN_HOOK | IN_WORK,
         "while a hook or its work runs", NULL},
	{NULL, "fanOut", "ctx.fanOut", ctx_fanout, 0, IN_HOOK, "while a hook runs", NULL},
	{NULL, "block", "ctx.block", ctx_block, 0, IN_HOOK, "while a hook runs", NO_MORE_WORK},
	{NULL, "background", "ctx.background", ctx_background, 0, IN_HOOK | IN_PREPARE,
         "while a hook runs or in prepare", NO_MORE_WORK},
	{"log", "debug", "ctx.log", ctx_log, SL_LOG_DEBUG, LOG_WHERE, "", NULL},
	{"log", "info", "ctx.log", ctx_log, SL_LOG_INFO, LOG_WHERE, "", NULL},
	{"log", "warn", "ctx.log", ctx_log, SL_LOG_WARN, LOG_WHERE, "", NULL},
	{"log", "error", "ctx.log", ctx_log, SL_LOG_ERROR, LOG_WHERE, "", NULL},
	{NULL, "sleep", "ctx.sleep", ctx_sleep, 0, WORK_WHERE, WORK_ONLY, NULL},
	{NULL, "exec", "ctx.exec", ctx_exec, 0, WORK_WHERE, WORK_ONLY, NULL},
	{NULL, "http", "ctx.http", ctx_http, 0, WORK_WHERE, WORK_ONLY, NULL},
};

#define NPRIMS (sizeof(prims) / sizeof(prims[0]))

/* Where L runs now, for processor p. [-0, +0, -] */
static unsigned where_now(lua_State *L, const struct sl_proc *p)
{
	if (sl_sandbox_in_reduce(L))
		return IN_REDUCE;
	if (sl_work_current(L))
		return IN_WORK;
	if (p->cur)
		return IN_HOOK;
	return p->preparing ? IN_PREPARE : IN_OTHER;
}

/* The one check of where a primitive is called: raises unless e allows it here.
 * [-0, +0, v] */
static void check_where(lua_State *L, const struct sl_proc *p, const struct prim *e)
{
	unsigned now = where_now(L, p);

	if (now == IN_REDUCE)
		sl_sandbox_no_reduce(L, e->what); /* raises */
	if ((e->where & now) && (!(e->where & YIELDS) || lua_isyieldable(L)))
		return;
	if (now == IN_WORK && e->in_work)
		luaL_error(L, "%s", e->in_work);
	luaL_error(L, "%s is available only %s", e->what, e->only);
}

/* Every primitive is this closure (upvalues: the processor, the row of prims).
 * [-?, +?, e] as the primitive's. */
static int ctx_call(lua_State *L)
{
	struct sl_proc *p = lua_touserdata(L, lua_upvalueindex(1));
	const struct prim *e = &prims[lua_tointeger(L, lua_upvalueindex(2))];

	check_where(L, p, e);
	return e->fn(L, p, e->arg);
}

/* Sets the primitives with (loop) or without the NEEDS_LOOP flag on the table at
 * -1 (ctx), raw: ctx is locked. [-0, +0, m] */
static void set_prims(lua_State *L, struct sl_proc *p, int loop)
{
	int ctx = lua_gettop(L);
	size_t i;

	for (i = 0; i < NPRIMS; i++) {
		if (!(prims[i].where & NEEDS_LOOP) != !loop)
			continue;
		if (prims[i].sub) {
			lua_pushstring(L, prims[i].sub);
			if (lua_rawget(L, ctx) != LUA_TTABLE) {
				lua_pop(L, 1);
				lua_newtable(L);
				lua_pushstring(L, prims[i].sub);
				lua_pushvalue(L, -2);
				lua_rawset(L, ctx);
			}
		}
		lua_pushstring(L, prims[i].name);
		lua_pushlightuserdata(L, p);
		lua_pushinteger(L, (lua_Integer)i);
		lua_pushcclosure(L, ctx_call, 2);
		lua_rawset(L, -3);
		lua_settop(L, ctx);
	}
}

/* [-0, +0, m] */
void sl_luaapi_make_ctx(lua_State *L, struct sl_proc *p)
{
	SL_STACK_ENTER(L);

	lua_createtable(L, 0, 16);
	set_prims(L, p, 0);
	lua_pushstring(L, p->cfg.name);
	lua_setfield(L, -2, "processor");
	sl_sandbox_lock(L, -1); /* the engine writes ctx: no metamethods on it */
	p->ref_ctx = luaL_ref(L, LUA_REGISTRYINDEX);
	SL_STACK_CHECK(L, 0);
}

/* Runs fn with light userdata p at 1 in a protected call; a failure (out of
 * memory, or the memory budget) goes to d. */
static int protect(struct sl_proc *p, lua_CFunction fn, struct sl_diag *d)
{
	enum sl_budget b;

	lua_pushcfunction(p->L, fn);
	lua_pushlightuserdata(p->L, p);
	if (lua_pcall(p->L, 1, 0, 0) == LUA_OK)
		return 0;
	b = sl_sandbox_exceeded(p->L, LUA_ERRMEM);
	sl_diag_set(d, SL_ENOMEM, "processor '%s': %s", p->cfg.name,
	            b ? sl_sandbox_message(p->L, b) : lua_tostring(p->L, -1));
	lua_pop(p->L, 1);
	return d ? d->code : SL_ENOMEM;
}

/* Protected: ctx.sleep, ctx.exec, ctx.http. [-1, +0, m] */
static int add_work_body(lua_State *L)
{
	struct sl_proc *p = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	set_prims(L, p, 1);
	return 0;
}

/* Protected: ctx.db. [-1, +0, m] */
static int add_db_body(lua_State *L)
{
	struct sl_proc *p = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	sl_dbapi_push(L, p->db);
	lua_setfield(L, -2, "db");
	return 0;
}

int sl_luaapi_add_work(struct sl_proc *p, struct sl_diag *d)
{
	int rc;
	SL_STACK_ENTER(p->L);

	rc = protect(p, add_work_body, d);
	SL_STACK_CHECK(p->L, 0);
	return rc;
}

int sl_luaapi_add_db(struct sl_proc *p, struct sl_diag *d)
{
	int rc;
	SL_STACK_ENTER(p->L);

	rc = protect(p, add_db_body, d);
	SL_STACK_CHECK(p->L, 0);
	return rc;
}

/* [-0, +0, m] */
void sl_luaapi_begin_hooks(lua_State *L, struct sl_proc *p, const struct run *r)
{
	SL_STACK_ENTER(L);

	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	lua_pushvalue(L, 1);
	lua_setfield(L, -2, "state");
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "previousState");
	lua_pushinteger(L, r->last);
	lua_setfield(L, -2, "checkpointOffset");
	lua_pushinteger(L, r->in->head > r->last ? r->in->head : r->last);
	lua_setfield(L, -2, "streamMaxOffset");
	lua_pushstring(L, p->cfg.mode_all ? r->ev[r->last_consumed].stream : r->in->stream);
	lua_setfield(L, -2, "stream");
	lua_pop(L, 1);
	SL_STACK_CHECK(L, 0);
}

/* A reduce that kept ctx in an upvalue reads nothing that depends on how events
 * were batched. [-0, +0, -] */
void sl_luaapi_clear_batch(lua_State *L, struct sl_proc *p)
{
	static const char *const fields[] = {"state",           "previousState", "checkpointOffset",
	                                     "streamMaxOffset", "stream",        NULL};
	int i;
	SL_STACK_ENTER(L);

	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	for (i = 0; fields[i]; i++) {
		lua_pushnil(L);
		lua_setfield(L, -2, fields[i]);
	}
	lua_pop(L, 1);
	SL_STACK_CHECK(L, 0);
}

/* ---- ctx.append ------------------------------------------------------------------- */

/* Adds s to the arena; returns its offset. */
static size_t arena_str(struct appends *ap, const char *s, size_t n)
{
	size_t off = ap->arena.len;

	sl_buf_add(&ap->arena, s, n);
	sl_buf_addc(&ap->arena, '\0');
	return off;
}

void sl_luaapi_appends_release(struct appends *ap)
{
	sl_buf_release(&ap->arena);
	free(ap->app);
	free(ap->res);
	ap->app = NULL;
	ap->res = NULL;
	ap->napp = ap->capp = 0;
}

/* Pushes the metadata of an emitted event: opts.metadata (at idx, or nil) with
 * source = {processor, version, stream, offset}. [-0, +1, m] */
static void push_emit_metadata(lua_State *L, struct sl_proc *p, int idx,
                               const struct sl_work_src *src)
{
	lua_newtable(L);
	if (lua_istable(L, idx)) {
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			lua_pushvalue(L, -2);
			lua_insert(L, -2);
			lua_rawset(L, -4);
		}
	}
	lua_createtable(L, 0, 4);
	lua_pushstring(L, p->cfg.name);
	lua_setfield(L, -2, "processor");
	lua_pushinteger(L, p->contract->version);
	lua_setfield(L, -2, "version");
	lua_pushstring(L, src->stream);
	lua_setfield(L, -2, "stream");
	lua_pushinteger(L, src->offset);
	lua_setfield(L, -2, "offset");
	lua_setfield(L, -2, "source");
}

/* Encodes the value at idx into the arena. [-0, +0, e] */
static size_t arena_json(lua_State *L, struct appends *ap, int idx, const char *what, size_t *len)
{
	struct sl_diag d;
	size_t off = ap->arena.len;

	sl_diag_init(&d);
	if (sl_lj_encode(L, idx, what, &ap->arena, &d))
		luaL_error(L, "ctx.append: %s", sl_diag_msg(&d));
	*len = ap->arena.len - off;
	sl_buf_addc(&ap->arena, '\0');
	return off;
}

/* A new pending append slot. [-0, +0, m] */
static struct pending_append *new_append(lua_State *L, struct appends *ap)
{
	struct pending_append *grown;

	if (ap->napp == ap->capp) {
		size_t cap = ap->capp ? ap->capp * 2 : 8;
		if (!(grown = realloc(ap->app, cap * sizeof(*grown))))
			luaL_error(L, "out of memory");
		ap->app = grown;
		ap->capp = cap;
	}
	return &ap->app[ap->napp++];
}

int sl_luaapi_appends_write(struct sl_proc *p, struct appends *ap, struct sl_diag *d)
{
	struct sl_event_in *ev;
	struct sl_append_result *res;
	size_t i, failed = 0;
	int rc;

	if (!ap->napp)
		return 0;
	/* The results stay until the appends are released: a commit may complete them
	 * only when it ends (sl_commit_append). */
	free(ap->res);
	ev = calloc(ap->napp, sizeof(*ev));
	res = ap->res = calloc(ap->napp, sizeof(*res));
	if (!ev || !res) {
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < ap->napp; i++) {
		const char *a = ap->arena.ptr;
		ev[i].stream = a + ap->app[i].stream;
		ev[i].type = a + ap->app[i].type;
		ev[i].key = a + ap->app[i].key;
		ev[i].payload = a + ap->app[i].payload;
		ev[i].payload_len = ap->app[i].payload_len;
		ev[i].metadata = a + ap->app[i].metadata;
		ev[i].metadata_len = ap->app[i].metadata_len;
	}
	rc = p->commit ? sl_commit_append(p->commit, ev, ap->napp, res, 0, &failed, d)
	               : sl_store_append(p->store, ev, ap->napp, res, 0, &failed, d);
	if (rc)
		sl_diag_prefix(d, "processor '%s': ctx.append of '%s' to '%s'", p->cfg.name,
		               ev[failed].type, ev[failed].stream);
out:
	free(ev);
	return rc;
}

/* Checks the type (at 1) and the payload (at 2, nil becoming {}) of an append.
 * [-0, +0, e] */
static void check_payload(lua_State *L, struct sl_proc *p, const char *type)
{
	const struct sl_evtype *et;
	struct sl_diag d;

	if (!sl_contract_emits(p->contract, type))
		luaL_error(L, "ctx.append: '%s' is not in the emits of contract '%s'", type,
		           p->contract->name);
	if (lua_isnil(L, 2)) {
		lua_newtable(L);
		lua_replace(L, 2);
	}
	luaL_checktype(L, 2, LUA_TTABLE);
	/* Before the validator and the encoder walk it: a graph of shared tables. */
	sl_sandbox_check_size(L, 2, SL_EVENT_MAX, SL_JSON_MAX_DEPTH + 1, "ctx.append: payload");
	sl_diag_init(&d);
	if ((et = sl_contract_type(p->contract, type)) && sl_schema_validate(et->schema, L, 2, &d))
		luaL_error(L, "ctx.append('%s'): payload %s", type, sl_diag_msg(&d));
	if (!lua_isnil(L, 3))
		luaL_checktype(L, 3, LUA_TTABLE);
}

/* The stream and the idempotency key of an append, from opts (at 3, or nil) or the
 * source; a generated key is written to keybuf. The strings stay on the stack.
 * [-0, +(0..3), e] */
static void append_target(lua_State *L, struct sl_proc *p, struct sl_work_src *src,
                          const char **stream, const char **key, char *keybuf, size_t cap)
{
	int opts = lua_istable(L, 3);

	*stream = opts && lua_getfield(L, 3, "stream") == LUA_TSTRING ? lua_tostring(L, -1)
	                                                              : src->stream;
	if (!*src->stream && !(opts && lua_getfield(L, 3, "idempotencyKey") == LUA_TSTRING))
		luaL_error(L, "ctx.append from work started in prepare needs opts.stream and"
		              " opts.idempotencyKey");
	if (!sl_stream_name_valid(*stream))
		luaL_error(L, "ctx.append: opts.stream: invalid stream name '%s'", *stream);
	*key = opts && lua_getfield(L, 3, "idempotencyKey") == LUA_TSTRING ? lua_tostring(L, -1)
	                                                                   : NULL;
	if (!*key) {
		snprintf(keybuf, cap, "%s@%s:%lld#%d", p->cfg.name, src->stream,
		         (long long)src->offset, ++src->appends);
		*key = keybuf;
	}
}

/* ctx.append(type, payload [, opts]) [-(2|3), +0, e] */
/* --strict: an override of processEventBatch that appends in a batch with an entry
 * whose sideEffects is false may be repeating an external effect (the event is at or
 * below the side-effect anchor or mark): warned once per batch, naming the first such
 * entry. Appends of processEvent run by ctx.fanOut are the engine's own choice. */
static void strict_fx_warning(struct sl_proc *p, struct run *r, const char *type)
{
	size_t k;

	if (!r || !r->in_batch_hook || r->in_fanout || r->warned_fx)
		return;
	for (k = 0; k < r->nreduced && r->rfx[k]; k++)
		;
	if (k == r->nreduced)
		return;
	r->warned_fx = 1;
	sl_log(SL_LOG_WARN, p->cfg.name, r->ev[r->ridx[k]].stream, r->ev[r->ridx[k]].offset,
	       "strict: processEventBatch appended '%s' in a batch whose reduced[%zu] has "
	       "sideEffects = false: an override's external effects should honour each entry's "
	       "sideEffects (it is false for events at or below the side-effect anchor or mark)",
	       type, k + 1);
}

static int ctx_append(lua_State *L, struct sl_proc *p, int arg)
{
	struct sl_work *w = sl_work_current(L);
	struct sl_work_src *src = w ? sl_work_src(w) : p->cur->src;
	struct appends *ap = w ? &p->wap : &p->cur->ap;
	const char *type = luaL_checkstring(L, 1), *stream, *key;
	struct pending_append *a;
	char keybuf[SL_STREAM_MAX * 2 + 64];

	(void)arg;
	if (!src)
		return luaL_error(L, "ctx.append is available only while a hook or its work runs");
	lua_settop(L, 3);
	check_payload(L, p, type);
	if (!w && p->cfg.strict)
		strict_fx_warning(p, p->cur, type);
	append_target(L, p, src, &stream, &key, keybuf, sizeof(keybuf));
	if (lua_istable(L, 3))
		lua_getfield(L, 3, "metadata");
	else
		lua_pushnil(L);
	sl_sandbox_check_size(L, -1, SL_EVENT_MAX, SL_JSON_MAX_DEPTH + 1,
	                      "ctx.append: opts.metadata");
	push_emit_metadata(L, p, lua_gettop(L), src);
	a = new_append(L, ap);
	a->stream = arena_str(ap, stream, strlen(stream));
	a->type = arena_str(ap, type, strlen(type));
	a->key = arena_str(ap, key, strlen(key));
	a->payload = arena_json(L, ap, 2, "payload", &a->payload_len);
	a->metadata = arena_json(L, ap, lua_gettop(L), "metadata", &a->metadata_len);
	if (!sl_buf_ok(&ap->arena))
		return luaL_error(L, "out of memory");
	if (w && !p->commit) { /* work's appends commit on their own, now */
		struct sl_diag d;
		int rc;
		sl_diag_init(&d);
		rc = sl_luaapi_appends_write(p, ap, &d);
		sl_luaapi_appends_release(ap);
		if (rc)
			return luaL_error(L, "%s", sl_diag_msg(&d));
	}
	return 0;
}

/* ---- ctx.log, ctx.fanOut ------------------------------------------------------------ */

/* ctx.log.<level>(...) logs its arguments, joined by spaces, as one record of the
 * engine's log (sl_log) with the processor, and the stream and offset of the event
 * being processed: a table as its JSON, anything else as tostring() shows it; the log
 * keeps a record on one line (a text line escapes control characters). Nothing is
 * converted when the level is filtered out. [-n, +0, e] */
static int ctx_log(lua_State *L, struct sl_proc *p, int arg)
{
	enum sl_log_level level = (enum sl_log_level)arg;
	const struct sl_event *src = p->cur ? p->cur->source : NULL;
	int n = lua_gettop(L), i;
	const char *msg;
	size_t len;
	luaL_Buffer b;

	if (!sl_log_enabled(level))
		return 0;
	luaL_buffinit(L, &b);
	for (i = 1; i <= n; i++) {
		struct sl_buf j;
		if (i > 1)
			luaL_addchar(&b, ' ');
		sl_buf_init(&j);
		/* A table is logged as its JSON (what a state or payload looks like), else
		 * as tostring() would show it (a cycle, a function inside). */
		if (lua_type(L, i) == LUA_TTABLE && sl_lj_encode(L, i, "log", &j, NULL) == 0 &&
		    sl_buf_ok(&j))
			luaL_addlstring(&b, j.ptr, j.len);
		else
			luaL_tolstring(L, i, NULL), luaL_addvalue(&b);
		sl_buf_release(&j);
	}
	luaL_pushresult(&b);
	msg = lua_tolstring(L, -1, &len);
	if (len > SL_LOG_MSG_MAX) /* one byte past the cap is enough for sl_log to mark the cut */
		len = SL_LOG_MSG_MAX + 1;
	sl_log(level, p->cfg.name, src ? src->stream : NULL, src ? src->offset : 0, "%.*s",
	       (int)len, msg);
	return 0;
}

/* ctx.fanOut(): the default processEventBatch, for overrides. [-0, +0, e] */
static int ctx_fanout(lua_State *L, struct sl_proc *p, int arg)
{
	struct run *r = p->cur;

	(void)arg;
	r->in_fanout = 1;
	sl_proc_fan_out(L, p, r);
	r->in_fanout = 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->batch_ref);
	lua_getfield(L, -1, "state");
	lua_setfield(L, -3, "state");
	lua_getfield(L, -1, "previousState");
	lua_setfield(L, -3, "previousState");
	lua_pop(L, 2);
	sl_proc_set_source(L, r, &r->ev[r->last_consumed]);
	return 0;
}

/* ---- ctx.block, ctx.background, and the work primitives ------------------------------- */

struct bgctx {
	struct sl_proc *p;
	char *stream; /* the instance */
};

static void on_background_done(void *ud, struct sl_work *w, const char *err, const char *tb)
{
	struct bgctx *c = ud;
	struct sl_work_src *src = sl_work_src(w);
	struct bgfail *f;

	if (err) {
		sl_log(SL_LOG_ERROR, c->p->cfg.name, src ? src->stream : c->stream,
		       src ? src->offset : 0,
		       "background work of processor '%s' (source %s@%lld) failed: %s",
		       c->p->cfg.name, src ? src->stream : "", src ? (long long)src->offset : 0LL,
		       tb ? tb : err);
		if ((f = calloc(1, sizeof(*f))) && (f->stream = strdup(c->stream))) {
			f->next = c->p->bgf;
			c->p->bgf = f;
		} else {
			free(f);
		}
		sl_proc_flush(c->p);
	}
	free(c->stream);
	free(c);
}

/* The function at 1, and the loop work runs on. [-0, +0, v] */
static void check_work_args(lua_State *L, struct sl_proc *p, const char *name)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	if (!p->wq)
		luaL_error(L, "ctx.%s needs the engine's event loop (sluice run)", name);
}

/* ctx.block(fn, ...) [-n, +0, e] */
static int ctx_block(lua_State *L, struct sl_proc *p, int arg)
{
	struct run *r = p->cur;

	(void)arg;
	check_work_args(L, p, "block");
	r->pending++;
	sl_work_start(L, p->wq, SL_WORK_BLOCK, lua_gettop(L) - 1, r->src, sl_proc_block_done, r);
	return 0;
}

/* ctx.background(fn, ...) [-n, +0, e] */
static int ctx_background(lua_State *L, struct sl_proc *p, int arg)
{
	struct sl_work_src *src;
	struct bgctx *c;

	(void)arg;
	check_work_args(L, p, "background");
	if (p->cur) {
		src = p->cur->src;
	} else {
		/* Recovery work started by prepare: no source event, so its appends must
		 * name their stream and key. */
		if (!p->prep_src && !(p->prep_src = sl_work_src_new("", 0)))
			return luaL_error(L, "out of memory");
		src = p->prep_src;
	}
	if (!(c = calloc(1, sizeof(*c))) ||
	    !(c->stream = strdup(p->cur ? p->cur->in->stream : ""))) {
		free(c);
		return luaL_error(L, "out of memory");
	}
	c->p = p;
	sl_work_start(L, p->wq, SL_WORK_BACKGROUND, lua_gettop(L) - 1, src, on_background_done, c);
	return 0;
}

/* ctx.sleep(ms) [-1, +0, y] */
static int ctx_sleep(lua_State *L, struct sl_proc *p, int arg)
{
	(void)p, (void)arg;
	return sl_work_sleep(L);
}

/* ctx.exec{argv..., stdin=, timeout=, env=} [-1, +(1|2), y] */
static int ctx_exec(lua_State *L, struct sl_proc *p, int arg)
{
	(void)p, (void)arg;
	return sl_work_exec(L);
}

/* ctx.http{method=, url=, headers=, body=, timeout=} [-1, +(1|2), y] */
static int ctx_http(lua_State *L, struct sl_proc *p, int arg)
{
	(void)p, (void)arg;
	return sl_work_http(L);
}
