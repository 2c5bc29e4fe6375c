/* bench_live.c - measures `sluice run` as a service: how soon an append by another
 * process reaches processEvent, and what an idle run over many streams costs.
 *
 * Every figure comes from a real `sluice run` (the binary next to this program, or
 * --sluice PATH) started as a child with its log on a pipe (--log-format json
 * --log-level debug). The processor (probe.lua) logs "seen <offset>" from
 * processEvent; a reader thread stamps each log line with the monotonic clock when
 * it arrives, so the time of processEvent is known to within a pipe read. Events
 * are appended by this process (another process than the runner) through
 * sl_store_append, durability "normal".
 *
 *   a. latency: after the runner took its lease, N events (default 5 000) are
 *      appended to one stream at R events/s (default 1 000), each at its slot of a
 *      fixed schedule; the latency of an event is from the start of its append call
 *      to the arrival of its "seen" line. p50 and p99 are reported; target p99
 *      <= 10 ms.
 *   b. idle: S streams (default 1 000 000) with one event each, processed once by
 *      `sluice run --until-caught-up` (its time is reported); then a live `sluice
 *      run` on them: its start-up time until it runs the processor, its CPU share
 *      (utime + stime from /proc/PID/stat) over 5 s of idleness after a settling
 *      second (target < 2 % of a core), and the time from appending one event to a
 *      stream among them to its processEvent, the median of 5 such events on
 *      streams spread over the set (target < 100 ms).
 *
 * The catch-up figures are bench_runtime's (make bench runs both). Progress goes to
 * stderr, the table to stdout; exit 1 after an error (with --strict, also when a
 * target is missed). The scratch directory under /tmp is removed at the end unless
 * --keep.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sl_error.h"
#include "sl_store.h"

#define BENCH_NAME "bench_live"
#include "bench_util.h"

struct config {
	long events, rate, streams, idle_secs, probes;
	int keep, strict;
	const char *base;
	char sluice[PATH_MAX];
};

/* ---- the runner and its log ---------------------------------------------------------- */

struct runner {
	pid_t pid;
	int fd;
	pthread_t reader;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ready, eof;
	double *seen;  /* arrival of "seen <offset>" by offset (0: not yet) */
	long nseen;    /* capacity of seen */
	char want[64]; /* the stream whose "seen" lines count ("": every stream) */
	long count;    /* "seen" lines counted */
	char last[64]; /* with want "": the stream of the last one, and when */
	double last_at;
};

/* The value of "field":"..." in a JSON log line, copied into out. */
static int field(const char *line, const char *name, char *out, size_t n)
{
	char key[64];
	const char *p, *e;

	snprintf(key, sizeof(key), "\"%s\":\"", name);
	if (!(p = strstr(line, key)))
		return 0;
	p += strlen(key);
	if (!(e = strchr(p, '"')) || (size_t)(e - p) >= n)
		return 0;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	return 1;
}

static void on_line(struct runner *r, const char *line, double at)
{
	char msg[128], stream[64];

	if (!field(line, "msg", msg, sizeof(msg)))
		return;
	pthread_mutex_lock(&r->mu);
	if (!strncmp(msg, "running processor", 17))
		r->ready = 1;
	if (!strncmp(msg, "seen ", 5) && field(line, "stream", stream, sizeof(stream)) &&
	    (!*r->want || !strcmp(stream, r->want))) {
		long off = atol(msg + 5);
		if (*r->want && off > 0 && off < r->nseen && !r->seen[off])
			r->seen[off] = at;
		snprintf(r->last, sizeof(r->last), "%s", stream);
		r->last_at = at;
		r->count++;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

static void *read_log(void *ud)
{
	struct runner *r = ud;
	char buf[65536];
	size_t len = 0;
	ssize_t got;

	while ((got = read(r->fd, buf + len, sizeof(buf) - 1 - len)) > 0 ||
	       (got < 0 && errno == EINTR)) {
		double at = now();
		char *line = buf, *nl;
		if (got < 0)
			continue;
		len += (size_t)got;
		buf[len] = '\0';
		while ((nl = strchr(line, '\n'))) {
			*nl = '\0';
			on_line(r, line, at);
			line = nl + 1;
		}
		len -= (size_t)(line - buf);
		memmove(buf, line, len);
		if (len == sizeof(buf) - 1)
			len = 0; /* a line longer than the buffer: dropped */
	}
	pthread_mutex_lock(&r->mu);
	r->eof = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* Starts `sluice run DEPLOY --log-format json --log-level debug` with its stderr
 * on a pipe read by a thread. */
static int start_runner(struct runner *r, const struct config *c, const char *deploy, long nseen,
                        const char *want)
{
	int p[2];

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	snprintf(r->want, sizeof(r->want), "%s", want);
	if (!(r->seen = calloc((size_t)nseen, sizeof(double))) || pipe(p))
		return -1;
	r->nseen = nseen;
	if ((r->pid = fork()) < 0)
		return -1;
	if (r->pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execl(c->sluice, c->sluice, "run", deploy, "--log-format", "json", "--log-level",
		      "debug", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	r->fd = p[0];
	return pthread_create(&r->reader, NULL, read_log, r) ? -1 : 0;
}

/* Waits until cond(r) holds or secs pass; 1 if it holds. */
static int wait_for(struct runner *r, int (*cond)(struct runner *, long), long arg, double secs)
{
	double until = now() + secs;
	int ok;

	pthread_mutex_lock(&r->mu);
	while (!(ok = cond(r, arg)) && !r->eof && now() < until && !interrupted) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	return ok;
}

static int is_ready(struct runner *r, long arg)
{
	(void)arg;
	return r->ready;
}

static int seen_count(struct runner *r, long n)
{
	return r->count >= n;
}

static void stop_runner(struct runner *r)
{
	int status;

	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, &status, 0);
	}
	if (r->fd > 0) {
		pthread_join(r->reader, NULL);
		close(r->fd);
	}
	free(r->seen);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	r->pid = 0;
}

/* CPU seconds (user + system) the process used so far. */
static double cpu_secs(pid_t pid)
{
	char path[64], buf[2048], *p;
	unsigned long ut, st;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After the command in parentheses: state is field 3; utime, stime 14, 15. */
	if (!(p = strrchr(buf, ')')) ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- the fixture --------------------------------------------------------------------- */

static int write_file(const char *name, const char *text)
{
	char p[4200];
	FILE *f;

	path_of(p, sizeof(p), name);
	if (!(f = fopen(p, "w")))
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int write_fixture(void)
{
	char p[4200];

	path_of(p, sizeof(p), "schemas");
	if (mkdir(p, 0755) && errno != EEXIST)
		return -1;
	return write_file("schemas/probe.contract.json",
	                  "{ \"name\": \"probe\", \"version\": 1, \"consumes\": [\"t/tick\"],"
	                  " \"emits\": [], \"events\": { \"t/tick\": {\"type\": \"object\"} },"
	                  " \"state\": {\"type\": \"object\", \"required\": [\"n\"],"
	                  " \"properties\": {\"n\": {\"type\": \"integer\"}}},"
	                  " \"initialState\": {\"n\": 0} }\n") ||
	       write_file("probe.lua",
	                  "return {\n  contract = \"probe\",\n"
	                  "  reduce = { [\"t/tick\"] = function(s) return { n = s.n + 1 } end },\n"
	                  "  processEvent = { [\"t/tick\"] = function(event, ctx)\n"
	                  "    ctx.log.info(\"seen \" .. event.offset)\n  end },\n}\n") ||
	       write_file("live.deploy.lua",
	                  "return { store = \"live.db\", durability = \"normal\","
	                  " schemas = { \"schemas\" },\n  processors = { probe = { script ="
	                  " \"probe.lua\", streams = \"live/*\" } } }\n") ||
	       write_file("idle.deploy.lua",
	                  "return { store = \"idle.db\", durability = \"normal\","
	                  " schemas = { \"schemas\" },\n  processors = { probe = { script ="
	                  " \"probe.lua\", streams = \"idle/*\" } } }\n");
}

static int open_store(struct sl_store **s, const char *file)
{
	struct sl_store_opts o = {SL_DURABILITY_NORMAL, 0, NULL, NULL, NULL, 0, NULL};
	struct sl_diag d;
	char p[4200];

	sl_diag_init(&d);
	path_of(p, sizeof(p), file);
	if (sl_store_open(s, p, &o, &d)) {
		fprintf(stderr, BENCH_NAME ": %s\n", sl_diag_msg(&d));
		return -1;
	}
	return 0;
}

static int append_one(struct sl_store *s, const char *stream)
{
	struct sl_event_in ev = {stream, "t/tick", "{}", 2, NULL, 0, NULL, 0};
	struct sl_append_result res;
	struct sl_diag d;

	sl_diag_init(&d);
	if (sl_store_append(s, &ev, 1, &res, 0, NULL, &d)) {
		fprintf(stderr, BENCH_NAME ": append to %s: %s\n", stream, sl_diag_msg(&d));
		return -1;
	}
	return (int)res.offset;
}

static void sleep_until(double t)
{
	struct timespec ts;
	double left = t - now();

	if (left <= 0)
		return;
	ts.tv_sec = (time_t)left;
	ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) && errno == EINTR && !interrupted)
		;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ---- a. latency ------------------------------------------------------------------------ */

struct results {
	double p50, p99, pmax;
	long lost;
	double seed_secs, first_run_secs, start_secs, cpu_share, new_event_ms, new_event_max;
	int have_latency, have_idle;
};

static int bench_latency(const struct config *c, struct results *out)
{
	struct sl_store *s;
	struct runner r;
	char deploy[4200];
	double *start = calloc((size_t)c->events + 1, sizeof(double)), *lat, t0;
	long i, n = 0, first;
	int rc = -1;

	/* The stream exists before the runner starts (its events so far predate the
	 * side-effect anchor); the timed events follow at offsets first + 1... */
	path_of(deploy, sizeof(deploy), "live.deploy.lua");
	if (!start || open_store(&s, "live.db") || (first = append_one(s, "live/a")) < 1)
		return -1;
	fprintf(stderr, "a. latency: %ld events at %ld/s to live/a\n", c->events, c->rate);
	if (start_runner(&r, c, deploy, first + c->events + 1, "live/a") ||
	    !wait_for(&r, is_ready, 0, 30)) {
		fprintf(stderr, BENCH_NAME ": the runner did not start\n");
		goto out;
	}
	t0 = now() + 0.2;
	for (i = 1; i <= c->events && !stopped(); i++) {
		sleep_until(t0 + (double)i / (double)c->rate);
		start[i] = now();
		if (append_one(s, "live/a") != first + i)
			goto out;
	}
	wait_for(&r, seen_count, c->events, 30);
	if (!(lat = malloc((size_t)c->events * sizeof(double))))
		goto out;
	pthread_mutex_lock(&r.mu);
	for (i = 1; i <= c->events; i++)
		if (r.seen[first + i])
			lat[n++] =
				(r.seen[first + i] > start[i] ? r.seen[first + i] - start[i] : 0) *
				1000;
	pthread_mutex_unlock(&r.mu);
	qsort(lat, (size_t)n, sizeof(double), cmp_double);
	out->lost = c->events - n;
	if (n) {
		out->p50 = lat[n / 2];
		out->p99 = lat[(size_t)((double)(n - 1) * 0.99)];
		out->pmax = lat[n - 1];
		out->have_latency = 1;
	}
	fprintf(stderr, "  p50 %.2f ms, p99 %.2f ms, max %.2f ms, %ld not seen\n", out->p50,
	        out->p99, out->pmax, out->lost);
	free(lat);
	rc = out->lost ? -1 : 0;
out:
	stop_runner(&r);
	sl_store_close(s);
	free(start);
	return rc;
}

/* ---- b. idle over many streams ----------------------------------------------------------- */

static int seed_streams(const struct config *c)
{
	struct sl_event_in *ev = calloc(1000, sizeof(*ev));
	struct sl_append_result *res = calloc(1000, sizeof(*res));
	char(*names)[32] = calloc(1000, 32);
	struct sl_store *s;
	struct sl_diag d;
	long i, k, m;
	int rc = -1;

	if (!ev || !res || !names || open_store(&s, "idle.db"))
		goto out;
	for (i = 0; i < c->streams && !stopped(); i += m) {
		m = c->streams - i < 1000 ? c->streams - i : 1000;
		for (k = 0; k < m; k++) {
			snprintf(names[k], 32, "idle/%ld", i + k);
			ev[k] = (struct sl_event_in){names[k], "t/tick", "{}", 2, NULL, 0, NULL, 0};
		}
		sl_diag_init(&d);
		if (sl_store_append(s, ev, (size_t)m, res, 0, NULL, &d)) {
			fprintf(stderr, BENCH_NAME ": %s\n", sl_diag_msg(&d));
			break;
		}
		if ((i + m) % 100000 == 0)
			fprintf(stderr, "  %ld streams\n", i + m);
	}
	rc = i >= c->streams ? 0 : -1;
	sl_store_close(s);
out:
	free(ev);
	free(res);
	free(names);
	return rc;
}

/* sluice run DEPLOY --until-caught-up, its stderr to this one's. */
static int run_until_caught_up(const struct config *c, const char *deploy)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		execl(c->sluice, c->sluice, "run", deploy, "--until-caught-up", "--progress",
		      (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		return -1;
	return 0;
}

static int bench_idle(const struct config *c, struct results *out)
{
	struct sl_store *s = NULL;
	struct runner r;
	char deploy[4200], stream[32];
	double t, cpu0, cpu1, t0, t1, *ms = calloc((size_t)c->probes, sizeof(double));
	long i;
	int rc = -1;

	path_of(deploy, sizeof(deploy), "idle.deploy.lua");
	fprintf(stderr, "b. idle: %ld streams with one event each\n", c->streams);
	t = now();
	if (!ms || seed_streams(c))
		return -1;
	out->seed_secs = now() - t;
	fprintf(stderr, "  appended in %.1f s; sluice run --until-caught-up over them\n",
	        out->seed_secs);
	t = now();
	if (run_until_caught_up(c, deploy)) {
		fprintf(stderr, BENCH_NAME ": sluice run --until-caught-up failed\n");
		return -1;
	}
	out->first_run_secs = now() - t;
	fprintf(stderr, "  caught up in %.1f s; a live run over them\n", out->first_run_secs);
	t = now();
	if (start_runner(&r, c, deploy, 4, "") || !wait_for(&r, is_ready, 0, 600)) {
		fprintf(stderr, BENCH_NAME ": the runner did not start\n");
		goto out;
	}
	out->start_secs = now() - t;
	sleep_until(now() + 1); /* a settling second, not measured */
	t0 = now();
	cpu0 = cpu_secs(r.pid);
	sleep_until(t0 + (double)c->idle_secs);
	t1 = now();
	cpu1 = cpu_secs(r.pid);
	if (cpu0 < 0 || cpu1 < 0)
		goto out;
	out->cpu_share = (cpu1 - cpu0) / (t1 - t0) * 100;
	fprintf(stderr, "  start-up %.2f s, idle CPU %.2f %% of a core over %.1f s\n",
	        out->start_secs, out->cpu_share, t1 - t0);
	if (open_store(&s, "idle.db"))
		goto out;
	for (i = 0; i < c->probes; i++) {
		long before = r.count;
		/* Streams spread over the set: each gets its second event. */
		snprintf(stream, sizeof(stream), "idle/%ld",
		         (c->streams - 1) * (i + 1) / (c->probes + 1));
		t = now();
		if (append_one(s, stream) < 2 || !wait_for(&r, seen_count, before + 1, 10) ||
		    strcmp(r.last, stream)) {
			fprintf(stderr, BENCH_NAME ": the event on %s was not processed\n", stream);
			goto out;
		}
		ms[i] = (r.last_at - t) * 1000;
		fprintf(stderr, "  a new event on %s processed after %.2f ms\n", stream, ms[i]);
		sleep_until(now() + 0.2);
	}
	qsort(ms, (size_t)c->probes, sizeof(double), cmp_double);
	out->new_event_ms = ms[c->probes / 2];
	out->new_event_max = ms[c->probes - 1];
	out->have_idle = 1;
	rc = 0;
out:
	stop_runner(&r);
	sl_store_close(s);
	free(ms);
	return rc;
}

/* ---- the table -------------------------------------------------------------------------- */

static int print_row(const char *name, double v, const char *unit, double target, int info)
{
	char result[32], tgt[32];
	int pass = v <= target;

	snprintf(result, sizeof(result), "%.2f %s", v, unit);
	if (info)
		snprintf(tgt, sizeof(tgt), "none (reported)");
	else
		snprintf(tgt, sizeof(tgt), "<= %g %s", target, unit);
	printf("| %-56s | %-14s | %-18s | %5.3f | %s |\n", name, result, tgt,
	       info ? 0.0 : v / target,
	       info   ? "  info"
	       : pass ? "✓ pass"
	              : "✗ FAIL");
	return info || pass ? 0 : 1;
}

static int print_table(const struct config *c, const struct results *r)
{
	char n[32], label[96];
	int missed = 0;

	printf("\nsluice live benchmark: a real `sluice run`, durability NORMAL; ratio = result "
	       "/ target\n\n");
	printf("| %-56s | %-14s | %-18s | %5s | %s |\n", "benchmark", "result", "target", "ratio",
	       "mark  ");
	printf("|%s|%s|%s|%s|%s|\n", dashes(58), dashes(16), dashes(20), dashes(7), dashes(8));
	if (r->have_latency) {
		snprintf(label, sizeof(label), "a. append -> processEvent at %ld ev/s: p50",
		         c->rate);
		missed += print_row(label, r->p50, "ms", 10, 1);
		snprintf(label, sizeof(label), "a. append -> processEvent at %ld ev/s: p99",
		         c->rate);
		missed += print_row(label, r->p99, "ms", 10, 0);
	}
	if (r->have_idle) {
		group(n, sizeof(n), (double)c->streams);
		snprintf(label, sizeof(label), "b. idle run over %s caught-up streams: CPU", n);
		missed += print_row(label, r->cpu_share, "% core", 2, 0);
		snprintf(label, sizeof(label), "b. one new event among %s streams: processed", n);
		missed += print_row(label, r->new_event_ms, "ms", 100, 0);
		snprintf(label, sizeof(label), "b. live run over %s streams: start-up", n);
		missed += print_row(label, r->start_secs, "s", 0, 1);
		snprintf(label, sizeof(label), "b. first catch-up of %s one-event streams", n);
		missed += print_row(label, r->first_run_secs, "s", 0, 1);
	}
	if (r->have_latency)
		printf("\na: %ld events, max %.2f ms.", c->events, r->pmax);
	if (r->have_idle)
		printf("%sb: new-event time is the median of %ld streams (max %.2f ms); the "
		       "streams "
		       "were appended in %.1f s.\n",
		       r->have_latency ? " " : "\n", c->probes, r->new_event_max, r->seed_secs);
	printf("%s\n", missed ? "some targets were missed" : "all targets met");
	return missed;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: bench_live [--events N] [--rate R] [--streams S] [--idle-secs T]\n"
	                "                  [--sluice PATH] [--dir DIR] [--keep] [--strict]\n"
	                "  --events N     events of the latency run (5000)\n"
	                "  --rate R       their rate per second (1000)\n"
	                "  --streams S    caught-up streams of the idle run (1000000; 0 skips it)\n"
	                "  --idle-secs T  the idle CPU window (5)\n"
	                "  --sluice PATH  the sluice binary (default: next to this program)\n"
	                "  --dir DIR      where the scratch directory goes (/tmp)\n"
	                "  --keep         keep the scratch directory\n"
	                "  --strict       exit 1 when a target is missed\n");
}

int main(int argc, char **argv)
{
	struct config c = {5000, 1000, 1000000, 5, 5, 0, 0, "/tmp", ""};
	struct results res = {0};
	double t0 = now();
	char cmd[8300];
	int i, rc = 0, missed;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--keep"))
			c.keep = 1;
		else if (!strcmp(a, "--strict"))
			c.strict = 1;
		else if (v && !strcmp(a, "--events") && (c.events = atol(v)) > 0)
			i++;
		else if (v && !strcmp(a, "--rate") && (c.rate = atol(v)) > 0)
			i++;
		else if (v && !strcmp(a, "--streams") && (c.streams = atol(v)) >= 0)
			i++;
		else if (v && !strcmp(a, "--idle-secs") && (c.idle_secs = atol(v)) > 0)
			i++;
		else if (v && !strcmp(a, "--sluice"))
			snprintf(c.sluice, sizeof(c.sluice), "%s", argv[++i]);
		else if (v && !strcmp(a, "--dir"))
			c.base = argv[++i];
		else {
			usage();
			return strcmp(a, "--help") ? 2 : 0;
		}
	}
	if (!*c.sluice) {
		ssize_t n = readlink("/proc/self/exe", c.sluice, sizeof(c.sluice) - 8);
		char *slash;
		if (n <= 0)
			return 1;
		c.sluice[n] = '\0';
		if ((slash = strrchr(c.sluice, '/')))
			strcpy(slash + 1, "sluice");
	}
	if (access(c.sluice, X_OK)) {
		fprintf(stderr, BENCH_NAME ": no sluice binary at %s (--sluice PATH)\n", c.sluice);
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s/sluice-bench-XXXXXX", c.base);
	if (!mkdtemp(dir) || write_fixture()) {
		fprintf(stderr, BENCH_NAME ": cannot set up %s: %s\n", dir, strerror(errno));
		return 1;
	}
	fprintf(stderr, BENCH_NAME ": working in %s with %s\n", dir, c.sluice);
	if (bench_latency(&c, &res))
		rc = 1;
	if (c.streams > 0 && !interrupted && bench_idle(&c, &res))
		rc = 1;
	if (c.keep) {
		fprintf(stderr, BENCH_NAME ": kept %s\n", dir);
	} else {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			fprintf(stderr, BENCH_NAME ": could not remove %s\n", dir);
	}
	fprintf(stderr, BENCH_NAME ": done in %.1f s\n", now() - t0);
	missed = print_table(&c, &res);
	return rc || (c.strict && missed) ? 1 : 0;
}
