/* sl_dbapi.h - ctx.db: SQL on a processor's own tables (DESIGN §4, §7 "ctx.db").
 *
 * db:exec(sql [, params]) returns the number of changed rows; db:query(sql [, params])
 * returns an array of rows (column -> value). params is an array for `?` or a table
 * for `:name`. Tables a processor creates belong to it (recorded in sl_tables) and are
 * shared by its instances. SQLite's authorizer keeps everything else out of reach:
 * the engine's tables, other processors' tables, ATTACH/DETACH, PRAGMA, transactions
 * and load_extension. Statements are prepared once and cached per SQL text.
 *
 * db is usable only while bound to the projection handle of an open commit
 * (sl_commit_projection: hooks and prepare run inside one); elsewhere it raises. Its
 * writes join that commit. The api never sees the store itself.
 */
#ifndef SL_DBAPI_H
#define SL_DBAPI_H

#include <lua.h>

#include "sl_error.h"

struct sqlite3_stmt;

/* Pushes column i of the statement's current row as ctx.db:query gives it: integer,
 * float, text or blob as a string, NULL as the null sentinel. [-0, +1, m] */
/* Binds params (table at idx: array for ?, keys for :name, @name, $name; nil and the
 * null sentinel bind NULL) as ctx.db does. [-0, +0, e] */
void sl_dbapi_bind_params(lua_State *L, struct sqlite3_stmt *st, int idx);

void sl_dbapi_push_column(lua_State *L, struct sqlite3_stmt *st, int i);

struct sl_dbapi;
struct sl_proj;

/* A ctx.db for processor proc (copied), bound to nothing yet. */
int sl_dbapi_new(struct sl_dbapi **out, const char *proc, struct sl_diag *d);
/* Finalizes its statements: call it before the store it was bound to closes. */
void sl_dbapi_free(struct sl_dbapi *api);

/* Binds db to a commit's projection handle (valid until that commit ends), or unbinds
 * it (pj NULL: db raises again). The first bind to a store reads which tables the
 * processors own; statements stay cached from one bind to the next. */
int sl_dbapi_bind(struct sl_dbapi *api, struct sl_proj *pj, struct sl_diag *d);
/* Marks a commit open on a store without projection tables (a JetStream store): db
 * raises, saying so, until the next sl_dbapi_bind. */
void sl_dbapi_bind_none(struct sl_dbapi *api);

/* Pushes the db object (a table with exec and query). [-0, +1, m] */
void sl_dbapi_push(lua_State *L, struct sl_dbapi *api);

/* While log is not NULL, every db:exec that succeeds is recorded in it (its SQL and
 * parameters), so a batch that had to give up its transaction can replay them. */
struct sl_buf;
void sl_dbapi_log(struct sl_dbapi *api, struct sl_buf *log);
/* Runs the recorded statements again, in order, in the commit db is bound to. */
int sl_dbapi_replay(lua_State *L, struct sl_dbapi *api, const struct sl_buf *log,
                    struct sl_diag *d);

/* Forgets the tables owned by the processor (after they were dropped); the next bind
 * reads the owners again. */
void sl_dbapi_forget_tables(struct sl_dbapi *api);

#endif
