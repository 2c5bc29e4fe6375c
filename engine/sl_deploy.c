/* sl_deploy.c - loading and validating deployment files. */
#include "sl_deploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_buf.h"
#include "sl_contract.h"
#include "sl_home.h"
#include "sl_luajson.h"
#include "sl_schema.h"

char *sl_deploy_path(const struct sl_deploy *dp, const char *path)
{
	size_t n;
	char *out;

	if (path[0] == '/' || !strcmp(dp->dir, "."))
		return strdup(path);
	n = strlen(dp->dir) + strlen(path) + 2;
	if ((out = malloc(n)))
		snprintf(out, n, "%s/%s", dp->dir, path);
	return out;
}

static double parse_unit(const char *s, const char *const *units, const double *mult)
{
	char *end;
	double v = strtod(s, &end);
	int i;

	for (i = 0; units[i]; i++)
		if (!strcmp(end, units[i]))
			return v * mult[i];
	return -1;
}

double sl_parse_size(const char *s)
{
	static const char *const u[] = {"B", "KiB", "MiB", "GiB", NULL};
	static const double m[] = {1, 1024, 1048576, 1073741824};

	return parse_unit(s, u, m);
}

double sl_parse_duration(const char *s)
{
	static const char *const u[] = {"ms", "s", "m", NULL};
	static const double m[] = {1, 1000, 60000};

	return parse_unit(s, u, m);
}

/* Runs the file; leaves its result (a table) on the stack. [-0, +1|0, -] */
static int run_file(lua_State *L, const char *file, struct sl_errs *errs)
{
	int rc = luaL_loadfilex(L, file, "t");

	if (rc == LUA_OK) {
		lua_newtable(L); /* the empty environment */
		lua_setupvalue(L, -2, 1);
		rc = lua_pcall(L, 0, 1, 0);
	}
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (strncmp(msg, file, strlen(file)))
			sl_errs_add(errs, "%s: %s", file, msg);
		else
			sl_errs_add(errs, "%s", msg);
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

/* Validates the value at vidx against the schema table at sidx (compiled here) and
 * adds its first error, as "<file>: <path><pointer>: <message>". [-0, +0, e] */
static void check_value(lua_State *L, int sidx, int vidx, const char *path,
                        const struct sl_deploy *dp, struct sl_errs *errs)
{
	struct sl_schema *sc = NULL;
	struct sl_diag d;
	const char *m;

	sl_diag_init(&d);
	if (sl_schema_compile(L, sidx, path, &sc, &d)) {
		sl_errs_add(errs, "%s: %s", dp->file, sl_diag_msg(&d));
		return;
	}
	if (sl_schema_validate(sc, L, vidx, &d)) {
		m = sl_diag_msg(&d);
		sl_errs_add(errs, "%s: %s%s", dp->file, path,
		            m[0] == '/' && m[1] == ':' ? m + 1 : m);
	}
	sl_schema_free(sc);
}

/* The key of the table at idx closest to `key`, for a "did you mean". [-0, +0, -] */
static const char *closest_key(lua_State *L, int idx, const char *key)
{
	struct sl_closest cl;

	if (!lua_istable(L, idx))
		return NULL;
	sl_closest_init(&cl, key);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING) /* the schema table keeps the string alive */
			sl_closest_try(&cl, lua_tostring(L, -1));
	}
	return sl_closest_best(&cl);
}

/* Lists every error of the table at vidx against the object schema table at sidx:
 * each missing required property, each unknown field, and each property's own first
 * error; `defs` (a table index, or 0) holds the processor definition that
 * "processors" refers to. [-0, +0, e] */
static void list_errors(lua_State *L, int sidx, int vidx, const char *path, int defs,
                        const struct sl_deploy *dp, struct sl_errs *errs)
{
	char sub[600];
	lua_Integer i, n;

	if (!lua_istable(L, vidx)) {
		check_value(L, sidx, vidx, path, dp, errs);
		return;
	}
	lua_getfield(L, sidx, "required");
	n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		if (lua_getfield(L, vidx, lua_tostring(L, -1)) == LUA_TNIL)
			sl_errs_add(errs, "%s: %s/%s: required: missing property", dp->file, path,
			            lua_tostring(L, -2));
		lua_pop(L, 2);
	}
	lua_pop(L, 1);
	lua_getfield(L, sidx, "properties");
	lua_pushnil(L);
	while (lua_next(L, vidx)) {
		const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
		int val = lua_gettop(L);
		snprintf(sub, sizeof(sub), "%s/%s", path, key);
		if (lua_type(L, -2) != LUA_TSTRING || lua_getfield(L, val - 2, key) == LUA_TNIL) {
			const char *hint = closest_key(L, val - 2, key);
			sl_errs_add(errs, "%s: %s: unknown field '%s'%s%s%s", dp->file,
			            *path ? path : "/", key, hint ? " (did you mean '" : "",
			            hint ? hint : "", hint ? "'?)" : "");
		} else if (defs && !strcmp(key, "processors") && lua_istable(L, val)) {
			lua_pushnil(L);
			while (lua_next(L, val)) {
				snprintf(sub, sizeof(sub), "%s/processors/%s", path,
				         lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
				                                        : "?");
				list_errors(L, defs, lua_gettop(L), sub, 0, dp, errs);
				lua_pop(L, 1);
			}
		} else {
			check_value(L, lua_gettop(L), val, sub, dp, errs);
		}
		lua_settop(L, val - 1);
	}
	lua_pop(L, 1);
}

/* Protected: decodes schemas/deployment.schema.json and lists every error of the
 * deployment (at 1). Arguments are light userdata: 2 deploy, 3 errs. [-3, +0, e] */
static int validate_protected(lua_State *L)
{
	struct sl_deploy *dp = lua_touserdata(L, 2);
	struct sl_errs *errs = lua_touserdata(L, 3);
	char path[4200];
	struct sl_buf b;
	struct sl_diag d;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/deployment.schema.json", sl_home_schemas());
	sl_buf_init(&b);
	sl_diag_init(&d);
	if ((f = fopen(path, "rb"))) {
		char chunk[8192];
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			sl_buf_add(&b, chunk, n);
		fclose(f);
	}
	if (!f || sl_lj_decode(L, b.ptr, b.len, SL_LJ_STRICT, &d)) {
		sl_buf_release(&b);
		return luaL_error(L, "%s: %s", path, f ? sl_diag_msg(&d) : "cannot open");
	}
	sl_buf_release(&b);
	lua_getfield(L, -1, "$defs");
	lua_getfield(L, -1, "processor"); /* 4 schema, 5 $defs, 6 processor */
	list_errors(L, 4, 1, "", 6, dp, errs);
	return 0;
}

/* Reads string field `name` of the table at -1 (already validated), or NULL.
 * [-0, +0, m] */
static char *opt_string(lua_State *L, const char *name)
{
	char *s = lua_getfield(L, -1, name) == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : NULL;

	lua_pop(L, 1);
	return s;
}

static int opt_equals(lua_State *L, const char *name, const char *value)
{
	int eq = lua_getfield(L, -1, name) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), value);

	lua_pop(L, 1);
	return eq;
}

/* Reads a limits or retry sub-table field. [-0, +0, m] */
static void read_limits(lua_State *L, struct sl_deploy_proc *p)
{
	char *s;

	p->instructions = 1e8;
	p->memory = 64.0 * 1048576;
	p->wallclock_ms = 10000;
	p->retry_attempts = 4;
	p->backoff_ms = 100;
	if (lua_getfield(L, -1, "limits") == LUA_TTABLE) {
		if (lua_getfield(L, -1, "instructions") == LUA_TNUMBER)
			p->instructions = lua_tonumber(L, -1);
		lua_pop(L, 1);
		if ((s = opt_string(L, "memory")))
			p->memory = sl_parse_size(s), free(s);
		if ((s = opt_string(L, "wallclock")))
			p->wallclock_ms = sl_parse_duration(s), free(s);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, -1, "retry") == LUA_TTABLE) {
		if (lua_getfield(L, -1, "attempts") == LUA_TNUMBER)
			p->retry_attempts = (int)lua_tointeger(L, -1);
		lua_pop(L, 1);
		if ((s = opt_string(L, "backoff")))
			p->backoff_ms = sl_parse_duration(s), free(s);
	}
	lua_pop(L, 1);
}

static int cmp_proc(const void *a, const void *b)
{
	return strcmp(((const struct sl_deploy_proc *)a)->name,
	              ((const struct sl_deploy_proc *)b)->name);
}

/* Reads processors (table at -1 is the deployment). [-0, +0, m] */
static int read_procs(lua_State *L, struct sl_deploy *dp)
{
	size_t n = 0;
	char *script;

	if (lua_getfield(L, -1, "processors") != LUA_TTABLE) {
		lua_pop(L, 1);
		return 0;
	}
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		n++;
		lua_pop(L, 1);
	}
	if (!(dp->procs = calloc(n + 1, sizeof(*dp->procs))))
		return SL_ENOMEM;
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		struct sl_deploy_proc *p = &dp->procs[dp->nprocs++];
		p->name = strdup(lua_tostring(L, -2));
		script = opt_string(L, "script");
		p->script = script ? sl_deploy_path(dp, script) : NULL;
		free(script);
		p->streams = opt_string(L, "streams");
		p->mode_all = opt_equals(L, "mode", "all");
		p->effects_all = opt_equals(L, "sideEffects", "all");
		p->batch_size = lua_getfield(L, -1, "batchSize") == LUA_TNUMBER
		                        ? (int)lua_tointeger(L, -1)
		                        : 1000;
		lua_pop(L, 1);
		read_limits(L, p);
		lua_pop(L, 1);
		if (!p->name || !p->script || !p->streams)
			return SL_ENOMEM;
	}
	lua_pop(L, 1);
	qsort(dp->procs, dp->nprocs, sizeof(*dp->procs), cmp_proc);
	return 0;
}

/* Reads the validated deployment table at -1 into dp. [-0, +0, m] */
static int read_fields(lua_State *L, struct sl_deploy *dp)
{
	char *s;
	size_t n, i;

	s = opt_string(L, "store");
	dp->store = sl_deploy_path(dp, s ? s : "sluice.db");
	free(s);
	dp->durability =
		opt_equals(L, "durability", "normal") ? SL_DURABILITY_NORMAL : SL_DURABILITY_FULL;
	if ((s = opt_string(L, "console")))
		dp->console = sl_deploy_path(dp, s), free(s);
	dp->shutdown_ms = 10000;
	if ((s = opt_string(L, "shutdownTimeout")))
		dp->shutdown_ms = sl_parse_duration(s), free(s);
	dp->lease_ms = 2000;
	if ((s = opt_string(L, "lease")))
		dp->lease_ms = sl_parse_duration(s), free(s);
	lua_getfield(L, -1, "schemas");
	n = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : 0;
	if (!(dp->schemas = calloc(n + 1, sizeof(char *)))) {
		lua_pop(L, 1);
		return SL_ENOMEM;
	}
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, (lua_Integer)i);
		dp->schemas[dp->nschemas++] = sl_deploy_path(dp, lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (!dp->store)
		return SL_ENOMEM;
	return read_procs(L, dp);
}

int sl_deploy_load(struct sl_deploy **out, const char *file, struct sl_errs *errs)
{
	struct sl_deploy *dp;
	lua_State *L = NULL;
	size_t before = errs->n;
	char *slash;
	int rc = 0;

	*out = NULL;
	if (!(dp = calloc(1, sizeof(*dp))) || !(dp->file = strdup(file)) ||
	    !(dp->dir = strdup(file)) || !(L = luaL_newstate())) {
		rc = SL_ENOMEM;
		goto out;
	}
	if ((slash = strrchr(dp->dir, '/')))
		slash == dp->dir ? (void)(slash[1] = '\0') : (void)(*slash = '\0');
	else
		strcpy(dp->dir, ".");
	if ((rc = run_file(L, file, errs)))
		goto out;
	lua_pushcfunction(L, validate_protected);
	lua_pushvalue(L, -2);
	lua_pushlightuserdata(L, dp);
	lua_pushlightuserdata(L, errs);
	if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
		sl_errs_add(errs, "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	if (errs->n == before)
		rc = read_fields(L, dp);
	if (errs->n == before && !rc && dp->lease_ms < 100)
		sl_errs_add(errs, "%s: /lease: must be at least 100ms, got %gms", file,
		            dp->lease_ms);
	lua_pop(L, 1);
out:
	if (rc == SL_ENOMEM)
		sl_errs_add(errs, "%s: out of memory", file);
	if (L)
		lua_close(L);
	if (rc || errs->n > before) {
		sl_deploy_free(dp);
		return rc ? rc : SL_EINVAL;
	}
	*out = dp;
	return 0;
}

const struct sl_deploy_proc *sl_deploy_proc(const struct sl_deploy *dp, const char *name)
{
	size_t i;

	for (i = 0; i < dp->nprocs; i++)
		if (!strcmp(dp->procs[i].name, name))
			return &dp->procs[i];
	return NULL;
}

void sl_deploy_free(struct sl_deploy *dp)
{
	size_t i;

	if (!dp)
		return;
	for (i = 0; i < dp->nprocs; i++) {
		free(dp->procs[i].name);
		free(dp->procs[i].script);
		free(dp->procs[i].streams);
	}
	for (i = 0; i < dp->nschemas; i++)
		free(dp->schemas[i]);
	free(dp->schemas);
	free(dp->procs);
	free(dp->console);
	free(dp->file);
	free(dp->dir);
	free(dp->store);
	free(dp);
}
