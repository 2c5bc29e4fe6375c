/* sl_store_sqlite.c - the embedded SQLite backend of the store: the event log, the
 * processor, checkpoint, dead-letter and lease rows, commits and migrations.
 *
 * The only engine file that includes sqlite3.h (ctx.db's sl_dbapi.c reaches the
 * connection through a projection handle, sl_store_sqlite.h).
 *
 * Layout. sl_events is a WITHOUT ROWID table clustered on (stream, "offset"), so a
 * replay of one stream reads consecutive pages; a unique index on position serves
 * store-wide reads and the next position; a partial unique index on
 * (stream, idem_key) serves idempotency look-ups. sl_streams holds each stream's
 * head, pause state and metadata, so the pause door and the compare-and-set cost one
 * primary-key read per stream per batch. PRAGMA user_version numbers the schema;
 * opening a store read-write brings it to SCHEMA_VERSION one step at a time.
 *
 * An append batch keeps the streams it touches in a small hash table, loaded once
 * per batch, and writes their rows back once at the end.
 *
 * One connection per store, one transaction at a time: a commit is BEGIN IMMEDIATE ..
 * COMMIT, so the write lock is held for its whole life and the lease row its fence
 * reads cannot change under it. In a commit group each commit is a savepoint
 * (SAVEPOINT sl_commit .. RELEASE) of one transaction begun at the group's first
 * commit and committed when the group ends: one lock, one WAL write and one fsync for
 * them all. Statements are prepared on first use and kept.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sl_buf.h"
#include "sl_hash.h"
#include "sl_json.h"
#include "sl_store_backend.h"
#include "sl_store_sqlite.h"
#include "sl_store_sqlite_verify.h"

#include "sl_store_sqlite_schema.h"

enum {
	ST_MAXPOS,
	ST_STREAM_GET,
	ST_STREAM_INS,
	ST_STREAM_UPD,
	ST_KEY_GET,
	ST_EVENT_INS,
	ST_READ,
	ST_READ_TYPE,
	ST_READ_ALL,
	ST_READ_RANGE,
	ST_STREAMS_ALL,
	ST_STREAMS_PREFIX,
	Q_PROC_GET,
	Q_PROC_PUT,
	Q_GET,
	Q_PUT,
	Q_PUT_OFFSET,
	Q_FAULT,
	Q_BGFAIL,
	Q_CLEAR_ONE,
	Q_CLEAR_ALL,
	Q_HASH_GET,
	Q_HASH_PUT,
	Q_DEAD_PUT,
	Q_DEAD_EACH,
	Q_DEAD_DEL,
	Q_EACH,
	Q_BEHIND,
	Q_RESET_ONE,
	Q_RESET_ALL,
	Q_RESET_FX_ONE,
	Q_RESET_FX_ALL,
	Q_TABLES,
	Q_TABLES_DEL,
	L_GET,
	L_PUT,
	L_RELEASE,
	R_PUT,
	R_GET,
	E_PUT,
	E_DEL,
	E_GET,
	TX_BEGIN,
	TX_COMMIT,
	TX_ROLLBACK,
	TX_SAVE,
	TX_RELEASE,
	TX_UNDO,
	ST_COUNT
};

#define EVENT_COLS "stream, \"offset\", position, type, payload, metadata, idem_key, created_at"
#define RATE_SET                                                                                   \
	" rate = coalesce(?6, rate), rate_at = coalesce(?7, rate_at),"                             \
	" rate_until = coalesce(?8, rate_until)"
#define CKPT_COLS "\"offset\", effects_mark, state, status, last_error, background_failures"

static const char *const stmt_sql[ST_COUNT] = {
	[ST_MAXPOS] = "SELECT coalesce(max(position), 0) FROM sl_events",
	[ST_STREAM_GET] = "SELECT head, paused, pause_reason, metadata FROM sl_streams"
			  " WHERE stream = ?1",
	[ST_STREAM_INS] = "INSERT INTO sl_streams(stream, head) VALUES (?1, 0)",
	[ST_STREAM_UPD] = "UPDATE sl_streams SET head = ?2, paused = ?3, pause_reason = ?4,"
			  " metadata = ?5 WHERE stream = ?1",
	[ST_KEY_GET] = "SELECT \"offset\", position FROM sl_events"
		       " WHERE stream = ?1 AND idem_key = ?2",
	[ST_EVENT_INS] = "INSERT INTO sl_events(" EVENT_COLS ")"
			 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_READ] = "SELECT " EVENT_COLS " FROM sl_events WHERE stream = ?1 AND \"offset\" >= ?2"
		    " ORDER BY \"offset\" LIMIT ?3",
	[ST_READ_TYPE] = "SELECT " EVENT_COLS " FROM sl_events WHERE stream = ?1"
			 " AND \"offset\" >= ?2 AND type = ?4 ORDER BY \"offset\" LIMIT ?3",
	[ST_READ_ALL] = "SELECT " EVENT_COLS " FROM sl_events WHERE position >= ?1"
			" ORDER BY position LIMIT ?2",
	[ST_READ_RANGE] = "SELECT " EVENT_COLS " FROM sl_events WHERE (stream, \"offset\") >="
			  " (?1, ?2) AND stream <= ?3 ORDER BY stream, \"offset\" LIMIT ?4",
	[ST_STREAMS_ALL] = "SELECT stream, head, paused, pause_reason, metadata FROM sl_streams"
			   " ORDER BY stream",
	[ST_STREAMS_PREFIX] = "SELECT stream, head, paused, pause_reason, metadata FROM sl_streams"
			      " WHERE stream = ?1 OR (stream > ?1 || '/' AND stream < ?1 || '0')"
			      " ORDER BY stream",
	[Q_PROC_GET] = "SELECT version, anchor FROM sl_processors WHERE name = ?1",
	[Q_PROC_PUT] = "INSERT INTO sl_processors(name, version, anchor) VALUES (?1, ?2, ?3)"
		       " ON CONFLICT(name) DO UPDATE SET version = ?2",
	[Q_GET] = "SELECT " CKPT_COLS " FROM sl_checkpoints WHERE processor = ?1 AND stream = ?2",
	/* ?6, ?7, ?8: the rate recorded with it (sl_commit_rate), or NULL: kept as it is. */
	[Q_PUT] = "INSERT INTO sl_checkpoints(processor, stream, \"offset\", state, effects_mark,"
		  " rate, rate_at, rate_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
		  " ON CONFLICT(processor, stream) DO UPDATE SET \"offset\" = ?3, state = ?4,"
		  " effects_mark = ?5, status = 'ok', last_error = NULL," RATE_SET,
	[Q_PUT_OFFSET] = "INSERT INTO sl_checkpoints(processor, stream, \"offset\", state,"
			 " effects_mark, rate, rate_at, rate_until)"
			 " VALUES (?1, ?2, ?3, NULL, ?4, ?6, ?7, ?8)"
			 " ON CONFLICT(processor, stream) DO UPDATE SET \"offset\" = ?3,"
			 " effects_mark = ?4, status = 'ok', last_error = NULL," RATE_SET,
	[Q_FAULT] =
		"INSERT INTO sl_checkpoints(processor, stream, \"offset\", state, status,"
		" last_error) VALUES (?1, ?2, 0, NULL, 'faulted', ?3)"
		" ON CONFLICT(processor, stream) DO UPDATE SET status = 'faulted', last_error = ?3",
	[Q_BGFAIL] =
		"INSERT INTO sl_checkpoints(processor, stream, \"offset\", state,"
		" background_failures) VALUES (?1, ?2, 0, NULL, 1) ON CONFLICT(processor, stream)"
		" DO UPDATE SET background_failures = background_failures + 1",
	[Q_CLEAR_ONE] = "UPDATE sl_checkpoints SET status = 'ok', last_error = NULL"
			" WHERE processor = ?1 AND stream = ?2 AND status = 'faulted'",
	[Q_CLEAR_ALL] = "UPDATE sl_checkpoints SET status = 'ok', last_error = NULL"
			" WHERE processor = ?1 AND status = 'faulted'",
	[Q_HASH_GET] = "SELECT coalesce(script_hash, ''), coalesce(contract_hash, '')"
		       " FROM sl_processors WHERE name = ?1",
	[Q_HASH_PUT] =
		"UPDATE sl_processors SET script_hash = ?2, contract_hash = ?3 WHERE name = ?1",
	[Q_DEAD_PUT] =
		"INSERT OR IGNORE INTO sl_dead_letters(processor, stream, \"offset\", position, "
		"type,"
		" error, traceback, attempts, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[Q_DEAD_EACH] = "SELECT processor, stream, \"offset\", position, type, error, traceback,"
			" attempts, at FROM sl_dead_letters ORDER BY id",
	[Q_DEAD_DEL] = "DELETE FROM sl_dead_letters WHERE ?1 IS NULL OR processor = ?1",
	[Q_EACH] = "SELECT stream, " CKPT_COLS " FROM sl_checkpoints WHERE processor = ?1"
		   " ORDER BY stream",
	[Q_BEHIND] = "SELECT s.stream, s.head, c.\"offset\", c.effects_mark, c.status"
		     " FROM sl_streams s LEFT JOIN sl_checkpoints c"
		     " ON c.processor = ?1 AND c.stream = s.stream"
		     " WHERE c.\"offset\" IS NULL OR c.\"offset\" < s.head",
	[Q_RESET_ONE] = "UPDATE sl_checkpoints SET \"offset\" = 0, state = NULL, status = 'ok',"
			" last_error = NULL WHERE processor = ?1 AND stream = ?2",
	[Q_RESET_ALL] = "UPDATE sl_checkpoints SET \"offset\" = 0, state = NULL, status = 'ok',"
			" last_error = NULL WHERE processor = ?1",
	[Q_RESET_FX_ONE] = "DELETE FROM sl_checkpoints WHERE processor = ?1 AND stream = ?2",
	[Q_RESET_FX_ALL] = "DELETE FROM sl_checkpoints WHERE processor = ?1",
	[Q_TABLES] = "SELECT t.name, coalesce(m.type, 'table') FROM sl_tables t"
		     " LEFT JOIN sqlite_schema m ON m.name = t.name AND m.type IN ('table', 'view')"
		     " WHERE t.processor = ?1 ORDER BY m.type = 'table'",
	[Q_TABLES_DEL] = "DELETE FROM sl_tables WHERE processor = ?1",
	[L_GET] = "SELECT owner, epoch, expires_at FROM sl_leases WHERE processor = ?1",
	[L_PUT] =
		"INSERT INTO sl_leases(processor, owner, epoch, expires_at) VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT(processor) DO UPDATE SET owner = ?2, epoch = ?3, expires_at = ?4",
	[L_RELEASE] = "UPDATE sl_leases SET owner = '', expires_at = 0"
		      " WHERE processor = ?1 AND owner = ?2",
	[R_PUT] = "INSERT INTO sl_rates(processor, stream, rate, updated_at, until_ms)"
		  " VALUES (?1, ?2, ?3, ?4, ?5)"
		  " ON CONFLICT(processor, stream) DO UPDATE SET rate = ?3, updated_at = ?4,"
		  " until_ms = ?5",
	/* A row is written when its rate changes; the processor's heartbeat row (stream
         * '/', no stream's name) every time rates are recorded says they are current. */
	/* The later of the row of sl_rates and the one recorded with the checkpoint. */
	[R_GET] = "SELECT CASE WHEN u > 0 AND u <= ?3 THEN 0 ELSE r END,"
		  " max(at, coalesce((SELECT updated_at FROM sl_rates"
		  " WHERE processor = ?1 AND stream = '/'), 0)) FROM"
		  " (SELECT rate AS r, until_ms AS u, updated_at AS at FROM sl_rates"
		  " WHERE processor = ?1 AND stream = ?2 UNION ALL"
		  " SELECT rate, rate_until, rate_at FROM sl_checkpoints"
		  " WHERE processor = ?1 AND stream = ?2 AND rate_at IS NOT NULL)"
		  " ORDER BY at DESC LIMIT 1",
	[E_PUT] = "INSERT INTO sl_reload_errors(processor, message) VALUES (?1, ?2)"
		  " ON CONFLICT(processor) DO UPDATE SET message = ?2",
	[E_DEL] = "DELETE FROM sl_reload_errors WHERE processor = ?1",
	[E_GET] = "SELECT message FROM sl_reload_errors WHERE processor = ?1",
	[TX_BEGIN] = "BEGIN IMMEDIATE",
	[TX_COMMIT] = "COMMIT",
	[TX_ROLLBACK] = "ROLLBACK",
	[TX_SAVE] = "SAVEPOINT sl_commit",
	[TX_RELEASE] = "RELEASE sl_commit",
	[TX_UNDO] = "ROLLBACK TO sl_commit",
};

/* The projection handle: the connection, as ctx.db sees it, and ctx.db's check. */
struct sl_proj {
	sqlite3 *db;
	const char *path;
	sl_proj_auth_fn auth;
	void *auth_ud;
	sl_proj_touch_fn touch; /* called before ctx.db runs SQL, or NULL */
	void *touch_ud;
	int own;            /* opened by sl_proj_open: db and path are the handle's */
	struct sl_buf *log; /* the statement log ctx.db keeps (sl_proj_set_log), or NULL */
};

struct sqlite_store {
	struct sl_store base;
	sqlite3 *db;
	char *path;
	char *wal;                  /* path of the WAL file, or NULL (read-only) */
	int64_t open_id;            /* its row in sl_opens (0: read-only) */
	uint32_t commits;           /* this connection's own commits (data_version) */
	struct timespec busy_since; /* when the lock being waited for was first busy */
	int turn_fd;                /* the turnstile (see turn_take), or -1 */
	int rw;                     /* opened read-write */
	/* A commit group (sl_store_group_begin): its commits are savepoints of one
	 * transaction, begun at the group's first commit. */
	int group;         /* a group is open */
	int group_tx;      /* and its transaction was begun */
	int group_lost;    /* an error rolled that transaction back: the group fails */
	char *group_fence; /* "<proc>\0<owner>" of the fence checked in it, or NULL */
	int64_t group_epoch;
	sqlite3_stmt *st[ST_COUNT];
	struct sl_buf tmp[2]; /* compacted payload and metadata of the event being written */
	struct sl_proj proj;
};

struct sqlite_commit {
	struct sl_commit base;
	struct sqlite_store *s;
	int grouped; /* a savepoint of the group's transaction */
	int fenced;
	int64_t epoch;
	char *proc, *owner; /* of the fence; one allocation with the commit */
};

/* A stream touched by the batch being appended. */
struct sstate {
	char *name;
	int64_t head;
	int paused;
	char *reason;   /* owned, or NULL */
	char *metadata; /* owned JSON text */
	int dirty;
};

struct batch {
	struct sqlite_store *s;
	int64_t pos; /* last position written */
	char created_at[32];
	struct sstate **slot; /* open addressing, power-of-two size */
	size_t nslots, used;
};

static struct sqlite_store *sq(struct sl_store *s)
{
	return (struct sqlite_store *)s;
}

static struct sqlite_commit *sqc(struct sl_commit *c)
{
	return (struct sqlite_commit *)c;
}

/* ---- errors and statements -------------------------------------------------------------- */

/* Records the connection's last error in d ("store '<path>': <what>: <msg>") as
 * SL_EBUSY, SL_ENOMEM or SL_EIO, and returns that code. */
static int db_error(struct sqlite_store *s, struct sl_diag *d, const char *what)
{
	int rc = sqlite3_errcode(s->db);
	int code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? SL_EBUSY
	           : rc == SQLITE_NOMEM                       ? SL_ENOMEM
	                                                      : SL_EIO;

	return sl_diag_set(d, code, "store '%s': %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* The statement `id`, prepared on first use. */
static int prep(struct sqlite_store *s, int id, sqlite3_stmt **st, struct sl_diag *d)
{
	int rc = 0;

	if (!s->st[id] && sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
	                                     &s->st[id], NULL) != SQLITE_OK)
		rc = db_error(s, d, "cannot prepare statement");
	*st = s->st[id]; /* NULL when it failed */
	return rc;
}

/* Runs a statement that returns no rows, then resets it. */
static int run(struct sqlite_store *s, sqlite3_stmt *st, struct sl_diag *d, const char *what)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, d, what);
}

static int exec_sql(struct sqlite_store *s, const char *sql, struct sl_diag *d)
{
	char *err = NULL;
	int rc;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) == SQLITE_OK)
		return 0;
	rc = sl_diag_set(d, SL_EIO, "store '%s': %s", s->path, err ? err : sqlite3_errmsg(s->db));
	sqlite3_free(err);
	return rc;
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* ---- opening -------------------------------------------------------------------------- */

static int user_version(struct sqlite_store *s, int *v, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return db_error(s, d, "cannot read schema version");
	rc = sqlite3_step(st);
	*v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, d, "cannot read schema version");
}

/* Brings the schema to SCHEMA_VERSION, every step in one transaction. A read-only
 * open takes an older schema as it is: reading the event log needs version 1 only. */
static int migrate(struct sqlite_store *s, int readonly, struct sl_diag *d)
{
	int v, rc;
	char sql[64];

	if ((rc = user_version(s, &v, d)))
		return rc;
	if (v > SCHEMA_VERSION)
		return sl_diag_set(d, SL_EVERSION,
		                   "store '%s' has schema version %d; this sluice knows up to %d",
		                   s->path, v, SCHEMA_VERSION);
	if (v == SCHEMA_VERSION || (readonly && v > 0))
		return 0;
	if (readonly)
		return sl_diag_set(d, SL_EVERSION, "store '%s' is not initialized", s->path);
	if ((rc = exec_sql(s, "BEGIN IMMEDIATE", d)))
		return rc;
	if ((rc = user_version(s, &v, d)))
		goto fail;
	for (; v < SCHEMA_VERSION; v++)
		if ((rc = exec_sql(s, *migrations[v], d)))
			goto fail;
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
	if ((rc = exec_sql(s, sql, d)) || (rc = exec_sql(s, "COMMIT", d)))
		goto fail;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static const char *sync_sql(const struct sl_store_opts *o)
{
	return o->durability == SL_DURABILITY_NORMAL ? "PRAGMA synchronous=NORMAL"
	                                             : "PRAGMA synchronous=FULL";
}

/* The busy handler: looks again every millisecond, for SL_STORE_BUSY_MS at most.
 * SQLite's own (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, ... up to 100 ms between
 * looks, so a writer behind a runner that commits batch after batch, leaving the
 * lock free for a millisecond or two between them, looks in every 100 ms and finds
 * the lock free only when a look falls into such a gap: single appends waited from
 * 0.1 to 7.7 s during a catch-up. Looking every millisecond, the first gap will do. */
static int busy_wait(void *ud, int count)
{
	static const struct timespec tick = {0, 1000000};
	struct sqlite_store *s = ud;
	struct timespec now;
	double waited;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (count == 0)
		s->busy_since = now;
	waited = (double)(now.tv_sec - s->busy_since.tv_sec) * 1e3 +
	         (double)(now.tv_nsec - s->busy_since.tv_nsec) / 1e6;
	if (waited >= SL_STORE_BUSY_MS)
		return 0; /* SQLITE_BUSY for the caller */
	nanosleep(&tick, NULL);
	return 1;
}

/* The turnstile: SQLite gives its write lock to whoever asks first once it is free,
 * and a runner that commits group after group asks again at once, so a writer of
 * another process, looking in every millisecond, could wait for as long as the runner
 * has work. So every writer takes an exclusive flock(2) on the runner's
 * "<store>-faults" file (sl_faultlog.h; there is none without a runner, and then no
 * one commits back to back) before BEGIN IMMEDIATE, and lets it go once it has the
 * write lock or gave up: a writer that waits holds the turnstile, and the runner's
 * next transaction queues behind it. A transaction holder never waits for the
 * turnstile, so no one waits in a circle. flock, not fcntl: a lock of its own open
 * file, which closing another descriptor of the file does not drop, and no
 * descriptor of SQLite's files is opened or closed here. */
static void turn_take(struct sqlite_store *s)
{
	if (s->turn_fd < 0 && s->rw) {
		size_t n = strlen(s->path);
		char *f = malloc(n + sizeof("-faults"));
		if (f) {
			memcpy(f, s->path, n);
			memcpy(f + n, "-faults", sizeof("-faults"));
			s->turn_fd = open(f, O_RDONLY | O_CLOEXEC);
			free(f);
		}
	}
	if (s->turn_fd >= 0)
		while (flock(s->turn_fd, LOCK_EX) < 0 && errno == EINTR)
			;
}

static void turn_give(struct sqlite_store *s)
{
	if (s->turn_fd >= 0)
		flock(s->turn_fd, LOCK_UN);
}

/* BEGIN IMMEDIATE through the turnstile. */
static int begin_immediate(struct sqlite_store *s)
{
	int rc;

	turn_take(s);
	rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	turn_give(s);
	return rc;
}

static int configure(struct sqlite_store *s, const struct sl_store_opts *o, struct sl_diag *d)
{
	int rc;

	sqlite3_busy_handler(s->db, busy_wait, s);
	sqlite3_extended_result_codes(s->db, 0);
	if (!o->readonly && (rc = exec_sql(s, "PRAGMA journal_mode=WAL", d)))
		return rc;
	if ((rc = exec_sql(s, sync_sql(o), d)))
		return rc;
	return exec_sql(s, "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-16384", d);
}

/* Counts the connection's own commits, which PRAGMA data_version does not see. */
static int on_commit(void *ud)
{
	((struct sqlite_store *)ud)->commits++;
	return 0; /* let it commit */
}

/* The connection's authorizer, installed once: ctx.db's check while one is set. */
static int authorize(void *ud, int action, const char *a1, const char *a2, const char *dbn,
                     const char *trig)
{
	struct sl_proj *pj = ud;

	return pj->auth ? pj->auth(pj->auth_ud, action, a1, a2, dbn, trig) : SQLITE_OK;
}

static void sqlite_close(struct sl_store *base)
{
	struct sqlite_store *s = sq(base);
	int i;

	if (!s)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	if (s->db && s->open_id) {
		turn_take(s);
		sl_sqlite_open_unmark(s->db, s->open_id);
		turn_give(s);
	}
	sqlite3_close(s->db);
	sl_buf_release(&s->tmp[0]);
	sl_buf_release(&s->tmp[1]);
	if (s->turn_fd >= 0)
		close(s->turn_fd);
	free(s->path);
	free(s->wal);
	free(s);
}

/* The URI of a read-only, immutable open of path ("file:" with %, ? and # escaped),
 * owned; NULL when out of memory. */
static char *immutable_uri(const char *path)
{
	struct sl_buf b;
	const char *p;

	sl_buf_init(&b);
	sl_buf_adds(&b, "file:");
	for (p = path; *p; p++) {
		if (*p == '%' || *p == '?' || *p == '#') {
			char esc[4];
			snprintf(esc, sizeof(esc), "%%%02X", (unsigned char)*p);
			sl_buf_adds(&b, esc);
		} else {
			sl_buf_addc(&b, *p);
		}
	}
	sl_buf_adds(&b, "?mode=ro&immutable=1");
	if (!sl_buf_ok(&b)) {
		sl_buf_release(&b);
		return NULL;
	}
	return sl_buf_detach(&b, NULL);
}

/* Opens s->db on `name` (a path, or a URI with SQLITE_OPEN_URI in flags), configured
 * and migrated. */
static int open_db(struct sqlite_store *s, const char *name, int flags,
                   const struct sl_store_opts *o, struct sl_diag *d)
{
	int rc;

	if (sqlite3_open_v2(name, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		return sl_diag_set(d, SL_EIO, "cannot open store '%s': %s", s->path,
		                   s->db ? sqlite3_errmsg(s->db) : "out of memory");
	if ((rc = configure(s, o, d)))
		return rc;
	return migrate(s, o->readonly, d);
}

/* Opens the store for reading only. A store in WAL mode needs its WAL index (the
 * -shm file): when nobody runs on the store it does not exist, and a reader that
 * may not create it (a file of mode 0444 in a directory it cannot write, a
 * read-only mount) gets "attempt to write a readonly database". Then no writer can
 * be working there through this file system, so the store is opened immutable:
 * SQLite reads the file as it is, without the WAL index and without locks. */
static int open_readonly(struct sqlite_store *s, const struct sl_store_opts *o, struct sl_diag *d)
{
	struct sl_diag first;
	char *uri;
	int rc, code;

	sl_diag_init(&first);
	if (!(rc = open_db(s, s->path, SQLITE_OPEN_READONLY, o, &first)))
		return 0;
	code = s->db ? sqlite3_errcode(s->db) : SQLITE_NOMEM;
	if (code != SQLITE_READONLY && code != SQLITE_CANTOPEN) {
		sl_diag_set(d, rc, "%s", sl_diag_msg(&first));
		return rc;
	}
	sqlite3_close(s->db);
	s->db = NULL;
	if (!(uri = immutable_uri(s->path)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	rc = open_db(s, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, o, d);
	free(uri);
	return rc;
}

static int sqlite_open(struct sl_store **out, const char *path, const struct sl_store_opts *o,
                       struct sl_diag *d)
{
	struct sqlite_store *s;
	int rc;

	if ((s = calloc(1, sizeof(*s))))
		s->turn_fd = -1;
	if (!s || !(s->path = strdup(path))) {
		free(s);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	s->base.path = s->proj.path = s->path;
	sl_buf_init(&s->tmp[0]);
	sl_buf_init(&s->tmp[1]);
	if (o->readonly && access(path, F_OK)) {
		rc = sl_diag_set(d, SL_EIO, "cannot open store '%s': no such file", path);
		goto fail;
	}
	s->rw = !o->readonly;
	rc = o->readonly ? open_readonly(s, o, d)
	                 : open_db(s, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, o, d);
	if (!rc && !o->readonly) { /* its row in sl_opens: a write too */
		turn_take(s);
		rc = sl_sqlite_open_mark(s->db, path, sync_sql(o), &s->open_id, d);
		turn_give(s);
	}
	if (rc)
		goto fail;
	s->proj.db = s->db;
	sqlite3_set_authorizer(s->db, authorize, &s->proj);
	sqlite3_commit_hook(s->db, on_commit, s);
	if (!o->readonly && (s->wal = malloc(strlen(path) + 5)))
		sprintf(s->wal, "%s-wal", path);
	*out = &s->base;
	return 0;
fail:
	sqlite_close(&s->base);
	return rc;
}

/* ---- the streams of a batch ------------------------------------------------------------ */

static void sstate_free(struct sstate *ss)
{
	if (ss) {
		free(ss->name);
		free(ss->reason);
		free(ss->metadata);
		free(ss);
	}
}

static void batch_release(struct batch *bt)
{
	size_t i;

	for (i = 0; i < bt->nslots; i++)
		sstate_free(bt->slot[i]);
	free(bt->slot);
	bt->slot = NULL;
	bt->nslots = bt->used = 0;
}

/* Returns the slot where `name` is or would go. */
static struct sstate **batch_slot(struct batch *bt, const char *name)
{
	size_t i = (size_t)sl_hash_str(name) & (bt->nslots - 1);

	while (bt->slot[i] && strcmp(bt->slot[i]->name, name))
		i = (i + 1) & (bt->nslots - 1);
	return &bt->slot[i];
}

static int batch_grow(struct batch *bt)
{
	struct batch bigger = *bt;
	size_t i;

	bigger.nslots = bt->nslots ? bt->nslots * 2 : 16;
	if (!(bigger.slot = calloc(bigger.nslots, sizeof(*bigger.slot))))
		return SL_ENOMEM;
	for (i = 0; i < bt->nslots; i++)
		if (bt->slot[i])
			*batch_slot(&bigger, bt->slot[i]->name) = bt->slot[i];
	free(bt->slot);
	*bt = bigger;
	return 0;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? strdup((const char *)t) : NULL;
}

/* Finds `name` among the batch's streams, loading it from the store on first use.
 * Sets *out to NULL when the stream does not exist yet. */
static int batch_stream(struct batch *bt, const char *name, struct sstate **out, struct sl_diag *d)
{
	struct sstate **slot, *ss;
	sqlite3_stmt *st;
	int rc;

	*out = NULL;
	if ((bt->used + 1) * 2 > bt->nslots && batch_grow(bt))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	slot = batch_slot(bt, name);
	if (*slot) {
		*out = *slot;
		return 0;
	}
	if ((rc = prep(bt->s, ST_STREAM_GET, &st, d)))
		return rc;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? 0 : db_error(bt->s, d, "cannot read stream");
	}
	if ((ss = calloc(1, sizeof(*ss)))) {
		ss->name = strdup(name);
		ss->head = sqlite3_column_int64(st, 0);
		ss->paused = sqlite3_column_int(st, 1);
		ss->reason = dup_col(st, 2);
		ss->metadata = dup_col(st, 3);
	}
	sqlite3_reset(st);
	if (!ss || !ss->name || !ss->metadata) {
		sstate_free(ss);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	*slot = *out = ss;
	bt->used++;
	return 0;
}

/* ---- writing events ------------------------------------------------------------------- */

struct put {
	const char *type;
	const char *payload; /* checked JSON object text */
	size_t payload_len;
	const char *metadata;
	size_t metadata_len;
	const char *key;
	int64_t offset;
	int engine; /* the store's own append: passes the pause door */
};

static int type_is(const char *type, const char *what)
{
	return !strcmp(type, what);
}

static int lookup_key(struct batch *bt, struct sstate *ss, const char *key,
                      struct sl_append_result *res, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(bt->s, ST_KEY_GET, &st, d)))
		return rc;
	sqlite3_bind_text(st, 1, ss->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		res->offset = sqlite3_column_int64(st, 0);
		res->position = sqlite3_column_int64(st, 1);
		res->duplicate = 1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(bt->s, d, "cannot look up idempotency key");
	return 0;
}

/* Copies a string member's value, for the core events' effects. */
struct member_pick {
	const char *key;
	enum sl_json_kind kind;
	char *text; /* owned copy of the decoded string or the raw object text */
};

static int pick_member(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct member_pick *mp = ud;

	if (m->kind != mp->kind || strlen(mp->key) != m->keylen ||
	    memcmp(m->key, mp->key, m->keylen))
		return 0;
	free(mp->text);
	if (!(mp->text = malloc(m->len + 1)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	memcpy(mp->text, m->text, m->len);
	mp->text[m->len] = '\0';
	return 0;
}

/* Replaces the stream's metadata with the (compacted) object text. */
static int set_metadata(struct sstate *ss, char *text, struct sl_diag *d)
{
	struct sl_buf b;
	const char *c;
	size_t n;

	sl_buf_init(&b);
	c = sl_store_compact(text, strlen(text), &n, &b);
	free(ss->metadata);
	ss->metadata = c ? strndup(c, n) : NULL;
	sl_buf_release(&b);
	free(text);
	return ss->metadata ? 0 : sl_diag_set(d, SL_ENOMEM, "out of memory");
}

/* Applies a core event's effect on its stream: pause, resume, metadata. */
static int apply_core(struct sstate *ss, const struct put *p, struct sl_diag *d)
{
	struct member_pick mp = {NULL, SL_JSON_STRING, NULL};
	int rc;

	if (type_is(p->type, "stream/paused")) {
		mp.key = "reason";
	} else if (type_is(p->type, "stream/metadata-updated")) {
		mp.key = "metadata", mp.kind = SL_JSON_OBJECT;
	} else if (type_is(p->type, "stream/resumed")) {
		ss->paused = 0;
		free(ss->reason);
		ss->reason = NULL;
		return 0;
	} else {
		return 0;
	}
	if ((rc = sl_json_members(p->payload, p->payload_len, pick_member, &mp, d)))
		return rc;
	if (mp.kind == SL_JSON_OBJECT)
		return set_metadata(ss, mp.text, d);
	ss->paused = 1;
	free(ss->reason);
	ss->reason = mp.text;
	return 0;
}

static int insert_event(struct batch *bt, struct sstate *ss, const struct put *p, struct sl_diag *d)
{
	struct sqlite_store *s = bt->s;
	const char *payload = p->payload, *meta = NULL;
	size_t plen = p->payload_len, mlen = 0;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, ST_EVENT_INS, &st, d)))
		return rc;
	if (!(payload = sl_store_compact(payload, plen, &plen, &s->tmp[0])))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if (p->metadata &&
	    !(meta = sl_store_compact(p->metadata, p->metadata_len, &mlen, &s->tmp[1])))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	sqlite3_bind_text(st, 1, ss->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, ss->head + 1);
	sqlite3_bind_int64(st, 3, bt->pos + 1);
	sqlite3_bind_text(st, 4, p->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, payload, (int)plen, SQLITE_STATIC);
	if (meta)
		sqlite3_bind_text(st, 6, meta, (int)mlen, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 6);
	bind_str(st, 7, p->key);
	sqlite3_bind_text(st, 8, bt->created_at, -1, SQLITE_STATIC);
	if ((rc = run(s, st, d, "cannot insert event")))
		return rc;
	ss->head++;
	bt->pos++;
	ss->dirty = 1;
	return 0;
}

/* Writes one event to the stream `ss`, after its key, pause and offset checks. */
static int put_event(struct batch *bt, struct sstate *ss, const struct put *p,
                     struct sl_append_result *res, struct sl_diag *d)
{
	int rc;

	res->duplicate = 0;
	if (p->key && (rc = lookup_key(bt, ss, p->key, res, d)))
		return rc;
	if (res->duplicate) {
		if (p->offset && p->offset != res->offset)
			return sl_diag_set(
				d, SL_ECONFLICT,
				"offset: idempotency key '%.*s%s' was used at offset %lld,"
				" not %lld",
				SL_ECHO(p->key), (long long)res->offset, (long long)p->offset);
		return 0;
	}
	if (ss->paused && !p->engine && !type_is(p->type, "stream/resumed") &&
	    !type_is(p->type, "stream/error-occurred"))
		return sl_diag_set(d, SL_EPAUSED, "stream paused: %s",
		                   ss->reason && *ss->reason ? ss->reason : "no reason given");
	if (p->offset && p->offset != ss->head + 1)
		return sl_diag_set(d, SL_ECONFLICT,
		                   "offset: expected %lld (the head of '%s' is %lld), got %lld",
		                   (long long)ss->head + 1, ss->name, (long long)ss->head,
		                   (long long)p->offset);
	if ((rc = apply_core(ss, p, d)) || (rc = insert_event(bt, ss, p, d)))
		return rc;
	res->offset = ss->head;
	res->position = bt->pos;
	return 0;
}

/* An engine-written event whose payload is {"<field>": "<value>"}. */
static int put_engine_event(struct batch *bt, struct sstate *ss, const char *type,
                            const char *field, const char *value, const char *key,
                            struct sl_diag *d)
{
	struct sl_append_result res;
	struct put p = {type, NULL, 0, NULL, 0, key, 0, 1};
	struct sl_buf b;
	int rc;

	sl_buf_init(&b);
	sl_buf_addf(&b, "{\"%s\":", field);
	sl_buf_addjstr(&b, value, strlen(value));
	sl_buf_addc(&b, '}');
	p.payload = b.ptr;
	p.payload_len = b.len;
	rc = sl_buf_ok(&b) ? put_event(bt, ss, &p, &res, d)
	                   : sl_diag_set(d, SL_ENOMEM, "out of memory");
	sl_buf_release(&b);
	return rc;
}

/* Creates stream `name` (and its missing ancestors, top down): its row, its
 * stream/created event, and one stream/child-stream-created on each ancestor. */
static int create_stream(struct batch *bt, const char *name, struct sstate **out, struct sl_diag *d)
{
	char *anc = NULL, *key = NULL, *slash;
	struct sstate *parent;
	sqlite3_stmt *st;
	int rc;

	if (!(anc = strdup(name)) || !(key = malloc(strlen(name) + 32))) {
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
		goto out;
	}
	if ((slash = strrchr(anc, '/'))) {
		*slash = '\0';
		if ((rc = batch_stream(bt, anc, &parent, d)) ||
		    (!parent && (rc = create_stream(bt, anc, &parent, d))))
			goto out;
	}
	if ((rc = prep(bt->s, ST_STREAM_INS, &st, d)))
		goto out;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	if ((rc = run(bt->s, st, d, "cannot create stream")) ||
	    (rc = batch_stream(bt, name, out, d)) ||
	    (rc = put_engine_event(bt, *out, "stream/created", "path", name, NULL, d)))
		goto out;
	sprintf(key, "child-stream-created:%s", name);
	strcpy(anc, name);
	while ((slash = strrchr(anc, '/'))) {
		*slash = '\0';
		if ((rc = batch_stream(bt, anc, &parent, d)) ||
		    (rc = put_engine_event(bt, parent, "stream/child-stream-created", "childPath",
		                           name, key, d)))
			goto out;
	}
out:
	free(anc);
	free(key);
	return rc;
}

static int flush_streams(struct batch *bt, struct sl_diag *d)
{
	struct sstate *ss;
	sqlite3_stmt *st;
	size_t i;
	int rc;

	if ((rc = prep(bt->s, ST_STREAM_UPD, &st, d)))
		return rc;
	for (i = 0; i < bt->nslots; i++) {
		if (!(ss = bt->slot[i]) || !ss->dirty)
			continue;
		sqlite3_bind_text(st, 1, ss->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, ss->head);
		sqlite3_bind_int(st, 3, ss->paused);
		bind_str(st, 4, ss->reason);
		sqlite3_bind_text(st, 5, ss->metadata, -1, SQLITE_STATIC);
		if ((rc = run(bt->s, st, d, "cannot update stream")))
			return rc;
	}
	return 0;
}

static int max_position(struct sqlite_store *s, int64_t *pos, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	*pos = 0;
	if ((rc = prep(s, ST_MAXPOS, &st, d)))
		return rc;
	rc = sqlite3_step(st);
	*pos = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, d, "cannot read head position");
}

/* Runs the events of one (checked) batch inside an open transaction or savepoint. */
static int append_events(struct sqlite_store *s, const struct sl_event_in *ev, size_t n,
                         struct sl_append_result *res, size_t *failed, struct sl_diag *d)
{
	struct batch bt = {s, 0, "", NULL, 0, 0};
	struct sstate *ss;
	size_t i;
	int rc;

	if ((rc = max_position(s, &bt.pos, d)))
		goto out;
	sl_store_now(bt.created_at, sizeof(bt.created_at));
	for (i = 0; i < n; i++) {
		struct put p = {ev[i].type,
		                ev[i].payload ? ev[i].payload : "{}",
		                ev[i].payload ? ev[i].payload_len : 2,
		                ev[i].metadata,
		                ev[i].metadata_len,
		                ev[i].key,
		                ev[i].offset,
		                0};
		*failed = i;
		if ((rc = batch_stream(&bt, ev[i].stream, &ss, d)) ||
		    (!ss && (rc = create_stream(&bt, ev[i].stream, &ss, d))) ||
		    (rc = put_event(&bt, ss, &p, &res[i], d)))
			goto out;
	}
	rc = flush_streams(&bt, d);
out:
	batch_release(&bt);
	return rc;
}

static int sqlite_append(struct sl_store *base, const struct sl_event_in *ev, size_t n,
                         struct sl_append_result *res, size_t *failed, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	int rc;

	if (begin_immediate(s) != SQLITE_OK)
		return db_error(s, d, "cannot begin transaction");
	rc = append_events(s, ev, n, res, failed, d);
	if (rc == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_error(s, d, "cannot commit");
	if (rc && !sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* An append inside a commit: a savepoint, so a failing batch leaves the rest. */
static int sqlite_commit_append(struct sl_commit *c, const struct sl_event_in *ev, size_t n,
                                struct sl_append_result *res, size_t *failed, struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	int rc;

	if (sqlite3_exec(s->db, "SAVEPOINT sl_append", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(s, d, "cannot begin savepoint");
	rc = append_events(s, ev, n, res, failed, d);
	if (rc == 0 && sqlite3_exec(s->db, "RELEASE sl_append", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_error(s, d, "cannot release savepoint");
	if (rc)
		sqlite3_exec(s->db, "ROLLBACK TO sl_append; RELEASE sl_append", NULL, NULL, NULL);
	return rc;
}

/* ---- reading the log ------------------------------------------------------------------- */

static const char *col_text(sqlite3_stmt *st, int col, size_t *len)
{
	const char *t = (const char *)sqlite3_column_text(st, col);

	if (len)
		*len = (size_t)sqlite3_column_bytes(st, col);
	return t;
}

static int run_events(struct sqlite_store *s, sqlite3_stmt *st, sl_event_fn fn, void *ud,
                      struct sl_diag *d)
{
	struct sl_event ev;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ev.stream = col_text(st, 0, NULL);
		ev.offset = sqlite3_column_int64(st, 1);
		ev.position = sqlite3_column_int64(st, 2);
		ev.type = col_text(st, 3, NULL);
		ev.payload = col_text(st, 4, &ev.payload_len);
		ev.metadata = col_text(st, 5, &ev.metadata_len);
		ev.key = col_text(st, 6, NULL);
		ev.created_at = col_text(st, 7, NULL);
		if ((rc = fn(ud, &ev))) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read events");
}

static int sqlite_read(struct sl_store *base, const char *stream, int64_t from, int64_t limit,
                       const char *type, sl_event_fn fn, void *ud, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, type ? ST_READ_TYPE : ST_READ, &st, d)))
		return rc;
	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, from);
	sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1);
	if (type)
		sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
	return run_events(s, st, fn, ud, d);
}

static int sqlite_read_all(struct sl_store *base, int64_t from, int64_t limit, sl_event_fn fn,
                           void *ud, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, ST_READ_ALL, &st, d)))
		return rc;
	sqlite3_bind_int64(st, 1, from);
	sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
	return run_events(s, st, fn, ud, d);
}

/* One walk of the primary key (stream, offset) over neighbouring streams. */
static int sqlite_read_range(struct sl_store *base, const char *stream, int64_t from,
                             const char *last, int64_t limit, sl_event_fn fn, void *ud,
                             struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, ST_READ_RANGE, &st, d)))
		return rc;
	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, from);
	sqlite3_bind_text(st, 3, last, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, limit > 0 ? limit : -1);
	return run_events(s, st, fn, ud, d);
}

static int sqlite_streams(struct sl_store *base, const char *prefix, sl_stream_fn fn, void *ud,
                          struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	struct sl_stream_info info;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, prefix && *prefix ? ST_STREAMS_PREFIX : ST_STREAMS_ALL, &st, d)))
		return rc;
	if (prefix && *prefix)
		sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		info.stream = col_text(st, 0, NULL);
		info.head = sqlite3_column_int64(st, 1);
		info.paused = sqlite3_column_int(st, 2);
		info.pause_reason = col_text(st, 3, NULL);
		info.metadata = col_text(st, 4, NULL);
		if ((rc = fn(ud, &info))) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot list streams");
}

static int sqlite_head_position(struct sl_store *base, int64_t *pos, struct sl_diag *d)
{
	return max_position(sq(base), pos, d);
}

static int sqlite_data_version(struct sl_store *base, int64_t *v, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &st, NULL) != SQLITE_OK)
		return db_error(s, d, "cannot read the data version");
	rc = sqlite3_step(st);
	/* PRAGMA data_version (a 32-bit counter) changes with the commits of the other
	 * connections only: its low half, this connection's own commits the high half. */
	*v = rc == SQLITE_ROW
	             ? (int64_t)((uint64_t)s->commits << 32 | (uint32_t)sqlite3_column_int64(st, 0))
	             : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(s, d, "cannot read the data version");
}

static const char *sqlite_watch_file(struct sl_store *base)
{
	return sq(base)->wal;
}

static int sqlite_verify(struct sl_store *base, int flags, sl_problem_fn fn,
                         sl_verify_progress_fn progress, void *ud,
                         struct sl_store_verify_summary *sum, struct sl_diag *d)
{
	return sl_sqlite_verify(sq(base)->db, sq(base)->path, flags, fn, progress, ud, sum, d);
}

/* ---- processor and checkpoint rows ------------------------------------------------------- */

/* The statement `id` with the processor (and the stream, if not NULL) bound. */
static int prep_ps(struct sqlite_store *s, int id, const char *proc, const char *stream,
                   sqlite3_stmt **st, struct sl_diag *d)
{
	int rc;

	if ((rc = prep(s, id, st, d)))
		return rc;
	sqlite3_bind_text(*st, 1, proc, -1, SQLITE_STATIC);
	if (stream)
		sqlite3_bind_text(*st, 2, stream, -1, SQLITE_STATIC);
	return 0;
}

static int sqlite_proc_get(struct sl_store *base, const char *proc, int *exists, int64_t *version,
                           int64_t *anchor, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	*exists = 0;
	*version = *anchor = 0;
	if ((rc = prep_ps(s, Q_PROC_GET, proc, NULL, &st, d)))
		return rc;
	rc = sqlite3_step(st);
	if ((*exists = rc == SQLITE_ROW)) {
		*version = sqlite3_column_int64(st, 0);
		*anchor = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read processor");
}

static int sqlite_proc_put(struct sl_commit *c, const char *proc, int64_t version, int64_t anchor,
                           struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_PROC_PUT, proc, NULL, &st, d)))
		return rc;
	sqlite3_bind_int64(st, 2, version);
	sqlite3_bind_int64(st, 3, anchor);
	return run(s, st, d, "cannot write processor");
}

static char *dup_text(sqlite3_stmt *st, int col, size_t *len)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	char *out;

	if (len)
		*len = t ? n : 0;
	if (!t || !(out = malloc(n + 1)))
		return NULL;
	memcpy(out, t, n);
	out[n] = '\0';
	return out;
}

/* Fills c from a row whose columns start at `col` (CKPT_COLS). */
static void row_to_ckpt(sqlite3_stmt *st, int col, struct sl_ckpt *c)
{
	const char *status = (const char *)sqlite3_column_text(st, col + 3);

	c->offset = sqlite3_column_int64(st, col);
	c->effects_mark = sqlite3_column_int64(st, col + 1);
	c->state = dup_text(st, col + 2, &c->state_len);
	c->faulted = status && !strcmp(status, "faulted");
	c->last_error = dup_text(st, col + 4, NULL);
	c->background_failures = sqlite3_column_int64(st, col + 5);
}

static int sqlite_ckpt_get(struct sl_store *base, const char *proc, const char *stream,
                           struct sl_ckpt *c, int *found, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	memset(c, 0, sizeof(*c));
	*found = 0;
	if ((rc = prep_ps(s, Q_GET, proc, stream, &st, d)))
		return rc;
	rc = sqlite3_step(st);
	if ((*found = rc == SQLITE_ROW))
		row_to_ckpt(st, 0, c);
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read checkpoint");
}

static int sqlite_ckpt_each(struct sl_store *base, const char *proc, sl_ckpt_fn fn, void *ud,
                            struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	struct sl_ckpt c;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_EACH, proc, NULL, &st, d)))
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_to_ckpt(st, 1, &c);
		rc = fn(ud, (const char *)sqlite3_column_text(st, 0), &c);
		sl_ckpt_release(&c);
		if (rc) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read checkpoints");
}

static int sqlite_ckpt_behind(struct sl_store *base, const char *proc, sl_behind_fn fn, void *ud,
                              struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	struct sl_behind b;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_BEHIND, proc, NULL, &st, d)))
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *status = (const char *)sqlite3_column_text(st, 4);
		b.stream = col_text(st, 0, NULL);
		b.head = sqlite3_column_int64(st, 1);
		b.has_row = sqlite3_column_type(st, 2) != SQLITE_NULL;
		b.offset = sqlite3_column_int64(st, 2);
		b.effects_mark = sqlite3_column_int64(st, 3);
		b.faulted = status && !strcmp(status, "faulted");
		if ((rc = fn(ud, &b))) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read checkpoints");
}

/* ?6, ?7, ?8 of Q_PUT and Q_PUT_OFFSET: the commit's rate, or NULLs. */
static void bind_rate(sqlite3_stmt *st, const struct sl_commit *c)
{
	if (c->has_rate) {
		sqlite3_bind_double(st, 6, c->rate.rate);
		sqlite3_bind_int64(st, 7, sl_store_now_ms());
		sqlite3_bind_int64(st, 8, c->rate.until_ms);
	} else {
		sqlite3_bind_null(st, 6);
		sqlite3_bind_null(st, 7);
		sqlite3_bind_null(st, 8);
	}
}

static int sqlite_ckpt_put(struct sl_commit *c, const char *proc, const char *stream,
                           int64_t offset, const char *state, size_t state_len,
                           int64_t effects_mark, struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_PUT, proc, stream, &st, d)))
		return rc;
	sqlite3_bind_int64(st, 3, offset);
	if (state)
		sqlite3_bind_text(st, 4, state, (int)state_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_int64(st, 5, effects_mark);
	bind_rate(st, c);
	return run(s, st, d, "cannot write checkpoint");
}

static int sqlite_ckpt_put_offset(struct sl_commit *c, const char *proc, const char *stream,
                                  int64_t offset, int64_t effects_mark, struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_PUT_OFFSET, proc, stream, &st, d)))
		return rc;
	sqlite3_bind_int64(st, 3, offset);
	sqlite3_bind_int64(st, 4, effects_mark);
	bind_rate(st, c);
	return run(s, st, d, "cannot write checkpoint");
}

static int sqlite_rates_put(struct sl_commit *c, const char *proc, const struct sl_rate *r,
                            size_t n, int64_t at_ms, struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	size_t i;
	int rc;

	for (i = 0; i <= n; i++) { /* the rows, then the heartbeat */
		if ((rc = prep_ps(s, R_PUT, proc, i < n ? r[i].stream : "/", &st, d)))
			return rc;
		sqlite3_bind_double(st, 3, i < n ? r[i].rate : 0);
		sqlite3_bind_int64(st, 4, at_ms);
		sqlite3_bind_int64(st, 5, i < n ? r[i].until_ms : 0);
		if ((rc = run(s, st, d, "cannot write rate")))
			return rc;
	}
	return 0;
}

static int sqlite_rate_get(struct sl_store *base, const char *proc, const char *stream,
                           double *rate, int64_t *at_ms, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	*rate = 0;
	*at_ms = 0;
	if ((rc = prep_ps(s, R_GET, proc, stream, &st, d)))
		return rc;
	sqlite3_bind_int64(st, 3, sl_store_now_ms());
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*rate = sqlite3_column_double(st, 0);
		*at_ms = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read rate");
}

static int sqlite_reload_error_put(struct sl_commit *c, const char *proc, const char *msg,
                                   struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, msg ? E_PUT : E_DEL, proc, NULL, &st, d)))
		return rc;
	if (msg)
		sqlite3_bind_text(st, 2, msg, -1, SQLITE_STATIC);
	return run(s, st, d, msg ? "cannot record a reload error" : "cannot clear a reload error");
}

static int sqlite_reload_error_get(struct sl_store *base, const char *proc, char **msg_out,
                                   struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc, oom = 0;

	*msg_out = NULL;
	if ((rc = prep_ps(s, E_GET, proc, NULL, &st, d)))
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && !(*msg_out = dup_text(st, 0, NULL)))
		oom = 1;
	sqlite3_reset(st);
	if (oom)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
	                                             : db_error(s, d, "cannot read a reload error");
}

static int sqlite_fault(struct sl_commit *c, const char *proc, const char *stream,
                        const char *error, struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_FAULT, proc, stream, &st, d)))
		return rc;
	sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	return run(s, st, d, "cannot record fault");
}

static int sqlite_clear_fault(struct sl_commit *c, const char *proc, const char *stream,
                              struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, stream ? Q_CLEAR_ONE : Q_CLEAR_ALL, proc, stream, &st, d)))
		return rc;
	return run(s, st, d, "cannot clear a fault");
}

static int sqlite_background_failure(struct sl_commit *c, const char *proc, const char *stream,
                                     struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_BGFAIL, proc, stream, &st, d)))
		return rc;
	return run(s, st, d, "cannot count a background failure");
}

static int sqlite_reset(struct sl_commit *c, const char *proc, const char *stream, int with_effects,
                        struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	int id = with_effects ? (stream ? Q_RESET_FX_ONE : Q_RESET_FX_ALL)
	                      : (stream ? Q_RESET_ONE : Q_RESET_ALL);
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, id, proc, stream, &st, d)))
		return rc;
	return run(s, st, d, "cannot reset checkpoint");
}

/* The DROP statements of every table and view proc owns, in sql (views first). */
static int drop_sql(struct sqlite_store *s, const char *proc, struct sl_buf *sql, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_TABLES, proc, NULL, &st, d)))
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *type = (const char *)sqlite3_column_text(st, 1);
		sl_buf_adds(sql, type && !strcmp(type, "view") ? "DROP VIEW IF EXISTS \""
		                                               : "DROP TABLE IF EXISTS \"");
		for (; *name; name++) /* double any quote inside the identifier */
			*name == '"' ? sl_buf_adds(sql, "\"\"") : sl_buf_addc(sql, *name);
		sl_buf_adds(sql, "\";");
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_error(s, d, "cannot list projection tables");
	return sl_buf_ok(sql) ? 0 : sl_diag_set(d, SL_ENOMEM, "out of memory");
}

static int sqlite_drop_tables(struct sl_commit *c, const char *proc, struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	struct sl_buf sql;
	sqlite3_stmt *st;
	int rc;

	sl_buf_init(&sql);
	if ((rc = drop_sql(s, proc, &sql, d)))
		goto out;
	if (sql.len && sqlite3_exec(s->db, sql.ptr, NULL, NULL, NULL) != SQLITE_OK) {
		rc = db_error(s, d, "cannot drop projection tables");
		goto out;
	}
	if (!(rc = prep_ps(s, Q_TABLES_DEL, proc, NULL, &st, d)))
		rc = run(s, st, d, "cannot forget projection tables");
out:
	sl_buf_release(&sql);
	return rc;
}

static int sqlite_proc_hashes(struct sl_commit *c, const char *proc, const char *script_hash,
                              const char *contract_hash, int *cleared, struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc, same;

	if ((rc = prep_ps(s, Q_HASH_GET, proc, NULL, &st, d)))
		return rc;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		sqlite3_reset(st);
		return rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read processor");
	}
	same = !strcmp((const char *)sqlite3_column_text(st, 0), script_hash) &&
	       !strcmp((const char *)sqlite3_column_text(st, 1), contract_hash);
	sqlite3_reset(st);
	if (same)
		return 0;
	if ((rc = sqlite_clear_fault(c, proc, NULL, d)))
		return rc;
	*cleared = sqlite3_changes(s->db);
	if ((rc = prep_ps(s, Q_HASH_PUT, proc, NULL, &st, d)))
		return rc;
	sqlite3_bind_text(st, 2, script_hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, contract_hash, -1, SQLITE_STATIC);
	return run(s, st, d, "cannot write processor");
}

static int sqlite_dead_letter(struct sl_commit *c, const struct sl_dead_letter *dl,
                              struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, Q_DEAD_PUT, dl->processor, dl->stream, &st, d)))
		return rc;
	sqlite3_bind_int64(st, 3, dl->offset);
	sqlite3_bind_int64(st, 4, dl->position);
	sqlite3_bind_text(st, 5, dl->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, dl->error, -1, SQLITE_STATIC);
	bind_str(st, 7, dl->traceback);
	sqlite3_bind_int64(st, 8, dl->attempts);
	sqlite3_bind_text(st, 9, dl->at, -1, SQLITE_STATIC);
	return run(s, st, d, "cannot record a dead letter");
}

static int sqlite_dead_letters(struct sl_store *base, sl_dead_fn fn, void *ud, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	struct sl_dead_letter dl;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, Q_DEAD_EACH, &st, d)))
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		dl.processor = col_text(st, 0, NULL);
		dl.stream = col_text(st, 1, NULL);
		dl.offset = sqlite3_column_int64(st, 2);
		dl.position = sqlite3_column_int64(st, 3);
		dl.type = col_text(st, 4, NULL);
		dl.error = col_text(st, 5, NULL);
		dl.traceback = col_text(st, 6, NULL);
		dl.attempts = sqlite3_column_int64(st, 7);
		dl.at = col_text(st, 8, NULL);
		if ((rc = fn(ud, &dl))) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read dead letters");
}

static int sqlite_dead_letters_clear(struct sl_commit *c, const char *proc, int64_t *n,
                                     struct sl_diag *d)
{
	struct sqlite_store *s = sqc(c)->s;
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, Q_DEAD_DEL, &st, d)))
		return rc;
	if (proc)
		sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 1); /* a cached statement keeps its last binding */
	if ((rc = run(s, st, d, "cannot clear dead letters")))
		return rc;
	*n = sqlite3_changes(s->db);
	return 0;
}

/* ---- leases ----------------------------------------------------------------------------- */

static int lease_row(struct sqlite_store *s, const char *proc, struct sl_lease *out, int *found,
                     struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	memset(out, 0, sizeof(*out));
	*found = 0;
	if ((rc = prep_ps(s, L_GET, proc, NULL, &st, d)))
		return rc;
	rc = sqlite3_step(st);
	if ((*found = rc == SQLITE_ROW)) {
		snprintf(out->owner, sizeof(out->owner), "%s", col_text(st, 0, NULL));
		out->epoch = sqlite3_column_int64(st, 1);
		out->expires_at = sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, d, "cannot read lease");
}

static int sqlite_lease_get(struct sl_store *base, const char *proc, struct sl_lease *out,
                            int *found, struct sl_diag *d)
{
	return lease_row(sq(base), proc, out, found, d);
}

/* Takes or renews the lease for owner unless another owner's is live (in the open
 * transaction); *l is the row afterwards. */
static int take_lease(struct sqlite_store *s, const char *proc, const char *owner, int64_t ttl_ms,
                      struct sl_lease *l, struct sl_diag *d)
{
	int64_t now = sl_store_now_ms();
	sqlite3_stmt *st;
	int found, rc, mine;

	if ((rc = lease_row(s, proc, l, &found, d)))
		return rc;
	mine = found && !strcmp(l->owner, owner);
	if (found && *l->owner && !mine && l->expires_at > now)
		return 0; /* a live runner holds it */
	if (!mine)
		l->epoch++; /* it changes hands: fence off the previous holder */
	l->expires_at = now + ttl_ms;
	snprintf(l->owner, sizeof(l->owner), "%s", owner);
	if ((rc = prep_ps(s, L_PUT, proc, NULL, &st, d)))
		return rc;
	sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, l->epoch);
	sqlite3_bind_int64(st, 4, l->expires_at);
	return run(s, st, d, "cannot write lease");
}

static int sqlite_lease_acquire(struct sl_store *base, const char *proc, const char *owner,
                                int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	int rc;

	if (begin_immediate(s) != SQLITE_OK)
		return db_error(s, d, "cannot begin transaction");
	rc = take_lease(s, proc, owner, ttl_ms, out, d);
	if (rc == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_error(s, d, "cannot commit");
	if (rc) {
		if (!sqlite3_get_autocommit(s->db))
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

static int sqlite_lease_release(struct sl_store *base, const char *proc, const char *owner,
                                struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep_ps(s, L_RELEASE, proc, owner, &st, d)))
		return rc;
	return run(s, st, d, "cannot release lease");
}

/* ---- commits and the projection handle ---------------------------------------------------- */

/* Notes the fence of c as checked in the group's transaction. */
static void remember_fence(struct sqlite_store *s, struct sqlite_commit *c)
{
	size_t pl = strlen(c->proc) + 1, ol = strlen(c->owner) + 1;
	char *f = malloc(pl + ol);

	if (!f)
		return;
	memcpy(f, c->proc, pl);
	memcpy(f + pl, c->owner, ol);
	free(s->group_fence);
	s->group_fence = f;
	s->group_epoch = c->epoch;
}

/* Inside the commit's transaction: does the lease row still name the fence? */
static int check_fence(struct sqlite_commit *c, struct sl_diag *d)
{
	struct sl_lease l;
	int found, rc;

	struct sqlite_store *s = c->s;
	char *gf = s->group_fence;

	if (!c->fenced)
		return 0;
	/* The group holds the write lock since it checked this fence, and no lease call
	 * runs in a group: the row cannot have changed. */
	if (c->grouped && gf && s->group_epoch == c->epoch && !strcmp(gf, c->proc) &&
	    !strcmp(gf + strlen(gf) + 1, c->owner))
		return 0;
	if ((rc = lease_row(s, c->proc, &l, &found, d)))
		return rc;
	if (found && !strcmp(l.owner, c->owner) && l.epoch == c->epoch) {
		if (c->grouped) /* (a fence not remembered is only checked again) */
			remember_fence(s, c);
		return 0;
	}
	return sl_diag_set(d, SL_EFENCED,
	                   "processor '%s' is run by %s (epoch %lld), not by %s (epoch %lld);"
	                   " nothing was committed",
	                   c->proc, *l.owner ? l.owner : "nobody", (long long)l.epoch, c->owner,
	                   (long long)c->epoch);
}

/* Runs the transaction statement id (TX_*), prepared once. */
static int tx(struct sqlite_store *s, int id, struct sl_diag *d, const char *what)
{
	sqlite3_stmt *st;
	int rc;

	if ((rc = prep(s, id, &st, d)))
		return rc;
	if (id != TX_BEGIN)
		return run(s, st, d, what);
	turn_take(s);
	rc = run(s, st, d, what);
	turn_give(s);
	return rc;
}

/* The group's transaction is gone (an error made SQLite roll it back): every commit
 * of the group fails from now on, and the group with them. */
static int group_lost(struct sqlite_store *s, struct sl_diag *d)
{
	s->group_lost = 1;
	s->group_tx = 0;
	free(s->group_fence);
	s->group_fence = NULL;
	return sl_diag_set(d, SL_EIO,
	                   "store '%s': an error rolled back the transaction of this commit group;"
	                   " none of its commits was kept",
	                   s->path);
}

/* Takes back what c wrote: its savepoint in a group, else its transaction. */
static void undo(struct sqlite_commit *c)
{
	struct sqlite_store *s = c->s;

	if (sqlite3_get_autocommit(s->db)) {
		if (c->grouped && s->group_tx)
			group_lost(s, NULL);
		return;
	}
	if (!c->grouped) {
		tx(s, TX_ROLLBACK, NULL, "cannot roll back");
	} else if (tx(s, TX_UNDO, NULL, "cannot roll back to savepoint") ||
	           tx(s, TX_RELEASE, NULL, "cannot release savepoint")) {
		tx(s, TX_ROLLBACK, NULL, "cannot roll back");
		group_lost(s, NULL);
	}
}

static int sqlite_commit_begin(struct sl_store *base, const struct sl_fence *f,
                               struct sl_commit **out, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	size_t pl = f ? strlen(f->processor) + 1 : 0, ol = f ? strlen(f->owner) + 1 : 0;
	struct sqlite_commit *c = calloc(1, sizeof(*c) + pl + ol);
	int rc;

	if (!c)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	c->base.store = base;
	c->s = s;
	if (f) { /* the fence's strings live right behind the commit */
		c->fenced = 1;
		c->epoch = f->epoch;
		c->proc = memcpy((char *)(c + 1), f->processor, pl);
		c->owner = memcpy(c->proc + pl, f->owner, ol);
	}
	if (s->group && s->group_lost) {
		rc = group_lost(s, d);
		goto fail;
	}
	if (s->group && !s->group_tx) {
		if ((rc = tx(s, TX_BEGIN, d, "cannot begin transaction")))
			goto fail;
		s->group_tx = 1;
	}
	if ((rc = tx(s, s->group ? TX_SAVE : TX_BEGIN, d,
	             s->group ? "cannot begin savepoint" : "cannot begin transaction"))) {
		if (s->group && sqlite3_get_autocommit(s->db))
			group_lost(s, NULL);
		goto fail;
	}
	c->grouped = s->group;
	if ((rc = check_fence(c, d))) {
		undo(c);
		goto fail;
	}
	*out = &c->base;
	return 0;
fail:
	free(c);
	return rc;
}

static int sqlite_commit_end(struct sl_commit *base, int commit, struct sl_diag *d)
{
	struct sqlite_commit *c = sqc(base);
	struct sqlite_store *s = c->s;
	int rc = 0;

	if (commit && c->grouped && sqlite3_get_autocommit(s->db))
		rc = group_lost(s, d);
	else if (commit && !(rc = check_fence(c, d)))
		rc = c->grouped ? tx(s, TX_RELEASE, d, "cannot release savepoint")
		                : tx(s, TX_COMMIT, d, "cannot commit");
	if (!commit || rc)
		undo(c);
	free(c);
	return rc;
}

static int sqlite_group_begin(struct sl_store *base)
{
	struct sqlite_store *s = sq(base);

	s->group = 1;
	s->group_tx = s->group_lost = 0;
	return 1;
}

static int sqlite_group_end(struct sl_store *base, int commit, struct sl_diag *d)
{
	struct sqlite_store *s = sq(base);
	int rc = 0;

	if (s->group_lost) {
		rc = commit ? group_lost(s, d) : 0;
	} else if (s->group_tx) {
		if (commit && sqlite3_get_autocommit(s->db))
			rc = group_lost(s, d);
		else if (commit)
			rc = tx(s, TX_COMMIT, d, "cannot commit");
		if ((!commit || rc) && !sqlite3_get_autocommit(s->db))
			tx(s, TX_ROLLBACK, NULL, "cannot roll back");
	}
	s->group = s->group_tx = s->group_lost = 0;
	free(s->group_fence);
	s->group_fence = NULL;
	return rc;
}

static struct sl_proj *sqlite_commit_projection(struct sl_commit *c)
{
	return &sqc(c)->s->proj;
}

sqlite3 *sl_proj_db(struct sl_proj *pj)
{
	return pj->db;
}

const char *sl_proj_path(const struct sl_proj *pj)
{
	return pj->path;
}

void sl_proj_authorize(struct sl_proj *pj, sl_proj_auth_fn fn, void *ud)
{
	pj->auth = fn;
	pj->auth_ud = ud;
}

void sl_proj_on_touch(struct sl_proj *pj, sl_proj_touch_fn fn, void *ud)
{
	pj->touch = fn;
	pj->touch_ud = ud;
}

int sl_proj_touch(struct sl_proj *pj, struct sl_diag *d)
{
	return pj->touch ? pj->touch(pj->touch_ud, d) : 0;
}

void sl_proj_set_log(struct sl_proj *pj, struct sl_buf *log)
{
	pj->log = log;
}

struct sl_buf *sl_proj_log(struct sl_proj *pj)
{
	return pj ? pj->log : NULL;
}

/* ---- a projection database of its own (the JetStream backend's) ---------------------------- */

static int proj_error(struct sl_proj *pj, struct sl_diag *d, const char *what)
{
	int rc = sqlite3_errcode(pj->db);

	return sl_diag_set(d,
	                   rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? SL_EBUSY
	                   : rc == SQLITE_NOMEM                     ? SL_ENOMEM
	                                                            : SL_EIO,
	                   "projection database '%s': %s: %s", pj->path, what,
	                   sqlite3_errmsg(pj->db));
}

int sl_proj_open(struct sl_proj **out, const char *path, enum sl_durability dur, struct sl_diag *d)
{
	static const char *const setup =
		"PRAGMA journal_mode=WAL; PRAGMA foreign_keys=OFF;"
		"CREATE TABLE IF NOT EXISTS sl_tables(name TEXT PRIMARY KEY NOT NULL,"
		" processor TEXT NOT NULL) WITHOUT ROWID;"
		"CREATE TABLE IF NOT EXISTS sl_proj_marks(key TEXT PRIMARY KEY NOT NULL,"
		" offset INTEGER NOT NULL) WITHOUT ROWID;";
	struct sl_proj *pj = calloc(1, sizeof(*pj));
	int rc;

	*out = NULL;
	if (!pj || !(pj->path = strdup(path))) {
		free(pj);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	pj->own = 1;
	if (sqlite3_open_v2(path, &pj->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		rc = proj_error(pj, d, "cannot open");
		sl_proj_close(pj);
		return rc;
	}
	sqlite3_busy_timeout(pj->db, 10000);
	if (sqlite3_exec(pj->db, setup, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(pj->db,
	                 dur == SL_DURABILITY_NORMAL ? "PRAGMA synchronous=NORMAL"
	                                             : "PRAGMA synchronous=FULL",
	                 NULL, NULL, NULL) != SQLITE_OK) {
		rc = proj_error(pj, d, "cannot set up");
		sl_proj_close(pj);
		return rc;
	}
	sqlite3_set_authorizer(pj->db, authorize, pj);
	*out = pj;
	return 0;
}

void sl_proj_close(struct sl_proj *pj)
{
	if (!pj || !pj->own)
		return;
	sqlite3_close(pj->db);
	free((char *)pj->path);
	free(pj);
}

int sl_proj_exec(struct sl_proj *pj, const char *sql, struct sl_diag *d)
{
	return sqlite3_exec(pj->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0
	                                                                : proj_error(pj, d, sql);
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int sl_proj_replay(struct sl_proj *pj, const unsigned char *log, size_t len, struct sl_diag *d)
{
	const unsigned char *p = log, *end = log + len, *nul;
	sqlite3_stmt *st = NULL;
	uint32_t n, k, i, tl;
	uint64_t u;
	double f;
	int rc;

	while (p < end) {
		if (!(nul = memchr(p, '\0', (size_t)(end - p))) || end - nul < 5)
			goto damaged;
		if (sqlite3_prepare_v2(pj->db, (const char *)p, -1, &st, NULL) != SQLITE_OK)
			return proj_error(pj, d, "cannot replay a statement");
		n = get_u32(nul + 1);
		p = nul + 5;
		for (k = 0; k < n; k++) {
			if (end - p < 5)
				goto damaged;
			i = get_u32(p);
			p += 5;
			switch (p[-1]) {
			case 'n':
				sqlite3_bind_null(st, (int)i);
				break;
			case 'i':
			case 'f':
				if (end - p < 8)
					goto damaged;
				u = get_u64(p);
				p += 8;
				if (p[-9] == 'i') {
					sqlite3_bind_int64(st, (int)i, (sqlite3_int64)u);
				} else {
					memcpy(&f, &u, sizeof(f));
					sqlite3_bind_double(st, (int)i, f);
				}
				break;
			case 't':
				if (end - p < 4 || (size_t)(end - p - 4) < (tl = get_u32(p)))
					goto damaged;
				sqlite3_bind_text(st, (int)i, (const char *)p + 4, (int)tl,
				                  SQLITE_TRANSIENT);
				p += 4 + tl;
				break;
			default:
				goto damaged;
			}
		}
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			;
		sqlite3_finalize(st);
		st = NULL;
		if (rc != SQLITE_DONE)
			return proj_error(pj, d, "a replayed statement failed");
	}
	return 0;
damaged:
	sqlite3_finalize(st);
	return sl_diag_set(d, SL_ECORRUPT, "projection database '%s': a statement log is damaged",
	                   pj->path);
}

int sl_proj_mark_get(struct sl_proj *pj, const char *key, int64_t *offset, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	*offset = -1;
	if (sqlite3_prepare_v2(pj->db, "SELECT offset FROM sl_proj_marks WHERE key = ?1", -1, &st,
	                       NULL) != SQLITE_OK)
		return proj_error(pj, d, "cannot read marks");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*offset = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : proj_error(pj, d, "cannot read marks");
}

int sl_proj_mark_put(struct sl_proj *pj, const char *key, int64_t offset, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(pj->db,
	                       offset < 0 ? "DELETE FROM sl_proj_marks WHERE key = ?1"
	                                  : "INSERT OR REPLACE INTO sl_proj_marks(key, offset)"
	                                    " VALUES (?1, ?2)",
	                       -1, &st, NULL) != SQLITE_OK)
		return proj_error(pj, d, "cannot write marks");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (offset >= 0)
		sqlite3_bind_int64(st, 2, offset);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : proj_error(pj, d, "cannot write marks");
}

int sl_proj_drop_tables(struct sl_proj *pj, const char *proc, const char *key_prefix,
                        struct sl_diag *d)
{
	struct sl_buf sql;
	sqlite3_stmt *st;
	int rc;

	sl_buf_init(&sql);
	if (sqlite3_prepare_v2(
		    pj->db,
		    "SELECT t.name, coalesce(m.type, 'table') FROM sl_tables t"
		    " LEFT JOIN sqlite_schema m ON m.name = t.name AND m.type IN"
		    " ('table', 'view') WHERE t.processor = ?1 ORDER BY m.type = 'table'",
		    -1, &st, NULL) != SQLITE_OK)
		return proj_error(pj, d, "cannot list projection tables");
	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *type = (const char *)sqlite3_column_text(st, 1);
		sl_buf_adds(&sql, type && !strcmp(type, "view") ? "DROP VIEW IF EXISTS \""
		                                                : "DROP TABLE IF EXISTS \"");
		for (; *name; name++)
			*name == '"' ? sl_buf_adds(&sql, "\"\"") : sl_buf_addc(&sql, *name);
		sl_buf_adds(&sql, "\";");
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		sl_buf_release(&sql);
		return proj_error(pj, d, "cannot list projection tables");
	}
	sl_buf_adds(&sql, "");
	if (!sl_buf_ok(&sql)) {
		sl_buf_release(&sql);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	rc = sql.len ? sl_proj_exec(pj, sql.ptr, d) : 0;
	sl_buf_release(&sql);
	if (rc)
		return rc;
	if (sqlite3_prepare_v2(pj->db, "DELETE FROM sl_tables WHERE processor = ?1;", -1, &st,
	                       NULL) != SQLITE_OK)
		return proj_error(pj, d, "cannot forget projection tables");
	sqlite3_bind_text(st, 1, proc, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return proj_error(pj, d, "cannot forget projection tables");
	if (sqlite3_prepare_v2(pj->db,
	                       "DELETE FROM sl_proj_marks WHERE substr(key, 1, length(?1)) = ?1",
	                       -1, &st, NULL) != SQLITE_OK)
		return proj_error(pj, d, "cannot forget marks");
	sqlite3_bind_text(st, 1, key_prefix, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : proj_error(pj, d, "cannot forget marks");
}

const struct sl_store_ops sl_store_sqlite_ops = {
	.name = "sqlite",
	.open = sqlite_open,
	.close = sqlite_close,
	.append = sqlite_append,
	.read = sqlite_read,
	.read_all = sqlite_read_all,
	.read_range = sqlite_read_range,
	.ckpt_rates = 1,
	.streams = sqlite_streams,
	.head_position = sqlite_head_position,
	.data_version = sqlite_data_version,
	.watch_file = sqlite_watch_file,
	.verify = sqlite_verify,
	.proc_get = sqlite_proc_get,
	.ckpt_get = sqlite_ckpt_get,
	.ckpt_each = sqlite_ckpt_each,
	.ckpt_behind = sqlite_ckpt_behind,
	.dead_letters = sqlite_dead_letters,
	.dead_letters_clear = sqlite_dead_letters_clear,
	.lease_acquire = sqlite_lease_acquire,
	.lease_release = sqlite_lease_release,
	.lease_get = sqlite_lease_get,
	.commit_begin = sqlite_commit_begin,
	.commit_end = sqlite_commit_end,
	.group_begin = sqlite_group_begin,
	.group_end = sqlite_group_end,
	.commit_append = sqlite_commit_append,
	.commit_projection = sqlite_commit_projection,
	.proc_put = sqlite_proc_put,
	.proc_hashes = sqlite_proc_hashes,
	.ckpt_put = sqlite_ckpt_put,
	.ckpt_put_offset = sqlite_ckpt_put_offset,
	.rates_put = sqlite_rates_put,
	.rate_get = sqlite_rate_get,
	.reload_error_put = sqlite_reload_error_put,
	.reload_error_get = sqlite_reload_error_get,
	.fault = sqlite_fault,
	.clear_fault = sqlite_clear_fault,
	.background_failure = sqlite_background_failure,
	.dead_letter = sqlite_dead_letter,
	.reset = sqlite_reset,
	.drop_tables = sqlite_drop_tables,
};
