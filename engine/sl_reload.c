/* sl_reload.c - hot reload: watching the deployment's files, loading and checking a
 * new version, handing what changed to the pump (sl_reload.h). */
#include "sl_reload.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sl_buf.h"
#include "sl_checkpoint.h"
#include "sl_contract.h"
#include "sl_deploy.h"
#include "sl_log.h"
#include "sl_processor.h"
#include "sl_pump.h"
#include "sl_store.h"
#include "sl_watch.h"

#define GC_MS 1000 /* how often retired versions are looked at */

/* One loaded deployment: what the versions loaded from it point into. */
struct gen {
	struct sl_deploy *dp;
	struct sl_contracts *cs;
	size_t refs;
	int owned; /* ours to free once unused (the first one is the caller's) */
};

/* One loaded version of a processor. */
struct version {
	struct sl_proc *p;
	struct gen *g;
	int latest;  /* the version given to the pump last under its name */
	int retired; /* it left the pump: freed once its work ended */
};

struct sl_reload {
	uv_loop_t *loop;
	struct sl_store *store;
	struct sl_pump *pm;
	char *deployment;
	int strict;
	struct gen *cur; /* the deployment loaded last (its paths, its run settings) */
	struct gen first;
	struct version *v;
	size_t nv, capv;
	char **errs; /* processors whose reloadError this runner set */
	size_t nerrs;
	struct sl_watch *watch;
	struct handles *h; /* NULL until the handles are initialised */
	sl_reload_adopt_fn adopt;
	void *adopt_ud;
};

/* The reloader's uv handles, apart from it: they finish closing on a later turn of the
 * loop than the one sl_reload_free runs on, and free themselves then. */
struct handles {
	uv_signal_t sighup;
	uv_timer_t gc, soon;
	int open;
};

/* ---- settings ------------------------------------------------------------------------------- */

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

void sl_reload_proc_cfg(const struct sl_deploy_proc *dp, int strict, struct sl_proc_cfg *cfg)
{
	int off = budgets_off();

	memset(cfg, 0, sizeof(*cfg));
	cfg->name = dp->name;
	cfg->script = dp->script;
	cfg->streams = dp->streams;
	cfg->mode_all = dp->mode_all;
	cfg->effects_all = dp->effects_all;
	cfg->batch_size = dp->batch_size;
	cfg->strict = strict;
	cfg->instructions = off ? 0 : dp->instructions;
	cfg->memory = off ? 0 : dp->memory;
	cfg->wallclock_ms = off ? 0 : dp->wallclock_ms;
}

static int same_settings(const struct sl_deploy_proc *a, const struct sl_deploy_proc *b)
{
	return !strcmp(a->script, b->script) && !strcmp(a->streams, b->streams) &&
	       a->mode_all == b->mode_all && a->effects_all == b->effects_all &&
	       a->batch_size == b->batch_size && a->instructions == b->instructions &&
	       a->memory == b->memory && a->wallclock_ms == b->wallclock_ms &&
	       a->retry_attempts == b->retry_attempts && a->backoff_ms == b->backoff_ms;
}

/* ---- generations and versions ---------------------------------------------------------------- */

static void gen_unref(struct gen *g)
{
	if (!g || --g->refs || !g->owned)
		return;
	sl_contracts_free(g->cs);
	sl_deploy_free(g->dp);
	free(g);
}

static struct version *latest(struct sl_reload *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->nv; i++)
		if (r->v[i].latest && !strcmp(sl_proc_name(r->v[i].p), name))
			return &r->v[i];
	return NULL;
}

static int add_version(struct sl_reload *r, struct sl_proc *p, struct gen *g)
{
	if (r->nv == r->capv) {
		size_t cap = r->capv ? r->capv * 2 : 16;
		struct version *v = realloc(r->v, cap * sizeof(*v));
		if (!v)
			return SL_ENOMEM;
		r->v = v;
		r->capv = cap;
	}
	r->v[r->nv].p = p;
	r->v[r->nv].g = g;
	r->v[r->nv].latest = 1;
	r->v[r->nv].retired = 0;
	r->nv++;
	g->refs++;
	return 0;
}

/* Frees the retired versions whose work ended (what it left pending written first). */
static void collect(struct sl_reload *r)
{
	size_t i;

	for (i = 0; i < r->nv;) {
		struct version *v = &r->v[i];
		if (v->retired)
			sl_proc_flush(v->p);
		if (!v->retired || sl_proc_work_running(v->p)) {
			i++;
			continue;
		}
		sl_proc_free(v->p);
		gen_unref(v->g);
		r->v[i] = r->v[--r->nv];
	}
}

/* The pump let go of p. */
static void on_retire(void *ud, struct sl_proc *p)
{
	struct sl_reload *r = ud;
	size_t i;

	for (i = 0; i < r->nv; i++)
		if (r->v[i].p == p) {
			r->v[i].retired = 1;
			r->v[i].latest = 0;
		}
}

static void on_gc(uv_timer_t *t)
{
	collect(t->data);
}

/* ---- reloadError ---------------------------------------------------------------------------- */

static int has_error(struct sl_reload *r, const char *name, size_t *at)
{
	size_t i;

	for (i = 0; i < r->nerrs; i++)
		if (!strcmp(r->errs[i], name)) {
			*at = i;
			return 1;
		}
	return 0;
}

/* Stores (msg) or clears (NULL) the reloadError of processor name. */
static void put_error(struct sl_reload *r, const char *name, const char *msg)
{
	struct sl_commit *c;
	struct sl_diag d;
	size_t at;
	int had = has_error(r, name, &at), rc;

	if (!msg && !had)
		return;
	sl_diag_init(&d);
	if ((rc = sl_commit_begin(r->store, NULL, &c, &d)) == 0) {
		rc = sl_ckpt_reload_error_put(c, name, msg, &d);
		rc = sl_commit_end(c, rc == 0, &d) ? -1 : rc;
	}
	if (rc)
		sl_log(SL_LOG_WARN, name, NULL, 0, "cannot record the reload error: %s",
		       sl_diag_msg(&d));
	if (!msg) {
		free(r->errs[at]);
		r->errs[at] = r->errs[--r->nerrs];
	} else if (!had) {
		char **grown = realloc(r->errs, (r->nerrs + 1) * sizeof(*grown));
		char *copy = strdup(name);
		if (grown)
			r->errs = grown;
		if (grown && copy)
			r->errs[r->nerrs++] = copy;
		else
			free(copy);
	}
}

/* Logs every error of a failed reload and returns them joined by "; " (owned). */
static char *report(const char *proc, const struct sl_errs *errs)
{
	struct sl_buf b;
	size_t i;

	sl_buf_init(&b);
	for (i = 0; i < errs->n; i++) {
		sl_log(SL_LOG_ERROR, proc, NULL, 0, "reload: %s", errs->msg[i]);
		if (i)
			sl_buf_adds(&b, "; ");
		sl_buf_adds(&b, errs->msg[i]);
	}
	if (errs->nomem || !errs->n)
		sl_buf_adds(&b, errs->n ? "; out of memory" : "out of memory");
	sl_buf_addc(&b, '\0');
	if (!sl_buf_ok(&b)) {
		sl_buf_release(&b);
		return NULL;
	}
	return b.ptr;
}

/* The deployment file or the contracts failed: every running processor keeps its
 * version, and shows the error. */
static void fail_all(struct sl_reload *r, const struct sl_errs *errs)
{
	char *msg = report(NULL, errs);
	size_t i;

	for (i = 0; i < r->nv; i++)
		if (r->v[i].latest)
			put_error(r, sl_proc_name(r->v[i].p), msg ? msg : "out of memory");
	free(msg);
}

static void fail_proc(struct sl_reload *r, const char *name, const struct sl_errs *errs)
{
	char *msg = report(name, errs);

	put_error(r, name, msg ? msg : "out of memory");
	free(msg);
}

/* ---- watching ------------------------------------------------------------------------------- */

struct paths {
	char **p;
	size_t n, cap;
	int nomem;
};

static int add_path(void *ud, const char *path)
{
	struct paths *ps = ud;
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (!strcmp(ps->p[i], path))
			return 0;
	if (ps->n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 16;
		char **grown = realloc(ps->p, cap * sizeof(*grown));
		if (!grown) {
			ps->nomem = 1;
			return 0;
		}
		ps->p = grown;
		ps->cap = cap;
	}
	if (!(ps->p[ps->n] = strdup(path)))
		ps->nomem = 1;
	else
		ps->n++;
	return 0;
}

/* Watches the deployment file, the scripts of the deployment loaded last and of the
 * running versions, and every file their contracts may come from. */
static void set_watch(struct sl_reload *r)
{
	struct paths ps = {NULL, 0, 0, 0};
	struct sl_diag d;
	size_t i;

	add_path(&ps, r->deployment);
	for (i = 0; i < r->cur->dp->nprocs; i++)
		add_path(&ps, r->cur->dp->procs[i].script);
	sl_contracts_each_path(r->cur->cs, add_path, &ps);
	for (i = 0; i < r->nv; i++)
		if (!r->v[i].retired) {
			add_path(&ps, sl_proc_cfg(r->v[i].p)->script);
			if (r->v[i].g != r->cur)
				sl_contracts_each_path(r->v[i].g->cs, add_path, &ps);
		}
	sl_diag_init(&d);
	if (ps.nomem)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "reload: out of memory listing the files to watch");
	else if (sl_watch_set(r->watch, (const char *const *)ps.p, ps.n, &d))
		sl_log(SL_LOG_WARN, NULL, NULL, 0, "reload: cannot watch the files: %s",
		       sl_diag_msg(&d));
	for (i = 0; i < ps.n; i++)
		free(ps.p[i]);
	free(ps.p);
}

/* ---- reloading ------------------------------------------------------------------------------ */

/* Whether two optional strings differ. */
static int differ(const char *a, const char *b)
{
	return a && b ? strcmp(a, b) != 0 : a != b;
}

/* Whether two deployments list different httpOrigins. */
static int origins_differ(const struct sl_deploy *a, const struct sl_deploy *b)
{
	size_t i;

	if (a->nhttp_origins != b->nhttp_origins)
		return 1;
	for (i = 0; i < a->nhttp_origins; i++)
		if (strcmp(a->http_origins[i], b->http_origins[i]))
			return 1;
	return 0;
}

/* Settings of the whole run: a changed store or namespace is an error (errs), the others apply at
 * the next start. */
static void run_settings(struct sl_reload *r, const struct sl_deploy *dp, struct sl_errs *errs)
{
	const struct sl_deploy *was = r->cur->dp;

	if (strcmp(was->store, dp->store))
		sl_errs_add(errs,
		            "%s: /store: cannot change while sluice run is running (it uses %s; "
		            "restart it to use %s)",
		            dp->file, was->store, dp->store);
	if (strcmp(was->ns, dp->ns))
		sl_errs_add(
			errs,
			"%s: /namespace: cannot change while sluice run is running (it uses %s; "
			"restart it to use %s)",
			dp->file, was->ns, dp->ns);
	if (was->replicas != dp->replicas)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "reload: %s: replicas changed; it applies to the streams and buckets "
		       "created from the next start on",
		       dp->file);
	if (was->durability != dp->durability)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "reload: %s: durability changed; it applies at the next start", dp->file);
	if (was->lease_ms != dp->lease_ms)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "reload: %s: lease changed; it applies at the next start", dp->file);
	if (was->partitions != dp->partitions)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "reload: %s: partitions changed; it applies at the next start", dp->file);
	if (was->shutdown_ms != dp->shutdown_ms)
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "reload: %s: shutdownTimeout changed; it applies at the next start",
		       dp->file);
	if (differ(was->http, dp->http) || differ(was->http_token, dp->http_token) ||
	    was->http_max_body != dp->http_max_body ||
	    was->http_timeout_ms != dp->http_timeout_ms || origins_differ(was, dp))
		sl_log(SL_LOG_WARN, NULL, NULL, 0,
		       "reload: %s: the HTTP settings changed (http, httpToken, httpMaxBody, "
		       "httpTimeout, httpOrigins); they apply at the next start",
		       dp->file);
}

/* What changed between the running version old and the new p, for the log. */
static const char *what_changed(const struct version *old, struct sl_proc *p, char *buf, size_t n)
{
	const struct sl_contract *oc = sl_proc_contract(old->p), *nc = sl_proc_contract(p);

	if (oc->version != nc->version)
		snprintf(buf, n, "contract version %lld -> %lld; rebuilding in place",
		         (long long)oc->version, (long long)nc->version);
	else if (strcmp(sl_proc_script_hash(old->p), sl_proc_script_hash(p)))
		snprintf(buf, n, "script changed; the new version takes over");
	else if (oc->hash != nc->hash)
		snprintf(buf, n, "contract changed; the new version takes over");
	else
		snprintf(buf, n, "settings changed; they apply now");
	return buf;
}

/* Loads processor cfg of g and, when it differs from the running version and is
 * valid, hands it to the pump. */
static void reload_proc(struct sl_reload *r, struct gen *g, const struct sl_deploy_proc *cfg)
{
	struct version *old = latest(r, cfg->name);
	const struct sl_contract *oc, *nc;
	struct sl_proc_cfg pc;
	struct sl_proc *p;
	struct sl_errs errs;
	struct sl_diag d;
	char why[160];

	sl_errs_init(&errs);
	sl_diag_init(&d);
	sl_reload_proc_cfg(cfg, r->strict, &pc);
	if (sl_proc_load(&p, &pc, g->cs, &errs)) {
		fail_proc(r, cfg->name, &errs);
		goto out;
	}
	oc = old ? sl_proc_contract(old->p) : NULL;
	nc = sl_proc_contract(p);
	if (old && !strcmp(sl_proc_script_hash(old->p), sl_proc_script_hash(p)) &&
	    oc->hash == nc->hash && same_settings(sl_deploy_proc(old->g->dp, cfg->name), cfg) &&
	    sl_proc_cfg(old->p)->strict == pc.strict) {
		sl_proc_free(p); /* the same version: it stays */
		put_error(r, cfg->name, NULL);
		goto out;
	}
	if (sl_proc_attach(p, r->store, 0, &d) || sl_proc_set_loop(p, r->loop, &d)) {
		sl_errs_add(&errs, "%s: %s", cfg->script, sl_diag_msg(&d));
	} else if (old && oc->version == nc->version && oc->hash != nc->hash &&
	           sl_proc_check_states(p, r->store, &d)) {
		sl_errs_add(&errs, "%s: %s", nc->file, sl_diag_msg(&d));
	}
	if (errs.n) {
		sl_proc_free(p);
		fail_proc(r, cfg->name, &errs);
		goto out;
	}
	if (add_version(r, p, g)) {
		sl_proc_free(p);
		sl_log(SL_LOG_ERROR, cfg->name, NULL, 0, "reload: out of memory");
		goto out;
	}
	if (old)
		old->latest = 0;
	sl_log(SL_LOG_INFO, cfg->name, NULL, 0, "reload: %s",
	       old ? what_changed(old, p, why, sizeof(why))
	           : "added to the deployment; starting it");
	if (sl_pump_set(r->pm, cfg->name, p, cfg, &d))
		sl_log(SL_LOG_ERROR, cfg->name, NULL, 0, "reload: %s", sl_diag_msg(&d));
	put_error(r, cfg->name, NULL);
out:
	sl_errs_release(&errs);
}

/* Stops the running processors that g's deployment no longer has. */
static void remove_gone(struct sl_reload *r, const struct gen *g)
{
	struct sl_diag d;
	size_t i;

	for (i = 0; i < r->nv; i++) {
		const char *name = sl_proc_name(r->v[i].p);
		if (!r->v[i].latest || sl_deploy_proc(g->dp, name))
			continue;
		r->v[i].latest = 0;
		sl_log(SL_LOG_INFO, name, NULL, 0, "reload: no longer in %s; stopping it",
		       g->dp->file);
		put_error(r, name, NULL);
		sl_diag_init(&d);
		if (sl_pump_set(r->pm, name, NULL, NULL, &d))
			sl_log(SL_LOG_ERROR, name, NULL, 0, "reload: %s", sl_diag_msg(&d));
	}
}

static void reload(struct sl_reload *r)
{
	struct gen *g = calloc(1, sizeof(*g));
	struct sl_errs errs;
	struct sl_diag d;
	size_t i;

	sl_errs_init(&errs);
	sl_diag_init(&d);
	if (!g) {
		sl_errs_add(&errs, "out of memory");
	} else if (sl_deploy_load(&g->dp, r->deployment, &errs) == 0) {
		run_settings(r, g->dp, &errs);
		if (!errs.n && sl_contracts_new(&g->cs, (const char *const *)g->dp->schemas,
		                                g->dp->nschemas, &d))
			sl_errs_add(&errs, "%s", sl_diag_msg(&d));
	}
	if (errs.n || errs.nomem) {
		fail_all(r, &errs);
		if (g) {
			sl_contracts_free(g->cs);
			sl_deploy_free(g->dp);
			free(g);
		}
		set_watch(r); /* the files as they are now */
		sl_errs_release(&errs);
		return;
	}
	g->owned = 1;
	g->refs = 1; /* r->cur's */
	for (i = 0; i < g->dp->nprocs; i++)
		reload_proc(r, g, &g->dp->procs[i]);
	remove_gone(r, g);
	gen_unref(r->cur);
	r->cur = g;
	if (r->adopt)
		r->adopt(r->adopt_ud, g->dp);
	set_watch(r);
	collect(r);
	sl_errs_release(&errs);
}

void sl_reload_on_adopt(struct sl_reload *r, sl_reload_adopt_fn fn, void *ud)
{
	r->adopt = fn;
	r->adopt_ud = ud;
}

void sl_reload_now(struct sl_reload *r)
{
	reload(r);
}

static void on_change(void *ud)
{
	reload(ud);
}

static void on_sighup(uv_signal_t *s, int signum)
{
	struct sl_reload *r = s->data;

	(void)signum;
	sl_log(SL_LOG_INFO, NULL, NULL, 0, "SIGHUP: reading %s again", r->deployment);
	reload(r);
}

static void on_soon(uv_timer_t *t)
{
	reload(t->data);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

/* Clears the reloadError of every processor of dp, in one commit. */
static int clear_errors(struct sl_reload *r, const struct sl_deploy *dp, struct sl_diag *d)
{
	struct sl_commit *c;
	size_t i;
	int rc = 0, end;

	if ((rc = sl_commit_begin(r->store, NULL, &c, d)))
		return rc;
	for (i = 0; i < dp->nprocs && !rc; i++)
		rc = sl_ckpt_reload_error_put(c, dp->procs[i].name, NULL, d);
	end = sl_commit_end(c, rc == 0, d);
	return rc ? rc : end;
}

int sl_reload_new(struct sl_reload **out, struct uv_loop_s *loop, struct sl_store *store,
                  struct sl_pump *pm, const char *deployment, int strict,
                  const struct sl_deploy *dp, const struct sl_contracts *cs,
                  const struct sl_pump_proc *procs, size_t n, struct sl_diag *d)
{
	struct sl_reload *r = calloc(1, sizeof(*r));
	size_t i;
	int rc;

	*out = NULL;
	if (!r || !(r->deployment = strdup(deployment))) {
		free(r);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	r->loop = loop;
	r->store = store;
	r->pm = pm;
	r->strict = strict;
	r->first.dp = (struct sl_deploy *)dp;
	r->first.cs = (struct sl_contracts *)cs;
	r->first.refs = 1; /* r->cur's; never freed here */
	r->cur = &r->first;
	for (i = 0; i < n; i++)
		if (add_version(r, procs[i].p, &r->first)) {
			rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
			goto fail;
		}
	if ((rc = clear_errors(r, dp, d)))
		goto fail;
	if ((rc = sl_watch_new(&r->watch, loop, SL_WATCH_DEBOUNCE_MS, on_change, r))) {
		sl_diag_set(d, rc, "out of memory");
		goto fail;
	}
	if (!(r->h = calloc(1, sizeof(*r->h)))) {
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
		goto fail;
	}
	sl_pump_set_retire(pm, on_retire, r);
	*out = r;
	set_watch(r);
	uv_signal_init(loop, &r->h->sighup);
	uv_timer_init(loop, &r->h->gc);
	uv_timer_init(loop, &r->h->soon);
	r->h->open = 3;
	r->h->sighup.data = r->h->gc.data = r->h->soon.data = r;
	uv_signal_start(&r->h->sighup, on_sighup, SIGHUP);
	uv_timer_start(&r->h->gc, on_gc, GC_MS, GC_MS);
	/* A change made between loading and watching is seen by one more look. */
	uv_timer_start(&r->h->soon, on_soon, 0, 0);
	uv_unref((uv_handle_t *)&r->h->sighup);
	uv_unref((uv_handle_t *)&r->h->gc);
	uv_unref((uv_handle_t *)&r->h->soon);
	return 0;
fail:
	r->nv = 0; /* the processors stay the caller's */
	sl_reload_free(r);
	return rc;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct handles *hs = h->data;

	if (--hs->open == 0)
		free(hs);
}

void sl_reload_free(struct sl_reload *r)
{
	size_t i;

	if (!r)
		return;
	sl_watch_free(r->watch);
	if (r->h) {
		r->h->sighup.data = r->h->gc.data = r->h->soon.data = r->h;
		uv_close((uv_handle_t *)&r->h->sighup, on_handle_closed);
		uv_close((uv_handle_t *)&r->h->gc, on_handle_closed);
		uv_close((uv_handle_t *)&r->h->soon, on_handle_closed);
	}
	for (i = 0; i < r->nv; i++) {
		sl_proc_kill_work(r->v[i].p);
		sl_proc_flush(r->v[i].p);
		sl_proc_free(r->v[i].p);
		gen_unref(r->v[i].g);
	}
	free(r->v);
	gen_unref(r->cur);
	for (i = 0; i < r->nerrs; i++)
		free(r->errs[i]);
	free(r->errs);
	free(r->deployment);
	free(r);
}
