/* sl_schema_int.h - what the schema compiler (sl_schema_compile.c) and the validator
 * (sl_schema.c) share: the compiled form of a schema and the helpers that read Lua
 * values as JSON. Only those two files include it; everyone else goes through
 * sl_schema.h.
 */
#ifndef SL_SCHEMA_INT_H
#define SL_SCHEMA_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <pcre2.h>

#include "sl_schema.h"

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

/* ---- Shared helpers (sl_schema.c) ---- */

/* The `type` keyword's names, indexed by bit number. */
extern const char *const sl_schema_type_names[T_COUNT];

/* What the table at idx is (V_ARRAY or V_OBJECT); *len is an array's length. Needs
 * 2 free stack slots. [-0, +0, -] */
int sl_schema_classify_table(lua_State *L, int idx, lua_Integer *len);
/* What the value at idx is (enum vkind); *len as for sl_schema_classify_table.
 * [-0, +0, -] */
int sl_schema_classify(lua_State *L, int idx, lua_Integer *len);
/* The name of a kind for messages ("integer", "non-JSON value"); static storage. */
const char *sl_schema_kind_name(int kind);
/* Reads the number at idx exactly. [-0, +0, -] */
void sl_schema_get_num(lua_State *L, int idx, struct num *x);
/* The number of keys of the table at idx (raw). [-0, +0, -] */
size_t sl_schema_count_keys(lua_State *L, int idx);
/* Whether x is an integer or a finite float without fractional part. */
int sl_schema_num_integral(const struct num *x);
/* Byte order, a prefix first: the order of property names and object members. */
int sl_schema_name_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* The property `key` of node s (props sorted by sl_schema_name_cmp), or NULL. */
const struct prop *sl_schema_find_prop(const struct node *s, const char *key, size_t len);

#endif
