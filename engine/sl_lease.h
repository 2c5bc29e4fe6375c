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
 * Partitioned runners (sl_leases_add_parts, a nats:// store): several runners share
 * a processor. Each keeps a heartbeat in the store; the live runners, in name order,
 * split the partitions (partition k to the one of rank k mod R), and each runner takes
 * the leases of its own. When a runner joins or leaves the assignment changes: the
 * pump of a runner that lost a partition stops running it between batches and says
 * so (sl_leases_part_inuse), and only then does the keeper release its lease, so the
 * next owner takes it once no batch of the old one can commit.
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
/* Adds a partitioned processor (nparts 1..SL_PARTITIONS_MAX; 0 is sl_leases_add):
 * instead of the processor's lease the keeper keeps this runner's heartbeat in the
 * store (sl_store_runners) and, each round, takes or renews the leases of the
 * partitions assigned to it (partition k to the live runner of rank k mod R, the R
 * runners in strcmp order of their names) and of those the pump still runs
 * (sl_leases_part_inuse), and releases the others it holds. A round comes every
 * ttl/4, or sooner when a lease or heartbeat it waits for ends then: a dead runner's
 * partitions are taken once its heartbeat and leases expire. */
int sl_leases_add_parts(struct sl_leases *l, const char *proc, int nparts, size_t *index,
                        struct sl_diag *d);
/* Stops taking and renewing processor i and releases its lease if held (partitioned:
 * every partition it holds, and its heartbeat). */
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

/* What the keeper last saw of partition k of processor i: the row after its last
 * take or renewal (zeroed when neither was tried), whether this runner holds it and
 * whether it is assigned to it (want). round is the keeper round that saw it (1, 2,
 * ...; 0: none yet). */
struct sl_part_view {
	struct sl_lease row;
	int held, want, seen;
	uint64_t round;
};
void sl_leases_part_get(struct sl_leases *l, size_t i, int k, struct sl_part_view *out);
/* The pump runs partition k of processor i (inuse 1: the keeper renews it even when
 * it is no longer assigned to this runner) or stopped running it (0: released in the
 * next round unless assigned; that round comes at once). */
void sl_leases_part_inuse(struct sl_leases *l, size_t i, int k, int inuse);
/* The live runners of partitioned processor i the last round saw (this one included). */
int sl_leases_runners(struct sl_leases *l, size_t i);

/* Stops the keeper thread and releases every lease held (a clean stop: a standby
 * takes over at once), then frees; NULL is a no-op. The loop must run once more for
 * the async handle to close (sl_host_free does). */
void sl_leases_free(struct sl_leases *l);

#endif
