/* sl_pump.c - the pump: the position-driven rounds, batches to the instances that are
 * behind, the retry and fault policy, wake-up and leases (sl_pump.h). */
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
#include "sl_contract.h"
#include "sl_deploy.h"
#include "sl_faultlog.h"
#include "sl_lease.h"
#include "sl_log.h"
#include "sl_processor.h"
#include "sl_progress.h"
#include "sl_store.h"
#include "sl_work.h"

#define ROUTE_CHUNK 1024     /* events read per routing query */
#define ROUTE_CHUNKS 16      /* routing queries per processor and round */
#define POLL_MS 1000         /* the slow poll of the store's data version */
#define RATE_WINDOW 10       /* seconds of the rate shown by status */
#define RATE_REFRESH_MS 2500 /* a steady rate is recorded again this long before it ends */
#define ROUND_NS 50000000    /* a round starts no batch after 50 ms */
#define REAP_MS 2000         /* how long a shutdown waits for killed children to be reaped */
#define GROUP_NS 10000000    /* a commit group of a catch-up is committed after 10 ms */
#define GROUP_BATCHES 1024   /* or after this many batches */
#define PRE_ROWS 8192        /* events of one read for many small instances, at most */
#define PRE_PAUSE 64         /* instances read one by one after a read that was cut short */

/* Events read for one batch: views whose strings live in `arena`. */
struct evbuf {
	struct sl_event *ev;
	size_t n, cap;
	struct sl_buf arena;
	size_t (*off)[6]; /* string offsets of each event, fixed up after reading */
};

/* The events per second of one instance over the last RATE_WINDOW seconds. */
struct rate {
	struct sl_inst *in;
	uint32_t sec[RATE_WINDOW];
	double recorded; /* the rate last recorded (-1: none yet) */
	double now;      /* the rate on_rates computed */
	int64_t until;   /* the until_ms last recorded */
	int64_t writing; /* the until_ms on_rates is recording now (0: none) */
};

/* An instance resumed with skip by the runner (sl_pump_skip): its batches are one
 * event each up to `until`, and an event that fails is dead-lettered at once. */
struct skip {
	char *stream;
	int all;       /* every event that fails (skipAll), else the first only */
	int64_t until; /* the last offset (position in mode all) of the faulted batch */
};

/* One processor the pump runs. */
struct slot {
	struct sl_pump_proc pp;
	size_t lease;         /* index in the lease keeper */
	int leader;           /* this runner holds the lease and activated the processor */
	int64_t epoch;        /* of the lease it activated with */
	int64_t fenced_epoch; /* a batch of this epoch was refused: wait for another */
	char standby_of[SL_OWNER_MAX + 1]; /* the owner last logged as running it */
	int64_t cursor;                    /* highest position routed */
	struct sl_inst **queue;            /* instances behind their head */
	size_t nqueue, capqueue;
	size_t inflight; /* batches of this slot not settled */
	int ungrouped;   /* a commit group failed: the next deliver commits each batch alone */
	int catching_up; /* since activation, until the queue first empties */
	int64_t cu_total, cu_done;
	int64_t cu_near; /* events of it read with neighbouring instances (the prefetch) */
	struct rate *rates;
	size_t nrates, caprates;
	struct skip *skips;
	size_t nskips;
	/* A change waiting for the slot to be idle (sl_pump_set): */
	struct sl_pump_proc next;   /* the version that takes over (next.p set) */
	int removing;               /* the processor leaves the deployment */
	struct sl_pump_stats stats; /* for /metrics (lag and leader filled on request) */
	/* Partitioned (nparts > 0: partitioned runners, sl_lease.h): the lease epoch at
	 * which this runner runs each partition (0: it does not), the keeper round up to
	 * which a partition whose batch the fence refused stays off, whether the
	 * processor itself was activated (claim, prepare), and whether the set of
	 * partitions run is to change once no batch is in flight. */
	int nparts;
	int64_t *part_epoch;
	uint64_t *part_fenced;
	int proc_active;
	int parts_pending;
	int parts_logged; /* the runners log_parts last named (-1: none yet) */
};

struct sl_pump {
	struct uv_loop_s *loop;
	struct sl_store *store;
	struct slot **slots;
	size_t nslots;
	struct evbuf buf;
	/* The batch deliver hands to ingest: pm->buf's, or a part of pm->pre. */
	const struct sl_event *bev;
	size_t bn;
	/* The events of many small instances whose streams are neighbours, read at once
	 * by deliver (prefetch): valid until the deliver ends. */
	struct evbuf pre;
	size_t pre_at;              /* the first event not handed out yet */
	char *pre_first, *pre_last; /* the streams the read covered, both included */
	int pre_cut;                /* it stopped at its limit: pre_last may miss events */
	unsigned pre_pause;         /* instances to read alone before planning another */
	struct sl_leases *leases;
	uv_timer_t timer, poll, ratetimer;
	uv_fs_event_t watch;
	uv_async_t wake; /* the store's own wake (sl_store_wake_start), from its thread */
	uv_signal_t sigint, sigterm;
	int watching, waking;
	int64_t data_version;
	struct sl_pump_opts o;
	int progress, retrying, stopping, signals;
	uint64_t outage;              /* loop time of the first of the store's failures in a
	                               * row (store_outage), 0 when the last round went well */
	size_t inflight;              /* batches whose ingest has not completed */
	uint64_t deadline;            /* loop time when a shutdown stops waiting */
	int killed;                   /* the shutdown killed what work was left */
	uint64_t reap_deadline;       /* until when it waits for the killed children */
	unsigned rate_sec;            /* seconds since the start, the rate window's clock */
	struct sl_progress *prog;     /* the catch-up progress lines, or NULL */
	size_t unrecorded;            /* faults the store did not take */
	struct sl_faultlog *faultlog; /* where they are noted for status, or NULL */
	char unrecorded_msg[SL_DIAG_MAX];
	int running;              /* sl_pump_run started the slots */
	int changes;              /* a slot has a change waiting */
	sl_pump_retire_fn retire; /* a processor left its slot */
	void *retire_ud;
	struct sl_diag failure; /* a round that failed stops the run with this (code 0: none) */
	sl_pump_change_fn on_change; /* the store may have changed (the HTTP interface) */
	void *change_ud;
	/* The commit group of the instances of one deliver (sl_store_group_begin): */
	int group;               /* one is open */
	uint64_t group_until;    /* uv_hrtime() when it is committed */
	size_t ngrouped;         /* batches in it */
	struct pending *grouped; /* their outcomes, waiting for it to commit, in order */
	struct pending **grouped_tail;
};

/* One ingest in flight: what its completion needs after the batch buffer was reused. */
struct pending {
	struct sl_pump *pm;
	struct slot *sl;
	int64_t from;       /* the instance's checkpoint when the batch started */
	uint64_t started;   /* uv_hrtime() when it started */
	char *first_stream; /* the failing batch's first event, for stream/error-occurred */
	int64_t first_offset;
	/* The outcome of a batch of a commit group, handled when the group ends: */
	struct sl_inst *in;
	int rc;
	struct sl_diag *diag; /* owned, when rc != 0 */
	struct pending *next;
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
static int read_into(struct sl_pump *pm, struct evbuf *eb, struct sl_pump_proc *hp,
                     struct sl_inst *in, int64_t limit, struct sl_diag *d)
{
	int rc;

	eb->n = 0;
	sl_buf_reset(&eb->arena);
	if (hp->cfg->mode_all)
		rc = sl_store_read_all(pm->store, in->offset + 1, limit, copy_event, eb, d);
	else
		rc = sl_store_read(pm->store, in->stream, in->offset + 1, limit, NULL, copy_event,
		                   eb, d);
	if (rc == SL_ENOMEM)
		return sl_diag_set(d, SL_ENOMEM, "out of memory reading a batch");
	fix_pointers(eb);
	return rc;
}

static int read_batch(struct sl_pump *pm, struct sl_pump_proc *hp, struct sl_inst *in,
                      struct sl_diag *d)
{
	return read_into(pm, &pm->buf, hp, in, hp->cfg->batch_size, d);
}

/* ---- resumed with skip ----------------------------------------------------------------- */

static struct skip *skip_of(struct slot *sl, const struct sl_inst *in)
{
	size_t i;

	for (i = 0; i < sl->nskips; i++)
		if (!strcmp(sl->skips[i].stream, in->stream))
			return &sl->skips[i];
	return NULL;
}

static void skip_drop(struct slot *sl, struct skip *k)
{
	free(k->stream);
	*k = sl->skips[--sl->nskips];
}

static void free_skips(struct slot *sl)
{
	while (sl->nskips)
		skip_drop(sl, &sl->skips[0]);
	free(sl->skips);
	sl->skips = NULL;
}

/* The one-event batch of in that failed with msg, in skip mode: dead-lettered, the
 * checkpoint past it. Returns 0, or an error (the failure is then handled as any). */
static int skip_event(struct sl_pump *pm, struct slot *sl, struct sl_inst *in, struct skip *k,
                      const char *msg)
{
	struct evbuf eb = {0};
	struct sl_diag d;
	int rc;

	sl_diag_init(&d);
	sl_buf_init(&eb.arena);
	if (!(rc = read_into(pm, &eb, &sl->pp, in, 1, &d)) && eb.n == 1 &&
	    !(rc = sl_proc_dead_letter(sl->pp.p, in, &eb.ev[0], msg, 1, &d))) {
		sl_log(SL_LOG_WARN, sl->pp.cfg->name, eb.ev[0].stream, eb.ev[0].offset,
		       "dead-lettered (resumed with skip): %s", msg);
		if (!k->all || in->offset >= k->until)
			skip_drop(sl, k);
	} else if (!rc) {
		rc = SL_ENOTFOUND;
	}
	free(eb.ev);
	free(eb.off);
	sl_buf_release(&eb.arena);
	return rc;
}

/* ---- faults ------------------------------------------------------------------------------ */

/* A batch or commit refused by the lease fence (another runner leads now). */
/* ---- the prefetch: one read for many small instances ---------------------------------------
 * A catch-up over many small instances (a million streams of a few events) would
 * otherwise read once per instance. The instances queued by a catch-up come in the
 * order of their streams' names, which is the order of the events' primary key, so
 * the events of neighbouring instances are read by one walk of it
 * (sl_store_read_range) and handed out instance by instance. What the read does not
 * surely hold in full (a stream it was cut short in, a hole, an instance out of
 * order) is read alone, as without the prefetch. */

static void pre_drop(struct sl_pump *pm)
{
	pm->pre.n = pm->pre_at = 0;
	sl_buf_reset(&pm->pre.arena);
	free(pm->pre_first);
	free(pm->pre_last);
	pm->pre_first = pm->pre_last = NULL;
	pm->pre_cut = 0;
}

/* The prefetch read the whole range in->stream is in. */
static int pre_covers(const struct sl_pump *pm, const struct sl_inst *in)
{
	return pm->pre_first && strcmp(in->stream, pm->pre_first) >= 0 &&
	       strcmp(in->stream, pm->pre_last) <= 0;
}

/* Sets pm->bev and pm->bn to the next batch of in (at most limit events) from the
 * prefetch and returns 1, when the prefetch surely holds all of it; else 0. */
static int pre_take(struct sl_pump *pm, const struct sl_inst *in, int64_t limit)
{
	const struct sl_event *ev = pm->pre.ev;
	size_t n = pm->pre.n, k = pm->pre_at, e;
	int c = 1;

	if (!pre_covers(pm, in))
		return 0;
	while (k < n && (c = strcmp(ev[k].stream, in->stream)) < 0)
		k++;
	pm->pre_at = k;
	while (k < n && c == 0 && ev[k].offset <= in->offset)
		if (++k < n)
			c = strcmp(ev[k].stream, in->stream);
	if (k >= n || c != 0 || ev[k].offset != in->offset + 1)
		return 0; /* none read, or a hole: the read alone tells */
	for (e = k;
	     e < n && (int64_t)(e - k) < limit &&
	     ev[e].offset == in->offset + 1 + (int64_t)(e - k) && !strcmp(ev[e].stream, in->stream);
	     e++)
		;
	if ((int64_t)(e - k) < limit &&
	    ((e == n && pm->pre_cut) || (e < n && !strcmp(ev[e].stream, in->stream))))
		return 0; /* it may go on after the read stopped, or has a hole */
	pm->bev = ev + k;
	pm->bn = e - k;
	pm->pre_at = e;
	return 1;
}

/* Reads the events of queue[i] and of the small instances queued after it whose
 * streams follow in name order, as long as most of what the read walks is theirs:
 * the first from its checkpoint on, the others from offset 1 (their own events
 * before their checkpoints are walked too). Reads nothing for fewer than two. */
static int pre_fill(struct sl_pump *pm, struct slot *sl, size_t i, struct sl_diag *d)
{
	int64_t lim = sl->pp.cfg->batch_size, rows = 0, used = 0;
	struct sl_inst *first = sl->queue[i], *last = first;
	size_t j, n = 0;
	int rc;

	pre_drop(pm);
	for (j = i; j < sl->nqueue; j++) {
		struct sl_inst *q = sl->queue[j];
		int64_t pend = q->head - q->offset, add = j == i ? pend : q->head;
		if (j > i && strcmp(q->stream, last->stream) <= 0)
			break;
		if (pend < 1 || pend > lim || q->faulted || q->busy || skip_of(sl, q) ||
		    rows + add > PRE_ROWS || (used + pend) * 2 < rows + add)
			break;
		rows += add;
		used += pend;
		last = q;
		n++;
	}
	if (n < 2)
		return 0;
	rows += rows / 4 + 16; /* room for streams between that are not queued */
	rc = sl_store_read_range(pm->store, first->stream, first->offset + 1, last->stream, rows,
	                         copy_event, &pm->pre, d);
	if (rc == SL_ENOMEM)
		return sl_diag_set(d, SL_ENOMEM, "out of memory reading a batch");
	if (rc)
		return rc;
	fix_pointers(&pm->pre);
	if (!(pm->pre_first = strdup(first->stream)) || !(pm->pre_last = strdup(last->stream)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	pm->pre_cut = (int64_t)pm->pre.n >= rows;
	if (pm->pre_cut && (!pm->pre.n || strcmp(pm->pre.ev[pm->pre.n - 1].stream,
	                                         sl->queue[i + n / 2]->stream) < 0))
		pm->pre_pause = PRE_PAUSE; /* mostly other streams' events: not worth it here */
	return 0;
}

/* Sets pm->bev and pm->bn to the next batch of queue[i]: from the prefetch where it
 * can, else read alone into pm->buf. */
static int batch_of(struct sl_pump *pm, struct slot *sl, size_t i, struct sl_diag *d)
{
	struct sl_inst *in = sl->queue[i];
	int64_t limit = skip_of(sl, in) ? 1 : sl->pp.cfg->batch_size;
	int rc;

	if (limit > 1 && !sl->pp.cfg->mode_all && sl_store_has_read_range(pm->store)) {
		if (!pre_covers(pm, in)) {
			if (pm->pre_pause)
				pm->pre_pause--;
			else if ((rc = pre_fill(pm, sl, i, d)))
				return rc;
		}
		if (pre_take(pm, in, limit)) {
			if (sl->catching_up)
				sl->cu_near += (int64_t)pm->bn;
			return 0;
		}
	}
	rc = read_into(pm, &pm->buf, &sl->pp, in, limit, d);
	pm->bev = pm->buf.ev;
	pm->bn = rc ? 0 : pm->buf.n;
	return rc;
}

static int fenced(int rc, const struct sl_diag *d)
{
	return rc == SL_EFENCED || (d && d->code == SL_EFENCED);
}

/* This runner runs the instance of stream (always, unless the processor is
 * partitioned: then only when it runs the stream's partition). */
static int owns(const struct slot *sl, const char *stream)
{
	return !sl->nparts || sl->part_epoch[sl_partition_of(stream, sl->nparts)] != 0;
}

/* Writes the fault row of an instance and, when it has a stream, its
 * stream/error-occurred ev, in one commit. */
static int record_fault(struct sl_pump *pm, const struct sl_fence *f, const char *proc,
                        const char *stream, const char *msg, const struct sl_event_in *ev,
                        struct sl_diag *d)
{
	struct sl_append_result res;
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(pm->store, f, &c, d)))
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
	if (record_fault(pm, sl_proc_fence_for(hp->p, in->stream), hp->cfg->name, in->stream, msg,
	                 &ev, &d) &&
	    !fenced(d.code, &d)) {
		/* The store took no write (a full disk): status cannot show this fault, so
		 * the run says it and fails (sl_pump_run). */
		sl_log(SL_LOG_ERROR, hp->cfg->name, in->stream, 0, "cannot record the fault: %s",
		       sl_diag_msg(&d));
		if (sl_faultlog_add(pm->faultlog, hp->cfg->name, in->stream, msg))
			sl_log(SL_LOG_ERROR, hp->cfg->name, in->stream, 0,
			       "cannot note the fault beside the store either: sluice status "
			       "cannot show it");
		if (!pm->unrecorded++)
			snprintf(pm->unrecorded_msg, sizeof(pm->unrecorded_msg),
			         "processor '%s'%s%s faulted (%s) and the fault could not be "
			         "recorded: %s",
			         hp->cfg->name, *in->stream ? " on " : "", in->stream, msg,
			         sl_diag_msg(&d));
	}
	in->faulted = 1;
	in->has_row = 1;
	sl_buf_release(&payload);
}

/* ---- the queue of instances behind their head ------------------------------------------ */

static int enqueue(struct slot *sl, struct sl_inst *in)
{
	if (in->queued)
		return 0;
	if (sl->nqueue == sl->capqueue) {
		size_t cap = sl->capqueue ? sl->capqueue * 2 : 64;
		struct sl_inst **grown = realloc(sl->queue, cap * sizeof(*grown));
		if (!grown)
			return SL_ENOMEM;
		sl->queue = grown;
		sl->capqueue = cap;
	}
	sl->queue[sl->nqueue++] = in;
	in->queued = 1;
	return 0;
}

static void clear_queue(struct slot *sl)
{
	size_t i;

	for (i = 0; i < sl->nqueue; i++)
		sl->queue[i]->queued = 0;
	sl->nqueue = 0;
}

/* ---- rates (sluice status `rate`) ----------------------------------------------------------- */

/* Counts n events processed by in in the current second. */
static void count_rate(struct sl_pump *pm, struct slot *sl, struct sl_inst *in, int64_t n)
{
	size_t i = in->rate_slot;

	if (!i || i > sl->nrates || sl->rates[i - 1].in != in) {
		if (sl->nrates == sl->caprates) {
			size_t cap = sl->caprates ? sl->caprates * 2 : 16;
			struct rate *r = realloc(sl->rates, cap * sizeof(*r));
			if (!r)
				return; /* a rate is worth no failure */
			sl->rates = r;
			sl->caprates = cap;
		}
		memset(&sl->rates[sl->nrates], 0, sizeof(sl->rates[0]));
		sl->rates[sl->nrates].in = in;
		sl->rates[sl->nrates].recorded = -1;
		in->rate_slot = i = ++sl->nrates;
	}
	sl->rates[i - 1].sec[pm->rate_sec % RATE_WINDOW] += (uint32_t)n;
}

/* Once a second: writes the rate of every instance of the window whose rate changed,
 * with the time it falls to 0 unless recorded again (until_ms: when the last second
 * with events leaves the window), again a little before that time for a steady rate,
 * and the heartbeat that says the others are still current; then moves the window
 * on. An instance that went idle leaves the window without a write: its last record
 * ends then. */
static void on_rates(uv_timer_t *t)
{
	struct sl_pump *pm = t->data;
	struct sl_rate *rows = NULL;
	size_t i, k, j, n, cap = 0;
	int64_t now_ms = sl_store_now_ms();

	for (i = 0; i < pm->nslots; i++) {
		struct slot *sl = pm->slots[i];
		struct sl_commit *c;
		struct sl_diag d;
		int rc;
		if (!sl->nrates)
			continue;
		if (sl->nrates > cap) {
			struct sl_rate *r = realloc(rows, sl->nrates * sizeof(*r));
			if (!r)
				break;
			rows = r;
			cap = sl->nrates;
		}
		for (k = n = 0; k < sl->nrates; k++) {
			struct rate *rt = &sl->rates[k];
			double sum = 0;
			size_t age = RATE_WINDOW; /* seconds since the last one with events */
			for (j = 0; j < RATE_WINDOW; j++) {
				uint32_t got =
					rt->sec[(pm->rate_sec + RATE_WINDOW - j) % RATE_WINDOW];
				sum += got;
				if (got && age == RATE_WINDOW)
					age = j;
			}
			int64_t until = now_ms + (int64_t)(RATE_WINDOW - age) * 1000;
			rt->now = sum / RATE_WINDOW;
			/* Unchanged, it is written again only where that makes it last longer:
			 * an instance that folded in one second keeps its one record. */
			if (rt->now == 0 ||
			    (rt->now == rt->recorded &&
			     (rt->until - now_ms > RATE_REFRESH_MS || until <= rt->until + 2000)))
				continue;
			rows[n].stream = sl->pp.cfg->mode_all ? "" : rt->in->stream;
			rows[n].until_ms = rt->writing = until;
			rows[n++].rate = rt->now;
		}
		sl_diag_init(&d);
		if ((rc = sl_commit_begin(pm->store, NULL, &c, &d)) == 0) {
			rc = sl_ckpt_rates_put(c, sl->pp.cfg->name, rows, n, now_ms, &d);
			rc = sl_commit_end(c, rc == 0, &d) ? -1 : rc;
		}
		if (rc)
			sl_log(SL_LOG_DEBUG, sl->pp.cfg->name, NULL, 0, "cannot record rates: %s",
			       sl_diag_msg(&d));
		/* Idle instances leave the window. */
		for (k = 0; k < sl->nrates;) {
			struct rate *rt = &sl->rates[k];
			if (!rc && rt->writing) {
				rt->recorded = rt->now;
				rt->until = rt->writing;
			}
			rt->writing = 0;
			if (rt->now == 0) {
				rt->in->rate_slot = 0;
				*rt = sl->rates[--sl->nrates];
				if (k < sl->nrates)
					rt->in->rate_slot = k + 1;
			} else {
				k++;
			}
		}
	}
	free(rows);
	pm->rate_sec++;
	for (i = 0; i < pm->nslots; i++)
		for (k = 0; k < pm->slots[i]->nrates; k++)
			pm->slots[i]->rates[k].sec[pm->rate_sec % RATE_WINDOW] = 0;
}

static void forget_rates(struct slot *sl)
{
	size_t k;

	for (k = 0; k < sl->nrates; k++)
		sl->rates[k].in->rate_slot = 0;
	sl->nrates = 0;
}

/* ---- batches -------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t);

void sl_pump_kick(struct sl_pump *pm)
{
	uv_timer_start(&pm->timer, on_tick, 0, 0);
}

const double sl_pump_buckets[SL_PUMP_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                 0.05,   0.1,   0.25,   0.5,   1,    2.5};

/* Counts one settled batch: moved events, duration ns, and why it failed. */
static void count_batch(struct sl_pump_stats *st, int rc, const struct sl_diag *d, int64_t moved,
                        uint64_t ns)
{
	double secs = (double)ns / 1e9;
	size_t b = 0;

	if (rc == 0) {
		st->batches++;
		if (moved > 0)
			st->events += (uint64_t)moved;
	} else if (!fenced(rc, d)) {
		st->failures++;
		if (d && sl_proc_is_budget_failure(sl_diag_msg(d)))
			st->budget_hits++;
	}
	while (b < SL_PUMP_BUCKETS && secs > sl_pump_buckets[b])
		b++;
	st->hist[b]++;
	st->seconds += secs;
}

/* Completion of one ingest: success resets the failure count; a failure schedules
 * the retry with exponential backoff or, when attempts are used up, faults. A batch
 * refused by the fence makes the processor a standby. */
static void on_ingested(void *ud, struct sl_inst *in, int rc, const struct sl_diag *d)
{
	struct pending *pd = ud;
	struct sl_pump *pm = pd->pm;
	struct slot *sl = pd->sl;
	struct sl_pump_proc *hp = &sl->pp;
	/* Where it failed: the event it failed at, else the batch's first. */
	const char *stream = pd->first_stream ? pd->first_stream : in->stream;
	int64_t at = rc ? sl_proc_last_fail_offset(hp->p) : 0;
	double backoff;
	int i;

	struct skip *k = skip_of(sl, in);

	in->busy = 0;
	pm->inflight--;
	sl->inflight--;
	pm->progress = 1;
	count_batch(&sl->stats, rc, d, in->offset - pd->from, uv_hrtime() - pd->started);
	if (rc && !fenced(rc, d) && k && !skip_event(pm, sl, in, k, sl_diag_msg(d))) {
		in->fails = 0; /* dead-lettered: the instance goes on after it */
	} else if (rc == 0) {
		in->fails = 0;
		if (k && in->offset >= k->until)
			skip_drop(sl, k);
		if (in->offset > pd->from) {
			count_rate(pm, sl, in, in->offset - pd->from);
			if (in->rate_recorded && in->rate_slot) { /* with the checkpoint */
				sl->rates[in->rate_slot - 1].recorded = in->rate_next;
				sl->rates[in->rate_slot - 1].until = in->rate_until;
			}
			if (sl->catching_up) {
				sl->cu_done += in->offset - pd->from;
				sl_progress_update(pm->prog, hp->cfg->name, sl->cu_done,
				                   sl->cu_total, uv_hrtime() / 1000000);
			}
		}
	} else if (fenced(rc, d)) {
		sl_log(SL_LOG_WARN, hp->cfg->name, stream, 0, "%s", sl_diag_msg(d));
		if (sl->nparts) { /* that partition stops until the keeper saw its lease again */
			int pk = sl_partition_of(in->stream, sl->nparts);
			struct sl_part_view v;
			sl_leases_part_get(pm->leases, sl->lease, pk, &v);
			sl->part_fenced[pk] = v.round;
			sl->parts_pending = 1;
		} else {
			sl->fenced_epoch = sl->epoch;
		}
		if (pm->leases)
			sl_leases_poke(pm->leases);
	} else if (++in->fails >= hp->cfg->retry_attempts) {
		sl_log(SL_LOG_ERROR, hp->cfg->name, stream, at ? at : pd->first_offset,
		       "%s (attempt %d of %d; faulted)", sl_diag_msg(d), in->fails,
		       hp->cfg->retry_attempts);
		fault(pm, hp, in, sl_diag_msg(d), pd);
		sl->stats.faults++;
		sl->stats.faulted++;
	} else {
		sl_log(SL_LOG_WARN, hp->cfg->name, stream, at ? at : pd->first_offset,
		       "%s (attempt %d of %d)", sl_diag_msg(d), in->fails, hp->cfg->retry_attempts);
		/* Doubling, capped at a day: up to 1000 attempts would overflow. */
		for (backoff = hp->cfg->backoff_ms, i = 1; i < in->fails && backoff < 86400000.0;
		     i++)
			backoff *= 2;
		if (backoff > 86400000.0)
			backoff = 86400000.0;
		in->retry_at = uv_now(pm->loop) + (uint64_t)backoff;
		pm->retrying = 1;
	}
	free(pd->first_stream);
	free(pd->diag);
	free(pd);
	/* A batch that settled later (blocking work) wakes the pump at once. */
	sl_pump_kick(pm);
	if (pm->on_change) /* its emitted events are there to read */
		pm->on_change(pm->change_ud);
}

/* The ingest callback. A batch of a commit group is not durable before the group
 * commits, so its outcome waits for close_group; any other is handled at once. */
static void on_batch(void *ud, struct sl_inst *in, int rc, const struct sl_diag *d)
{
	static const struct sl_diag nomem = {SL_ENOMEM, "out of memory"};
	struct pending *pd = ud;
	struct sl_pump *pm = pd->pm;

	if (!pm->group) {
		on_ingested(ud, in, rc, d);
		return;
	}
	pd->in = in;
	pd->rc = rc;
	if (rc && (pd->diag = malloc(sizeof(*pd->diag))))
		*pd->diag = d ? *d : nomem;
	else if (rc)
		pd->rc = SL_ENOMEM;
	*pm->grouped_tail = pd;
	pm->grouped_tail = &pd->next;
	pm->ngrouped++;
}

/* Commits the open commit group, then handles the outcomes of its batches in order.
 * When it cannot commit, none of its batches is kept, and none is held against its
 * instance: they forget the checkpoints and states they took from it and run again,
 * each in a commit of its own (the slot's next deliver does not group), so that a
 * batch that cannot commit fails alone, as it would have without the group. */
static void close_group(struct sl_pump *pm)
{
	static const struct sl_diag nomem = {SL_ENOMEM, "out of memory"};
	struct pending *pd, *next;
	struct sl_diag gd;
	size_t n = pm->ngrouped;
	int grc;

	if (!pm->group)
		return;
	pm->group = 0;
	sl_diag_init(&gd);
	grc = sl_store_group_end(pm->store, 1, &gd);
	pd = pm->grouped;
	pm->grouped = NULL;
	pm->grouped_tail = &pm->grouped;
	pm->ngrouped = 0;
	if (grc && pd)
		sl_log(SL_LOG_WARN, pd->sl->pp.cfg->name, NULL, 0,
		       "%s; its %zu batch%s run again, each committed alone", sl_diag_msg(&gd), n,
		       n == 1 ? "" : "es");
	for (; pd; pd = next) {
		next = pd->next;
		if (!grc) {
			on_ingested(pd, pd->in, pd->rc,
			            pd->rc ? (pd->diag ? pd->diag : &nomem) : NULL);
			continue;
		}
		sl_proc_inst_unload(pd->sl->pp.p, pd->in);
		pd->in->busy = 0;
		pm->inflight--;
		pd->sl->inflight--;
		pd->sl->ungrouped = 1;
		pm->progress = 1;
		free(pd->first_stream);
		free(pd->diag);
		free(pd);
	}
}

/* Opens a commit group for the batches deliver starts, unless one is open. */
static void open_group(struct sl_pump *pm)
{
	if (pm->group || !sl_store_group_begin(pm->store))
		return;
	pm->group = 1;
	pm->group_until = uv_hrtime() + GROUP_NS;
}

/* The rate the commit of in's batch records with its checkpoint: what on_rates
 * will find once the batch is counted, when all of it commits (when less does,
 * on_rates finds another rate and records that). */
static void plan_rate(struct sl_pump *pm, struct slot *sl, struct sl_inst *in)
{
	const struct sl_event *last = &pm->bev[pm->bn - 1];
	size_t i = in->rate_slot;
	double sum = (double)((sl->pp.cfg->mode_all ? last->position : last->offset) - in->offset);
	int j;

	if (i && i <= sl->nrates && sl->rates[i - 1].in == in)
		for (j = 0; j < RATE_WINDOW; j++)
			sum += sl->rates[i - 1].sec[j];
	in->rate_next = sum / RATE_WINDOW;
	in->rate_until = sl_store_now_ms() + RATE_WINDOW * 1000;
	in->rate_recorded = 0;
}

/* Starts the ingest of the batch pm->bev, pm->bn for instance in. */
static int ingest(struct sl_pump *pm, struct slot *sl, struct sl_inst *in, struct sl_diag *d)
{
	struct pending *pd = calloc(1, sizeof(*pd));
	struct sl_pump_proc *hp = &sl->pp;
	size_t i;

	if (!pd)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	pd->pm = pm;
	pd->sl = sl;
	pd->from = in->offset;
	pd->started = uv_hrtime();
	for (i = 0; i < pm->bn; i++) {
		int64_t seq = hp->cfg->mode_all ? pm->bev[i].position : pm->bev[i].offset;
		if (seq > in->offset) {
			pd->first_stream = strdup(pm->bev[i].stream);
			pd->first_offset = pm->bev[i].offset;
			break;
		}
	}
	plan_rate(pm, sl, in);
	in->busy = 1;
	pm->inflight++;
	sl->inflight++;
	sl_proc_ingest(hp->p, in, pm->bev, pm->bn, on_batch, pd);
	if (pm->group && (pm->ngrouped >= GROUP_BATCHES || uv_hrtime() > pm->group_until))
		close_group(pm);
	return 0;
}

/* ---- routing: the events after the cursor -----------------------------------------------------
 */

struct route {
	struct slot *sl;
	struct sl_diag *d;
	int64_t last;
	size_t n;
};

/* Queues the instance an event belongs to, when it is behind. */
static int route_event(void *ud, const struct sl_event *ev)
{
	struct route *r = ud;
	struct sl_pump_proc *hp = &r->sl->pp;
	struct sl_inst *in;
	int rc;

	r->n++;
	if (!hp->cfg->mode_all &&
	    (!sl_pattern_match(hp->cfg->streams, ev->stream) || !owns(r->sl, ev->stream))) {
		r->last = ev->position;
		return 0;
	}
	if (!(in = sl_proc_instance(hp->p, hp->cfg->mode_all ? "" : ev->stream)))
		return sl_diag_set(r->d, SL_ENOMEM, "out of memory");
	if ((rc = sl_proc_inst_load(hp->p, in, r->d)))
		return rc; /* (the cursor stays before it: the next round routes it again) */
	{
		int64_t seq = hp->cfg->mode_all ? ev->position : ev->offset;
		if (seq > in->head)
			in->head = seq;
	}
	r->last = ev->position;
	return in->offset < in->head ? enqueue(r->sl, in) : 0;
}

/* Moves the cursor of sl over what was appended since, in bounded chunks. */
static int route(struct sl_pump *pm, struct slot *sl, struct sl_diag *d)
{
	struct route r = {sl, d, sl->cursor, 0};
	int k, rc;

	for (k = 0; k < ROUTE_CHUNKS; k++) {
		r.n = 0;
		rc = sl_store_read_all(pm->store, sl->cursor + 1, ROUTE_CHUNK, route_event, &r, d);
		if (r.last > sl->cursor)
			sl->cursor = r.last;
		if (rc)
			return rc == SL_ENOMEM ? sl_diag_set(d, rc, "out of memory") : rc;
		if (r.n < ROUTE_CHUNK)
			return 0;
	}
	pm->progress = 1; /* more to route: the next round goes on at once */
	return 0;
}

struct scan {
	struct slot *sl;
	struct sl_diag *d;
	int faulted; /* faulted instances seen */
};

/* Catch-up: the instance of a matching stream the processor is behind on, queued. */
static int scan_stream(void *ud, const struct sl_behind *b)
{
	struct scan *sc = ud;
	struct sl_pump_proc *hp = &sc->sl->pp;
	struct sl_inst *in;

	if (!sl_pattern_match(hp->cfg->streams, b->stream) || !owns(sc->sl, b->stream))
		return 0;
	if (!(in = sl_proc_instance(hp->p, b->stream)))
		return sl_diag_set(sc->d, SL_ENOMEM, "out of memory");
	sl_proc_inst_preset(in, b->offset, b->effects_mark, b->faulted, b->has_row);
	in->head = b->head;
	if (in->offset >= in->head)
		return 0;
	sc->sl->stats.faulted += in->faulted;
	if (in->faulted && sc->faulted++ < 10) /* faults from before: said once, at start */
		sl_log(SL_LOG_WARN, hp->cfg->name, b->stream, 0,
		       "faulted before this run (checkpoint at offset %lld); it gets no events "
		       "until `sluice resume` (sluice status shows its error)",
		       (long long)in->offset);
	sc->sl->cu_total += in->head - in->offset;
	return enqueue(sc->sl, in);
}

/* Catch-up when a runner starts a processor: the cursor goes to the head, and every
 * instance behind is queued (the events after the head are routed as usual). */
static int catch_up(struct sl_pump *pm, struct slot *sl, struct sl_diag *d)
{
	struct scan sc = {sl, d, 0};
	struct sl_pump_proc *hp = &sl->pp;
	struct sl_inst *in;
	int64_t head;
	int rc;

	clear_queue(sl);
	sl->cu_total = sl->cu_done = sl->cu_near = 0;
	sl->catching_up = 1;
	sl->stats.faulted = 0; /* counted again below */
	if ((rc = sl_store_head_position(pm->store, &head, d)))
		return rc;
	sl->cursor = head;
	if (!hp->cfg->mode_all) {
		rc = sl_ckpt_behind(pm->store, hp->cfg->name, scan_stream, &sc, d);
		if (sc.faulted > 10)
			sl_log(SL_LOG_WARN, hp->cfg->name, NULL, 0,
			       "%d more instances were faulted before this run", sc.faulted - 10);
		return rc;
	}
	if (!(in = sl_proc_instance(hp->p, "")))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if ((rc = sl_proc_inst_load(hp->p, in, d)))
		return rc;
	in->head = head;
	sl->stats.faulted = in->faulted;
	if (in->offset >= head)
		return 0;
	if (in->faulted)
		sl_log(SL_LOG_WARN, hp->cfg->name, NULL, 0,
		       "faulted before this run (checkpoint at position %lld); it gets no events "
		       "until `sluice resume` (sluice status shows its error)",
		       (long long)in->offset);
	sl->cu_total = head - in->offset;
	return enqueue(sl, in);
}

/* One batch for each queued instance of sl that can take one; instances that
 * reached their head (or are faulted) leave the queue. With several instances queued
 * their batches share commit groups (GROUP_NS, GROUP_BATCHES): a catch-up over many
 * small instances takes the write lock and syncs once per group, not per batch. */
static int deliver(struct sl_pump *pm, struct slot *sl, uint64_t now, struct sl_diag *d)
{
	uint64_t until = uv_hrtime() + ROUND_NS;
	size_t i, k = 0;
	int rc = 0, full = 0, ungrouped = sl->ungrouped;

	sl->ungrouped = 0;
	for (i = 0; i < sl->nqueue; i++) {
		struct sl_inst *in = sl->queue[i];
		int keep = 1;
		/* A round ends after ROUND_NS so that signals and timers are served during
		 * a catch-up over many instances; the rest stay queued for the next one. */
		if (!full && (i & 63) == 63 && uv_hrtime() > until)
			full = pm->progress = 1;
		if (rc || full || pm->stopping || in->busy || !sl->leader || sl->parts_pending) {
			/* kept as it is */
		} else if (in->faulted || (in->loaded && in->offset >= in->head)) {
			keep = 0;
		} else if (in->retry_at > now) {
			pm->retrying = 1;
		} else if (!(rc = sl_proc_inst_load(sl->pp.p, in, d)) &&
		           !(rc = batch_of(pm, sl, i, d))) {
			if (pm->bn == 0) {
				keep = 0; /* the head moved back (a reset): nothing to read */
			} else {
				if (sl->nqueue > 1 && !ungrouped && !sl->ungrouped)
					open_group(pm);
				rc = ingest(pm, sl, in, d);
			}
		}
		if (keep)
			sl->queue[k++] = in;
		else
			in->queued = 0;
	}
	sl->nqueue = k;
	pre_drop(pm);
	close_group(pm);
	if (!k && sl->catching_up && sl->leader) {
		sl->catching_up = 0;
		sl_progress_done(pm->prog, sl->pp.cfg->name);
		if (sl->cu_total)
			sl_log(SL_LOG_DEBUG, sl->pp.cfg->name, NULL, 0,
			       "caught up (%lld events, %lld of them read with neighbouring "
			       "instances)",
			       (long long)sl->cu_done, (long long)sl->cu_near);
	}
	return rc;
}

/* ---- leases --------------------------------------------------------------------------------- */

/* Runs the processor's prepare; a failure is retried with its first batch. */
static void start_prepare(struct slot *sl)
{
	struct sl_diag pd;

	sl_diag_init(&pd);
	if (sl_proc_prepare(sl->pp.p, &pd))
		sl_log(SL_LOG_WARN, sl->pp.cfg->name, NULL, 0, "%s (retried with its first batch)",
		       sl_diag_msg(&pd));
}

/* This runner took the lease of sl at epoch (or took it again at a new epoch, or a
 * new version of the processor takes over under the same lease). */
static int activate(struct sl_pump *pm, struct slot *sl, int64_t epoch, struct sl_diag *d)
{
	struct sl_fence f = {sl->pp.cfg->name, sl_leases_owner(pm->leases), epoch, 0};
	struct sl_diag pd;
	int rc;

	clear_queue(sl);
	forget_rates(sl);
	if ((rc = sl_proc_activate(sl->pp.p, &f, d)))
		return rc;
	sl_diag_init(&pd);
	if (sl_proc_prepare(sl->pp.p, &pd))
		sl_log(SL_LOG_WARN, sl->pp.cfg->name, NULL, 0, "%s (retried with its first batch)",
		       sl_diag_msg(&pd));
	if ((rc = catch_up(pm, sl, d)))
		return rc;
	sl->leader = 1;
	sl->epoch = epoch;
	/* A takeover is news; the start of a lone runner is not. */
	sl_log(*sl->standby_of ? SL_LOG_INFO : SL_LOG_DEBUG, sl->pp.cfg->name, NULL, 0,
	       "running processor '%s' (lease epoch %lld)", sl->pp.cfg->name, (long long)epoch);
	sl->standby_of[0] = '\0';
	return 0;
}

static void stand_by(struct sl_pump *pm, struct slot *sl)
{
	sl_progress_done(pm->prog, sl->pp.cfg->name);
	if (sl->leader)
		sl_proc_forget(sl->pp.p);
	sl->leader = 0;
	clear_queue(sl);
	forget_rates(sl);
	sl->catching_up = 0;
}

/* ---- partitioned runners --------------------------------------------------------------------- */

/* The partitions of a processor in this run: the deployment's, when the store has
 * partitioned runners and the processor has one instance per stream; else 0. */
static int parts_of(const struct sl_pump *pm, const struct sl_deploy_proc *cfg)
{
	if (pm->o.lease_ms <= 0 || pm->o.partitions <= 1 || cfg->mode_all ||
	    !sl_store_has_partitions(pm->store))
		return 0;
	return pm->o.partitions;
}

/* Sets up the partitions of sl (nparts of them, 0: none) and hands them to its
 * processor. */
static int setup_parts(struct slot *sl, int nparts, struct sl_diag *d)
{
	if (nparts > 0) {
		sl->part_epoch = calloc((size_t)nparts, sizeof(*sl->part_epoch));
		sl->part_fenced = calloc((size_t)nparts, sizeof(*sl->part_fenced));
		if (!sl->part_epoch || !sl->part_fenced)
			return sl_diag_set(d, SL_ENOMEM, "out of memory");
		sl->nparts = nparts;
	}
	sl_proc_set_partitions(sl->pp.p, sl->nparts, sl->part_epoch);
	return 0;
}

/* Logs the partitions sl runs now, and among how many runners. */
static void log_parts(struct sl_pump *pm, struct slot *sl)
{
	char list[SL_PARTITIONS_MAX * 6];
	size_t n = 0;
	int k, nrun = 0, nr = sl_leases_runners(pm->leases, sl->lease);

	for (k = 0; k < sl->nparts; k++)
		nrun += sl->part_epoch[k] != 0;
	sl->parts_logged = nr;

	list[0] = '\0';
	for (k = 0; k < sl->nparts && n + 8 < sizeof(list); k++)
		if (sl->part_epoch[k])
			n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%d", n ? "," : "", k);
	if (nrun)
		sl_log(SL_LOG_INFO, sl->pp.cfg->name, NULL, 0,
		       "running partitions %s of processor '%s' (%d of %d; %d runner%s)", list,
		       sl->pp.cfg->name, nrun, sl->nparts, nr, nr == 1 ? "" : "s");
	else
		sl_log(SL_LOG_INFO, sl->pp.cfg->name, NULL, 0,
		       "standby: processor '%s' has no partition for this runner (%d partitions; "
		       "%d "
		       "runner%s)",
		       sl->pp.cfg->name, sl->nparts, nr, nr == 1 ? "" : "s");
}

/* A change of partitions that failed with rc: a store that did not answer in time
 * (SL_EIO) is tried again by the next round (the partitions are not run meanwhile);
 * anything else fails the round. */
static int parts_retry(struct sl_pump *pm, struct slot *sl, int rc, struct sl_diag *d)
{
	if (rc != SL_EIO)
		return rc;
	sl_log(SL_LOG_WARN, sl->pp.cfg->name, NULL, 0, "%s (tried again)", sl_diag_msg(d));
	sl_diag_init(d);
	clear_queue(sl);
	sl->parts_pending = 1;
	pm->retrying = 1;
	return 0;
}

/* Brings a partitioned slot in line with what the keeper saw: it runs the partitions
 * this runner holds and is assigned. A change applies between batches only (none of
 * the slot in flight; meanwhile no batch starts): then every cached instance is
 * forgotten and the instances of the partitions run now are caught up from their
 * checkpoints, so a partition taken over starts from what its last owner committed. */
static int sync_parts(struct sl_pump *pm, struct slot *sl, struct sl_diag *d)
{
	struct sl_fence f = {sl->pp.cfg->name, sl_leases_owner(pm->leases), 0, 0};
	int k, nrun = 0, change = sl->parts_pending, tries, rc;

	for (k = 0; k < sl->nparts && !change; k++) {
		struct sl_part_view v;
		int run;
		sl_leases_part_get(pm->leases, sl->lease, k, &v);
		run = v.held && v.want && v.round > sl->part_fenced[k];
		if (run != (sl->part_epoch[k] != 0) || (run && v.row.epoch != sl->part_epoch[k]))
			change = 1;
	}
	if (!change) {
		/* The same partitions among another number of runners is news too. */
		if (sl->parts_logged >= 0 &&
		    sl->parts_logged != sl_leases_runners(pm->leases, sl->lease))
			log_parts(pm, sl);
		return 0;
	}
	sl->parts_pending = 1;
	if (sl->inflight)
		return 0; /* the batches in flight settle first */
	sl->parts_pending = 0;
	if (sl->leader)
		sl_proc_flush(sl->pp.p);
	sl_progress_done(pm->prog, sl->pp.cfg->name);
	clear_queue(sl);
	forget_rates(sl);
	sl->catching_up = 0;
	for (k = 0; k < sl->nparts; k++) {
		struct sl_part_view v;
		int run;
		sl_leases_part_get(pm->leases, sl->lease, k, &v);
		run = v.held && v.want && v.round > sl->part_fenced[k];
		sl->part_epoch[k] = run ? v.row.epoch : 0;
		sl_leases_part_inuse(pm->leases, sl->lease, k, run);
		nrun += run;
	}
	log_parts(pm, sl);
	sl->leader = 0;
	if (!nrun) {
		sl_proc_forget(sl->pp.p);
		return 0;
	}
	if (!sl->proc_active) {
		for (tries = 0;
		     (rc = sl_proc_activate(sl->pp.p, &f, d)) == SL_ECONFLICT && tries < 3; tries++)
			sl_diag_init(d);
		if (rc)
			return parts_retry(pm, sl, rc, d);
		sl->proc_active = 1;
		start_prepare(sl);
	} else {
		sl_proc_forget(sl->pp.p);
	}
	if ((rc = catch_up(pm, sl, d)))
		return parts_retry(pm, sl, rc, d);
	sl->leader = 1;
	return 0;
}

/* Brings every slot in line with what the lease keeper saw. */
static int sync_leases(struct sl_pump *pm, struct sl_diag *d)
{
	size_t i;
	int rc;

	for (i = 0; i < pm->nslots; i++) {
		struct slot *sl = pm->slots[i];
		struct sl_lease_view v;
		if (sl->nparts) {
			if ((rc = sync_parts(pm, sl, d)))
				return rc;
			continue;
		}
		sl_leases_get(pm->leases, sl->lease, &v);
		if (!v.seen)
			continue;
		if (v.held && v.row.epoch != sl->fenced_epoch &&
		    (!sl->leader || v.row.epoch != sl->epoch)) {
			if (sl->inflight)
				continue; /* the old epoch's batches settle first */
			if (sl->leader)
				stand_by(pm, sl);
			if ((rc = activate(pm, sl, v.row.epoch, d))) {
				if (!fenced(rc, d))
					return rc;
				sl->fenced_epoch = v.row.epoch;
			}
		} else if ((!v.held || v.row.epoch == sl->fenced_epoch) && sl->leader) {
			sl_log(SL_LOG_WARN, sl->pp.cfg->name, NULL, 0,
			       "lost the lease of processor '%s' to %s; standing by",
			       sl->pp.cfg->name, v.held ? "a newer epoch" : v.row.owner);
			stand_by(pm, sl);
		}
		if (!v.held && *v.row.owner && strcmp(v.row.owner, sl->standby_of)) {
			snprintf(sl->standby_of, sizeof(sl->standby_of), "%s", v.row.owner);
			sl_log(SL_LOG_INFO, sl->pp.cfg->name, NULL, 0,
			       "standby: processor '%s' is run by %s", sl->pp.cfg->name,
			       v.row.owner);
		}
	}
	return 0;
}

/* A standby that sees a commit checks whether the lease it waits for came free
 * (released by a leader that stopped) and asks the keeper to take it at once. */
static void check_free_leases(struct sl_pump *pm)
{
	size_t i;

	for (i = 0; i < pm->nslots; i++) {
		struct slot *sl = pm->slots[i];
		struct sl_lease row;
		int found;
		if (sl->leader || sl->nparts)
			continue; /* (a partitioned one's keeper wakes itself) */
		if (sl_store_lease_get(pm->store, sl->pp.cfg->name, &row, &found, NULL) == 0 &&
		    (!found || !*row.owner || row.expires_at <= sl_store_now_ms())) {
			sl_leases_poke(pm->leases);
			return;
		}
	}
}

static void on_leases(void *ud)
{
	sl_pump_kick(ud);
}

/* ---- changes of the deployment (hot reload) -------------------------------------------------- */

static void retire(struct sl_pump *pm, struct sl_proc *p)
{
	if (p && pm->retire)
		pm->retire(pm->retire_ud, p);
}

static void free_slot(struct slot *sl)
{
	free(sl->part_epoch);
	free(sl->part_fenced);
	free_skips(sl);
	clear_queue(sl);
	free(sl->queue);
	free(sl->rates);
	free(sl);
}

static int start_slot(struct sl_pump *pm, struct slot *sl, struct sl_diag *d);

/* The new version sl->pp takes over from old under the same lease. Same pattern, mode
 * and contract version, and no fault cleared: the queue and the cursor carry over
 * (the new version's instances for the same streams), so a swap costs no catch-up
 * over every stream; otherwise the new version catches up as at a takeover.
 * stand_by(old) ran: old's instances are forgotten but still valid. */
static int swap_in(struct sl_pump *pm, struct slot *sl, struct sl_proc *old, struct sl_inst **q,
                   size_t n, struct sl_diag *d)
{
	const struct sl_proc_cfg *oc = sl_proc_cfg(old), *nc = sl_proc_cfg(sl->pp.p);
	struct sl_fence f = {sl->pp.cfg->name, sl_leases_owner(pm->leases), sl->epoch, 0};
	struct sl_diag pd;
	size_t i;
	int rc;

	if (strcmp(oc->streams, nc->streams) || oc->mode_all != nc->mode_all ||
	    sl_proc_contract(old)->version != sl_proc_contract(sl->pp.p)->version)
		return activate(pm, sl, sl->epoch, d);
	if ((rc = sl_proc_activate(sl->pp.p, &f, d)))
		return rc;
	if (sl_proc_claim_moved(sl->pp.p))
		return activate(pm, sl, sl->epoch, d); /* claims again: nothing left to move */
	sl_diag_init(&pd);
	if (sl_proc_prepare(sl->pp.p, &pd))
		sl_log(SL_LOG_WARN, sl->pp.cfg->name, NULL, 0, "%s (retried with its first batch)",
		       sl_diag_msg(&pd));
	sl->leader = 1;
	for (i = 0; i < n && !rc; i++) {
		struct sl_inst *in = sl_proc_instance(sl->pp.p, q[i]->stream);
		if (!in)
			rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
		else if (!(rc = sl_proc_inst_load(sl->pp.p, in, d)))
			in->head = q[i]->head, rc = enqueue(sl, in);
	}
	return rc;
}

/* Applies the change waiting on slot i once the slot is idle (its batches settled:
 * a batch waiting on blocking work swaps after it settles). Returns 1 when the slot
 * went away, 0 when it stays, or a negative code. */
static int apply_change(struct sl_pump *pm, size_t i, struct sl_diag *d)
{
	struct slot *sl = pm->slots[i];
	struct sl_proc *old = sl->pp.p;
	int was_leader = sl->leader, rc;
	struct sl_inst **q = sl->queue;
	size_t k, nq = sl->nqueue;

	if (sl->inflight)
		return 0;
	sl_proc_flush(old);
	/* The queue goes to the new version (swap_in); stand_by forgets the rest. */
	for (k = 0; k < nq; k++)
		q[k]->queued = 0;
	sl->queue = NULL;
	sl->nqueue = sl->capqueue = 0;
	stand_by(pm, sl);
	if (sl->removing) {
		free(q);
		if (pm->leases)
			sl_leases_drop(pm->leases, sl->lease);
		sl_log(SL_LOG_INFO, sl->pp.cfg->name, NULL, 0, "stopped; its rows are kept");
		retire(pm, old);
		free_slot(sl);
		memmove(&pm->slots[i], &pm->slots[i + 1],
		        (pm->nslots - i - 1) * sizeof(*pm->slots));
		pm->nslots--;
		return 1;
	}
	sl->pp = sl->next;
	sl->next.p = NULL;
	if (sl->nparts) {
		/* The new version takes over the partitions run now, from the checkpoints. */
		free(q);
		retire(pm, old);
		sl_proc_set_partitions(sl->pp.p, sl->nparts, sl->part_epoch);
		if (!sl->proc_active)
			return 0; /* it starts with its first partition */
		sl->proc_active = 0;
		sl->parts_pending = 1;
		return sync_parts(pm, sl, d);
	}
	if (!was_leader) {
		free(q);
		retire(pm, old);
		return 0; /* it starts with the lease, in its new version */
	}
	rc = pm->leases ? swap_in(pm, sl, old, q, nq, d) : start_slot(pm, sl, d);
	free(q);
	retire(pm, old);
	if (fenced(rc, d)) {
		sl->fenced_epoch = sl->epoch; /* the lease went meanwhile: a standby */
		sl_leases_poke(pm->leases);
		return 0;
	}
	return rc;
}

/* The changes waiting on idle slots. */
static int apply_changes(struct sl_pump *pm, struct sl_diag *d)
{
	size_t i;
	int rc, waiting = 0;

	for (i = 0; i < pm->nslots; i++) {
		struct slot *sl = pm->slots[i];
		if (!sl->next.p && !sl->removing)
			continue;
		if ((rc = apply_change(pm, i, d)) < 0)
			return rc;
		if (rc == 1)
			i--;
		else if (sl->next.p || sl->removing)
			waiting = 1;
	}
	pm->changes = waiting;
	return 0;
}

static int new_slot(struct sl_pump *pm, struct sl_proc *p, const struct sl_deploy_proc *cfg,
                    size_t *index, struct sl_diag *d);

int sl_pump_set(struct sl_pump *pm, const char *name, struct sl_proc *p,
                const struct sl_deploy_proc *cfg, struct sl_diag *d)
{
	struct slot *sl = NULL;
	size_t i;
	int rc;

	for (i = 0; i < pm->nslots && !sl; i++)
		if (!strcmp(pm->slots[i]->pp.cfg->name, name))
			sl = pm->slots[i];
	if (!sl && !p)
		return 0;
	if (!sl) { /* a new processor */
		if ((rc = new_slot(pm, p, cfg, &i, d)))
			return rc;
		sl = pm->slots[i];
		if (!pm->running)
			return 0;
		if (pm->leases)
			return (rc = setup_parts(sl, parts_of(pm, cfg), d))
			               ? rc
			               : sl_leases_add_parts(pm->leases, name, sl->nparts,
			                                     &sl->lease, d);
		return start_slot(pm, sl, d);
	}
	retire(pm, sl->next.p); /* a version that never took over */
	sl->next.p = p;
	sl->next.cfg = cfg;
	sl->removing = p == NULL;
	pm->changes = 1;
	sl_pump_kick(pm);
	return 0;
}

void sl_pump_set_retire(struct sl_pump *pm, sl_pump_retire_fn fn, void *ud)
{
	pm->retire = fn;
	pm->retire_ud = ud;
}

void sl_pump_set_listener(struct sl_pump *pm, sl_pump_change_fn fn, void *ud)
{
	pm->on_change = fn;
	pm->change_ud = ud;
}

void sl_pump_stats_of(const struct sl_pump *pm, size_t i, struct sl_pump_stats *out)
{
	const struct slot *sl = pm->slots[i];
	size_t k;

	*out = sl->stats;
	out->lag = 0;
	for (k = 0; k < sl->nqueue; k++)
		if (sl->queue[k]->head > sl->queue[k]->offset)
			out->lag += sl->queue[k]->head - sl->queue[k]->offset;
	out->leader = sl->leader;
}

size_t sl_pump_nprocs(const struct sl_pump *pm)
{
	return pm->nslots;
}

const struct sl_pump_proc *sl_pump_proc_at(const struct sl_pump *pm, size_t i)
{
	return i < pm->nslots ? &pm->slots[i]->pp : NULL;
}

/* ---- work done between batches (the console's reset and resume) ---------------------------- */

int sl_pump_exclusive(struct sl_pump *pm, const char *name, sl_pump_op_fn fn, void *ud,
                      struct sl_diag *d)
{
	struct sl_fence f = {name, pm->leases ? sl_leases_owner(pm->leases) : NULL, 0, 0};
	struct slot *sl = NULL;
	struct sl_diag ad;
	size_t i;
	int rc, arc;

	for (i = 0; i < pm->nslots && !sl; i++)
		if (!strcmp(pm->slots[i]->pp.cfg->name, name))
			sl = pm->slots[i];
	if (!sl)
		return sl_diag_set(d, SL_ENOTFOUND, "unknown processor '%s'", name);
	if (!sl->leader)
		return *sl->standby_of
		               ? sl_diag_set(d, SL_EBUSY,
		                             "processor '%s' is run by %s, not by this runner; "
		                             "use its console",
		                             name, sl->standby_of)
		               : sl_diag_set(d, SL_EBUSY,
		                             "processor '%s' has not started in this runner yet "
		                             "(waiting for its lease)",
		                             name);
	for (i = 0; i < (size_t)sl->nparts; i++)
		if (!sl->part_epoch[i])
			return sl_diag_set(
				d, SL_EBUSY,
				"processor '%s' is partitioned and this runner does not run "
				"its partition %zu; stop the other runners first",
				name, i);
	if (sl->inflight || sl->next.p || sl->removing || sl->parts_pending)
		return sl_diag_set(d, SL_EBUSY,
		                   "processor '%s' has a batch in flight (waiting on its blocking "
		                   "work); try again once it settled",
		                   name);
	f.epoch = sl->epoch;
	sl_proc_flush(sl->pp.p);
	stand_by(pm, sl);
	/* Partitioned: this runner holds every partition, and no lease is the processor's. */
	rc = fn(ud, &sl->pp, pm->leases && !sl->nparts ? &f : NULL, d);
	/* Whatever fn did, the processor runs on from what the store holds now. */
	sl_diag_init(&ad);
	if (sl->nparts) {
		sl->proc_active = 0;
		sl->parts_pending = 1;
		arc = sync_parts(pm, sl, &ad);
	} else if (pm->leases)
		arc = activate(pm, sl, sl->epoch, &ad);
	else if (!(arc = sl_proc_activate(sl->pp.p, NULL, &ad)))
		arc = start_slot(pm, sl, &ad);
	if (arc && fenced(arc, &ad)) {
		sl->fenced_epoch = sl->epoch; /* the lease went meanwhile: a standby */
		sl_leases_poke(pm->leases);
	} else if (arc && !rc) {
		rc = sl_diag_set(d, arc, "%s", sl_diag_msg(&ad));
	}
	sl_pump_kick(pm);
	return rc;
}

int sl_pump_skip(struct sl_pump *pm, const char *name, const char *stream, int all, int64_t until)
{
	struct slot *sl = NULL;
	struct skip *grown;
	size_t i;

	for (i = 0; i < pm->nslots && !sl; i++)
		if (!strcmp(pm->slots[i]->pp.cfg->name, name))
			sl = pm->slots[i];
	if (!sl)
		return SL_ENOTFOUND;
	for (i = 0; i < sl->nskips; i++)
		if (!strcmp(sl->skips[i].stream, stream)) {
			sl->skips[i].all = all;
			sl->skips[i].until = until;
			return 0;
		}
	if (!(grown = realloc(sl->skips, (sl->nskips + 1) * sizeof(*grown))))
		return SL_ENOMEM;
	sl->skips = grown;
	if (!(grown[sl->nskips].stream = strdup(stream)))
		return SL_ENOMEM;
	grown[sl->nskips].all = all;
	grown[sl->nskips++].until = until;
	return 0;
}

/* ---- rounds --------------------------------------------------------------------------------- */

/* One pass over every processor this runner leads: route what is new, then one
 * batch per queued instance. */
/* A JetStream store that does not answer for a while (a leader election that lasts,
 * a node that is gone and a client that has not reconnected yet) does not stop a run:
 * a round whose routing or batches failed with SL_EIO on such a store is logged and
 * tried again every STORE_RETRY_MS, until STORE_OUTAGE_MS have passed since the first
 * failure in a row. The catch-up and the lease changes have their own retries
 * (parts_retry) or are fatal as before. Returns 0 when the round is to be tried again
 * (d is reset), rc otherwise. */
#define STORE_RETRY_MS 1000
#define STORE_OUTAGE_MS 60000

static int store_outage(struct sl_pump *pm, int rc, struct sl_diag *d)
{
	uint64_t now = uv_now(pm->loop);

	if (rc != SL_EIO || !sl_store_has_partitions(pm->store))
		return rc;
	if (!pm->outage)
		pm->outage = now ? now : 1;
	if (now - pm->outage >= STORE_OUTAGE_MS) {
		sl_diag_prefix(d, "the store did not answer for %d s", STORE_OUTAGE_MS / 1000);
		return rc;
	}
	sl_log(SL_LOG_WARN, NULL, NULL, 0, "%s (trying again in %d ms)", sl_diag_msg(d),
	       STORE_RETRY_MS);
	sl_diag_init(d);
	return 0;
}

static int pump_round(struct sl_pump *pm, struct sl_diag *d)
{
	uint64_t now = uv_now(pm->loop);
	size_t i;
	int rc;

	pm->progress = pm->retrying = 0;
	if (pm->changes && (rc = apply_changes(pm, d)))
		return rc;
	if (pm->leases && (rc = sync_leases(pm, d)))
		return rc;
	for (i = 0; i < pm->nslots && !pm->stopping; i++) {
		struct slot *sl = pm->slots[i];
		if (!sl->leader)
			continue;
		sl_proc_flush(sl->pp.p);
		if ((rc = route(pm, sl, d)) || (rc = deliver(pm, sl, now, d)))
			return store_outage(pm, rc, d);
	}
	pm->outage = 0;
	return 0;
}

static size_t work_running(struct sl_pump *pm)
{
	size_t i, n = 0;

	for (i = 0; i < pm->nslots; i++)
		n += sl_proc_work_running(pm->slots[i]->pp.p);
	return n;
}

/* Nothing left to do: every processor led and caught up, nothing in flight. */
static int caught_up(struct sl_pump *pm)
{
	size_t i;

	if (pm->progress || pm->retrying || pm->outage || pm->inflight || work_running(pm))
		return 0;
	for (i = 0; i < pm->nslots; i++) {
		struct slot *sl = pm->slots[i];
		size_t k;
		if (!sl->leader || sl->parts_pending)
			return 0;
		for (k = 0; k < (size_t)sl->nparts; k++)
			if (!sl->part_epoch[k])
				return 0; /* another runner has some: not all is done here */
		for (k = 0; k < sl->nqueue; k++)
			if (!sl->queue[k]->faulted)
				return 0;
	}
	return 1;
}

/* Shutting down: no new batch starts; stop once the batches in flight settled (or
 * the deadline passed), reporting background work that is still running, killing
 * every ctx.exec child left and waiting (at most REAP_MS) until the loop reaped them:
 * no child outlives the run, not even as a zombie. */
static int shutdown_done(struct sl_pump *pm)
{
	size_t bg;

	if (pm->inflight && uv_now(pm->loop) < pm->deadline)
		return 0;
	if (!pm->killed) {
		if (pm->inflight)
			sl_log(SL_LOG_WARN, NULL, NULL, 0,
			       "shutdown: %zu batches did not settle in time; they will be "
			       "delivered again",
			       pm->inflight);
		if ((bg = work_running(pm)))
			sl_log(SL_LOG_WARN, NULL, NULL, 0,
			       "shutdown: %zu background work items still running were stopped",
			       bg);
		sl_work_kill_all(0);
		pm->killed = 1;
		pm->reap_deadline = uv_now(pm->loop) + REAP_MS;
	}
	return sl_work_children() == 0 || uv_now(pm->loop) >= pm->reap_deadline;
}

static void start_watch(struct sl_pump *pm);

static void on_tick(uv_timer_t *t)
{
	struct sl_pump *pm = t->data;
	struct sl_diag d;

	sl_diag_init(&d);
	if (pm->stopping) {
		if (shutdown_done(pm))
			uv_stop(pm->loop);
		else
			uv_timer_start(&pm->timer, on_tick, 20, 0);
		return;
	}
	if (pump_round(pm, &d)) {
		/* Reported by sl_pump_run, once the batches in flight settled. */
		pm->failure = d;
		pm->stopping = 1;
		pm->deadline = uv_now(pm->loop) + (uint64_t)pm->o.shutdown_ms;
		sl_pump_kick(pm);
		return;
	}
	if (!pm->watching)
		start_watch(pm);
	if (pm->o.until_caught_up && caught_up(pm)) {
		uv_stop(pm->loop);
		return;
	}
	/* Go on at once while there is work; a retry waits for its backoff; otherwise
	 * the next round comes with a wake-up (a store change, a lease, a batch). */
	if (pm->outage)
		uv_timer_start(&pm->timer, on_tick, STORE_RETRY_MS, 0);
	else if (pm->progress)
		uv_timer_start(&pm->timer, on_tick, 0, 0);
	else if (pm->retrying)
		uv_timer_start(&pm->timer, on_tick, 10, 0);
}

/* ---- wake-up -------------------------------------------------------------------------------- */

/* Something may have changed in the store: a round, and for a standby a look at
 * the leases it waits for. */
static void store_changed(struct sl_pump *pm)
{
	if (pm->on_change)
		pm->on_change(pm->change_ud);
	if (pm->leases)
		check_free_leases(pm);
	if (!uv_is_active((uv_handle_t *)&pm->timer))
		sl_pump_kick(pm);
}

static void on_watch(uv_fs_event_t *w, const char *file, int events, int status)
{
	struct sl_pump *pm = w->data;

	(void)file;
	(void)events;
	if (status < 0) { /* the watch broke: the poll takes over, and tries again */
		uv_fs_event_stop(&pm->watch);
		pm->watching = 0;
		return;
	}
	store_changed(pm);
}

/* Watches the store's watch file, when it has one and it exists. */
static void start_watch(struct sl_pump *pm)
{
	const char *file = sl_store_watch_file(pm->store);

	if (!file || access(file, F_OK) != 0)
		return;
	if (uv_fs_event_start(&pm->watch, on_watch, file, 0) == 0)
		pm->watching = 1;
}

/* The store's own wake (a backend without a watch file): its thread says an append
 * may have happened; only uv_async_send crosses into the loop. */
static void wake_from_store(void *ud)
{
	uv_async_send(ud);
}

static void on_wake(uv_async_t *a)
{
	store_changed(a->data);
}

/* The slow poll: the store's data version, in case a file event was missed. */
static void on_poll(uv_timer_t *t)
{
	struct sl_pump *pm = t->data;
	int64_t v;

	if (!pm->watching)
		start_watch(pm);
	if (sl_store_data_version(pm->store, &v, NULL) == 0 && v != pm->data_version) {
		pm->data_version = v;
		store_changed(pm);
	} else if (pm->leases) {
		check_free_leases(pm); /* an expired lease changes no data */
	}
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct sl_pump *pm = s->data;

	if (pm->signals++) {
		/* A second signal: leave now. SQLite's journal keeps the store whole; the
		 * children of ctx.exec go first. */
		sl_log(SL_LOG_WARN, NULL, NULL, 0, "second signal; exiting at once");
		sl_work_kill_all(1);
		_exit(128 + signum);
	}
	pm->stopping = 1;
	pm->deadline = uv_now(pm->loop) + (uint64_t)pm->o.shutdown_ms;
	if (pm->inflight)
		sl_log(SL_LOG_INFO, NULL, NULL, 0,
		       "%s: stopping; waiting up to %.0f ms for %zu batches in flight (signal "
		       "again "
		       "to exit at once)",
		       signum == SIGINT ? "SIGINT" : "SIGTERM", pm->o.shutdown_ms, pm->inflight);
	sl_pump_kick(pm);
}

#ifdef SL_TESTING
/* SLUICE_POLL_MS: the slow poll's period, so that a test of a wake can make sure the
 * poll is not what woke the run. A test switch: only the SL_TESTING build has it. */
static uint64_t poll_ms(void)
{
	const char *v = getenv("SLUICE_POLL_MS");

	return v && atol(v) > 0 ? (uint64_t)atol(v) : POLL_MS;
}
#else
static uint64_t poll_ms(void)
{
	return POLL_MS;
}
#endif

int sl_pump_read_batch(struct sl_pump *pm, struct sl_pump_proc *pp, struct sl_inst *in,
                       const struct sl_event **ev, size_t *n, struct sl_diag *d)
{
	int rc = read_batch(pm, pp, in, d);

	*ev = pm->buf.ev;
	*n = rc ? 0 : pm->buf.n;
	return rc;
}

/* ---- slots ---------------------------------------------------------------------------------- */

static int new_slot(struct sl_pump *pm, struct sl_proc *p, const struct sl_deploy_proc *cfg,
                    size_t *index, struct sl_diag *d)
{
	struct slot **grown = realloc(pm->slots, (pm->nslots + 1) * sizeof(*grown));
	struct slot *sl = calloc(1, sizeof(*sl));

	if (grown)
		pm->slots = grown;
	if (!grown || !sl) {
		free(sl);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	sl->pp.p = p;
	sl->pp.cfg = cfg;
	sl->fenced_epoch = -1;
	sl->parts_logged = -1;
	pm->slots[pm->nslots] = sl;
	*index = pm->nslots++;
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int sl_pump_new(struct sl_pump **out, struct uv_loop_s *loop, struct sl_store *store,
                struct sl_pump_proc *procs, size_t nprocs)
{
	struct sl_pump *pm = calloc(1, sizeof(*pm));
	size_t i, k;

	*out = pm;
	if (!pm)
		return SL_ENOMEM;
	pm->loop = loop;
	pm->store = store;
	pm->o.shutdown_ms = 10000;
	pm->grouped_tail = &pm->grouped;
	sl_buf_init(&pm->buf.arena);
	sl_buf_init(&pm->pre.arena);
	for (i = 0; i < nprocs; i++)
		if (new_slot(pm, procs[i].p, procs[i].cfg, &k, NULL))
			return SL_ENOMEM;
	return 0;
}

void sl_pump_free(struct sl_pump *pm)
{
	size_t i;

	if (!pm)
		return;
	for (i = 0; i < pm->nslots; i++) {
		retire(pm, pm->slots[i]->next.p);
		free_slot(pm->slots[i]);
	}
	free(pm->slots);
	free(pm->buf.ev);
	free(pm->buf.off);
	sl_buf_release(&pm->buf.arena);
	pre_drop(pm);
	free(pm->pre.ev);
	free(pm->pre.off);
	sl_buf_release(&pm->pre.arena);
	free(pm);
}

/* Starts the leases (or, without, every processor at once). */
static int start_slots(struct sl_pump *pm, struct sl_diag *d)
{
	size_t i;
	int rc;

	if (pm->o.lease_ms > 0) {
		if ((rc = sl_leases_new(&pm->leases, pm->loop, pm->o.store_path, pm->o.store_ns,
		                        pm->o.store_replicas, pm->o.lease_ms, on_leases, pm, d)))
			return rc;
		for (i = 0; i < pm->nslots; i++) {
			struct slot *sl = pm->slots[i];
			if ((rc = setup_parts(sl, parts_of(pm, sl->pp.cfg), d)) ||
			    (rc = sl_leases_add_parts(pm->leases, sl->pp.cfg->name, sl->nparts,
			                              &sl->lease, d)))
				return rc;
		}
		return sl_leases_start(pm->leases, d);
	}
	for (i = 0; i < pm->nslots; i++)
		if ((rc = start_slot(pm, pm->slots[i], d)))
			return rc;
	return 0;
}

/* Without leases: the processor runs at once. */
static int start_slot(struct sl_pump *pm, struct slot *sl, struct sl_diag *d)
{
	struct sl_diag pd;

	sl_diag_init(&pd);
	if (sl_proc_prepare(sl->pp.p, &pd))
		sl_log(SL_LOG_WARN, sl->pp.cfg->name, NULL, 0, "%s (retried with its first batch)",
		       sl_diag_msg(&pd));
	sl->leader = 1;
	return catch_up(pm, sl, d);
}

int sl_pump_run(struct sl_pump *pm, const struct sl_pump_opts *o, struct sl_diag *d)
{
	int rc;

	pm->o = *o;
	uv_timer_init(pm->loop, &pm->timer);
	uv_timer_init(pm->loop, &pm->poll);
	uv_timer_init(pm->loop, &pm->ratetimer);
	uv_fs_event_init(pm->loop, &pm->watch);
	uv_async_init(pm->loop, &pm->wake, on_wake);
	uv_unref((uv_handle_t *)&pm->wake);
	pm->wake.data = pm;
	uv_signal_init(pm->loop, &pm->sigint);
	uv_signal_init(pm->loop, &pm->sigterm);
	pm->timer.data = pm->poll.data = pm->ratetimer.data = pm->watch.data = pm;
	pm->sigint.data = pm->sigterm.data = pm;
	sl_store_data_version(pm->store, &pm->data_version, NULL);
	if (o->store_path) {
		/* Faults noted by an earlier run are retried by this one: it starts empty. */
		struct sl_diag fd;
		sl_diag_init(&fd);
		if (sl_faultlog_open(&pm->faultlog, o->store_path, &fd))
			sl_log(SL_LOG_DEBUG, NULL, NULL, 0, "%s", sl_diag_msg(&fd));
	}
	if (o->progress)
		pm->prog = sl_progress_new(2, isatty(2));
	pm->running = 1;
	if ((rc = start_slots(pm, d)) == 0) {
		uv_signal_start(&pm->sigint, on_signal, SIGINT);
		uv_signal_start(&pm->sigterm, on_signal, SIGTERM);
		pm->waking = sl_store_wake_start(pm->store, wake_from_store, &pm->wake, NULL) == 0;
		uv_timer_start(&pm->poll, on_poll, poll_ms(), poll_ms());
		uv_timer_start(&pm->ratetimer, on_rates, 1000, 1000);
		sl_pump_kick(pm);
		uv_run(pm->loop, UV_RUN_DEFAULT);
		on_rates(&pm->ratetimer); /* the last second, and the 0 of instances now idle */
	}
	sl_progress_free(pm->prog);
	pm->prog = NULL;
	sl_faultlog_close(pm->faultlog);
	pm->faultlog = NULL;
	/* A clean stop releases the leases at once: a standby takes over. */
	sl_leases_free(pm->leases);
	pm->leases = NULL;
	uv_close((uv_handle_t *)&pm->timer, NULL);
	uv_close((uv_handle_t *)&pm->poll, NULL);
	uv_close((uv_handle_t *)&pm->ratetimer, NULL);
	uv_close((uv_handle_t *)&pm->watch, NULL);
	if (pm->waking)
		sl_store_wake_stop(pm->store); /* before the handle it sends to goes */
	pm->waking = 0;
	uv_close((uv_handle_t *)&pm->wake, NULL);
	uv_close((uv_handle_t *)&pm->sigint, NULL);
	uv_close((uv_handle_t *)&pm->sigterm, NULL);
	uv_run(pm->loop, UV_RUN_NOWAIT);
	if (!rc && pm->failure.code) {
		rc = pm->failure.code;
		sl_diag_set(d, rc, "%s", sl_diag_msg(&pm->failure));
	}
	if (!rc && pm->unrecorded)
		rc = sl_diag_set(d, SL_EIO,
		                 "%s%s (is the disk full?); sluice status cannot show %s",
		                 pm->unrecorded_msg,
		                 pm->unrecorded > 1 ? ", and more faults were not recorded" : "",
		                 pm->unrecorded > 1 ? "them" : "it");
	return rc;
}
