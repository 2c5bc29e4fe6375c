/* sl_host.h - a running deployment: its processors, their instances, and the pump
 * that reads the store and feeds them (DESIGN §5, §6).
 *
 * The pump runs on a libuv loop. Each round lists the streams, finds every instance
 * whose checkpoint is behind its stream's head (behind the store's head position in
 * mode "all"), reads its next batch and ingests it. A failed batch is retried with
 * exponential backoff; after the processor's retry attempts the instance is faulted:
 * its checkpoint row says so (across restarts), `stream/error-occurred` is appended
 * (key processor-ingest-failed:<processor>:<checkpoint>) and it receives nothing
 * until it is reset, resumed, or its script or contract changes.
 */
#ifndef SL_HOST_H
#define SL_HOST_H

#include <stdio.h>

#include "sl_error.h"

struct sl_host;

enum {
	SL_HOST_NO_STORE = 1, /* load and check only (sluice check) */
	SL_HOST_RUN = 2,      /* sluice run: store side-effect anchors */
	SL_HOST_STRICT = 4,   /* sluice run --strict: processors run in strict mode */
};

/* Loads the deployment, its contracts and scripts, opens its store and binds every
 * processor to it. Every error goes to errs. */
int sl_host_open(struct sl_host **out, const char *deployment, int flags, struct sl_errs *errs);
void sl_host_free(struct sl_host *h);

/* Runs the pump. With until_caught_up it returns once no instance has unprocessed
 * events and nothing is in flight; otherwise it runs until SIGINT or SIGTERM.
 * Returns 0, or 1 when an instance is faulted at the end (d says which). */
int sl_host_run(struct sl_host *h, int until_caught_up, struct sl_diag *d);

/* How long a SIGINT/SIGTERM waits for the batches in flight (default: the
 * deployment's shutdownTimeout, else 10 s). */
void sl_host_set_shutdown_timeout(struct sl_host *h, double ms);

/* Prints {"processor","stream","offset","status","state"} for one instance, or for
 * every instance of the processor (mode each without STREAM). */
int sl_host_state(struct sl_host *h, const char *proc, const char *stream, FILE *out,
		  struct sl_diag *d);

/* Prints one status line per instance of every processor. */
int sl_host_status(struct sl_host *h, FILE *out, struct sl_diag *d);

/* Discards the state and checkpoint of one instance or (stream NULL) of all, and then
 * the processor's tables; with_effects also forgets the side-effects marks. */
int sl_host_reset(struct sl_host *h, const char *proc, const char *stream, int with_effects,
		  struct sl_diag *d);

/* Clears the fault of one instance or (stream NULL) of every instance of proc; an
 * instance that is not faulted is left alone. With skip, the faulted batch is run
 * again one event at a time: the first event that fails alone is recorded as a dead
 * letter (printed as {"processor","stream","offset","deadLettered":true}) and the
 * checkpoint moves past it; the rest of the batch is processed. */
int sl_host_resume(struct sl_host *h, const char *proc, const char *stream, int skip, FILE *out,
		   struct sl_diag *d);

/* Prints one line per dead letter: processor, stream, offset, type, error, attempts, at. */
int sl_host_dead_letters(struct sl_host *h, FILE *out, struct sl_diag *d);

#endif
