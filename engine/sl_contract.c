/* sl_contract.c - loading and checking contracts.
 *
 * A registry decodes contract files into its own scratch lua_State (the schema
 * compiler reads Lua values) and keeps only C data afterwards: compiled schemas and
 * strings. Every check adds its error to the caller's list and goes on, so
 * `sluice check` can show all of them at once.
 */
#include "sl_contract.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "sl_buf.h"
#include "sl_hash.h"
#include "sl_home.h"
#include "sl_luajson.h"
#include "sl_schema.h"

struct entry {
	char *name;
	int state; /* 0 loading, 1 loaded, -1 failed */
	struct sl_contract c;
};

struct sl_contracts {
	lua_State *L;
	char **dirs;
	size_t ndirs;
	struct sl_schema *meta; /* schemas/contract.schema.json */
	struct entry **ent;
	size_t nent;
};

/* Reads a whole file into b. */
static int read_file(const char *path, struct sl_buf *b, struct sl_diag *d)
{
	FILE *f = fopen(path, "rb");
	char chunk[16384];
	size_t n;

	if (!f)
		return sl_diag_set(d, SL_EIO, "%s: cannot open: %s", path, strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sl_buf_add(b, chunk, n);
	n = (size_t)ferror(f);
	fclose(f);
	if (n)
		return sl_diag_set(d, SL_EIO, "%s: cannot read", path);
	return sl_buf_ok(b) ? 0 : sl_diag_set(d, SL_ENOMEM, "out of memory");
}

/* Protected: decodes the JSON text (light userdata sl_buf at 1, diag at 2).
 * [-2, +1, m] */
static int decode_protected(lua_State *L)
{
	struct sl_buf *b = lua_touserdata(L, 1);
	struct sl_diag *d = lua_touserdata(L, 2);

	lua_settop(L, 0);
	if (sl_lj_decode(L, b->ptr, b->len, SL_LJ_STRICT, d))
		lua_pushnil(L);
	return 1;
}

/* Reads and decodes a JSON file, leaving the value on the stack.
 * [-0, +1, -] on success; [-0, +0, -] on failure. */
static int load_json(lua_State *L, const char *path, uint64_t *hash, struct sl_diag *d)
{
	struct sl_buf b;
	int rc;

	sl_buf_init(&b);
	if ((rc = read_file(path, &b, d)))
		goto out;
	*hash = sl_hash_bytes(SL_HASH_INIT, b.ptr, b.len);
	lua_pushcfunction(L, decode_protected);
	lua_pushlightuserdata(L, &b);
	lua_pushlightuserdata(L, d);
	if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
		rc = sl_diag_set(d, SL_ENOMEM, "%s: %s", path, lua_tostring(L, -1));
		lua_pop(L, 1);
	} else if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		rc = sl_diag_prefix(d, "%s", path);
	}
out:
	sl_buf_release(&b);
	return rc;
}

/* Protected: compiles the schema at 1 (where: light userdata string at 2, out at 3,
 * diag at 4). [-4, +1, m] */
static int compile_protected(lua_State *L)
{
	const char *where = lua_touserdata(L, 2);
	struct sl_schema **out = lua_touserdata(L, 3);
	struct sl_diag *d = lua_touserdata(L, 4);

	lua_pushinteger(L, sl_schema_compile(L, 1, where, out, d));
	return 1;
}

/* Compiles the value at idx. [-0, +0, -] */
static int compile_at(lua_State *L, int idx, const char *where, struct sl_schema **out,
                      struct sl_diag *d)
{
	int rc;

	*out = NULL;
	idx = lua_absindex(L, idx);
	lua_pushcfunction(L, compile_protected);
	lua_pushvalue(L, idx);
	lua_pushlightuserdata(L, (void *)where);
	lua_pushlightuserdata(L, out);
	lua_pushlightuserdata(L, d);
	if (lua_pcall(L, 4, 1, 0) != LUA_OK) {
		rc = sl_diag_set(d, SL_ENOMEM, "%s: %s", where, lua_tostring(L, -1));
	} else {
		rc = (int)lua_tointeger(L, -1);
	}
	lua_pop(L, 1);
	return rc;
}

/* Protected: validates value at 1 against schema (light userdata at 2), diag at 3.
 * [-3, +1, m] */
static int validate_protected(lua_State *L)
{
	lua_pushinteger(L, sl_schema_validate(lua_touserdata(L, 2), L, 1, lua_touserdata(L, 3)));
	return 1;
}

static int validate_at(lua_State *L, int idx, const struct sl_schema *s, struct sl_diag *d)
{
	int rc;

	idx = lua_absindex(L, idx);
	lua_pushcfunction(L, validate_protected);
	lua_pushvalue(L, idx);
	lua_pushlightuserdata(L, (void *)s);
	lua_pushlightuserdata(L, d);
	if (lua_pcall(L, 3, 1, 0) != LUA_OK)
		rc = sl_diag_set(d, SL_ENOMEM, "%s", lua_tostring(L, -1));
	else
		rc = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	return rc;
}

int sl_contracts_new(struct sl_contracts **out, const char *const *dirs, size_t ndirs,
                     struct sl_diag *d)
{
	struct sl_contracts *cs;
	char path[4200];
	uint64_t hash;
	size_t i;
	int rc;

	*out = NULL;
	if (!(cs = calloc(1, sizeof(*cs))) || !(cs->dirs = calloc(ndirs + 1, sizeof(char *))) ||
	    !(cs->L = luaL_newstate())) {
		sl_contracts_free(cs);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	for (i = 0; i < ndirs; i++)
		cs->dirs[cs->ndirs++] = strdup(dirs[i]);
	cs->dirs[cs->ndirs++] = strdup(sl_home_schemas());
	snprintf(path, sizeof(path), "%s/contract.schema.json", sl_home_schemas());
	if (!(rc = load_json(cs->L, path, &hash, d))) {
		rc = compile_at(cs->L, -1, path, &cs->meta, d);
		lua_pop(cs->L, 1);
	}
	if (rc) {
		sl_contracts_free(cs);
		return rc;
	}
	*out = cs;
	return 0;
}

static void contract_release(struct sl_contract *c)
{
	size_t i;

	for (i = 0; i < c->nconsumes; i++)
		free(c->consumes[i]);
	for (i = 0; i < c->nemits; i++)
		free(c->emits[i]);
	for (i = 0; i < c->ntypes; i++) {
		if (c->types[i].origin == c->name)
			sl_schema_free(c->types[i].schema);
		free(c->types[i].type);
	}
	free(c->consumes);
	free(c->emits);
	free(c->types);
	sl_schema_free(c->state);
	free(c->initial_state);
	free(c->file);
}

void sl_contracts_free(struct sl_contracts *cs)
{
	size_t i;

	if (!cs)
		return;
	for (i = 0; i < cs->nent; i++) {
		contract_release(&cs->ent[i]->c);
		free(cs->ent[i]->name);
		free(cs->ent[i]);
	}
	for (i = 0; i < cs->ndirs; i++)
		free(cs->dirs[i]);
	free(cs->ent);
	free(cs->dirs);
	sl_schema_free(cs->meta);
	if (cs->L)
		lua_close(cs->L);
	free(cs);
}

/* ---- loading one contract -------------------------------------------------------- */

static int find_file(const struct sl_contracts *cs, const char *name, char *path, size_t n)
{
	size_t i;
	FILE *f;

	for (i = 0; i < cs->ndirs; i++) {
		snprintf(path, n, "%s/%s.contract.json", cs->dirs[i], name);
		if ((f = fopen(path, "rb"))) {
			fclose(f);
			return 0;
		}
	}
	return SL_ENOTFOUND;
}

/* Copies the string array field `field` of the table at -1 (validated already).
 * [-0, +0, m] */
static char **string_array(lua_State *L, const char *field, size_t *n)
{
	char **out;
	size_t i, len;

	lua_getfield(L, -1, field);
	len = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : 0;
	*n = 0;
	if (!(out = calloc(len + 1, sizeof(*out)))) {
		lua_pop(L, 1);
		return NULL;
	}
	for (i = 0; i < len; i++) {
		lua_rawgeti(L, -1, (lua_Integer)i + 1);
		if ((out[*n] = strdup(lua_tostring(L, -1))))
			(*n)++;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return out;
}

static int cmp_type(const void *a, const void *b)
{
	return strcmp(((const struct sl_evtype *)a)->type, ((const struct sl_evtype *)b)->type);
}

const struct sl_evtype *sl_contract_type(const struct sl_contract *c, const char *type)
{
	struct sl_evtype key = {(char *)type, NULL, NULL};

	return c->ntypes ? bsearch(&key, c->types, c->ntypes, sizeof(key), cmp_type) : NULL;
}

static int in_list(char *const *list, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(list[i], s))
			return 1;
	return 0;
}

int sl_contract_consumes_named(const struct sl_contract *c, const char *type)
{
	return in_list(c->consumes, c->nconsumes, type);
}

int sl_contract_consumes(const struct sl_contract *c, const char *type)
{
	return c->consumes_all || in_list(c->consumes, c->nconsumes, type);
}

int sl_contract_emits(const struct sl_contract *c, const char *type)
{
	return in_list(c->emits, c->nemits, type);
}

/* Adds a type to c->types; reports a type owned twice. */
static void add_type(struct sl_contract *c, const char *type, struct sl_schema *schema,
                     const char *origin, struct sl_errs *errs)
{
	size_t i;

	for (i = 0; i < c->ntypes; i++) {
		if (strcmp(c->types[i].type, type))
			continue;
		if (c->types[i].origin != origin)
			sl_errs_add(errs,
			            "%s: events: type '%s' is defined twice, by '%s' and by '%s'",
			            c->file, type, c->types[i].origin, origin);
		if (origin == c->name)
			sl_schema_free(schema);
		return;
	}
	c->types[c->ntypes].type = strdup(type);
	c->types[c->ntypes].schema = schema;
	c->types[c->ntypes].origin = origin;
	c->ntypes++;
}

/* Compiles the own events of the contract table at -1. [-0, +0, m] */
static int own_events(lua_State *L, struct sl_contract *c, struct sl_errs *errs)
{
	char where[600];
	struct sl_schema *s;
	struct sl_diag d;
	size_t first = errs->n;
	int bad = 0;

	lua_getfield(L, -1, "events");
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		const char *type = lua_tostring(L, -2);
		snprintf(where, sizeof(where), "%s: events.%s", c->file, type);
		sl_diag_init(&d);
		if (compile_at(L, -1, where, &s, &d)) {
			sl_errs_add(errs, "%s", sl_diag_msg(&d));
			bad = 1;
		}
		/* A refused schema still declares its type, so consumes/emits resolve. */
		add_type(c, type, s, c->name, errs);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	sl_errs_sort(errs, first); /* not in the table's (random) order */
	return bad;
}

/* Suggests the closest known type, for a typo. */
static const char *closest(const struct sl_contract *c, const char *type)
{
	struct sl_closest cl;
	size_t i;

	sl_closest_init(&cl, type);
	for (i = 0; i < c->ntypes; i++)
		sl_closest_try(&cl, c->types[i].type);
	return sl_closest_best(&cl);
}

static void check_names(struct sl_contract *c, char **list, size_t n, const char *field,
                        struct sl_errs *errs)
{
	const char *hint;
	size_t i;

	for (i = 0; i < n; i++) {
		if (!strcmp(list[i], "*")) {
			if (!strcmp(field, "emits"))
				sl_errs_add(errs, "%s: emits: '*' is allowed in consumes only",
				            c->file);
			else
				c->consumes_all = 1;
			continue;
		}
		if (sl_contract_type(c, list[i]))
			continue;
		if ((hint = closest(c, list[i])))
			sl_errs_add(errs, "%s: %s: unknown event type '%s' (did you mean '%s'?)",
			            c->file, field, list[i], hint);
		else
			sl_errs_add(errs,
			            "%s: %s: unknown event type '%s' (not in events or imports)",
			            c->file, field, list[i]);
	}
}

static struct entry *find_entry(struct sl_contracts *cs, const char *name)
{
	size_t i;

	for (i = 0; i < cs->nent; i++)
		if (!strcmp(cs->ent[i]->name, name))
			return cs->ent[i];
	return NULL;
}

static struct entry *new_entry(struct sl_contracts *cs, const char *name)
{
	struct entry *e, **grown;

	if (!(grown = realloc(cs->ent, (cs->nent + 1) * sizeof(*grown))))
		return NULL;
	cs->ent = grown;
	if (!(e = calloc(1, sizeof(*e))) || !(e->name = strdup(name))) {
		free(e);
		return NULL;
	}
	e->c.name = e->name;
	cs->ent[cs->nent++] = e;
	return e;
}

/* Loads the imports; imp[i] is NULL for one that failed. */
static int load_imports(struct sl_contracts *cs, struct sl_contract *c, char **imports, size_t n,
                        const struct sl_contract **imp, struct sl_errs *errs)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < n; i++) {
		if (sl_contracts_load(cs, imports[i], &imp[i], errs)) {
			sl_errs_add(errs, "%s: imports: contract '%s' cannot be loaded", c->file,
			            imports[i]);
			imp[i] = NULL;
			bad = 1;
			continue;
		}
		c->hash = (c->hash ^ imp[i]->hash) * 1099511628211ull;
	}
	return bad;
}

/* The number of own events of the contract table at -1. [-0, +0, -] */
static size_t count_events(lua_State *L)
{
	size_t total = 0;

	lua_getfield(L, -1, "events");
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		total++;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return total;
}

/* Builds c->types from the own events and the imports. [-0, +0, m] */
static int build_types(lua_State *L, struct sl_contracts *cs, struct sl_contract *c,
                       struct sl_errs *errs)
{
	const struct sl_contract **imp = NULL;
	char **imports;
	size_t n, i, k, total;
	int bad;

	imports = string_array(L, "imports", &n);
	if (!imports || (n && !(imp = calloc(n, sizeof(*imp))))) {
		sl_errs_add(errs, "%s: out of memory", c->file);
		bad = 1;
		goto out;
	}
	bad = load_imports(cs, c, imports, n, imp, errs);
	total = count_events(L);
	for (i = 0; i < n; i++)
		total += imp[i] ? imp[i]->ntypes : 0;
	if (!(c->types = calloc(total + 1, sizeof(*c->types)))) {
		bad = 1;
		goto out;
	}
	bad |= own_events(L, c, errs);
	for (i = 0; i < n; i++)
		for (k = 0; imp[i] && k < imp[i]->ntypes; k++)
			add_type(c, imp[i]->types[k].type, imp[i]->types[k].schema,
			         imp[i]->types[k].origin, errs);
	qsort(c->types, c->ntypes, sizeof(*c->types), cmp_type);
out:
	for (i = 0; imports && i < n; i++)
		free(imports[i]);
	free(imports);
	free(imp);
	return bad;
}

/* Protected: encodes the value at 1 into the sl_buf at 2 (diag at 3). [-3, +1, m] */
static int encode_protected(lua_State *L)
{
	lua_pushinteger(
		L, sl_lj_encode(L, 1, "initialState", lua_touserdata(L, 2), lua_touserdata(L, 3)));
	return 1;
}

/* Compiles state, checks and encodes initialState. [-0, +0, m] */
static int state_and_initial(lua_State *L, struct sl_contract *c, struct sl_errs *errs)
{
	char where[600];
	struct sl_diag d;
	struct sl_buf b;
	int rc;

	snprintf(where, sizeof(where), "%s: state", c->file);
	sl_diag_init(&d);
	lua_getfield(L, -1, "state");
	rc = compile_at(L, -1, where, &c->state, &d);
	lua_pop(L, 1);
	if (rc) {
		sl_errs_add(errs, "%s", sl_diag_msg(&d));
		return 1;
	}
	lua_getfield(L, -1, "initialState");
	if (validate_at(L, -1, c->state, &d)) {
		sl_errs_add(errs, "%s: initialState: %s", c->file, sl_diag_msg(&d));
		lua_pop(L, 1);
		return 1;
	}
	sl_buf_init(&b);
	lua_pushcfunction(L, encode_protected);
	lua_pushvalue(L, -2);
	lua_pushlightuserdata(L, &b);
	lua_pushlightuserdata(L, &d);
	rc = lua_pcall(L, 3, 1, 0) != LUA_OK || lua_tointeger(L, -1) != 0;
	lua_pop(L, 2);
	if (rc)
		sl_errs_add(errs, "%s: initialState: %s", c->file, sl_diag_msg(&d));
	else
		c->initial_state = sl_buf_detach(&b, &c->initial_len);
	sl_buf_release(&b);
	return rc;
}

/* Checks the decoded contract at -1 and fills c. [-0, +0, m] */
static int check_contract(lua_State *L, struct sl_contracts *cs, struct sl_contract *c,
                          struct sl_errs *errs)
{
	struct sl_diag d;
	size_t i, k;
	int bad = 0;

	sl_diag_init(&d);
	if (validate_at(L, -1, cs->meta, &d)) {
		sl_errs_add(errs, "%s: %s", c->file, sl_diag_msg(&d));
		return 1;
	}
	lua_getfield(L, -1, "name");
	if (strcmp(lua_tostring(L, -1), c->name)) {
		sl_errs_add(errs, "%s: name: '%s' does not match the file name (expected '%s')",
		            c->file, lua_tostring(L, -1), c->name);
		bad = 1;
	}
	lua_getfield(L, -2, "version");
	c->version = lua_tointeger(L, -1);
	lua_pop(L, 2);
	bad |= build_types(L, cs, c, errs);
	c->consumes = string_array(L, "consumes", &c->nconsumes);
	c->emits = string_array(L, "emits", &c->nemits);
	if (!c->consumes || !c->emits)
		return 1;
	check_names(c, c->consumes, c->nconsumes, "consumes", errs);
	check_names(c, c->emits, c->nemits, "emits", errs);
	for (i = k = 0; i < c->nconsumes; i++) /* "*" is kept as consumes_all only */
		if (strcmp(c->consumes[i], "*"))
			c->consumes[k++] = c->consumes[i];
		else
			free(c->consumes[i]);
	c->nconsumes = k;
	bad |= state_and_initial(L, c, errs);
	return bad;
}

/* Protected: check_contract on the decoded contract at 1; arguments are light
 * userdata: 2 contracts, 3 contract, 4 errs. Every access to a contract's Lua
 * table runs inside it, so even an out-of-memory error there is caught.
 * [-4, +0, e] */
static int check_protected(lua_State *L)
{
	struct sl_contracts *cs = lua_touserdata(L, 2);
	struct sl_contract *c = lua_touserdata(L, 3);
	struct sl_errs *errs = lua_touserdata(L, 4);

	lua_settop(L, 1);
	check_contract(L, cs, c, errs);
	return 0;
}

int sl_contracts_load(struct sl_contracts *cs, const char *name, const struct sl_contract **out,
                      struct sl_errs *errs)
{
	struct entry *e = find_entry(cs, name);
	size_t before = errs->n;
	char path[4200];
	struct sl_diag d;
	lua_State *L = cs->L;

	*out = NULL;
	if (e && e->state == 0)
		sl_errs_add(errs, "contract '%s': imports form a cycle", name);
	if (e) {
		*out = e->state == 1 ? &e->c : NULL;
		return e->state == 1 ? 0 : SL_EINVAL;
	}
	if (!(e = new_entry(cs, name))) {
		sl_errs_add(errs, "out of memory");
		return SL_ENOMEM;
	}
	sl_diag_init(&d);
	if (find_file(cs, name, path, sizeof(path))) {
		sl_errs_add(errs,
		            "contract '%s' not found (looked for %s.contract.json in %zu"
		            " directories, the last %s)",
		            name, name, cs->ndirs, cs->dirs[cs->ndirs - 1]);
	} else if (!(e->c.file = strdup(path)) || load_json(L, path, &e->c.hash, &d)) {
		sl_errs_add(errs, "%s", sl_diag_msg(&d));
	} else {
		lua_pushcfunction(L, check_protected);
		lua_insert(L, -2);
		lua_pushlightuserdata(L, cs);
		lua_pushlightuserdata(L, &e->c);
		lua_pushlightuserdata(L, errs);
		if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
			sl_errs_add(errs, "%s: %s", path,
			            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
			                                           : "out of memory");
			lua_pop(L, 1);
		}
	}
	e->state = errs->n > before ? -1 : 1;
	*out = e->state == 1 ? &e->c : NULL;
	return e->state == 1 ? 0 : SL_EINVAL;
}

int sl_contracts_each_path(const struct sl_contracts *cs, sl_contract_path_fn fn, void *ud)
{
	char path[4200];
	size_t i, k;
	int rc;

	/* The last directory is the built-in one: not the user's to edit. */
	for (i = 0; i < cs->nent; i++)
		for (k = 0; k + 1 < cs->ndirs; k++) {
			snprintf(path, sizeof(path), "%s/%s.contract.json", cs->dirs[k],
			         cs->ent[i]->name);
			if ((rc = fn(ud, path)))
				return rc;
		}
	return 0;
}

/* ---- the core validator, for the store -------------------------------------------------- */

/* Protected: decodes the payload (light userdata text at 1, length at 2) and
 * validates it against the schema at 3 (diag at 4). [-4, +1, e] */
static int core_protected(lua_State *L)
{
	const char *text = lua_touserdata(L, 1);
	size_t len = (size_t)lua_tointeger(L, 2);
	const struct sl_schema *schema = lua_touserdata(L, 3);
	struct sl_diag *d = lua_touserdata(L, 4);
	int rc = sl_lj_decode(L, text, len, 0, d);

	if (!rc)
		rc = sl_schema_validate(schema, L, -1, d);
	lua_pushinteger(L, rc);
	return 1;
}

/* Decodes and validates JSON text against schema in a protected call on L, whose
 * stack it leaves as it found it. Returns 0, SL_EINVAL (d says why) or SL_ENOMEM.
 * [-0, +0, -] */
static int validate_text(lua_State *L, const struct sl_schema *schema, const char *payload,
                         size_t len, struct sl_diag *d)
{
	int top = lua_gettop(L), rc;

	lua_pushcfunction(L, core_protected);
	lua_pushlightuserdata(L, (void *)payload);
	lua_pushinteger(L, (lua_Integer)len);
	lua_pushlightuserdata(L, (void *)schema);
	lua_pushlightuserdata(L, d);
	if (lua_pcall(L, 4, 1, 0) != LUA_OK)
		rc = sl_diag_set(d, SL_ENOMEM, "%s", lua_tostring(L, -1));
	else
		rc = (int)lua_tointeger(L, -1);
	lua_settop(L, top);
	return rc;
}

struct sl_core_validator {
	struct sl_contracts *cs; /* NULL until the first core type */
	const struct sl_contract *core;
	struct sl_contracts *dcs; /* the deployment's contracts, or NULL */
	const struct sl_contract **dc;
	size_t ndc;
};

int sl_core_validator_new(struct sl_core_validator **out, struct sl_diag *d)
{
	if (!(*out = calloc(1, sizeof(**out))))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	return 0;
}

void sl_core_validator_free(struct sl_core_validator *v)
{
	if (!v)
		return;
	sl_contracts_free(v->cs);
	sl_contracts_free(v->dcs);
	free(v->dc);
	free(v);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int sl_core_validator_use_contracts(struct sl_core_validator *v, const char *const *dirs, size_t n,
                                    struct sl_diag *d)
{
	struct sl_errs errs;
	char **names = NULL;
	size_t i, nnames = 0, cap = 0;
	int rc = 0;

	if ((rc = sl_contracts_new(&v->dcs, dirs, n, d)))
		return rc;
	/* Every NAME.contract.json of the directories, in name order (a name in two
	 * directories is the first one's, as the registry finds it). */
	for (i = 0; i < n && !rc; i++) {
		DIR *dir = opendir(dirs[i]);
		struct dirent *e;
		if (!dir)
			continue; /* a missing directory holds no contract (check says so) */
		while ((e = readdir(dir))) {
			const char *suffix = ".contract.json";
			size_t len = strlen(e->d_name), sl = strlen(suffix);
			if (len <= sl || strcmp(e->d_name + len - sl, suffix))
				continue;
			if (nnames == cap) {
				char **grown =
					realloc(names, (cap = cap ? cap * 2 : 16) * sizeof(*grown));
				if (!grown) {
					rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
					break;
				}
				names = grown;
			}
			if (!(names[nnames] = strndup(e->d_name, len - sl))) {
				rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
				break;
			}
			nnames++;
		}
		closedir(dir);
	}
	if (!rc && nnames)
		qsort(names, nnames, sizeof(*names), by_name);
	if (!rc && !(v->dc = calloc(nnames + 1, sizeof(*v->dc))))
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
	sl_errs_init(&errs);
	for (i = 0; i < nnames && !rc; i++)
		if (i && !strcmp(names[i], names[i - 1])) /* in two directories: the first's */
			continue;
		else if (sl_contracts_load(v->dcs, names[i], &v->dc[v->ndc], &errs))
			rc = sl_diag_set(d, SL_EINVAL, "%s", errs.n ? errs.msg[0] : "cannot load");
		else
			v->ndc++;
	sl_errs_release(&errs);
	for (i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* Checks the payload against the definition of type in every deployment contract
 * that has one (its own, or imported: a definition reached twice is checked once). */
static int deploy_validate(struct sl_core_validator *v, const char *type, const char *payload,
                           size_t len, struct sl_diag *d)
{
	const struct sl_schema *seen[64];
	size_t i, k, nseen = 0;
	int rc = 0;

	for (i = 0; i < v->ndc && !rc; i++) {
		const struct sl_evtype *et = sl_contract_type(v->dc[i], type);
		if (!et)
			continue;
		for (k = 0; k < nseen && seen[k] != et->schema; k++)
			;
		if (k < nseen)
			continue;
		if (nseen < sizeof(seen) / sizeof(seen[0]))
			seen[nseen++] = et->schema;
		if ((rc = validate_text(v->dcs->L, et->schema, payload, len, d)) &&
		    rc != SL_ENOMEM) {
			char msg[SL_DIAG_MAX];
			snprintf(msg, sizeof(msg), "%s", sl_diag_msg(d));
			sl_diag_init(d); /* the first message stays otherwise */
			sl_diag_set(d, rc, "%s (as contract '%s' defines '%s', %s)", msg,
			            v->dc[i]->name, type, v->dc[i]->file);
		}
	}
	return rc;
}

/* Loads the core contract into the validator's own registry. */
static int core_load(struct sl_core_validator *v, struct sl_diag *d)
{
	struct sl_errs errs;
	int rc;

	if (!v->cs && (rc = sl_contracts_new(&v->cs, NULL, 0, d)))
		return rc;
	sl_errs_init(&errs);
	rc = sl_contracts_load(v->cs, "core", &v->core, &errs);
	if (rc)
		rc = sl_diag_set(d, SL_EIO, "cannot load the core contract: %s",
		                 errs.n ? errs.msg[0] : "unknown error");
	sl_errs_release(&errs);
	return rc;
}

/* Validates in a protected call on the validator's own state (validate_text).
 * [-0, +0, -] */
int sl_core_validate(void *ud, const char *type, const char *payload, size_t len, struct sl_diag *d)
{
	struct sl_core_validator *v = ud;
	const struct sl_evtype *et;
	int rc;

	if (strncmp(type, "stream/", 7)) /* the core contract defines only these */
		return v->ndc ? deploy_validate(v, type, payload, len, d) : 0;
	if (!v->core && (rc = core_load(v, d)))
		return rc;
	if (!(et = sl_contract_type(v->core, type)))
		return 0;
	return validate_text(v->cs->L, et->schema, payload, len, d);
}
