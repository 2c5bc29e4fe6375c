/* bench_http.c - measures the HTTP interface of `sluice run`: how group commit scales
 * appends over concurrent keep-alive clients, and how soon an event POSTed over HTTP
 * comes back, processed, on a server-sent event stream.
 *
 * Every figure comes from a real `sluice run` (the binary next to this program, or
 * --sluice PATH) started as a child on a deployment this program writes: durability
 * "full", `http` on a free 127.0.0.1 port, and the shipped echo processor
 * (processors/echo.lua, its contract in schemas/) on the streams echo/<name>. Its log
 * goes to run.log in the scratch directory (shown when it fails). The clients are this
 * program's own: blocking HTTP/1.1 over a TCP socket, one thread and one keep-alive
 * connection each, Content-Length bodies, answers read by Content-Length or chunked.
 * The notes under the table add the CPU the runner and the clients used in each window
 * and what a 4 KiB write + fdatasync costs on the scratch directory's disk: the 10 x
 * of a. assumes that a commit's fsync, not the work of a request, dominates.
 *
 *   a. appends/s for 1, 4 and 16 concurrent clients, each POSTing single events
 *      (load/appended) to a stream of its own (load/c<N>-<i>, created by one append
 *      before the timed window) for --secs seconds (3). The requests per commit are
 *      the deltas of sluice_append_requests_total{result="ok"} and
 *      sluice_commits_total in /metrics around the window. One client is the
 *      reference: each request waits for its commit, so one commit per append; the
 *      ratio is a row's appends/s over that row's. Target: >= 10 x at 16 clients.
 *   b. latency append -> emitted event over HTTP: --events events (3 000) POSTed to
 *      echo/lat at --rate per second (1 000), each at its slot of a fixed schedule
 *      (clock_nanosleep to absolute deadlines), over --senders keep-alive connections
 *      (8) taking slots in turn (a connection has one request in flight, and each is
 *      answered only once its commit is durable); the payload carries the event's
 *      sequence number and the monotonic time it was sent. Another connection follows
 *      echo/lat with `GET /streams/echo%2Flat/events?follow=1&type=echo/output-echoed`;
 *      the latency of an event is from its send to the arrival of its echo on that
 *      stream (the echo processor's commit is durable too). p50, p99 and max;
 *      target p99 <= 10 ms.
 *   c. a live feed: 200 lines written one by one, 20 ms apart, into the pipe of
 *      `sluice append tail/a --jsonl --stream` (default --linger 10 ms) that stays
 *      open; a line's latency is from its write to its result line, which the command
 *      prints once the line's commit is durable (readable by `sluice events`). p50,
 *      p99, max; target: each line within 100 ms. Then the pipe is closed, the
 *      command must exit 0, and `sluice events` must read every line back.
 *
 * Progress goes to stderr, the table to stdout; exit 1 after an error (a refused or
 * failed request, a runner that would not start or did not stop cleanly, an echo
 * that never came), with --strict also when a target is missed. The runner is
 * stopped and the scratch directory under /tmp removed at the end (unless --keep),
 * also after an error or SIGINT; the runner also gets SIGKILL if this program dies.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_http"
#include "bench_util.h"

#define MAX_CLIENTS 16
#define SPEEDUP_TARGET 10    /* appends/s at 16 clients over 1 client */
#define LATENCY_TARGET_MS 10 /* p99 of append -> SSE */
#define LATE_MS 1            /* a paced send this far past its slot counts as late */
#define IO_TIMEOUT_S 10      /* no answer within this is an error */
#define ECHO_WAIT_S 10       /* how long the last echoes may take after the last send */
#define FSYNC_PROBES 200     /* synced writes timed for the disk's fsync cost */
#define WHAT "b. POST -> echo on SSE at %s ev/s: %s" /* the label of b's rows */
#define TAIL_LINES 200                               /* lines of c, written one by one */
#define TAIL_GAP_MS 20                               /* between two of them */
#define TAIL_TARGET_MS 100 /* each line durable (and readable) within this */

static const int client_counts[] = {1, 4, MAX_CLIENTS};
#define NROWS (sizeof(client_counts) / sizeof(client_counts[0]))

struct config {
	double secs;
	long events, rate, senders;
	int keep, strict;
	const char *base;
	char sluice[PATH_MAX];
};

struct row {
	int clients, ok;
	long requests;      /* answered 200 inside the window, counted by the clients */
	double secs;        /* the window: from the go to the last answer */
	double d_ok, d_rej; /* sluice_append_requests_total{result=...} deltas */
	double d_commits;   /* sluice_commits_total delta */
	double srv_cpu;     /* the runner's CPU time over the window, % of a core */
	double cli_cpu;     /* this program's (the clients'), % of a core */
};

struct results {
	struct row rows[NROWS];
	double fsync_ms; /* a synced 4 KiB write in the scratch directory, median */
	int have_latency;
	double p50, p99, pmax;
	long received, late;
	double worst_late_ms;
	int have_tail;
	double tail_p50, tail_p99, tail_max; /* c., ms */
	long tail_read;                      /* the lines `sluice events` read back */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ---- a minimal blocking HTTP/1.1 client ---------------------------------------------- */

#define CONN_BUF 65536

struct conn {
	int fd;
	size_t pos, len; /* unread input is buf[pos, len) */
	int64_t recv_ns; /* when the last read returned */
	char err[160];   /* why the last call failed */
	char buf[CONN_BUF];
};

struct resp {
	int status, chunked;
	long long length; /* Content-Length, -1: none */
	char *body;       /* NUL-terminated, malloc'd (body_add) */
	size_t body_len, body_cap;
};

static int conn_fail(struct conn *c, const char *what)
{
	snprintf(c->err, sizeof(c->err), "%s: %s", what, errno ? strerror(errno) : "closed");
	return -1;
}

static int conn_open(struct conn *c, int port, double timeout_s)
{
	struct sockaddr_in sa;
	struct timeval tv = {(time_t)timeout_s,
	                     (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
	int one = 1;

	c->pos = c->len = 0;
	c->err[0] = '\0';
	if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return conn_fail(c, "socket");
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		conn_fail(c, "connect");
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Reads what arrives next into the buffer (after what is unread). */
static int conn_fill(struct conn *c)
{
	ssize_t got;

	if (c->pos == c->len)
		c->pos = c->len = 0;
	else if (c->pos > 0 && c->len == CONN_BUF) {
		memmove(c->buf, c->buf + c->pos, c->len - c->pos);
		c->len -= c->pos;
		c->pos = 0;
	}
	if (c->len == CONN_BUF) {
		errno = EMSGSIZE;
		return conn_fail(c, "read");
	}
	do {
		errno = 0;
		got = recv(c->fd, c->buf + c->len, CONN_BUF - c->len, 0);
	} while (got < 0 && errno == EINTR && !interrupted);
	if (got <= 0) {
		if (got == 0)
			errno = 0;
		return conn_fail(c, errno == EAGAIN ? "read (timed out)" : "read");
	}
	c->recv_ns = now_ns();
	c->len += (size_t)got;
	return 0;
}

static int send_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t put = send(c->fd, p, n, MSG_NOSIGNAL);
		if (put < 0 && errno == EINTR && !interrupted)
			continue;
		if (put <= 0)
			return conn_fail(c, "write");
		p += put;
		n -= (size_t)put;
	}
	return 0;
}

/* One line ending in CRLF, without it, into out (cut at n - 1 bytes). */
static int read_line(struct conn *c, char *out, size_t n)
{
	char *nl;
	size_t k;

	while (!(nl = memchr(c->buf + c->pos, '\n', c->len - c->pos)))
		if (conn_fill(c))
			return -1;
	k = (size_t)(nl - (c->buf + c->pos));
	if (k && nl[-1] == '\r')
		k--;
	if (k >= n)
		k = n - 1;
	memcpy(out, c->buf + c->pos, k);
	out[k] = '\0';
	c->pos = (size_t)(nl - c->buf) + 1;
	return 0;
}

/* Reads n bytes of body; each piece goes to sink (NULL: appended to r's body). */
typedef int (*sink_fn)(void *ud, struct conn *c, const char *p, size_t n);

static int body_add(struct resp *r, const char *p, size_t n)
{
	if (r->body_len + n + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 1024;
		char *b;
		while (cap < r->body_len + n + 1)
			cap *= 2;
		if (!(b = realloc(r->body, cap)))
			return -1;
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

static int read_body(struct conn *c, struct resp *r, long long n, sink_fn sink, void *ud)
{
	while (n > 0) {
		size_t k;
		if (c->pos == c->len && conn_fill(c))
			return -1;
		k = c->len - c->pos;
		if ((long long)k > n)
			k = (size_t)n;
		if (sink ? sink(ud, c, c->buf + c->pos, k) : body_add(r, c->buf + c->pos, k)) {
			snprintf(c->err, sizeof(c->err), "the body could not be taken");
			return -1;
		}
		c->pos += k;
		n -= (long long)k;
	}
	return 0;
}

/* The status line and headers of an answer. */
static int read_head(struct conn *c, struct resp *r)
{
	char line[1024];

	r->status = 0;
	r->chunked = 0;
	r->length = -1;
	r->body_len = 0;
	if (r->body)
		r->body[0] = '\0';
	if (read_line(c, line, sizeof(line)))
		return -1;
	if (sscanf(line, "HTTP/1.%*d %d", &r->status) != 1) {
		snprintf(c->err, sizeof(c->err), "not an HTTP answer: '%.64s'", line);
		return -1;
	}
	for (;;) {
		if (read_line(c, line, sizeof(line)))
			return -1;
		if (!*line)
			return 0;
		if (!strncasecmp(line, "content-length:", 15))
			r->length = strtoll(line + 15, NULL, 10);
		else if (!strncasecmp(line, "transfer-encoding:", 18) &&
		         strcasestr(line + 18, "chunked"))
			r->chunked = 1;
	}
}

/* The body of an answer whose head was read: by Content-Length, or chunk by chunk. */
static int read_rest(struct conn *c, struct resp *r, sink_fn sink, void *ud)
{
	char line[256];

	if (!r->chunked) {
		if (r->length < 0) {
			snprintf(c->err, sizeof(c->err),
			         "an answer with neither length nor chunks");
			return -1;
		}
		return read_body(c, r, r->length, sink, ud);
	}
	for (;;) {
		long long n;
		char *end;
		if (read_line(c, line, sizeof(line)))
			return -1;
		n = strtoll(line, &end, 16);
		if (end == line || n < 0) {
			snprintf(c->err, sizeof(c->err), "a bad chunk size: '%.64s'", line);
			return -1;
		}
		if (n == 0)
			break;
		if (read_body(c, r, n, sink, ud) || read_line(c, line, sizeof(line)))
			return -1;
	}
	do /* the trailer, up to its empty line */
		if (read_line(c, line, sizeof(line)))
			return -1;
	while (*line);
	return 0;
}

/* Sends a request (body NULL: none) and reads the whole answer into r. */
static int request(struct conn *c, const char *method, const char *path, const char *body,
                   struct resp *r)
{
	char req[2048];
	size_t blen = body ? strlen(body) : 0;
	int n;

	if (body)
		n = snprintf(req, sizeof(req),
		             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
		             "application/json\r\nContent-Length: %zu\r\n\r\n%s",
		             method, path, blen, body);
	else
		n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", method,
		             path);
	if (n < 0 || (size_t)n >= sizeof(req)) {
		snprintf(c->err, sizeof(c->err), "request too long");
		return -1;
	}
	if (send_all(c, req, (size_t)n) || read_head(c, r) || read_rest(c, r, NULL, NULL))
		return -1;
	if (!r->body && body_add(r, "", 0))
		return -1;
	return 0;
}

/* One request on a connection of its own; the answer in r. */
static int request_once(int port, const char *method, const char *path, struct resp *r, char *err,
                        size_t errn)
{
	struct conn *c = malloc(sizeof(*c));
	int rc;

	if (!c) {
		snprintf(err, errn, "out of memory");
		return -1;
	}
	rc = conn_open(c, port, IO_TIMEOUT_S) || request(c, method, path, NULL, r) ? -1 : 0;
	if (rc)
		snprintf(err, errn, "%s %s: %s", method, path, c->err);
	conn_close(c);
	free(c);
	return rc;
}

/* ---- the runner ---------------------------------------------------------------------- */

struct runner {
	pid_t pid;
	int port;
};

/* A port nothing listens on now (the runner binds it a moment later; a start that
 * loses it to another process is retried with another one). */
static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int write_deploy(int port)
{
	char p[sizeof(dir) + 64];
	FILE *f;

	path_of(p, sizeof(p), "http.deploy.lua");
	if (!(f = fopen(p, "w")))
		return -1;
	fprintf(f,
	        "-- written by bench_http\n"
	        "return {\n"
	        "  store = \"%s/http.db\",\n"
	        "  durability = \"full\",\n"
	        "  schemas = { \"%s/schemas\" },\n"
	        "  http = \"127.0.0.1:%d\",\n"
	        "  processors = {\n"
	        "    echo = { script = \"%s/processors/echo.lua\", streams = \"echo/*\" },\n"
	        "  },\n"
	        "}\n",
	        dir, SL_SOURCE_DIR, port, SL_SOURCE_DIR);
	return fclose(f) ? -1 : 0;
}

/* Whether the runner's log says text. */
static int log_says(const char *text)
{
	char p[sizeof(dir) + 64], line[4096];
	int found = 0;
	FILE *f;

	path_of(p, sizeof(p), "run.log");
	if (!(f = fopen(p, "r")))
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, text) != NULL;
	fclose(f);
	return found;
}

/* The last lines of the runner's log, to stderr. */
static void show_log(void)
{
	char cmd[sizeof(dir) + 64];

	fprintf(stderr, BENCH_NAME ": the end of the runner's log:\n");
	fflush(stderr);
	snprintf(cmd, sizeof(cmd), "tail -n 20 '%s/run.log' >&2", dir);
	if (system(cmd))
		fprintf(stderr, "  (no log)\n");
}

/* Waits up to secs for the runner to exit; its wait status, or -1 if it still runs. */
static int reap(pid_t pid, double secs)
{
	double until = now() + secs;
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return status;
		if (w < 0 && errno != EINTR)
			return 0; /* not a child any more: nothing to wait for */
		if (now() >= until)
			return -1;
		usleep(10000);
	}
}

/* Stops the runner: SIGTERM, then SIGKILL after 15 s. 0 if it exited 0. */
static int stop_runner(struct runner *r)
{
	int status, rc = 0;

	if (r->pid <= 0)
		return 0;
	kill(r->pid, SIGTERM);
	if ((status = reap(r->pid, 15)) < 0) {
		fprintf(stderr, BENCH_NAME ": the runner did not stop within 15 s: killed\n");
		kill(r->pid, SIGKILL);
		status = reap(r->pid, 5);
		rc = -1;
	} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, BENCH_NAME ": the runner ended with status %d\n",
		        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		show_log();
		rc = -1;
	}
	r->pid = 0;
	return rc;
}

/* Starts `sluice run` on a free port and waits until /healthz answers 200. */
static int start_runner(struct runner *r, const struct config *c)
{
	char deploy[sizeof(dir) + 64], logp[sizeof(dir) + 64], err[256];
	int try;

	path_of(deploy, sizeof(deploy), "http.deploy.lua");
	path_of(logp, sizeof(logp), "run.log");
	for (try = 0; try < 5 && !interrupted; try++) {
		struct resp res = {0};
		double until = now() + 30;
		int status = -1, up = 0;
		if ((r->port = free_port()) < 0 || write_deploy(r->port))
			return -1;
		if ((r->pid = fork()) < 0)
			return -1;
		if (r->pid == 0) {
			int null = open("/dev/null", O_RDONLY);
			int logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives this program */
			if (null < 0 || logfd < 0)
				_exit(126);
			dup2(null, 0);
			dup2(logfd, 1);
			dup2(logfd, 2);
			execl(c->sluice, c->sluice, "run", deploy, (char *)NULL);
			_exit(127);
		}
		while (!up && now() < until && !interrupted) {
			if ((status = reap(r->pid, 0)) >= 0)
				break;
			up = !request_once(r->port, "GET", "/healthz", &res, err, sizeof(err)) &&
			     res.status == 200;
			if (!up)
				usleep(20000);
		}
		free(res.body);
		if (up) {
			fprintf(stderr, "  sluice run serves http://127.0.0.1:%d\n", r->port);
			return 0;
		}
		if (status < 0) { /* still running, but never healthy (or interrupted) */
			stop_runner(r);
			if (!interrupted) {
				fprintf(stderr, BENCH_NAME ": the runner did not become healthy\n");
				show_log();
			}
			return -1;
		}
		r->pid = 0;
		if (!log_says("address already in use")) {
			fprintf(stderr, BENCH_NAME ": the runner exited at start\n");
			show_log();
			return -1;
		}
	}
	fprintf(stderr, BENCH_NAME ": the runner could not start\n");
	return -1;
}

/* CPU seconds (user + system) process pid used so far; -1 if unknown. */
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

/* CPU seconds this process used so far (every thread). */
static double own_cpu_secs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The median time of a 4 KiB write + fdatasync in the scratch directory (the floor of
 * a commit with durability FULL on this disk); -1 if it could not be timed. */
static double fsync_ms(void)
{
	char p[sizeof(dir) + 64], block[4096];
	double t[FSYNC_PROBES];
	int fd, i;

	path_of(p, sizeof(p), "fsync.probe");
	if ((fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		return -1;
	memset(block, 'x', sizeof(block));
	for (i = 0; i < FSYNC_PROBES; i++) {
		double t0 = now();
		if (pwrite(fd, block, sizeof(block), (off_t)i * (off_t)sizeof(block)) !=
		            (ssize_t)sizeof(block) ||
		    fdatasync(fd)) {
			close(fd);
			return -1;
		}
		t[i] = (now() - t0) * 1000;
	}
	close(fd);
	unlink(p);
	qsort(t, FSYNC_PROBES, sizeof(double), cmp_double);
	return t[FSYNC_PROBES / 2];
}

/* ---- /metrics ------------------------------------------------------------------------ */

/* The value of the sample named name (with its labels) in a text exposition; -1 if
 * there is none. */
static double sample(const char *text, const char *name)
{
	size_t n = strlen(name);
	const char *p = text;

	while (p && *p) {
		if (!strncmp(p, name, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		if ((p = strchr(p, '\n')))
			p++;
	}
	return -1;
}

struct counters {
	double ok, rejected, commits;
};

static int read_counters(int port, struct counters *out)
{
	struct resp r = {0};
	char err[256];
	int rc = -1;

	if (request_once(port, "GET", "/metrics", &r, err, sizeof(err)))
		fprintf(stderr, BENCH_NAME ": %s\n", err);
	else if (r.status != 200)
		fprintf(stderr, BENCH_NAME ": GET /metrics: status %d\n", r.status);
	else if ((out->ok = sample(r.body, "sluice_append_requests_total{result=\"ok\"}")) < 0 ||
	         (out->rejected = sample(
			  r.body, "sluice_append_requests_total{result=\"rejected\"}")) < 0 ||
	         (out->commits = sample(r.body, "sluice_commits_total")) < 0)
		fprintf(stderr, BENCH_NAME ": /metrics lacks the append counters\n");
	else
		rc = 0;
	free(r.body);
	return rc;
}

/* ---- a. appends/s over concurrent clients -------------------------------------------- */

/* The clients of a row: each opens its connection and creates its stream, says it is
 * ready, and waits for the go (under mu) to start the window, which ends at end. */
struct load {
	int port, nclients;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int ready, go;
	double end;
	volatile int abort;
};

struct client {
	pthread_t thread;
	struct load *ld;
	int id, failed;
	long done;   /* requests answered 200 in the window */
	double last; /* when its last answer came */
	char err[256];
};

/* POSTs one load/appended event to the client's stream; 0 on a 200. */
static int post_load(struct client *cl, struct conn *c, struct resp *r, const char *path, long seq)
{
	char body[128];

	snprintf(body, sizeof(body), "{\"type\":\"load/appended\",\"payload\":{\"seq\":%ld}}", seq);
	if (request(c, "POST", path, body, r)) {
		snprintf(cl->err, sizeof(cl->err), "POST %s: %s", path, c->err);
		return -1;
	}
	if (r->status != 200) {
		snprintf(cl->err, sizeof(cl->err), "POST %s: status %d: %.120s", path, r->status,
		         r->body ? r->body : "");
		return -1;
	}
	return 0;
}

static void *client_main(void *ud)
{
	struct client *cl = ud;
	struct load *ld = cl->ld;
	struct conn *c = malloc(sizeof(*c));
	struct resp r = {0};
	char path[128];
	long seq = 0;

	snprintf(path, sizeof(path), "/streams/load%%2Fc%d-%d", ld->nclients, cl->id);
	/* The connection and the stream (its first append also writes stream/created)
	 * come before the window. */
	if (!c) {
		snprintf(cl->err, sizeof(cl->err), "out of memory");
		cl->failed = 1;
	} else if (conn_open(c, ld->port, IO_TIMEOUT_S)) {
		snprintf(cl->err, sizeof(cl->err), "%s", c->err);
		cl->failed = 1;
	} else if (post_load(cl, c, &r, path, seq++)) {
		cl->failed = 1;
	}
	if (cl->failed)
		ld->abort = 1;
	pthread_mutex_lock(&ld->mu);
	ld->ready++;
	pthread_cond_broadcast(&ld->cv);
	while (!ld->go)
		pthread_cond_wait(&ld->cv, &ld->mu);
	pthread_mutex_unlock(&ld->mu);
	while (!cl->failed && !ld->abort && !interrupted && now() < ld->end) {
		if (post_load(cl, c, &r, path, seq++)) {
			cl->failed = 1;
			ld->abort = 1;
			break;
		}
		cl->done++;
		cl->last = now();
	}
	if (c)
		conn_close(c);
	free(c);
	free(r.body);
	return NULL;
}

static int bench_row(const struct config *cfg, const struct runner *run, struct row *row)
{
	struct client cl[MAX_CLIENTS];
	struct counters before, after;
	struct load ld;
	int port = run->port;
	double t0, last, srv0, srv1, cli0, cli1;
	int i, started = 0, rc = -1;

	memset(cl, 0, sizeof(cl));
	memset(&ld, 0, sizeof(ld));
	ld.port = port;
	ld.nclients = row->clients;
	pthread_mutex_init(&ld.mu, NULL);
	pthread_cond_init(&ld.cv, NULL);
	for (i = 0; i < row->clients; i++) {
		cl[i].ld = &ld;
		cl[i].id = i;
		if (pthread_create(&cl[i].thread, NULL, client_main, &cl[i]))
			break;
		started++;
	}
	pthread_mutex_lock(&ld.mu);
	while (ld.ready < started)
		pthread_cond_wait(&ld.cv, &ld.mu);
	pthread_mutex_unlock(&ld.mu);
	if (started < row->clients) {
		fprintf(stderr, BENCH_NAME ": cannot start the client threads\n");
		ld.abort = 1;
	} else if (read_counters(port, &before)) {
		ld.abort = 1;
	}
	srv0 = cpu_secs(run->pid);
	cli0 = own_cpu_secs();
	t0 = now();
	pthread_mutex_lock(&ld.mu);
	ld.end = t0 + cfg->secs;
	ld.go = 1;
	pthread_cond_broadcast(&ld.cv);
	pthread_mutex_unlock(&ld.mu);
	last = t0;
	for (i = 0; i < started; i++) {
		pthread_join(cl[i].thread, NULL);
		row->requests += cl[i].done;
		if (cl[i].last > last)
			last = cl[i].last;
	}
	srv1 = cpu_secs(run->pid);
	cli1 = own_cpu_secs();
	for (i = 0; i < started; i++)
		if (cl[i].failed) {
			fprintf(stderr, BENCH_NAME ": client %d: %s\n", i, cl[i].err);
			goto out;
		}
	if (ld.abort || interrupted || read_counters(port, &after))
		goto out;
	row->secs = last - t0;
	row->d_ok = after.ok - before.ok;
	row->d_rej = after.rejected - before.rejected;
	row->d_commits = after.commits - before.commits;
	row->srv_cpu = srv0 < 0 || srv1 < 0 ? -1 : (srv1 - srv0) / row->secs * 100;
	row->cli_cpu = (cli1 - cli0) / row->secs * 100;
	if (row->d_ok != (double)row->requests || row->d_rej)
		fprintf(stderr,
		        BENCH_NAME ": /metrics counted %.0f ok and %.0f rejected appends, the "
		                   "clients %ld answered\n",
		        row->d_ok, row->d_rej, row->requests);
	if (row->secs <= 0 || row->d_commits <= 0 || !row->requests) {
		fprintf(stderr, BENCH_NAME ": %d clients: no commits in the window\n",
		        row->clients);
		goto out;
	}
	row->ok = 1;
	fprintf(stderr,
	        "  a. %2d client%s: %ld appends in %.2f s, %.0f/s, %.2f requests/commit; CPU: "
	        "sluice %.0f %%, clients %.0f %% of a core\n",
	        row->clients, row->clients > 1 ? "s" : "", row->requests, row->secs,
	        (double)row->requests / row->secs, row->d_ok / row->d_commits, row->srv_cpu,
	        row->cli_cpu);
	rc = 0;
out:
	pthread_mutex_destroy(&ld.mu);
	pthread_cond_destroy(&ld.cv);
	return rc;
}

/* ---- b. append -> SSE latency -------------------------------------------------------- */

#define SSE_LINE 8192

struct follower {
	pthread_t thread;
	struct conn *c;
	struct resp r;
	double *lat; /* ms by sequence number (0: not yet) */
	long nseq;   /* capacity of lat */
	long received;
	volatile int stop, failed;
	char line[SSE_LINE];
	size_t llen;
	pthread_mutex_t mu;
};

/* An integer after "key": in s; -1 if absent. */
static long long int_after(const char *s, const char *key)
{
	const char *p = strstr(s, key);

	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* One line of the event stream: a data line of an echo holds the input's payload. */
static void sse_line(struct follower *f, int64_t at)
{
	long long seq, sent;

	if (strncmp(f->line, "data:", 5))
		return;
	seq = int_after(f->line, "\"benchSeq\":");
	sent = int_after(f->line, "\"sentNs\":");
	if (seq < 0 || seq >= f->nseq || sent <= 0)
		return;
	pthread_mutex_lock(&f->mu);
	if (!f->lat[seq]) {
		f->lat[seq] = at > sent ? (double)(at - sent) / 1e6 : 1e-9;
		f->received++;
	}
	pthread_mutex_unlock(&f->mu);
}

static int sse_sink(void *ud, struct conn *c, const char *p, size_t n)
{
	struct follower *f = ud;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] == '\n') {
			f->line[f->llen] = '\0';
			sse_line(f, c->recv_ns);
			f->llen = 0;
		} else if (f->llen + 1 < SSE_LINE) {
			f->line[f->llen++] = p[i];
		}
	}
	return 0;
}

static void *follow_main(void *ud)
{
	struct follower *f = ud;

	if (read_rest(f->c, &f->r, sse_sink, f) && !f->stop) {
		fprintf(stderr, BENCH_NAME ": the event stream: %s\n", f->c->err);
		f->failed = 1;
	}
	return NULL;
}

static long follower_count(struct follower *f)
{
	long n;

	pthread_mutex_lock(&f->mu);
	n = f->received;
	pthread_mutex_unlock(&f->mu);
	return n;
}

struct sender {
	pthread_t thread;
	const struct config *cfg;
	int port, k;
	int64_t t0;
	long late;
	double worst_late_ms;
	int failed;
	volatile int *abort;
	char err[256];
};

static int post_echo(struct conn *c, struct resp *r, long seq, char *err, size_t errn)
{
	char body[160];

	snprintf(body, sizeof(body),
	         "{\"type\":\"echo/input-received\","
	         "\"payload\":{\"benchSeq\":%ld,\"sentNs\":%" PRId64 "}}",
	         seq, now_ns());
	if (request(c, "POST", "/streams/echo%2Flat", body, r)) {
		snprintf(err, errn, "POST /streams/echo%%2Flat: %s", c->err);
		return -1;
	}
	if (r->status != 200) {
		snprintf(err, errn, "POST /streams/echo%%2Flat: status %d: %.120s", r->status,
		         r->body ? r->body : "");
		return -1;
	}
	return 0;
}

/* Sender k sends the events k + 1, k + 1 + K, ... each at its slot t0 + (seq - 1) / rate. */
static void *sender_main(void *ud)
{
	struct sender *s = ud;
	struct conn *c = malloc(sizeof(*c));
	struct resp r = {0};
	long seq;

	if (!c || conn_open(c, s->port, IO_TIMEOUT_S)) {
		snprintf(s->err, sizeof(s->err), "%s", c ? c->err : "out of memory");
		s->failed = 1;
		*s->abort = 1;
		free(c);
		return NULL;
	}
	for (seq = s->k + 1; seq <= s->cfg->events && !*s->abort && !interrupted;
	     seq += s->cfg->senders) {
		int64_t slot = s->t0 + (seq - 1) * 1000000000 / s->cfg->rate, behind;
		struct timespec ts = {(time_t)(slot / 1000000000), (long)(slot % 1000000000)};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR &&
		       !interrupted)
			;
		if ((behind = now_ns() - slot) > LATE_MS * 1000000) {
			s->late++;
			if ((double)behind / 1e6 > s->worst_late_ms)
				s->worst_late_ms = (double)behind / 1e6;
		}
		if (post_echo(c, &r, seq, s->err, sizeof(s->err))) {
			s->failed = 1;
			*s->abort = 1;
			break;
		}
	}
	conn_close(c);
	free(c);
	free(r.body);
	return NULL;
}

static int bench_latency(const struct config *cfg, int port, struct results *out)
{
	struct sender sd[64];
	struct follower f;
	struct conn *pc = malloc(sizeof(*pc));
	struct resp r = {0};
	const char *get = "GET /streams/echo%2Flat/events?follow=1&type=echo/output-echoed "
			  "HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	volatile int abort_ = 0;
	double until, *lat = NULL;
	char err[256];
	long i, n = 0, nsend = cfg->senders;
	int64_t start_ns;
	int following = 0, rc = -1;

	memset(&f, 0, sizeof(f));
	memset(sd, 0, sizeof(sd));
	pthread_mutex_init(&f.mu, NULL);
	f.nseq = cfg->events + 1;
	f.c = malloc(sizeof(*f.c));
	f.lat = calloc((size_t)f.nseq, sizeof(double));
	if (pc)
		pc->fd = -1;
	if (f.c)
		f.c->fd = -1;
	if (!pc || !f.c || !f.lat) {
		fprintf(stderr, BENCH_NAME ": out of memory\n");
		goto out;
	}
	fprintf(stderr, "b. latency: %ld events at %ld/s to echo/lat over %ld connections\n",
	        cfg->events, cfg->rate, nsend);
	/* Event 0 creates the stream and warms the path up: its echo must come back on
	 * the event stream before the timed events start. */
	if (conn_open(pc, port, IO_TIMEOUT_S) || post_echo(pc, &r, 0, err, sizeof(err))) {
		fprintf(stderr, BENCH_NAME ": %s\n", *err ? err : pc->err);
		goto out;
	}
	if (conn_open(f.c, port, IO_TIMEOUT_S) || send_all(f.c, get, strlen(get)) ||
	    read_head(f.c, &f.r)) {
		fprintf(stderr, BENCH_NAME ": GET the event stream: %s\n", f.c->err);
		goto out;
	}
	if (f.r.status != 200 || !f.r.chunked) {
		fprintf(stderr, BENCH_NAME ": GET the event stream: status %d%s\n", f.r.status,
		        f.r.chunked ? "" : ", not chunked");
		goto out;
	}
	{ /* the stream may be quiet for longer than an answer may take */
		struct timeval tv = {IO_TIMEOUT_S * 10, 0};
		setsockopt(f.c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	if (pthread_create(&f.thread, NULL, follow_main, &f))
		goto out;
	following = 1;
	for (until = now() + ECHO_WAIT_S;
	     !follower_count(&f) && now() < until && !interrupted && !f.failed;)
		usleep(1000);
	if (!follower_count(&f)) {
		if (!interrupted)
			fprintf(stderr, BENCH_NAME ": the echo of the first event never came\n");
		goto out;
	}
	fprintf(stderr, "  the echo of a first event is on the event stream\n");
	start_ns = now_ns() + 200000000; /* every connection is open by then */
	for (i = 0; i < nsend; i++) {
		sd[i].cfg = cfg;
		sd[i].port = port;
		sd[i].k = (int)i;
		sd[i].abort = &abort_;
		sd[i].t0 = start_ns;
	}
	for (i = 0; i < nsend; i++)
		if (pthread_create(&sd[i].thread, NULL, sender_main, &sd[i])) {
			abort_ = 1;
			nsend = i;
			fprintf(stderr, BENCH_NAME ": cannot start the sender threads\n");
			break;
		}
	for (i = 0; i < nsend; i++) {
		pthread_join(sd[i].thread, NULL);
		out->late += sd[i].late;
		if (sd[i].worst_late_ms > out->worst_late_ms)
			out->worst_late_ms = sd[i].worst_late_ms;
	}
	for (i = 0; i < nsend; i++)
		if (sd[i].failed) {
			fprintf(stderr, BENCH_NAME ": sender %ld: %s\n", i, sd[i].err);
			goto out;
		}
	if (abort_ || interrupted)
		goto out;
	for (until = now() + ECHO_WAIT_S;
	     follower_count(&f) < cfg->events + 1 && now() < until && !interrupted && !f.failed;)
		usleep(1000);
	if (interrupted)
		goto out;
	if (!(lat = malloc((size_t)cfg->events * sizeof(double))))
		goto out;
	pthread_mutex_lock(&f.mu);
	for (i = 1; i <= cfg->events; i++)
		if (f.lat[i])
			lat[n++] = f.lat[i];
	pthread_mutex_unlock(&f.mu);
	out->received = n;
	if (n) {
		qsort(lat, (size_t)n, sizeof(double), cmp_double);
		out->p50 = lat[n / 2];
		out->p99 = lat[(size_t)((double)(n - 1) * 0.99)];
		out->pmax = lat[n - 1];
		out->have_latency = 1;
	}
	fprintf(stderr,
	        "  p50 %.2f ms, p99 %.2f ms, max %.2f ms; %ld of %ld echoed, %ld sends late\n",
	        out->p50, out->p99, out->pmax, n, cfg->events, out->late);
	if (n < cfg->events)
		fprintf(stderr, BENCH_NAME ": %ld echoes did not come within %d s\n",
		        cfg->events - n, ECHO_WAIT_S);
	else
		rc = 0;
out:
	if (following) {
		f.stop = 1;
		shutdown(f.c->fd, SHUT_RDWR);
		pthread_join(f.thread, NULL);
	}
	if (f.c)
		conn_close(f.c);
	if (pc)
		conn_close(pc);
	free(f.c);
	free(pc);
	free(f.r.body);
	free(f.lat);
	free(r.body);
	free(lat);
	pthread_mutex_destroy(&f.mu);
	return rc;
}

/* ---- the table ----------------------------------------------------------------------- */

/* ---- c. a feed piped into append --jsonl --stream ------------------------------------------ */

/* Reads one line of fd into out (n bytes) within secs; 0, or -1 at the end, an error,
 * the timeout or a line too long. Byte by byte: the result lines are short and few. */
static int read_fd_line(int fd, char *out, size_t n, double secs)
{
	double until = now() + secs;
	size_t k = 0;

	while (k + 1 < n && !interrupted) {
		struct timeval tv = {0, 50000};
		fd_set set;
		char ch;
		ssize_t got;
		if (now() > until)
			return -1;
		FD_ZERO(&set);
		FD_SET(fd, &set);
		if (select(fd + 1, &set, NULL, NULL, &tv) <= 0)
			continue;
		if ((got = read(fd, &ch, 1)) <= 0)
			return -1;
		if (ch == '\n') {
			out[k] = '\0';
			return 0;
		}
		out[k++] = ch;
	}
	return -1;
}

/* c: TAIL_LINES lines written one by one, TAIL_GAP_MS apart, into the pipe of
 * `sluice append --jsonl --stream` (the default --linger), which stays open; the
 * latency of a line is from its write to its result line, which the command prints
 * once the line's commit is durable, so readable by `sluice events`. At the end the
 * pipe is closed and `sluice events` must read every line back. */
static int bench_tail(const struct config *cfg, struct results *out)
{
	char store[sizeof(dir) + 64], line[512], cmd[sizeof(dir) + PATH_MAX + 128];
	double lat[TAIL_LINES], t;
	int in[2], res[2], status, rc = -1;
	pid_t pid;
	long i, n = 0;
	FILE *ev;

	path_of(store, sizeof(store), "tail.db");
	if (pipe(in) || pipe(res))
		return -1;
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in[0], 0);
		dup2(res[1], 1);
		close(in[1]);
		close(res[0]);
		execl(cfg->sluice, cfg->sluice, "append", "tail/a", "--jsonl", "--stream",
		      "--store", store, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(res[1]);
	fprintf(stderr, "c. %d lines into append --jsonl --stream, %d ms apart\n", TAIL_LINES,
	        TAIL_GAP_MS);
	for (i = 0; i < TAIL_LINES && !interrupted; i++) {
		int k = snprintf(line, sizeof(line),
		                 "{\"type\":\"t/tail\",\"payload\":{\"n\":%ld}}\n", i);
		t = now();
		if (write(in[1], line, (size_t)k) != k ||
		    read_fd_line(res[0], line, sizeof(line), 10)) {
			fprintf(stderr,
			        BENCH_NAME ": line %ld of c was not committed within 10 s\n",
			        i + 1);
			goto done;
		}
		lat[n++] = (now() - t) * 1e3;
		usleep(TAIL_GAP_MS * 1000);
	}
	close(in[1]);
	in[1] = -1;
	if (reap(pid, 10) != 0) {
		fprintf(stderr,
		        BENCH_NAME ": append --stream did not exit 0 at the end of its input\n");
		goto done;
	}
	pid = 0;
	snprintf(cmd, sizeof(cmd), "'%s' events tail/a --type t/tail --store '%s'", cfg->sluice,
	         store);
	if (!(ev = popen(cmd, "r")))
		goto done;
	while (fgets(line, sizeof(line), ev))
		out->tail_read++;
	if (pclose(ev) != 0 || out->tail_read != n) {
		fprintf(stderr, BENCH_NAME ": sluice events read %ld of the %ld lines of c\n",
		        out->tail_read, n);
		goto done;
	}
	qsort(lat, (size_t)n, sizeof(lat[0]), cmp_double);
	out->tail_p50 = lat[n / 2];
	out->tail_p99 = lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	out->tail_max = lat[n - 1];
	out->have_tail = n == TAIL_LINES;
	fprintf(stderr, "  p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", out->tail_p50, out->tail_p99,
	        out->tail_max);
	rc = out->have_tail ? 0 : -1;
done:
	if (in[1] >= 0)
		close(in[1]);
	close(res[0]);
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	return rc;
}

static void cells(const char *name, const char *result, const char *per_commit, const char *target,
                  const char *ratio, const char *mark)
{
	printf("| %-46s | %-13s | %-10s | %-26s | %-7s | %s |\n", name, result, per_commit, target,
	       ratio, mark);
}

static int print_table(const struct config *c, const struct results *r)
{
	const struct row *ref = &r->rows[0];
	char label[96], res[48], per[32], ratio[32], tgt[64], n[32];
	int missed = 0;
	size_t i;

	printf("\nsluice HTTP benchmark: a real `sluice run`, durability FULL, keep-alive clients "
	       "on 127.0.0.1;\nratio: a. appends/s over the 1-client row's, b. and c. result / "
	       "target\n\n");
	cells("benchmark", "result", "req/commit", "target", "ratio", "mark  ");
	printf("|%s|%s|%s|%s|%s|%s|\n", dashes(48), dashes(15), dashes(12), dashes(28), dashes(9),
	       dashes(8));
	for (i = 0; i < NROWS; i++) {
		const struct row *w = &r->rows[i];
		double rate, speedup;
		int pass;
		if (!w->ok)
			continue;
		rate = (double)w->requests / w->secs;
		snprintf(label, sizeof(label), "a. %d keep-alive client%s: appends/s", w->clients,
		         w->clients > 1 ? "s" : "");
		snprintf(res, sizeof(res), "%s /s", group(n, sizeof(n), rate));
		snprintf(per, sizeof(per), "%.2f", w->d_ok / w->d_commits);
		if (!ref->ok) {
			cells(label, res, per, "(no 1-client reference)", "-", "  info");
			continue;
		}
		speedup = rate / ((double)ref->requests / ref->secs);
		snprintf(ratio, sizeof(ratio), "%.2f x", speedup);
		if (i == 0) {
			cells(label, res, per, "reference: 1 commit/append", ratio, "   ref");
		} else if (w->clients == MAX_CLIENTS) {
			pass = speedup >= SPEEDUP_TARGET;
			snprintf(tgt, sizeof(tgt), ">= %d x the 1-client row", SPEEDUP_TARGET);
			cells(label, res, per, tgt, ratio, pass ? "✓ pass" : "✗ FAIL");
			missed += !pass;
		} else {
			cells(label, res, per, "none (reported)", ratio, "  info");
		}
	}
	if (r->have_latency) {
		int pass = r->p99 <= LATENCY_TARGET_MS;
		group(n, sizeof(n), (double)c->rate);
		snprintf(label, sizeof(label), WHAT, n, "p50");
		snprintf(res, sizeof(res), "%.2f ms", r->p50);
		cells(label, res, "-", "none (reported)", "-", "  info");
		snprintf(label, sizeof(label), WHAT, n, "p99");
		snprintf(res, sizeof(res), "%.2f ms", r->p99);
		snprintf(ratio, sizeof(ratio), "%.3f", r->p99 / LATENCY_TARGET_MS);
		snprintf(tgt, sizeof(tgt), "<= %d ms", LATENCY_TARGET_MS);
		cells(label, res, "-", tgt, ratio, pass ? "✓ pass" : "✗ FAIL");
		missed += !pass;
		snprintf(label, sizeof(label), WHAT, n, "max");
		snprintf(res, sizeof(res), "%.2f ms", r->pmax);
		cells(label, res, "-", "none (reported)", "-", "  info");
	}
	if (r->have_tail) {
		int pass = r->tail_max <= TAIL_TARGET_MS;
		snprintf(res, sizeof(res), "%.2f ms", r->tail_p50);
		cells("c. pipe -> append --stream -> durable: p50", res, "-", "none (reported)",
		      "-", "  info");
		snprintf(res, sizeof(res), "%.2f ms", r->tail_p99);
		cells("c. pipe -> append --stream -> durable: p99", res, "-", "none (reported)",
		      "-", "  info");
		snprintf(res, sizeof(res), "%.2f ms", r->tail_max);
		snprintf(ratio, sizeof(ratio), "%.3f", r->tail_max / TAIL_TARGET_MS);
		snprintf(tgt, sizeof(tgt), "each <= %d ms", TAIL_TARGET_MS);
		cells("c. pipe -> append --stream -> durable: max", res, "-", tgt, ratio,
		      pass ? "✓ pass" : "✗ FAIL");
		missed += !pass;
	}
	for (i = 0; i < NROWS; i++)
		if (r->rows[i].ok)
			printf("%s%d client%s: %ld appends in %.2f s, %.0f commits, "
			       "CPU sluice %.0f %% + clients %.0f %% of a core",
			       i ? ";\n   " : "\na: ", r->rows[i].clients,
			       r->rows[i].clients > 1 ? "s" : "", r->rows[i].requests,
			       r->rows[i].secs, r->rows[i].d_commits, r->rows[i].srv_cpu,
			       r->rows[i].cli_cpu);
	if (r->rows[0].ok || r->rows[1].ok || r->rows[2].ok)
		printf(".\n   Commits and requests are the deltas in /metrics. This machine: %ld "
		       "CPUs, a 4 KiB write + fdatasync takes %.2f ms (median of %d).",
		       sysconf(_SC_NPROCESSORS_ONLN), r->fsync_ms, FSYNC_PROBES);
	if (r->have_latency)
		printf("\nb: %ld events echoed over %ld connections; %ld sent over %d ms after "
		       "their slot (worst %.1f ms).",
		       r->received, c->senders, r->late, LATE_MS, r->worst_late_ms);
	if (r->have_tail)
		printf("\nc: %d lines %d ms apart into one open pipe (default --linger 10ms); "
		       "`sluice events` read all %ld back.",
		       TAIL_LINES, TAIL_GAP_MS, r->tail_read);
	if (!r->rows[NROWS - 1].ok || !r->have_latency || !r->have_tail)
		printf("\nnot every figure was measured (the errors are above)\n");
	else
		printf("\n%s\n", missed ? "some targets were missed" : "all targets met");
	return missed;
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: bench_http [--secs S] [--events N] [--rate R] [--senders K]\n"
	                "                  [--sluice PATH] [--dir DIR] [--keep] [--strict]\n"
	                "  --secs S       the window of each appends/s row (3)\n"
	                "  --events N     events of the latency run (3000)\n"
	                "  --rate R       their rate per second (1000)\n"
	                "  --senders K    connections they are sent over, 1 to 64 (8)\n"
	                "  --sluice PATH  the sluice binary (default: next to this program)\n"
	                "  --dir DIR      where the scratch directory goes (/tmp)\n"
	                "  --keep         keep the scratch directory\n"
	                "  --strict       exit 1 when a target is missed\n");
}

int main(int argc, char **argv)
{
	struct config c = {3, 3000, 1000, 8, 0, 0, "/tmp", ""};
	struct results res;
	struct runner run = {0, 0};
	struct sigaction sa;
	double t0 = now();
	char cmd[8300];
	int i, rc = 0, missed;
	size_t k;

	memset(&res, 0, sizeof(res));
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--keep"))
			c.keep = 1;
		else if (!strcmp(a, "--strict"))
			c.strict = 1;
		else if (v && !strcmp(a, "--secs") && (c.secs = atof(v)) > 0)
			i++;
		else if (v && !strcmp(a, "--events") && (c.events = atol(v)) > 0)
			i++;
		else if (v && !strcmp(a, "--rate") && (c.rate = atol(v)) > 0)
			i++;
		else if (v && !strcmp(a, "--senders") && (c.senders = atol(v)) > 0 &&
		         c.senders <= 64)
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
	/* No SA_RESTART: a blocked read returns at once on SIGINT in the main thread. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s/sluice-bench-XXXXXX", c.base);
	if (!mkdtemp(dir)) {
		fprintf(stderr, BENCH_NAME ": cannot set up %s: %s\n", dir, strerror(errno));
		return 1;
	}
	fprintf(stderr, BENCH_NAME ": working in %s with %s\n", dir, c.sluice);
	res.fsync_ms = fsync_ms();
	fprintf(stderr, "  a 4 KiB write + fdatasync here: %.2f ms\n", res.fsync_ms);
	if (start_runner(&run, &c)) {
		rc = 1;
	} else {
		for (k = 0; k < NROWS && !interrupted; k++) {
			res.rows[k].clients = client_counts[k];
			if (bench_row(&c, &run, &res.rows[k])) {
				rc = 1;
				break;
			}
		}
		if (!rc && !interrupted && bench_latency(&c, run.port, &res))
			rc = 1;
		if (stop_runner(&run))
			rc = 1;
	}
	if (!rc && !interrupted && bench_tail(&c, &res))
		rc = 1;
	if (stopped())
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
