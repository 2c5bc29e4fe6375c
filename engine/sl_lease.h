/* sl_lease.h - the leases of a runner (DESIGN §8): one active runner per processor.
 *
 * A runner names itself `pid@hostname` plus a random suffix and holds, for each
 * processor it may run, the store's lease row {processor, owner, epoch, expiresAt}
 * (sl_store.h). A keeper thread takes and renews the leases every ttl/4 on a store
 * connection of its own, so a hook that keeps the loop busy for longer than the
 * lease (up to its wall-clock budget) does not lose it, while a runner that is
 * frozen as a whole (SIGSTOP, a stalled machine) does: its renewals stop, a standby
 * takes the lease over with a higher epoch, and the fence in every commit
 * (sl_commit_begin) refuses whatever the frozen runner tries to commit afterwards.
 *
 * The loop thread reads what the keeper last saw with sl_leases_get; the keeper
 * wakes the loop (a uv_async) whenever something changed: a lease taken, lost, or
 * held by another owner than before. sl_leases_poke asks the keeper to try at once
 * (a standby that saw the lease released).
 *
 * Ownership: the keeper copies the processor names; the loop is borrowed. Threads:
 * every function is called on the loop thread; the keeper thread is internal.
 */
#ifndef SL_LEASE_H
#define SL_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"
#include "sl_store.h"

struct sl_leases;
struct uv_loop_s;

/* Called on the loop thread when what the keeper sees changed. */
typedef void (*sl_leases_fn)(void *ud);

/* A keeper for the processors names[0..n) of the store at path (in namespace ns
 * with replicas, as sl_store_opts has them), with leases of ttl_ms, that calls fn(ud)
 * on loop after a change. Does not start yet. */
int sl_leases_new(struct sl_leases **out, struct uv_loop_s *loop, const char *path, const char *ns,
                  int replicas, double ttl_ms, sl_leases_fn fn, void *ud, struct sl_diag *d);
/* Adds a processor (before or after start); returns its index. */
int sl_leases_add(struct sl_leases *l, const char *proc, size_t *index, struct sl_diag *d);
/* Stops taking and renewing processor i and releases its lease if held. */
void sl_leases_drop(struct sl_leases *l, size_t i);
/* Starts the keeper thread: the first round runs at once. */
int sl_leases_start(struct sl_leases *l, struct sl_diag *d);
/* Asks the keeper to run a round now. */
void sl_leases_poke(struct sl_leases *l);
/* This runner's owner name. */
const char *sl_leases_owner(const struct sl_leases *l);

/* What the keeper last saw of processor i: the row, and whether this runner holds
 * it (held). seen is 0 before the first round. */
struct sl_lease_view {
	struct sl_lease row;
	int held, seen;
};
void sl_leases_get(struct sl_leases *l, size_t i, struct sl_lease_view *out);

/* Stops the keeper thread and releases every lease held (a clean stop: a standby
 * takes over at once), then frees; NULL is a no-op. The loop must run once more for
 * the async handle to close (sl_host_free does). */
void sl_leases_free(struct sl_leases *l);

#endif
