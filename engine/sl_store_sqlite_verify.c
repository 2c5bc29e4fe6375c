/* sl_store_sqlite_verify.c - `sluice verify` on the SQLite backend: SQLite's own check
 * of the file, then sluice's invariants over the tables of sl_store_sqlite_schema.h.
 *
 * A damaged file makes statements fail with SQLITE_CORRUPT (or SQLITE_NOTADB): such a
 * failure is a problem found, reported as "integrity", and the verification goes on
 * with the next check; any other failure (busy, out of memory, I/O) stops it. Every
 * check runs inside one read transaction, so they all see the same store even while
 * another process appends.
 *
 * The walk reads sl_events in its own order, (stream, "offset"), so one pass finds
 * holes, misplaced stream/created events and positions out of order; the store-wide
 * uniqueness of positions is checked without the position index (NOT INDEXED), which
 * is what a damaged index would hide.
 *
 * Unclean shutdown. SQLite itself survives a crash (the WAL is replayed or dropped),
 * so what an unclean shutdown may leave is damage of the file that a crash exposed
 * (a lying disk cache, a torn write on a drive that does not honour fsync, a copy
 * taken mid-write). A row per open connection in sl_opens, removed at a clean close,
 * tells which opens ended otherwise: a hot WAL would not (it stays after a clean
 * close of a connection while another one is open, and it is gone after SQLite's own
 * recovery), nor would a single flag (several processes open a store at once). A
 * process is taken as gone when kill(pid, 0) says so; a reused pid hides a crash until
 * that process ends, which costs the check, not the safety of what was committed.
 */
#include "sl_store_sqlite_verify.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#define PROGRESS_EVERY 16384 /* events between two progress calls */

struct verify {
	sqlite3 *db;
	const char *path;
	sl_problem_fn fn;
	sl_verify_progress_fn progress;
	void *ud;
	struct sl_store_verify_summary *sum;
	struct sl_diag *d;
	char msg[512];
};

/* One stream of the walk. */
struct walk {
	char *stream;
	int has_record;
	int64_t next, last_pos;
};

static void problem_init(struct sl_store_problem *p, const char *what, const char *stream)
{
	memset(p, 0, sizeof(*p));
	p->problem = what;
	p->stream = stream;
	p->offset = p->to = p->position = p->head = -1;
}

static int report(struct verify *v, struct sl_store_problem *p)
{
	v->sum->problems++;
	p->message = v->msg;
	return v->fn ? v->fn(v->ud, p) : 0;
}

/* A statement failed with rc while doing `what`: a damaged file is a problem found
 * (returns 1: skip the rest of this check), anything else an error (negative). */
static int failed(struct verify *v, int rc, const char *what)
{
	struct sl_store_problem p;
	int r;

	if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) {
		problem_init(&p, "integrity", NULL);
		snprintf(v->msg, sizeof(v->msg), "cannot %s: %s", what, sqlite3_errmsg(v->db));
		return (r = report(v, &p)) ? r : 1;
	}
	return sl_diag_set(v->d,
	                   rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? SL_EBUSY
	                   : rc == SQLITE_NOMEM                     ? SL_ENOMEM
	                                                            : SL_EIO,
	                   "store '%s': cannot %s: %s", v->path, what, sqlite3_errmsg(v->db));
}

/* Prepares sql; 0, or what failed() says. */
static int prepare(struct verify *v, const char *sql, sqlite3_stmt **st, const char *what)
{
	int rc = sqlite3_prepare_v2(v->db, sql, -1, st, NULL);

	return rc == SQLITE_OK ? 0 : failed(v, rc, what);
}

/* Ends a loop over st's rows: finalizes it; rc is the last step's result. */
static int done(struct verify *v, sqlite3_stmt *st, int rc, const char *what)
{
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : failed(v, rc, what);
}

/* One "integrity" problem per line of a row of SQLite's check (a row may hold
 * several, under a "*** in database main ***" heading, which is left out). */
static int report_lines(struct verify *v, const char *text)
{
	struct sl_store_problem p;
	const char *nl;
	int r;

	for (; *text; text = *nl ? nl + 1 : nl) {
		size_t n = (nl = strchr(text, '\n')) ? (size_t)(nl - text) : strlen(text);
		if (!nl)
			nl = text + n;
		if (!n || !strncmp(text, "*** ", 4))
			continue;
		problem_init(&p, "integrity", NULL);
		snprintf(v->msg, sizeof(v->msg), "%.*s", (int)n, text);
		if ((r = report(v, &p)))
			return r;
	}
	return 0;
}

/* SQLite's own check: every line but a single "ok" is a problem. */
static int check_file(struct verify *v, int quick)
{
	const char *what = quick ? "run PRAGMA quick_check" : "run PRAGMA integrity_check";
	sqlite3_stmt *st;
	int rc, r;

	if ((r = prepare(v, quick ? "PRAGMA quick_check" : "PRAGMA integrity_check", &st, what)))
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(st, 0);
		if (text && !strcmp(text, "ok"))
			continue;
		if ((r = report_lines(v, text ? text : "(no message)"))) {
			sqlite3_finalize(st);
			return r;
		}
	}
	return done(v, st, rc, what);
}

/* Every stream record: its head must be its last offset. */
static int check_heads(struct verify *v)
{
	static const char sql[] =
		"SELECT s.stream, s.head, coalesce((SELECT max(e.\"offset\") FROM sl_events e"
		" WHERE e.stream = s.stream), 0) FROM sl_streams s ORDER BY s.stream";
	struct sl_store_problem p;
	sqlite3_stmt *st;
	int rc, r;

	if ((r = prepare(v, sql, &st, "read the streams")))
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *stream = (const char *)sqlite3_column_text(st, 0);
		int64_t head = sqlite3_column_int64(st, 1), last = sqlite3_column_int64(st, 2);
		v->sum->streams++;
		if (head == last)
			continue;
		problem_init(&p, "head-mismatch", stream);
		p.head = head;
		p.offset = last;
		snprintf(v->msg, sizeof(v->msg),
		         "stream '%s' records head %lld but its last event is"
		         " at offset %lld",
		         stream, (long long)head, (long long)last);
		if ((r = report(v, &p))) {
			sqlite3_finalize(st);
			return r;
		}
	}
	return done(v, st, rc, "read the streams");
}

/* Returns 1 if the store has the table `name` (an old store read as it is may not). */
static int has_table(struct verify *v, const char *name)
{
	sqlite3_stmt *st;
	int found = 0;

	if (sqlite3_prepare_v2(v->db,
	                       "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1,
	                       &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return found;
}

/* Every checkpoint row: at or below its stream's head (mode "all", stream '': the
 * store's head position). */
static int check_checkpoints(struct verify *v)
{
	static const char sql[] =
		"SELECT c.processor, c.stream, c.\"offset\", CASE WHEN c.stream = ''"
		" THEN (SELECT coalesce(max(position), 0) FROM sl_events)"
		" ELSE coalesce((SELECT head FROM sl_streams s WHERE s.stream = c.stream), 0) END"
		" FROM sl_checkpoints c ORDER BY c.processor, c.stream";
	struct sl_store_problem p;
	sqlite3_stmt *st;
	int rc, r;

	if (!has_table(v, "sl_checkpoints"))
		return 0;
	if ((r = prepare(v, sql, &st, "read the checkpoints")))
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *proc = (const char *)sqlite3_column_text(st, 0);
		const char *stream = (const char *)sqlite3_column_text(st, 1);
		int64_t off = sqlite3_column_int64(st, 2), head = sqlite3_column_int64(st, 3);
		v->sum->checkpoints++;
		if (off <= head)
			continue;
		problem_init(&p, "checkpoint-ahead", stream && *stream ? stream : NULL);
		p.processor = proc;
		p.offset = off;
		p.head = head;
		if (p.stream)
			snprintf(v->msg, sizeof(v->msg),
			         "processor '%s' has a checkpoint at offset %lld"
			         " of stream '%s', whose head is %lld",
			         proc, (long long)off, stream, (long long)head);
		else
			snprintf(v->msg, sizeof(v->msg),
			         "processor '%s' has a checkpoint at position"
			         " %lld, above the store's head position %lld",
			         proc, (long long)off, (long long)head);
		if ((r = report(v, &p))) {
			sqlite3_finalize(st);
			return r;
		}
	}
	return done(v, st, rc, "read the checkpoints");
}

/* Whether a stream record exists for the stream the walk enters. */
static int has_record(struct verify *v, const char *stream, int *out)
{
	sqlite3_stmt *st;
	int rc, r;

	if ((r = prepare(v, "SELECT 1 FROM sl_streams WHERE stream = ?1", &st, "read a stream")))
		return r;
	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*out = rc == SQLITE_ROW;
	return done(v, st, rc, "read a stream");
}

/* The end of a stream in the walk: events without a stream record. */
static int walk_end(struct verify *v, struct walk *w)
{
	struct sl_store_problem p;
	int r = 0;

	if (w->stream && !w->has_record) {
		problem_init(&p, "head-mismatch", w->stream);
		p.offset = w->next - 1;
		snprintf(v->msg, sizeof(v->msg),
		         "stream '%s' has events up to offset %lld but no"
		         " stream record",
		         w->stream, (long long)(w->next - 1));
		r = report(v, &p);
	}
	free(w->stream);
	w->stream = NULL;
	return r;
}

/* One event of the walk, in (stream, offset) order. */
static int walk_event(struct verify *v, struct walk *w, const char *stream, int64_t off,
                      int64_t pos, int created)
{
	struct sl_store_problem p;
	int r;

	if (!w->stream || strcmp(w->stream, stream)) {
		if ((r = walk_end(v, w)))
			return r;
		if (!(w->stream = strdup(stream)))
			return sl_diag_set(v->d, SL_ENOMEM, "out of memory");
		w->next = 1;
		w->last_pos = 0;
		if ((r = has_record(v, stream, &w->has_record)) < 0)
			return r;
		if (r) /* unreadable (reported): do not also call it missing */
			w->has_record = 1;
	}
	if (off < 1) {
		problem_init(&p, "bad-offset", stream);
		p.offset = off;
		p.position = pos;
		snprintf(v->msg, sizeof(v->msg), "stream '%s' has an event at offset %lld", stream,
		         (long long)off);
		return report(v, &p);
	}
	if (off > w->next) {
		problem_init(&p, "missing-offsets", stream);
		p.offset = w->next;
		p.to = off - 1;
		if (p.offset == p.to)
			snprintf(v->msg, sizeof(v->msg), "stream '%s' has no event at offset %lld",
			         stream, (long long)p.offset);
		else
			snprintf(v->msg, sizeof(v->msg),
			         "stream '%s' has no events at offsets %lld"
			         " to %lld",
			         stream, (long long)p.offset, (long long)p.to);
		if ((r = report(v, &p)))
			return r;
	}
	w->next = off + 1;
	if ((off == 1) != created) {
		problem_init(&p, off == 1 ? "bad-first-event" : "extra-created", stream);
		p.offset = off;
		p.position = pos;
		snprintf(v->msg, sizeof(v->msg),
		         off == 1 ? "stream '%s' does not begin with stream/created"
		                  : "stream '%s' has a second stream/created, at offset %lld",
		         stream, (long long)off);
		if ((r = report(v, &p)))
			return r;
	}
	if (pos <= w->last_pos) {
		problem_init(&p, "position-order", stream);
		p.offset = off;
		p.position = pos;
		snprintf(v->msg, sizeof(v->msg),
		         "stream '%s': the event at offset %lld has position"
		         " %lld, not above %lld of the offset before it",
		         stream, (long long)off, (long long)pos, (long long)w->last_pos);
		if ((r = report(v, &p)))
			return r;
	}
	w->last_pos = pos;
	return 0;
}

/* The walk over every event, in the table's own order. */
static int check_events(struct verify *v)
{
	static const char sql[] = "SELECT stream, \"offset\", position, type = 'stream/created'"
				  " FROM sl_events ORDER BY stream, \"offset\"";
	struct walk w = {NULL, 0, 1, 0};
	sqlite3_stmt *st;
	int64_t total = 0;
	int rc, r;

	if (sqlite3_prepare_v2(v->db, "SELECT coalesce(max(position), 0) FROM sl_events", -1, &st,
	                       NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			total = sqlite3_column_int64(st, 0); /* about the number of events */
		sqlite3_finalize(st);
	}
	if ((r = prepare(v, sql, &st, "read the events")))
		return r;
	if (v->progress)
		v->progress(v->ud, 0, total);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = walk_event(v, &w, (const char *)sqlite3_column_text(st, 0),
		               sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
		               sqlite3_column_int(st, 3));
		if (r) {
			free(w.stream);
			sqlite3_finalize(st);
			return r;
		}
		if (++v->sum->events % PROGRESS_EVERY == 0 && v->progress)
			v->progress(v->ud, v->sum->events, total);
	}
	if ((r = done(v, st, rc, "read the events"))) {
		free(w.stream);
		return r;
	}
	if (v->progress)
		v->progress(v->ud, v->sum->events, v->sum->events);
	return walk_end(v, &w);
}

/* Positions held by more than one event, found without the position index. */
static int check_positions(struct verify *v)
{
	static const char sql[] = "SELECT position, count(*), min(stream), max(stream)"
				  " FROM sl_events NOT INDEXED GROUP BY position"
				  " HAVING count(*) > 1 ORDER BY position";
	struct sl_store_problem p;
	sqlite3_stmt *st;
	int rc, r;

	if ((r = prepare(v, sql, &st, "read the positions")))
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 2);
		problem_init(&p, "duplicate-position", a);
		p.position = sqlite3_column_int64(st, 0);
		snprintf(v->msg, sizeof(v->msg),
		         "position %lld is held by %lld events (streams '%s'"
		         " to '%s')",
		         (long long)p.position, (long long)sqlite3_column_int64(st, 1), a,
		         (const char *)sqlite3_column_text(st, 3));
		if ((r = report(v, &p))) {
			sqlite3_finalize(st);
			return r;
		}
	}
	return done(v, st, rc, "read the positions");
}

int sl_sqlite_verify(struct sqlite3 *db, const char *path, int flags, sl_problem_fn fn,
                     sl_verify_progress_fn progress, void *ud, struct sl_store_verify_summary *sum,
                     struct sl_diag *d)
{
	struct verify v = {db, path, fn, progress, ud, sum, d, ""};
	int quick = flags & SL_VERIFY_QUICK, rc;

	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return sl_diag_set(d, SL_EIO, "store '%s': cannot begin a read: %s", path,
		                   sqlite3_errmsg(db));
	/* Each check that met damage reported it (1) and the next one runs. */
	if ((rc = check_file(&v, quick)) >= 0 && (rc = check_heads(&v)) >= 0 &&
	    (rc = check_checkpoints(&v)) >= 0 && !quick && (rc = check_events(&v)) >= 0)
		rc = check_positions(&v);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	return rc < 0 ? rc : 0;
}

/* ---- the check after an unclean shutdown ------------------------------------------------- */

#define MAX_STALE 64 /* rows of dead processes removed per open (the rest: next time) */

struct stale {
	int64_t id[MAX_STALE];
	size_t n;
	int64_t pid;     /* of the first one, for the message */
	char first[512]; /* the quick check's first problem */
	int64_t problems;
};

static int alive(int64_t pid)
{
	return pid == (int64_t)getpid() || kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* The rows of this host's processes that are gone. */
static int find_stale(sqlite3 *db, const char *path, const char *host, struct stale *st_out,
                      struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT id, pid, host FROM sl_opens ORDER BY id", -1, &st,
	                       NULL) != SQLITE_OK)
		return sl_diag_set(d, SL_EIO, "store '%s': cannot read its open records: %s", path,
		                   sqlite3_errmsg(db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && st_out->n < MAX_STALE) {
		int64_t pid = sqlite3_column_int64(st, 1);
		const char *h = (const char *)sqlite3_column_text(st, 2);
		if (!h || strcmp(h, host) || alive(pid))
			continue;
		if (!st_out->n)
			st_out->pid = pid;
		st_out->id[st_out->n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sl_diag_set(d, rc == SQLITE_BUSY ? SL_EBUSY : SL_EIO,
		                   "store '%s': cannot read its open records: %s", path,
		                   sqlite3_errmsg(db));
	return 0;
}

static int first_problem(void *ud, const struct sl_store_problem *p)
{
	struct stale *st = ud;

	if (!st->problems++)
		snprintf(st->first, sizeof(st->first), "%s", p->message);
	return 0;
}

/* Removes the stale rows and adds this connection's, in one transaction. */
static int write_mark(sqlite3 *db, const char *path, const char *host, const struct stale *stl,
                      int64_t *id, struct sl_diag *d)
{
	sqlite3_stmt *del = NULL, *ins = NULL;
	char now[32];
	size_t i;
	int rc = SQLITE_OK;

	sl_store_now(now, sizeof(now));
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_prepare_v2(db, "DELETE FROM sl_opens WHERE id = ?1", -1, &del, NULL) ||
	    sqlite3_prepare_v2(db, "INSERT INTO sl_opens(pid, host, opened_at) VALUES (?1, ?2, ?3)",
	                       -1, &ins, NULL))
		goto fail;
	for (i = 0; i < stl->n; i++) {
		sqlite3_bind_int64(del, 1, stl->id[i]);
		if (sqlite3_step(del) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(del);
	}
	sqlite3_bind_int64(ins, 1, (int64_t)getpid());
	sqlite3_bind_text(ins, 2, host, -1, SQLITE_STATIC);
	sqlite3_bind_text(ins, 3, now, -1, SQLITE_STATIC);
	if (sqlite3_step(ins) != SQLITE_DONE)
		goto fail;
	*id = sqlite3_last_insert_rowid(db);
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	del = ins = NULL;
fail:
	rc = sqlite3_errcode(db);
	sl_diag_set(d, rc == SQLITE_BUSY ? SL_EBUSY : SL_EIO,
	            "store '%s': cannot record its opening: %s", path, sqlite3_errmsg(db));
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	*id = 0;
	return d ? d->code : SL_EIO;
}

int sl_sqlite_open_mark(struct sqlite3 *db, const char *path, const char *sync_sql, int64_t *id,
                        struct sl_diag *d)
{
	struct sl_store_verify_summary sum;
	struct stale *stl;
	char host[256] = "";
	int rc;

	*id = 0;
	if (gethostname(host, sizeof(host) - 1))
		snprintf(host, sizeof(host), "unknown");
	if (!(stl = calloc(1, sizeof(*stl))))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if ((rc = find_stale(db, path, host, stl, d)))
		goto out;
	if (stl->n &&
	    !(rc = sl_sqlite_verify(db, path, SL_VERIFY_QUICK, first_problem, NULL, stl, &sum,
	                            d)) &&
	    stl->problems) {
		rc = sl_diag_set(d, SL_ECORRUPT,
		                 "store '%s' was not closed cleanly (pid %lld on %s) and fails its"
		                 " quick check: %s%s; run 'sluice verify --store %s'",
		                 path, (long long)stl->pid, host, stl->first,
		                 stl->problems > 1 ? " (and more)" : "", path);
		goto out;
	}
	if (rc)
		goto out;
	sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
	rc = write_mark(db, path, host, stl, id, d);
	sqlite3_exec(db, sync_sql, NULL, NULL, NULL);
out:
	free(stl);
	return rc;
}

void sl_sqlite_open_unmark(struct sqlite3 *db, int64_t id)
{
	sqlite3_stmt *st;

	if (!id || sqlite3_get_autocommit(db) == 0)
		return;
	sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
	if (sqlite3_prepare_v2(db, "DELETE FROM sl_opens WHERE id = ?1", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
}
