/* sl_store.h - the store: the event log, its unit of work (the commit) and leases.
 *
 * Every access to stored data in sluice goes through this interface and its rows half,
 * sl_checkpoint.h. Neither names a type of the backend or of Lua, so another backend
 * (NATS JetStream, DESIGN §11) can sit beside the embedded SQLite one: sl_store_open
 * picks the backend from the path (sl_store_backend.h is the seam).
 *
 * Model (DESIGN §2, §7). A stream is named by a path of segments matching
 * [A-Za-z0-9_-][A-Za-z0-9._-]* joined by '/', at most 255 bytes. Each event has a
 * per-stream `offset` (1, 2, 3, ... without gaps) and a store-wide `position`
 * (strictly increasing across streams). The first append to a stream writes
 * `stream/created {path}` at offset 1 in the same transaction and announces the
 * stream to every ancestor with `stream/child-stream-created {childPath}` (key
 * `child-stream-created:<path>`), creating ancestors as needed. `stream/paused`
 * closes a stream to every append but `stream/resumed` and `stream/error-occurred`;
 * `stream/metadata-updated {metadata}` replaces its metadata.
 *
 * Order of checks for an append: every event is validated strictly first
 * (sl_store_check_event, with the store's payload check); then, event by event, its
 * idempotency key (a hit returns the stored event and writes nothing; a hit whose
 * explicit offset differs is an error), the pause door and the compare-and-set
 * offset. A batch is all-or-nothing: the first failing event rolls back every event
 * of the batch. An append is acknowledged only once durable (SQLite: WAL commit with
 * synchronous=FULL, or NORMAL when asked).
 *
 * Payload checks. The store validates envelopes; what a payload must contain is the
 * caller's business: a store opened with opts.check calls it for every appended event
 * (the host, the CLI and sluice.core pass sl_core_validate, which checks the core
 * stream/... types against schemas/core.contract.json).
 *
 * The unit of work. Writes that must be atomic together (a batch's appends,
 * checkpoint and projection rows; a fault and its stream/error-occurred; a dead
 * letter and the checkpoint moving past it; a reset and the drop of the processor's
 * tables; a version rebuild) go through one commit object, which the backend hands
 * out (sl_commit_begin) and takes back (sl_commit_end): exactly one end per begin,
 * whatever happened in between, as a libuv request gets exactly one completion. A
 * store has at most one commit open at a time; while it is open, sl_store_append and
 * the lease calls fail with SL_EBUSY (they are units of work of their own), and
 * reads see the commit's writes. Nobody else sees a transaction or a connection.
 *
 * Leases (DESIGN §8). One row per processor, {processor, owner, epoch, expiresAt}:
 * the runner that holds it is the only one whose batches may commit. A commit begun
 * with a fence {processor, owner, epoch} checks, inside its transaction, that the
 * row still names that owner with that epoch, and fails with SL_EFENCED otherwise.
 * (A lease that expired but was not taken by anyone still passes: only a takeover
 * raises the epoch, and until then no other runner can have applied an event.)
 *
 * Unclean shutdown (SQLite backend). A read-write open records its process (pid and
 * host) in the store and a clean close removes the record. A read-write open that
 * finds the record of a process of this host that no longer runs knows that process
 * stopped without closing the store (killed, crashed, power lost): it runs the quick
 * verification (SL_VERIFY_QUICK) once, and refuses to open with SL_ECORRUPT, "store
 * 'x.db' was not closed cleanly (pid 42 on h) and fails its quick check: ...; run
 * 'sluice verify --store x.db'", when that finds a problem (the records stay, so
 * every later open refuses too); else it clears the records and goes on. A record of
 * another host is left alone (whether it runs cannot be told).
 *
 * Threads: a struct sl_store is used by one thread at a time. Several processes may
 * open the same store; writers take turns: one that finds the store locked looks
 * again every millisecond, for SL_STORE_BUSY_MS at most.
 *
 * Ownership: arguments are borrowed. Views handed to callbacks (struct sl_event,
 * struct sl_stream_info) are valid only during the callback.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"

#define SL_STREAM_MAX 255 /* bytes in a stream name */
/* What a valid stream name is, after "invalid stream name '...'" in every message. */
#define SL_STREAM_RULE                                                                             \
	" (segments of [A-Za-z0-9_-][A-Za-z0-9._-]* joined by '/', at most 255 bytes)"
#define SL_TYPE_MAX 128            /* bytes in an event type */
#define SL_EVENT_MAX (1024 * 1024) /* bytes in a stored envelope (its JSON line) */
#define SL_OWNER_MAX 255           /* bytes in a lease owner */
#define SL_STORE_BUSY_MS 10000

struct sl_store;
struct sl_commit;
struct sl_proj;
struct sl_buf;

enum sl_durability { SL_DURABILITY_FULL, SL_DURABILITY_NORMAL };

/* Checks the payload (a JSON object text; "{}" when the event has none) of an event
 * of `type`. Returns 0, or a negative code with d naming what is wrong; the store
 * puts "payload: " in front. Called on the thread using the store. */
typedef int (*sl_payload_check_fn)(void *ud, const char *type, const char *json, size_t len,
                                   struct sl_diag *d);

struct sl_store_opts {
	enum sl_durability durability;
	int readonly;              /* open an existing store for reading only */
	sl_payload_check_fn check; /* run on every appended event, or NULL */
	void *check_ud;            /* borrowed: must outlive the store */
	/* A nats:// store only (a SQLite store ignores them): */
	const char *ns;          /* the namespace (SL_STORE_NS_DEFAULT when NULL); borrowed */
	int replicas;            /* replicas of the streams and buckets it creates, 1..5; 0: 3 when
	                          * the cluster has 3 or more nodes, else 1 */
	const char *projections; /* the SQLite file of its projection tables (ctx.db),
	                          * opened at the first commit that uses ctx.db; NULL:
	                          * none (ctx.db raises); borrowed */
};

/* The namespace of a nats:// store when none is given, and the rule for one: 1 to
 * SL_STORE_NS_MAX bytes of [A-Za-z0-9_-] (it names JetStream streams, subjects and
 * buckets). */
#define SL_STORE_NS_DEFAULT "sluice"
#define SL_STORE_NS_MAX 64
#define SL_STORE_MAX_REPLICAS 5

/* Returns 1 if `ns` is a valid namespace. */
int sl_store_ns_valid(const char *ns);

/* ---- opening --------------------------------------------------------------------- */

/* Opens the store at `path`: "nats://..." names a NATS JetStream cluster (the
 * experimental backend of sl_store_nats.c: the rows of sl_checkpoint.h in key-value
 * buckets, no commit groups, projection tables in opts->projections), anything else a
 * SQLite file, created
 * and migrated if needed (a read-only open of a missing file fails). opts may be NULL (full
 * durability, read-write, no payload check). On failure *out is NULL and d says why,
 * e.g. "cannot open store 'x.db': unable to open database file". */
int sl_store_open(struct sl_store **out, const char *path, const struct sl_store_opts *opts,
                  struct sl_diag *d);
/* Closes the store; NULL is a no-op. A commit still open is rolled back and freed. */
void sl_store_close(struct sl_store *s);

/* ---- appending -------------------------------------------------------------------- */

/* One event to append, as a user gives it. Strings are NUL-terminated except the
 * JSON texts, which carry their length. */
struct sl_event_in {
	const char *stream;
	const char *type;
	const char *payload; /* JSON object text; NULL means {} */
	size_t payload_len;
	const char *metadata; /* JSON object text, or NULL */
	size_t metadata_len;
	const char *key; /* idempotency key, or NULL */
	int64_t offset;  /* expected offset (compare-and-set), or 0 for "next" */
};

/* What one append did. */
struct sl_append_result {
	int64_t offset;
	int64_t position;
	int duplicate; /* 1 when an idempotency key matched a stored event */
};

/* Validates one event strictly, as a user's input: stream name, type (non-empty,
 * at most SL_TYPE_MAX bytes, no core type users may not append), payload and
 * metadata (strict JSON objects), key (not blank), offset (>= 1 when given), size
 * of the envelope, and then the payload with check (if not NULL). Touches no store.
 * Messages name the field: "payload: must be a JSON object, got array". */
int sl_store_check_event(const struct sl_event_in *ev, sl_payload_check_fn check, void *ud,
                         struct sl_diag *d);

/* Returns 1 if `name` is a valid stream name. */
int sl_stream_name_valid(const char *name);

#define SL_APPEND_CHECKED 1 /* every event already passed sl_store_check_event */

/* Appends n events as one all-or-nothing batch in a transaction of its own and fills
 * res[0..n). On failure nothing is written, *failed (if not NULL) is the index of the
 * failing event and d says why (SL_EINVAL bad input, SL_EPAUSED, SL_ECONFLICT,
 * SL_EBUSY, SL_EIO). Inside a batch, use sl_commit_append. */
int sl_store_append(struct sl_store *s, const struct sl_event_in *ev, size_t n,
                    struct sl_append_result *res, int flags, size_t *failed, struct sl_diag *d);

/* ---- reading ------------------------------------------------------------------------ */

/* A stored event, as handed to a reader. */
struct sl_event {
	const char *stream;
	int64_t offset;
	int64_t position;
	const char *type;
	const char *payload; /* compact JSON object text */
	size_t payload_len;
	const char *metadata; /* compact JSON object text, or NULL */
	size_t metadata_len;
	const char *key;        /* or NULL */
	const char *created_at; /* 2026-11-25T12:00:00.123Z */
};

/* Reader callback: return 0 to go on, 1 to stop, a negative code to fail. */
typedef int (*sl_event_fn)(void *ud, const struct sl_event *ev);

/* Calls fn for the events of `stream` with offset >= from, in offset order, at
 * most `limit` of them (limit <= 0: all), only those of type `type` if not NULL.
 * Offsets are contiguous: an offset missing between `from` and the last event read
 * (a damaged store) fails the read with SL_ECORRUPT, "store 'x.db': stream 's/1' has
 * no event at offset 3 (the store is damaged: see sluice verify)", after fn saw the
 * events before it; a type filter does not hide the hole. */
int sl_store_read(struct sl_store *s, const char *stream, int64_t from, int64_t limit,
                  const char *type, sl_event_fn fn, void *ud, struct sl_diag *d);

/* Calls fn for every event with position >= from, in position order. */
int sl_store_read_all(struct sl_store *s, int64_t from, int64_t limit, sl_event_fn fn, void *ud,
                      struct sl_diag *d);

/* Calls fn for the events of the streams from `stream` to `last` (both included, in
 * the byte order of their names), in that order and then in offset order, starting at
 * offset `from` of `stream`, at most `limit` of them: one read for the events of many
 * neighbouring streams (the pump's catch-up over many small instances). Unlike
 * sl_store_read it checks no offsets: the caller does. SL_EINVAL when the backend has
 * no such read (sl_store_has_read_range says so beforehand). */
int sl_store_read_range(struct sl_store *s, const char *stream, int64_t from, const char *last,
                        int64_t limit, sl_event_fn fn, void *ud, struct sl_diag *d);
int sl_store_has_read_range(const struct sl_store *s);

struct sl_stream_info {
	const char *stream;
	int64_t head; /* offset of the last event */
	int paused;
	const char *pause_reason; /* or NULL */
	const char *metadata;     /* JSON object text, "{}" when never set */
};

typedef int (*sl_stream_fn)(void *ud, const struct sl_stream_info *info);

/* Calls fn for `prefix` itself and every stream below it ("orders" lists "orders"
 * and "orders/42", not "orders2"), or for every stream when prefix is NULL or "",
 * in name order. */
int sl_store_streams(struct sl_store *s, const char *prefix, sl_stream_fn fn, void *ud,
                     struct sl_diag *d);

/* The store-wide head: the highest position, 0 for an empty store. */
int sl_store_head_position(struct sl_store *s, int64_t *pos, struct sl_diag *d);

/* A number that changes whenever anything was committed to the store since the last
 * call: a commit of another connection (another process) or one of this store's own
 * (an append, a commit, a lease taken or released); it stays the same while nothing is
 * committed. What the pump's slow poll compares. SQLite: PRAGMA data_version, which
 * sees other connections' commits only, combined with a count of the connection's own. */
int sl_store_data_version(struct sl_store *s, int64_t *v, struct sl_diag *d);
/* The path of a file whose modification signals a commit by any process, for a file
 * watch (SQLite in WAL mode: "<store>-wal", which exists while the store is open);
 * NULL when the backend has none (a read-only store, a backend without files). Owned
 * by the store. */
const char *sl_store_watch_file(struct sl_store *s);

/* Called after the store may have changed, from a thread of the backend's own. */
typedef void (*sl_store_wake_fn)(void *ud);
/* Asks the backend to call fn(ud) soon after every append by any process (for a
 * backend without files to watch: JetStream, through a subscription to the
 * namespace's event subjects). fn runs on a thread of the backend, at any time until
 * sl_store_wake_stop returns or the store is closed, so it may only do what is safe
 * from any thread (uv_async_send); calls may be merged or spurious. Returns
 * SL_ENOTSUP when the backend has no such wake (SQLite: use the watch file), or an
 * error in d. One wake per store: a second call replaces the first. */
int sl_store_wake_start(struct sl_store *s, sl_store_wake_fn fn, void *ud, struct sl_diag *d);
/* Stops the wake; fn is not called once this returns. A no-op without one. */
void sl_store_wake_stop(struct sl_store *s);

/* ---- verifying ------------------------------------------------------------------------- */

/* One problem sl_store_verify found; valid during the callback only. `problem` is:
 *   integrity         the backend's own check of its files failed (SQLite: a line of
 *                     PRAGMA integrity_check/quick_check, or a read refused as damaged)
 *   missing-offsets   stream has no events at offsets offset..to
 *   bad-offset        stream has an event at offset < 1
 *   bad-first-event   the event at offset 1 is not stream/created
 *   extra-created     a stream/created at offset > 1
 *   position-order    the event at offset has a position (position) not above the one
 *                     of the offset before it
 *   duplicate-position  position is held by more than one event
 *   head-mismatch     the stream's recorded head is not its last offset (offset: the
 *                     last offset stored, 0 if none; head: -1 when there is no stream
 *                     record at all)
 *   checkpoint-ahead  processor's checkpoint (offset) is above the stream's head (for
 *                     a mode "all" processor, stream NULL: the store's head position)
 *   taken-back-present  (JetStream) events that a failed append took back (its
 *                     take-back record at position) are still in the log
 * Numbers that do not apply are -1. */
struct sl_store_problem {
	const char *problem;
	const char *stream;    /* or NULL */
	const char *processor; /* or NULL */
	int64_t offset, to, position, head;
	const char *message; /* one sentence for people, naming the stream */
};

/* What a verification looked at. */
struct sl_store_verify_summary {
	int64_t streams;     /* stream records */
	int64_t events;      /* events walked (0 with SL_VERIFY_QUICK) */
	int64_t checkpoints; /* checkpoint rows */
	int64_t problems;
};

/* Problem callback: 0 to go on, a negative code to stop with it. */
typedef int (*sl_problem_fn)(void *ud, const struct sl_store_problem *p);
/* Progress callback of the walk over the events: done of about total events. */
typedef void (*sl_verify_progress_fn)(void *ud, int64_t done, int64_t total);

#define SL_VERIFY_QUICK 1 /* only what is cheap: see sl_store_verify */

/* Checks the store and calls fn (if not NULL) for every problem found, all of it in
 * one read snapshot:
 *   - the backend's own check (SQLite: PRAGMA integrity_check; quick_check when quick);
 *   - every stream's recorded head is its last offset, and every checkpoint is at or
 *     below its stream's head;
 *   - unless quick, a walk over every event in offset order: offsets contiguous from
 *     1, exactly one stream/created, at offset 1; positions rising with offsets; and
 *     every position held by one event only; streams with events but no record.
 * Returns 0 when the check ran, whatever it found (sum->problems says); SL_EIO,
 * SL_EBUSY, SL_ENOMEM when it could not run, or the code fn returned. progress (if not
 * NULL) is called now and then during the walk; ud goes to both callbacks. */
int sl_store_verify(struct sl_store *s, int flags, sl_problem_fn fn, sl_verify_progress_fn progress,
                    void *ud, struct sl_store_verify_summary *sum, struct sl_diag *d);

/* ---- the commit: one unit of work ---------------------------------------------------- */

/* Who may commit for a processor: the lease's owner at that epoch. Borrowed by
 * sl_commit_begin (it keeps a copy). */
struct sl_fence {
	const char *processor;
	const char *owner;
	int64_t epoch;
	int part; /* 1 + the partition whose lease it is (sl_store_part_acquire); 0: the
	           * processor's lease */
};

/* Opens a unit of work on the store (SQLite: BEGIN IMMEDIATE, so the write lock is
 * held until the end). With a fence (NULL: none) the processor's lease row must name
 * fence->owner at fence->epoch, checked inside the transaction now and again when it
 * commits; else SL_EFENCED: "processor 'counter' is run by <owner> (epoch 3), not by
 * <fence owner> (epoch 2); nothing was committed". On failure *out is NULL and
 * nothing is open. */
int sl_commit_begin(struct sl_store *s, const struct sl_fence *fence, struct sl_commit **out,
                    struct sl_diag *d);

/* sl_store_append inside the commit: the batch is all-or-nothing within it (a
 * failing call leaves the commit's other writes in place) and becomes durable when
 * the commit ends with commit = 1. res must stay valid until sl_commit_end: a backend
 * may complete it only then (the JetStream backend publishes the events when the
 * commit ends, and learns their positions, and which were duplicates, then). */
int sl_commit_append(struct sl_commit *c, const struct sl_event_in *ev, size_t n,
                     struct sl_append_result *res, int flags, size_t *failed, struct sl_diag *d);

/* The projection handle of the commit: what ctx.db (sl_dbapi.h) binds to so that the
 * hooks' SQL runs in this unit of work. Valid until sl_commit_end; NULL when the
 * store has no projection tables (a nats:// store opened without opts->projections,
 * or whose projection database could not be opened: logged). */
struct sl_proj *sl_commit_projection(struct sl_commit *c);

/* Ends the unit of work: commit = 1 makes every write durable (after checking the
 * fence again), commit = 0 rolls them back. Always frees c, also when committing
 * fails (everything is then rolled back and d says why); NULL is a no-op. */
int sl_commit_end(struct sl_commit *c, int commit, struct sl_diag *d);

/* A commit group: the commits begun from sl_store_group_begin to sl_store_group_end
 * share one transaction (SQLite: each is a savepoint of it), so a catch-up over many
 * instances takes the write lock, writes its pages and syncs once per group instead
 * of once per batch. Inside the group a commit that ends with commit = 1 is kept
 * (later reads see it) but durable only when the group ends with commit = 1; a commit
 * that fails or is rolled back takes back its own writes only. When the group fails
 * to commit (or ends with commit = 0) every commit of it is taken back, and the
 * caller must forget what it learnt from them. While a group is open sl_store_append,
 * the lease calls and verify fail with SL_EBUSY, as under an open commit.
 *
 * sl_store_group_begin returns 1 when a group was opened, 0 when the backend has no
 * groups or one is already open (commits are then each durable on their own, and
 * sl_store_group_end does nothing). Call it with no commit open. */
int sl_store_group_begin(struct sl_store *s);
/* Whether a group is open. */
int sl_store_in_group(const struct sl_store *s);
/* Ends the group: commit = 1 makes its kept commits durable together, commit = 0
 * takes them all back. Returns 0, or the error that took them all back (d says
 * why). A no-op (0) when no group is open. */
int sl_store_group_end(struct sl_store *s, int commit, struct sl_diag *d);

/* ---- leases (DESIGN §8) --------------------------------------------------------------- */

/* One lease row. The lease is live while expires_at is in the future. */
struct sl_lease {
	char owner[SL_OWNER_MAX + 1]; /* "" when nobody holds it (never taken, released) */
	int64_t epoch;                /* raised each time the lease changes hands */
	int64_t expires_at;           /* milliseconds since the Unix epoch (store clock) */
};

/* Takes or renews the lease of proc for owner (1..SL_OWNER_MAX bytes) for ttl_ms:
 * when it is free, expired or already owner's it is taken, until now + ttl_ms (epoch
 * + 1 when it changes hands, the same epoch when owner renews); when another owner
 * holds a live lease nothing changes. Either way *out is the row afterwards, so
 * out->owner says who holds it (compare with owner) and out->epoch is the fence. */
int sl_store_lease_acquire(struct sl_store *s, const char *proc, const char *owner, int64_t ttl_ms,
                           struct sl_lease *out, struct sl_diag *d);
/* Gives the lease of proc up at once if owner holds it (kept epoch, no owner);
 * otherwise does nothing. */
int sl_store_lease_release(struct sl_store *s, const char *proc, const char *owner,
                           struct sl_diag *d);
/* Reads the lease row of proc: *found is 0 (and out zeroed) when it was never taken. */
int sl_store_lease_get(struct sl_store *s, const char *proc, struct sl_lease *out, int *found,
                       struct sl_diag *d);

/* ---- partitioned runners (a nats:// store only) ------------------------------------------
 *
 * A processor may split its instances over several runners: partition
 * sl_partition_of(stream, n) of n, each partition with a lease of its own (the same
 * row and rules as the processor's lease above), and every runner of the processor
 * announcing itself with a heartbeat (sl_store_runners) so that the runners agree on
 * who takes which partition. A backend without them (SQLite) refuses every call with
 * SL_EINVAL; sl_store_has_partitions says beforehand. */

#define SL_PARTITIONS_MAX 1024 /* partitions of a processor at most */

/* 1 when the store's backend has partitioned runners. */
int sl_store_has_partitions(const struct sl_store *s);
/* The partition of stream among n (1..SL_PARTITIONS_MAX): sl_hash_str of the
 * stream's name (the engine's 64-bit FNV-1a, sl_hash.h), modulo n. The README
 * documents it: changing it moves instances between partitions. */
int sl_partition_of(const char *stream, int n);
/* sl_store_lease_acquire, _release and _get for partition part (0..SL_PARTITIONS_MAX-1)
 * of proc. */
int sl_store_part_acquire(struct sl_store *s, const char *proc, int part, const char *owner,
                          int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d);
int sl_store_part_release(struct sl_store *s, const char *proc, int part, const char *owner,
                          struct sl_diag *d);
int sl_store_part_get(struct sl_store *s, const char *proc, int part, struct sl_lease *out,
                      int *found, struct sl_diag *d);

/* Called once per live runner, in strcmp order of owner, with the time its heartbeat
 * ends (unix ms); a negative return stops and is returned. */
typedef int (*sl_runner_fn)(void *ud, const char *owner, int64_t until_ms);
/* The runners of proc whose heartbeat has not expired. With owner (a writable store)
 * the heartbeat of owner is first set to end ttl_ms from now, or removed when ttl_ms
 * is 0 (a runner that leaves), and expired ones are dropped; without, the runners are
 * only read. fn sees owner too when it was set. */
int sl_store_runners(struct sl_store *s, const char *proc, const char *owner, int64_t ttl_ms,
                     sl_runner_fn fn, void *ud, struct sl_diag *d);

/* ---- small things -------------------------------------------------------------------- */

/* Writes the current UTC time as the store writes createdAt ("2026-11-25T12:00:00.123Z"). */
void sl_store_now(char *out, size_t n);
/* The store clock of leases: milliseconds since the Unix epoch. */
int64_t sl_store_now_ms(void);

/* Writes the JSON envelope of ev (one line, no newline) to b. */
void sl_event_to_json(const struct sl_event *ev, struct sl_buf *b);

#endif
