/* sl_processor.c - processor scripts, their instances and the batch model.
 *
 * Lua is entered only through lua_pcall with a traceback handler: loading the
 * script, `prepare`, and one protected call per batch that decodes, validates and
 * reduces every event and runs processEventBatch (or the default fan-out). The
 * commit happens in C after that call returned, in the store's commit (sl_commit_begin)
 * that was opened before it, so ctx.db writes made by hooks commit with the batch.
 * What Lua sees (ctx and its primitives) is in sl_luaapi.c, the instances and their
 * cached states in sl_instcache.c; sl_processor_int.h holds what they share.
 */
#include "sl_processor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sl_buf.h"
#include "sl_hash.h"
#include "sl_checkpoint.h"
#include "sl_contract.h"
#include "sl_crash.h"
#include "sl_dbapi.h"
#include "sl_json.h"
#include "sl_log.h"
#include "sl_lstack.h"
#include "sl_luaapi.h"
#include "sl_luajson.h"
#include "sl_sandbox.h"
#include "sl_schema.h"
#include "sl_processor_int.h"
#include "sl_work.h"

static const char *const script_fields[] = {"contract",          "reduce",  "processEvent",
                                            "processEventBatch", "prepare", NULL};

const char *sl_proc_name(const struct sl_proc *p)
{
	return p->cfg.name;
}

const struct sl_contract *sl_proc_contract(const struct sl_proc *p)
{
	return p->contract;
}

const struct sl_proc_cfg *sl_proc_cfg(const struct sl_proc *p)
{
	return &p->cfg;
}

const char *sl_proc_script_hash(const struct sl_proc *p)
{
	return p->script_hash;
}

/* ---- patterns ------------------------------------------------------------------ */

int sl_pattern_match(const char *pat, const char *s)
{
	const char *pe, *se;

	for (;;) {
		pe = strchr(pat, '/');
		se = strchr(s, '/');
		if (!strncmp(pat, "**", 2) && (pat[2] == '/' || !pat[2])) {
			if (!pat[2]) /* ** at the end: one or more segments */
				return *s != '\0';
			while (se) { /* consume one or more segments, then match the rest */
				s = se + 1;
				if (sl_pattern_match(pat + 3, s))
					return 1;
				se = strchr(s, '/');
			}
			return 0;
		}
		if (!((pe ? (size_t)(pe - pat) : strlen(pat)) == 1 && *pat == '*')) {
			size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
			size_t sl = se ? (size_t)(se - s) : strlen(s);
			if (pl != sl || strncmp(pat, s, pl))
				return 0;
		}
		if (!pe || !se)
			return !pe && !se;
		pat = pe + 1;
		s = se + 1;
	}
}

/* ---- protected calls ----------------------------------------------------------------- */

/* Message handler: the error with a traceback. A budget error stays as it is: the
 * budget may be memory, and building a traceback allocates. [-1, +1, m] */
static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (sl_sandbox_is_budget_message(msg))
		return 1;
	if (!msg)
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/* Calls the function below nargs arguments with a traceback handler.
 * [-(nargs+1), +(nres|1), -]: on error the message (with traceback) is on top. */
static int pcall_tb(lua_State *L, int nargs, int nres)
{
	int base = lua_gettop(L) - nargs, rc;

	lua_pushcfunction(L, traceback);
	lua_insert(L, base);
	rc = lua_pcall(L, nargs, nres, base);
	lua_remove(L, base);
	return rc;
}

/* The first line of a Lua error message (without the traceback). */
static void first_line(const char *msg, char *out, size_t n)
{
	size_t len = strcspn(msg ? msg : "", "\n");

	snprintf(out, n, "%.*s", (int)len, msg ? msg : "unknown error");
}

/* ---- loading a script -------------------------------------------------------------- */

static const char *closest_of(const char *const *names, const char *s)
{
	struct sl_closest cl;
	int i;

	sl_closest_init(&cl, s);
	for (i = 0; names[i]; i++)
		sl_closest_try(&cl, names[i]);
	return sl_closest_best(&cl);
}

/* Protected: loads the script file (light userdata at 1) as text into a sandbox
 * environment and runs it. [-1, +1, e] */
static int load_body(lua_State *L)
{
	const char *file = lua_touserdata(L, 1);

	lua_settop(L, 0);
	if (sl_sandbox_loadfile(L, file) != LUA_OK)
		return lua_error(L);
	lua_call(L, 0, 1);
	return 1;
}

/* Runs the script file under the budgets; leaves its result on the stack.
 * [-0, +1, -] or [-0, +0, -] */
static int run_script(struct sl_proc *p, struct sl_errs *errs)
{
	lua_State *L = p->L;
	const char *file = p->cfg.script;
	char line[SL_DIAG_MAX];
	struct sl_sbmark m;
	enum sl_budget b;
	int rc;

	m = sl_sandbox_enter(L);
	lua_pushcfunction(L, load_body);
	lua_pushlightuserdata(L, (void *)file);
	rc = pcall_tb(L, 1, 1);
	b = sl_sandbox_exceeded(L, rc);
	sl_sandbox_leave(L, m);
	if (rc != LUA_OK) {
		if (b)
			snprintf(line, sizeof(line), "%s", sl_sandbox_message(L, b));
		else
			first_line(lua_tostring(L, -1), line, sizeof(line));
		sl_errs_add_lua(errs, file, line);
		lua_pop(L, 1);
		return SL_EINVAL;
	}
	if (!lua_istable(L, -1)) {
		sl_errs_add(errs, "%s: must return a table, got %s", file, luaL_typename(L, -1));
		lua_pop(L, 1);
		return SL_EINVAL;
	}
	return 0;
}

/* Pushes t[k] of the table at idx without metamethods. [-0, +1, m] */
static int raw_field(lua_State *L, int idx, const char *k)
{
	idx = lua_absindex(L, idx);
	lua_pushstring(L, k);
	return lua_rawget(L, idx);
}

/* Suggests the closest consumed type for a hook key. */
static const char *closest_consumed(const struct sl_contract *c, const char *key)
{
	struct sl_closest cl;
	size_t i;

	sl_closest_init(&cl, key);
	for (i = 0; i < c->nconsumes; i++)
		sl_closest_try(&cl, c->consumes[i]);
	return sl_closest_best(&cl);
}

/* Checks a hook table (reduce, processEvent) at -1: consumed keys, function values.
 * [-0, +0, m] */
static void check_hooks(lua_State *L, const struct sl_proc *p, const char *field,
                        struct sl_errs *errs)
{
	const char *file = p->cfg.script, *hint, *key;
	size_t first = errs->n;

	lua_pushnil(L);
	while (lua_next(L, -2)) {
		if (lua_type(L, -2) != LUA_TSTRING) {
			sl_errs_add(errs, "%s: %s: keys must be event types (strings)", file,
			            field);
		} else {
			key = lua_tostring(L, -2);
			if (!strcmp(key, "*") ? !p->contract->consumes_all
			                      : !sl_contract_consumes_named(p->contract, key)) {
				hint = closest_consumed(p->contract, key);
				sl_errs_add(
					errs,
					"%s: %s: key '%s' is not consumed by contract '%s'%s%s%s",
					file, field, key, p->contract->name,
					hint ? " (did you mean '" : "", hint ? hint : "",
					hint ? "'?)" : "");
			} else if (!lua_isfunction(L, -1)) {
				sl_errs_add(errs, "%s: %s: '%s' must be a function, got %s", file,
				            field, key, luaL_typename(L, -1));
			}
		}
		lua_pop(L, 1);
	}
	sl_errs_sort(errs, first); /* not in the table's (random) order */
}

/* Takes field `name` of the script table at -1 into a registry ref if its type
 * matches. [-0, +0, m] */
static int take_field(lua_State *L, const struct sl_proc *p, const char *name, int type, int *ref,
                      struct sl_errs *errs)
{
	int t = raw_field(L, -1, name); /* raw: the script's table may have metamethods */

	*ref = LUA_NOREF;
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != type) {
		sl_errs_add(errs, "%s: %s: must be a %s, got %s", p->cfg.script, name,
		            lua_typename(L, type), lua_typename(L, t));
		lua_pop(L, 1);
		return 1;
	}
	if (type == LUA_TTABLE)
		check_hooks(L, p, name, errs);
	*ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* Checks the script table at -1 and takes its hooks. [-0, +0, m] */
static void check_script(lua_State *L, struct sl_proc *p, struct sl_contracts *cs,
                         struct sl_errs *errs)
{
	const char *file = p->cfg.script, *hint;
	size_t first = errs->n;

	lua_pushnil(L);
	while (lua_next(L, -2)) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		int i, known = 0;
		for (i = 0; k && script_fields[i]; i++)
			known |= !strcmp(k, script_fields[i]);
		if (!known) {
			hint = k ? closest_of(script_fields, k) : NULL;
			sl_errs_add(errs, "%s: %s: unknown field%s%s%s", file,
			            k ? k : "(not a string)", hint ? " (did you mean '" : "",
			            hint ? hint : "", hint ? "'?)" : "");
		}
		lua_pop(L, 1);
	}
	sl_errs_sort(errs, first);
	if (raw_field(L, -1, "contract") != LUA_TSTRING) {
		sl_errs_add(errs, "%s: contract: required, the name of the processor's contract",
		            file);
	} else if (sl_contracts_load(cs, lua_tostring(L, -1), &p->contract, errs)) {
		sl_errs_add(errs, "%s: contract: '%s' cannot be loaded", file, lua_tostring(L, -1));
	}
	lua_pop(L, 1);
	if (!p->contract)
		return;
	take_field(L, p, "reduce", LUA_TTABLE, &p->ref_reduce, errs);
	take_field(L, p, "processEvent", LUA_TTABLE, &p->ref_process, errs);
	take_field(L, p, "processEventBatch", LUA_TFUNCTION, &p->ref_batch, errs);
	take_field(L, p, "prepare", LUA_TFUNCTION, &p->ref_prepare, errs);
}

/* The field names of the tables a batch builds, interned once per state (a
 * lua_setfield with a C string looks the string up again every time). */
enum {
	K_STREAM = 1,
	K_OFFSET,
	K_POSITION,
	K_TYPE,
	K_PAYLOAD,
	K_METADATA,
	K_KEY,
	K_CREATED,
	K_EVENT,
	K_PREVIOUS,
	K_STATE,
	K_FX,
	K_COUNT
};
static const char *const key_names[K_COUNT] = {
	NULL,         "stream",         "offset",    "position", "type",          "payload",
	"metadata",   "idempotencyKey", "createdAt", "event",    "previousState", "state",
	"sideEffects"};
static const char keys_key = 0;

/* Pushes the array of interned field names (made at the first call). [-0, +1, m] */
static void push_keys(lua_State *L)
{
	int i;

	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &keys_key) == LUA_TTABLE)
		return;
	lua_pop(L, 1);
	lua_createtable(L, K_COUNT, 0);
	for (i = 1; i < K_COUNT; i++) {
		lua_pushstring(L, key_names[i]);
		lua_rawseti(L, -2, i);
	}
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &keys_key);
}

/* What the events of one batch share: the interned names (at stack index keys); the
 * last stream, type and createdAt pushed (their strings at sslot, tslot and cslot, 0
 * for none), so the events of one stream, type and append reuse one Lua string each;
 * and the reduce handler of the last type (at hslot, for htype). */
struct evpush {
	int keys, sslot, tslot, cslot, hslot;
	const char *stream, *type, *created, *htype;
};

/* Pushes the string s, reusing the one at slot when it is the same (and keeping s
 * there for the next call). [-0, +1, m] */
static void push_shared(lua_State *L, const char *s, int slot, const char **last)
{
	if (slot && *last && !strcmp(*last, s)) {
		lua_pushvalue(L, slot);
		return;
	}
	lua_pushstring(L, s);
	if (slot) {
		lua_pushvalue(L, -1);
		lua_replace(L, slot);
		*last = s;
	}
}

/* t[name k] = the value on top, t a table without metatable at index t. [-1, +0, m] */
static void set_key(lua_State *L, const struct evpush *e, int t, int k)
{
	lua_rawgeti(L, e->keys, k);
	lua_insert(L, -2);
	lua_rawset(L, t);
}

/* Pushes the event as a Lua table. [-0, +1, m] */
static void push_event(lua_State *L, const struct sl_event *ev, struct evpush *e, struct sl_diag *d)
{
	int t;

	lua_createtable(L, 0, 8);
	t = lua_gettop(L);
	push_shared(L, ev->stream, e->sslot, &e->stream);
	set_key(L, e, t, K_STREAM);
	lua_pushinteger(L, ev->offset);
	set_key(L, e, t, K_OFFSET);
	lua_pushinteger(L, ev->position);
	set_key(L, e, t, K_POSITION);
	push_shared(L, ev->type, e->tslot, &e->type);
	set_key(L, e, t, K_TYPE);
	if (sl_lj_decode(L, ev->payload, ev->payload_len, 0, d))
		luaL_error(L, "%s@%lld: payload: %s", ev->stream, (long long)ev->offset,
		           sl_diag_msg(d));
	set_key(L, e, t, K_PAYLOAD);
	if (ev->metadata) {
		if (sl_lj_decode(L, ev->metadata, ev->metadata_len, 0, d))
			luaL_error(L, "%s@%lld: metadata: %s", ev->stream, (long long)ev->offset,
			           sl_diag_msg(d));
		set_key(L, e, t, K_METADATA);
	}
	if (ev->key) {
		lua_pushstring(L, ev->key);
		set_key(L, e, t, K_KEY);
	}
	push_shared(L, ev->created_at, e->cslot, &e->created);
	set_key(L, e, t, K_CREATED);
}

/* Pushes processEvent[type] or processEvent["*"], or nil. [-0, +1, -] */
static void push_handler(lua_State *L, struct sl_proc *p, int ref, const char *type)
{
	if (ref == LUA_NOREF) {
		lua_pushnil(L);
		return;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	if (raw_field(L, -1, type) == LUA_TNIL) {
		lua_pop(L, 1);
		raw_field(L, -1, "*");
	}
	lua_remove(L, -2);
	(void)p;
}

/* push_handler for reduce, reusing the handler of the last type (at e->hslot).
 * [-0, +1, -] */
static void push_reduce(lua_State *L, struct sl_proc *p, struct evpush *e, const char *type)
{
	if (e->hslot && e->htype && !strcmp(e->htype, type)) {
		lua_pushvalue(L, e->hslot);
		return;
	}
	push_handler(L, p, p->ref_reduce, type);
	if (e->hslot) {
		lua_pushvalue(L, -1);
		lua_replace(L, e->hslot);
		e->htype = type;
	}
}

/* Makes ev the source of appends and of work registered from now on. [-0, +0, e] */
void sl_proc_set_source(lua_State *L, struct run *r, const struct sl_event *ev)
{
	struct sl_work_src *src;

	if (r->source == ev)
		return;
	if (!(src = sl_work_src_new(ev->stream, ev->offset)))
		luaL_error(L, "out of memory");
	sl_work_src_unref(r->src);
	r->src = src;
	r->source = ev;
}

/* Strict mode: fails the batch when the value at idx differs from its snapshot at
 * snap (the hook changed a table it was given). [-0, +0, e] */
static void strict_check(lua_State *L, int idx, int snap, const char *hook, const char *root)
{
	char where[600];

	if (sl_sandbox_diff(L, idx, snap, root, where, sizeof(where)))
		luaL_error(L, "strict: %s changed a table it was given: %s", hook, where);
}

/* Pushes a snapshot of the value at idx in strict mode, nil otherwise. [-0, +1, m] */
static void strict_snap(lua_State *L, const struct sl_proc *p, int idx)
{
	if (p->cfg.strict)
		sl_sandbox_snapshot(L, idx);
	else
		lua_pushnil(L);
}

/* Calls processEvent (at fn) with the event at ev and ctx, as one budgeted hook call
 * (or part of the enclosing processEventBatch call). [-0, +0, e] */
static void call_process_event(lua_State *L, struct sl_proc *p, int fn, int ev, int ctx)
{
	int snaps = lua_gettop(L) + 1;
	struct sl_sbmark m;

	if (p->cfg.strict) {
		strict_snap(L, p, ev);
		raw_field(L, ctx, "state");
		strict_snap(L, p, -1);
		raw_field(L, ctx, "previousState");
		strict_snap(L, p, -1);
	}
	lua_pushvalue(L, fn);
	lua_pushvalue(L, ev);
	lua_pushvalue(L, ctx);
	m = sl_sandbox_enter(L);
	lua_call(L, 2, 0);
	sl_sandbox_leave(L, m);
	if (p->cfg.strict) {
		strict_check(L, ev, snaps, "processEvent", "event");
		strict_check(L, snaps + 1, snaps + 2, "processEvent", "ctx.state");
		strict_check(L, snaps + 3, snaps + 4, "processEvent", "ctx.previousState");
	}
	lua_settop(L, snaps - 1);
}

/* Runs processEvent for each entry of the batch's reduced list whose sideEffects is
 * true, with ctx.state / ctx.previousState (and in mode all ctx.stream) set per event.
 * The entries' fields are read raw: the script may have reached them (batch.reduced).
 * [-0, +0, e] */
void sl_proc_fan_out(lua_State *L, struct sl_proc *p, struct run *r)
{
	int base = lua_gettop(L), priv = base + 1, ctx = base + 2, fn = base + 3;
	size_t k;

	/* What runs, for which event and type, comes from the engine's own record of
	 * the batch: a hook may have written to batch.reduced, its entries or events. */
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->priv_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	for (k = 0; k < r->nreduced; k++, lua_settop(L, ctx)) {
		const struct sl_event *ev = &r->ev[r->ridx[k]];
		lua_Integer at = (lua_Integer)(3 * k);
		if (!r->rfx[k])
			continue;
		push_handler(L, p, p->ref_process, ev->type); /* fn */
		if (lua_isnil(L, -1))
			continue;
		lua_rawgeti(L, priv, at + 1); /* fn + 1: the event */
		lua_rawgeti(L, priv, at + 3);
		lua_setfield(L, ctx, "state");
		lua_rawgeti(L, priv, at + 2);
		lua_setfield(L, ctx, "previousState");
		if (p->cfg.mode_all) {
			lua_pushstring(L, ev->stream);
			lua_setfield(L, ctx, "stream");
		}
		sl_proc_set_source(L, r, ev);
		r->current = r->ridx[k];
		call_process_event(L, p, fn, fn + 1, ctx);
		r->current = SIZE_MAX;
	}
	lua_settop(L, base);
}

/* Pushes the instance's state: cached, decoded from its checkpoint, or the initial
 * state. [-0, +1, e] */
static void push_state(lua_State *L, struct sl_proc *p, struct sl_inst *in, struct sl_diag *d)
{
	struct sl_ckpt c;
	int found = 0, rc;

	if (in->state_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, in->state_ref);
		return;
	}
	if (in->has_row && sl_ckpt_get(p->store, p->cfg.name, in->stream, &c, &found, d))
		luaL_error(L, "%s", sl_diag_msg(d));
	if (found && c.offset != in->offset) {
		/* The row moved since the instance was loaded: a commit of another runner,
		 * or one of this process whose reply was lost (a JetStream store), landed
		 * since. Its state already holds the events up to c.offset, and this batch
		 * starts after in->offset: fold nothing twice, load the instance again
		 * and let the next attempt start from the row. */
		int64_t was = in->offset, now = c.offset;
		sl_ckpt_release(&c);
		in->loaded = 0;
		luaL_error(L,
		           "the checkpoint moved from offset %lld to %lld since the instance was "
		           "loaded; it is loaded again",
		           (long long)was, (long long)now);
	}
	if (found && c.state)
		rc = sl_lj_decode(L, c.state, c.state_len, 0, d);
	else
		rc = sl_lj_decode(L, p->contract->initial_state, p->contract->initial_len, 0, d);
	if (found)
		sl_ckpt_release(&c);
	if (rc)
		luaL_error(L, "stored state: %s", sl_diag_msg(d));
}

/* Calls reduce (the handler on top) with the state at 1 and the event at evi as one
 * budgeted hook call, with the state flagged as reducing; strict mode checks it
 * changed neither. Leaves its result in place of the handler. [-1, +1, e] */
static void call_reduce(lua_State *L, struct sl_proc *p, int evi)
{
	int fn = lua_gettop(L), snap = fn + 1;
	struct sl_sbmark m;

	if (p->cfg.strict) {
		sl_sandbox_snapshot(L, 1);
		sl_sandbox_snapshot(L, evi);
	}
	lua_pushvalue(L, fn);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, evi);
	m = sl_sandbox_enter(L);
	sl_sandbox_reducing(L, 1);
	lua_call(L, 2, 1);
	sl_sandbox_leave(L, m);
	if (p->cfg.strict) {
		strict_check(L, 1, snap, "reduce", "state");
		strict_check(L, evi, snap + 1, "reduce", "event");
	}
	lua_replace(L, fn);
	lua_settop(L, fn);
}

/* Reduces one event: the state at 1 becomes the new state. [-0, +0, e] */
static void reduce_one(lua_State *L, struct sl_proc *p, struct run *r, size_t i, int fx,
                       int need_all, struct evpush *e)
{
	const struct sl_event *ev = &r->ev[i];
	const struct sl_evtype *et = sl_contract_type(p->contract, ev->type);
	int top = lua_gettop(L), evi = top + 1, t;

	push_event(L, ev, e, r->d);
	if (et && sl_contract_consumes_named(p->contract, ev->type)) {
		lua_rawgeti(L, e->keys, K_PAYLOAD);
		lua_rawget(L, evi);
		if (sl_schema_validate(et->schema, L, -1, r->d))
			luaL_error(L, "payload: %s", sl_diag_msg(r->d));
		lua_pop(L, 1);
	}
	push_reduce(L, p, e, ev->type);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushvalue(L, 1);
	} else {
		call_reduce(L, p, evi);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			lua_pushvalue(L, 1);
		} else if (!lua_istable(L, -1)) {
			luaL_error(L, "reduce returned a %s, not a table", luaL_typename(L, -1));
		} else if (sl_schema_validate(p->contract->state, L, -1, r->d)) {
			luaL_error(L, "reduce returned an invalid state: %s", sl_diag_msg(r->d));
		}
	}
	/* evi + 1: the new state */
	if (need_all || (fx && (push_handler(L, p, p->ref_process, ev->type), !lua_isnil(L, -1)))) {
		lua_settop(L, evi + 1);
		lua_createtable(L, 0, 4);
		t = lua_gettop(L);
		lua_pushvalue(L, evi);
		set_key(L, e, t, K_EVENT);
		lua_pushvalue(L, 1);
		set_key(L, e, t, K_PREVIOUS);
		lua_pushvalue(L, evi + 1);
		set_key(L, e, t, K_STATE);
		lua_pushboolean(L, fx);
		set_key(L, e, t, K_FX);
		lua_rawseti(L, 3, (lua_Integer)r->nreduced + 1);
		lua_pushvalue(L, evi);
		lua_rawseti(L, 5, (lua_Integer)(3 * r->nreduced + 1));
		lua_pushvalue(L, 1);
		lua_rawseti(L, 5, (lua_Integer)(3 * r->nreduced + 2));
		lua_pushvalue(L, evi + 1);
		lua_rawseti(L, 5, (lua_Integer)(3 * r->nreduced + 3));
		r->ridx[r->nreduced] = i;
		r->rfx[r->nreduced++] = (unsigned char)fx;
		if (need_all) {
			lua_pushvalue(L, evi);
			lua_rawseti(L, 4, (lua_Integer)lua_rawlen(L, 4) + 1);
		}
	}
	lua_settop(L, evi + 1);
	lua_replace(L, 1);
	lua_settop(L, top);
}

static int dead_cmp(const void *a, const void *b)
{
	const struct dead *x = a, *y = b;
	int c = strcmp(x->stream, y->stream);

	return c ? c : (x->offset > y->offset) - (x->offset < y->offset);
}

/* Whether ev is one of the processor's dead letters. */
static int is_dead(const struct sl_proc *p, const struct sl_event *ev)
{
	struct dead key = {(char *)ev->stream, ev->offset};

	return p->ndead && bsearch(&key, p->dead, p->ndead, sizeof(key), dead_cmp);
}

static void free_dead(struct sl_proc *p)
{
	size_t i;

	for (i = 0; i < p->ndead; i++)
		free(p->dead[i].stream);
	free(p->dead);
	p->dead = NULL;
	p->ndead = 0;
}

static int add_dead(void *ud, const struct sl_dead_letter *dl)
{
	struct sl_proc *p = ud;
	struct dead *grown;

	if (strcmp(dl->processor, p->cfg.name))
		return 0;
	if (!(grown = realloc(p->dead, (p->ndead + 1) * sizeof(*grown))))
		return SL_ENOMEM;
	p->dead = grown;
	if (!(p->dead[p->ndead].stream = strdup(dl->stream)))
		return SL_ENOMEM;
	p->dead[p->ndead++].offset = dl->offset;
	return 0;
}

/* Reads the processor's dead letters from the store: the events its batches skip. */
static int load_dead(struct sl_proc *p, struct sl_diag *d)
{
	int rc;

	free_dead(p);
	if ((rc = sl_ckpt_dead_letters(p->store, add_dead, p, d)))
		return rc == SL_ENOMEM ? sl_diag_set(d, rc, "out of memory") : rc;
	if (p->ndead)
		qsort(p->dead, p->ndead, sizeof(*p->dead), dead_cmp);
	return 0;
}

static int64_t seq_of(const struct sl_proc *p, const struct sl_event *ev)
{
	return p->cfg.mode_all ? ev->position : ev->offset;
}

/* Calls processEventBatch(batch, ctx) with the batch table built from the stack
 * (1 state, 2 previousState, 3 reduced, 4 events), as one budgeted hook call.
 * [-0, +0, e] */
static void call_batch_hook(lua_State *L, struct sl_proc *p, struct run *r)
{
	int top = lua_gettop(L), batch = top + 2;
	struct sl_sbmark m;

	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_batch);
	lua_createtable(L, 0, 5);
	lua_pushvalue(L, 4);
	lua_setfield(L, -2, "events");
	lua_pushvalue(L, 3);
	lua_setfield(L, -2, "reduced");
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "previousState");
	lua_pushvalue(L, 1);
	lua_setfield(L, -2, "state");
	lua_pushinteger(L, p->cfg.effects_all ? 0 : p->anchor);
	lua_setfield(L, -2, "sideEffectsAfterPosition");
	lua_pushvalue(L, -1);
	r->batch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	strict_snap(L, p, batch); /* top + 3 */
	lua_pushvalue(L, top + 1);
	lua_pushvalue(L, batch);
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	m = sl_sandbox_enter(L);
	r->in_batch_hook = 1;
	lua_call(L, 2, 0);
	r->in_batch_hook = 0;
	sl_sandbox_leave(L, m);
	if (p->cfg.strict)
		strict_check(L, batch, top + 3, "processEventBatch", "batch");
	lua_settop(L, top);
}

/* Strict mode: reduces the batch's consumed events a second time from the state
 * the batch started with (at 2) and compares the result with the state at 1.
 * [-0, +0, e] */
static void check_deterministic(lua_State *L, struct sl_proc *p, struct run *r)
{
	int top = lua_gettop(L), cur = top + 2;
	int64_t last = r->in->offset, seq;
	struct evpush e = {top + 1, 0, 0, 0, 0, NULL, NULL, NULL, NULL};
	struct sl_sbmark m;
	char where[600];
	size_t i;

	push_keys(L);
	lua_pushvalue(L, 2);
	for (i = 0; i < r->n; i++) {
		const struct sl_event *ev = &r->ev[i];
		if ((seq = seq_of(p, ev)) <= last)
			continue;
		last = seq;
		if (!sl_contract_consumes(p->contract, ev->type) ||
		    (p->cfg.mode_all && !sl_pattern_match(p->cfg.streams, ev->stream)) ||
		    is_dead(p, ev))
			continue;
		r->current = i;
		push_event(L, ev, &e, r->d);                 /* cur + 1 */
		push_handler(L, p, p->ref_reduce, ev->type); /* cur + 2 */
		if (!lua_isnil(L, -1)) {
			lua_pushvalue(L, cur);
			lua_pushvalue(L, cur + 1);
			m = sl_sandbox_enter(L);
			sl_sandbox_reducing(L, 1);
			lua_call(L, 2, 1);
			sl_sandbox_leave(L, m);
			if (!lua_isnil(L, -1))
				lua_replace(L, cur);
		}
		lua_settop(L, cur);
	}
	r->current = SIZE_MAX;
	if (sl_sandbox_compare(L, 1, cur, "state", where, sizeof(where)))
		luaL_error(L,
		           "strict: reduce is not deterministic: reducing the batch again from"
		           " the same state gave another state (%s)",
		           where);
	lua_settop(L, top);
}

/* The largest state JSON the engine encodes for a processor: its memory budget. */
static size_t state_cap(const struct sl_proc *p)
{
	return p->cfg.memory > 0 ? (size_t)p->cfg.memory : (size_t)1 << 30;
}

/* The protected body of a batch (light userdata proc at 1). Leaves the new state in
 * r->state_ref when an event was consumed. [-1, +0, e] */
static int run_batch(lua_State *L)
{
	struct sl_proc *p = lua_touserdata(L, 1);
	struct run *r = p->cur;
	int need_all = p->ref_batch != LUA_NOREF, fx;
	struct evpush e = {6, 7, 8, 9, 10, NULL, NULL, NULL, NULL};
	size_t i;

	lua_settop(L, 0);
	push_state(L, p, r->in, r->d);
	lua_pushvalue(L, 1);
	lua_newtable(L);                           /* 3: batch.reduced */
	lua_newtable(L);                           /* 4: batch.events */
	lua_newtable(L);                           /* 5: the engine's copy of the reduced entries */
	push_keys(L);                              /* 6: the interned field names */
	lua_pushnil(L);                            /* 7: the last stream pushed */
	lua_pushnil(L);                            /* 8: the last type pushed */
	lua_pushnil(L);                            /* 9: the last createdAt pushed */
	lua_pushnil(L);                            /* 10: the reduce handler of the last type */
	luaL_checkstack(L, LUA_MINSTACK, "batch"); /* what reduce_one pushes above */
	r->nreduced = 0;
	sl_luaapi_clear_batch(L, p);
	for (i = 0; i < r->n; i++) {
		const struct sl_event *ev = &r->ev[i];
		int64_t seq = seq_of(p, ev);
		if (seq <= r->last)
			continue;
		r->last = seq;
		if (!sl_contract_consumes(p->contract, ev->type) ||
		    (p->cfg.mode_all && !sl_pattern_match(p->cfg.streams, ev->stream)) ||
		    is_dead(p, ev))
			continue;
		r->current = r->last_consumed = i;
		r->nconsumed++;
		fx = (p->cfg.effects_all || ev->position > p->anchor) && seq > r->in->effects_mark;
		reduce_one(L, p, r, i, fx, need_all, &e);
	}
	if (!r->nconsumed)
		return 0;
	r->current = SIZE_MAX;
	if (p->cfg.strict)
		check_deterministic(L, p, r);
	/* No hook to run (no processEventBatch, and no entry with side effects and a
	 * processEvent handler, as in a catch-up below the anchor): ctx stays as
	 * sl_luaapi_clear_batch left it, and no source is made. */
	if (need_all || r->nreduced) {
		lua_pushvalue(L, 5);
		r->priv_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		sl_luaapi_begin_hooks(L, p, r);
		sl_proc_set_source(L, r, &r->ev[r->last_consumed]);
		if (need_all)
			call_batch_hook(L, p, r);
		else
			sl_proc_fan_out(L, p, r);
	}
	/* The encoder walks shared subtables once per path: cap that walk first. */
	sl_sandbox_check_size(L, 1, state_cap(p), SL_JSON_MAX_DEPTH + 1, "the state");
	if (sl_lj_encode(L, 1, "state", &r->state_json, r->d))
		luaL_error(L, "%s", sl_diag_msg(r->d));
	lua_settop(L, 1);
	r->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* ---- instances and their cached states ------------------------------------------------- */

struct sl_inst *sl_proc_instance(struct sl_proc *p, const char *stream)
{
	return sl_instcache_get(&p->cache, stream);
}

int sl_proc_inst_load(struct sl_proc *p, struct sl_inst *in, struct sl_diag *d)
{
	struct sl_ckpt c;
	int found, rc;

	if (in->loaded)
		return 0;
	if ((rc = sl_ckpt_get(p->store, p->cfg.name, in->stream, &c, &found, d)))
		return rc;
	in->offset = c.offset;
	in->effects_mark = c.effects_mark;
	in->faulted = c.faulted;
	in->has_row = found;
	in->loaded = 1;
	sl_ckpt_release(&c);
	return 0;
}

void sl_proc_inst_unload(struct sl_proc *p, struct sl_inst *in)
{
	sl_instcache_unload(&p->cache, in);
}

void sl_proc_inst_preset(struct sl_inst *in, int64_t offset, int64_t effects_mark, int faulted,
                         int has_row)
{
	if (in->loaded)
		return;
	in->offset = offset;
	in->effects_mark = effects_mark;
	in->faulted = faulted;
	in->has_row = has_row;
	in->loaded = 1;
}

/* ---- running batches ---------------------------------------------------------------- */

/* Describes a Lua error of a batch in d: "<stream>@<offset> (<type>): <message>". */
static void lua_failure(struct sl_proc *p, struct run *r, const char *msg, struct sl_diag *d)
{
	char line[SL_DIAG_MAX];

	/* The Lua message already carries any detail put in d on the way up. */
	sl_diag_init(d);
	first_line(msg, line, sizeof(line));
	if (r && r->current < r->n)
		sl_diag_set(d, SL_ELUA, "processor '%s' failed at %s@%lld (%s): %s", p->cfg.name,
		            r->ev[r->current].stream, (long long)r->ev[r->current].offset,
		            r->ev[r->current].type, line);
	else if (r && r->in_batch_hook && r->nreduced)
		/* Not one event's: the batch's, from its first to its last reduced event. */
		sl_diag_set(d, SL_ELUA,
		            "processor '%s' failed in processEventBatch %s%s%s%lld..%lld: %s",
		            p->cfg.name, p->cfg.mode_all ? "at positions " : "on ",
		            p->cfg.mode_all ? "" : r->in->stream, p->cfg.mode_all ? "" : "@",
		            (long long)seq_of(p, &r->ev[r->ridx[0]]),
		            (long long)seq_of(p, &r->ev[r->ridx[r->nreduced - 1]]), line);
	else
		sl_diag_set(d, SL_ELUA, "processor '%s' failed: %s", p->cfg.name, line);
}

/* A batch failed because a budget was exceeded: the message is exactly the
 * budget's; the traceback names the event. */
static void budget_failure(struct sl_proc *p, struct run *r, enum sl_budget b)
{
	const char *msg = sl_sandbox_message(p->L, b);
	char tb[SL_DIAG_MAX];

	sl_diag_init(&r->fail);
	sl_diag_set(&r->fail, SL_ELUA, "%s", msg);
	if (r->current < r->n)
		snprintf(tb, sizeof(tb), "%s\n\tat %s@%lld (%s)", msg, r->ev[r->current].stream,
		         (long long)r->ev[r->current].offset, r->ev[r->current].type);
	else
		snprintf(tb, sizeof(tb), "%s", msg);
	free(r->traceback);
	r->traceback = strdup(tb);
	if (b == SL_BUDGET_MEMORY)
		sl_instcache_drop_states(&p->cache);
}

int sl_proc_is_budget_failure(const char *msg)
{
	return sl_sandbox_is_budget_message(msg);
}

/* The lease fence of a commit of the processor for instance stream (NULL: the
 * processor's own writes), or NULL (no runner). A partitioned processor fences an
 * instance's commit on the lease of its partition, at the epoch this runner holds it
 * (0 when it does not: the commit is refused), and its own writes not at all. */
static const struct sl_fence *fence_for(struct sl_proc *p, const char *stream)
{
	int k;

	if (!p->fence.owner)
		return NULL;
	if (!p->nparts)
		return &p->fence;
	if (!stream)
		return NULL;
	k = sl_partition_of(stream, p->nparts);
	p->pfence = p->fence;
	p->pfence.epoch = p->part_epochs[k];
	p->pfence.part = k + 1;
	return &p->pfence;
}

static const struct sl_fence *fence_of(struct sl_proc *p)
{
	return fence_for(p, NULL);
}

/* Opens p->commit, for prepare (stream NULL) or a batch of instance stream, and binds
 * ctx.db to it. */
static int open_commit(struct sl_proc *p, const char *stream, struct sl_diag *d)
{
	int rc;

	if ((rc = sl_commit_begin(p->store, fence_for(p, stream), &p->commit, d)))
		return rc;
	if (!sl_commit_projection(p->commit)) {
		sl_dbapi_bind_none(p->db);
		return 0;
	}
	if ((rc = sl_dbapi_bind(p->db, sl_commit_projection(p->commit), d))) {
		sl_commit_end(p->commit, 0, NULL);
		p->commit = NULL;
	}
	return rc;
}

/* Ends p->commit: commits it (commit = 1) or rolls it back; ctx.db is unbound. */
static int end_commit(struct sl_proc *p, int commit, struct sl_diag *d)
{
	struct sl_commit *c = p->commit;

	sl_dbapi_bind(p->db, NULL, NULL);
	p->commit = NULL;
	return sl_commit_end(c, commit, d);
}

/* Runs prepare(ctx) once per process, in a commit of its own. */
static int run_prepare(struct sl_proc *p, struct sl_diag *d)
{
	lua_State *L = p->L;
	struct sl_sbmark m;
	enum sl_budget b;
	int rc;

	if (p->prepared)
		return 0;
	if (p->ref_prepare == LUA_NOREF) {
		p->prepared = 1;
		return 0;
	}
	if ((rc = open_commit(p, NULL, d)))
		return rc;
	p->preparing = 1;
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	lua_pushnil(L);
	lua_setfield(L, -2, "state"); /* prepare sees no instance */
	lua_pop(L, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_prepare);
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref_ctx);
	m = sl_sandbox_enter(L);
	rc = pcall_tb(L, 1, 0);
	b = sl_sandbox_exceeded(L, rc);
	sl_sandbox_leave(L, m);
	p->preparing = 0;
	if (rc != LUA_OK) {
		char line[SL_DIAG_MAX];
		first_line(lua_tostring(L, -1), line, sizeof(line));
		lua_pop(L, 1);
		end_commit(p, 0, NULL);
		if (b == SL_BUDGET_MEMORY)
			sl_instcache_drop_states(&p->cache);
		if (b)
			return sl_diag_set(d, SL_ELUA, "%s", sl_sandbox_message(L, b));
		return sl_diag_set(d, SL_ELUA, "processor '%s': prepare failed: %s", p->cfg.name,
		                   line);
	}
	if ((rc = end_commit(p, 1, d)))
		return rc;
	p->prepared = 1;
	return 0;
}

/* Frees a finished batch and its registry refs. [-0, +0, -] */
static void run_release(lua_State *L, struct run *r)
{
	if (r->priv_ref != LUA_NOREF)
		luaL_unref(L, LUA_REGISTRYINDEX, r->priv_ref);
	if (r->batch_ref != LUA_NOREF)
		luaL_unref(L, LUA_REGISTRYINDEX, r->batch_ref);
	if (r->state_ref != LUA_NOREF)
		luaL_unref(L, LUA_REGISTRYINDEX, r->state_ref);
	sl_work_src_unref(r->src);
	sl_luaapi_appends_release(&r->ap);
	sl_buf_release(&r->dblog);
	sl_buf_release(&r->state_json);
	free(r->traceback);
	free(r->ridx);
	free(r->rfx);
	free(r);
}

/* Commits a batch whose hooks and blocking work succeeded: appends, checkpoint, and
 * the end of p->commit, open since the hooks ran (or the replay). Always ends it. */
static int commit_batch(struct sl_proc *p, struct run *r, struct sl_diag *d)
{
	struct sl_inst *in = r->in;
	int64_t mark = r->last > in->effects_mark ? r->last : in->effects_mark;
	int rc, rated = 0;

	sl_crash_point("after-reduce");
	in->rate_recorded = 0;
	if ((rc = sl_luaapi_appends_write(p, &r->ap, d)))
		goto fail;
	if (in->rate_until) {
		struct sl_rate rt = {in->stream, in->rate_next, in->rate_until};
		rated = sl_commit_rate(p->commit, &rt);
	}
	if (r->nconsumed)
		rc = sl_ckpt_put(p->commit, p->cfg.name, in->stream, r->last, r->state_json.ptr,
		                 r->state_json.len, mark, d);
	else
		rc = sl_ckpt_put_offset(p->commit, p->cfg.name, in->stream, r->last, mark, d);
	if (rc)
		goto fail;
	sl_crash_point("in-commit");
	if ((rc = end_commit(p, 1, d)))
		return rc;
	sl_crash_point("after-commit");
	in->offset = r->last;
	in->effects_mark = mark;
	in->has_row = 1;
	in->rate_recorded = rated;
	return 0;
fail:
	end_commit(p, 0, NULL);
	return rc;
}

/* ---- work ------------------------------------------------------------------------------ */

/* Counts one failed background work item of an instance, in a commit of its own. */
static int count_background_failure(struct sl_proc *p, const char *stream, struct sl_diag *d)
{
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(p->store, fence_for(p, stream), &c, d)))
		return rc;
	rc = sl_ckpt_add_background_failure(c, p->cfg.name, stream, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

/* Writes what work left for a moment without a transaction: its appends and the
 * count of background failures. Errors are logged: the work that made them ended. */
void sl_proc_flush(struct sl_proc *p)
{
	struct sl_diag d;
	struct bgfail *f;

	if (p->commit || sl_store_in_group(p->store))
		return; /* the next round of the pump flushes */
	sl_diag_init(&d);
	if (p->wap.napp && sl_luaapi_appends_write(p, &p->wap, &d))
		sl_log(SL_LOG_ERROR, p->cfg.name, NULL, 0, "%s", sl_diag_msg(&d));
	sl_luaapi_appends_release(&p->wap);
	while ((f = p->bgf)) {
		p->bgf = f->next;
		sl_diag_init(&d);
		if (count_background_failure(p, f->stream, &d))
			sl_log(SL_LOG_ERROR, p->cfg.name, f->stream, 0, "%s", sl_diag_msg(&d));
		free(f->stream);
		free(f);
	}
}

static void settle(struct run *r);

/* [-0, +0, -] on the processor's state: the batch may settle and be freed here. */
void sl_proc_block_done(void *ud, struct sl_work *w, const char *err, const char *tb)
{
	struct run *r = ud;
	lua_State *L = r->p->L;
	SL_STACK_ENTER(L);
	struct sl_work_src *src = sl_work_src(w);
	char line[SL_DIAG_MAX];

	r->pending--;
	if (err && !r->failed) {
		r->failed = 1;
		first_line(err, line, sizeof(line));
		if (sl_sandbox_is_budget_message(line)) /* exactly the budget's message */
			sl_diag_set(&r->fail, SL_ELUA, "%s", line);
		else
			sl_diag_set(&r->fail, SL_ELUA,
			            "processor '%s': blocking work of %s@%lld failed: %s",
			            r->p->cfg.name, src->stream, (long long)src->offset, line);
		r->fail_offset = src->offset;
		free(r->traceback);
		r->traceback = tb ? strdup(tb) : NULL;
	}
	if (r->hooks_done && r->pending == 0)
		settle(r);
	SL_STACK_CHECK(L, 0);
	(void)L;
}

/* ---- running batches, continued ---------------------------------------------------------- */

/* Protected: caches the state of a committed batch (light userdata run at 1).
 * [-1, +0, m] */
static int cache_body(lua_State *L)
{
	struct run *r = lua_touserdata(L, 1);

	lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
	sl_instcache_put_state(&r->p->cache, r->in);
	return 0;
}

/* Reports the batch's outcome and frees it. */
static void finish(struct run *r, int rc, const struct sl_diag *d)
{
	struct sl_proc *p = r->p;

	if (rc == 0 && r->nconsumed && r->state_ref != LUA_NOREF) {
		/* Protected: this may run from a loop callback, and the state may be at its
		 * memory budget. A state that cannot be cached is decoded again later. */
		lua_pushcfunction(p->L, cache_body);
		lua_pushlightuserdata(p->L, r);
		if (lua_pcall(p->L, 1, 0, 0) != LUA_OK)
			lua_pop(p->L, 1);
	}
	free(p->last_traceback);
	p->last_traceback = rc && r->traceback ? strdup(r->traceback) : NULL;
	p->last_fail_offset = rc ? r->fail_offset : 0;
	sl_proc_flush(p);
	r->done(r->ud, r->in, rc, d);
	run_release(p->L, r);
}

/* Replays the hooks' ctx.db writes as one budgeted call (the statements run again,
 * long ones included). */
static int replay(struct sl_proc *p, struct run *r, struct sl_diag *d)
{
	struct sl_sbmark m = sl_sandbox_enter(p->L);
	int rc = sl_dbapi_replay(p->L, p->db, &r->dblog, d);
	enum sl_budget b = rc ? sl_sandbox_exceeded(p->L, LUA_ERRRUN) : SL_BUDGET_NONE;

	if (b) {
		sl_diag_init(d);
		sl_diag_set(d, SL_ELUA, "%s", sl_sandbox_message(p->L, b));
	}
	sl_sandbox_leave(p->L, m);
	return rc;
}

/* Every blocking item settled: commit, or report the first failure. The hooks'
 * ctx.db writes are replayed first when the batch's transaction had to be given up
 * while it waited. */
static void settle(struct run *r)
{
	struct sl_proc *p = r->p;
	struct sl_diag d;
	int rc;

	sl_diag_init(&d);
	if (r->failed) {
		finish(r, r->fail.code, &r->fail);
		return;
	}
	if (!p->commit && ((rc = open_commit(p, r->in->stream, &d)) || (rc = replay(p, r, &d)))) {
		end_commit(p, 0, NULL);
		finish(r, rc, &d);
		return;
	}
	sl_dbapi_bind(p->db, NULL, NULL); /* the replay is done: no Lua runs until the end */
	rc = commit_batch(p, r, &d);
	finish(r, rc, &d);
}

static struct run *new_run(struct sl_proc *p, struct sl_inst *in, const struct sl_event *ev,
                           size_t n, sl_ingest_cb done, void *ud)
{
	struct run *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->p = p;
	r->done = done;
	r->ud = ud;
	r->batch_ref = r->state_ref = r->priv_ref = LUA_NOREF;
	sl_buf_init(&r->ap.arena);
	sl_buf_init(&r->dblog);
	sl_buf_init(&r->state_json);
	sl_diag_init(&r->fail);
	r->in = in;
	r->ev = ev;
	r->n = n;
	r->last = in->offset;
	r->current = SIZE_MAX;
	r->d = &r->fail;
	if (!(r->ridx = malloc((n ? n : 1) * sizeof(*r->ridx))) || !(r->rfx = malloc(n ? n : 1))) {
		free(r->ridx);
		free(r);
		return NULL;
	}
	return r;
}

/* The synchronous part of a batch: reduce and hooks, in a protected call, inside a
 * transaction. Leaves the new state in r->state_ref. */
static void run_hooks(struct sl_proc *p, struct run *r)
{
	lua_State *L = p->L;
	struct sl_sbmark m;
	enum sl_budget b;
	int rc;

	if ((rc = open_commit(p, r->in->stream, &r->fail))) {
		r->failed = 1;
		return;
	}
	p->cur = r;
	sl_dbapi_log(p->db, &r->dblog);
	m = sl_sandbox_mark(L); /* each hook call inside arms its own budget */
	lua_pushcfunction(L, run_batch);
	lua_pushlightuserdata(L, p);
	rc = pcall_tb(L, 1, 0);
	b = sl_sandbox_exceeded(L, rc);
	sl_sandbox_leave(L, m);
	sl_dbapi_log(p->db, NULL);
	sl_dbapi_bind(p->db, NULL, NULL);
	p->cur = NULL;
	r->source = NULL; /* the events belong to the caller, who may reuse them now */
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (b)
			budget_failure(p, r, b);
		else
			lua_failure(p, r, msg, &r->fail);
		if (r->current < r->n)
			r->fail_offset = r->ev[r->current].offset;
		if (!r->traceback)
			r->traceback = msg ? strdup(msg) : NULL;
		r->failed = 1;
		lua_pop(L, 1);
	}
	/* While blocking work runs the write lock must not be held: other instances
	 * commit meanwhile. The hooks' ctx.db writes are replayed when it settles. */
	if (r->failed || r->pending)
		end_commit(p, 0, NULL);
}

/* sl_proc_ingest without the stack check. */
static void ingest(struct sl_proc *p, struct sl_inst *in, const struct sl_event *ev, size_t n,
                   sl_ingest_cb done, void *ud)
{
	struct sl_diag d;
	struct run *r;
	size_t i;
	int rc, any = 0;

	sl_diag_init(&d);
	if ((rc = run_prepare(p, &d)) || (rc = sl_proc_inst_load(p, in, &d))) {
		done(ud, in, rc, &d);
		return;
	}
	for (i = 0; i < n && !any; i++)
		any = seq_of(p, &ev[i]) > in->offset;
	if (!any) {
		done(ud, in, 0, &d);
		return;
	}
	if (!(r = new_run(p, in, ev, n, done, ud))) {
		sl_diag_set(&d, SL_ENOMEM, "out of memory");
		done(ud, in, SL_ENOMEM, &d);
		return;
	}
	run_hooks(p, r);
	/* The events belong to the caller again (sl_proc_ingest's contract): what the
	 * rest of the batch needs was copied (sources, appends, the state's JSON). */
	r->ev = NULL;
	r->n = 0;
	r->hooks_done = 1;
	if (r->pending == 0)
		settle(r);
}

/* [-0, +0, -] on p->L */
void sl_proc_ingest(struct sl_proc *p, struct sl_inst *in, const struct sl_event *ev, size_t n,
                    sl_ingest_cb done, void *ud)
{
	SL_STACK_ENTER(p->L);

	ingest(p, in, ev, n, done, ud);
	SL_STACK_CHECK(p->L, 0);
}

/* [-0, +0, -] on p->L */
int sl_proc_prepare(struct sl_proc *p, struct sl_diag *d)
{
	int rc;
	SL_STACK_ENTER(p->L);

	rc = run_prepare(p, d);
	SL_STACK_CHECK(p->L, 0);
	return rc;
}

const char *sl_proc_last_traceback(const struct sl_proc *p)
{
	return p->last_traceback;
}

int sl_proc_dead_letter(struct sl_proc *p, struct sl_inst *in, const struct sl_event *ev,
                        const char *err, int attempts, struct sl_diag *d)
{
	int64_t seq = p->cfg.mode_all ? ev->position : ev->offset;
	struct sl_dead_letter dl = {p->cfg.name, ev->stream,        ev->type,
	                            err,         p->last_traceback, NULL,
	                            ev->offset,  ev->position,      attempts};
	struct sl_commit *c;
	char at[32];
	int rc, end;

	sl_store_now(at, sizeof(at));
	dl.at = at;
	if ((rc = sl_commit_begin(p->store, fence_for(p, in->stream), &c, d)))
		return rc;
	if (!(rc = sl_ckpt_dead_letter(c, &dl, d)))
		rc = sl_ckpt_put_offset(c, p->cfg.name, in->stream, seq,
		                        seq > in->effects_mark ? seq : in->effects_mark, d);
	end = sl_commit_end(c, rc == 0, d);
	if (rc || (rc = end))
		return rc;
	in->offset = seq;
	in->has_row = 1;
	return 0;
}

int64_t sl_proc_last_fail_offset(const struct sl_proc *p)
{
	return p->last_fail_offset;
}

int sl_proc_set_loop(struct sl_proc *p, uv_loop_t *loop, struct sl_diag *d)
{
	int rc;

	if (p->wq)
		return 0;
	if ((rc = sl_workq_new(&p->wq, loop, p->L, d)))
		return rc;
	return sl_luaapi_add_work(p, d);
}

size_t sl_proc_work_running(const struct sl_proc *p)
{
	return p->wq ? sl_workq_running(p->wq) : 0;
}

void sl_proc_kill_work(struct sl_proc *p)
{
	if (p->wq)
		sl_workq_kill(p->wq);
}

/* ---- loading, attaching, freeing -------------------------------------------------------- */

/* FNV-1a of a file's bytes, as 16 hex digits ("" when it cannot be read). */
static void hash_file(const char *path, char out[17])
{
	uint64_t h = SL_HASH_INIT;
	unsigned char buf[8192];
	size_t n;
	FILE *f = fopen(path, "rb");

	out[0] = '\0';
	if (!f)
		return;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		h = sl_hash_bytes(h, buf, n);
	fclose(f);
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static int copy_cfg(struct sl_proc_cfg *dst, const struct sl_proc_cfg *src)
{
	*dst = *src;
	dst->name = strdup(src->name);
	dst->script = strdup(src->script);
	dst->streams = strdup(src->streams);
	if (dst->batch_size <= 0)
		dst->batch_size = 1000;
	return dst->name && dst->script && dst->streams ? 0 : SL_ENOMEM;
}

struct load_args {
	struct sl_proc *p;
	struct sl_contracts *cs;
	struct sl_errs *errs;
};

/* Protected: checks the script table at 2 and takes its hooks, then builds ctx
 * (arguments at 1). Only raw access touches the script's tables. [-2, +0, e] */
static int check_body(lua_State *L)
{
	struct load_args *a = lua_touserdata(L, 1);
	size_t before = a->errs->n;

	check_script(L, a->p, a->cs, a->errs);
	if (a->errs->n == before)
		sl_luaapi_make_ctx(L, a->p);
	return 0;
}

int sl_proc_load(struct sl_proc **out, const struct sl_proc_cfg *cfg, struct sl_contracts *cs,
                 struct sl_errs *errs)
{
	struct sl_proc *p = calloc(1, sizeof(*p));
	size_t before = errs->n;

	struct sl_limits lim = {cfg->instructions, cfg->memory, cfg->wallclock_ms};
	struct load_args a = {p, cs, errs};
	struct sl_diag d;

	*out = NULL;
	sl_diag_init(&d);
	if (!p || copy_cfg(&p->cfg, cfg)) {
		sl_errs_add(errs, "%s: out of memory", cfg->script);
		sl_proc_free(p);
		return SL_ENOMEM;
	}
	p->ref_reduce = p->ref_process = p->ref_batch = p->ref_prepare = LUA_NOREF;
	p->ref_ctx = p->ref_initial = LUA_NOREF;
	if (sl_sandbox_new(&p->L, p->cfg.name, &lim, &d)) {
		sl_errs_add(errs, "%s: %s", cfg->script, sl_diag_msg(&d));
		sl_proc_free(p);
		return d.code;
	}
	/* Generational: a batch's events and payloads die young, the cached states live. */
	lua_gc(p->L, LUA_GCGEN, 0, 0);
	sl_instcache_init(&p->cache, p->L);
	SL_STACK_ENTER(p->L);
	/* No work runs on the main thread; new threads copy this extra space. */
	*(void **)lua_getextraspace(p->L) = NULL;
	hash_file(p->cfg.script, p->script_hash);
	if (!run_script(p, errs)) {
		lua_pushcfunction(p->L, check_body);
		lua_pushlightuserdata(p->L, &a);
		lua_rotate(p->L, -3, 2); /* check_body, &a, script table */
		if (lua_pcall(p->L, 2, 0, 0) != LUA_OK) {
			enum sl_budget b = sl_sandbox_exceeded(p->L, LUA_ERRMEM);
			sl_errs_add(errs, "%s: %s", cfg->script,
			            b ? sl_sandbox_message(p->L, b) : lua_tostring(p->L, -1));
			lua_pop(p->L, 1);
		}
	}
	SL_STACK_CHECK(p->L, 0);
	if (errs->n > before) {
		sl_proc_free(p);
		return SL_EINVAL;
	}
	*out = p;
	return 0;
}

void sl_proc_free(struct sl_proc *p)
{
	if (!p)
		return;
	sl_instcache_release(&p->cache);
	sl_dbapi_free(p->db);
	sl_workq_free(p->wq);
	sl_luaapi_appends_release(&p->wap);
	sl_work_src_unref(p->prep_src);
	free(p->last_traceback);
	free(p->fence_owner);
	free_dead(p);
	while (p->bgf) {
		struct bgfail *f = p->bgf;
		p->bgf = f->next;
		free(f->stream);
		free(f);
	}
	sl_sandbox_close(p->L);
	free((char *)p->cfg.name);
	free((char *)p->cfg.script);
	free((char *)p->cfg.streams);
	free(p);
}

/* A contract version change: discard every instance's state and checkpoint (keeping
 * the side-effects marks) and the processor's tables, in one transaction. */
static int rebuild(struct sl_proc *p, int64_t version, int64_t anchor, struct sl_diag *d)
{
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(p->store, fence_of(p), &c, d)))
		return rc;
	if (!(rc = sl_ckpt_reset(c, p->cfg.name, NULL, 0, d)) &&
	    !(rc = sl_ckpt_drop_tables(c, p->cfg.name, d)))
		rc = sl_ckpt_proc_put(c, p->cfg.name, version, anchor, d);
	end = sl_commit_end(c, rc == 0, d);
	if (rc || (rc = end))
		return rc;
	sl_dbapi_forget_tables(p->db);
	return 0;
}

/* A changed script or contract clears the processor's faults (DESIGN §5). */
static int clear_changed(struct sl_proc *p, struct sl_diag *d)
{
	struct sl_commit *c;
	char chash[17];
	int cleared, rc, end;

	snprintf(chash, sizeof(chash), "%016llx", (unsigned long long)p->contract->hash);
	if ((rc = sl_commit_begin(p->store, fence_of(p), &c, d)))
		return rc;
	rc = sl_ckpt_proc_hashes(c, p->cfg.name, p->script_hash, chash, &cleared, d);
	end = sl_commit_end(c, rc == 0, d);
	if (rc || (rc = end))
		return rc;
	p->claim_moved |= cleared > 0;
	if (cleared)
		sl_log(SL_LOG_INFO, p->cfg.name, NULL, 0,
		       "script or contract changed; cleared the fault of %d instance%s", cleared,
		       cleared == 1 ? "" : "s");
	return 0;
}

/* Writes the processor row, with the anchor it gets if it is new, in a commit of its own. */
static int put_processor(struct sl_proc *p, int64_t anchor, struct sl_diag *d)
{
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(p->store, fence_of(p), &c, d)))
		return rc;
	rc = sl_ckpt_proc_put(c, p->cfg.name, p->contract->version, anchor, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

/* The writes of a runner that starts the processor: clears faults when the script or
 * contract changed, rebuilds on a version change, stores the anchor the first time. */
static int claim(struct sl_proc *p, struct sl_diag *d)
{
	int64_t version, anchor, head;
	int exists, rc;

	if ((rc = sl_ckpt_proc_get(p->store, p->cfg.name, &exists, &version, &anchor, d)))
		return rc;
	p->anchor = anchor;
	if (exists && (rc = clear_changed(p, d)))
		return rc;
	if (exists && version != p->contract->version) {
		p->claim_moved = 1;
		return rebuild(p, p->contract->version, anchor, d);
	}
	if (exists)
		return 0;
	if ((rc = sl_store_head_position(p->store, &head, d)) || (rc = put_processor(p, head, d)) ||
	    (rc = clear_changed(p, d)))
		return rc;
	p->anchor = head;
	return 0;
}

int sl_proc_attach(struct sl_proc *p, struct sl_store *s, int set_anchor, struct sl_diag *d)
{
	int64_t version, anchor;
	int exists, rc;

	p->store = s;
	if ((rc = sl_dbapi_new(&p->db, p->cfg.name, d)) || (rc = sl_luaapi_add_db(p, d)))
		return rc;
	if ((rc = sl_ckpt_proc_get(s, p->cfg.name, &exists, &version, &anchor, d)))
		return rc;
	p->anchor = anchor;
	/* Only `run` changes the store: reading commands must not. */
	return set_anchor ? claim(p, d) : 0;
}

void sl_proc_set_fence(struct sl_proc *p, const struct sl_fence *f)
{
	free(p->fence_owner);
	p->fence_owner = f ? strdup(f->owner) : NULL;
	p->fence.processor = p->cfg.name;
	p->fence.owner = p->fence_owner;
	p->fence.epoch = f ? f->epoch : 0;
	p->fence.part = 0;
}

const struct sl_fence *sl_proc_fence(const struct sl_proc *p)
{
	return p->fence.owner ? &p->fence : NULL;
}

const struct sl_fence *sl_proc_fence_for(struct sl_proc *p, const char *stream)
{
	return fence_for(p, stream);
}

void sl_proc_set_partitions(struct sl_proc *p, int n, const int64_t *epochs)
{
	p->nparts = epochs ? n : 0;
	p->part_epochs = epochs;
}

int sl_proc_activate(struct sl_proc *p, const struct sl_fence *f, struct sl_diag *d)
{
	int rc;

	sl_proc_set_fence(p, f);
	if (f && !p->fence_owner)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	sl_proc_forget(p);
	p->prepared = 0; /* another runner may have changed its tables: prepare again */
	p->claim_moved = 0;
	if ((rc = claim(p, d)))
		return rc;
	return load_dead(p, d);
}

int sl_proc_claim_moved(const struct sl_proc *p)
{
	return p->claim_moved;
}

void sl_proc_forget(struct sl_proc *p)
{
	sl_instcache_forget(&p->cache);
}

/* Protected: encodes the state of instance (light userdata at 2) into the buffer
 * at 3 (diag at 4). [-4, +1, e] */
static int state_json_protected(lua_State *L)
{
	struct sl_proc *p = lua_touserdata(L, 1);
	struct sl_inst *in = lua_touserdata(L, 2);
	struct sl_buf *b = lua_touserdata(L, 3);
	struct sl_diag *d = lua_touserdata(L, 4);

	push_state(L, p, in, d);
	if (sl_lj_encode(L, -1, "state", b, d))
		luaL_error(L, "%s", sl_diag_msg(d));
	return 0;
}

/* [-0, +0, -] on p->L */
int sl_proc_state_json(struct sl_proc *p, struct sl_inst *in, struct sl_buf *b, struct sl_diag *d)
{
	struct sl_diag local;
	int rc;
	SL_STACK_ENTER(p->L);

	if (!d) { /* the protected call reports through a diag: keep its message */
		sl_diag_init(&local);
		d = &local;
	}
	if ((rc = sl_proc_inst_load(p, in, d)))
		return rc;
	lua_pushcfunction(p->L, state_json_protected);
	lua_pushlightuserdata(p->L, p);
	lua_pushlightuserdata(p->L, in);
	lua_pushlightuserdata(p->L, b);
	lua_pushlightuserdata(p->L, d);
	if (lua_pcall(p->L, 4, 0, 0) != LUA_OK) {
		sl_diag_set(d, SL_ELUA, "%s", lua_tostring(p->L, -1));
		rc = d->code; /* the first error: a store error raised from inside, maybe */
		lua_pop(p->L, 1);
	}
	SL_STACK_CHECK(p->L, 0);
	return rc;
}

/* ---- checking stored states against a new contract ------------------------------------------ */

struct state_check {
	struct sl_proc *p;
	const struct sl_ckpt *c; /* the row being checked */
	struct sl_diag d;        /* why it failed */
	int rc;                  /* the first failure, or 0 */
	char *stream;            /* the instance that failed (owned) */
};

/* Protected: decodes one stored state (struct state_check, light userdata at 1) and
 * validates it against the processor's state schema, as a reduce result is; the
 * outcome goes to its rc and d. [-1, +0, m] */
static int state_check_body(lua_State *L)
{
	struct state_check *sc = lua_touserdata(L, 1);

	lua_settop(L, 0);
	if ((sc->rc = sl_lj_decode(L, sc->c->state, sc->c->state_len, 0, &sc->d)))
		return 0;
	sc->rc = sl_schema_validate(sc->p->contract->state, L, -1, &sc->d);
	return 0;
}

/* sl_ckpt_each callback: checks one instance's state; stops at the first failure.
 * [-0, +0, -] on the processor's lua_State */
static int check_one_state(void *ud, const char *stream, const struct sl_ckpt *c)
{
	struct state_check *sc = ud;
	lua_State *L = sc->p->L;
	int status;
	SL_STACK_ENTER(L);

	if (!c->state) /* the initial state: the contract's load checked it */
		return 0;
	sc->c = c;
	lua_pushcfunction(L, state_check_body);
	lua_pushlightuserdata(L, sc);
	if ((status = lua_pcall(L, 1, 0, 0)) != LUA_OK) {
		enum sl_budget b = sl_sandbox_exceeded(L, status);
		sc->rc = sl_diag_set(&sc->d, status == LUA_ERRMEM ? SL_ENOMEM : SL_ELUA, "%s",
		                     b ? sl_sandbox_message(L, b) : lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	SL_STACK_CHECK(L, 0);
	if (!sc->rc)
		return 0;
	sc->stream = strdup(stream);
	return 1;
}

int sl_proc_check_states(struct sl_proc *p, struct sl_store *s, struct sl_diag *d)
{
	struct state_check sc = {.p = p};
	int rc;
	SL_STACK_ENTER(p->L);

	sl_diag_init(&sc.d);
	rc = sl_ckpt_each(s, p->cfg.name, check_one_state, &sc, d);
	SL_STACK_CHECK(p->L, 0);
	if (rc || !sc.rc) {
		free(sc.stream);
		return rc;
	}
	if (!p->cfg.mode_all)
		sl_diag_set(d, sc.rc,
		            "state of instance '%s' does not match the new state schema: %s",
		            sc.stream ? sc.stream : "?", sl_diag_msg(&sc.d));
	else
		sl_diag_set(d, sc.rc,
		            "state of the instance does not match the new state schema: %s",
		            sl_diag_msg(&sc.d));
	free(sc.stream);
	return sc.rc;
}
