/* sl_schema.h - a JSON Schema (2020-12) validator for decoded JSON held in Lua values.
 *
 * A schema is compiled once, from a decoded JSON value (sl_luajson.h), into a flat C
 * structure: keyword flags, numbers, sorted property names, C copies of enum/const
 * values, precompiled PCRE2 regexes, and subschemas as indices into one node array
 * ($ref is just an index, so recursive schemas cost nothing to compile). The compiled
 * schema holds no Lua reference: it is immutable, may be shared between threads and
 * used with any lua_State.
 *
 * Keywords. Supported, with 2020-12 meaning: type, properties, required,
 * additionalProperties, items (the schema for the items after prefixItems),
 * prefixItems, enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
 * multipleOf, minLength, maxLength, pattern, minItems, maxItems, uniqueItems,
 * minProperties, maxProperties, allOf, anyOf, oneOf, not, if/then/else, $ref, $defs,
 * and the boolean schemas true and false. `definitions` (draft 7) is accepted as a
 * container of schemas like $defs. Accepted and ignored: title, description, default,
 * examples, $comment, $schema, and $id at the root only. Every other keyword is a
 * compile error ("unsupported keyword 'format' at /properties/x"), never silently
 * ignored; so are malformed keyword values ("minimum must be a number at
 * /properties/by") and the draft 7 array form of items.
 *
 * $ref is local only: "#", "#/$defs/name" or any JSON pointer into the document
 * given to sl_schema_compile ("#/properties/foo", "#/definitions/a~1b", with ~0/~1
 * escapes and percent-decoding). Remote refs, relative URIs and anchors ("#foo") are
 * compile errors. A $ref applies together with its sibling keywords (2020-12).
 *
 * Regexes (pattern) are PCRE2 with PCRE2_UTF and PCRE2_DOLLAR_ENDONLY, searched
 * unanchored, as ECMA-262 would: \d and \w are ASCII. String lengths count Unicode
 * code points of the UTF-8 text.
 *
 * How Lua values are read, exactly as sl_lj_encode writes them: nil and the null
 * sentinel are null; a table carrying the array tag is an array of its raw length;
 * an untagged table whose keys are exactly 1..n (n > 0) is an array; any other table,
 * an empty untagged one included, is an object; Lua integers and floats are numbers
 * (an integer, or a finite float without fractional part, is also an "integer");
 * strings and booleans are themselves; functions, userdata and threads are not JSON
 * and fail every type check. 1 and 1.0 are equal for const, enum and uniqueItems.
 * All access is raw: no metamethod runs.
 *
 * Error messages of sl_schema_validate read "<pointer>: <keyword>: <message>":
 *   "/by: minimum: 0 is less than 1"
 *   "/: required: missing property 'count'"
 *   "/items/2: type: expected integer, got string"
 * The pointer names the offending value in the instance. It is an RFC 6901 JSON
 * pointer (0-based array indices, "~" written "~0" and "/" written "~1"), except that
 * the root, which RFC 6901 writes as the empty string, is written "/" so it stays
 * visible. (A member named "" directly under the root is therefore also "/".) Only
 * the first error found is reported; for anyOf and oneOf the message names the
 * subschema whose error looks most relevant.
 *
 * Limits: instances nested deeper than SL_JSON_MAX_DEPTH (256) levels, and schema
 * recursion deeper than SL_SCHEMA_MAX_NEST applications at one point of the
 * instance chain (a $ref cycle), fail validation with a message, never crash.
 */
#ifndef SL_SCHEMA_H
#define SL_SCHEMA_H

#include <lua.h>

#include "sl_error.h"

/* How many schema applications may be nested in one validation (each instance
 * level, $ref, allOf, anyOf, ... counts one). */
#define SL_SCHEMA_MAX_NEST 1024

struct sl_schema;

/* Compiles the schema at stack index idx (a decoded JSON value: a table or a
 * boolean) into *out (owned by the caller, freed with sl_schema_free). `where`
 * (borrowed, may be NULL) prefixes error messages, e.g.
 * "schemas/counter.contract.json: events.counter/incremented". Returns 0, SL_EINVAL
 * (d: "<where>: unsupported keyword 'format' at /properties/x") or SL_ENOMEM; *out
 * is NULL on error. Lua memory errors are caught inside (the work runs in a
 * protected call), so this never raises.
 * [-0, +0, -] */
int sl_schema_compile(lua_State *L, int idx, const char *where, struct sl_schema **out,
                      struct sl_diag *d);

/* Frees a compiled schema; NULL is a no-op. */
void sl_schema_free(struct sl_schema *s);

/* Validates the Lua value at idx against s (borrowed). Returns 0 if valid, else
 * SL_EINVAL with d->msg "<pointer>: <keyword>: <message>" (d may be NULL), or
 * SL_ENOMEM. Allocates nothing for valid data beyond the strings Lua interns for
 * property-name look-ups (and, once per lua_State, a PCRE2 match block kept in the
 * registry). May raise a Lua memory error: call it inside a protected call.
 * [-0, +0, m] */
int sl_schema_validate(const struct sl_schema *s, lua_State *L, int idx, struct sl_diag *d);

#endif
