/* sl_pump.h - the pump of a running deployment (DESIGN §5): it reads the store,
 * finds every instance whose checkpoint is behind its stream's head (behind the
 * store's head position in mode "all"), reads its next batch and ingests it, and
 * applies the retry policy: a failed batch is retried with exponential backoff;
 * after the processor's retry attempts the instance is faulted (its checkpoint row
 * says so, and `stream/error-occurred` is appended with the key
 * processor-ingest-failed:<processor>:<checkpoint>).
 *
 * The host (sl_host.c) owns the processors, the store and the libuv loop; the pump
 * borrows them for its lifetime. Threads: the loop thread only.
 */
#ifndef SL_PUMP_H
#define SL_PUMP_H

#include <stddef.h>

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

/* A pump over procs[0..nprocs) (borrowed, kept in place), reading from store and
 * running on loop. Returns 0 or SL_ENOMEM. */
int sl_pump_new(struct sl_pump **out, struct uv_loop_s *loop, struct sl_store *store,
                struct sl_pump_proc *procs, size_t nprocs);
void sl_pump_free(struct sl_pump *pm);

/* Prepares the processors and runs rounds on the loop. With until_caught_up it
 * returns once no instance has unprocessed events and nothing is in flight;
 * otherwise it runs until SIGINT or SIGTERM, then waits up to shutdown_ms for the
 * batches in flight (a second signal exits at once). */
void sl_pump_run(struct sl_pump *pm, int until_caught_up, double shutdown_ms);

/* Reads the next batch of instance in of pp (the events after its checkpoint, at
 * most the processor's batch size) into the pump's buffer: *ev[0..*n) is borrowed
 * until the next read. */
int sl_pump_read_batch(struct sl_pump *pm, struct sl_pump_proc *pp, struct sl_inst *in,
                       const struct sl_event **ev, size_t *n, struct sl_diag *d);

#endif
