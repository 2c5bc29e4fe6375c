/* bench_store.c - measures the event store against plain SQLite and the raw disk.
 *
 * Three figures, taken in one run on a fresh directory under /tmp that is removed
 * at the end:
 *
 *   a. bulk append: 1 000 000 events with ~100-byte payloads over 100 streams,
 *      through sl_store_append in batches of 1000 (durability FULL), against a plain
 *      SQLite loop writing the same rows into a fresh database with the store's
 *      schema and PRAGMAs (one prepared INSERT, 1000 rows per transaction, offsets
 *      and positions computed in advance). The two take turns in slices of 50 000
 *      events, so a change in the machine's load hits both alike. Target: at least
 *      0.8 of the plain loop.
 *   b. replay: every event read back stream by stream from offset 1 through
 *      sl_store_read, beside a bare sqlite3_step loop running the store's own query
 *      over the same rows (the measured limit). Target: 1 000 000 events/s.
 *   c. durable single-event appends (n = 1, FULL), beside the raw fsync rate of the
 *      same disk (a 4 KiB write and an fsync per iteration, in the same directory).
 *
 * The plain SQLite side shows what the schema costs without the engine's checks,
 * stream bookkeeping and lifecycle events, so the ratio is the engine's overhead.
 * This file includes sqlite3.h, which the engine keeps inside sl_store_sqlite.c: the
 * benchmark needs raw SQLite as its yardstick, and it is not part of the engine.
 *
 * Progress goes to stderr, the table to stdout. Exit status 0, or 1 after an error
 * (with --strict, also when a target is missed).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sl_contract.h"
#include "sl_store.h"

#define BENCH_NAME "bench_store"
#include "bench_util.h"

#define STREAMS 100
#define BATCH 1000
#define PAYLOAD_LEN 100 /* bytes of each bulk event's payload */
#define READ_ROUNDS 3   /* replays are short: report the best of a few */
#define PROGRESS_EVERY 100000
#define SLICE 50000 /* bulk events written one way before the other takes its turn */
#define EVENT_TYPE "bench/event"

/* engine/sl_store.c, schema_v1, verbatim: the plain loop writes the same tables. */
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

/* The store's connection settings (sl_store.c, configure()). */
static const char *const pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
				   " PRAGMA foreign_keys=OFF; PRAGMA cache_size=-16384";

/* The store's statements ST_EVENT_INS and ST_READ. */
static const char *const insert_sql =
	"INSERT INTO sl_events(stream, \"offset\", position, type, payload,"
	" metadata, idem_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char *const read_sql =
	"SELECT stream, \"offset\", position, type, payload, metadata, idem_key,"
	" created_at FROM sl_events WHERE stream = ?1 AND \"offset\" >= ?2"
	" ORDER BY \"offset\" LIMIT ?3";

struct config {
	long events;  /* bulk events (a, b) */
	long singles; /* single appends and fsyncs (c) */
	const char *base;
	int strict;
};

/* What the bulk phases write: stream names and one batch of payloads. */
struct gen {
	char names[STREAMS][16];
	char payload[BATCH][PAYLOAD_LEN + 1];
	struct sl_event_in ev[BATCH];
	struct sl_append_result res[BATCH];
};

/* One line of the table. */
struct row {
	const char *bench;
	double result, limit; /* per second */
	const char *unit, *limit_name;
	double target;
	int target_on_result; /* 1: the target bounds the result, 0: the ratio */
	double aside;         /* c: the overwrite + fdatasync rate, shown below the table */
};

enum { ROW_BULK, ROW_REPLAY, ROW_SINGLE, ROW_COUNT };

static const char *const dir_files[] = {"store.db",     "store.db-wal", "store.db-shm", "plain.db",
                                        "plain.db-wal", "plain.db-shm", "fsync.tmp"};

/* ---- small helpers ------------------------------------------------------------- */

static void remove_dir(void)
{
	char p[sizeof(dir) + 32];
	size_t i;

	if (!dir[0])
		return;
	for (i = 0; i < sizeof(dir_files) / sizeof(dir_files[0]); i++) {
		path_of(p, sizeof(p), dir_files[i]);
		unlink(p);
	}
	if (rmdir(dir))
		fprintf(stderr, "bench_store: cannot remove %s: %s\n", dir, strerror(errno));
	dir[0] = '\0';
}

/* Writes the PAYLOAD_LEN-byte JSON payload of bulk event i to out. */
static size_t make_payload(char *out, long i)
{
	int n = snprintf(out, PAYLOAD_LEN + 1, "{\"i\":%ld,\"user\":\"user-%04ld\",\"note\":\"", i,
	                 i % 9973);

	memset(out + n, 'a' + (int)(i % 26), (size_t)(PAYLOAD_LEN - 2 - n));
	memcpy(out + PAYLOAD_LEN - 2, "\"}", 3);
	return PAYLOAD_LEN;
}

/* Bulk event i goes to stream i % STREAMS; after the stream's stream/created event
 * at offset 1, its offset is i / STREAMS + 2. */
static int64_t bulk_offset(long i)
{
	return (int64_t)(i / STREAMS) + 2;
}

/* ---- plain SQLite ---------------------------------------------------------------- */

static int sql_fail(sqlite3 *db, const char *what)
{
	fprintf(stderr, "bench_store: plain SQLite: %s: %s\n", what,
	        db ? sqlite3_errmsg(db) : "out of memory");
	return -1;
}

static int sql_exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : sql_fail(db, sql);
}

/* Opens a connection configured like the store's. */
static int sql_open(sqlite3 **db, const char *path, int readonly)
{
	int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	if (sqlite3_open_v2(path, db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		return sql_fail(*db, path);
	return sql_exec(*db, readonly ? "PRAGMA cache_size=-16384" : pragmas);
}

/* Inserts one batch of the bulk events [first, first + m) in one transaction. */
static int plain_batch(sqlite3 *db, sqlite3_stmt *st, struct gen *g, long first, long m)
{
	char created_at[32];
	long k;

	if (sql_exec(db, "BEGIN IMMEDIATE"))
		return -1;
	sl_store_now(created_at, sizeof(created_at)); /* once per batch, as the store */
	for (k = 0; k < m; k++) {
		size_t len = make_payload(g->payload[k], first + k);
		sqlite3_bind_text(st, 1, g->names[(first + k) % STREAMS], -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, bulk_offset(first + k));
		sqlite3_bind_int64(st, 3, (int64_t)(first + k) + 1);
		sqlite3_bind_text(st, 4, EVENT_TYPE, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, g->payload[k], (int)len, SQLITE_STATIC);
		sqlite3_bind_null(st, 6);
		sqlite3_bind_null(st, 7);
		sqlite3_bind_text(st, 8, created_at, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE) {
			sqlite3_reset(st);
			sql_fail(db, "insert");
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		sqlite3_reset(st);
	}
	return sql_exec(db, "COMMIT");
}

/* b, the limit: the store's read query stepped bare, stream by stream. */
static int replay_plain(const struct gen *g, long long *rows, double *secs)
{
	char path[sizeof(dir) + 32];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	double t0;
	int i, rc = -1, step = SQLITE_DONE;

	*rows = 0;
	path_of(path, sizeof(path), "store.db");
	if (sql_open(&db, path, 1))
		goto out;
	if (sqlite3_prepare_v3(db, read_sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL)) {
		sql_fail(db, "prepare");
		goto out;
	}
	t0 = now();
	for (i = 0; i < STREAMS; i++) {
		sqlite3_bind_text(st, 1, g->names[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, 1);
		sqlite3_bind_int64(st, 3, -1);
		while ((step = sqlite3_step(st)) == SQLITE_ROW)
			++*rows;
		sqlite3_reset(st);
		if (step != SQLITE_DONE) {
			sql_fail(db, "read");
			goto out;
		}
	}
	*secs = now() - t0;
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* ---- the store ------------------------------------------------------------------- */

static int store_fail(const char *what, const struct sl_diag *d)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, sl_diag_msg(d));
	return -1;
}

/* The payload check of every append path of the engine (the CLI, the host). */
static struct sl_core_validator *core;

static int store_open(struct sl_store **s, int readonly)
{
	struct sl_store_opts o = {
		SL_DURABILITY_FULL, readonly, sl_core_validate, NULL, NULL, 0, NULL};
	char path[sizeof(dir) + 32];
	struct sl_diag d;

	sl_diag_init(&d);
	if (!core && sl_core_validator_new(&core, &d))
		return store_fail("open", &d);
	o.check_ud = core;
	path_of(path, sizeof(path), "store.db");
	return sl_store_open(s, path, &o, &d) ? store_fail("open", &d) : 0;
}

/* Appends the bulk events [first, first + m) as one batch and checks the offsets. */
static int store_batch(struct sl_store *s, struct gen *g, long first, long m)
{
	struct sl_diag d;
	size_t failed = 0;
	long k;

	for (k = 0; k < m; k++) {
		struct sl_event_in *e = &g->ev[k];
		memset(e, 0, sizeof(*e));
		e->stream = g->names[(first + k) % STREAMS];
		e->type = EVENT_TYPE;
		e->payload = g->payload[k];
		e->payload_len = make_payload(g->payload[k], first + k);
	}
	sl_diag_init(&d);
	if (sl_store_append(s, g->ev, (size_t)m, g->res, 0, &failed, &d))
		return store_fail("append", &d);
	for (k = 0; k < m; k++)
		if (g->res[k].offset != bulk_offset(first + k) || g->res[k].duplicate) {
			fprintf(stderr, "bench_store: event %ld got offset %lld, expected %lld\n",
			        first + k, (long long)g->res[k].offset,
			        (long long)bulk_offset(first + k));
			return -1;
		}
	return 0;
}

struct tally {
	long long events, bytes;
};

static int count_event(void *ud, const struct sl_event *ev)
{
	struct tally *t = ud;

	t->events++;
	t->bytes += (long long)ev->payload_len;
	return 0;
}

/* b: every stream read back from offset 1 through sl_store_read. */
static int replay_store(const struct gen *g, long long *rows, double *secs)
{
	struct tally t = {0, 0};
	struct sl_store *s = NULL;
	struct sl_diag d;
	double t0;
	int i, rc = -1;

	if (store_open(&s, 1))
		goto out;
	sl_diag_init(&d);
	t0 = now();
	for (i = 0; i < STREAMS; i++)
		if (sl_store_read(s, g->names[i], 1, 0, NULL, count_event, &t, &d)) {
			store_fail("read", &d);
			goto out;
		}
	*secs = now() - t0;
	*rows = t.events;
	rc = 0;
out:
	sl_store_close(s);
	return rc;
}

/* c: n single-event appends, each its own durable transaction, on the bulk store. */
static int singles_store(const struct config *c, double *rate)
{
	static const char payload[] = "{\"note\":\"one durable event at a time, acknowledged"
				      " only after the WAL commit is on disk\"}";
	struct sl_event_in ev = {"single", EVENT_TYPE, payload, sizeof(payload) - 1,
	                         NULL,     0,          NULL,    0};
	struct sl_append_result res;
	struct sl_store *s = NULL;
	struct sl_diag d;
	double t0, t;
	long i;
	int rc = -1;

	if (store_open(&s, 0))
		goto out;
	sl_diag_init(&d);
	if (sl_store_append(s, &ev, 1, &res, 0, NULL, &d)) { /* creates the stream */
		store_fail("append", &d);
		goto out;
	}
	t0 = now();
	for (i = 0; i < c->singles; i++) {
		if (stopped() || sl_store_append(s, &ev, 1, &res, 0, NULL, &d)) {
			if (!interrupted)
				store_fail("append", &d);
			goto out;
		}
		if ((i + 1) % 500 == 0)
			fprintf(stderr, "  single appends: %ld / %ld, %.1f s\n", i + 1, c->singles,
			        now() - t0);
	}
	t = now() - t0;
	if (res.offset != c->singles + 2) {
		fprintf(stderr, "bench_store: last single append got offset %lld, expected %ld\n",
		        (long long)res.offset, c->singles + 2);
		goto out;
	}
	*rate = (double)c->singles / t;
	rc = 0;
out:
	sl_store_close(s);
	return rc;
}

/* One 4 KiB write made durable. */
static int sync_block(int fd, const char *block, long i, int overwrite)
{
	if (!overwrite)
		return write(fd, block, 4096) == 4096 && !fsync(fd) ? 0 : -1;
	return pwrite(fd, block, 4096, (off_t)(i % 256) * 4096) == 4096 && !fdatasync(fd) ? 0 : -1;
}

/* c, the limit: n iterations of a 4 KiB write and an fsync on a file of the same
 * disk, the file growing by 4 KiB each time. With `overwrite`, the pattern of a
 * WAL commit instead: SQLite rewrites a WAL that a checkpoint has reset, so its
 * file size rarely changes, and it syncs with fdatasync, which then skips the
 * inode's timestamps; that is cheaper on ext4 than the plain loop. */
static int fsync_rate(const struct config *c, int overwrite, double *rate)
{
	char path[sizeof(dir) + 32], block[4096];
	double t0, t;
	long i;
	int fd, rc = -1;

	path_of(path, sizeof(path), "fsync.tmp");
	memset(block, 'f', sizeof(block));
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0) {
		fprintf(stderr, "bench_store: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (i = 0; overwrite && i < 256; i++)
		if (sync_block(fd, block, i, 0))
			goto fail;
	t0 = now();
	for (i = 0; i < c->singles; i++) {
		if (stopped())
			goto out;
		if (sync_block(fd, block, i, overwrite))
			goto fail;
	}
	t = now() - t0;
	*rate = (double)c->singles / t;
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "bench_store: %s: %s\n", path, strerror(errno));
out:
	close(fd);
	unlink(path);
	return rc;
}

/* ---- the run --------------------------------------------------------------------- */

/* The two writers of the bulk phase, open side by side. */
struct bulk {
	sqlite3 *db; /* plain.db, with the store's schema */
	sqlite3_stmt *ins;
	struct sl_store *s; /* store.db */
	double plain_secs, store_secs;
};

static int bulk_open(struct bulk *b)
{
	char path[sizeof(dir) + 32];

	path_of(path, sizeof(path), "plain.db");
	if (sql_open(&b->db, path, 0) || sql_exec(b->db, schema_v1) ||
	    sql_exec(b->db, "PRAGMA user_version = 1"))
		return -1;
	if (sqlite3_prepare_v3(b->db, insert_sql, -1, SQLITE_PREPARE_PERSISTENT, &b->ins, NULL))
		return sql_fail(b->db, "prepare");
	return store_open(&b->s, 0);
}

static void bulk_close(struct bulk *b)
{
	sqlite3_finalize(b->ins);
	sqlite3_close(b->db);
	sl_store_close(b->s);
}

/* Writes the bulk events [first, first + n) one way, adding the time to *secs. */
static int bulk_side(struct bulk *b, struct gen *g, int store, long first, long n, double *secs)
{
	double t0 = now();
	long i, m;

	for (i = first; i < first + n; i += m) {
		m = first + n - i < BATCH ? first + n - i : BATCH;
		if (store ? store_batch(b->s, g, i, m) : plain_batch(b->db, b->ins, g, i, m))
			return -1;
	}
	*secs += now() - t0;
	return 0;
}

/* a: the bulk events through sl_store_append (validation included: flags 0) and
 * through the plain loop. The two alternate in slices of SLICE events, taking turns
 * to go first, so both meet the same background: the kernel writing back the other
 * side's pages, other processes on the machine. */
static int run_bulk(const struct config *c, struct gen *g, struct row *r)
{
	struct bulk b = {NULL, NULL, NULL, 0, 0};
	long i, n, k = 0;
	int rc = -1;

	fprintf(stderr, "a. bulk append: plain SQLite loop and sl_store_append, by turns\n");
	if (bulk_open(&b))
		goto out;
	for (i = 0; i < c->events; i += n, k++) {
		n = c->events - i < SLICE ? c->events - i : SLICE;
		if (stopped() ||
		    bulk_side(&b, g, k & 1, i, n, k & 1 ? &b.store_secs : &b.plain_secs) ||
		    bulk_side(&b, g, !(k & 1), i, n, k & 1 ? &b.plain_secs : &b.store_secs))
			goto out;
		if ((i + n) % PROGRESS_EVERY == 0 || i + n == c->events)
			fprintf(stderr,
			        "  %ld / %ld events: plain SQLite %.1f s, sl_store_append %.1f s\n",
			        i + n, c->events, b.plain_secs, b.store_secs);
	}
	r->limit = (double)c->events / b.plain_secs;
	r->result = (double)c->events / b.store_secs;
	rc = 0;
out:
	bulk_close(&b);
	return rc;
}

/* Replays the store both ways READ_ROUNDS times, alternating, keeping the best. */
static int run_replay(const struct config *c, const struct gen *g, struct row *r)
{
	long long want = (long long)c->events + STREAMS, rows = 0, raw = 0;
	double secs = 0, best = 0, best_raw = 0;
	int i;

	for (i = 0; i < READ_ROUNDS; i++) {
		fprintf(stderr, "b. replay, round %d of %d\n", i + 1, READ_ROUNDS);
		if (stopped() || replay_store(g, &rows, &secs))
			return -1;
		if (rows != want) {
			fprintf(stderr, "bench_store: replay read %lld events, expected %lld\n",
			        rows, want);
			return -1;
		}
		if (secs > 0 && (double)rows / secs > best)
			best = (double)rows / secs;
		if (replay_plain(g, &raw, &secs))
			return -1;
		if (raw != want) {
			fprintf(stderr, "bench_store: bare loop read %lld rows, expected %lld\n",
			        raw, want);
			return -1;
		}
		if (secs > 0 && (double)raw / secs > best_raw)
			best_raw = (double)raw / secs;
	}
	r->result = best;
	r->limit = best_raw;
	return 0;
}

static int run_singles(const struct config *c, struct row *r)
{
	fprintf(stderr, "c. durable single appends: raw 4 KiB write + fsync\n");
	if (fsync_rate(c, 0, &r->limit))
		return -1;
	fprintf(stderr, "c. durable single appends: raw 4 KiB overwrite + fdatasync\n");
	if (fsync_rate(c, 1, &r->aside))
		return -1;
	fprintf(stderr, "c. durable single appends: sl_store_append, n = 1\n");
	return singles_store(c, &r->result);
}

static int run(const struct config *c, struct row *rows)
{
	struct gen *g = calloc(1, sizeof(*g));
	int i, rc = -1;

	if (!g) {
		fprintf(stderr, "bench_store: out of memory\n");
		return -1;
	}
	for (i = 0; i < STREAMS; i++)
		snprintf(g->names[i], sizeof(g->names[i]), "bench-%02d", i);
	if (!run_bulk(c, g, &rows[ROW_BULK]) && !run_replay(c, g, &rows[ROW_REPLAY]) &&
	    !run_singles(c, &rows[ROW_SINGLE]))
		rc = 0;
	free(g);
	return rc;
}

/* ---- the table ------------------------------------------------------------------- */

static int row_passes(const struct row *r)
{
	double ratio = r->limit > 0 ? r->result / r->limit : 0;

	return r->target_on_result ? r->result >= r->target : ratio >= r->target;
}

static void print_row(const struct row *r)
{
	char n[32], result[48], limit[64], target[64];

	snprintf(result, sizeof(result), "%s %s", group(n, sizeof(n), r->result), r->unit);
	snprintf(limit, sizeof(limit), "%s %s (%s)", group(n, sizeof(n), r->limit), r->unit,
	         r->limit_name);
	if (r->target_on_result)
		snprintf(target, sizeof(target), ">= %s %s", group(n, sizeof(n), r->target),
		         r->unit);
	else
		snprintf(target, sizeof(target), "ratio >= %.2f", r->target);
	printf("| %-52s | %-16s | %-40s | %5.3f | %-18s | %s |\n", r->bench, result, limit,
	       r->limit > 0 ? r->result / r->limit : 0.0, target,
	       row_passes(r) ? "✓ pass" : "✗ FAIL");
}
static int print_table(const struct config *c, const struct row *rows)
{
	char n[32];
	int i, missed = 0;

	printf("\nsluice store benchmark: %s bulk events, %d streams, batches of %d,"
	       " %ld single appends, durability FULL, SQLite %s\n\n",
	       group(n, sizeof(n), (double)c->events), STREAMS, BATCH, c->singles,
	       sqlite3_libversion());
	printf("| %-52s | %-16s | %-40s | %5s | %-18s | %s |\n", "benchmark", "result",
	       "limit/baseline", "ratio", "target", "mark  ");
	printf("|%s|%s|%s|%s|%s|%s|\n", dashes(54), dashes(18), dashes(42), dashes(7), dashes(20),
	       dashes(8));
	for (i = 0; i < ROW_COUNT; i++) {
		print_row(&rows[i]);
		missed += !row_passes(&rows[i]);
	}
	printf("\nc: a WAL commit rewrites a reset WAL and syncs it with fdatasync; that raw"
	       " pattern\n(4 KiB overwrite + fdatasync) runs at %s/s here, ratio %.3f.\n",
	       group(n, sizeof(n), rows[ROW_SINGLE].aside),
	       rows[ROW_SINGLE].aside > 0 ? rows[ROW_SINGLE].result / rows[ROW_SINGLE].aside : 0.0);
	printf("%s\n", missed ? "some targets were missed" : "all targets met");
	return missed;
}

/* ---- main ------------------------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr, "usage: bench_store [--events N] [--singles N] [--dir DIR] [--strict]\n"
	                "  --events N    bulk events to append and replay (1000000)\n"
	                "  --singles N   single durable appends and raw fsyncs (2000)\n"
	                "  --dir DIR     where to make the temporary store directory (/tmp)\n"
	                "  --strict      exit 1 when a target is missed\n");
	return 1;
}

static int parse_long(const char *text, long *out)
{
	char *end;

	errno = 0;
	*out = text ? strtol(text, &end, 10) : 0;
	return text && !errno && end != text && !*end && *out > 0 ? 0 : -1;
}

static int parse(int argc, char **argv, struct config *c)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--strict")) {
			c->strict = 1;
			continue;
		}
		if (!strcmp(argv[i], "--events") && !parse_long(val, &c->events))
			i++;
		else if (!strcmp(argv[i], "--singles") && !parse_long(val, &c->singles))
			i++;
		else if (!strcmp(argv[i], "--dir") && val)
			c->base = argv[++i];
		else
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct config c = {1000000, 2000, "/tmp", 0};
	struct row rows[ROW_COUNT] = {
		[ROW_BULK] = {"a. bulk append, 100 streams, batches of 1000", 0, 0, "ev/s",
	                      "plain SQLite inserts", 0.8, 0},
		[ROW_REPLAY] = {"b. replay by stream from offset 1 (best of 3)", 0, 0, "ev/s",
	                        "bare sqlite3_step loop", 1e6, 1},
		[ROW_SINGLE] = {"c. durable single-event appends", 0, 0, "/s",
	                        "raw 4 KiB write + fsync", 0.5, 0},
	};
	struct sigaction sa;
	double t0 = now();
	int rc, missed;

	if (parse(argc, argv, &c))
		return usage();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	snprintf(dir, sizeof(dir), "%s/sluice-bench-XXXXXX", c.base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "bench_store: cannot create a directory in %s: %s\n", c.base,
		        strerror(errno));
		return 1;
	}
	fprintf(stderr, "bench_store: working in %s\n", dir);
	rc = run(&c, rows);
	sl_core_validator_free(core);
	remove_dir();
	if (rc)
		return 1;
	fprintf(stderr, "bench_store: done in %.1f s\n", now() - t0);
	missed = print_table(&c, rows);
	return c.strict && missed ? 1 : 0;
}
