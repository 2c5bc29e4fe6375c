/* sl_dbapi.c - ctx.db, the Lua face of a processor's own SQL tables.
 *
 * This file is the one place where Lua meets SQLite, and the only one besides the
 * SQLite backend that includes sqlite3.h: it reaches the connection only through the
 * projection handle of the commit it is bound to (sl_store_sqlite.h). Statements are
 * prepared once per SQL text and kept in a small cache; each call resets its statement
 * first, so a Lua error raised while building results (out of memory) leaves nothing
 * half-run.
 */
#include "sl_dbapi.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "sl_buf.h"
#include "sl_luajson.h"
#include "sl_sandbox.h"
#include "sl_store_sqlite.h"
#include "sl_work.h"

#define STMT_CACHE 64

struct cached {
	char *sql;
	sqlite3_stmt *st;
	unsigned long used;
	int ddl;               /* the statement creates or drops a table */
	char *creates, *drops; /* table it creates / drops, if any */
};

struct sl_dbapi {
	struct sl_proj *pj;   /* the projection bound now (a commit is open), or NULL */
	int none;             /* a commit is open on a store without projection tables */
	struct sl_proj *home; /* where the cache and the owner lists come from */
	sqlite3 *db;          /* home's connection */
	int loaded;           /* the owner lists are read */
	char *proc;
	char **owned; /* tables this processor owns */
	size_t nowned;
	char **foreign;    /* tables other processors own */
	char **foreign_by; /* ... and their owners, in the same order */
	size_t nforeign, nforeign_by;
	struct cached cache[STMT_CACHE];
	unsigned long clock;
	struct sl_buf *log;
	struct sl_buf binds; /* the values bound to the statement running (sl_proj_log) */
	uint32_t nbinds;
	lua_State *L;     /* the state of the running ctx.db call, for its budgets */
	int saved_length; /* SQLITE_LIMIT_LENGTH outside ctx.db calls */
	/* Set by the authorizer while a statement is prepared: */
	int ddl;
	char *creates, *drops;
	char deny[256];
};

static int listed(char *const *list, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcasecmp(list[i], name))
			return 1;
	return 0;
}

static int add_name(char ***list, size_t *n, const char *name)
{
	char **grown = realloc(*list, (*n + 1) * sizeof(**list));

	if (!grown)
		return SL_ENOMEM;
	*list = grown;
	if (!((*list)[*n] = strdup(name)))
		return SL_ENOMEM;
	(*n)++;
	return 0;
}

static void free_names(char ***list, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++)
		free((*list)[i]);
	free(*list);
	*list = NULL;
	*n = 0;
}

static int schema_table(const char *t)
{
	return t && (!strcasecmp(t, "sqlite_master") || !strcasecmp(t, "sqlite_schema") ||
	             !strcasecmp(t, "sqlite_temp_master") || !strcasecmp(t, "sqlite_sequence"));
}

static int deny(struct sl_dbapi *api, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records why the authorizer refused, for the error message, and refuses. */
static int deny(struct sl_dbapi *api, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(api->deny, sizeof(api->deny), fmt, ap);
	va_end(ap);
	return SQLITE_DENY;
}

/* May the processor touch table t? */
static int own(struct sl_dbapi *api, const char *t)
{
	return listed(api->owned, api->nowned, t) || (api->creates && !strcasecmp(api->creates, t));
}

static int check_create(struct sl_dbapi *api, const char *t)
{
	size_t i;

	if (!strncasecmp(t, "sl_", 3) || !strncasecmp(t, "sqlite_", 7))
		return deny(api, "table name '%s' is reserved for the engine", t);
	for (i = 0; i < api->nforeign; i++)
		if (!strcasecmp(api->foreign[i], t))
			return deny(api,
			            "table '%s' belongs to processor '%s' (each processor's tables "
			            "are its own: choose another name)",
			            t, i < api->nforeign_by ? api->foreign_by[i] : "?");
	free(api->creates);
	api->creates = strdup(t);
	api->ddl = 1;
	return SQLITE_OK;
}

static int authorize(void *ud, int action, const char *a1, const char *a2, const char *dbn,
                     const char *trig)
{
	struct sl_dbapi *api = ud;

	(void)trig;
	if (dbn && strcmp(dbn, "main"))
		return deny(api, "only the main database is reachable (not '%s')", dbn);
	switch (action) {
	case SQLITE_SELECT:
	case SQLITE_RECURSIVE:
		return SQLITE_OK;
	case SQLITE_FUNCTION:
		return a2 && !strcasecmp(a2, "load_extension")
		               ? deny(api, "function '%s' is not allowed", a2)
		               : SQLITE_OK;
	case SQLITE_CREATE_TABLE:
	case SQLITE_CREATE_VIEW: /* a view is the processor's like a table (reads through it
	                          * are checked on the tables it reads) */
		return check_create(api, a1);
	case SQLITE_DROP_VIEW:
	case SQLITE_DROP_TABLE:
		if (!own(api, a1))
			return deny(api, "table '%s' does not belong to this processor", a1);
		free(api->drops);
		api->drops = strdup(a1);
		api->ddl = 1;
		return SQLITE_OK;
	case SQLITE_CREATE_INDEX:
	case SQLITE_DROP_INDEX:
		if (!own(api, a2))
			return deny(api, "table '%s' does not belong to this processor", a2);
		api->ddl = 1;
		return SQLITE_OK;
	case SQLITE_REINDEX: /* part of a CREATE INDEX that was allowed (on its own table) */
		return api->ddl ? SQLITE_OK : deny(api, "REINDEX is not allowed");
	case SQLITE_ALTER_TABLE:
		return own(api, a2) ? (api->ddl = 1, SQLITE_OK)
		                    : deny(api, "table '%s' does not belong to this processor", a2);
	case SQLITE_READ:
		if (!dbn) /* a common table expression: no schema, no stored table */
			return SQLITE_OK;
		/* fall through */
	case SQLITE_INSERT:
	case SQLITE_UPDATE:
	case SQLITE_DELETE:
		/* SQLite touches its schema table itself for DDL (before it announces the
		 * CREATE); a user statement cannot write it, and reading it shows only names. */
		if (own(api, a1) || schema_table(a1))
			return SQLITE_OK;
		return deny(api, "table '%s' does not belong to this processor", a1);
	case SQLITE_PRAGMA:
		return deny(api, "PRAGMA %s is not allowed", a1 ? a1 : "");
	case SQLITE_ATTACH:
	case SQLITE_DETACH:
		return deny(api, "ATTACH and DETACH are not allowed");
	case SQLITE_TRANSACTION:
	case SQLITE_SAVEPOINT:
		return deny(api, "transactions are the engine's (each batch is one)");
	}
	return deny(api, "this kind of statement (%d) is not allowed in ctx.db", action);
}

/* ---- lifecycle -------------------------------------------------------------------- */

static int load_owners(struct sl_dbapi *api, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	free_names(&api->owned, &api->nowned);
	free_names(&api->foreign, &api->nforeign);
	free_names(&api->foreign_by, &api->nforeign_by);
	if (sqlite3_prepare_v2(api->db, "SELECT name, processor FROM sl_tables", -1, &st, NULL))
		return sl_diag_set(d, SL_EIO, "cannot read sl_tables: %s", sqlite3_errmsg(api->db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *proc = (const char *)sqlite3_column_text(st, 1);
		if (!strcmp(proc, api->proc)
		            ? add_name(&api->owned, &api->nowned, name)
		            : add_name(&api->foreign, &api->nforeign, name) ||
		                      add_name(&api->foreign_by, &api->nforeign_by, proc)) {
			sqlite3_finalize(st);
			return sl_diag_set(d, SL_ENOMEM, "out of memory");
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sl_diag_set(d, SL_EIO, "cannot read sl_tables");
}

int sl_dbapi_new(struct sl_dbapi **out, const char *proc, struct sl_diag *d)
{
	struct sl_dbapi *api = calloc(1, sizeof(*api));

	*out = NULL;
	if (!api || !(api->proc = strdup(proc))) {
		free(api);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	sl_buf_init(&api->binds);
	*out = api;
	return 0;
}

static void uncache(struct cached *c)
{
	sqlite3_finalize(c->st);
	free(c->sql);
	free(c->creates);
	free(c->drops);
	memset(c, 0, sizeof(*c));
}

static void uncache_all(struct sl_dbapi *api)
{
	int i;

	for (i = 0; i < STMT_CACHE; i++)
		uncache(&api->cache[i]);
}

void sl_dbapi_free(struct sl_dbapi *api)
{
	if (!api)
		return;
	uncache_all(api);
	free_names(&api->owned, &api->nowned);
	free_names(&api->foreign, &api->nforeign);
	free_names(&api->foreign_by, &api->nforeign_by);
	free(api->creates);
	free(api->drops);
	free(api->proc);
	sl_buf_release(&api->binds);
	free(api);
}

void sl_dbapi_bind_none(struct sl_dbapi *api)
{
	api->pj = NULL;
	api->none = 1;
}

int sl_dbapi_bind(struct sl_dbapi *api, struct sl_proj *pj, struct sl_diag *d)
{
	int rc;

	api->pj = NULL;
	api->none = 0;
	if (!pj)
		return 0;
	if (pj != api->home) { /* statements and owners belong to another connection */
		uncache_all(api);
		api->home = pj;
		api->db = sl_proj_db(pj);
		api->loaded = 0;
	}
	if (!api->loaded && (rc = load_owners(api, d)))
		return rc;
	api->loaded = 1;
	api->pj = pj;
	return 0;
}

#define PROGRESS_OPS 1000 /* SQLite VM steps between two budget checks */

/* SQLite's progress handler during a ctx.db call: interrupts the statement once the
 * processor's budget (its wall clock, mostly) is exceeded. */
static int progress(void *ud)
{
	struct sl_dbapi *api = ud;

	return api->L && sl_sandbox_poll(api->L);
}

/* Starts or ends the checks of a ctx.db call: the authorizer's, the progress
 * handler, and a cap on string and blob sizes (randomblob() and friends allocate
 * outside the Lua state: at most its memory budget, or SQLite's default). */
static void guard(struct sl_dbapi *api, int on)
{
	sl_proj_authorize(api->pj, on ? authorize : NULL, api);
	if (on) {
		double mem = api->L ? sl_sandbox_limits(api->L).memory : 0;
		sqlite3_progress_handler(api->db, PROGRESS_OPS, progress, api);
		api->saved_length = sqlite3_limit(api->db, SQLITE_LIMIT_LENGTH, -1);
		if (mem > 0 && mem < api->saved_length)
			sqlite3_limit(api->db, SQLITE_LIMIT_LENGTH, (int)mem);
	} else {
		sqlite3_progress_handler(api->db, 0, NULL, NULL);
		sqlite3_limit(api->db, SQLITE_LIMIT_LENGTH, api->saved_length);
	}
}

void sl_dbapi_forget_tables(struct sl_dbapi *api)
{
	uncache_all(api);
	free_names(&api->owned, &api->nowned);
	api->loaded = 0; /* read them again from the store at the next bind */
}

/* ---- statements ----------------------------------------------------------------------- */

/* Returns the cached statement for sql, preparing it (with the authorizer) on a miss.
 * Raises on errors, holding nothing. [-0, +0, e] */
static struct cached *statement(lua_State *L, struct sl_dbapi *api, const char *sql)
{
	struct cached *c, *victim = &api->cache[0];
	const char *tail;
	sqlite3_stmt *st;
	int i;

	for (i = 0; i < STMT_CACHE; i++) {
		c = &api->cache[i];
		if (c->sql && !strcmp(c->sql, sql)) {
			c->used = ++api->clock;
			sqlite3_reset(c->st);
			sqlite3_clear_bindings(c->st);
			return c;
		}
		if (c->used < victim->used)
			victim = c;
	}
	api->ddl = 0;
	api->deny[0] = '\0';
	free(api->creates);
	free(api->drops);
	api->creates = api->drops = NULL;
	if (sqlite3_prepare_v3(api->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail) !=
	    SQLITE_OK)
		luaL_error(L, "ctx.db: %s", api->deny[0] ? api->deny : sqlite3_errmsg(api->db));
	if (!st)
		luaL_error(L, "ctx.db: empty statement");
	while (*tail && isspace((unsigned char)*tail))
		tail++;
	if (*tail && strcmp(tail, ";")) {
		sqlite3_finalize(st);
		luaL_error(L, "ctx.db: one statement per call");
	}
	uncache(victim);
	victim->st = st;
	victim->sql = strdup(sql);
	victim->ddl = api->ddl;
	victim->creates = api->creates;
	victim->drops = api->drops;
	api->creates = api->drops = NULL;
	victim->used = ++api->clock;
	if (!victim->sql) {
		uncache(victim);
		luaL_error(L, "out of memory");
	}
	return victim;
}

/* The statement log of a projection handle that keeps one (sl_proj_log, the format
 * in sl_store_sqlite.h): big-endian integers. */
static void put_u32(struct sl_buf *b, uint32_t v)
{
	unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
	                      (unsigned char)(v >> 8), (unsigned char)v};

	sl_buf_add(b, x, 4);
}

static void put_u64(struct sl_buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

/* Notes in rec (when not NULL) that parameter i got what bind_value bound from idx.
 * [-0, +0, -] */
static void record_bind(lua_State *L, struct sl_buf *rec, uint32_t *n, int i, int idx)
{
	lua_Number f;
	uint64_t u;
	size_t len;
	const char *s;

	if (!rec)
		return;
	put_u32(rec, (uint32_t)i);
	switch (lua_type(L, idx)) {
	case LUA_TBOOLEAN:
		sl_buf_addc(rec, 'i');
		put_u64(rec, (uint64_t)lua_toboolean(L, idx));
		break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			sl_buf_addc(rec, 'i');
			put_u64(rec, (uint64_t)lua_tointeger(L, idx));
		} else {
			f = lua_tonumber(L, idx);
			memcpy(&u, &f, sizeof(u));
			sl_buf_addc(rec, 'f');
			put_u64(rec, u);
		}
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &len);
		sl_buf_addc(rec, 't');
		put_u32(rec, (uint32_t)len);
		sl_buf_add(rec, s, len);
		break;
	default:
		sl_buf_addc(rec, 'n');
	}
	(*n)++;
}

/* Binds the value at idx to parameter i. [-0, +0, e] */
static void bind_value(lua_State *L, sqlite3_stmt *st, int i, int idx)
{
	size_t len;
	const char *s;

	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		sqlite3_bind_null(st, i);
		break;
	case LUA_TBOOLEAN:
		sqlite3_bind_int(st, i, lua_toboolean(L, idx));
		break;
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			sqlite3_bind_int64(st, i, lua_tointeger(L, idx));
		else
			sqlite3_bind_double(st, i, lua_tonumber(L, idx));
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &len);
		sqlite3_bind_text(st, i, s, (int)len, SQLITE_TRANSIENT);
		break;
	default:
		if (sl_lj_isnull(L, idx)) {
			sqlite3_bind_null(st, i);
			break;
		}
		sqlite3_reset(st);
		luaL_error(L, "ctx.db: parameter %d: cannot bind a %s", i, luaL_typename(L, idx));
	}
}

/* sl_dbapi_bind_params, noting each value bound in rec (when not NULL). [-0, +0, e] */
static void bind_params(lua_State *L, sqlite3_stmt *st, int idx, struct sl_buf *rec, uint32_t *nrec)
{
	char name[128];
	int i, n;

	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	n = (int)lua_rawlen(L, idx);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, i);
		bind_value(L, st, i, -1);
		record_bind(L, rec, nrec, i, -1);
		lua_pop(L, 1);
	}
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) == LUA_TSTRING) {
			snprintf(name, sizeof(name), ":%s", lua_tostring(L, -2));
			if (!(i = sqlite3_bind_parameter_index(st, name)))
				name[0] = '@', i = sqlite3_bind_parameter_index(st, name);
			if (!(i = i ? i
			            : (name[0] = '$', sqlite3_bind_parameter_index(st, name)))) {
				sqlite3_reset(st);
				luaL_error(L, "ctx.db: no parameter named '%s'",
				           lua_tostring(L, -2));
			}
			bind_value(L, st, i, -1);
			record_bind(L, rec, nrec, i, -1);
		}
		lua_pop(L, 1);
	}
}

void sl_dbapi_bind_params(lua_State *L, sqlite3_stmt *st, int idx)
{
	bind_params(L, st, idx, NULL, NULL);
}

/* Binds a statement's params (at idx) and, when the handle keeps a statement log,
 * notes them for log_done. [-0, +0, e] */
static void bind_logged(lua_State *L, struct sl_dbapi *api, sqlite3_stmt *st, int idx)
{
	struct sl_buf *plog = sl_proj_log(api->pj);

	sl_buf_reset(&api->binds);
	api->nbinds = 0;
	bind_params(L, st, idx, plog ? &api->binds : NULL, &api->nbinds);
}

/* Appends a statement that ran (sql, with the values bind_logged noted, or none) to
 * the handle's statement log, if it keeps one. [-0, +0, e] */
static void log_done(lua_State *L, struct sl_dbapi *api, const char *sql, int with_binds)
{
	struct sl_buf *plog = sl_proj_log(api->pj);

	if (!plog)
		return;
	sl_buf_add(plog, sql, strlen(sql) + 1);
	put_u32(plog, with_binds ? api->nbinds : 0);
	if (with_binds)
		sl_buf_add(plog, api->binds.ptr, api->binds.len);
	if (!sl_buf_ok(plog) || !sl_buf_ok(&api->binds))
		luaL_error(L, "out of memory");
}

/* Lets the backend begin what the statements join (sl_proj_touch). [-0, +0, v] */
static void touch(lua_State *L, struct sl_dbapi *api)
{
	struct sl_diag d;

	sl_diag_init(&d);
	if (sl_proj_touch(api->pj, &d))
		luaL_error(L, "ctx.db: %s", sl_diag_msg(&d));
}

/* The api of the closure running, if ctx.db may be used now. [-0, +0, v] */
static struct sl_dbapi *check_api(lua_State *L)
{
	struct sl_dbapi *api = lua_touserdata(L, lua_upvalueindex(1));

	sl_sandbox_no_reduce(L, "ctx.db");
	if (api->none && !sl_work_current(L))
		luaL_error(L,
		           "ctx.db needs projection tables: this JetStream (nats://) store was"
		           " opened without a projection database (open it through a deployment)");
	if (!api->pj || sl_work_current(L))
		luaL_error(L, "ctx.db is available only in hooks and prepare"
		              " (not in ctx.block or ctx.background work)");
	touch(L, api);
	return api;
}

/* Records the ownership change of a DDL statement that ran. [-0, +0, v] */
static void track_ddl(lua_State *L, struct sl_dbapi *api, struct cached *c)
{
	char *err = NULL, *sql;

	/* Recorded every time, not only the first: the row of a CREATE that ran in a
	 * transaction that was rolled back is gone, while the name stayed in memory. */
	if (c->creates) {
		sql = sqlite3_mprintf(
			"INSERT OR IGNORE INTO sl_tables(name, processor) VALUES (%Q, %Q)",
			c->creates, api->proc);
		guard(api, 0);
		sqlite3_exec(api->db, sql, NULL, NULL, &err);
		guard(api, 1);
		if (!err)
			log_done(L, api, sql, 0);
		sqlite3_free(sql);
		if (err || (!listed(api->owned, api->nowned, c->creates) &&
		            add_name(&api->owned, &api->nowned, c->creates))) {
			sqlite3_free(err);
			luaL_error(L, "ctx.db: cannot record table '%s'", c->creates);
		}
	}
	if (c->drops) {
		sql = sqlite3_mprintf("DELETE FROM sl_tables WHERE name = %Q", c->drops);
		guard(api, 0);
		if (sqlite3_exec(api->db, sql, NULL, NULL, NULL) == SQLITE_OK)
			log_done(L, api, sql, 0);
		guard(api, 1);
		sqlite3_free(sql);
	}
}

/* Steps a statement to its end; raises with SQLite's message on failure.
 * [-0, +0, e] */
static void step_done(lua_State *L, struct sl_dbapi *api, sqlite3_stmt *st)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE) {
		const char *msg = api->deny[0] ? api->deny : sqlite3_errmsg(api->db);
		lua_pushfstring(L, "ctx.db: %s", msg);
		sqlite3_reset(st);
		if (rc == SQLITE_INTERRUPT && sl_sandbox_poll(L))
			sl_sandbox_raise(L); /* the progress handler stopped it */
		lua_error(L);
	}
	sqlite3_reset(st);
}

/* Records a statement that ran: its SQL and its parameters (at 3) as JSON.
 * [-0, +0, e] */
static void log_statement(lua_State *L, struct sl_dbapi *api, const char *sql)
{
	struct sl_diag d;

	sl_diag_init(&d);
	sl_buf_add(api->log, sql, strlen(sql) + 1);
	if (lua_isnoneornil(L, 3)) {
		sl_buf_adds(api->log, "null");
	} else {
		/* The parameters as bind_params bound them: 1..#params, a nil (a hole) as the
		 * null sentinel, so it replays as SQL NULL; then the named ones. */
		lua_Integer i, n = (lua_Integer)lua_rawlen(L, 3);
		lua_createtable(L, (int)n, 0);
		for (i = 1; i <= n; i++) {
			if (lua_rawgeti(L, 3, i) == LUA_TNIL) {
				lua_pop(L, 1);
				sl_lj_pushnull(L);
			}
			lua_rawseti(L, -2, i);
		}
		lua_pushnil(L);
		while (lua_next(L, 3))
			if (lua_type(L, -2) == LUA_TSTRING) {
				lua_pushvalue(L, -2);
				lua_insert(L, -2);
				lua_rawset(L, -4);
			} else {
				lua_pop(L, 1);
			}
		if (sl_lj_encode(L, -1, "params", api->log, &d))
			luaL_error(L, "ctx.db: %s", sl_diag_msg(&d));
		lua_pop(L, 1);
	}
	sl_buf_addc(api->log, '\0');
	if (!sl_buf_ok(api->log))
		luaL_error(L, "out of memory");
}

/* The protected body of db:exec (api as upvalue). [-0, +1, e] */
static int exec_body(lua_State *L)
{
	struct sl_dbapi *api = lua_touserdata(L, lua_upvalueindex(1));
	struct cached *c = statement(L, api, luaL_checkstring(L, 2));

	bind_logged(L, api, c->st, 3);
	step_done(L, api, c->st);
	log_done(L, api, c->sql, 1);
	if (c->ddl)
		track_ddl(L, api, c);
	if (api->log)
		log_statement(L, api, c->sql);
	lua_pushinteger(L, sqlite3_changes(api->db));
	return 1;
}

/* Runs body(db, sql, params) with the authorizer installed, removing it again even
 * when body raises. [-3, +1, e] */
static int guarded(lua_State *L, lua_CFunction body)
{
	struct sl_dbapi *api = check_api(L);
	int rc;

	lua_settop(L, 3);
	lua_pushlightuserdata(L, api);
	lua_pushcclosure(L, body, 1);
	lua_insert(L, 1);
	api->L = L;
	guard(api, 1);
	rc = lua_pcall(L, 3, 1, 0);
	guard(api, 0);
	api->L = NULL;
	if (rc != LUA_OK)
		return lua_error(L);
	return 1;
}

/* db:exec(sql [, params]) -> changed rows [-(2|3), +1, e] */
static int db_exec(lua_State *L)
{
	return guarded(L, exec_body);
}

void sl_dbapi_push_column(lua_State *L, struct sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		lua_pushinteger(L, sqlite3_column_int64(st, i));
		break;
	case SQLITE_FLOAT:
		lua_pushnumber(L, sqlite3_column_double(st, i));
		break;
	case SQLITE_NULL:
		sl_lj_pushnull(L);
		break;
	default:
		lua_pushlstring(L, (const char *)sqlite3_column_blob(st, i),
		                (size_t)sqlite3_column_bytes(st, i));
	}
}

/* db:query(sql [, params]) -> array of rows [-(2|3), +1, e] */
static int query_body(lua_State *L)
{
	struct sl_dbapi *api = lua_touserdata(L, lua_upvalueindex(1));
	struct cached *c = statement(L, api, luaL_checkstring(L, 2));
	lua_Integer n = 0;
	int rc, i, cols;

	sl_dbapi_bind_params(L, c->st, 3);
	lua_newtable(L);
	cols = sqlite3_column_count(c->st);
	while ((rc = sqlite3_step(c->st)) == SQLITE_ROW) {
		lua_createtable(L, 0, cols);
		for (i = 0; i < cols; i++) {
			sl_dbapi_push_column(L, c->st, i);
			lua_setfield(L, -2, sqlite3_column_name(c->st, i));
		}
		lua_rawseti(L, -2, ++n);
	}
	if (rc != SQLITE_DONE) {
		lua_pushfstring(L, "ctx.db: %s", sqlite3_errmsg(api->db));
		sqlite3_reset(c->st);
		if (rc == SQLITE_INTERRUPT && sl_sandbox_poll(L))
			return sl_sandbox_raise(L); /* the progress handler stopped it */
		return lua_error(L);
	}
	sqlite3_reset(c->st);
	return 1;
}

/* db:query(sql [, params]) -> rows [-(2|3), +1, e] */
static int db_query(lua_State *L)
{
	return guarded(L, query_body);
}

/* [-0, +1, m] */
void sl_dbapi_push(lua_State *L, struct sl_dbapi *api)
{
	lua_createtable(L, 0, 2);
	lua_pushlightuserdata(L, api);
	lua_pushcclosure(L, db_exec, 1);
	lua_setfield(L, -2, "exec");
	lua_pushlightuserdata(L, api);
	lua_pushcclosure(L, db_query, 1);
	lua_setfield(L, -2, "query");
}

void sl_dbapi_log(struct sl_dbapi *api, struct sl_buf *log)
{
	api->log = log;
}

/* Protected: replays the log (light userdata at 2) of api (at 1). [-2, +0, e] */
static int replay_body(lua_State *L)
{
	struct sl_dbapi *api = lua_touserdata(L, 1);
	const struct sl_buf *log = lua_touserdata(L, 2);
	const char *p = log->ptr, *end = log->ptr + log->len, *params;
	struct cached *c;
	struct sl_diag d;

	while (p < end) {
		params = p + strlen(p) + 1;
		lua_settop(L, 2);
		sl_diag_init(&d);
		if (sl_lj_decode(L, params, strlen(params), 0, &d))
			return luaL_error(L, "ctx.db replay: %s", sl_diag_msg(&d));
		if (sl_lj_isnull(L, -1)) { /* the call had no params */
			lua_pop(L, 1);
			lua_pushnil(L);
		}
		c = statement(L, api, p);
		bind_logged(L, api, c->st, 3);
		step_done(L, api, c->st);
		log_done(L, api, c->sql, 1);
		if (c->ddl)
			track_ddl(L, api, c);
		p = params + strlen(params) + 1;
	}
	return 0;
}

/* Replays the log in a protected call. [-0, +0, -] */
int sl_dbapi_replay(lua_State *L, struct sl_dbapi *api, const struct sl_buf *log, struct sl_diag *d)
{
	int rc;

	if (!log->len)
		return 0;
	if (!api->pj)
		return sl_diag_set(d, SL_EINVAL,
		                   "processor '%s': ctx.db replay needs an open commit", api->proc);
	if ((rc = sl_proj_touch(api->pj, d)))
		return rc;
	lua_pushcfunction(L, replay_body);
	lua_pushlightuserdata(L, api);
	lua_pushlightuserdata(L, (void *)log);
	api->L = L;
	guard(api, 1);
	rc = lua_pcall(L, 2, 0, 0);
	guard(api, 0);
	api->L = NULL;
	if (rc != LUA_OK) {
		sl_diag_set(d, SL_ELUA, "processor '%s': %s", api->proc, lua_tostring(L, -1));
		lua_pop(L, 1);
		return d ? d->code : SL_ELUA;
	}
	return 0;
}
