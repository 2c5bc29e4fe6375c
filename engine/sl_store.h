/* sl_store.h - the event log: named, ordered streams in one SQLite database.
 *
 * Every event-log access in sluice goes through this interface, so that another
 * store (NATS JetStream) can sit beside the embedded SQLite one.
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
 * Order of checks for one event of an append: the input is validated strictly
 * (sl_store_check_event); then its idempotency key (a hit returns the stored event
 * and writes nothing; a hit whose explicit offset differs is an error); then the
 * pause door; then the compare-and-set offset. A batch is all-or-nothing: the first
 * failing event rolls back every event of the batch. An append is acknowledged only
 * once durable (WAL commit with synchronous=FULL, or NORMAL when asked).
 *
 * Threads: a struct sl_store is used by one thread at a time. Several processes may
 * open the same store; writers take turns (busy timeout SL_STORE_BUSY_MS).
 *
 * Ownership: arguments are borrowed. Views handed to callbacks (struct sl_event,
 * struct sl_stream_info) are valid only during the callback.
 */
#ifndef SL_STORE_H
#define SL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"

#define SL_STREAM_MAX 255          /* bytes in a stream name */
#define SL_TYPE_MAX 128            /* bytes in an event type */
#define SL_EVENT_MAX (1024 * 1024) /* bytes in a stored envelope (its JSON line) */
#define SL_STORE_BUSY_MS 10000

struct sl_store;

enum sl_durability { SL_DURABILITY_FULL, SL_DURABILITY_NORMAL };

struct sl_store_opts {
	enum sl_durability durability;
	int readonly; /* open an existing store for reading only */
};

/* Opens (creating and migrating if needed) the store at `path`. opts may be NULL
 * (full durability, read-write). On failure *out is NULL and d says why, e.g.
 * "cannot open store 'x.db': unable to open database file". */
int sl_store_open(struct sl_store **out, const char *path, const struct sl_store_opts *opts,
		  struct sl_diag *d);
/* Closes the store; NULL is a no-op. */
void sl_store_close(struct sl_store *s);

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
 * of the envelope, and the payload of core types. Touches no database. Messages
 * name the field: "payload: must be a JSON object, got array". */
int sl_store_check_event(const struct sl_event_in *ev, struct sl_diag *d);

/* Returns 1 if `name` is a valid stream name. */
int sl_stream_name_valid(const char *name);

#define SL_APPEND_CHECKED 1 /* every event already passed sl_store_check_event */

/* Appends n events as one all-or-nothing batch and fills res[0..n). On failure
 * nothing is written, *failed (if not NULL) is the index of the failing event and
 * d says why (SL_EINVAL bad input, SL_EPAUSED, SL_ECONFLICT, SL_EBUSY, SL_EIO).
 * Inside a transaction opened with sl_store_begin the batch is a savepoint of it,
 * and it becomes durable with sl_store_commit. */
int sl_store_append(struct sl_store *s, const struct sl_event_in *ev, size_t n,
		    struct sl_append_result *res, int flags, size_t *failed, struct sl_diag *d);

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
 * most `limit` of them (limit <= 0: all), only those of type `type` if not NULL. */
int sl_store_read(struct sl_store *s, const char *stream, int64_t from, int64_t limit,
		  const char *type, sl_event_fn fn, void *ud, struct sl_diag *d);

/* Calls fn for every event with position >= from, in position order. */
int sl_store_read_all(struct sl_store *s, int64_t from, int64_t limit, sl_event_fn fn,
		      void *ud, struct sl_diag *d);

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

/* Transactions spanning several appends and other writes (the processor commit).
 * begin takes the write lock (BEGIN IMMEDIATE). */
int sl_store_begin(struct sl_store *s, struct sl_diag *d);
int sl_store_commit(struct sl_store *s, struct sl_diag *d);
void sl_store_rollback(struct sl_store *s);
/* 1 while a transaction is open on the store's connection. */
int sl_store_in_txn(struct sl_store *s);

/* Writes the current UTC time as the store writes createdAt ("2026-11-25T12:00:00.123Z"). */
void sl_store_now(char *out, size_t n);

/* Writes the JSON envelope of ev (one line, no newline) to b. */
struct sl_buf;
void sl_event_to_json(const struct sl_event *ev, struct sl_buf *b);

#endif
