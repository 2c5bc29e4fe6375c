/* sl_http.c - the HTTP interface: routing, group-committed appends, reads, event
 * streams, metrics and health on h2o (sl_http.h). */
#include "sl_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <h2o.h>
#include <uv.h>

#include "sl_buf.h"
#include "sl_contract.h"
#include "sl_deploy.h"
#include "sl_host.h"
#include "sl_jsonl.h"
#include "sl_log.h"
#include "sl_pump.h"
#include "sl_render.h"
#include "sl_store.h"

#define MAX_CONNS 1024            /* connections at once; more are closed at accept */
#define READ_CHUNK 512            /* events read from the store per piece of a response */
#define PIECE_BYTES 262144        /* a piece of a response goes out once it is this large */
#define NO_HOST "no-host.invalid" /* the authority h2o gives a request without Host */
#define SCAN_PIECES 16     /* chunks read with no event of the type before others get a turn */
#define HEARTBEAT_MS 15000 /* an idle event stream gets a comment this often */
#define MAX_NAME 1024      /* bytes of a decoded name or query value */

/* One append request waiting for the group commit. */
struct pending {
	struct pending *next;
	h2o_req_t *req; /* NULL once the request went away (the client left) */
	struct sl_jsonl_line *lines;
	size_t n;
	int ndjson;
	struct pending **anchor; /* in the request's pool: clears req when it goes */
};

/* A GET of events: JSON lines, or server-sent events that go on (follow). */
struct reader {
	h2o_generator_t gen; /* first: h2o hands it back */
	struct sl_http *srv;
	h2o_req_t *req;
	char *stream, *type;
	int64_t next; /* the next offset to read */
	int64_t left; /* events still to send, -1: no limit */
	int follow, sending, done;
	int parked;        /* a long scan waits for the next turn of the loop (on_resume) */
	struct sl_buf out; /* what h2o is sending now */
	struct reader *prev, *nextr;
};

/* A histogram with the pump's buckets (counts per bucket, not cumulative). */
struct hist {
	uint64_t n[SL_PUMP_BUCKETS + 1];
	double sum;
};

struct stats {
	uint64_t requests;        /* every request */
	uint64_t append_requests; /* append requests answered 200 */
	uint64_t appended;        /* events appended (not counting idempotency hits) */
	uint64_t duplicates;      /* events whose idempotency key matched */
	uint64_t rejected;        /* append requests refused (4xx, 5xx) */
	uint64_t commits;         /* group commits */
	struct hist commit;       /* their durations */
};

struct handler {
	h2o_handler_t super;
	struct sl_http *srv;
};

struct sl_http {
	uv_loop_t *loop;
	struct sl_host *host;
	struct sl_store *store;
	struct sl_pump *pump;
	const struct sl_deploy *dp;
	struct sl_core_validator *validator; /* core payloads and the deployment's contracts */
	char *token;                         /* the bearer token, or NULL */
	size_t max_body;
	h2o_globalconf_t conf;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept;
	int h2o_ready;
	uv_tcp_t listener;
	int listening;
	uv_check_t flush; /* the group commit, after the loop read what arrived */
	uv_idle_t nowait; /* keeps the loop from blocking while requests wait */
	uv_timer_t beat;  /* heartbeats of idle event streams */
	uv_idle_t resume; /* goes on with the readers parked in a long scan */
	size_t nparked;
	struct pending *head, **tail;
	struct reader *readers; /* every reader of events, following or not */
	size_t nconns;
	int closing;
	int disposed; /* h2o's context and configuration were disposed of (sl_http_stop) */
	struct stats st;
};

/* ---- answers --------------------------------------------------------------------------- */

static const char *reason_of(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
	h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, strlen(value));
}

/* Sends body b (or an out-of-memory error) with the status and content type. */
static void send_buf(h2o_req_t *req, int status, const char *type, struct sl_buf *b)
{
	if (!sl_buf_ok(b)) {
		status = 500;
		type = "application/json";
		sl_buf_reset(b);
		sl_buf_adds(b, "{\"error\": \"out of memory\"}\n");
	}
	req->res.status = status;
	req->res.reason = reason_of(status);
	add_header(req, H2O_TOKEN_CONTENT_TYPE, type);
	req->res.content_length = b->len;
	h2o_send_inline(req, b->ptr ? b->ptr : "", b->len);
}

static void send_error(h2o_req_t *req, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Answers {"error": "<message>"} with status. */
static void send_error(h2o_req_t *req, int status, const char *fmt, ...)
{
	char msg[SL_DIAG_MAX];
	struct sl_buf b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"error\": ");
	sl_buf_addjstr(&b, msg, strlen(msg));
	sl_buf_adds(&b, "}\n");
	if (status == 401)
		add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer");
	send_buf(req, status, "application/json", &b);
	sl_buf_release(&b);
}

static int method_is(h2o_req_t *req, const char *m)
{
	return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* Answers 405 with the methods the path takes in Allow, and hint after the message. */
static void send_not_allowed(h2o_req_t *req, const char *allow, const char *hint)
{
	add_header(req, H2O_TOKEN_ALLOW, allow);
	send_error(req, 405, "%.*s is not allowed here (%s)%s", (int)req->method.len,
	           req->method.base, allow, hint);
}

/* The status of a failed store call. */
static int status_of(int code)
{
	switch (code) {
	case SL_EINVAL:
		return 400;
	case SL_ENOTFOUND:
		return 404;
	case SL_ECONFLICT:
	case SL_EPAUSED:
		return 409;
	case SL_ETOOBIG:
		return 413;
	case SL_EBUSY:
	case SL_EIO:
		return 503;
	default:
		return 500;
	}
}

/* ---- paths and queries ---------------------------------------------------------------------- */

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

/* Percent-decodes s[0..n) into out (MAX_NAME + 1 bytes). Returns 0, or -1 for a bad
 * escape, an encoded NUL, invalid UTF-8 or a name too long; *why says which. */
static int decode(const char *s, size_t n, char *out, const char **why)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (k == MAX_NAME) {
			*why = "too long";
			return -1;
		}
		if (c == '%') {
			if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
				*why = "a bad percent escape";
				return -1;
			}
			c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
			i += 2;
			if (c == 0) {
				*why = "an encoded NUL (%00)";
				return -1;
			}
		}
		out[k++] = (char)c;
	}
	out[k] = '\0';
	if (!sl_utf8_valid(out, k)) {
		*why = "invalid UTF-8";
		return -1;
	}
	return 0;
}

/* The query parameters a route takes, decoded; NULL when absent. */
struct query {
	const char *names[5];
	char *values[5];
	char buf[5][MAX_NAME + 1];
};

/* Parses the query of req into q, whose names are set; an unknown or repeated
 * parameter, or one that does not decode, is a 400 (answered here: returns -1). */
static int parse_query(h2o_req_t *req, struct query *q)
{
	const char *p, *end;
	size_t i;

	for (i = 0; i < 5; i++)
		q->values[i] = NULL;
	if (req->query_at == SIZE_MAX)
		return 0;
	p = req->path.base + req->query_at + 1;
	end = req->path.base + req->path.len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p)), *eq, *why = "";
		if (!amp)
			amp = end;
		eq = memchr(p, '=', (size_t)(amp - p));
		if (!eq)
			eq = amp;
		for (i = 0; i < 5 && q->names[i]; i++)
			if (strlen(q->names[i]) == (size_t)(eq - p) &&
			    !memcmp(q->names[i], p, (size_t)(eq - p)))
				break;
		if (amp == p) {
			p = amp + 1;
			continue;
		}
		if (i == 5 || !q->names[i]) {
			send_error(req, 400, "unknown query parameter '%.*s'",
			           (int)((eq - p) > 64 ? 64 : (eq - p)), p);
			return -1;
		}
		if (q->values[i]) {
			send_error(req, 400, "%s: given twice", q->names[i]);
			return -1;
		}
		if (decode(eq < amp ? eq + 1 : eq, eq < amp ? (size_t)(amp - eq - 1) : 0, q->buf[i],
		           &why)) {
			send_error(req, 400, "%s: %s", q->names[i], why);
			return -1;
		}
		q->values[i] = q->buf[i];
		p = amp + 1;
	}
	return 0;
}

/* Decodes a stream name of a path; answers 400 and returns -1 when it is bad. */
static int stream_of(h2o_req_t *req, const char *field, const char *s, size_t n, char *out)
{
	const char *why = "";

	if (decode(s, n, out, &why)) {
		send_error(req, 400, "%s: %s in the stream name", field, why);
		return -1;
	}
	if (!sl_stream_name_valid(out)) {
		send_error(req, 400, "%s: invalid stream name '%.*s%s'" SL_STREAM_RULE, field,
		           SL_ECHO(out));
		return -1;
	}
	return 0;
}

/* A positive integer parameter, written as the CLI takes --from and --limit: an
 * optional sign and decimal digits, nothing else, up to INT64_MAX. Answers 400 and
 * returns -1 when it is not one. */
static int count_of(h2o_req_t *req, const char *field, const char *v, int64_t *out)
{
	const char *p;
	long long n = 0;

	if (!v)
		return 0;
	p = v + (*v == '-' || *v == '+');
	errno = 0;
	if (*p < '0' || *p > '9' || strspn(p, "0123456789") != strlen(p) ||
	    ((n = strtoll(v, NULL, 10)), errno) || n < 1) {
		send_error(req, 400, "%s: must be a positive integer, got '%.*s%s'", field,
		           SL_ECHO(v));
		return -1;
	}
	*out = n;
	return 0;
}

/* ---- appends and the group commit -------------------------------------------------------------
 */

static void free_pending(struct pending *pa)
{
	size_t i;

	for (i = 0; i < pa->n; i++)
		sl_jsonl_release(&pa->lines[i]);
	free(pa->lines);
	if (pa->anchor)
		*pa->anchor = NULL;
	free(pa);
}

/* The request's pool is cleared (the request ended, or its client left). */
static void on_request_gone(void *p)
{
	struct pending **anchor = p;

	if (*anchor) {
		(*anchor)->req = NULL;
		(*anchor)->anchor = NULL;
	}
}

static void hist_add(struct hist *h, double secs)
{
	size_t b = 0;

	while (b < SL_PUMP_BUCKETS && secs > sl_pump_buckets[b])
		b++;
	h->n[b]++;
	h->sum += secs;
}

/* Answers one request of a group commit: its result lines, or its error. */
static void answer(struct sl_http *srv, struct pending *pa, int rc, size_t failed,
                   const struct sl_diag *d, const struct sl_append_result *res)
{
	struct sl_buf b;
	size_t i;

	if (!pa->req)
		return;
	if (rc) {
		srv->st.rejected++;
		if (pa->ndjson && failed < pa->n)
			send_error(pa->req, status_of(rc),
			           "line %d: %s (this request of %zu event%s was not written)",
			           pa->lines[failed].lineno, sl_diag_msg(d), pa->n,
			           pa->n == 1 ? "" : "s");
		else
			send_error(pa->req, status_of(rc), "%s", sl_diag_msg(d));
		return;
	}
	srv->st.append_requests++;
	sl_buf_init(&b);
	for (i = 0; i < pa->n; i++) {
		sl_render_append_result(&b, pa->lines[i].ev.stream, &res[i]);
		sl_buf_addc(&b, '\n');
		if (res[i].duplicate)
			srv->st.duplicates++;
		else
			srv->st.appended++;
	}
	send_buf(pa->req, 200, pa->ndjson ? "application/x-ndjson" : "application/json", &b);
	sl_buf_release(&b);
}

static void wake_readers(struct sl_http *srv);

/* One transaction for every request waiting: each request's events are one
 * all-or-nothing sl_commit_append inside it; every request is answered once the
 * transaction ended (durable), or with the commit's error. */
static void group_commit(struct sl_http *srv, struct pending *list)
{
	struct sl_append_result *res[64], **resv = res;
	struct pending *pa;
	struct sl_commit *c = NULL;
	struct sl_diag *dv = NULL, cd;
	size_t i, n = 0, *failed = NULL;
	int *rcs = NULL, rc, any = 0;
	uint64_t t0 = uv_hrtime();

	for (pa = list; pa; pa = pa->next)
		n++;
	if (n > 64)
		resv = calloc(n, sizeof(*resv));
	rcs = calloc(n, sizeof(*rcs));
	failed = calloc(n, sizeof(*failed));
	dv = calloc(n, sizeof(*dv));
	sl_diag_init(&cd);
	if (!resv || !rcs || !failed || !dv) {
		rc = sl_diag_set(&cd, SL_ENOMEM, "out of memory");
		goto answer_all;
	}
	if ((rc = sl_commit_begin(srv->store, NULL, &c, &cd)))
		goto answer_all;
	for (i = 0, pa = list; pa; pa = pa->next, i++) {
		struct sl_event_in *ev = malloc(pa->n * sizeof(*ev));
		size_t k;
		resv[i] = malloc(pa->n * sizeof(**resv));
		sl_diag_init(&dv[i]);
		failed[i] = SIZE_MAX;
		if (!ev || !resv[i]) {
			rcs[i] = sl_diag_set(&dv[i], SL_ENOMEM, "out of memory");
		} else if (!pa->req) {
			rcs[i] = SL_EINVAL; /* the client left: nothing to write for it */
		} else {
			for (k = 0; k < pa->n; k++)
				ev[k] = pa->lines[k].ev;
			rcs[i] = sl_commit_append(c, ev, pa->n, resv[i], SL_APPEND_CHECKED,
			                          &failed[i], &dv[i]);
			any |= rcs[i] == 0;
		}
		free(ev);
	}
	rc = sl_commit_end(c, 1, &cd);
	srv->st.commits++;
	hist_add(&srv->st.commit, (double)(uv_hrtime() - t0) / 1e9);
	if (rc)
		sl_log(SL_LOG_ERROR, NULL, NULL, 0, "http: the commit of %zu appends failed: %s", n,
		       sl_diag_msg(&cd));
answer_all:
	for (i = 0, pa = list; pa; pa = pa->next, i++) {
		if (rc)
			answer(srv, pa, rc, SIZE_MAX, &cd, NULL);
		else
			answer(srv, pa, rcs[i], failed[i], &dv[i], resv[i]);
	}
	for (i = 0; resv && rcs && i < n; i++)
		free(resv[i]);
	if (resv != res)
		free(resv);
	free(rcs);
	free(failed);
	free(dv);
	if (!rc && any) {
		sl_pump_kick(srv->pump); /* the processors see it at once */
		wake_readers(srv);
	}
}

static void on_flush(uv_check_t *h)
{
	struct sl_http *srv = h->data;
	struct pending *list = srv->head, *next;

	srv->head = NULL;
	srv->tail = &srv->head;
	uv_check_stop(&srv->flush);
	uv_idle_stop(&srv->nowait);
	if (list)
		group_commit(srv, list);
	for (; list; list = next) {
		next = list->next;
		free_pending(list);
	}
}

static void on_nowait(uv_idle_t *h)
{
	(void)h; /* only there so that the loop does not block before on_flush */
}

/* Queues a validated request for the next group commit (owning pa). */
static void enqueue(struct sl_http *srv, struct pending *pa)
{
	pa->anchor = h2o_mem_alloc_shared(&pa->req->pool, sizeof(*pa->anchor), on_request_gone);
	*pa->anchor = pa;
	*srv->tail = pa;
	srv->tail = &pa->next;
	if (!uv_is_active((uv_handle_t *)&srv->flush)) {
		uv_check_start(&srv->flush, on_flush);
		uv_idle_start(&srv->nowait, on_nowait);
	}
}

static int is_ndjson(h2o_req_t *req)
{
	ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
	h2o_iovec_t v;

	if (i < 0)
		return 0;
	v = req->headers.entries[i].value;
	return v.len >= 20 && h2o_lcstris(v.base, 20, H2O_STRLIT("application/x-ndjson")) &&
	       (v.len == 20 || v.base[20] == ';' || v.base[20] == ' ');
}

static int blank(const char *p, size_t n)
{
	while (n--)
		if (p[n] != ' ' && p[n] != '\t' && p[n] != '\r')
			return 0;
	return 1;
}

/* Parses and validates one line (or the whole body) for stream; a line naming
 * another stream is refused. Returns 0, or the status with d saying why. */
static int parse_line(struct sl_http *srv, const char *p, size_t n, const char *stream,
                      struct sl_jsonl_line *ln, struct sl_diag *d)
{
	int rc;

	memset(ln, 0, sizeof(*ln)); /* released by the caller whatever happens */
	if ((rc = sl_jsonl_parse(p, n, stream, ln, sl_core_validate, srv->validator, d)))
		return status_of(rc);
	if (strcmp(ln->stream, stream)) {
		sl_diag_set(
			d, SL_EINVAL,
			"stream: must be the stream of the URL ('%s') or left out, got '%.*s%s'",
			stream, SL_ECHO(ln->stream));
		return 400;
	}
	return 0;
}

/* Splits the body into validated events; answers the first bad one (returns -1). */
static int parse_body(struct sl_http *srv, h2o_req_t *req, const char *stream, struct pending *pa)
{
	const char *p = req->entity.base, *end = p ? p + req->entity.len : p, *nl;
	size_t cap = 0;
	int lineno = 0, status;
	struct sl_diag d;

	if (!pa->ndjson) {
		if (!p || blank(p, req->entity.len)) {
			send_error(req, 400,
			           "body: expected one event {\"type\":..,\"payload\":..} (or "
			           "Content-Type: application/x-ndjson, one per line)");
			return -1;
		}
		if (!(pa->lines = calloc(1, sizeof(*pa->lines))))
			goto nomem;
		sl_diag_init(&d);
		pa->n = 1;
		if ((status = parse_line(srv, p, req->entity.len, stream, &pa->lines[0], &d))) {
			send_error(req, status, "%s", sl_diag_msg(&d));
			return -1;
		}
		return 0;
	}
	for (; p && p < end; p = nl + 1) {
		if (!(nl = memchr(p, '\n', (size_t)(end - p))))
			nl = end;
		lineno++;
		if (blank(p, (size_t)(nl - p)))
			continue;
		if (pa->n == cap) {
			struct sl_jsonl_line *grown;
			cap = cap ? cap * 2 : 16;
			if (!(grown = realloc(pa->lines, cap * sizeof(*grown))))
				goto nomem;
			pa->lines = grown;
		}
		sl_diag_init(&d);
		status = parse_line(srv, p, (size_t)(nl - p), stream, &pa->lines[pa->n], &d);
		pa->lines[pa->n++].lineno = lineno;
		if (status) {
			send_error(req, status, "line %d: %s", lineno, sl_diag_msg(&d));
			return -1;
		}
	}
	if (!pa->n) {
		send_error(req, 400, "body: no events (one JSON object per line)");
		return -1;
	}
	return 0;
nomem:
	send_error(req, 500, "out of memory");
	return -1;
}

static void post_append(struct sl_http *srv, h2o_req_t *req, const char *stream)
{
	struct pending *pa = calloc(1, sizeof(*pa));

	if (!pa) {
		send_error(req, 500, "out of memory");
		return;
	}
	pa->req = req;
	pa->ndjson = is_ndjson(req);
	if (parse_body(srv, req, stream, pa)) {
		srv->st.rejected++;
		free_pending(pa);
		return;
	}
	enqueue(srv, pa);
}

/* ---- reading events, once or following ------------------------------------------------------- */

struct piece {
	struct reader *r;
	size_t seen;
};

static int add_event(void *ud, const struct sl_event *ev)
{
	struct piece *pc = ud;
	struct reader *r = pc->r;

	pc->seen++;
	r->next = ev->offset + 1;
	if (r->type && strcmp(r->type, ev->type))
		return 0;
	if (r->follow) {
		sl_buf_addf(&r->out, "id: %" PRId64 "\ndata: ", ev->offset);
		sl_event_to_json(ev, &r->out);
		sl_buf_adds(&r->out, "\n\n");
	} else {
		sl_event_to_json(ev, &r->out);
		sl_buf_addc(&r->out, '\n');
	}
	if (r->left > 0 && --r->left == 0)
		return 1;
	return r->out.len >= PIECE_BYTES ? 1 : 0;
}

static void reader_send(struct reader *r, h2o_send_state_t state)
{
	h2o_iovec_t buf = h2o_iovec_init(r->out.ptr, r->out.len);

	r->sending = 1;
	if (state != H2O_SEND_STATE_IN_PROGRESS)
		r->done = 1;
	h2o_send(r->req, &buf, r->out.len ? 1 : 0, state);
}

static void on_resume(uv_idle_t *h);

/* Sends what there is to send: the next piece, the end (a read without follow that
 * reached the stream's end, or a limit reached), or nothing until the next change. */
static void reader_go(struct reader *r)
{
	struct piece pc = {r, 0};
	struct sl_diag d;
	int rc, end, pieces = 0;

	if (r->sending || r->done || r->parked || !r->req)
		return;
	sl_buf_reset(&r->out);
	/* Chunks of events of other types only are read on here, in a loop (a stream of
	 * millions that all miss the type filter must not recurse once per chunk), and
	 * after SCAN_PIECES of them the reader parks: the loop serves the others before
	 * on_resume goes on, so one such read does not hold up every append. */
	do {
		if (pieces++ == SCAN_PIECES) {
			r->parked = 1;
			if (r->srv->nparked++ == 0)
				uv_idle_start(&r->srv->resume, on_resume);
			return;
		}
		pc.seen = 0;
		sl_diag_init(&d);
		rc = sl_store_read(r->srv->store, r->stream, r->next, READ_CHUNK, NULL, add_event,
		                   &pc, &d);
	} while (rc >= 0 && sl_buf_ok(&r->out) && !r->out.len && r->left && pc.seen == READ_CHUNK);
	if (rc < 0 || !sl_buf_ok(&r->out)) {
		sl_log(SL_LOG_ERROR, NULL, r->stream, 0, "http: reading the events failed: %s",
		       rc < 0 ? sl_diag_msg(&d) : "out of memory");
		sl_buf_reset(&r->out);
		reader_send(r, H2O_SEND_STATE_ERROR);
		return;
	}
	end = r->left == 0 || (!r->follow && pc.seen < READ_CHUNK && r->out.len < PIECE_BYTES);
	if (end)
		reader_send(r, H2O_SEND_STATE_FINAL);
	else if (r->out.len)
		reader_send(r, H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
	struct reader *r = (struct reader *)g;

	(void)req;
	r->sending = 0;
	reader_go(r);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
	struct reader *r = (struct reader *)g;

	(void)req;
	r->done = 1;
	r->req = NULL;
}

static void unlink_reader(struct reader *r)
{
	if (r->prev)
		r->prev->nextr = r->nextr;
	else if (r->srv && r->srv->readers == r)
		r->srv->readers = r->nextr;
	if (r->nextr)
		r->nextr->prev = r->prev;
	r->prev = r->nextr = NULL;
}

/* The request's pool is cleared: the reader goes with it. */
static void on_reader_gone(void *p)
{
	struct reader *r = p;

	if (r->parked && r->srv)
		r->srv->nparked--;
	unlink_reader(r);
	free(r->stream);
	free(r->type);
	sl_buf_release(&r->out);
}

static void on_resume(uv_idle_t *h)
{
	struct sl_http *srv = h->data;
	struct reader *r, *next;

	for (r = srv->readers; r; r = next) {
		next = r->nextr; /* reader_go may end r */
		if (r->parked) {
			r->parked = 0;
			srv->nparked--;
			reader_go(r); /* which may park it again */
		}
	}
	if (srv->nparked == 0)
		uv_idle_stop(&srv->resume);
}

static void wake_readers(struct sl_http *srv)
{
	struct reader *r, *next;

	for (r = srv->readers; r; r = next) {
		next = r->nextr; /* reader_go may end r */
		reader_go(r);
	}
}

static void on_change(void *ud)
{
	wake_readers(ud);
}

static void on_beat(uv_timer_t *t)
{
	static char comment[] = ": keep-alive\n\n";
	struct sl_http *srv = t->data;
	struct reader *r;

	for (r = srv->readers; r; r = r->nextr)
		if (r->follow && !r->sending && !r->done && !r->parked && r->req) {
			h2o_iovec_t buf = h2o_iovec_init(comment, sizeof(comment) - 1);
			r->sending = 1;
			h2o_send(r->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
		}
}

/* An event stream that reconnects (a browser's EventSource does by itself) sends the
 * id of the last event it got in Last-Event-ID: it goes on after that one, whatever
 * from says. Answers 400 and returns -1 when the header is not an offset. */
static int last_event_id(h2o_req_t *req, int64_t *from)
{
	ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
	const char *v;
	int64_t id;

	if (i < 0)
		return 0;
	v = h2o_strdup(&req->pool, req->headers.entries[i].value.base,
	               req->headers.entries[i].value.len)
	            .base; /* NUL-terminated */
	if (count_of(req, "Last-Event-ID", v, &id))
		return -1;
	if (id == INT64_MAX) {
		send_error(req, 400, "Last-Event-ID: no event comes after %s", v);
		return -1;
	}
	*from = id + 1;
	return 0;
}

static void get_events(struct sl_http *srv, h2o_req_t *req, const char *stream)
{
	struct query q = {{"from", "limit", "type", "follow", NULL}, {0}, {{0}}};
	int64_t from = 1, limit = -1;
	struct reader *r;
	int follow = 0;

	if (parse_query(req, &q) || count_of(req, "from", q.values[0], &from) ||
	    count_of(req, "limit", q.values[1], &limit))
		return;
	if (q.values[3]) {
		if (!strcmp(q.values[3], "1") || !strcmp(q.values[3], "true"))
			follow = 1;
		else if (strcmp(q.values[3], "0") && strcmp(q.values[3], "false")) {
			send_error(req, 400, "follow: must be 1 or 0, got '%.*s%s'",
			           SL_ECHO(q.values[3]));
			return;
		}
	}
	if (follow && last_event_id(req, &from))
		return;
	if (method_is(req, "HEAD")) {
		/* The headers a GET would get, and no body: h2o frames a streamed answer to
		 * HEAD by its headers alone, so the reader must not run. */
		req->res.status = 200;
		req->res.reason = "OK";
		add_header(req, H2O_TOKEN_CONTENT_TYPE,
		           follow ? "text/event-stream" : "application/x-ndjson");
		if (follow)
			add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-cache");
		h2o_send_inline(req, "", 0);
		return;
	}
	r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_reader_gone);
	memset(r, 0, sizeof(*r));
	sl_buf_init(&r->out);
	r->gen.proceed = on_proceed;
	r->gen.stop = on_stop;
	r->srv = srv;
	r->req = req;
	r->next = from;
	r->left = limit;
	r->follow = follow;
	r->stream = strdup(stream);
	r->type = q.values[2] ? strdup(q.values[2]) : NULL;
	if (!r->stream || (q.values[2] && !r->type)) {
		send_error(req, 500, "out of memory");
		return;
	}
	req->res.status = 200;
	req->res.reason = "OK";
	if (follow) {
		add_header(req, H2O_TOKEN_CONTENT_TYPE, "text/event-stream");
		add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-cache");
	} else {
		add_header(req, H2O_TOKEN_CONTENT_TYPE, "application/x-ndjson");
	}
	r->nextr = srv->readers;
	if (srv->readers)
		srv->readers->prev = r;
	srv->readers = r;
	h2o_start_response(req, &r->gen);
	reader_go(r);
}

/* ---- the other reads ----------------------------------------------------------------------------
 */

static int stream_row(void *ud, const struct sl_stream_info *info)
{
	sl_render_stream(ud, info);
	sl_buf_addc(ud, '\n');
	return 0;
}

static void get_streams(struct sl_http *srv, h2o_req_t *req)
{
	struct query q = {{"prefix", NULL}, {0}, {{0}}};
	const char *prefix;
	struct sl_buf b;
	struct sl_diag d;
	int rc;

	if (parse_query(req, &q))
		return;
	prefix = q.values[0] && *q.values[0] ? q.values[0] : NULL;
	if (prefix && !sl_stream_name_valid(prefix)) {
		send_error(req, 400, "prefix: invalid stream name '%.*s%s'" SL_STREAM_RULE,
		           SL_ECHO(prefix));
		return;
	}
	sl_buf_init(&b);
	sl_diag_init(&d);
	if ((rc = sl_store_streams(srv->store, prefix, stream_row, &b, &d)))
		send_error(req, status_of(rc), "%s", sl_diag_msg(&d));
	else
		send_buf(req, 200, "application/x-ndjson", &b);
	sl_buf_release(&b);
}

static int state_row(void *ud, const struct sl_state_row *row)
{
	sl_render_state(ud, row);
	sl_buf_addc(ud, '\n');
	return 0;
}

static void get_state(struct sl_http *srv, h2o_req_t *req, const char *proc)
{
	struct query q = {{"stream", NULL}, {0}, {{0}}};
	struct sl_buf b;
	struct sl_diag d;
	size_t i;
	int rc, known = 0;

	if (parse_query(req, &q))
		return;
	for (i = 0; i < sl_pump_nprocs(srv->pump); i++)
		known |= !strcmp(sl_pump_proc_at(srv->pump, i)->cfg->name, proc);
	if (!known) {
		send_error(req, 404, "unknown processor '%.*s%s' (not in %s)", SL_ECHO(proc),
		           srv->dp->file);
		return;
	}
	if (q.values[0] && !sl_stream_name_valid(q.values[0])) {
		send_error(req, 400, "stream: invalid stream name '%.*s%s'" SL_STREAM_RULE,
		           SL_ECHO(q.values[0]));
		return;
	}
	sl_buf_init(&b);
	sl_diag_init(&d);
	if ((rc = sl_host_state(srv->host, proc, q.values[0], state_row, &b, &d)))
		send_error(req, status_of(rc), "%s", sl_diag_msg(&d));
	else
		send_buf(req, 200, q.values[0] ? "application/json" : "application/x-ndjson", &b);
	sl_buf_release(&b);
}

static int status_row(void *ud, const struct sl_status_row *row)
{
	struct sl_buf *b = ud;

	sl_buf_addc(b, b->len > 1 ? ',' : '\n');
	sl_render_status(b, row);
	return 0;
}

static void get_status(struct sl_http *srv, h2o_req_t *req)
{
	struct sl_buf b;
	struct sl_diag d;
	int rc;

	sl_buf_init(&b);
	sl_diag_init(&d);
	sl_buf_addc(&b, '[');
	if ((rc = sl_host_status(srv->host, status_row, &b, &d))) {
		send_error(req, status_of(rc), "%s", sl_diag_msg(&d));
	} else {
		sl_buf_adds(&b, b.len > 1 ? "\n]\n" : "]\n");
		send_buf(req, 200, "application/json", &b);
	}
	sl_buf_release(&b);
}

static void get_health(struct sl_http *srv, h2o_req_t *req)
{
	struct sl_buf b;
	struct sl_diag d;
	int n;

	sl_diag_init(&d);
	n = sl_host_faulted(srv->host, &d);
	if (n < 0) {
		send_error(req, 503, "%s", sl_diag_msg(&d));
		return;
	}
	if (n > 0) {
		send_error(req, 503, "%d instance%s faulted: %s", n, n == 1 ? " is" : "s are",
		           sl_diag_msg(&d));
		return;
	}
	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"status\": \"ok\"}\n");
	send_buf(req, 200, "application/json", &b);
	sl_buf_release(&b);
}

/* ---- metrics (Prometheus text exposition format 0.0.4) -------------------------------------- */

/* A label value: backslash, double quote and newline escaped. */
static void add_label(struct sl_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			sl_buf_addc(b, '\\'), sl_buf_addc(b, *s);
		else if (*s == '\n')
			sl_buf_adds(b, "\\n");
		else
			sl_buf_addc(b, *s);
	}
}

static void family(struct sl_buf *b, const char *name, const char *type, const char *help)
{
	sl_buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_lines(struct sl_buf *b, const char *name, const char *labels, const uint64_t *n,
                       double sum)
{
	uint64_t cum = 0;
	size_t k;

	for (k = 0; k <= SL_PUMP_BUCKETS; k++) {
		cum += n[k];
		if (k < SL_PUMP_BUCKETS)
			sl_buf_addf(b, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", name, labels,
			            sl_pump_buckets[k], cum);
		else
			sl_buf_addf(b, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
	}
	sl_buf_addf(b, "%s_sum{%.*s} %.9g\n%s_count{%.*s} %" PRIu64 "\n", name,
	            (int)(strlen(labels) ? strlen(labels) - 1 : 0), labels, sum, name,
	            (int)(strlen(labels) ? strlen(labels) - 1 : 0), labels, cum);
}

/* What one line of a per-processor family shows. */
typedef double (*stat_fn)(const struct sl_pump_stats *st);

static double st_events(const struct sl_pump_stats *st)
{
	return (double)st->events;
}
static double st_lag(const struct sl_pump_stats *st)
{
	return (double)st->lag;
}
static double st_batches(const struct sl_pump_stats *st)
{
	return (double)st->batches;
}
static double st_failures(const struct sl_pump_stats *st)
{
	return (double)st->failures;
}
static double st_budget(const struct sl_pump_stats *st)
{
	return (double)st->budget_hits;
}
static double st_faults(const struct sl_pump_stats *st)
{
	return (double)st->faults;
}
static double st_faulted(const struct sl_pump_stats *st)
{
	return (double)st->faulted;
}
static double st_leader(const struct sl_pump_stats *st)
{
	return st->leader;
}

static const struct {
	const char *name, *type, *help;
	stat_fn fn;
} proc_families[] = {
	{"sluice_events_processed_total", "counter",
         "Events the processor's checkpoints moved over in this run.", st_events},
	{"sluice_lag_events", "gauge", "Events appended that the processor has not processed yet.",
         st_lag},
	{"sluice_batches_total", "counter", "Batches committed in this run.", st_batches},
	{"sluice_batch_failures_total", "counter", "Batch attempts that failed in this run.",
         st_failures},
	{"sluice_budget_hits_total", "counter",
         "Batch attempts failed by an instruction, memory or wall-clock budget.", st_budget},
	{"sluice_faults_total", "counter", "Instances faulted in this run.", st_faults},
	{"sluice_faulted_instances", "gauge", "Instances faulted now.", st_faulted},
	{"sluice_processor_running", "gauge",
         "1 when this runner holds the processor's lease and runs it, 0 on standby.", st_leader},
};

static void metrics_procs(struct sl_http *srv, struct sl_buf *b)
{
	size_t n = sl_pump_nprocs(srv->pump), i, f;
	struct sl_pump_stats *st = calloc(n ? n : 1, sizeof(*st));
	struct sl_buf lab;

	if (!st) {
		sl_buf_grow(b, SIZE_MAX); /* marks b as out of memory */
		return;
	}
	for (i = 0; i < n; i++)
		sl_pump_stats_of(srv->pump, i, &st[i]);
	for (f = 0; f < sizeof(proc_families) / sizeof(proc_families[0]); f++) {
		family(b, proc_families[f].name, proc_families[f].type, proc_families[f].help);
		for (i = 0; i < n; i++) {
			sl_buf_addf(b, "%s{processor=\"", proc_families[f].name);
			add_label(b, sl_pump_proc_at(srv->pump, i)->cfg->name);
			sl_buf_addf(b, "\"} %.17g\n", proc_families[f].fn(&st[i]));
		}
	}
	family(b, "sluice_batch_duration_seconds", "histogram",
	       "How long batches took, from delivery to their commit or failure.");
	sl_buf_init(&lab);
	for (i = 0; i < n; i++) {
		sl_buf_reset(&lab);
		sl_buf_adds(&lab, "processor=\"");
		add_label(&lab, sl_pump_proc_at(srv->pump, i)->cfg->name);
		sl_buf_adds(&lab, "\",");
		sl_buf_addc(&lab, '\0');
		if (sl_buf_ok(&lab))
			hist_lines(b, "sluice_batch_duration_seconds", lab.ptr, st[i].hist,
			           st[i].seconds);
	}
	sl_buf_release(&lab);
	free(st);
}

/* The reads of events not yet ended. */
static size_t open_reads(const struct sl_http *srv)
{
	const struct reader *r;
	size_t n = 0;

	for (r = srv->readers; r; r = r->nextr)
		n += !r->done && r->req;
	return n;
}

static void get_metrics(struct sl_http *srv, h2o_req_t *req)
{
	const struct stats *st = &srv->st;
	struct sl_buf b;
	int64_t head = 0;

	sl_buf_init(&b);
	metrics_procs(srv, &b);
	family(&b, "sluice_http_requests_total", "counter", "HTTP requests received.");
	sl_buf_addf(&b, "sluice_http_requests_total %" PRIu64 "\n", st->requests);
	family(&b, "sluice_append_requests_total", "counter",
	       "Append requests answered, by result (ok: appended, rejected: 4xx or 5xx).");
	sl_buf_addf(&b, "sluice_append_requests_total{result=\"ok\"} %" PRIu64 "\n",
	            st->append_requests);
	sl_buf_addf(&b, "sluice_append_requests_total{result=\"rejected\"} %" PRIu64 "\n",
	            st->rejected);
	family(&b, "sluice_appends_total", "counter",
	       "Events appended over HTTP (duplicate: an idempotency key matched, nothing "
	       "written).");
	sl_buf_addf(&b, "sluice_appends_total{result=\"new\"} %" PRIu64 "\n", st->appended);
	sl_buf_addf(&b, "sluice_appends_total{result=\"duplicate\"} %" PRIu64 "\n", st->duplicates);
	family(&b, "sluice_commits_total", "counter",
	       "Group commits of HTTP appends (one transaction and one fsync each).");
	sl_buf_addf(&b, "sluice_commits_total %" PRIu64 "\n", st->commits);
	family(&b, "sluice_commit_duration_seconds", "histogram",
	       "How long the group commits of HTTP appends took, fsync included.");
	hist_lines(&b, "sluice_commit_duration_seconds", "", st->commit.n, st->commit.sum);
	family(&b, "sluice_http_event_reads", "gauge",
	       "GET .../events answers in progress (event streams and reads not yet sent).");
	sl_buf_addf(&b, "sluice_http_event_reads %zu\n", open_reads(srv));
	family(&b, "sluice_store_head_position", "gauge", "The store's highest position.");
	sl_store_head_position(srv->store, &head, NULL);
	sl_buf_addf(&b, "sluice_store_head_position %" PRId64 "\n", head);
	send_buf(req, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
	sl_buf_release(&b);
}

/* ---- routing ----------------------------------------------------------------------------------
 */

/* Whether the Authorization header carries the token, compared in constant time
 * (its length is not secret: every token of a deployment has the same). */
static int authorized(struct sl_http *srv, h2o_req_t *req)
{
	ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
	size_t n, k, tn;
	const char *got;
	unsigned char diff;

	if (!srv->token)
		return 1;
	if (i < 0 || req->headers.entries[i].value.len < 7 ||
	    !h2o_lcstris(req->headers.entries[i].value.base, 7, H2O_STRLIT("bearer ")))
		return 0;
	got = req->headers.entries[i].value.base + 7;
	n = req->headers.entries[i].value.len - 7;
	tn = strlen(srv->token);
	diff = n != tn;
	for (k = 0; k < tn; k++)
		diff |= (unsigned char)(srv->token[k] ^ (k < n ? got[k] : 0));
	return diff == 0;
}

/* The path without its query; *n its length. A target in absolute form
 * ("http://host:port/status", which HTTP/1.1 servers must take) is its path. */
static const char *path_of(h2o_req_t *req, size_t *n)
{
	const char *p = req->path.base, *slash;
	size_t len = req->query_at == SIZE_MAX ? req->path.len : req->query_at, skip = 0;

	if (len >= 7 && h2o_lcstris(p, 7, H2O_STRLIT("http://")))
		skip = 7;
	else if (len >= 8 && h2o_lcstris(p, 8, H2O_STRLIT("https://")))
		skip = 8;
	if (skip) {
		slash = memchr(p + skip, '/', len - skip);
		skip = slash ? (size_t)(slash - p) : len;
	}
	*n = len - skip;
	return p + skip;
}

static int starts(const char *p, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);

	return n >= k && !memcmp(p, prefix, k);
}

static int is(const char *p, size_t n, const char *s)
{
	return n == strlen(s) && !memcmp(p, s, n);
}

/* Routes /streams/... : an append, or the events of a stream. */
static void route_stream(struct sl_http *srv, h2o_req_t *req, const char *p, size_t n)
{
	char name[MAX_NAME + 1];

	p += 9; /* "/streams/" */
	n -= 9;
	if (method_is(req, "POST")) {
		struct query none = {{NULL}, {0}, {{0}}}; /* an append takes no parameter */
		if (!parse_query(req, &none) && !stream_of(req, "stream", p, n, name))
			post_append(srv, req, name);
		return;
	}
	/* POST /streams/{stream} appends, GET /streams/{stream}/events reads (a POST there
	 * appends to the stream "{stream}/events") */
	if (n < 8 || memcmp(p + n - 7, "/events", 7)) {
		send_not_allowed(req, "POST", "; GET /streams/{stream}/events reads a stream");
		return;
	}
	if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
		send_not_allowed(req, "GET, HEAD, POST", "");
		return;
	}
	if (!stream_of(req, "stream", p, n - 7, name))
		get_events(srv, req, name);
}

/* Routes /processors/{p}/state. */
static void route_processor(struct sl_http *srv, h2o_req_t *req, const char *p, size_t n)
{
	char name[MAX_NAME + 1];
	const char *why = "";

	p += 12; /* "/processors/" */
	n -= 12;
	if (n < 7 || memcmp(p + n - 6, "/state", 6) || memchr(p, '/', n - 6)) {
		send_error(req, 404, "no such path (GET /processors/{processor}/state)");
		return;
	}
	if (!method_is(req, "GET") && !method_is(req, "HEAD")) {
		send_not_allowed(req, "GET, HEAD", "");
		return;
	}
	if (decode(p, n - 6, name, &why)) {
		send_error(req, 400, "processor: %s in the processor name", why);
		return;
	}
	get_state(srv, req, name);
}

/* ---- requests from web pages ------------------------------------------------------------ */

/* The Origin header of req (NUL-terminated, from its pool), or NULL: browsers send it
 * with every cross-origin request and every POST, other clients do not. */
static const char *origin_of(h2o_req_t *req)
{
	ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);

	return i < 0 ? NULL
	             : h2o_strdup(&req->pool, req->headers.entries[i].value.base,
	                          req->headers.entries[i].value.len)
	                       .base;
}

/* Whether the deployment's httpOrigins lets pages of origin call the interface. */
static int origin_listed(const struct sl_http *srv, const char *origin)
{
	size_t i;

	for (i = 0; i < srv->dp->nhttp_origins; i++)
		if (!strcmp(srv->dp->http_origins[i], "*") ||
		    !strcasecmp(srv->dp->http_origins[i], origin))
			return 1;
	return 0;
}

/* Whether the Host of req names this machine over loopback: localhost (or a name
 * under .localhost), 127.x.x.x, [::1], or the machine's own host name, with any port;
 * or is absent (HTTP/1.0). A web page whose own name an attacker points at 127.0.0.1
 * (DNS rebinding) sends its name, and is refused. */
static int host_is_loopback(h2o_req_t *req)
{
	const char *p = req->input.authority.base, *colon;
	size_t n = req->input.authority.len;
	char name[256], self[256];
	struct in_addr a4;

	if (!n || h2o_memis(p, n, H2O_STRLIT(NO_HOST)))
		return 1;
	if (p[0] == '[') /* [v6]:port */
		return n >= 5 && !memcmp(p, "[::1]", 5) && (n == 5 || p[5] == ':');
	if ((colon = memchr(p, ':', n)))
		n = (size_t)(colon - p);
	if (n == 0 || n >= sizeof(name))
		return 0;
	memcpy(name, p, n);
	name[n] = '\0';
	if (name[n - 1] == '.')
		name[--n] = '\0';
	if (!strcasecmp(name, "localhost") || (n > 10 && !strcasecmp(name + n - 10, ".localhost")))
		return 1;
	if (inet_pton(AF_INET, name, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (gethostname(self, sizeof(self)))
		return 0;
	self[sizeof(self) - 1] = '\0';
	return !strcasecmp(name, self);
}

/* Refuses (403) what a web page may send without the user knowing: a request from an
 * origin httpOrigins does not list, and, without a token, one whose Host is not a
 * loopback name. Answers a CORS preflight (OPTIONS) of a listed origin, and marks the
 * answers to it. Returns 1 when req was answered here. */
static int guard_browsers(struct sl_http *srv, h2o_req_t *req)
{
	const char *origin = origin_of(req);

	if (!srv->token && !host_is_loopback(req)) {
		send_error(req, 403,
		           "Host '%.*s' is not a loopback name: without httpToken only requests to "
		           "localhost, 127.0.0.1 or [::1] are served",
		           (int)(req->input.authority.len > 64 ? 64 : req->input.authority.len),
		           req->input.authority.base);
		return 1;
	}
	if (!origin)
		return 0;
	if (!origin_listed(srv, origin)) {
		send_error(req, 403,
		           "a request from a web page of '%.*s%s' is refused: list the origin in "
		           "the deployment's httpOrigins to allow it",
		           SL_ECHO(origin));
		return 1;
	}
	add_header(req, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, origin);
	add_header(req, H2O_TOKEN_VARY, "Origin");
	if (method_is(req, "OPTIONS")) {
		h2o_add_header_by_str(&req->pool, &req->res.headers,
		                      H2O_STRLIT("access-control-allow-methods"), 0, NULL,
		                      H2O_STRLIT("GET, HEAD, POST"));
		h2o_add_header_by_str(&req->pool, &req->res.headers,
		                      H2O_STRLIT("access-control-allow-headers"), 0, NULL,
		                      H2O_STRLIT("Authorization, Content-Type, Last-Event-ID"));
		h2o_add_header_by_str(&req->pool, &req->res.headers,
		                      H2O_STRLIT("access-control-max-age"), 0, NULL,
		                      H2O_STRLIT("600"));
		req->res.status = 204;
		req->res.reason = "No Content";
		h2o_send_inline(req, "", 0);
		return 1;
	}
	return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct sl_http *srv = ((struct handler *)self)->srv;
	size_t n;
	const char *p = path_of(req, &n);
	int get = method_is(req, "GET") || method_is(req, "HEAD");

	srv->st.requests++;
	if (guard_browsers(srv, req))
		return 0;
	if (srv->closing) {
		send_error(req, 503, "the engine is stopping");
		return 0;
	}
	if (!authorized(srv, req)) {
		send_error(req, 401,
		           "missing or wrong bearer token (Authorization: Bearer <token>)");
		return 0;
	}
	if (starts(p, n, "/streams/"))
		route_stream(srv, req, p, n);
	else if (starts(p, n, "/processors/"))
		route_processor(srv, req, p, n);
	else if (!is(p, n, "/streams") && !is(p, n, "/status") && !is(p, n, "/metrics") &&
	         !is(p, n, "/healthz"))
		send_error(req, 404, "no such path '%.*s'", (int)(n > 64 ? 64 : n), p);
	else if (!get)
		send_not_allowed(req, "GET, HEAD", "");
	else if (is(p, n, "/streams"))
		get_streams(srv, req);
	else if (is(p, n, "/status"))
		get_status(srv, req);
	else if (is(p, n, "/metrics"))
		get_metrics(srv, req);
	else
		get_health(srv, req);
	return 0;
}

/* ---- connections -------------------------------------------------------------------------------
 */

struct conn {
	uv_tcp_t tcp; /* first: the handle h2o closes */
	struct sl_http *srv;
};

static void on_closed(uv_handle_t *h)
{
	struct conn *c = (struct conn *)h;

	c->srv->nconns--;
	free(c);
}

static void on_accept(uv_stream_t *listener, int status)
{
	struct sl_http *srv = listener->data;
	struct conn *c;
	h2o_socket_t *sock;

	if (status != 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->srv = srv;
	uv_tcp_init(listener->loop, &c->tcp);
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || srv->nconns >= MAX_CONNS) {
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
		return;
	}
	srv->nconns++;
	uv_tcp_nodelay(&c->tcp, 1);
	sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_closed);
	h2o_accept(&srv->accept, sock);
}

/* ---- starting and stopping ----------------------------------------------------------------------
 */

/* The token of the deployment's httpToken, checked against the address. */
static int take_token(struct sl_http *srv, const struct sl_http_opts *o,
                      const struct sl_http_addr *a, struct sl_diag *d)
{
	const char *v;

	if (!srv->dp->http_token) {
		if (!a->loopback)
			return sl_diag_set(d, SL_EINVAL,
			                   "%s: '%s' is not a loopback address: set httpToken in "
			                   "the deployment to the name of the environment variable "
			                   "holding the bearer token",
			                   o->field, o->addr);
		return 0;
	}
	if (!(v = getenv(srv->dp->http_token)) || !*v)
		return sl_diag_set(d, SL_EINVAL,
		                   "httpToken: the environment variable '%s' is not set (it "
		                   "holds the bearer token of the HTTP interface)",
		                   srv->dp->http_token);
	if (!(srv->token = strdup(v)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	return 0;
}

static int listen_on(struct sl_http *srv, const struct sl_http_opts *o,
                     const struct sl_http_addr *a, struct sl_diag *d)
{
	struct sockaddr_storage ss;
	int rc;

	rc = a->ipv6 ? uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)&ss)
	             : uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)&ss);
	if (!rc)
		rc = uv_tcp_init(srv->loop, &srv->listener);
	if (rc)
		return sl_diag_set(d, SL_EIO, "%s: cannot listen on %s: %s", o->field, o->addr,
		                   uv_strerror(rc));
	srv->listener.data = srv;
	srv->listening = 1;
	if ((rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0)) ||
	    (rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_accept)))
		return sl_diag_set(d, SL_EIO, "%s: cannot listen on %s: %s", o->field, o->addr,
		                   uv_strerror(rc));
	return 0;
}

/* h2o answers some bad requests itself, before a handler sees them (a malformed
 * chunked body, a body over httpMaxBody), in plain text: this filter turns such an
 * answer into {"error": "<its text>"}, as every other error of the interface is. The
 * text is h2o's own (ASCII, one line); a character JSON would escape becomes '?', so
 * that the length h2o set stays right plus the wrapping. */
struct errjson {
	h2o_ostream_t super;
	int sent; /* the wrapped text went: anything after it passes as it is */
};

static const char ERRJSON_HEAD[] = "{\"error\": \"", ERRJSON_TAIL[] = "\"}\n";

static void errjson_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n,
                         h2o_send_state_t state)
{
	struct errjson *ej = (struct errjson *)self;
	size_t i, j, len = sizeof(ERRJSON_HEAD) - 1 + sizeof(ERRJSON_TAIL) - 1, at;
	h2o_iovec_t out;

	if (ej->sent) {
		h2o_ostream_send_next(self, req, bufs, n, state);
		return;
	}
	ej->sent = 1;
	for (i = 0; i < n; i++)
		len += bufs[i].len;
	out.base = h2o_mem_alloc_pool(&req->pool, len);
	out.len = len;
	memcpy(out.base, ERRJSON_HEAD, sizeof(ERRJSON_HEAD) - 1);
	at = sizeof(ERRJSON_HEAD) - 1;
	for (i = 0; i < n; i++)
		for (j = 0; j < bufs[i].len; j++) {
			unsigned char c = (unsigned char)bufs[i].base[j];
			out.base[at++] =
				c == '"' || c == '\\' || c < 0x20 || c >= 0x7f ? '?' : (char)c;
		}
	memcpy(out.base + at, ERRJSON_TAIL, sizeof(ERRJSON_TAIL) - 1);
	h2o_ostream_send_next(self, req, &out, 1, state);
}

static void errjson_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
	ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
	struct errjson *o;

	(void)self;
	if (req->res.status >= 400 && i >= 0 &&
	    !h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD")) &&
	    req->res.content_length != SIZE_MAX &&
	    h2o_memis(req->res.headers.entries[i].value.base, req->res.headers.entries[i].value.len,
	              H2O_STRLIT("text/plain; charset=utf-8"))) {
		req->res.headers.entries[i].value = h2o_iovec_init(H2O_STRLIT("application/json"));
		req->res.content_length += sizeof(ERRJSON_HEAD) - 1 + sizeof(ERRJSON_TAIL) - 1;
		o = (struct errjson *)h2o_add_ostream(req, sizeof(*o), slot);
		o->super.do_send = errjson_send;
		o->sent = 0;
		slot = &o->super.next;
	}
	h2o_setup_next_ostream(req, slot);
}

static void setup_h2o(struct sl_http *srv)
{
	h2o_hostconf_t *host;
	h2o_pathconf_t *path;
	struct handler *hd;

	h2o_config_init(&srv->conf);
	srv->conf.server_name = h2o_iovec_init(H2O_STRLIT("sluice"));
	srv->conf.max_request_entity_size = srv->max_body;
	srv->conf.http1.req_timeout = (uint64_t)srv->dp->http_timeout_ms;
	srv->conf.http1.upgrade_to_http2 = 0;
	srv->conf.http2.idle_timeout = (uint64_t)srv->dp->http_timeout_ms;
	host = h2o_config_register_host(&srv->conf, h2o_iovec_init(H2O_STRLIT(NO_HOST)), 65535);
	path = h2o_config_register_path(host, "/", 0);
	hd = (struct handler *)h2o_create_handler(path, sizeof(*hd));
	hd->super.on_req = on_req;
	hd->srv = srv;
	/* h2o's own error answers come from the path the request was bound to, or, before
	 * it was (a bad body), from the host's fallback path */
	h2o_create_filter(path, sizeof(h2o_filter_t))->on_setup_ostream = errjson_setup;
	h2o_create_filter(&host->fallback_path, sizeof(h2o_filter_t))->on_setup_ostream =
		errjson_setup;
	h2o_context_init(&srv->ctx, srv->loop, &srv->conf);
	srv->accept.ctx = &srv->ctx;
	srv->accept.hosts = srv->conf.hosts;
	srv->h2o_ready = 1;
}

static void on_listener_closed(uv_handle_t *h)
{
	free(h->data);
}

int sl_http_new(struct sl_http **out, struct sl_host *h, struct uv_loop_s *loop,
                struct sl_store *store, struct sl_pump *pump, const struct sl_deploy *dp,
                const struct sl_http_opts *o, struct sl_diag *d)
{
	struct sl_http *srv = calloc(1, sizeof(*srv));
	struct sl_http_addr a;
	int rc;

	*out = NULL;
	if (!srv)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	srv->loop = loop;
	srv->host = h;
	srv->store = store;
	srv->pump = pump;
	srv->dp = dp;
	srv->max_body = (size_t)dp->http_max_body;
	srv->tail = &srv->head;
	if ((rc = sl_http_addr_parse(o->addr, &a, d))) {
		sl_diag_prefix(d, "%s: ", o->field);
		goto fail;
	}
	if ((rc = take_token(srv, o, &a, d)))
		goto fail;
	if ((rc = sl_core_validator_new(&srv->validator, d)) ||
	    (rc = sl_core_validator_use_contracts(srv->validator, (const char *const *)dp->schemas,
	                                          dp->nschemas, d)))
		goto fail;
	/* A client that goes away mid-answer must not kill the engine with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if ((rc = listen_on(srv, o, &a, d)))
		goto fail;
	uv_check_init(loop, &srv->flush);
	uv_idle_init(loop, &srv->nowait);
	uv_timer_init(loop, &srv->beat);
	uv_idle_init(loop, &srv->resume);
	srv->flush.data = srv->nowait.data = srv->beat.data = srv->resume.data = srv;
	uv_timer_start(&srv->beat, on_beat, HEARTBEAT_MS, HEARTBEAT_MS);
	uv_unref((uv_handle_t *)&srv->beat);
	setup_h2o(srv);
	sl_pump_set_listener(pump, on_change, srv);
	sl_log(SL_LOG_INFO, NULL, NULL, 0, "http: serving on %s%s", o->addr,
	       srv->token ? " (bearer token required)" : "");
	*out = srv;
	return 0;
fail:
	sl_core_validator_free(srv->validator);
	free(srv->token);
	if (srv->listening) /* srv goes once its listener closed */
		uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
	else
		free(srv);
	return rc;
}

int sl_http_use_contracts(struct sl_http *srv, const struct sl_deploy *dp, struct sl_diag *d)
{
	struct sl_core_validator *v = NULL;
	int rc;

	if ((rc = sl_core_validator_new(&v, d)) ||
	    (rc = sl_core_validator_use_contracts(v, (const char *const *)dp->schemas, dp->nschemas,
	                                          d))) {
		sl_core_validator_free(v);
		return rc;
	}
	sl_core_validator_free(srv->validator);
	srv->validator = v;
	return 0;
}

void sl_http_stop(struct sl_http *srv)
{
	struct reader *r, *next;

	if (!srv || srv->closing)
		return;
	srv->closing = 1;
	sl_pump_set_listener(srv->pump, NULL, NULL);
	if (srv->head)
		on_flush(&srv->flush); /* what was accepted is written and answered */
	for (r = srv->readers; r; r = next) {
		next = r->nextr;
		if (!r->sending && !r->done && r->req) {
			/* an event stream ends; a read cut short in a scan is an error */
			sl_buf_reset(&r->out);
			reader_send(r, r->parked ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL);
		}
	}
	uv_close((uv_handle_t *)&srv->listener, NULL);
	uv_close((uv_handle_t *)&srv->flush, NULL);
	uv_close((uv_handle_t *)&srv->nowait, NULL);
	uv_close((uv_handle_t *)&srv->beat, NULL);
	uv_close((uv_handle_t *)&srv->resume, NULL);
	sl_core_validator_free(srv->validator);
	srv->validator = NULL;
	free(srv->token);
	srv->token = NULL;
	/* h2o's connections point at its context: with one open, both stay until the
	 * process ends. h2o closes the context's timers, and the loop finishes that. */
	if (srv->nconns == 0 && srv->h2o_ready) {
		h2o_context_dispose(&srv->ctx);
		h2o_config_dispose(&srv->conf);
		srv->disposed = 1;
	}
}

void sl_http_free(struct sl_http *srv)
{
	if (srv && srv->disposed)
		free(srv);
}
