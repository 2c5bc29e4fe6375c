/* sl_deploy.c - loading and validating deployment files. */
#include "sl_deploy.h"

#include <arpa/inet.h>
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

/* Parses digits, an optional fraction and one of the units: the deployment schema's
 * pattern, and nothing strtod would also take (signs, spaces, hex, "inf", "nan"). */
static double parse_unit(const char *s, const char *const *units, const double *mult)
{
	const char *p = s;
	int i;

	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return -1;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	for (i = 0; units[i]; i++)
		if (!strcmp(p, units[i]))
			return strtod(s, NULL) * mult[i];
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

/* A deployment is configuration: its top level gets a fixed instruction and memory
 * allowance, so a runaway file (while true do end, doubling a string) fails `check`
 * with a message instead of hanging or exhausting the machine. */
#define RUN_INSTRUCTIONS 10000000
#define RUN_MEMORY (64u << 20)

struct cap_alloc {
	size_t used, cap;
};

/* lua_Alloc with a cap: refuses to grow past cap bytes (Lua raises a memory error). */
static void *cap_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct cap_alloc *a = ud;
	size_t old = ptr ? osize : 0;
	void *q;

	if (nsize == 0) {
		free(ptr);
		a->used -= old;
		return NULL;
	}
	if (nsize > old && nsize - old > a->cap - a->used)
		return NULL;
	if (!(q = realloc(ptr, nsize)))
		return NULL;
	a->used = a->used - old + nsize;
	return q;
}

/* The count hook of run_file: raises once the allowance is spent. [-0, +0, v] */
static void count_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	luaL_error(L, "the deployment file runs too long (more than %d instructions)",
	           RUN_INSTRUCTIONS);
}

/* Runs the file; leaves its result (a table) on the stack. [-0, +1|0, -] */
static int run_file(lua_State *L, const char *file, struct sl_errs *errs)
{
	int rc = luaL_loadfilex(L, file, "t");

	if (rc == LUA_OK) {
		lua_newtable(L); /* the empty environment */
		lua_setupvalue(L, -2, 1);
		lua_sethook(L, count_hook, LUA_MASKCOUNT, RUN_INSTRUCTIONS);
		rc = lua_pcall(L, 0, 1, 0);
		lua_sethook(L, NULL, 0, 0);
	}
	if (rc != LUA_OK) {
		sl_errs_add_lua(errs, file,
		                rc == LUA_ERRMEM ? "the deployment file uses too much memory"
		                                 : lua_tostring(L, -1));
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
		sl_errs_add(errs, "%s: %s%s", dp->file, *path ? path : "/",
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

/* Pushes the schema of the member `key` of the object schema at sidx: its property
 * schema, else its additionalProperties value (a table with a local "#/$defs/NAME"
 * $ref is resolved against the root schema at root; false means the key is unknown,
 * nil that anything goes). [-0, +1, e] */
static void member_schema(lua_State *L, int root, int sidx, const char *key)
{
	const char *ref;

	if (lua_getfield(L, sidx, "properties") == LUA_TTABLE) {
		if (lua_getfield(L, -1, key) != LUA_TNIL) {
			lua_remove(L, -2);
			return;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, sidx, "additionalProperties") != LUA_TTABLE)
		return;
	if (lua_getfield(L, -1, "$ref") == LUA_TSTRING &&
	    !strncmp((ref = lua_tostring(L, -1)), "#/$defs/", 8)) {
		lua_getfield(L, root, "$defs");
		lua_getfield(L, -1, ref + 8); /* additionalProperties, $ref, $defs, def */
		lua_replace(L, -4);
		lua_pop(L, 2);
		return;
	}
	lua_pop(L, 1);
}

/* Whether the schema at sidx describes an object ("type": "object"). [-0, +0, e] */
static int object_schema(lua_State *L, int sidx)
{
	int yes = lua_getfield(L, sidx, "type") == LUA_TSTRING &&
	          !strcmp(lua_tostring(L, -1), "object");

	lua_pop(L, 1);
	return yes;
}

/* Reports a key that is not a string: a number key comes from `[1] = {...}` or from a
 * list entry (`counter ; {...}` instead of `counter = {...}`). [-0, +0, e] */
static void bad_key(lua_State *L, int kidx, const char *path, const struct sl_deploy *dp,
                    struct sl_errs *errs)
{
	const char *shown = "";

	if (lua_type(L, kidx) == LUA_TNUMBER) {
		lua_pushvalue(L, kidx); /* tostring on a copy: the key itself must stay a number */
		shown = lua_tostring(L, -1);
	}
	sl_errs_add(errs,
	            "%s: %s: field names must be strings, got %s key %s%s(write name = value, "
	            "not [key] = value or a list entry)",
	            dp->file, *path ? path : "/", luaL_typename(L, kidx), shown, *shown ? " " : "");
	if (*shown)
		lua_pop(L, 1);
}

static void list_errors(lua_State *L, int root, int sidx, int vidx, const char *path,
                        const struct sl_deploy *dp, struct sl_errs *errs);

/* Lists the errors of the member whose value is at val (its key below it) of the
 * object at path, described by the object schema at sidx. [-0, +0, e] */
static void list_member(lua_State *L, int root, int sidx, int val, const char *path,
                        const struct sl_deploy *dp, struct sl_errs *errs)
{
	const char *key, *hint;
	char sub[600];
	int t;

	if (lua_type(L, val - 1) != LUA_TSTRING) {
		bad_key(L, val - 1, path, dp, errs);
		return;
	}
	key = lua_tostring(L, val - 1);
	snprintf(sub, sizeof(sub), "%s/%.*s%s", path, SL_ECHO(key));
	member_schema(L, root, sidx, key);
	if ((t = lua_type(L, -1)) == LUA_TTABLE) {
		list_errors(L, root, lua_gettop(L), val, sub, dp, errs);
	} else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
		lua_getfield(L, sidx, "properties");
		hint = closest_key(L, lua_gettop(L), key);
		sl_errs_add(errs, "%s: %s: unknown field '%.*s%s'%s%s%s", dp->file,
		            *path ? path : "/", SL_ECHO(key), hint ? " (did you mean '" : "",
		            hint ? hint : "", hint ? "'?)" : "");
	}
	lua_settop(L, val);
}

/* Lists every error of the value at vidx against the schema at sidx (root: the whole
 * deployment schema, for $ref). When the schema describes an object and the value is
 * a table: each missing required property, each key that is not a string, each
 * unknown field (with the closest known name), and each member's errors, at every
 * depth. Any other value gets its first error from the validator. [-0, +0, e] */
static void list_errors(lua_State *L, int root, int sidx, int vidx, const char *path,
                        const struct sl_deploy *dp, struct sl_errs *errs)
{
	lua_Integer i, n;
	int top = lua_gettop(L);

	if (!lua_istable(L, vidx) || !object_schema(L, sidx)) {
		check_value(L, sidx, vidx, path, dp, errs);
		return;
	}
	lua_getfield(L, sidx, "required");
	n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
	for (i = 1; i <= n; i++) {
		if (lua_rawgeti(L, top + 1, i) != LUA_TSTRING)
			continue; /* settop below */
		lua_pushvalue(L, -1);
		if (lua_rawget(L, vidx) == LUA_TNIL)
			sl_errs_add(errs, "%s: %s/%s: required: missing property", dp->file, path,
			            lua_tostring(L, -2));
		lua_settop(L, top + 1);
	}
	lua_settop(L, top);
	lua_pushnil(L);
	while (lua_next(L, vidx)) {
		list_member(L, root, sidx, lua_gettop(L), path, dp, errs);
		lua_pop(L, 1);
	}
}

/* ---- reading the validated table, with range checks ---------------------------------- */

/* Where read_fields reports. */
struct reader {
	const struct sl_deploy *dp;
	struct sl_errs *errs;
	const char *path; /* of the table at -1: "" or "/processors/NAME" */
};

/* Reads string field `name` of the table at -1, or NULL. [-0, +0, m] */
static char *opt_string(lua_State *L, const char *name)
{
	char *s = lua_getfield(L, -1, name) == LUA_TSTRING ? strdup(lua_tostring(L, -1)) : NULL;

	lua_pop(L, 1);
	return s;
}

/* Whether string field `name` of the table at -1 equals value. [-0, +0, m] */
static int opt_equals(lua_State *L, const char *name, const char *value)
{
	int eq = lua_getfield(L, -1, name) == LUA_TSTRING && !strcmp(lua_tostring(L, -1), value);

	lua_pop(L, 1);
	return eq;
}

/* Reads the integer field `name` of the table at -1 into *out (unchanged when absent),
 * refusing what is not an integer in [lo, hi]. [-0, +0, m] */
static void read_int(lua_State *L, const struct reader *r, const char *name, lua_Integer lo,
                     lua_Integer hi, int *out)
{
	lua_Integer v;
	int isint;

	if (lua_getfield(L, -1, name) != LUA_TNIL) {
		v = lua_tointegerx(L, -1, &isint);
		if (!isint || v < lo || v > hi)
			sl_errs_add(r->errs,
			            "%s: %s/%s: must be an integer between %lld and %lld, got %s",
			            r->dp->file, r->path, name, (long long)lo, (long long)hi,
			            lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
			                                           : luaL_typename(L, -1));
		else
			*out = (int)v;
	}
	lua_pop(L, 1);
}

/* A duration or size setting: a string parsed by `parse` or (when numbers is set) a
 * number in the base unit (milliseconds, bytes), in [lo, hi]; `range` says so. */
struct amount {
	const char *name;
	double (*parse)(const char *);
	int numbers;
	double lo, hi;
	const char *range;
};

/* Reads the amount a of the table at -1 into *out (unchanged when absent). [-0, +0, m] */
static void read_amount(lua_State *L, const struct reader *r, const struct amount *a, double *out)
{
	int t = lua_getfield(L, -1, a->name);
	const char *s = t == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	double v = s ? a->parse(s) : t == LUA_TNUMBER && a->numbers ? lua_tonumber(L, -1) : -1;

	if (t != LUA_TNIL) {
		if (!(v >= a->lo && v <= a->hi)) { /* also NaN */
			if (s)
				sl_errs_add(r->errs, "%s: %s/%s: must be %s, got '%.*s%s'",
				            r->dp->file, r->path, a->name, a->range, SL_ECHO(s));
			else
				sl_errs_add(r->errs, "%s: %s/%s: must be %s, got %s", r->dp->file,
				            r->path, a->name, a->range,
				            t == LUA_TNUMBER ? lua_tostring(L, -1)
				                             : luaL_typename(L, -1));
		} else {
			*out = v;
		}
	}
	lua_pop(L, 1);
}

#define DAY_MS 86400000.0

static const struct amount a_memory = {
	"memory", sl_parse_size,       1,
	0,        1024.0 * 1073741824, "a size of at most 1024GiB (0 disables the budget)"};
static const struct amount a_wallclock = {
	"wallclock", sl_parse_duration,
	1,           0,
	DAY_MS,      "a duration of at most 24 hours (0 disables the budget)"};
static const struct amount a_backoff = {
	"backoff", sl_parse_duration, 0, 0, DAY_MS, "a duration of at most 24 hours"};
static const struct amount a_shutdown = {
	"shutdownTimeout", sl_parse_duration, 0, 0, DAY_MS, "a duration of at most 24 hours"};
static const struct amount a_lease = {
	"lease", sl_parse_duration, 0, 100, DAY_MS, "a duration between 100ms and 24 hours"};
static const struct amount a_http_body = {
	"httpMaxBody", sl_parse_size, 1, 1024, 1073741824.0, "a size between 1KiB and 1GiB"};
static const struct amount a_http_timeout = {
	"httpTimeout", sl_parse_duration, 0, 100, 3600000.0, "a duration between 100ms and 1 hour"};

int sl_http_addr_parse(const char *s, struct sl_http_addr *out, struct sl_diag *d)
{
	const char *colon = strrchr(s, ':'), *host = s, *p;
	size_t hlen = colon ? (size_t)(colon - s) : 0;
	unsigned char bin[16];
	long port = 0;

	memset(out, 0, sizeof(*out));
	if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    strlen(colon + 1) > 5)
		goto bad;
	for (p = colon + 1; *p; p++)
		port = port * 10 + (*p - '0');
	if (port < 1 || port > 65535)
		goto bad;
	out->port = (int)port;
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
		out->ipv6 = 1;
	}
	if (!hlen || hlen >= sizeof(out->host))
		goto bad;
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	if (!out->ipv6 && !strcmp(out->host, "localhost"))
		strcpy(out->host, "127.0.0.1");
	if (inet_pton(out->ipv6 ? AF_INET6 : AF_INET, out->host, bin) != 1)
		goto bad;
	out->loopback =
		out->ipv6 ? !memcmp(bin, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) : bin[0] == 127;
	return 0;
bad:
	return sl_diag_set(d, SL_EINVAL,
	                   "must be HOST:PORT with HOST an IPv4 address, [IPv6 address] or "
	                   "localhost and PORT 1..65535 (e.g. 127.0.0.1:8428), got '%.*s%s'",
	                   SL_ECHO(s));
}

/* Reads http and httpToken of the deployment table at -1: a non-loopback address
 * needs a token (DESIGN §10). [-0, +0, m] */
static void read_http(lua_State *L, const struct reader *r, struct sl_deploy *dp)
{
	struct sl_http_addr a;
	struct sl_diag d;

	dp->http = opt_string(L, "http");
	dp->http_token = opt_string(L, "httpToken");
	dp->http_max_body = 16.0 * 1048576;
	read_amount(L, r, &a_http_body, &dp->http_max_body);
	dp->http_timeout_ms = 10000;
	read_amount(L, r, &a_http_timeout, &dp->http_timeout_ms);
	if (lua_getfield(L, -1, "httpOrigins") == LUA_TTABLE) {
		size_t i, n = (size_t)lua_rawlen(L, -1);
		if (!(dp->http_origins = calloc(n + 1, sizeof(char *))))
			sl_errs_add(r->errs, "out of memory");
		for (i = 1; dp->http_origins && i <= n; i++) {
			if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING &&
			    !(dp->http_origins[dp->nhttp_origins++] = strdup(lua_tostring(L, -1))))
				sl_errs_add(r->errs, "out of memory");
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	if (!dp->http)
		return;
	sl_diag_init(&d);
	if (sl_http_addr_parse(dp->http, &a, &d))
		sl_errs_add(r->errs, "%s: /http: %s", dp->file, sl_diag_msg(&d));
	else if (!a.loopback && !dp->http_token)
		sl_errs_add(r->errs,
		            "%s: /http: '%s' is not a loopback address: set httpToken to the name "
		            "of the environment variable holding the bearer token",
		            dp->file, dp->http);
}

/* Reads namespace and replicas of the deployment table at -1 (after store): they
 * name JetStream objects, so a SQLite store refuses them rather than ignore a
 * setting that was meant for another backend. [-0, +0, m] */
static void read_nats(lua_State *L, const struct reader *r, struct sl_deploy *dp)
{
	static const char *const fields[] = {"namespace", "replicas", "projections"};
	int nats = dp->store && !strncmp(dp->store, "nats://", 7), i;
	char *pj = opt_string(L, "projections");

	dp->ns = opt_string(L, "namespace");
	read_int(L, r, "replicas", 1, SL_STORE_MAX_REPLICAS, &dp->replicas);
	if (dp->ns && !sl_store_ns_valid(dp->ns))
		sl_errs_add(r->errs,
		            "%s: /namespace: must be 1 to %d of [A-Za-z0-9_-], got '%.*s%s'",
		            dp->file, SL_STORE_NS_MAX, SL_ECHO(dp->ns));
	for (i = 0; i < 3 && !nats && dp->store; i++)
		if (i == 0 ? dp->ns != NULL : i == 1 ? dp->replicas != 0 : pj != NULL)
			sl_errs_add(
				r->errs,
				"%s: /%s: applies only to a nats:// store, and store is '%.*s%s'",
				dp->file, fields[i], SL_ECHO(dp->store));
	if (!dp->ns)
		dp->ns = strdup(SL_STORE_NS_DEFAULT);
	if (nats && dp->ns) {
		char def[SL_STORE_NS_MAX + 32];
		snprintf(def, sizeof(def), "%s.projections.db", dp->ns);
		dp->projections = sl_deploy_path(dp, pj ? pj : def);
	}
	free(pj);
}

/* Reads the limits and retry sub-tables of the processor table at -1. [-0, +0, m] */
static void read_limits(lua_State *L, const struct reader *pr, struct sl_deploy_proc *p)
{
	char path[640]; /* room for the processor's path (< 600) and "/limits" */
	struct reader r = {pr->dp, pr->errs, path};
	double v;

	p->instructions = 1e8;
	p->memory = 64.0 * 1048576;
	p->wallclock_ms = 10000;
	p->retry_attempts = 4;
	p->backoff_ms = 100;
	snprintf(path, sizeof(path), "%s/limits", pr->path);
	if (lua_getfield(L, -1, "limits") == LUA_TTABLE) {
		if (lua_getfield(L, -1, "instructions") != LUA_TNIL) {
			v = lua_tonumber(L, -1);
			if (!(v >= 1 && v <= 1e15))
				sl_errs_add(
					r.errs,
					"%s: %s/instructions: must be between 1 and 1e15, got %s",
					r.dp->file, path,
					lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
								       : luaL_typename(L, -1));
			else
				p->instructions = v;
		}
		lua_pop(L, 1);
		read_amount(L, &r, &a_memory, &p->memory);
		read_amount(L, &r, &a_wallclock, &p->wallclock_ms);
	}
	lua_pop(L, 1);
	snprintf(path, sizeof(path), "%s/retry", pr->path);
	if (lua_getfield(L, -1, "retry") == LUA_TTABLE) {
		read_int(L, &r, "attempts", 1, SL_DEPLOY_MAX_ATTEMPTS, &p->retry_attempts);
		read_amount(L, &r, &a_backoff, &p->backoff_ms);
	}
	lua_pop(L, 1);
}

static int cmp_proc(const void *a, const void *b)
{
	return strcmp(((const struct sl_deploy_proc *)a)->name,
	              ((const struct sl_deploy_proc *)b)->name);
}

/* Reads one processor (its name at -2, its table at -1) into p. [-0, +0, m] */
static int read_proc(lua_State *L, struct sl_deploy *dp, struct sl_errs *errs,
                     struct sl_deploy_proc *p)
{
	char path[600];
	struct reader r = {dp, errs, path};
	char *script;

	p->name = strdup(lua_tostring(L, -2));
	snprintf(path, sizeof(path), "/processors/%s", p->name ? p->name : "?");
	script = opt_string(L, "script");
	p->script = script ? sl_deploy_path(dp, script) : NULL;
	free(script);
	p->streams = opt_string(L, "streams");
	p->mode_all = opt_equals(L, "mode", "all");
	p->effects_all = opt_equals(L, "sideEffects", "all");
	p->batch_size = 1000;
	read_int(L, &r, "batchSize", 1, SL_DEPLOY_MAX_BATCH, &p->batch_size);
	read_limits(L, &r, p);
	return p->name && p->script && p->streams ? 0 : SL_ENOMEM;
}

/* Reads processors (table at -1 is the deployment). [-0, +0, m] */
static int read_procs(lua_State *L, struct sl_deploy *dp, struct sl_errs *errs)
{
	size_t n = 0;
	int rc = 0;

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
	while (!rc && lua_next(L, -2)) {
		/* Validation refused every key that is not a string and every value that
		 * is not a table; the tests stay so that this never converts a key. */
		if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1))
			rc = read_proc(L, dp, errs, &dp->procs[dp->nprocs++]);
		lua_pop(L, 1);
	}
	if (rc)
		lua_pop(L, 1); /* the key lua_next left */
	lua_pop(L, 1);
	qsort(dp->procs, dp->nprocs, sizeof(*dp->procs), cmp_proc);
	return rc;
}

/* Reads the validated deployment table at -1 into dp, adding an error for each
 * setting out of range. [-0, +0, m] */
static int read_fields(lua_State *L, struct sl_deploy *dp, struct sl_errs *errs)
{
	struct reader r = {dp, errs, ""};
	char *s;
	size_t n, i;

	s = opt_string(L, "store");
	/* A nats:// URL list (DESIGN §11) is not a path relative to the deployment. */
	dp->store = s && !strncmp(s, "nats://", 7) ? strdup(s)
	                                           : sl_deploy_path(dp, s ? s : "sluice.db");
	free(s);
	dp->durability =
		opt_equals(L, "durability", "normal") ? SL_DURABILITY_NORMAL : SL_DURABILITY_FULL;
	read_nats(L, &r, dp);
	if ((s = opt_string(L, "console")))
		dp->console = sl_deploy_path(dp, s), free(s);
	dp->shutdown_ms = 10000;
	read_amount(L, &r, &a_shutdown, &dp->shutdown_ms);
	dp->lease_ms = 2000;
	read_amount(L, &r, &a_lease, &dp->lease_ms);
	dp->partitions = 16;
	read_int(L, &r, "partitions", 1, SL_PARTITIONS_MAX, &dp->partitions);
	read_http(L, &r, dp);
	lua_getfield(L, -1, "schemas");
	n = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : 0;
	if (!(dp->schemas = calloc(n + 1, sizeof(char *)))) {
		lua_pop(L, 1);
		return SL_ENOMEM;
	}
	for (i = 1; i <= n; i++) {
		if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING &&
		    !(dp->schemas[dp->nschemas++] = sl_deploy_path(dp, lua_tostring(L, -1)))) {
			lua_pop(L, 2);
			return SL_ENOMEM;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (!dp->store || !dp->ns)
		return SL_ENOMEM;
	return read_procs(L, dp, errs);
}

/* Reads schemas/deployment.schema.json and pushes it decoded. [-0, +1, e] */
static void push_schema(lua_State *L)
{
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
		luaL_error(L, "%s: %s", path, f ? sl_diag_msg(&d) : "cannot open");
		return;
	}
	sl_buf_release(&b);
}

/* Protected: lists every error of the deployment table (at 1) against
 * schemas/deployment.schema.json, sorted, and when there is none reads it into the
 * deployment (with its range checks). Arguments are light userdata: 2 deploy,
 * 3 errs; returns one integer, read_fields' code. [-3, +1, e] */
static int validate_protected(lua_State *L)
{
	struct sl_deploy *dp = lua_touserdata(L, 2);
	struct sl_errs *errs = lua_touserdata(L, 3);
	size_t before = errs->n;
	int rc = 0;

	push_schema(L); /* 4 */
	list_errors(L, 4, 4, 1, "", dp, errs);
	sl_errs_sort(errs, before);
	if (errs->n == before) {
		lua_settop(L, 1);
		rc = read_fields(L, dp, errs);
		sl_errs_sort(errs, before);
	}
	lua_pushinteger(L, rc);
	return 1;
}

int sl_deploy_load(struct sl_deploy **out, const char *file, struct sl_errs *errs)
{
	struct sl_deploy *dp;
	lua_State *L = NULL;
	struct cap_alloc mem = {0, RUN_MEMORY};
	size_t before = errs->n;
	char *slash;
	int rc = 0;

	*out = NULL;
	if (!(dp = calloc(1, sizeof(*dp))) || !(dp->file = strdup(file)) ||
	    !(dp->dir = strdup(file)) || !(L = lua_newstate(cap_alloc, &mem))) {
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
	if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
		sl_errs_add(errs, "%s: %s", file,
		            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "out of memory");
	} else {
		rc = (int)lua_tointeger(L, -1);
	}
	lua_pop(L, 1);
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
	free(dp->projections);
	free(dp->http);
	free(dp->http_token);
	for (i = 0; i < dp->nhttp_origins; i++)
		free(dp->http_origins[i]);
	free(dp->http_origins);
	free(dp->file);
	free(dp->dir);
	free(dp->store);
	free(dp->ns);
	free(dp);
}
