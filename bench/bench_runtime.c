/* bench_runtime.c - measures the engine at run time: catch-up through the pump
 * against a bare decode-and-reduce loop, and a deployment of 1 000 000 instances.
 *
 * Four figures, taken in one run on a fresh directory under /tmp that is removed
 * at the end. All use processors/counter.lua with schemas/counter.contract.json, in
 * mode "each" over the streams counters/N, batchSize 1000, durability "normal" (WAL
 * commit without fsync; FULL would time the disk's fsync rate once per batch, not
 * the engine), driven through the public engine API: a deployment file is written into
 * the directory, the events are appended with sl_store_append in batches of 1000,
 * and the timed part is sl_host_open + sl_host_run(h, until_caught_up = 1).
 *
 *   a. catch-up: 1 000 000 `counter/incremented {"by":1}` events spread round-robin
 *      over 10 streams (100 000 each, 100 batches per instance), read, converted,
 *      validated, reduced and committed batch by batch (one transaction each). The
 *      events predate the run, so they are below the side-effect anchor: processEvent
 *      does not run, as for any processor deployed over an existing store.
 *      Baseline: a bare loop in a plain lua_State, reading the same streams with
 *      sl_store_read in chunks of 1000, converting each payload with sl_lj_decode
 *      into an event table {payload = ...} and calling the script's own
 *      reduce["counter/incremented"](state, event). Nothing is validated or
 *      committed. Target: the engine at 0.7 of the baseline or better. The two take
 *      turns, ROUNDS times, each round on a fresh copy of the store (the engine
 *      writes checkpoints), and the best of each is kept.
 *   b. peak RSS of the engine during (a).
 *   c. 1 000 000 streams, each with two counter events (2 000 000 events), run
 *      until caught up: 1 000 000 instances, each loaded, fed one batch and
 *      committed. Peak RSS, target at most 1 GiB.
 *   d. the same run as instances per second, beside the bare loop over the same
 *      streams. Target: at least 100 000 instances/s. Like a, alternating rounds
 *      (--instance-rounds, 1 by default: a round takes half a minute), the engine's
 *      on a fresh copy of the store each time; the fastest of each side and the
 *      highest peak RSS are kept.
 *   e. the cost of the sandbox's budgets: the catch-up of (a) with the default
 *      budgets (instruction count hook, counting allocator, wall clock) against the
 *      same run with SLUICE_BUDGETS=off (no hook, no memory limit). Target: on at
 *      0.9 of off or better. Measured in the rounds of (a), best of each kept.
 *
 * Every timed part runs in a child process (fork + exec of this program with
 * --child), so its peak RSS (VmHWM of /proc/self/status, read by the child once it
 * is done) is its own and not the parent's, which wrote the stores. Each child
 * checks its result (the sum of the counters, the instances' offsets) before it
 * reports, so a fast wrong answer cannot pass.
 *
 * Progress goes to stderr, the table to stdout. Exit status 0, or 1 after an error
 * (with --strict, also when a target is missed).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sl_error.h"
#include "sl_host.h"
#include "sl_luajson.h"
#include "sl_store.h"

#define BENCH_NAME "bench_runtime"
#include "bench_util.h"

#ifndef SL_SOURCE_DIR
#define SL_SOURCE_DIR "."
#endif

#define BATCH 1000 /* events per append batch, per engine batch, per baseline read */
#define ROUNDS 3   /* rounds of each measurement (engine and baseline each) */
#define PREFIX "counters"
#define EVENT_TYPE "counter/incremented"
#define PAYLOAD "{\"by\":1}"
#define SCRIPT SL_SOURCE_DIR "/processors/counter.lua"
#define SCHEMAS SL_SOURCE_DIR "/schemas"
#define RSS_LIMIT_MIB 1024.0
#define INST_RATE_MIN 100000.0 /* d: instances per second */

struct config {
	long events;    /* a: counter events */
	long streams;   /* a: streams they are spread over */
	long instances; /* c: streams of two events */
	int rounds;
	int inst_rounds; /* of c and d */
	const char *base;
	int strict, keep;
};

/* What one child reports. */
struct child_result {
	double secs;
	long long events; /* events reduced (sum of the counters) */
	long long insts;  /* instances seen caught up (engine) or streams read (baseline) */
	long long hwm_kib;
};

/* One line of the table. */
enum target_kind { T_RATIO_MIN, T_RESULT_MAX, T_RESULT_MIN, T_NONE };
struct row {
	const char *bench;
	double result, limit;
	const char *unit, *limit_name;
	double target;
	enum target_kind kind;
	int fmt_mib; /* result and limit are MiB, shown with one decimal */
};

enum { ROW_CATCHUP, ROW_CATCHUP_RSS, ROW_INST_RSS, ROW_INST_RATE, ROW_BUDGETS, ROW_COUNT };

/* ---- small helpers ------------------------------------------------------------- */

/* Removes a store file and the files SQLite and a runner keep beside it: its WAL,
 * its shared-memory index and the runner's fault log (<store>-faults). */
static void remove_store(const char *file)
{
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal", "-faults"};
	char p[sizeof(dir) + 64];
	size_t i;

	for (i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s%s", dir, file, suffix[i]);
		unlink(p);
	}
}

/* Removes the scratch directory with every file in it. The directory was made by
 * mkdtemp for this run and holds only plain files, so whatever a run left there
 * (stores, deployments, fault logs, the reference script) goes without a list. */
static void remove_dir(void)
{
	char p[sizeof(dir) + 300];
	struct dirent *e;
	DIR *dp;

	if (!dir[0])
		return;
	if ((dp = opendir(dir))) {
		while ((e = readdir(dp)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
				if (unlink(p))
					fprintf(stderr, "bench_runtime: cannot remove %s: %s\n", p,
					        strerror(errno));
			}
		closedir(dp);
	}
	if (rmdir(dir))
		fprintf(stderr, "bench_runtime: cannot remove %s: %s\n", dir, strerror(errno));
	dir[0] = '\0';
}

/* The process's peak resident set (VmHWM), in KiB; -1 if unknown. */
static long long peak_rss_kib(void)
{
	char line[256];
	long long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6)) {
			kib = atoll(line + 6);
			break;
		}
	fclose(f);
	return kib;
}

static void stream_name(char *out, size_t n, long i)
{
	snprintf(out, n, PREFIX "/%ld", i);
}

/* Flushes a file written with durability NORMAL to disk, so that its writeback
 * does not overlap a timed run. */
static int sync_file(const char *path)
{
	int fd = open(path, O_RDONLY), rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	if (rc)
		fprintf(stderr, "bench_runtime: fsync %s: %s\n", path, strerror(errno));
	return rc ? -1 : 0;
}

/* Copies one file of dir. */
static int copy_file(const char *from, const char *to)
{
	char src[sizeof(dir) + 64], dst[sizeof(dir) + 64];
	static char buf[1 << 20];
	ssize_t n = 0;
	int in, out, rc = -1;

	path_of(src, sizeof(src), from);
	path_of(dst, sizeof(dst), to);
	if ((in = open(src, O_RDONLY)) < 0)
		goto fail;
	if ((out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0) {
		close(in);
		goto fail;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n) {
			n = -1;
			break;
		}
	rc = n < 0 ? -1 : 0;
	close(in);
	/* On disk before the timed run starts, so that writing back the copy's 100 MiB
	 * of dirty pages does not compete with it. */
	if (fdatasync(out))
		rc = -1;
	if (close(out))
		rc = -1;
	if (!rc)
		return 0;
fail:
	fprintf(stderr, "bench_runtime: cannot copy %s to %s: %s\n", src, dst, strerror(errno));
	return -1;
}

/* Copies the closed store `from` to `to` (both in dir): the database file, and its
 * WAL when one is left (a read-only connection cannot remove it). */
static int copy_store(const char *from, const char *to)
{
	char wal_from[64], wal_to[64], p[sizeof(dir) + 64];

	snprintf(wal_from, sizeof(wal_from), "%s-wal", from);
	snprintf(wal_to, sizeof(wal_to), "%s-wal", to);
	path_of(p, sizeof(p), wal_from);
	remove_store(to);
	return copy_file(from, to) || (!access(p, F_OK) && copy_file(wal_from, wal_to)) ? -1 : 0;
}

/* ---- setup: deployments and stores --------------------------------------------- */

static int write_deploy(const char *file, const char *store)
{
	char p[sizeof(dir) + 64];
	FILE *f;

	path_of(p, sizeof(p), file);
	if (!(f = fopen(p, "w"))) {
		fprintf(stderr, "bench_runtime: cannot create %s: %s\n", p, strerror(errno));
		return -1;
	}
	fprintf(f,
	        "-- written by bench_runtime\n"
	        "return {\n"
	        "  store = \"%s\",\n"
	        "  durability = \"normal\",\n"
	        "  schemas = { \"%s\" },\n"
	        "  processors = {\n"
	        "    counter = { script = \"%s\", streams = \"" PREFIX "/*\", mode = \"each\",\n"
	        "                batchSize = %d },\n"
	        "  },\n"
	        "}\n",
	        store, SCHEMAS, SCRIPT, BATCH);
	return fclose(f) ? -1 : 0;
}

/* Appends n counter events, event k going to stream stream_of(k, ud), in batches
 * of BATCH through sl_store_append (with the store's own validation). */
static int populate(const char *file, long n, long (*stream_of)(long k, long arg), long arg)
{
	struct sl_store_opts o = {SL_DURABILITY_NORMAL, 0, NULL, NULL}; /* no core types */
	static struct sl_event_in ev[BATCH];
	static struct sl_append_result res[BATCH];
	static char names[BATCH][64];
	char p[sizeof(dir) + 64];
	struct sl_store *s = NULL;
	struct sl_diag d;
	double t0 = now();
	long k, m, j;
	int rc = -1;

	sl_diag_init(&d);
	path_of(p, sizeof(p), file);
	if (sl_store_open(&s, p, &o, &d))
		goto fail;
	for (k = 0; k < n; k += m) {
		m = n - k < BATCH ? n - k : BATCH;
		if (stopped())
			goto out;
		for (j = 0; j < m; j++) {
			stream_name(names[j], sizeof(names[j]), stream_of(k + j, arg));
			memset(&ev[j], 0, sizeof(ev[j]));
			ev[j].stream = names[j];
			ev[j].type = EVENT_TYPE;
			ev[j].payload = PAYLOAD;
			ev[j].payload_len = sizeof(PAYLOAD) - 1;
		}
		if (sl_store_append(s, ev, (size_t)m, res, 0, NULL, &d))
			goto fail;
		if ((k + m) % 200000 == 0 || k + m == n)
			fprintf(stderr, "  %s: %ld / %ld events appended, %.1f s\n", file, k + m, n,
			        now() - t0);
	}
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "bench_runtime: %s: %s\n", p, sl_diag_msg(&d));
out:
	sl_store_close(s);
	return rc || sync_file(p);
}

/* a: event k goes to stream k % streams. */
static long round_robin(long k, long streams)
{
	return k % streams;
}

/* c: stream i gets two events; k runs over 0, 0, 1, 1, 2, 2, ... */
static long two_each(long k, long unused)
{
	(void)unused;
	return k / 2;
}

/* ---- child: the bare loop -------------------------------------------------------- */

struct bare {
	lua_State *L;
	struct sl_store *s;
	int fn_ref;
	const char *stream;
	int64_t last; /* last offset read */
	long got;     /* events read by the current chunk */
	long long events;
	struct sl_diag d;
};

/* One stored event: the payload converted and the reduce function called, with the
 * state at stack index 1. Raises only on memory errors (see bare_stream). */
static int bare_event(void *ud, const struct sl_event *ev)
{
	struct bare *b = ud;
	lua_State *L = b->L;

	b->got++;
	b->last = ev->offset;
	if (strcmp(ev->type, EVENT_TYPE)) /* stream/created */
		return 0;
	lua_rawgeti(L, LUA_REGISTRYINDEX, b->fn_ref);
	lua_pushvalue(L, 1);
	lua_createtable(L, 0, 1);
	if (sl_lj_decode(L, ev->payload, ev->payload_len, 0, &b->d))
		return b->d.code;
	lua_setfield(L, -2, "payload");
	lua_call(L, 2, 1);
	lua_replace(L, 1);
	b->events++;
	return 0;
}

/* Protected: folds one stream from the initial state {count = 0}, reading it in
 * chunks of BATCH, and returns the final count. sl_store_read runs inside this
 * protected call, so a memory error raised by Lua would unwind through SQLite's
 * frames; the benchmark then stops, and nothing of the store is used again.
 * [-1, +1, e] */
static int bare_stream(lua_State *L)
{
	struct bare *b = lua_touserdata(L, 1);
	int rc;

	lua_settop(L, 0);
	lua_createtable(L, 0, 1);
	lua_pushinteger(L, 0);
	lua_setfield(L, -2, "count");
	b->last = 0;
	do {
		b->got = 0;
		if ((rc = sl_store_read(b->s, b->stream, b->last + 1, BATCH, NULL, bare_event, b,
		                        &b->d)))
			return luaL_error(L, "%s: %s", b->stream, sl_diag_msg(&b->d));
	} while (b->got == BATCH);
	lua_getfield(L, 1, "count");
	return 1;
}

/* Loads counter.lua in a plain state and keeps reduce["counter/incremented"]. */
static int bare_load(struct bare *b)
{
	lua_State *L = b->L;

	luaL_openlibs(L);
	if (luaL_dofile(L, SCRIPT)) {
		fprintf(stderr, "bench_runtime: %s\n", lua_tostring(L, -1));
		return -1;
	}
	if (!lua_istable(L, -1) || lua_getfield(L, -1, "reduce") != LUA_TTABLE ||
	    lua_getfield(L, -1, EVENT_TYPE) != LUA_TFUNCTION) {
		fprintf(stderr, "bench_runtime: %s: no reduce[\"%s\"]\n", SCRIPT, EVENT_TYPE);
		return -1;
	}
	b->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_settop(L, 0);
	return 0;
}

static int child_bare(const char *store, long streams, struct child_result *out)
{
	struct sl_store_opts o = {SL_DURABILITY_NORMAL, 1, NULL, NULL};
	struct bare b;
	char name[64];
	double t0 = now();
	long i;
	int rc = -1;

	memset(&b, 0, sizeof(b));
	sl_diag_init(&b.d);
	if (!(b.L = luaL_newstate()) || bare_load(&b))
		goto out;
	if (sl_store_open(&b.s, store, &o, &b.d)) {
		fprintf(stderr, "bench_runtime: %s\n", sl_diag_msg(&b.d));
		goto out;
	}
	out->events = 0;
	for (i = 0; i < streams; i++) {
		stream_name(name, sizeof(name), i);
		b.stream = name;
		lua_pushcfunction(b.L, bare_stream);
		lua_pushlightuserdata(b.L, &b);
		if (lua_pcall(b.L, 1, 1, 0) != LUA_OK) {
			fprintf(stderr, "bench_runtime: bare loop: %s\n", lua_tostring(b.L, -1));
			goto out;
		}
		out->events += lua_tointeger(b.L, -1);
		lua_pop(b.L, 1);
	}
	out->secs = now() - t0;
	out->insts = streams;
	if (out->events != b.events) {
		fprintf(stderr, "bench_runtime: bare loop counted %lld, reduced %lld events\n",
		        out->events, b.events);
		goto out;
	}
	rc = 0;
out:
	sl_store_close(b.s);
	if (b.L)
		lua_close(b.L);
	return rc;
}

/* ---- child: the engine ------------------------------------------------------------ */

/* Sums the counters of the instances' states and counts the instances whose offset
 * is their stream's head (1 + the stream's events: stream/created is at offset 1). */
struct state_check {
	struct child_result *out;
	long long behind;
	struct sl_diag *d;
};

static int check_state(void *ud, const struct sl_state_row *r)
{
	struct state_check *c = ud;
	const char *p = strstr(r->state_json, "\"count\":"); /* state_json ends in a NUL */
	long long count, per = (long long)r->offset - 1;

	if (!p)
		return sl_diag_set(c->d, SL_EINVAL, "no count in the state of '%s'",
		                   r->stream ? r->stream : "");
	count = atoll(p + 8);
	c->out->events += count;
	c->out->insts++;
	if (count != per || strcmp(r->status, "ok"))
		c->behind++;
	return 0;
}

static int child_engine(const char *deploy, struct child_result *out)
{
	struct sl_host *h = NULL;
	struct sl_errs errs;
	struct sl_diag d;
	struct state_check check = {out, 0, &d};
	size_t i;
	double t0;
	int rc = -1;

	sl_errs_init(&errs);
	sl_diag_init(&d);
	t0 = now();
	if (sl_host_open(&h, deploy, SL_HOST_RUN, &errs)) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "bench_runtime: %s\n", errs.msg[i]);
		goto out;
	}
	if (sl_host_run(h, 1, &d)) {
		fprintf(stderr, "bench_runtime: run: %s\n", sl_diag_msg(&d));
		goto out;
	}
	out->secs = now() - t0;
	out->hwm_kib = peak_rss_kib(); /* before the check below adds its own memory */
	out->events = out->insts = 0;
	if (sl_host_state(h, "counter", NULL, check_state, &check, &d)) {
		fprintf(stderr, "bench_runtime: state: %s\n", sl_diag_msg(&d));
		goto out;
	}
	if (check.behind) {
		fprintf(stderr, "bench_runtime: %lld instances are not caught up\n", check.behind);
		rc = -1;
		goto out;
	}
	rc = 0;
out:
	sl_host_free(h);
	sl_errs_release(&errs);
	return rc;
}

/* bench_runtime --child bare STORE STREAMS FD | --child engine|engine-off DEPLOYMENT FD */
static int child_main(int argc, char **argv)
{
	struct child_result r = {0, 0, 0, -1};
	char line[256];
	int fd, rc, n;

	if (argc == 6 && !strcmp(argv[2], "bare")) {
		fd = atoi(argv[5]);
		rc = child_bare(argv[3], atol(argv[4]), &r);
		r.hwm_kib = peak_rss_kib();
	} else if (argc == 5 && (!strcmp(argv[2], "engine") || !strcmp(argv[2], "engine-off"))) {
		fd = atoi(argv[4]);
		if (!strcmp(argv[2], "engine-off") && setenv("SLUICE_BUDGETS", "off", 1))
			return 1;
		rc = child_engine(argv[3], &r);
	} else {
		fprintf(stderr, "bench_runtime: bad --child arguments\n");
		return 1;
	}
	if (rc)
		return 1;
	n = snprintf(line, sizeof(line), "%.6f %lld %lld %lld\n", r.secs, r.events, r.insts,
	             r.hwm_kib);
	return write(fd, line, (size_t)n) == n ? 0 : 1;
}

/* Runs this program with --child and the given arguments, the result fd appended. */
static int run_child(const char *what, const char *a1, const char *a2, struct child_result *r)
{
	char self[4096], fdtext[16], text[256];
	ssize_t len, n;
	int pfd[2], status;
	pid_t pid;

	if ((len = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0) {
		fprintf(stderr, "bench_runtime: /proc/self/exe: %s\n", strerror(errno));
		return -1;
	}
	self[len] = '\0';
	if (pipe(pfd)) {
		fprintf(stderr, "bench_runtime: pipe: %s\n", strerror(errno));
		return -1;
	}
	fflush(NULL);
	if ((pid = fork()) < 0) {
		fprintf(stderr, "bench_runtime: fork: %s\n", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		close(pfd[0]);
		snprintf(fdtext, sizeof(fdtext), "%d", pfd[1]);
		if (a2)
			execl(self, self, "--child", what, a1, a2, fdtext, (char *)NULL);
		else
			execl(self, self, "--child", what, a1, fdtext, (char *)NULL);
		fprintf(stderr, "bench_runtime: exec %s: %s\n", self, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	len = 0;
	while (len < (ssize_t)sizeof(text) - 1 &&
	       ((n = read(pfd[0], text + len, sizeof(text) - 1 - (size_t)len)) > 0 ||
	        (n < 0 && errno == EINTR)))
		len += n > 0 ? n : 0;
	text[len] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) ||
	    sscanf(text, "%lf %lld %lld %lld", &r->secs, &r->events, &r->insts, &r->hwm_kib) != 4) {
		fprintf(stderr, "bench_runtime: the %s child failed\n", what);
		return -1;
	}
	return 0;
}

/* ---- the run --------------------------------------------------------------------- */

struct totals {
	double bare_rate, engine_rate;  /* a, best of the rounds */
	double engine_off_rate;         /* e: a without budgets, best of the rounds */
	long long bare_hwm, engine_hwm; /* KiB, highest of the rounds */
	double inst_secs, inst_bare_secs;
	long long inst_hwm, inst_bare_hwm, inst_events;
};

static int expect(const char *what, long long got, long long want)
{
	if (got == want)
		return 0;
	fprintf(stderr, "bench_runtime: %s: got %lld, expected %lld\n", what, got, want);
	return -1;
}

static int catchup_bare(const struct config *c, struct totals *t)
{
	struct child_result r;
	char store[sizeof(dir) + 64], streams[32];

	path_of(store, sizeof(store), "catchup.db");
	snprintf(streams, sizeof(streams), "%ld", c->streams);
	if (run_child("bare", store, streams, &r) ||
	    expect("bare loop events", r.events, c->events))
		return -1;
	fprintf(stderr, "  bare loop: %.2f s, %.0f ev/s, peak RSS %.1f MiB\n", r.secs,
	        (double)c->events / r.secs, (double)r.hwm_kib / 1024);
	if ((double)c->events / r.secs > t->bare_rate)
		t->bare_rate = (double)c->events / r.secs;
	if (r.hwm_kib > t->bare_hwm)
		t->bare_hwm = r.hwm_kib;
	return 0;
}

/* One catch-up run of the engine, with its budgets (off: SLUICE_BUDGETS=off). */
static int catchup_engine_run(const struct config *c, struct totals *t, int off)
{
	struct child_result r;
	char deploy[sizeof(dir) + 64];
	int rc;

	path_of(deploy, sizeof(deploy), "catchup.deploy.lua");
	if (copy_store("catchup.db", "run.db"))
		return -1;
	rc = run_child(off ? "engine-off" : "engine", deploy, NULL, &r);
	remove_store("run.db");
	if (rc || expect("engine events", r.events, c->events) ||
	    expect("engine instances", r.insts, c->streams))
		return -1;
	fprintf(stderr, "  engine%s: %.2f s, %.0f ev/s, peak RSS %.1f MiB\n",
	        off ? " (budgets off)" : "", r.secs, (double)c->events / r.secs,
	        (double)r.hwm_kib / 1024);
	if (off) {
		if ((double)c->events / r.secs > t->engine_off_rate)
			t->engine_off_rate = (double)c->events / r.secs;
		return 0;
	}
	if ((double)c->events / r.secs > t->engine_rate)
		t->engine_rate = (double)c->events / r.secs;
	if (r.hwm_kib > t->engine_hwm)
		t->engine_hwm = r.hwm_kib;
	return 0;
}

static int catchup_engine(const struct config *c, struct totals *t)
{
	return catchup_engine_run(c, t, 0);
}

static int catchup_engine_off(const struct config *c, struct totals *t)
{
	return catchup_engine_run(c, t, 1);
}

static int run_catchup(const struct config *c, struct totals *t)
{
	int i;

	fprintf(stderr, "a. catch-up: appending %ld events over %ld streams\n", c->events,
	        c->streams);
	if (write_deploy("catchup.deploy.lua", "run.db") ||
	    populate("catchup.db", c->events, round_robin, c->streams))
		return -1;
	for (i = 0; i < c->rounds; i++) {
		fprintf(stderr, "a. catch-up, round %d of %d\n", i + 1, c->rounds);
		if (stopped())
			return -1;
		/* take turns going first; the run without budgets sits in between */
		if (i & 1 ? catchup_engine(c, t) || catchup_engine_off(c, t) || catchup_bare(c, t)
		          : catchup_bare(c, t) || catchup_engine_off(c, t) || catchup_engine(c, t))
			return -1;
	}
	if (!c->keep)
		remove_store("catchup.db");
	return 0;
}

static int instances_bare(const struct config *c, long long events, struct totals *t)
{
	struct child_result r;
	char store[sizeof(dir) + 64], n[32];

	path_of(store, sizeof(store), "instances.db");
	snprintf(n, sizeof(n), "%ld", c->instances);
	if (run_child("bare", store, n, &r) || expect("bare loop events", r.events, events))
		return -1;
	fprintf(stderr, "  bare loop: %.2f s, peak RSS %.1f MiB\n", r.secs,
	        (double)r.hwm_kib / 1024);
	if (!t->inst_bare_secs || r.secs < t->inst_bare_secs)
		t->inst_bare_secs = r.secs;
	if (r.hwm_kib > t->inst_bare_hwm)
		t->inst_bare_hwm = r.hwm_kib;
	return 0;
}

static int instances_engine(const struct config *c, long long events, struct totals *t)
{
	struct child_result r;
	char deploy[sizeof(dir) + 64];
	int rc;

	path_of(deploy, sizeof(deploy), "instances.deploy.lua");
	if (copy_store("instances.db", "run.db"))
		return -1;
	rc = run_child("engine", deploy, NULL, &r);
	remove_store("run.db");
	if (rc || expect("engine events", r.events, events) ||
	    expect("engine instances", r.insts, c->instances))
		return -1;
	fprintf(stderr, "  engine: %.2f s, peak RSS %.1f MiB\n", r.secs, (double)r.hwm_kib / 1024);
	if (!t->inst_secs || r.secs < t->inst_secs)
		t->inst_secs = r.secs;
	if (r.hwm_kib > t->inst_hwm)
		t->inst_hwm = r.hwm_kib;
	return 0;
}

/* c, d: the same rounds as a, each engine run on a fresh copy of the store; the
 * fastest time of each side and the highest peak RSS are kept. */
static int run_instances(const struct config *c, struct totals *t)
{
	long long events = c->instances * 2;
	int i;

	fprintf(stderr, "c. %ld instances: appending %lld events\n", c->instances, events);
	if (write_deploy("instances.deploy.lua", "run.db") ||
	    populate("instances.db", (long)events, two_each, 0))
		return -1;
	t->inst_events = events;
	for (i = 0; i < c->inst_rounds; i++) {
		fprintf(stderr, "c. %ld instances, round %d of %d\n", c->instances, i + 1,
		        c->inst_rounds);
		if (stopped())
			return -1;
		if (i & 1 ? instances_engine(c, events, t) || instances_bare(c, events, t)
		          : instances_bare(c, events, t) || instances_engine(c, events, t))
			return -1;
	}
	if (!c->keep)
		remove_store("instances.db");
	return 0;
}

/* ---- the table ------------------------------------------------------------------- */

static int row_passes(const struct row *r)
{
	double ratio = r->limit > 0 ? r->result / r->limit : 0;

	switch (r->kind) {
	case T_RATIO_MIN:
		return ratio >= r->target;
	case T_RESULT_MAX:
		return r->result <= r->target;
	case T_RESULT_MIN:
		return r->result >= r->target;
	default:
		return 1;
	}
}

static const char *amount(char *out, size_t n, double v, const struct row *r)
{
	char g[32];

	if (r->fmt_mib)
		snprintf(out, n, "%.1f %s", v, r->unit);
	else
		snprintf(out, n, "%s %s", group(g, sizeof(g), v), r->unit);
	return out;
}

static void print_row(const struct row *r)
{
	char a[48], result[48], limit[80], target[32];

	amount(result, sizeof(result), r->result, r);
	snprintf(limit, sizeof(limit), "%s (%s)", amount(a, sizeof(a), r->limit, r), r->limit_name);
	if (r->kind == T_RATIO_MIN)
		snprintf(target, sizeof(target), "ratio >= %.2f", r->target);
	else if (r->kind == T_RESULT_MAX)
		snprintf(target, sizeof(target), "<= %.0f %s", r->target, r->unit);
	else if (r->kind == T_RESULT_MIN)
		snprintf(target, sizeof(target), ">= %.0f %s", r->target, r->unit);
	else
		snprintf(target, sizeof(target), "none (reported)");
	printf("| %-52s | %-16s | %-40s | %5.3f | %-18s | %s |\n", r->bench, result, limit,
	       r->limit > 0 ? r->result / r->limit : 0.0, target,
	       r->kind == T_NONE ? "  info"
	       : row_passes(r)   ? "✓ pass"
	                         : "✗ FAIL");
}
static int print_table(const struct config *c, const struct row *rows, const struct totals *t)
{
	char n[32], m[32], e[32];
	int i, missed = 0;

	printf("\nsluice runtime benchmark: counter.lua, mode \"each\", batchSize %d, durability"
	       " NORMAL, %s\n\n",
	       BATCH, LUA_RELEASE);
	printf("| %-52s | %-16s | %-40s | %5s | %-18s | %s |\n", "benchmark", "result",
	       "limit/baseline", "ratio", "target", "mark  ");
	printf("|%s|%s|%s|%s|%s|%s|\n", dashes(54), dashes(18), dashes(42), dashes(7), dashes(20),
	       dashes(8));
	for (i = 0; i < ROW_COUNT; i++) {
		if (!rows[i].bench)
			continue;
		print_row(&rows[i]);
		missed += !row_passes(&rows[i]);
	}
	if (rows[ROW_CATCHUP].bench)
		printf("\na: %s events over %ld streams (%s each), best of %d rounds; the bare"
		       " loop's\nprocess peaked at %.1f MiB.\n",
		       group(n, sizeof(n), (double)c->events), c->streams,
		       group(m, sizeof(m), (double)(c->events / c->streams)), c->rounds,
		       (double)t->bare_hwm / 1024);
	if (rows[ROW_INST_RATE].bench)
		printf("%s%s streams with two events each (%s events), best of %d rounds: the "
		       "engine"
		       " took %.2f s\n(%s ev/s), the bare loop %.2f s (peak RSS %.1f MiB).\n",
		       rows[ROW_CATCHUP].bench ? "c, d: " : "\nc, d: ",
		       group(n, sizeof(n), (double)c->instances),
		       group(m, sizeof(m), (double)t->inst_events), c->inst_rounds, t->inst_secs,
		       group(e, sizeof(e), (double)t->inst_events / t->inst_secs),
		       t->inst_bare_secs, (double)t->inst_bare_hwm / 1024);
	printf("%s\n", missed ? "some targets were missed" : "all targets met");
	return missed;
}

/* ---- main ------------------------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr,
	        "usage: bench_runtime [--events N] [--streams N] [--instances N] [--rounds N]\n"
	        "                     [--instance-rounds N] [--dir DIR] [--keep] [--strict]\n"
	        "  --events N     catch-up events (1000000; 0 skips a and b)\n"
	        "  --streams N    streams the catch-up events are spread over (10)\n"
	        "  --instances N  streams of two events for c and d (1000000; 0 skips)\n"
	        "  --rounds N     rounds of a, b and e, best kept (3)\n"
	        "  --instance-rounds N  rounds of c and d, best kept (1)\n"
	        "  --dir DIR      where to make the temporary directory (/tmp)\n"
	        "  --keep         keep the directory and its stores (for profiling)\n"
	        "  --strict       exit 1 when a target is missed\n");
	return 1;
}

static int parse_long(const char *text, long *out)
{
	char *end;

	errno = 0;
	*out = text ? strtol(text, &end, 10) : 0;
	return text && !errno && end != text && !*end && *out >= 0 ? 0 : -1;
}

static int parse(int argc, char **argv, struct config *c)
{
	long rounds;
	int i;

	for (i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--strict"))
			c->strict = 1;
		else if (!strcmp(argv[i], "--keep"))
			c->keep = 1;
		else if (!strcmp(argv[i], "--events") && !parse_long(val, &c->events))
			i++;
		else if (!strcmp(argv[i], "--streams") && !parse_long(val, &c->streams) &&
		         c->streams > 0)
			i++;
		else if (!strcmp(argv[i], "--instances") && !parse_long(val, &c->instances))
			i++;
		else if (!strcmp(argv[i], "--instance-rounds") && !parse_long(val, &rounds) &&
		         rounds > 0 && rounds < 100)
			c->inst_rounds = (int)rounds, i++;
		else if (!strcmp(argv[i], "--rounds") && !parse_long(val, &rounds) && rounds > 0 &&
		         rounds < 100)
			c->rounds = (int)rounds, i++;
		else if (!strcmp(argv[i], "--dir") && val)
			c->base = argv[++i];
		else
			return -1;
	}
	if (c->events % c->streams) {
		fprintf(stderr, "bench_runtime: --events must be a multiple of --streams\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct config c = {1000000, 10, 1000000, ROUNDS, 1, "/tmp", 0, 0};
	struct totals t;
	struct row rows[ROW_COUNT];
	char rss_label[64], rate_label[64], n[32];
	struct sigaction sa;
	double t0 = now();
	int rc = 0, missed;

	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child_main(argc, argv);
	if (parse(argc, argv, &c))
		return usage();
	memset(&t, 0, sizeof(t));
	memset(rows, 0, sizeof(rows));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	snprintf(dir, sizeof(dir), "%s/sluice-bench-XXXXXX", c.base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, "bench_runtime: cannot create a directory in %s: %s\n", c.base,
		        strerror(errno));
		return 1;
	}
	fprintf(stderr, "bench_runtime: working in %s\n", dir);
	if (c.events && run_catchup(&c, &t))
		rc = 1;
	if (!rc && c.instances && run_instances(&c, &t))
		rc = 1;
	if (c.keep)
		fprintf(stderr, "bench_runtime: kept %s\n", dir);
	else
		remove_dir();
	if (rc)
		return 1;
	fprintf(stderr, "bench_runtime: done in %.1f s\n", now() - t0);
	if (c.events) {
		rows[ROW_CATCHUP] = (struct row){"a. catch-up through sl_host_run (best of rounds)",
		                                 t.engine_rate,
		                                 t.bare_rate,
		                                 "ev/s",
		                                 "bare decode + reduce",
		                                 0.7,
		                                 T_RATIO_MIN,
		                                 0};
		rows[ROW_CATCHUP_RSS] = (struct row){"b. catch-up: peak RSS of the engine process",
		                                     (double)t.engine_hwm / 1024,
		                                     (double)t.bare_hwm / 1024,
		                                     "MiB",
		                                     "bare loop process",
		                                     0,
		                                     T_NONE,
		                                     1};
		rows[ROW_BUDGETS] = (struct row){"e. catch-up with budgets on (best of rounds)",
		                                 t.engine_rate,
		                                 t.engine_off_rate,
		                                 "ev/s",
		                                 "same, SLUICE_BUDGETS=off",
		                                 0.9,
		                                 T_RATIO_MIN,
		                                 0};
	}
	if (c.instances) {
		snprintf(rss_label, sizeof(rss_label), "c. %s instances in mode each: peak RSS",
		         group(n, sizeof(n), (double)c.instances));
		snprintf(rate_label, sizeof(rate_label), "d. %s instances: caught up per second",
		         group(n, sizeof(n), (double)c.instances));
		rows[ROW_INST_RSS] = (struct row){rss_label,     (double)t.inst_hwm / 1024,
		                                  RSS_LIMIT_MIB, "MiB",
		                                  "target",      RSS_LIMIT_MIB,
		                                  T_RESULT_MAX,  1};
		rows[ROW_INST_RATE] = (struct row){rate_label,
		                                   (double)c.instances / t.inst_secs,
		                                   (double)c.instances / t.inst_bare_secs,
		                                   "inst/s",
		                                   "bare loop, same streams",
		                                   INST_RATE_MIN,
		                                   T_RESULT_MIN,
		                                   0};
	}
	missed = print_table(&c, rows, &t);
	return c.strict && missed ? 1 : 0;
}
