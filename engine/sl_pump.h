/* sl_pump.h - the pump of a running deployment (DESIGN §5, §8).
 *
 * Driven by the store-wide position: each processor keeps a scan cursor (the highest
 * position it has looked at). A round reads the events after the cursor in position
 * order, in bounded chunks, and queues the instance of each event whose stream
 * matches the processor's pattern (mode "all": the one instance); then every queued
 * instance that is not busy, backing off or faulted gets its next batch (the events
 * after its checkpoint, at most the processor's batch size) and drops off the queue
 * once it reached its head. Catch-up when a runner starts a processor enumerates the
 * matching streams once; afterwards an idle round costs one read per processor, not
 * one per stream, and a new stream gets its instance with its first event.
 *
 * Wake-up: rounds run when something may have changed: a modification of the
 * store's watch file (SQLite: the WAL, through libuv fs events), a batch that
 * settled, a lease that changed hands, and a slow poll of the store's data version
 * (once a second) in case a file event is missed.
 *
 * Leases (sl_lease.h): a processor runs only while this runner holds its lease.
 * Taking it activates the processor (sl_proc_activate: the fence on every commit,
 * checkpoints read again, prepare); losing it (or a batch refused by the fence)
 * drops its queue and makes it a standby, which logs who runs it and takes over
 * when the lease expires or is released.
 *
 * Partitioned (sl_pump_opts.partitions > 1 on a store that has partitioned runners,
 * processors of mode each): a runner runs the instances of the partitions whose
 * lease it holds and is assigned (sl_lease.h), each instance's commits fenced on its
 * partition's lease. The set changes only between batches (none of the processor in
 * flight); then the cached instances are forgotten and those of the partitions run
 * now catch up from their checkpoints. The processor's own writes (the anchor, a
 * rebuild, faults cleared after a change) are made by the first activation in each
 * runner, under no lease.
 *
 * Retry policy: a failed batch is retried with exponential backoff; after the
 * processor's retry attempts the instance is faulted (its checkpoint row says so,
 * and `stream/error-occurred` is appended with the key
 * processor-ingest-failed:<processor>:<checkpoint>). A batch refused by the fence
 * is no failure: it is the new leader's.
 *
 * The host (sl_host.c) owns the processors, the store and the libuv loop; the pump
 * borrows them for its lifetime. Threads: the loop thread only.
 */
#ifndef SL_PUMP_H
#define SL_PUMP_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"

struct sl_deploy_proc;
struct sl_event;
struct sl_inst;
struct sl_proc;
struct sl_pump;
struct sl_store;
struct uv_loop_s;

/* One processor the pump feeds, with its deployment entry (both borrowed). */
struct sl_pump_proc {
	struct sl_proc *p;
	const struct sl_deploy_proc *cfg;
};

/* Settings of a run. */
struct sl_pump_opts {
	int until_caught_up;    /* return once nothing is left to do */
	double shutdown_ms;     /* how long a signal waits for the batches in flight */
	double lease_ms;        /* lease of each processor (0: no leases, no fence) */
	const char *store_path; /* for the lease keeper's own connection */
	int progress;           /* show the catch-up progress line on stderr */
	int partitions;         /* partitioned runners (a store that has them, sl_lease.h) with
	                         * this many partitions per processor of mode each; <= 1: one
	                         * lease per processor */
	const char *store_ns;   /* the store's namespace and replicas (sl_store_opts), for */
	int store_replicas;     /* the same connection */
};

/* A pump over procs[0..nprocs) (borrowed, kept in place), reading from store and
 * running on loop. Returns 0 or SL_ENOMEM. */
int sl_pump_new(struct sl_pump **out, struct uv_loop_s *loop, struct sl_store *store,
                struct sl_pump_proc *procs, size_t nprocs);
void sl_pump_free(struct sl_pump *pm);

/* Runs rounds on the loop. With until_caught_up it returns once no instance has
 * unprocessed events and nothing is in flight; otherwise it runs until SIGINT or
 * SIGTERM, then waits up to shutdown_ms for the batches in flight (a second signal
 * exits at once), and releases its leases. Returns 0, or a negative code when it
 * could not start, a round failed (a store that cannot be read, a hole in a stream:
 * the run then stops as on a signal), or a fault could not be recorded in the store
 * (SL_EIO: status cannot show it; d names the first), d saying why. */
int sl_pump_run(struct sl_pump *pm, const struct sl_pump_opts *o, struct sl_diag *d);

/* Reads the next batch of instance in of pp (the events after its checkpoint, at
 * most the processor's batch size) into the pump's buffer: *ev[0..*n) is borrowed
 * until the next read. */
int sl_pump_read_batch(struct sl_pump *pm, struct sl_pump_proc *pp, struct sl_inst *in,
                       const struct sl_event **ev, size_t *n, struct sl_diag *d);

/* ---- changes of a running deployment (hot reload, sl_reload.h) ----
 *
 * The pump borrows its processors; one that leaves its slot (replaced by a new
 * version, or removed) is handed to the retire callback, which owns it from then on
 * (its background work may still be running). */
typedef void (*sl_pump_retire_fn)(void *ud, struct sl_proc *p);
void sl_pump_set_retire(struct sl_pump *pm, sl_pump_retire_fn fn, void *ud);

/* Sets what runs under processor name: p with cfg (both borrowed) replaces the
 * running version, or is added when there is none; p NULL removes it. A replacement
 * or removal waits until the processor is idle (no batch in flight: a batch waiting
 * on blocking work settles first), so no batch runs half on each version; then the
 * new version is activated under the same lease (sl_proc_activate: faults cleared,
 * a raised contract version rebuilt in place) and catches up from the checkpoints.
 * A removed processor releases its lease; its rows stay. A change set again before
 * the earlier one applied replaces it (the unused version is retired). */
int sl_pump_set(struct sl_pump *pm, const char *name, struct sl_proc *p,
                const struct sl_deploy_proc *cfg, struct sl_diag *d);

/* The processors the pump runs now (after the changes applied so far). */
size_t sl_pump_nprocs(const struct sl_pump *pm);
const struct sl_pump_proc *sl_pump_proc_at(const struct sl_pump *pm, size_t i);

/* ---- work between batches (the console) ----
 *
 * sl_pump_exclusive runs fn for processor name at once, between batches, when this
 * runner leads it and it is idle (no batch in flight, no change waiting): its
 * cached states are forgotten first, fn may rewrite its rows (under fence, NULL
 * without leases), and then the processor is activated again from what the store
 * holds (checkpoints and faults read again, catch-up from there). Refused with
 * SL_EBUSY (nothing done) when the processor is busy or another runner leads it,
 * SL_ENOTFOUND when the pump does not run it. Returns fn's result otherwise. */
struct sl_fence;
typedef int (*sl_pump_op_fn)(void *ud, const struct sl_pump_proc *pp, const struct sl_fence *f,
                             struct sl_diag *d);
int sl_pump_exclusive(struct sl_pump *pm, const char *name, sl_pump_op_fn fn, void *ud,
                      struct sl_diag *d);

/* Puts instance stream of processor name in skip mode (the console's resume with
 * skip, from an op of sl_pump_exclusive): its batches are one event each up to
 * `until` (its last offset, a position in mode all, of the batch that faulted); an
 * event that fails is dead-lettered at once (sl_proc_dead_letter) and the instance
 * goes on; with all every such event, else only the first. Returns 0, SL_ENOMEM or
 * SL_ENOTFOUND. */
int sl_pump_skip(struct sl_pump *pm, const char *name, const char *stream, int all, int64_t until);

/* Runs a round soon (something changed). */
void sl_pump_kick(struct sl_pump *pm);

/* ---- what the HTTP interface reads (sl_http.h) ---- */

/* Called on the loop whenever the store may have changed: a file event or the slow
 * poll saw a commit (of any process), or a batch settled. One listener (NULL: none);
 * ud is borrowed. */
typedef void (*sl_pump_change_fn)(void *ud);
void sl_pump_set_listener(struct sl_pump *pm, sl_pump_change_fn fn, void *ud);

/* Upper bounds (seconds) of the batch-duration histogram's buckets; one more bucket,
 * +Inf, follows them. */
#define SL_PUMP_BUCKETS 12
extern const double sl_pump_buckets[SL_PUMP_BUCKETS];

/* The counters of one processor in this run, kept as batches settle (nothing is
 * scanned to produce them). */
struct sl_pump_stats {
	uint64_t events;      /* events the checkpoints moved over (processed or skipped) */
	uint64_t batches;     /* batches committed */
	uint64_t failures;    /* batches that failed (each attempt) */
	uint64_t budget_hits; /* of those, failed by a budget */
	uint64_t faults;      /* instances faulted in this run */
	uint64_t hist[SL_PUMP_BUCKETS + 1]; /* batch durations per bucket (not cumulative) */
	double seconds;                     /* sum of the batch durations */
	int64_t lag; /* events known to be behind: the queued instances' head - offset */
	int leader;  /* this runner holds the processor's lease and runs it */
	int faulted; /* instances faulted now, as far as this run saw */
};

/* The counters of processor i (0..sl_pump_nprocs). */
void sl_pump_stats_of(const struct sl_pump *pm, size_t i, struct sl_pump_stats *out);

#endif
