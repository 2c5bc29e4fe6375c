/* sl_luajson.h - JSON <-> Lua conversion in C, exact for 64-bit integers.
 *
 * Decoding (a recursive-descent fast path for the common documents, else yajl
 * callbacks pushing straight onto the Lua stack; both give the same value):
 *   - objects become tables; arrays become tables whose metatable is the shared
 *     array tag (sl_lj_pusharraymt), so [] and {} round-trip;
 *   - integers that fit int64 become Lua integers, all other numbers floats;
 *   - null becomes the null sentinel: a light userdata holding NULL, which is also
 *     lua-cjson's cjson.null, so the two compare equal;
 *   - nesting deeper than SL_JSON_MAX_DEPTH is refused with an error, never a crash;
 *   - with SL_LJ_STRICT, duplicate keys are refused (stored JSON was checked when it
 *     was appended, so the read path leaves the flag off);
 *   - tables are written with raw access only;
 *   - the grammar and its limits are sl_json's (sl_json.h): what sl_json_check
 *     refuses, sl_lj_decode refuses with the same message.
 *
 * Encoding (Lua value -> compact JSON text):
 *   - raw access only: no metamethod of user tables runs;
 *   - a table carrying the array tag is an array of its raw length (t[1..#t]);
 *     an untagged table whose keys are exactly 1..n (n > 0) is an array; any other
 *     table is an object, all of whose keys must be strings; an empty untagged
 *     table is {};
 *   - object keys are written in byte order of the key (sorted), so equal values
 *     always give equal text;
 *   - integers are written exactly; floats with the shortest "%.17g" form that reads
 *     back to the same double, with ".0" added when the text would read as an
 *     integer (so 1.0 stays a float); NaN and infinities are refused;
 *   - the null sentinel becomes null, and so does nil (the value itself, or a hole
 *     t[i] == nil below the raw length of a tagged array); booleans and strings as
 *     expected (strings and keys must be valid UTF-8); functions, userdata other
 *     than the sentinel, and threads are refused;
 *   - an untagged table with integer keys that are not exactly 1..n (sparse, or
 *     starting at 0), with both integer and string keys, or with keys of another
 *     type is refused: it has no faithful JSON form;
 *   - cycles and nesting deeper than SL_JSON_MAX_DEPTH are refused;
 *   - errors name the path of the offending value, e.g.
 *     "payload.items[3]: cannot encode a function as JSON" (indices 1-based).
 *
 * Lua errors: both directions allocate Lua objects and may raise on memory errors,
 * so call them only inside a protected call. They never raise for bad JSON or an
 * unencodable value: those are reported through the return code and the diag.
 * The yajl handle lives in a userdata with __gc, so a raise mid-parse leaks nothing.
 * One such userdata is cached per state (registry, private key) and reused; a fresh
 * yajl handle is allocated for each parse and freed at its end.
 */
#ifndef SL_LUAJSON_H
#define SL_LUAJSON_H

#include <stddef.h>

#include <lua.h>

#include "sl_buf.h"
#include "sl_error.h"

#define SL_LJ_STRICT 1 /* decode: refuse duplicate keys */
#define SL_LJ_SLOW 2   /* decode: the yajl path only (tests compare the two paths) */

/* Pushes the decoded value of text[0..len). Returns 0 with the value pushed, or
 * SL_EINVAL / SL_ENOMEM with nothing pushed and d filled.
 * [-0, +(1|0), m] */
int sl_lj_decode(lua_State *L, const char *text, size_t len, int flags, struct sl_diag *d);

/* Appends the JSON text of the value at `idx` to b. `path` names the value in error
 * messages ("payload", "state"). Returns 0, SL_EINVAL (d filled) or SL_ENOMEM; on
 * error b may hold a partial text, which the caller discards.
 * [-0, +0, m] */
int sl_lj_encode(lua_State *L, int idx, const char *path, struct sl_buf *b, struct sl_diag *d);

/* Pushes the shared array-tag metatable (creating it once per state).
 * [-0, +1, m] */
void sl_lj_pusharraymt(lua_State *L);

/* Returns 1 if the value at idx is a table carrying the array tag. [-0, +0, -] */
int sl_lj_isarray(lua_State *L, int idx);

/* Pushes the null sentinel. [-0, +1, -] */
void sl_lj_pushnull(lua_State *L);

/* Returns 1 if the value at idx is the null sentinel. [-0, +0, -] */
int sl_lj_isnull(lua_State *L, int idx);

#endif
