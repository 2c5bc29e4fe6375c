/* sl_luaapi.h - what a processor script sees: the `ctx` table and its primitives
 * (DESIGN §4, §5).
 *
 * Every ctx primitive is one row of one table in sl_luaapi.c that says where it may
 * be called; one check (before the primitive runs) raises everywhere else:
 *
 *   primitive                    hook  reduce  prepare  work   needs the loop
 *   append                        x                      x
 *   fanOut                        x
 *   block                         x                             x (to run)
 *   background                    x              x              x (to run)
 *   log.debug/info/warn/error     x              x       x
 *   sleep, exec, http                                    x      x (registered by
 *                                                                sl_luaapi_add_work)
 *   db (a userdata, sl_dbapi)     x              x
 *
 * "hook" is processEvent or processEventBatch of a running batch, "work" a
 * ctx.block or ctx.background coroutine (sleep, exec and http also need it to be
 * yieldable). In reduce every primitive raises "<name> is not available in reduce",
 * and the per-batch fields (state, previousState, checkpointOffset, streamMaxOffset,
 * stream) are nil. ctx.db keeps its own check in sl_dbapi (bound only while the
 * processor's commit is open).
 *
 * ctx lives in the processor's registry (p->ref_ctx), is locked (no metamethods) and
 * only the engine writes it. Appends made by ctx.append are buffered in a struct
 * appends until their commit: the batch's (p->cur->ap), or, from work, p->wap (written
 * at once when no commit is open, else by sl_proc_flush).
 *
 * Threads: the loop thread only.
 */
#ifndef SL_LUAAPI_H
#define SL_LUAAPI_H

#include <lua.h>

#include "sl_error.h"

struct sl_proc;
struct run;
struct appends;

/* Builds ctx (every primitive that needs no loop, and ctx.processor) and stores it
 * in p->ref_ctx. [-0, +0, m] */
void sl_luaapi_make_ctx(lua_State *L, struct sl_proc *p);
/* Adds sleep, exec and http (the loop is set), in a protected call. Failures (out of
 * memory) go to d (NULL allowed). */
int sl_luaapi_add_work(struct sl_proc *p, struct sl_diag *d);
/* Adds ctx.db (p->db is set), in a protected call. */
int sl_luaapi_add_db(struct sl_proc *p, struct sl_diag *d);

/* Sets the per-batch fields of ctx for the hooks of r, from the stack (1 state,
 * 2 previousState). [-0, +0, m] */
void sl_luaapi_begin_hooks(lua_State *L, struct sl_proc *p, const struct run *r);
/* Clears the per-batch fields (while reduce runs, and for prepare). [-0, +0, -] */
void sl_luaapi_clear_batch(lua_State *L, struct sl_proc *p);

/* Writes ap's events in one store batch: in p's open commit, else on their own.
 * ap is kept (release it with sl_luaapi_appends_release). */
int sl_luaapi_appends_write(struct sl_proc *p, struct appends *ap, struct sl_diag *d);
/* Frees ap's events and arena; ap is empty and reusable afterwards. */
void sl_luaapi_appends_release(struct appends *ap);

#endif
