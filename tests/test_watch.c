/* test_watch.c - unit tests of the file watcher (sl_watch.h) on a real libuv loop.
 *
 * Each step changes files the way an editor or a tool does, then runs the loop until
 * the watcher called back as often as expected or a deadline timer (uv) expired, and
 * then for a quiet window more, so "exactly once" is checked: a second callback in
 * that window fails the step. Nothing sleeps: the loop waits on its own timers.
 *
 * Fixture, in a temporary directory: a.lua and other.txt in it, b.json in d2/, c.txt
 * in d3/, slow.txt in d4/ (for the spaced burst). The watcher watches a.lua and
 * d2/b.json; other.txt shares a.lua's directory and is never watched.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "sl_watch.h"
#include "unit.h"

#define DEADLINE_MS 5000 /* a callback that is due comes well before this */
#define QUIET_MS 300     /* six debounces: a second callback would come in it */

static uv_loop_t loop;
static uv_timer_t deadline, stepper;
static int fires, want, timed_out;
static uint64_t fire_at;
static char dir[] = "/tmp/sl_test_watch_XXXXXX";
static char a[600], b[600], c[600], other[600], tmpf[600], d2[600], d3[600], d4[600], slow[600];

static void on_fire(void *ud)
{
	(void)ud;
	fires++;
	fire_at = uv_now(&loop);
	if (fires >= want)
		uv_stop(&loop);
}

static void on_deadline(uv_timer_t *t)
{
	(void)t;
	timed_out = 1;
	uv_stop(&loop);
}

/* Runs the loop until the watchers called back n more times, or ms passed; returns
 * how many times they did. */
static int run_for(int n, uint64_t ms)
{
	int start = fires;

	want = fires + n;
	timed_out = 0;
	uv_timer_start(&deadline, on_deadline, ms, 0);
	while (fires < want && !timed_out)
		uv_run(&loop, UV_RUN_DEFAULT);
	uv_timer_stop(&deadline);
	return fires - start;
}

/* The step `what` gives exactly n callbacks: n within the deadline, none in the quiet
 * window after. */
static void expect(int n, const char *what)
{
	int got = n ? run_for(n, DEADLINE_MS) : 0;
	int more = run_for(1, QUIET_MS);

	ok(got == n && more == 0, "%s: %d callback%s (got %d, then %d more)", what, n,
	   n == 1 ? "" : "s", got, more);
}

static void put(const char *path, const char *mode, const char *text)
{
	FILE *f = fopen(path, mode);

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		printf("Bail out! cannot write %s\n", path);
		exit(1);
	}
}

static void path_of(char *out, const char *rel)
{
	snprintf(out, 600, "%s/%s", dir, rel);
}

/* ---- a burst spread over time ---------------------------------------------------------- */

static int steps_left;
static uint64_t last_write;

static void on_step(uv_timer_t *t)
{
	char text[32];

	snprintf(text, sizeof(text), "slow %d\n", steps_left);
	put(slow, "w", text);
	last_write = uv_now(&loop);
	if (--steps_left == 0)
		uv_timer_stop(t);
}

/* Four writes 30 ms apart, watched with a debounce of 400 ms: one callback, at least
 * 400 ms after the last write. */
static void test_spaced_burst(void)
{
	struct sl_watch *w;
	const char *files[1] = {slow};

	ok(sl_watch_new(&w, &loop, 400, on_fire, NULL) == 0, "a watcher with a 400 ms debounce");
	ok(sl_watch_set(w, files, 1, NULL) == 0, "it watches d4/slow.txt");
	steps_left = 4;
	uv_timer_start(&stepper, on_step, 0, 30);
	expect(1, "four writes 30 ms apart with a 400 ms debounce");
	ok(fire_at >= last_write + 399, "the callback came 400 ms after the last write (%llu ms)",
	   (unsigned long long)(fire_at - last_write));
	sl_watch_free(w);
}

/* ---- a callback that frees its watcher -------------------------------------------------- */

static struct sl_watch *self_freeing;

static void on_fire_free(void *ud)
{
	sl_watch_free(self_freeing);
	self_freeing = NULL;
	on_fire(ud);
}

static void test_free_in_callback(void)
{
	const char *files[1] = {a};

	ok(sl_watch_new(&self_freeing, &loop, 0, on_fire_free, NULL) == 0,
	   "a watcher with no debounce whose callback frees it");
	sl_watch_set(self_freeing, files, 1, NULL);
	put(a, "w", "freed 1\n");
	expect(1, "the change fires once; the callback frees the watcher");
	put(a, "w", "freed 2\n");
	expect(0, "once freed it does not fire again");
}

/* ---- the main sequence ---------------------------------------------------------------- */

static void test_changes(struct sl_watch *w)
{
	const char *files[2] = {a, b};

	ok(sl_watch_set(w, files, 2, NULL) == 0, "the watcher watches a.lua and d2/b.json");
	expect(0, "setting the set does not fire");

	put(a, "w", "v1\n");
	put(a, "a", "more\n");
	put(a, "w", "v1 final\n");
	expect(1, "three writes in place");

	put(tmpf, "w", "v2\n");
	ok(rename(tmpf, a) == 0, "rename(.a.lua.tmp, a.lua)");
	expect(1, "a write to a temporary file renamed over a.lua");

	unlink(a);
	put(a, "w", "v3\n");
	expect(1, "a delete followed by a new a.lua");

	put(a, "w", "v3\n");
	expect(0, "a rewrite with the same bytes");

	put(other, "w", "x\n");
	put(tmpf, "w", "y\n");
	ok(rename(tmpf, other) == 0, "rename(.a.lua.tmp, other.txt)");
	expect(0, "changes to other files of the same directory");
	put(a, "w", "v4\n");
	expect(1, "and the watcher is still awake afterwards");

	put(b, "w", "b1\n");
	expect(1, "a write to the file of the second directory");

	unlink(a);
	expect(1, "a.lua deleted (a disappearance is a change)");
	put(a, "w", "v5\n");
	expect(1, "a.lua created again");

	unlink(b);
	rmdir(d2);
	expect(1, "d2/b.json deleted with its directory");
	mkdir(d2, 0700);
	put(b, "w", "b2\n");
	expect(1, "d2 and d2/b.json made again: the directory is watched anew");
	put(b, "w", "b3\n");
	expect(1, "and a later write to d2/b.json fires");
}

static void test_set(struct sl_watch *w)
{
	const char *files[2] = {a, c}, *bad[2] = {a, "d3/"};
	struct sl_diag d;

	put(a, "w", "v6\n");
	ok(sl_watch_set(w, files, 2, NULL) == 0, "the set becomes a.lua and d3/c.txt");
	expect(1, "a change of a.lua made just before the set is replaced is reported");
	put(b, "w", "b4\n");
	expect(0, "d2/b.json is no longer watched");
	put(c, "w", "c1\n");
	expect(1, "d3/c.txt, new in the set, is watched");
	put(a, "w", "v7\n");
	expect(1, "a.lua, kept in the set, is still watched");

	sl_diag_init(&d);
	is(sl_watch_set(w, bad, 2, &d), SL_EINVAL, "a path ending in '/' is refused");
	ok(strstr(d.msg, "d3/") && strstr(d.msg, "not a file path"), "naming it (%s)", d.msg);
	put(c, "w", "c2\n");
	expect(1, "after a refused set the previous set stays");

	ok(sl_watch_set(w, NULL, 0, NULL) == 0, "the set becomes empty");
	put(a, "w", "v8\n");
	put(c, "w", "c3\n");
	expect(0, "nothing is watched any more");
}

int main(void)
{
	struct sl_watch *w = NULL, *bad = NULL;
	char cmd[700];

	plan(37);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	path_of(a, "a.lua");
	path_of(other, "other.txt");
	path_of(tmpf, ".a.lua.tmp");
	path_of(d2, "d2");
	path_of(b, "d2/b.json");
	path_of(d3, "d3");
	path_of(c, "d3/c.txt");
	path_of(d4, "d4");
	path_of(slow, "d4/slow.txt");
	mkdir(d2, 0700);
	mkdir(d3, 0700);
	mkdir(d4, 0700);
	put(a, "w", "v0\n");
	put(b, "w", "b0\n");
	put(c, "w", "c0\n");
	put(other, "w", "o0\n");
	put(slow, "w", "s0\n");
	uv_loop_init(&loop);
	uv_timer_init(&loop, &deadline);
	uv_timer_init(&loop, &stepper);

	is(sl_watch_new(&bad, &loop, -1, on_fire, NULL), SL_EINVAL,
	   "a negative debounce is refused");
	is(sl_watch_new(&bad, &loop, NAN, on_fire, NULL), SL_EINVAL, "a NaN debounce is refused");
	ok(sl_watch_new(&w, &loop, SL_WATCH_DEBOUNCE_MS, on_fire, NULL) == 0,
	   "a watcher with the usual debounce");
	test_changes(w);
	test_set(w);
	test_spaced_burst();
	test_free_in_callback();

	sl_watch_free(w);
	sl_watch_free(NULL);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_close((uv_handle_t *)&stepper, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	is(uv_loop_close(&loop), 0,
	   "after sl_watch_free and one turn of the loop no handle is left");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return check_plan();
}
