/* test_store_nats.c - unit tests of the store on its JetStream backend (sl_store_nats.c):
 * what the CLI does not reach (store-wide reads, the head, the data version, reads from
 * an offset, leases) and the operations it does not support yet. Needs a JetStream
 * server: its URL is the first argument (tests/e2e/nats_store.sh starts one and runs
 * this); without one the test is skipped, saying so. The server must be fresh. libnats
 * itself stands in for damage done to the store behind sluice's back. */
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

static void test_not_yet(struct sl_store *s)
{
	struct sl_fence f = {"p", "two", 3};
	struct sl_commit *c = (struct sl_commit *)1;
	struct sl_ckpt k;
	struct sl_diag d;
	int found = 1;

	sl_diag_init(&d);
	is(sl_commit_begin(s, &f, &c, &d), SL_ENOTSUP, "a commit is not supported yet");
	ok(c == NULL && strstr(d.msg, "is not yet supported on the JetStream backend") &&
	           strstr(d.msg, url),
	   "and says so, naming the store: %s", d.msg);
	sl_diag_init(&d);
	is(sl_ckpt_get(s, "p", "x/1", &k, &found, &d), SL_ENOTSUP, "nor is reading a checkpoint");
	ok(!found && k.state == NULL, "which finds nothing: %s", d.msg);
	sl_diag_init(&d);
	is(sl_store_group_begin(s), 0, "there are no commit groups");
}

struct problems {
	int n, missing, integrity;
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

static void test_verify(struct sl_store *s)
{
	struct sl_store_verify_summary sum;
	struct problems ps = {0};
	struct collect c = {0};
	struct sl_diag d;

	is(sl_store_verify(s, 0, problem_fn, NULL, &ps, &sum, NULL), 0, "verify a sound store");
	ok(sum.problems == 0 && sum.streams == 3 && sum.events == 105 && ps.n == 0,
	   "finds no problem in 3 streams, 105 events (%lld, %lld, %lld)", (long long)sum.problems,
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
	plan(41);
	sl_diag_init(&d);
	is(sl_store_open(&s, url, NULL, &d), 0, "opens %s: %s", url, d.msg);
	is(sl_store_open(&other, url, NULL, &d), 0, "and a second connection: %s", d.msg);
	if (s && other) {
		test_log(s, other);
		test_leases(s, other);
		test_not_yet(s);
		test_verify(s);
	}
	sl_store_close(s);
	sl_store_close(other);
	return check_plan();
}
