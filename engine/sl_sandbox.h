/* sl_sandbox.h - the sandbox processor scripts run in: an allow-listed environment,
 * a counting allocator, and per-call budgets (DESIGN §7 "Sandbox").
 *
 * A sandboxed lua_State belongs to one processor. It is created here, with:
 *
 *   - a counting allocator: every byte the state holds counts against the memory
 *     budget; beyond it allocations fail (Lua raises "not enough memory", after an
 *     emergency collection) and the failure is reported as the memory budget;
 *   - only the base, package, string, table, math and utf8 libraries opened (no
 *     io, os, debug, coroutine); the string table has no `dump`, its pattern
 *     functions are the budgeted ones of sl_strmatch.h, string.rep, table.sort and
 *     the loops of table.insert/remove/move/concat count steps, and the functions
 *     that scan their arguments in C check the budgets when called
 *     (sl_sandbox_lib.c); the string metatable is locked;
 *   - an environment for scripts (sl_sandbox_pushenv): reads reach an allow-list
 *     of globals; writing any global raises "<file>:<line>: assignment to undeclared
 *     global 'x'"; the library tables scripts see are read-only proxies. load()
 *     is Lua's (strings or reader functions, errors returned) with text chunks only
 *     (mode "t" by default, binary chunks refused in any mode), into a sandbox
 *     environment unless given one, require() reaches cjson (a
 *     read-only proxy with encode, decode and null, its settings locked) and the
 *     engine's own pure-Lua modules sluice.* (sluice.core and sluice.testing
 *     excepted); setmetatable refuses a __gc field (a finalizer would run with the
 *     hooks off); pcall and xpcall rethrow budget errors and never run a message
 *     handler for them; collectgarbage offers "count" only.
 *
 * Budgets. A hook call (reduce, processEvent, processEventBatch, prepare, the load
 * of a script, one resume of a work coroutine) runs between sl_sandbox_enter and
 * sl_sandbox_leave. The first enter (depth 0) arms a fresh budget: the instruction
 * count and the wall clock start from zero (the count within one hook period).
 * Nested enters (a work coroutine started from a hook, processEvent under
 * ctx.fanOut) share the budget of the outermost call. While armed:
 *   - the count hook fires every few thousand instructions, adds them up and checks
 *     the wall clock; the allocator also checks the wall clock every few hundred
 *     allocations, and long C loops check both (sl_sandbox_tick);
 *   - once a budget is exceeded the state is "tripped": the hook is re-armed to
 *     fire at every instruction and raises the budget error each time, so neither
 *     pcall nor a __close handler can carry on; allocations fail too, so a long C
 *     call that allocates stops; the sandbox's pcall/xpcall rethrow.
 * The budget error is the string "processor '<name>' exceeded its <instruction|
 * memory|wallclock> budget" (sl_sandbox_message); after the protected call that ran
 * the hook returns, sl_sandbox_exceeded() says whether a budget caused its failure.
 * sl_sandbox_leave restores the depth of its mark, so an error that unwound past
 * inner leaves is settled by the outer one; at depth 0 the tripped state is cleared.
 * The count hook stays installed between calls (it does nothing at depth 0), so a
 * call costs a few stores and a read of the coarse clock.
 *
 * Reduce. Between sl_sandbox_reducing(L, 1) and (L, 0) math.random,
 * math.randomseed and collectgarbage("count") raise, and so do ctx functions (they
 * call sl_sandbox_no_reduce). The mark of enter/leave carries the flag, so an error
 * out of reduce clears it too.
 *
 * Threads: a sandboxed state and all its coroutines are used by one thread at a
 * time (the loop thread). Nothing here is shared between states.
 */
#ifndef SL_SANDBOX_H
#define SL_SANDBOX_H

#include <stddef.h>

#include <lua.h>

#include "sl_error.h"

/* A processor's budgets (DESIGN §6 `limits`). Zero disables a budget. */
struct sl_limits {
	double instructions; /* per hook call */
	double memory;       /* bytes held by the whole lua_State */
	double wallclock_ms; /* per hook call */
};

enum sl_budget {
	SL_BUDGET_NONE = 0,
	SL_BUDGET_INSTRUCTIONS,
	SL_BUDGET_MEMORY,
	SL_BUDGET_WALLCLOCK,
};

/* ---- the state ---------------------------------------------------------------- */

/* Creates the sandboxed state of processor `name` (copied) with budgets `lim`.
 * Returns 0 with *out set, or SL_ENOMEM with d filled (the memory budget is too
 * small for the libraries, or the system is out of memory). */
int sl_sandbox_new(lua_State **out, const char *name, const struct sl_limits *lim,
                   struct sl_diag *d);
/* Closes a state made by sl_sandbox_new and frees its sandbox. NULL is a no-op. */
void sl_sandbox_close(lua_State *L);

/* Pushes a fresh script environment (see above). [-0, +1, m] */
void sl_sandbox_pushenv(lua_State *L);

/* Loads a script file as text (never a binary chunk) with a fresh environment.
 * Returns a lua_load status with the chunk, or the error message, on top.
 * [-0, +1, m] */
int sl_sandbox_loadfile(lua_State *L, const char *file);

/* Gives the table at idx (which has no metatable) a locked empty one, so scripts
 * cannot give it metamethods (the engine reads and writes it, ctx for one) nor
 * rawset it. [-0, +0, m] */
void sl_sandbox_lock(lua_State *L, int idx);

/* The state's budgets (zeros for a state that is not sandboxed). */
struct sl_limits sl_sandbox_limits(lua_State *L);
/* Bytes the state holds now. */
size_t sl_sandbox_memory(lua_State *L);

/* ---- budgets ---------------------------------------------------------------------- */

/* What sl_sandbox_leave restores. */
struct sl_sbmark {
	int depth;
	int reducing;
	lua_State *cur;
};

/* The current mark, without arming anything (for a caller that runs several hook
 * calls in one protected call and settles them after it). [-0, +0, -] */
struct sl_sbmark sl_sandbox_mark(lua_State *L);
/* Starts a budgeted call on thread L (the state or one of its coroutines). */
struct sl_sbmark sl_sandbox_enter(lua_State *L);
/* Ends it: restores the mark; at depth 0 removes the hooks and clears the budget. */
void sl_sandbox_leave(lua_State *L, struct sl_sbmark m);

/* After a protected call on L returned `status`: the budget that made it fail, or
 * SL_BUDGET_NONE (also for status LUA_OK). Call it before sl_sandbox_leave. */
enum sl_budget sl_sandbox_exceeded(lua_State *L, int status);
/* "processor '<name>' exceeded its <kind> budget" (owned by the sandbox). */
const char *sl_sandbox_message(lua_State *L, enum sl_budget b);
/* Whether msg starts like a budget error of some processor. */
int sl_sandbox_is_budget_message(const char *msg);
/* Pushes the budget error of kind b (no allocation). [-0, +1, -] */
void sl_sandbox_pushmessage(lua_State *L, enum sl_budget b);

/* Counts n steps of a long C loop against the instruction budget and checks the
 * wall clock; raises the budget error once a budget is exceeded. Does nothing when
 * no budget is armed or L is not sandboxed. [-0, +0, v] */
void sl_sandbox_tick(lua_State *L, unsigned n);
/* The same check without raising, for callbacks that cannot raise (SQLite's
 * progress handler): nonzero once a budget is exceeded. [-0, +0, -] */
int sl_sandbox_poll(lua_State *L);
/* Raises the budget error of the tripped budget. [-0, +0, v] */
int sl_sandbox_raise(lua_State *L);

/* An early stop asked for from outside (the console's Ctrl-C): while a budget is
 * armed, fn(ud) is asked every 50 ms (from the count hook, the allocator and the
 * ticks: it must not touch Lua); nonzero trips the wall-clock budget. NULL removes
 * it. */
void sl_sandbox_set_stop(lua_State *L, int (*fn)(void *ud), void *ud);

/* ---- reduce ----------------------------------------------------------------------- */

void sl_sandbox_reducing(lua_State *L, int on);
int sl_sandbox_in_reduce(lua_State *L);
/* Raises "<what> is not available in reduce" while reduce runs. [-0, +0, v] */
void sl_sandbox_no_reduce(lua_State *L, const char *what);

/* ---- sizes and strict mode ----------------------------------------------------------- */

/* Walks the value at idx (raw access, at most `depth` levels) and estimates the
 * size of its JSON text, stopping at cap; shared subtables count every time they
 * are reached, so a small graph of shared tables that would encode to gigabytes is
 * caught before an encoder spends the time. Ticks the budget as it goes. Returns 0,
 * or raises "<what> is too large (more than <cap> bytes as JSON)" /
 * "<what> is nested too deeply". [-0, +0, v] */
void sl_sandbox_check_size(lua_State *L, int idx, size_t cap, int depth, const char *what);

/* Pushes a deep snapshot of the value at idx (tables copied, sharing and cycles
 * kept; each copy remembers its original and its metatable). [-0, +1, m] */
void sl_sandbox_snapshot(lua_State *L, int idx);
/* Compares the value at idx with a snapshot of it at snap. Returns 0 when nothing
 * changed, else 1 with "<root>.path.to.field was changed|added|removed" in out.
 * [-0, +0, m] */
int sl_sandbox_diff(lua_State *L, int idx, int snap, const char *root, char *out, size_t n);
/* Compares two values structurally (tables by content, raw access). Returns 0 when
 * equal, else 1 with the path of the first difference under root in out. [-0, +0, m] */
int sl_sandbox_compare(lua_State *L, int a, int b, const char *root, char *out, size_t n);

#endif
