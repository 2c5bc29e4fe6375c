/* sl_store_int.h - what the engine's other SQLite modules (sl_checkpoint, sl_dbapi)
 * may see of the store: its connection. Not for use outside libsluice. */
#ifndef SL_STORE_INT_H
#define SL_STORE_INT_H

#include <sqlite3.h>

#include "sl_store.h"

/* The store's one write connection (owned by the store). */
sqlite3 *sl_store_db(struct sl_store *s);
/* Records the connection's last SQLite error in d ("store '<path>': <what>: <msg>")
 * as SL_EBUSY, SL_ENOMEM or SL_EIO, and returns that code. */
int sl_store_db_error(struct sl_store *s, struct sl_diag *d, const char *what);

/* The store's path, for messages. */
const char *sl_store_path(const struct sl_store *s);

#endif
