/* sl_checkpoint.h - processor rows and instance checkpoints in the store.
 *
 * sl_processors: one row per deployment processor: the contract version it last ran
 * with and its side-effect anchor (a store position, stored once, never moved).
 * sl_checkpoints: one row per instance (processor, stream; stream "" for mode all):
 * the last offset read (a position for mode all), the state as JSON (NULL after a
 * reset: the contract's initial state), the side-effects mark, status and errors.
 *
 * Every write here joins the transaction open on the store's connection, if any, so
 * a batch's checkpoint commits with its appends and projection rows.
 * Ownership: strings in results are owned by the caller (sl_ckpt_release).
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

struct sl_ckpts; /* prepared statements on one store */

int sl_ckpts_open(struct sl_ckpts **out, struct sl_store *s, struct sl_diag *d);
void sl_ckpts_close(struct sl_ckpts *k);

/* The processor row: *exists is 0 when the processor never ran in this store. */
int sl_ckpt_proc_get(struct sl_ckpts *k, const char *proc, int *exists, int64_t *version,
		     int64_t *anchor, struct sl_diag *d);
int sl_ckpt_proc_put(struct sl_ckpts *k, const char *proc, int64_t version, int64_t anchor,
		     struct sl_diag *d);

/* One instance's row; *found is 0 (and c zeroed) when it has none. */
int sl_ckpt_get(struct sl_ckpts *k, const char *proc, const char *stream, struct sl_ckpt *c,
		int *found, struct sl_diag *d);
/* Writes offset, state and effects mark of an instance (status ok). */
int sl_ckpt_put(struct sl_ckpts *k, const char *proc, const char *stream, int64_t offset,
		const char *state, size_t state_len, int64_t effects_mark, struct sl_diag *d);

/* Advances an instance's offset and effects mark, keeping its state. */
int sl_ckpt_put_offset(struct sl_ckpts *k, const char *proc, const char *stream, int64_t offset,
		       int64_t effects_mark, struct sl_diag *d);

/* Marks an instance faulted with its error (creating its row if needed). */
int sl_ckpt_fault(struct sl_ckpts *k, const char *proc, const char *stream, const char *error,
		  struct sl_diag *d);

/* Counts one failed background work item of an instance. */
int sl_ckpt_add_background_failure(struct sl_ckpts *k, const char *proc, const char *stream,
				   struct sl_diag *d);

/* Clears the fault of one instance, or of all (stream NULL). */
int sl_ckpt_clear_fault(struct sl_ckpts *k, const char *proc, const char *stream, struct sl_diag *d);

/* The hashes of the script and contract the processor last ran with; when either
 * changed, sl_ckpt_proc_hashes clears the processor's faults and stores the new ones.
 * *cleared counts the instances whose fault was cleared. */
int sl_ckpt_proc_hashes(struct sl_ckpts *k, const char *proc, const char *script_hash,
			const char *contract_hash, int *cleared, struct sl_diag *d);

/* Records a dead letter. */
struct sl_dead_letter {
	const char *processor, *stream, *type, *error, *traceback, *at;
	int64_t offset, position, attempts;
};
int sl_ckpt_dead_letter(struct sl_ckpts *k, const struct sl_dead_letter *dl, struct sl_diag *d);
typedef int (*sl_dead_fn)(void *ud, const struct sl_dead_letter *dl);
/* Calls fn for every dead letter, oldest first. */
int sl_ckpt_dead_letters(struct sl_ckpts *k, sl_dead_fn fn, void *ud, struct sl_diag *d);

typedef int (*sl_ckpt_fn)(void *ud, const char *stream, const struct sl_ckpt *c);
/* Calls fn for every instance row of proc, in stream order. */
int sl_ckpt_each(struct sl_ckpts *k, const char *proc, sl_ckpt_fn fn, void *ud, struct sl_diag *d);

/* Discards offset and state of one instance (stream) or of all (stream NULL), and
 * their faults; the side-effects mark stays unless with_effects. */
int sl_ckpt_reset(struct sl_ckpts *k, const char *proc, const char *stream, int with_effects,
		  struct sl_diag *d);

/* Drops every projection table owned by proc. */
int sl_ckpt_drop_tables(struct sl_ckpts *k, const char *proc, struct sl_diag *d);

#endif
