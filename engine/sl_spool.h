/* sl_spool.h - the spool of `sluice append --jsonl`: validated events kept in a
 * temporary file until the whole input is known to be good, then read back chunk by
 * chunk for the commits.
 *
 * Why. `append --jsonl` validates every line before it writes anything (a bad line
 * anywhere writes nothing), so it must keep what it validated until the end of the
 * input. Kept in memory that grew with the input (about 240 bytes per event: 714 MB
 * at 3 M lines); kept here, the memory is one chunk's events and two file buffers,
 * whatever the input's length.
 *
 * The file. Created in the directory of the store (the store needs it writable for
 * its WAL anyway, and the store's disk is where the events are going), else in
 * $TMPDIR, else in /tmp, and removed from the directory at once (O_TMPFILE where the
 * file system has it, else mkstemp and unlink), so nothing is left behind however the
 * process ends. It holds each event's fields compacted (payload and metadata without
 * whitespace outside strings), as the store writes them.
 *
 * Use: sl_spool_new, sl_spool_add for every event (in input order), sl_spool_rewind,
 * then sl_spool_next until it returns no events; sl_spool_free. Not for threads: one
 * user at a time. Ownership: arguments are borrowed; the chunk sl_spool_next hands out
 * belongs to the spool and is valid until the next call.
 */
#ifndef SL_SPOOL_H
#define SL_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"
#include "sl_store.h"

/* The most JSON text (payloads, metadata, names) one chunk holds in memory; a chunk
 * ends before an event that would take it past this (a chunk has at least one
 * event, and an event is at most SL_EVENT_MAX). */
#define SL_SPOOL_CHUNK_BYTES ((size_t)16 << 20)

struct sl_spool;

/* One chunk read back: ev[i] came from input line lineno[i]. */
struct sl_spool_chunk {
	const struct sl_event_in *ev;
	const int64_t *lineno;
	size_t n;
};

/* Creates the spool's file near `store_path` (see above; "" or NULL: $TMPDIR or
 * /tmp). On failure *out is NULL and d says why: "cannot create a temporary file in
 * '/data': Permission denied". */
int sl_spool_new(struct sl_spool **out, const char *store_path, struct sl_diag *d);
/* Frees the spool and closes (so removes) its file; NULL is a no-op. */
void sl_spool_free(struct sl_spool *sp);

/* Adds an event that passed sl_store_check_event, from input line `lineno`.
 * Returns 0, or SL_EIO ("cannot write the temporary file in '/data': No space left
 * on device") or SL_ENOMEM. */
int sl_spool_add(struct sl_spool *sp, const struct sl_event_in *ev, int64_t lineno,
                 struct sl_diag *d);
/* The number of events added. */
size_t sl_spool_count(const struct sl_spool *sp);

/* Ends the adding and goes back to the first event. */
int sl_spool_rewind(struct sl_spool *sp, struct sl_diag *d);
/* Reads the next chunk: up to `max` events (max >= 1) and SL_SPOOL_CHUNK_BYTES;
 * c->n is 0 after the last one. */
int sl_spool_next(struct sl_spool *sp, size_t max, struct sl_spool_chunk *c, struct sl_diag *d);

#endif
