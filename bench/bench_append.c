/* bench_append.c - measures `sluice append --jsonl` (peak memory, batch size) and how
 * long a single `sluice append` waits while a runner catches up.
 *
 * Every figure comes from the real binary (the sluice next to this program, or
 * --sluice PATH) run as a child; the inputs are written by bench/gen_jsonl.sh
 * (counter/incremented events round-robin over 100 streams, about 110 bytes a line).
 *
 *   a. peak RSS (the child's ru_maxrss) of `append --jsonl` at the default batch size
 *      into a fresh store (durability FULL), at 100 000, 1 000 000 and 3 000 000
 *      lines. Target: at most 64 MiB at every size.
 *   b. wall time of 100 000 events at the default --batch-size (no option given),
 *      against the fastest of 1 000, 5 000, 10 000, 50 000 and 100 000 (each the median of 3
 *      runs, taking turns in each round). Target: the default within 10 % of the
 *      fastest.
 *   c. the largest store of a (3 000 000 events over 100 streams) caught up by `sluice
 *      run --until-caught-up` (counter.lua, mode "each", durability FULL), while a
 *      single `sluice append` of another stream is started every 50 ms; the wait is
 *      the whole process's wall time. Reference: the median of 10 such appends on the
 *      idle store just before. Target: max and p99 at most 100 ms.
 *   d. cost growth (issue 13, item 6): wall time per line of `append --jsonl` at the
 *      default batch size into a fresh store, 10 000 000 lines against 1 000 000 (the
 *      mean of a run just before and one just after the large one), both inputs
 *      written into the scratch directory first. Target: a ratio between 0.85 and
 *      1.15. The large run's peak RSS beside the small one's, as info.
 *
 * BENCH_QUICK=1 (or --quick) shrinks a to 100 000, 300 000 and 1 000 000 lines (and
 * c to the 1 000 000), and d's large input to 3 000 000 lines. Progress goes to
 * stderr, the table to stdout; exit 1 after an error (with --strict, also when a
 * target is missed). The scratch directory under /tmp is removed at the end unless
 * --keep.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_append"
#include "bench_util.h"

#define STREAMS 100
#define TIMED_EVENTS 100000
#define TIMED_ROUNDS 3
#define RSS_LIMIT_MIB 64
#define PROBE_EVERY_MS 50
#define IDLE_PROBES 10
#define WAIT_TARGET_MS 100
#define MAX_PROBES 100000
#define GROWTH_LO 0.85 /* d: the large input's cost per line against the small one's */
#define GROWTH_HI 1.15

/* The timed --batch-size values; 0 is the binary's default (no --batch-size). */
static const long batch_sizes[] = {0, 1000, 5000, 10000, 50000, 100000};
#define NSIZES (sizeof(batch_sizes) / sizeof(batch_sizes[0]))

struct config {
	long sizes[3];
	long growth[2]; /* d: the small and the large input (0: d skipped) */
	int keep, strict;
	const char *base;
	char sluice[PATH_MAX];
};

struct results {
	int have_rss, have_batch, have_wait, have_growth;
	double rss_mib[3];
	double batch_secs[NSIZES];
	double idle_ms, wait_max, wait_p99, wait_p50, catchup_secs;
	long probes;
	double growth_small[2], growth_big; /* d: seconds: small, large, small again */
	double growth_small_mib, growth_big_mib;
};

/* ---- children ------------------------------------------------------------------------- */

/* Runs argv with stdin from in_path (or /dev/null) and stdout to out_path (or
 * /dev/null), stderr to this one's when show_err. Returns the exit status (-1: could
 * not run or killed); *secs is the wall time and *rss_kib the peak RSS, if not NULL. */
static int run(char *const argv[], const char *in_path, const char *out_path, int show_err,
               double *secs, long *rss_kib)
{
	double t0 = now();
	struct rusage ru;
	int status;
	pid_t pid;

	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
		int out =
			open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int null = open("/dev/null", O_WRONLY);
		if (in < 0 || out < 0 || null < 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		if (!show_err)
			dup2(null, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) < 0)
		return -1;
	if (secs)
		*secs = now() - t0;
	if (rss_kib)
		*rss_kib = ru.ru_maxrss;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Writes n lines of input into file (in the scratch directory). */
static int gen(long n, const char *file)
{
	char path[sizeof(dir) + 64], count[32], streams[16];
	char *argv[] = {"/bin/sh", SL_SOURCE_DIR "/bench/gen_jsonl.sh", count, streams, NULL};

	path_of(path, sizeof(path), file);
	snprintf(count, sizeof(count), "%ld", n);
	snprintf(streams, sizeof(streams), "%d", STREAMS);
	if (run(argv, NULL, path, 1, NULL, NULL)) {
		fprintf(stderr, BENCH_NAME ": gen_jsonl.sh %ld failed\n", n);
		return -1;
	}
	return 0;
}

/* Removes a store and its WAL files. */
static void remove_store(const char *file)
{
	static const char *const ext[] = {"", "-wal", "-shm"};
	char p[sizeof(dir) + 80];
	size_t i;

	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s%s", dir, file, ext[i]);
		unlink(p);
	}
}

/* sluice append --jsonl --store STORE [--batch-size B] < INPUT; B 0: the default. */
static int append_jsonl(const struct config *c, const char *input, const char *store, long batch,
                        double *secs, long *rss)
{
	char in[sizeof(dir) + 64], db[sizeof(dir) + 64], bs[32];
	char *argv[] = {(char *)c->sluice, "append", "--jsonl", "--store", db,
	                "--batch-size",    bs,       NULL};

	path_of(in, sizeof(in), input);
	path_of(db, sizeof(db), store);
	snprintf(bs, sizeof(bs), "%ld", batch);
	if (!batch)
		argv[5] = NULL;
	if (run(argv, in, NULL, 1, secs, rss)) {
		fprintf(stderr, BENCH_NAME ": sluice append --jsonl < %s failed\n", input);
		return -1;
	}
	return 0;
}

/* ---- a: peak memory -------------------------------------------------------------------- */

static int bench_rss(const struct config *c, struct results *r)
{
	double secs;
	long rss;
	int i;

	for (i = 0; i < 3 && !stopped(); i++) {
		remove_store("big.db");
		if (gen(c->sizes[i], "big.jsonl") ||
		    append_jsonl(c, "big.jsonl", "big.db", 0, &secs, &rss))
			return -1;
		r->rss_mib[i] = (double)rss / 1024;
		fprintf(stderr, "  a. %ld lines: %.1f MiB peak, %.1f s\n", c->sizes[i],
		        r->rss_mib[i], secs);
	}
	r->have_rss = i == 3;
	return 0;
}

/* ---- b: batch sizes -------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int bench_batch(const struct config *c, struct results *r)
{
	double t[NSIZES][TIMED_ROUNDS];
	size_t k;
	int round;

	if (gen(TIMED_EVENTS, "timed.jsonl"))
		return -1;
	for (round = 0; round < TIMED_ROUNDS; round++)
		for (k = 0; k < NSIZES; k++) {
			if (stopped())
				return 0;
			remove_store("timed.db");
			if (append_jsonl(c, "timed.jsonl", "timed.db", batch_sizes[k], &t[k][round],
			                 NULL))
				return -1;
		}
	for (k = 0; k < NSIZES; k++) {
		qsort(t[k], TIMED_ROUNDS, sizeof(double), cmp_double);
		r->batch_secs[k] = t[k][TIMED_ROUNDS / 2];
		fprintf(stderr, "  b. --batch-size %ld: %.3f s\n", batch_sizes[k],
		        r->batch_secs[k]);
	}
	r->have_batch = 1;
	return 0;
}

/* ---- c: single appends during a catch-up ------------------------------------------------- */

static int write_deploy(const char *store)
{
	char p[sizeof(dir) + 64];
	FILE *f;

	path_of(p, sizeof(p), "run.deploy.lua");
	if (!(f = fopen(p, "w")))
		return -1;
	fprintf(f,
	        "-- written by bench_append\n"
	        "return {\n"
	        "  store = \"%s/%s\",\n"
	        "  processors = {\n"
	        "    counter = { script = \"%s/processors/counter.lua\", streams = "
	        "\"counters/*\" },\n"
	        "  },\n"
	        "}\n",
	        dir, store, SL_SOURCE_DIR);
	return fclose(f) ? -1 : 0;
}

/* One single append to probe/x; its wall time in ms, or -1. */
static double probe(const struct config *c, const char *db)
{
	char *argv[] = {(char *)c->sluice, "append",   "probe/x", "probe/ping", "{}",
	                "--store",         (char *)db, NULL};
	double secs;

	return run(argv, NULL, NULL, 1, &secs, NULL) ? -1 : secs * 1000;
}

static int bench_wait(const struct config *c, struct results *r)
{
	static double waits[MAX_PROBES];
	double idle[IDLE_PROBES], t0, next, w;
	char db[sizeof(dir) + 64], deploy[sizeof(dir) + 64];
	char *argv[] = {(char *)c->sluice, "run", deploy, "--until-caught-up", NULL};
	long n = 0;
	int i, status;
	pid_t pid;

	path_of(db, sizeof(db), "big.db");
	path_of(deploy, sizeof(deploy), "run.deploy.lua");
	if (write_deploy("big.db"))
		return -1;
	for (i = 0; i < IDLE_PROBES; i++)
		if ((idle[i] = probe(c, db)) < 0)
			return -1;
	qsort(idle, IDLE_PROBES, sizeof(double), cmp_double);
	r->idle_ms = idle[IDLE_PROBES / 2];
	fprintf(stderr, "  c. idle single append: %.1f ms; catching up %ld events\n", r->idle_ms,
	        c->sizes[2]);
	t0 = now();
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	usleep(200000); /* past the runner's start-up, into the catch-up */
	for (next = now(); n < MAX_PROBES && !interrupted; next += PROBE_EVERY_MS / 1e3) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if ((w = probe(c, db)) < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		waits[n++] = w;
		if (next > now())
			usleep((useconds_t)((next - now()) * 1e6));
	}
	if (interrupted || n == MAX_PROBES) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	r->catchup_secs = now() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, BENCH_NAME ": sluice run --until-caught-up failed\n");
		return -1;
	}
	if (!n)
		return 0;
	qsort(waits, (size_t)n, sizeof(double), cmp_double);
	r->probes = n;
	r->wait_max = waits[n - 1];
	r->wait_p50 = waits[n / 2];
	r->wait_p99 = waits[(long)((double)(n - 1) * 0.99)];
	r->have_wait = 1;
	fprintf(stderr, "  c. %ld appends during %.1f s: p50 %.1f p99 %.1f max %.1f ms\n", n,
	        r->catchup_secs, r->wait_p50, r->wait_p99, r->wait_max);
	return 0;
}

/* ---- d: cost growth ------------------------------------------------------------------- */

/* One timed append of input into a fresh store; *secs and the peak RSS in MiB. */
static int growth_run(const struct config *c, const char *input, long lines, double *secs,
                      double *mib)
{
	long rss;

	remove_store("growth.db");
	if (append_jsonl(c, input, "growth.db", 0, secs, &rss))
		return -1;
	remove_store("growth.db");
	*mib = (double)rss / 1024;
	fprintf(stderr, "  d. %ld lines: %.1f s, %.0f ns/line, %.1f MiB peak\n", lines, *secs,
	        *secs * 1e9 / (double)lines, *mib);
	return 0;
}

/* The small input, the large one, the small one again, each into a fresh store at the
 * default batch size; the small runs' mean is the reference. */
static int bench_growth(const struct config *c, struct results *r)
{
	double mib;

	fprintf(stderr, "  d. writing %ld and %ld lines\n", c->growth[0], c->growth[1]);
	if (gen(c->growth[0], "growth-small.jsonl") || gen(c->growth[1], "growth-big.jsonl"))
		return -1;
	if (stopped() ||
	    growth_run(c, "growth-small.jsonl", c->growth[0], &r->growth_small[0],
	               &r->growth_small_mib) ||
	    stopped() ||
	    growth_run(c, "growth-big.jsonl", c->growth[1], &r->growth_big, &r->growth_big_mib) ||
	    stopped() ||
	    growth_run(c, "growth-small.jsonl", c->growth[0], &r->growth_small[1], &mib))
		return stopped() ? 0 : -1;
	if (mib > r->growth_small_mib)
		r->growth_small_mib = mib;
	r->have_growth = 1;
	return 0;
}

/* ---- the table ----------------------------------------------------------------------------- */

/* One line: v against ref (ratio v / ref), passing when the ratio is <= limit; a limit
 * of 0 makes it a line of information, with no target. */
static int row(const char *name, double v, const char *unit, const char *against, double ref,
               double limit)
{
	char res[32];
	int pass = !limit || v <= ref * limit;

	snprintf(res, sizeof(res), "%.2f %s", v, unit);
	printf("| %-58s | %-11s | %-30s | %5.3f | %s |\n", name, res, against, v / ref,
	       !limit ? "  info"
	       : pass ? "✓ pass"
	              : "✗ FAIL");
	return !pass;
}

/* One line: v against ref, passing when the ratio v / ref is between lo and hi. */
static int band_row(const char *name, double v, const char *unit, const char *against, double ref,
                    double lo, double hi)
{
	char res[32];
	int pass = v >= ref * lo && v <= ref * hi;

	snprintf(res, sizeof(res), "%.0f %s", v, unit);
	printf("| %-58s | %-11s | %-30s | %5.3f | %s |\n", name, res, against, v / ref,
	       pass ? "✓ pass" : "✗ FAIL");
	return !pass;
}

static int print_table(const struct config *c, const struct results *r)
{
	char label[128], against[96], n[32];
	size_t k, fast = 1;
	int i, missed = 0;

	printf("\nsluice append benchmark: the real binary, 100 streams; ratio = result / target "
	       "(or reference)\n\n");
	printf("| %-58s | %-11s | %-30s | %5s | %s |\n", "benchmark", "result", "target", "ratio",
	       "mark  ");
	printf("|%s|%s|%s|%s|%s|\n", dashes(60), dashes(13), dashes(32), dashes(7), dashes(8));
	for (i = 0; r->have_rss && i < 3; i++) {
		snprintf(label, sizeof(label), "a. append --jsonl, %s lines: peak RSS",
		         group(n, sizeof(n), (double)c->sizes[i]));
		missed += row(label, r->rss_mib[i], "MiB", "<= 64 MiB", RSS_LIMIT_MIB, 1);
	}
	if (r->have_batch) {
		for (k = 2; k < NSIZES; k++)
			if (r->batch_secs[k] < r->batch_secs[fast])
				fast = k;
		snprintf(against, sizeof(against), "ratio <= 1.1 x %ld's %.2f s", batch_sizes[fast],
		         r->batch_secs[fast]);
		missed += row("b. 100 000 events, the default --batch-size", r->batch_secs[0], "s",
		              against, r->batch_secs[fast], 1.1);
		snprintf(against, sizeof(against), "(info) x %ld's %.2f s", batch_sizes[fast],
		         r->batch_secs[fast]);
		row("b. 100 000 events, --batch-size 1000", r->batch_secs[1], "s", against,
		    r->batch_secs[fast], 0);
	}
	if (r->have_wait) {
		group(n, sizeof(n), (double)c->sizes[2]);
		snprintf(label, sizeof(label), "c. single append during a %s-event catch-up: max",
		         n);
		missed += row(label, r->wait_max, "ms", "<= 100 ms", WAIT_TARGET_MS, 1);
		snprintf(label, sizeof(label), "c. single append during a %s-event catch-up: p99",
		         n);
		missed += row(label, r->wait_p99, "ms", "<= 100 ms", WAIT_TARGET_MS, 1);
	}
	if (r->have_growth) {
		double small =
			(r->growth_small[0] + r->growth_small[1]) / 2 * 1e9 / (double)c->growth[0];
		char m[32];

		group(n, sizeof(n), (double)c->growth[1]);
		group(m, sizeof(m), (double)c->growth[0]);
		snprintf(label, sizeof(label), "d. append --jsonl per line, %s vs %s lines", n, m);
		snprintf(against, sizeof(against), "ratio 0.85-1.15 x %.0f ns", small);
		missed += band_row(label, r->growth_big * 1e9 / (double)c->growth[1], "ns/ln",
		                   against, small, GROWTH_LO, GROWTH_HI);
		snprintf(label, sizeof(label), "d. append --jsonl, %s lines: peak RSS", n);
		snprintf(against, sizeof(against), "(info) x %s's %.1f MiB", m,
		         r->growth_small_mib);
		row(label, r->growth_big_mib, "MiB", against, r->growth_small_mib, 0);
	}
	if (r->have_batch) {
		printf("\nb: medians of %d runs:", TIMED_ROUNDS);
		for (k = 0; k < NSIZES; k++)
			if (k)
				printf(" %ld: %.3f s%s", batch_sizes[k], r->batch_secs[k],
				       k + 1 < NSIZES ? "," : ".");
			else
				printf(" default: %.3f s,", r->batch_secs[k]);
	}
	if (r->have_wait)
		printf("\nc: %ld appends, p50 %.1f ms; an idle single append takes %.1f ms "
		       "(median of %d); the catch-up took %.1f s.",
		       r->probes, r->wait_p50, r->idle_ms, IDLE_PROBES, r->catchup_secs);
	if (r->have_growth)
		printf("\nd: %ld lines took %.1f s; %ld lines %.1f s before it and %.1f s after "
		       "it.",
		       c->growth[1], r->growth_big, c->growth[0], r->growth_small[0],
		       r->growth_small[1]);
	printf("\n%s\n", missed ? "some targets were missed" : "all targets met");
	return missed;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
	        "usage: bench_append [--quick] [--growth S,L] [--sluice PATH] [--dir DIR] "
	        "[--keep] [--strict]\n"
	        "  --quick        a at 100 000, 300 000 and 1 000 000 lines, d at 1 000 000\n"
	        "                 against 3 000 000 (as BENCH_QUICK=1)\n"
	        "  --growth S,L   d's small and large inputs (1000000,10000000; 0,0 skips d)\n"
	        "  --sluice PATH  the sluice binary (default: next to this program)\n"
	        "  --dir DIR      where the scratch directory goes (/tmp)\n"
	        "  --keep         keep the scratch directory\n"
	        "  --strict       exit 1 when a target is missed\n");
}

int main(int argc, char **argv)
{
	struct config c = {{100000, 1000000, 3000000}, {1000000, 10000000}, 0, 0, "/tmp", ""};
	struct results res;
	const char *quick = getenv("BENCH_QUICK");
	double t0 = now();
	char cmd[8300];
	long growth[2] = {0, 0};
	int i, rc = 0, missed, growth_set = 0;

	memset(&res, 0, sizeof(res));
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--keep"))
			c.keep = 1;
		else if (!strcmp(a, "--strict"))
			c.strict = 1;
		else if (!strcmp(a, "--quick"))
			quick = "1";
		else if (v && !strcmp(a, "--sluice"))
			snprintf(c.sluice, sizeof(c.sluice), "%s", argv[++i]);
		else if (v && !strcmp(a, "--growth") &&
		         sscanf(argv[++i], "%ld,%ld", &growth[0], &growth[1]) == 2 &&
		         growth[0] >= 0 && growth[1] >= 0)
			growth_set = 1;
		else if (v && !strcmp(a, "--dir"))
			c.base = argv[++i];
		else {
			usage();
			return strcmp(a, "--help") ? 2 : 0;
		}
	}
	if (quick && *quick && strcmp(quick, "0")) {
		c.sizes[1] = 300000;
		c.sizes[2] = 1000000;
		c.growth[1] = 3000000;
	}
	if (growth_set) {
		c.growth[0] = growth[0];
		c.growth[1] = growth[1];
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
	snprintf(dir, sizeof(dir), "%s/sluice-bench-XXXXXX", c.base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, BENCH_NAME ": cannot set up %s: %s\n", dir, strerror(errno));
		return 1;
	}
	fprintf(stderr, BENCH_NAME ": working in %s with %s\n", dir, c.sluice);
	if (bench_batch(&c, &res) || (!interrupted && bench_rss(&c, &res)) ||
	    (!interrupted && res.have_rss && bench_wait(&c, &res)) ||
	    (!interrupted && c.growth[0] && c.growth[1] && bench_growth(&c, &res)))
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
