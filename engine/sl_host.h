/* sl_host.h - a running deployment: its processors, their instances, and the pump
 * that reads the store and feeds them (sl_pump.h; DESIGN §5, §6).
 *
 * A failed batch is retried with exponential backoff; after the processor's retry
 * attempts the instance is faulted: its checkpoint row says so (across restarts),
 * `stream/error-occurred` is appended (key processor-ingest-failed:<processor>:
 * <checkpoint>) and it receives nothing until it is reset, resumed, or its script
 * or contract changes.
 */
#ifndef SL_HOST_H
#define SL_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"

struct sl_host;

enum {
	SL_HOST_NO_STORE = 1,  /* load and check only (sluice check) */
	SL_HOST_RUN = 2,       /* sluice run: processors start when their leases are taken */
	SL_HOST_STRICT = 4,    /* sluice run --strict: processors run in strict mode */
	SL_HOST_WRITE = 8,     /* resume: the processors' own writes (anchors, a version
	                        * rebuild) happen at open, without a lease */
	SL_HOST_ROWS = 16,     /* status, reset, dead-letters: the processors' rows only; no
	                        * script or contract is loaded (they work while a script is
	                        * broken) */
	SL_HOST_LENIENT = 32,  /* state: a processor whose script or contract does not load
	                        * is kept without them (sl_host_skipped says why); its stored
	                        * states are read as stored */
	SL_HOST_READONLY = 64, /* state, status, dead-letters: the store is opened for
	                        * reading only (they work on a read-only store, or a full disk) */
};

/* Loads the deployment, its contracts and scripts, opens its store and binds every
 * processor to it. Every error goes to errs. */
int sl_host_open(struct sl_host **out, const char *deployment, int flags, struct sl_errs *errs);
void sl_host_free(struct sl_host *h);

/* The deployment as loaded (borrowed for the host's lifetime). */
struct sl_deploy;
const struct sl_deploy *sl_host_deploy(const struct sl_host *h);

/* What the deployment says of processor i (0..sl_host_nprocs): contract and version
 * are NULL and 0 when its script did not load (a lenient or rows-only open). */
struct sl_proc_info {
	const char *name, *script, *streams, *contract;
	int64_t version;
	int mode_all;
};
size_t sl_host_nprocs(const struct sl_host *h);
void sl_host_proc_info(const struct sl_host *h, size_t i, struct sl_proc_info *out);

/* With SL_HOST_LENIENT: the errors of the processors that did not load (empty when
 * every one did). */
const struct sl_errs *sl_host_skipped(const struct sl_host *h);

/* Runs the pump. With until_caught_up it returns once no instance has unprocessed
 * events and nothing is in flight, and returns 1 when an instance is faulted then (d
 * says which); otherwise it runs until SIGINT or SIGTERM and returns 0 (a stop asked
 * for is a success, whatever is faulted: status tells). Negative: it could not run. */
int sl_host_run(struct sl_host *h, int until_caught_up, struct sl_diag *d);

/* Serves the HTTP interface (sl_http.h) on addr while sl_host_run runs as a service
 * (not until caught up), instead of the deployment's `http` (NULL: the deployment's;
 * addr is borrowed). */
void sl_host_set_http(struct sl_host *h, const char *addr);

/* The number of faulted instances of the processors run (a negative code when it
 * cannot be told), naming the first in d. */
int sl_host_faulted(struct sl_host *h, struct sl_diag *d);

/* Shows the catch-up progress line on stderr (default: when stderr is a terminal). */
void sl_host_set_progress(struct sl_host *h, int on);

/* How long a SIGINT/SIGTERM waits for the batches in flight (default: the
 * deployment's shutdownTimeout, else 10 s). */
void sl_host_set_shutdown_timeout(struct sl_host *h, double ms);

/* ---- services and work done by the runner (the console, sl_console.h) ----
 *
 * A service runs beside the pump of `sluice run` on the host's loop: start is called
 * when the run starts (an error is logged as a warning and the run goes on without
 * it), stop when the pump stopped (it closes its handles; the loop runs once more
 * in sl_host_free). */
struct uv_loop_s;
struct sl_host_service {
	void *ud;
	int (*start)(void *ud, struct sl_host *h, struct uv_loop_s *loop, struct sl_diag *d);
	void (*stop)(void *ud);
};
#define SL_HOST_MAX_SERVICES 4
int sl_host_add_service(struct sl_host *h, const struct sl_host_service *s);

/* While sl_host_run runs: reset and resume carried out by this runner between the
 * processor's batches (sl_pump_exclusive) under its lease, for the processors the
 * pump runs now (hot-reloaded ones included). SL_EBUSY when the processor has a
 * batch in flight, another runner leads it, or no run is going on. resume counts the
 * instances whose fault it cleared in *n; with skip (SL_RESUME_SKIP, _SKIP_ALL) the
 * pump then runs each one's faulted batch one event at a time and dead-letters the
 * first event (every event) that fails (sl_pump_skip), as `sluice resume --skip`. */
int sl_host_run_reset(struct sl_host *h, const char *proc, const char *stream, int with_effects,
                      struct sl_diag *d);
int sl_host_run_resume(struct sl_host *h, const char *proc, const char *stream, int skip,
                       int64_t *n, struct sl_diag *d);
/* Loads the deployment again now, as SIGHUP does (a run without hot reload: no-op). */
void sl_host_reload_now(struct sl_host *h);

/* ---- queries: rows to a callback ----------------------------------------------------------
 *
 * The queries below hand their results to a callback, one row at a time; rendering
 * (JSON lines in the CLI, Lua tables in sluice.core) is the caller's. A row and the
 * strings it points to are borrowed for the duration of the call. A callback returns
 * 0 to go on; any other value stops the query, which returns it (the callback fills
 * d if it wants a message).
 */

/* One instance's state. stream is NULL for a processor in mode "all"; status is
 * "new", "ok" or "faulted"; state_json[0..state_len) is the state as JSON text,
 * followed by a NUL. */
struct sl_state_row {
	const char *processor;
	const char *stream;
	int64_t offset;
	const char *status;
	const char *state_json;
	size_t state_len;
};
typedef int (*sl_state_fn)(void *ud, const struct sl_state_row *row);

/* Calls fn for one instance, or for every instance of the processor (mode each
 * without STREAM). For a processor skipped by a lenient open the state is the stored
 * JSON text as it is, or null for an instance that has none (its initial state is
 * the contract's, which did not load). */
int sl_host_state(struct sl_host *h, const char *proc, const char *stream, sl_state_fn fn, void *ud,
                  struct sl_diag *d);

/* One instance's progress. stream as for sl_state_row; lag = head - offset (0 if
 * ahead); last_error is NULL when the instance has none. */
struct sl_status_row {
	const char *processor;
	const char *stream;
	int64_t offset, head, lag;
	const char *status;
	const char *last_error;
	int64_t background_failures;
	int partition;            /* the instance's partition (partitioned runners), or -1 */
	const char *runner;       /* the owner of the live lease of the processor (or of
	                           * the instance's partition), or NULL */
	double rate;              /* events per second over the last 10 s, 0 when idle */
	const char *reload_error; /* why the processor's last hot reload failed, or NULL */
};
typedef int (*sl_status_fn)(void *ud, const struct sl_status_row *row);

/* Calls fn for every instance of every processor (from the rows only: a host opened
 * with SL_HOST_ROWS is enough). */
int sl_host_status(struct sl_host *h, sl_status_fn fn, void *ud, struct sl_diag *d);

/* Discards the state and checkpoint of one instance or (stream NULL) of all, and then
 * the processor's tables; with_effects also forgets the side-effects marks. Refused
 * (SL_EBUSY, nothing written) while a live runner holds the processor's lease:
 * "processor 'counter' is running (<owner>); use the console or stop it"; so is
 * sl_host_resume. */
int sl_host_reset(struct sl_host *h, const char *proc, const char *stream, int with_effects,
                  struct sl_diag *d);

/* An event that resume --skip dead-lettered: its processor, stream and offset. */
struct sl_resume_row {
	const char *processor;
	const char *stream;
	int64_t offset;
};
typedef int (*sl_resume_fn)(void *ud, const struct sl_resume_row *row);

/* Clears the fault of one instance or (stream NULL) of every instance of proc; an
 * instance that is not faulted is left alone. With skip (SL_RESUME_SKIP), the faulted
 * batch is run again one event at a time: the first event that fails alone is
 * recorded as a dead letter (and handed to fn, which may be NULL) and the checkpoint
 * moves past it; the rest of the batch is processed (with SL_RESUME_SKIP_ALL every
 * event that fails alone is dead-lettered, not only the first). A dead letter is
 * skipped by the processor from then on, also after a reset or a rebuild. */
enum { SL_RESUME_SKIP = 1, SL_RESUME_SKIP_ALL = 2 };
int sl_host_resume(struct sl_host *h, const char *proc, const char *stream, int skip,
                   sl_resume_fn fn, void *ud, struct sl_diag *d);

/* Forgets the dead letters of proc, or (NULL) of every processor of the deployment;
 * *n counts them. Refused like reset while a runner holds one of them. */
int sl_host_dead_letters_clear(struct sl_host *h, const char *proc, int64_t *n, struct sl_diag *d);

/* Calls fn for every dead letter, oldest first (the row type is sl_checkpoint.h's). */
struct sl_dead_letter;
typedef int (*sl_dead_letter_fn)(void *ud, const struct sl_dead_letter *dl);
int sl_host_dead_letters(struct sl_host *h, sl_dead_letter_fn fn, void *ud, struct sl_diag *d);

#endif
