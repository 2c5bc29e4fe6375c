/* sl_host.c - deployments at run time: loading, running the pump (sl_pump.c), state,
 * status, reset, resume and dead letters. */
#include "sl_host.h"

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
#include "sl_http.h"
#include "sl_log.h"
#include "sl_processor.h"
#include "sl_pump.h"
#include "sl_reload.h"
#include "sl_store.h"

struct sl_host {
	struct sl_deploy *dp;
	struct sl_contracts *cs;
	struct sl_store *store;
	struct sl_core_validator *core; /* the store's payload check */
	struct sl_pump_proc *procs;
	size_t nprocs;
	struct sl_pump *pump;
	struct sl_reload *reload; /* sluice run: owns the processors from then on */
	uv_loop_t loop;
	int loop_ready;
	double shutdown_ms;
	int progress;
	int flags;
	struct sl_errs skipped; /* lenient open: why processors did not load */
	int running;            /* sl_host_run is running the pump */
	struct sl_host_service services[SL_HOST_MAX_SERVICES];
	size_t nservices;
	const char *http_addr;     /* sluice run --http, or NULL */
	struct sl_http *http;      /* the HTTP interface while it runs */
	struct sl_http *stopped;   /* and once stopped, until the loop is closed */
	struct sl_host *left_next; /* on the list of left_open */
	struct sl_pump_proc live;  /* find_proc's copy of a processor the pump runs */
};

/* ---- opening ------------------------------------------------------------------------ */

static int open_procs(struct sl_host *h, int flags, struct sl_errs *errs)
{
	int bad = 0;
	size_t i;

	if (!(h->procs = calloc(h->dp->nprocs + 1, sizeof(*h->procs))))
		return SL_ENOMEM;
	for (i = 0; i < h->dp->nprocs; i++) {
		const struct sl_deploy_proc *dp = &h->dp->procs[i];
		struct sl_proc_cfg cfg;
		sl_reload_proc_cfg(dp, (flags & SL_HOST_STRICT) != 0, &cfg);
		h->procs[i].cfg = dp;
		if (flags & SL_HOST_ROWS) { /* the rows only: no script is loaded */
			h->nprocs++;
			continue;
		}
		if (flags & SL_HOST_LENIENT) {
			size_t before = h->skipped.n;
			if (sl_proc_load(&h->procs[h->nprocs].p, &cfg, h->cs, &h->skipped) &&
			    h->skipped.n == before)
				sl_errs_add(&h->skipped, "%s: cannot load", dp->script);
			h->procs[h->nprocs++].cfg = dp; /* p NULL when it did not load */
		} else if (sl_proc_load(&h->procs[h->nprocs].p, &cfg, h->cs, errs)) {
			bad = 1;
		} else {
			h->procs[h->nprocs++].cfg = dp;
		}
	}
	return bad ? SL_EINVAL : 0;
}

static int open_store(struct sl_host *h, struct sl_errs *errs)
{
	/* A store that does not exist yet is created even by a read, so that `state`
	 * before the first run shows the initial states. */
	struct sl_store_opts so = {
		h->dp->durability, (h->flags & SL_HOST_READONLY) && !access(h->dp->store, F_OK),
		sl_core_validate, NULL, h->dp->ns, h->dp->replicas,
		/* reads leave the projection database alone (query() opens it itself) */
		h->flags & SL_HOST_READONLY ? NULL : h->dp->projections};
	struct sl_diag d;
	size_t i;

	sl_diag_init(&d);
	if (sl_core_validator_new(&h->core, &d))
		goto fail;
	so.check_ud = h->core;
	if (sl_store_open(&h->store, h->dp->store, &so, &d))
		goto fail;
	for (i = 0; i < h->nprocs; i++)
		if (h->procs[i].p && (sl_proc_attach(h->procs[i].p, h->store, 0, &d) ||
		                      sl_proc_set_loop(h->procs[i].p, &h->loop, &d)))
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
	h->shutdown_ms = 10000;
	h->progress = isatty(2);
	sl_errs_init(&h->skipped);
	h->flags = flags;
	if ((rc = uv_loop_init(&h->loop))) {
		sl_errs_add(errs, "cannot start the event loop: %s", uv_strerror(rc));
		rc = SL_EIO;
		goto fail;
	}
	h->loop_ready = 1;
	if ((rc = sl_deploy_load(&h->dp, deployment, errs)))
		goto fail;
	h->shutdown_ms = h->dp->shutdown_ms;
	if ((rc = sl_contracts_new(&h->cs, (const char *const *)h->dp->schemas, h->dp->nschemas,
	                           &d))) {
		sl_errs_add(errs, "%s", sl_diag_msg(&d));
		goto fail;
	}
	if ((rc = open_procs(h, flags, errs)))
		goto fail;
	if (!(flags & SL_HOST_NO_STORE) && (rc = open_store(h, errs)))
		goto fail;
	if ((rc = sl_pump_new(&h->pump, &h->loop, h->store, h->procs, h->nprocs))) {
		sl_errs_add(errs, "out of memory");
		goto fail;
	}
	*out = h;
	return 0;
fail:
	sl_host_free(h);
	return rc;
}

/* Hosts whose loop could not close in sl_host_free (an HTTP client's connection was
 * still open): the loop, h2o's connections and the stopped HTTP server point into
 * them, so they stay, reachable from here, until the process ends. */
static struct sl_host *left_open;

void sl_host_free(struct sl_host *h)
{
	size_t i;
	int closed = 0;

	if (!h)
		return;
	sl_pump_free(h->pump);
	sl_reload_free(h->reload);
	for (i = 0; i < h->nprocs; i++)
		sl_proc_free(h->procs[i].p);
	free(h->procs);
	if (h->loop_ready) {
		/* Handles closed above finish closing, and those their close callbacks close
		 * in turn. What stays open (an HTTP client's connection) keeps the loop, and
		 * what points into it, allocated until the process ends. */
		for (i = 0; i < 8 && !closed; i++) {
			uv_run(&h->loop, UV_RUN_NOWAIT);
			closed = uv_loop_close(&h->loop) == 0;
		}
		if (closed)
			sl_http_free(h->stopped);
	}
	sl_store_close(h->store);
	sl_core_validator_free(h->core);
	sl_contracts_free(h->cs);
	sl_deploy_free(h->dp);
	sl_errs_release(&h->skipped);
	if (h->loop_ready && !closed) {
		h->left_next = left_open;
		left_open = h;
		return;
	}
	free(h);
}

const struct sl_deploy *sl_host_deploy(const struct sl_host *h)
{
	return h->dp;
}

size_t sl_host_nprocs(const struct sl_host *h)
{
	return h->nprocs;
}

void sl_host_proc_info(const struct sl_host *h, size_t i, struct sl_proc_info *out)
{
	const struct sl_pump_proc *hp = &h->procs[i];
	const struct sl_contract *c = hp->p ? sl_proc_contract(hp->p) : NULL;

	out->name = hp->cfg->name;
	out->script = hp->cfg->script;
	out->streams = hp->cfg->streams;
	out->mode_all = hp->cfg->mode_all;
	out->contract = c ? c->name : NULL;
	out->version = c ? c->version : 0;
}

const struct sl_errs *sl_host_skipped(const struct sl_host *h)
{
	return &h->skipped;
}

static struct sl_pump_proc *find_proc(struct sl_host *h, const char *name, struct sl_diag *d)
{
	size_t i;

	/* While it runs (the HTTP interface asks), the versions the pump runs now. */
	for (i = 0; h->reload && i < sl_pump_nprocs(h->pump); i++)
		if (!strcmp(sl_pump_proc_at(h->pump, i)->cfg->name, name)) {
			h->live = *sl_pump_proc_at(h->pump, i);
			return &h->live;
		}
	for (i = 0; i < h->nprocs; i++)
		if (!strcmp(h->procs[i].cfg->name, name))
			return &h->procs[i];
	sl_diag_set(d, SL_EINVAL, "unknown processor '%.*s%s' (not in %s)", SL_ECHO(name),
	            h->dp->file);
	return NULL;
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

/* Counts faulted instances of the processors run, naming the first in d. */
static int count_faulted(struct sl_host *h, struct sl_diag *d)
{
	struct faults f = {NULL, 0, d};
	size_t i;

	for (i = 0; i < sl_pump_nprocs(h->pump); i++) {
		f.proc = sl_pump_proc_at(h->pump, i)->cfg->name;
		sl_ckpt_each(h->store, f.proc, count_fault, &f, d);
	}
	return f.n;
}

int sl_host_faulted(struct sl_host *h, struct sl_diag *d)
{
	struct sl_diag cd;
	int n;

	sl_diag_init(&cd);
	n = count_faulted(h, &cd);
	if (cd.code && n == 0)
		return sl_diag_set(d, cd.code, "%s", sl_diag_msg(&cd));
	if (n)
		sl_diag_set(d, SL_EINVAL, "%s", sl_diag_msg(&cd));
	return n;
}

void sl_host_set_http(struct sl_host *h, const char *addr)
{
	h->http_addr = addr;
}

/* A reload adopted dp: HTTP appends are checked against its contracts from now on. */
static void on_adopt(void *ud, const struct sl_deploy *dp)
{
	struct sl_host *h = ud;
	struct sl_diag d;

	sl_diag_init(&d);
	if (h->http && sl_http_use_contracts(h->http, dp, &d))
		sl_log(SL_LOG_ERROR, NULL, NULL, 0,
		       "reload: HTTP appends stay checked against the contracts before it: %s",
		       sl_diag_msg(&d));
}

/* The HTTP interface of a service, on the deployment's address or --http's. */
static int start_http(struct sl_host *h, struct sl_diag *d)
{
	struct sl_http_opts o = {h->http_addr ? h->http_addr : h->dp->http,
	                         h->http_addr ? "--http" : "http"};

	if (!o.addr)
		return 0;
	return sl_http_new(&h->http, h, &h->loop, h->store, h->pump, h->dp, &o, d);
}

void sl_host_set_shutdown_timeout(struct sl_host *h, double ms)
{
	h->shutdown_ms = ms;
}

void sl_host_set_progress(struct sl_host *h, int on)
{
	h->progress = on;
}

int sl_host_run(struct sl_host *h, int until_caught_up, struct sl_diag *d)
{
	struct sl_pump_opts o = {until_caught_up, h->shutdown_ms, h->dp->lease_ms,
	                         h->dp->store,    h->progress,    h->dp->partitions,
	                         h->dp->ns,       h->dp->replicas};
	size_t i;
	int rc;

	/* A service reloads what changes; a run until caught up uses what it loaded. */
	if ((h->flags & SL_HOST_RUN) && !until_caught_up && !h->reload) {
		if ((rc = sl_reload_new(&h->reload, &h->loop, h->store, h->pump, h->dp->file,
		                        (h->flags & SL_HOST_STRICT) != 0, h->dp, h->cs, h->procs,
		                        h->nprocs, d)))
			return rc;
		for (i = 0; i < h->nprocs; i++)
			h->procs[i].p = NULL; /* the reloader's now */
	}
	if ((h->flags & SL_HOST_RUN) && !until_caught_up && (rc = start_http(h, d)))
		return rc;
	if (h->reload)
		sl_reload_on_adopt(h->reload, on_adopt, h);
	for (i = 0; i < h->nservices; i++) {
		struct sl_diag sd;
		sl_diag_init(&sd);
		if (h->services[i].start(h->services[i].ud, h, &h->loop, &sd))
			sl_log(SL_LOG_WARN, NULL, NULL, 0, "%s", sl_diag_msg(&sd));
	}
	h->running = 1;
	rc = sl_pump_run(h->pump, &o, d);
	h->running = 0;
	for (i = h->nservices; i-- > 0;)
		h->services[i].stop(h->services[i].ud);
	sl_http_stop(h->http);
	if (h->http)
		h->stopped = h->http; /* freed with the loop, in sl_host_free */
	h->http = NULL;
	if (rc)
		return rc;
	return until_caught_up && count_faulted(h, d) ? 1 : 0;
}

int sl_host_add_service(struct sl_host *h, const struct sl_host_service *s)
{
	if (h->nservices == SL_HOST_MAX_SERVICES)
		return SL_ENOMEM;
	h->services[h->nservices++] = *s;
	return 0;
}

/* ---- state, status, reset -------------------------------------------------------------------- */

static const char *status_of(const struct sl_inst *in)
{
	return in->faulted ? "faulted" : in->has_row && in->offset > 0 ? "ok" : "new";
}

/* The stream of an instance's rows: NULL in mode all. */
static const char *row_stream(const struct sl_pump_proc *hp, const struct sl_inst *in)
{
	return hp->cfg->mode_all ? NULL : in->stream;
}

static int emit_state(struct sl_pump_proc *hp, struct sl_inst *in, sl_state_fn fn, void *ud,
                      struct sl_diag *d)
{
	struct sl_state_row row;
	struct sl_buf b;
	int rc;

	sl_buf_init(&b);
	if ((rc = sl_proc_inst_load(hp->p, in, d)) || (rc = sl_proc_state_json(hp->p, in, &b, d)))
		goto out;
	if (!sl_buf_ok(&b)) {
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
		goto out;
	}
	row.processor = hp->cfg->name;
	row.stream = row_stream(hp, in);
	row.offset = in->offset;
	row.status = status_of(in);
	row.state_json = b.ptr;
	row.state_len = b.len;
	rc = fn(ud, &row);
out:
	sl_buf_release(&b);
	return rc;
}

struct each_ctx {
	struct sl_host *h;
	struct sl_pump_proc *hp;
	struct sl_diag *d;
	int (*fn)(struct each_ctx *c, struct sl_inst *in);
	int64_t head;
	void *arg;
};

/* The owner of proc's lease while it is live (owner set, not expired), else 0. */
static int live_runner(struct sl_host *h, const char *proc, struct sl_lease *l, struct sl_diag *d)
{
	int found, rc;

	if ((rc = sl_store_lease_get(h->store, proc, l, &found, d)))
		return rc;
	return found && *l->owner && l->expires_at > sl_store_now_ms();
}

/* The partitions of processor cfg on this store: the deployment's when the store has
 * partitioned runners and cfg is of mode each (sl_pump.h), else 0. */
static int parts_of(const struct sl_host *h, const struct sl_deploy_proc *cfg)
{
	if (h->dp->partitions <= 1 || cfg->mode_all || !sl_store_has_partitions(h->store))
		return 0;
	return h->dp->partitions;
}

/* The owner of the lease of partition k of proc while it is live, else 0. */
static int live_part_runner(struct sl_host *h, const char *proc, int k, struct sl_lease *l,
                            struct sl_diag *d)
{
	int found, rc;

	if ((rc = sl_store_part_get(h->store, proc, k, l, &found, d)))
		return rc;
	return found && *l->owner && l->expires_at > sl_store_now_ms();
}

/* Refuses a change of proc's rows while a runner holds it, or any of its partitions
 * (DESIGN §8). */
static int refuse_if_running(struct sl_host *h, const char *proc, struct sl_diag *d)
{
	const struct sl_deploy_proc *cfg = sl_deploy_proc(h->dp, proc);
	int n = cfg ? parts_of(h, cfg) : 0, k;
	struct sl_lease l;
	int rc = live_runner(h, proc, &l, d);

	for (k = 0; k < n && rc == 0; k++)
		rc = live_part_runner(h, proc, k, &l, d);
	if (rc > 0)
		return sl_diag_set(d, SL_EBUSY,
		                   "processor '%s' is running (%s); use the console or stop it",
		                   proc, l.owner);
	return rc;
}

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

struct state_ctx {
	sl_state_fn fn;
	void *ud;
	struct sl_host *h;
	struct sl_pump_proc *hp;
	struct sl_diag *d;
};

/* A skipped processor's instance: its stored state as it is (null without one). */
static int stored_state(struct state_ctx *sc, const char *stream)
{
	struct sl_state_row row;
	struct sl_ckpt ck;
	int found, rc;

	if ((rc = sl_ckpt_get(sc->h->store, sc->hp->cfg->name, stream, &ck, &found, sc->d)))
		return rc;
	row.processor = sc->hp->cfg->name;
	row.stream = sc->hp->cfg->mode_all ? NULL : stream;
	row.offset = ck.offset;
	row.status = ck.faulted ? "faulted" : found && ck.offset > 0 ? "ok" : "new";
	row.state_json = ck.state ? ck.state : "null";
	row.state_len = ck.state ? ck.state_len : 4;
	rc = sc->fn(sc->ud, &row);
	sl_ckpt_release(&ck);
	return rc;
}

static int stored_stream(void *ud, const struct sl_stream_info *info)
{
	struct state_ctx *sc = ud;

	if (!sl_pattern_match(sc->hp->cfg->streams, info->stream))
		return 0;
	return stored_state(sc, info->stream);
}

static int state_fn(struct each_ctx *c, struct sl_inst *in)
{
	struct state_ctx *sc = c->arg;

	return emit_state(c->hp, in, sc->fn, sc->ud, c->d);
}

int sl_host_state(struct sl_host *h, const char *proc, const char *stream, sl_state_fn fn, void *ud,
                  struct sl_diag *d)
{
	struct sl_pump_proc *hp = find_proc(h, proc, d);
	struct state_ctx sc = {fn, ud, h, hp, d};
	struct each_ctx c = {h, hp, d, state_fn, 0, &sc};
	struct sl_inst *in;

	if (!hp) /* find_proc set d: unknown processor */
		return d ? d->code : SL_EINVAL;
	if (stream && !hp->cfg->mode_all && !sl_pattern_match(hp->cfg->streams, stream))
		return sl_diag_set(d, SL_EINVAL,
		                   "stream '%s' does not match '%s' of processor '%s'", stream,
		                   hp->cfg->streams, proc);
	if (!hp->p) /* skipped by a lenient open */
		return hp->cfg->mode_all || stream
		               ? stored_state(&sc, hp->cfg->mode_all ? "" : stream)
		               : sl_store_streams(h->store, NULL, stored_stream, &sc, d);
	if (hp->cfg->mode_all || stream) {
		if (!(in = sl_proc_instance(hp->p, hp->cfg->mode_all ? "" : stream)))
			return sl_diag_set(d, SL_ENOMEM, "out of memory");
		return emit_state(hp, in, fn, ud, d);
	}
	return each_instance(&c);
}

/* A fault a runner noted beside the store because the store could not take it. */
struct noted {
	char *proc, *stream, *msg;
};

struct status_ctx {
	struct sl_host *h;
	struct sl_pump_proc *hp;
	struct noted *noted;
	size_t nnoted;
	sl_status_fn fn;
	void *ud;
	const char *runner;                   /* the live lease's owner, or NULL */
	const char *reload_error;             /* of the processor being listed, or NULL */
	int nparts;                           /* partitions of the processor (0: not partitioned) */
	char (*part_owner)[SL_OWNER_MAX + 1]; /* the live owner of each ("": none) */
	struct sl_diag *d;
};

/* One status line, from the instance's checkpoint row (no script needed). */
static int status_line(struct status_ctx *sc, const char *stream, int64_t head)
{
	struct sl_status_row row;
	struct sl_ckpt ck;
	int found, rc;

	if ((rc = sl_ckpt_get(sc->h->store, sc->hp->cfg->name, stream, &ck, &found, sc->d)))
		return rc;
	row.processor = sc->hp->cfg->name;
	row.stream = sc->hp->cfg->mode_all ? NULL : stream;
	row.offset = ck.offset;
	row.head = head;
	row.lag = head > ck.offset ? head - ck.offset : 0;
	row.status = ck.faulted ? "faulted" : found && ck.offset > 0 ? "ok" : "new";
	row.last_error = ck.last_error;
	row.background_failures = ck.background_failures;
	if (!ck.faulted) {
		size_t i;
		for (i = 0; i < sc->nnoted; i++)
			if (!strcmp(sc->noted[i].proc, sc->hp->cfg->name) &&
			    !strcmp(sc->noted[i].stream, stream)) {
				row.status = "faulted";
				row.last_error = sc->noted[i].msg;
			}
	}
	row.runner = sc->runner;
	row.partition = -1;
	if (sc->nparts && !sc->hp->cfg->mode_all) {
		row.partition = sl_partition_of(stream, sc->nparts);
		row.runner = *sc->part_owner[row.partition] ? sc->part_owner[row.partition] : NULL;
	}
	row.reload_error = sc->reload_error;
	row.rate = 0;
	if (row.runner &&
	    (rc = sl_ckpt_rate_get(sc->h->store, sc->hp->cfg->name, stream, &row.rate, sc->d))) {
		sl_ckpt_release(&ck);
		return rc;
	}
	rc = sc->fn(sc->ud, &row);
	sl_ckpt_release(&ck);
	return rc;
}

static int status_stream(void *ud, const struct sl_stream_info *info)
{
	struct status_ctx *sc = ud;

	if (!sl_pattern_match(sc->hp->cfg->streams, info->stream))
		return 0;
	return status_line(sc, info->stream, info->head);
}

static int note_fault(void *ud, const char *proc, const char *stream, const char *msg)
{
	struct status_ctx *sc = ud;
	struct noted *grown = realloc(sc->noted, (sc->nnoted + 1) * sizeof(*grown));
	struct sl_buf b;

	if (!grown)
		return SL_ENOMEM;
	sc->noted = grown;
	sl_buf_init(&b);
	sl_buf_adds(&b, msg);
	sl_buf_adds(&b, " (the store could not record this fault: a full disk?)");
	sl_buf_addc(&b, '\0');
	grown[sc->nnoted].proc = strdup(proc);
	grown[sc->nnoted].stream = strdup(stream);
	grown[sc->nnoted].msg = sl_buf_ok(&b) ? b.ptr : NULL;
	sc->nnoted++;
	if (!grown[sc->nnoted - 1].proc || !grown[sc->nnoted - 1].stream ||
	    !grown[sc->nnoted - 1].msg)
		return SL_ENOMEM;
	return 0;
}

static int status_all(struct sl_host *h, struct status_ctx *sc, struct sl_diag *d);

int sl_host_status(struct sl_host *h, sl_status_fn fn, void *ud, struct sl_diag *d)
{
	struct status_ctx sc = {h, NULL, NULL, 0, fn, ud, NULL, NULL, 0, NULL, d};
	size_t i;
	int rc;

	/* Faults a runner could not write to the store (it noted them beside it). */
	if ((rc = sl_faultlog_read(h->dp->store, note_fault, &sc)) == SL_ENOMEM)
		rc = sl_diag_set(d, rc, "out of memory");
	if (!rc)
		rc = status_all(h, &sc, d);
	for (i = 0; i < sc.nnoted; i++) {
		free(sc.noted[i].proc);
		free(sc.noted[i].stream);
		free(sc.noted[i].msg);
	}
	free(sc.noted);
	return rc;
}

/* Reads the live owner of every partition of the processor sc lists, when it is
 * partitioned. */
static int status_parts(struct sl_host *h, struct status_ctx *sc, struct sl_diag *d)
{
	int k, rc;

	sc->nparts = parts_of(h, sc->hp->cfg);
	if (!sc->nparts)
		return 0;
	if (!sc->part_owner &&
	    !(sc->part_owner = calloc(SL_PARTITIONS_MAX, sizeof(*sc->part_owner))))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	for (k = 0; k < sc->nparts; k++) {
		struct sl_lease l;
		if ((rc = live_part_runner(h, sc->hp->cfg->name, k, &l, d)) < 0)
			return rc;
		snprintf(sc->part_owner[k], sizeof(sc->part_owner[k]), "%s", rc ? l.owner : "");
	}
	return 0;
}

static int status_all(struct sl_host *h, struct status_ctx *scp, struct sl_diag *d)
{
	struct status_ctx sc = *scp;
	size_t i;
	int rc = 0;

	for (i = 0; i < (h->reload ? sl_pump_nprocs(h->pump) : h->nprocs); i++) {
		struct sl_pump_proc cur = h->reload ? *sl_pump_proc_at(h->pump, i) : h->procs[i];
		struct sl_lease l;
		char *reload_error;
		int64_t head;
		sc.hp = &cur;
		if ((rc = live_runner(h, sc.hp->cfg->name, &l, d)) < 0)
			break;
		sc.runner = rc ? l.owner : NULL;
		if ((rc = status_parts(h, &sc, d)) ||
		    (rc = sl_ckpt_reload_error_get(h->store, sc.hp->cfg->name, &reload_error, d)))
			break;
		sc.reload_error = reload_error;
		if (!sc.hp->cfg->mode_all)
			rc = sl_store_streams(h->store, NULL, status_stream, &sc, d);
		else if (!(rc = sl_store_head_position(h->store, &head, d)))
			rc = status_line(&sc, "", head);
		free(reload_error);
		if (rc)
			break;
	}
	free(sc.part_owner);
	return rc;
}

static int is_stream(void *ud, const struct sl_stream_info *info)
{
	struct sl_stream_info *want = ud;

	if (strcmp(info->stream, want->stream))
		return 0;
	want->head = 1;
	return 1;
}

/* 1 when stream exists in the store or proc has a row for it, 0 when neither. */
static int instance_exists(struct sl_host *h, const char *proc, const char *stream,
                           struct sl_diag *d)
{
	struct sl_stream_info want = {0};
	struct sl_ckpt ck;
	int found, rc;

	want.stream = stream;
	if ((rc = sl_store_streams(h->store, stream, is_stream, &want, d)))
		return rc;
	if (want.head)
		return 1;
	if ((rc = sl_ckpt_get(h->store, proc, stream, &ck, &found, d)))
		return rc;
	sl_ckpt_release(&ck);
	return found;
}

/* Whether stream (NULL: every instance) names an instance of hp, for reset: 0, or
 * an error. *stream becomes NULL in mode all. */
static int reset_target(struct sl_host *h, const struct sl_pump_proc *hp, const char **streamp,
                        struct sl_diag *d)
{
	const char *proc = hp->cfg->name, *stream;
	int rc;

	if (hp->cfg->mode_all)
		*streamp = NULL;
	stream = *streamp;
	if (stream && !sl_pattern_match(hp->cfg->streams, stream))
		return sl_diag_set(d, SL_EINVAL,
		                   "stream '%s' does not match '%s' of processor '%s'", stream,
		                   hp->cfg->streams, proc);
	if (stream && (rc = instance_exists(h, proc, stream, d)) <= 0)
		return rc ? rc
		          : sl_diag_set(
				    d, SL_ENOTFOUND,
				    "stream '%s' does not exist (processor '%s' has no instance "
				    "for it)",
				    stream, proc);
	return 0;
}

/* The writes of a reset, under fence f (NULL: none). */
static int reset_rows(struct sl_host *h, const char *proc, const char *stream, int with_effects,
                      const struct sl_fence *f, struct sl_diag *d)
{
	struct sl_commit *c;
	int rc, end;

	if ((rc = sl_commit_begin(h->store, f, &c, d)))
		return rc;
	if (!(rc = sl_ckpt_reset(c, proc, stream, with_effects, d)) && !stream)
		rc = sl_ckpt_drop_tables(c, proc, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

int sl_host_reset(struct sl_host *h, const char *proc, const char *stream, int with_effects,
                  struct sl_diag *d)
{
	struct sl_pump_proc *hp = find_proc(h, proc, d);
	int rc;

	if (!hp) /* find_proc set d: unknown processor */
		return d ? d->code : SL_EINVAL;
	if ((rc = reset_target(h, hp, &stream, d)) || (rc = refuse_if_running(h, proc, d)))
		return rc;
	return reset_rows(h, proc, stream, with_effects, NULL, d);
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
static int ingest_one(struct sl_host *h, struct sl_pump_proc *hp, struct sl_inst *in,
                      const struct sl_event *ev, struct sl_diag *d)
{
	struct wait1 w = {0, 0, {0, ""}};

	sl_proc_ingest(hp->p, in, ev, 1, on_one, &w);
	while (!w.done)
		uv_run(&h->loop, UV_RUN_ONCE);
	if (w.rc)
		sl_diag_set(d, w.rc, "%s", sl_diag_msg(&w.d));
	return w.rc;
}

/* Dead-letters ev for instance in and moves its checkpoint past it. */
static int dead_letter(struct sl_pump_proc *hp, struct sl_inst *in, const struct sl_event *ev,
                       const char *err, sl_resume_fn fn, void *ud, struct sl_diag *d)
{
	int rc = sl_proc_dead_letter(hp->p, in, ev, err, hp->cfg->retry_attempts + 1, d);

	if (!rc && fn) {
		struct sl_resume_row row = {hp->cfg->name, ev->stream, ev->offset};
		return fn(ud, &row);
	}
	return rc;
}

/* resume --skip: the faulted batch again, one event at a time; the first event that
 * fails alone is dead-lettered, the others are processed. */
static int skip_poison(struct sl_host *h, struct sl_pump_proc *hp, struct sl_inst *in, int skip,
                       sl_resume_fn fn, void *ud, struct sl_diag *d)
{
	const struct sl_event *batch;
	struct sl_diag one;
	size_t i, n;
	int rc, skipped = 0;

	if ((rc = sl_pump_read_batch(h->pump, hp, in, &batch, &n, d)))
		return rc;
	/* ingest_one may run the loop, which never reads batches: the batch stays put. */
	for (i = 0; i < n; i++) {
		const struct sl_event *ev = &batch[i];
		if ((hp->cfg->mode_all ? ev->position : ev->offset) <= in->offset)
			continue;
		sl_diag_init(&one);
		if (!ingest_one(h, hp, in, ev, &one))
			continue;
		if (skipped && skip != SL_RESUME_SKIP_ALL)
			return sl_diag_set(d, one.code, "%s", sl_diag_msg(&one));
		if ((rc = dead_letter(hp, in, ev, sl_diag_msg(&one), fn, ud, d)))
			return rc;
		skipped = 1;
	}
	return 0;
}

struct resume_ctx {
	struct sl_host *h;
	struct sl_pump_proc *hp;
	int skip;
	sl_resume_fn fn;
	void *ud;
	struct sl_diag *d;
	const struct sl_fence *fence; /* of the runner doing it, or NULL */
	int64_t n;                    /* instances resumed */
	int runner_skip;              /* the runner's resume with skip (sl_pump_skip) */
};

/* The runner's resume with skip: the batch that faulted is run one event at a time
 * by the pump, which dead-letters what fails. */
static int runner_skip(struct resume_ctx *c, struct sl_inst *in)
{
	const struct sl_event *ev;
	size_t n;
	int64_t until;
	int rc;

	if ((rc = sl_pump_read_batch(c->h->pump, c->hp, in, &ev, &n, c->d)))
		return rc;
	if (!n)
		return 0;
	until = c->hp->cfg->mode_all ? ev[n - 1].position : ev[n - 1].offset;
	if ((rc = sl_pump_skip(c->h->pump, c->hp->cfg->name, in->stream,
	                       c->runner_skip == SL_RESUME_SKIP_ALL, until)))
		return sl_diag_set(c->d, rc, "out of memory");
	return 0;
}

static int resume_one(struct resume_ctx *c, struct sl_inst *in)
{
	struct sl_commit *cm;
	int rc, end;

	if ((rc = sl_proc_inst_load(c->hp->p, in, c->d)) || !in->faulted)
		return rc;
	if ((rc = sl_commit_begin(c->h->store, c->fence, &cm, c->d)))
		return rc;
	rc = sl_ckpt_clear_fault(cm, c->hp->cfg->name, in->stream, c->d);
	end = sl_commit_end(cm, rc == 0, c->d);
	if (rc || (rc = end))
		return rc;
	in->faulted = 0;
	in->fails = 0;
	c->n++;
	if (c->runner_skip)
		return runner_skip(c, in);
	return c->skip ? skip_poison(c->h, c->hp, in, c->skip, c->fn, c->ud, c->d) : 0;
}

static int resume_fn(struct each_ctx *c, struct sl_inst *in)
{
	return resume_one(c->arg, in);
}

int sl_host_resume(struct sl_host *h, const char *proc, const char *stream, int skip,
                   sl_resume_fn fn, void *ud, struct sl_diag *d)
{
	struct sl_pump_proc *hp = find_proc(h, proc, d);
	struct resume_ctx rc = {h, hp, skip, fn, ud, d, NULL, 0, 0};
	struct each_ctx c = {h, hp, d, resume_fn, 0, &rc};
	struct sl_inst *in;
	int rr;

	if (!hp) /* find_proc set d: unknown processor */
		return d ? d->code : SL_EINVAL;
	if (stream && !hp->cfg->mode_all && !sl_pattern_match(hp->cfg->streams, stream))
		return sl_diag_set(d, SL_EINVAL,
		                   "stream '%s' does not match '%s' of processor '%s'", stream,
		                   hp->cfg->streams, proc);
	if ((rr = refuse_if_running(h, proc, d)))
		return rr;
	/* No runner: resume does the processor's own writes (anchor, rebuild) itself. */
	if ((h->flags & SL_HOST_WRITE) && (rr = sl_proc_activate(hp->p, NULL, d)))
		return rr;
	if (!hp->cfg->mode_all && !stream)
		return each_instance(&c);
	if (!(in = sl_proc_instance(hp->p, hp->cfg->mode_all ? "" : stream)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	return resume_one(&rc, in);
}

/* ---- reset and resume by the runner (the console) --------------------------------------- */

struct run_op {
	struct sl_host *h;
	const char *stream;
	int with_effects;
	int skip;
	int64_t n;
};

static int run_reset_op(void *ud, const struct sl_pump_proc *pp, const struct sl_fence *f,
                        struct sl_diag *d)
{
	struct run_op *o = ud;
	int rc;

	if ((rc = reset_target(o->h, pp, &o->stream, d)))
		return rc;
	return reset_rows(o->h, pp->cfg->name, o->stream, o->with_effects, f, d);
}

static int run_resume_op(void *ud, const struct sl_pump_proc *pp, const struct sl_fence *f,
                         struct sl_diag *d)
{
	struct run_op *o = ud;
	struct sl_pump_proc *hp = (struct sl_pump_proc *)pp;
	struct resume_ctx rc = {o->h, hp, 0, NULL, NULL, d, f, 0, o->skip};
	struct each_ctx c = {o->h, hp, d, resume_fn, 0, &rc};
	struct sl_inst *in;
	int r;

	if (o->stream && !hp->cfg->mode_all && !sl_pattern_match(hp->cfg->streams, o->stream))
		return sl_diag_set(d, SL_EINVAL,
		                   "stream '%s' does not match '%s' of processor '%s'", o->stream,
		                   hp->cfg->streams, hp->cfg->name);
	if (!hp->cfg->mode_all && !o->stream) {
		r = each_instance(&c);
	} else if (!(in = sl_proc_instance(hp->p, hp->cfg->mode_all ? "" : o->stream))) {
		r = sl_diag_set(d, SL_ENOMEM, "out of memory");
	} else {
		r = resume_one(&rc, in);
	}
	o->n = rc.n;
	return r;
}

static int run_op(struct sl_host *h, const char *proc, sl_pump_op_fn fn, struct run_op *o,
                  struct sl_diag *d)
{
	if (!(h->flags & SL_HOST_RUN) || !h->running)
		return sl_diag_set(d, SL_EBUSY, "no runner: this host does not run '%s'", proc);
	return sl_pump_exclusive(h->pump, proc, fn, o, d);
}

int sl_host_run_reset(struct sl_host *h, const char *proc, const char *stream, int with_effects,
                      struct sl_diag *d)
{
	struct run_op o = {h, stream, with_effects, 0, 0};

	return run_op(h, proc, run_reset_op, &o, d);
}

int sl_host_run_resume(struct sl_host *h, const char *proc, const char *stream, int skip,
                       int64_t *n, struct sl_diag *d)
{
	struct run_op o = {h, stream, 0, skip, 0};
	int rc = run_op(h, proc, run_resume_op, &o, d);

	*n = o.n;
	return rc;
}

void sl_host_reload_now(struct sl_host *h)
{
	if (h->reload)
		sl_reload_now(h->reload);
}

int sl_host_dead_letters(struct sl_host *h, sl_dead_letter_fn fn, void *ud, struct sl_diag *d)
{
	return sl_ckpt_dead_letters(h->store, fn, ud, d);
}

int sl_host_dead_letters_clear(struct sl_host *h, const char *proc, int64_t *n, struct sl_diag *d)
{
	struct sl_commit *c;
	size_t i;
	int rc = 0, end;

	*n = 0;
	if (proc && !find_proc(h, proc, d)) /* find_proc set d: unknown processor */
		return d ? d->code : SL_EINVAL;
	for (i = 0; i < h->nprocs && !rc; i++)
		if (!proc || !strcmp(proc, h->procs[i].cfg->name))
			rc = refuse_if_running(h, h->procs[i].cfg->name, d);
	if (rc || (rc = sl_commit_begin(h->store, NULL, &c, d)))
		return rc;
	for (i = 0; i < h->nprocs && !rc; i++) {
		int64_t k = 0;
		if (proc && strcmp(proc, h->procs[i].cfg->name))
			continue;
		rc = sl_ckpt_dead_letters_clear(c, h->procs[i].cfg->name, &k, d);
		*n += k;
	}
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}
