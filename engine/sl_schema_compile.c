/* sl_schema_compile.c - compiles JSON Schemas into flat node arrays (sl_schema.h);
 * sl_schema.c validates values against them.
 *
 * Compilation turns every schema location of the document into one `struct node`
 * in an array; a subschema is an index into it. Nodes are created depth-first, the
 * root first, and each remembers (during compilation only) the JSON pointer of its
 * location, so that a $ref resolves by looking the pointer up among the nodes; a
 * pointer to a location that is not a schema of the tree is followed in the Lua
 * document and compiled on demand. A $ref is an index like any other subschema, so
 * recursion costs nothing at compile time and is bounded at validation time.
 *
 * Everything a schema owns that is not a node (property names, lists of subschema
 * indices, enum/const values) lives in one arena freed with the schema. The work of
 * sl_schema_compile runs in a protected call and every C allocation is reachable
 * from the compiler state, so a Lua memory error in the middle leaks nothing.
 */
#include "sl_schema_int.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_buf.h"
#include "sl_json.h"
#include "sl_luajson.h"

/* ---- Arena ---- */

static void *arena_alloc(struct sl_schema *s, size_t n)
{
	struct block *b = s->arena;
	size_t need, cap;
	void *p;

	if (n > SIZE_MAX / 2)
		return NULL;
	need = n ? (n + 15) & ~(size_t)15 : 16;
	if (!b || b->cap - b->used < need) {
		cap = need > 4096 ? need : 4096;
		if (!(b = malloc(sizeof(*b) + cap)))
			return NULL;
		b->next = s->arena;
		b->used = 0;
		b->cap = cap;
		s->arena = b;
	}
	p = (char *)b->data + b->used;
	b->used += need;
	return p;
}

static char *arena_strdup(struct sl_schema *s, const char *p, size_t n)
{
	char *q = arena_alloc(s, n + 1);

	if (q) {
		memcpy(q, p, n);
		q[n] = '\0';
	}
	return q;
}

/* [-0, +0, -] */
void sl_schema_free(struct sl_schema *s)
{
	struct block *b, *next;
	uint32_t i;

	if (!s)
		return;
	for (i = 0; i < s->nnodes; i++)
		pcre2_code_free(s->nodes[i].re);
	free(s->nodes);
	for (b = s->arena; b; b = next) {
		next = b->next;
		free(b);
	}
	free(s);
}

static int prop_cmp(const void *a, const void *b)
{
	const struct prop *x = a, *y = b;

	return sl_schema_name_cmp(x->s, x->len, y->s, y->len);
}

static int member_cmp(const void *a, const void *b)
{
	const struct jmember *x = a, *y = b;

	return sl_schema_name_cmp(x->key, x->len, y->key, y->len);
}

/* ======================================================================== */
/* ---- Compilation ---- */

/* A $ref waiting for the whole tree to be compiled. */
struct pending {
	int32_t node;
	char *ref;
};

struct cc {
	lua_State *L;
	const char *where;
	struct sl_diag *d;
	struct sl_schema *s;
	int root;  /* stack index of the document */
	int depth; /* of the schema being compiled */
	int rc;
	struct sl_buf path; /* JSON pointer of the schema being compiled ("" for the root) */
	char **paths;       /* per node, its pointer */
	struct pending *refs;
	size_t nrefs, caprefs;
	char *tmp; /* a decoded $ref pointer */
	char *tok; /* a pointer token being unescaped */
	uint32_t npaths;
};

struct kw;
typedef int (*kw_fn)(struct cc *c, int32_t n, int v, const struct kw *k);

struct kw {
	const char *name;
	kw_fn fn;
	uint32_t flag;
	size_t off; /* the node field the generic handlers fill */
};

/* Records "<where>: <message> at <path>[ (<hint>)]". Returns SL_EINVAL. */
static int cfail_hint(struct cc *c, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cfail_hint(struct cc *c, const char *hint, const char *fmt, ...)
{
	char msg[SL_DIAG_MAX];
	const char *at = !sl_buf_ok(&c->path) ? "?" : c->path.len ? c->path.ptr : "/";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sl_diag_set(c->d, SL_EINVAL, "%s%s%s at %s%s%s%s", c->where ? c->where : "",
	                   c->where ? ": " : "", msg, at, hint ? " (" : "", hint ? hint : "",
	                   hint ? ")" : "");
}

#define cfail(c, ...) cfail_hint((c), NULL, __VA_ARGS__)

static int cnomem(struct cc *c)
{
	return sl_diag_set(c->d, SL_ENOMEM, "%s%sout of memory", c->where ? c->where : "",
	                   c->where ? ": " : "");
}

/* Appends "/<token>" with ~ and / escaped. */
static void path_add(struct cc *c, const char *tok, size_t n)
{
	size_t i;

	sl_buf_addc(&c->path, '/');
	for (i = 0; i < n; i++) {
		if (tok[i] == '~')
			sl_buf_add(&c->path, "~0", 2);
		else if (tok[i] == '/')
			sl_buf_add(&c->path, "~1", 2);
		else
			sl_buf_addc(&c->path, tok[i]);
	}
}

static void path_cut(struct cc *c, size_t len)
{
	if (c->path.len > len) {
		c->path.len = len;
		c->path.ptr[len] = '\0';
	}
}

static void path_set(struct cc *c, const char *p)
{
	path_cut(c, 0);
	sl_buf_adds(&c->path, p);
}

static void *node_field(struct cc *c, int32_t n, const struct kw *k)
{
	return (char *)&c->s->nodes[n] + k->off;
}

/* Appends an empty node for the schema at the current path. */
static int new_node(struct cc *c, int32_t *out)
{
	struct sl_schema *s = c->s;
	uint32_t cap = s->cap ? s->cap * 2 : 8;
	struct node *nodes, *n;
	char **paths;

	if (s->nnodes == s->cap) {
		if (cap > INT32_MAX / 2 || !(nodes = realloc(s->nodes, cap * sizeof(*nodes))))
			return cnomem(c);
		s->nodes = nodes;
		if (!(paths = realloc(c->paths, cap * sizeof(*paths))))
			return cnomem(c);
		c->paths = paths;
		s->cap = cap;
	}
	if (!sl_buf_ok(&c->path) || !(c->paths[s->nnodes] = strdup(c->path.len ? c->path.ptr : "")))
		return cnomem(c);
	c->npaths = s->nnodes + 1;
	n = &s->nodes[s->nnodes];
	memset(n, 0, sizeof(*n));
	n->addl = n->items = n->sub_not = n->sub_if = n->sub_then = n->sub_else = n->ref = -1;
	*out = (int32_t)s->nnodes++;
	return 0;
}

static int compile_value(struct cc *c, int idx, int32_t *out);

/* Compiles the schema at idx, found at "<path>/<tok1>[/<tok2>]". [-0, +0, m] */
static int compile_child(struct cc *c, int idx, const char *tok1, const char *tok2, size_t len2,
                         int32_t *out)
{
	size_t mark = c->path.len;
	int rc;

	path_add(c, tok1, strlen(tok1));
	if (tok2)
		path_add(c, tok2, len2);
	rc = compile_value(c, idx, out);
	path_cut(c, mark);
	return rc;
}

/* ---- Enum and const values ---- */

static int jv_build(struct cc *c, int idx, struct jval *v, int depth, const char *kw);

/* [-0, +0, m] */
static int jv_build_array(struct cc *c, int idx, struct jval *v, lua_Integer n, int depth,
                          const char *kw)
{
	lua_Integer i;
	int rc = 0;

	v->n = (size_t)n;
	if (!(v->u.items = arena_alloc(c->s, (size_t)n * sizeof(*v->u.items))))
		return cnomem(c);
	for (i = 0; i < n && !rc; i++) {
		lua_rawgeti(c->L, idx, i + 1);
		rc = jv_build(c, lua_gettop(c->L), &v->u.items[i], depth + 1, kw);
		lua_pop(c->L, 1);
	}
	return rc;
}

/* [-0, +0, m] */
static int jv_build_object(struct cc *c, int idx, struct jval *v, int depth, const char *kw)
{
	lua_State *L = c->L;
	struct jmember *m;
	size_t i = 0;
	int rc = 0;

	v->n = sl_schema_count_keys(L, idx);
	if (!(v->u.members = m = arena_alloc(c->s, v->n * sizeof(*m))))
		return cnomem(c);
	lua_pushnil(L);
	while (!rc && lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING) {
			rc = cfail(c, "%s holds an object with a %s key (not JSON)", kw,
			           lua_typename(L, lua_type(L, -2)));
		} else {
			m[i].key = lua_tolstring(L, -2, &m[i].len);
			m[i].key = arena_strdup(c->s, m[i].key, m[i].len);
			rc = m[i].key ? jv_build(c, lua_gettop(L), &m[i].val, depth + 1, kw)
			              : cnomem(c);
			i++;
		}
		lua_pop(L, rc ? 2 : 1);
	}
	if (!rc)
		qsort(m, v->n, sizeof(*m), member_cmp);
	return rc;
}

/* Copies the JSON value at idx (absolute) into v. [-0, +0, m] */
static int jv_build(struct cc *c, int idx, struct jval *v, int depth, const char *kw)
{
	lua_State *L = c->L;
	lua_Integer n = 0;
	const char *s;

	if (depth > SL_JSON_MAX_DEPTH)
		return cfail(c, "%s value nested deeper than %d levels", kw, SL_JSON_MAX_DEPTH);
	if (!lua_checkstack(L, 4))
		return cnomem(c);
	v->kind = sl_schema_classify(L, idx, &n);
	switch (v->kind) {
	case V_NULL:
		return 0;
	case V_BOOLEAN:
		v->u.b = lua_toboolean(L, idx);
		return 0;
	case V_INTEGER:
		v->u.i = lua_tointeger(L, idx);
		return 0;
	case V_FLOAT:
		v->u.f = (double)lua_tonumber(L, idx);
		return 0;
	case V_STRING:
		s = lua_tolstring(L, idx, &v->n);
		return (v->u.s = arena_strdup(c->s, s, v->n)) ? 0 : cnomem(c);
	case V_ARRAY:
		return jv_build_array(c, idx, v, n, depth, kw);
	case V_OBJECT:
		return jv_build_object(c, idx, v, depth, kw);
	}
	return cfail(c, "%s holds a %s (not JSON)", kw, lua_typename(L, lua_type(L, idx)));
}

/* ---- Keyword handlers: fn(c, node, stack index of the value, keyword) ---- */

/* [-0, +0, -] */
static int kw_type_name(struct cc *c, int v, unsigned *bits)
{
	size_t len, i;
	const char *s;

	if (lua_type(c->L, v) == LUA_TSTRING) {
		s = lua_tolstring(c->L, v, &len);
		for (i = 0; i < T_COUNT; i++) {
			if (strlen(sl_schema_type_names[i]) == len &&
			    !memcmp(s, sl_schema_type_names[i], len)) {
				*bits |= 1u << i;
				return 0;
			}
		}
		return cfail_hint(c,
		                  "expected null, boolean, object, array, number, integer or "
		                  "string",
		                  "unknown type '%s'", s);
	}
	return cfail(c, "type must be a type name or an array of type names");
}

/* [-0, +0, m] */
static int kw_type(struct cc *c, int32_t n, int v, const struct kw *k)
{
	lua_State *L = c->L;
	lua_Integer len = 0, i;
	unsigned bits = 0;
	int rc = 0;

	if (lua_type(L, v) == LUA_TTABLE && sl_schema_classify_table(L, v, &len) == V_ARRAY) {
		if (len == 0)
			return cfail(c, "type must not be an empty array");
		for (i = 1; i <= len && !rc; i++) {
			lua_rawgeti(L, v, i);
			rc = kw_type_name(c, lua_gettop(L), &bits);
			lua_pop(L, 1);
		}
	} else {
		rc = kw_type_name(c, v, &bits);
	}
	c->s->nodes[n].types = bits;
	c->s->nodes[n].flags |= k->flag;
	return rc;
}

/* minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf. [-0, +0, -] */
static int kw_number(struct cc *c, int32_t n, int v, const struct kw *k)
{
	struct num x;

	if (lua_type(c->L, v) != LUA_TNUMBER)
		return cfail(c, "%s must be a number", k->name);
	sl_schema_get_num(c->L, v, &x);
	if (!x.isint && !isfinite(x.f))
		return cfail(c, "%s must be a finite number", k->name);
	if (k->flag == F_MULT && !(x.isint ? x.i > 0 : x.f > 0))
		return cfail(c, "multipleOf must be greater than 0");
	*(struct num *)node_field(c, n, k) = x;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* minLength, maxItems, ...: a non-negative integer (2.0 counts as one). [-0, +0, -] */
static int kw_count(struct cc *c, int32_t n, int v, const struct kw *k)
{
	struct num x;
	uint64_t u;

	if (lua_type(c->L, v) != LUA_TNUMBER)
		return cfail(c, "%s must be a non-negative integer", k->name);
	sl_schema_get_num(c->L, v, &x);
	if (!sl_schema_num_integral(&x) || (x.isint ? x.i < 0 : x.f < 0))
		return cfail(c, "%s must be a non-negative integer", k->name);
	u = x.isint ? (uint64_t)x.i : x.f >= 0x1p64 ? UINT64_MAX : (uint64_t)x.f;
	*(uint64_t *)node_field(c, n, k) = u;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* additionalProperties, not, if, then, else: one subschema. [-0, +0, m] */
static int kw_schema(struct cc *c, int32_t n, int v, const struct kw *k)
{
	int32_t sub;
	int rc = compile_child(c, v, k->name, NULL, 0, &sub);

	if (rc)
		return rc;
	*(int32_t *)node_field(c, n, k) = sub;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* [-0, +0, m] */
static int kw_items(struct cc *c, int32_t n, int v, const struct kw *k)
{
	lua_Integer len;

	if (lua_type(c->L, v) == LUA_TTABLE && sl_schema_classify_table(c->L, v, &len) == V_ARRAY)
		return cfail_hint(c, "draft 7; in 2020-12 use prefixItems, and items for the rest",
		                  "unsupported array form of items");
	return kw_schema(c, n, v, k);
}

/* prefixItems, allOf, anyOf, oneOf: a non-empty array of subschemas. [-0, +0, m] */
static int kw_schemas(struct cc *c, int32_t n, int v, const struct kw *k)
{
	lua_State *L = c->L;
	lua_Integer len = 0, i;
	struct list l;
	char tok[24];
	int rc = 0;

	if (lua_type(L, v) != LUA_TTABLE || sl_schema_classify_table(L, v, &len) != V_ARRAY ||
	    len == 0)
		return cfail(c, "%s must be a non-empty array of schemas", k->name);
	if (len > INT32_MAX || !(l.v = arena_alloc(c->s, (size_t)len * sizeof(*l.v))))
		return cnomem(c);
	l.n = (uint32_t)len;
	for (i = 0; i < len && !rc; i++) {
		snprintf(tok, sizeof(tok), "%lld", (long long)i);
		lua_rawgeti(L, v, i + 1);
		rc = compile_child(c, lua_gettop(L), k->name, tok, strlen(tok), &l.v[i]);
		lua_pop(L, 1);
	}
	if (rc)
		return rc;
	*(struct list *)node_field(c, n, k) = l;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* Calls fn for each member of the object at v, requiring string keys. fn gets the
 * key and the stack index of the value. [-0, +0, m] */
static int each_member(struct cc *c, int v, const char *kw,
                       int (*fn)(struct cc *c, const char *key, size_t len, int val, void *ud),
                       void *ud)
{
	lua_State *L = c->L;
	lua_Integer len;
	const char *key;
	size_t klen;
	int rc = 0;

	if (lua_type(L, v) != LUA_TTABLE || sl_schema_classify_table(L, v, &len) != V_OBJECT)
		return cfail(c, "%s must be an object", kw);
	lua_pushnil(L);
	while (!rc && lua_next(L, v)) {
		if (lua_type(L, -2) != LUA_TSTRING) {
			rc = cfail(c, "%s must be an object with string keys", kw);
		} else {
			key = lua_tolstring(L, -2, &klen);
			rc = fn(c, key, klen, lua_gettop(L), ud);
		}
		lua_pop(L, rc ? 2 : 1);
	}
	return rc;
}

/* The properties being collected by kw_properties. */
struct props {
	struct prop *p;
	uint32_t n;
};

static int add_property(struct cc *c, const char *key, size_t len, int val, void *ud)
{
	struct props *ps = ud;
	struct prop *p = &ps->p[ps->n];
	int rc;

	if (!(p->s = arena_strdup(c->s, key, len)))
		return cnomem(c);
	p->len = len;
	p->required = 0;
	if ((rc = compile_child(c, val, "properties", key, len, &p->schema)))
		return rc;
	ps->n++;
	return 0;
}

/* [-0, +0, m] */
static int kw_properties(struct cc *c, int32_t n, int v, const struct kw *k)
{
	struct props ps = {NULL, 0};
	size_t count;
	int rc;

	if (lua_type(c->L, v) == LUA_TTABLE) {
		count = sl_schema_count_keys(c->L, v);
		if (count > INT32_MAX || !(ps.p = arena_alloc(c->s, count * sizeof(*ps.p))))
			return cnomem(c);
	}
	if ((rc = each_member(c, v, k->name, add_property, &ps)))
		return rc;
	qsort(ps.p, ps.n, sizeof(*ps.p), prop_cmp);
	c->s->nodes[n].props = ps.p;
	c->s->nodes[n].nprops = ps.n;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* [-0, +0, m] */
static int kw_required(struct cc *c, int32_t n, int v, const struct kw *k)
{
	lua_State *L = c->L;
	lua_Integer len = 0, i;
	struct name *names;
	const char *s;
	int ok = 1;

	if (lua_type(L, v) != LUA_TTABLE || sl_schema_classify_table(L, v, &len) != V_ARRAY)
		return cfail(c, "required must be an array of strings");
	if (len > INT32_MAX || !(names = arena_alloc(c->s, (size_t)len * sizeof(*names))))
		return cnomem(c);
	for (i = 0; i < len && ok; i++) {
		lua_rawgeti(L, v, i + 1);
		ok = lua_type(L, -1) == LUA_TSTRING;
		if (ok) {
			s = lua_tolstring(L, -1, &names[i].len);
			if (!(names[i].s = arena_strdup(c->s, s, names[i].len))) {
				lua_pop(L, 1);
				return cnomem(c);
			}
		}
		lua_pop(L, 1);
	}
	if (!ok)
		return cfail(c, "required must be an array of strings");
	c->s->nodes[n].req = names;
	c->s->nodes[n].nreq = (uint32_t)len;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* [-0, +0, m] */
static int kw_enum(struct cc *c, int32_t n, int v, const struct kw *k)
{
	struct jval e;
	lua_Integer len = 0;
	int rc;

	if (lua_type(c->L, v) != LUA_TTABLE || sl_schema_classify_table(c->L, v, &len) != V_ARRAY)
		return cfail(c, "enum must be an array");
	if ((rc = jv_build(c, v, &e, 0, k->name)))
		return rc;
	c->s->nodes[n].enumv = e;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* [-0, +0, m] */
static int kw_const(struct cc *c, int32_t n, int v, const struct kw *k)
{
	struct jval e;
	int rc;

	if ((rc = jv_build(c, v, &e, 0, k->name)))
		return rc;
	c->s->nodes[n].constv = e;
	c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* [-0, +0, -] */
static int kw_pattern(struct cc *c, int32_t n, int v, const struct kw *k)
{
	PCRE2_UCHAR err[160];
	PCRE2_SIZE off;
	const char *s;
	size_t len;
	int code;
	struct node *node;

	if (lua_type(c->L, v) != LUA_TSTRING)
		return cfail(c, "pattern must be a string");
	s = lua_tolstring(c->L, v, &len);
	node = &c->s->nodes[n];
	if (!(node->pattern = arena_strdup(c->s, s, len)))
		return cnomem(c);
	node->re = pcre2_compile((PCRE2_SPTR)s, len, PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &code, &off,
	                         NULL);
	if (!node->re) {
		pcre2_get_error_message(code, err, sizeof(err));
		return cfail_hint(c, (const char *)err,
		                  "pattern '%s' is not a valid regex (offset %zu)", s, (size_t)off);
	}
	pcre2_jit_compile(node->re, PCRE2_JIT_COMPLETE); /* without JIT, the interpreter runs */
	node->flags |= k->flag;
	return 0;
}

/* [-0, +0, -] */
static int kw_unique(struct cc *c, int32_t n, int v, const struct kw *k)
{
	if (lua_type(c->L, v) != LUA_TBOOLEAN)
		return cfail(c, "uniqueItems must be a boolean");
	if (lua_toboolean(c->L, v))
		c->s->nodes[n].flags |= k->flag;
	return 0;
}

/* Queues the ref; it resolves once the whole tree is compiled. [-0, +0, -] */
static int kw_ref(struct cc *c, int32_t n, int v, const struct kw *k)
{
	struct pending *p;
	size_t cap;

	(void)k;
	if (lua_type(c->L, v) != LUA_TSTRING)
		return cfail(c, "$ref must be a string");
	if (c->nrefs == c->caprefs) {
		cap = c->caprefs ? c->caprefs * 2 : 8;
		if (!(p = realloc(c->refs, cap * sizeof(*p))))
			return cnomem(c);
		c->refs = p;
		c->caprefs = cap;
	}
	if (!(c->refs[c->nrefs].ref = strdup(lua_tostring(c->L, v))))
		return cnomem(c);
	c->refs[c->nrefs++].node = n;
	return 0;
}

static int add_def(struct cc *c, const char *key, size_t len, int val, void *ud)
{
	int32_t sub;

	return compile_child(c, val, ud, key, len, &sub);
}

/* $defs, definitions: schemas reached by $ref only. [-0, +0, m] */
static int kw_defs(struct cc *c, int32_t n, int v, const struct kw *k)
{
	(void)n;
	return each_member(c, v, k->name, add_def, (void *)k->name);
}

/* title, description, $comment, $schema: ignored strings. [-0, +0, -] */
static int kw_string(struct cc *c, int32_t n, int v, const struct kw *k)
{
	(void)n;
	if (lua_type(c->L, v) != LUA_TSTRING)
		return cfail(c, "%s must be a string", k->name);
	return 0;
}

/* default: any value, ignored. */
static int kw_ignore(struct cc *c, int32_t n, int v, const struct kw *k)
{
	(void)c;
	(void)n;
	(void)v;
	(void)k;
	return 0;
}

/* [-0, +0, -] */
static int kw_examples(struct cc *c, int32_t n, int v, const struct kw *k)
{
	lua_Integer len;

	(void)n;
	if (lua_type(c->L, v) != LUA_TTABLE || sl_schema_classify_table(c->L, v, &len) != V_ARRAY)
		return cfail(c, "%s must be an array", k->name);
	return 0;
}

/* [-0, +0, -] */
static int kw_id(struct cc *c, int32_t n, int v, const struct kw *k)
{
	if (c->path.len)
		return cfail_hint(c, "allowed at the root only", "unsupported keyword '$id'");
	return kw_string(c, n, v, k);
}

#define AT(field) offsetof(struct node, field)

static const struct kw keywords[] = {
	{"type", kw_type, F_TYPE, 0},
	{"properties", kw_properties, F_PROPS, 0},
	{"required", kw_required, F_REQUIRED, 0},
	{"additionalProperties", kw_schema, F_ADDL, AT(addl)},
	{"items", kw_items, F_ITEMS, AT(items)},
	{"prefixItems", kw_schemas, F_PREFIX, AT(prefix)},
	{"enum", kw_enum, F_ENUM, 0},
	{"const", kw_const, F_CONST, 0},
	{"minimum", kw_number, F_MIN, AT(min)},
	{"maximum", kw_number, F_MAX, AT(max)},
	{"exclusiveMinimum", kw_number, F_XMIN, AT(xmin)},
	{"exclusiveMaximum", kw_number, F_XMAX, AT(xmax)},
	{"multipleOf", kw_number, F_MULT, AT(mult)},
	{"minLength", kw_count, F_MINLEN, AT(minlen)},
	{"maxLength", kw_count, F_MAXLEN, AT(maxlen)},
	{"pattern", kw_pattern, F_PATTERN, 0},
	{"minItems", kw_count, F_MINITEMS, AT(minitems)},
	{"maxItems", kw_count, F_MAXITEMS, AT(maxitems)},
	{"uniqueItems", kw_unique, F_UNIQUE, 0},
	{"minProperties", kw_count, F_MINPROPS, AT(minprops)},
	{"maxProperties", kw_count, F_MAXPROPS, AT(maxprops)},
	{"allOf", kw_schemas, F_ALLOF, AT(all)},
	{"anyOf", kw_schemas, F_ANYOF, AT(any)},
	{"oneOf", kw_schemas, F_ONEOF, AT(one)},
	{"not", kw_schema, F_NOT, AT(sub_not)},
	{"if", kw_schema, F_IF, AT(sub_if)},
	{"then", kw_schema, 0, AT(sub_then)},
	{"else", kw_schema, 0, AT(sub_else)},
	{"$ref", kw_ref, F_REF, 0},
	{"$defs", kw_defs, 0, 0},
	{"definitions", kw_defs, 0, 0},
	{"title", kw_string, 0, 0},
	{"description", kw_string, 0, 0},
	{"$comment", kw_string, 0, 0},
	{"$schema", kw_string, 0, 0},
	{"default", kw_ignore, 0, 0},
	{"examples", kw_examples, 0, 0},
	{"$id", kw_id, 0, 0},
};

static const struct kw *find_kw(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (strlen(keywords[i].name) == len && !memcmp(keywords[i].name, s, len))
			return &keywords[i];
	return NULL;
}

/* Folds the required names that properties has into its entries, so one look-up
 * serves both, and drops flags that have nothing to do. */
static void finish_node(struct node *s)
{
	struct prop *p;
	uint32_t i, keep = 0;

	for (i = 0; i < s->nreq; i++) {
		if ((p = (struct prop *)sl_schema_find_prop(s, s->req[i].s, s->req[i].len)))
			p->required = 1;
		else
			s->req[keep++] = s->req[i];
	}
	s->nreq = keep;
	s->flags &= ~(uint32_t)(F_PROPS | F_REQUIRED);
	if (s->nprops)
		s->flags |= F_PROPS;
	if (s->nreq)
		s->flags |= F_REQUIRED;
	if (s->sub_then < 0 && s->sub_else < 0)
		s->flags &= ~(uint32_t)F_IF;
}

/* [-0, +0, m] */
static int compile_keywords(struct cc *c, int idx, int32_t n)
{
	lua_State *L = c->L;
	const struct kw *k;
	const char *key;
	size_t len;
	int rc = 0;

	lua_pushnil(L);
	while (!rc && lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING) {
			rc = cfail(c, "a schema's keys must be strings");
		} else {
			key = lua_tolstring(L, -2, &len);
			k = find_kw(key, len);
			rc = k ? k->fn(c, n, lua_gettop(L), k)
			       : cfail(c, "unsupported keyword '%s'", key);
		}
		lua_pop(L, rc ? 2 : 1);
	}
	return rc;
}

/* Compiles the schema at idx (absolute), at the current path. [-0, +0, m] */
static int compile_value(struct cc *c, int idx, int32_t *out)
{
	lua_State *L = c->L;
	lua_Integer len;
	int kind, rc;

	if (!lua_checkstack(L, 8))
		return cnomem(c);
	kind = sl_schema_classify(L, idx, &len);
	if (kind != V_OBJECT && kind != V_BOOLEAN)
		return cfail(c, "a schema must be an object or a boolean, got %s",
		             sl_schema_kind_name(kind));
	if (c->depth >= SL_JSON_MAX_DEPTH)
		return cfail(c, "schema nested deeper than %d levels", SL_JSON_MAX_DEPTH);
	if ((rc = new_node(c, out)))
		return rc;
	if (kind == V_BOOLEAN) {
		c->s->nodes[*out].flags = lua_toboolean(L, idx) ? 0 : F_FALSE;
		return 0;
	}
	c->depth++;
	rc = compile_keywords(c, idx, *out);
	c->depth--;
	if (!rc)
		finish_node(&c->s->nodes[*out]);
	return rc;
}

/* ---- $ref ---- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes the fragment into c->tmp. */
static int decode_fragment(struct cc *c, const char *ref, const char *frag)
{
	size_t i, o = 0, n = strlen(frag);
	int hi, lo;

	free(c->tmp);
	if (!(c->tmp = malloc(n + 1)))
		return cnomem(c);
	for (i = 0; i < n; i++) {
		if (frag[i] != '%') {
			c->tmp[o++] = frag[i];
			continue;
		}
		if (i + 2 >= n || (hi = hexval(frag[i + 1])) < 0 || (lo = hexval(frag[i + 2])) < 0)
			return cfail(c, "$ref '%s' has a malformed percent-escape", ref);
		c->tmp[o++] = (char)(hi * 16 + lo);
		i += 2;
	}
	c->tmp[o] = '\0';
	if (memchr(c->tmp, '\0', o))
		return cfail(c, "$ref '%s' holds a NUL byte", ref);
	return 0;
}

/* Replaces the table on top with its member named by the pointer token tok[0..n)
 * (unescaped into buf), or with nil. [-1, +1, m] */
static int step(struct cc *c, const char *tok, size_t n, char *buf)
{
	lua_State *L = c->L;
	lua_Integer len = 0, i = 0;
	size_t j, o = 0;

	for (j = 0; j < n; j++) {
		if (tok[j] != '~')
			buf[o++] = tok[j];
		else if (j + 1 < n && (tok[j + 1] == '0' || tok[j + 1] == '1'))
			buf[o++] = tok[++j] == '0' ? '~' : '/';
		else
			return -1;
	}
	if (lua_type(L, -1) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_pushnil(L);
	} else if (sl_schema_classify_table(L, lua_gettop(L), &len) == V_ARRAY) {
		for (j = 0; j < o && i <= len && buf[j] >= '0' && buf[j] <= '9'; j++)
			i = i * 10 + (buf[j] - '0');
		if (!o || j < o || (o > 1 && buf[0] == '0') || i >= len)
			i = -1;
		lua_rawgeti(L, -1, i + 1); /* t[0] when out of range: nil */
		lua_remove(L, -2);
	} else {
		lua_pushlstring(L, buf, o);
		lua_rawget(L, -2);
		lua_remove(L, -2);
	}
	return 0;
}

/* Pushes the value the pointer ptr names in the document, or nil, and returns 0;
 * returns 1 if the pointer is malformed, or an error (nothing pushed then).
 * [-0, +(1|0), m] */
static int follow(struct cc *c, const char *ptr)
{
	lua_State *L = c->L;
	const char *p = ptr, *e;

	free(c->tok);
	if (!(c->tok = malloc(strlen(ptr) + 1)))
		return cnomem(c);
	lua_pushvalue(L, c->root);
	while (*p) {
		e = strchr(p + 1, '/');
		if (!e)
			e = p + strlen(p);
		if (step(c, p + 1, (size_t)(e - p - 1), c->tok) < 0) {
			lua_pop(L, 1);
			return 1;
		}
		p = e;
	}
	return 0;
}

/* Finds or compiles the node at pointer c->tmp. [-0, +0, m] */
static int ref_target(struct cc *c, const char *ref, int32_t *out)
{
	lua_State *L = c->L;
	uint32_t i;
	int rc;

	for (i = 0; i < c->s->nnodes; i++) {
		if (!strcmp(c->paths[i], c->tmp)) {
			*out = (int32_t)i;
			return 0;
		}
	}
	if (!lua_checkstack(L, 4))
		return cnomem(c);
	rc = follow(c, c->tmp);
	if (rc == 1)
		return cfail(c, "$ref '%s' is not a valid JSON pointer", ref);
	if (rc)
		return rc;
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return cfail(c, "$ref '%s' does not resolve", ref);
	}
	path_set(c, c->tmp);
	c->depth = 0;
	rc = compile_value(c, lua_gettop(L), out);
	lua_pop(L, 1);
	return rc;
}

/* [-0, +0, m] */
static int resolve_ref(struct cc *c, int32_t n, const char *ref)
{
	int32_t target;
	int rc;

	path_set(c, c->paths[n]);
	if (!sl_buf_ok(&c->path))
		return cnomem(c);
	if (ref[0] != '#')
		return cfail_hint(c, "only local refs such as '#/$defs/name' are supported",
		                  "unsupported remote $ref '%s'", ref);
	if ((rc = decode_fragment(c, ref, ref + 1)))
		return rc;
	if (c->tmp[0] && c->tmp[0] != '/')
		return cfail_hint(c,
		                  "anchors are not supported; use a JSON pointer such as "
		                  "'#/$defs/name'",
		                  "unsupported $ref '%s'", ref);
	if ((rc = ref_target(c, ref, &target)))
		return rc;
	c->s->nodes[n].ref = target;
	c->s->nodes[n].flags |= F_REF;
	return 0;
}

/* The protected part of sl_schema_compile: the schema at 1, the compiler at 2.
 * [-0, +0, m] */
static int compile_protected(lua_State *L)
{
	struct cc *c = lua_touserdata(L, 2);
	size_t i;
	int32_t root;

	c->root = 1;
	c->rc = compile_value(c, 1, &root);
	for (i = 0; !c->rc && i < c->nrefs; i++) /* resolving may queue more */
		c->rc = resolve_ref(c, c->refs[i].node, c->refs[i].ref);
	return 0;
}

static void cc_release(struct cc *c)
{
	size_t i;

	for (i = 0; i < c->npaths; i++)
		free(c->paths[i]);
	free(c->paths);
	for (i = 0; i < c->nrefs; i++)
		free(c->refs[i].ref);
	free(c->refs);
	free(c->tmp);
	free(c->tok);
	sl_buf_release(&c->path);
	sl_schema_free(c->s);
}

/* [-0, +0, -] */
int sl_schema_compile(lua_State *L, int idx, const char *where, struct sl_schema **out,
                      struct sl_diag *d)
{
	struct cc c;
	int top = lua_gettop(L), rc, st;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	c.L = L;
	c.where = where;
	c.d = d;
	sl_buf_init(&c.path);
	idx = lua_absindex(L, idx);
	if (!(c.s = calloc(1, sizeof(*c.s))) || !lua_checkstack(L, 3)) {
		rc = cnomem(&c);
		goto out;
	}
	lua_pushcfunction(L, compile_protected);
	lua_pushvalue(L, idx);
	lua_pushlightuserdata(L, &c);
	st = lua_pcall(L, 2, 0, 0);
	if (st != LUA_OK) {
		rc = sl_diag_set(d, st == LUA_ERRMEM ? SL_ENOMEM : SL_ELUA, "%s%s%s",
		                 where ? where : "", where ? ": " : "",
		                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
		                                                : "Lua error");
		goto out;
	}
	rc = c.rc;
	if (!rc) {
		*out = c.s;
		c.s = NULL;
	}
out:
	lua_settop(L, top);
	cc_release(&c);
	return rc;
}
