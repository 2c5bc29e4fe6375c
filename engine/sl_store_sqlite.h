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

#endif
