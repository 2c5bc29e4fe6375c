/* test_store_nats.c - unit tests of the store on its JetStream backend (sl_store_nats.c):
 * what the CLI does not reach (store-wide reads, the head, the data version, reads from
 * an offset, leases) and the rows in key-value buckets: commits, their fence and
 * compare-and-set, emitted events under retries, faults, resets, rates, dead letters. Needs a
 * JetStream server: its URL is the first argument (tests/e2e/nats_store.sh starts one and runs
 * this); without one the test is skipped, saying so. The server must be fresh. libnats
 * itself stands in for damage done to the store behind sluice's back. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "sl_checkpoint.h"
#include "sl_store.h"
#include "unit.h"

static const char *url;

struct collect {
	int n;
	int64_t offsets[128], positions[128];
	char streams[128][32];
};

static int collect_fn(void *ud, const struct sl_event *ev)
{
	struct collect *c = ud;

	if (c->n < 128) {
		c->offsets[c->n] = ev->offset;
		c->positions[c->n] = ev->position;
		snprintf(c->streams[c->n], sizeof(c->streams[0]), "%s", ev->stream);
	}
	c->n++;
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int append1(struct sl_store *s, const char *stream, struct sl_append_result *r)
{
	struct sl_event_in ev = {stream, "t", NULL, 0, NULL, 0, NULL, 0};

	return sl_store_append(s, &ev, 1, r, 0, NULL, NULL);
}

static void test_log(struct sl_store *s, struct sl_store *other)
{
	struct sl_append_result r;
	struct collect c = {0};
	int64_t head = -1, v1 = 0, v2 = 0, v3 = 0;
	int i, contiguous = 1, rc = 0;

	is(sl_store_head_position(s, &head, NULL), 0, "the head of a fresh store");
	ok(head == 0, "is 0 (%lld)", (long long)head);
	sl_store_data_version(s, &v1, NULL);
	/* x, x/1, its announcement on x, y.z, then the events. Interleaved: the stream's sequences
	 * are not consecutive, as a read from an offset must find them. */
	for (i = 0; i < 50; i++)
		rc |= append1(s, "x/1", &r) | append1(s, "y.z", &r);
	ok(!rc, "100 appends to two streams");
	sl_store_head_position(s, &head, NULL);
	ok(head == r.position && head == 104, "the head is the last sequence (%lld)",
	   (long long)head);
	sl_store_data_version(s, &v2, NULL);
	ok(v2 != v1, "the data version moved with this connection's appends");
	append1(other, "y.z", &r);
	sl_store_data_version(s, &v3, NULL);
	ok(v3 != v2, "and with another connection's");
	ok(sl_store_watch_file(s) == NULL, "there is no file to watch");

	is(sl_store_read_all(s, 1, 0, collect_fn, &c, NULL), 0, "read_all");
	for (i = 0; i < c.n && i < 128; i++)
		contiguous &= c.positions[i] == i + 1;
	ok(c.n == 105 && contiguous, "reads every event in position order, 1..105 (%d)", c.n);
	memset(&c, 0, sizeof(c));
	sl_store_read_all(s, 100, 3, collect_fn, &c, NULL);
	ok(c.n == 3 && c.positions[0] == 100 && c.positions[2] == 102,
	   "read_all from a position, with a limit");
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "x/1", 37, 5, NULL, collect_fn, &c, NULL);
	ok(c.n == 5 && c.offsets[0] == 37 && c.offsets[4] == 41 && !strcmp(c.streams[0], "x/1"),
	   "a read from offset 37 starts there (%d events, first %lld)", c.n,
	   (long long)c.offsets[0]);
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "y.z", 51, 0, NULL, collect_fn, &c, NULL);
	ok(c.n == 2 && c.offsets[0] == 51 && c.offsets[1] == 52 && !strcmp(c.streams[1], "y.z"),
	   "a read from near the head (%d events)", c.n);
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "y.z", 53, 0, NULL, collect_fn, &c, NULL);
	ok(c.n == 0, "a read past the head finds nothing");
}

static void test_leases(struct sl_store *s, struct sl_store *other)
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
	sl_store_lease_acquire(other, "p", "two", 60000, &l, NULL);
	ok(!strcmp(l.owner, "one") && l.epoch == 1, "a live lease of another is not taken;"
	                                            " its holder is reported");
	sl_store_lease_acquire(s, "p", "one", 30, &l, NULL);
	ok(!strcmp(l.owner, "one") && l.epoch == 1, "renewing keeps the epoch");
	sleep_ms(60);
	sl_store_lease_acquire(s, "p", "one", 30, &l, NULL);
	ok(!strcmp(l.owner, "one") && l.epoch == 1,
	   "renewing an expired lease nobody took keeps the epoch too");
	sleep_ms(60);
	sl_store_lease_acquire(other, "p", "two", 60000, &l, NULL);
	ok(!strcmp(l.owner, "two") && l.epoch == 2, "an expired lease is taken over at epoch + 1");
	is(sl_store_lease_release(s, "p", "one", NULL), 0, "a release by a non-holder");
	sl_store_lease_get(s, "p", &l, &found, NULL);
	ok(!strcmp(l.owner, "two"), "changes nothing");
	sl_store_lease_release(other, "p", "two", NULL);
	sl_store_lease_get(s, "p", &l, &found, NULL);
	ok(found && !*l.owner && l.epoch == 2, "a release frees it at once, keeping the epoch");
	sl_store_lease_acquire(s, "p", "two", 60000, &l, NULL);
	ok(!strcmp(l.owner, "two") && l.epoch == 3, "taking a released lease raises the epoch");
	sl_store_lease_acquire(s, "a.b/c d", "x", 60000, &l, NULL);
	sl_store_lease_get(s, "a.b/c d", &l, &found, NULL);
	ok(found && !strcmp(l.owner, "x"), "a processor name with any bytes has its own lease");
	sl_store_lease_get(s, "a.b/c", &l, &found, NULL);
	ok(!found, "and no other name maps to it");
	sl_diag_init(&d);
	is(sl_store_lease_acquire(s, "p", "", 1000, &l, &d), SL_EINVAL, "an empty owner: %s",
	   d.msg);
}

/* One emitted event: keyed, as every event a processor emits is. */
static struct sl_event_in emit(const char *stream, const char *key)
{
	struct sl_event_in ev = {stream, "t/emitted", "{\"n\":1}", 7, NULL, 0, key, 0};

	return ev;
}

/* A batch's commit: its emitted event, then its checkpoint. */
static int batch(struct sl_store *s, const struct sl_fence *f, const char *out, const char *key,
                 int64_t offset, const char *state, struct sl_diag *d)
{
	struct sl_event_in ev = emit(out, key);
	struct sl_append_result r;
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(s, f, &c, d)))
		return rc;
	if (!(rc = sl_commit_append(c, &ev, 1, &r, 0, NULL, d)))
		rc = sl_ckpt_put(c, "p", "in/1", offset, state, strlen(state), offset, d);
	end = sl_commit_end(c, rc == 0, rc ? NULL : d);
	return rc ? rc : end;
}

static int count_fn(void *ud, const struct sl_event *ev)
{
	(void)ev;
	(*(int *)ud)++;
	return 0;
}

/* The events of stream of type t/emitted. */
static int emitted(struct sl_store *s, const char *stream)
{
	int n = 0;

	sl_store_read(s, stream, 1, 0, "t/emitted", count_fn, &n, NULL);
	return n;
}

static int64_t offset_of(struct sl_store *s, const char *proc, const char *stream, char *state,
                         size_t n)
{
	struct sl_ckpt k;
	int found = 0;
	int64_t off;

	if (sl_ckpt_get(s, proc, stream, &k, &found, NULL) || !found)
		return -1;
	off = k.offset;
	if (state)
		snprintf(state, n, "%.*s", (int)k.state_len, k.state ? k.state : "null");
	sl_ckpt_release(&k);
	return off;
}

static void test_commits(struct sl_store *s, struct sl_store *other)
{
	struct sl_fence f = {"p", "r1", 0, 0}, stale;
	struct collect cl;
	struct sl_append_result r, r2;
	struct sl_event_in ev, ev2;
	struct sl_commit *c;
	struct sl_lease l;
	struct sl_diag d;
	int64_t version = 0, anchor = 0, v1 = 0, v2 = 0;
	char state[64];
	int exists = 1;

	is(sl_ckpt_proc_get(s, "p", &exists, &version, &anchor, NULL), 0,
	   "reading a processor row");
	ok(!exists, "of a processor that never ran finds none");
	ok(offset_of(s, "p", "in/1", NULL, 0) == -1, "nor a checkpoint");
	sl_commit_begin(s, NULL, &c, NULL);
	sl_ckpt_proc_put(c, "p", 1, 7, NULL);
	is(sl_commit_end(c, 1, NULL), 0, "a commit of the processor row");
	sl_commit_begin(s, NULL, &c, NULL);
	sl_ckpt_proc_put(c, "p", 2, 99, NULL);
	sl_commit_end(c, 1, NULL);
	sl_ckpt_proc_get(other, "p", &exists, &version, &anchor, NULL);
	ok(exists && version == 2 && anchor == 7, "the version changes, the anchor never (%lld)",
	   (long long)anchor);

	sl_store_lease_release(s, "p", "two", NULL); /* (test_leases left it taken) */
	sl_store_lease_acquire(s, "p", "r1", 60000, &l, NULL);
	f.epoch = l.epoch;
	sl_store_data_version(s, &v1, NULL);
	sl_diag_init(&d);
	is(batch(s, &f, "out/1", "p@in/1:2#1", 2, "{\"n\":1}", &d), 0, "a fenced batch commits: %s",
	   d.msg);
	ok(offset_of(other, "p", "in/1", state, sizeof(state)) == 2 && !strcmp(state, "{\"n\":1}"),
	   "its checkpoint and state are stored (%s)", state);
	ok(emitted(other, "out/1") == 1, "and its emitted event");
	sl_store_data_version(s, &v2, NULL);
	ok(v1 != v2, "the data version moved with the commit");

	sl_commit_begin(s, NULL, &c, NULL);
	sl_ckpt_put(c, "p", "in/1", 3, "{}", 2, 3, NULL);
	ok(offset_of(s, "p", "in/1", NULL, 0) == 3, "reads see the writes of the open commit");
	sl_commit_end(c, 0, NULL);
	ok(offset_of(s, "p", "in/1", NULL, 0) == 2, "a commit rolled back wrote nothing");

	stale = f;
	stale.epoch = f.epoch - 1;
	sl_diag_init(&d);
	is(batch(s, &stale, "out/1", "p@in/1:3#1", 3, "{}", &d), SL_EFENCED,
	   "a commit under an old epoch is fenced off: %s", d.msg);
	/* The lease changes hands while a commit is open. */
	sl_commit_begin(s, &f, &c, NULL);
	ev = emit("out/1", "p@in/1:3#1");
	sl_commit_append(c, &ev, 1, &r, 0, NULL, NULL);
	sl_ckpt_put(c, "p", "in/1", 3, "{}", 2, 3, NULL);
	sl_store_lease_release(other, "p", "r1", NULL);
	sl_store_lease_acquire(other, "p", "r2", 60000, &l, NULL);
	sl_diag_init(&d);
	is(sl_commit_end(c, 1, &d), SL_EFENCED, "a lease lost during the commit fences it: %s",
	   d.msg);
	ok(emitted(other, "out/1") == 1 && offset_of(other, "p", "in/1", NULL, 0) == 2,
	   "and nothing of it is visible, neither the event nor the checkpoint");

	/* Two writers commit from the same revision of the row: one wins. */
	offset_of(s, "p", "in/1", NULL, 0);
	offset_of(other, "p", "in/1", NULL, 0);
	is(batch(other, NULL, "out/2", "p@in/1:3#1", 3, "{\"by\":\"other\"}", NULL), 0,
	   "the first of two commits from one revision commits");
	sl_diag_init(&d);
	is(batch(s, NULL, "out/2", "p@in/1:3#2", 3, "{\"by\":\"s\"}", &d), SL_ECONFLICT,
	   "the second is refused: %s", d.msg);
	ok(strstr(d.msg, "was written by another writer since it was read") != NULL, "saying why");
	ok(emitted(s, "out/2") == 1 && offset_of(s, "p", "in/1", state, sizeof(state)) == 3 &&
	           !strcmp(state, "{\"by\":\"other\"}"),
	   "nothing of it is visible: one event, the winner's state (%s)", state);
	/* The same race, with the loser's commit open while the winner commits. */
	offset_of(s, "p", "in/1", NULL, 0);
	offset_of(other, "p", "in/1", NULL, 0);
	sl_commit_begin(s, NULL, &c, NULL);
	ev = emit("out/3", "p@in/1:4#1");
	sl_commit_append(c, &ev, 1, &r, 0, NULL, NULL);
	is(sl_ckpt_put(c, "p", "in/1", 4, "{}", 2, 4, NULL), 0, "a commit is open on a revision");
	is(batch(other, NULL, "out/1", "p@in/1:4#1", 4, "{\"by\":\"other\"}", NULL), 0,
	   "another writer commits from the same one");
	sl_diag_init(&d);
	is(sl_commit_end(c, 1, &d), SL_ECONFLICT, "the open commit is refused at its end: %s",
	   d.msg);
	ok(emitted(other, "out/3") == 0 && offset_of(other, "p", "in/1", NULL, 0) == 4,
	   "before it published anything");

	/* A batch whose first attempt published its event and died before its checkpoint:
	 * the retry emits the same key, and JetStream answers with the stored event. */
	ev = emit("out/4", "p@in/1:5#1");
	sl_store_append(other, &ev, 1, &r, 0, NULL, NULL);
	offset_of(s, "p", "in/1", NULL, 0);
	sl_diag_init(&d);
	is(batch(s, NULL, "out/4", "p@in/1:5#1", 5, "{}", &d), 0, "the retried batch commits: %s",
	   d.msg);
	ok(emitted(other, "out/4") == 1 && offset_of(other, "p", "in/1", NULL, 0) == 5,
	   "its emitted event is stored once, its checkpoint moved");
	is(batch(s, NULL, "out/4", "p@in/1:5#1", 6, "{}", NULL), 0,
	   "a batch redelivered after its commit emits the same key");
	ok(emitted(other, "out/4") == 1, "which is not stored again");
	/* Another writer appends to the stream a commit emits to, after the commit planned its
	 * event: the event goes after theirs, as on SQLite. */
	offset_of(s, "p", "in/1", NULL, 0);
	sl_commit_begin(s, NULL, &c, NULL);
	ev = emit("out/4", "p@in/1:7#1");
	sl_commit_append(c, &ev, 1, &r, 0, NULL, NULL);
	sl_ckpt_put(c, "p", "in/1", 7, "{}", 2, 7, NULL);
	append1(other, "out/4", &r);
	sl_diag_init(&d);
	is(sl_commit_end(c, 1, &d), 0,
	   "a commit whose stream another writer appended to commits: %s", d.msg);
	memset(&cl, 0, sizeof(cl));
	sl_store_read(other, "out/4", 1, 0, NULL, collect_fn, &cl, NULL);
	ok(cl.n == 4 && cl.offsets[3] == 4 && emitted(other, "out/4") == 2,
	   "its event after the other writer's, offsets contiguous (%d)", cl.n);
	/* What an append in a commit reports, once the commit ended: the stored event for a
	 * key JetStream knew, the new event's position otherwise. */
	ev = emit("out/4", "p@in/1:5#1");
	ev2 = emit("out/5", "fresh");
	sl_commit_begin(s, NULL, &c, NULL);
	sl_commit_append(c, &ev, 1, &r, 0, NULL, NULL);
	sl_commit_append(c, &ev2, 1, &r2, 0, NULL, NULL);
	is(sl_commit_end(c, 1, NULL), 0, "a commit of two appends");
	ok(r.duplicate && r.offset == 2 && r.position > 0,
	   "a key stored before is reported as the stored event (%lld, %lld)", (long long)r.offset,
	   (long long)r.position);
	ok(!r2.duplicate && r2.offset == 2 && r2.position > r.position,
	   "a new event with its offset and position (%lld, %lld)", (long long)r2.offset,
	   (long long)r2.position);
	is(sl_store_group_begin(s), 0, "there are no commit groups (each commit is its own)");
}

struct rows {
	int n;
	char streams[8][16];
	int64_t offsets[8];
};

static int rows_fn(void *ud, const char *stream, const struct sl_ckpt *k)
{
	struct rows *rs = ud;

	if (rs->n < 8) {
		snprintf(rs->streams[rs->n], sizeof(rs->streams[0]), "%s", stream);
		rs->offsets[rs->n] = k->offset;
	}
	rs->n++;
	return 0;
}

static int behind_fn(void *ud, const struct sl_behind *b)
{
	struct rows *rs = ud;

	if (rs->n < 8) {
		snprintf(rs->streams[rs->n], sizeof(rs->streams[0]), "%s", b->stream);
		rs->offsets[rs->n] = b->has_row ? b->offset : -b->head;
	}
	rs->n++;
	return 0;
}

static int in_rows(const struct rows *rs, const char *stream, int64_t offset)
{
	int i;

	for (i = 0; i < rs->n && i < 8; i++)
		if (!strcmp(rs->streams[i], stream))
			return rs->offsets[i] == offset;
	return 0;
}

/* Runs one op in a commit of its own. */
#define IN_COMMIT(s, call)                                                                         \
	do {                                                                                       \
		struct sl_commit *c_;                                                              \
		int rc_ = sl_commit_begin((s), NULL, &c_, NULL);                                   \
		if (!rc_)                                                                          \
			rc_ = (call);                                                              \
		sl_commit_end(c_, rc_ == 0, NULL);                                                 \
	} while (0)

static void test_faults(struct sl_store *s, struct sl_store *other)
{
	struct sl_ckpt k;
	struct rows rs = {0};
	struct sl_rate rate = {"in/1", 2.5, 0};
	double got = 0;
	char *msg = NULL;
	int found = 0, cleared = -1;

	IN_COMMIT(s, sl_ckpt_fault(c_, "p", "in/2", "boom", NULL));
	sl_ckpt_get(other, "p", "in/2", &k, &found, NULL);
	ok(found && k.faulted && k.offset == 0 && k.last_error && !strcmp(k.last_error, "boom"),
	   "a fault makes its row: faulted, with its error");
	sl_ckpt_release(&k);
	IN_COMMIT(s, sl_ckpt_add_background_failure(c_, "p", "in/2", NULL));
	IN_COMMIT(s, sl_ckpt_add_background_failure(c_, "p", "in/2", NULL));
	IN_COMMIT(s, sl_ckpt_put_offset(c_, "p", "in/2", 1, 1, NULL));
	sl_ckpt_get(other, "p", "in/2", &k, &found, NULL);
	ok(!k.faulted && k.offset == 1 && k.background_failures == 2 && !k.last_error,
	   "background failures are counted; a checkpoint clears the fault");
	sl_ckpt_release(&k);
	IN_COMMIT(s, sl_ckpt_proc_hashes(c_, "p", "s1", "c1", &cleared, NULL));
	IN_COMMIT(s, sl_ckpt_fault(c_, "p", "in/2", "again", NULL));
	IN_COMMIT(s, sl_ckpt_proc_hashes(c_, "p", "s1", "c1", &cleared, NULL));
	ok(cleared == 0, "the same hashes clear nothing");
	IN_COMMIT(s, sl_ckpt_proc_hashes(c_, "p", "s2", "c1", &cleared, NULL));
	sl_ckpt_get(other, "p", "in/2", &k, &found, NULL);
	ok(cleared == 1 && !k.faulted, "a changed script clears the faults (%d)", cleared);
	sl_ckpt_release(&k);
	IN_COMMIT(s, sl_ckpt_fault(c_, "p", "in/2", "once more", NULL));
	IN_COMMIT(s, sl_ckpt_clear_fault(c_, "p", NULL, NULL));
	sl_ckpt_get(other, "p", "in/2", &k, &found, NULL);
	ok(!k.faulted, "clearing every fault of the processor");
	sl_ckpt_release(&k);

	IN_COMMIT(s, sl_ckpt_put(c_, "p", "", 9, "[1]", 3, 0, NULL));
	IN_COMMIT(s, sl_ckpt_put(c_, "p", "x.y/z", 1, "{}", 2, 0, NULL));
	IN_COMMIT(s, sl_ckpt_put(c_, "p", "x/y.z", 2, "{}", 2, 0, NULL));
	IN_COMMIT(s, sl_ckpt_put(c_, "p.q", "x", 2, "{}", 2, 0, NULL));
	sl_ckpt_each(other, "p", rows_fn, &rs, NULL);
	ok(rs.n == 5 && !strcmp(rs.streams[0], "") && !strcmp(rs.streams[1], "in/1") &&
	           in_rows(&rs, "", 9) && in_rows(&rs, "x.y/z", 1) && in_rows(&rs, "x/y.z", 2) &&
	           !strcmp(rs.streams[4], "x/y.z"),
	   "every row of the processor, in stream order, each name its own (%d)", rs.n);
	ok(offset_of(other, "p.q", "x", NULL, 0) == 2 &&
	           offset_of(other, "p.q", "in/1", NULL, 0) == -1 &&
	           offset_of(other, "p", "in/1", NULL, 0) == 7,
	   "a processor name with a dot has rows of its own");

	IN_COMMIT(s, sl_ckpt_put(c_, "p", "x", 2, "{}", 2, 0, NULL));
	IN_COMMIT(s, sl_ckpt_put(c_, "p", "y.z", 10, "{}", 2, 0, NULL));
	memset(&rs, 0, sizeof(rs));
	sl_ckpt_behind(other, "p", behind_fn, &rs, NULL);
	ok(in_rows(&rs, "x/1", -51) && in_rows(&rs, "y.z", 10) && in_rows(&rs, "out/4", -4) &&
	           !in_rows(&rs, "x", 2),
	   "behind: the streams without a row (with their head), those behind their row, not"
	   " the caught-up ones");

	IN_COMMIT(s, sl_ckpt_reset(c_, "p", "in/2", 0, NULL));
	sl_ckpt_get(other, "p", "in/2", &k, &found, NULL);
	ok(found && k.offset == 0 && !k.state && k.effects_mark == 1,
	   "a reset drops offset and state, keeps the effects mark");
	sl_ckpt_release(&k);
	IN_COMMIT(s, sl_ckpt_reset(c_, "p", "in/2", 1, NULL));
	sl_ckpt_get(other, "p", "in/2", &k, &found, NULL);
	ok(!found, "a reset with effects drops the row");
	IN_COMMIT(s, sl_ckpt_put_offset(c_, "p", "in/2", 4, 4, NULL));
	ok(offset_of(other, "p", "in/2", NULL, 0) == 4, "which can be written again");
	IN_COMMIT(s, sl_ckpt_reset(c_, "p", NULL, 0, NULL));
	memset(&rs, 0, sizeof(rs));
	sl_ckpt_each(other, "p", rows_fn, &rs, NULL);
	ok(rs.n == 7 && in_rows(&rs, "in/1", 0) && in_rows(&rs, "x.y/z", 0) && in_rows(&rs, "", 0),
	   "a reset of the processor resets every row (%d)", rs.n);

	IN_COMMIT(s, sl_ckpt_rates_put(c_, "p", &rate, 1, sl_store_now_ms(), NULL));
	sl_ckpt_rate_get(other, "p", "in/1", &got, NULL);
	ok(got == 2.5, "a rate recorded is read back (%g)", got);
	rate.until_ms = sl_store_now_ms() - 1;
	IN_COMMIT(s, sl_ckpt_rates_put(c_, "p", &rate, 1, sl_store_now_ms(), NULL));
	sl_ckpt_rate_get(other, "p", "in/1", &got, NULL);
	ok(got == 0, "one whose until passed reads 0: its instance went idle (%g)", got);
	rate.until_ms = 0;
	IN_COMMIT(s, sl_ckpt_reload_error_put(c_, "p", "line 3: bad", NULL));
	sl_ckpt_reload_error_get(other, "p", &msg, NULL);
	ok(msg && !strcmp(msg, "line 3: bad"), "a reload error is recorded");
	free(msg);
	IN_COMMIT(s, sl_ckpt_reload_error_put(c_, "p", NULL, NULL));
	sl_ckpt_reload_error_get(other, "p", &msg, NULL);
	ok(!msg, "and cleared");
}

struct deads {
	int n;
	char first[64];
};

static int dead_fn(void *ud, const struct sl_dead_letter *dl)
{
	struct deads *ds = ud;

	if (!ds->n++)
		snprintf(ds->first, sizeof(ds->first), "%s %s %lld %s %lld", dl->processor,
		         dl->stream, (long long)dl->offset, dl->type, (long long)dl->attempts);
	return 0;
}

static void test_dead_letters(struct sl_store *s, struct sl_store *other)
{
	struct sl_dead_letter a = {"p", "in/1", "t/x", "bad", NULL, "2026-12-04T00:00:00.000Z",
	                           3,   9,      5};
	struct sl_dead_letter b = {"q", "in/9", "t/y", "worse", "tb", "2026-12-04T00:00:01.000Z",
	                           1,   2,      1};
	struct deads ds = {0};
	int64_t n = -1;

	IN_COMMIT(s, sl_ckpt_dead_letter(c_, &a, NULL));
	IN_COMMIT(s, sl_ckpt_dead_letter(c_, &b, NULL));
	IN_COMMIT(s, sl_ckpt_dead_letter(c_, &a, NULL));
	sl_ckpt_dead_letters(other, dead_fn, &ds, NULL);
	ok(ds.n == 2 && !strcmp(ds.first, "p in/1 3 t/x 5"),
	   "dead letters are listed once each, oldest first (%d: %s)", ds.n, ds.first);
	IN_COMMIT(s, sl_ckpt_dead_letters_clear(c_, "p", &n, NULL));
	memset(&ds, 0, sizeof(ds));
	sl_ckpt_dead_letters(other, dead_fn, &ds, NULL);
	ok(n == 1 && ds.n == 1 && !strncmp(ds.first, "q ", 2),
	   "clearing a processor's forgets only its own");
}

struct problems {
	int n, missing, integrity, ahead;
	char first[256];
};

static int problem_fn(void *ud, const struct sl_store_problem *p)
{
	struct problems *ps = ud;

	if (!ps->n++)
		snprintf(ps->first, sizeof(ps->first), "%s", p->message);
	ps->missing += !strcmp(p->problem, "missing-offsets") && !strcmp(p->stream, "x/1") &&
	               p->offset == 10 && p->to == 10;
	ps->integrity += !strcmp(p->problem, "integrity");
	ps->ahead += !strcmp(p->problem, "checkpoint-ahead") && p->stream &&
	             !strcmp(p->stream, "y.z") && !strcmp(p->processor, "p.q") && p->offset == 99 &&
	             p->head == 52;
	return 0;
}

/* Deletes the message at seq and publishes one that is no sluice event. */
static int damage(uint64_t seq)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsPubAck *ack = NULL;
	int ok;

	ok = natsConnection_ConnectTo(&nc, url) == NATS_OK &&
	     natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	     js_DeleteMsg(js, "sluice_events", seq, NULL, NULL) == NATS_OK &&
	     js_Publish(&ack, js, "sluice.ev.junk", "hello", 5, NULL, NULL) == NATS_OK;
	jsPubAck_Destroy(ack);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ok;
}

/* Deletes the message at seq, as a failed call's take-back does. */
static int take_back_msg(uint64_t seq)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	int ok;

	ok = natsConnection_ConnectTo(&nc, url) == NATS_OK &&
	     natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	     js_DeleteMsg(js, "sluice_events", seq, NULL, NULL) == NATS_OK;
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ok;
}

/* A key whose message was taken back is not refused for the duplicate window: the
 * retry stores it (with the next generation of its message id), once. */
static void test_taken_back(struct sl_store *s)
{
	struct sl_event_in ev[2] = {{"tb/x", "t", NULL, 0, NULL, 0, "tb1", 0},
	                            {"tb/y", "t", NULL, 0, NULL, 0, "tb2", 0}};
	struct sl_append_result r[2], again[2];
	struct sl_diag d;
	size_t failed = 0;

	sl_diag_init(&d);
	is(sl_store_append(s, ev, 1, r, 0, &failed, &d), 0, "a keyed append: %s", d.msg);
	ok(take_back_msg((uint64_t)r[0].position), "its message is taken back");
	is(sl_store_append(s, ev, 1, again, 0, &failed, &d), 0,
	   "the same key again is stored, not refused: %s", d.msg);
	ok(!again[0].duplicate && again[0].offset == r[0].offset &&
	           again[0].position > r[0].position,
	   "as a new event at the offset that was freed (%lld at %lld)", (long long)again[0].offset,
	   (long long)again[0].position);
	is(sl_store_append(s, ev, 1, r, 0, &failed, &d), 0, "and once more: %s", d.msg);
	ok(r[0].duplicate && r[0].position == again[0].position,
	   "which answers with the one stored");
	/* In a wave: two streams, one of them with a key taken back twice. */
	is(sl_store_append(s, &ev[1], 1, r, 0, &failed, &d), 0, "a keyed append on tb/y");
	ok(take_back_msg((uint64_t)r[0].position), "taken back");
	is(sl_store_append(s, &ev[1], 1, r, 0, &failed, &d), 0, "stored again");
	ok(take_back_msg((uint64_t)r[0].position), "and taken back again");
	ev[0].key = "tb3";
	is(sl_store_append(s, ev, 2, again, 0, &failed, &d), 0,
	   "a call over two streams with that key: %s", d.msg);
	ok(!again[1].duplicate && again[1].position > r[0].position && !again[0].duplicate,
	   "stores it, a third generation");
	is(sl_store_append(s, ev, 2, r, 0, &failed, &d), 0, "the call again");
	ok(r[0].duplicate && r[1].duplicate && r[1].position == again[1].position,
	   "answers both with what was stored");
}

/* Sets the event stream's largest message (-1: no limit); *was gets what it was. A
 * message over it is refused by the server after the messages before it in its call
 * were stored: the call is then taken back. */
static int max_msg_size(int32_t size, int32_t *was)
{
	natsConnection *nc = NULL;
	jsStreamInfo *si = NULL, *si2 = NULL;
	jsCtx *js = NULL;
	jsErrCode jerr = 0;
	int ok;

	ok = natsConnection_ConnectTo(&nc, url) == NATS_OK &&
	     natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	     js_GetStreamInfo(&si, js, "sluice_events", NULL, &jerr) == NATS_OK;
	if (ok) {
		if (was)
			*was = si->Config->MaxMsgSize;
		si->Config->MaxMsgSize = size;
		ok = js_UpdateStream(&si2, js, si->Config, NULL, &jerr) == NATS_OK;
	}
	jsStreamInfo_Destroy(si);
	jsStreamInfo_Destroy(si2);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ok;
}

/* The last message of a subject as "<Sluice-Offset> <Sluice-Taken-Back>" (the second
 * "-" when it has none) into out, with its sequence. */
static int last_of(const char *subject, char *out, size_t n, uint64_t *seq)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsMsg *m = NULL;
	const char *off = NULL, *taken = NULL;
	int ok;

	ok = natsConnection_ConnectTo(&nc, url) == NATS_OK &&
	     natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	     js_GetLastMsg(&m, js, "sluice_events", subject, NULL, NULL) == NATS_OK;
	if (ok) {
		natsMsgHeader_Get(m, "Sluice-Offset", &off);
		natsMsgHeader_Get(m, "Sluice-Taken-Back", &taken);
		snprintf(out, n, "%s %s", off ? off : "-", taken ? taken : "-");
		*seq = natsMsg_GetSequence(m);
	}
	natsMsg_Destroy(m);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ok;
}

/* Publishes a take-back record of the event at seq (offset off) on subject, as a writer
 * that was killed before it deleted what it took back leaves it. */
static int leave_record(const char *subject, uint64_t seq, int64_t off)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsPubAck *ack = NULL;
	natsMsg *m = NULL;
	jsPubOptions po;
	char a[32], b[32];
	int ok;

	snprintf(a, sizeof(a), "%lld", (long long)off - 1);
	snprintf(b, sizeof(b), "%llu", (unsigned long long)seq);
	jsPubOptions_Init(&po);
	po.ExpectLastSubjectSeq = seq;
	ok = natsConnection_ConnectTo(&nc, url) == NATS_OK &&
	     natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
	     natsMsg_Create(&m, subject, NULL, NULL, 0) == NATS_OK &&
	     natsMsgHeader_Set(m, "Sluice-Offset", a) == NATS_OK &&
	     natsMsgHeader_Set(m, "Sluice-Taken-Back", b) == NATS_OK &&
	     js_PublishMsg(&ack, js, m, &po, NULL) == NATS_OK;
	jsPubAck_Destroy(ack);
	natsMsg_Destroy(m);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ok;
}

static int nstreams_fn(void *ud, const struct sl_stream_info *info)
{
	(void)info;
	++*(int *)ud;
	return 0;
}

struct kinds {
	int n, present;
};

static int kinds_fn(void *ud, const struct sl_store_problem *p)
{
	struct kinds *k = ud;

	if (!p->stream || strncmp(p->stream, "tk", 2))
		return 0; /* (test_verify damaged the store elsewhere) */
	k->n++;
	k->present += !strcmp(p->problem, "taken-back-present") && p->stream &&
	              !strcmp(p->stream, "tk/c");
	return 0;
}

/* A call whose last publish fails after the others were stored is taken back by a
 * take-back record: the streams it created do not exist, its offsets are given out
 * again, its key can be used again, and a record left with its events still there
 * (a writer killed in between) is repaired by the next writer. */
static void test_take_back(struct sl_store *s, struct sl_store *other)
{
	static char big[100 * 1024];
	struct sl_event_in ev[2] = {{"tk/a", "t", "{\"n\":1}", 7, NULL, 0, "tk1", 0},
	                            {"tk/b", "t", big, 0, NULL, 0, NULL, 0}};
	struct sl_store_verify_summary sum;
	struct sl_append_result r[2], r2;
	struct collect c = {0};
	struct kinds k = {0};
	struct sl_diag d;
	size_t failed = 0;
	int32_t was = -1;
	uint64_t seq = 0;
	char last[64] = "";
	int n = 0, rc;

	memset(big, 'x', sizeof(big));
	memcpy(big, "{\"x\":\"", 6);
	memcpy(big + sizeof(big) - 2, "\"}", 2);
	ev[1].payload_len = sizeof(big);
	ok(max_msg_size(64 * 1024, &was), "the event stream takes messages of up to 64 KiB now");
	sl_diag_init(&d);
	rc = sl_store_append(s, ev, 2, r, 0, &failed, &d);
	ok(rc != 0 && failed == 1 && !strstr(d.msg, "could not be taken back"),
	   "a call whose second event the server refuses fails on it, all taken back (%d, %zu: %s)",
	   rc, failed, d.msg);
	ok(max_msg_size(was, NULL), "the limit is lifted again");
	sl_store_streams(other, "tk", nstreams_fn, &n, NULL);
	is(n, 0, "neither tk, tk/a nor tk/b exists (%d listed)", n);
	sl_store_read(other, "tk/a", 1, 0, NULL, collect_fn, &c, NULL);
	is(c.n, 0, "tk/a has no events");
	ok(last_of("sluice.ev.tk.a", last, sizeof(last), &seq) && !strncmp(last, "0 ", 2) &&
	           strcmp(last + 2, "-"),
	   "the last message of its subject is a take-back record, at offset 0 (%s)", last);
	is(sl_store_verify(other, 0, kinds_fn, NULL, &k, &sum, NULL), 0, "verify");
	is(k.n, 0, "finds nothing wrong with tk's streams after the take-back");
	sl_diag_init(&d);
	is(sl_store_append(s, ev, 1, &r2, 0, &failed, &d), 0, "the call's first event alone: %s",
	   d.msg);
	ok(r2.offset == 2 && !r2.duplicate, "is stored, at offset 2 after tk/a's creation (%lld)",
	   (long long)r2.offset);
	memset(&c, 0, sizeof(c));
	sl_store_read(other, "tk/a", 1, 0, NULL, collect_fn, &c, NULL);
	ok(c.n == 2 && c.offsets[0] == 1 && c.offsets[1] == 2 && c.positions[0] > (int64_t)seq,
	   "tk/a reads 1, 2, both after the record (%d)", c.n);
	n = 0;
	sl_store_streams(other, "tk", nstreams_fn, &n, NULL);
	is(n, 2, "tk and tk/a exist now");

	/* A record whose events are still there. */
	ev[0].stream = "tk/c", ev[0].key = NULL;
	is(sl_store_append(s, ev, 1, &r2, 0, &failed, NULL), 0, "an event on tk/c");
	ok(leave_record("sluice.ev.tk.c", (uint64_t)r2.position, r2.offset),
	   "a take-back record of it, and the event left in the log");
	memset(&k, 0, sizeof(k));
	sl_store_verify(other, 0, kinds_fn, NULL, &k, &sum, NULL);
	ok(k.present == 1 && k.n == 1, "verify reports the event taken back but still there (%d)",
	   k.n);
	n = 0;
	sl_store_streams(other, "tk/c", nstreams_fn, &n, NULL);
	is(n, 1, "tk/c exists, with head 1 by its record");
	is(sl_store_append(s, ev, 1, r, 0, &failed, NULL), 0, "the next append to tk/c");
	ok(r[0].offset == 2 && r[0].position > r2.position,
	   "gets the offset taken back (%lld at %lld)", (long long)r[0].offset,
	   (long long)r[0].position);
	memset(&k, 0, sizeof(k));
	sl_store_verify(other, 0, kinds_fn, NULL, &k, &sum, NULL);
	is(k.n, 0, "and deleted the event left behind: verify finds nothing wrong");
	memset(&c, 0, sizeof(c));
	sl_store_read(other, "tk/c", 1, 0, NULL, collect_fn, &c, NULL);
	ok(c.n == 2 && c.positions[1] == r[0].position, "tk/c reads 1 and the new 2");
}

static void test_verify(struct sl_store *s)
{
	struct sl_store_verify_summary sum;
	struct problems ps = {0};
	struct collect c = {0};
	struct sl_diag d;

	is(sl_store_verify(s, 0, problem_fn, NULL, &ps, &sum, NULL), 0, "verify a sound store");
	/* x, x/1, y.z; out, out/1, out/2, out/4, out/5 of test_commits, with their events. */
	ok(sum.problems == 0 && sum.streams == 8 && sum.events == 121 && sum.checkpoints == 8 &&
	           ps.n == 0,
	   "finds no problem in 8 streams, 121 events (%lld, %lld, %lld)", (long long)sum.problems,
	   (long long)sum.streams, (long long)sum.events);
	/* x/1 offset 2 is sequence 4, y.z is created at 5; from then on x/1 offset k is 2k + 1. */
	ok(damage(21), "a message deleted and a foreign one published behind sluice's back");
	sl_diag_init(&d);
	is(sl_store_verify(s, 0, problem_fn, NULL, &ps, &sum, &d), 0, "verify again: %s", d.msg);
	ok(ps.missing == 1 && ps.integrity == 1 && sum.problems == 2,
	   "finds the missing offset and the foreign message: %s", ps.first);
	sl_diag_init(&d);
	is(sl_store_read(s, "x/1", 1, 0, NULL, collect_fn, &c, &d), SL_ECORRUPT,
	   "a read over the hole fails");
	ok(c.n == 9 && strstr(d.msg, "has no event at offset 10"), "after 9 events: %s", d.msg);
	IN_COMMIT(s, sl_ckpt_put(c_, "p.q", "y.z", 99, "{}", 2, 0, NULL));
	memset(&ps, 0, sizeof(ps));
	sl_store_verify(s, SL_VERIFY_QUICK, problem_fn, NULL, &ps, &sum, NULL);
	ok(ps.ahead == 1 && sum.problems == 1,
	   "a checkpoint above its stream's head is found, by the quick check too: %s", ps.first);
}

/* The runners sl_store_runners reported, joined by spaces. */
static int runner_fn(void *ud, const char *owner, int64_t until_ms)
{
	char *out = ud;

	(void)until_ms;
	if (*out)
		strcat(out, " ");
	strncat(out, owner, 63);
	return 0;
}

/* Partitioned runners: a lease per partition beside the processor's, the runners'
 * heartbeats, and commits fenced on a partition's lease. */
static void test_partitions(struct sl_store *s, struct sl_store *other)
{
	struct sl_fence f = {"q", "r1", 0, 0};
	struct sl_lease l;
	struct sl_diag d;
	char who[512];
	int found = 1, k;

	ok(sl_store_has_partitions(s), "the JetStream backend has partitioned runners");
	ok(sl_partition_of("in/s1", 16) == 1 && sl_partition_of("in/s1000", 16) == 11 &&
	           sl_partition_of("anything", 1) == 0,
	   "a stream's partition is FNV-1a 64 of its name mod n (in/s1: %d, in/s1000: %d)",
	   sl_partition_of("in/s1", 16), sl_partition_of("in/s1000", 16));
	is(sl_store_part_get(s, "q", 3, &l, &found, NULL), 0,
	   "reading a partition lease never taken");
	ok(!found, "finds none");
	sl_store_part_acquire(s, "q", 3, "r1", 60000, &l, NULL);
	ok(!strcmp(l.owner, "r1") && l.epoch == 1, "a free partition lease is taken at epoch 1");
	sl_store_part_acquire(other, "q", 3, "r2", 60000, &l, NULL);
	ok(!strcmp(l.owner, "r1"), "a live one of another runner is not taken");
	sl_store_part_acquire(other, "q", 4, "r2", 60000, &l, NULL);
	ok(!strcmp(l.owner, "r2") && l.epoch == 1, "another partition has a lease of its own");
	sl_store_lease_get(s, "q", &l, &found, NULL);
	ok(!found, "and the processor's lease is not any partition's");
	sl_store_part_release(s, "q", 3, "r1", NULL);
	sl_store_part_acquire(other, "q", 3, "r2", 60000, &l, NULL);
	ok(!strcmp(l.owner, "r2") && l.epoch == 2,
	   "a released partition lease is taken at epoch + 1");
	sl_diag_init(&d);
	is(sl_store_part_acquire(s, "q", SL_PARTITIONS_MAX, "r1", 1000, &l, &d), SL_EINVAL,
	   "a partition out of range is refused: %s", d.msg);

	/* Commits fenced on a partition: only its holder at its epoch commits. */
	f.part = 1 + 3;
	f.owner = "r2";
	f.epoch = 2;
	sl_diag_init(&d);
	is(batch(s, &f, "out/q", "q@in/1:2#1", 2, "{\"n\":1}", &d), 0,
	   "a batch fenced on the partition's lease commits: %s", d.msg);
	f.owner = "r1";
	sl_diag_init(&d);
	is(batch(s, &f, "out/q", "q@in/1:3#1", 3, "{}", &d), SL_EFENCED,
	   "one of a runner that does not hold the partition is fenced off: %s", d.msg);
	ok(strstr(d.msg, "partition 3 of processor 'q' is run by r2") != NULL,
	   "naming the partition and its holder");
	f.owner = "r2";
	f.part = 1 + 4;
	sl_diag_init(&d);
	is(batch(s, &f, "out/q", "q@in/1:3#1", 3, "{}", &d), SL_EFENCED,
	   "the lease of another partition at another epoch fences too");

	/* Heartbeats: each runner sees the live ones, in name order. */
	who[0] = '\0';
	is(sl_store_runners(s, "q", "rb", 60000, runner_fn, who, NULL), 0, "a runner beats");
	ok(!strcmp(who, "rb"), "and sees itself (%s)", who);
	who[0] = '\0';
	sl_store_runners(other, "q", "ra", 60000, runner_fn, who, NULL);
	ok(!strcmp(who, "ra rb"), "a second sees both, in order (%s)", who);
	sl_store_runners(other, "q", "rc", 30, runner_fn, who, NULL);
	sleep_ms(60);
	who[0] = '\0';
	sl_store_runners(s, "q", NULL, 0, runner_fn, who, NULL);
	ok(!strcmp(who, "ra rb"), "an expired heartbeat is not a live runner (%s)", who);
	sl_store_runners(s, "q", "rb", 0, runner_fn, who, NULL);
	who[0] = '\0';
	sl_store_runners(s, "q", NULL, 0, runner_fn, who, NULL);
	ok(!strcmp(who, "ra"), "a runner that leaves is gone at once (%s)", who);
	who[0] = '\0';
	sl_store_runners(s, "other", NULL, 0, runner_fn, who, NULL);
	ok(!*who, "the runners are per processor");
	for (k = 3; k <= 4; k++)
		sl_store_part_release(other, "q", k, "r2", NULL);
}

/* ---- the wake, waves of publishes, batched reads ------------------------------------- */

static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static int wakes;

static void on_wake(void *ud)
{
	(void)ud;
	pthread_mutex_lock(&wake_mu);
	wakes++;
	pthread_mutex_unlock(&wake_mu);
}

static int wakes_now(void)
{
	int n;

	pthread_mutex_lock(&wake_mu);
	n = wakes;
	pthread_mutex_unlock(&wake_mu);
	return n;
}

static void test_wake(struct sl_store *s, struct sl_store *other)
{
	struct sl_append_result r;
	int i, before;

	is(sl_store_wake_start(s, on_wake, NULL, NULL), 0, "a wake on the event subjects");
	sleep_ms(100); /* (the subscription is in place once the server saw it) */
	before = wakes_now();
	append1(other, "w/wake", &r);
	for (i = 0; i < 100 && wakes_now() == before; i++)
		sleep_ms(10);
	ok(wakes_now() > before, "an append by another connection calls it (after %d ms)", i * 10);
	sl_store_wake_stop(s);
	before = wakes_now();
	append1(other, "w/wake", &r);
	sleep_ms(200);
	ok(wakes_now() == before, "not once it is stopped");
}

/* Many streams in one call: waves of asynchronous publishes. */
static void test_waves(struct sl_store *s)
{
	static struct sl_event_in ev[600];
	static struct sl_append_result res[600];
	static char names[300][16], keys[600][16];
	struct collect c = {0};
	int i, ordered = 1, offsets = 1, dups = 1;
	size_t failed = 0;

	for (i = 0; i < 600; i++) {
		snprintf(names[i % 300], sizeof(names[0]), "v/%d", i % 300);
		snprintf(keys[i], sizeof(keys[0]), "k%d", i);
		ev[i] = (struct sl_event_in){names[i % 300], "t", NULL, 0, NULL, 0, keys[i], 0};
	}
	is(sl_store_append(s, ev, 600, res, 0, &failed, NULL), 0,
	   "one call of 600 events over 300 new streams");
	for (i = 0; i < 600; i++) {
		ordered &= !i || res[i].position > res[i - 1].position;
		offsets &= res[i].offset == (i < 300 ? 2 : 3) && !res[i].duplicate;
	}
	ok(ordered, "positions follow the order of the call");
	ok(offsets, "each stream got offsets 2 and 3 (stream/created at 1)");
	/* Keys answered by JetStream (duplicate acks) inside a wave, and after them new
	 * events on the same streams, whose offsets follow the stored ones. */
	for (i = 0; i < 100; i++) {
		ev[i].key = keys[i];
		ev[100 + i] = (struct sl_event_in){names[i], "t", NULL, 0, NULL, 0, NULL, 0};
	}
	is(sl_store_append(s, ev, 200, res, 0, &failed, NULL), 0,
	   "100 keys used before, then 100 new events on their streams");
	for (i = 0; i < 100; i++)
		dups &= res[i].duplicate && res[i].offset == 2 && !res[100 + i].duplicate &&
		        res[100 + i].offset == 4;
	ok(dups, "the repeats are answered with their first offsets, the new events follow at 4");
	sl_store_read(s, "v/7", 1, 0, NULL, collect_fn, &c, NULL);
	ok(c.n == 4 && c.offsets[3] == 4, "v/7 holds offsets 1..4 (%d events)", c.n);
	/* A refused event in the middle of a call writes nothing, in any stream. */
	ev[0] = (struct sl_event_in){"v/x1", "t", NULL, 0, NULL, 0, NULL, 0};
	ev[1] = (struct sl_event_in){"v/x2", "t", NULL, 0, NULL, 0, NULL, 0};
	ev[2] = (struct sl_event_in){"v/1", "t", NULL, 0, NULL, 0, NULL, 9};
	ok(sl_store_append(s, ev, 3, res, 0, &failed, NULL) == SL_ECONFLICT && failed == 2,
	   "a call whose third event has a wrong offset is refused");
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "v/x1", 1, 0, NULL, collect_fn, &c, NULL);
	ok(c.n == 0, "and wrote nothing (%d events in v/x1)", c.n);
}

/* Deletes every consumer of the event stream (an idle ephemeral the server dropped). */
static void drop_consumers(void)
{
	natsConnection *nc = NULL;
	jsConsumerNamesList *names = NULL;
	jsCtx *js = NULL;
	int i;

	if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK ||
	    js_ConsumerNames(&names, js, "sluice_events", NULL, NULL) != NATS_OK)
		goto out;
	for (i = 0; i < names->Count; i++)
		js_DeleteConsumer(js, "sluice_events", names->List[i], NULL, NULL);
out:
	jsConsumerNamesList_Destroy(names);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

struct stopper {
	int left;
	int64_t last;
};

static int stop_after(void *ud, const struct sl_event *ev)
{
	struct stopper *st = ud;

	st->last = ev->offset;
	return --st->left > 0 ? 0 : 1;
}

static void test_reads(struct sl_store *s, struct sl_store *other)
{
	static struct sl_event_in ev[700];
	static struct sl_append_result res[700];
	struct collect c = {0};
	struct stopper st = {3, 0};
	int64_t total = 0, next = 1, head = 0, first_pos;
	int i, k, contiguous = 1, same = 1;

	for (i = 0; i < 700; i++)
		ev[i] = (struct sl_event_in){
			"r/long", i % 7 ? "t" : "t/seventh", NULL, 0, NULL, 0, NULL, 0};
	is(sl_store_append(s, ev, 700, res, 0, NULL, NULL), 0, "700 events on one stream");
	/* Reads that go on where the last stopped, over several fetches. */
	for (k = 0; k < 3; k++) {
		memset(&c, 0, sizeof(c));
		sl_store_read(s, "r/long", next, 128, NULL, collect_fn, &c, NULL);
		for (i = 0; i < c.n && i < 128; i++)
			contiguous &= c.offsets[i] == next + i;
		total += c.n;
		next += c.n;
	}
	ok(contiguous && total == 384, "three reads of 128 go on from each other (%lld)",
	   (long long)total);
	append1(other, "r/long", &res[0]);
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "r/long", next, 0, NULL, collect_fn, &c, NULL);
	ok(c.n == 701 - 384 + 1 && c.offsets[0] == 385,
	   "the rest, with an event appended meanwhile by another connection (%d)", c.n);
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "r/long", 500, 3, NULL, collect_fn, &c, NULL);
	ok(c.n == 3 && c.offsets[0] == 500 && c.offsets[2] == 502, "a read from offset 500");
	/* A type filter stops the backend's read early; the next read from there is right. */
	sl_store_read(s, "r/long", 1, 0, "t/seventh", stop_after, &st, NULL);
	ok(st.last == 16, "the third t/seventh is at offset 16 (%lld)", (long long)st.last);
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "r/long", 17, 1, NULL, collect_fn, &c, NULL);
	ok(c.n == 1 && c.offsets[0] == 17, "a read from 17 after it");
	/* The consumer behind a kept reader goes away: the read makes it again. */
	drop_consumers();
	memset(&c, 0, sizeof(c));
	sl_store_read(s, "r/long", 18, 2, NULL, collect_fn, &c, NULL);
	ok(c.n == 2 && c.offsets[0] == 18 && c.offsets[1] == 19,
	   "a read after the server dropped the consumer");
	/* read_all in chunks gives what one read gives. */
	sl_store_head_position(s, &head, NULL);
	first_pos = head - 599;
	{
		static struct collect whole, part;
		memset(&whole, 0, sizeof(whole));
		sl_store_read_all(s, first_pos, 128, collect_fn, &whole, NULL);
		for (next = first_pos, k = 0; k < 4; k++) {
			memset(&part, 0, sizeof(part));
			sl_store_read_all(s, next, 32, collect_fn, &part, NULL);
			for (i = 0; i < part.n; i++)
				same &= part.positions[i] == whole.positions[k * 32 + i];
			next = part.positions[part.n - 1] + 1;
			if (k == 1)
				drop_consumers();
		}
		ok(whole.n == 128 && same, "read_all in 4 chunks of 32 is one read of 128");
	}
	memset(&c, 0, sizeof(c));
	sl_store_read_all(s, head + 1, 0, collect_fn, &c, NULL);
	ok(c.n == 0, "read_all after the head reads nothing, at once");
}

struct names_seen {
	int n, heads_ok;
};

static int stream_fn(void *ud, const struct sl_stream_info *info)
{
	struct names_seen *ns = ud;

	ns->n++;
	if (strncmp(info->stream, "v/", 2))
		return 0; /* v itself */
	ns->heads_ok &= info->head == (atoi(info->stream + 2) < 100 ? 4 : 3);
	return 0;
}

static void test_streams_list(struct sl_store *s)
{
	struct names_seen ns = {0, 1};

	is(sl_store_streams(s, "v", stream_fn, &ns, NULL), 0, "streams under v");
	ok(ns.n == 301 && ns.heads_ok, "v and its 300 streams, each with its head (%d)", ns.n);
}

int main(int argc, char **argv)
{
	struct sl_store *s = NULL, *other = NULL;
	struct sl_diag d;

	url = argc > 1 ? argv[1] : NULL;
	if (!url) {
		printf("1..0 # SKIP needs the URL of a fresh JetStream server"
		       " (tests/e2e/nats_store.sh runs this)\n");
		return 0;
	}
	plan(87 + 20 + 22 + 14 + 20);
	sl_diag_init(&d);
	is(sl_store_open(&s, url, NULL, &d), 0, "opens %s: %s", url, d.msg);
	is(sl_store_open(&other, url, NULL, &d), 0, "and a second connection: %s", d.msg);
	if (s && other) {
		test_log(s, other);
		test_leases(s, other);
		test_commits(s, other);
		test_faults(s, other);
		test_dead_letters(s, other);
		test_verify(s);
		test_wake(s, other);
		test_waves(s);
		test_taken_back(s);
		test_take_back(s, other);
		test_reads(s, other);
		test_streams_list(s);
		test_partitions(s, other); /* (last: its batches write rows of "p") */
	}
	sl_store_close(s);
	sl_store_close(other);
	return check_plan();
}
