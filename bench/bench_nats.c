/* bench_nats.c - the JetStream store backend beside the SQLite one, in the same run:
 * appends/s and catch-up ev/s on one JetStream node and on a 3-node loopback cluster
 * (R3), and how soon a live run sees an append by another process.
 *
 * The servers are nats-server processes this program starts itself on free loopback
 * ports, each with a config file of its own in the scratch directory (jetstream
 * {store_dir}, server_name, and for the cluster cluster {name, listen, routes}); they
 * are stopped at the end. Without nats-server on the PATH (or /usr/sbin) the JetStream
 * columns are skipped with a message and only the SQLite one is measured.
 *
 * Every figure comes from the sluice binary next to this program (or --sluice PATH),
 * with one runner except c2:
 *   a. `sluice append --jsonl` of N lines (default 100 000) over S streams (default
 *      100, round robin): lines per second, the whole command timed;
 *   b. the same with every line on one stream;
 *   c. `sluice run --until-caught-up` of a processor in mode each that counts its
 *      events (reduce only), over the events of a: events per second;
 *  c2. the same catch-up by two live `sluice run` of a fresh processor, which share
 *      its 16 partitions on JetStream (on SQLite the second stands by): events per
 *      second from their start until `sluice status` shows every instance caught up
 *      (polled every 50 ms, so the figure includes the runners' start, the split of
 *      the partitions and up to 50 ms of polling);
 *   d. a live `sluice run` of a processor whose processEvent logs "seen <offset>",
 *      while this process appends E events (default 2 000) at R/s (default 1 000) to
 *      one stream: the time from the start of each append call to the arrival of its
 *      log line, p50 and p99 (the wake-up of a live run).
 * The table's ratio is JetStream's figure over SQLite's (for d, SQLite's latency over
 * JetStream's: above 1 is faster). Progress goes to stderr, the table to stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sl_error.h"
#include "sl_store.h"

#define BENCH_NAME "bench_nats"
#include "bench_util.h"

#define NCOLS 3 /* sqlite, one node, three nodes */

struct config {
	long lines, streams, events, rate;
	int keep;
	char sluice[PATH_MAX];
	char nats[PATH_MAX]; /* the nats-server binary, "" when there is none */
};

struct col {
	const char *name;
	char store[512]; /* the store path or URL list */
	int have;
	double append_multi, append_one, catchup, catchup2, p50, p99;
};

static pid_t servers[3];
static int nservers;

/* ---- processes --------------------------------------------------------------------- */

/* Runs argv with stdin from file in (NULL: /dev/null) and stdout to /dev/null; its
 * wall time in *secs. */
static int run_cmd(char *const argv[], const char *in, double *secs)
{
	double t0 = now();
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(in ? in : "/dev/null", O_RDONLY), null = open("/dev/null", O_WRONLY);
		dup2(fd, 0);
		dup2(null, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	*secs = now() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, BENCH_NAME ": %s %s failed (status %d)\n", argv[0], argv[1],
		        status);
		return -1;
	}
	return 0;
}

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t n = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    !getsockname(fd, (struct sockaddr *)&a, &n))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

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

/* Starts nats-server with config file `conf` (in the scratch directory). */
static int start_server(const struct config *c, const char *conf)
{
	char p[4200], log[4200];
	pid_t pid;

	path_of(p, sizeof(p), conf);
	if (snprintf(log, sizeof(log), "%s.log", p) >= (int)sizeof(log))
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(c->nats, c->nats, "-c", p, (char *)NULL);
		_exit(127);
	}
	servers[nservers++] = pid;
	return 0;
}

static void stop_servers(void)
{
	int i, status;

	for (i = 0; i < nservers; i++)
		kill(servers[i], SIGTERM);
	for (i = 0; i < nservers; i++)
		waitpid(servers[i], &status, 0);
	nservers = 0;
}

/* Waits until the store opens for writing (JetStream answers, a cluster elected its
 * leaders); at most 30 s. */
static int wait_store(const char *url)
{
	struct sl_store_opts o = {SL_DURABILITY_NORMAL, 0, NULL, NULL, NULL, 0, NULL};
	double until = now() + 30;
	struct sl_store *s;
	struct sl_diag d;

	while (now() < until && !interrupted) {
		sl_diag_init(&d);
		if (sl_store_open(&s, url, &o, &d) == 0) {
			sl_store_close(s);
			return 0;
		}
		usleep(200000);
	}
	fprintf(stderr, BENCH_NAME ": %s did not answer: %s\n", url, sl_diag_msg(&d));
	return -1;
}

/* One node: its URL in col->store. */
static int start_single(const struct config *c, struct col *col)
{
	char conf[8192];
	int port = free_port();

	snprintf(conf, sizeof(conf),
	         "server_name: single\nlisten: 127.0.0.1:%d\njetstream { store_dir: "
	         "\"%s/js-single\" "
	         "}\n",
	         port, dir);
	snprintf(col->store, sizeof(col->store), "nats://127.0.0.1:%d", port);
	if (write_file("single.conf", conf) || start_server(c, "single.conf"))
		return -1;
	return wait_store(col->store);
}

/* Three nodes routed to each other; the URL list of all three in col->store (so the
 * store's stream and buckets get 3 replicas). */
static int start_cluster(const struct config *c, struct col *col)
{
	int port[3], route[3], i;
	char conf[8192], name[32];
	size_t o = 0;

	for (i = 0; i < 3; i++)
		port[i] = free_port(), route[i] = free_port();
	for (i = 0; i < 3; i++) {
		snprintf(conf, sizeof(conf),
		         "server_name: n%d\nlisten: 127.0.0.1:%d\n"
		         "jetstream { store_dir: \"%s/js-n%d\" }\n"
		         "cluster {\n  name: sluice-bench\n  listen: 127.0.0.1:%d\n"
		         "  routes: [nats-route://127.0.0.1:%d, nats-route://127.0.0.1:%d]\n}\n",
		         i + 1, port[i], dir, i + 1, route[i], route[(i + 1) % 3],
		         route[(i + 2) % 3]);
		snprintf(name, sizeof(name), "n%d.conf", i + 1);
		if (write_file(name, conf) || start_server(c, name))
			return -1;
		o += (size_t)snprintf(col->store + o, sizeof(col->store) - o,
		                      "%snats://127.0.0.1:%d", i ? "," : "", port[i]);
	}
	return wait_store(col->store);
}

/* ---- the fixture --------------------------------------------------------------------- */

static int write_fixture(const struct config *c)
{
	char p[4200];
	FILE *f;
	long i;

	path_of(p, sizeof(p), "schemas");
	if (mkdir(p, 0755) && errno != EEXIST)
		return -1;
	if (write_file("schemas/count.contract.json",
	               "{ \"name\": \"count\", \"version\": 1, \"consumes\": [\"t/tick\"],"
	               " \"emits\": [], \"events\": { \"t/tick\": {\"type\": \"object\"} },"
	               " \"state\": {\"type\": \"object\", \"required\": [\"n\"],"
	               " \"properties\": {\"n\": {\"type\": \"integer\"}}},"
	               " \"initialState\": {\"n\": 0} }\n") ||
	    write_file(
		    "count.lua",
		    "return {\n  contract = \"count\",\n"
		    "  reduce = { [\"t/tick\"] = function(s) return { n = s.n + 1 } end },\n}\n") ||
	    write_file("probe.lua",
	               "return {\n  contract = \"count\",\n"
	               "  reduce = { [\"t/tick\"] = function(s) return { n = s.n + 1 } end },\n"
	               "  processEvent = { [\"t/tick\"] = function(event, ctx)\n"
	               "    ctx.log.info(\"seen \" .. event.offset)\n  end },\n}\n"))
		return -1;
	path_of(p, sizeof(p), "multi.jsonl");
	if (!(f = fopen(p, "w")))
		return -1;
	for (i = 0; i < c->lines; i++)
		fprintf(f, "{\"stream\":\"m/%ld\",\"type\":\"t/tick\",\"payload\":{\"i\":%ld}}\n",
		        i % c->streams, i);
	if (fclose(f))
		return -1;
	path_of(p, sizeof(p), "one.jsonl");
	if (!(f = fopen(p, "w")))
		return -1;
	for (i = 0; i < c->lines; i++)
		fprintf(f, "{\"stream\":\"o/1\",\"type\":\"t/tick\",\"payload\":{\"i\":%ld}}\n", i);
	return fclose(f);
}

/* The deployment `name`.deploy.lua of processor `script` over `pattern` on store. */
static int write_deploy_of(const char *name, const char *store, const char *proc,
                           const char *script, const char *pattern)
{
	char text[16384], file[128];

	if (snprintf(text, sizeof(text),
	             "return { store = \"%s\", durability = \"normal\", schemas = { \"%s/schemas\" "
	             "},\n"
	             "  processors = { %s = { script = \"%s/%s\", streams = \"%s\" } } }\n",
	             store, dir, proc, dir, script, pattern) >= (int)sizeof(text))
		return -1;
	snprintf(file, sizeof(file), "%s.deploy.lua", name);
	return write_file(file, text);
}

static int write_deploy(const char *name, const char *store, const char *script,
                        const char *pattern)
{
	return write_deploy_of(name, store, "p", script, pattern);
}

/* ---- a, b, c -------------------------------------------------------------------------- */

static int append_file(const struct config *c, const struct col *col, const char *file,
                       double *rate)
{
	char in[4200], store[600];
	char *argv[] = {(char *)c->sluice, "append", "--jsonl", "--store", store, NULL};
	double secs;

	snprintf(store, sizeof(store), "%s", col->store);
	path_of(in, sizeof(in), file);
	if (run_cmd(argv, in, &secs))
		return -1;
	*rate = (double)c->lines / secs;
	return 0;
}

static int catch_up(const struct config *c, struct col *col, const char *tag)
{
	char deploy[4200], name[64];
	char *argv[] = {(char *)c->sluice, "run", deploy, "--until-caught-up", NULL};
	double secs;

	snprintf(name, sizeof(name), "cu-%s", tag);
	if (write_deploy(name, col->store, "count.lua", "m/*"))
		return -1;
	path_of(deploy, sizeof(deploy), name);
	strcat(deploy, ".deploy.lua");
	if (run_cmd(argv, NULL, &secs))
		return -1;
	col->catchup = (double)c->lines / secs;
	return 0;
}

/* ---- d. the wake-up of a live run --------------------------------------------------------- */

struct runner {
	pid_t pid;
	int fd, ready, eof;
	pthread_t reader;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	double *seen; /* arrival of "seen <offset>" by offset */
	long nseen, count;
	long after; /* only offsets above this count */
	FILE *log;  /* every line is kept here too (the scratch directory) */
};

static void on_line(struct runner *r, const char *line, double at)
{
	const char *m = strstr(line, "\"msg\":\"");

	if (!m)
		return;
	m += 7;
	pthread_mutex_lock(&r->mu);
	if (!strncmp(m, "running processor", 17) || !strncmp(m, "running partitions", 18))
		r->ready = 1; /* (the second: a partitioned runner on JetStream) */
	if (!strncmp(m, "seen ", 5)) {
		long off = atol(m + 5);
		if (off > r->after && off < r->nseen && !r->seen[off]) {
			r->seen[off] = at;
			r->count++;
		}
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
			if (r->log)
				fprintf(r->log, "%.6f %s\n", at, line);
			on_line(r, line, at);
			line = nl + 1;
		}
		len -= (size_t)(line - buf);
		memmove(buf, line, len);
		if (len == sizeof(buf) - 1)
			len = 0;
	}
	pthread_mutex_lock(&r->mu);
	r->eof = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static int start_runner(struct runner *r, const struct config *c, const char *deploy, long after,
                        long nseen)
{
	char log[4300];
	int p[2];

	memset(r, 0, sizeof(*r));
	r->after = after;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
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
	snprintf(log, sizeof(log), "%s.log", deploy);
	r->log = fopen(log, "w");
	return pthread_create(&r->reader, NULL, read_log, r) ? -1 : 0;
}

/* Waits until the runner is ready (n 0) or saw n events, at most secs. */
static int wait_runner(struct runner *r, long n, double secs)
{
	double until = now() + secs;
	int ok;

	pthread_mutex_lock(&r->mu);
	while (!(ok = n ? r->count >= n : r->ready) && !r->eof && now() < until && !interrupted) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20000000;
		if (ts.tv_nsec >= 1000000000)
			ts.tv_sec++, ts.tv_nsec -= 1000000000;
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
	return ok;
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
	if (r->log)
		fclose(r->log);
	free(r->seen);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
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

static int latency(const struct config *c, struct col *col, const char *tag)
{
	struct sl_store_opts o = {SL_DURABILITY_NORMAL, 0, NULL, NULL, NULL, 0, NULL};
	double *start = calloc((size_t)c->events + 1, sizeof(double)), *lat = NULL, t0;
	char deploy[4200], name[64];
	struct sl_store *s = NULL;
	struct runner r;
	struct sl_diag d;
	long i, n = 0, first;
	int rc = -1;

	memset(&r, 0, sizeof(r));
	sl_diag_init(&d);
	snprintf(name, sizeof(name), "live-%s", tag);
	path_of(deploy, sizeof(deploy), name);
	strcat(deploy, ".deploy.lua");
	if (!start || write_deploy(name, col->store, "probe.lua", "live/*") ||
	    sl_store_open(&s, col->store, &o, &d) || (first = append_one(s, "live/a")) < 1) {
		fprintf(stderr, BENCH_NAME ": %s\n", sl_diag_msg(&d));
		goto out;
	}
	if (start_runner(&r, c, deploy, first, first + c->events + 1) || !wait_runner(&r, 0, 30)) {
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
	wait_runner(&r, c->events, 30);
	if (!(lat = malloc((size_t)c->events * sizeof(double))))
		goto out;
	pthread_mutex_lock(&r.mu);
	for (i = 1; i <= c->events; i++)
		if (r.seen[first + i])
			lat[n++] = (r.seen[first + i] - start[i]) * 1000;

	pthread_mutex_unlock(&r.mu);
	if (n < c->events) {
		fprintf(stderr, BENCH_NAME ": %ld of %ld events not seen\n", c->events - n,
		        c->events);
		goto out;
	}
	qsort(lat, (size_t)n, sizeof(double), cmp_double);
	col->p50 = lat[n / 2];
	col->p99 = lat[(size_t)((double)(n - 1) * 0.99)];
	rc = 0;
out:
	stop_runner(&r);
	sl_store_close(s);
	free(start);
	free(lat);
	return rc;
}

/* ---- one column ---------------------------------------------------------------------- */

/* The instances of deploy's processor that `sluice status` shows caught up (lag 0,
 * status ok), or -1 when it fails. */
static long caught_up(const struct config *c, const char *deploy)
{
	char cmd[2 * PATH_MAX + 64], line[4096];
	long n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "'%s' status '%s' 2>/dev/null", c->sluice, deploy);
	if (!(f = popen(cmd, "r")))
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "\"lag\":0,") && strstr(line, "\"status\":\"ok\""))
			n++;
	return pclose(f) == 0 ? n : -1;
}

/* c2. the catch-up of c by two live runners of a fresh processor (q) sharing its
 * partitions (on SQLite the second stands by): from their start until `sluice status`
 * shows every instance caught up, polled every 50 ms. */
static int catch_up2(const struct config *c, struct col *col, const char *tag)
{
	struct runner r[2];
	char deploy[4200], name[64];
	double t0, until;
	long done = 0;
	int i, rc = -1;

	snprintf(name, sizeof(name), "cu2-%s", tag);
	if (write_deploy_of(name, col->store, "q", "count.lua", "m/*"))
		return -1;
	path_of(deploy, sizeof(deploy), name);
	strcat(deploy, ".deploy.lua");
	memset(r, 0, sizeof(r));
	t0 = now();
	for (i = 0; i < 2; i++)
		if (start_runner(&r[i], c, deploy, 0, 1))
			goto out;
	for (until = t0 + 600; now() < until && !interrupted;) {
		if ((done = caught_up(c, deploy)) >= c->streams)
			break;
		sleep_until(now() + 0.05);
	}
	if (done >= c->streams) {
		col->catchup2 = (double)c->lines / (now() - t0);
		rc = 0;
	} else {
		fprintf(stderr, BENCH_NAME ": %s: two runners did not catch up (%ld of %ld)\n",
		        col->name, done, c->streams);
	}
out:
	for (i = 0; i < 2; i++)
		stop_runner(&r[i]);
	return rc;
}

static int measure(const struct config *c, struct col *col, const char *tag)
{
	fprintf(stderr, "%s: a. append --jsonl, %ld lines over %ld streams\n", col->name, c->lines,
	        c->streams);
	if (append_file(c, col, "multi.jsonl", &col->append_multi))
		return -1;
	fprintf(stderr, "%s: b. append --jsonl, %ld lines on one stream\n", col->name, c->lines);
	if (append_file(c, col, "one.jsonl", &col->append_one))
		return -1;
	fprintf(stderr, "%s: c. catch-up over the %ld events of a\n", col->name, c->lines);
	if (catch_up(c, col, tag))
		return -1;
	fprintf(stderr, "%s: c2. the same by two live runners\n", col->name);
	if (catch_up2(c, col, tag))
		return -1;
	fprintf(stderr, "%s: d. live run, %ld appends at %ld/s\n", col->name, c->events, c->rate);
	if (latency(c, col, tag))
		return -1;
	col->have = 1;
	fprintf(stderr, "%s: %.0f, %.0f lines/s; %.0f ev/s; p50 %.2f ms, p99 %.2f ms\n", col->name,
	        col->append_multi, col->append_one, col->catchup, col->p50, col->p99);
	return 0;
}

/* ---- the table ----------------------------------------------------------------------- */

static void cell(double v, int have, const char *fmt)
{
	char b[32];

	if (!have) {
		printf(" %14s", "-");
		return;
	}
	if (!strcmp(fmt, "n"))
		printf(" %14s", group(b, sizeof(b), v));
	else
		printf(" %14.2f", v);
}

static void ratio(double a, double b, int have)
{
	if (have && b > 0)
		printf(" %6.2fx", a / b);
	else
		printf(" %7s", "-");
}

static void row(const char *name, const struct col *cols, size_t off, const char *fmt, int inverse)
{
	double v[NCOLS];
	int i;

	for (i = 0; i < NCOLS; i++)
		v[i] = *(const double *)((const char *)&cols[i] + off);
	printf("%-40s", name);
	cell(v[0], cols[0].have, fmt);
	for (i = 1; i < NCOLS; i++) {
		cell(v[i], cols[i].have, fmt);
		if (inverse)
			ratio(v[0], v[i], cols[i].have && cols[0].have);
		else
			ratio(v[i], v[0], cols[i].have && cols[0].have);
	}
	printf("\n");
}

static void print_table(const struct config *c, const struct col *cols)
{
	char b1[32], b2[96];

	printf("\nbench_nats: the JetStream store beside SQLite, one runner but c2 (%s lines, %ld "
	       "streams)\n",
	       group(b1, sizeof(b1), (double)c->lines), c->streams);
	printf("%-40s %14s %14s %7s %14s %7s\n", "", "sqlite", "nats 1 node", "ratio",
	       "nats 3 nodes", "ratio");
	printf("%s\n", dashes(64));
	snprintf(b2, sizeof(b2), "a. append --jsonl, %ld streams (lines/s)", c->streams);
	row(b2, cols, offsetof(struct col, append_multi), "n", 0);
	row("b. append --jsonl, 1 stream (lines/s)", cols, offsetof(struct col, append_one), "n",
	    0);
	row("c. catch-up, mode each (ev/s)", cols, offsetof(struct col, catchup), "n", 0);
	row("c2. the same, 2 runners (ev/s)", cols, offsetof(struct col, catchup2), "n", 0);
	snprintf(b2, sizeof(b2), "d. live wake p50 at %ld ev/s (ms)", c->rate);
	row(b2, cols, offsetof(struct col, p50), "f", 1);
	snprintf(b2, sizeof(b2), "   live wake p99 at %ld ev/s (ms)", c->rate);
	row(b2, cols, offsetof(struct col, p99), "f", 1);
	if (!c->nats[0])
		printf("(the JetStream columns were skipped: nats-server is not installed)\n");
	printf("ratio: JetStream over SQLite (d: SQLite's latency over JetStream's)\n");
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *to, int rc)
{
	fprintf(to, "usage: bench_nats [--lines N] [--streams S] [--events E] [--rate R]"
	            " [--sluice PATH] [--keep]\n");
	exit(rc);
}

static void find_nats(struct config *c)
{
	const char *path = getenv("PATH"),
		   *cand[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server"};
	char buf[PATH_MAX];
	size_t i;

	c->nats[0] = '\0';
	while (path && *path) {
		const char *e = strchr(path, ':');
		size_t n = e ? (size_t)(e - path) : strlen(path);
		snprintf(buf, sizeof(buf), "%.*s/nats-server", (int)n, path);
		if (access(buf, X_OK) == 0) {
			snprintf(c->nats, sizeof(c->nats), "%s", buf);
			return;
		}
		path = e ? e + 1 : NULL;
	}
	for (i = 0; i < sizeof(cand) / sizeof(cand[0]); i++)
		if (access(cand[i], X_OK) == 0) {
			snprintf(c->nats, sizeof(c->nats), "%s", cand[i]);
			return;
		}
}

int main(int argc, char **argv)
{
	struct config c = {100000, 100, 2000, 1000, 0, "", ""};
	struct col cols[NCOLS] = {{"sqlite", "", 0, 0, 0, 0, 0, 0, 0},
	                          {"nats 1 node", "", 0, 0, 0, 0, 0, 0, 0},
	                          {"nats 3 nodes", "", 0, 0, 0, 0, 0, 0, 0}};
	char self[PATH_MAX], cmd[PATH_MAX + 16];
	ssize_t n;
	int i, rc = 0;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--lines") && i + 1 < argc)
			c.lines = atol(argv[++i]);
		else if (!strcmp(argv[i], "--streams") && i + 1 < argc)
			c.streams = atol(argv[++i]);
		else if (!strcmp(argv[i], "--events") && i + 1 < argc)
			c.events = atol(argv[++i]);
		else if (!strcmp(argv[i], "--rate") && i + 1 < argc)
			c.rate = atol(argv[++i]);
		else if (!strcmp(argv[i], "--sluice") && i + 1 < argc)
			snprintf(c.sluice, sizeof(c.sluice), "%s", argv[++i]);
		else if (!strcmp(argv[i], "--keep"))
			c.keep = 1;
		else if (!strcmp(argv[i], "--help"))
			usage(stdout, 0);
		else
			usage(stderr, 2);
	}
	if (c.lines < 1 || c.streams < 1 || c.events < 1 || c.rate < 1)
		usage(stderr, 2);
	if (!c.sluice[0]) {
		if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0)
			return 1;
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		if (snprintf(c.sluice, sizeof(c.sluice), "%s/sluice", self) >=
		    (int)sizeof(c.sluice))
			return 1;
	}
	find_nats(&c);
	if (!c.nats[0])
		fprintf(stderr, BENCH_NAME ": nats-server is not installed (make deps installs it);"
		                           " only the SQLite column is measured\n");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	snprintf(dir, sizeof(dir), "/tmp/bench_nats.XXXXXX");
	if (!mkdtemp(dir) || write_fixture(&c))
		return 1;
	if (snprintf(cols[0].store, sizeof(cols[0].store), "%s/bench.db", dir) >=
	    (int)sizeof(cols[0].store))
		return 1;
	if (measure(&c, &cols[0], "sqlite"))
		rc = 1;
	if (c.nats[0] && !stopped()) {
		if (start_single(&c, &cols[1]) || measure(&c, &cols[1], "single"))
			rc = 1;
		stop_servers();
	}
	if (c.nats[0] && !stopped()) {
		if (start_cluster(&c, &cols[2]) || measure(&c, &cols[2], "cluster"))
			rc = 1;
		stop_servers();
	}
	print_table(&c, cols);
	if (!c.keep) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			rc = 1;
	}
	return rc;
}
