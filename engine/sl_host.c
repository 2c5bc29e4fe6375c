/* sl_host.c - deployments at run time: loading, the pump, faults, state and status. */
#include "sl_host.h"

#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sl_buf.h"
#include "sl_checkpoint.h"
#include "sl_contract.h"
#include "sl_deploy.h"
#include "sl_log.h"
#include "sl_processor.h"
#include "sl_store.h"

/* Events read for one batch: views whose strings live in `arena`. */
struct evbuf {
	struct sl_event *ev;
	size_t n, cap;
	struct sl_buf arena;
	size_t (*off)[6]; /* string offsets of each event, fixed up after reading */
};

struct hproc {
	struct sl_proc *p;
	const struct sl_deploy_proc *cfg;
};

struct sl_host {
	struct sl_deploy *dp;
	struct sl_contracts *cs;
	struct sl_store *store;
	struct sl_core_validator *core; /* the store's payload check */
	struct hproc *procs;
	size_t nprocs;
	struct evbuf buf;
	struct sl_inst **todo; /* instances behind their head, this round */
	size_t ntodo, captodo;
	uv_loop_t loop;
	uv_timer_t timer;
	uv_signal_t sigint, sigterm;
	int until_caught_up, progress, retrying, stopping, signals;
	int loop_ready;
	size_t inflight;   /* batches whose ingest has not completed */
	uint64_t deadline; /* loop time when a shutdown stops waiting */
	double shutdown_ms;
};

/* One ingest in flight: what its completion needs after the batch buffer was reused. */
struct pending {
	struct sl_host *h;
	struct hproc *hp;
	char *first_stream; /* the failing batch's first event, for stream/error-occurred */
	int64_t first_offset;
};

/* ---- opening ------------------------------------------------------------------------ */

#ifdef SL_TESTING
/* SLUICE_BUDGETS=off turns the instruction, memory and wall-clock budgets off: for
 * measuring what they cost (bench_runtime). A test switch: only the SL_TESTING build
 * has it, so nothing in a user's environment turns a budget off. */
static int budgets_off(void)
{
	const char *v = getenv("SLUICE_BUDGETS");

	return v && !strcmp(v, "off");
}
#else
static int budgets_off(void)
{
	return 0;
}
#endif

static int open_procs(struct sl_host *h, int flags, struct sl_errs *errs)
{
	int bad = 0, off = budgets_off();
	size_t i;

	if (!(h->procs = calloc(h->dp->nprocs + 1, sizeof(*h->procs))))
		return SL_ENOMEM;
	for (i = 0; i < h->dp->nprocs; i++) {
		const struct sl_deploy_proc *dp = &h->dp->procs[i];
		struct sl_proc_cfg cfg = {
			.name = dp->name,
			.script = dp->script,
			.streams = dp->streams,
			.mode_all = dp->mode_all,
			.effects_all = dp->effects_all,
			.batch_size = dp->batch_size,
			.strict = (flags & SL_HOST_STRICT) != 0,
			.instructions = off ? 0 : dp->instructions,
			.memory = off ? 0 : dp->memory,
			.wallclock_ms = off ? 0 : dp->wallclock_ms,
		};
		h->procs[i].cfg = dp;
		if (sl_proc_load(&h->procs[h->nprocs].p, &cfg, h->cs, errs))
			bad = 1;
		else
			h->procs[h->nprocs++].cfg = dp;
	}
	return bad ? SL_EINVAL : 0;
}

static int open_store(struct sl_host *h, int flags, struct sl_errs *errs)
{
	struct sl_store_opts so = { h->dp->durability, 0, sl_core_validate, NULL };
	struct sl_diag d;
	size_t i;

	sl_diag_init(&d);
	if (sl_core_validator_new(&h->core, &d))
		goto fail;
	so.check_ud = h->core;
	if (sl_store_open(&h->store, h->dp->store, &so, &d))
		goto fail;
	for (i = 0; i < h->nprocs; i++)
		if (sl_proc_attach(h->procs[i].p, h->store, flags & SL_HOST_RUN, &d) ||
		    sl_proc_set_loop(h->procs[i].p, &h->loop, &d))
			goto fail;
	return 0;
fail:
	sl_errs_add(errs, "%s", sl_diag_msg(&d));
	return d.code;
}

int sl_host_open(struct sl_host **out, const char *deployment, int flags, struct sl_errs *errs)
{
	struct sl_host *h = calloc(1, sizeof(*h));
	struct sl_diag d;
	int rc;

	*out = NULL;
	sl_diag_init(&d);
	if (!h) {
		sl_errs_add(errs, "out of memory");
		return SL_ENOMEM;
	}
	sl_buf_init(&h->buf.arena);
	h->shutdown_ms = 10000;
	if ((rc = uv_loop_init(&h->loop))) {
		sl_errs_add(errs, "cannot start the event loop: %s", uv_strerror(rc));
		rc = SL_EIO;
		goto fail;
	}
	h->loop_ready = 1;
	if ((rc = sl_deploy_load(&h->dp, deployment, errs)))
		goto fail;
	h->shutdown_ms = h->dp->shutdown_ms;
	if ((rc = sl_contracts_new(&h->cs, (const char *const *)h->dp->schemas, h->dp->nschemas, &d))) {
		sl_errs_add(errs, "%s", sl_diag_msg(&d));
		goto fail;
	}
	if ((rc = open_procs(h, flags, errs)))
		goto fail;
	if (!(flags & SL_HOST_NO_STORE) && (rc = open_store(h, flags, errs)))
		goto fail;
	*out = h;
	return 0;
fail:
	sl_host_free(h);
	return rc;
}

void sl_host_free(struct sl_host *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->nprocs; i++)
		sl_proc_free(h->procs[i].p);
	free(h->procs);
	if (h->loop_ready) {
		uv_run(&h->loop, UV_RUN_NOWAIT); /* let handles closed above finish closing */
		uv_loop_close(&h->loop);
	}
	free(h->buf.ev);
	free(h->buf.off);
	sl_buf_release(&h->buf.arena);
	free(h->todo);
	sl_store_close(h->store);
	sl_core_validator_free(h->core);
	sl_contracts_free(h->cs);
	sl_deploy_free(h->dp);
	free(h);
}

static struct hproc *find_proc(struct sl_host *h, const char *name, struct sl_diag *d)
{
	size_t i;

	for (i = 0; i < h->nprocs; i++)
		if (!strcmp(sl_proc_name(h->procs[i].p), name))
			return &h->procs[i];
	sl_diag_set(d, SL_EINVAL, "unknown processor '%s' (not in %s)", name, h->dp->file);
	return NULL;
}

/* ---- reading batches ------------------------------------------------------------------ */

static size_t put_str(struct sl_buf *b, const char *s, size_t n)
{
	size_t off = b->len;

	if (!s)
		return (size_t)-1;
	sl_buf_add(b, s, n);
	sl_buf_addc(b, '\0');
	return off;
}

/* Copies one event into the buffer (offsets now, pointers once reading is done). */
static int copy_event(void *ud, const struct sl_event *ev)
{
	struct evbuf *eb = ud;
	size_t *o;

	if (eb->n == eb->cap) {
		size_t cap = eb->cap ? eb->cap * 2 : 256;
		struct sl_event *ne = realloc(eb->ev, cap * sizeof(*ne));
		size_t(*no)[6] = ne ? realloc(eb->off, cap * sizeof(*no)) : NULL;
		if (ne)
			eb->ev = ne;
		if (!no)
			return SL_ENOMEM;
		eb->off = no;
		eb->cap = cap;
	}
	eb->ev[eb->n] = *ev;
	o = eb->off[eb->n++];
	o[0] = put_str(&eb->arena, ev->stream, strlen(ev->stream));
	o[1] = put_str(&eb->arena, ev->type, strlen(ev->type));
	o[2] = put_str(&eb->arena, ev->payload, ev->payload_len);
	o[3] = put_str(&eb->arena, ev->metadata, ev->metadata_len);
	o[4] = put_str(&eb->arena, ev->key, ev->key ? strlen(ev->key) : 0);
	o[5] = put_str(&eb->arena, ev->created_at, strlen(ev->created_at));
	return sl_buf_ok(&eb->arena) ? 0 : SL_ENOMEM;
}

static const char *at(struct evbuf *eb, size_t off)
{
	return off == (size_t)-1 ? NULL : eb->arena.ptr + off;
}

static void fix_pointers(struct evbuf *eb)
{
	size_t i;

	for (i = 0; i < eb->n; i++) {
		eb->ev[i].stream = at(eb, eb->off[i][0]);
		eb->ev[i].type = at(eb, eb->off[i][1]);
		eb->ev[i].payload = at(eb, eb->off[i][2]);
		eb->ev[i].metadata = at(eb, eb->off[i][3]);
		eb->ev[i].key = at(eb, eb->off[i][4]);
		eb->ev[i].created_at = at(eb, eb->off[i][5]);
	}
}

/* Reads the next batch of an instance into h->buf. */
static int read_batch(struct sl_host *h, struct hproc *hp, struct sl_inst *in, struct sl_diag *d)
{
	int rc;

	h->buf.n = 0;
	sl_buf_reset(&h->buf.arena);
	if (hp->cfg->mode_all)
		rc = sl_store_read_all(h->store, in->offset + 1, hp->cfg->batch_size, copy_event,
				       &h->buf, d);
	else
		rc = sl_store_read(h->store, in->stream, in->offset + 1, hp->cfg->batch_size, NULL,
				   copy_event, &h->buf, d);
	if (rc == SL_ENOMEM)
		return sl_diag_set(d, SL_ENOMEM, "out of memory reading a batch");
	fix_pointers(&h->buf);
	return rc;
}

/* ---- faults ------------------------------------------------------------------------------ */

/* Writes the fault row of an instance and, when it has a stream, its
 * stream/error-occurred ev, in one commit. */
static int record_fault(struct sl_host *h, const char *proc, const char *stream,
			const char *msg, const struct sl_event_in *ev, struct sl_diag *d)
{
	struct sl_append_result res;
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(h->store, NULL, &c, d)))
		return rc;
	if (!(rc = sl_ckpt_fault(c, proc, stream, msg, d)) && *ev->stream)
		rc = sl_commit_append(c, ev, 1, &res, 0, NULL, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

/* Records the fault of an instance: its row, and stream/error-occurred on the stream
 * of the failing batch's first event. */
static void fault(struct sl_host *h, struct hproc *hp, struct sl_inst *in, const char *msg,
		  const struct pending *pd)
{
	const char *tb = sl_proc_last_traceback(hp->p);
	struct sl_event_in ev = { 0 };
	struct sl_buf payload;
	struct sl_diag d;
	char key[512];

	sl_diag_init(&d);
	sl_buf_init(&payload);
	snprintf(key, sizeof(key), "processor-ingest-failed:%s:%lld", hp->cfg->name,
		 (long long)in->offset);
	sl_buf_adds(&payload, "{\"message\":");
	sl_buf_addjstr(&payload, msg, strlen(msg));
	sl_buf_adds(&payload, ",\"processor\":");
	sl_buf_addjstr(&payload, hp->cfg->name, strlen(hp->cfg->name));
	if (pd->first_stream) { /* the event it failed at, else the batch's first */
		int64_t at = sl_proc_last_fail_offset(hp->p);
		sl_buf_adds(&payload, ",\"offset\":");
		sl_buf_addi(&payload, at ? at : pd->first_offset);
	}
	sl_buf_adds(&payload, ",\"error\":{\"message\":");
	sl_buf_addjstr(&payload, msg, strlen(msg));
	if (tb) {
		sl_buf_adds(&payload, ",\"traceback\":");
		sl_buf_addjstr(&payload, tb, strlen(tb));
	}
	sl_buf_adds(&payload, "}}");
	ev.stream = pd->first_stream ? pd->first_stream : in->stream;
	ev.type = "stream/error-occurred";
	ev.payload = payload.ptr;
	ev.payload_len = payload.len;
	ev.key = key;
	if (record_fault(h, hp->cfg->name, in->stream, msg, &ev, &d))
		sl_log(SL_LOG_ERROR, hp->cfg->name, in->stream, 0, "cannot record the fault: %s",
		       sl_diag_msg(&d));
	in->faulted = 1;
	in->has_row = 1;
	sl_buf_release(&payload);
}

static void on_tick(uv_timer_t *t);

/* Completion of one ingest: success resets the failure count; a failure schedules
 * the retry with exponential backoff or, when attempts are used up, faults. */
static void on_ingested(void *ud, struct sl_inst *in, int rc, const struct sl_diag *d)
{
	struct pending *pd = ud;
	struct sl_host *h = pd->h;
	struct hproc *hp = pd->hp;
	/* Where it failed: the event it failed at, else the batch's first. */
	const char *stream = pd->first_stream ? pd->first_stream : in->stream;
	int64_t at = rc ? sl_proc_last_fail_offset(hp->p) : 0;
	double backoff;
	int i;

	in->busy = 0;
	h->inflight--;
	h->progress = 1;
	if (rc == 0) {
		in->fails = 0;
	} else if (++in->fails >= hp->cfg->retry_attempts) {
		sl_log(SL_LOG_ERROR, hp->cfg->name, stream, at ? at : pd->first_offset,
		       "%s (attempt %d of %d; faulted)", sl_diag_msg(d), in->fails,
		       hp->cfg->retry_attempts);
		fault(h, hp, in, sl_diag_msg(d), pd);
	} else {
		sl_log(SL_LOG_WARN, hp->cfg->name, stream, at ? at : pd->first_offset,
		       "%s (attempt %d of %d)", sl_diag_msg(d), in->fails, hp->cfg->retry_attempts);
		for (backoff = hp->cfg->backoff_ms, i = 1; i < in->fails; i++)
			backoff *= 2;
		in->retry_at = uv_now(&h->loop) + (uint64_t)backoff;
		h->retrying = 1;
	}
	free(pd->first_stream);
	free(pd);
	/* A batch that settled later (blocking work) wakes the pump at once. */
	uv_timer_start(&h->timer, on_tick, 0, 0);
}

/* Starts the ingest of the batch in h->buf for instance in. */
static int ingest(struct sl_host *h, struct hproc *hp, struct sl_inst *in, struct sl_diag *d)
{
	struct pending *pd = calloc(1, sizeof(*pd));
	size_t i;

	if (!pd)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	pd->h = h;
	pd->hp = hp;
	for (i = 0; i < h->buf.n; i++) {
		int64_t seq = hp->cfg->mode_all ? h->buf.ev[i].position : h->buf.ev[i].offset;
		if (seq > in->offset) {
			pd->first_stream = strdup(h->buf.ev[i].stream);
			pd->first_offset = h->buf.ev[i].offset;
			break;
		}
	}
	in->busy = 1;
	h->inflight++;
	sl_proc_ingest(hp->p, in, h->buf.ev, h->buf.n, on_ingested, pd);
	return 0;
}

/* ---- the pump ------------------------------------------------------------------------------ */

static int add_todo(struct sl_host *h, struct sl_inst *in)
{
	if (h->ntodo == h->captodo) {
		size_t cap = h->captodo ? h->captodo * 2 : 64;
		struct sl_inst **grown = realloc(h->todo, cap * sizeof(*grown));
		if (!grown)
			return SL_ENOMEM;
		h->todo = grown;
		h->captodo = cap;
	}
	h->todo[h->ntodo++] = in;
	return 0;
}

struct scan {
	struct sl_host *h;
	struct hproc *hp;
	struct sl_diag *d;
};

/* Finds the instance of a matching stream and queues it if it is behind. */
static int scan_stream(void *ud, const struct sl_stream_info *info)
{
	struct scan *sc = ud;
	struct sl_inst *in;
	int rc;

	if (!sl_pattern_match(sc->hp->cfg->streams, info->stream))
		return 0;
	if (!(in = sl_proc_instance(sc->hp->p, info->stream)))
		return sl_diag_set(sc->d, SL_ENOMEM, "out of memory");
	if ((rc = sl_proc_inst_load(sc->hp->p, in, sc->d)))
		return rc;
	in->head = info->head;
	return in->offset < in->head ? add_todo(sc->h, in) : 0;
}

/* Lists the instances of hp that are behind their head. */
static int scan(struct sl_host *h, struct hproc *hp, struct sl_diag *d)
{
	struct scan sc = { h, hp, d };
	struct sl_inst *in;
	int64_t head;
	int rc;

	h->ntodo = 0;
	if (!hp->cfg->mode_all)
		return sl_store_streams(h->store, NULL, scan_stream, &sc, d);
	if (!(in = sl_proc_instance(hp->p, "")))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if ((rc = sl_proc_inst_load(hp->p, in, d)) || (rc = sl_store_head_position(h->store, &head, d)))
		return rc;
	in->head = head;
	return in->offset < head ? add_todo(h, in) : 0;
}

/* One pass over every processor: one batch per instance that is behind. */
static int pump_round(struct sl_host *h, struct sl_diag *d)
{
	uint64_t now = uv_now(&h->loop);
	size_t i, k;
	int rc;

	h->progress = h->retrying = 0;
	for (i = 0; i < h->nprocs && !h->stopping; i++) {
		struct hproc *hp = &h->procs[i];
		sl_proc_flush(hp->p);
		if ((rc = scan(h, hp, d)))
			return rc;
		for (k = 0; k < h->ntodo && !h->stopping; k++) {
			struct sl_inst *in = h->todo[k];
			if (in->faulted || in->busy)
				continue;
			if (in->retry_at > now) {
				h->retrying = 1;
				continue;
			}
			if ((rc = read_batch(h, hp, in, d)) || (rc = ingest(h, hp, in, d)))
				return rc;
		}
	}
	return 0;
}

static size_t work_running(struct sl_host *h)
{
	size_t i, n = 0;

	for (i = 0; i < h->nprocs; i++)
		n += sl_proc_work_running(h->procs[i].p);
	return n;
}

/* Shutting down: no new batch starts; stop once the batches in flight settled (or
 * the deadline passed), reporting background work that is still running. */
static int shutdown_done(struct sl_host *h)
{
	size_t bg, i;

	if (h->inflight && uv_now(&h->loop) < h->deadline)
		return 0;
	if (h->inflight)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "shutdown: %zu batches did not settle in time; they will be delivered again",
		       h->inflight);
	if ((bg = work_running(h))) {
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "shutdown: %zu background work items still running were stopped", bg);
		for (i = 0; i < h->nprocs; i++)
			sl_proc_kill_work(h->procs[i].p);
	}
	return 1;
}

static void on_tick(uv_timer_t *t)
{
	struct sl_host *h = t->data;
	struct sl_diag d;
	int idle;

	sl_diag_init(&d);
	if (h->stopping) {
		if (shutdown_done(h))
			uv_stop(&h->loop);
		else
			uv_timer_start(&h->timer, on_tick, 20, 0);
		return;
	}
	if (pump_round(h, &d)) {
		sl_log(SL_LOG_ERROR, NULL, NULL, 0, "%s", sl_diag_msg(&d));
		h->stopping = 1;
		h->deadline = uv_now(&h->loop) + (uint64_t)h->shutdown_ms;
		uv_timer_start(&h->timer, on_tick, 0, 0);
		return;
	}
	idle = !h->progress && !h->retrying && !h->inflight && !work_running(h);
	if (h->until_caught_up && idle) {
		uv_stop(&h->loop);
		return;
	}
	/* Go on at once while there is work; otherwise poll for new events. */
	uv_timer_start(&h->timer, on_tick, h->progress ? 0 : h->retrying ? 10 : 100, 0);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct sl_host *h = s->data;

	if (h->signals++) {
		/* A second signal: leave now. SQLite's journal keeps the store whole. */
		sl_log(SL_LOG_WARN, NULL, NULL, 0, "second signal; exiting at once");
		_exit(128 + signum);
	}
	h->stopping = 1;
	h->deadline = uv_now(&h->loop) + (uint64_t)h->shutdown_ms;
	uv_timer_start(&h->timer, on_tick, 0, 0);
}

struct faults {
	const char *proc;
	int n;
	struct sl_diag *d;
};

static int count_fault(void *ud, const char *stream, const struct sl_ckpt *c)
{
	struct faults *f = ud;

	if (c->faulted && f->n++ == 0)
		sl_diag_set(f->d, SL_EINVAL, "processor '%s'%s%s is faulted: %s", f->proc,
			    *stream ? " on " : "", stream, c->last_error ? c->last_error : "");
	return 0;
}

/* Counts faulted instances after a run, naming the first in d. */
static int count_faulted(struct sl_host *h, struct sl_diag *d)
{
	struct faults f = { NULL, 0, d };
	size_t i;

	for (i = 0; i < h->nprocs; i++) {
		f.proc = h->procs[i].cfg->name;
		sl_ckpt_each(h->store, f.proc, count_fault, &f, d);
	}
	return f.n;
}

void sl_host_set_shutdown_timeout(struct sl_host *h, double ms)
{
	h->shutdown_ms = ms;
}

int sl_host_run(struct sl_host *h, int until_caught_up, struct sl_diag *d)
{
	size_t i;

	h->until_caught_up = until_caught_up;
	uv_timer_init(&h->loop, &h->timer);
	uv_signal_init(&h->loop, &h->sigint);
	uv_signal_init(&h->loop, &h->sigterm);
	h->timer.data = h->sigint.data = h->sigterm.data = h;
	uv_signal_start(&h->sigint, on_signal, SIGINT);
	uv_signal_start(&h->sigterm, on_signal, SIGTERM);
	for (i = 0; i < h->nprocs; i++) {
		struct sl_diag pd;
		sl_diag_init(&pd);
		if (sl_proc_prepare(h->procs[i].p, &pd))
			sl_log(SL_LOG_WARN, h->procs[i].cfg->name, NULL, 0,
			       "%s (retried with its first batch)", sl_diag_msg(&pd));
	}
	uv_timer_start(&h->timer, on_tick, 0, 0);
	uv_run(&h->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&h->timer, NULL);
	uv_close((uv_handle_t *)&h->sigint, NULL);
	uv_close((uv_handle_t *)&h->sigterm, NULL);
	uv_run(&h->loop, UV_RUN_NOWAIT);
	return count_faulted(h, d) ? 1 : 0;
}

/* ---- state, status, reset -------------------------------------------------------------------- */

static const char *status_of(const struct sl_inst *in)
{
	return in->faulted ? "faulted" : in->has_row && in->offset > 0 ? "ok" : "new";
}

static void put_stream_field(struct sl_buf *b, const struct hproc *hp, const struct sl_inst *in)
{
	sl_buf_adds(b, ",\"stream\":");
	if (hp->cfg->mode_all)
		sl_buf_adds(b, "null");
	else
		sl_buf_addjstr(b, in->stream, strlen(in->stream));
}

static int print_state(struct sl_host *h, struct hproc *hp, struct sl_inst *in, FILE *out,
		       struct sl_diag *d)
{
	struct sl_buf b;
	int rc;

	(void)h;
	sl_buf_init(&b);
	if ((rc = sl_proc_inst_load(hp->p, in, d)))
		goto out;
	sl_buf_adds(&b, "{\"processor\":");
	sl_buf_addjstr(&b, hp->cfg->name, strlen(hp->cfg->name));
	put_stream_field(&b, hp, in);
	sl_buf_adds(&b, ",\"offset\":");
	sl_buf_addi(&b, in->offset);
	sl_buf_addf(&b, ",\"status\":\"%s\",\"state\":", status_of(in));
	if ((rc = sl_proc_state_json(hp->p, in, &b, d)))
		goto out;
	sl_buf_adds(&b, "}\n");
	if (!sl_buf_ok(&b))
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
	else
		fwrite(b.ptr, 1, b.len, out);
out:
	sl_buf_release(&b);
	return rc;
}

struct each_ctx {
	struct sl_host *h;
	struct hproc *hp;
	FILE *out;
	struct sl_diag *d;
	int (*fn)(struct each_ctx *c, struct sl_inst *in);
	int64_t head;
	void *arg;
};

static int each_stream(void *ud, const struct sl_stream_info *info)
{
	struct each_ctx *c = ud;
	struct sl_inst *in;

	if (!sl_pattern_match(c->hp->cfg->streams, info->stream))
		return 0;
	if (!(in = sl_proc_instance(c->hp->p, info->stream)))
		return sl_diag_set(c->d, SL_ENOMEM, "out of memory");
	c->head = info->head;
	return c->fn(c, in);
}

/* Calls c->fn for every instance of c->hp (one matching stream each, or the one). */
static int each_instance(struct each_ctx *c)
{
	struct sl_inst *in;
	int rc;

	if (!c->hp->cfg->mode_all)
		return sl_store_streams(c->h->store, NULL, each_stream, c, c->d);
	if (!(in = sl_proc_instance(c->hp->p, "")))
		return sl_diag_set(c->d, SL_ENOMEM, "out of memory");
	if ((rc = sl_store_head_position(c->h->store, &c->head, c->d)))
		return rc;
	return c->fn(c, in);
}

static int state_fn(struct each_ctx *c, struct sl_inst *in)
{
	return print_state(c->h, c->hp, in, c->out, c->d);
}

int sl_host_state(struct sl_host *h, const char *proc, const char *stream, FILE *out,
		  struct sl_diag *d)
{
	struct hproc *hp = find_proc(h, proc, d);
	struct each_ctx c = { h, hp, out, d, state_fn, 0, NULL };
	struct sl_inst *in;

	if (!hp)
		return d->code;
	if (hp->cfg->mode_all || stream) {
		if (stream && !hp->cfg->mode_all && !sl_pattern_match(hp->cfg->streams, stream))
			return sl_diag_set(d, SL_EINVAL, "stream '%s' does not match '%s' of processor '%s'",
					   stream, hp->cfg->streams, proc);
		if (!(in = sl_proc_instance(hp->p, hp->cfg->mode_all ? "" : stream)))
			return sl_diag_set(d, SL_ENOMEM, "out of memory");
		return print_state(h, hp, in, out, d);
	}
	return each_instance(&c);
}

static int status_fn(struct each_ctx *c, struct sl_inst *in)
{
	struct sl_ckpt ck;
	struct sl_buf b;
	int found, rc;

	if ((rc = sl_proc_inst_load(c->hp->p, in, c->d)) ||
	    (rc = sl_ckpt_get(c->h->store, c->hp->cfg->name, in->stream, &ck, &found, c->d)))
		return rc;
	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"processor\":");
	sl_buf_addjstr(&b, c->hp->cfg->name, strlen(c->hp->cfg->name));
	put_stream_field(&b, c->hp, in);
	sl_buf_addf(&b, ",\"offset\":%lld,\"head\":%lld,\"lag\":%lld,\"status\":\"%s\",\"lastError\":",
		    (long long)in->offset, (long long)c->head,
		    (long long)(c->head > in->offset ? c->head - in->offset : 0), status_of(in));
	if (ck.last_error)
		sl_buf_addjstr(&b, ck.last_error, strlen(ck.last_error));
	else
		sl_buf_adds(&b, "null");
	sl_buf_addf(&b, ",\"backgroundFailures\":%lld}\n", (long long)ck.background_failures);
	sl_ckpt_release(&ck);
	if (!sl_buf_ok(&b))
		rc = sl_diag_set(c->d, SL_ENOMEM, "out of memory");
	else
		fwrite(b.ptr, 1, b.len, c->out);
	sl_buf_release(&b);
	return rc;
}

int sl_host_status(struct sl_host *h, FILE *out, struct sl_diag *d)
{
	size_t i;
	int rc;

	for (i = 0; i < h->nprocs; i++) {
		struct each_ctx c = { h, &h->procs[i], out, d, status_fn, 0, NULL };
		if ((rc = each_instance(&c)))
			return rc;
	}
	return 0;
}

int sl_host_reset(struct sl_host *h, const char *proc, const char *stream, int with_effects,
		  struct sl_diag *d)
{
	struct hproc *hp = find_proc(h, proc, d);
	struct sl_commit *c;
	int rc, end;

	if (!hp)
		return d->code;
	if (hp->cfg->mode_all)
		stream = NULL;
	if (stream && !sl_pattern_match(hp->cfg->streams, stream))
		return sl_diag_set(d, SL_EINVAL, "stream '%s' does not match '%s' of processor '%s'",
				   stream, hp->cfg->streams, proc);
	if ((rc = sl_commit_begin(h->store, NULL, &c, d)))
		return rc;
	if (!(rc = sl_ckpt_reset(c, proc, stream, with_effects, d)) && !stream)
		rc = sl_ckpt_drop_tables(c, proc, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

/* ---- resume and dead letters ----------------------------------------------------------- */

struct wait1 {
	int done, rc;
	struct sl_diag d;
};

static void on_one(void *ud, struct sl_inst *in, int rc, const struct sl_diag *d)
{
	struct wait1 *w = ud;

	(void)in;
	w->done = 1;
	w->rc = rc;
	if (rc)
		sl_diag_set(&w->d, rc, "%s", sl_diag_msg(d));
}

/* Runs one event alone through the instance and waits for it to settle. */
static int ingest_one(struct sl_host *h, struct hproc *hp, struct sl_inst *in,
		      const struct sl_event *ev, struct sl_diag *d)
{
	struct wait1 w = { 0, 0, { 0, "" } };

	sl_proc_ingest(hp->p, in, ev, 1, on_one, &w);
	while (!w.done)
		uv_run(&h->loop, UV_RUN_ONCE);
	if (w.rc)
		sl_diag_set(d, w.rc, "%s", sl_diag_msg(&w.d));
	return w.rc;
}

/* Dead-letters ev for instance in and moves its checkpoint past it. */
static int dead_letter(struct sl_host *h, struct hproc *hp, struct sl_inst *in,
		       const struct sl_event *ev, const char *err, FILE *out, struct sl_diag *d)
{
	int64_t seq = hp->cfg->mode_all ? ev->position : ev->offset;
	struct sl_dead_letter dl = { hp->cfg->name, ev->stream, ev->type, err,
				     sl_proc_last_traceback(hp->p), NULL, ev->offset, ev->position,
				     hp->cfg->retry_attempts + 1 };
	struct sl_commit *c;
	char at[32];
	int rc, end;

	sl_store_now(at, sizeof(at));
	dl.at = at;
	if ((rc = sl_commit_begin(h->store, NULL, &c, d)))
		return rc;
	if (!(rc = sl_ckpt_dead_letter(c, &dl, d)))
		rc = sl_ckpt_put_offset(c, hp->cfg->name, in->stream, seq,
					seq > in->effects_mark ? seq : in->effects_mark, d);
	end = sl_commit_end(c, rc == 0, d);
	if (rc || (rc = end))
		return rc;
	in->offset = seq;
	fprintf(out, "{\"processor\":\"%s\",\"stream\":", hp->cfg->name);
	{
		struct sl_buf b;
		sl_buf_init(&b);
		sl_buf_addjstr(&b, ev->stream, strlen(ev->stream));
		sl_buf_addf(&b, ",\"offset\":%lld,\"deadLettered\":true}\n", (long long)ev->offset);
		fwrite(b.ptr, 1, b.len, out);
		sl_buf_release(&b);
	}
	return 0;
}

/* resume --skip: the faulted batch again, one event at a time; the first event that
 * fails alone is dead-lettered, the others are processed. */
static int skip_poison(struct sl_host *h, struct hproc *hp, struct sl_inst *in, FILE *out,
		       struct sl_diag *d)
{
	struct sl_diag one;
	size_t i, n;
	int rc, skipped = 0;

	if ((rc = read_batch(h, hp, in, d)))
		return rc;
	/* ingest_one may run the loop, which never reads batches: h->buf stays put. */
	n = h->buf.n;
	for (i = 0; i < n; i++) {
		const struct sl_event *ev = &h->buf.ev[i];
		if ((hp->cfg->mode_all ? ev->position : ev->offset) <= in->offset)
			continue;
		sl_diag_init(&one);
		if (!ingest_one(h, hp, in, ev, &one))
			continue;
		if (skipped)
			return sl_diag_set(d, one.code, "%s", sl_diag_msg(&one));
		if ((rc = dead_letter(h, hp, in, ev, sl_diag_msg(&one), out, d)))
			return rc;
		skipped = 1;
	}
	return 0;
}

struct resume_ctx {
	struct sl_host *h;
	struct hproc *hp;
	int skip;
	FILE *out;
	struct sl_diag *d;
};

static int resume_one(struct resume_ctx *c, struct sl_inst *in)
{
	struct sl_commit *cm;
	int rc, end;

	if ((rc = sl_proc_inst_load(c->hp->p, in, c->d)) || !in->faulted)
		return rc;
	if ((rc = sl_commit_begin(c->h->store, NULL, &cm, c->d)))
		return rc;
	rc = sl_ckpt_clear_fault(cm, c->hp->cfg->name, in->stream, c->d);
	end = sl_commit_end(cm, rc == 0, c->d);
	if (rc || (rc = end))
		return rc;
	in->faulted = 0;
	in->fails = 0;
	return c->skip ? skip_poison(c->h, c->hp, in, c->out, c->d) : 0;
}

static int resume_fn(struct each_ctx *c, struct sl_inst *in)
{
	return resume_one(c->arg, in);
}

int sl_host_resume(struct sl_host *h, const char *proc, const char *stream, int skip, FILE *out,
		   struct sl_diag *d)
{
	struct hproc *hp = find_proc(h, proc, d);
	struct resume_ctx rc = { h, hp, skip, out, d };
	struct each_ctx c = { h, hp, out, d, resume_fn, 0, &rc };
	struct sl_inst *in;

	if (!hp)
		return d->code;
	if (stream && !hp->cfg->mode_all && !sl_pattern_match(hp->cfg->streams, stream))
		return sl_diag_set(d, SL_EINVAL, "stream '%s' does not match '%s' of processor '%s'",
				   stream, hp->cfg->streams, proc);
	if (!hp->cfg->mode_all && !stream)
		return each_instance(&c);
	if (!(in = sl_proc_instance(hp->p, hp->cfg->mode_all ? "" : stream)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	return resume_one(&rc, in);
}

static int print_dead(void *ud, const struct sl_dead_letter *dl)
{
	FILE *out = ud;
	struct sl_buf b;

	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"processor\":");
	sl_buf_addjstr(&b, dl->processor, strlen(dl->processor));
	sl_buf_adds(&b, ",\"stream\":");
	sl_buf_addjstr(&b, dl->stream, strlen(dl->stream));
	sl_buf_addf(&b, ",\"offset\":%lld,\"type\":", (long long)dl->offset);
	sl_buf_addjstr(&b, dl->type, strlen(dl->type));
	sl_buf_adds(&b, ",\"error\":");
	sl_buf_addjstr(&b, dl->error, strlen(dl->error));
	sl_buf_addf(&b, ",\"attempts\":%lld,\"at\":\"%s\"}\n", (long long)dl->attempts, dl->at);
	fwrite(b.ptr, 1, b.len, out);
	sl_buf_release(&b);
	return 0;
}

int sl_host_dead_letters(struct sl_host *h, FILE *out, struct sl_diag *d)
{
	return sl_ckpt_dead_letters(h->store, print_dead, out, d);
}
