/* sl_work.h - blocking and background work: Lua coroutines on the engine's libuv
 * loop (DESIGN §4, §5).
 *
 * ctx.block(fn, ...) and ctx.background(fn, ...) start fn as a coroutine at once.
 * Inside it, ctx.sleep(ms), ctx.exec{...} and ctx.http{...} yield to the loop instead
 * of blocking the engine, and resume the coroutine when their result is ready. A work
 * item ends when its coroutine returns or raises; `done` is then called on the loop
 * thread (possibly before sl_work_start returns, when fn never yields).
 *
 * ctx.exec{argv..., stdin=, timeout=, env=} runs a program with an argument vector
 * (never a shell), captures stdout and stderr up to SL_EXEC_CAP bytes each (beyond
 * that output is dropped and `truncated` is true) and kills the child with SIGKILL at
 * the timeout. It returns {code, signal, stdout, stderr, truncated} or nil, message.
 * ctx.http{method=, url=, headers=, body=, timeout=} (libcurl's multi interface driven
 * by the loop; http and https only) returns {status, headers, body} or nil, message.
 * Timeouts are milliseconds or strings like "10s". Outside work these functions raise.
 *
 * Threads: everything runs on the loop thread; only the children and the sockets
 * work in parallel.
 */
#ifndef SL_WORK_H
#define SL_WORK_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "sl_error.h"

#define SL_EXEC_CAP (1024 * 1024)
#define SL_HTTP_CAP (16 * 1024 * 1024)

enum sl_work_kind { SL_WORK_BLOCK, SL_WORK_BACKGROUND };

struct sl_workq; /* the work of one processor (one lua_State) */
struct sl_work;  /* one running coroutine */

/* Completion of a work item: err is NULL on success, else its message and a
 * traceback (both valid during the call). */
typedef void (*sl_work_fn)(void *ud, struct sl_work *w, const char *err, const char *traceback);

int sl_workq_new(struct sl_workq **out, uv_loop_t *loop, lua_State *L, struct sl_diag *d);
/* Frees the queue once no work runs (sl_workq_running() == 0). */
void sl_workq_free(struct sl_workq *q);
/* Work items started and not yet ended. */
size_t sl_workq_running(const struct sl_workq *q);
/* Kills the children of running ctx.exec calls (shutdown). */
void sl_workq_kill(struct sl_workq *q);
/* Kills the children of every running ctx.exec of the process (each child's whole
 * process group), whatever processor or version started them; with reap, also waits
 * for each (for a process about to _exit, whose loop will not reap them). Returns how
 * many there were. */
size_t sl_work_kill_all(int reap);
/* The ctx.exec children of the process that have not exited (been reaped) yet. */
size_t sl_work_children(void);

/* The source event of appends, shared (reference-counted) by a batch and the work
 * it registered while that event was being processed, so that appends without an
 * explicit key are numbered <processor>@<stream>:<offset>#<n> by one counter. */
struct sl_work_src {
	char *stream;
	int64_t offset;
	int appends; /* appends without an explicit key so far */
	int refs;
};

struct sl_work_src *sl_work_src_new(const char *stream, int64_t offset);
void sl_work_src_unref(struct sl_work_src *src); /* NULL is a no-op */

/* Starts the function below the nargs values on top of L as a coroutine, now. The
 * item takes a reference to src. [-(nargs+1), +0, e] */
struct sl_work *sl_work_start(lua_State *L, struct sl_workq *q, enum sl_work_kind kind, int nargs,
                              struct sl_work_src *src, sl_work_fn done, void *ud);

/* ctx.sleep, ctx.exec and ctx.http (described above). They are rows of the ctx
 * table in sl_luaapi.c, which calls them only inside work whose coroutine can yield
 * (called anywhere else they raise). [-1, +(0|1|2), y] */
int sl_work_sleep(lua_State *L);
int sl_work_exec(lua_State *L);
int sl_work_http(lua_State *L);

/* The work item whose coroutine is L, or NULL. [-0, +0, -] */
struct sl_work *sl_work_current(lua_State *L);
enum sl_work_kind sl_work_kind(const struct sl_work *w);
struct sl_work_src *sl_work_src(const struct sl_work *w);

#endif
