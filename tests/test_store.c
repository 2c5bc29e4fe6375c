/* test_store.c - unit tests of the store (sl_store.h, sl_checkpoint.h) on its SQLite
 * backend: the event log, commits, fences, leases, the payload check, migrations.
 * The projection handle's connection (sl_store_sqlite.h) stands in for ctx.db and, in
 * one test, for another runner taking a lease over while a batch runs. */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sl_checkpoint.h"
#include "sl_contract.h"
#include "sl_store.h"
#include "sl_store_sqlite.h"
#include "unit.h"

static char dir[] = "/tmp/sl_test_store_XXXXXX";
static char path[256];

struct collect {
	int n;
	int64_t offsets[64], positions[64];
	char types[64][64];
};

static int collect_fn(void *ud, const struct sl_event *ev)
{
	struct collect *c = ud;

	if (c->n < 64) {
		c->offsets[c->n] = ev->offset;
		c->positions[c->n] = ev->position;
		snprintf(c->types[c->n], sizeof(c->types[0]), "%s", ev->type);
	}
	c->n++;
	return 0;
}

static int count_events(struct sl_store *s, const char *stream)
{
	struct collect c = {0};

	sl_store_read(s, stream, 1, 0, NULL, collect_fn, &c, NULL);
	return c.n;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static struct sl_event_in ev_of(const char *stream, const char *type, const char *payload)
{
	struct sl_event_in ev = {stream, type, payload, payload ? strlen(payload) : 0,
	                         NULL,   0,    NULL,    0};
	return ev;
}

static void test_batch_all_or_nothing(struct sl_store *s)
{
	struct sl_event_in ev[3] = {ev_of("b/1", "t", "{}"), ev_of("b/2", "t", "{}"),
	                            ev_of("b/1", "t", "[1]")};
	struct sl_append_result res[3];
	struct sl_diag d;
	size_t failed = 99;
	int rc;

	sl_diag_init(&d);
	rc = sl_store_append(s, ev, 3, res, 0, &failed, &d);
	is(rc, SL_EINVAL, "a batch with a bad third event fails");
	is(failed, (size_t)2, "the failing index is reported");
	ok(strstr(d.msg, "payload") != NULL, "the message names the field: %s", d.msg);
	is(count_events(s, "b/1") + count_events(s, "b/2") + count_events(s, "b"), 0,
	   "nothing of the batch was written, not even the streams it created");
	ev[2] = ev_of("b/1", "t", "{\"ok\":true}");
	rc = sl_store_append(s, ev, 3, res, 0, &failed, NULL);
	is(rc, 0, "the corrected batch is appended");
	ok(res[0].offset == 2 && res[1].offset == 2 && res[2].offset == 3,
	   "offsets within the batch follow each stream");
	ok(res[0].position < res[1].position && res[1].position < res[2].position,
	   "positions follow the batch order");
}

/* The commit object: appends inside it are savepoints, it commits or rolls back as a
 * whole, and while it is open the store refuses units of work of their own. */
static void test_commit(struct sl_store *s)
{
	struct sl_event_in ok1 = ev_of("sp/1", "t", NULL), bad = ev_of("sp/1", "", NULL);
	struct sl_append_result r;
	struct sl_commit *c = NULL, *c2 = (struct sl_commit *)1;
	struct sl_lease l;
	struct sl_diag d;
	int64_t head;

	is(sl_commit_begin(s, NULL, &c, NULL), 0, "begin a commit");
	is(sl_commit_append(c, &ok1, 1, &r, 0, NULL, NULL), 0, "append inside it");
	is(sl_commit_append(c, &bad, 1, &r, 0, NULL, NULL), SL_EINVAL,
	   "a failing append inside it fails alone");
	sl_diag_init(&d);
	is(sl_store_append(s, &ok1, 1, &r, 0, NULL, &d), SL_EBUSY,
	   "an append of its own is refused meanwhile: %s", d.msg);
	is(sl_commit_begin(s, NULL, &c2, NULL), SL_EBUSY, "so is a second commit");
	ok(c2 == NULL, "which hands out nothing");
	is(sl_store_lease_acquire(s, "p", "me", 1000, &l, NULL), SL_EBUSY, "and a lease");
	is(count_events(s, "sp/1"), 2, "reads see the open commit's writes");
	is(sl_commit_end(c, 1, NULL), 0, "commit");
	is(count_events(s, "sp/1"), 2, "the good append survived the failed one");
	is(sl_commit_begin(s, NULL, &c, NULL), 0, "begin again");
	sl_commit_append(c, &ok1, 1, &r, 0, NULL, NULL);
	is(sl_commit_end(c, 0, NULL), 0, "roll back");
	is(count_events(s, "sp/1"), 2, "a rolled back commit leaves nothing");
	is(sl_store_append(s, &ok1, 1, &r, 0, NULL, NULL), 0,
	   "after the end the store takes appends of their own again");
	is(sl_commit_end(NULL, 1, NULL), 0, "ending no commit is a no-op");
	sl_store_head_position(s, &head, NULL);
	ok(head > 0, "head position is %lld", (long long)head);
}

static int ckpt_offset(struct sl_store *s, const char *proc, const char *stream)
{
	struct sl_ckpt c;
	int found = 0, off;

	if (sl_ckpt_get(s, proc, stream, &c, &found, NULL) || !found)
		return -1;
	off = (int)c.offset;
	sl_ckpt_release(&c);
	return off;
}

/* Rows written through a commit: checkpoint, fault, dead letter, reset. */
static void test_rows(struct sl_store *s)
{
	struct sl_dead_letter dl = {"p", "r/1", "t", "boom", NULL, "2026-01-01T00:00:00.000Z",
	                            3,   5,     4};
	struct sl_commit *c;
	struct sl_ckpt k;
	int found;

	is(sl_commit_begin(s, NULL, &c, NULL), 0, "a commit for rows");
	sl_ckpt_put(c, "p", "r/1", 7, "{\"n\":1}", 7, 7, NULL);
	sl_ckpt_fault(c, "p", "r/2", "broken", NULL);
	sl_ckpt_dead_letter(c, &dl, NULL);
	is(sl_commit_end(c, 1, NULL), 0, "commits checkpoint, fault and dead letter");
	is(ckpt_offset(s, "p", "r/1"), 7, "the checkpoint is stored");
	sl_ckpt_get(s, "p", "r/2", &k, &found, NULL);
	ok(found && k.faulted && k.last_error && !strcmp(k.last_error, "broken"),
	   "the fault is stored with its error");
	sl_ckpt_release(&k);
	sl_commit_begin(s, NULL, &c, NULL);
	sl_ckpt_reset(c, "p", NULL, 0, NULL);
	sl_commit_end(c, 1, NULL);
	is(ckpt_offset(s, "p", "r/1"), 0, "a reset of every instance discards the offset");
	sl_ckpt_get(s, "p", "r/2", &k, &found, NULL);
	ok(found && !k.faulted, "and clears the fault");
	sl_ckpt_release(&k);
}

/* Counts the rows of a projection table over the commit's connection, or -1. */
static int proj_rows(struct sl_proj *pj, const char *table)
{
	char sql[128];
	sqlite3_stmt *st;
	int n = -1;

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	if (sqlite3_prepare_v2(sl_proj_db(pj), sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* A batch in a fenced commit: an append, a checkpoint and a projection row. */
static int fenced_batch(struct sl_store *s, const struct sl_fence *f, const char *steal,
                        struct sl_diag *d)
{
	struct sl_event_in e = ev_of("f/1", "t", NULL);
	struct sl_append_result r;
	struct sl_commit *c;
	struct sl_proj *pj;
	int rc;

	if ((rc = sl_commit_begin(s, f, &c, d)))
		return rc;
	pj = sl_commit_projection(c);
	sl_commit_append(c, &e, 1, &r, 0, NULL, NULL);
	sl_ckpt_put(c, "counter", "f/1", r.offset, "{}", 2, r.offset, NULL);
	sqlite3_exec(sl_proj_db(pj),
	             "CREATE TABLE IF NOT EXISTS proj_f(x); INSERT INTO proj_f VALUES (1)", NULL,
	             NULL, NULL);
	ok(count_events(s, "f/1") > 0 && proj_rows(pj, "proj_f") == 1,
	   "inside the commit the batch's writes are visible");
	if (steal) /* another runner takes over while the batch runs */
		sqlite3_exec(sl_proj_db(pj), steal, NULL, NULL, NULL);
	return sl_commit_end(c, 1, d);
}

/* Nothing of a fenced batch is in the store: no event, checkpoint or projection table. */
static int nothing_of_batch(struct sl_store *s)
{
	struct sl_commit *c;
	int n;

	if (sl_commit_begin(s, NULL, &c, NULL))
		return 0;
	n = proj_rows(sl_commit_projection(c), "proj_f");
	sl_commit_end(c, 0, NULL);
	return count_events(s, "f/1") == 0 && ckpt_offset(s, "counter", "f/1") == -1 && n == -1;
}

static void test_fence(struct sl_store *s)
{
	struct sl_fence a1 = {"counter", "a@host", 1, 0}, b1 = {"counter", "b@host", 1, 0};
	struct sl_fence b2 = {"counter", "b@host", 2, 0};
	struct sl_commit *c = (struct sl_commit *)1;
	struct sl_lease l;
	struct sl_diag d;
	int found;

	sl_store_lease_acquire(s, "counter", "a@host", 60000, &l, NULL);
	ok(!strcmp(l.owner, "a@host") && l.epoch == 1, "a holds the lease of counter at epoch 1");
	sl_diag_init(&d);
	is(fenced_batch(s, &a1, "UPDATE sl_leases SET owner = 'b@host', epoch = 2", &d), SL_EFENCED,
	   "a commit whose lease was taken over while it ran fails");
	ok(strstr(d.msg, "processor 'counter'") && strstr(d.msg, "b@host"),
	   "naming the processor and the owner now: %s", d.msg);
	ok(nothing_of_batch(s), "its append, checkpoint and projection rows were all rolled back");
	sl_store_lease_get(s, "counter", &l, &found, NULL);
	ok(!strcmp(l.owner, "a@host") && l.epoch == 1, "(the test's takeover went with them)");

	/* a stalls: its lease expires and b takes over. */
	sl_store_lease_acquire(s, "counter", "a@host", 1, &l, NULL);
	sleep_ms(20);
	sl_store_lease_acquire(s, "counter", "b@host", 60000, &l, NULL);
	ok(!strcmp(l.owner, "b@host") && l.epoch == 2, "b took over the expired lease (epoch %lld)",
	   (long long)l.epoch);
	sl_diag_init(&d);
	is(sl_commit_begin(s, &a1, &c, &d), SL_EFENCED, "a, which lost its lease, cannot commit");
	ok(c == NULL && strstr(d.msg, "is run by b@host (epoch 2), not by a@host (epoch 1)"),
	   "and is told who runs it: %s", d.msg);
	sl_diag_init(&d);
	is(fenced_batch(s, &b1, NULL, &d), SL_EFENCED, "a stale epoch of the owner is refused too");
	ok(nothing_of_batch(s), "nothing of the fenced batches was written");
	sl_diag_init(&d);
	is(fenced_batch(s, &b2, NULL, &d), 0, "the holder's commit goes through (%s)", d.msg);
	is(count_events(s, "f/1"), 2, "with its append");
	is(ckpt_offset(s, "counter", "f/1"), 2, "and its checkpoint");
}

static void test_leases(struct sl_store *s)
{
	struct sl_lease l;
	struct sl_diag d;
	int found = 1;
	int64_t t0 = sl_store_now_ms();

	is(sl_store_lease_get(s, "idle", &l, &found, NULL), 0, "reading a lease never taken");
	ok(!found && !*l.owner && l.epoch == 0, "finds none");
	sl_store_lease_acquire(s, "p", "one", 60000, &l, NULL);
	ok(!strcmp(l.owner, "one") && l.epoch == 1 && l.expires_at >= t0 + 60000,
	   "a free lease is taken at epoch 1, until now + ttl");
	sl_store_lease_acquire(s, "p", "two", 60000, &l, NULL);
	ok(!strcmp(l.owner, "one") && l.epoch == 1, "a live lease of another is not taken;"
	                                            " its holder is reported");
	sl_store_lease_acquire(s, "p", "one", 30, &l, NULL);
	ok(!strcmp(l.owner, "one") && l.epoch == 1, "renewing keeps the epoch");
	sleep_ms(60);
	sl_store_lease_acquire(s, "p", "one", 30, &l, NULL);
	ok(!strcmp(l.owner, "one") && l.epoch == 1,
	   "renewing an expired lease nobody took keeps the epoch too");
	sleep_ms(60);
	sl_store_lease_acquire(s, "p", "two", 60000, &l, NULL);
	ok(!strcmp(l.owner, "two") && l.epoch == 2, "an expired lease is taken over at epoch + 1");
	is(sl_store_lease_release(s, "p", "one", NULL), 0, "a release by a non-holder");
	sl_store_lease_get(s, "p", &l, &found, NULL);
	ok(!strcmp(l.owner, "two"), "changes nothing");
	sl_store_lease_release(s, "p", "two", NULL);
	sl_store_lease_get(s, "p", &l, &found, NULL);
	ok(found && !*l.owner && l.epoch == 2, "a release frees it at once, keeping the epoch");
	sl_store_lease_acquire(s, "p", "two", 60000, &l, NULL);
	ok(!strcmp(l.owner, "two") && l.epoch == 3, "taking a released lease raises the epoch");
	sl_diag_init(&d);
	is(sl_store_lease_acquire(s, "p", "", 1000, &l, &d), SL_EINVAL, "an empty owner: %s",
	   d.msg);
}

static int all_fn(void *ud, const struct sl_event *ev)
{
	int64_t *last = ud;
	int ok = ev->position > *last;

	*last = ev->position;
	return ok ? 0 : -100;
}

static void test_read_all(struct sl_store *s)
{
	int64_t last = 0;

	is(sl_store_read_all(s, 1, 0, all_fn, &last, NULL), 0,
	   "read_all visits positions in increasing order");
}

static void test_reopen_and_version(void)
{
	struct sl_store *s;
	struct sl_diag d;
	sqlite3 *db;

	sl_diag_init(&d);
	is(sl_store_open(&s, path, NULL, &d), 0, "the store reopens");
	is(count_events(s, "b/1"), 3, "its events are still there");
	sl_store_close(s);
	sqlite3_open(path, &db);
	sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
	sqlite3_close(db);
	is(sl_store_open(&s, path, NULL, &d), SL_EVERSION, "a newer schema is refused");
	ok(strstr(d.msg, "schema version 99") != NULL, "and says so: %s", d.msg);
	ok(s == NULL, "no store is returned");
	sl_diag_init(&d);
	is(sl_store_open(&s, "/nonexistent/dir/x.db", NULL, &d), SL_EIO, "a bad path fails");
	ok(strstr(d.msg, "cannot open store '/nonexistent/dir/x.db'") != NULL, "%s", d.msg);
}

static void test_names(void)
{
	ok(sl_stream_name_valid("a"), "a");
	ok(sl_stream_name_valid("a/b.c/_d-e"), "a/b.c/_d-e");
	ok(sl_stream_name_valid("-a/0"), "-a/0");
	ok(!sl_stream_name_valid(""), "empty");
	ok(!sl_stream_name_valid(".a"), ".a");
	ok(!sl_stream_name_valid("a/.."), "a/..");
	ok(!sl_stream_name_valid("a/"), "a/");
	ok(!sl_stream_name_valid("/a"), "/a");
	ok(!sl_stream_name_valid("a//b"), "a//b");
	ok(!sl_stream_name_valid("a b"), "a b");
	ok(!sl_stream_name_valid("\xc3\xa9"), "non-ASCII");
}

/* The payload check is the caller's: with the core validator a bad stream/paused
 * payload is rejected on every append path, exactly as the CLI reports it. */
static void test_validator(void)
{
	struct sl_store_opts o = {SL_DURABILITY_FULL, 0, sl_core_validate, NULL, NULL, 0, NULL};
	struct sl_event_in bad = ev_of("v/1", "stream/paused", "{\"reason\":5}");
	struct sl_event_in good = ev_of("v/1", "stream/paused", "{\"reason\":\"maintenance\"}");
	struct sl_event_in next = ev_of("v/1", "t", NULL);
	struct sl_core_validator *v = NULL;
	struct sl_append_result r;
	struct sl_commit *c;
	struct sl_store *s;
	struct sl_diag d;
	char p[300];

	snprintf(p, sizeof(p), "%s/validated.db", dir);
	sl_diag_init(&d);
	is(sl_core_validator_new(&v, &d), 0, "a core validator");
	o.check_ud = v;
	is(sl_store_open(&s, p, &o, &d), 0, "opens a store that checks with it");
	is(sl_store_append(s, &bad, 1, &r, 0, NULL, &d), SL_EINVAL,
	   "a stream/paused with a numeric reason is rejected");
	ok(!strncmp(d.msg, "payload: ", 9) && strstr(d.msg, "reason"), "naming the field: %s",
	   d.msg);
	is(count_events(s, "v/1"), 0, "and nothing is written");
	is(sl_store_check_event(&bad, sl_core_validate, v, NULL), SL_EINVAL,
	   "sl_store_check_event with the validator rejects it too");
	is(sl_store_check_event(&bad, NULL, NULL, NULL), 0,
	   "without a check only the envelope counts");
	sl_commit_begin(s, NULL, &c, NULL);
	is(sl_commit_append(c, &bad, 1, &r, 0, NULL, NULL), SL_EINVAL,
	   "appends inside a commit are checked as well");
	sl_commit_end(c, 0, NULL);
	is(sl_store_append(s, &good, 1, &r, 0, NULL, NULL), 0, "a valid stream/paused is appended");
	sl_diag_init(&d);
	is(sl_store_append(s, &next, 1, &r, 0, NULL, &d), SL_EPAUSED, "and pauses: %s", d.msg);
	sl_store_close(s);
	sl_core_validator_free(v);
	sl_core_validator_free(NULL);
}

/* Bytes the C heap holds now (small and mmapped blocks). */
static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* A validator that has built its lua_State and registry frees all of it. (Under
 * AddressSanitizer, whose heap mallinfo2 does not see, its leak check at exit says
 * the same.) */
static void test_validator_frees(void)
{
	struct sl_core_validator *v;
	size_t before = 0, after, grown;
	int i, rc = 0;

	for (i = 0; i <= 20; i++) {
		if (i == 1)
			before = heap_used();
		if (sl_core_validator_new(&v, NULL))
			break;
		rc |= sl_core_validate(v, "stream/paused", "{\"reason\":1}", 12, NULL) != SL_EINVAL;
		sl_core_validator_free(v);
	}
	after = heap_used();
	grown = after > before ? after - before : 0;
	ok(i == 21 && !rc, "20 validators each built their lua_State and checked a payload");
	ok(grown < 16384, "and freed it: the heap grew by %zu bytes", grown);
}

static void test_backends(void)
{
	struct sl_store *s = (struct sl_store *)1;
	struct sl_diag d;

	/* (port 1: nothing listens there; tests/e2e/nats_store.sh runs a real server) */
	sl_diag_init(&d);
	is(sl_store_open(&s, "nats://127.0.0.1:1", NULL, &d), SL_EIO,
	   "a nats:// store is picked by its URL: the JetStream backend tries to connect");
	ok(s == NULL && strstr(d.msg, "cannot open store 'nats://127.0.0.1:1': cannot connect"),
	   "and says why it cannot: %s", d.msg);
	s = (struct sl_store *)1;
	sl_diag_init(&d);
	is(sl_store_open(&s, "nats://127.0.0.1:1,x.db", NULL, &d), SL_EINVAL,
	   "a URL list of the JetStream backend has nats:// URLs only");
	ok(s == NULL && strstr(d.msg, "expected nats://HOST:PORT"), "and says so: %s", d.msg);
}

static int user_version_of(const char *p)
{
	sqlite3_stmt *st;
	sqlite3 *db;
	int v = -1;

	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return v;
}

/* A store of schema version 3 (before leases and rates) keeps opening. */
static void test_migration(void)
{
	struct sl_store_opts ro = {SL_DURABILITY_FULL, 1, NULL, NULL, NULL, 0, NULL};
	struct sl_event_in e = ev_of("m/1", "t", NULL);
	struct sl_append_result r;
	struct sl_store *s;
	struct sl_lease l;
	struct sl_diag d;
	sqlite3 *db;
	char p[300];

	snprintf(p, sizeof(p), "%s/v3.db", dir);
	sl_diag_init(&d);
	if (sl_store_open(&s, p, NULL, &d) || sl_store_append(s, &e, 1, &r, 0, NULL, &d))
		diag("cannot make a store: %s", d.msg);
	sl_store_close(s);
	sqlite3_open(p, &db);
	sqlite3_exec(db,
	             "DROP TABLE sl_leases; DROP TABLE sl_rates; DROP TABLE sl_reload_errors;"
	             " DROP TABLE sl_opens; ALTER TABLE sl_checkpoints DROP COLUMN rate;"
	             " ALTER TABLE sl_checkpoints DROP COLUMN rate_at;"
	             " ALTER TABLE sl_checkpoints DROP COLUMN rate_until;"
	             " PRAGMA user_version = 3",
	             NULL, NULL, NULL);
	sqlite3_close(db);
	is(sl_store_open(&s, p, &ro, &d), 0, "a version 3 store opens read-only, as it is");
	is(count_events(s, "m/1"), 2, "its events are read");
	sl_store_close(s);
	is(user_version_of(p), 3, "(a read-only open changes nothing)");
	is(sl_store_open(&s, p, NULL, &d), 0, "a read-write open migrates it");
	is(sl_store_lease_acquire(s, "p", "me", 1000, &l, &d), 0, "its new lease table works (%s)",
	   d.msg);
	{
		struct sl_rate rt = {"m/1", 2.5, 0};
		struct sl_commit *c;
		double rate = 0;
		if (sl_commit_begin(s, NULL, &c, &d) ||
		    sl_commit_end(c, sl_ckpt_rates_put(c, "p", &rt, 1, sl_store_now_ms(), &d) == 0,
		                  &d))
			diag("cannot write a rate: %s", d.msg);
		is(sl_ckpt_rate_get(s, "p", "m/1", &rate, &d), 0, "its new rates table works");
		ok(rate == 2.5, "a fresh rate reads back (%g)", rate);
		if (sl_commit_begin(s, NULL, &c, &d) ||
		    sl_commit_end(c,
		                  sl_ckpt_rates_put(c, "p", &rt, 1,
		                                    sl_store_now_ms() - SL_RATE_STALE_MS - 1,
		                                    &d) == 0,
		                  &d))
			diag("cannot write a rate: %s", d.msg);
		sl_ckpt_rate_get(s, "p", "m/1", &rate, &d);
		ok(rate == 0, "a stale rate reads as 0: its runner is gone (%g)", rate);
		sl_ckpt_rate_get(s, "p", "m/2", &rate, &d);
		ok(rate == 0, "no rate recorded reads as 0");
	}
	sl_store_close(s);
	is(user_version_of(p), 9, "it is at version 9 now");

	/* Version 6 could hold the same dead letter twice; 7 keeps the first. */
	sqlite3_open(p, &db);
	sqlite3_exec(
		db,
		"DROP INDEX sl_dead_letters_event; ALTER TABLE sl_rates DROP COLUMN until_ms;"
		" ALTER TABLE sl_checkpoints DROP COLUMN rate;"
		" ALTER TABLE sl_checkpoints DROP COLUMN rate_at;"
		" ALTER TABLE sl_checkpoints DROP COLUMN rate_until;"
		" INSERT INTO sl_dead_letters(processor, stream, \"offset\", position, type,"
		"  error, attempts, at) VALUES ('p', 'm/1', 2, 2, 't', 'first', 1, 'x'),"
		"  ('p', 'm/1', 2, 2, 't', 'second', 1, 'x'), ('q', 'm/1', 2, 2, 't', 'q', 1, 'x');"
		" PRAGMA user_version = 6",
		NULL, NULL, NULL);
	sqlite3_close(db);
	is(sl_store_open(&s, p, NULL, &d), 0,
	   "a version 6 store with a duplicate dead letter migrates");
	{
		struct sl_dead_letter dl = {"p", "m/1", "t", "third", NULL, "x", 2, 2, 1};
		struct sl_commit *c;
		int64_t n = -1;
		if (sl_commit_begin(s, NULL, &c, &d) ||
		    sl_commit_end(c, sl_ckpt_dead_letter(c, &dl, &d) == 0, &d))
			diag("cannot write a dead letter: %s", d.msg);
		sqlite3_open(p, &db);
		{
			sqlite3_stmt *st;
			sqlite3_prepare_v2(
				db,
				"SELECT group_concat(processor || ':' || error, ',') FROM"
				" (SELECT * FROM sl_dead_letters ORDER BY id)",
				-1, &st, NULL);
			sqlite3_step(st);
			ok(!strcmp((const char *)sqlite3_column_text(st, 0), "p:first,q:q"),
			   "one dead letter per processor and event, the first kept, a new one "
			   "for the same event ignored: %s",
			   sqlite3_column_text(st, 0));
			sqlite3_finalize(st);
		}
		sqlite3_close(db);
		if (sl_commit_begin(s, NULL, &c, &d) ||
		    sl_commit_end(c, sl_ckpt_dead_letters_clear(c, "p", &n, &d) == 0, &d))
			diag("cannot clear: %s", d.msg);
		is((int)n, 1, "clearing p's dead letters removes one");
		if (sl_commit_begin(s, NULL, &c, &d) ||
		    sl_commit_end(c, sl_ckpt_dead_letters_clear(c, NULL, &n, &d) == 0, &d))
			diag("cannot clear: %s", d.msg);
		is((int)n, 1, "clearing every processor's removes q's");
	}
	sl_store_close(s);
	snprintf(p, sizeof(p), "%s/missing.db", dir);
	sl_diag_init(&d);
	is(sl_store_open(&s, p, &ro, &d), SL_EIO, "a read-only open of a missing file fails");
	ok(strstr(d.msg, "no such file") && access(p, F_OK), "without creating it: %s", d.msg);
}

/* Runs one write in a commit of its own. */
#define IN_COMMIT(s, d, call)                                                                      \
	do {                                                                                       \
		struct sl_commit *c_;                                                              \
		if (sl_commit_begin((s), NULL, &c_, (d)) || sl_commit_end(c_, (call) == 0, (d)))   \
			diag("cannot commit: %s", (d)->msg);                                       \
	} while (0)

static int64_t data_version_of(struct sl_store *s)
{
	int64_t v = -1;

	if (sl_store_data_version(s, &v, NULL))
		diag("cannot read the data version");
	return v;
}

/* What a runner reports for status (reload errors, rates) and what the pump's
 * wake-up watches (data version, watch file). */
static void test_live_rows(void)
{
	struct sl_store_opts ro = {SL_DURABILITY_FULL, 1, NULL, NULL, NULL, 0, NULL};
	struct sl_event_in e = ev_of("v/1", "t", NULL);
	struct sl_rate rt[3] = {{"r/a", 12.5, 0}, {"r/b", 0.1, 0}, {"", 3, 0}};
	struct sl_append_result r;
	struct sl_store *s, *s2, *rs;
	struct sl_lease l;
	struct sl_diag d;
	const char *wal;
	int64_t v, now = sl_store_now_ms();
	double rate;
	char p[300], *msg = (char *)"x";

	snprintf(p, sizeof(p), "%s/live.db", dir);
	sl_diag_init(&d);
	if (sl_store_open(&s, p, NULL, &d) || sl_store_open(&s2, p, NULL, &d))
		diag("cannot open %s: %s", p, d.msg);

	/* Reload errors: one per processor, with or without a processor row. */
	is(sl_ckpt_reload_error_get(s, "ghost", &msg, &d), 0, "reading a reload error never set");
	ok(msg == NULL, "is NULL");
	IN_COMMIT(
		s, &d,
		sl_ckpt_reload_error_put(c_, "ghost", "reload: processors/ghost.lua:3: boom", &d));
	is(sl_ckpt_reload_error_get(s, "ghost", &msg, &d), 0, "a reload error is stored");
	ok(msg && !strcmp(msg, "reload: processors/ghost.lua:3: boom"),
	   "for a processor without a row: %s", msg ? msg : "(null)");
	free(msg);
	IN_COMMIT(s, &d, sl_ckpt_reload_error_put(c_, "ghost", "reload: second", &d));
	sl_ckpt_reload_error_get(s2, "ghost", &msg, &d);
	ok(msg && !strcmp(msg, "reload: second"), "a new one replaces it, seen by another handle");
	free(msg);
	sl_ckpt_reload_error_get(s, "other", &msg, &d);
	ok(msg == NULL, "another processor has none");
	IN_COMMIT(s, &d, sl_ckpt_reload_error_put(c_, "ghost", NULL, &d));
	msg = (char *)"x";
	is(sl_ckpt_reload_error_get(s, "ghost", &msg, &d), 0, "clearing it");
	ok(msg == NULL, "leaves none");
	is(sl_ckpt_reload_error_get(s, "", &msg, &d), SL_EINVAL,
	   "a reload error needs a processor");

	/* Rates: one row per instance, upserted; stale rows fade to 0. */
	IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", rt, 3, now, &d));
	rate = -1;
	is(sl_ckpt_rate_get(s, "rp", "r/a", &rate, &d), 0, "reading a rate");
	ok(rate == 12.5, "of one instance (%g)", rate);
	sl_ckpt_rate_get(s, "rp", "", &rate, &d);
	ok(rate == 3, "and of a mode all instance, stream \"\" (%g)", rate);
	rt[0].rate = 0;
	IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", rt, 1, now, &d));
	sl_ckpt_rate_get(s, "rp", "r/a", &rate, &d);
	ok(rate == 0, "an instance gone idle reads 0 (%g)", rate);
	sl_ckpt_rate_get(s, "rp", "r/b", &rate, &d);
	ok(rate == 0.1, "the others keep theirs (%g)", rate);
	IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", rt + 1, 1, now - 2500, &d));
	sl_ckpt_rate_get(s, "rp", "r/b", &rate, &d);
	ok(rate == 0.1, "a rate recorded 2.5 s ago still counts (%g)", rate);
	IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", rt + 1, 1, now - 3500, &d));
	sl_ckpt_rate_get(s, "rp", "r/b", &rate, &d);
	ok(rate == 0, "one recorded 3.5 s ago reads 0: its runner is gone (%g)", rate);
	IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", NULL, 0, now, &d));
	sl_ckpt_rate_get(s, "rp", "r/b", &rate, &d);
	ok(rate == 0.1, "a rate not written again is current while its runner records (%g)", rate);
	sl_ckpt_rate_get(s, "nobody", "r/a", &rate, &d);
	ok(rate == 0, "an instance without a rate reads 0");
	rt[1].until_ms = now + 5000;
	IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", rt + 1, 1, now, &d));
	sl_ckpt_rate_get(s, "rp", "r/b", &rate, &d);
	ok(rate == 0.1, "a rate that holds for 5 s more reads as recorded (%g)", rate);
	rt[1].until_ms = now - 1;
	IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", rt + 1, 1, now, &d));
	sl_ckpt_rate_get(s, "rp", "r/b", &rate, &d);
	ok(rate == 0, "one whose until_ms passed reads 0, its instance idle, no 0 written (%g)",
	   rate);
	rt[1].until_ms = 0;

	/* A rate recorded with a checkpoint (a batch commit) reads back like one of
	 * sl_ckpt_rates_put; the later of the two records is the rate. */
	{
		struct sl_rate cr = {"r/c", 0.2, now + 5000};
		struct sl_commit *c;
		int kept = 0;
		if (sl_commit_begin(s, NULL, &c, &d) == 0) {
			kept = sl_commit_rate(c, &cr);
			sl_commit_end(c, sl_ckpt_put(c, "rp", "r/c", 2, "{}", 2, 2, &d) == 0, &d);
		}
		ok(kept, "the SQLite backend records a rate with a checkpoint");
		sl_ckpt_rate_get(s, "rp", "r/c", &rate, &d);
		ok(rate == 0.2, "it reads back, with no row of its own (%g)", rate);
		IN_COMMIT(s, &d, sl_ckpt_put(c_, "rp", "r/c", 3, "{}", 2, 3, &d));
		sl_ckpt_rate_get(s, "rp", "r/c", &rate, &d);
		ok(rate == 0.2, "a checkpoint written without a rate keeps it (%g)", rate);
		cr.rate = 0.1;
		IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", &cr, 1, now - 1000, &d));
		sl_ckpt_rate_get(s, "rp", "r/c", &rate, &d);
		ok(rate == 0.2, "an older record of the runner's does not hide it (%g)", rate);
		cr.rate = 0.3;
		if (sl_commit_begin(s, NULL, &c, &d) == 0) {
			sl_commit_rate(c, &cr);
			sl_commit_end(c, sl_ckpt_put_offset(c, "rp", "r/c", 4, 4, &d) == 0, &d);
		}
		sl_ckpt_rate_get(s, "rp", "r/c", &rate, &d);
		ok(rate == 0.3, "a checkpoint without state records one too (%g)", rate);
		cr.until_ms = now - 1;
		if (sl_commit_begin(s, NULL, &c, &d) == 0) {
			sl_commit_rate(c, &cr);
			sl_commit_end(c, sl_ckpt_put(c, "rp", "r/c", 5, "{}", 2, 5, &d) == 0, &d);
		}
		sl_ckpt_rate_get(s, "rp", "r/c", &rate, &d);
		ok(rate == 0, "one whose until passed reads 0 (%g)", rate);
		cr.rate = 0.1;
		cr.until_ms = now + 5000;
		IN_COMMIT(s, &d, sl_ckpt_rates_put(c_, "rp", &cr, 1, now + 1000, &d));
		sl_ckpt_rate_get(s, "rp", "r/c", &rate, &d);
		ok(rate == 0.1, "a later record of the runner's (a rate falling) is the rate (%g)",
		   rate);
	}

	/* The data version: any commit, own or foreign, changes it; nothing else does. */
	v = data_version_of(s);
	is(data_version_of(s), v, "the data version stays without commits");
	sl_store_append(s2, &e, 1, &r, 0, NULL, &d);
	ok(data_version_of(s) != v, "it changes after a commit by another handle");
	v = data_version_of(s);
	sl_store_append(s, &e, 1, &r, 0, NULL, &d);
	ok(data_version_of(s) != v, "and after an append of its own");
	v = data_version_of(s);
	IN_COMMIT(s, &d, sl_ckpt_reload_error_put(c_, "ghost", "x", &d));
	ok(data_version_of(s) != v, "and after a commit of its own");
	v = data_version_of(s);
	sl_store_lease_acquire(s, "vp", "me", 1000, &l, &d);
	ok(data_version_of(s) != v, "and after taking a lease");
	v = data_version_of(s);
	is(data_version_of(s), v, "and then stays again");
	{
		struct sl_commit *c;
		sl_commit_begin(s, NULL, &c, &d);
		sl_ckpt_reload_error_put(c, "ghost", "rolled back", &d);
		sl_commit_end(c, 0, &d);
	}
	is(data_version_of(s), v, "a rolled back commit does not change it");

	/* The watch file. */
	wal = sl_store_watch_file(s);
	ok(wal && strlen(wal) > 4 && !strcmp(wal + strlen(wal) - 4, "-wal"),
	   "the watch file is the WAL: %s", wal ? wal : "(null)");
	ok(wal && access(wal, F_OK) == 0, "and it exists while the store is open");
	if (sl_store_open(&rs, p, &ro, &d))
		diag("cannot open %s read-only: %s", p, d.msg);
	ok(sl_store_watch_file(rs) == NULL, "a read-only store has no watch file");
	sl_store_close(rs);
	sl_store_close(s2);
	sl_store_close(s);
}

/* Closing a store with a commit open rolls it back and frees it. */
struct behind_seen {
	char streams[8][32];
	struct sl_behind rows[8];
	int n;
};

static int behind_fn(void *ud, const struct sl_behind *b)
{
	struct behind_seen *bs = ud;

	if (bs->n < 8) {
		snprintf(bs->streams[bs->n], 32, "%s", b->stream);
		bs->rows[bs->n] = *b;
		bs->rows[bs->n].stream = bs->streams[bs->n];
	}
	bs->n++;
	return 0;
}

static const struct sl_behind *behind_of(const struct behind_seen *bs, const char *stream)
{
	int i;

	for (i = 0; i < bs->n && i < 8; i++)
		if (!strcmp(bs->streams[i], stream))
			return &bs->rows[i];
	return NULL;
}

/* sl_ckpt_behind: one pass over the streams, only those the processor is behind on,
 * with what their rows say. */
static void test_behind(void)
{
	const char *names[] = {"b/new", "b/done", "b/half", "b/fault", "b/other"};
	struct behind_seen bs = {{{0}}, {{0}}, 0};
	const struct sl_behind *b;
	struct sl_store *s;
	struct sl_diag d;
	char p[300];
	int i;

	snprintf(p, sizeof(p), "%s/behind.db", dir);
	sl_diag_init(&d);
	if (sl_store_open(&s, p, NULL, &d))
		diag("cannot open %s: %s", p, d.msg);
	for (i = 0; i < 5; i++) { /* each stream: created@1, then two events: head 3 */
		struct sl_event_in e[2] = {ev_of(names[i], "t", NULL), ev_of(names[i], "t", NULL)};
		struct sl_append_result res[2];
		if (sl_store_append(s, e, 2, res, 0, NULL, &d))
			diag("append: %s", d.msg);
	}
	IN_COMMIT(s, &d, sl_ckpt_put(c_, "p", "b/done", 3, "{}", 2, 3, &d));
	IN_COMMIT(s, &d, sl_ckpt_put(c_, "p", "b/half", 2, "{}", 2, 1, &d));
	IN_COMMIT(s, &d, sl_ckpt_fault(c_, "p", "b/fault", "boom", &d));
	IN_COMMIT(s, &d, sl_ckpt_put(c_, "q", "b/other", 3, "{}", 2, 3, &d));
	is(sl_ckpt_behind(s, "p", behind_fn, &bs, &d), 0, "behind: lists");
	/* The parent stream b (its child-created events) counts too. */
	is(bs.n, 5, "every stream but the caught-up one, parent b included (%d)", bs.n);
	ok(behind_of(&bs, "b") != NULL, "the parent stream b is listed");
	ok(!behind_of(&bs, "b/done"), "b/done (offset = head) is not listed");
	b = behind_of(&bs, "b/new");
	ok(b && !b->has_row && b->offset == 0 && b->head == 3 && !b->faulted,
	   "a stream without a row: no row, offset 0, head 3");
	b = behind_of(&bs, "b/half");
	ok(b && b->has_row && b->offset == 2 && b->effects_mark == 1 && b->head == 3,
	   "a stream half done: its offset and effects mark");
	b = behind_of(&bs, "b/fault");
	ok(b && b->has_row && b->faulted, "a faulted instance says so");
	b = behind_of(&bs, "b/other");
	ok(b && !b->has_row, "another processor's row does not count");
	bs.n = 0;
	is(sl_ckpt_behind(s, "q", behind_fn, &bs, &d), 0, "behind for q");
	ok(bs.n == 5 && !behind_of(&bs, "b/other"), "q is behind on all but its own done stream");
	sl_store_close(s);
}

static void test_close_open_commit(void)
{
	struct sl_event_in e = ev_of("c/1", "t", NULL);
	struct sl_append_result r;
	struct sl_commit *c;
	struct sl_store *s;
	char p[300];

	snprintf(p, sizeof(p), "%s/closed.db", dir);
	if (sl_store_open(&s, p, NULL, NULL) || sl_commit_begin(s, NULL, &c, NULL))
		diag("cannot open %s", p);
	is(sl_commit_append(c, &e, 1, &r, 0, NULL, NULL), 0, "an append in a commit left open");
	sl_store_close(s);
	sl_store_open(&s, p, NULL, NULL);
	is(count_events(s, "c/1"), 0, "is rolled back when the store closes");
	sl_store_close(s);
}

/* Runs sql on the store's file through a connection of its own. */
static void tamper(const char *p, const char *sql)
{
	sqlite3 *db;

	if (sqlite3_open(p, &db) != SQLITE_OK ||
	    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		diag("cannot tamper with %s: %s", p, sqlite3_errmsg(db));
	sqlite3_close(db);
}

struct problems {
	int n;
	char kinds[256];
};

static int add_problem(void *ud, const struct sl_store_problem *p)
{
	struct problems *pr = ud;
	size_t len = strlen(pr->kinds);

	pr->n++;
	snprintf(pr->kinds + len, sizeof(pr->kinds) - len, "%s%s", len ? " " : "", p->problem);
	return 0;
}

/* sl_store_verify, a read across a hole, and the check after an unclean shutdown. */
static void test_verify(void)
{
	struct sl_event_in e = ev_of("v/1", "t/x", NULL);
	struct sl_store_opts ro = {SL_DURABILITY_FULL, 1, NULL, NULL, NULL, 0, NULL};
	struct sl_store_verify_summary sum;
	struct problems pr = {0, ""};
	struct sl_append_result r;
	struct collect c = {0};
	struct sl_store *s;
	struct sl_diag d;
	char p[300], sql[400];
	int i;

	snprintf(p, sizeof(p), "%s/verify.db", dir);
	sl_diag_init(&d);
	if (sl_store_open(&s, p, NULL, &d))
		diag("cannot make a store: %s", d.msg);
	for (i = 0; i < 4; i++)
		sl_store_append(s, &e, 1, &r, 0, NULL, &d);
	is(sl_store_verify(s, 0, add_problem, NULL, &pr, &sum, &d), 0, "a store verifies");
	ok(pr.n == 0 && sum.problems == 0 && sum.events == 7 && sum.streams == 2,
	   "a clean one has no problem (%d; %lld events)", pr.n, (long long)sum.events);
	sl_store_close(s);

	tamper(p, "DELETE FROM sl_events WHERE stream = 'v/1' AND \"offset\" = 3;"
	          " UPDATE sl_streams SET head = 7 WHERE stream = 'v'");
	is(sl_store_open(&s, p, &ro, &d), 0, "a damaged store opens read-only");
	is(sl_store_verify(s, 0, add_problem, NULL, &pr, &sum, &d), 0, "and verifies");
	ok(!strcmp(pr.kinds, "head-mismatch missing-offsets") && sum.problems == 2,
	   "naming both problems: %s", pr.kinds);
	pr.n = 0, pr.kinds[0] = '\0';
	sl_store_verify(s, SL_VERIFY_QUICK, add_problem, NULL, &pr, &sum, &d);
	ok(!strcmp(pr.kinds, "head-mismatch") && sum.events == 0,
	   "the quick check sees the head: %s", pr.kinds);
	sl_diag_init(&d);
	is(sl_store_read(s, "v/1", 1, 0, NULL, collect_fn, &c, &d), SL_ECORRUPT,
	   "a read across the hole fails");
	ok(c.n == 2 && strstr(d.msg, "stream 'v/1' has no event at offset 3"),
	   "after the events before it: %s", d.msg);
	sl_diag_init(&d);
	is(sl_store_read(s, "v/1", 1, 1, "t/none", collect_fn, &c, &d), SL_ECORRUPT,
	   "also with a type filter that matches nothing");
	sl_diag_init(&d);
	is(sl_store_read(s, "v/1", 1, 2, NULL, collect_fn, &c, &d), 0,
	   "a read that stops before the hole works");
	sl_store_close(s);

	/* The record of a process that is gone (a child that exited) says the last
	 * writer did not close the store. */
	{
		char host[256] = "";
		gethostname(host, sizeof(host) - 1);
		snprintf(sql, sizeof(sql),
		         "INSERT INTO sl_opens(pid, host, opened_at) VALUES (999999999, '%s', 'x')",
		         host);
	}
	tamper(p, sql);
	sl_diag_init(&d);
	is(sl_store_open(&s, p, NULL, &d), SL_ECORRUPT,
	   "after an unclean shutdown a bad store is refused");
	ok(strstr(d.msg, "was not closed cleanly (pid 999999999") &&
	           strstr(d.msg, "run 'sluice verify --store"),
	   "naming sluice verify: %s", d.msg);
	is(sl_store_open(&s, p, NULL, &d), SL_ECORRUPT, "and again on the next open");
	tamper(p, "UPDATE sl_streams SET head = 2 WHERE stream = 'v'");
	sl_diag_init(&d);
	is(sl_store_open(&s, p, NULL, &d), 0,
	   "the quick check passes once the head is repaired (it does not look for holes: %s)",
	   d.msg);
	sl_store_close(s);
	{
		sqlite3 *db;
		sqlite3_stmt *st;
		int n = -1;
		sqlite3_open(p, &db);
		if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sl_opens", -1, &st, NULL) ==
		            SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
		sqlite3_close(db);
		is(n, 0, "a clean close leaves no open record, and the stale one is gone");
	}
}

/* One commit of a group: an append to stream and its checkpoint. */
static int group_commit(struct sl_store *s, const struct sl_fence *f, const char *stream,
                        int commit, const char *sql, struct sl_diag *d)
{
	struct sl_event_in e = ev_of(stream, "t", NULL);
	struct sl_append_result r;
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(s, f, &c, d)))
		return rc;
	if (!(rc = sl_commit_append(c, &e, 1, &r, 0, NULL, d)))
		rc = sl_ckpt_put(c, "g", stream, r.offset, "{}", 2, r.offset, d);
	if (sql) /* what a failing write would do to the transaction */
		sqlite3_exec(sl_proj_db(sl_commit_projection(c)), sql, NULL, NULL, NULL);
	end = sl_commit_end(c, commit && !rc, d);
	return rc ? rc : end;
}

/* Commit groups: commits that share one transaction, kept or taken back together. */
static void test_group(void)
{
	struct sl_fence f1 = {"g", "a@host", 1, 0}, f2 = {"g", "a@host", 2, 0};
	struct sl_store *s, *other;
	struct sl_event_in e = ev_of("g/x", "t", NULL);
	struct sl_append_result r;
	struct sl_lease l;
	struct sl_diag d;
	char p[300];

	snprintf(p, sizeof(p), "%s/group.db", dir);
	if (sl_store_open(&s, p, NULL, NULL) || sl_store_open(&other, p, NULL, NULL)) {
		ok(0, "open the group store twice");
		return;
	}
	sl_store_lease_acquire(s, "g", "a@host", 60000, &l, NULL);
	is(sl_store_group_begin(s), 1, "the SQLite store groups commits");
	ok(sl_store_in_group(s) && sl_store_group_begin(s) == 0, "one group at a time");
	is(group_commit(s, &f1, "g/1", 1, NULL, NULL), 0, "a commit of the group");
	is(group_commit(s, &f1, "g/2", 1, NULL, NULL), 0, "a second one, same fence");
	is(count_events(s, "g/1") + count_events(s, "g/2"), 4, "the group's reads see both");
	is(count_events(other, "g/1"), 0, "another connection sees neither before the group ends");
	is(group_commit(s, &f1, "g/3", 0, NULL, NULL), 0, "a third, rolled back");
	is(count_events(s, "g/3"), 0, "takes back only its own writes");
	sl_diag_init(&d);
	is(group_commit(s, &f2, "g/4", 1, NULL, &d), SL_EFENCED,
	   "a commit with a stale fence fails in the group too: %s", d.msg);
	sl_diag_init(&d);
	is(sl_store_append(s, &e, 1, &r, 0, NULL, &d), SL_EBUSY,
	   "an append of its own is refused in a group: %s", d.msg);
	is(sl_store_lease_acquire(s, "g", "a@host", 1000, &l, NULL), SL_EBUSY, "and a lease call");
	is(sl_store_group_end(s, 1, NULL), 0, "the group commits");
	ok(!sl_store_in_group(s), "and is closed");
	ok(count_events(other, "g/1") == 2 && count_events(other, "g/2") == 2 &&
	           count_events(other, "g/3") == 0 && count_events(other, "g/4") == 0,
	   "the other connection sees the kept commits, and only those");
	is(ckpt_offset(other, "g", "g/2"), 2, "with their checkpoints");

	sl_store_group_begin(s);
	group_commit(s, &f1, "g/5", 1, NULL, NULL);
	is(sl_store_group_end(s, 0, NULL), 0, "a group ended with commit = 0");
	is(count_events(s, "g/5") + ckpt_offset(s, "g", "g/5"), -1,
	   "takes back every commit of it");

	sl_store_group_begin(s);
	group_commit(s, &f1, "g/6", 1, NULL, NULL);
	sl_diag_init(&d);
	is(group_commit(s, &f1, "g/7", 1, "ROLLBACK", &d), SL_EIO,
	   "a commit whose error rolled back the group's transaction fails: %s", d.msg);
	ok(strstr(d.msg, "none of its commits was kept") != NULL, "saying that nothing was kept");
	sl_diag_init(&d);
	ok(group_commit(s, &f1, "g/8", 1, NULL, &d) != 0, "so do the group's later commits");
	sl_diag_init(&d);
	ok(sl_store_group_end(s, 1, &d) != 0 && strstr(d.msg, "commit group"), "and the group: %s",
	   d.msg);
	ok(count_events(other, "g/6") + count_events(other, "g/7") + count_events(other, "g/8") ==
	           0,
	   "nothing of that group is in the store");
	is(group_commit(s, &f1, "g/9", 1, NULL, NULL), 0, "after it, commits are their own again");
	is(count_events(other, "g/9"), 2, "and durable at once");
	sl_store_close(other);
	sl_store_close(s);
}

/* Does /proc/locks show pid waiting for a flock? (A blocked waiter's line starts with
 * "N: -> FLOCK".) */
static int waits_for_flock(pid_t pid)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/locks", "r");
	int found = 0;

	if (!f)
		return 0;
	snprintf(want, sizeof(want), " %ld ", (long)pid);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "-> FLOCK") && strstr(line, want);
	fclose(f);
	return found;
}

/* The turnstile: a writer waits for the flock of "<store>-faults" before it asks for
 * SQLite's write lock, so a runner that commits back to back lets it in. Here the
 * test holds the turnstile: a child's append waits for it, writing nothing, and goes
 * on once it is free. */
static void test_turnstile(void)
{
	struct sl_event_in e = ev_of("t/1", "t", NULL);
	struct sl_append_result r;
	struct sl_store *s;
	struct sl_diag d;
	char p[300], f[310];
	int fd, status = -1, i;
	pid_t pid;

	snprintf(p, sizeof(p), "%s/turn.db", dir);
	snprintf(f, sizeof(f), "%s-faults", p);
	sl_diag_init(&d);
	if (sl_store_open(&s, p, NULL, &d))
		diag("cannot open %s: %s", p, d.msg);
	fd = open(f, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	ok(fd >= 0 && flock(fd, LOCK_EX) == 0, "the test holds the turnstile of a store");
	fflush(NULL);
	if ((pid = fork()) == 0) {
		struct sl_store *cs;
		close(fd);
		_exit(sl_store_open(&cs, p, NULL, NULL) ||
		                      sl_store_append(cs, &e, 1, &r, 0, NULL, NULL)
		              ? 1
		              : (sl_store_close(cs), 0));
	}
	for (i = 0; i < 10000 && pid > 0 && !waits_for_flock(pid); i++)
		nanosleep(&(struct timespec){0, 1000000}, NULL); /* polls a condition, <= 10 s */
	ok(pid > 0 && waits_for_flock(pid), "a writer of another process waits for it");
	is(count_events(s, "t/1"), 0, "having written nothing");
	flock(fd, LOCK_UN);
	while (pid > 0 && waitpid(pid, &status, 0) < 0)
		;
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "once it is free, the append goes on");
	is(count_events(s, "t/1"), 2, "and is there (created and the event)");
	close(fd);
	sl_store_close(s);
}

int main(void)
{
	struct sl_store *s;

	plan(201);
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/store.db", dir);
	test_names();
	is(sl_store_open(&s, path, NULL, NULL), 0, "open a new store");
	test_batch_all_or_nothing(s);
	test_commit(s);
	test_rows(s);
	test_leases(s);
	test_fence(s);
	test_read_all(s);
	sl_store_close(s);
	test_reopen_and_version();
	test_validator();
	test_validator_frees();
	test_backends();
	test_migration();
	test_close_open_commit();
	test_live_rows();
	test_behind();
	test_verify();
	test_group();
	test_turnstile();
	sl_store_close(NULL);
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			diag("could not remove %s", dir);
	}
	return check_plan();
}
