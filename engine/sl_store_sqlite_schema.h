/* sl_store_sqlite_schema.h - the SQLite store's tables, one migration per
 * PRAGMA user_version step. Included only by sl_store_sqlite.c; a new version
 * appends a migration and raises SCHEMA_VERSION (existing stores are upgraded on
 * their next read-write open). */
#ifndef SL_STORE_SQLITE_SCHEMA_H
#define SL_STORE_SQLITE_SCHEMA_H

#define SCHEMA_VERSION 9

static const char *const schema_v1 =
	"CREATE TABLE sl_streams("
	" stream TEXT PRIMARY KEY NOT NULL,"
	" head INTEGER NOT NULL,"
	" paused INTEGER NOT NULL DEFAULT 0,"
	" pause_reason TEXT,"
	" metadata TEXT NOT NULL DEFAULT '{}'"
	") WITHOUT ROWID;"
	"CREATE TABLE sl_events("
	" stream TEXT NOT NULL,"
	" \"offset\" INTEGER NOT NULL,"
	" position INTEGER NOT NULL,"
	" type TEXT NOT NULL,"
	" payload TEXT NOT NULL,"
	" metadata TEXT,"
	" idem_key TEXT,"
	" created_at TEXT NOT NULL,"
	" PRIMARY KEY (stream, \"offset\")"
	") WITHOUT ROWID;"
	"CREATE UNIQUE INDEX sl_events_position ON sl_events(position);"
	"CREATE UNIQUE INDEX sl_events_key ON sl_events(stream, idem_key)"
	" WHERE idem_key IS NOT NULL;";

/* Version 2: the processor runtime's tables (sl_tables lists ctx.db's tables). */
static const char *const schema_v2 = "CREATE TABLE sl_processors("
				     " name TEXT PRIMARY KEY NOT NULL,"
				     " version INTEGER NOT NULL,"
				     " anchor INTEGER"
				     ") WITHOUT ROWID;"
				     "CREATE TABLE sl_checkpoints("
				     " processor TEXT NOT NULL,"
				     " stream TEXT NOT NULL,"
				     " \"offset\" INTEGER NOT NULL,"
				     " state TEXT,"
				     " effects_mark INTEGER NOT NULL DEFAULT 0,"
				     " status TEXT NOT NULL DEFAULT 'ok',"
				     " last_error TEXT,"
				     " background_failures INTEGER NOT NULL DEFAULT 0,"
				     " PRIMARY KEY (processor, stream)"
				     ") WITHOUT ROWID;"
				     "CREATE TABLE sl_tables("
				     " name TEXT PRIMARY KEY NOT NULL,"
				     " processor TEXT NOT NULL"
				     ") WITHOUT ROWID;";

/* Version 3: what changed scripts and contracts are detected by, and dead letters. */
static const char *const schema_v3 = "ALTER TABLE sl_processors ADD COLUMN script_hash TEXT;"
				     "ALTER TABLE sl_processors ADD COLUMN contract_hash TEXT;"
				     "CREATE TABLE sl_dead_letters("
				     " id INTEGER PRIMARY KEY,"
				     " processor TEXT NOT NULL,"
				     " stream TEXT NOT NULL,"
				     " \"offset\" INTEGER NOT NULL,"
				     " position INTEGER NOT NULL,"
				     " type TEXT NOT NULL,"
				     " error TEXT NOT NULL,"
				     " traceback TEXT,"
				     " attempts INTEGER NOT NULL,"
				     " at TEXT NOT NULL"
				     ");";

/* Version 4: one lease per processor (DESIGN §8); owner '' when nobody holds it. */
static const char *const schema_v4 = "CREATE TABLE sl_leases("
				     " processor TEXT PRIMARY KEY NOT NULL,"
				     " owner TEXT NOT NULL,"
				     " epoch INTEGER NOT NULL,"
				     " expires_at INTEGER NOT NULL"
				     ") WITHOUT ROWID;";

/* Version 5: the events per second a runner records per instance (sluice status),
 * and the error of a processor's last failed hot reload (a table of its own: the
 * processor may have no sl_processors row yet). */
static const char *const schema_v5 = "CREATE TABLE sl_rates("
				     " processor TEXT NOT NULL,"
				     " stream TEXT NOT NULL,"
				     " rate REAL NOT NULL,"
				     " updated_at INTEGER NOT NULL,"
				     " PRIMARY KEY (processor, stream)"
				     ") WITHOUT ROWID;"
				     "CREATE TABLE sl_reload_errors("
				     " processor TEXT PRIMARY KEY NOT NULL,"
				     " message TEXT NOT NULL"
				     ") WITHOUT ROWID;";

/* Version 6: one row per read-write connection open now, removed when it closes
 * cleanly; a row left by a process that no longer runs tells of an unclean shutdown
 * (sl_store_sqlite_verify.c). */
static const char *const schema_v6 = "CREATE TABLE sl_opens("
				     " id INTEGER PRIMARY KEY,"
				     " pid INTEGER NOT NULL,"
				     " host TEXT NOT NULL,"
				     " opened_at TEXT NOT NULL"
				     ");";

/* Version 7: dead letters are a skip list, one row per processor and event (the
 * duplicates earlier versions could write are folded into the first). */
static const char *const schema_v7 =
	"DELETE FROM sl_dead_letters WHERE id NOT IN"
	" (SELECT min(id) FROM sl_dead_letters GROUP BY processor, stream, \"offset\");"
	"CREATE UNIQUE INDEX IF NOT EXISTS sl_dead_letters_event ON sl_dead_letters(processor, "
	"stream,"
	" \"offset\");";

/* Version 8: a rate holds until until_ms (unix ms), when its instance goes idle unless
 * a newer rate was recorded, so a runner writes no row of 0 for each instance that
 * stopped; 0 (the rows of earlier versions) holds until the next record. */
static const char *const schema_v8 =
	"ALTER TABLE sl_rates ADD COLUMN until_ms INTEGER NOT NULL DEFAULT 0;";

/* Version 9: a batch commit records its instance's rate in the checkpoint row it
 * writes anyway (rate, rate_at, rate_until as in sl_rates; NULL: none), so a catch-up
 * over a million instances writes no rate row for each; sl_rates keeps what the
 * runner records between commits (a rate falling, the heartbeat). The later of the
 * two records is the rate. */
static const char *const schema_v9 = "ALTER TABLE sl_checkpoints ADD COLUMN rate REAL;"
				     "ALTER TABLE sl_checkpoints ADD COLUMN rate_at INTEGER;"
				     "ALTER TABLE sl_checkpoints ADD COLUMN rate_until INTEGER;";

static const char *const *const migrations[SCHEMA_VERSION] = {
	&schema_v1, &schema_v2, &schema_v3, &schema_v4, &schema_v5,
	&schema_v6, &schema_v7, &schema_v8, &schema_v9,
};

#endif
