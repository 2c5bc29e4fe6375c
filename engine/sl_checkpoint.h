/* sl_checkpoint.h - the rows half of the store interface: processor rows, instance
 * checkpoints, faults, background-failure counts and dead letters.
 *
 * processors: one row per deployment processor: the contract version it last ran with,
 * its side-effect anchor (a store position, stored once, never moved) and the hashes of
 * the script and contract it last ran with.
 * checkpoints: one row per instance (processor, stream; stream "" for mode all): the
 * last offset read (a position for mode all), the state as JSON (NULL after a reset:
 * the contract's initial state), the side-effects mark, status and errors.
 * dead letters: the events `resume --skip` moved past, oldest first.
 * rates and reload errors: what a runner reports for `sluice status` (DESIGN §8): the
 * events per second of each instance, and the error of a processor's failed reload.
 *
 * Like the event log, these rows live in the store's backend (sl_store.h picks it);
 * there is no separate connection. Reads take the store and see the writes of the
 * commit open on it, if any. Every write takes a commit (sl_commit_begin), so it
 * becomes durable only with the commit's other writes: a batch's checkpoint with its
 * appends and projection rows, a fault with its stream/error-occurred, a dead letter
 * with the checkpoint that moves past it, a reset with the drop of the tables.
 *
 * Ownership: arguments are borrowed; strings in a struct sl_ckpt filled by
 * sl_ckpt_get are owned by the caller (sl_ckpt_release); views handed to callbacks
 * live only during the callback.
 */
#ifndef SL_CHECKPOINT_H
#define SL_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"
#include "sl_store.h"

struct sl_ckpt {
	int64_t offset;       /* 0 when the instance has not run or was reset */
	int64_t effects_mark; /* last offset whose side effects ran */
	char *state;          /* JSON text, or NULL for the initial state */
	size_t state_len;
	int faulted;
	char *last_error; /* or NULL */
	int64_t background_failures;
};

void sl_ckpt_release(struct sl_ckpt *c);

/* ---- reading ------------------------------------------------------------------------ */

/* The processor row: *exists is 0 when the processor never ran in this store. */
int sl_ckpt_proc_get(struct sl_store *s, const char *proc, int *exists, int64_t *version,
                     int64_t *anchor, struct sl_diag *d);

/* One instance's row; *found is 0 (and c zeroed) when it has none. */
int sl_ckpt_get(struct sl_store *s, const char *proc, const char *stream, struct sl_ckpt *c,
                int *found, struct sl_diag *d);

/* Calls fn for every instance row of proc, in stream order (c lives during the call);
 * fn returns 0 to go on, 1 to stop, a negative code to fail. */
typedef int (*sl_ckpt_fn)(void *ud, const char *stream, const struct sl_ckpt *c);
int sl_ckpt_each(struct sl_store *s, const char *proc, sl_ckpt_fn fn, void *ud, struct sl_diag *d);

/* A stream whose head is past proc's checkpoint of it (or that has no checkpoint):
 * what a catch-up must queue. has_row is 0 when the instance has no row (offset,
 * effects_mark and faulted are then 0). */
struct sl_behind {
	const char *stream;
	int64_t head, offset, effects_mark;
	int has_row, faulted;
};
typedef int (*sl_behind_fn)(void *ud, const struct sl_behind *b);
/* Calls fn for every stream of the store that proc (mode each) is behind on, in no
 * particular order, in one pass over the streams (a catch-up over a million caught-up
 * streams reads no row per stream); fn as for sl_ckpt_each. */
int sl_ckpt_behind(struct sl_store *s, const char *proc, sl_behind_fn fn, void *ud,
                   struct sl_diag *d);

/* The events per second of one instance over the last 10 s, as its runner recorded
 * it (stream "" for mode all). */
struct sl_rate {
	const char *stream;
	double rate;
	int64_t until_ms; /* when the rate becomes 0 unless recorded again (0: never) */
};
#define SL_RATE_STALE_MS 3000 /* a rate older than this reads as 0 (its runner is gone) */
/* The rate of an instance: 0 when none was recorded or the record is stale. */
int sl_ckpt_rate_get(struct sl_store *s, const char *proc, const char *stream, double *rate,
                     struct sl_diag *d);

/* The error of proc's last failed hot reload (DESIGN §8, `reloadError` in status):
 * *msg_out is a malloc'd copy the caller frees, or NULL when there is none. */
int sl_ckpt_reload_error_get(struct sl_store *s, const char *proc, char **msg_out,
                             struct sl_diag *d);

/* A dead letter. */
struct sl_dead_letter {
	const char *processor, *stream, *type, *error, *traceback, *at;
	int64_t offset, position, attempts;
};
typedef int (*sl_dead_fn)(void *ud, const struct sl_dead_letter *dl);
/* Calls fn for every dead letter, oldest first. */
int sl_ckpt_dead_letters(struct sl_store *s, sl_dead_fn fn, void *ud, struct sl_diag *d);

/* ---- writing, inside a commit ------------------------------------------------------------ */

/* Writes the processor row (creating it with `anchor`; an existing row keeps its
 * anchor and gets `version`). */
int sl_ckpt_proc_put(struct sl_commit *c, const char *proc, int64_t version, int64_t anchor,
                     struct sl_diag *d);

/* The hashes of the script and contract the processor last ran with: when either
 * changed, the processor's faults are cleared and the new hashes stored; *cleared
 * counts the instances whose fault was cleared. No processor row: nothing happens. */
int sl_ckpt_proc_hashes(struct sl_commit *c, const char *proc, const char *script_hash,
                        const char *contract_hash, int *cleared, struct sl_diag *d);

/* Writes offset, state and effects mark of an instance (status ok). */
int sl_ckpt_put(struct sl_commit *c, const char *proc, const char *stream, int64_t offset,
                const char *state, size_t state_len, int64_t effects_mark, struct sl_diag *d);

/* Records the rates of instances of proc, and that every rate recorded for proc is
 * current at at_ms (n may be 0). A runner does it once a second, passing the
 * instances whose rate changed since it last recorded it (a last 0 for those that
 * went idle): an instance folding at a steady rate, or a catch-up's million
 * instances that each folded once, are not written again every second. */
int sl_ckpt_rates_put(struct sl_commit *c, const char *proc, const struct sl_rate *r, size_t n,
                      int64_t at_ms, struct sl_diag *d);

/* Has the next checkpoint this commit writes (sl_ckpt_put or sl_ckpt_put_offset)
 * record r (its stream unused) in the same row write, as sl_ckpt_rates_put with the
 * commit's time would: a batch commit records its instance's rate at no extra write.
 * Returns 1 when the backend records rates so, else 0 (nothing is kept: record the
 * rate with sl_ckpt_rates_put). A rate recorded either way reads back by
 * sl_ckpt_rate_get, the later record of the two. */
int sl_commit_rate(struct sl_commit *c, const struct sl_rate *r);

/* Records the error of proc's failed hot reload, or clears it (msg NULL) once a valid
 * version loaded. Needs no processor row. */
int sl_ckpt_reload_error_put(struct sl_commit *c, const char *proc, const char *msg,
                             struct sl_diag *d);

/* Advances an instance's offset and effects mark, keeping its state (status ok). */
int sl_ckpt_put_offset(struct sl_commit *c, const char *proc, const char *stream, int64_t offset,
                       int64_t effects_mark, struct sl_diag *d);

/* Marks an instance faulted with its error (creating its row if needed). */
int sl_ckpt_fault(struct sl_commit *c, const char *proc, const char *stream, const char *error,
                  struct sl_diag *d);

/* Clears the fault of one instance, or of all (stream NULL). */
int sl_ckpt_clear_fault(struct sl_commit *c, const char *proc, const char *stream,
                        struct sl_diag *d);

/* Counts one failed background work item of an instance. */
int sl_ckpt_add_background_failure(struct sl_commit *c, const char *proc, const char *stream,
                                   struct sl_diag *d);

/* Records a dead letter: an event the processor skips from then on, even after a reset
 * or a rebuild; recording the same event again changes nothing. */
int sl_ckpt_dead_letter(struct sl_commit *c, const struct sl_dead_letter *dl, struct sl_diag *d);
/* Forgets the dead letters of proc (NULL: of every processor); *n counts them. Their
 * events are no longer skipped: a reset reprocesses them. */
int sl_ckpt_dead_letters_clear(struct sl_commit *c, const char *proc, int64_t *n,
                               struct sl_diag *d);

/* Discards offset and state of one instance (stream) or of all (stream NULL), and
 * their faults; the side-effects mark stays unless with_effects. */
int sl_ckpt_reset(struct sl_commit *c, const char *proc, const char *stream, int with_effects,
                  struct sl_diag *d);

/* Drops every projection table owned by proc (the tables its ctx.db created). */
int sl_ckpt_drop_tables(struct sl_commit *c, const char *proc, struct sl_diag *d);

#endif
