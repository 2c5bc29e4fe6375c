/* test_schema.c - unit tests of the JSON Schema validator (sl_schema.h): keywords,
 * error messages, Lua value classification, $ref resolution, limits, stack balance. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sl_luajson.h"
#include "sl_schema.h"
#include "unit.h"

static lua_State *L;

/* Pushes the decoded JSON text (nil if it does not decode, which fails the test).
 * [-0, +1, m] */
static void push_json(const char *text)
{
	struct sl_diag d;

	sl_diag_init(&d);
	if (sl_lj_decode(L, text, strlen(text), SL_LJ_STRICT, &d)) {
		diag("test JSON does not decode: %s: %s", text, d.msg);
		lua_pushnil(L);
	}
}

/* Pushes the result of a Lua chunk; the array tag is the chunk's argument.
 * [-0, +1, m] */
static void push_lua(const char *chunk)
{
	if (luaL_loadstring(L, chunk) != LUA_OK) {
		diag("test chunk does not load: %s", lua_tostring(L, -1));
		lua_pop(L, 1);
		lua_pushnil(L);
		return;
	}
	sl_lj_pusharraymt(L);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		diag("test chunk fails: %s", lua_tostring(L, -1));
		lua_pop(L, 1);
		lua_pushnil(L);
	}
}

/* Compiles schema text; NULL on failure (d filled). Checks the stack. [-0, +0, m] */
static struct sl_schema *compile(const char *schema, struct sl_diag *d, int *balanced)
{
	struct sl_schema *s = NULL;
	int top = lua_gettop(L);

	sl_diag_init(d);
	push_json(schema);
	sl_schema_compile(L, -1, "t", &s, d);
	lua_pop(L, 1);
	*balanced = lua_gettop(L) == top;
	return s;
}

/* Validates the value on top (popped) against s; returns the message, or NULL when
 * valid. [-1, +0, m] */
static const char *validate_top(const struct sl_schema *s, struct sl_diag *d, int *balanced)
{
	int top = lua_gettop(L), rc;

	sl_diag_init(d);
	rc = sl_schema_validate(s, L, -1, d);
	*balanced = lua_gettop(L) == top;
	lua_pop(L, 1);
	if (rc != 0 && rc != SL_EINVAL)
		diag("unexpected code %d", rc);
	return rc ? sl_diag_msg(d) : NULL;
}

static int same(const char *got, const char *want)
{
	if (!got || !want)
		return got == want;
	return strcmp(got, want) == 0;
}

/* One test: schema and data are JSON texts (data NULL: the Lua chunk `lua` makes
 * the value); want is the exact error, or NULL for valid. [-0, +0, m] */
static void check(const char *schema, const char *data, const char *lua, const char *want)
{
	struct sl_diag d;
	struct sl_schema *s;
	const char *got = NULL;
	int b1, b2 = 1;

	s = compile(schema, &d, &b1);
	if (!s) {
		ok(0, "%s compiles: %s", schema, d.msg);
		return;
	}
	if (data)
		push_json(data);
	else
		push_lua(lua);
	got = validate_top(s, &d, &b2);
	if (!ok(same(got, want) && b1 && b2, "%s | %s -> %s", schema, data ? data : lua,
	        want ? want : "valid"))
		diag("got: %s%s", got ? got : "valid", b1 && b2 ? "" : " (stack unbalanced)");
	sl_schema_free(s);
}

static void valid(const char *schema, const char *data)
{
	check(schema, data, NULL, NULL);
}

static void invalid(const char *schema, const char *data, const char *want)
{
	check(schema, data, NULL, want);
}

/* The schema must not compile, with exactly this message. [-0, +0, m] */
static void bad_schema(const char *schema, const char *want)
{
	struct sl_diag d;
	struct sl_schema *s;
	int b;

	s = compile(schema, &d, &b);
	if (!ok(!s && d.code == SL_EINVAL && !strcmp(d.msg, want) && b, "refused: %s", schema))
		diag("got: %s", s ? "compiled" : d.msg);
	sl_schema_free(s);
}

static const char *const state_schema = "{\"type\":\"object\",\"required\":[\"count\"],"
					"\"properties\":{\"count\":{\"type\":\"integer\"}}}";

static void test_types(void)
{
	valid("{\"type\":\"integer\"}", "1");
	valid("{\"type\":\"integer\"}", "1.0");
	valid("{\"type\":\"integer\"}", "-0.0");
	valid("{\"type\":\"integer\"}", "1e3");
	invalid("{\"type\":\"integer\"}", "1.5", "/: type: expected integer, got number");
	valid("{\"type\":\"number\"}", "1");
	valid("{\"type\":\"number\"}", "1.5");
	invalid("{\"type\":\"string\"}", "1", "/: type: expected string, got integer");
	invalid("{\"type\":[\"string\",\"null\"]}", "true",
	        "/: type: expected null or string, got boolean");
	invalid("{\"type\":[\"string\",\"null\",\"integer\"]}", "{}",
	        "/: type: expected null, integer or string, got object");
	valid("{\"type\":\"null\"}", "null");
	valid("{\"type\":\"array\"}", "[]");
	invalid("{\"type\":\"object\"}", "[]", "/: type: expected object, got array");
	invalid("{\"type\":\"array\"}", "{}", "/: type: expected array, got object");
	invalid("{\"properties\":{\"items\":{\"items\":{\"type\":\"integer\"}}}}",
	        "{\"items\":[1,2,\"x\"]}", "/items/2: type: expected integer, got string");
}

/* Lua values that did not come from JSON, read as the encoder would write them. */
static void test_lua_values(void)
{
	check(state_schema, NULL, "return {count = 1.0}", NULL);
	check(state_schema, NULL, "return {count = 1.5}",
	      "/count: type: expected integer, got number");
	check(state_schema, NULL, "return {count = 2^63}", NULL);
	check(state_schema, NULL, "return {count = 1/0}",
	      "/count: type: expected integer, got number");
	check(state_schema, NULL, "return {}", "/: required: missing property 'count'");
	check("{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}", NULL, "return {1, 2, 3}",
	      NULL);
	check("{\"type\":\"array\"}", NULL, "return {}", "/: type: expected array, got object");
	check("{\"type\":\"object\"}", NULL, "return {}", NULL);
	check("{\"type\":\"array\"}", NULL, "return setmetatable({}, ...)", NULL);
	check("{\"type\":\"object\"}", NULL, "return {1, 2, x = 3}", NULL);
	check("{\"type\":\"array\"}", NULL, "return {[1] = 1, [3] = 3}",
	      "/: type: expected array, got object");
	check("{\"type\":\"null\"}", NULL, "return nil", NULL);
	check("{\"type\":\"object\"}", NULL, "return print",
	      "/: type: expected object, got function (not a JSON value)");
	check("{\"properties\":{\"f\":{\"type\":[\"string\",\"number\"]}}}", NULL,
	      "return {f = coroutine.create(print)}",
	      "/f: type: expected number or string, got thread (not a JSON value)");
	check("{\"properties\":{\"f\":{}}}", NULL, "return {f = print}", NULL);
	check("{\"required\":[\"x\"]}", NULL, "return setmetatable({}, {__index = {x = 1}})",
	      "/: required: missing property 'x'");
	check("{\"const\":[1,2]}", NULL, "return {1, 2.0}", NULL);
	check("{\"const\":[]}", NULL, "return {}", "/: const: value must be []");
	check("{\"const\":{}}", NULL, "return {}", NULL);
	check("{\"uniqueItems\":true}", NULL, "return {{a = 1}, {a = 1.0}}",
	      "/: uniqueItems: items 0 and 1 are equal");
	check("{\"uniqueItems\":true}", NULL, "return {1, {}, false, {n = 1.0}, {n = 1}}",
	      "/: uniqueItems: items 3 and 4 are equal");
	check("{\"additionalProperties\":false}", NULL, "return {1, x = 1}",
	      "/: additionalProperties: object has a number key (not JSON)");
	check("{\"minProperties\":3}", NULL, "return {1, x = 1}",
	      "/: minProperties: object has 2 properties, at least 3 required");
}

static void test_numbers(void)
{
	invalid("{\"properties\":{\"by\":{\"type\":\"integer\",\"minimum\":1}}}", "{\"by\":0}",
	        "/by: minimum: 0 is less than 1");
	valid("{\"minimum\":1}", "1");
	valid("{\"minimum\":1.5}", "2");
	invalid("{\"minimum\":1.5}", "1", "/: minimum: 1 is less than 1.5");
	invalid("{\"maximum\":3}", "3.5", "/: maximum: 3.5 is greater than 3");
	invalid("{\"exclusiveMinimum\":1}", "1.0", "/: exclusiveMinimum: 1 is not greater than 1");
	invalid("{\"exclusiveMaximum\":1}", "1", "/: exclusiveMaximum: 1 is not less than 1");
	valid("{\"exclusiveMaximum\":1}", "0.9999");
	/* Exact comparison of integers beyond 2^53 with floats. */
	invalid("{\"maximum\":9007199254740992}", "9007199254740993",
	        "/: maximum: 9007199254740993 is greater than 9007199254740992");
	invalid("{\"maximum\":9007199254740992.0}", "9007199254740993",
	        "/: maximum: 9007199254740993 is greater than 9007199254740992");
	valid("{\"minimum\":-9223372036854775808}", "-9223372036854775808");
	valid("{\"multipleOf\":0.0001}", "0.0075");
	valid("{\"multipleOf\":0.01}", "0.07");
	valid("{\"multipleOf\":0.1}", "0.3");
	invalid("{\"multipleOf\":0.0001}", "0.00751",
	        "/: multipleOf: 0.00751 is not a multiple of 0.0001");
	valid("{\"multipleOf\":1.5}", "4.5");
	invalid("{\"multipleOf\":3}", "10", "/: multipleOf: 10 is not a multiple of 3");
	valid("{\"multipleOf\":3}", "9223372036854775806");
	invalid("{\"multipleOf\":2}", "9223372036854775807",
	        "/: multipleOf: 9223372036854775807 is not a multiple of 2");
	valid("{\"multipleOf\":2.0}", "10");
	invalid("{\"multipleOf\":0.123456789}", "1e308",
	        "/: multipleOf: 1e+308 is not a multiple of 0.123456789");
}

static void test_strings(void)
{
	valid("{\"maxLength\":2}", "\"\xc3\xa9\xe2\x82\xac\"");
	invalid("{\"minLength\":3}", "\"\xc3\xa9\xe2\x82\xac\"",
	        "/: minLength: string has 2 characters, at least 3 required");
	invalid("{\"maxLength\":1}", "\"ab\"",
	        "/: maxLength: string has 2 characters, at most 1 allowed");
	valid("{\"minLength\":2.0}", "\"ab\"");
	valid("{\"pattern\":\"b\"}", "\"abc\"");
	invalid("{\"pattern\":\"^[a-z]+$\"}", "\"abc1\"",
	        "/: pattern: \"abc1\" does not match '^[a-z]+$'");
	invalid("{\"pattern\":\"^a$\"}", "\"a\\n\"", "/: pattern: \"a\\n\" does not match '^a$'");
	valid("{\"pattern\":\"^.$\"}", "\"\xe2\x82\xac\"");
	valid("{\"pattern\":\"^\\\\p{L}+$\"}", "\"\xc3\xa9t\xc3\xa9\"");
	valid("{\"pattern\":\"x\"}", "12");
	check("{\"pattern\":\"^.$\"}", NULL, "return '\\xff'",
	      "/: pattern: string is not valid UTF-8");
}

static void test_arrays(void)
{
	const char *pre = "{\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}";
	const char *closed = "{\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"string\"}],"
			     "\"items\":false}";

	valid(pre, "[1,\"a\",true,null]");
	valid(pre, "[1]");
	valid(pre, "[]");
	invalid(pre, "[1,2]", "/1: type: expected string, got integer");
	valid(closed, "[1,\"a\"]");
	valid(closed, "[1]");
	invalid(closed, "[1,\"a\",true]", "/: items: array has 3 items, at most 2 allowed");
	valid("{\"prefixItems\":[{\"type\":\"integer\"}],\"items\":{\"type\":\"string\"}}",
	      "[1,\"a\",\"b\"]");
	invalid("{\"prefixItems\":[{\"type\":\"integer\"}],\"items\":{\"type\":\"string\"}}",
	        "[1,\"a\",2]", "/2: type: expected string, got integer");
	invalid("{\"items\":false}", "[1]", "/: items: array has 1 items, at most 0 allowed");
	valid("{\"items\":false}", "[]");
	invalid("{\"minItems\":2}", "[1]", "/: minItems: array has 1 item, at least 2 required");
	invalid("{\"maxItems\":1}", "[1,2]", "/: maxItems: array has 2 items, at most 1 allowed");
	valid("{\"uniqueItems\":true}", "[1,\"1\",[1],{\"a\":1},true,null]");
	invalid("{\"uniqueItems\":true}", "[1,2,1.0]", "/: uniqueItems: items 0 and 2 are equal");
	invalid("{\"uniqueItems\":true}", "[{\"a\":[1,{\"b\":null}]},{\"a\":[1.0,{\"b\":null}]}]",
	        "/: uniqueItems: items 0 and 1 are equal");
	valid("{\"uniqueItems\":true}", "[{\"a\":1},{\"a\":1,\"b\":2}]");
	valid("{\"uniqueItems\":true}", "[[],{}]");
	valid("{\"uniqueItems\":false}", "[1,1]");
}

static void test_objects(void)
{
	invalid(state_schema, "{}", "/: required: missing property 'count'");
	invalid("{\"required\":[\"a\",\"b\"]}", "{\"a\":1}", "/: required: missing property 'b'");
	valid("{\"required\":[\"a\"]}", "{\"a\":null}");
	valid("{\"required\":[\"a\"]}", "[]");
	invalid("{\"properties\":{\"a\":{\"required\":[\"b\"]}}}", "{\"a\":{}}",
	        "/a: required: missing property 'b'");
	invalid("{\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a\":1,\"b\":2}",
	        "/: additionalProperties: property 'b' is not allowed");
	invalid("{\"additionalProperties\":{\"type\":\"integer\"}}", "{\"a/b~c\":\"x\"}",
	        "/a~1b~0c: type: expected integer, got string");
	valid("{\"properties\":{\"a\":{\"type\":\"string\"}},\"additionalProperties\":{\"type\":"
	      "\"integer\"}}",
	      "{\"a\":\"x\",\"b\":2}");
	invalid("{\"minProperties\":2}", "{\"a\":1}",
	        "/: minProperties: object has 1 property, at least 2 required");
	invalid("{\"maxProperties\":1}", "{\"a\":1,\"b\":2}",
	        "/: maxProperties: object has 2 properties, at most 1 allowed");
	invalid("{\"properties\":{\"a\":false}}", "{\"a\":1}",
	        "/a: false: no value is allowed here (the schema is false)");
	invalid("{\"additionalProperties\":{\"properties\":{\"\":{\"type\":\"string\"}}}}",
	        "{\"x\":{\"\":1}}", "/x/: type: expected string, got integer");
}

static void test_values(void)
{
	valid("{\"enum\":[1,\"a\",null]}", "null");
	valid("{\"enum\":[1,\"a\",null]}", "1.0");
	invalid("{\"enum\":[1,\"a\",null]}", "\"b\"",
	        "/: enum: value is not one of [1,\"a\",null]");
	invalid("{\"enum\":[[1]]}", "[1,2]", "/: enum: value is not one of [[1]]");
	valid("{\"const\":{\"a\":[1,2.0]}}", "{\"a\":[1.0,2]}");
	invalid("{\"const\":{\"a\":[1,2]}}", "{\"a\":[1,2],\"b\":1}",
	        "/: const: value must be {\"a\":[1,2]}");
	invalid("{\"const\":{\"a\":1}}", "{\"b\":1}", "/: const: value must be {\"a\":1}");
	invalid("{\"const\":5}", "\"5\"", "/: const: value must be 5");
	valid("{\"const\":null}", "null");
	invalid("{\"const\":false}", "0", "/: const: value must be false");
	valid("{\"const\":9007199254740993}", "9007199254740993");
	invalid("{\"const\":9007199254740993}", "9007199254740992",
	        "/: const: value must be 9007199254740993");
}

static void test_combinators(void)
{
	invalid("{\"allOf\":[{\"type\":\"integer\"},{\"minimum\":5}]}", "3",
	        "/: minimum: 3 is less than 5");
	valid("{\"anyOf\":[{\"type\":\"string\"},{\"minimum\":5}]}", "\"x\"");
	invalid("{\"anyOf\":[{\"type\":\"string\"},{\"minimum\":5}]}", "3",
	        "/: anyOf: value matches none of the 2 subschemas (subschema 1: /: minimum: 3 is "
	        "less "
	        "than 5)");
	invalid("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"object\",\"required\":[\"a\"]}]}",
	        "{\"b\":{}}",
	        "/: anyOf: value matches none of the 2 subschemas (subschema 1: /: required: "
	        "missing "
	        "property 'a')");
	invalid("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", "1",
	        "/: oneOf: value matches subschemas 0 and 1, but must match exactly one");
	valid("{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":0}]}", "-1");
	invalid("{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"null\"}]}", "1",
	        "/: oneOf: value matches none of the 2 subschemas (subschema 0: /: type: expected "
	        "string, got integer)");
	invalid("{\"not\":{\"type\":\"string\"}}", "\"x\"",
	        "/: not: value matches the schema it must not match");
	valid("{\"not\":{\"type\":\"string\"}}", "1");
	invalid("{\"if\":{\"type\":\"integer\"},\"then\":{\"minimum\":0},\"else\":{\"type\":"
	        "\"string\"}}",
	        "-1", "/: minimum: -1 is less than 0");
	invalid("{\"if\":{\"type\":\"integer\"},\"then\":{\"minimum\":0},\"else\":{\"type\":"
	        "\"string\"}}",
	        "true", "/: type: expected string, got boolean");
	valid("{\"if\":{\"type\":\"integer\"},\"then\":{\"minimum\":0}}", "true");
	valid("{\"then\":false}", "1");
	valid("true", "{\"a\":1}");
	invalid("false", "null", "/: false: no value is allowed here (the schema is false)");
	valid("{}", "[1,{}]");
	/* A failure inside a tried subschema stays quiet when another one matches. */
	valid("{\"properties\":{\"a\":{\"anyOf\":[{\"properties\":{\"b\":{\"pattern\":\"^x\"}}},"
	      "{\"type\":\"object\"}]}}}",
	      "{\"a\":{\"b\":\"y\"}}");
}

static const char *const tree_schema =
	"{\"$defs\":{\"node\":{\"type\":\"object\",\"required\":[\"value\"],"
	"\"properties\":{\"value\":{\"type\":\"integer\"},"
	"\"children\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},"
	"\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}";

static void test_refs(void)
{
	valid(tree_schema, "{\"value\":1}");
	valid(tree_schema, "{\"value\":1,\"children\":[{\"value\":2,\"children\":[{\"value\":3}]},"
	                   "{\"value\":4}]}");
	invalid(tree_schema,
	        "{\"value\":1,\"children\":[{\"value\":2,\"children\":[{\"value\":\"x\"}]}]}",
	        "/children/0/children/0/value: type: expected integer, got string");
	invalid(tree_schema, "{\"value\":1,\"children\":[{\"value\":2,\"extra\":1}]}",
	        "/children/0: additionalProperties: property 'extra' is not allowed");
	valid("{\"properties\":{\"foo\":{\"$ref\":\"#\"}},\"additionalProperties\":false}",
	      "{\"foo\":{\"foo\":{}}}");
	invalid("{\"properties\":{\"foo\":{\"$ref\":\"#\"}},\"additionalProperties\":false}",
	        "{\"foo\":{\"bar\":1}}",
	        "/foo: additionalProperties: property 'bar' is not allowed");
	invalid("{\"properties\":{\"foo\":{\"type\":\"integer\"},\"bar\":{\"$ref\":\"#/properties/"
	        "foo\"}}}",
	        "{\"bar\":\"x\"}", "/bar: type: expected integer, got string");
	invalid("{\"definitions\":{\"a\":{\"type\":\"integer\"},\"b\":{\"$ref\":\"#/definitions/"
	        "a\"}},"
	        "\"$ref\":\"#/definitions/b\"}",
	        "\"x\"", "/: type: expected integer, got string");
	/* Escapes: ~1 is '/', ~0 is '~', %25 is '%'. */
	invalid("{\"$defs\":{\"a/b\":{\"type\":\"integer\"},\"c~d\":{\"type\":\"string\"},"
	        "\"e%f\":{\"type\":\"boolean\"}},\"properties\":{\"x\":{\"$ref\":\"#/$defs/a~1b\"},"
	        "\"y\":{\"$ref\":\"#/$defs/c~0d\"},\"z\":{\"$ref\":\"#/$defs/e%25f\"}}}",
	        "{\"x\":1,\"y\":\"s\",\"z\":1}", "/z: type: expected boolean, got integer");
	/* A pointer into a place that is not a schema of the tree is compiled on demand. */
	invalid("{\"enum\":[{\"type\":\"string\"},1],\"properties\":{\"x\":{\"$ref\":\"#/enum/"
	        "0\"}}}",
	        "{\"x\":1}", "/x: type: expected string, got integer");
	/* A $ref applies with its siblings (2020-12). */
	invalid("{\"$defs\":{\"a\":{\"type\":\"array\"}},\"properties\":{\"foo\":{\"$ref\":"
	        "\"#/$defs/a\",\"maxItems\":2}}}",
	        "{\"foo\":[1,2,3]}", "/foo: maxItems: array has 3 items, at most 2 allowed");
	valid("{\"$ref\":\"#/$defs/t\",\"$defs\":{\"t\":true}}", "1");
	invalid("{\"$ref\":\"#/$defs/f\",\"$defs\":{\"f\":false}}", "1",
	        "/: false: no value is allowed here (the schema is false)");
	valid("{\"prefixItems\":[{\"type\":\"integer\"},{\"$ref\":\"#/prefixItems/0\"}]}", "[1,2]");
	invalid("{\"prefixItems\":[{\"type\":\"integer\"},{\"$ref\":\"#/prefixItems/0\"}]}",
	        "[1,\"2\"]", "/1: type: expected integer, got string");
}

static void test_limits(void)
{
	const char *nested =
		"{\"$defs\":{\"n\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/n\"}}},"
		"\"$ref\":\"#/$defs/n\"}";
	struct sl_diag d;
	struct sl_schema *s;
	const char *got;
	char deep[400];
	int b1, b2, i;

	/* A cyclic value: the pointer of depth 256 keeps 56 steps at each end. */
	for (i = 0; i < 56; i++)
		memcpy(deep + 2 * i, "/0", 2);
	memcpy(deep + 112, "...", 3);
	for (i = 0; i < 56; i++)
		memcpy(deep + 115 + 2 * i, "/0", 2);
	strcpy(deep + 227, ": items: value nested deeper than 256 levels");
	check(nested, NULL, "local t = {} t[1] = t return t", deep);
	check(nested, NULL,
	      "local t = setmetatable({}, ...) for i = 1, 256 do t = {t} end return t", NULL);
	check(nested, NULL, "local t = {1} for i = 1, 256 do t = {t} end return t", deep);
	/* A $ref cycle that never descends into the value ends with an error, not a crash. */
	check("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},"
	      "\"$ref\":\"#/$defs/a\"}",
	      "1", NULL, "/: $ref: schema applied more than 1024 levels deep (a $ref cycle?)");
	check("{\"anyOf\":[{\"$ref\":\"#\"}]}", "1", NULL,
	      "/: $ref: schema applied more than 1024 levels deep (a $ref cycle?)");
	/* ... also under not, whose failure must not turn into a success. */
	check("{\"not\":{\"$ref\":\"#\"}}", "1", NULL,
	      "/: $ref: schema applied more than 1024 levels deep (a $ref cycle?)");
	/* A cyclic schema table (from Lua) is refused at compile time. */
	push_lua("local t = {} t.properties = {a = t} return t");
	sl_diag_init(&d);
	s = NULL;
	b1 = lua_gettop(L);
	sl_schema_compile(L, -1, "t", &s, &d);
	ok(!s && lua_gettop(L) == b1 && strstr(d.msg, "schema nested deeper than 256 levels"),
	   "cyclic schema table: %.80s...", d.msg);
	lua_pop(L, 1);
	/* A d of NULL: only the result. */
	s = compile(state_schema, &d, &b1);
	push_json("{}");
	b2 = sl_schema_validate(s, L, -1, NULL);
	lua_pop(L, 1);
	ok(b2 == SL_EINVAL && b1, "validate with a NULL diag");
	push_json("{\"count\":1}");
	got = validate_top(s, &d, &b2);
	ok(!got && b2, "validate again");
	sl_schema_free(s);
	sl_schema_free(NULL);
}

static void test_compile_errors(void)
{
	bad_schema("{\"properties\":{\"x\":{\"format\":\"date\"}}}",
	           "t: unsupported keyword 'format' at /properties/x");
	bad_schema("{\"patternProperties\":{\"^a\":{}}}",
	           "t: unsupported keyword 'patternProperties' at /");
	bad_schema("{\"properties\":{\"a\":{\"$ref\":\"http://example.com/s.json\"}}}",
	           "t: unsupported remote $ref 'http://example.com/s.json' at /properties/a (only "
	           "local "
	           "refs such as '#/$defs/name' are supported)");
	bad_schema("{\"$ref\":\"node\"}",
	           "t: unsupported remote $ref 'node' at / (only local refs such "
	           "as '#/$defs/name' are supported)");
	bad_schema("{\"$ref\":\"#foo\"}",
	           "t: unsupported $ref '#foo' at / (anchors are not supported; "
	           "use a JSON pointer such as '#/$defs/name')");
	bad_schema("{\"$defs\":{},\"items\":{\"$ref\":\"#/$defs/missing\"}}",
	           "t: $ref '#/$defs/missing' does not resolve at /items");
	bad_schema("{\"$ref\":\"#/a~2\"}", "t: $ref '#/a~2' is not a valid JSON pointer at /");
	bad_schema("{\"$ref\":\"#/a%2\"}", "t: $ref '#/a%2' has a malformed percent-escape at /");
	bad_schema("{\"properties\":{\"by\":{\"minimum\":\"1\"}}}",
	           "t: minimum must be a number at /properties/by");
	bad_schema("{\"minLength\":-1}", "t: minLength must be a non-negative integer at /");
	bad_schema("{\"maxItems\":1.5}", "t: maxItems must be a non-negative integer at /");
	bad_schema("{\"multipleOf\":0}", "t: multipleOf must be greater than 0 at /");
	bad_schema("{\"type\":\"int\"}",
	           "t: unknown type 'int' at / (expected null, boolean, object, "
	           "array, number, integer or string)");
	bad_schema("{\"type\":[]}", "t: type must not be an empty array at /");
	bad_schema("{\"required\":\"a\"}", "t: required must be an array of strings at /");
	bad_schema("{\"required\":[1]}", "t: required must be an array of strings at /");
	bad_schema("{\"properties\":[]}", "t: properties must be an object at /");
	bad_schema("{\"items\":[{}]}", "t: unsupported array form of items at / (draft 7; in "
	                               "2020-12 use prefixItems, and items for the rest)");
	bad_schema("{\"prefixItems\":[]}",
	           "t: prefixItems must be a non-empty array of schemas at /");
	bad_schema("{\"anyOf\":[{\"type\":1}]}",
	           "t: type must be a type name or an array of type names at /anyOf/0");
	bad_schema("{\"not\":1}",
	           "t: a schema must be an object or a boolean, got integer at /not");
	bad_schema("[]", "t: a schema must be an object or a boolean, got array at /");
	bad_schema("{\"pattern\":\"(\"}", "t: pattern '(' is not a valid regex (offset 1) at / "
	                                  "(missing closing parenthesis)");
	bad_schema("{\"uniqueItems\":1}", "t: uniqueItems must be a boolean at /");
	bad_schema("{\"properties\":{\"a\":{\"$id\":\"x\"}}}",
	           "t: unsupported keyword '$id' at /properties/a (allowed at the root only)");
	bad_schema("{\"$anchor\":\"a\"}", "t: unsupported keyword '$anchor' at /");
	bad_schema("{\"title\":1}", "t: title must be a string at /");
	bad_schema("{\"$defs\":{\"a\":{\"dependentRequired\":{}}}}",
	           "t: unsupported keyword 'dependentRequired' at /$defs/a");
	bad_schema("{\"$defs\":{\"a/b\":{\"contains\":{}}}}",
	           "t: unsupported keyword 'contains' at /$defs/a~1b");
	valid("{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"https://x/"
	      "y\","
	      "\"title\":\"t\",\"description\":\"d\",\"default\":1,\"examples\":[1],\"$comment\":"
	      "\"c\"}",
	      "1");
}

/* The typical state schema: a quick loop, reported, not asserted (ASan builds are
 * slow). */
static void bench_state(void)
{
	struct sl_diag d;
	struct sl_schema *s;
	struct timespec t0, t1;
	int i, b, rc = 0, n = 200000;
	double ns;

	s = compile(state_schema, &d, &b);
	push_json("{\"count\":41}");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++)
		rc |= sl_schema_validate(s, L, -1, &d);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	lua_pop(L, 1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / n;
	ok(rc == 0 && b, "typical state schema: %.0f ns per validation", ns);
	sl_schema_free(s);
}

int main(void)
{
	int base;

	plan(186);
	L = luaL_newstate();
	luaL_openlibs(L);
	base = lua_gettop(L);
	test_types();
	test_lua_values();
	test_numbers();
	test_strings();
	test_arrays();
	test_objects();
	test_values();
	test_combinators();
	test_refs();
	test_limits();
	test_compile_errors();
	bench_state();
	ok(lua_gettop(L) == base, "Lua stack back at its baseline");
	lua_close(L);
	return check_plan();
}
