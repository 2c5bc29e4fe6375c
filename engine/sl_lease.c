/* sl_lease.c - the lease keeper of a runner: a thread that takes and renews leases
 * on a store connection of its own (sl_lease.h). */
#include "sl_lease.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "sl_log.h"

/* One partition of a partitioned processor (guarded by mu). */
struct part {
	struct sl_part_view v;
	int inuse; /* the pump runs it: renewed even when no longer wanted */
};

struct entry {
	char *proc;
	int active;             /* taken and renewed (0 after sl_leases_drop) */
	int release;            /* dropped while held: release it in the next round */
	struct sl_lease_view v; /* guarded by mu */
	int nparts;             /* 0: one lease for the processor; else its partitions */
	struct part *parts;
	int nrunners; /* live runners the last round saw (partitioned) */
};

struct sl_leases {
	uv_loop_t *loop;
	uv_async_t async;
	sl_leases_fn fn;
	void *ud;
	struct sl_store *store; /* the keeper's own connection */
	char owner[SL_OWNER_MAX + 1];
	int64_t ttl_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started, stop, poked;
	uint64_t rounds; /* rounds done (guarded by mu) */
	struct entry *e;
	size_t n, cap;
};

/* pid@hostname-xxxxxxxx: the process, and a suffix that tells apart two processes
 * that got the same pid (a container restarted, another machine's namespace). */
static void make_owner(char *out, size_t n)
{
	char host[128] = "localhost";
	unsigned int r = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		r = (unsigned int)time(NULL) ^ ((unsigned int)getpid() << 16);
	if (fd >= 0)
		close(fd);
	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(out, n, "%ld@%s-%08x", (long)getpid(), host, r);
}

static void on_async(uv_async_t *a)
{
	struct sl_leases *l = a->data;

	l->fn(l->ud);
}

/* The runners a round saw: this runner's rank among them, their number, and the
 * earliest end of another one's heartbeat. */
struct who {
	const char *owner;
	int me, n;
	int64_t earliest;
};

static int collect(void *ud, const char *owner, int64_t until_ms)
{
	struct who *w = ud;

	if (!strcmp(owner, w->owner))
		w->me = w->n;
	else if (until_ms < w->earliest)
		w->earliest = until_ms;
	w->n++;
	return 0;
}

/* Gives up every partition of entry i this runner holds, and its heartbeat. */
static void part_leave(struct sl_leases *l, size_t i, const char *proc, int nparts)
{
	struct sl_diag d;
	int k;

	for (k = 0; k < nparts; k++) {
		int held;
		pthread_mutex_lock(&l->mu);
		held = l->e[i].parts[k].v.held;
		l->e[i].parts[k].v.held = l->e[i].parts[k].v.want = 0;
		pthread_mutex_unlock(&l->mu);
		sl_diag_init(&d);
		if (held && sl_store_part_release(l->store, proc, k, l->owner, &d))
			sl_log(SL_LOG_WARN, proc, NULL, 0,
			       "cannot release the lease of partition %d: %s", k, sl_diag_msg(&d));
	}
	sl_diag_init(&d);
	if (sl_store_runners(l->store, proc, l->owner, 0, collect,
	                     &(struct who){l->owner, -1, 0, INT64_MAX}, &d))
		sl_log(SL_LOG_WARN, proc, NULL, 0, "cannot remove this runner's heartbeat: %s",
		       sl_diag_msg(&d));
}

/* One round of a partitioned processor: the heartbeat, then the partitions assigned
 * to this runner (partition k goes to the live runner of rank k mod R, runners in
 * strcmp order of their names) taken or renewed, those the pump still runs renewed,
 * the others it holds released. *wake is lowered to when a lease or heartbeat this
 * runner waits for ends. */
static void part_round(struct sl_leases *l, size_t i, const char *proc, int *changed, int64_t *wake)
{
	struct who w = {l->owner, -1, 0, INT64_MAX};
	struct sl_diag d;
	int nparts, k, rc;
	int64_t now;

	pthread_mutex_lock(&l->mu);
	nparts = l->e[i].nparts;
	pthread_mutex_unlock(&l->mu);
	sl_diag_init(&d);
	if ((rc = sl_store_runners(l->store, proc, l->owner, l->ttl_ms, collect, &w, &d)))
		sl_log(SL_LOG_WARN, proc, NULL, 0, "cannot write this runner's heartbeat: %s",
		       sl_diag_msg(&d));
	now = sl_store_now_ms();
	if (!rc && w.earliest != INT64_MAX && w.earliest - now + 1 < *wake)
		*wake = w.earliest - now + 1 > 1 ? w.earliest - now + 1 : 1;
	pthread_mutex_lock(&l->mu);
	if (!rc && l->e[i].nrunners != w.n)
		*changed = 1;
	if (!rc)
		l->e[i].nrunners = w.n;
	pthread_mutex_unlock(&l->mu);
	for (k = 0; k < nparts; k++) {
		struct part *pt;
		struct sl_lease row;
		int want, inuse, held, nheld, arc = 0;
		pthread_mutex_lock(&l->mu);
		pt = &l->e[i].parts[k];
		want = rc ? pt->v.want : w.me >= 0 && k % w.n == w.me;
		inuse = pt->inuse;
		held = pt->v.held;
		row = pt->v.row;
		pthread_mutex_unlock(&l->mu);
		sl_diag_init(&d);
		if (want || inuse) {
			arc = sl_store_part_acquire(l->store, proc, k, l->owner, l->ttl_ms, &row,
			                            &d);
		} else if (held) {
			arc = sl_store_part_release(l->store, proc, k, l->owner, &d);
			if (!arc)
				memset(&row, 0, sizeof(row));
		}
		if (arc) {
			/* The fence keeps commits safe; the next round tries again. */
			sl_log(SL_LOG_WARN, proc, NULL, 0,
			       "cannot renew the lease of partition %d: %s", k, sl_diag_msg(&d));
			continue;
		}
		nheld = (want || inuse) && !strcmp(row.owner, l->owner);
		if (want && !nheld && row.expires_at > now && row.expires_at - now + 1 < *wake)
			*wake = row.expires_at - now + 1;
		pthread_mutex_lock(&l->mu);
		pt = &l->e[i].parts[k];
		/* (Held but not run is news too: the pump left it off after a refused
		 * batch until a round saw the lease again.) */
		if (!pt->v.seen || pt->v.want != want || pt->v.held != nheld ||
		    pt->v.row.epoch != row.epoch || strcmp(pt->v.row.owner, row.owner) ||
		    (nheld && want && !pt->inuse))
			*changed = 1;
		pt->v.row = row;
		pt->v.held = nheld;
		pt->v.want = want;
		pt->v.seen = 1;
		pt->v.round = l->rounds + 1;
		pthread_mutex_unlock(&l->mu);
	}
}

/* One round: take or renew every active lease, release the dropped ones; wakes the
 * loop when a view changed. Runs on the keeper thread. Returns how long the next
 * round may wait at most (ms). */
static int64_t round_(struct sl_leases *l)
{
	size_t i, n;
	int changed = 0;
	int64_t wake = l->ttl_ms / 4 > 0 ? l->ttl_ms / 4 : 1;

	pthread_mutex_lock(&l->mu);
	n = l->n;
	pthread_mutex_unlock(&l->mu);
	for (i = 0; i < n; i++) {
		struct entry *e;
		struct sl_lease row;
		struct sl_diag d;
		char proc[SL_STREAM_MAX + 1];
		int active, release, rc, nparts;

		pthread_mutex_lock(&l->mu);
		e = &l->e[i];
		snprintf(proc, sizeof(proc), "%s", e->proc);
		active = e->active;
		release = e->release;
		nparts = e->nparts;
		e->release = 0;
		pthread_mutex_unlock(&l->mu);
		sl_diag_init(&d);
		if (nparts) {
			if (release)
				part_leave(l, i, proc, nparts);
			else if (active)
				part_round(l, i, proc, &changed, &wake);
			continue;
		}
		if (release) {
			if (sl_store_lease_release(l->store, proc, l->owner, &d))
				sl_log(SL_LOG_WARN, proc, NULL, 0, "cannot release the lease: %s",
				       sl_diag_msg(&d));
			continue;
		}
		if (!active)
			continue;
		rc = sl_store_lease_acquire(l->store, proc, l->owner, l->ttl_ms, &row, &d);
		if (rc) {
			/* The fence keeps commits safe; the next round tries again. */
			sl_log(SL_LOG_WARN, proc, NULL, 0, "cannot renew the lease: %s",
			       sl_diag_msg(&d));
			continue;
		}
		pthread_mutex_lock(&l->mu);
		e = &l->e[i];
		if (!e->v.seen || e->v.row.epoch != row.epoch || strcmp(e->v.row.owner, row.owner))
			changed = 1;
		e->v.row = row;
		e->v.held = !strcmp(row.owner, l->owner);
		e->v.seen = 1;
		pthread_mutex_unlock(&l->mu);
	}
	pthread_mutex_lock(&l->mu);
	l->rounds++;
	pthread_mutex_unlock(&l->mu);
	if (changed)
		uv_async_send(&l->async);
	return wake;
}

static void *keeper(void *ud)
{
	struct sl_leases *l = ud;

	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		struct timespec until;
		int64_t every;
		pthread_mutex_unlock(&l->mu);
		every = round_(l);
		pthread_mutex_lock(&l->mu);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += every / 1000;
		until.tv_nsec += (every % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!l->stop && !l->poked)
			if (pthread_cond_timedwait(&l->cv, &l->mu, &until) == ETIMEDOUT)
				break;
		l->poked = 0;
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

int sl_leases_new(struct sl_leases **out, uv_loop_t *loop, const char *path, const char *ns,
                  int replicas, double ttl_ms, sl_leases_fn fn, void *ud, struct sl_diag *d)
{
	struct sl_store_opts so = {SL_DURABILITY_FULL, 0, NULL, NULL, ns, replicas, NULL};
	struct sl_leases *l = calloc(1, sizeof(*l));
	int rc;

	*out = NULL;
	if (!l)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if ((rc = sl_store_open(&l->store, path, &so, d))) {
		free(l);
		return rc;
	}
	l->loop = loop;
	l->fn = fn;
	l->ud = ud;
	l->ttl_ms = (int64_t)ttl_ms;
	make_owner(l->owner, sizeof(l->owner));
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	uv_async_init(loop, &l->async, on_async);
	l->async.data = l;
	*out = l;
	return 0;
}

int sl_leases_add(struct sl_leases *l, const char *proc, size_t *index, struct sl_diag *d)
{
	return sl_leases_add_parts(l, proc, 0, index, d);
}

int sl_leases_add_parts(struct sl_leases *l, const char *proc, int nparts, size_t *index,
                        struct sl_diag *d)
{
	char *copy = strdup(proc);
	struct part *parts = nparts > 0 ? calloc((size_t)nparts, sizeof(*parts)) : NULL;
	int rc = 0;

	pthread_mutex_lock(&l->mu);
	if (copy && l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct entry *e = realloc(l->e, cap * sizeof(*e));
		if (e) {
			l->e = e;
			l->cap = cap;
		}
	}
	if (!copy || l->n == l->cap || (nparts > 0 && !parts)) {
		free(copy);
		free(parts);
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
	} else {
		memset(&l->e[l->n], 0, sizeof(l->e[l->n]));
		l->e[l->n].proc = copy;
		l->e[l->n].active = 1;
		l->e[l->n].nparts = nparts > 0 ? nparts : 0;
		l->e[l->n].parts = parts;
		*index = l->n++;
		l->poked = 1;
		pthread_cond_signal(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

void sl_leases_drop(struct sl_leases *l, size_t i)
{
	pthread_mutex_lock(&l->mu);
	if (i < l->n && l->e[i].active) {
		l->e[i].active = 0;
		l->e[i].release = l->e[i].v.held || l->e[i].nparts;
		l->e[i].v.held = 0;
		l->poked = 1;
		pthread_cond_signal(&l->cv);
	}
	pthread_mutex_unlock(&l->mu);
}

int sl_leases_start(struct sl_leases *l, struct sl_diag *d)
{
	int rc = pthread_create(&l->thread, NULL, keeper, l);

	if (rc)
		return sl_diag_set(d, SL_EIO, "cannot start the lease keeper: %s", strerror(rc));
	l->started = 1;
	return 0;
}

void sl_leases_poke(struct sl_leases *l)
{
	pthread_mutex_lock(&l->mu);
	l->poked = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

const char *sl_leases_owner(const struct sl_leases *l)
{
	return l->owner;
}

void sl_leases_part_get(struct sl_leases *l, size_t i, int k, struct sl_part_view *out)
{
	pthread_mutex_lock(&l->mu);
	if (i < l->n && k >= 0 && k < l->e[i].nparts)
		*out = l->e[i].parts[k].v;
	else
		memset(out, 0, sizeof(*out));
	pthread_mutex_unlock(&l->mu);
}

void sl_leases_part_inuse(struct sl_leases *l, size_t i, int k, int inuse)
{
	pthread_mutex_lock(&l->mu);
	if (i < l->n && k >= 0 && k < l->e[i].nparts && l->e[i].parts[k].inuse != inuse) {
		l->e[i].parts[k].inuse = inuse;
		if (!inuse) { /* released in the next round unless still wanted */
			l->poked = 1;
			pthread_cond_signal(&l->cv);
		}
	}
	pthread_mutex_unlock(&l->mu);
}

int sl_leases_runners(struct sl_leases *l, size_t i)
{
	int n;

	pthread_mutex_lock(&l->mu);
	n = i < l->n ? l->e[i].nrunners : 0;
	pthread_mutex_unlock(&l->mu);
	return n;
}

void sl_leases_get(struct sl_leases *l, size_t i, struct sl_lease_view *out)
{
	pthread_mutex_lock(&l->mu);
	if (i < l->n)
		*out = l->e[i].v;
	else
		memset(out, 0, sizeof(*out));
	pthread_mutex_unlock(&l->mu);
}

static void on_closed(uv_handle_t *h)
{
	free(h->data);
}

void sl_leases_free(struct sl_leases *l)
{
	size_t i;

	if (!l)
		return;
	if (l->started) {
		pthread_mutex_lock(&l->mu);
		l->stop = 1;
		pthread_cond_signal(&l->cv);
		pthread_mutex_unlock(&l->mu);
		pthread_join(l->thread, NULL);
	}
	for (i = 0; i < l->n; i++) {
		struct sl_diag d;
		sl_diag_init(&d);
		if (l->e[i].nparts) {
			if (l->e[i].active || l->e[i].release)
				part_leave(l, i, l->e[i].proc, l->e[i].nparts);
			free(l->e[i].parts);
			free(l->e[i].proc);
			continue;
		}
		if ((l->e[i].v.held || l->e[i].release) &&
		    sl_store_lease_release(l->store, l->e[i].proc, l->owner, &d))
			sl_log(SL_LOG_WARN, l->e[i].proc, NULL, 0, "cannot release the lease: %s",
			       sl_diag_msg(&d));
		free(l->e[i].proc);
	}
	free(l->e);
	sl_store_close(l->store);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	/* The async handle is freed with l once the loop has closed it. */
	uv_close((uv_handle_t *)&l->async, on_closed);
}
