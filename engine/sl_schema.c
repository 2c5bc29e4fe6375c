/* sl_schema.c - validates Lua values against compiled JSON Schemas; this runs on the
 * engine's hot path, once per event. The compiler is in sl_schema_compile.c.
 *
 * Validation walks the Lua value with raw access. It formats nothing while data is
 * valid: the instance path is a chain of `struct seg` on the C stack, turned into a
 * JSON pointer only when a failure is described. Subschemas that are only tried
 * (anyOf, oneOf, not, if) run "quiet" (no diag); when the combination fails, the
 * candidates are run again with a diag to explain the failure.
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

/* The `type` keyword's names, in bit order. */
const char *const sl_schema_type_names[T_COUNT] = {"null",   "boolean", "object", "array",
                                                   "number", "integer", "string"};

/* ---- Reading Lua values ---- */

/* An untagged table is an array if its keys are exactly 1..n (n > 0); rawlen 0
 * means t[1] is nil, so the common object costs no traversal. Needs 2 free stack
 * slots. [-0, +0, -] */
int sl_schema_classify_table(lua_State *L, int idx, lua_Integer *len)
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
int sl_schema_classify(lua_State *L, int idx, lua_Integer *len)
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
		return sl_schema_classify_table(L, idx, len);
	case LUA_TLIGHTUSERDATA:
		return lua_touserdata(L, idx) ? V_OTHER : V_NULL;
	}
	return V_OTHER;
}

const char *sl_schema_kind_name(int kind)
{
	static const char *const names[] = {"null",   "boolean", "integer", "number",
	                                    "string", "array",   "object",  "non-JSON value"};

	return names[kind];
}

/* [-0, +0, -] */
void sl_schema_get_num(lua_State *L, int idx, struct num *x)
{
	x->isint = lua_isinteger(L, idx);
	x->i = x->isint ? lua_tointeger(L, idx) : 0;
	x->f = x->isint ? (double)x->i : (double)lua_tonumber(L, idx);
}

/* [-0, +0, -] */
size_t sl_schema_count_keys(lua_State *L, int idx)
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

int sl_schema_num_integral(const struct num *x)
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
int sl_schema_name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return (alen > blen) - (alen < blen);
}

const struct prop *sl_schema_find_prop(const struct node *s, const char *key, size_t len)
{
	uint32_t lo = 0, hi = s->nprops, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = sl_schema_name_cmp(key, len, s->props[mid].s, s->props[mid].len);
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
		strcat(want, sl_schema_type_names[i]);
		strcat(want, left > 1 ? ", " : left == 1 ? " or " : "");
	}
	if (kind == V_OTHER)
		snprintf(got, sizeof(got), "%s (not a JSON value)",
		         lua_typename(c->L, lua_type(c->L, idx)));
	else
		snprintf(got, sizeof(got), "%s", sl_schema_kind_name(kind));
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

	sl_schema_get_num(c->L, idx, &x);
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

	if (sl_schema_count_keys(L, a) != sl_schema_count_keys(L, b))
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
		return sl_schema_classify(L, a, &na) == V_NULL &&
		       sl_schema_classify(L, b, &nb) == V_NULL;
	if (depth >= SL_JSON_MAX_DEPTH)
		return vdeep(c, at, "uniqueItems");
	if ((r = vroom(c, at, "uniqueItems")))
		return r;
	ka = sl_schema_classify_table(L, a, &na);
	if (ka != sl_schema_classify_table(L, b, &nb))
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
static int jv_equal_table(struct vctx *c, int idx, int kind, lua_Integer len, const struct jval *v,
                          const struct seg *at)
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
	if (sl_schema_count_keys(L, idx) != v->n)
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
	int kind = sl_schema_classify(L, idx, &len);
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
		sl_schema_get_num(L, idx, &x);
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
	if (sl_schema_find_prop(s, sub.key, sub.len))
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
			return vfail(c, at, "oneOf",
			             "value matches subschemas %u and %u, but must "
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
	int kind = sl_schema_classify(c->L, idx, &len), rc = 0;

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
