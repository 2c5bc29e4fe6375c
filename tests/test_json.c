/* test_json.c - unit tests of sl_json: strict checking and top-level member scanning. */
#include "sl_buf.h"
#include "sl_json.h"
#include "unit.h"

#include <stdlib.h>
#include <time.h>

/* One malformed document: its text (len 0 = strlen) and a part of the message. */
struct bad {
	const char *text;
	size_t len;
	const char *msg;
};

/* Every kind of malformed input; shared in spirit with test_luajson.c. yajl's notes:
 * a lone surrogate escape is not refused by yajl ("\ud800" decodes to "?", "\udc00" to
 * the invalid UTF-8 ED B0 80), nor is UTF-8 that is only structurally right, nor \v
 * and \f as whitespace: sl_json refuses them itself. */
static const struct bad bad_docs[] = {
	{"", 0, "malformed JSON: empty input"},
	{" \t\r\n ", 0, "malformed JSON: empty input"},
	{"{", 0, "malformed JSON at byte 1: premature EOF"},
	{"[1,]", 0, "malformed JSON at byte 4: unallowed token at this point in JSON text"},
	{"{\"a\":1,}", 0, "malformed JSON at byte 8: invalid object key (must be a string)"},
	{"{'a':1}", 0, "malformed JSON at byte 2: invalid char in json text"},
	{"{\"a\" 1}", 0, "object key and value must be separated by a colon"},
	{"tru", 0, "malformed JSON at byte 3: invalid string in json text"},
	{"nul", 0, "invalid string in json text"},
	{"01", 0, "malformed JSON at byte 2: trailing garbage"},
	{"1.", 0, "a digit is required after the decimal point"},
	{".5", 0, "malformed JSON at byte 1: invalid char in json text"},
	{"+1", 0, "invalid char in json text"},
	{"-", 0, "malformed number"},
	{"NaN", 0, "invalid char in json text"},
	{"Infinity", 0, "invalid char in json text"},
	{"[-Infinity]", 0, "malformed number"},
	{"\"abc", 0, "premature EOF"},
	{"\"\\x\"", 0, "malformed JSON at byte 2: inside a string, '\\' occurs before a character"},
	{"\"\\u12\"", 0, "malformed JSON at byte"},
	{"\"a\tb\"", 0, "invalid character inside string"},
	{"\"a\001b\"", 0, "invalid character inside string"},
	{"\"\xff\"", 0, "invalid bytes in UTF8 string"},
	{"\"\xe2\x82\"", 0, "invalid bytes in UTF8 string"},
	{"\"\xc0\x80\"", 0, "malformed JSON at byte 4: invalid UTF-8 in string"},
	{"\"\xed\xa0\x80\"", 0, "invalid UTF-8 in string"},
	{"\"\xf4\x90\x80\x80\"", 0, "invalid UTF-8 in string"},
	{"{\"\xc0\xaf\":1}", 0, "invalid UTF-8 in string"},
	{"{} x", 0, "malformed JSON at byte 4: trailing garbage"},
	{"1 2", 0, "trailing garbage"},
	{"{}{}", 0, "trailing garbage"},
	{"[1]]", 0, "trailing garbage"},
	{"{} // x", 0, "trailing garbage"},
	{"/* c */ {}", 0, "malformed JSON at byte 1: probable comment found in input text"},
	{"[1 /* c */]", 0, "malformed JSON at byte 4: probable comment"},
	{"\"\\ud800\"", 0, "malformed JSON at byte 2: lone surrogate in \\u escape"},
	{"\"ab\\udbff\"", 0, "malformed JSON at byte 4: lone surrogate"},
	{"\"\\udc00\"", 0, "lone surrogate"},
	{"\"\\ud800\\u0041\"", 0, "lone surrogate"},
	{"\"\\ude00\\ud83d\"", 0, "lone surrogate"},
	{"{\"\\ud800\":1}", 0, "lone surrogate"},
	{"\v1", 0, "malformed JSON at byte 1: invalid char in json text"},
	{"[1,\f2]", 0, "malformed JSON at byte 4: invalid char in json text"},
	{"[x,\f2]", 0, "malformed JSON at byte 2: invalid char in json text"},
	{"[\"a\v\"]", 0, "malformed JSON at byte 4: invalid char"},
	{"1e400", 0, "malformed JSON at byte 5: number out of range"},
	{"[-1e999]", 0, "number out of range"},
	{"{\"a\":1} \0", 9, "trailing garbage"},
	{"[\0]", 3, "invalid char in json text"},
};

static void test_malformed(void)
{
	struct sl_diag d;
	size_t i, len;
	int rc;

	for (i = 0; i < sizeof(bad_docs) / sizeof(bad_docs[0]); i++) {
		len = bad_docs[i].len ? bad_docs[i].len : strlen(bad_docs[i].text);
		sl_diag_init(&d);
		rc = sl_json_check(bad_docs[i].text, len, NULL, &d);
		ok(rc == SL_EINVAL && d.code == SL_EINVAL && strstr(d.msg, bad_docs[i].msg),
		   "refused: bad document %zu (%s)", i, d.msg);
	}
	sl_diag_init(&d);
	ok(sl_json_check(NULL, 0, NULL, &d) == SL_EINVAL &&
	           !strcmp(d.msg, "malformed JSON: empty input"),
	   "NULL text of length 0 is empty input");
	ok(sl_json_check("{", 1, NULL, NULL) == SL_EINVAL, "a NULL diag is allowed");
}

/* Checks a valid document and the kind it reports. */
static void check_kind(const char *text, enum sl_json_kind want)
{
	enum sl_json_kind kind = (enum sl_json_kind) - 1;
	struct sl_diag d;
	char shown[64];
	size_t i;
	int rc;

	snprintf(shown, sizeof(shown), "%s", text);
	for (i = 0; shown[i]; i++)
		if ((unsigned char)shown[i] < 0x20)
			shown[i] = ' '; /* keep the TAP line on one line */
	sl_diag_init(&d);
	rc = sl_json_check(text, strlen(text), &kind, &d);
	ok(rc == 0 && kind == want, "'%s' is valid and a %s (%s)", shown, sl_json_kind_name(want),
	   d.msg);
}

static void test_valid(void)
{
	check_kind("null", SL_JSON_NULL);
	check_kind(" true ", SL_JSON_BOOLEAN);
	check_kind("false", SL_JSON_BOOLEAN);
	check_kind("0", SL_JSON_INTEGER);
	check_kind("-0", SL_JSON_INTEGER);
	check_kind("9223372036854775807", SL_JSON_INTEGER);
	check_kind("-9223372036854775808", SL_JSON_INTEGER);
	check_kind("9223372036854775808", SL_JSON_FLOAT);
	check_kind("-9223372036854775809", SL_JSON_FLOAT);
	check_kind("1.0", SL_JSON_FLOAT);
	check_kind("1e2", SL_JSON_FLOAT);
	check_kind("1E-2", SL_JSON_FLOAT);
	check_kind("1e-400", SL_JSON_FLOAT);
	check_kind("\"\\u0000\\\\ud800\\\"\\/\\ud83d\\ude00\"", SL_JSON_STRING);
	check_kind("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"", SL_JSON_STRING);
	check_kind("[]", SL_JSON_ARRAY);
	check_kind("\r\n\t [ 1 , [ ] , { } ] \n", SL_JSON_ARRAY);
	check_kind("{}", SL_JSON_OBJECT);
	check_kind("{\"a\":{\"a\":1},\"b\":[{\"a\":1},{\"a\":2}],\"c\":{\"a\":{\"a\":null}}}",
	           SL_JSON_OBJECT);
	check_kind("{\"\":1,\"a\":2,\"\\u0061b\":3,\"ab\\u0000\":4}", SL_JSON_OBJECT);
	ok(sl_json_check("[1]", 3, NULL, NULL) == 0, "kind and diag may be NULL");
	ok(!strcmp(sl_json_kind_name(SL_JSON_FLOAT), "number") &&
	           !strcmp(sl_json_kind_name(SL_JSON_OBJECT), "object"),
	   "kind names");
}

/* Returns a malloc'd document: depth nested arrays (or objects {"k":...}). */
static char *nested(int depth, int objects)
{
	struct sl_buf b;
	int i;

	sl_buf_init(&b);
	for (i = 0; i < depth; i++)
		sl_buf_adds(&b, objects ? "{\"k\":" : "[");
	sl_buf_adds(&b, "1");
	for (i = 0; i < depth; i++)
		sl_buf_addc(&b, objects ? '}' : ']');
	return sl_buf_detach(&b, NULL);
}

static void test_depth(void)
{
	struct sl_diag d;
	char *t;

	t = nested(SL_JSON_MAX_DEPTH, 0);
	ok(sl_json_check(t, strlen(t), NULL, NULL) == 0, "256 nested arrays are accepted");
	free(t);
	t = nested(SL_JSON_MAX_DEPTH + 1, 0);
	sl_diag_init(&d);
	ok(sl_json_check(t, strlen(t), NULL, &d) == SL_EINVAL &&
	           !strcmp(d.msg, "nesting deeper than 256 levels"),
	   "257 nested arrays are refused (%s)", d.msg);
	free(t);
	t = nested(10000, 0);
	sl_diag_init(&d);
	ok(sl_json_check(t, strlen(t), NULL, &d) == SL_EINVAL && strstr(d.msg, "nesting"),
	   "10000 nested arrays are refused cleanly (%s)", d.msg);
	free(t);
	t = nested(10000, 1);
	sl_diag_init(&d);
	ok(sl_json_check(t, strlen(t), NULL, &d) == SL_EINVAL && strstr(d.msg, "nesting"),
	   "10000 nested objects are refused cleanly (%s)", d.msg);
	free(t);
	t = nested(SL_JSON_MAX_DEPTH, 1);
	ok(sl_json_check(t, strlen(t), NULL, NULL) == 0, "256 nested objects are accepted");
	free(t);
}

/* Returns a malloc'd object of n keys "k0".."k<n-1>"; key `dup` (if < n) repeats at the end. */
static char *many_keys(int n, int dup)
{
	struct sl_buf b;
	int i;

	sl_buf_init(&b);
	sl_buf_addc(&b, '{');
	for (i = 0; i < n; i++)
		sl_buf_addf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
	if (dup < n)
		sl_buf_addf(&b, ",\"k%d\":0", dup);
	sl_buf_addc(&b, '}');
	return sl_buf_detach(&b, NULL);
}

static void test_duplicates(void)
{
	struct sl_diag d;
	clock_t t0;
	char *t;

	sl_diag_init(&d);
	ok(sl_json_check("{\"a\":1,\"a\":2}", 13, NULL, &d) == SL_EINVAL &&
	           !strcmp(d.msg, "duplicate key 'a'"),
	   "a duplicate key is refused (%s)", d.msg);
	sl_diag_init(&d);
	ok(sl_json_check("[{\"x\":{\"b\":1,\"c\":[],\"b\":2}}]", 28, NULL, &d) == SL_EINVAL &&
	           !strcmp(d.msg, "duplicate key 'b'"),
	   "a duplicate key in a nested object is refused (%s)", d.msg);
	sl_diag_init(&d);
	ok(sl_json_check("{\"a\\u0062\":1,\"ab\":2}", 20, NULL, &d) == SL_EINVAL &&
	           !strcmp(d.msg, "duplicate key 'ab'"),
	   "keys are compared decoded (%s)", d.msg);
	ok(sl_json_check("{\"a\":1,\"a\\u0000\":2,\"A\":3}", 25, NULL, NULL) == 0,
	   "keys differing by a NUL or by case are distinct");
	t = many_keys(100000, 100000);
	t0 = clock();
	ok(sl_json_check(t, strlen(t), NULL, NULL) == 0, "100000 distinct keys are accepted");
	diag("100000 keys checked in %.3f s", (double)(clock() - t0) / CLOCKS_PER_SEC);
	free(t);
	t = many_keys(100000, 4242);
	sl_diag_init(&d);
	ok(sl_json_check(t, strlen(t), NULL, &d) == SL_EINVAL &&
	           !strcmp(d.msg, "duplicate key 'k4242'"),
	   "a duplicate among 100000 keys is found (%s)", d.msg);
	free(t);
	t = many_keys(9, 0);
	sl_diag_init(&d);
	ok(sl_json_check(t, strlen(t), NULL, &d) == SL_EINVAL && strstr(d.msg, "'k0'"),
	   "a duplicate among 10 keys (sorted path) is found (%s)", d.msg);
	free(t);
}

/* ---- sl_json_members ---- */

struct seen {
	int n;
	int stop_at; /* the callback fails on this member (1-based), 0 = never */
	char keys[16][16];
	enum sl_json_kind kinds[16];
	char text[16][64];
	size_t len[16];
	int64_t integer[16];
	double number[16];
};

static int collect(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct seen *s = ud;
	int i = s->n++;

	if (i < 16) {
		snprintf(s->keys[i], sizeof(s->keys[i]), "%.*s", (int)m->keylen, m->key);
		s->kinds[i] = m->kind;
		s->len[i] = m->len < 63 ? m->len : 63;
		memcpy(s->text[i], m->text, s->len[i]);
		s->text[i][s->len[i]] = '\0';
		s->integer[i] = m->integer;
		s->number[i] = m->number;
	}
	if (s->n == s->stop_at)
		return sl_diag_set(d, SL_EINVAL, "member %.*s: no thanks", (int)m->keylen, m->key);
	return 0;
}

static void test_members(void)
{
	static const char doc[] =
		" { \"s\" : \"a\\nb\\u0000c\" , \"i\" : -42 , \"f\" : 1.5e1, \"n\": "
		"null,\"t\":true,"
		"\"o\" :  { \"x\" : [1, {\"y\": \"}\"}] }  , \"a\" : [ 1 , [] ]\n,\"e\":{},"
		"\"k\\u00e9\":false, \"big\": 12345678901234567890 } ";
	struct seen s;
	struct sl_diag d;
	int rc;

	memset(&s, 0, sizeof(s));
	sl_diag_init(&d);
	rc = sl_json_members(doc, sizeof(doc) - 1, collect, &s, &d);
	ok(rc == 0 && s.n == 10, "members: all 10 reported (%d, %s)", s.n, d.msg);
	ok(!strcmp(s.keys[0], "s") && s.kinds[0] == SL_JSON_STRING && s.len[0] == 5 &&
	           !memcmp(s.text[0], "a\nb\0c", 5),
	   "members: a string is decoded, NUL included");
	ok(!strcmp(s.keys[1], "i") && s.kinds[1] == SL_JSON_INTEGER && s.integer[1] == -42 &&
	           s.number[1] == -42.0 && !strcmp(s.text[1], "-42"),
	   "members: an integer gives its value and literal");
	ok(!strcmp(s.keys[2], "f") && s.kinds[2] == SL_JSON_FLOAT && s.number[2] == 15.0 &&
	           !strcmp(s.text[2], "1.5e1"),
	   "members: a float gives its value and literal");
	ok(!strcmp(s.keys[3], "n") && s.kinds[3] == SL_JSON_NULL && !strcmp(s.text[3], "null"),
	   "members: null");
	ok(!strcmp(s.keys[4], "t") && s.kinds[4] == SL_JSON_BOOLEAN && s.integer[4] == 1 &&
	           !strcmp(s.text[4], "true"),
	   "members: true");
	ok(!strcmp(s.keys[5], "o") && s.kinds[5] == SL_JSON_OBJECT &&
	           !strcmp(s.text[5], "{ \"x\" : [1, {\"y\": \"}\"}] }"),
	   "members: a nested object's exact span, without the whitespace around it (%s)",
	   s.text[5]);
	ok(!strcmp(s.keys[6], "a") && s.kinds[6] == SL_JSON_ARRAY &&
	           !strcmp(s.text[6], "[ 1 , [] ]"),
	   "members: a nested array's exact span (%s)", s.text[6]);
	ok(!strcmp(s.keys[7], "e") && s.kinds[7] == SL_JSON_OBJECT && !strcmp(s.text[7], "{}"),
	   "members: an empty object's span, key after a nested object's keys");
	ok(!strcmp(s.keys[8], "k\xc3\xa9") && s.kinds[8] == SL_JSON_BOOLEAN && s.integer[8] == 0,
	   "members: an escaped key is decoded");
	ok(!strcmp(s.keys[9], "big") && s.kinds[9] == SL_JSON_FLOAT &&
	           s.number[9] == 12345678901234567890.0,
	   "members: an integer literal beyond int64 is a float");

	memset(&s, 0, sizeof(s));
	ok(sl_json_members("{}", 2, collect, &s, NULL) == 0 && s.n == 0, "members: {} has none");
}

static void check_not_object(const char *text, const char *want)
{
	struct seen s;
	struct sl_diag d;
	int rc;

	memset(&s, 0, sizeof(s));
	sl_diag_init(&d);
	rc = sl_json_members(text, strlen(text), collect, &s, &d);
	ok(rc == SL_EINVAL && s.n == 0 && !strcmp(d.msg, want), "members of '%s': %s", text, d.msg);
}

static void test_members_errors(void)
{
	struct seen s;
	struct sl_diag d;
	int rc;

	check_not_object("[1,2]", "must be a JSON object, got array");
	check_not_object(" \"x\"", "must be a JSON object, got string");
	check_not_object("42", "must be a JSON object, got integer");
	check_not_object("4.2", "must be a JSON object, got number");
	check_not_object("null", "must be a JSON object, got null");
	check_not_object("true", "must be a JSON object, got boolean");
	check_not_object("", "malformed JSON: empty input");

	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	sl_diag_init(&d);
	rc = sl_json_members("{\"a\":1,\"b\":{\"c\":2},\"d\":3}", 25, collect, &s, &d);
	ok(rc == SL_EINVAL && s.n == 2 && !strcmp(d.msg, "member b: no thanks"),
	   "a callback error stops the scan and is returned (%d calls, %s)", s.n, d.msg);

	memset(&s, 0, sizeof(s));
	sl_diag_init(&d);
	rc = sl_json_members("{\"a\":1,\"b\":2,\"a\":3}", 19, collect, &s, &d);
	ok(rc == SL_EINVAL && !strcmp(d.msg, "duplicate key 'a'"), "members: duplicate key (%s)",
	   d.msg);

	memset(&s, 0, sizeof(s));
	sl_diag_init(&d);
	rc = sl_json_members("{\"a\":1,\"b\":[1,}", 15, collect, &s, &d);
	ok(rc == SL_EINVAL && s.n == 1 && strstr(d.msg, "malformed JSON at byte 15"),
	   "members: malformed after a reported member is an error (%s)", d.msg);
}

int main(void)
{
	plan(49 + 2 + 22 + 5 + 7 + 12 + 10);
	test_malformed();
	test_valid();
	test_depth();
	test_duplicates();
	test_members();
	test_members_errors();
	return check_plan();
}
