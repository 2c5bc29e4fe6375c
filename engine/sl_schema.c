/* sl_schema.c - compiles JSON Schemas into flat node arrays and validates Lua values
 * against them; the validation runs on the engine's hot path, once per event.
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
 *
 * Validation walks the Lua value with raw access. It formats nothing while data is
 * valid: the instance path is a chain of `struct seg` on the C stack, turned into a
 * JSON pointer only when a failure is described. Subschemas that are only tried
 * (anyOf, oneOf, not, if) run "quiet" (no diag); when the combination fails, the
 * candidates are run again with a diag to explain the failure.
 */
#include "sl_schema.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "sl_buf.h"
#include "sl_json.h"
#include "sl_luajson.h"

/* ---- Data ---- */

/* What a Lua value is, read as JSON. */
enum vkind { V_NULL, V_BOOLEAN, V_INTEGER, V_FLOAT, V_STRING, V_ARRAY, V_OBJECT, V_OTHER };

/* The `type` keyword's names, as bits. */
enum {
	T_NULL = 1 << 0,
	T_BOOLEAN = 1 << 1,
	T_OBJECT = 1 << 2,
	T_ARRAY = 1 << 3,
	T_NUMBER = 1 << 4,
	T_INTEGER = 1 << 5,
	T_STRING = 1 << 6,
	T_COUNT = 7
};

static const char *const type_names[T_COUNT] = {"null",   "boolean", "object", "array",
						"number", "integer", "string"};

/* Which keywords a node has. */
enum {
	F_FALSE = 1u << 0, /* the schema false */
	F_TYPE = 1u << 1,
	F_MIN = 1u << 2,
	F_MAX = 1u << 3,
	F_XMIN = 1u << 4,
	F_XMAX = 1u << 5,
	F_MULT = 1u << 6,
	F_MINLEN = 1u << 7,
	F_MAXLEN = 1u << 8,
	F_PATTERN = 1u << 9,
	F_MINITEMS = 1u << 10,
	F_MAXITEMS = 1u << 11,
	F_UNIQUE = 1u << 12,
	F_PREFIX = 1u << 13,
	F_ITEMS = 1u << 14,
	F_MINPROPS = 1u << 15,
	F_MAXPROPS = 1u << 16,
	F_PROPS = 1u << 17,    /* properties, with the required names among them */
	F_REQUIRED = 1u << 18, /* required names that are not in properties */
	F_ADDL = 1u << 19,
	F_ENUM = 1u << 20,
	F_CONST = 1u << 21,
	F_ALLOF = 1u << 22,
	F_ANYOF = 1u << 23,
	F_ONEOF = 1u << 24,
	F_NOT = 1u << 25,
	F_IF = 1u << 26, /* if, with then or else */
	F_REF = 1u << 27,
};

#define F_NUMBERS (F_MIN | F_MAX | F_XMIN | F_XMAX | F_MULT)
#define F_STRINGS (F_MINLEN | F_MAXLEN | F_PATTERN)
#define F_ARRAYS (F_MINITEMS | F_MAXITEMS | F_UNIQUE | F_PREFIX | F_ITEMS)
#define F_OBJECTS (F_MINPROPS | F_MAXPROPS | F_PROPS | F_REQUIRED | F_ADDL)
#define F_VALUES (F_ENUM | F_CONST)
#define F_APPLY (F_ALLOF | F_ANYOF | F_ONEOF | F_NOT | F_IF | F_REF)

/* A JSON number, kept exactly as Lua had it. */
struct num {
	int isint;
	lua_Integer i;
	double f;
};

/* A C copy of a JSON value (enum and const). Object members are sorted by key. */
struct jval {
	int kind; /* enum vkind */
	size_t n; /* string length, item or member count */
	union {
		int b;
		lua_Integer i;
		double f;
		const char *s;
		struct jval *items;
		struct jmember *members;
	} u;
};

struct jmember {
	const char *key;
	size_t len;
	struct jval val;
};

struct list {
	int32_t *v;
	uint32_t n;
};

struct name {
	const char *s; /* NUL-terminated copy; len may be shorter than strlen */
	size_t len;
};

struct prop {
	const char *s;
	size_t len;
	int32_t schema;
	int required;
};

struct node {
	uint32_t flags;
	unsigned types;
	struct num min, max, xmin, xmax, mult;
	uint64_t minlen, maxlen, minitems, maxitems, minprops, maxprops;
	struct prop *props; /* sorted by name_cmp */
	uint32_t nprops;
	struct name *req;
	uint32_t nreq;
	int32_t addl, items, sub_not, sub_if, sub_then, sub_else, ref; /* -1: absent */
	struct list prefix, all, any, one;
	struct jval enumv; /* an array */
	struct jval constv;
	pcre2_code *re;
	const char *pattern;
};

struct block {
	struct block *next;
	size_t used, cap;
	max_align_t data[];
};

struct sl_schema {
	struct node *nodes; /* nodes[0] is the root */
	uint32_t nnodes, cap;
	struct block *arena;
};

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

/* ---- Reading Lua values ---- */

/* An untagged table is an array if its keys are exactly 1..n (n > 0); rawlen 0
 * means t[1] is nil, so the common object costs no traversal. Needs 2 free stack
 * slots. [-0, +0, -] */
static int classify_table(lua_State *L, int idx, lua_Integer *len)
{
	lua_Integer n, k, count = 0;

	if (sl_lj_isarray(L, idx)) {
		*len = (lua_Integer)lua_rawlen(L, idx);
		return V_ARRAY;
	}
	n = (lua_Integer)lua_rawlen(L, idx);
	if (n == 0)
		return V_OBJECT;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		k = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
		if (k < 1 || k > n || ++count > n) {
			lua_pop(L, 1);
			return V_OBJECT;
		}
	}
	*len = n;
	return count == n ? V_ARRAY : V_OBJECT;
}

/* idx must be absolute; *len is set for arrays. Needs 2 free stack slots.
 * [-0, +0, -] */
static int classify(lua_State *L, int idx, lua_Integer *len)
{
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return V_NULL;
	case LUA_TBOOLEAN:
		return V_BOOLEAN;
	case LUA_TNUMBER:
		return lua_isinteger(L, idx) ? V_INTEGER : V_FLOAT;
	case LUA_TSTRING:
		return V_STRING;
	case LUA_TTABLE:
		return classify_table(L, idx, len);
	case LUA_TLIGHTUSERDATA:
		return lua_touserdata(L, idx) ? V_OTHER : V_NULL;
	}
	return V_OTHER;
}

static const char *kind_name(int kind)
{
	static const char *const names[] = {"null",   "boolean", "integer", "number",
					    "string", "array",   "object",  "non-JSON value"};

	return names[kind];
}

/* [-0, +0, -] */
static void get_num(lua_State *L, int idx, struct num *x)
{
	x->isint = lua_isinteger(L, idx);
	x->i = x->isint ? lua_tointeger(L, idx) : 0;
	x->f = x->isint ? (double)x->i : (double)lua_tonumber(L, idx);
}

/* [-0, +0, -] */
static size_t count_keys(lua_State *L, int idx)
{
	size_t n = 0;

	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		n++;
	}
	return n;
}

/* ---- Numbers ---- */

/* The sign of i - f, exactly; 2 if f is NaN. */
static int cmp_int_float(lua_Integer i, double f)
{
	double fl;
	lua_Integer fi;

	if (isnan(f))
		return 2;
	if (f >= 0x1p63)
		return -1;
	if (f < -0x1p63)
		return 1;
	fl = floor(f);
	fi = (lua_Integer)fl;
	if (i != fi)
		return i < fi ? -1 : 1;
	return fl < f ? -1 : 0;
}

/* -1, 0, 1 as a < b, a == b, a > b; 2 if unordered (NaN). */
static int num_cmp(const struct num *a, const struct num *b)
{
	int r;

	if (a->isint && b->isint)
		return (a->i > b->i) - (a->i < b->i);
	if (a->isint)
		return cmp_int_float(a->i, b->f);
	if (b->isint) {
		r = cmp_int_float(b->i, a->f);
		return r == 2 ? 2 : -r;
	}
	if (isnan(a->f) || isnan(b->f))
		return 2;
	return (a->f > b->f) - (a->f < b->f);
}

/* Stores x as an integer if it is one that fits. */
static int num_as_int(const struct num *x, lua_Integer *out)
{
	if (x->isint) {
		*out = x->i;
		return 1;
	}
	if (!(x->f >= -0x1p63 && x->f < 0x1p63) || floor(x->f) != x->f)
		return 0;
	*out = (lua_Integer)x->f;
	return 1;
}

static int num_integral(const struct num *x)
{
	return x->isint || (isfinite(x->f) && floor(x->f) == x->f);
}

/* m > 0. Integers are tested exactly; otherwise x / m must be within rounding error
 * of an integer, so that 0.0075 is a multiple of 0.0001. */
static int num_multiple(const struct num *x, const struct num *m)
{
	lua_Integer xi, mi;
	double q;

	if (num_as_int(m, &mi) && num_as_int(x, &xi))
		return xi % mi == 0;
	q = x->f / m->f;
	if (!isfinite(q))
		return 0;
	return fabs(q - nearbyint(q)) <= fabs(q) * 8 * DBL_EPSILON;
}

/* The shortest text that reads back as x. */
static void num_format(char *buf, size_t cap, const struct num *x)
{
	int prec;

	if (x->isint) {
		snprintf(buf, cap, "%lld", (long long)x->i);
		return;
	}
	for (prec = 15; prec <= 17; prec++) {
		snprintf(buf, cap, "%.*g", prec, x->f);
		if (strtod(buf, NULL) == x->f)
			break;
	}
}

/* ---- Text for messages ---- */

/* Appends s[0..n) as a JSON string cut to about `max` bytes on a character boundary. */
static void add_quoted(struct sl_buf *b, const char *s, size_t n, size_t max)
{
	size_t m = n;

	if (m > max) {
		m = max;
		while (m && ((unsigned char)s[m] & 0xc0) == 0x80)
			m--;
	}
	sl_buf_addjstr(b, s, m);
	if (m < n)
		sl_buf_adds(b, "...");
}

/* The number a V_INTEGER or V_FLOAT jval holds. */
static void jv_num(const struct jval *v, struct num *x)
{
	x->isint = v->kind == V_INTEGER;
	x->i = x->isint ? v->u.i : 0;
	x->f = x->isint ? (double)v->u.i : v->u.f;
}

static void jv_render(struct sl_buf *b, const struct jval *v)
{
	char tmp[40];
	struct num x;
	size_t i;

	switch (v->kind) {
	case V_NULL:
		sl_buf_adds(b, "null");
		break;
	case V_BOOLEAN:
		sl_buf_adds(b, v->u.b ? "true" : "false");
		break;
	case V_INTEGER:
	case V_FLOAT:
		jv_num(v, &x);
		num_format(tmp, sizeof(tmp), &x);
		sl_buf_adds(b, tmp);
		break;
	case V_STRING:
		add_quoted(b, v->u.s, v->n, 60);
		break;
	case V_ARRAY:
		sl_buf_addc(b, '[');
		for (i = 0; i < v->n && b->len < 200; i++) {
			sl_buf_adds(b, i ? "," : "");
			jv_render(b, &v->u.items[i]);
		}
		sl_buf_adds(b, i < v->n ? ",...]" : "]");
		break;
	case V_OBJECT:
		sl_buf_addc(b, '{');
		for (i = 0; i < v->n && b->len < 200; i++) {
			sl_buf_adds(b, i ? "," : "");
			add_quoted(b, v->u.members[i].key, v->u.members[i].len, 60);
			sl_buf_addc(b, ':');
			jv_render(b, &v->u.members[i].val);
		}
		sl_buf_adds(b, i < v->n ? ",...}" : "}");
		break;
	}
}

/* Byte order, a prefix first: the order of property names and object members. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return (alen > blen) - (alen < blen);
}

static int prop_cmp(const void *a, const void *b)
{
	const struct prop *x = a, *y = b;

	return name_cmp(x->s, x->len, y->s, y->len);
}

static int member_cmp(const void *a, const void *b)
{
	const struct jmember *x = a, *y = b;

	return name_cmp(x->key, x->len, y->key, y->len);
}

static const struct prop *find_prop(const struct node *s, const char *key, size_t len)
{
	uint32_t lo = 0, hi = s->nprops, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = name_cmp(key, len, s->props[mid].s, s->props[mid].len);
		if (!c)
			return &s->props[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
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

	v->n = count_keys(L, idx);
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
	v->kind = classify(L, idx, &n);
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
			if (strlen(type_names[i]) == len && !memcmp(s, type_names[i], len)) {
				*bits |= 1u << i;
				return 0;
			}
		}
		return cfail_hint(c, "expected null, boolean, object, array, number, integer or "
				     "string", "unknown type '%s'", s);
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

	if (lua_type(L, v) == LUA_TTABLE && classify_table(L, v, &len) == V_ARRAY) {
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
	get_num(c->L, v, &x);
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
	get_num(c->L, v, &x);
	if (!num_integral(&x) || (x.isint ? x.i < 0 : x.f < 0))
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

	if (lua_type(c->L, v) == LUA_TTABLE && classify_table(c->L, v, &len) == V_ARRAY)
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

	if (lua_type(L, v) != LUA_TTABLE || classify_table(L, v, &len) != V_ARRAY || len == 0)
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

	if (lua_type(L, v) != LUA_TTABLE || classify_table(L, v, &len) != V_OBJECT)
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
		count = count_keys(c->L, v);
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

	if (lua_type(L, v) != LUA_TTABLE || classify_table(L, v, &len) != V_ARRAY)
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

	if (lua_type(c->L, v) != LUA_TTABLE || classify_table(c->L, v, &len) != V_ARRAY)
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
	if (lua_type(c->L, v) != LUA_TTABLE || classify_table(c->L, v, &len) != V_ARRAY)
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
		if ((p = (struct prop *)find_prop(s, s->req[i].s, s->req[i].len)))
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
	kind = classify(L, idx, &len);
	if (kind != V_OBJECT && kind != V_BOOLEAN)
		return cfail(c, "a schema must be an object or a boolean, got %s", kind_name(kind));
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
	} else if (classify_table(L, lua_gettop(L), &len) == V_ARRAY) {
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
		return cfail_hint(c, "anchors are not supported; use a JSON pointer such as "
				     "'#/$defs/name'", "unsupported $ref '%s'", ref);
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

/* ======================================================================== */
/* ---- Validation ---- */

/* One step of the path from the instance root to the value being validated. */
struct seg {
	const struct seg *up;
	const char *key; /* a member's key (anchored while in use), or NULL for an item */
	size_t len;
	lua_Integer pos; /* an item's 0-based index */
	int depth;       /* 0 for the root */
};

struct vctx {
	lua_State *L;
	const struct node *nodes;
	struct sl_diag *d;   /* where failures are described; NULL while only trying */
	struct sl_diag *out; /* the caller's diag, for errors no combinator may hide */
	int nest;            /* schema applications in progress */
	int err_depth;       /* of the last described failure, for vexplain's choice */
	int err_type;        /* it was a type mismatch */
	pcre2_match_data *md;
};

/* Internal code of errors that combinators pass through (too deep): the caller
 * gets SL_EINVAL. */
#define VDEEP SL_ETOOBIG

static int vnode(struct vctx *c, int32_t n, int idx, const struct seg *at);

/* Appends the JSON pointer of `at` ("/" for the root). */
static void add_pointer(struct sl_buf *b, const struct seg *at)
{
	const struct seg *v[SL_JSON_MAX_DEPTH + 1];
	size_t i;
	int k = 0;

	if (!at->depth) {
		sl_buf_addc(b, '/');
		return;
	}
	for (; at->up && k <= SL_JSON_MAX_DEPTH; at = at->up)
		v[k++] = at;
	while (k--) {
		sl_buf_addc(b, '/');
		if (!v[k]->key) {
			sl_buf_addi(b, v[k]->pos);
			continue;
		}
		for (i = 0; i < v[k]->len; i++) {
			if (v[k]->key[i] == '~')
				sl_buf_add(b, "~0", 2);
			else if (v[k]->key[i] == '/')
				sl_buf_add(b, "~1", 2);
			else
				sl_buf_addc(b, v[k]->key[i]);
		}
	}
}

/* Records "<pointer>: <kw>: <message>" in d; a long pointer keeps its head and
 * tail around "...". Returns code. */
static int describe(struct sl_diag *d, int code, const struct seg *at, const char *kw,
		    const char *msg)
{
	struct sl_buf p;
	size_t head, tail;

	sl_buf_init(&p);
	add_pointer(&p, at);
	if (!sl_buf_ok(&p)) {
		sl_diag_set(d, code, "?: %s: %s", kw, msg);
	} else if (p.len <= 240) {
		sl_diag_set(d, code, "%s: %s: %s", p.ptr, kw, msg);
	} else {
		for (head = 112; head && ((unsigned char)p.ptr[head] & 0xc0) == 0x80; head--)
			;
		for (tail = p.len - 112; ((unsigned char)p.ptr[tail] & 0xc0) == 0x80; tail++)
			;
		sl_diag_set(d, code, "%.*s...%s: %s: %s", (int)head, p.ptr, p.ptr + tail, kw, msg);
	}
	sl_buf_release(&p);
	return code;
}

/* A failure: described when a diag listens, else only returned. */
static int vfail(struct vctx *c, const struct seg *at, const char *kw, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int vfail(struct vctx *c, const struct seg *at, const char *kw, const char *fmt, ...)
{
	char msg[SL_DIAG_MAX];
	va_list ap;

	if (!c->d)
		return SL_EINVAL;
	c->err_depth = at->depth;
	c->err_type = !strcmp(kw, "type");
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return describe(c->d, SL_EINVAL, at, kw, msg);
}

/* An error that ends the validation whatever combinator it happens under: always
 * described in the caller's diag. Returns code (VDEEP or SL_ENOMEM). */
static int vhard(struct vctx *c, int code, const struct seg *at, const char *kw, const char *msg)
{
	return describe(c->out, code == VDEEP ? SL_EINVAL : code, at, kw, msg);
}

static int vdeep(struct vctx *c, const struct seg *at, const char *kw)
{
	char msg[80];

	snprintf(msg, sizeof(msg), "value nested deeper than %d levels", SL_JSON_MAX_DEPTH);
	return vhard(c, VDEEP, at, kw, msg);
}

/* Makes room on the Lua stack for one level of descent. [-0, +0, -] */
static int vroom(struct vctx *c, const struct seg *at, const char *kw)
{
	if (lua_checkstack(c->L, 8))
		return 0;
	return vhard(c, SL_ENOMEM, at, kw, "Lua stack overflow");
}

static const char *plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

/* ---- type ---- */

/* [-0, +0, -] */
static unsigned value_types(lua_State *L, int kind, int idx)
{
	static const unsigned bits[] = {
		[V_NULL] = T_NULL,     [V_BOOLEAN] = T_BOOLEAN, [V_INTEGER] = T_NUMBER | T_INTEGER,
		[V_FLOAT] = T_NUMBER,  [V_STRING] = T_STRING,   [V_ARRAY] = T_ARRAY,
		[V_OBJECT] = T_OBJECT, [V_OTHER] = 0,
	};
	double f;

	if (kind == V_FLOAT) {
		f = (double)lua_tonumber(L, idx);
		if (isfinite(f) && floor(f) == f)
			return T_NUMBER | T_INTEGER;
	}
	return bits[kind];
}

/* [-0, +0, -] */
static int vtype_fail(struct vctx *c, const struct node *s, int kind, int idx, const struct seg *at)
{
	char want[128] = "", got[64];
	unsigned i, left = 0;

	if (!c->d)
		return SL_EINVAL;
	for (i = 0; i < T_COUNT; i++)
		left += (s->types >> i) & 1;
	for (i = 0; i < T_COUNT; i++) {
		if (!(s->types & (1u << i)))
			continue;
		left--;
		strcat(want, type_names[i]);
		strcat(want, left > 1 ? ", " : left == 1 ? " or " : "");
	}
	if (kind == V_OTHER)
		snprintf(got, sizeof(got), "%s (not a JSON value)",
			 lua_typename(c->L, lua_type(c->L, idx)));
	else
		snprintf(got, sizeof(got), "%s", kind_name(kind));
	return vfail(c, at, "type", "expected %s, got %s", want, got);
}

/* ---- numbers ---- */

static int vbound(struct vctx *c, const struct seg *at, const char *kw, const struct num *x,
		  const struct num *lim, const char *what)
{
	char a[40], b[40];

	if (!c->d)
		return SL_EINVAL;
	num_format(a, sizeof(a), x);
	num_format(b, sizeof(b), lim);
	return vfail(c, at, kw, "%s %s %s", a, what, b);
}

/* [-0, +0, -] */
static int vnumber(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	struct num x;
	int r;

	get_num(c->L, idx, &x);
	if ((s->flags & F_MIN) && ((r = num_cmp(&x, &s->min)) < 0 || r == 2))
		return vbound(c, at, "minimum", &x, &s->min, "is less than");
	if ((s->flags & F_MAX) && (r = num_cmp(&x, &s->max)) > 0)
		return vbound(c, at, "maximum", &x, &s->max, "is greater than");
	if ((s->flags & F_XMIN) && num_cmp(&x, &s->xmin) != 1)
		return vbound(c, at, "exclusiveMinimum", &x, &s->xmin, "is not greater than");
	if ((s->flags & F_XMAX) && num_cmp(&x, &s->xmax) != -1)
		return vbound(c, at, "exclusiveMaximum", &x, &s->xmax, "is not less than");
	if ((s->flags & F_MULT) && !num_multiple(&x, &s->mult))
		return vbound(c, at, "multipleOf", &x, &s->mult, "is not a multiple of");
	return 0;
}

/* ---- strings ---- */

static uint64_t utf8_count(const char *s, size_t n)
{
	uint64_t k = 0;
	size_t i;

	for (i = 0; i < n; i++)
		k += ((unsigned char)s[i] & 0xc0) != 0x80;
	return k;
}

static const char md_key = 0; /* registry key of the state's PCRE2 match block */

/* __gc of the match block's box. [-0, +0, -] */
static int md_gc(lua_State *L)
{
	pcre2_match_data **box = lua_touserdata(L, 1);

	if (box && *box) {
		pcre2_match_data_free(*box);
		*box = NULL;
	}
	return 0;
}

/* The state's match block, made once and kept in the registry (a compiled schema is
 * shared, so it cannot own one; one lua_State runs on one thread at a time).
 * [-0, +0, m] */
static pcre2_match_data *match_data(struct vctx *c)
{
	lua_State *L = c->L;
	pcre2_match_data **box;

	if (c->md)
		return c->md;
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &md_key) == LUA_TUSERDATA) {
		c->md = *(pcre2_match_data **)lua_touserdata(L, -1);
		lua_pop(L, 1);
		return c->md;
	}
	lua_pop(L, 1);
	box = lua_newuserdatauv(L, sizeof(*box), 0);
	*box = NULL;
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "__gc");
	lua_pushcfunction(L, md_gc);
	lua_rawset(L, -3);
	lua_setmetatable(L, -2);
	if (!(*box = pcre2_match_data_create(1, NULL))) {
		lua_pop(L, 1);
		return NULL;
	}
	lua_rawsetp(L, LUA_REGISTRYINDEX, &md_key);
	return c->md = *box;
}

/* [-0, +0, m] */
static int vpattern(struct vctx *c, const struct node *s, const char *str, size_t n,
		    const struct seg *at)
{
	PCRE2_UCHAR err[160];
	pcre2_match_data *md = match_data(c);
	struct sl_buf q;
	int r;

	if (!md)
		return vhard(c, SL_ENOMEM, at, "pattern", "out of memory");
	r = pcre2_match(s->re, (PCRE2_SPTR)str, n, 0, 0, md, NULL);
	if (r >= 0)
		return 0;
	if (!c->d)
		return SL_EINVAL;
	if (r <= PCRE2_ERROR_UTF8_ERR1 && r >= PCRE2_ERROR_UTF8_ERR21)
		return vfail(c, at, "pattern", "string is not valid UTF-8");
	sl_buf_init(&q);
	add_quoted(&q, str, n, 60);
	if (r == PCRE2_ERROR_NOMATCH) {
		r = vfail(c, at, "pattern", "%s does not match '%s'",
			  sl_buf_ok(&q) ? q.ptr : "string", s->pattern);
	} else {
		pcre2_get_error_message(r, err, sizeof(err));
		r = vfail(c, at, "pattern", "cannot match %s against '%s': %s",
			  sl_buf_ok(&q) ? q.ptr : "string", s->pattern, (const char *)err);
	}
	sl_buf_release(&q);
	return r;
}

/* [-0, +0, m] */
static int vstring(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	size_t n;
	const char *str = lua_tolstring(c->L, idx, &n);
	uint64_t k;

	if (s->flags & (F_MINLEN | F_MAXLEN)) {
		k = utf8_count(str, n);
		if ((s->flags & F_MINLEN) && k < s->minlen)
			return vfail(c, at, "minLength",
				     "string has %llu character%s, at least %llu required",
				     (unsigned long long)k, plural(k),
				     (unsigned long long)s->minlen);
		if ((s->flags & F_MAXLEN) && k > s->maxlen)
			return vfail(c, at, "maxLength",
				     "string has %llu character%s, at most %llu allowed",
				     (unsigned long long)k, plural(k),
				     (unsigned long long)s->maxlen);
	}
	if (s->flags & F_PATTERN)
		return vpattern(c, s, str, n, at);
	return 0;
}

/* ---- equality (const, enum, uniqueItems) ---- */

/* Both are tables of the same kind. 1 if equal, 0 if not, or an error. */
static int lv_equal(struct vctx *c, int a, int b, const struct seg *at, int depth);

/* [-0, +0, m] */
static int lv_equal_objects(struct vctx *c, int a, int b, const struct seg *at, int depth)
{
	lua_State *L = c->L;
	int r = 1;

	if (count_keys(L, a) != count_keys(L, b))
		return 0;
	lua_pushnil(L);
	while (r == 1 && lua_next(L, a)) {
		lua_pushvalue(L, -2);
		if (lua_rawget(L, b) == LUA_TNIL)
			r = 0;
		else
			r = lv_equal(c, lua_gettop(L) - 1, lua_gettop(L), at, depth + 1);
		lua_pop(L, r == 1 ? 2 : 3);
	}
	return r;
}

/* [-0, +0, m] */
static int lv_equal(struct vctx *c, int a, int b, const struct seg *at, int depth)
{
	lua_State *L = c->L;
	lua_Integer na = 0, nb = 0, i;
	int ka, r = 1;

	if (lua_rawequal(L, a, b))
		return 1;
	if (lua_type(L, a) != LUA_TTABLE || lua_type(L, b) != LUA_TTABLE)
		return classify(L, a, &na) == V_NULL && classify(L, b, &nb) == V_NULL;
	if (depth >= SL_JSON_MAX_DEPTH)
		return vdeep(c, at, "uniqueItems");
	if ((r = vroom(c, at, "uniqueItems")))
		return r;
	ka = classify_table(L, a, &na);
	if (ka != classify_table(L, b, &nb))
		return 0;
	if (ka == V_OBJECT)
		return lv_equal_objects(c, a, b, at, depth);
	if (na != nb)
		return 0;
	for (i = 1, r = 1; i <= na && r == 1; i++) {
		lua_rawgeti(L, a, i);
		lua_rawgeti(L, b, i);
		r = lv_equal(c, lua_gettop(L) - 1, lua_gettop(L), at, depth + 1);
		lua_pop(L, 2);
	}
	return r;
}

static int jv_equal(struct vctx *c, int idx, const struct jval *v, const struct seg *at);

/* [-0, +0, m] */
static int jv_equal_table(struct vctx *c, int idx, int kind, lua_Integer len,
			  const struct jval *v, const struct seg *at)
{
	lua_State *L = c->L;
	size_t i;
	int r = 1;

	if ((r = vroom(c, at, "const")))
		return r;
	r = 1;
	if (kind == V_ARRAY) {
		if ((size_t)len != v->n)
			return 0;
		for (i = 0; i < v->n && r == 1; i++) {
			lua_rawgeti(L, idx, (lua_Integer)i + 1);
			r = jv_equal(c, lua_gettop(L), &v->u.items[i], at);
			lua_pop(L, 1);
		}
		return r;
	}
	if (count_keys(L, idx) != v->n)
		return 0;
	for (i = 0; i < v->n && r == 1; i++) {
		lua_pushlstring(L, v->u.members[i].key, v->u.members[i].len);
		r = lua_rawget(L, idx) == LUA_TNIL
			    ? 0
			    : jv_equal(c, lua_gettop(L), &v->u.members[i].val, at);
		lua_pop(L, 1);
	}
	return r;
}

/* 1 if the Lua value at idx equals v (1 and 1.0 are equal), 0 if not, or an error.
 * The recursion follows v, whose depth the compiler bounded. [-0, +0, m] */
static int jv_equal(struct vctx *c, int idx, const struct jval *v, const struct seg *at)
{
	lua_State *L = c->L;
	lua_Integer len = 0;
	int kind = classify(L, idx, &len);
	struct num x, y;
	const char *s;
	size_t n;

	switch (v->kind) {
	case V_NULL:
		return kind == V_NULL;
	case V_BOOLEAN:
		return kind == V_BOOLEAN && lua_toboolean(L, idx) == v->u.b;
	case V_INTEGER:
	case V_FLOAT:
		if (kind != V_INTEGER && kind != V_FLOAT)
			return 0;
		get_num(L, idx, &x);
		jv_num(v, &y);
		return num_cmp(&x, &y) == 0;
	case V_STRING:
		if (kind != V_STRING)
			return 0;
		s = lua_tolstring(L, idx, &n);
		return n == v->n && !memcmp(s, v->u.s, n);
	}
	if (kind != v->kind)
		return 0;
	return jv_equal_table(c, idx, kind, len, v, at);
}

/* [-0, +0, m] */
static int vvalues(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	struct sl_buf b;
	size_t i;
	int r;

	if (s->flags & F_CONST) {
		if ((r = jv_equal(c, idx, &s->constv, at)) < 0)
			return r;
		if (!r && c->d) {
			sl_buf_init(&b);
			jv_render(&b, &s->constv);
			r = vfail(c, at, "const", "value must be %s",
				  sl_buf_ok(&b) ? b.ptr : "the constant");
			sl_buf_release(&b);
			return r;
		}
		if (!r)
			return SL_EINVAL;
	}
	if (!(s->flags & F_ENUM))
		return 0;
	for (i = 0; i < s->enumv.n; i++)
		if ((r = jv_equal(c, idx, &s->enumv.u.items[i], at)))
			return r < 0 ? r : 0;
	if (!c->d)
		return SL_EINVAL;
	sl_buf_init(&b);
	jv_render(&b, &s->enumv);
	r = vfail(c, at, "enum", "value is not one of %s", sl_buf_ok(&b) ? b.ptr : "the values");
	sl_buf_release(&b);
	return r;
}

/* ---- arrays ---- */

/* [-0, +0, -] */
static int is_null(lua_State *L, int idx)
{
	return lua_isnil(L, idx) || sl_lj_isnull(L, idx);
}

/* 1 if item j (1-based) equals an earlier item, stored in *i; 0; or an error.
 * [-0, +0, m] */
static int vduplicate(struct vctx *c, int idx, lua_Integer j, lua_Integer *i, const struct seg *at)
{
	lua_State *L = c->L;
	int tj = lua_rawgeti(L, idx, j), r = 0;

	for (*i = 1; *i < j && !r; ++*i) {
		/* Scalars are equal exactly when raw-equal (1 == 1.0 included). */
		if (lua_rawgeti(L, idx, *i) == LUA_TTABLE && tj == LUA_TTABLE)
			r = lv_equal(c, lua_gettop(L), lua_gettop(L) - 1, at, 0);
		else
			r = lua_rawequal(L, -1, -2) || (is_null(L, -1) && is_null(L, -2));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	--*i;
	return r;
}

/* Compares every pair: O(n^2), but scalars cost one raw comparison. [-0, +0, m] */
static int vunique(struct vctx *c, int idx, lua_Integer len, const struct seg *at)
{
	lua_Integer i, j;
	int r;

	if ((r = vroom(c, at, "uniqueItems")))
		return r;
	for (j = 2; j <= len; j++) {
		if ((r = vduplicate(c, idx, j, &i, at)) < 0)
			return r;
		if (r)
			return vfail(c, at, "uniqueItems", "items %lld and %lld are equal",
				     (long long)i - 1, (long long)j - 1);
	}
	return 0;
}

/* [-0, +0, m] */
static int vitems(struct vctx *c, const struct node *s, int idx, lua_Integer len,
		  const struct seg *at)
{
	struct seg sub = {at, NULL, 0, 0, at->depth + 1};
	lua_Integer npre = (s->flags & F_PREFIX) ? s->prefix.n : 0, i;
	int32_t sch;
	int rc;

	if (s->items >= 0 && (c->nodes[s->items].flags & F_FALSE) && len > npre)
		return vfail(c, at, "items", "array has %lld items, at most %lld allowed",
			     (long long)len, (long long)npre);
	if (len > 0 && at->depth >= SL_JSON_MAX_DEPTH)
		return vdeep(c, at, "items");
	if ((rc = vroom(c, at, "items")))
		return rc;
	for (i = 0; i < len; i++) {
		sch = i < npre ? s->prefix.v[i] : s->items;
		if (sch < 0)
			break;
		if (!c->nodes[sch].flags)
			continue;
		sub.pos = i;
		lua_rawgeti(c->L, idx, i + 1);
		rc = vnode(c, sch, lua_gettop(c->L), &sub);
		lua_pop(c->L, 1);
		if (rc)
			return rc;
	}
	return 0;
}

/* [-0, +0, m] */
static int varray(struct vctx *c, const struct node *s, int idx, lua_Integer len,
		  const struct seg *at)
{
	int rc;

	if ((s->flags & F_MINITEMS) && (uint64_t)len < s->minitems)
		return vfail(c, at, "minItems", "array has %lld item%s, at least %llu required",
			     (long long)len, plural((uint64_t)len),
			     (unsigned long long)s->minitems);
	if ((s->flags & F_MAXITEMS) && (uint64_t)len > s->maxitems)
		return vfail(c, at, "maxItems", "array has %lld item%s, at most %llu allowed",
			     (long long)len, plural((uint64_t)len),
			     (unsigned long long)s->maxitems);
	if ((s->flags & (F_PREFIX | F_ITEMS)) && (rc = vitems(c, s, idx, len, at)))
		return rc;
	if ((s->flags & F_UNIQUE) && len > 1)
		return vunique(c, idx, len, at);
	return 0;
}

/* ---- objects ---- */

/* properties (with their required names), then the other required names.
 * [-0, +0, m] */
static int vprops(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	lua_State *L = c->L;
	struct seg sub = {at, NULL, 0, 0, at->depth + 1};
	const struct prop *p;
	uint32_t i;
	int rc;

	if ((rc = vroom(c, at, "properties")))
		return rc;
	for (i = 0; i < s->nprops; i++) {
		p = &s->props[i];
		if (!p->required && !c->nodes[p->schema].flags)
			continue;
		lua_pushlstring(L, p->s, p->len);
		if (lua_rawget(L, idx) == LUA_TNIL) {
			lua_pop(L, 1);
			if (p->required)
				return vfail(c, at, "required", "missing property '%s'", p->s);
			continue;
		}
		if (at->depth >= SL_JSON_MAX_DEPTH)
			rc = vdeep(c, at, "properties");
		sub.key = p->s;
		sub.len = p->len;
		if (!rc)
			rc = vnode(c, p->schema, lua_gettop(L), &sub);
		lua_pop(L, 1);
		if (rc)
			return rc;
	}
	for (i = 0; i < s->nreq; i++) {
		lua_pushlstring(L, s->req[i].s, s->req[i].len);
		rc = lua_rawget(L, idx) == LUA_TNIL;
		lua_pop(L, 1);
		if (rc)
			return vfail(c, at, "required", "missing property '%s'", s->req[i].s);
	}
	return 0;
}

/* One member not named in properties (key and value on top). [-0, +0, m] */
static int vextra(struct vctx *c, const struct node *s, const struct seg *at)
{
	lua_State *L = c->L;
	struct seg sub = {at, NULL, 0, 0, at->depth + 1};

	if (lua_type(L, -2) != LUA_TSTRING)
		return vfail(c, at, "additionalProperties", "object has a %s key (not JSON)",
			     lua_typename(L, lua_type(L, -2)));
	sub.key = lua_tolstring(L, -2, &sub.len);
	if (find_prop(s, sub.key, sub.len))
		return 0;
	if (c->nodes[s->addl].flags & F_FALSE)
		return vfail(c, at, "additionalProperties", "property '%s' is not allowed",
			     sub.key);
	if (at->depth >= SL_JSON_MAX_DEPTH)
		return vdeep(c, at, "additionalProperties");
	return vnode(c, s->addl, lua_gettop(L), &sub);
}

/* additionalProperties, minProperties, maxProperties: one traversal. [-0, +0, m] */
static int vkeys(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	lua_State *L = c->L;
	int addl = (s->flags & F_ADDL) && c->nodes[s->addl].flags, rc;
	uint64_t n = 0;

	if (!addl && !(s->flags & (F_MINPROPS | F_MAXPROPS)))
		return 0; /* additionalProperties: true */
	if ((rc = vroom(c, at, "additionalProperties")))
		return rc;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		n++;
		if (addl && (rc = vextra(c, s, at))) {
			lua_pop(L, 2);
			return rc;
		}
		lua_pop(L, 1);
	}
	if ((s->flags & F_MINPROPS) && n < s->minprops)
		return vfail(c, at, "minProperties",
			     "object has %llu propert%s, at least %llu required",
			     (unsigned long long)n, n == 1 ? "y" : "ies",
			     (unsigned long long)s->minprops);
	if ((s->flags & F_MAXPROPS) && n > s->maxprops)
		return vfail(c, at, "maxProperties",
			     "object has %llu propert%s, at most %llu allowed",
			     (unsigned long long)n, n == 1 ? "y" : "ies",
			     (unsigned long long)s->maxprops);
	return 0;
}

/* [-0, +0, m] */
static int vobject(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	int rc;

	if ((s->flags & (F_PROPS | F_REQUIRED)) && (rc = vprops(c, s, idx, at)))
		return rc;
	if (s->flags & (F_ADDL | F_MINPROPS | F_MAXPROPS))
		return vkeys(c, s, idx, at);
	return 0;
}

/* ---- applicators ---- */

/* 1 if the value is valid against node n, 0 if not, or an error; describes nothing.
 * [-0, +0, m] */
static int vtry(struct vctx *c, int32_t n, int idx, const struct seg *at)
{
	struct sl_diag *saved = c->d;
	int rc;

	c->d = NULL;
	rc = vnode(c, n, idx, at);
	c->d = saved;
	return rc == 0 ? 1 : rc == SL_EINVAL ? 0 : rc;
}

/* Describes why none of l's subschemas matched, quoting the error of the one that
 * got deepest into the value (a type mismatch counting a little less). Runs only
 * after a failure, so it may take its time. [-0, +0, m] */
__attribute__((noinline)) static int vexplain(struct vctx *c, const struct list *l, int idx,
					      const struct seg *at, const char *kw)
{
	struct sl_diag best, cur, *saved = c->d;
	int score, top = -1, rc;
	uint32_t i, which = 0;

	if (!c->d)
		return SL_EINVAL;
	sl_diag_init(&best);
	for (i = 0; i < l->n; i++) {
		sl_diag_init(&cur);
		c->d = &cur;
		c->err_depth = 0;
		c->err_type = 1;
		rc = vnode(c, l->v[i], idx, at);
		c->d = saved;
		if (rc != SL_EINVAL)
			return rc ? rc
				  : vfail(c, at, kw, "subschema %u matched on a second look", i);
		score = c->err_depth * 2 + !c->err_type;
		if (score > top) {
			top = score;
			which = i;
			best = cur;
		}
	}
	return vfail(c, at, kw, "value matches none of the %u subschemas (subschema %u: %s)", l->n,
		     which, sl_diag_msg(&best));
}

/* [-0, +0, m] */
static int vany(struct vctx *c, const struct list *l, int idx, const struct seg *at)
{
	uint32_t i;
	int r;

	for (i = 0; i < l->n; i++)
		if ((r = vtry(c, l->v[i], idx, at)))
			return r < 0 ? r : 0;
	return vexplain(c, l, idx, at, "anyOf");
}

/* [-0, +0, m] */
static int vone(struct vctx *c, const struct list *l, int idx, const struct seg *at)
{
	uint32_t i, first = 0;
	int r, found = 0;

	for (i = 0; i < l->n; i++) {
		if ((r = vtry(c, l->v[i], idx, at)) < 0)
			return r;
		if (r && found)
			return vfail(c, at, "oneOf", "value matches subschemas %u and %u, but must "
						     "match exactly one",
				     first, i);
		if (r) {
			found = 1;
			first = i;
		}
	}
	return found ? 0 : vexplain(c, l, idx, at, "oneOf");
}

/* [-0, +0, m] */
static int vapply(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	uint32_t i;
	int rc;

	if ((s->flags & F_REF) && (rc = vnode(c, s->ref, idx, at)))
		return rc;
	for (i = 0; (s->flags & F_ALLOF) && i < s->all.n; i++)
		if ((rc = vnode(c, s->all.v[i], idx, at)))
			return rc;
	if ((s->flags & F_ANYOF) && (rc = vany(c, &s->any, idx, at)))
		return rc;
	if ((s->flags & F_ONEOF) && (rc = vone(c, &s->one, idx, at)))
		return rc;
	if (s->flags & F_NOT) {
		if ((rc = vtry(c, s->sub_not, idx, at)) < 0)
			return rc;
		if (rc)
			return vfail(c, at, "not", "value matches the schema it must not match");
	}
	if (s->flags & F_IF) {
		if ((rc = vtry(c, s->sub_if, idx, at)) < 0)
			return rc;
		if ((rc ? s->sub_then : s->sub_else) >= 0)
			return vnode(c, rc ? s->sub_then : s->sub_else, idx, at);
	}
	return 0;
}

/* ---- one schema ---- */

/* [-0, +0, m] */
static int vchecks(struct vctx *c, const struct node *s, int idx, const struct seg *at)
{
	lua_Integer len = 0;
	int kind = classify(c->L, idx, &len), rc = 0;

	if ((s->flags & F_TYPE) && !(s->types & value_types(c->L, kind, idx)))
		return vtype_fail(c, s, kind, idx, at);
	switch (kind) {
	case V_INTEGER:
	case V_FLOAT:
		if (s->flags & F_NUMBERS)
			rc = vnumber(c, s, idx, at);
		break;
	case V_STRING:
		if (s->flags & F_STRINGS)
			rc = vstring(c, s, idx, at);
		break;
	case V_ARRAY:
		if (s->flags & F_ARRAYS)
			rc = varray(c, s, idx, len, at);
		break;
	case V_OBJECT:
		if (s->flags & F_OBJECTS)
			rc = vobject(c, s, idx, at);
		break;
	}
	if (!rc && (s->flags & F_VALUES))
		rc = vvalues(c, s, idx, at);
	if (!rc && (s->flags & F_APPLY))
		rc = vapply(c, s, idx, at);
	return rc;
}

/* Validates the value at idx (absolute; 2 free stack slots) against node n.
 * [-0, +0, m] */
static int vnode(struct vctx *c, int32_t n, int idx, const struct seg *at)
{
	const struct node *s = &c->nodes[n];
	char msg[96];
	int rc;

	if (!s->flags)
		return 0;
	if (s->flags & F_FALSE)
		return vfail(c, at, "false", "no value is allowed here (the schema is false)");
	if (c->nest >= SL_SCHEMA_MAX_NEST) {
		snprintf(msg, sizeof(msg),
			 "schema applied more than %d levels deep (a $ref cycle?)",
			 SL_SCHEMA_MAX_NEST);
		return vhard(c, VDEEP, at, "$ref", msg);
	}
	c->nest++;
	rc = vchecks(c, s, idx, at);
	c->nest--;
	return rc;
}

/* [-0, +0, m] */
int sl_schema_validate(const struct sl_schema *s, lua_State *L, int idx, struct sl_diag *d)
{
	struct seg root = {NULL, NULL, 0, 0, 0};
	struct vctx c;
	int top = lua_gettop(L), rc;

	(void)top;
	idx = lua_absindex(L, idx);
	c.L = L;
	c.nodes = s->nodes;
	c.d = c.out = d;
	c.nest = 0;
	c.err_depth = 0;
	c.err_type = 0;
	c.md = NULL;
	if (!lua_checkstack(L, 8))
		return sl_diag_set(d, SL_ENOMEM, "/: schema: Lua stack overflow");
	rc = vnode(&c, 0, idx, &root);
	assert(lua_gettop(L) == top);
	return rc == VDEEP ? SL_EINVAL : rc;
}
