/* bench_runtime.c - measures the engine at run time: catch-up through the pump
 * against a lua5.4 + cjson loop calling the same reduce, the cost of an event at ten
 * times the events, and a deployment of 1 000 000 instances.
 *
 * Taken in one run on a fresh directory under /tmp that is removed at the end, with
 * every file in it. All use processors/counter.lua with schemas/counter.contract.json,
 * in mode "each" over the streams counters/N, batchSize 1000, durability "normal"
 * (WAL commit without fsync; FULL would time the disk's fsync rate once per batch,
 * not the engine), driven through the public engine API: a deployment file is written
 * into the directory, the events are appended with sl_store_append in batches of 1000,
 * and the timed part is sl_host_open + sl_host_run(h, until_caught_up = 1).
 *
 *   a. catch-up: 1 000 000 `counter/incremented {"by":1}` events spread round-robin
 *      over 1, 100 and 100 000 streams (1 000 000, 10 000 and 10 events a stream),
 *      each case in its own store: read, converted, validated, reduced and committed
 *      batch by batch (one transaction each). The events predate the run, so they are
 *      below the side-effect anchor: processEvent does not run, as for any processor
 *      deployed over an existing store. Each case is measured against its own
 *      references over the same events, in the order the engine's instances reduce
 *      them (stream by stream, offset by offset):
 *      (i)   the target, issue 13's reference: reference.lua, a script this program
 *            writes into the directory and runs with the lua5.4 interpreter and
 *            lua-cjson. It holds every event in memory as the JSON line of the whole
 *            stored event ({"stream":"counters/3","offset":5,"position":...,"type":
 *            "counter/incremented","payload":{"by":1},"createdAt":"..."}), decodes
 *            each with cjson.decode and passes it to counter.lua's own
 *            reduce["counter/incremented"](state, event), with one state per stream
 *            (states[stream], from {count = 0}) as mode "each" keeps them. Target:
 *            the engine at 0.7 of it or better. The lines are the store's own events
 *            (their positions and createdAt, which a whole append batch shares),
 *            written once a case into catchup-N.jsonl and read by the script before
 *            its loop.
 *      (ii)  info: the same script over the payload strings '{"by":1}' only, each
 *            decoded and wrapped with the envelope's fields, taken out of the lines
 *            before the loop and held as Lua values, into {stream, offset, position,
 *            type, createdAt, payload}.
 *      (iii) info: a C loop in a plain lua_State reading the same streams with
 *            sl_store_read in chunks of 1000, converting each payload with
 *            sl_lj_decode into {payload = ...} and calling the same reduce. Nothing
 *            is validated or committed.
 *      The script reads its strings before its loop; the loop's wall time is taken
 *      here, between the script's "ready" and "done" lines (its os.clock() time goes
 *      to the notes). The sides take turns, ROUNDS times, the engine each round on a
 *      fresh copy of the store (it writes checkpoints), and the best of each is kept.
 *   b. peak RSS of the engine in each case of (a), beside the C loop's process (the
 *      script holds all its strings in memory, so its peak is in the notes only).
 *   c. 1 000 000 streams, each with two counter events (2 000 000 events), run until
 *      caught up: 1 000 000 instances, each loaded, fed one batch and committed. Peak
 *      RSS, target at most 1 GiB.
 *   d. the same run as instances per second, beside the C loop over the same streams.
 *      Target: at least 100 000 instances/s. Like a, alternating rounds
 *      (--instance-rounds, 1 by default: a round takes half a minute), the engine's on
 *      a fresh copy of the store each time; the fastest of each side and the highest
 *      peak RSS are kept.
 *   e. the cost of the sandbox's budgets: the 1-stream catch-up of (a) with the
 *      default budgets (instruction count hook, counting allocator, wall clock)
 *      against the same run with SLUICE_BUDGETS=off (no hook, no memory limit).
 *      Target: on at 0.9 of off or better. Measured in the rounds of (a), best of each.
 *   f. cost growth (issue 13, item 6): the engine's wall time per event catching up
 *      10 000 000 events on one stream, against the 1-stream case of (a) run just
 *      before and just after it (the mean of the two). Target: a ratio between 0.85
 *      and 1.15. The large store is made once and caught up once, in place. Peak RSS
 *      of both sizes as info.
 *
 * BENCH_QUICK=1 (or --quick) makes f's large run 3 000 000 events; everything else
 * keeps its size. Every timed part runs in a child process (fork + exec of this
 * program with --child, or of lua5.4), so its peak RSS (VmHWM of /proc/self/status,
 * read by the child once it is done, the script too) is its own and not
 * the parent's, which wrote the stores. Each child checks its result (the sum of the
 * counters, every stream's state) before it reports, so a fast wrong answer cannot
 * pass.
 *
 * Progress goes to stderr, the table to stdout. Exit status 0, or 1 after an error
 * (with --strict, also when a target is missed).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

#define BATCH 1000 /* events per append batch, per engine batch, per C loop read */
#define ROUNDS 3   /* rounds of each measurement of a (each side) */
#define PREFIX "counters"
#define EVENT_TYPE "counter/incremented"
#define PAYLOAD "{\"by\":1}"
#define SCRIPT SL_SOURCE_DIR "/processors/counter.lua"
#define SCHEMAS SL_SOURCE_DIR "/schemas"
#define REFERENCE "reference.lua" /* the script of (i) and (ii), in dir */
#define MAX_CASES 8
#define MAX_ROWS 48
#define REF_MIN 0.7     /* a: engine / reference (i) */
#define BUDGETS_MIN 0.9 /* e: on / off */
#define GROWTH_LO 0.85  /* f: large / small cost per event */
#define GROWTH_HI 1.15
#define GROWTH_EVENTS 10000000L /* f, large run */
#define GROWTH_QUICK 3000000L   /* f, large run with --quick */
#define RSS_LIMIT_MIB 1024.0
#define INST_RATE_MIN 100000.0 /* d: instances per second */

struct config {
	long events;             /* a: counter events of each case */
	long streams[MAX_CASES]; /* a: the cases, by the streams the events are spread over */
	int ncases;
	long growth;    /* f: events of the large run (0 skips f) */
	long instances; /* c: streams of two events */
	int rounds;
	int inst_rounds; /* of c and d */
	const char *base, *lua;
	int strict, keep;
};

/* What one child reports. */
struct child_result {
	double secs;
	double cpu;       /* CPU seconds: user + system of a child, os.clock() of the script */
	long long events; /* events reduced (sum of the counters) */
	long long insts;  /* instances caught up (engine), streams read (C loop) or streams
	                     whose state is right (script) */
	long long hwm_kib;
};

/* One line of the table. */
enum target_kind { T_RATIO_MIN, T_RATIO_BAND, T_RESULT_MAX, T_RESULT_MIN, T_NONE };
struct row {
	const char *bench;
	double result, limit;
	const char *unit, *limit_name;
	double target, target_hi; /* target_hi: the band's top, T_RATIO_BAND only */
	enum target_kind kind;
	int fmt_mib; /* result and limit are MiB, shown with one decimal */
};

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

/* CPU seconds (user + system) this process and its threads used so far. */
static double cpu_seconds(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
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
	struct sl_store_opts o = {
		SL_DURABILITY_NORMAL, 0, NULL, NULL, NULL, 0, NULL}; /* no core types */
	static struct sl_event_in ev[BATCH];
	static struct sl_append_result res[BATCH];
	static char names[BATCH][64];
	char p[sizeof(dir) + 64];
	struct sl_store *s = NULL;
	struct sl_diag d;
	double t0 = now();
	long k, m, j, every = n > 2000000 ? 1000000 : 200000; /* progress lines */
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
		if ((k + m) % every == 0 || k + m == n)
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

/* ---- child: the C loop (iii) ----------------------------------------------------- */

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
	struct sl_store_opts o = {SL_DURABILITY_NORMAL, 1, NULL, NULL, NULL, 0, NULL};
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
			fprintf(stderr, "bench_runtime: C loop: %s\n", lua_tostring(b.L, -1));
			goto out;
		}
		out->events += lua_tointeger(b.L, -1);
		lua_pop(b.L, 1);
	}
	out->secs = now() - t0;
	out->insts = streams;
	if (out->events != b.events) {
		fprintf(stderr, "bench_runtime: C loop counted %lld, reduced %lld events\n",
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
	out->cpu = cpu_seconds();
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
	struct child_result r = {0, 0, 0, 0, -1};
	char line[256];
	int fd, rc, n;

	if (argc == 6 && !strcmp(argv[2], "bare")) {
		fd = atoi(argv[5]);
		rc = child_bare(argv[3], atol(argv[4]), &r);
		r.hwm_kib = peak_rss_kib();
		r.cpu = cpu_seconds();
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
	n = snprintf(line, sizeof(line), "%.6f %.6f %lld %lld %lld\n", r.secs, r.cpu, r.events,
	             r.insts, r.hwm_kib);
	return write(fd, line, (size_t)n) == n ? 0 : 1;
}

/* A pipe, then fork: the child's pid (0 in the child), or -1 (said on stderr). */
static pid_t fork_piped(int pfd[2])
{
	pid_t pid;

	if (pipe(pfd)) {
		fprintf(stderr, "bench_runtime: pipe: %s\n", strerror(errno));
		return -1;
	}
	fflush(NULL);
	if ((pid = fork()) < 0) {
		fprintf(stderr, "bench_runtime: fork: %s\n", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
	}
	return pid;
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
	if ((pid = fork_piped(pfd)) < 0)
		return -1;
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
	    sscanf(text, "%lf %lf %lld %lld %lld", &r->secs, &r->cpu, &r->events, &r->insts,
	           &r->hwm_kib) != 5) {
		fprintf(stderr, "bench_runtime: the %s child failed\n", what);
		return -1;
	}
	return 0;
}

/* ---- the lua5.4 + cjson reference ------------------------------------------------ */

/* reference.lua, run as `lua5.4 reference.lua SCRIPT VARIANT EVENTS PER`: the events
 * of one case of (a), read from the file EVENTS (the stored events as JSON lines,
 * stream by stream, written by dump_events) into memory, then each decoded with
 * cjson.decode and passed to SCRIPT's reduce["counter/incremented"], one state per
 * stream. VARIANT "lines" holds and decodes each whole line; "payloads" takes the
 * envelope's fields out of the lines first (as Lua values) and holds and decodes only
 * the payload's text. Its output: "ready" once the strings are in memory and the
 * garbage of reading them collected, "done" when the loop ends, then "result CPU SUM
 * RIGHT HWM" (os.clock() seconds of the loop, the sum of the counts, the streams whose
 * count is PER, its VmHWM in KiB). */
static const char reference_lua[] =
	"-- reference.lua - written by bench_runtime: the lua5.4 + cjson reference loop.\n"
	"local cjson = require(\"cjson\")\n"
	"local script, variant, events, per = arg[1], arg[2], arg[3], tonumber(arg[4])\n"
	"local reduce = dofile(script).reduce[\"" EVENT_TYPE "\"]\n"
	"local decode, format = cjson.decode, string.format\n"
	"local lines, names, offsets, positions, types, times, payloads = {}, {}, {}, {}, {}, {}, "
	"{}\n"
	"local n = 0\n"
	"for line in io.lines(events) do\n"
	"  n = n + 1\n"
	"  if variant == \"lines\" then\n"
	"    lines[n] = line\n"
	"  else\n"
	"    local e = decode(line)\n"
	"    names[n], types[n], times[n] = e.stream, e.type, e.createdAt\n"
	"    offsets[n], positions[n] = math.tointeger(e.offset), math.tointeger(e.position)\n"
	"    payloads[n] = cjson.encode(e.payload)\n"
	"  end\n"
	"end\n"
	"collectgarbage(\"collect\")\n"
	"io.stdout:write(\"ready\\n\")\n"
	"io.stdout:flush()\n"
	"local states = {}\n"
	"local t0 = os.clock()\n"
	"if variant == \"lines\" then\n"
	"  for j = 1, n do\n"
	"    local event = decode(lines[j])\n"
	"    local name = event.stream\n"
	"    states[name] = reduce(states[name] or { count = 0 }, event)\n"
	"  end\n"
	"else\n"
	"  for j = 1, n do\n"
	"    local name = names[j]\n"
	"    local event = { stream = name, offset = offsets[j], position = positions[j],\n"
	"                    type = types[j], createdAt = times[j], payload = decode(payloads[j]) "
	"}\n"
	"    states[name] = reduce(states[name] or { count = 0 }, event)\n"
	"  end\n"
	"end\n"
	"local cpu = os.clock() - t0\n"
	"io.stdout:write(\"done\\n\")\n"
	"io.stdout:flush()\n"
	"local sum, right = 0, 0\n"
	"for _, state in pairs(states) do\n"
	"  sum = sum + state.count\n"
	"  if state.count == per then right = right + 1 end\n"
	"end\n"
	"local status, hwm = io.open(\"/proc/self/status\"), -1\n"
	"if status then\n"
	"  hwm = tonumber(status:read(\"a\"):match(\"VmHWM:%s*(%d+)\")) or -1\n"
	"  status:close()\n"
	"end\n"
	"io.stdout:write(format(\"result %.6f %d %d %d\\n\", cpu, math.tointeger(sum) or -1,\n"
	"                       right, hwm))\n";

/* dump_events: writes one counter event as the JSON line of the whole stored event.
 * Streams and types here are plain names (no character JSON must escape); the
 * payload is stored compact and goes in as it is. */
struct dump {
	FILE *f;
	int64_t last;
	long got, events;
};

static int dump_event(void *ud, const struct sl_event *ev)
{
	struct dump *x = ud;

	x->got++;
	x->last = ev->offset;
	if (strcmp(ev->type, EVENT_TYPE)) /* stream/created */
		return 0;
	x->events++;
	fprintf(x->f,
	        "{\"stream\":\"%s\",\"offset\":%lld,\"position\":%lld,\"type\":\"%s\","
	        "\"payload\":%.*s,\"createdAt\":\"%s\"}\n",
	        ev->stream, (long long)ev->offset, (long long)ev->position, ev->type,
	        (int)ev->payload_len, ev->payload, ev->created_at);
	return 0;
}

/* Writes the counter events of the store `file` into `out` (both in dir), stream by
 * stream in offset order, the order the engine's instances reduce them: the input of
 * reference.lua, made once a case. */
static int dump_events(const char *file, long streams, long want, const char *out)
{
	struct sl_store_opts o = {SL_DURABILITY_NORMAL, 1, NULL, NULL, NULL, 0, NULL};
	char store[sizeof(dir) + 64], p[sizeof(dir) + 64], name[64];
	struct sl_store *s = NULL;
	struct dump x = {NULL, 0, 0, 0};
	struct sl_diag d;
	long i;
	int rc = -1;

	sl_diag_init(&d);
	path_of(store, sizeof(store), file);
	path_of(p, sizeof(p), out);
	if (!(x.f = fopen(p, "w"))) {
		fprintf(stderr, "bench_runtime: cannot create %s: %s\n", p, strerror(errno));
		return -1;
	}
	if (sl_store_open(&s, store, &o, &d))
		goto fail;
	for (i = 0; i < streams; i++) {
		stream_name(name, sizeof(name), i);
		x.last = 0;
		do {
			x.got = 0;
			if (sl_store_read(s, name, x.last + 1, 100000, NULL, dump_event, &x, &d))
				goto fail;
		} while (x.got == 100000);
	}
	rc = x.events == want ? 0 : -1;
	if (rc)
		fprintf(stderr, "bench_runtime: %s: %ld events written, expected %ld\n", p,
		        x.events, want);
	goto out;
fail:
	fprintf(stderr, "bench_runtime: %s: %s\n", store, sl_diag_msg(&d));
out:
	sl_store_close(s);
	if (fclose(x.f) && !rc) {
		fprintf(stderr, "bench_runtime: %s: %s\n", p, strerror(errno));
		rc = -1;
	}
	return rc;
}

static int write_reference(void)
{
	char p[sizeof(dir) + 64];
	FILE *f;

	path_of(p, sizeof(p), REFERENCE);
	if (!(f = fopen(p, "w")) || fputs(reference_lua, f) == EOF || fclose(f)) {
		fprintf(stderr, "bench_runtime: cannot write %s: %s\n", p, strerror(errno));
		return -1;
	}
	return 0;
}

/* Reads the script's lines until it closes its output: the wall time between "ready"
 * and "done", and its result line. */
static int read_reference(int fd, struct child_result *r)
{
	char line[256];
	double t0 = 0, t1 = 0;
	int got = 0;
	FILE *f = fdopen(fd, "r");

	if (!f) {
		close(fd);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		if (!strcmp(line, "ready\n"))
			t0 = now();
		else if (!strcmp(line, "done\n"))
			t1 = now();
		else if (sscanf(line, "result %lf %lld %lld %lld", &r->cpu, &r->events, &r->insts,
		                &r->hwm_kib) == 4)
			got = 1;
	}
	fclose(f);
	r->secs = t1 - t0;
	return got && t0 > 0 && t1 > 0 ? 0 : -1;
}

/* Runs reference.lua over the file `events` (in dir) of streams of `per` events; r as
 * a child's. */
static int run_reference(const struct config *c, const char *variant, const char *events, long per,
                         struct child_result *r)
{
	char script[sizeof(dir) + 64], e_path[sizeof(dir) + 64], p_text[32];
	char *argv[] = {(char *)c->lua, script, SCRIPT, (char *)variant, e_path, p_text, NULL};
	int pfd[2], status, rc;
	pid_t pid;

	path_of(script, sizeof(script), REFERENCE);
	path_of(e_path, sizeof(e_path), events);
	snprintf(p_text, sizeof(p_text), "%ld", per);
	if ((pid = fork_piped(pfd)) < 0)
		return -1;
	if (pid == 0) {
		close(pfd[0]);
		if (dup2(pfd[1], 1) < 0)
			_exit(126);
		close(pfd[1]);
		execvp(c->lua, argv);
		fprintf(stderr, "bench_runtime: exec %s: %s (make deps installs lua5.4)\n", c->lua,
		        strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	rc = read_reference(pfd[0], r);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (rc || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "bench_runtime: %s %s %s failed\n", c->lua, REFERENCE, variant);
		return -1;
	}
	return 0;
}

/* ---- the run --------------------------------------------------------------------- */

/* The sides of a case of (a), in the order of a round (reversed every other round). */
enum side { S_LINES, S_PAYLOADS, S_CLOOP, S_ENGINE_OFF, S_ENGINE, S_COUNT };

static const char *const side_name[S_COUNT] = {"(i) lua5.4 + cjson, event lines",
                                               "(ii) lua5.4 + cjson, payloads", "(iii) C loop",
                                               "engine, budgets off", "engine"};

/* The best of one side's rounds: wall-clock rate, the CPU rate of that run, and the
 * highest peak RSS of all its runs. */
struct best {
	double rate, cpu_rate;
	long long hwm_kib;
};

struct case_totals {
	long streams;
	int ran[S_COUNT];
	struct best side[S_COUNT];
};

struct totals {
	struct case_totals cases[MAX_CASES];
	int budgets_case; /* the case of (e): the one stream case, or -1 */
	/* f: seconds, CPU seconds and peak RSS of the small run before and after the
	 * large one, and of the large run */
	double growth_small[2], growth_small_cpu[2], growth_big, growth_big_cpu;
	long long growth_small_hwm, growth_big_hwm;
	int have_growth;
	double inst_secs, inst_bare_secs;
	long long inst_hwm, inst_bare_hwm, inst_events;
};

static int expect(const char *who, const char *what, long long got, long long want)
{
	if (got == want)
		return 0;
	fprintf(stderr, "bench_runtime: %s: %s: got %lld, expected %lld\n", who, what, got, want);
	return -1;
}

static void case_store(char *out, size_t n, long streams)
{
	snprintf(out, n, "catchup-%ld.db", streams);
}

/* The stored events of a case as JSON lines, reference.lua's input. */
static void case_events(char *out, size_t n, long streams)
{
	snprintf(out, n, "catchup-%ld.jsonl", streams);
}

/* One engine catch-up of a copy of the store `file` (catchup.deploy.lua runs run.db). */
static int engine_run(const char *file, int off, struct child_result *r)
{
	char deploy[sizeof(dir) + 64];
	int rc;

	path_of(deploy, sizeof(deploy), "catchup.deploy.lua");
	if (copy_store(file, "run.db"))
		return -1;
	rc = run_child(off ? "engine-off" : "engine", deploy, NULL, r);
	remove_store("run.db");
	return rc;
}

/* One run of one side over the store of a case; its figures go into ct. */
static int run_side(const struct config *c, struct case_totals *ct, enum side s)
{
	struct child_result r;
	char file[64], events[64], store[sizeof(dir) + 64], n[32];
	struct best *b = &ct->side[s];
	double rate;
	int rc;

	memset(&r, 0, sizeof(r));
	case_store(file, sizeof(file), ct->streams);
	case_events(events, sizeof(events), ct->streams);
	path_of(store, sizeof(store), file);
	snprintf(n, sizeof(n), "%ld", ct->streams);
	if (s == S_ENGINE || s == S_ENGINE_OFF)
		rc = engine_run(file, s == S_ENGINE_OFF, &r);
	else if (s == S_CLOOP)
		rc = run_child("bare", store, n, &r);
	else
		rc = run_reference(c, s == S_LINES ? "lines" : "payloads", events,
		                   c->events / ct->streams, &r);
	if (rc || expect(side_name[s], "events", r.events, c->events) ||
	    expect(side_name[s], "streams caught up", r.insts, ct->streams))
		return -1;
	rate = (double)c->events / r.secs;
	fprintf(stderr, "  %s: %.2f s, %.0f ev/s (CPU %.2f s), peak RSS %.1f MiB\n", side_name[s],
	        r.secs, rate, r.cpu, (double)r.hwm_kib / 1024);
	if (rate > b->rate) {
		b->rate = rate;
		b->cpu_rate = r.cpu > 0 ? (double)c->events / r.cpu : 0;
	}
	if (r.hwm_kib > b->hwm_kib)
		b->hwm_kib = r.hwm_kib;
	ct->ran[s] = 1;
	return 0;
}

/* a, b (and e in the one-stream case): the rounds of one case. The store stays for f
 * when this is the one-stream case. */
static int run_case(const struct config *c, struct case_totals *ct, int budgets)
{
	enum side order[S_COUNT];
	char file[64], events[64], p[sizeof(dir) + 64];
	int n = 0, i, k;

	for (k = 0; k < S_COUNT; k++)
		if (k != S_ENGINE_OFF || budgets)
			order[n++] = (enum side)k;
	case_store(file, sizeof(file), ct->streams);
	case_events(events, sizeof(events), ct->streams);
	fprintf(stderr, "a. catch-up: appending %ld events over %ld streams\n", c->events,
	        ct->streams);
	if (populate(file, c->events, round_robin, ct->streams) ||
	    dump_events(file, ct->streams, c->events, events))
		return -1;
	for (i = 0; i < c->rounds; i++) {
		fprintf(stderr, "a. catch-up, %ld streams, round %d of %d\n", ct->streams, i + 1,
		        c->rounds);
		if (stopped())
			return -1;
		for (k = 0; k < n; k++)
			if (run_side(c, ct, order[i & 1 ? n - 1 - k : k]))
				return -1;
	}
	if (!c->keep && (ct->streams != 1 || !c->growth))
		remove_store(file);
	path_of(p, sizeof(p), events);
	if (!c->keep)
		unlink(p);
	return 0;
}

static int run_catchup(const struct config *c, struct totals *t)
{
	int i;

	t->budgets_case = -1;
	if (write_deploy("catchup.deploy.lua", "run.db") || write_reference())
		return -1;
	for (i = 0; i < c->ncases; i++) {
		t->cases[i].streams = c->streams[i];
		if (c->streams[i] == 1 && t->budgets_case < 0)
			t->budgets_case = i;
		if (run_case(c, &t->cases[i], t->budgets_case == i))
			return -1;
	}
	return 0;
}

/* f: the small catch-up (the one-stream store of a), the large one in place, the
 * small one again. */
static int run_growth(const struct config *c, struct totals *t)
{
	struct child_result r;
	char small[64], p[sizeof(dir) + 64], big_deploy[sizeof(dir) + 64];
	int i, rc;

	fprintf(stderr, "f. cost growth: %ld against %ld events on one stream\n", c->growth,
	        c->events);
	case_store(small, sizeof(small), 1);
	path_of(p, sizeof(p), small);
	path_of(big_deploy, sizeof(big_deploy), "growth.deploy.lua");
	if (write_deploy("catchup.deploy.lua", "run.db") ||
	    write_deploy("growth.deploy.lua", "growth.db") ||
	    (access(p, F_OK) && populate(small, c->events, round_robin, 1)) ||
	    populate("growth.db", c->growth, round_robin, 1))
		return -1;
	for (i = 0; i < 3; i++) {
		long want = i == 1 ? c->growth : c->events;

		if (stopped())
			return -1;
		memset(&r, 0, sizeof(r));
		rc = i == 1 ? run_child("engine", big_deploy, NULL, &r) : engine_run(small, 0, &r);
		if (rc || expect("engine", "events", r.events, want) ||
		    expect("engine", "instances caught up", r.insts, 1))
			return -1;
		fprintf(stderr,
		        "  engine, %ld events: %.2f s, %.0f ns/event (CPU %.0f), peak RSS "
		        "%.1f MiB\n",
		        want, r.secs, r.secs * 1e9 / (double)want, r.cpu * 1e9 / (double)want,
		        (double)r.hwm_kib / 1024);
		if (i == 1) {
			t->growth_big = r.secs;
			t->growth_big_cpu = r.cpu;
			t->growth_big_hwm = r.hwm_kib;
		} else {
			t->growth_small[i / 2] = r.secs;
			t->growth_small_cpu[i / 2] = r.cpu;
			if (r.hwm_kib > t->growth_small_hwm)
				t->growth_small_hwm = r.hwm_kib;
		}
	}
	if (!c->keep) {
		remove_store("growth.db");
		remove_store(small);
	}
	t->have_growth = 1;
	return 0;
}

static int instances_bare(const struct config *c, long long events, struct totals *t)
{
	struct child_result r;
	char store[sizeof(dir) + 64], n[32];

	path_of(store, sizeof(store), "instances.db");
	snprintf(n, sizeof(n), "%ld", c->instances);
	if (run_child("bare", store, n, &r) || expect("C loop", "events", r.events, events))
		return -1;
	fprintf(stderr, "  C loop: %.2f s, peak RSS %.1f MiB\n", r.secs, (double)r.hwm_kib / 1024);
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
	if (rc || expect("engine", "events", r.events, events) ||
	    expect("engine", "instances caught up", r.insts, c->instances))
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

struct table {
	struct row rows[MAX_ROWS];
	char labels[MAX_ROWS][96];
	int n;
};

/* A new row of tb, labelled by the format; the caller fills in the rest. */
static struct row *add_row(struct table *tb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static struct row *add_row(struct table *tb, const char *fmt, ...)
{
	struct row *r = &tb->rows[tb->n];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tb->labels[tb->n], sizeof(tb->labels[0]), fmt, ap);
	va_end(ap);
	memset(r, 0, sizeof(*r));
	r->bench = tb->labels[tb->n++];
	r->kind = T_NONE;
	return r;
}

static void set_row(struct row *r, double result, double limit, const char *unit,
                    const char *limit_name, enum target_kind kind, double target, int fmt_mib)
{
	r->result = result;
	r->limit = limit;
	r->unit = unit;
	r->limit_name = limit_name;
	r->kind = kind;
	r->target = target;
	r->fmt_mib = fmt_mib;
}

static int row_passes(const struct row *r)
{
	double ratio = r->limit > 0 ? r->result / r->limit : 0;

	switch (r->kind) {
	case T_RATIO_MIN:
		return ratio >= r->target;
	case T_RATIO_BAND:
		return ratio >= r->target && ratio <= r->target_hi;
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
	char a[48], result[48], limit[96], target[32];

	amount(result, sizeof(result), r->result, r);
	snprintf(limit, sizeof(limit), "%s (%s)", amount(a, sizeof(a), r->limit, r), r->limit_name);
	if (r->kind == T_RATIO_MIN)
		snprintf(target, sizeof(target), "ratio >= %.2f", r->target);
	else if (r->kind == T_RATIO_BAND)
		snprintf(target, sizeof(target), "ratio %.2f - %.2f", r->target, r->target_hi);
	else if (r->kind == T_RESULT_MAX)
		snprintf(target, sizeof(target), "<= %.0f %s", r->target, r->unit);
	else if (r->kind == T_RESULT_MIN)
		snprintf(target, sizeof(target), ">= %.0f %s", r->target, r->unit);
	else
		snprintf(target, sizeof(target), "none (reported)");
	printf("| %-56s | %-16s | %-46s | %5.3f | %-18s | %s |\n", r->bench, result, limit,
	       r->limit > 0 ? r->result / r->limit : 0.0, target,
	       r->kind == T_NONE ? "  info"
	       : row_passes(r)   ? "✓ pass"
	                         : "✗ FAIL");
}

/* "1 stream", "100 streams", "100 000 streams". */
static const char *streams_text(char *out, size_t n, long streams)
{
	char g[32];

	snprintf(out, n, "%s stream%s", group(g, sizeof(g), (double)streams),
	         streams == 1 ? "" : "s");
	return out;
}

/* a and b of one case. */
static void case_rows(struct table *tb, const struct config *c, const struct case_totals *ct)
{
	const struct best *s = ct->side;
	char st[48], per[32];

	streams_text(st, sizeof(st), ct->streams);
	group(per, sizeof(per), (double)(c->events / ct->streams));
	set_row(add_row(tb, "a. catch-up, %s x %s events", st, per), s[S_ENGINE].rate,
	        s[S_LINES].rate, "ev/s", "i: lua5.4+cjson, event lines", T_RATIO_MIN, REF_MIN, 0);
	set_row(add_row(tb, "   the same, against payload strings only"), s[S_ENGINE].rate,
	        s[S_PAYLOADS].rate, "ev/s", "ii: lua5.4+cjson, payloads", T_NONE, 0, 0);
	set_row(add_row(tb, "   the same, against the C loop"), s[S_ENGINE].rate, s[S_CLOOP].rate,
	        "ev/s", "iii: C loop, read + decode", T_NONE, 0, 0);
	set_row(add_row(tb, "b. catch-up, %s: peak RSS of the engine", st),
	        (double)s[S_ENGINE].hwm_kib / 1024, (double)s[S_CLOOP].hwm_kib / 1024, "MiB",
	        "iii: C loop process", T_NONE, 0, 1);
}

static void build_rows(struct table *tb, const struct config *c, const struct totals *t)
{
	static char small_name[48]; /* lives as long as the rows */
	char n1[32], n2[32];
	struct row *r;
	int i;

	for (i = 0; c->events && i < c->ncases; i++)
		case_rows(tb, c, &t->cases[i]);
	if (c->instances) {
		group(n1, sizeof(n1), (double)c->instances);
		set_row(add_row(tb, "c. %s instances in mode each: peak RSS", n1),
		        (double)t->inst_hwm / 1024, RSS_LIMIT_MIB, "MiB", "target", T_RESULT_MAX,
		        RSS_LIMIT_MIB, 1);
		set_row(add_row(tb, "d. %s instances: caught up per second", n1),
		        (double)c->instances / t->inst_secs,
		        (double)c->instances / t->inst_bare_secs, "inst/s", "C loop, same streams",
		        T_RESULT_MIN, INST_RATE_MIN, 0);
	}
	if (t->budgets_case >= 0) {
		const struct best *s = t->cases[t->budgets_case].side;

		set_row(add_row(tb, "e. catch-up, 1 stream, budgets on (best of rounds)"),
		        s[S_ENGINE].rate, s[S_ENGINE_OFF].rate, "ev/s", "same, SLUICE_BUDGETS=off",
		        T_RATIO_MIN, BUDGETS_MIN, 0);
	}
	if (t->have_growth) {
		double small = (t->growth_small[0] + t->growth_small[1]) / 2;

		group(n1, sizeof(n1), (double)c->growth);
		group(n2, sizeof(n2), (double)c->events);
		snprintf(small_name, sizeof(small_name), "%s events", n2);
		r = add_row(tb, "f. catch-up per event, %s vs %s events", n1, n2);
		set_row(r, t->growth_big * 1e9 / (double)c->growth, small * 1e9 / (double)c->events,
		        "ns/ev", "1 stream, mean of 2 runs", T_RATIO_BAND, GROWTH_LO, 0);
		r->target_hi = GROWTH_HI;
		set_row(add_row(tb, "f. catch-up, %s events: peak RSS", n1),
		        (double)t->growth_big_hwm / 1024, (double)t->growth_small_hwm / 1024, "MiB",
		        small_name, T_NONE, 0, 1);
	}
}

/* What the rows do not show: the CPU-time rates, the script's peak RSS. */
static void print_notes(const struct config *c, const struct totals *t)
{
	char n[32], m[32], e[32], st[48];
	int i;

	if (c->events && c->ncases) {
		printf("\na, b: %s events a case, best of %d round%s. By CPU time (the engine's "
		       "process, the\nscript's os.clock() of its loop), and the script's peak RSS "
		       "(it holds every string):\n",
		       group(n, sizeof(n), (double)c->events), c->rounds,
		       c->rounds == 1 ? "" : "s");
		for (i = 0; i < c->ncases; i++) {
			const struct best *s = t->cases[i].side;

			printf("  %s: engine %s ev/s; (i) %s ev/s, %.0f MiB; (ii) %s ev/s, %.0f "
			       "MiB; ratio %.3f to (i)\n",
			       streams_text(st, sizeof(st), t->cases[i].streams),
			       group(n, sizeof(n), s[S_ENGINE].cpu_rate),
			       group(m, sizeof(m), s[S_LINES].cpu_rate),
			       (double)s[S_LINES].hwm_kib / 1024,
			       group(e, sizeof(e), s[S_PAYLOADS].cpu_rate),
			       (double)s[S_PAYLOADS].hwm_kib / 1024,
			       s[S_LINES].cpu_rate > 0 ? s[S_ENGINE].cpu_rate / s[S_LINES].cpu_rate
			                               : 0.0);
		}
	}
	if (c->instances)
		printf("c, d: %s streams with two events each (%s events), best of %d round%s: the "
		       "engine took %.2f s\n(%s ev/s), the C loop %.2f s (peak RSS %.1f MiB).\n",
		       group(n, sizeof(n), (double)c->instances),
		       group(m, sizeof(m), (double)t->inst_events), c->inst_rounds,
		       c->inst_rounds == 1 ? "" : "s", t->inst_secs,
		       group(e, sizeof(e), (double)t->inst_events / t->inst_secs),
		       t->inst_bare_secs, (double)t->inst_bare_hwm / 1024);
	if (t->have_growth)
		printf("f: %s events took %.2f s (CPU %.2f s); %s events %.2f s and %.2f s "
		       "(CPU %.2f, %.2f s),\nbefore and after it; by CPU time the ratio is "
		       "%.3f.\n",
		       group(n, sizeof(n), (double)c->growth), t->growth_big, t->growth_big_cpu,
		       group(m, sizeof(m), (double)c->events), t->growth_small[0],
		       t->growth_small[1], t->growth_small_cpu[0], t->growth_small_cpu[1],
		       (t->growth_big_cpu / (double)c->growth) /
		               ((t->growth_small_cpu[0] + t->growth_small_cpu[1]) / 2 /
		                (double)c->events));
}

static int print_table(const struct config *c, const struct totals *t)
{
	static struct table tb;
	int i, missed = 0;

	build_rows(&tb, c, t);
	printf("\nsluice runtime benchmark: counter.lua, mode \"each\", batchSize %d, durability"
	       " NORMAL, %s\n\n",
	       BATCH, LUA_RELEASE);
	printf("| %-56s | %-16s | %-46s | %5s | %-18s | %s |\n", "benchmark", "result",
	       "limit/reference", "ratio", "target", "mark  ");
	printf("|%s|%s|%s|%s|%s|%s|\n", dashes(58), dashes(18), dashes(48), dashes(7), dashes(20),
	       dashes(8));
	for (i = 0; i < tb.n; i++) {
		print_row(&tb.rows[i]);
		missed += !row_passes(&tb.rows[i]);
	}
	print_notes(c, t);
	printf("%s\n", missed ? "some targets were missed" : "all targets met");
	return missed;
}

/* ---- main ------------------------------------------------------------------------ */

static int usage(void)
{
	fprintf(stderr,
	        "usage: bench_runtime [--events N] [--streams N,N,...] [--growth N] [--quick]\n"
	        "                     [--instances N] [--rounds N] [--instance-rounds N]\n"
	        "                     [--lua PATH] [--dir DIR] [--keep] [--strict]\n"
	        "  --events N     catch-up events of each case (1000000; 0 skips a, b, e, f)\n"
	        "  --streams LIST the cases: streams the events are spread over (1,100,100000)\n"
	        "  --growth N     events of f's large run (10000000; 0 skips f)\n"
	        "  --quick        f's large run at 3000000 events (as BENCH_QUICK=1)\n"
	        "  --instances N  streams of two events for c and d (1000000; 0 skips)\n"
	        "  --rounds N     rounds of a, b and e, best kept (3)\n"
	        "  --instance-rounds N  rounds of c and d, best kept (1)\n"
	        "  --lua PATH     the Lua 5.4 interpreter with lua-cjson (lua5.4)\n"
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

/* "1,100,100000" into c->streams. */
static int parse_streams(const char *text, struct config *c)
{
	char buf[256], *tok, *save = NULL;
	long v;

	if (!text || strlen(text) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", text);
	c->ncases = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (c->ncases == MAX_CASES || parse_long(tok, &v) || v < 1)
			return -1;
		c->streams[c->ncases++] = v;
	}
	return c->ncases ? 0 : -1;
}

static int parse_rounds(const char *text, int *out)
{
	long v;

	if (parse_long(text, &v) || v < 1 || v > 99)
		return -1;
	*out = (int)v;
	return 0;
}

static int parse(int argc, char **argv, struct config *c)
{
	const char *quick = getenv("BENCH_QUICK");
	int i, growth_set = 0;

	for (i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--strict"))
			c->strict = 1;
		else if (!strcmp(argv[i], "--keep"))
			c->keep = 1;
		else if (!strcmp(argv[i], "--quick"))
			quick = "1";
		else if (!strcmp(argv[i], "--events") && !parse_long(val, &c->events))
			i++;
		else if (!strcmp(argv[i], "--streams") && !parse_streams(val, c))
			i++;
		else if (!strcmp(argv[i], "--growth") && !parse_long(val, &c->growth))
			i++, growth_set = 1;
		else if (!strcmp(argv[i], "--instances") && !parse_long(val, &c->instances))
			i++;
		else if (!strcmp(argv[i], "--instance-rounds") &&
		         !parse_rounds(val, &c->inst_rounds))
			i++;
		else if (!strcmp(argv[i], "--rounds") && !parse_rounds(val, &c->rounds))
			i++;
		else if (!strcmp(argv[i], "--lua") && val)
			c->lua = argv[++i];
		else if (!strcmp(argv[i], "--dir") && val)
			c->base = argv[++i];
		else
			return -1;
	}
	if (!growth_set && quick && *quick && strcmp(quick, "0"))
		c->growth = GROWTH_QUICK;
	if (!c->events)
		c->growth = 0;
	for (i = 0; i < c->ncases; i++)
		if (c->events % c->streams[i]) {
			fprintf(stderr,
			        "bench_runtime: --events must be a multiple of every --streams\n");
			return -1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	struct config c = {1000000,  {1, 100, 100000},
	                   3,        GROWTH_EVENTS,
	                   1000000,  ROUNDS,
	                   1,        "/tmp",
	                   "lua5.4", 0,
	                   0};
	static struct totals t;
	struct sigaction sa;
	double t0 = now();
	int rc = 0, missed;

	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child_main(argc, argv);
	if (parse(argc, argv, &c))
		return usage();
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
	t.budgets_case = -1;
	if (c.events && run_catchup(&c, &t))
		rc = 1;
	if (!rc && c.growth && run_growth(&c, &t))
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
	missed = print_table(&c, &t);
	return c.strict && missed ? 1 : 0;
}
