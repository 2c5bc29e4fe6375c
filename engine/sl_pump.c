/* sl_pump.c - the pump: batches from the store to the instances that are behind,
 * with the retry and fault policy (sl_pump.h). */
#include "sl_pump.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "sl_buf.h"
#include "sl_checkpoint.h"
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

struct sl_pump {
	struct uv_loop_s *loop;
	struct sl_store *store;
	struct sl_pump_proc *procs;
	size_t nprocs;
	struct evbuf buf;
	struct sl_inst **todo; /* instances behind their head, this round */
	size_t ntodo, captodo;
	uv_timer_t timer;
	uv_signal_t sigint, sigterm;
	int until_caught_up, progress, retrying, stopping, signals;
	size_t inflight;   /* batches whose ingest has not completed */
	uint64_t deadline; /* loop time when a shutdown stops waiting */
	double shutdown_ms;
};

/* One ingest in flight: what its completion needs after the batch buffer was reused. */
struct pending {
	struct sl_pump *pm;
	struct sl_pump_proc *hp;
	char *first_stream; /* the failing batch's first event, for stream/error-occurred */
	int64_t first_offset;
};

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

/* Reads the next batch of an instance into pm->buf. */
static int read_batch(struct sl_pump *pm, struct sl_pump_proc *hp, struct sl_inst *in,
                      struct sl_diag *d)
{
	int rc;

	pm->buf.n = 0;
	sl_buf_reset(&pm->buf.arena);
	if (hp->cfg->mode_all)
		rc = sl_store_read_all(pm->store, in->offset + 1, hp->cfg->batch_size, copy_event,
		                       &pm->buf, d);
	else
		rc = sl_store_read(pm->store, in->stream, in->offset + 1, hp->cfg->batch_size, NULL,
		                   copy_event, &pm->buf, d);
	if (rc == SL_ENOMEM)
		return sl_diag_set(d, SL_ENOMEM, "out of memory reading a batch");
	fix_pointers(&pm->buf);
	return rc;
}

/* ---- faults ------------------------------------------------------------------------------ */

/* Writes the fault row of an instance and, when it has a stream, its
 * stream/error-occurred ev, in one commit. */
static int record_fault(struct sl_pump *pm, const char *proc, const char *stream, const char *msg,
                        const struct sl_event_in *ev, struct sl_diag *d)
{
	struct sl_append_result res;
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(pm->store, NULL, &c, d)))
		return rc;
	if (!(rc = sl_ckpt_fault(c, proc, stream, msg, d)) && *ev->stream)
		rc = sl_commit_append(c, ev, 1, &res, 0, NULL, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

/* Records the fault of an instance: its row, and stream/error-occurred on the stream
 * of the failing batch's first event. */
static void fault(struct sl_pump *pm, struct sl_pump_proc *hp, struct sl_inst *in, const char *msg,
                  const struct pending *pd)
{
	const char *tb = sl_proc_last_traceback(hp->p);
	struct sl_event_in ev = {0};
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
	if (record_fault(pm, hp->cfg->name, in->stream, msg, &ev, &d))
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
	struct sl_pump *pm = pd->pm;
	struct sl_pump_proc *hp = pd->hp;
	/* Where it failed: the event it failed at, else the batch's first. */
	const char *stream = pd->first_stream ? pd->first_stream : in->stream;
	int64_t at = rc ? sl_proc_last_fail_offset(hp->p) : 0;
	double backoff;
	int i;

	in->busy = 0;
	pm->inflight--;
	pm->progress = 1;
	if (rc == 0) {
		in->fails = 0;
	} else if (++in->fails >= hp->cfg->retry_attempts) {
		sl_log(SL_LOG_ERROR, hp->cfg->name, stream, at ? at : pd->first_offset,
		       "%s (attempt %d of %d; faulted)", sl_diag_msg(d), in->fails,
		       hp->cfg->retry_attempts);
		fault(pm, hp, in, sl_diag_msg(d), pd);
	} else {
		sl_log(SL_LOG_WARN, hp->cfg->name, stream, at ? at : pd->first_offset,
		       "%s (attempt %d of %d)", sl_diag_msg(d), in->fails, hp->cfg->retry_attempts);
		for (backoff = hp->cfg->backoff_ms, i = 1; i < in->fails; i++)
			backoff *= 2;
		in->retry_at = uv_now(pm->loop) + (uint64_t)backoff;
		pm->retrying = 1;
	}
	free(pd->first_stream);
	free(pd);
	/* A batch that settled later (blocking work) wakes the pump at once. */
	uv_timer_start(&pm->timer, on_tick, 0, 0);
}

/* Starts the ingest of the batch in pm->buf for instance in. */
static int ingest(struct sl_pump *pm, struct sl_pump_proc *hp, struct sl_inst *in,
                  struct sl_diag *d)
{
	struct pending *pd = calloc(1, sizeof(*pd));
	size_t i;

	if (!pd)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	pd->pm = pm;
	pd->hp = hp;
	for (i = 0; i < pm->buf.n; i++) {
		int64_t seq = hp->cfg->mode_all ? pm->buf.ev[i].position : pm->buf.ev[i].offset;
		if (seq > in->offset) {
			pd->first_stream = strdup(pm->buf.ev[i].stream);
			pd->first_offset = pm->buf.ev[i].offset;
			break;
		}
	}
	in->busy = 1;
	pm->inflight++;
	sl_proc_ingest(hp->p, in, pm->buf.ev, pm->buf.n, on_ingested, pd);
	return 0;
}

/* ---- the pump ------------------------------------------------------------------------------ */

static int add_todo(struct sl_pump *pm, struct sl_inst *in)
{
	if (pm->ntodo == pm->captodo) {
		size_t cap = pm->captodo ? pm->captodo * 2 : 64;
		struct sl_inst **grown = realloc(pm->todo, cap * sizeof(*grown));
		if (!grown)
			return SL_ENOMEM;
		pm->todo = grown;
		pm->captodo = cap;
	}
	pm->todo[pm->ntodo++] = in;
	return 0;
}

struct scan {
	struct sl_pump *pm;
	struct sl_pump_proc *hp;
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
	return in->offset < in->head ? add_todo(sc->pm, in) : 0;
}

/* Lists the instances of hp that are behind their head. */
static int scan(struct sl_pump *pm, struct sl_pump_proc *hp, struct sl_diag *d)
{
	struct scan sc = {pm, hp, d};
	struct sl_inst *in;
	int64_t head;
	int rc;

	pm->ntodo = 0;
	if (!hp->cfg->mode_all)
		return sl_store_streams(pm->store, NULL, scan_stream, &sc, d);
	if (!(in = sl_proc_instance(hp->p, "")))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if ((rc = sl_proc_inst_load(hp->p, in, d)) ||
	    (rc = sl_store_head_position(pm->store, &head, d)))
		return rc;
	in->head = head;
	return in->offset < head ? add_todo(pm, in) : 0;
}

/* One pass over every processor: one batch per instance that is behind. */
static int pump_round(struct sl_pump *pm, struct sl_diag *d)
{
	uint64_t now = uv_now(pm->loop);
	size_t i, k;
	int rc;

	pm->progress = pm->retrying = 0;
	for (i = 0; i < pm->nprocs && !pm->stopping; i++) {
		struct sl_pump_proc *hp = &pm->procs[i];
		sl_proc_flush(hp->p);
		if ((rc = scan(pm, hp, d)))
			return rc;
		for (k = 0; k < pm->ntodo && !pm->stopping; k++) {
			struct sl_inst *in = pm->todo[k];
			if (in->faulted || in->busy)
				continue;
			if (in->retry_at > now) {
				pm->retrying = 1;
				continue;
			}
			if ((rc = read_batch(pm, hp, in, d)) || (rc = ingest(pm, hp, in, d)))
				return rc;
		}
	}
	return 0;
}

static size_t work_running(struct sl_pump *pm)
{
	size_t i, n = 0;

	for (i = 0; i < pm->nprocs; i++)
		n += sl_proc_work_running(pm->procs[i].p);
	return n;
}

/* Shutting down: no new batch starts; stop once the batches in flight settled (or
 * the deadline passed), reporting background work that is still running. */
static int shutdown_done(struct sl_pump *pm)
{
	size_t bg, i;

	if (pm->inflight && uv_now(pm->loop) < pm->deadline)
		return 0;
	if (pm->inflight)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "shutdown: %zu batches did not settle in time; they will be delivered again",
		       pm->inflight);
	if ((bg = work_running(pm))) {
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "shutdown: %zu background work items still running were stopped", bg);
		for (i = 0; i < pm->nprocs; i++)
			sl_proc_kill_work(pm->procs[i].p);
	}
	return 1;
}

static void on_tick(uv_timer_t *t)
{
	struct sl_pump *pm = t->data;
	struct sl_diag d;
	int idle;

	sl_diag_init(&d);
	if (pm->stopping) {
		if (shutdown_done(pm))
			uv_stop(pm->loop);
		else
			uv_timer_start(&pm->timer, on_tick, 20, 0);
		return;
	}
	if (pump_round(pm, &d)) {
		sl_log(SL_LOG_ERROR, NULL, NULL, 0, "%s", sl_diag_msg(&d));
		pm->stopping = 1;
		pm->deadline = uv_now(pm->loop) + (uint64_t)pm->shutdown_ms;
		uv_timer_start(&pm->timer, on_tick, 0, 0);
		return;
	}
	idle = !pm->progress && !pm->retrying && !pm->inflight && !work_running(pm);
	if (pm->until_caught_up && idle) {
		uv_stop(pm->loop);
		return;
	}
	/* Go on at once while there is work; otherwise poll for new events. */
	uv_timer_start(&pm->timer, on_tick, pm->progress ? 0 : pm->retrying ? 10 : 100, 0);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct sl_pump *pm = s->data;

	if (pm->signals++) {
		/* A second signal: leave now. SQLite's journal keeps the store whole. */
		sl_log(SL_LOG_WARN, NULL, NULL, 0, "second signal; exiting at once");
		_exit(128 + signum);
	}
	pm->stopping = 1;
	pm->deadline = uv_now(pm->loop) + (uint64_t)pm->shutdown_ms;
	uv_timer_start(&pm->timer, on_tick, 0, 0);
}

int sl_pump_read_batch(struct sl_pump *pm, struct sl_pump_proc *pp, struct sl_inst *in,
                       const struct sl_event **ev, size_t *n, struct sl_diag *d)
{
	int rc = read_batch(pm, pp, in, d);

	*ev = pm->buf.ev;
	*n = rc ? 0 : pm->buf.n;
	return rc;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int sl_pump_new(struct sl_pump **out, struct uv_loop_s *loop, struct sl_store *store,
                struct sl_pump_proc *procs, size_t nprocs)
{
	struct sl_pump *pm = calloc(1, sizeof(*pm));

	*out = pm;
	if (!pm)
		return SL_ENOMEM;
	pm->loop = loop;
	pm->store = store;
	pm->procs = procs;
	pm->nprocs = nprocs;
	pm->shutdown_ms = 10000;
	sl_buf_init(&pm->buf.arena);
	return 0;
}

void sl_pump_free(struct sl_pump *pm)
{
	if (!pm)
		return;
	free(pm->buf.ev);
	free(pm->buf.off);
	sl_buf_release(&pm->buf.arena);
	free(pm->todo);
	free(pm);
}

void sl_pump_run(struct sl_pump *pm, int until_caught_up, double shutdown_ms)
{
	size_t i;

	pm->until_caught_up = until_caught_up;
	pm->shutdown_ms = shutdown_ms;
	uv_timer_init(pm->loop, &pm->timer);
	uv_signal_init(pm->loop, &pm->sigint);
	uv_signal_init(pm->loop, &pm->sigterm);
	pm->timer.data = pm->sigint.data = pm->sigterm.data = pm;
	uv_signal_start(&pm->sigint, on_signal, SIGINT);
	uv_signal_start(&pm->sigterm, on_signal, SIGTERM);
	for (i = 0; i < pm->nprocs; i++) {
		struct sl_diag pd;
		sl_diag_init(&pd);
		if (sl_proc_prepare(pm->procs[i].p, &pd))
			sl_log(SL_LOG_WARN, pm->procs[i].cfg->name, NULL, 0,
			       "%s (retried with its first batch)", sl_diag_msg(&pd));
	}
	uv_timer_start(&pm->timer, on_tick, 0, 0);
	uv_run(pm->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&pm->timer, NULL);
	uv_close((uv_handle_t *)&pm->sigint, NULL);
	uv_close((uv_handle_t *)&pm->sigterm, NULL);
	uv_run(pm->loop, UV_RUN_NOWAIT);
}
