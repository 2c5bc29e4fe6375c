/* sl_store_sqlite.h - what the SQLite backend shows ctx.db (sl_dbapi.c), its one other
 * SQLite user: the connection behind a projection handle.
 *
 * A projection handle (struct sl_proj, from sl_commit_projection) stands for the
 * store's connection while a commit is open on it: SQL run through it joins that
 * commit. The handle is the same object for every commit of one store, so statements
 * prepared through it stay valid from commit to commit (until the store closes: a
 * user of the handle finalizes its statements before that).
 *
 * The backend installs SQLite's authorizer once, when it opens the connection (installing
 * one expires every prepared statement, so it is never toggled); it lets everything
 * through unless a check is set with sl_proj_authorize, which ctx.db does only while one
 * of its calls runs. Not for use outside sl_store_sqlite.c and sl_dbapi.c.
 */
#ifndef SL_STORE_SQLITE_H
#define SL_STORE_SQLITE_H

#include <stdint.h>

#include "sl_error.h"
#include "sl_store.h"

struct sqlite3;
struct sl_proj;

/* The connection behind pj (owned by the store). */
struct sqlite3 *sl_proj_db(struct sl_proj *pj);

/* The store's path, for messages. */
const char *sl_proj_path(const struct sl_proj *pj);

/* An authorizer check, with the arguments of sqlite3_set_authorizer's callback. */
typedef int (*sl_proj_auth_fn)(void *ud, int action, const char *a1, const char *a2,
                               const char *dbname, const char *trigger);

/* Sets the check every statement prepared on pj's connection goes through from now
 * on, or (fn NULL) lets everything through again. */
void sl_proj_authorize(struct sl_proj *pj, sl_proj_auth_fn fn, void *ud);

/* Called by ctx.db before each statement it runs (and by the replay of a batch's
 * statements): a backend that begins its transaction only once ctx.db is used (the
 * JetStream backend's) does it there. An error raises in the script. */
typedef int (*sl_proj_touch_fn)(void *ud, struct sl_diag *d);
void sl_proj_on_touch(struct sl_proj *pj, sl_proj_touch_fn fn, void *ud);
int sl_proj_touch(struct sl_proj *pj, struct sl_diag *d);

/* The statement log: while one is set, ctx.db appends to it every statement that ran
 * with its parameters (and its own writes to sl_tables), so that a backend can run
 * them again elsewhere (sl_store_nats.c keeps a batch's with its checkpoint). A record
 * is the SQL text and its NUL, a count N (4 bytes, big-endian) and N parameters: its
 * index (4 bytes), a kind byte and the value: 'n' NULL; 'i' an integer (8 bytes,
 * two's complement); 'f' a double (its 8 bytes of IEEE 754); 't' text (a 4-byte
 * length and the bytes). sl_proj_replay runs such a log. */
struct sl_buf;
void sl_proj_set_log(struct sl_proj *pj, struct sl_buf *log);
struct sl_buf *sl_proj_log(struct sl_proj *pj); /* NULL for pj NULL */
/* Runs the statements of log[0..len) in order (inside the caller's transaction). */
int sl_proj_replay(struct sl_proj *pj, const unsigned char *log, size_t len, struct sl_diag *d);

/* ---- a projection database of its own ----------------------------------------------
 * The JetStream backend keeps projection tables in a SQLite file beside the runner
 * (sl_store_nats.c): sl_proj_open opens or creates it (WAL, synchronous by dur, the
 * authorizer installed as on a store's connection) with sl_tables and sl_proj_marks
 * (key -> the checkpoint offset whose projection rows it holds). */
int sl_proj_open(struct sl_proj **out, const char *path, enum sl_durability dur, struct sl_diag *d);
/* Closes a handle of sl_proj_open (a store's own handle, or NULL, is left alone). */
void sl_proj_close(struct sl_proj *pj);
/* Runs sql (one or more statements, no results). */
int sl_proj_exec(struct sl_proj *pj, const char *sql, struct sl_diag *d);
/* The mark of key (*offset -1: none); a negative offset deletes it. */
int sl_proj_mark_get(struct sl_proj *pj, const char *key, int64_t *offset, struct sl_diag *d);
int sl_proj_mark_put(struct sl_proj *pj, const char *key, int64_t offset, struct sl_diag *d);
/* Drops proc's tables and views, forgets them, and deletes the marks whose key starts
 * with key_prefix. */
int sl_proj_drop_tables(struct sl_proj *pj, const char *proc, const char *key_prefix,
                        struct sl_diag *d);

#endif
