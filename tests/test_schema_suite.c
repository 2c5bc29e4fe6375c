/* test_schema_suite.c - runs the official JSON-Schema-Test-Suite (Debian's
 * json-schema-test-suite, draft7 directory) against sl_schema, one TAP line per file.
 *
 * Only files of keywords whose meaning is the same in 2020-12 are run. A case is
 * skipped, and said so, when its schema does not compile because it uses something
 * sl_schema refuses as unsupported (another keyword, a remote ref, the draft 7 array
 * form of items, $id below the root), or when it relies on draft 7's "$ref overrides
 * its siblings" (a $ref next to a validation keyword: in 2020-12 both apply). Every
 * other case must compile and give the expected result for every test; one failure
 * fails the file and the run. The suite directory is $SL_SCHEMA_SUITE, else Debian's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sl_luajson.h"
#include "sl_schema.h"
#include "unit.h"

#define SUITE_DEFAULT "/usr/share/json-schema-test-suite/tests/draft7"

static const char *const files[] = {
	"type",
	"properties",
	"required",
	"additionalProperties",
	"items",
	"enum",
	"const",
	"minimum",
	"maximum",
	"exclusiveMinimum",
	"exclusiveMaximum",
	"multipleOf",
	"minLength",
	"maxLength",
	"pattern",
	"minItems",
	"maxItems",
	"uniqueItems",
	"minProperties",
	"maxProperties",
	"allOf",
	"anyOf",
	"oneOf",
	"not",
	"if-then-else",
	"ref",
	"boolean_schema",
};

#define NFILES (sizeof(files) / sizeof(files[0]))

static lua_State *L;
static int passed, skipped;
static char skipped_list[8192];

/* Reads a whole file; NULL if it cannot. The caller frees. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = '\0';
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* Pushes t[key] (raw). [-0, +1, m] */
static int getkey(int t, const char *key)
{
	lua_pushstring(L, key);
	return lua_rawget(L, t);
}

/* Keys that may stand next to $ref with the same meaning in draft 7 and 2020-12. */
static int ref_neutral(const char *k)
{
	static const char *const ok_keys[] = {"$ref",        "$defs",    "definitions", "title",
	                                      "description", "$comment", "$id",         "$schema",
	                                      "default",     "examples"};
	size_t i;

	for (i = 0; i < sizeof(ok_keys) / sizeof(ok_keys[0]); i++)
		if (!strcmp(k, ok_keys[i]))
			return 1;
	return 0;
}

/* 1 if some object of the schema at idx has a string $ref next to a keyword that
 * draft 7 would ignore and 2020-12 applies. [-0, +0, m] */
static int ref_siblings(int idx, int depth)
{
	int found = 0, isref;

	if (lua_type(L, idx) != LUA_TTABLE || depth > 64)
		return 0;
	luaL_checkstack(L, 4, "ref_siblings");
	isref = getkey(idx, "$ref") == LUA_TSTRING;
	lua_pop(L, 1);
	lua_pushnil(L);
	while (!found && lua_next(L, idx)) {
		if (isref && lua_type(L, -2) == LUA_TSTRING && !ref_neutral(lua_tostring(L, -2)))
			found = 1;
		else
			found = ref_siblings(lua_gettop(L), depth + 1);
		lua_pop(L, found ? 2 : 1);
	}
	return found;
}

static void skip_case(const char *file, const char *desc, const char *why)
{
	size_t n = strlen(skipped_list);

	skipped++;
	diag("skip %s.json: %s: %s", file, desc, why);
	snprintf(skipped_list + n, sizeof(skipped_list) - n, "%s%s.json '%s'", n ? ", " : "", file,
	         desc);
}

/* Runs the tests of one case whose schema compiled. Returns the failures. [-0, +0, m] */
static int run_tests(const char *file, const char *desc, int cs, const struct sl_schema *s)
{
	struct sl_diag d;
	int tests, t, n, i, fails = 0, rc, want;

	getkey(cs, "tests");
	tests = lua_gettop(L);
	n = (int)lua_rawlen(L, tests);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, tests, i);
		t = lua_gettop(L);
		getkey(t, "valid");
		want = lua_toboolean(L, -1);
		getkey(t, "data");
		sl_diag_init(&d);
		rc = sl_schema_validate(s, L, -1, &d);
		if ((rc == 0) != want || (rc != 0 && rc != SL_EINVAL)) {
			fails++;
			getkey(t, "description");
			diag("FAIL %s.json: %s: %s: expected %s, got %s", file, desc,
			     lua_tostring(L, -1), want ? "valid" : "invalid",
			     rc ? sl_diag_msg(&d) : "valid");
			lua_pop(L, 1);
		} else {
			passed++;
		}
		lua_pop(L, 3);
	}
	lua_pop(L, 1);
	return fails;
}

/* One case: compile its schema, run its tests. Returns the failures. [-0, +0, m] */
static int run_case(const char *file, int cs, int *ncases)
{
	struct sl_schema *s = NULL;
	struct sl_diag d;
	char where[512], desc[256];
	size_t n;
	int fails = 0;

	getkey(cs, "description");
	snprintf(desc, sizeof(desc), "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
	lua_pop(L, 1);
	snprintf(where, sizeof(where), "%s.json: %s", file, desc);
	getkey(cs, "schema");
	sl_diag_init(&d);
	if (ref_siblings(lua_gettop(L), 0)) {
		skip_case(file, desc, "relies on draft 7's \"$ref overrides its siblings\"");
	} else if (sl_schema_compile(L, -1, where, &s, &d) != 0) {
		if (strstr(d.msg, "unsupported")) {
			/* The message starts with where: keep only the reason. */
			n = strncmp(d.msg, where, strlen(where)) ? 0 : strlen(where) + 2;
			skip_case(file, desc, d.msg + n);
		} else {
			diag("FAIL %s: does not compile: %s", where, d.msg);
			fails++;
		}
	} else {
		(*ncases)++;
		fails = run_tests(file, desc, cs, s);
	}
	lua_pop(L, 1);
	sl_schema_free(s);
	return fails;
}

/* [-0, +0, m] */
static void run_file(const char *dir, const char *file)
{
	struct sl_diag d;
	char path[1024];
	char *text;
	size_t len = 0;
	int cases, i, n, fails = 0, ran = 0, before = passed, skipped_before = skipped;
	int top = lua_gettop(L);

	snprintf(path, sizeof(path), "%s/%s.json", dir, file);
	if (!(text = slurp(path, &len))) {
		ok(0, "%s.json: cannot read %s", file, path);
		return;
	}
	sl_diag_init(&d);
	if (sl_lj_decode(L, text, len, 0, &d) != 0) {
		free(text);
		ok(0, "%s.json: %s", file, d.msg);
		return;
	}
	free(text);
	cases = lua_gettop(L);
	n = (int)lua_rawlen(L, cases);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, cases, i);
		fails += run_case(file, lua_gettop(L), &ran);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	ok(!fails && lua_gettop(L) == top,
	   "%s.json: %d of %d cases run, %d tests passed, %d cases skipped", file, ran, n,
	   passed - before, skipped - skipped_before);
}

int main(void)
{
	const char *dir = getenv("SL_SCHEMA_SUITE");
	size_t i;

	if (!dir || !*dir)
		dir = SUITE_DEFAULT;
	plan((int)NFILES);
	L = luaL_newstate();
	for (i = 0; i < NFILES; i++)
		run_file(dir, files[i]);
	printf("# passed %d, skipped %d (%s)\n", passed, skipped, skipped_list);
	lua_close(L);
	return check_plan();
}
