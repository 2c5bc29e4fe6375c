/* test_store.c - unit tests of the SQLite event store (sl_store.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sl_store.h"
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
	struct collect c = { 0 };

	sl_store_read(s, stream, 1, 0, NULL, collect_fn, &c, NULL);
	return c.n;
}

static struct sl_event_in ev_of(const char *stream, const char *type, const char *payload)
{
	struct sl_event_in ev = { stream, type, payload, payload ? strlen(payload) : 0,
				  NULL, 0, NULL, 0 };
	return ev;
}

static void test_batch_all_or_nothing(struct sl_store *s)
{
	struct sl_event_in ev[3] = { ev_of("b/1", "t", "{}"), ev_of("b/2", "t", "{}"),
				     ev_of("b/1", "t", "[1]") };
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

static void test_savepoint(struct sl_store *s)
{
	struct sl_event_in ok1 = ev_of("sp/1", "t", NULL), bad = ev_of("sp/1", "", NULL);
	struct sl_append_result r;
	int64_t head;

	is(sl_store_begin(s, NULL), 0, "begin a transaction");
	is(sl_store_append(s, &ok1, 1, &r, 0, NULL, NULL), 0, "append inside it");
	is(sl_store_append(s, &bad, 1, &r, 0, NULL, NULL), SL_EINVAL,
	   "a failing append inside it fails alone");
	is(sl_store_commit(s, NULL), 0, "commit");
	is(count_events(s, "sp/1"), 2, "the good append survived the failed one");
	is(sl_store_begin(s, NULL), 0, "begin again");
	sl_store_append(s, &ok1, 1, &r, 0, NULL, NULL);
	sl_store_rollback(s);
	is(count_events(s, "sp/1"), 2, "a rolled back transaction leaves nothing");
	sl_store_head_position(s, &head, NULL);
	ok(head > 0, "head position is %lld", (long long)head);
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

int main(void)
{
	struct sl_store *s;

	plan(35);
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/store.db", dir);
	test_names();
	is(sl_store_open(&s, path, NULL, NULL), 0, "open a new store");
	test_batch_all_or_nothing(s);
	test_savepoint(s);
	test_read_all(s);
	sl_store_close(s);
	test_reopen_and_version();
	sl_store_close(NULL);
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			diag("could not remove %s", dir);
	}
	return check_plan();
}
