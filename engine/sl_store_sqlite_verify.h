/* sl_store_sqlite_verify.h - the SQLite backend's verification (sl_store_verify), in a
 * file of its own beside sl_store_sqlite.c. Not for use outside the backend's files. */
#ifndef SL_STORE_SQLITE_VERIFY_H
#define SL_STORE_SQLITE_VERIFY_H

#include "sl_store.h"

struct sqlite3;

/* sl_store_verify on the connection db of the store at path (for messages). Runs in a
 * read transaction of its own: call it with no transaction open. */
int sl_sqlite_verify(struct sqlite3 *db, const char *path, int flags, sl_problem_fn fn,
                     sl_verify_progress_fn progress, void *ud, struct sl_store_verify_summary *sum,
                     struct sl_diag *d);

/* Records the opening of db for writing (its pid and host in sl_opens) after checking
 * for the rows of processes of this host that no longer run: if there are any, the
 * store was not closed cleanly, and the quick verification runs; a problem found
 * fails with SL_ECORRUPT (the rows stay), else those rows are removed. sync_sql
 * restores the connection's synchronous setting afterwards (the row itself needs no
 * fsync: it reaches the disk with the connection's first durable commit, and a
 * connection that commits nothing cannot have damaged anything). Sets *id, the
 * row to remove at close. Call with no transaction open. */
int sl_sqlite_open_mark(struct sqlite3 *db, const char *path, const char *sync_sql, int64_t *id,
                        struct sl_diag *d);
/* Removes the row of a clean close (id 0: none); errors are ignored: the next open
 * would then run a needless quick check. */
void sl_sqlite_open_unmark(struct sqlite3 *db, int64_t id);

#endif
