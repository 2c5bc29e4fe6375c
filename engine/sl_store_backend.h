/* sl_store_backend.h - the seam between the store interface and its backends.
 *
 * sl_store.c keeps what every backend shares: validation of names, types and
 * envelopes, the caller's payload check, the one-commit-at-a-time rule, createdAt and
 * the JSON envelope. It picks a backend by the store's path and calls it through a
 * struct sl_store_ops. A backend (sl_store_sqlite.c; sl_store_nats.c, the NATS
 * JetStream one of DESIGN §11) implements the ops on its own objects, which embed struct sl_store
 * and struct sl_commit as their first member. Not for use outside the store's own files.
 *
 * Contract of the ops, beyond the prototypes of sl_store.h and sl_checkpoint.h whose
 * semantics they have:
 *   - appends get events that already passed sl_store_check_event;
 *   - commit_begin is called only while no commit is open, and only the store's own
 *     lease and append ops are refused meanwhile (sl_store.c does it);
 *   - commit_end always frees the commit, and is called exactly once per commit;
 *   - close is called with no commit open (sl_store.c ends it first);
 *   - messages name the store ("store 'x.db': cannot read events: disk I/O error").
 */
#ifndef SL_STORE_BACKEND_H
#define SL_STORE_BACKEND_H

#include "sl_checkpoint.h"
#include "sl_store.h"

struct sl_store_ops;

/* The part of a store every backend shares (set by sl_store_open). */
struct sl_store {
	const struct sl_store_ops *ops;
	const char *path; /* for messages; owned by the backend, set by its open */
	sl_payload_check_fn check;
	void *check_ud;
	struct sl_commit *open; /* the commit in progress, or NULL */
	int group;              /* a commit group is open (sl_store_group_begin) */
};

/* The part of a commit every backend shares (set by the backend's commit_begin). */
struct sl_commit {
	struct sl_store *store;
	/* sl_commit_rate: the rate the next ckpt_put or ckpt_put_offset records with its
	 * checkpoint (has_rate 0: none; only on a backend with ckpt_rates). */
	struct sl_rate rate;
	int has_rate;
};

struct sl_store_ops {
	const char *name; /* "sqlite" */
	int ckpt_rates;   /* ckpt_put and ckpt_put_offset record c->rate (sl_commit_rate) */
	int (*open)(struct sl_store **out, const char *path, const struct sl_store_opts *o,
	            struct sl_diag *d);
	void (*close)(struct sl_store *s);

	/* The event log. */
	int (*append)(struct sl_store *s, const struct sl_event_in *ev, size_t n,
	              struct sl_append_result *res, size_t *failed, struct sl_diag *d);
	int (*read)(struct sl_store *s, const char *stream, int64_t from, int64_t limit,
	            const char *type, sl_event_fn fn, void *ud, struct sl_diag *d);
	int (*read_all)(struct sl_store *s, int64_t from, int64_t limit, sl_event_fn fn, void *ud,
	                struct sl_diag *d);
	/* sl_store_read_range; optional (NULL: the backend has no such read). */
	int (*read_range)(struct sl_store *s, const char *stream, int64_t from, const char *last,
	                  int64_t limit, sl_event_fn fn, void *ud, struct sl_diag *d);
	int (*streams)(struct sl_store *s, const char *prefix, sl_stream_fn fn, void *ud,
	               struct sl_diag *d);
	int (*head_position)(struct sl_store *s, int64_t *pos, struct sl_diag *d);
	int (*data_version)(struct sl_store *s, int64_t *v, struct sl_diag *d);
	const char *(*watch_file)(struct sl_store *s);
	/* sl_store_wake_start and _stop; optional (NULL: SL_ENOTSUP, nothing to stop). */
	int (*wake_start)(struct sl_store *s, sl_store_wake_fn fn, void *ud, struct sl_diag *d);
	void (*wake_stop)(struct sl_store *s);
	/* sl_store_verify; reads only: works on a read-only store. */
	int (*verify)(struct sl_store *s, int flags, sl_problem_fn fn,
	              sl_verify_progress_fn progress, void *ud, struct sl_store_verify_summary *sum,
	              struct sl_diag *d);

	/* Reading rows. */
	int (*proc_get)(struct sl_store *s, const char *proc, int *exists, int64_t *version,
	                int64_t *anchor, struct sl_diag *d);
	int (*ckpt_get)(struct sl_store *s, const char *proc, const char *stream, struct sl_ckpt *c,
	                int *found, struct sl_diag *d);
	int (*ckpt_each)(struct sl_store *s, const char *proc, sl_ckpt_fn fn, void *ud,
	                 struct sl_diag *d);
	int (*ckpt_behind)(struct sl_store *s, const char *proc, sl_behind_fn fn, void *ud,
	                   struct sl_diag *d);
	int (*dead_letters)(struct sl_store *s, sl_dead_fn fn, void *ud, struct sl_diag *d);

	/* Leases: each call is a unit of work of its own. */
	int (*lease_acquire)(struct sl_store *s, const char *proc, const char *owner,
	                     int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d);
	int (*lease_release)(struct sl_store *s, const char *proc, const char *owner,
	                     struct sl_diag *d);
	int (*lease_get)(struct sl_store *s, const char *proc, struct sl_lease *out, int *found,
	                 struct sl_diag *d);
	/* Partitioned runners (optional: all NULL when the backend has none). The lease
	 * ops of one partition part (0..SL_PARTITIONS_MAX) of proc, and sl_store_runners. */
	int (*part_acquire)(struct sl_store *s, const char *proc, int part, const char *owner,
	                    int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d);
	int (*part_release)(struct sl_store *s, const char *proc, int part, const char *owner,
	                    struct sl_diag *d);
	int (*part_get)(struct sl_store *s, const char *proc, int part, struct sl_lease *out,
	                int *found, struct sl_diag *d);
	int (*runners)(struct sl_store *s, const char *proc, const char *owner, int64_t ttl_ms,
	               sl_runner_fn fn, void *ud, struct sl_diag *d);

	/* The commit and the writes made in it. */
	int (*commit_begin)(struct sl_store *s, const struct sl_fence *fence,
	                    struct sl_commit **out, struct sl_diag *d);
	int (*commit_end)(struct sl_commit *c, int commit, struct sl_diag *d);
	/* Commit groups (optional: NULL when the backend has none). group_begin returns
	 * 1 when it groups; group_end is called once per group, with no commit open. */
	int (*group_begin)(struct sl_store *s);
	int (*group_end)(struct sl_store *s, int commit, struct sl_diag *d);
	int (*commit_append)(struct sl_commit *c, const struct sl_event_in *ev, size_t n,
	                     struct sl_append_result *res, size_t *failed, struct sl_diag *d);
	struct sl_proj *(*commit_projection)(struct sl_commit *c);
	int (*proc_put)(struct sl_commit *c, const char *proc, int64_t version, int64_t anchor,
	                struct sl_diag *d);
	int (*proc_hashes)(struct sl_commit *c, const char *proc, const char *script_hash,
	                   const char *contract_hash, int *cleared, struct sl_diag *d);
	int (*ckpt_put)(struct sl_commit *c, const char *proc, const char *stream, int64_t offset,
	                const char *state, size_t state_len, int64_t effects_mark,
	                struct sl_diag *d);
	int (*rates_put)(struct sl_commit *c, const char *proc, const struct sl_rate *r, size_t n,
	                 int64_t at_ms, struct sl_diag *d);
	int (*rate_get)(struct sl_store *s, const char *proc, const char *stream, double *rate,
	                int64_t *at_ms, struct sl_diag *d);
	int (*reload_error_put)(struct sl_commit *c, const char *proc, const char *msg,
	                        struct sl_diag *d);
	int (*reload_error_get)(struct sl_store *s, const char *proc, char **msg_out,
	                        struct sl_diag *d);
	int (*ckpt_put_offset)(struct sl_commit *c, const char *proc, const char *stream,
	                       int64_t offset, int64_t effects_mark, struct sl_diag *d);
	int (*fault)(struct sl_commit *c, const char *proc, const char *stream, const char *error,
	             struct sl_diag *d);
	int (*clear_fault)(struct sl_commit *c, const char *proc, const char *stream,
	                   struct sl_diag *d);
	int (*background_failure)(struct sl_commit *c, const char *proc, const char *stream,
	                          struct sl_diag *d);
	int (*dead_letter)(struct sl_commit *c, const struct sl_dead_letter *dl, struct sl_diag *d);
	int (*dead_letters_clear)(struct sl_commit *c, const char *proc, int64_t *n,
	                          struct sl_diag *d);
	int (*reset)(struct sl_commit *c, const char *proc, const char *stream, int with_effects,
	             struct sl_diag *d);
	int (*drop_tables)(struct sl_commit *c, const char *proc, struct sl_diag *d);
};

/* Returns the text of a checked JSON document without whitespace outside strings:
 * p itself when it has none, else a copy in b (NULL when b ran out of memory). The
 * one compaction every backend stores envelopes with (sl_store.c). */
const char *sl_store_compact(const char *p, size_t n, size_t *outlen, struct sl_buf *b);

/* The embedded SQLite backend (sl_store_sqlite.c). */
extern const struct sl_store_ops sl_store_sqlite_ops;
/* The NATS JetStream backend, for "nats://" paths (sl_store_nats.c; experimental). */
extern const struct sl_store_ops sl_store_nats_ops;

#endif
