/* sl_strmatch.h - Lua 5.4's string pattern functions with a step budget.
 *
 * string.find, string.match, string.gmatch and string.gsub run as one C call each:
 * a pattern with catastrophic backtracking ("(.-)(.-)(.-)(.-)(.-)(.-)x" on a long
 * subject) never returns to the interpreter, so no instruction hook can stop it.
 * These are the same functions (the matcher of Lua 5.4's lstrlib.c, same semantics,
 * same error messages) with a step counter: every few hundred steps of the matcher,
 * of a plain search or of a %b scan, they call sl_sandbox_tick(), which raises the
 * processor's budget error once a budget (instructions or wall clock) is exceeded.
 * Outside a budgeted hook call the tick does nothing, so the functions behave like
 * the stock ones.
 *
 * Each is a lua_CFunction with the stock signature and stack effects; the sandbox
 * (sl_sandbox.c) puts them in the string table its scripts see.
 */
#ifndef SL_STRMATCH_H
#define SL_STRMATCH_H

#include <lua.h>

/* string.find(s, pattern [, init [, plain]]) [-(2|3|4), +(1|2+captures), v] */
int sl_strmatch_find(lua_State *L);
/* string.match(s, pattern [, init]) [-(2|3), +(1|captures), v] */
int sl_strmatch_match(lua_State *L);
/* string.gmatch(s, pattern [, init]) [-(2|3), +1, m] */
int sl_strmatch_gmatch(lua_State *L);
/* string.gsub(s, pattern, repl [, n]) [-(3|4), +2, e] */
int sl_strmatch_gsub(lua_State *L);

#endif
