/* sl_luajson.c - JSON <-> Lua: yajl callbacks pushing onto the Lua stack, and a
 * raw-access encoder with sorted keys, exact integers and shortest round-trip floats. */
#include "sl_luajson.h"
#include "sl_json.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <yajl/yajl_parse.h>

/* Registry keys: the addresses of these statics. */
static const char arraymt_key, box_key;

#define BOX_METATABLE "sluice.jsonparser"

/* ---- Tags ---- */

/* [-0, +1, m] */
void sl_lj_pusharraymt(lua_State *L)
{
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &arraymt_key) == LUA_TTABLE)
		return;
	lua_pop(L, 1);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "__name"); /* tostring() shows "sluice.array: 0x..." */
	lua_pushliteral(L, "sluice.array");
	lua_rawset(L, -3);
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &arraymt_key);
}

/* [-0, +0, -] */
int sl_lj_isarray(lua_State *L, int idx)
{
	int r;

	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return 0;
	lua_rawgetp(L, LUA_REGISTRYINDEX, &arraymt_key);
	r = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return r;
}

/* [-0, +1, -] */
void sl_lj_pushnull(lua_State *L)
{
	lua_pushlightuserdata(L, NULL);
}

/* [-0, +0, -] */
int sl_lj_isnull(lua_State *L, int idx)
{
	return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL;
}

/* ---- Decoding ---- */

/* The yajl handle of a parse lives in a userdata, so that a Lua error raised by a
 * callback (out of memory) cannot leak it: the box's __gc frees it. */
struct box {
	yajl_handle h;
};

/* __gc of a box; idempotent. [-0, +0, -] */
static int box_gc(lua_State *L)
{
	struct box *b = lua_touserdata(L, 1);

	if (b && b->h) {
		yajl_free(b->h);
		b->h = NULL;
	}
	return 0;
}

/* Takes the state's idle box out of the registry (making one the first time) and
 * leaves it on the stack, where it stays for the whole parse. While a parse runs the
 * registry holds no box: a parse started meanwhile (from a finalizer run by the
 * collector inside a callback) makes its own, and a parse that raised leaves its box
 * to the collector, whose __gc frees the handle. [-0, +1, m] */
static struct box *box_take(lua_State *L)
{
	struct box *b;

	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key) == LUA_TUSERDATA) {
		lua_pushnil(L);
		lua_rawsetp(L, LUA_REGISTRYINDEX, &box_key);
		b = lua_touserdata(L, -1);
		if (b->h) { /* cannot happen: idle boxes hold no handle */
			yajl_free(b->h);
			b->h = NULL;
		}
		return b;
	}
	lua_pop(L, 1);
	b = lua_newuserdatauv(L, sizeof(*b), 0);
	b->h = NULL;
	if (luaL_newmetatable(L, BOX_METATABLE)) {
		lua_pushcfunction(L, box_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, box_gc);
		lua_setfield(L, -2, "__close");
	}
	lua_setmetatable(L, -2);
	return b;
}

/* Frees the box's handle and makes the box (at idx) the idle one again. [-0, +0, m] */
static void box_put(lua_State *L, int idx, struct box *b)
{
	if (b->h) {
		yajl_free(b->h);
		b->h = NULL;
	}
	lua_pushvalue(L, idx);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &box_key);
}

/* A parse in progress. The stack holds, above the box and the array tag, one table
 * per open array or object and, in an object, the pending key. */
struct dec {
	struct sl_json_parser p;
	lua_State *L;
	int flags;
	int mt;                               /* stack index of the array tag */
	int depth;                            /* open arrays and objects */
	lua_Integer n[SL_JSON_MAX_DEPTH + 1]; /* per depth: ARRAY items so far, OBJECT -1 */
};

/* Stores the value on top into the open container, if any. [-(1|0), +0, m] */
static int dec_add(struct dec *c)
{
	lua_Integer *n;

	if (c->depth == 0)
		return 1; /* the document's value: it stays */
	n = &c->n[c->depth];
	if (*n < 0)
		lua_rawset(c->L, -3); /* table, key, value */
	else
		lua_rawseti(c->L, -2, ++*n);
	return 1;
}

/* [-0, +0, m] for all callbacks below (counting the value dec_add consumes) */
static int dec_null(void *ctx)
{
	struct dec *c = ctx;

	lua_pushlightuserdata(c->L, NULL);
	return dec_add(c);
}

static int dec_boolean(void *ctx, int v)
{
	struct dec *c = ctx;

	lua_pushboolean(c->L, v);
	return dec_add(c);
}

static int dec_number(void *ctx, const char *lit, size_t n)
{
	struct dec *c = ctx;
	int64_t i = 0;
	double f = 0;
	int kind = sl_json_number(&c->p, lit, n, &i, &f);

	if (kind < 0)
		return 0;
	if (kind == SL_JSON_INTEGER)
		lua_pushinteger(c->L, (lua_Integer)i);
	else
		lua_pushnumber(c->L, (lua_Number)f);
	return dec_add(c);
}

static int dec_string(void *ctx, const unsigned char *s, size_t n)
{
	struct dec *c = ctx;

	if (!sl_json_string(&c->p, (const char *)s, n))
		return 0;
	lua_pushlstring(c->L, (const char *)s, n);
	return dec_add(c);
}

/* Pushes the key; with SL_LJ_STRICT refuses one the object already has (every
 * stored value is non-nil, null being a light userdata). [-0, +1, m] */
static int dec_key(void *ctx, const unsigned char *k, size_t n)
{
	struct dec *c = ctx;
	lua_State *L = c->L;
	int t;

	if (!sl_json_string(&c->p, (const char *)k, n))
		return 0;
	lua_pushlstring(L, (const char *)k, n);
	if (c->flags & SL_LJ_STRICT) {
		lua_pushvalue(L, -1);
		t = lua_rawget(L, -3);
		lua_pop(L, 1);
		if (t != LUA_TNIL)
			return sl_json_dupkey(&c->p, (const char *)k, n);
	}
	return 1;
}

/* Pushes a new table for an array or object. [-0, +1, m] */
static int dec_open(struct dec *c, int array)
{
	lua_State *L = c->L;

	if (c->depth == SL_JSON_MAX_DEPTH)
		return sl_json_fail(&c->p, SL_EINVAL, "nesting deeper than %d levels",
		                    SL_JSON_MAX_DEPTH);
	luaL_checkstack(L, 3, "JSON nesting"); /* the table, a key, a value */
	lua_createtable(L, 0, 0);
	if (array) {
		lua_pushvalue(L, c->mt);
		lua_setmetatable(L, -2);
	}
	c->n[++c->depth] = array ? 0 : -1;
	return 1;
}

static int dec_start_map(void *ctx)
{
	return dec_open(ctx, 0);
}

static int dec_start_array(void *ctx)
{
	return dec_open(ctx, 1);
}

/* [-1, +0, m] (the finished table goes into its parent) */
static int dec_close(void *ctx)
{
	struct dec *c = ctx;

	c->depth--;
	return dec_add(c);
}

static const yajl_callbacks dec_callbacks = {
	.yajl_null = dec_null,
	.yajl_boolean = dec_boolean,
	.yajl_number = dec_number, /* raw literals: integers stay exact */
	.yajl_string = dec_string,
	.yajl_start_map = dec_start_map,
	.yajl_map_key = dec_key,
	.yajl_end_map = dec_close,
	.yajl_start_array = dec_start_array,
	.yajl_end_array = dec_close,
};

/* ---- The fast path ---- */

/* A recursive-descent decoder for the documents the store hands back every batch: it
 * builds each table once, with its final size, from the items it first leaves on the
 * stack (no rehash while a table grows), and needs no yajl handle. It covers the whole
 * grammar except \u escapes, strings with escapes longer than FAST_ESC, and number
 * literals of FAST_NUM bytes or more; on those, and on anything that is not valid JSON,
 * it gives up (FAST_BAIL) and sl_lj_decode starts over on the yajl path, which says
 * what is wrong. So it never decides what is valid: for every text it pushes exactly
 * the value the yajl path would, or nothing (tests/test_luajson.c and fuzz_json compare
 * the two). Duplicate keys: the last one wins, as on the yajl path; SL_LJ_STRICT
 * always takes the yajl path. */
#define FAST_BAIL 1
#define FAST_ESC 256
#define FAST_NUM 64
#define FAST_CHUNK 64 /* items held on the stack before a table is made */

struct fast {
	lua_State *L;
	const char *s, *end;
	int depth;
	char esc[FAST_ESC];
};

static int fast_value(struct fast *f);

static void fast_ws(struct fast *f)
{
	while (f->s < f->end && (*f->s == ' ' || *f->s == '\n' || *f->s == '\r' || *f->s == '\t'))
		f->s++;
}

/* At the opening quote: pushes the string. [-0, +(1|0), m] */
static int fast_string(struct fast *f)
{
	const unsigned char *s = (const unsigned char *)++f->s, *e = (const unsigned char *)f->end;
	const unsigned char *start = s;
	int high = 0;
	size_t n = 0;

	while (s < e && *s != '"' && *s != '\\' && *s >= 0x20)
		high |= *s++ & 0x80;
	if (s == e || *s < 0x20)
		return FAST_BAIL;
	if (*s == '"') {
		if (high && !sl_utf8_valid((const char *)start, (size_t)(s - start)))
			return FAST_BAIL;
		lua_pushlstring(f->L, (const char *)start, (size_t)(s - start));
		f->s = (const char *)s + 1;
		return 0;
	}
	/* escapes: decoded into f->esc */
	if ((size_t)(s - start) > FAST_ESC)
		return FAST_BAIL;
	memcpy(f->esc, start, n = (size_t)(s - start));
	while (s < e && *s != '"') {
		unsigned char c = *s++;
		if (c < 0x20)
			return FAST_BAIL;
		if (c == '\\') {
			if (s == e)
				return FAST_BAIL;
			switch (*s++) {
			case '"':
				c = '"';
				break;
			case '\\':
				c = '\\';
				break;
			case '/':
				c = '/';
				break;
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'n':
				c = '\n';
				break;
			case 'r':
				c = '\r';
				break;
			case 't':
				c = '\t';
				break;
			default:
				return FAST_BAIL; /* \u and bad escapes */
			}
		}
		high |= c & 0x80;
		if (n == FAST_ESC)
			return FAST_BAIL;
		f->esc[n++] = (char)c;
	}
	if (s == e || (high && !sl_utf8_valid(f->esc, n)))
		return FAST_BAIL;
	lua_pushlstring(f->L, f->esc, n);
	f->s = (const char *)s + 1;
	return 0;
}

static int digit(const char *s, const char *e)
{
	return s < e && *s >= '0' && *s <= '9';
}

/* Pushes the number at f->s, read as sl_json_number reads it. [-0, +(1|0), -] */
static int fast_number(struct fast *f)
{
	const char *s = f->s, *e = f->end, *start = s;
	int neg = 0, plain = 1;
	char buf[FAST_NUM];
	uint64_t u = 0;
	size_t n, k;

	if (*s == '-')
		s++, neg = 1;
	if (!digit(s, e))
		return FAST_BAIL;
	if (*s == '0')
		s++;
	else
		while (digit(s, e))
			s++;
	if (s < e && *s == '.') {
		plain = 0;
		if (!digit(++s, e))
			return FAST_BAIL;
		while (digit(s, e))
			s++;
	}
	if (s < e && (*s == 'e' || *s == 'E')) {
		plain = 0;
		s++;
		if (s < e && (*s == '+' || *s == '-'))
			s++;
		if (!digit(s, e))
			return FAST_BAIL;
		while (digit(s, e))
			s++;
	}
	f->s = s;
	n = (size_t)(s - start);
	if (plain && n - (size_t)neg <= 18) {
		for (k = (size_t)neg; k < n; k++)
			u = u * 10 + (uint64_t)(start[k] - '0');
		lua_pushinteger(f->L, neg ? -(lua_Integer)u : (lua_Integer)u);
		return 0;
	}
	if (n >= sizeof(buf))
		return FAST_BAIL;
	memcpy(buf, start, n);
	buf[n] = '\0';
	if (plain) {
		long long v;
		errno = 0;
		v = strtoll(buf, NULL, 10);
		if (errno != ERANGE) {
			lua_pushinteger(f->L, (lua_Integer)v);
			return 0;
		}
	}
	{
		double x = strtod(buf, NULL);
		if (isinf(x))
			return FAST_BAIL; /* "number out of range": the yajl path says so */
		lua_pushnumber(f->L, (lua_Number)x);
	}
	return 0;
}

static int fast_word(struct fast *f, const char *w, size_t n)
{
	if ((size_t)(f->end - f->s) < n || memcmp(f->s, w, n))
		return FAST_BAIL;
	f->s += n;
	return 0;
}

/* Moves the n items above base into a new table at base + 1 (an array's items or an
 * object's key/value pairs, in order, so the last of two equal keys wins). Leaves the
 * table on top. [-n, +1, m] */
static void fast_table(lua_State *L, int base, int n, int pairs)
{
	int i, t;

	lua_createtable(L, pairs ? 0 : n, pairs ? n / 2 : 0);
	lua_insert(L, base + 1);
	t = base + 1;
	if (pairs) {
		for (i = 0; i < n; i += 2) {
			lua_pushvalue(L, t + 1 + i);
			lua_pushvalue(L, t + 2 + i);
			lua_rawset(L, t);
		}
		lua_settop(L, t);
	} else {
		for (i = n; i >= 1; i--)
			lua_rawseti(L, t, i);
	}
}

/* At '[' or '{': pushes the array or object. Up to FAST_CHUNK items wait on the stack
 * for a table of their size; a longer container gets its table then, and the rest go
 * straight in. [-0, +(1|0), m] */
static int fast_container(struct fast *f, int array)
{
	lua_State *L = f->L;
	int base = lua_gettop(L), t = 0, n = 0;
	lua_Integer len = 0;
	char close = array ? ']' : '}';

	if (f->depth == SL_JSON_MAX_DEPTH || !lua_checkstack(L, 2 * FAST_CHUNK + 8))
		return FAST_BAIL;
	f->depth++;
	f->s++;
	fast_ws(f);
	if (f->s < f->end && *f->s == close) {
		f->s++;
	} else {
		for (;;) {
			if (!array) {
				if (f->s == f->end || *f->s != '"' || fast_string(f))
					return FAST_BAIL;
				fast_ws(f);
				if (f->s == f->end || *f->s++ != ':')
					return FAST_BAIL;
				fast_ws(f);
			}
			if (fast_value(f))
				return FAST_BAIL;
			if (t && array)
				lua_rawseti(L, t, ++len);
			else if (t)
				lua_rawset(L, t);
			else if ((n += array ? 1 : 2) == 2 * FAST_CHUNK) {
				fast_table(L, base, n, !array);
				t = base + 1;
				len = n;
			}
			fast_ws(f);
			if (f->s < f->end && *f->s == ',') {
				f->s++;
				fast_ws(f);
				continue;
			}
			if (f->s < f->end && *f->s == close) {
				f->s++;
				break;
			}
			return FAST_BAIL;
		}
	}
	if (!t)
		fast_table(L, base, n, !array);
	if (array) {
		sl_lj_pusharraymt(L);
		lua_setmetatable(L, -2);
	}
	f->depth--;
	return 0;
}

/* Pushes the value at f->s (after white space). [-0, +(1|0), m] */
static int fast_value(struct fast *f)
{
	if (f->s == f->end)
		return FAST_BAIL;
	switch (*f->s) {
	case '{':
		return fast_container(f, 0);
	case '[':
		return fast_container(f, 1);
	case '"':
		return fast_string(f);
	case 't':
		if (fast_word(f, "true", 4))
			return FAST_BAIL;
		lua_pushboolean(f->L, 1);
		return 0;
	case 'f':
		if (fast_word(f, "false", 5))
			return FAST_BAIL;
		lua_pushboolean(f->L, 0);
		return 0;
	case 'n':
		if (fast_word(f, "null", 4))
			return FAST_BAIL;
		lua_pushlightuserdata(f->L, NULL);
		return 0;
	default:
		return fast_number(f);
	}
}

/* Pushes the document's value, or nothing when the yajl path must decide.
 * [-0, +(1|0), m] */
static int fast_decode(lua_State *L, const char *text, size_t len)
{
	struct fast f;
	int top = lua_gettop(L);

	f.L = L;
	f.s = text;
	f.end = text + len;
	f.depth = 0;
	fast_ws(&f);
	if (fast_value(&f) == 0) {
		fast_ws(&f);
		if (f.s == f.end)
			return 0;
	}
	lua_settop(L, top);
	return FAST_BAIL;
}

/* [-0, +(1|0), m] */
int sl_lj_decode(lua_State *L, const char *text, size_t len, int flags, struct sl_diag *d)
{
	struct dec c;
	struct box *b;
	int base = lua_gettop(L), rc;

	if (!(flags & (SL_LJ_STRICT | SL_LJ_SLOW)) && fast_decode(L, text, len) == 0)
		return 0;
	luaL_checkstack(L, 4, "JSON decode"); /* box, tag, value, a spare */
	b = box_take(L);
	sl_lj_pusharraymt(L);
	c.p.text = text;
	c.p.len = len;
	c.p.d = d;
	c.L = L;
	c.flags = flags;
	c.mt = base + 2;
	c.depth = 0;
	b->h = yajl_alloc(&dec_callbacks, NULL, &c);
	if (!b->h) {
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
		goto out;
	}
	c.p.h = b->h;
	rc = sl_json_parse(&c.p);
out:
	lua_settop(L, rc ? base + 2 : base + 3); /* on error, drop all the parse pushed */
	box_put(L, base + 1, b);
	if (!rc)
		lua_copy(L, base + 3, base + 1);
	lua_settop(L, rc ? base : base + 1);
	return rc;
}

/* ---- Encoding ---- */

/* Objects with at most this many keys are sorted in a C array, their keys anchored
 * on the Lua stack; larger ones use a userdata and an anchor table. */
#define SMALL_OBJECT 16

/* One step of the path to the value being encoded, for error messages. */
struct seg {
	const char *key; /* an object member's key (anchored while in use), or NULL */
	size_t len;
	lua_Integer index; /* an array item's 1-based index */
};

struct enc {
	lua_State *L;
	struct sl_buf *b;
	struct sl_diag *d;
	const char *root;
	int mt;   /* stack index of the array tag */
	int nseg; /* path[0..nseg) leads from root to the current value: its depth */
	struct seg path[SL_JSON_MAX_DEPTH];
};

/* An object key to sort; `ref` is its anchor: a stack index, or an index into the
 * anchor table. */
struct okey {
	const char *s;
	size_t len;
	int ref;
};

static int is_ident(const char *s, size_t n)
{
	size_t i;

	if (!n || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (i = 0; i < n; i++)
		if (!(s[i] == '_' || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z')))
			return 0;
	return 1;
}

/* Appends "payload.items[3]": identifier keys after '.', other keys as ["..."]. */
static void add_path(struct sl_buf *pb, const struct enc *e)
{
	const struct seg *s;
	int i;

	sl_buf_adds(pb, e->root);
	for (i = 0; i < e->nseg; i++) {
		s = &e->path[i];
		if (!s->key) {
			sl_buf_addf(pb, "[%lld]", (long long)s->index);
		} else if (is_ident(s->key, s->len)) {
			if (pb->len)
				sl_buf_addc(pb, '.');
			sl_buf_add(pb, s->key, s->len);
		} else {
			sl_buf_addc(pb, '[');
			sl_buf_addjstr(pb, s->key, s->len);
			sl_buf_addc(pb, ']');
		}
	}
}

/* Records "<path>: <message>"; a path too long to read (a cycle gives 256 steps)
 * keeps its head and tail around "...". Returns code. */
static int enc_fail(struct enc *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int enc_fail(struct enc *e, int code, const char *fmt, ...)
{
	char msg[SL_DIAG_MAX];
	struct sl_buf pb;
	size_t head, tail;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sl_buf_init(&pb);
	add_path(&pb, e);
	if (!pb.len || pb.oom) {
		sl_diag_set(e->d, code, "%s", msg);
	} else if (pb.len <= 240) {
		sl_diag_set(e->d, code, "%s: %s", pb.ptr, msg);
	} else {
		for (head = 112; head && ((unsigned char)pb.ptr[head] & 0xc0) == 0x80; head--)
			;
		for (tail = pb.len - 112; ((unsigned char)pb.ptr[tail] & 0xc0) == 0x80; tail++)
			;
		sl_diag_set(e->d, code, "%.*s...%s: %s", (int)head, pb.ptr, pb.ptr + tail, msg);
	}
	sl_buf_release(&pb);
	return code;
}

static int enc_value(struct enc *e, int idx);

/* Appends the shortest of %.15g, %.16g, %.17g that reads back as x, with ".0" when
 * it would read as an integer. */
static int enc_float(struct enc *e, double x)
{
	char tmp[40];
	int prec;

	if (isnan(x))
		return enc_fail(e, SL_EINVAL, "cannot encode NaN as JSON");
	if (isinf(x))
		return enc_fail(e, SL_EINVAL, "cannot encode %s as JSON", x > 0 ? "inf" : "-inf");
	for (prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, x);
		if (prec == 17 || strtod(tmp, NULL) == x)
			break;
	}
	sl_buf_adds(e->b, tmp);
	if (!strpbrk(tmp, ".eni"))
		sl_buf_add(e->b, ".0", 2); /* 1.0 -> "1.0", -0.0 -> "-0.0" */
	return 0;
}

/* [-0, +0, -] */
static int enc_string(struct enc *e, int idx)
{
	size_t n;
	const char *s = lua_tolstring(e->L, idx, &n);

	if (!sl_utf8_valid(s, n))
		return enc_fail(e, SL_EINVAL, "string is not valid UTF-8");
	sl_buf_addjstr(e->b, s, n);
	return 0;
}

/* Returns 1 if the table at idx carries the array tag. [-0, +0, -] */
static int tagged(struct enc *e, int idx)
{
	int r;

	if (!lua_getmetatable(e->L, idx))
		return 0;
	r = lua_rawequal(e->L, -1, e->mt);
	lua_pop(e->L, 1);
	return r;
}

/* Looks at the keys of an untagged table: returns 1 with *n its length if they are
 * exactly 1..n, 0 with *n the key count if all are strings (an object), or an error.
 * [-0, +(0|1), -] (an error may leave a key; sl_lj_encode resets the stack) */
static int table_shape(struct enc *e, int idx, lua_Integer *n)
{
	lua_State *L = e->L;
	lua_Integer nint = 0, nstr = 0, max = 0, k;
	int t, below_one = 0;

	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		t = lua_type(L, -1);
		if (t == LUA_TSTRING) {
			nstr++;
			continue;
		}
		if (t != LUA_TNUMBER)
			return enc_fail(e, SL_EINVAL, "cannot encode a table with a %s key as JSON",
			                lua_typename(L, t));
		if (!lua_isinteger(L, -1))
			return enc_fail(
				e, SL_EINVAL,
				"cannot encode a table with a non-integer number key as JSON");
		k = lua_tointeger(L, -1);
		nint++;
		below_one |= k < 1;
		max = k > max ? k : max;
	}
	if (nint && nstr)
		return enc_fail(e, SL_EINVAL,
		                "cannot encode a table with both integer and string keys as JSON");
	if (nint && (below_one || max != nint))
		return enc_fail(
			e, SL_EINVAL,
			"cannot encode a table whose integer keys are not exactly 1..n as JSON "
			"(a sparse array?)");
	*n = nint ? nint : nstr;
	return nint ? 1 : 0;
}

/* Appends t[1..n] as an array. [-0, +0, m] */
static int enc_array(struct enc *e, int idx, lua_Integer n)
{
	lua_State *L = e->L;
	struct seg *s = &e->path[e->nseg++];
	lua_Integer i;
	int rc = 0;

	s->key = NULL;
	sl_buf_addc(e->b, '[');
	for (i = 1; i <= n && !rc; i++) {
		if (i > 1)
			sl_buf_addc(e->b, ',');
		s->index = i;
		lua_rawgeti(L, idx, i);
		rc = enc_value(e, lua_gettop(L));
		lua_pop(L, 1);
	}
	sl_buf_addc(e->b, ']');
	e->nseg--;
	return rc;
}

/* Fills k[0..n) with the table's keys, anchoring each: on the stack when anchors is
 * 0 (one slot per key, left there), else in the anchor table at that stack index.
 * [-0, +(0|n), m] */
static int collect_keys(struct enc *e, int idx, struct okey *k, lua_Integer n, int anchors)
{
	lua_State *L = e->L;
	lua_Integer i = 0;

	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (i == n || lua_type(L, -1) != LUA_TSTRING)
			return enc_fail(e, SL_EINVAL, "table changed while being encoded");
		k[i].s = lua_tolstring(L, -1, &k[i].len);
		if (!sl_utf8_valid(k[i].s, k[i].len))
			return enc_fail(e, SL_EINVAL, "object key is not valid UTF-8");
		lua_pushvalue(L, -1); /* the copy iterates; the original stays as anchor */
		if (anchors) {
			k[i].ref = (int)(i + 1);
			lua_rawseti(L, anchors, i + 1);
		} else {
			k[i].ref = lua_gettop(L) - 1;
		}
		i++;
	}
	if (i != n)
		return enc_fail(e, SL_EINVAL, "table changed while being encoded");
	return 0;
}

/* Byte order; a key that is a prefix of another sorts first. */
static int okey_cmp(const void *a, const void *b)
{
	const struct okey *x = a, *y = b;
	int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);

	if (c)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

static void sort_keys(struct okey *k, lua_Integer n)
{
	struct okey t;
	lua_Integer i, j;

	if (n > SMALL_OBJECT) {
		qsort(k, (size_t)n, sizeof(*k), okey_cmp);
		return;
	}
	for (i = 1; i < n; i++) {
		t = k[i];
		for (j = i; j > 0 && okey_cmp(&k[j - 1], &t) > 0; j--)
			k[j] = k[j - 1];
		k[j] = t;
	}
}

/* Appends the members in key order. [-0, +0, m] */
static int emit_members(struct enc *e, int idx, const struct okey *k, lua_Integer n, int anchors)
{
	lua_State *L = e->L;
	struct seg *s = &e->path[e->nseg++];
	lua_Integer i;
	int rc = 0;

	sl_buf_addc(e->b, '{');
	for (i = 0; i < n && !rc; i++) {
		if (i)
			sl_buf_addc(e->b, ',');
		sl_buf_addjstr(e->b, k[i].s, k[i].len);
		sl_buf_addc(e->b, ':');
		if (anchors)
			lua_rawgeti(L, anchors, k[i].ref);
		else
			lua_pushvalue(L, k[i].ref);
		lua_rawget(L, idx);
		s->key = k[i].s;
		s->len = k[i].len;
		rc = enc_value(e, lua_gettop(L));
		lua_pop(L, 1);
	}
	sl_buf_addc(e->b, '}');
	e->nseg--;
	return rc;
}

/* Appends a table of n string keys as an object. [-0, +(0..n+2), m] (the caller
 * resets the stack) */
static int enc_object(struct enc *e, int idx, lua_Integer n)
{
	lua_State *L = e->L;
	struct okey small[SMALL_OBJECT], *k = small;
	int anchors = 0, rc;

	if (n == 0) {
		sl_buf_add(e->b, "{}", 2);
		return 0;
	}
	if (n > SMALL_OBJECT) {
		if (n > INT_MAX)
			return enc_fail(e, SL_ENOMEM, "table too large to encode");
		k = lua_newuserdatauv(L, (size_t)n * sizeof(*k), 0);
		lua_createtable(L, (int)n, 0);
		anchors = lua_gettop(L);
	}
	rc = collect_keys(e, idx, k, n, anchors);
	if (rc)
		return rc;
	sort_keys(k, n);
	return emit_members(e, idx, k, n, anchors);
}

/* [-0, +0, m] */
static int enc_table(struct enc *e, int idx)
{
	lua_State *L = e->L;
	int top = lua_gettop(L), rc;
	lua_Integer n = 0;

	if (e->nseg >= SL_JSON_MAX_DEPTH)
		return enc_fail(e, SL_EINVAL, "nesting deeper than %d levels (or a cycle)",
		                SL_JSON_MAX_DEPTH);
	luaL_checkstack(L, SMALL_OBJECT + 4, "JSON nesting");
	if (tagged(e, idx))
		return enc_array(e, idx, (lua_Integer)lua_rawlen(L, idx));
	rc = table_shape(e, idx, &n);
	if (rc < 0)
		return rc;
	rc = rc ? enc_array(e, idx, n) : enc_object(e, idx, n);
	lua_settop(L, top);
	return rc;
}

/* [-0, +0, m] */
static int enc_value(struct enc *e, int idx)
{
	lua_State *L = e->L;

	if (!sl_buf_ok(e->b))
		return sl_diag_set(e->d, SL_ENOMEM, "out of memory (or JSON text over %zu bytes)",
		                   (size_t)SL_BUF_MAX);
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		sl_buf_add(e->b, "null", 4);
		return 0;
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, idx))
			sl_buf_add(e->b, "true", 4);
		else
			sl_buf_add(e->b, "false", 5);
		return 0;
	case LUA_TNUMBER:
		if (!lua_isinteger(L, idx))
			return enc_float(e, (double)lua_tonumber(L, idx));
		sl_buf_addi(e->b, (int64_t)lua_tointeger(L, idx));
		return 0;
	case LUA_TSTRING:
		return enc_string(e, idx);
	case LUA_TTABLE:
		return enc_table(e, idx);
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx))
			break;
		sl_buf_add(e->b, "null", 4);
		return 0;
	}
	return enc_fail(e, SL_EINVAL, "cannot encode a %s as JSON", luaL_typename(L, idx));
}

/* [-0, +0, m] */
int sl_lj_encode(lua_State *L, int idx, const char *path, struct sl_buf *b, struct sl_diag *d)
{
	struct enc e;
	int top = lua_gettop(L), rc;

	idx = lua_absindex(L, idx);
	luaL_checkstack(L, 2, "JSON encode");
	sl_lj_pusharraymt(L);
	e.L = L;
	e.b = b;
	e.d = d;
	e.root = path ? path : "";
	e.mt = lua_gettop(L);
	e.nseg = 0;
	rc = enc_value(&e, idx);
	if (!rc && !sl_buf_ok(b))
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory (or JSON text over %zu bytes)",
		                 (size_t)SL_BUF_MAX);
	lua_settop(L, top);
	return rc;
}
