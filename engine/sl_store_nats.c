/* sl_store_nats.c - the NATS JetStream backend of the store (DESIGN §11): the event
 * log on one JetStream stream per namespace. Experimental; see "What is not done".
 *
 * The only engine file that includes nats.h.
 *
 * Path. "nats://host:port" or a comma-separated list of such URLs (any node of the
 * cluster; libnats fails over between them). The namespace comes from the open's
 * options (a deployment's `namespace`, the CLI's --namespace or $SLUICE_NAMESPACE),
 * "sluice" by default: namespaces share nothing, so deployments on one cluster are
 * apart.
 *
 * Layout. Namespace NS owns the JetStream stream "NS_events" with the subjects
 * "NS.ev.>". A sluice stream maps to one subject: "NS.ev." followed by its segments
 * joined by '.', with every '.' inside a segment written as "%2E". A segment matches
 * [A-Za-z0-9_-][A-Za-z0-9._-]*, so it never contains '%', '*', '>' or whitespace: the
 * mapping is injective and decodes back ('.' -> '/', "%2E" -> '.'), and a subject
 * token is never empty. "orders/v1.2" is "sluice.ev.orders.v1%2E2". A stream's
 * descendants are the subjects below its own ("NS.ev.orders.>").
 *
 * One event is one message. `position` is the JetStream stream sequence; `offset` is
 * the Sluice-Offset header. The body is a JSON object {type, payload, metadata?,
 * idempotencyKey?, createdAt}. Every message also carries the stream's lifecycle state
 * after the event, so the last message of a subject is the stream's record (no second
 * record that could disagree with the log): Sluice-Paused (the pause reason as a JSON
 * string, present while paused) and Sluice-Meta-Seq (the sequence of the last
 * stream/metadata-updated; 0 on that event itself; absent when there was none).
 *
 * Appends. An append call is planned in full before anything is published: each
 * stream's head comes from the last message on its subject, and every check of §2/§7
 * (key within the batch, pause door, compare-and-set offset, the creation of streams
 * and their ancestors' announcements) runs against that plan, so bad input, a
 * conflict or a paused stream writes nothing. Then the messages are published in order
 * (in waves of asynchronous publishes over different subjects: see publish_wave),
 * each with Nats-Expected-Last-Subject-Sequence (the subject's last sequence, 0 for a
 * new stream), so offsets stay contiguous whatever other writers do: a writer that
 * lost a race is refused by the server. A keyed event carries
 * Nats-Msg-Id "<stream>|<key as JSON>", so JetStream answers a repeat within the
 * duplicate window (SL_NATS_DUP_WINDOW_NS) with the original sequence, which is read
 * back to return the original offset. Where the key would decide an append that the
 * plan refuses (paused stream, explicit offset), the stream is scanned for the key, so
 * an idempotency hit is still answered before the pause door. If a publish fails after
 * others of the call were acknowledged (a lost race, a lost connection), the call is
 * taken back by take-back records, each a compare-and-set on the last message of a
 * run of the call's messages (see "taking back a failed call"). JetStream 2.9 has no
 * multi-message transaction, so that is the limit of all-or-nothing here: see the
 * README.
 *
 * Reads of many messages use ephemeral pull consumers, fetched in batches (see
 * "batched reads"); single messages direct gets (the stream allows them). A read of
 * one stream from offset N finds its first sequence by bisection over the sequences,
 * unless it goes on where the previous read stopped. The list of streams comes from
 * a consumer that delivers each subject's last message, headers only.
 *
 * Leases live in the key-value bucket "NS_leases" (see there).
 *
 * The processor rows live in key-value buckets (History 1, created on first write).
 * Keys are built from names byte by byte: [A-Za-z0-9_-] as they are, every other byte
 * as =XX, so a name never holds a '.' and "<proc>.<stream>" is one-to-one; the
 * instance of a mode all processor (stream "") is "<proc>.=". Values are JSON objects.
 *   NS_procs  "<proc>.row"     {version, anchor, scriptHash, contractHash}
 *             "<proc>.reload"  {message}: the error of the last failed hot reload
 *   NS_ckpt   "<proc>.<stream>" {stream, offset, effectsMark, state, status, lastError,
 *                               backgroundFailures}; an empty value is a row deleted by
 *                               reset --with-effects (kvStore_Delete has no
 *                               compare-and-set, an empty write has)
 *   NS_dead   "<proc>.<stream>.<offset>" {processor, stream, offset, position, type,
 *                               error, traceback, attempts, at}, written once
 *   NS_rates  "<proc>.<stream>" {rate, at, until}; "<proc>" {at}: the runner's heartbeat
 *
 * Commits (see nats_commit_end for the order and why). A commit keeps its writes in
 * memory: reads through the store see them; appends are planned when made (their
 * results completed when the commit ends) and published when the commit ends, an
 * event that asks for no offset after whatever another writer appended to its stream
 * meanwhile, each event with Nats-Msg-Id "<stream>|<key>" (every
 * event a processor emits has a key, by default <processor>@<source stream>:<source
 * offset>#<n>, so a redelivered batch emits the same ids); then each checkpoint row is
 * written with a compare-and-set on the revision at which this store read it (when
 * the engine loaded the instance), so a writer whose state was computed from an older
 * row commits nothing: that, with the lease fence, is the fence of this backend.
 * Commit groups are not implemented: every commit is its own (group_begin is NULL).
 * Projection tables (ctx.db) are in a SQLite file beside the runner, committed after
 * the checkpoints (see "projection tables").
 *
 * verify walks the log (see there).
 *
 * Wake-up: there is no file to watch; a subscription to the event subjects wakes a
 * live run (nats_wake_start), and the pump's slow poll of data_version is the
 * fallback. Not done: data_version follows the event log and this store's own
 * commits, not other processes' row writes.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
#include <sqlite3.h>

#include "sl_buf.h"
#include "sl_crash.h"
#include "sl_hash.h"
#include "sl_json.h"
#include "sl_log.h"
#include "sl_store_backend.h"
#include "sl_store_sqlite.h"

/* How long JetStream remembers a Nats-Msg-Id: a keyed append repeated within this
 * window is answered with the original event whatever happened in between. */
#define SL_NATS_DUP_WINDOW_NS (10LL * 60 * 1000 * 1000 * 1000)
#define WAIT_MS 5000
#define WAVE_MAX 1024 /* messages published together (publish_wave) */
#define RACE_TRIES 8  /* lost compare-and-sets a commit's event goes again after */
#define H_OFFSET "Sluice-Offset"
#define H_PAUSED "Sluice-Paused"
#define H_META "Sluice-Meta-Seq"
#define H_TAKEN "Sluice-Taken-Back" /* a take-back record (take_back) */
#define TAKEN_BACK 1                /* msg_to_event: the message is one */

/* Revisions of checkpoint rows, by key (see "the revisions this store read"). */
struct revmap {
	struct rev_ent {
		char *key;
		uint64_t rev;
	} * e;
	size_t cap, n; /* cap is 0 or a power of two */
};

struct nats_store {
	struct sl_store base;
	char *path;
	char *stream; /* the JetStream stream: "<ns>_events" */
	char *prefix; /* "<ns>.ev." */
	char *all;    /* "<ns>.ev.>" */
	int exists;   /* the JetStream stream exists (a read-only open may find none) */
	int readonly;
	int replicas;  /* of what it creates; 0: by the size of the cluster (replicas()) */
	int serial;    /* clustered: publishes also compare-and-set the stream's last sequence */
	unsigned seed; /* of the waits between lost races (publish_cas) */
	uint32_t commits;
	natsConnection *nc;
	jsCtx *js;
	kvStore *leases; /* the bucket "<ns>_leases", opened on first use */
	kvStore *kv[4];  /* the buckets of the rows (B_*), opened on first use */
	struct revmap revs;
	char *space;
	struct sl_buf tmp[2];
	/* The wake (nats_wake_start): a core subscription to the event subjects, whose
	 * callback (a libnats thread) calls wake_fn under wake_mu. */
	struct reader *rd_all; /* the reader of read_all, kept for the next call */
	struct reader *rd_one; /* the last reader of one stream, kept likewise */
	/* The wave in flight (publish_wave), filled by on_pub_ack under pub_mu. */
	pthread_mutex_t pub_mu;
	pthread_cond_t pub_cv;
	struct inflight *fl;
	size_t nfl, cfl, fl_acked, fl_hint;
	natsSubscription *wake_sub;
	pthread_mutex_t wake_mu;
	sl_store_wake_fn wake_fn;
	void *wake_ud;
	/* Projection tables (ctx.db): a SQLite file beside the runner, opened at the first
	 * commit that binds ctx.db (see "projection tables"). */
	char *proj_path;         /* or NULL: none (ctx.db raises) */
	enum sl_durability dur;  /* of that file */
	struct sl_proj *pj;      /* open, or NULL */
	struct nats_commit *cur; /* the commit ctx.db is bound to now */
	struct revmap pwarned;   /* key -> the projOffset proj_check warned about */
};

static struct nats_store *ns(struct sl_store *s)
{
	return (struct nats_store *)s;
}

/* ---- errors ------------------------------------------------------------------------- */

/* The text of the last libnats error of this thread, without the "(conn.c:2088): "
 * it puts in front, or the status's text. */
static const char *last_error(natsStatus st)
{
	const char *last = nats_GetLastError(NULL), *p;

	if (!last || !*last)
		return natsStatus_GetText(st);
	if (*last == '(' && (p = strstr(last, "): ")))
		last = p + 3;
	return last;
}

/* The error of a failed libnats call: its own text, and JetStream's code when it has one. */
static int nats_fail(struct nats_store *s, struct sl_diag *d, natsStatus st, jsErrCode jerr,
                     const char *what)
{
	if (jerr)
		return sl_diag_set(d, SL_EIO, "store '%s': %s: %s (JetStream error %d)", s->path,
		                   what, last_error(st), (int)jerr);
	return sl_diag_set(d, SL_EIO, "store '%s': %s: %s", s->path, what, last_error(st));
}

static int oom(struct sl_diag *d)
{
	return sl_diag_set(d, SL_ENOMEM, "out of memory");
}

/* A cluster cannot answer for a moment after a node died: the streams it led elect
 * another leader (a few seconds) and a client that was connected to it reconnects to
 * another node of the URL list. A request that failed that way (a timeout, no
 * responders, a lost connection, JetStream's "temporarily unavailable") is tried
 * again every RETRY_STEP_MS until RETRY_MS have passed since its first failure. Only
 * requests that are safe to repeat are: reads, creating the event stream (a repeat
 * finds it made), the key-value writes of a commit (write_one), and publishes of
 * messages with an id (a repeat of a stored one is answered as a duplicate). A
 * cluster that has just started may also not know its peers for a moment (no
 * suitable peers for placement). */
#define RETRY_MS 20000
#define RETRY_STEP_MS 100

static int transient(natsStatus st, jsErrCode jerr)
{
	return st == NATS_TIMEOUT || st == NATS_NO_RESPONDERS ||
	       st == NATS_CONNECTION_DISCONNECTED || jerr == JSClusterNotAvailErr ||
	       jerr == JSClusterNotLeaderErr || jerr == JSClusterNoPeersErr;
}

/* Whether the request that failed with st (and jerr) is to be tried again; *until is
 * 0 before its first failure. Sleeps a step when it is. */
static int again(natsStatus st, jsErrCode jerr, int64_t *until)
{
	int64_t now = nats_Now();

	if (st == NATS_OK || !transient(st, jerr))
		return 0;
	if (!*until)
		*until = now + RETRY_MS;
	if (now >= *until)
		return 0;
	nats_Sleep(RETRY_STEP_MS);
	return 1;
}

/* The event stream's info (o: its options, or NULL), tried again through elections. */
static natsStatus stream_info(struct nats_store *s, jsOptions *o, jsStreamInfo **si,
                              jsErrCode *jerr)
{
	int64_t until = 0;
	natsStatus st;

	do
		st = js_GetStreamInfo(si, s->js, s->stream, o, jerr);
	while (again(st, *jerr, &until));
	return st;
}

/* ---- subjects ------------------------------------------------------------------------ */

/* Writes the subject of sluice stream `name` to b (see the file comment). */
static void subject_of(const struct nats_store *s, const char *name, struct sl_buf *b)
{
	sl_buf_reset(b);
	sl_buf_adds(b, s->prefix);
	for (; *name; name++) {
		if (*name == '/')
			sl_buf_addc(b, '.');
		else if (*name == '.')
			sl_buf_adds(b, "%2E");
		else
			sl_buf_addc(b, *name);
	}
}

/* Decodes a subject of the namespace back to a sluice stream name in b; 0 when the
 * subject is not one the mapping produces. */
static int name_of(const struct nats_store *s, const char *subj, struct sl_buf *b)
{
	size_t n = strlen(s->prefix);

	sl_buf_reset(b);
	if (strncmp(subj, s->prefix, n))
		return 0;
	for (subj += n; *subj; subj++) {
		if (*subj == '.') {
			sl_buf_addc(b, '/');
		} else if (!strncmp(subj, "%2E", 3)) {
			sl_buf_addc(b, '.');
			subj += 2;
		} else {
			sl_buf_addc(b, *subj);
		}
	}
	sl_buf_addc(b, '\0');
	return sl_buf_ok(b) && sl_stream_name_valid(b->ptr);
}

/* ---- opening --------------------------------------------------------------------------- */

static void rev_release(struct revmap *m);
static void nats_wake_stop(struct sl_store *base);
struct reader;
static void reader_free(struct reader *r);
static int nats_head_position(struct sl_store *base, int64_t *pos, struct sl_diag *d);
static void on_pub_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *ud);

static void nats_close(struct sl_store *base)
{
	struct nats_store *s = ns(base);
	size_t i;

	if (!s)
		return;
	nats_wake_stop(base);
	pthread_mutex_destroy(&s->wake_mu);
	reader_free(s->rd_all);
	reader_free(s->rd_one);
	kvStore_Destroy(s->leases);
	for (i = 0; i < sizeof(s->kv) / sizeof(s->kv[0]); i++)
		kvStore_Destroy(s->kv[i]);
	rev_release(&s->revs);
	rev_release(&s->pwarned);
	jsCtx_Destroy(s->js);
	natsConnection_Destroy(s->nc);
	pthread_mutex_destroy(&s->pub_mu);
	pthread_cond_destroy(&s->pub_cv);
	free(s->fl);
	sl_proj_close(s->pj);
	free(s->proj_path);
	free(s->space);
	sl_buf_release(&s->tmp[0]);
	sl_buf_release(&s->tmp[1]);
	free(s->path);
	free(s->stream);
	free(s->prefix);
	free(s->all);
	free(s);
}

/* Splits the URL list at commas into servers (pointers into list, which is modified). */
static int split_urls(char *list, const char **servers, int max)
{
	int n = 0;
	char *p = list, *comma;

	while (p && n < max) {
		if ((comma = strchr(p, ',')))
			*comma = '\0';
		if (strncmp(p, "nats://", 7) || !p[7])
			return -1;
		servers[n++] = p;
		p = comma ? comma + 1 : NULL;
	}
	return p ? -1 : n;
}

static int connect_to(struct nats_store *s, struct sl_diag *d)
{
	const char *servers[16];
	natsOptions *o = NULL;
	char *list = strdup(s->path);
	natsStatus st;
	int n, rc = 0;

	if (!list)
		return oom(d);
	if ((n = split_urls(list, servers, 16)) <= 0) {
		rc = sl_diag_set(d, SL_EINVAL,
		                 "cannot open store '%s': expected nats://HOST:PORT, or up to 16"
		                 " of them separated by commas",
		                 s->path);
		goto out;
	}
	if ((st = natsOptions_Create(&o)) != NATS_OK ||
	    (st = natsOptions_SetServers(o, servers, n)) != NATS_OK ||
	    (st = natsOptions_SetTimeout(o, 2000)) != NATS_OK ||
	    /* A connection never gives up: a runner outlives a server's restart, and the
	     * requests made while it is away fail (and are retried, again()). */
	    (st = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
	    (st = natsOptions_SetReconnectWait(o, 250)) != NATS_OK ||
	    (st = natsOptions_SetName(o, "sluice")) != NATS_OK) {
		rc = nats_fail(s, d, st, 0, "cannot set connection options");
		goto out;
	}
	if ((st = natsConnection_Connect(&s->nc, o)) != NATS_OK)
		rc = sl_diag_set(d, SL_EIO, "cannot open store '%s': cannot connect: %s", s->path,
		                 last_error(st));
out:
	natsOptions_Destroy(o);
	free(list);
	return rc;
}

/* Replicas for a new stream or bucket (DESIGN §11): the namespace's setting, else 3
 * when the cluster has 3 or more nodes (the servers the client knows of, those it
 * discovered included), else 1. */
static int64_t replicas(struct nats_store *s)
{
	char **urls = NULL;
	int i, n = 0;

	if (s->replicas > 0)
		return s->replicas;
	if (natsConnection_GetServers(s->nc, &urls, &n) != NATS_OK)
		return 1;
	for (i = 0; i < n; i++)
		free(urls[i]);
	free(urls);
	return n >= 3 ? 3 : 1;
}

/* Whether the stream lives on a clustered server (its info names the cluster; a
 * server on its own names only itself as the leader). There nats-server 2.9 checks a
 * subject's last sequence before the raft proposal only, so publishes also
 * compare-and-set the stream's last sequence (s->serial). */
static int clustered(const jsStreamInfo *si)
{
	return si->Cluster && si->Cluster->Name && *si->Cluster->Name;
}

static int add_stream(struct nats_store *s, struct sl_diag *d)
{
	const char *subjects[1] = {s->all};
	jsStreamInfo *si = NULL;
	jsStreamConfig cfg;
	jsErrCode jerr = 0;
	int64_t until = 0;
	natsStatus st;

	jsStreamConfig_Init(&cfg);
	cfg.Name = s->stream;
	cfg.Description = "sluice event log";
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Replicas = replicas(s);
	cfg.Duplicates = SL_NATS_DUP_WINDOW_NS;
	cfg.AllowDirect = true;
	cfg.DenyPurge = true;
	/* (Tried again like a request: a cluster that has just started may not know its
	 * peers yet, "no suitable peers for placement".) */
	do {
		jsStreamInfo_Destroy(si);
		si = NULL;
		jerr = 0;
		st = js_AddStream(&si, s->js, &cfg, NULL, &jerr);
	} while (again(st, jerr, &until));
	/* (JSStreamNameExistErr: another process created it first; it has replicas too
	 * when this process asked for more than 1.) */
	s->serial = st == NATS_OK ? clustered(si) : cfg.Replicas > 1;
	jsStreamInfo_Destroy(si);
	if (st == NATS_OK || jerr == JSStreamNameExistErr)
		return 0;
	return nats_fail(s, d, st, jerr, "cannot create the event stream");
}

static int find_stream(struct nats_store *s, struct sl_diag *d)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st;

	st = stream_info(s, NULL, &si, &jerr);
	s->serial = st == NATS_OK && clustered(si);
	jsStreamInfo_Destroy(si);
	if (st == NATS_OK) {
		s->exists = 1;
		return 0;
	}
	if (st != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
		return nats_fail(s, d, st, jerr, "cannot read the event stream (is JetStream on?)");
	if (s->readonly)
		return 0; /* an empty store: reads find nothing */
	if (add_stream(s, d))
		return d ? d->code : SL_EIO;
	s->exists = 1;
	return 0;
}

static int nats_open(struct sl_store **out, const char *path, const struct sl_store_opts *o,
                     struct sl_diag *d)
{
	struct nats_store *s = calloc(1, sizeof(*s));
	const char *space = o->ns ? o->ns : SL_STORE_NS_DEFAULT;
	size_t n = strlen(space);
	jsOptions jo;
	natsStatus st;
	int rc;

	*out = NULL;
	if (!sl_store_ns_valid(space) || o->replicas < 0 || o->replicas > SL_STORE_MAX_REPLICAS) {
		free(s);
		if (!sl_store_ns_valid(space))
			return sl_diag_set(d, SL_EINVAL,
			                   "cannot open store '%s': namespace: must be 1 to %d of "
			                   "[A-Za-z0-9_-], got '%.*s%s'",
			                   path, SL_STORE_NS_MAX, SL_ECHO(space));
		return sl_diag_set(d, SL_EINVAL,
		                   "cannot open store '%s': replicas: must be between 1 and %d, "
		                   "got %d",
		                   path, SL_STORE_MAX_REPLICAS, o->replicas);
	}
	if (!s)
		return oom(d);
	pthread_mutex_init(&s->wake_mu, NULL);
	pthread_mutex_init(&s->pub_mu, NULL);
	pthread_cond_init(&s->pub_cv, NULL);
	s->replicas = o->replicas;
	s->dur = o->durability;
	if (o->projections && !o->readonly && !(s->proj_path = strdup(o->projections))) {
		nats_close(&s->base);
		return oom(d);
	}
	s->seed = (unsigned)getpid() ^ (unsigned)nats_Now();
	s->path = strdup(path);
	s->space = strdup(space);
	s->stream = malloc(n + 8);
	s->prefix = malloc(n + 5);
	s->all = malloc(n + 6);
	if (!s->path || !s->space || !s->stream || !s->prefix || !s->all) {
		nats_close(&s->base);
		return oom(d);
	}
	sprintf(s->stream, "%s_events", space);
	sprintf(s->prefix, "%s.ev.", space);
	sprintf(s->all, "%s.ev.>", space);
	s->base.path = s->path;
	s->readonly = o->readonly;
	sl_buf_init(&s->tmp[0]);
	sl_buf_init(&s->tmp[1]);
	if ((rc = connect_to(s, d)))
		goto fail;
	jsOptions_Init(&jo);
	jo.Wait = WAIT_MS;
	jo.PublishAsync.AckHandler = on_pub_ack; /* publish_wave's acks */
	jo.PublishAsync.AckHandlerClosure = s;
	jo.PublishAsync.MaxPending = WAVE_MAX;
	if ((st = natsConnection_JetStream(&s->js, s->nc, &jo)) != NATS_OK) {
		rc = nats_fail(s, d, st, 0, "cannot open a JetStream context");
		goto fail;
	}
	if ((rc = find_stream(s, d)))
		goto fail;
	*out = &s->base;
	return 0;
fail:
	nats_close(&s->base);
	return rc;
}

/* ---- messages -------------------------------------------------------------------------- */

/* A stored event read from a message: views into the message and into buf. */
struct msg_event {
	struct sl_event ev;
	struct sl_buf buf; /* decoded strings, NUL-separated; offsets below */
	size_t type, key, created, name;
	int has_key;
	uint64_t taken; /* a take-back record: the first sequence it took back */
};

struct body_pick {
	struct msg_event *me;
	int have_type, have_created;
};

static size_t keep_str(struct sl_buf *b, const char *p, size_t n)
{
	size_t at = b->len;

	sl_buf_add(b, p, n);
	sl_buf_addc(b, '\0');
	return at;
}

static int is_key(const struct sl_json_member *m, const char *k)
{
	return m->keylen == strlen(k) && !memcmp(m->key, k, m->keylen);
}

static int pick_body(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct body_pick *bp = ud;
	struct msg_event *me = bp->me;

	(void)d;
	if (is_key(m, "type") && m->kind == SL_JSON_STRING) {
		me->type = keep_str(&me->buf, m->text, m->len);
		bp->have_type = 1;
	} else if (is_key(m, "payload") && m->kind == SL_JSON_OBJECT) {
		me->ev.payload = m->text, me->ev.payload_len = m->len;
	} else if (is_key(m, "metadata") && m->kind == SL_JSON_OBJECT) {
		me->ev.metadata = m->text, me->ev.metadata_len = m->len;
	} else if (is_key(m, "idempotencyKey") && m->kind == SL_JSON_STRING) {
		me->key = keep_str(&me->buf, m->text, m->len);
		me->has_key = 1;
	} else if (is_key(m, "createdAt") && m->kind == SL_JSON_STRING) {
		me->created = keep_str(&me->buf, m->text, m->len);
		bp->have_created = 1;
	}
	return 0;
}

static int header_int(natsMsg *m, const char *key, int64_t *v)
{
	const char *t = NULL;
	char *end;

	if (natsMsgHeader_Get(m, key, &t) != NATS_OK || !t)
		return 0;
	*v = strtoll(t, &end, 10);
	return *t && !*end;
}

/* The stream sequence of a message from a get, a direct get or a consumer (whose
 * reply subject holds it). */
static uint64_t msg_seq(natsMsg *m)
{
	uint64_t seq = natsMsg_GetSequence(m);
	jsMsgMetaData *md = NULL;
	int64_t v;

	if (!seq && header_int(m, "Nats-Sequence", &v) && v > 0)
		seq = (uint64_t)v;
	if (!seq && natsMsg_GetMetaData(&md, m) == NATS_OK) {
		seq = md->Sequence.Stream;
		jsMsgMetaData_Destroy(md);
	}
	return seq;
}

/* Reads an event from message m (payload and metadata point into m). TAKEN_BACK, with
 * no diagnostic, for a take-back record (take_back): then only me->ev.stream, offset
 * (the stream's head after it) and position are set. */
static int msg_to_event(struct nats_store *s, natsMsg *m, struct msg_event *me, struct sl_diag *d)
{
	struct body_pick bp = {me, 0, 0};
	const char *subj = natsMsg_GetSubject(m);
	const char *data = natsMsg_GetData(m);
	const char *hs = NULL;
	int n = natsMsg_GetDataLength(m);

	sl_buf_reset(&me->buf);
	memset(&me->ev, 0, sizeof(me->ev));
	me->has_key = 0;
	/* A direct get names the subject in a header; its own subject is the reply's. */
	if (natsMsgHeader_Get(m, "Nats-Subject", &hs) == NATS_OK && hs)
		subj = hs;
	if (!subj || !name_of(s, subj, &s->tmp[1]))
		return sl_diag_set(d, SL_ECORRUPT,
		                   "store '%s': message %llu has the subject '%s',"
		                   " which is not one of a sluice stream",
		                   s->path, (unsigned long long)msg_seq(m), subj ? subj : "");
	me->name = keep_str(&me->buf, s->tmp[1].ptr, strlen(s->tmp[1].ptr));
	if (natsMsgHeader_Get(m, H_TAKEN, &hs) == NATS_OK && hs &&
	    header_int(m, H_OFFSET, &me->ev.offset) && me->ev.offset >= 0) {
		me->taken = strtoull(hs, NULL, 10);
		if (!sl_buf_ok(&me->buf))
			return oom(d);
		me->ev.position = (int64_t)msg_seq(m);
		me->ev.stream = me->buf.ptr + me->name;
		return TAKEN_BACK;
	}
	if (!header_int(m, H_OFFSET, &me->ev.offset) || me->ev.offset < 1 || !data || n <= 0 ||
	    sl_json_members(data, (size_t)n, pick_body, &bp, NULL) || !bp.have_type ||
	    !bp.have_created || !me->ev.payload)
		return sl_diag_set(d, SL_ECORRUPT,
		                   "store '%s': message %llu is not a sluice event (the store is"
		                   " damaged)",
		                   s->path, (unsigned long long)msg_seq(m));
	if (!sl_buf_ok(&me->buf))
		return oom(d);
	me->ev.position = (int64_t)msg_seq(m);
	me->ev.stream = me->buf.ptr + me->name;
	me->ev.type = me->buf.ptr + me->type;
	me->ev.created_at = me->buf.ptr + me->created;
	me->ev.key = me->has_key ? me->buf.ptr + me->key : NULL;
	return 0;
}

/* The message at or after seq on subject (NULL: any subject of the namespace); *m is
 * NULL when there is none. */
static int next_msg(struct nats_store *s, const char *subject, uint64_t seq, natsMsg **m,
                    struct sl_diag *d)
{
	jsDirectGetMsgOptions o;
	int64_t until = 0;
	natsStatus st;

	*m = NULL;
	jsDirectGetMsgOptions_Init(&o);
	o.Sequence = seq;
	o.NextBySubject = subject ? subject : s->all;
	do
		st = js_DirectGetMsg(m, s->js, s->stream, NULL, &o);
	while (again(st, 0, &until));
	if (st == NATS_NOT_FOUND)
		return 0;
	return st == NATS_OK ? 0 : nats_fail(s, d, st, 0, "cannot read events");
}

/* ---- batched reads: ephemeral pull consumers ----------------------------------------------
 *
 * JetStream 2.9 has no batched direct get, so a read of many messages goes through a
 * consumer: ephemeral, pull, no acks, in memory, one replica, on a filter subject
 * (one stream's subject, or "<ns>.ev.>"), from a stream sequence. Messages are
 * fetched FETCH_MAX at a time (at most FETCH_BYTES; a message larger than that is
 * fetched alone). Every read has a bound, a sequence whose message exists (the
 * subject's last message for one stream, the stream's last sequence otherwise), and
 * fetches only while it has not reached it: a JetStream 2.9 server answers a fetch at
 * once when there are messages, but holds one that finds none until it expires. A
 * reader keeps what it fetched and has not handed out, and is kept for the next read
 * that goes on where it stopped (the pump reads after its cursor, and an instance
 * from its checkpoint, again and again): such a read costs one fetch, no consumer
 * creation. A reader whose consumer went away (the server drops an idle ephemeral
 * after CONSUMER_IDLE_NS; a reconnect) is made again at the sequence it had reached,
 * once per fetch. The consumer sequence of each delivery must follow the one before
 * (no acks, so no redeliveries): a gap means a fetch answered late, and the reader is
 * made again too. */

#define FETCH_MAX 256
#define FETCH_BYTES (8 * 1024 * 1024)
#define CONSUMER_IDLE_NS (60LL * 1000 * 1000 * 1000)
#define FETCH_EXPIRES_NS (2LL * 1000 * 1000 * 1000)
#define LIST_EXPIRES_NS (250LL * 1000 * 1000) /* a listing that stops short */

struct reader {
	natsSubscription *sub;
	char *filter;
	int last_per_subject, headers_only;
	natsMsgList got; /* fetched; Msgs[idx..Count) not handed out yet */
	int idx;
	uint64_t next;    /* the stream sequence from which messages are still to come */
	uint64_t cseq;    /* the consumer sequence of the last delivery */
	int done;         /* a last-per-subject listing delivered its last (none pending) */
	int drained;      /* this read's last delivery said none is pending */
	int64_t expires;  /* ns a fetch that finds nothing waits */
	int64_t next_off; /* a reader of one stream: the offset it hands out next (0: unknown) */
};

static void reader_drop_sub(struct reader *r)
{
	if (r->sub) {
		natsSubscription_Destroy(r->sub); /* the server forgets it after its idle time */
		r->sub = NULL;
	}
	natsMsgList_Destroy(&r->got);
	memset(&r->got, 0, sizeof(r->got));
	r->idx = 0;
	r->cseq = 0;
}

static void reader_free(struct reader *r)
{
	if (!r)
		return;
	if (r->sub)
		natsSubscription_Unsubscribe(r->sub); /* deletes the consumer */
	reader_drop_sub(r);
	free(r->filter);
	free(r);
}

/* A reader of filter from stream sequence seq (not yet subscribed). */
static struct reader *reader_new(const char *filter, uint64_t seq, int last_per_subject,
                                 int headers_only)
{
	struct reader *r = calloc(1, sizeof(*r));

	if (!r || !(r->filter = strdup(filter))) {
		free(r);
		return NULL;
	}
	r->next = seq ? seq : 1;
	r->expires = FETCH_EXPIRES_NS;
	r->last_per_subject = last_per_subject;
	r->headers_only = headers_only;
	return r;
}

static int reader_subscribe(struct nats_store *s, struct reader *r, struct sl_diag *d)
{
	jsSubOptions so;
	jsErrCode jerr = 0;
	int64_t until = 0;
	natsStatus st;

	jsSubOptions_Init(&so);
	so.Stream = s->stream;
	so.Config.AckPolicy = js_AckNone;
	so.Config.InactiveThreshold = CONSUMER_IDLE_NS;
	so.Config.MemoryStorage = true;
	so.Config.Replicas = 1;
	so.Config.HeadersOnly = r->headers_only;
	if (r->last_per_subject) {
		so.Config.DeliverPolicy = js_DeliverLastPerSubject;
	} else {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = r->next;
	}
	do
		st = js_PullSubscribe(&r->sub, s->js, r->filter, NULL, NULL, &so, &jerr);
	while (again(st, jerr, &until));
	if (st != NATS_OK) {
		r->sub = NULL;
		return nats_fail(s, d, st, jerr, "cannot read events");
	}
	r->cseq = 0;
	return 0;
}

/* Fetches the next messages (at most want) into r->got. */
static int reader_fetch(struct nats_store *s, struct reader *r, int want, struct sl_diag *d)
{
	jsFetchRequest fr;
	int64_t until = 0;
	natsStatus st;
	int i, tries;

	natsMsgList_Destroy(&r->got);
	memset(&r->got, 0, sizeof(r->got));
	r->idx = 0;
	want = want < 1 ? 1 : want > FETCH_MAX ? FETCH_MAX : want;
	for (tries = 0;; tries++) {
		if (!r->sub && reader_subscribe(s, r, d))
			return d ? d->code : SL_EIO;
		jsFetchRequest_Init(&fr);
		fr.Batch = want;
		fr.NoWait = true;
		fr.Expires = FETCH_EXPIRES_NS;         /* (what a fetch that finds nothing waits) */
		fr.MaxBytes = tries ? 0 : FETCH_BYTES; /* a retry takes one message of any size */
		if (tries)
			fr.Batch = 1;
		st = natsSubscription_FetchRequest(&r->got, r->sub, &fr);
		if (st == NATS_OK && !r->got.Count)
			st = NATS_NOT_FOUND;
		/* Nothing, where something must be: the consumer went away (no
		 * responders), or the bound's message was deleted meanwhile. */
		if ((tries || r->last_per_subject) &&
		    (st == NATS_NOT_FOUND || st == NATS_TIMEOUT)) {
			r->done = r->last_per_subject;
			natsMsgList_Destroy(&r->got);
			memset(&r->got, 0, sizeof(r->got));
			return 0;
		}
		if (st == NATS_OK) {
			/* Every delivery follows the one before, or the consumer is not where
			 * this reader thinks: start again from r->next. */
			for (i = 0; i < r->got.Count; i++) {
				jsMsgMetaData *md = NULL;
				uint64_t c = 0;
				if (natsMsg_GetMetaData(&md, r->got.Msgs[i]) == NATS_OK) {
					c = md->Sequence.Consumer;
					r->drained = !md->NumPending;
					r->done = r->last_per_subject && r->drained;
				}
				jsMsgMetaData_Destroy(md);
				if (c != r->cseq + 1)
					break;
				r->cseq = c;
			}
			if (i == r->got.Count)
				return 0;
		}
		reader_drop_sub(r);
		/* (A last-per-subject listing cannot go on from a sequence; a consumer
		 * lost in a leader election is made again, again()). */
		if ((tries || r->last_per_subject) && !again(st, 0, &until))
			return nats_fail(s, d, st == NATS_OK ? NATS_ERR : st, 0,
			                 "cannot read events");
	}
}

/* The next message of r up to sequence last without taking it (NULL: none), fetching
 * up to want more when it has none left and has not reached last. */
static int reader_peek(struct nats_store *s, struct reader *r, int want, uint64_t last, natsMsg **m,
                       struct sl_diag *d)
{
	int rc;

	*m = NULL;
	/* (A listing's bound can be a message that was deleted since: it ends when the
	 * consumer says none is pending.) */
	if (r->idx >= r->got.Count && r->next <= last && !r->done && !r->drained &&
	    (rc = reader_fetch(s, r, want, d)))
		return rc;
	if (r->idx < r->got.Count && msg_seq(r->got.Msgs[r->idx]) <= last)
		*m = r->got.Msgs[r->idx];
	return 0;
}

/* Takes the message reader_peek returned (owned by the caller now). */
static natsMsg *reader_take(struct reader *r)
{
	natsMsg *m = r->got.Msgs[r->idx];

	r->got.Msgs[r->idx++] = NULL;
	r->next = msg_seq(m) + 1;
	return m;
}

static int fetch_want(int64_t limit, int64_t given)
{
	return limit > 0 && limit - given < FETCH_MAX ? (int)(limit - given) : FETCH_MAX;
}

/* Calls fn for the messages of r up to sequence last, at most limit events with
 * offset >= from (limit <= 0: all). */
static int walk_reader(struct nats_store *s, struct reader *r, uint64_t last, int64_t from,
                       int64_t limit, sl_event_fn fn, void *ud, struct sl_diag *d)
{
	struct msg_event me;
	natsMsg *m = NULL;
	int64_t given = 0;
	int rc = 0;

	sl_buf_init(&me.buf);
	r->drained = 0; /* (a new read: what was pending then is no bound now) */
	for (;;) {
		natsMsg *peek = NULL;
		if ((rc = reader_peek(s, r, fetch_want(limit, given), last, &peek, d)))
			break;
		if (peek) {
			m = reader_take(r);
		} else if (r->next <= last && r->idx >= r->got.Count) {
			/* The consumer has nothing more where the bound says there is (the
			 * bound's message was deleted since, a replica is behind, the consumer
			 * went away twice): the rest one direct get at a time, and a new
			 * consumer for the next read. */
			reader_drop_sub(r);
			if ((rc = next_msg(s, r->filter, r->next, &m, d)) || !m ||
			    msg_seq(m) > last)
				break;
			r->next = msg_seq(m) + 1;
		} else {
			break;
		}
		if ((rc = msg_to_event(s, m, &me, d)) < 0)
			break;
		r->next_off = me.ev.offset + 1;
		if (rc == TAKEN_BACK) {
			rc = 0; /* no event: what follows goes on from the offset it names */
		} else if (me.ev.offset >= from) {
			if ((rc = fn(ud, &me.ev))) {
				rc = rc < 0 ? rc : 0;
				break;
			}
			if (limit > 0 && ++given >= limit)
				break;
		}
		natsMsg_Destroy(m);
		m = NULL;
	}
	natsMsg_Destroy(m);
	sl_buf_release(&me.buf);
	return rc;
}

/* ---- the state of a stream ------------------------------------------------------------- */

/* A stream as the last message of its subject says it is. */
struct sview {
	int64_t head;      /* offset of the last event, 0: no such stream */
	uint64_t last_seq; /* its sequence */
	int paused;
	char *reason;      /* owned, or NULL */
	uint64_t meta_seq; /* sequence of the last stream/metadata-updated, or 0 */
	uint64_t taken;    /* a take-back record: the first sequence it took back, else 0 */
};

static void sview_release(struct sview *v)
{
	free(v->reason);
	memset(v, 0, sizeof(*v));
}

static int sview_copy(struct sview *to, const struct sview *from)
{
	*to = *from;
	to->reason = from->reason ? strdup(from->reason) : NULL;
	return !from->reason || to->reason ? 0 : SL_ENOMEM;
}

/* Decodes a JSON string value (the Sluice-Paused header). */
static int pick_string(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	char **out = ud;

	(void)d;
	if (m->kind == SL_JSON_STRING && !*out)
		*out = strndup(m->text, m->len);
	return 0;
}

static int state_from_msg(struct nats_store *s, natsMsg *m, struct sview *v, struct sl_diag *d)
{
	const char *reason = NULL;
	int64_t meta;
	struct sl_buf b;
	int rc = 0;

	memset(v, 0, sizeof(*v));
	v->last_seq = msg_seq(m);
	if (header_int(m, H_TAKEN, &meta) && meta > 0)
		v->taken = (uint64_t)meta;
	if (!header_int(m, H_OFFSET, &v->head) || v->head < (v->taken ? 0 : 1))
		return sl_diag_set(d, SL_ECORRUPT,
		                   "store '%s': message %llu has no offset (the store is damaged)",
		                   s->path, (unsigned long long)v->last_seq);
	if (header_int(m, H_META, &meta))
		v->meta_seq = meta == 0 ? v->last_seq : (uint64_t)meta;
	if (natsMsgHeader_Get(m, H_PAUSED, &reason) != NATS_OK || !reason)
		return 0;
	v->paused = 1;
	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"r\":");
	sl_buf_adds(&b, reason);
	sl_buf_addc(&b, '}');
	if (!sl_buf_ok(&b) || sl_json_members(b.ptr, b.len, pick_string, &v->reason, NULL))
		rc = sl_diag_set(d, SL_ECORRUPT, "store '%s': message %llu has a bad pause reason",
		                 s->path, (unsigned long long)v->last_seq);
	sl_buf_release(&b);
	return rc;
}

/* Loads the state of the stream whose subject is subj (v->head 0: none). */
static int load_state(struct nats_store *s, const char *subj, struct sview *v, struct sl_diag *d)
{
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	int64_t until = 0;
	natsStatus st;
	int rc;

	memset(v, 0, sizeof(*v));
	if (!s->exists)
		return 0;
	do
		st = js_GetLastMsg(&m, s->js, s->stream, subj, NULL, &jerr);
	while (again(st, jerr, &until));
	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return 0;
	if (st != NATS_OK)
		return nats_fail(s, d, st, jerr, "cannot read stream");
	rc = state_from_msg(s, m, v, d);
	natsMsg_Destroy(m);
	return rc;
}

/* ---- planning an append ---------------------------------------------------------------- */

struct pstream {
	char *name, *subject;
	struct sview plan; /* as the batch will leave it */
	struct sview live; /* as published so far */
	int fresh;         /* live was read after the batch's `last` */
};

/* One message to publish. */
struct pmsg {
	size_t stream; /* index in the batch's streams */
	const char *type;
	char *payload; /* owned compact JSON */
	size_t payload_len;
	char *metadata; /* owned compact JSON, or NULL */
	size_t metadata_len;
	const char *key; /* borrowed (the event's, or one of ours in keys) */
	int64_t offset;  /* explicit expected offset, or 0 */
	int engine;
	size_t result;       /* index in res of the event it answers, or (size_t)-1 */
	uint64_t seq;        /* its sequence once published */
	int64_t planned;     /* the offset the plan gives it */
	int64_t got;         /* its offset once published */
	int dup;             /* JetStream answered with a stored message */
	unsigned gen;        /* of its message id (dup_offset) */
	unsigned inflight;   /* answers "duplicate of sequence 0" in a row (settle_one) */
	struct sview before; /* its stream's state before it, once stored (take_back) */
};

struct batch {
	struct nats_store *s;
	struct pstream *st;
	size_t nst, cst;
	struct pmsg *msg;
	size_t nmsg, cmsg;
	char **keys; /* the keys of ancestor announcements */
	size_t nkeys;
	char created_at[32];
	int raced;     /* the last publish lost a race for its subject's last sequence */
	uint64_t last; /* serial stores: the stream's last sequence as this batch knows it */
};

static void batch_release(struct batch *bt)
{
	size_t i;

	for (i = 0; i < bt->nst; i++) {
		free(bt->st[i].name);
		free(bt->st[i].subject);
		sview_release(&bt->st[i].plan);
		sview_release(&bt->st[i].live);
	}
	for (i = 0; i < bt->nmsg; i++) {
		free(bt->msg[i].payload);
		free(bt->msg[i].metadata);
		sview_release(&bt->msg[i].before);
	}
	for (i = 0; i < bt->nkeys; i++)
		free(bt->keys[i]);
	free(bt->st);
	free(bt->msg);
	free(bt->keys);
}

static void delete_msg(struct nats_store *s, uint64_t seq);

/* The subject's last message is the take-back record v: deletes what it took back
 * and is still there (its writer was killed before it deleted them: take_back). */
static int repair_taken(struct nats_store *s, const char *subject, const struct sview *v,
                        struct sl_diag *d)
{
	uint64_t at = v->taken;
	natsMsg *m = NULL;
	int rc;

	while (!(rc = next_msg(s, subject, at, &m, d)) && m && msg_seq(m) < v->last_seq) {
		at = msg_seq(m) + 1;
		natsMsg_Destroy(m);
		m = NULL;
		delete_msg(s, at - 1);
	}
	natsMsg_Destroy(m);
	return rc;
}

/* Finds `name` among the batch's streams, loading it on first use (and repairing it
 * when a take-back was left half done). */
static int batch_stream(struct batch *bt, const char *name, size_t *out, struct sl_diag *d)
{
	struct pstream *p;
	size_t i;
	int rc;

	for (i = 0; i < bt->nst; i++)
		if (!strcmp(bt->st[i].name, name)) {
			*out = i;
			return 0;
		}
	if (bt->nst == bt->cst) {
		size_t c = bt->cst ? bt->cst * 2 : 8;
		struct pstream *n = realloc(bt->st, c * sizeof(*n));
		if (!n)
			return oom(d);
		bt->st = n, bt->cst = c;
	}
	p = &bt->st[bt->nst];
	memset(p, 0, sizeof(*p));
	subject_of(bt->s, name, &bt->s->tmp[0]);
	sl_buf_addc(&bt->s->tmp[0], '\0');
	if (!sl_buf_ok(&bt->s->tmp[0]) || !(p->name = strdup(name)) ||
	    !(p->subject = strdup(bt->s->tmp[0].ptr))) {
		free(p->name);
		return oom(d);
	}
	bt->nst++;
	if ((rc = load_state(bt->s, p->subject, &p->plan, d)) ||
	    (p->plan.taken && (rc = repair_taken(bt->s, p->subject, &p->plan, d))) ||
	    (rc = sview_copy(&p->live, &p->plan)))
		return rc == SL_ENOMEM ? oom(d) : rc;
	*out = bt->nst - 1;
	return 0;
}

static int type_is(const char *type, const char *what)
{
	return !strcmp(type, what);
}

/* Copies a member's text, for the core events' effects. */
struct member_pick {
	const char *key;
	enum sl_json_kind kind;
	char *text;
	size_t len;
};

static int pick_member(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct member_pick *mp = ud;

	if (m->kind != mp->kind || !is_key(m, mp->key))
		return 0;
	free(mp->text);
	if (!(mp->text = strndup(m->text, m->len)))
		return oom(d);
	mp->len = m->len;
	return 0;
}

/* Applies a core event's effect on a stream's view: pause, resume, metadata (whose
 * message is at seq; 0 while not yet published). */
static int apply_core(struct sview *v, const struct pmsg *p, uint64_t seq, struct sl_diag *d)
{
	struct member_pick mp = {"reason", SL_JSON_STRING, NULL, 0};
	int rc;

	if (type_is(p->type, "stream/metadata-updated")) {
		v->meta_seq = seq;
	} else if (type_is(p->type, "stream/resumed")) {
		v->paused = 0;
		free(v->reason);
		v->reason = NULL;
	} else if (type_is(p->type, "stream/paused")) {
		if ((rc = sl_json_members(p->payload, p->payload_len, pick_member, &mp, d)))
			return rc;
		v->paused = 1;
		free(v->reason);
		v->reason = mp.text;
	}
	return 0;
}

static int door_refuses(const struct sview *v, const struct pmsg *p)
{
	return v->paused && !p->engine && !type_is(p->type, "stream/resumed") &&
	       !type_is(p->type, "stream/error-occurred");
}

static int paused_error(const struct sview *v, struct sl_diag *d)
{
	return sl_diag_set(d, SL_EPAUSED, "stream paused: %s",
	                   v->reason && *v->reason ? v->reason : "no reason given");
}

static int offset_error(const struct pstream *ps, const struct sview *v, int64_t offset,
                        struct sl_diag *d)
{
	return sl_diag_set(d, SL_ECONFLICT,
	                   "offset: expected %lld (the head of '%s' is %lld), got %lld",
	                   (long long)v->head + 1, ps->name, (long long)v->head, (long long)offset);
}

static int key_offset_error(const char *key, int64_t used, int64_t offset, struct sl_diag *d)
{
	return sl_diag_set(d, SL_ECONFLICT,
	                   "offset: idempotency key '%.*s%s' was used at offset %lld, not %lld",
	                   SL_ECHO(key), (long long)used, (long long)offset);
}

/* Looks for a stored event of the stream with `key` by walking the stream: *offset
 * and *seq of the hit, 0 when there is none. Only for the plans that the key decides. */
static int scan_key(struct nats_store *s, const struct pstream *ps, const char *key,
                    int64_t *offset, uint64_t *seq, struct sl_diag *d)
{
	struct msg_event me;
	uint64_t at = 1;
	natsMsg *m = NULL;
	int rc = 0;

	*offset = 0, *seq = 0;
	sl_buf_init(&me.buf);
	while (ps->live.last_seq && at <= ps->live.last_seq) {
		if ((rc = next_msg(s, ps->subject, at, &m, d)) || !m)
			break;
		if ((rc = msg_to_event(s, m, &me, d)) < 0)
			break;
		rc = 0;
		at = msg_seq(m) + 1;
		if (me.ev.type && me.ev.key && !strcmp(me.ev.key, key)) {
			*offset = me.ev.offset, *seq = msg_seq(m);
			break;
		}
		natsMsg_Destroy(m);
		m = NULL;
	}
	natsMsg_Destroy(m);
	sl_buf_release(&me.buf);
	return rc;
}

/* A key already planned in this batch for this stream: the message's index. */
static int planned_key(const struct batch *bt, size_t stream, const char *key, size_t *at)
{
	size_t i;

	for (i = 0; i < bt->nmsg; i++)
		if (bt->msg[i].stream == stream && bt->msg[i].key && !strcmp(bt->msg[i].key, key)) {
			*at = i;
			return 1;
		}
	return 0;
}

static int add_msg(struct batch *bt, const struct pmsg *p, struct sl_diag *d)
{
	if (bt->nmsg == bt->cmsg) {
		size_t c = bt->cmsg ? bt->cmsg * 2 : 16;
		struct pmsg *n = realloc(bt->msg, c * sizeof(*n));
		if (!n)
			return oom(d);
		bt->msg = n, bt->cmsg = c;
	}
	bt->msg[bt->nmsg++] = *p;
	return 0;
}

/* Plans one event on stream `si`: its key, pause and offset checks, then the message.
 * p's JSON texts are handed over (freed here on failure). *hit is set to the index of
 * a planned message with the same key, or to (size_t)-2 for a stored hit (res filled). */
static int plan_event(struct batch *bt, size_t si, struct pmsg *p, struct sl_append_result *res,
                      size_t *hit, struct sl_diag *d)
{
	struct pstream *ps = &bt->st[si];
	int64_t used;
	uint64_t seq;
	int rc;

	*hit = (size_t)-1;
	if (p->key && planned_key(bt, si, p->key, hit)) {
		rc = p->offset && p->offset != bt->msg[*hit].planned
		             ? key_offset_error(p->key, bt->msg[*hit].planned, p->offset, d)
		             : 0;
		goto drop;
	}
	if (door_refuses(&ps->plan, p) || (p->offset && p->offset != ps->plan.head + 1)) {
		/* Refused unless the key was used before: then the stored event answers. */
		if (p->key && (rc = scan_key(bt->s, ps, p->key, &used, &seq, d)))
			goto drop;
		if (p->key && seq) {
			*hit = (size_t)-2;
			res->offset = used, res->position = (int64_t)seq, res->duplicate = 1;
			rc = p->offset && p->offset != used
			             ? key_offset_error(p->key, used, p->offset, d)
			             : 0;
			goto drop;
		}
		rc = door_refuses(&ps->plan, p) ? paused_error(&ps->plan, d)
		                                : offset_error(ps, &ps->plan, p->offset, d);
		goto drop;
	}
	if ((rc = apply_core(&ps->plan, p, 0, d)))
		goto drop;
	p->planned = ++ps->plan.head;
	p->stream = si;
	return add_msg(bt, p, d);
drop:
	free(p->payload);
	free(p->metadata);
	return rc;
}

/* An engine-written event whose payload is {"<field>": "<value>"}. */
static int plan_engine_event(struct batch *bt, size_t si, const char *type, const char *field,
                             const char *value, const char *key, struct sl_diag *d)
{
	struct pmsg p = {0, type, NULL, 0, NULL, 0, key, 0, 1, (size_t)-1, 0, 0, 0, 0, 0, 0, {0}};
	struct sl_append_result res;
	struct sl_buf b;
	size_t hit;

	sl_buf_init(&b);
	sl_buf_addf(&b, "{\"%s\":", field);
	sl_buf_addjstr(&b, value, strlen(value));
	sl_buf_addc(&b, '}');
	if (!sl_buf_ok(&b)) {
		sl_buf_release(&b);
		return oom(d);
	}
	p.payload = sl_buf_detach(&b, &p.payload_len);
	return plan_event(bt, si, &p, &res, &hit, d);
}

static int keep_key(struct batch *bt, const char *name, const char **out, struct sl_diag *d)
{
	char **n = realloc(bt->keys, (bt->nkeys + 1) * sizeof(*n));
	char *k = malloc(strlen(name) + 32);

	if (!n || !k) {
		if (n)
			bt->keys = n;
		free(k);
		return oom(d);
	}
	bt->keys = n;
	sprintf(k, "child-stream-created:%s", name);
	*out = bt->keys[bt->nkeys++] = k;
	return 0;
}

/* Plans stream `name` (and its missing ancestors, top down): its stream/created and
 * one stream/child-stream-created on each ancestor, as the SQLite backend writes them. */
static int plan_create(struct batch *bt, const char *name, size_t *out, struct sl_diag *d)
{
	char *anc = strdup(name), *slash;
	const char *key = NULL;
	size_t parent;
	int rc = 0;

	if (!anc)
		return oom(d);
	if ((slash = strrchr(anc, '/'))) {
		*slash = '\0';
		if ((rc = batch_stream(bt, anc, &parent, d)) ||
		    (!bt->st[parent].plan.head && (rc = plan_create(bt, anc, &parent, d))))
			goto out;
	}
	if ((rc = batch_stream(bt, name, out, d)) ||
	    (rc = plan_engine_event(bt, *out, "stream/created", "path", name, NULL, d)) ||
	    (rc = keep_key(bt, name, &key, d)))
		goto out;
	strcpy(anc, name);
	while ((slash = strrchr(anc, '/'))) {
		*slash = '\0';
		if ((rc = batch_stream(bt, anc, &parent, d)) ||
		    (rc = plan_engine_event(bt, parent, "stream/child-stream-created", "childPath",
		                            name, key, d)))
			goto out;
	}
out:
	free(anc);
	return rc;
}

static char *compact_copy(const char *p, size_t n, size_t *outlen, struct sl_buf *b)
{
	const char *c = sl_store_compact(p, n, outlen, b);

	return c ? strndup(c, *outlen) : NULL;
}

/* Plans every event of the batch; res[i].position is filled in once published. */
static int plan_batch(struct batch *bt, const struct sl_event_in *ev, size_t n,
                      struct sl_append_result *res, size_t *failed, struct sl_diag *d)
{
	struct nats_store *s = bt->s;
	size_t i, si, hit;
	int rc;

	for (i = 0; i < n; i++) {
		struct pmsg p = {0, ev[i].type, NULL, 0, NULL, 0, ev[i].key, ev[i].offset, 0,
		                 i, 0,          0,    0, 0,    0, 0,         {0}};
		*failed = i;
		res[i].duplicate = 0;
		if ((rc = batch_stream(bt, ev[i].stream, &si, d)) ||
		    (!bt->st[si].plan.head && (rc = plan_create(bt, ev[i].stream, &si, d))))
			return rc;
		p.payload = ev[i].payload ? compact_copy(ev[i].payload, ev[i].payload_len,
		                                         &p.payload_len, &s->tmp[0])
		                          : strdup("{}");
		p.payload_len = ev[i].payload ? p.payload_len : 2;
		if (ev[i].metadata)
			p.metadata = compact_copy(ev[i].metadata, ev[i].metadata_len,
			                          &p.metadata_len, &s->tmp[0]);
		if (!p.payload || (ev[i].metadata && !p.metadata)) {
			free(p.payload);
			free(p.metadata);
			return oom(d);
		}
		if ((rc = plan_event(bt, si, &p, &res[i], &hit, d)))
			return rc;
		if (hit != (size_t)-1 && hit != (size_t)-2)
			res[i].duplicate = 1,
			res[i].offset = -(int64_t)hit - 1; /* resolved later */
	}
	return 0;
}

/* ---- publishing ------------------------------------------------------------------------ */

static void body_of(const struct batch *bt, const struct pmsg *p, struct sl_buf *b)
{
	sl_buf_reset(b);
	sl_buf_adds(b, "{\"type\":");
	sl_buf_addjstr(b, p->type, strlen(p->type));
	sl_buf_adds(b, ",\"payload\":");
	sl_buf_add(b, p->payload, p->payload_len);
	if (p->metadata) {
		sl_buf_adds(b, ",\"metadata\":");
		sl_buf_add(b, p->metadata, p->metadata_len);
	}
	if (p->key) {
		sl_buf_adds(b, ",\"idempotencyKey\":");
		sl_buf_addjstr(b, p->key, strlen(p->key));
	}
	sl_buf_adds(b, ",\"createdAt\":\"");
	sl_buf_adds(b, bt->created_at);
	sl_buf_adds(b, "\"}");
}

/* The headers of p: its offset and the stream's state after it. */
static natsStatus set_headers(natsMsg *m, const struct pmsg *p, const struct sview *after,
                              int64_t offset, struct sl_buf *b)
{
	char num[32];
	natsStatus st;

	snprintf(num, sizeof(num), "%lld", (long long)offset);
	if ((st = natsMsgHeader_Set(m, H_OFFSET, num)) != NATS_OK)
		return st;
	if (after->paused) {
		sl_buf_reset(b);
		sl_buf_addjstr(b, after->reason ? after->reason : "",
		               after->reason ? strlen(after->reason) : 0);
		sl_buf_addc(b, '\0');
		if (!sl_buf_ok(b))
			return NATS_NO_MEMORY;
		if ((st = natsMsgHeader_Set(m, H_PAUSED, b->ptr)) != NATS_OK)
			return st;
	}
	if (type_is(p->type, "stream/metadata-updated") || after->meta_seq) {
		snprintf(num, sizeof(num), "%llu",
		         type_is(p->type, "stream/metadata-updated")
		                 ? 0ull
		                 : (unsigned long long)after->meta_seq);
		if ((st = natsMsgHeader_Set(m, H_META, num)) != NATS_OK)
			return st;
	}
	return NATS_OK;
}

/* Reads the offset of the stored message a duplicate ack points at. */
/* A key whose message was taken back (take_back) stays JetStream's duplicate for the
 * window: a retry of the call would be answered with a message that is gone. The
 * message of such a key goes again with the next generation of its id ("|g2", "|g3",
 * ...; build_one), which every retry reaches the same way, so a key is still stored
 * once: the generation that was stored answers as the duplicate. DUP_TAKEN_BACK:
 * what dup_offset returns then (no diagnostic) while generations remain. */
#define KEY_GENS 16
#define DUP_TAKEN_BACK 1
#define INFLIGHT_TRIES 200 /* (settle_one) */
#define INFLIGHT_STEP_MS 10

static int dup_offset(struct nats_store *s, const struct pmsg *p, uint64_t seq, int64_t *offset,
                      struct sl_diag *d)
{
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	int64_t until = 0;
	natsStatus st;
	int ok;

	do
		st = js_GetMsg(&m, s->js, s->stream, seq, NULL, &jerr);
	while (again(st, jerr, &until));
	if ((st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) && p->gen + 1 < KEY_GENS)
		return DUP_TAKEN_BACK;
	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return sl_diag_set(
			d, SL_ECONFLICT,
			"idempotencyKey: '%.*s%s' belongs to an append that was taken back;"
			" use another key, or retry after the duplicate window (%lld s)",
			SL_ECHO(p->key), SL_NATS_DUP_WINDOW_NS / 1000000000LL);
	if (st != NATS_OK)
		return nats_fail(s, d, st, jerr, "cannot read event");
	ok = header_int(m, H_OFFSET, offset);
	natsMsg_Destroy(m);
	return ok ? 0
	          : sl_diag_set(d, SL_ECORRUPT, "store '%s': message %llu has no offset", s->path,
	                        (unsigned long long)seq);
}

/* What a refused publish means for the user. */
static int publish_error(struct nats_store *s, const struct pstream *ps, natsStatus st,
                         jsErrCode jerr, struct sl_diag *d)
{
	if (jerr == JSStreamWrongLastSequenceErr)
		return sl_diag_set(
			d, SL_ECONFLICT,
			"store '%s': stream '%s' was appended to by another writer at the"
			" same time; try again",
			s->path, ps->name);
	return nats_fail(s, d, st, jerr, "cannot append");
}

/* The message of p with its headers from the live state of its stream, and in *after
 * that state once p is stored; po gets the compare-and-set on the subject's last
 * sequence and the message id (in idbuf, which must outlive the publish). */
static int build_one(struct batch *bt, struct pmsg *p, struct sview *after, natsMsg **out,
                     jsPubOptions *po, struct sl_buf *idbuf, struct sl_diag *d)
{
	struct nats_store *s = bt->s;
	struct pstream *ps = &bt->st[p->stream];
	natsMsg *m = NULL;
	natsStatus st;
	int rc = 0;

	*out = NULL;
	memset(after, 0, sizeof(*after));
	if (door_refuses(&ps->live, p))
		return paused_error(&ps->live, d);
	if (p->offset && p->offset != ps->live.head + 1)
		return offset_error(ps, &ps->live, p->offset, d);
	if (sview_copy(after, &ps->live) || (rc = apply_core(after, p, 0, d)))
		return rc ? rc : oom(d);
	body_of(bt, p, &s->tmp[0]);
	if (!sl_buf_ok(&s->tmp[0]))
		return oom(d);
	jsPubOptions_Init(po);
	po->ExpectLastSubjectSeq = ps->live.last_seq;
	po->ExpectNoMessage = ps->live.last_seq == 0;
	po->MaxWait = WAIT_MS;
	if ((st = natsMsg_Create(&m, ps->subject, NULL, s->tmp[0].ptr, (int)s->tmp[0].len)) !=
	            NATS_OK ||
	    (st = set_headers(m, p, after, ps->live.head + 1, &s->tmp[1])) != NATS_OK) {
		natsMsg_Destroy(m);
		return nats_fail(s, d, st, 0, "cannot build message");
	}
	if (p->key) { /* "<stream>|<key as JSON>": a stream name has no '|' */
		sl_buf_reset(idbuf);
		sl_buf_adds(idbuf, ps->name);
		sl_buf_addc(idbuf, '|');
		sl_buf_addjstr(idbuf, p->key, strlen(p->key));
		if (p->gen)
			sl_buf_addf(idbuf, "|g%u", p->gen + 1);
		sl_buf_addc(idbuf, '\0');
		if (!sl_buf_ok(idbuf)) {
			natsMsg_Destroy(m);
			return oom(d);
		}
		po->MsgId = idbuf->ptr;
	}
	*out = m;
	return 0;
}

/* Takes the ack of p (sequence seq, dup: JetStream answered with a stored message):
 * its offset, and its stream's live state moves to *after (which is taken). */
static int settle_one(struct batch *bt, struct pmsg *p, struct sview *after, uint64_t seq, int dup,
                      struct sl_diag *d)
{
	struct nats_store *s = bt->s;
	struct pstream *ps = &bt->st[p->stream];
	int rc = 0;

	p->seq = seq;
	if (dup && !seq) {
		/* A clustered nats-server 2.9 answers a message whose id is in a raft
		 * proposal not yet applied (this process's own publish, sent again after
		 * a lost ack, or one the server refused after it had staged its id) as a
		 * duplicate of sequence 0. Not stored by this answer, and not taken back:
		 * it goes again with the same id, which is answered with the sequence
		 * once the proposal is applied, or stored if it never was; after
		 * INFLIGHT_TRIES such answers (an id the server keeps staged), with the
		 * next generation of its id. */
		sview_release(after);
		if (++p->inflight >= INFLIGHT_TRIES)
			p->gen++, p->inflight = 0;
		nats_Sleep(INFLIGHT_STEP_MS);
		return 0;
	}
	if (dup) {
		/* (Not the stream's last sequence: others may have published since.) */
		p->dup = 1;
		if ((rc = dup_offset(s, p, p->seq, &p->got, d)) == DUP_TAKEN_BACK) {
			p->seq = 0, p->dup = 0, p->gen++; /* not stored: it goes again */
			rc = 0;
		} else if (!rc && p->offset && p->offset != p->got)
			rc = key_offset_error(p->key, p->got, p->offset, d);
		sview_release(after);
		/* Stored after the subject's last message as this call knows it: this
		 * call's own publish whose ack was lost (or one of another writer with
		 * the same key). The subject's state is read again, so that the call's
		 * next message on it goes after it. */
		if (!rc && p->seq > ps->live.last_seq) {
			struct sview v;
			if ((rc = load_state(s, ps->subject, &v, d)))
				return rc;
			sview_release(&ps->live);
			ps->live = v;
		}
		return rc;
	}
	s->commits++;
	bt->last = p->seq;
	p->got = ps->live.head + 1;
	if (type_is(p->type, "stream/metadata-updated"))
		after->meta_seq = p->seq;
	after->head = p->got;
	after->last_seq = p->seq;
	after->taken = 0;
	sview_release(&p->before);
	p->before = ps->live; /* (what a take-back record of p restores) */
	ps->live = *after;
	memset(after, 0, sizeof(*after));
	return 0;
}

/* Publishes message p and waits for its ack: the compare-and-set on its subject's
 * last sequence. */
static int publish_try(struct batch *bt, struct pmsg *p, struct sl_diag *d)
{
	struct nats_store *s = bt->s;
	struct sview after;
	struct sl_buf id;
	jsPubOptions po;
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	int64_t until = 0;
	natsMsg *m = NULL;
	natsStatus st;
	int rc;

	sl_buf_init(&id);
	if ((rc = build_one(bt, p, &after, &m, &po, &id, d)))
		goto out;
	if (s->serial)
		po.ExpectLastSeq = bt->last; /* 0 (an empty stream): not checked */
	do
		st = js_PublishMsg(&ack, s->js, m, &po, &jerr);
	while (p->key && again(st, jerr, &until));
	if (st != NATS_OK) {
		bt->raced = jerr == JSStreamWrongLastSequenceErr;
		rc = publish_error(s, &bt->st[p->stream], st, jerr, d);
		goto out;
	}
	rc = settle_one(bt, p, &after, ack->Sequence, ack->Duplicate, d);
out:
	sview_release(&after);
	sl_buf_release(&id);
	jsPubAck_Destroy(ack);
	natsMsg_Destroy(m);
	return rc;
}

/* publish_try until p is stored (or is a duplicate): a key whose message was taken
 * back goes again with its next generation (dup_offset). */
static int publish_one(struct batch *bt, struct pmsg *p, struct sl_diag *d)
{
	int rc;

	do
		rc = publish_try(bt, p, d);
	while (!rc && !p->seq);
	return rc;
}

/* ---- publishing many messages: waves of asynchronous publishes ---------------------------
 *
 * Each message carries the compare-and-set on its subject's last sequence, and that
 * is the sequence of the message before it on the subject, known only once that one
 * was acknowledged: two messages of one subject can never be in flight together
 * (predicting the sequence would not do: a message of another writer can take the
 * predicted sequence after one of ours was refused, and the next of ours would then
 * be stored after it with a wrong offset). So the messages go out in waves: a wave is
 * the longest run of the messages still to publish, in order, whose subjects are all
 * different (at most WAVE_MAX), each built from its subject's live state exactly as
 * publish_one builds it, published with js_PublishMsgAsync, and the wave's acks
 * awaited together; then the next wave. The messages of a wave are chained: each but
 * the first also carries Nats-Expected-Last-Sequence, the stream's last sequence it
 * would have if the ones before it in the wave were stored right after each other
 * (the head when the wave starts, plus its place). So once one of them is refused
 * (or another writer's message gets in between) the rest of the wave is refused
 * too, and nothing after a refused message is stored, as one at a time: a message
 * refused only for that goes again in the next wave (whose chain starts from the
 * head read again), and the one that failed fails the call as before. The chain
 * only refuses; offsets stay right by the subject's compare-and-set alone. The server stores the
 * messages of one connection in the order they were published, so positions follow the order of the
 * call as before. A call over many streams costs one round trip per wave instead of one per
 * message; a call on one stream is one message per wave (publish_one), and so is each event of the
 * store's own (see wave_len). */

/* One message of a wave, as its ack says (filled by on_pub_ack, under pub_mu). */
struct inflight {
	natsMsg *m; /* only to match the ack: libnats owns it */
	size_t msg; /* index in the batch */
	int acked, dup;
	natsStatus st;
	jsErrCode jerr;
	uint64_t seq;
};

/* The ack handler of the JetStream context (a libnats thread). */
static void on_pub_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *ud)
{
	struct nats_store *s = ud;
	size_t i, k;

	(void)js;
	pthread_mutex_lock(&s->pub_mu);
	for (k = 0; k < s->nfl; k++) { /* acks come in order: start after the last one */
		i = (s->fl_hint + k) % s->nfl;
		if (s->fl[i].m == m && !s->fl[i].acked)
			break;
	}
	if (k < s->nfl) {
		struct inflight *f = &s->fl[i];
		f->acked = 1;
		if (pa) {
			f->st = NATS_OK, f->seq = pa->Sequence, f->dup = pa->Duplicate;
		} else {
			f->st = pae && pae->Err != NATS_OK ? pae->Err : NATS_ERR;
			f->jerr = pae ? pae->ErrCode : 0;
		}
		s->fl_hint = i + 1;
		if (++s->fl_acked == s->nfl)
			pthread_cond_signal(&s->pub_cv);
	}
	pthread_mutex_unlock(&s->pub_mu);
	natsMsg_Destroy(m);
}

/* How many of the messages listed in todo[0..n) form the next wave. The store's own
 * events (stream/created, stream/child-stream-created) go alone: two writers that
 * create the same stream race on them, and the loser must stop there, before any
 * message that depends on the stream it lost, as it does one message at a time. */
static size_t wave_len(struct batch *bt, const size_t *todo, size_t n)
{
	size_t i, k;

	if (n && bt->msg[todo[0]].engine)
		return 1;
	for (i = 0; i < n && i < WAVE_MAX; i++) {
		if (bt->msg[todo[i]].engine)
			return i;
		for (k = 0; k < i; k++)
			if (bt->msg[todo[k]].stream == bt->msg[todo[i]].stream)
				return i;
	}
	return i;
}

/* Waits until every message of the wave has its ack (or gives up after the
 * publishes' own wait); the messages without one are taken back from libnats, so
 * that no ack handler runs for them later. */
static void wave_wait(struct nats_store *s)
{
	natsMsgList pending;
	jsPubOptions po;

	jsPubOptions_Init(&po);
	po.MaxWait = WAIT_MS + 1000;
	js_PublishAsyncComplete(s->js, &po);
	pthread_mutex_lock(&s->pub_mu);
	if (s->fl_acked < s->nfl) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 2;
		while (s->fl_acked < s->nfl &&
		       pthread_cond_timedwait(&s->pub_cv, &s->pub_mu, &until) == 0)
			;
	}
	pthread_mutex_unlock(&s->pub_mu);
	if (js_PublishAsyncGetPendingList(&pending, s->js) == NATS_OK)
		natsMsgList_Destroy(&pending);
	pthread_mutex_lock(&s->pub_mu);
	s->nfl = 0; /* an ack handler running now finds nothing */
	pthread_mutex_unlock(&s->pub_mu);
}

/* Publishes the wave todo[0..n) (built from the live states), waits for the acks and
 * settles them in order. *bad is the index in todo of the first that failed, n when
 * none did; d says why, and *raced whether it lost a compare-and-set. Every message
 * that was stored has its seq, whatever failed before or after it. */
static int publish_wave(struct batch *bt, const size_t *todo, size_t n, uint64_t *lseq, size_t *bad,
                        int *raced, struct sl_diag *d)
{
	struct nats_store *s = bt->s;
	struct sview *after = calloc(n, sizeof(*after));
	struct sl_buf id;
	size_t i, sent = 0, stored = 0;
	int64_t head = 0;
	int rc = 0, rc2;

	*bad = n, *raced = 0;
	if (after && s->cfl < n) {
		struct inflight *fl = realloc(s->fl, n * sizeof(*fl)); /* (no ack pending now) */
		if (fl)
			s->fl = fl, s->cfl = n;
	}
	if (!after || s->cfl < n) {
		free(after);
		return oom(d);
	}
	if (!*lseq && (rc = nats_head_position(&s->base, &head, d))) {
		free(after);
		return rc;
	}
	*lseq = *lseq ? *lseq : (uint64_t)head;
	pthread_mutex_lock(&s->pub_mu);
	s->nfl = s->fl_acked = s->fl_hint = 0;
	pthread_mutex_unlock(&s->pub_mu);
	sl_buf_init(&id);
	for (i = 0; i < n && !rc; i++, sent++) {
		natsMsg *m = NULL;
		jsPubOptions po;
		natsStatus st;
		if ((rc = build_one(bt, &bt->msg[todo[i]], &after[i], &m, &po, &id, d)))
			break;
		if (i) /* the chain: stored only right after the message before it */
			po.ExpectLastSeq = *lseq + i;
		pthread_mutex_lock(&s->pub_mu);
		memset(&s->fl[i], 0, sizeof(s->fl[i]));
		s->fl[i].m = m, s->fl[i].msg = todo[i];
		s->nfl = i + 1;
		pthread_mutex_unlock(&s->pub_mu);
		if ((st = js_PublishMsgAsync(s->js, &m, &po)) != NATS_OK) {
			natsMsg_Destroy(m);
			pthread_mutex_lock(&s->pub_mu);
			s->nfl = i; /* never sent */
			pthread_mutex_unlock(&s->pub_mu);
			rc = nats_fail(s, d, st, 0, "cannot append");
			break;
		}
	}
	if (rc)
		*bad = i;
	if (sent)
		wave_wait(s);
	for (i = 0; i < sent; i++) {
		struct inflight *f = &s->fl[i];
		struct pmsg *p = &bt->msg[todo[i]];
		if (f->acked && f->st == NATS_OK) {
			rc2 = settle_one(bt, p, &after[i], f->seq, f->dup, *bad < i ? NULL : d);
			stored += !f->dup;
			if (!f->dup)
				*lseq = f->seq;
		} else if (i && f->acked && f->jerr == JSStreamWrongLastSequenceErr) {
			rc2 = 0; /* off the chain (or its subject raced): it goes again */
		} else {
			rc2 = f->acked ? publish_error(s, &bt->st[p->stream], f->st, f->jerr,
			                               *bad < i ? NULL : d)
			               : nats_fail(s, *bad < i ? NULL : d, NATS_TIMEOUT, 0,
			                           "cannot append (no acknowledgment)");
			if (*bad > i)
				*raced = f->jerr == JSStreamWrongLastSequenceErr;
		}
		if (rc2 && *bad > i)
			*bad = i, rc = rc2;
	}
	if (stored < sent)
		*lseq = 0; /* the chain broke: the next wave reads the head again */
	for (i = 0; i < n; i++)
		sview_release(&after[i]);
	free(after);
	sl_buf_release(&id);
	return rc;
}

/* A message that lost its compare-and-set and may go again after the other writer's
 * (see publish_in_commit). */
static int retryable(const struct batch *bt, const struct pmsg *p)
{
	return !p->engine && !p->offset && bt->st[p->stream].live.head;
}

static int publish_in_commit(struct batch *bt, struct pmsg *p, struct sl_diag *d);
static int publish_cas(struct batch *bt, struct pmsg *p, int can_move, struct sl_diag *d);

/* Publishes every message of the batch in waves (publish_wave), one at a time
 * (publish_cas) where a wave would be of one message, and always on a serial store
 * (a wave's chain starts from a head read after the subjects' states, which the
 * stream-wide compare-and-set of a cluster needs read first: stream_last). retry: a
 * message that asks for no offset and lost its compare-and-set goes again after what
 * the other writer appended (a commit's events, see publish_in_commit). On a failure,
 * *failed_msg is the message. */
static int publish_all(struct batch *bt, int retry, size_t *failed_msg, struct sl_diag *d)
{
	size_t *todo = malloc((bt->nmsg + 1) * sizeof(*todo));
	size_t i, n = bt->nmsg, w, bad = 0, k, out, tries = 0;
	uint64_t lseq = 0;
	struct sl_diag one;
	int rc = 0, raced;

	if (!todo)
		return oom(d);
	for (i = 0; i < n; i++)
		todo[i] = i;
	while (n) {
		sl_diag_init(&one);
		w = bt->s->serial ? 1 : wave_len(bt, todo, n);
		if (w == 1) {
			rc = retry ? publish_in_commit(bt, &bt->msg[todo[0]], &one)
			           : publish_cas(bt, &bt->msg[todo[0]], 0, &one);
			bad = 0;
			lseq = 0;
			if (!rc) {
				memmove(todo, todo + 1, (n - 1) * sizeof(*todo));
				n--;
				continue;
			}
		} else if ((rc = publish_wave(bt, todo, w, &lseq, &bad, &raced, &one)) && retry &&
		           raced && tries++ < RACE_TRIES && retryable(bt, &bt->msg[todo[bad]])) {
			/* The one that lost goes again after the other writer's: its stream's
			 * state is read again. */
			struct pstream *ps = &bt->st[bt->msg[todo[bad]].stream];
			struct sview v;
			if ((rc = load_state(bt->s, ps->subject, &v, d)) ||
			    (v.taken && (rc = repair_taken(bt->s, ps->subject, &v, d))))
				break;
			sview_release(&ps->live);
			ps->live = v;
			rc = 0;
		}
		if (rc) {
			*failed_msg = todo[bad];
			sl_diag_set(d, rc, "%s", one.msg);
			break;
		}
		/* The messages of the wave not stored (off the chain, or the one that lost)
		 * go first in the next, in their order. */
		for (out = 0, k = 0; k < w; k++)
			if (!bt->msg[todo[k]].seq)
				todo[out++] = todo[k];
		memmove(todo + out, todo + w, (n - w) * sizeof(*todo));
		n = out + n - w;
	}
	free(todo);
	return rc;
}

/* ---- taking back a failed call ----------------------------------------------------------
 *
 * Deleting a message only while it is still the last of its subject cannot be made
 * safe: another writer can append after it between the check and the delete, and
 * its offset then follows one that is gone. So a call's messages are taken back by a
 * publish, whose compare-and-set decides the race: for each stream, the newest run of
 * the call's messages with nothing of another writer's between them (consecutive
 * offsets) is covered by one take-back record, published with
 * Nats-Expected-Last-Subject-Sequence of the run's last message (and, on a serial
 * store, the stream's last sequence). The record has no body; its headers are the
 * stream's state before the run (Sluice-Offset the offset before the run's first
 * message, 0 when the run created the stream; Sluice-Paused, Sluice-Meta-Seq as they
 * were) and Sluice-Taken-Back, the run's first sequence. So it is the subject's last
 * message now, and the stream's record: the next event gets the offset after it
 * again. Reads skip it (and a stream whose record says offset 0 does not exist). Once
 * it is stored, the run's messages are deleted; a writer killed before that leaves
 * them, and the next writer of the stream deletes them (repair_taken) when it finds
 * the record at the tail. A writer whose record lost the race (another writer
 * appended after the run) leaves the run: the call is then partly written, and the
 * error says how many of its events. */

#define CAS_TRIES 200

static int stream_last(struct batch *bt, struct sl_diag *d);

/* Deletes message seq, tried again through elections; gone already is fine. */
static void delete_msg(struct nats_store *s, uint64_t seq)
{
	jsErrCode jerr = 0;
	int64_t until = 0;
	natsStatus st;

	do
		st = js_DeleteMsg(s->js, s->stream, seq, NULL, &jerr);
	while (again(st, jerr, &until));
}

/* The take-back record of the run first..last (messages of one stream of bt). */
static int taken_msg(struct batch *bt, const struct pmsg *first, natsMsg **out)
{
	struct nats_store *s = bt->s;
	struct pmsg none = {0};
	natsMsg *m = NULL;
	char num[32];
	natsStatus st;

	none.type = "";
	snprintf(num, sizeof(num), "%llu", (unsigned long long)first->seq);
	if ((st = natsMsg_Create(&m, bt->st[first->stream].subject, NULL, NULL, 0)) != NATS_OK ||
	    (st = set_headers(m, &none, &first->before, first->got - 1, &s->tmp[1])) != NATS_OK ||
	    (st = natsMsgHeader_Set(m, H_TAKEN, num)) != NATS_OK) {
		natsMsg_Destroy(m);
		return -1;
	}
	*out = m;
	return 0;
}

/* Publishes the take-back record of the run first..last; 0 once it is stored, -1 when
 * another writer appended after the run first (or the store cannot be reached). */
static int take_back_run(struct batch *bt, const struct pmsg *first, const struct pmsg *last)
{
	struct nats_store *s = bt->s;
	const struct pstream *ps = &bt->st[first->stream];
	int tries, ours;

	for (tries = 0; tries < CAS_TRIES; tries++) {
		jsPubAck *ack = NULL;
		jsErrCode jerr = 0;
		natsMsg *m = NULL;
		jsPubOptions po;
		natsStatus st;
		if (s->serial && stream_last(bt, NULL))
			return -1;
		if (taken_msg(bt, first, &m))
			return -1;
		jsPubOptions_Init(&po);
		po.ExpectLastSubjectSeq = last->seq;
		po.MaxWait = WAIT_MS;
		if (s->serial)
			po.ExpectLastSeq = bt->last;
		st = js_PublishMsg(&ack, s->js, m, &po, &jerr);
		jsPubAck_Destroy(ack);
		natsMsg_Destroy(m);
		if (st == NATS_OK)
			return 0;
		if (jerr != JSStreamWrongLastSequenceErr && !transient(st, jerr))
			return -1;
		/* Lost, or no answer: the message after the run says which (ours: stored,
		 * its ack lost; none: the stream's last sequence moved, another stream was
		 * appended to, or the publish did not get there). */
		if (next_msg(s, ps->subject, last->seq + 1, &m, NULL))
			return -1;
		if (m) {
			int64_t taken = 0;
			ours = header_int(m, H_TAKEN, &taken) && (uint64_t)taken == first->seq;
			natsMsg_Destroy(m);
			return ours ? 0 : -1;
		}
		if (tries)
			nats_Sleep(1 + rand_r(&s->seed) % (unsigned)(tries < 20 ? tries : 20));
	}
	return -1;
}

/* Takes back the messages of a failed call (messages [0, upto) of bt) as the section
 * comment says. Returns how many could not be taken back. */
static size_t take_back(struct batch *bt, size_t upto)
{
	struct nats_store *s = bt->s;
	size_t *last = calloc(bt->nst ? bt->nst : 1, sizeof(*last));
	size_t *first = calloc(bt->nst ? bt->nst : 1, sizeof(*first));
	size_t *count = calloc(bt->nst ? bt->nst : 1, sizeof(*count));
	char *closed = calloc(bt->nst ? bt->nst : 1, 1);
	size_t i, si, left = 0;

	if (!last || !first || !count || !closed) {
		for (i = 0; i < upto; i++)
			left += bt->msg[i].seq && !bt->msg[i].dup;
		goto out;
	}
	/* Each stream's run, newest first: a stream's messages are stored in the call's
	 * order; the run ends where an offset is not the one before the next. */
	for (i = upto; i-- > 0;) {
		const struct pmsg *p = &bt->msg[i];
		if (!p->seq || p->dup)
			continue;
		si = p->stream;
		if (!count[si]++)
			last[si] = first[si] = i;
		else if (!closed[si] && bt->msg[first[si]].got == p->got + 1)
			first[si] = i;
		else
			closed[si] = 1; /* (the rest stays) */
	}
	for (si = 0; si < bt->nst; si++) {
		const struct pmsg *f, *l;
		size_t run = 0;
		if (!count[si])
			continue;
		f = &bt->msg[first[si]], l = &bt->msg[last[si]];
		if (take_back_run(bt, f, l)) {
			left += count[si];
			continue;
		}
		for (i = first[si]; i <= last[si]; i++) {
			const struct pmsg *p = &bt->msg[i];
			if (p->stream == si && p->seq && !p->dup) {
				delete_msg(s, p->seq);
				run++;
			}
		}
		left += count[si] - run;
	}
out:
	free(last);
	free(first);
	free(count);
	free(closed);
	return left;
}

/* The stream's last sequence, into bt->last (a serial store's compare-and-set). Read
 * before the states of the subjects it covers: a subject read afterwards is at least
 * as new, so a publish that passes the stream's compare-and-set also had its
 * subject's last message right. */
static int stream_last(struct batch *bt, struct sl_diag *d)
{
	int64_t head = 0;
	int rc;

	if (!bt->s->serial || !bt->s->exists)
		return 0;
	if (!(rc = nats_head_position(&bt->s->base, &head, d)))
		bt->last = (uint64_t)head;
	return rc;
}

/* Reads the stream's last sequence and then the state of stream i of the batch into
 * *v again. */
static int refresh(struct batch *bt, size_t i, struct sview *v, struct sl_diag *d)
{
	int rc = stream_last(bt, d);

	if (!rc)
		rc = load_state(bt->s, bt->st[i].subject, v, d);
	if (!rc && v->taken)
		rc = repair_taken(bt->s, bt->st[i].subject, v, d);
	bt->st[i].fresh = !rc;
	return rc;
}

/* Adopts v (owned) as the live state of p's stream. A change is refused (SL_ECONFLICT,
 * as publish_error says it) unless can_move and p may go after the other writer's
 * events: an event that asks for no offset in a stream that exists, as on SQLite,
 * whose writers wait for each other (the pause door then sees their events). Not the
 * store's own events (a stream/created planned for a stream that someone else created
 * meanwhile must not be written twice). */
static int adopt(struct batch *bt, struct pmsg *p, int can_move, struct sview *v, struct sl_diag *d)
{
	struct pstream *ps = &bt->st[p->stream];
	int changed = v->last_seq != ps->live.last_seq;

	sview_release(&ps->live);
	ps->live = *v;
	if (changed && (!can_move || p->engine || p->offset || !ps->live.head))
		return publish_error(bt->s, ps, NATS_ERR, JSStreamWrongLastSequenceErr, d);
	return 0;
}

/* Publishes p with publish_one. When the server refuses it because a last sequence
 * moved, the stream's and the subject's are read again: a subject that did not
 * change (on a serial store, another stream was appended to) is tried again, one
 * that changed is adopted or refused (adopt). Writers of a busy serial store lose
 * such races often: each try waits a random 1 to min(tries, 20) ms first, so that
 * one writer does not keep losing to the same others. */
static int publish_cas(struct batch *bt, struct pmsg *p, int can_move, struct sl_diag *d)
{
	struct sl_diag one;
	struct sview v;
	int rc, tries;

	for (tries = 0;; tries++) {
		bt->raced = 0;
		sl_diag_init(&one);
		if (!(rc = publish_one(bt, p, &one)))
			return 0;
		if (!bt->raced || tries == CAS_TRIES)
			return sl_diag_set(d, rc, "%s", one.msg);
		if (bt->s->serial && tries)
			nats_Sleep(1 + rand_r(&bt->s->seed) % (unsigned)(tries < 20 ? tries : 20));
		if ((rc = refresh(bt, p->stream, &v, d)) || (rc = adopt(bt, p, can_move, &v, d)))
			return rc;
	}
}

static int publish_batch(struct batch *bt, struct sl_append_result *res, size_t n, size_t *failed,
                         struct sl_diag *d)
{
	size_t i, left, bad = 0;
	int rc;

	if ((rc = publish_all(bt, 0, &bad, d))) {
		if (bad < bt->nmsg && bt->msg[bad].result != (size_t)-1)
			*failed = bt->msg[bad].result;
		if ((left = take_back(bt, bt->nmsg)))
			sl_diag_prefix(
				d,
				"%zu event(s) of this batch were written and could not be taken"
				" back",
				left);
		return rc;
	}
	for (i = 0; i < bt->nmsg; i++) {
		struct pmsg *p = &bt->msg[i];
		if (p->result == (size_t)-1)
			continue;
		res[p->result].offset = p->got;
		res[p->result].position = (int64_t)p->seq;
		res[p->result].duplicate = p->dup;
	}
	for (i = 0; i < n; i++) /* keys repeated within the batch */
		if (res[i].duplicate && res[i].offset < 0) {
			struct pmsg *p = &bt->msg[(size_t)(-res[i].offset - 1)];
			res[i].offset = p->got;
			res[i].position = (int64_t)p->seq;
		}
	return 0;
}

static int nats_append(struct sl_store *base, const struct sl_event_in *ev, size_t n,
                       struct sl_append_result *res, size_t *failed, struct sl_diag *d)
{
	struct batch bt;
	int rc;

	memset(&bt, 0, sizeof(bt));
	bt.s = ns(base);
	if (bt.s->readonly)
		return sl_diag_set(d, SL_EINVAL, "store '%s': opened read-only", bt.s->path);
	sl_store_now(bt.created_at, sizeof(bt.created_at));
	/* The stream's last sequence before the subjects' (stream_last says why). */
	if (!(rc = stream_last(&bt, d)) && !(rc = plan_batch(&bt, ev, n, res, failed, d)))
		rc = publish_batch(&bt, res, n, failed, d);
	batch_release(&bt);
	return rc;
}

/* ---- reading the log ------------------------------------------------------------------- */

/* The first sequence of subject whose event has offset >= from, by bisection over
 * [1, v->last_seq] with "next message at or after" reads. */
static int seek_offset(struct nats_store *s, const char *subject, const struct sview *v,
                       int64_t from, uint64_t *seq, struct sl_diag *d)
{
	uint64_t lo = 1, hi = v->last_seq;
	natsMsg *m = NULL;
	int64_t off;
	int rc;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2, got;
		if ((rc = next_msg(s, subject, mid, &m, d)))
			return rc;
		if (!m || !header_int(m, H_OFFSET, &off))
			break;
		got = msg_seq(m);
		natsMsg_Destroy(m);
		m = NULL;
		if (off >= from)
			hi = mid;
		else
			lo = got + 1;
	}
	natsMsg_Destroy(m);
	*seq = lo;
	return 0;
}

/* The kept reader of one stream when it goes on at offset `from` of subject, else a
 * new one from sequence seq (0: found by bisection first). */
static int stream_reader(struct nats_store *s, const char *subject, const struct sview *v,
                         int64_t from, struct reader **out, struct sl_diag *d)
{
	struct reader *r = s->rd_one;
	uint64_t at = 1;
	int rc;

	*out = NULL;
	if (r && r->next_off == from && !strcmp(r->filter, subject)) {
		*out = r;
		return 0;
	}
	if (from > 1 && (rc = seek_offset(s, subject, v, from, &at, d)))
		return rc;
	reader_free(s->rd_one);
	if (!(s->rd_one = reader_new(subject, at, 0, 0)))
		return oom(d);
	*out = s->rd_one;
	return 0;
}

static int nats_read(struct sl_store *base, const char *stream, int64_t from, int64_t limit,
                     const char *type, sl_event_fn fn, void *ud, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct reader *r;
	struct sview v;
	char *subject;
	int rc;

	(void)type; /* sl_store.c filters (the backend is asked for every event) */
	subject_of(s, stream, &s->tmp[0]);
	sl_buf_addc(&s->tmp[0], '\0');
	if (!sl_buf_ok(&s->tmp[0]) || !(subject = strdup(s->tmp[0].ptr)))
		return oom(d);
	/* The head bounds the read: what is appended while it runs is for the next. */
	if (!(rc = load_state(s, subject, &v, d)) && v.head >= from &&
	    !(rc = stream_reader(s, subject, &v, from, &r, d)))
		rc = walk_reader(s, r, v.last_seq, from, limit, fn, ud, d);
	if (rc && s->rd_one) { /* not kept after an error: where it stands is unclear */
		reader_free(s->rd_one);
		s->rd_one = NULL;
	}
	sview_release(&v);
	free(subject);
	return rc;
}

static int nats_read_all(struct sl_store *base, int64_t from, int64_t limit, sl_event_fn fn,
                         void *ud, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	uint64_t at = from < 1 ? 1 : (uint64_t)from;
	int64_t head;
	int rc;

	if (!s->exists)
		return 0;
	if (!s->rd_all || s->rd_all->next != at) {
		reader_free(s->rd_all);
		if (!(s->rd_all = reader_new(s->all, at, 0, 0)))
			return oom(d);
	}
	if ((rc = nats_head_position(base, &head, d)) ||
	    (rc = walk_reader(s, s->rd_all, (uint64_t)head, 0, limit, fn, ud, d))) {
		reader_free(s->rd_all);
		s->rd_all = NULL;
	}
	return rc;
}

/* The metadata of a stream: the metadata member of the stream/metadata-updated at seq,
 * compacted into b, or "{}". */
static int stream_metadata(struct nats_store *s, uint64_t seq, struct sl_buf *b, struct sl_diag *d)
{
	struct member_pick mp = {"metadata", SL_JSON_OBJECT, NULL, 0};
	struct member_pick pl = {"payload", SL_JSON_OBJECT, NULL, 0};
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	int64_t until = 0;
	natsStatus st;
	const char *data;
	size_t n;
	int rc;

	sl_buf_reset(b);
	if (!seq) {
		sl_buf_adds(b, "{}");
		sl_buf_addc(b, '\0');
		return sl_buf_ok(b) ? 0 : oom(d);
	}
	do
		st = js_GetMsg(&m, s->js, s->stream, seq, NULL, &jerr);
	while (again(st, jerr, &until));
	if (st != NATS_OK)
		return nats_fail(s, d, st, jerr, "cannot read stream metadata");
	data = natsMsg_GetData(m);
	rc = sl_json_members(data, (size_t)natsMsg_GetDataLength(m), pick_member, &pl, d);
	if (!rc && pl.text)
		rc = sl_json_members(pl.text, pl.len, pick_member, &mp, d);
	natsMsg_Destroy(m);
	free(pl.text);
	if (!rc) {
		const char *c = mp.text ? sl_store_compact(mp.text, mp.len, &n, &s->tmp[1]) : "{}";
		if (!mp.text)
			n = 2;
		sl_buf_add(b, c, n);
		sl_buf_addc(b, '\0');
		rc = c && sl_buf_ok(b) ? 0 : oom(d);
	}
	free(mp.text);
	return rc;
}

/* A stream as its last message says it is (list_states). */
struct sstate {
	char *name;
	struct sview v; /* v.head 0: its last message is no sluice event (the store is damaged) */
	char *bad;      /* ... and then why (owned), else NULL; v.head 0 without bad: a subject
	                 * whose events were all taken back (no stream) */
};

/* A subject of list_states that is no stream. */
static int sstate_none(const struct sstate *e)
{
	return !e->v.head && !e->bad;
}

struct sstates {
	struct sstate *e;
	size_t n, cap;
};

static void sstates_release(struct sstates *ss)
{
	size_t i;

	for (i = 0; i < ss->n; i++) {
		free(ss->e[i].name);
		free(ss->e[i].bad);
		sview_release(&ss->e[i].v);
	}
	free(ss->e);
	memset(ss, 0, sizeof(*ss));
}

static int cmp_sstate(const void *a, const void *b)
{
	return strcmp(((const struct sstate *)a)->name, ((const struct sstate *)b)->name);
}

static int sstates_add(struct nats_store *s, struct sstates *ss, natsMsg *m, struct sl_diag *d)
{
	struct sstate *e;
	struct sl_diag bad;
	int rc;

	if (!name_of(s, natsMsg_GetSubject(m), &s->tmp[0]))
		return 0; /* not a subject of a sluice stream */
	if (ss->n == ss->cap) {
		size_t c = ss->cap ? ss->cap * 2 : 64;
		struct sstate *g = realloc(ss->e, c * sizeof(*g));
		if (!g)
			return oom(d);
		ss->e = g, ss->cap = c;
	}
	e = &ss->e[ss->n];
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(s->tmp[0].ptr)))
		return oom(d);
	ss->n++;
	sl_diag_init(&bad);
	if ((rc = state_from_msg(s, m, &e->v, &bad)) == 0)
		return 0;
	if (rc != SL_ECORRUPT)
		return sl_diag_set(d, rc, "%s", sl_diag_msg(&bad));
	memset(&e->v, 0, sizeof(e->v));
	return (e->bad = strdup(sl_diag_msg(&bad))) ? 0 : oom(d);
}

/* The error of a stream whose last message is no sluice event. */
static int sstate_error(const struct sstate *e, struct sl_diag *d)
{
	return sl_diag_set(d, SL_ECORRUPT, "%s", e->bad);
}

/* Every stream of the namespace with its state, sorted by name: one consumer that
 * delivers the last message of each subject, headers only, fetched in batches (not a
 * request per stream). A last message that is no sluice event sets bad, for the
 * caller to decide. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sluice names of every subject in the namespace, sorted. */
static int list_names(struct nats_store *s, char ***out, size_t *count, struct sl_diag *d)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsOptions o;
	natsStatus st;
	char **names;
	size_t n = 0;
	int i, total;

	*out = NULL, *count = 0;
	jsOptions_Init(&o);
	o.Stream.Info.SubjectsFilter = s->all;
	st = stream_info(s, &o, &si, &jerr);
	if (st != NATS_OK)
		return nats_fail(s, d, st, jerr, "cannot list streams");
	total = si->State.Subjects ? si->State.Subjects->Count : 0;
	if (!(names = calloc((size_t)total + 1, sizeof(*names)))) {
		jsStreamInfo_Destroy(si);
		return oom(d);
	}
	for (i = 0; i < total; i++)
		if (name_of(s, si->State.Subjects->List[i].Subject, &s->tmp[0]) &&
		    !(names[n++] = strdup(s->tmp[0].ptr)))
			break;
	jsStreamInfo_Destroy(si);
	if (i < total) {
		while (n)
			free(names[--n]);
		free(names);
		return oom(d);
	}
	qsort(names, n, sizeof(*names), cmp_str);
	*out = names, *count = n;
	return 0;
}

/* Adds stream `name` with the state its last message gives (one request). */
static int sstates_load(struct nats_store *s, struct sstates *ss, const char *name,
                        struct sl_diag *d)
{
	struct sstate *e;
	struct sl_diag bad;
	struct sl_buf subj;
	int rc;

	if (ss->n == ss->cap) {
		size_t c = ss->cap ? ss->cap * 2 : 64;
		struct sstate *g = realloc(ss->e, c * sizeof(*g));
		if (!g)
			return oom(d);
		ss->e = g, ss->cap = c;
	}
	e = &ss->e[ss->n];
	memset(e, 0, sizeof(*e));
	if (!(e->name = strdup(name)))
		return oom(d);
	ss->n++;
	sl_buf_init(&subj);
	subject_of(s, name, &subj);
	sl_buf_addc(&subj, '\0');
	sl_diag_init(&bad);
	if (!sl_buf_ok(&subj))
		rc = oom(d);
	else if ((rc = load_state(s, subj.ptr, &e->v, &bad)) == SL_ECORRUPT)
		rc = (e->bad = strdup(sl_diag_msg(&bad))) ? 0 : oom(d);
	else if (rc)
		rc = sl_diag_set(d, rc, "%s", sl_diag_msg(&bad));
	sl_buf_release(&subj);
	return rc;
}

/* list_states one request per stream: the subjects from the stream's info, then the
 * last message of each. */
static int list_states_each(struct nats_store *s, struct sstates *ss, struct sl_diag *d)
{
	char **names = NULL;
	size_t i, n = 0;
	int rc;

	if ((rc = list_names(s, &names, &n, d)))
		return rc;
	for (i = 0; i < n && !rc; i++)
		rc = sstates_load(s, ss, names[i], d);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* The stream's last sequence and how many subjects it has. */
static int stream_counts(struct nats_store *s, int64_t *last, int64_t *subjects, struct sl_diag *d)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st;

	st = stream_info(s, NULL, &si, &jerr);
	if (st != NATS_OK)
		return nats_fail(s, d, st, jerr, "cannot list streams");
	*last = (int64_t)si->State.LastSeq;
	*subjects = si->State.NumSubjects;
	jsStreamInfo_Destroy(si);
	return 0;
}

static int list_states(struct nats_store *s, struct sstates *ss, struct sl_diag *d)
{
	struct reader *r = reader_new(s->all, 1, 1, 1);
	int64_t head = 0, subjects = 0, seen = 0;
	natsMsg *m = NULL;
	int rc = 0;

	memset(ss, 0, sizeof(*ss));
	if (!r)
		return oom(d);
	r->expires = LIST_EXPIRES_NS;
	/* The stream's last message is the last one this consumer delivers. */
	if ((rc = stream_counts(s, &head, &subjects, d))) {
		reader_free(r);
		return rc;
	}
	while (!(rc = reader_peek(s, r, FETCH_MAX, (uint64_t)head, &m, d)) && m) {
		m = reader_take(r);
		seen++;
		rc = sstates_add(s, ss, m, d);
		natsMsg_Destroy(m);
		m = NULL;
		if (rc)
			break;
	}
	reader_free(r);
	/* A 2.9 server can stop short in a listing of a log where messages were deleted
	 * (taken back): then one request per stream, as the subjects of the stream's info
	 * say. */
	if (!rc && seen < subjects) {
		sstates_release(ss);
		rc = list_states_each(s, ss, d);
	}
	if (rc) {
		sstates_release(ss);
		return rc;
	}
	if (ss->n)
		qsort(ss->e, ss->n, sizeof(*ss->e), cmp_sstate);
	return 0;
}

static int under_prefix(const char *name, const char *prefix)
{
	size_t n = prefix ? strlen(prefix) : 0;

	return !n || (!strncmp(name, prefix, n) && (name[n] == '\0' || name[n] == '/'));
}

static int nats_streams(struct sl_store *base, const char *prefix, sl_stream_fn fn, void *ud,
                        struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct sl_stream_info info;
	struct sstates ss;
	struct sl_buf meta;
	size_t i;
	int rc = 0;

	if (!s->exists)
		return 0;
	if ((rc = list_states(s, &ss, d)))
		return rc;
	sl_buf_init(&meta);
	for (i = 0; i < ss.n && !rc; i++) {
		const struct sview *v = &ss.e[i].v;
		if (!under_prefix(ss.e[i].name, prefix) || sstate_none(&ss.e[i]))
			continue;
		if (ss.e[i].bad) {
			rc = sstate_error(&ss.e[i], d);
			break;
		}
		if ((rc = stream_metadata(s, v->meta_seq, &meta, d)))
			break;
		info.stream = ss.e[i].name;
		info.head = v->head;
		info.paused = v->paused;
		info.pause_reason = v->reason;
		info.metadata = meta.ptr;
		if ((rc = fn(ud, &info)))
			rc = rc < 0 ? rc : 1;
	}
	sstates_release(&ss);
	sl_buf_release(&meta);
	return rc > 0 ? 0 : rc;
}

static int nats_head_position(struct sl_store *base, int64_t *pos, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus st;

	*pos = 0;
	if (!s->exists)
		return 0;
	st = stream_info(s, NULL, &si, &jerr);
	if (st != NATS_OK)
		return nats_fail(s, d, st, jerr, "cannot read head position");
	*pos = (int64_t)si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return 0;
}

static int nats_data_version(struct sl_store *base, int64_t *v, struct sl_diag *d)
{
	int64_t pos;
	int rc = nats_head_position(base, &pos, d);

	/* The stream's last sequence, which any writer's append moves, and this
	 * connection's own appends (as the SQLite backend combines them). */
	*v = rc ? 0 : (int64_t)((uint64_t)ns(base)->commits << 32 ^ (uint64_t)pos);
	return rc;
}

/* ---- the wake: a subscription to the event subjects ---------------------------------------
 *
 * Every event is a message published to its subject, so a core NATS subscription to
 * "<ns>.ev.>" sees each append of any process (a JetStream publish is a plain
 * publish that the stream also stores), whatever node of the cluster it went to. The
 * message itself is not used (it has no stream sequence yet): it only says "read
 * again". libnats runs the callback on its own thread; the caller's fn is the one
 * thing called there, under wake_mu so that nats_wake_stop can wait it out. A
 * subscription survives reconnects (libnats subscribes again); what it misses while
 * the connection is down the pump's slow poll catches. */

static void on_event_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
	struct nats_store *s = ud;

	(void)nc;
	(void)sub;
	natsMsg_Destroy(m);
	pthread_mutex_lock(&s->wake_mu);
	if (s->wake_fn)
		s->wake_fn(s->wake_ud);
	pthread_mutex_unlock(&s->wake_mu);
}

static int nats_wake_start(struct sl_store *base, sl_store_wake_fn fn, void *ud, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	natsStatus st;

	nats_wake_stop(base);
	pthread_mutex_lock(&s->wake_mu);
	s->wake_fn = fn, s->wake_ud = ud;
	pthread_mutex_unlock(&s->wake_mu);
	if ((st = natsConnection_Subscribe(&s->wake_sub, s->nc, s->all, on_event_msg, s)) !=
	    NATS_OK) {
		nats_wake_stop(base);
		return nats_fail(s, d, st, 0, "cannot subscribe to the event subjects");
	}
	/* Only the arrival matters: a burst beyond these limits is dropped, not queued. */
	natsSubscription_SetPendingLimits(s->wake_sub, 4096, 8 * 1024 * 1024);
	return 0;
}

static void nats_wake_stop(struct sl_store *base)
{
	struct nats_store *s = ns(base);

	pthread_mutex_lock(&s->wake_mu); /* a callback running now ends first */
	s->wake_fn = NULL, s->wake_ud = NULL;
	pthread_mutex_unlock(&s->wake_mu);
	if (s->wake_sub) {
		natsSubscription_Unsubscribe(s->wake_sub);
		natsSubscription_Destroy(s->wake_sub);
		s->wake_sub = NULL;
	}
}

/* ---- leases: one key per processor in the bucket "<ns>_leases" --------------------------
 *
 * "<proc>" is the processor's lease, "<proc>.p<N>" the lease of its partition N
 * (partitioned runners), "<proc>.runners" its runners' heartbeats (see there). A
 * lease's value is {"owner":..,"epoch":..,"expiresAt":..}; every change is a
 * compare-and-set on the key's revision (kvStore_Create for the first, kvStore_Update
 * after), so two runners racing for a lease cannot both win: the loser reads the row
 * again and finds the winner. Times are the local clock (sl_store_now_ms), as on SQLite.
 */

#define LEASE_TRIES 8

/* Opens (creating when writing) the bucket "<ns>_<suffix>" into *slot; *none is 1
 * when reading finds none. */
static int open_bucket(struct nats_store *s, kvStore **slot, const char *suffix, int create,
                       int *none, struct sl_diag *d)
{
	char name[128];
	int64_t until = 0;
	kvConfig cfg;
	natsStatus st;

	*none = 0;
	if (*slot)
		return 0;
	snprintf(name, sizeof(name), "%s_%s", s->space, suffix);
	do
		st = js_KeyValue(slot, s->js, name);
	while (again(st, 0, &until));
	if (st == NATS_OK)
		return 0;
	*slot = NULL;
	if (!create) {
		*none = 1;
		return 0;
	}
	kvConfig_Init(&cfg);
	cfg.Bucket = name;
	cfg.Description = "sluice";
	cfg.History = 1;
	cfg.StorageType = js_FileStorage;
	cfg.Replicas = (int)replicas(s);
	if ((st = js_CreateKeyValue(slot, s->js, &cfg)) != NATS_OK) {
		*slot = NULL;
		return sl_diag_set(d, SL_EIO, "store '%s': cannot create the bucket %s: %s",
		                   s->path, name, last_error(st));
	}
	return 0;
}

/* Opens (creating when writing) the lease bucket; *none is 1 when reading finds none. */
static int lease_bucket(struct nats_store *s, int create, int *none, struct sl_diag *d)
{
	return open_bucket(s, &s->leases, "leases", create, none, d);
}

static void key_add(struct sl_buf *b, const char *str);

/* The bucket key of the lease of processor proc (part < 0) or of its partition part:
 * its bytes, those outside [A-Za-z0-9_-] as =XX (a key may hold [-/_=.A-Za-z0-9], so
 * this is one-to-one and never holds a '.'), then ".p<part>" for a partition. */
static void lease_key(const char *proc, int part, struct sl_buf *b)
{
	sl_buf_reset(b);
	key_add(b, proc);
	if (part >= 0)
		sl_buf_addf(b, ".p%d", part);
	sl_buf_addc(b, '\0');
}

static int pick_lease(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct sl_lease *l = ud;

	(void)d;
	if (is_key(m, "owner") && m->kind == SL_JSON_STRING && m->len < sizeof(l->owner)) {
		memcpy(l->owner, m->text, m->len);
		l->owner[m->len] = '\0';
	} else if (is_key(m, "epoch") && m->kind == SL_JSON_INTEGER) {
		l->epoch = m->integer;
	} else if (is_key(m, "expiresAt") && m->kind == SL_JSON_INTEGER) {
		l->expires_at = m->integer;
	}
	return 0;
}

/* Reads the last message of key in bucket kv from the leader of the bucket's stream
 * into *m (NULL when the key has none, or its last operation deleted it); *rev is its
 * revision. Not kvStore_Get: that uses direct gets, which any replica may answer, one
 * that has not applied the latest writes yet too, and every compare-and-set on a
 * revision read there fails (a checkpoint then faults after its retries). With
 * `tries`, a request that fails for a moment is tried again (again()). */
static natsStatus kv_read(struct nats_store *s, kvStore *kv, const char *key, int tries,
                          natsMsg **m, uint64_t *rev)
{
	char stream[160], subj[600];
	const char *op = NULL;
	int64_t until = 0;
	jsErrCode jerr = 0;
	natsStatus st;

	*m = NULL;
	*rev = 0;
	snprintf(stream, sizeof(stream), "KV_%s", kvStore_Bucket(kv));
	snprintf(subj, sizeof(subj), "$KV.%s.%s", kvStore_Bucket(kv), key);
	do
		st = js_GetLastMsg(m, s->js, stream, subj, NULL, &jerr);
	while (tries && again(st, jerr, &until));
	if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
		*m = NULL;
		return NATS_OK;
	}
	if (st != NATS_OK)
		return st;
	*rev = msg_seq(*m);
	if (natsMsgHeader_Get(*m, "KV-Operation", &op) == NATS_OK && op &&
	    (!strcmp(op, "DEL") || !strcmp(op, "PURGE"))) {
		natsMsg_Destroy(*m);
		*m = NULL;
		*rev = 0;
	}
	return NATS_OK;
}

/* Reads the lease row of key: *rev 0 (and l zeroed) when there is none. */
static int lease_read(struct nats_store *s, const char *key, struct sl_lease *l, uint64_t *rev,
                      struct sl_diag *d)
{
	natsMsg *m = NULL;
	natsStatus st;
	int rc = 0;

	memset(l, 0, sizeof(*l));
	st = kv_read(s, s->leases, key, 0, &m, rev); /* (the lease keeper tries again itself) */
	if (st != NATS_OK)
		return nats_fail(s, d, st, 0, "cannot read lease");
	if (m && sl_json_members(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), pick_lease,
	                         l, NULL))
		rc = sl_diag_set(d, SL_ECORRUPT, "store '%s': the lease of '%s' is damaged",
		                 s->path, key);
	natsMsg_Destroy(m);
	return rc;
}

/* Writes row l at key if the key is still at revision rev (0: absent); *lost is 1
 * when another writer changed it first. */
static int lease_write(struct nats_store *s, const char *key, const struct sl_lease *l,
                       uint64_t rev, int *lost, struct sl_diag *d)
{
	struct sl_buf b;
	natsStatus st;
	int rc = 0;

	*lost = 0;
	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"owner\":");
	sl_buf_addjstr(&b, l->owner, strlen(l->owner));
	sl_buf_addf(&b, ",\"epoch\":%lld,\"expiresAt\":%lld}", (long long)l->epoch,
	            (long long)l->expires_at);
	if (!sl_buf_ok(&b)) {
		sl_buf_release(&b);
		return oom(d);
	}
	st = rev ? kvStore_Update(NULL, s->leases, key, b.ptr, (int)b.len, rev)
	         : kvStore_Create(NULL, s->leases, key, b.ptr, (int)b.len);
	sl_buf_release(&b);
	if (st != NATS_OK) {
		/* The compare-and-set failed, or the write did: reading again tells. */
		struct sl_lease now;
		uint64_t r;
		if ((rc = lease_read(s, key, &now, &r, d)) == 0 && r == rev)
			rc = nats_fail(s, d, st, 0, "cannot write lease");
		*lost = rc == 0;
	}
	return rc;
}

/* Takes or renews the lease of proc (part < 0) or of its partition part. */
static int lease_acquire(struct sl_store *base, const char *proc, int part, const char *owner,
                         int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct sl_lease l;
	uint64_t rev;
	int rc, none, lost = 1, tries;

	memset(out, 0, sizeof(*out));
	if (s->readonly)
		return sl_diag_set(d, SL_EINVAL, "store '%s': opened read-only", s->path);
	if ((rc = lease_bucket(s, 1, &none, d)))
		return rc;
	lease_key(proc, part, &s->tmp[0]);
	if (!sl_buf_ok(&s->tmp[0]))
		return oom(d);
	for (tries = 0; lost && tries < LEASE_TRIES; tries++) {
		int64_t now = sl_store_now_ms();
		int mine;
		if ((rc = lease_read(s, s->tmp[0].ptr, &l, &rev, d)))
			return rc;
		mine = rev && !strcmp(l.owner, owner);
		if (rev && *l.owner && !mine && l.expires_at > now) {
			*out = l; /* a live runner holds it */
			return 0;
		}
		if (!mine)
			l.epoch++; /* it changes hands: fence off the previous holder */
		l.expires_at = now + ttl_ms;
		snprintf(l.owner, sizeof(l.owner), "%s", owner);
		if ((rc = lease_write(s, s->tmp[0].ptr, &l, rev, &lost, d)))
			return rc;
	}
	if (lost)
		return sl_diag_set(d, SL_EBUSY,
		                   "store '%s': the lease of '%s' changed %d times while it was"
		                   " being taken",
		                   s->path, proc, LEASE_TRIES);
	*out = l;
	return 0;
}

static int lease_release(struct sl_store *base, const char *proc, int part, const char *owner,
                         struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct sl_lease l;
	uint64_t rev;
	int rc, none, lost = 1, tries;

	if (s->readonly)
		return sl_diag_set(d, SL_EINVAL, "store '%s': opened read-only", s->path);
	if ((rc = lease_bucket(s, 0, &none, d)) || none)
		return rc;
	lease_key(proc, part, &s->tmp[0]);
	if (!sl_buf_ok(&s->tmp[0]))
		return oom(d);
	for (tries = 0; lost && tries < LEASE_TRIES; tries++) {
		if ((rc = lease_read(s, s->tmp[0].ptr, &l, &rev, d)) || !rev ||
		    strcmp(l.owner, owner))
			return rc; /* not owner's: nothing to do */
		l.owner[0] = '\0';
		l.expires_at = 0;
		if ((rc = lease_write(s, s->tmp[0].ptr, &l, rev, &lost, d)))
			return rc;
	}
	return lost ? sl_diag_set(d, SL_EBUSY, "store '%s': cannot release the lease of '%s'",
	                          s->path, proc)
	            : 0;
}

static int lease_get(struct sl_store *base, const char *proc, int part, struct sl_lease *out,
                     int *found, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	uint64_t rev;
	int rc, none;

	memset(out, 0, sizeof(*out));
	*found = 0;
	if ((rc = lease_bucket(s, 0, &none, d)) || none)
		return rc;
	lease_key(proc, part, &s->tmp[0]);
	if (!sl_buf_ok(&s->tmp[0]))
		return oom(d);
	if ((rc = lease_read(s, s->tmp[0].ptr, out, &rev, d)))
		return rc;
	*found = rev != 0;
	return 0;
}

static int nats_lease_acquire(struct sl_store *base, const char *proc, const char *owner,
                              int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d)
{
	return lease_acquire(base, proc, -1, owner, ttl_ms, out, d);
}

static int nats_lease_release(struct sl_store *base, const char *proc, const char *owner,
                              struct sl_diag *d)
{
	return lease_release(base, proc, -1, owner, d);
}

static int nats_lease_get(struct sl_store *base, const char *proc, struct sl_lease *out, int *found,
                          struct sl_diag *d)
{
	return lease_get(base, proc, -1, out, found, d);
}

static int nats_part_acquire(struct sl_store *base, const char *proc, int part, const char *owner,
                             int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d)
{
	return lease_acquire(base, proc, part, owner, ttl_ms, out, d);
}

static int nats_part_release(struct sl_store *base, const char *proc, int part, const char *owner,
                             struct sl_diag *d)
{
	return lease_release(base, proc, part, owner, d);
}

static int nats_part_get(struct sl_store *base, const char *proc, int part, struct sl_lease *out,
                         int *found, struct sl_diag *d)
{
	return lease_get(base, proc, part, out, found, d);
}

/* ---- the runners of a partitioned processor: one key "<proc>.runners" ----------------------
 *
 * The value is {"<owner>": expiresAt, ...}: every runner of the processor with the
 * time its heartbeat ends (unix ms, local clock as for leases). A runner rewrites it
 * each round by compare-and-set: drops the expired heartbeats, sets its own to now +
 * ttl (or removes it when it leaves). */

#define RUNNERS_MAX 256

struct runners {
	char *owner[RUNNERS_MAX];
	int64_t until[RUNNERS_MAX];
	size_t n;
	int oom;
};

static int pick_runner(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct runners *r = ud;

	(void)d;
	if (m->kind != SL_JSON_INTEGER || !m->keylen || m->keylen > SL_OWNER_MAX ||
	    r->n == RUNNERS_MAX)
		return 0;
	if (!(r->owner[r->n] = malloc(m->keylen + 1))) {
		r->oom = 1;
		return 0;
	}
	memcpy(r->owner[r->n], m->key, m->keylen);
	r->owner[r->n][m->keylen] = '\0';
	r->until[r->n++] = m->integer;
	return 0;
}

static void runners_release(struct runners *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->owner[i]);
	r->n = 0;
}

/* Reads the runners of key into r: *rev 0 when there is no such key. */
static int runners_read(struct nats_store *s, const char *key, struct runners *r, uint64_t *rev,
                        struct sl_diag *d)
{
	natsMsg *m = NULL;
	natsStatus st;

	r->n = 0;
	r->oom = 0;
	/* (From the leader, as a lease: kv_read. The keeper tries again itself.) */
	if ((st = kv_read(s, s->leases, key, 0, &m, rev)) != NATS_OK)
		return nats_fail(s, d, st, 0, "cannot read the runners");
	if (m && natsMsg_GetDataLength(m) > 0)
		sl_json_members(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), pick_runner,
		                r, NULL);
	natsMsg_Destroy(m);
	if (r->oom) {
		runners_release(r);
		return oom(d);
	}
	return 0;
}

/* Writes r (the live ones only) at key if it is still at revision rev. */
static int runners_write(struct nats_store *s, const char *key, const struct runners *r,
                         uint64_t rev, int *lost, struct sl_diag *d)
{
	struct sl_buf b;
	natsStatus st;
	size_t i;

	*lost = 0;
	sl_buf_init(&b);
	sl_buf_addc(&b, '{');
	for (i = 0; i < r->n; i++) {
		if (i)
			sl_buf_addc(&b, ',');
		sl_buf_addjstr(&b, r->owner[i], strlen(r->owner[i]));
		sl_buf_addf(&b, ":%lld", (long long)r->until[i]);
	}
	sl_buf_addc(&b, '}');
	if (!sl_buf_ok(&b)) {
		sl_buf_release(&b);
		return oom(d);
	}
	st = rev ? kvStore_Update(NULL, s->leases, key, b.ptr, (int)b.len, rev)
	         : kvStore_Create(NULL, s->leases, key, b.ptr, (int)b.len);
	sl_buf_release(&b);
	if (st != NATS_OK) {
		struct runners now = {0};
		uint64_t r2;
		int rc = runners_read(s, key, &now, &r2, d);
		runners_release(&now);
		if (rc)
			return rc;
		if (r2 == rev)
			return nats_fail(s, d, st, 0, "cannot write the runners");
		*lost = 1;
	}
	return 0;
}

/* Drops the expired heartbeats of r (and owner's own); adds owner's until `until`
 * when until > 0. */
static void runners_update(struct runners *r, const char *owner, int64_t until, int64_t now)
{
	size_t i, k = 0;

	for (i = 0; i < r->n; i++) {
		if (r->until[i] <= now || (owner && !strcmp(r->owner[i], owner))) {
			free(r->owner[i]);
			continue;
		}
		r->owner[k] = r->owner[i];
		r->until[k++] = r->until[i];
	}
	r->n = k;
	if (owner && until > 0 && r->n < RUNNERS_MAX && (r->owner[r->n] = strdup(owner)))
		r->until[r->n++] = until;
}

static int nats_runners(struct sl_store *base, const char *proc, const char *owner, int64_t ttl_ms,
                        sl_runner_fn fn, void *ud, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct runners r = {0};
	uint64_t rev;
	int rc, none, lost = 1, tries;
	char key[3 * SL_STREAM_MAX + 16];
	size_t i;

	if (owner && s->readonly)
		return sl_diag_set(d, SL_EINVAL, "store '%s': opened read-only", s->path);
	if ((rc = lease_bucket(s, owner != NULL, &none, d)) || none)
		return rc;
	lease_key(proc, -1, &s->tmp[0]);
	if (!sl_buf_ok(&s->tmp[0]))
		return oom(d);
	snprintf(key, sizeof(key), "%s.runners", s->tmp[0].ptr);
	for (tries = 0; lost && tries < LEASE_TRIES; tries++) {
		int64_t now = sl_store_now_ms();
		runners_release(&r);
		if ((rc = runners_read(s, key, &r, &rev, d)))
			return rc;
		runners_update(&r, owner, ttl_ms > 0 ? now + ttl_ms : 0, now);
		if (!owner)
			lost = 0;
		else if ((rc = runners_write(s, key, &r, rev, &lost, d)))
			goto out;
	}
	if (lost) {
		rc = sl_diag_set(d, SL_EBUSY,
		                 "store '%s': the runners of '%s' changed %d times while they were"
		                 " being written",
		                 s->path, proc, LEASE_TRIES);
		goto out;
	}
	{
		size_t idx[RUNNERS_MAX], j;
		for (i = 0; i < r.n; i++) { /* insertion sort by owner: a few runners */
			for (j = i; j > 0 && strcmp(r.owner[idx[j - 1]], r.owner[i]) > 0; j--)
				idx[j] = idx[j - 1];
			idx[j] = i;
		}
		for (i = 0; i < r.n && !rc; i++)
			rc = fn(ud, r.owner[idx[i]], r.until[idx[i]]);
	}
out:
	runners_release(&r);
	return rc;
}

/* ---- verify: a walk over the log in position order ---------------------------------- */

struct vstream {
	char *name;
	int64_t head; /* the offset of the subject's last message */
	int64_t next; /* the offset that must come next */
	int64_t last_pos;
};

struct vwalk {
	struct nats_store *s;
	sl_problem_fn fn;
	void *ud;
	struct sl_store_verify_summary *sum;
	struct vstream *st;
	size_t n;
	char msg[512];
};

static void vproblem(struct sl_store_problem *p, const char *what, const char *stream)
{
	memset(p, 0, sizeof(*p));
	p->problem = what;
	p->stream = stream;
	p->offset = p->to = p->position = p->head = -1;
}

static int vreport(struct vwalk *w, struct sl_store_problem *p)
{
	w->sum->problems++;
	p->message = w->msg;
	return w->fn ? w->fn(w->ud, p) : 0;
}

static int cmp_vstream(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, ((const struct vstream *)b)->name);
}

/* Checks one event against what came before it on its stream. */
static int vevent(struct vwalk *w, const struct sl_event *ev)
{
	const char *name = ev->stream;
	struct vstream *vs = bsearch(&name, w->st, w->n, sizeof(*w->st), cmp_vstream);
	int created = type_is(ev->type, "stream/created"), rc;
	struct sl_store_problem p;

	w->sum->events++;
	if (!vs)
		return 0; /* a stream that appeared after the streams were listed */
	if (ev->offset < vs->next) {
		vproblem(&p, "position-order", vs->name);
		p.offset = ev->offset, p.position = ev->position;
		snprintf(
			w->msg, sizeof(w->msg),
			"stream '%s': the event at offset %lld has position %lld, after offset %lld"
			" (position %lld)",
			vs->name, (long long)ev->offset, (long long)ev->position,
			(long long)vs->next - 1, (long long)vs->last_pos);
		return vreport(w, &p);
	}
	if (ev->offset > vs->next) {
		vproblem(&p, "missing-offsets", vs->name);
		p.offset = vs->next, p.to = ev->offset - 1;
		if (p.offset == p.to)
			snprintf(w->msg, sizeof(w->msg), "stream '%s' has no event at offset %lld",
			         vs->name, (long long)p.offset);
		else
			snprintf(w->msg, sizeof(w->msg),
			         "stream '%s' has no events at offsets %lld to %lld", vs->name,
			         (long long)p.offset, (long long)p.to);
		if ((rc = vreport(w, &p)))
			return rc;
	}
	vs->next = ev->offset + 1;
	vs->last_pos = ev->position;
	if ((ev->offset == 1) == created)
		return 0;
	vproblem(&p, ev->offset == 1 ? "bad-first-event" : "extra-created", vs->name);
	p.offset = ev->offset, p.position = ev->position;
	snprintf(w->msg, sizeof(w->msg),
	         ev->offset == 1 ? "stream '%s' does not begin with stream/created"
	                         : "stream '%s' has a second stream/created, at offset %lld",
	         vs->name, (long long)ev->offset);
	return vreport(w, &p);
}

/* Checks a take-back record against what came before it on its stream: the messages
 * it took back are gone (take_back deletes them; a writer killed in between leaves
 * them, and the next writer of the stream deletes them: repair_taken). */
static int vtaken(struct vwalk *w, const struct msg_event *me)
{
	const char *name = me->ev.stream;
	struct vstream *vs = bsearch(&name, w->st, w->n, sizeof(*w->st), cmp_vstream);
	struct sl_store_problem p;
	int rc = 0;

	if (!vs)
		return 0;
	if (vs->last_pos >= (int64_t)me->taken) {
		vproblem(&p, "taken-back-present", vs->name);
		p.position = me->ev.position;
		snprintf(w->msg, sizeof(w->msg),
		         "stream '%s': the events at positions %llu to %lld were taken back (at"
		         " position %lld) but are still in the log",
		         vs->name, (unsigned long long)me->taken, (long long)vs->last_pos,
		         (long long)me->ev.position);
		rc = vreport(w, &p);
	} else if (vs->next - 1 > me->ev.offset) {
		/* Events it did not take back hold the offsets it gives out again. */
		vproblem(&p, "taken-back-present", vs->name);
		p.position = me->ev.position, p.offset = me->ev.offset + 1, p.to = vs->next - 1;
		snprintf(w->msg, sizeof(w->msg),
		         "stream '%s': the take-back record at position %lld sets the head back to"
		         " %lld, below the events at offsets %lld to %lld that are still there",
		         vs->name, (long long)me->ev.position, (long long)me->ev.offset,
		         (long long)p.offset, (long long)p.to);
		rc = vreport(w, &p);
	}
	vs->next = me->ev.offset + 1;
	return rc;
}

/* Lists the streams with their heads, taken after `upto` was read (so every event at
 * or below it belongs to a listed stream). */
static int vlist(struct vwalk *w, struct sl_diag *d)
{
	struct sstates ss;
	size_t i;
	int rc;

	/* A last message that is no sluice event shows in the walk. */
	if ((rc = list_states(w->s, &ss, d)))
		return rc;
	if (!(w->st = calloc(ss.n + 1, sizeof(*w->st)))) {
		sstates_release(&ss);
		return oom(d);
	}
	for (i = 0; i < ss.n; i++) {
		w->st[i].name = ss.e[i].name;
		ss.e[i].name = NULL;
		w->st[i].next = 1;
		w->st[i].head = ss.e[i].v.head;
		w->sum->streams += !sstate_none(&ss.e[i]);
	}
	w->n = ss.n;
	sstates_release(&ss);
	return 0;
}

/* After the walk: each stream's last offset is the one its last message says. */
static int vheads(struct vwalk *w)
{
	struct sl_store_problem p;
	size_t i;
	int rc;

	for (i = 0; i < w->n; i++) {
		struct vstream *vs = &w->st[i];
		if (vs->next - 1 >= vs->head)
			continue; /* (appended to since: the walk stopped at the old head) */
		vproblem(&p, "head-mismatch", vs->name);
		p.head = vs->head, p.offset = vs->next - 1;
		snprintf(w->msg, sizeof(w->msg),
		         "stream '%s' records head %lld but its last event is at offset %lld",
		         vs->name, (long long)vs->head, (long long)p.offset);
		if ((rc = vreport(w, &p)))
			return rc;
	}
	return 0;
}

/* Walks every message up to `upto` in position order; a message that is not a sluice
 * event is an integrity problem, reported, and the walk goes on. */
static int vwalk_log(struct vwalk *w, uint64_t upto, sl_verify_progress_fn progress,
                     struct sl_diag *d)
{
	struct sl_store_problem p;
	struct msg_event me;
	struct sl_diag bad;
	struct reader *r;
	uint64_t at = 1;
	natsMsg *m = NULL;
	int rc = 0;

	if (!(r = reader_new(w->s->all, 1, 0, 0)))
		return oom(d);
	sl_buf_init(&me.buf);
	while (at <= upto) {
		natsMsg *peek = NULL;
		if ((rc = reader_peek(w->s, r, FETCH_MAX, upto, &peek, d)) || !peek)
			break;
		m = reader_take(r);
		at = msg_seq(m) + 1;
		sl_diag_init(&bad);
		if ((rc = msg_to_event(w->s, m, &me, &bad)) == 0) {
			rc = vevent(w, &me.ev);
		} else if (rc == TAKEN_BACK) {
			rc = vtaken(w, &me);
		} else {
			vproblem(&p, "integrity", NULL);
			p.position = (int64_t)at - 1;
			snprintf(w->msg, sizeof(w->msg), "%s", sl_diag_msg(&bad));
			rc = vreport(w, &p);
		}
		natsMsg_Destroy(m);
		m = NULL;
		if (rc)
			break;
		if (progress && w->sum->events % 10000 == 0)
			progress(w->ud, w->sum->events, (int64_t)upto);
	}
	natsMsg_Destroy(m);
	sl_buf_release(&me.buf);
	reader_free(r);
	return rc;
}

/* Checks every stream's messages: offsets contiguous from 1, one stream/created at
 * offset 1, each message a sluice event, and each stream's last message naming its
 * last offset; every checkpoint at or below its stream's head (checkpoint-ahead). The
 * walk is skipped with SL_VERIFY_QUICK (the streams and checkpoints are still read). */
static int vckpts(struct vwalk *w, int64_t upto, struct sl_diag *d);

static int nats_verify(struct sl_store *base, int flags, sl_problem_fn fn,
                       sl_verify_progress_fn progress, void *ud,
                       struct sl_store_verify_summary *sum, struct sl_diag *d)
{
	struct vwalk w;
	int64_t upto = 0;
	size_t i;
	int rc;

	memset(&w, 0, sizeof(w));
	w.s = ns(base), w.fn = fn, w.ud = ud, w.sum = sum;
	if (!w.s->exists)
		return 0;
	if (!(rc = nats_head_position(base, &upto, d)) && !(rc = vlist(&w, d)) &&
	    !(rc = vckpts(&w, upto, d)) && !(flags & SL_VERIFY_QUICK) &&
	    !(rc = vwalk_log(&w, (uint64_t)upto, progress, d)))
		rc = vheads(&w);
	for (i = 0; i < w.n; i++)
		free(w.st[i].name);
	free(w.st);
	return rc;
}

/* ---- processor rows: key-value buckets ------------------------------------------------
 *
 * See the file comment for the layout. Every value is a JSON object; a checkpoint row
 * whose value is empty was deleted (reset --with-effects) by a compare-and-set write,
 * which kvStore_Delete cannot be.
 */

enum { B_PROCS, B_CKPT, B_DEAD, B_RATES, B_COUNT };
static const char *const bucket_names[B_COUNT] = {"procs", "ckpt", "dead", "rates"};

/* Opens bucket b (creating it when create); *none is 1 when reading finds none. */
static int rows_bucket(struct nats_store *s, int b, int create, int *none, struct sl_diag *d)
{
	return open_bucket(s, &s->kv[b], bucket_names[b], create, none, d);
}

/* Appends str to b as key bytes: [A-Za-z0-9_-] as they are, every other byte as =XX
 * (a key may hold [-/_=.A-Za-z0-9], so this is one-to-one and never holds a '.'). */
static void key_add(struct sl_buf *b, const char *str)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *str; str++) {
		unsigned char c = (unsigned char)*str;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-') {
			sl_buf_addc(b, (char)c);
		} else {
			sl_buf_addc(b, '=');
			sl_buf_addc(b, hex[c >> 4]);
			sl_buf_addc(b, hex[c & 15]);
		}
	}
}

/* "<proc>.<stream>" ("<proc>.=" for mode all, stream "" or NULL), then `tail`. */
static int inst_key(struct sl_buf *b, const char *proc, const char *stream, const char *tail,
                    struct sl_diag *d)
{
	sl_buf_reset(b);
	key_add(b, proc);
	sl_buf_addc(b, '.');
	if (stream && *stream)
		key_add(b, stream);
	else
		sl_buf_addc(b, '=');
	if (tail)
		sl_buf_adds(b, tail);
	sl_buf_addc(b, '\0');
	return sl_buf_ok(b) ? 0 : oom(d);
}

/* "<proc><tail>": the processor's own keys. */
static int proc_key(struct sl_buf *b, const char *proc, const char *tail, struct sl_diag *d)
{
	sl_buf_reset(b);
	key_add(b, proc);
	sl_buf_adds(b, tail);
	sl_buf_addc(b, '\0');
	return sl_buf_ok(b) ? 0 : oom(d);
}

/* Reads key: *val a malloc'd copy of its value (NUL-terminated; NULL when the key
 * is absent or deleted), *rev its revision (0 when absent). */
static int kv_get(struct nats_store *s, kvStore *kv, const char *key, char **val, size_t *len,
                  uint64_t *rev, struct sl_diag *d)
{
	natsMsg *m = NULL;
	natsStatus st;
	int n;

	*val = NULL, *len = 0, *rev = 0;
	if (!kv)
		return 0;
	if ((st = kv_read(s, kv, key, 1, &m, rev)) != NATS_OK)
		return nats_fail(s, d, st, 0, "cannot read a row");
	if (!m)
		return 0;
	n = natsMsg_GetDataLength(m);
	if (!(*val = malloc((size_t)n + 1))) {
		natsMsg_Destroy(m);
		return oom(d);
	}
	if (n > 0)
		memcpy(*val, natsMsg_GetData(m), (size_t)n);
	(*val)[n] = '\0';
	*len = (size_t)n;
	natsMsg_Destroy(m);
	return 0;
}

/* Calls fn for every live key of kv matching filter ("p.>"), with its value. */
typedef int (*kv_each_fn)(void *ud, const char *key, const char *val, size_t len, uint64_t rev,
                          struct sl_diag *d);

static int kv_each(struct nats_store *s, kvStore *kv, const char *filter, kv_each_fn fn, void *ud,
                   struct sl_diag *d)
{
	kvWatcher *w = NULL;
	kvWatchOptions o;
	kvEntry *e = NULL;
	int64_t until = 0;
	natsStatus st;
	int rc = 0;

	if (!kv)
		return 0;
	kvWatchOptions_Init(&o);
	o.IgnoreDeletes = true;
	/* The watcher hands out the current value of every key, then NULL. A watch that
	 * fails before it handed out anything is started again (again()). */
	for (;;) {
		if ((st = kvStore_Watch(&w, kv, filter, &o)) == NATS_OK)
			st = kvWatcher_Next(&e, w, WAIT_MS);
		if (st == NATS_OK || !again(st, 0, &until))
			break;
		kvWatcher_Destroy(w);
		w = NULL;
	}
	while (!rc && st == NATS_OK && e) {
		if (kvEntry_Operation(e) == kvOp_Put)
			rc = fn(ud, kvEntry_Key(e), kvEntry_Value(e), (size_t)kvEntry_ValueLen(e),
			        kvEntry_Revision(e), d);
		kvEntry_Destroy(e);
		e = NULL;
		if (!rc)
			st = kvWatcher_Next(&e, w, WAIT_MS);
	}
	if (!rc && st != NATS_OK)
		rc = nats_fail(s, d, st, 0, "cannot list rows");
	kvWatcher_Destroy(w);
	return rc;
}

/* ---- the revisions this store read ----------------------------------------------------- */

/* The revision at which this store last read or wrote each checkpoint row (0: read as
 * absent): the base of the compare-and-set of the next write of that row. An
 * instance's state lives in the engine between batches, so the revision it was
 * computed from is the one read when the instance was loaded, not the one a commit
 * would find when it writes. A row this store never read (a reset or a resume from
 * the CLI, a fault of an instance loaded by a catch-up's scan) is compared with the
 * revision the commit finds when it first touches the row. */
static uint64_t rev_slot(const struct revmap *m, const char *key)
{
	uint64_t i = sl_hash_str(key) & (m->cap - 1);

	while (m->e[i].key && strcmp(m->e[i].key, key))
		i = (i + 1) & (m->cap - 1);
	return i;
}

static int rev_find(const struct revmap *m, const char *key, uint64_t *rev)
{
	uint64_t i;

	if (!m->cap)
		return 0;
	i = rev_slot(m, key);
	if (!m->e[i].key)
		return 0;
	*rev = m->e[i].rev;
	return 1;
}

static int rev_grow(struct revmap *m)
{
	struct revmap n = {NULL, m->cap ? m->cap * 2 : 256, 0};
	size_t i;

	if (!(n.e = calloc(n.cap, sizeof(*n.e))))
		return SL_ENOMEM;
	for (i = 0; i < m->cap; i++)
		if (m->e[i].key) {
			n.e[rev_slot(&n, m->e[i].key)] = m->e[i];
			n.n++;
		}
	free(m->e);
	*m = n;
	return 0;
}

/* Remembers rev for key. Out of memory it forgets nothing but learns nothing: the next
 * write of that row then compares with the revision it finds. */
static void rev_put(struct revmap *m, const char *key, uint64_t rev)
{
	uint64_t i;

	if ((m->n + 1) * 2 > m->cap && rev_grow(m))
		return;
	i = rev_slot(m, key);
	if (!m->e[i].key) {
		if (!(m->e[i].key = strdup(key)))
			return;
		m->n++;
	}
	m->e[i].rev = rev;
}

static void rev_release(struct revmap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		free(m->e[i].key);
	free(m->e);
	memset(m, 0, sizeof(*m));
}

/* ---- row values ------------------------------------------------------------------------ */

/* A checkpoint row, decoded. */
struct row {
	int64_t offset, mark, bgf;
	int64_t proj;  /* projOffset: the offset of the last commit that wrote projection rows */
	int64_t pfrom; /* projFrom: where the instance's rows stood before that commit */
	char *plog;    /* projLog: that commit's ctx.db statements, base64, or NULL */
	size_t plog_len;
	int faulted;
	char *state; /* JSON text, or NULL: the initial state */
	size_t state_len;
	char *error;  /* or NULL */
	char *stream; /* the instance's stream ("" for mode all) */
};

static void row_release(struct row *r)
{
	free(r->plog);
	free(r->state);
	free(r->error);
	free(r->stream);
	memset(r, 0, sizeof(*r));
}

static char *dup_n(const char *p, size_t n)
{
	char *c = malloc(n + 1);

	if (c) {
		if (n)
			memcpy(c, p, n);
		c[n] = '\0';
	}
	return c;
}

static int pick_row(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct row *r = ud;
	char **str = NULL;

	if (is_key(m, "offset") && m->kind == SL_JSON_INTEGER)
		r->offset = m->integer;
	else if (is_key(m, "effectsMark") && m->kind == SL_JSON_INTEGER)
		r->mark = m->integer;
	else if (is_key(m, "backgroundFailures") && m->kind == SL_JSON_INTEGER)
		r->bgf = m->integer;
	else if (is_key(m, "projOffset") && m->kind == SL_JSON_INTEGER)
		r->proj = m->integer;
	else if (is_key(m, "projFrom") && m->kind == SL_JSON_INTEGER)
		r->pfrom = m->integer;
	else if (is_key(m, "projLog") && m->kind == SL_JSON_STRING) {
		free(r->plog);
		if (!(r->plog = dup_n(m->text, m->len)))
			return oom(d);
		r->plog_len = m->len;
	} else if (is_key(m, "status") && m->kind == SL_JSON_STRING)
		r->faulted = m->len == 7 && !memcmp(m->text, "faulted", 7);
	else if (is_key(m, "lastError") && m->kind == SL_JSON_STRING)
		str = &r->error;
	else if (is_key(m, "stream") && m->kind == SL_JSON_STRING)
		str = &r->stream;
	else if (is_key(m, "state") && (m->kind == SL_JSON_OBJECT || m->kind == SL_JSON_ARRAY)) {
		free(r->state);
		if (!(r->state = dup_n(m->text, m->len)))
			return oom(d);
		r->state_len = m->len;
	}
	if (str) {
		free(*str);
		if (!(*str = dup_n(m->text, m->len)))
			return oom(d);
	}
	return 0;
}

/* Decodes a row value; *present is 0 for a deleted row (an empty value). */
static int row_decode(struct nats_store *s, const char *key, const char *val, size_t len,
                      struct row *r, int *present, struct sl_diag *d)
{
	int rc;

	memset(r, 0, sizeof(*r));
	*present = val && len > 0;
	if (!*present)
		return 0;
	if ((rc = sl_json_members(val, len, pick_row, r, NULL)) || !r->stream) {
		row_release(r);
		return rc == SL_ENOMEM
		               ? oom(d)
		               : sl_diag_set(d, SL_ECORRUPT,
		                             "store '%s': the checkpoint row '%s' is damaged",
		                             s->path, key);
	}
	return 0;
}

static void addjstr_or_null(struct sl_buf *b, const char *str)
{
	if (str)
		sl_buf_addjstr(b, str, strlen(str));
	else
		sl_buf_adds(b, "null");
}

/* The value of row r (malloc'd), or NULL when out of memory. */
static char *row_encode(const struct row *r, size_t *len)
{
	struct sl_buf b;

	sl_buf_init(&b);
	sl_buf_adds(&b, "{\"stream\":");
	addjstr_or_null(&b, r->stream ? r->stream : "");
	sl_buf_addf(&b, ",\"offset\":%lld,\"effectsMark\":%lld,\"state\":", (long long)r->offset,
	            (long long)r->mark);
	if (r->state)
		sl_buf_add(&b, r->state, r->state_len);
	else
		sl_buf_adds(&b, "null");
	sl_buf_adds(&b, r->faulted ? ",\"status\":\"faulted\",\"lastError\":"
	                           : ",\"status\":\"ok\",\"lastError\":");
	addjstr_or_null(&b, r->error);
	sl_buf_addf(&b, ",\"backgroundFailures\":%lld", (long long)r->bgf);
	if (r->proj > 0)
		sl_buf_addf(&b, ",\"projOffset\":%lld", (long long)r->proj);
	if (r->plog) {
		sl_buf_addf(&b, ",\"projFrom\":%lld,\"projLog\":\"", (long long)r->pfrom);
		sl_buf_add(&b, r->plog, r->plog_len);
		sl_buf_addc(&b, '"');
	}
	sl_buf_addc(&b, '}');
	if (!sl_buf_ok(&b)) {
		sl_buf_release(&b);
		return NULL;
	}
	return sl_buf_detach(&b, len);
}

static void row_to_ckpt(struct row *r, struct sl_ckpt *c)
{
	c->offset = r->offset;
	c->effects_mark = r->mark;
	c->state = r->state, c->state_len = r->state_len;
	c->faulted = r->faulted;
	c->last_error = r->error;
	c->background_failures = r->bgf;
	r->state = r->error = NULL; /* handed over */
}

/* The processor row. */
struct prow {
	int64_t version, anchor;
	char *script, *contract; /* hashes, or NULL */
};

static int pick_prow(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct prow *p = ud;
	char **str = NULL;

	if (is_key(m, "version") && m->kind == SL_JSON_INTEGER)
		p->version = m->integer;
	else if (is_key(m, "anchor") && m->kind == SL_JSON_INTEGER)
		p->anchor = m->integer;
	else if (is_key(m, "scriptHash") && m->kind == SL_JSON_STRING)
		str = &p->script;
	else if (is_key(m, "contractHash") && m->kind == SL_JSON_STRING)
		str = &p->contract;
	if (str) {
		free(*str);
		if (!(*str = dup_n(m->text, m->len)))
			return oom(d);
	}
	return 0;
}

static void prow_release(struct prow *p)
{
	free(p->script);
	free(p->contract);
	memset(p, 0, sizeof(*p));
}

static int prow_decode(struct nats_store *s, const char *proc, const char *val, size_t len,
                       struct prow *p, struct sl_diag *d)
{
	int rc;

	memset(p, 0, sizeof(*p));
	if ((rc = sl_json_members(val, len, pick_prow, p, NULL))) {
		prow_release(p);
		return rc == SL_ENOMEM
		               ? oom(d)
		               : sl_diag_set(d, SL_ECORRUPT,
		                             "store '%s': the row of processor '%s' is damaged",
		                             s->path, proc);
	}
	return 0;
}

static char *prow_encode(const struct prow *p, size_t *len)
{
	struct sl_buf b;

	sl_buf_init(&b);
	sl_buf_addf(&b, "{\"version\":%lld,\"anchor\":%lld,\"scriptHash\":", (long long)p->version,
	            (long long)p->anchor);
	addjstr_or_null(&b, p->script);
	sl_buf_adds(&b, ",\"contractHash\":");
	addjstr_or_null(&b, p->contract);
	sl_buf_addc(&b, '}');
	if (!sl_buf_ok(&b)) {
		sl_buf_release(&b);
		return NULL;
	}
	return sl_buf_detach(&b, len);
}

/* A member of a small value: an integer, a float, or a string (copied). */
struct vpick {
	const char *key;
	int64_t integer;
	double number;
	char *str;
	int found;
};

static int pick_value(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct vpick *v = ud;

	if (!is_key(m, v->key))
		return 0;
	v->found = 1;
	v->integer = m->integer, v->number = m->number;
	if (m->kind == SL_JSON_STRING && !v->str && !(v->str = dup_n(m->text, m->len)))
		return oom(d);
	return 0;
}

/* ---- the commit -------------------------------------------------------------------------- */

enum wkind {
	W_CAS,    /* written only if the key is still at its base revision */
	W_PUT,    /* written whatever it holds */
	W_DEL,    /* deleted whatever it holds */
	W_CREATE, /* written only if absent; a key already there is left as it is */
};

/* One key the commit reads or writes, in the order the commit first touched it. */
struct kv_write {
	int bucket;
	enum wkind kind;
	char *key;
	char *val; /* the value to write (malloc'd); NULL: read only, or absent */
	size_t len;
	uint64_t base;  /* W_CAS: the revision read (0: absent) */
	int dirty;      /* to be written */
	uint64_t found; /* the revision a lost compare-and-set found */
	char *label;    /* for messages: "the checkpoint of processor 'p' for 's'" */
};

struct nats_commit {
	struct sl_commit base;
	struct nats_store *s;
	int fenced;
	int64_t epoch;
	int part; /* the partition whose lease fences it, or -1: the processor's */
	char *proc, *owner;
	struct batch bt; /* the events appended in it, planned, published at the end */
	int events;
	/* The callers' results to complete once the events are published (sl_commit_append
	 * keeps them valid until the commit ends). */
	struct res_ref {
		struct sl_append_result *res;
		size_t msg; /* the message that answers it */
		int dup;    /* a key repeated within the commit */
	} * refs;
	size_t nrefs, crefs;
	struct kv_write *w;
	size_t nw, cw;
	int ptx;            /* a transaction is open in the projection database */
	long long pchanges; /* its total_changes when it began */
	int pnoted;         /* proj_note noted projection rows in checkpoint rows */
	struct sl_buf plog; /* ctx.db's statements in it (sl_proj_set_log) */
};

static struct nats_commit *nc_of(struct sl_commit *c)
{
	return (struct nats_commit *)c;
}

static void commit_free(struct nats_commit *c)
{
	size_t i;

	for (i = 0; i < c->nw; i++) {
		free(c->w[i].key);
		free(c->w[i].val);
		free(c->w[i].label);
	}
	free(c->w);
	free(c->refs);
	sl_buf_release(&c->plog);
	batch_release(&c->bt);
	free(c->proc);
	free(c->owner);
	free(c);
}

static struct kv_write *find_write(struct nats_commit *c, int bucket, const char *key)
{
	size_t i;

	for (i = 0; i < c->nw; i++)
		if (c->w[i].bucket == bucket && !strcmp(c->w[i].key, key))
			return &c->w[i];
	return NULL;
}

static struct kv_write *new_write(struct nats_commit *c, int bucket, enum wkind kind,
                                  const char *key, struct sl_diag *d)
{
	struct kv_write *w;

	if (c->nw == c->cw) {
		size_t cap = c->cw ? c->cw * 2 : 8;
		if (!(w = realloc(c->w, cap * sizeof(*w)))) {
			oom(d);
			return NULL;
		}
		c->w = w, c->cw = cap;
	}
	w = &c->w[c->nw];
	memset(w, 0, sizeof(*w));
	w->bucket = bucket, w->kind = kind;
	if (!(w->key = strdup(key))) {
		oom(d);
		return NULL;
	}
	c->nw++;
	return w;
}

/* The error of a compare-and-set that another writer won: the fence of this backend. */
static int lost_race(struct nats_commit *c, const struct kv_write *w, uint64_t now,
                     const char *tail, struct sl_diag *d)
{
	return sl_diag_set(d, c->fenced ? SL_EFENCED : SL_ECONFLICT,
	                   "store '%s': %s was written by another writer since it was read"
	                   " (revision %llu, now %llu); %s",
	                   c->s->path, w->label ? w->label : w->key, (unsigned long long)w->base,
	                   (unsigned long long)now, tail);
}

/* The key of bucket b as this commit sees it: its pending write, or else read now
 * (a checkpoint row must still be at the revision this store read it at). */
static int touch(struct nats_commit *c, int b, const char *key, const char *label,
                 struct kv_write **out, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	struct kv_write *w;
	uint64_t rev, known;
	char *val = NULL;
	size_t len;
	int rc, none;

	if ((*out = find_write(c, b, key)))
		return 0;
	if ((rc = rows_bucket(s, b, 1, &none, d)) ||
	    (rc = kv_get(s, s->kv[b], key, &val, &len, &rev, d)))
		return rc;
	if (!(w = new_write(c, b, W_CAS, key, d))) {
		free(val);
		return SL_ENOMEM; /* (new_write filled d) */
	}
	w->val = val, w->len = len, w->base = rev;
	if (label && !(w->label = strdup(label)))
		rc = oom(d);
	else if (b == B_CKPT && rev_find(&s->revs, key, &known) && known != rev)
		rc = lost_race(c,
		               &(struct kv_write){.key = w->key, .label = w->label, .base = known},
		               rev, "nothing was committed", d);
	if (rc) { /* forget the key again: the op failed */
		free(w->key);
		free(w->val);
		free(w->label);
		c->nw--;
		return rc;
	}
	*out = w;
	return 0;
}

/* A write that needs no reading: rates, reload errors, dead letters. */
static int blind_write(struct nats_commit *c, int b, enum wkind kind, const char *key, char *val,
                       size_t len, struct sl_diag *d)
{
	struct kv_write *w;
	int rc, none;

	if ((rc = rows_bucket(c->s, b, 1, &none, d))) {
		free(val);
		return rc;
	}
	if (!(w = find_write(c, b, key)) && !(w = new_write(c, b, kind, key, d))) {
		free(val);
		return SL_ENOMEM; /* (new_write filled d) */
	}
	free(w->val);
	w->kind = kind, w->val = val, w->len = len, w->dirty = 1;
	return 0;
}

/* Checks the fence: the lease row names the fence's owner at its epoch. */
static int check_fence(struct nats_commit *c, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	struct sl_lease l;
	uint64_t rev = 0;
	int rc, none;

	if (!c->fenced)
		return 0;
	memset(&l, 0, sizeof(l));
	if ((rc = lease_bucket(s, 0, &none, d)))
		return rc;
	lease_key(c->proc, c->part, &s->tmp[0]);
	if (!sl_buf_ok(&s->tmp[0]))
		return oom(d);
	if (!none && (rc = lease_read(s, s->tmp[0].ptr, &l, &rev, d)))
		return rc;
	if (rev && !strcmp(l.owner, c->owner) && l.epoch == c->epoch)
		return 0;
	if (c->part >= 0)
		return sl_diag_set(
			d, SL_EFENCED,
			"partition %d of processor '%s' is run by %s (epoch %lld), not by"
			" %s (epoch %lld); nothing was committed",
			c->part, c->proc, *l.owner ? l.owner : "nobody", (long long)l.epoch,
			c->owner, (long long)c->epoch);
	return sl_diag_set(d, SL_EFENCED,
	                   "processor '%s' is run by %s (epoch %lld), not by %s (epoch %lld);"
	                   " nothing was committed",
	                   c->proc, *l.owner ? l.owner : "nobody", (long long)l.epoch, c->owner,
	                   (long long)c->epoch);
}

static int nats_commit_begin(struct sl_store *base, const struct sl_fence *f,
                             struct sl_commit **out, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct nats_commit *c;
	int rc;

	*out = NULL;
	if (s->readonly)
		return sl_diag_set(d, SL_EINVAL, "store '%s': opened read-only", s->path);
	if (!(c = calloc(1, sizeof(*c))))
		return oom(d);
	c->base.store = base;
	c->s = s;
	c->bt.s = s;
	sl_store_now(c->bt.created_at, sizeof(c->bt.created_at));
	c->part = -1;
	if (f) {
		c->fenced = 1;
		c->epoch = f->epoch;
		c->part = f->part - 1;
		if (!(c->proc = strdup(f->processor)) || !(c->owner = strdup(f->owner))) {
			commit_free(c);
			return oom(d);
		}
	}
	if ((rc = check_fence(c, d))) {
		commit_free(c);
		return rc;
	}
	*out = &c->base;
	return 0;
}

/* ---- appends inside a commit: planned when made, published when it ends ---------------- */

/* Where the batch's plan stood before an append call, to take that call back alone. */
struct plan_mark {
	size_t nmsg, nst, nkeys;
	struct sview *plans; /* copies of the plans of the first nst streams */
};

static int plan_mark(struct batch *bt, struct plan_mark *m, struct sl_diag *d)
{
	size_t i;

	m->nmsg = bt->nmsg, m->nst = bt->nst, m->nkeys = bt->nkeys;
	if (!(m->plans = calloc(bt->nst ? bt->nst : 1, sizeof(*m->plans))))
		return oom(d);
	for (i = 0; i < bt->nst; i++)
		if (sview_copy(&m->plans[i], &bt->st[i].plan))
			return oom(d);
	return 0;
}

static void plan_mark_release(struct plan_mark *m)
{
	size_t i;

	for (i = 0; m->plans && i < m->nst; i++)
		sview_release(&m->plans[i]);
	free(m->plans);
	m->plans = NULL;
}

/* Takes back what was planned since the mark (and releases the mark). */
static void plan_undo(struct batch *bt, struct plan_mark *m)
{
	size_t i;

	for (i = m->nmsg; i < bt->nmsg; i++) {
		free(bt->msg[i].payload);
		free(bt->msg[i].metadata);
		sview_release(&bt->msg[i].before);
	}
	bt->nmsg = m->nmsg;
	for (i = m->nst; i < bt->nst; i++) {
		free(bt->st[i].name);
		free(bt->st[i].subject);
		sview_release(&bt->st[i].plan);
		sview_release(&bt->st[i].live);
	}
	bt->nst = m->nst;
	for (i = 0; i < bt->nst; i++) {
		sview_release(&bt->st[i].plan);
		bt->st[i].plan = m->plans[i];
		memset(&m->plans[i], 0, sizeof(m->plans[i]));
	}
	for (i = m->nkeys; i < bt->nkeys; i++)
		free(bt->keys[i]);
	bt->nkeys = m->nkeys;
	plan_mark_release(m);
}

/* Remembers that res is answered by message msg of the commit. */
static int add_ref(struct nats_commit *c, struct sl_append_result *res, size_t msg, int dup,
                   struct sl_diag *d)
{
	if (c->nrefs == c->crefs) {
		size_t cap = c->crefs ? c->crefs * 2 : 16;
		struct res_ref *r = realloc(c->refs, cap * sizeof(*r));
		if (!r)
			return oom(d);
		c->refs = r, c->crefs = cap;
	}
	c->refs[c->nrefs].res = res;
	c->refs[c->nrefs].msg = msg;
	c->refs[c->nrefs].dup = dup;
	c->nrefs++;
	return 0;
}

/* Plans the call's events after those planned before in the commit, all-or-nothing
 * within it. res gets the offsets as planned and position 0 now, and is completed
 * when the commit has published the events: their positions, and the offsets of the
 * ones JetStream answered as duplicates. */
static int nats_commit_append(struct sl_commit *base, const struct sl_event_in *ev, size_t n,
                              struct sl_append_result *res, size_t *failed, struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct batch *bt = &c->bt;
	struct plan_mark m;
	size_t i, k;
	int rc;

	if ((rc = plan_mark(bt, &m, d))) {
		plan_mark_release(&m);
		return rc;
	}
	if ((rc = plan_batch(bt, ev, n, res, failed, d))) {
		plan_undo(bt, &m);
		return rc;
	}
	for (i = 0; i < n && !rc; i++) {
		if (res[i].duplicate && res[i].offset < 0) { /* a key repeated in the commit */
			k = (size_t)(-res[i].offset - 1);
			res[i].offset = bt->msg[k].planned, res[i].position = 0;
			rc = add_ref(c, &res[i], k, 1, d);
			continue;
		}
		if (res[i].duplicate)
			continue; /* a stored event answered */
		for (k = m.nmsg; k < bt->nmsg; k++)
			if (bt->msg[k].result == i && !bt->msg[k].engine) {
				res[i].offset = bt->msg[k].planned, res[i].position = 0;
				rc = add_ref(c, &res[i], k, 0, d);
			}
	}
	if (rc) {
		while (c->nrefs && c->refs[c->nrefs - 1].msg >= m.nmsg)
			c->nrefs--;
		plan_undo(bt, &m);
		return rc;
	}
	for (k = m.nmsg; k < bt->nmsg; k++)
		bt->msg[k].result = (size_t)-1; /* the caller's res is not ours to fill later */
	c->events |= bt->nmsg > 0;
	plan_mark_release(&m);
	return 0;
}

/* ---- projection tables ---------------------------------------------------------------
 *
 * ctx.db's tables live in a SQLite file on the runner's machine (the deployment's
 * `projections`, sl_proj_open), not in JetStream. A commit begins a transaction there
 * only once ctx.db runs SQL in it (proj_touch). When the commit ends, its checkpoint
 * rows are written to JetStream first, each by its compare-and-set (the fence); only
 * when every write succeeded does the projection transaction commit, with the mark of
 * each instance (sl_proj_marks: key -> the offset its rows now hold); on any failure
 * it is rolled back. So rows never get ahead of the checkpoint. The one window is a
 * runner dying after the compare-and-set and before the local commit (one local
 * fsync). For it, the checkpoint row of a commit that changed projection rows says
 * so: projOffset (its offset), projFrom (the instance's mark before it) and projLog
 * (ctx.db's statement log of the commit, base64, when it is at most PROJ_LOG_MAX
 * bytes and the commit wrote one checkpoint row). The next load of the instance
 * (nats_ckpt_get) finds the mark behind projOffset and, when the mark is projFrom,
 * runs the log and moves the mark in one local transaction; otherwise it says in the
 * log which rows are missing. */
#define PROJ_LOG_MAX (64 * 1024)

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The base64 of p[0..n) (malloc'd, NUL-terminated), or NULL when out of memory. */
static char *b64_encode(const unsigned char *p, size_t n, size_t *len)
{
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < n; i += 3, o += 4) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		o[0] = b64[v >> 18], o[1] = b64[v >> 12 & 63], o[2] = b64[v >> 6 & 63];
		o[3] = b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
		o[0] = b64[v >> 18], o[1] = b64[v >> 12 & 63];
		o[2] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		o[3] = '=';
		o += 4;
	}
	*o = '\0';
	*len = (size_t)(o - out);
	return out;
}

/* Decodes base64 text t[0..n) into out (malloc'd); -1 when it is not base64. */
static int b64_decode(const char *t, size_t n, unsigned char **out, size_t *len)
{
	unsigned char *o;
	uint32_t v = 0;
	size_t i, k = 0, bits = 0;

	if (n % 4 || !(o = *out = malloc(n / 4 * 3 + 1)))
		return -1;
	for (i = 0; i < n && t[i] != '='; i++) {
		const char *c = strchr(b64, t[i]);
		if (!c || !t[i]) {
			free(o);
			return -1;
		}
		v = v << 6 | (uint32_t)(c - b64);
		if ((bits += 6) >= 8) {
			bits -= 8;
			o[k++] = (unsigned char)(v >> bits);
		}
	}
	*len = k;
	return 0;
}

static int row_set(struct kv_write *w, struct row *r, struct sl_diag *d);

/* Begins c's projection transaction unless it is open (ctx.db's touch). */
static int proj_touch(void *ud, struct sl_diag *d)
{
	struct nats_store *s = ud;
	struct nats_commit *c = s->cur;
	int rc;

	if (!c)
		return sl_diag_set(d, SL_EINVAL, "no commit is open");
	if (c->ptx)
		return 0;
	if ((rc = sl_proj_exec(s->pj, "BEGIN IMMEDIATE", d)))
		return rc;
	c->ptx = 1;
	c->pchanges = (long long)sqlite3_total_changes64(sl_proj_db(s->pj));
	sl_buf_reset(&c->plog);
	sl_proj_set_log(s->pj, &c->plog);
	return 0;
}

/* Opens the projection database if it is not, and binds it to c. */
static int proj_bind(struct nats_commit *c, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	int rc;

	if (!s->proj_path)
		return sl_diag_set(d, SL_EINVAL, "store '%s': opened without a projection database",
		                   s->path);
	if (!s->pj) {
		if ((rc = sl_proj_open(&s->pj, s->proj_path, s->dur, d)))
			return rc;
		sl_proj_on_touch(s->pj, proj_touch, s);
	}
	s->cur = c;
	return 0;
}

static struct sl_proj *nats_commit_projection(struct sl_commit *base)
{
	struct nats_commit *c = nc_of(base);
	struct sl_diag d;

	sl_diag_init(&d);
	if (!c->s->proj_path)
		return NULL;
	if (proj_bind(c, &d)) {
		sl_log(SL_LOG_ERROR, NULL, NULL, 0, "%s", sl_diag_msg(&d));
		return NULL;
	}
	return c->s->pj;
}

/* Before the writes: notes in every checkpoint row the commit writes that its
 * projection rows are at the row's offset, when ctx.db changed anything. */
static int proj_note(struct nats_commit *c, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	struct row r;
	size_t i, rows = 0;
	int rc, present;
	int64_t mark;

	if (!c->ptx || (long long)sqlite3_total_changes64(sl_proj_db(s->pj)) == c->pchanges)
		return 0;
	if (!sl_buf_ok(&c->plog))
		return oom(d);
	for (i = 0; i < c->nw; i++)
		rows += c->w[i].bucket == B_CKPT && c->w[i].dirty && c->w[i].val;
	for (i = 0; i < c->nw; i++) {
		struct kv_write *w = &c->w[i];
		if (w->bucket != B_CKPT || !w->dirty || !w->val)
			continue;
		if ((rc = row_decode(s, w->key, w->val, w->len, &r, &present, d)))
			return rc;
		r.proj = r.offset;
		free(r.plog);
		r.plog = NULL;
		if (rows == 1 && c->plog.len <= PROJ_LOG_MAX &&
		    !(rc = sl_proj_mark_get(s->pj, w->key, &mark, d))) {
			r.pfrom = mark < 0 ? 0 : mark;
			if (!(r.plog = b64_encode((const unsigned char *)c->plog.ptr, c->plog.len,
			                          &r.plog_len)))
				rc = oom(d);
		}
		if (rc || (rc = row_set(w, &r, d))) {
			row_release(&r);
			return rc;
		}
		c->pnoted = 1;
	}
	return 0;
}

/* After the writes: commits the projection transaction with the marks of the rows
 * written (ok), or rolls it back. */
static int proj_end(struct nats_commit *c, int ok, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	struct row r;
	size_t i;
	int rc = 0, present;

	if (s->cur == c)
		s->cur = NULL;
	if (!c->ptx)
		return 0;
	c->ptx = 0;
	sl_proj_set_log(s->pj, NULL);
	for (i = 0; ok && !rc && i < c->nw; i++) {
		struct kv_write *w = &c->w[i];
		if (w->bucket != B_CKPT || !w->dirty)
			continue;
		/* The mark moves with a row that proj_note noted; a row that claims no rows
		 * (deleted, reset) takes its mark with it; others leave it where it is. */
		if (!(rc = row_decode(s, w->key, w->val, w->len, &r, &present, d)) &&
		    (!present || r.proj <= 0 || c->pnoted))
			rc = sl_proj_mark_put(s->pj, w->key, present && r.proj > 0 ? r.proj : -1,
			                      d);
		row_release(&r);
	}
	if (ok && !rc && c->pnoted)
		sl_crash_point("projection-window");
	if (ok && !rc && !(rc = sl_proj_exec(s->pj, "COMMIT", d)))
		return 0;
	sl_proj_exec(s->pj, "ROLLBACK", NULL);
	if (ok) /* the checkpoints are written: the rows of this commit are missing here */
		sl_log(SL_LOG_ERROR, c->proc, NULL, 0,
		       "the checkpoints were committed but their projection rows could not be: %s",
		       sl_diag_msg(d));
	return rc;
}

/* ---- ending a commit ------------------------------------------------------------------- */

/* Before anything is published: every compare-and-set would still succeed. */
static int precheck(struct nats_commit *c, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	size_t i, len;
	uint64_t rev;
	char *val;
	int rc;

	for (i = 0; i < c->nw; i++) {
		struct kv_write *w = &c->w[i];
		if (!w->dirty || w->kind != W_CAS)
			continue;
		if ((rc = kv_get(s, s->kv[w->bucket], w->key, &val, &len, &rev, d)))
			return rc;
		free(val);
		if (rev != w->base)
			return lost_race(c, w, rev, "nothing was committed", d);
	}
	return 0;
}

/* Publishes message p of a commit. Another writer may have appended to its stream
 * since the commit planned it (adopt says what then). On a serial store the stream's
 * state was read when the commit planned, before the stream's last sequence is read
 * now: it is read again before p's stream is first published to. */
static int publish_in_commit(struct batch *bt, struct pmsg *p, struct sl_diag *d)
{
	struct sview v;
	int rc;

	if (bt->s->serial && !bt->st[p->stream].fresh &&
	    ((rc = refresh(bt, p->stream, &v, d)) || (rc = adopt(bt, p, 1, &v, d))))
		return rc;
	return publish_cas(bt, p, 1, d);
}

/* Publishes the commit's events in order, as an append call does (taking them back
 * if one fails). */
static int publish_commit(struct nats_commit *c, struct sl_diag *d)
{
	struct batch *bt = &c->bt;
	size_t i, left, bad;
	int rc = publish_all(bt, 1, &bad, d);

	if (rc && (left = take_back(bt, bt->nmsg)))
		sl_diag_prefix(d,
		               "%zu event(s) of this commit were written and could not be taken"
		               " back",
		               left);
	for (i = 0; !rc && i < c->nrefs; i++) {
		const struct pmsg *p = &bt->msg[c->refs[i].msg];
		c->refs[i].res->offset = p->got;
		c->refs[i].res->position = (int64_t)p->seq;
		c->refs[i].res->duplicate = c->refs[i].dup || p->dup;
	}
	return rc;
}

/* Writes w; *lost is 1 when a compare-and-set found the key changed. */
static int write_one(struct nats_commit *c, struct kv_write *w, int *lost, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	kvStore *kv = s->kv[w->bucket];
	uint64_t rev = 0, now;
	int64_t until = 0;
	natsStatus st;
	size_t len;
	char *val;
	int rc;

	*lost = 0;
	/* A write that failed for a moment (again()) goes again: the keys are this
	 * runner's under its lease, so a put or delete that did land and is repeated
	 * changes nothing, and a create or compare-and-set whose repeat is refused
	 * finds its own value in the key below. */
	do {
		switch (w->kind) {
		case W_PUT:
			st = kvStore_Put(&rev, kv, w->key, w->val, (int)w->len);
			break;
		case W_DEL:
			st = kvStore_Delete(kv, w->key);
			break;
		case W_CREATE:
			st = kvStore_Create(&rev, kv, w->key, w->val, (int)w->len);
			if (st != NATS_OK && !(rc = kv_get(s, kv, w->key, &val, &len, &now, d)) &&
			    now) {
				free(val);
				return 0; /* already there: recording it again changes nothing */
			}
			break;
		default:
			st = w->base ? kvStore_Update(&rev, kv, w->key, w->val, (int)w->len,
			                              w->base)
			             : kvStore_Create(&rev, kv, w->key, w->val, (int)w->len);
		}
	} while (again(st, 0, &until));
	if (st == NATS_OK) {
		if (w->bucket == B_CKPT)
			rev_put(&s->revs, w->key, rev);
		return 0;
	}
	if (w->kind != W_CAS)
		return nats_fail(s, d, st, 0, "cannot write a row");
	/* Refused, or the reply was lost: the key tells which. */
	if ((rc = kv_get(s, kv, w->key, &val, &len, &now, d)))
		return rc;
	if (now != w->base && val && len == w->len && (!len || !memcmp(val, w->val, len))) {
		rev_put(&s->revs, w->key, now); /* it was written: the ack was lost */
		rc = 0;
	} else if (now != w->base) {
		*lost = 1;
		rc = 0;
		w->found = now;
	} else {
		rc = nats_fail(s, d, st, 0, "cannot write a row");
	}
	free(val);
	return rc;
}

/* Ends a commit. JetStream has no transaction over messages and keys, so a commit is
 * made in this order, each step only if the one before succeeded:
 *   1. the fence: the lease still names this runner at its epoch;
 *   2. every compare-and-set key is still at the revision this store read it at;
 *   3. the events are published, each with its Nats-Msg-Id (every event a processor
 *      emits carries a key, by default <processor>@<source stream>:<source offset>#<n>,
 *      and its id is "<stream>|<key>");
 *   4. the keys are written, in the order the commit first touched them, each
 *      checkpoint row by compare-and-set on its revision (kvStore_Update).
 * Why that order: the checkpoint is what says a batch was applied, so it is written
 * last. A commit refused at 1 or 2 wrote nothing. A crash or a lost race between 3 and
 * 4 leaves the events published without the checkpoint that moves past their source:
 * the batch is then redelivered (from the checkpoint, which did not move), emits the
 * same events with the same keys, and JetStream answers each with the stored one
 * instead of storing it again, as long as the retry comes within the duplicate window.
 * So state and checkpoint are exactly-once (the compare-and-set admits one commit per
 * revision); an emitted event is stored once when its batch is retried within the
 * window (and is visible, once, from the moment it was published, even if its batch
 * never commits). Events published at 3 are not taken back when 4 loses its race:
 * the writer that won may already have been answered with them. Of several keys
 * (a reset of every instance, a dead letter with the checkpoint moving past it) those
 * before a failing one stay written; the order of the ops makes that safe to redo
 * (a rebuild resets the rows before it records the new version). */
static int nats_commit_end(struct sl_commit *base, int commit, struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	size_t i, done = 0;
	int rc = 0, lost = 0;

	if (commit && !(rc = check_fence(c, d)) && !(rc = precheck(c, d)) &&
	    !(rc = proj_note(c, d)) && (!c->events || !(rc = publish_commit(c, d)))) {
		for (i = 0; i < c->nw && !rc && !lost; i++) {
			if (!c->w[i].dirty)
				continue;
			if (!(rc = write_one(c, &c->w[i], &lost, d)) && !lost)
				done++;
		}
		if (lost) {
			char tail[128];
			snprintf(tail, sizeof(tail),
			         "the commit stopped there, after %zu of its writes%s", done,
			         c->events ? " and its events" : "");
			rc = lost_race(c, &c->w[i - 1], c->w[i - 1].found, tail, d);
		}
		if (!rc)
			c->s->commits++;
	}
	if (c->ptx || c->s->cur == c) {
		struct sl_diag pd;
		sl_diag_init(&pd);
		proj_end(c, commit && !rc, &pd); /* the commit stands: proj_end logs its error */
	}
	commit_free(c);
	return rc;
}

/* ---- the ops: checkpoint rows ---------------------------------------------------------- */

/* The label of an instance's row, for messages. */
static char *inst_label(const char *proc, const char *stream)
{
	char buf[SL_DIAG_MAX];

	if (stream && *stream)
		snprintf(buf, sizeof(buf), "the checkpoint of processor '%s' for '%s'", proc,
		         stream);
	else
		snprintf(buf, sizeof(buf), "the checkpoint of processor '%s'", proc);
	return strdup(buf);
}

/* Touches the row of (proc, stream) in c and decodes it into r (*present 0: none). */
static int row_touch(struct nats_commit *c, const char *proc, const char *stream,
                     struct kv_write **w, struct row *r, int *present, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	char *label;
	int rc;

	if ((rc = inst_key(&s->tmp[0], proc, stream, NULL, d)))
		return rc;
	if (!(label = inst_label(proc, stream)))
		return oom(d);
	rc = touch(c, B_CKPT, s->tmp[0].ptr, label, w, d);
	free(label);
	if (rc)
		return rc;
	if ((rc = row_decode(s, (*w)->key, (*w)->val, (*w)->len, r, present, d)))
		return rc;
	if (!*present && !(r->stream = strdup(stream ? stream : "")))
		return oom(d);
	return 0;
}

/* Makes val (malloc'd, or NULL when encoding ran out of memory) the pending value of w. */
static int set_pending(struct kv_write *w, char *val, size_t len, struct sl_diag *d)
{
	if (!val)
		return oom(d);
	free(w->val);
	w->val = val, w->len = len, w->dirty = 1;
	return 0;
}

/* Makes r the pending value of w (r is released). */
static int row_set(struct kv_write *w, struct row *r, struct sl_diag *d)
{
	size_t len = 0;
	char *val = row_encode(r, &len);

	row_release(r);
	return set_pending(w, val, len, d);
}

/* Marks the row deleted (an empty value, written by compare-and-set). */
static int row_delete(struct kv_write *w, struct row *r)
{
	row_release(r);
	free(w->val);
	w->val = NULL, w->len = 0, w->dirty = 1;
	return 0;
}

static int nats_ckpt_put(struct sl_commit *c, const char *proc, const char *stream, int64_t offset,
                         const char *state, size_t state_len, int64_t effects_mark,
                         struct sl_diag *d)
{
	struct kv_write *w;
	struct row r;
	int rc, present;

	if ((rc = row_touch(nc_of(c), proc, stream, &w, &r, &present, d)))
		return rc;
	free(r.state);
	free(r.error);
	r.state = NULL, r.error = NULL;
	if (state && !(r.state = dup_n(state, state_len))) {
		row_release(&r);
		return oom(d);
	}
	r.state_len = state ? state_len : 0;
	r.offset = offset, r.mark = effects_mark, r.faulted = 0;
	return row_set(w, &r, d);
}

static int nats_ckpt_put_offset(struct sl_commit *c, const char *proc, const char *stream,
                                int64_t offset, int64_t effects_mark, struct sl_diag *d)
{
	struct kv_write *w;
	struct row r;
	int rc, present;

	if ((rc = row_touch(nc_of(c), proc, stream, &w, &r, &present, d)))
		return rc;
	free(r.error);
	r.error = NULL;
	r.offset = offset, r.mark = effects_mark, r.faulted = 0;
	return row_set(w, &r, d);
}

static int nats_fault(struct sl_commit *c, const char *proc, const char *stream, const char *error,
                      struct sl_diag *d)
{
	struct kv_write *w;
	struct row r;
	int rc, present;

	if ((rc = row_touch(nc_of(c), proc, stream, &w, &r, &present, d)))
		return rc;
	free(r.error);
	if (!(r.error = strdup(error))) {
		row_release(&r);
		return oom(d);
	}
	r.faulted = 1;
	return row_set(w, &r, d);
}

static int nats_background_failure(struct sl_commit *c, const char *proc, const char *stream,
                                   struct sl_diag *d)
{
	struct kv_write *w;
	struct row r;
	int rc, present;

	if ((rc = row_touch(nc_of(c), proc, stream, &w, &r, &present, d)))
		return rc;
	r.bgf++;
	return row_set(w, &r, d);
}

/* The streams of every row of proc (c's own new rows included). */
struct names {
	char **v;
	size_t n, cap;
};

static void names_release(struct names *nm)
{
	while (nm->n)
		free(nm->v[--nm->n]);
	free(nm->v);
	memset(nm, 0, sizeof(*nm));
}

static int names_add(struct names *nm, const char *name)
{
	size_t i;

	for (i = 0; i < nm->n; i++)
		if (!strcmp(nm->v[i], name))
			return 0;
	if (nm->n == nm->cap) {
		size_t cap = nm->cap ? nm->cap * 2 : 16;
		char **v = realloc(nm->v, cap * sizeof(*v));
		if (!v)
			return SL_ENOMEM;
		nm->v = v, nm->cap = cap;
	}
	if (!(nm->v[nm->n] = strdup(name)))
		return SL_ENOMEM;
	nm->n++;
	return 0;
}

struct row_names {
	struct nats_store *s;
	struct names *nm;
};

static int add_row_stream(void *ud, const char *key, const char *val, size_t len, uint64_t rev,
                          struct sl_diag *d)
{
	struct row_names *rn = ud;
	struct row r;
	int rc, present;

	(void)rev;
	if ((rc = row_decode(rn->s, key, val, len, &r, &present, d)))
		return rc;
	rc = present && names_add(rn->nm, r.stream) ? oom(d) : 0;
	row_release(&r);
	return rc;
}

static int row_streams(struct nats_commit *c, const char *proc, struct names *nm, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	struct row_names rn = {s, nm};
	size_t i, plen;
	int rc, none;

	memset(nm, 0, sizeof(*nm));
	if ((rc = rows_bucket(s, B_CKPT, 1, &none, d)) ||
	    (rc = proc_key(&s->tmp[1], proc, ".>", d)))
		return rc;
	if ((rc = kv_each(s, s->kv[B_CKPT], s->tmp[1].ptr, add_row_stream, &rn, d)))
		return rc;
	plen = strlen(s->tmp[1].ptr) - 1; /* "<proc>." */
	for (i = 0; i < c->nw; i++) {
		struct kv_write *w = &c->w[i];
		if (w->bucket == B_CKPT && !strncmp(w->key, s->tmp[1].ptr, plen) && w->val &&
		    (rc = add_row_stream(&rn, w->key, w->val, w->len, 0, d)))
			return rc;
	}
	return 0;
}

/* Clears the fault of one row; *cleared is 1 if it was faulted. */
static int clear_one(struct nats_commit *c, const char *proc, const char *stream, int *cleared,
                     struct sl_diag *d)
{
	struct kv_write *w;
	struct row r;
	int rc, present;

	*cleared = 0;
	if ((rc = row_touch(c, proc, stream, &w, &r, &present, d)))
		return rc;
	if (!present || !r.faulted) {
		row_release(&r);
		return 0;
	}
	free(r.error);
	r.error = NULL, r.faulted = 0;
	*cleared = 1;
	return row_set(w, &r, d);
}

static int clear_faults(struct nats_commit *c, const char *proc, const char *stream, int *count,
                        struct sl_diag *d)
{
	struct names nm;
	size_t i;
	int rc = 0, one;

	*count = 0;
	if (stream) {
		rc = clear_one(c, proc, stream, &one, d);
		*count = one;
		return rc;
	}
	if ((rc = row_streams(c, proc, &nm, d)) == 0)
		for (i = 0; i < nm.n && !rc; i++)
			if (!(rc = clear_one(c, proc, nm.v[i], &one, d)))
				*count += one;
	names_release(&nm);
	return rc;
}

static int nats_clear_fault(struct sl_commit *c, const char *proc, const char *stream,
                            struct sl_diag *d)
{
	int n;

	return clear_faults(nc_of(c), proc, stream, &n, d);
}

static int reset_one(struct nats_commit *c, const char *proc, const char *stream, int with_effects,
                     struct sl_diag *d)
{
	struct kv_write *w;
	struct row r;
	int rc, present;

	if ((rc = row_touch(c, proc, stream, &w, &r, &present, d)))
		return rc;
	if (!present) {
		row_release(&r);
		return 0;
	}
	if (with_effects)
		return row_delete(w, &r);
	free(r.state);
	free(r.error);
	r.state = NULL, r.error = NULL, r.state_len = 0;
	r.offset = 0, r.faulted = 0;
	free(r.plog); /* it claims no projection rows any more (its mark goes too) */
	r.plog = NULL, r.proj = r.pfrom = 0;
	return row_set(w, &r, d);
}

static int nats_reset(struct sl_commit *base, const char *proc, const char *stream,
                      int with_effects, struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct names nm;
	size_t i;
	int rc;

	if (stream)
		return reset_one(c, proc, stream, with_effects, d);
	if ((rc = row_streams(c, proc, &nm, d)) == 0)
		for (i = 0; i < nm.n && !rc; i++)
			rc = reset_one(c, proc, nm.v[i], with_effects, d);
	names_release(&nm);
	return rc;
}

static int nats_drop_tables(struct sl_commit *base, const char *proc, struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct nats_store *s = c->s;
	int rc;

	if (!s->proj_path)
		return 0; /* no projection database: nothing of proc's to drop here */
	if ((rc = proj_bind(c, d)) || (rc = proj_touch(s, d)) ||
	    (rc = proc_key(&s->tmp[0], proc, ".", d)))
		return rc;
	return sl_proj_drop_tables(s->pj, proc, s->tmp[0].ptr, d);
}

/* ---- the ops: the processor row ----------------------------------------------------------- */

static int prow_touch(struct nats_commit *c, const char *proc, struct kv_write **w, struct prow *p,
                      int *present, struct sl_diag *d)
{
	struct nats_store *s = c->s;
	int rc;

	memset(p, 0, sizeof(*p));
	if ((rc = proc_key(&s->tmp[0], proc, ".row", d)) ||
	    (rc = touch(c, B_PROCS, s->tmp[0].ptr, NULL, w, d)))
		return rc;
	*present = (*w)->val && (*w)->len;
	return *present ? prow_decode(s, proc, (*w)->val, (*w)->len, p, d) : 0;
}

static int prow_set(struct kv_write *w, struct prow *p, struct sl_diag *d)
{
	size_t len = 0;
	char *val = prow_encode(p, &len);

	prow_release(p);
	return set_pending(w, val, len, d);
}

static int nats_proc_put(struct sl_commit *c, const char *proc, int64_t version, int64_t anchor,
                         struct sl_diag *d)
{
	struct kv_write *w;
	struct prow p;
	int rc, present;

	if ((rc = prow_touch(nc_of(c), proc, &w, &p, &present, d)))
		return rc;
	if (!present)
		p.anchor = anchor; /* stored once, never moved */
	p.version = version;
	return prow_set(w, &p, d);
}

static int nats_proc_hashes(struct sl_commit *base, const char *proc, const char *script_hash,
                            const char *contract_hash, int *cleared, struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct kv_write *w;
	struct prow p;
	int rc, present;

	*cleared = 0;
	if ((rc = prow_touch(c, proc, &w, &p, &present, d)) || !present)
		return rc;
	if (p.script && p.contract && !strcmp(p.script, script_hash) &&
	    !strcmp(p.contract, contract_hash)) {
		prow_release(&p);
		return 0;
	}
	free(p.script);
	free(p.contract);
	p.script = strdup(script_hash);
	p.contract = strdup(contract_hash);
	if (!p.script || !p.contract) {
		prow_release(&p);
		return oom(d);
	}
	if ((rc = prow_set(w, &p, d)))
		return rc;
	return clear_faults(c, proc, NULL, cleared, d);
}

/* ---- the ops: rates, reload errors, dead letters ----------------------------------------- */

static int put_json(struct nats_commit *c, int b, const char *key, struct sl_buf *v,
                    struct sl_diag *d)
{
	size_t len;
	char *val;

	if (!sl_buf_ok(v)) {
		sl_buf_release(v);
		return oom(d);
	}
	val = sl_buf_detach(v, &len);
	return blind_write(c, b, W_PUT, key, val, len, d);
}

static int nats_rates_put(struct sl_commit *base, const char *proc, const struct sl_rate *r,
                          size_t n, int64_t at_ms, struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct nats_store *s = c->s;
	struct sl_buf v;
	size_t i;
	int rc;

	for (i = 0; i <= n; i++) { /* the rows, then the heartbeat (key "<proc>") */
		if ((rc = i < n ? inst_key(&s->tmp[0], proc, r[i].stream, NULL, d)
		                : proc_key(&s->tmp[0], proc, "", d)))
			return rc;
		sl_buf_init(&v);
		if (i < n)
			sl_buf_addf(&v, "{\"rate\":%.17g,\"at\":%lld,\"until\":%lld}", r[i].rate,
			            (long long)at_ms, (long long)r[i].until_ms);
		else
			sl_buf_addf(&v, "{\"at\":%lld}", (long long)at_ms);
		if ((rc = put_json(c, B_RATES, s->tmp[0].ptr, &v, d)))
			return rc;
	}
	return 0;
}

/* A member of the value of key in bucket b (v->found 0: no such key or member). */
static int get_member(struct nats_store *s, int b, const char *key, struct vpick *v,
                      struct sl_diag *d)
{
	uint64_t rev;
	size_t len;
	char *val;
	int rc, none;

	if ((rc = rows_bucket(s, b, 0, &none, d)) || none)
		return rc;
	if ((rc = kv_get(s, s->kv[b], key, &val, &len, &rev, d)) || !val)
		return rc;
	if (len && sl_json_members(val, len, pick_value, v, NULL))
		rc = sl_diag_set(d, SL_ECORRUPT, "store '%s': the row '%s' is damaged", s->path,
		                 key);
	free(val);
	return rc;
}

static int nats_rate_get(struct sl_store *base, const char *proc, const char *stream, double *rate,
                         int64_t *at_ms, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct vpick r = {"rate", 0, 0, NULL, 0}, at = {"at", 0, 0, NULL, 0},
		     hb = {"at", 0, 0, NULL, 0}, until = {"until", 0, 0, NULL, 0};
	int rc;

	*rate = 0, *at_ms = 0;
	if ((rc = inst_key(&s->tmp[0], proc, stream, NULL, d)) ||
	    (rc = get_member(s, B_RATES, s->tmp[0].ptr, &r, d)) ||
	    (rc = get_member(s, B_RATES, s->tmp[0].ptr, &at, d)) ||
	    (rc = get_member(s, B_RATES, s->tmp[0].ptr, &until, d)))
		return rc;
	/* A rate holds until "until" (sl_rate), when its instance went idle. */
	if (!r.found || (until.integer > 0 && until.integer <= sl_store_now_ms()))
		return 0;
	if ((rc = proc_key(&s->tmp[0], proc, "", d)) ||
	    (rc = get_member(s, B_RATES, s->tmp[0].ptr, &hb, d)))
		return rc;
	*rate = r.number;
	*at_ms = at.integer > hb.integer ? at.integer : hb.integer;
	return 0;
}

static int nats_reload_error_put(struct sl_commit *base, const char *proc, const char *msg,
                                 struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct sl_buf v;
	int rc;

	if ((rc = proc_key(&c->s->tmp[0], proc, ".reload", d)))
		return rc;
	if (!msg)
		return blind_write(c, B_PROCS, W_DEL, c->s->tmp[0].ptr, NULL, 0, d);
	sl_buf_init(&v);
	sl_buf_adds(&v, "{\"message\":");
	sl_buf_addjstr(&v, msg, strlen(msg));
	sl_buf_addc(&v, '}');
	return put_json(c, B_PROCS, c->s->tmp[0].ptr, &v, d);
}

static int nats_reload_error_get(struct sl_store *base, const char *proc, char **msg_out,
                                 struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct vpick v = {"message", 0, 0, NULL, 0};
	int rc;

	*msg_out = NULL;
	if ((rc = proc_key(&s->tmp[0], proc, ".reload", d)) ||
	    (rc = get_member(s, B_PROCS, s->tmp[0].ptr, &v, d))) {
		free(v.str);
		return rc;
	}
	*msg_out = v.str;
	return 0;
}

static int nats_dead_letter(struct sl_commit *base, const struct sl_dead_letter *dl,
                            struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct sl_buf v;
	char tail[32];
	int rc;

	snprintf(tail, sizeof(tail), ".%lld", (long long)dl->offset);
	if ((rc = inst_key(&c->s->tmp[0], dl->processor, dl->stream, tail, d)))
		return rc;
	sl_buf_init(&v);
	sl_buf_adds(&v, "{\"processor\":");
	sl_buf_addjstr(&v, dl->processor, strlen(dl->processor));
	sl_buf_adds(&v, ",\"stream\":");
	sl_buf_addjstr(&v, dl->stream, strlen(dl->stream));
	sl_buf_addf(&v, ",\"offset\":%lld,\"position\":%lld,\"type\":", (long long)dl->offset,
	            (long long)dl->position);
	sl_buf_addjstr(&v, dl->type, strlen(dl->type));
	sl_buf_adds(&v, ",\"error\":");
	sl_buf_addjstr(&v, dl->error, strlen(dl->error));
	sl_buf_adds(&v, ",\"traceback\":");
	addjstr_or_null(&v, dl->traceback);
	sl_buf_addf(&v, ",\"attempts\":%lld,\"at\":", (long long)dl->attempts);
	sl_buf_addjstr(&v, dl->at, strlen(dl->at));
	sl_buf_addc(&v, '}');
	if (!sl_buf_ok(&v)) {
		sl_buf_release(&v);
		return oom(d);
	}
	{
		size_t len;
		char *val = sl_buf_detach(&v, &len);
		return blind_write(c, B_DEAD, W_CREATE, c->s->tmp[0].ptr, val, len, d);
	}
}

/* A dead letter decoded from its value: strings copied into one buffer. */
struct dead_pick {
	struct sl_dead_letter dl;
	char *str[6]; /* processor, stream, type, error, traceback, at */
};

static int pick_dead(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	static const char *const names[6] = {"processor", "stream",    "type",
	                                     "error",     "traceback", "at"};
	struct dead_pick *p = ud;
	int i;

	if (m->kind == SL_JSON_INTEGER) {
		if (is_key(m, "offset"))
			p->dl.offset = m->integer;
		else if (is_key(m, "position"))
			p->dl.position = m->integer;
		else if (is_key(m, "attempts"))
			p->dl.attempts = m->integer;
		return 0;
	}
	for (i = 0; i < 6; i++)
		if (m->kind == SL_JSON_STRING && is_key(m, names[i]) && !p->str[i] &&
		    !(p->str[i] = dup_n(m->text, m->len)))
			return oom(d);
	return 0;
}

struct dead_each {
	struct nats_store *s;
	sl_dead_fn fn;
	void *ud;
};

static int each_dead(void *ud, const char *key, const char *val, size_t len, uint64_t rev,
                     struct sl_diag *d)
{
	struct dead_each *de = ud;
	struct dead_pick p;
	int i, rc;

	(void)rev;
	memset(&p, 0, sizeof(p));
	if (sl_json_members(val, len, pick_dead, &p, NULL) || !p.str[0] || !p.str[1] || !p.str[2] ||
	    !p.str[3] || !p.str[5])
		rc = sl_diag_set(d, SL_ECORRUPT, "store '%s': the dead letter '%s' is damaged",
		                 de->s->path, key);
	else {
		p.dl.processor = p.str[0], p.dl.stream = p.str[1], p.dl.type = p.str[2];
		p.dl.error = p.str[3], p.dl.traceback = p.str[4], p.dl.at = p.str[5];
		rc = de->fn(de->ud, &p.dl);
	}
	for (i = 0; i < 6; i++)
		free(p.str[i]);
	return rc;
}

/* Oldest first: the watcher hands out the keys in the order they were written, and a
 * dead letter is written once. */
static int nats_dead_letters(struct sl_store *base, sl_dead_fn fn, void *ud, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct dead_each de = {s, fn, ud};
	int rc, none;

	if ((rc = rows_bucket(s, B_DEAD, 0, &none, d)) || none)
		return rc;
	rc = kv_each(s, s->kv[B_DEAD], ">", each_dead, &de, d);
	return rc > 0 ? 0 : rc;
}

struct dead_clear {
	struct nats_commit *c;
	int64_t n;
};

static int clear_dead(void *ud, const char *key, const char *val, size_t len, uint64_t rev,
                      struct sl_diag *d)
{
	struct dead_clear *dc = ud;

	(void)val, (void)len, (void)rev;
	dc->n++;
	return blind_write(dc->c, B_DEAD, W_DEL, key, NULL, 0, d);
}

static int nats_dead_letters_clear(struct sl_commit *base, const char *proc, int64_t *n,
                                   struct sl_diag *d)
{
	struct nats_commit *c = nc_of(base);
	struct nats_store *s = c->s;
	struct dead_clear dc = {c, 0};
	int rc, none;

	*n = 0;
	if ((rc = rows_bucket(s, B_DEAD, 1, &none, d)))
		return rc;
	if (proc && (rc = proc_key(&s->tmp[1], proc, ".>", d)))
		return rc;
	if ((rc = kv_each(s, s->kv[B_DEAD], proc ? s->tmp[1].ptr : ">", clear_dead, &dc, d)))
		return rc;
	*n = dc.n;
	return 0;
}

/* ---- reading rows ------------------------------------------------------------------------ */

/* The value of key in bucket b as store s sees it: the open commit's pending write if
 * it has one, else the bucket's (*val malloc'd or NULL; *rev 0 from the commit). */
static int row_value(struct nats_store *s, int b, const char *key, char **val, size_t *len,
                     uint64_t *rev, int *pending, struct sl_diag *d)
{
	struct kv_write *w = s->base.open ? find_write(nc_of(s->base.open), b, key) : NULL;
	int rc, none;

	*val = NULL, *len = 0, *rev = 0, *pending = w != NULL;
	if (w) {
		if (w->val && !(*val = dup_n(w->val, w->len)))
			return oom(d);
		*len = w->val ? w->len : 0;
		return 0;
	}
	if ((rc = rows_bucket(s, b, 0, &none, d)) || none)
		return rc;
	return kv_get(s, s->kv[b], key, val, len, rev, d);
}

static int nats_proc_get(struct sl_store *base, const char *proc, int *exists, int64_t *version,
                         int64_t *anchor, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct prow p;
	uint64_t rev;
	size_t len;
	char *val;
	int rc, pending;

	*exists = 0, *version = 0, *anchor = 0;
	if ((rc = proc_key(&s->tmp[0], proc, ".row", d)) ||
	    (rc = row_value(s, B_PROCS, s->tmp[0].ptr, &val, &len, &rev, &pending, d)))
		return rc;
	if (val && len && !(rc = prow_decode(s, proc, val, len, &p, d))) {
		*exists = 1, *version = p.version, *anchor = p.anchor;
		prow_release(&p);
	}
	free(val);
	return rc;
}

/* Runs r's projection log in the projection database and moves key's mark to its
 * projOffset, in one transaction; -1 when the mark moved before it could (nothing to
 * do). */
static int proj_repair(struct nats_store *s, const char *key, const struct row *r,
                       struct sl_diag *d)
{
	unsigned char *log;
	size_t len;
	int rc;

	if (b64_decode(r->plog, r->plog_len, &log, &len))
		return sl_diag_set(
			d, SL_ECORRUPT,
			"store '%s': the projection log of checkpoint row '%s' is damaged", s->path,
			key);
	if (!(rc = sl_proj_exec(s->pj, "BEGIN IMMEDIATE", d))) {
		int64_t mark;
		/* Again under the write lock: a runner of this file may have committed the
		 * rows meanwhile (it was in the window when the row was read). */
		if ((rc = sl_proj_mark_get(s->pj, key, &mark, d)) ||
		    (mark < 0 ? 0 : mark) != r->pfrom) {
			sl_proj_exec(s->pj, "ROLLBACK", NULL);
			free(log);
			return rc ? rc : -1;
		}
		if ((rc = sl_proj_replay(s->pj, log, len, d)) ||
		    (rc = sl_proj_mark_put(s->pj, key, r->proj, d)) ||
		    (rc = sl_proj_exec(s->pj, "COMMIT", d)))
			sl_proj_exec(s->pj, "ROLLBACK", NULL);
	}
	free(log);
	return rc;
}

/* A row whose projOffset is ahead of the instance's mark in the projection database:
 * the runner that committed it died before its projection rows were, or another
 * runner (with a database of its own) ran the instance. Said in the log. */
static void proj_check(struct nats_store *s, const char *proc, const char *key, const struct row *r)
{
	struct sl_diag d;
	int64_t mark;
	uint64_t warned;
	int rc;

	sl_diag_init(&d);
	if (!s->pj) {
		if (sl_proj_open(&s->pj, s->proj_path, s->dur, &d))
			return;
		sl_proj_on_touch(s->pj, proj_touch, s);
	}
	if (sl_proj_mark_get(s->pj, key, &mark, &d) || mark >= r->proj)
		return;
	if (mark < 0)
		mark = 0;
	if (r->plog && mark == r->pfrom && !(s->cur && s->cur->ptx) &&
	    (rc = proj_repair(s, key, r, &d)) <= 0) {
		if (rc < 0)
			return;
		sl_log(SL_LOG_INFO, proc, r->stream, r->proj,
		       "the projection rows of the commit up to offset %lld were not written to "
		       "'%s'"
		       " (its runner stopped first): written now from the checkpoint's log",
		       (long long)r->proj, s->proj_path);
		return;
	}
	if (rev_find(&s->pwarned, key, &warned) && warned == (uint64_t)r->proj)
		return; /* said once */
	rev_put(&s->pwarned, key, (uint64_t)r->proj);
	if (*d.msg)
		sl_log(SL_LOG_ERROR, proc, r->stream, r->proj, "%s", sl_diag_msg(&d));
	sl_log(SL_LOG_WARN, proc, r->stream, r->proj,
	       "the projection rows of this instance up to offset %lld are not in '%s' (it"
	       " holds them up to offset %lld): the runner that committed them stopped before"
	       " writing them here, or ran on another machine; `sluice reset` of the processor"
	       " rebuilds them",
	       (long long)r->proj, s->proj_path, (long long)(mark < 0 ? 0 : mark));
}

static int nats_ckpt_get(struct sl_store *base, const char *proc, const char *stream,
                         struct sl_ckpt *c, int *found, struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct row r;
	uint64_t rev;
	size_t len;
	char *val;
	int rc, pending, present = 0;

	memset(c, 0, sizeof(*c));
	*found = 0;
	if ((rc = inst_key(&s->tmp[0], proc, stream, NULL, d)) ||
	    (rc = row_value(s, B_CKPT, s->tmp[0].ptr, &val, &len, &rev, &pending, d)))
		return rc;
	if (!pending && s->kv[B_CKPT])
		rev_put(&s->revs, s->tmp[0].ptr, rev); /* what the engine now computes from */
	if (!(rc = row_decode(s, s->tmp[0].ptr, val, len, &r, &present, d)) && present) {
		row_to_ckpt(&r, c);
		*found = 1;
		if (r.proj > 0 && s->proj_path)
			proj_check(s, proc, s->tmp[0].ptr, &r);
	}
	row_release(&r);
	free(val);
	return rc;
}

/* Every row of proc, sorted by stream. */
struct rowset {
	struct nats_store *s;
	struct rowent {
		struct row r;
		char *key;
	} * v;
	size_t n, cap;
};

static void rowset_release(struct rowset *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++) {
		row_release(&rs->v[i].r);
		free(rs->v[i].key);
	}
	free(rs->v);
	rs->v = NULL, rs->n = rs->cap = 0;
}

static int rowset_add(void *ud, const char *key, const char *val, size_t len, uint64_t rev,
                      struct sl_diag *d)
{
	struct rowset *rs = ud;
	struct row r;
	int rc, present;

	rev_put(&rs->s->revs, key, rev);
	if ((rc = row_decode(rs->s, key, val, len, &r, &present, d)) || !present)
		return rc;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct rowent *v = realloc(rs->v, cap * sizeof(*v));
		if (!v) {
			row_release(&r);
			return oom(d);
		}
		rs->v = v, rs->cap = cap;
	}
	rs->v[rs->n].r = r;
	if (!(rs->v[rs->n].key = strdup(key))) {
		row_release(&r);
		return oom(d);
	}
	rs->n++;
	return 0;
}

static int cmp_rowent(const void *a, const void *b)
{
	return strcmp(((const struct rowent *)a)->r.stream, ((const struct rowent *)b)->r.stream);
}

static int rowset_load(struct nats_store *s, const char *proc, struct rowset *rs, struct sl_diag *d)
{
	int rc, none;

	memset(rs, 0, sizeof(*rs));
	rs->s = s;
	if ((rc = rows_bucket(s, B_CKPT, 0, &none, d)) || none)
		return rc;
	if ((rc = proc_key(&s->tmp[1], proc, ".>", d)) ||
	    (rc = kv_each(s, s->kv[B_CKPT], s->tmp[1].ptr, rowset_add, rs, d)))
		return rc;
	if (rs->n)
		qsort(rs->v, rs->n, sizeof(*rs->v), cmp_rowent);
	return 0;
}

/* (ckpt_each and ckpt_behind read the bucket: no caller runs them inside a commit.) */
static int nats_ckpt_each(struct sl_store *base, const char *proc, sl_ckpt_fn fn, void *ud,
                          struct sl_diag *d)
{
	struct rowset rs;
	struct sl_ckpt c;
	size_t i;
	int rc;

	if (!(rc = rowset_load(ns(base), proc, &rs, d)))
		for (i = 0; i < rs.n && !rc; i++) {
			memset(&c, 0, sizeof(c));
			c.offset = rs.v[i].r.offset;
			c.effects_mark = rs.v[i].r.mark;
			c.state = rs.v[i].r.state, c.state_len = rs.v[i].r.state_len;
			c.faulted = rs.v[i].r.faulted;
			c.last_error = rs.v[i].r.error;
			c.background_failures = rs.v[i].r.bgf;
			rc = fn(ud, rs.v[i].r.stream, &c);
		}
	rowset_release(&rs);
	return rc > 0 ? 0 : rc;
}

/* One pass over the streams (one read of each stream's last message) and one over the
 * processor's rows. */
static int nats_ckpt_behind(struct sl_store *base, const char *proc, sl_behind_fn fn, void *ud,
                            struct sl_diag *d)
{
	struct nats_store *s = ns(base);
	struct rowset rs;
	struct rowent key, *hit;
	struct sl_behind b;
	struct sstates ss;
	size_t i;
	int rc;

	memset(&ss, 0, sizeof(ss));
	if (!s->exists)
		return 0;
	if ((rc = rowset_load(s, proc, &rs, d)) || (rc = list_states(s, &ss, d)))
		goto out;
	/* Every instance, caught up or not: one whose runner died in the window of its
	 * projection commit may be caught up. */
	for (i = 0; s->proj_path && i < rs.n; i++)
		if (rs.v[i].r.proj > 0)
			proj_check(s, proc, rs.v[i].key, &rs.v[i].r);
	memset(&key, 0, sizeof(key));
	for (i = 0; i < ss.n && !rc; i++) {
		if (ss.e[i].bad) {
			rc = sstate_error(&ss.e[i], d);
			break;
		}
		if (sstate_none(&ss.e[i]))
			continue;
		key.r.stream = ss.e[i].name;
		hit = rs.n ? bsearch(&key, rs.v, rs.n, sizeof(*rs.v), cmp_rowent) : NULL;
		memset(&b, 0, sizeof(b));
		b.stream = ss.e[i].name;
		b.head = ss.e[i].v.head;
		if (hit) {
			b.has_row = 1;
			b.offset = hit->r.offset, b.effects_mark = hit->r.mark;
			b.faulted = hit->r.faulted;
		}
		if (b.offset < b.head || !b.has_row)
			rc = fn(ud, &b);
	}
out:
	sstates_release(&ss);
	rowset_release(&rs);
	return rc > 0 ? 0 : rc;
}

/* ---- verify: the checkpoints ------------------------------------------------------------- */

/* Decodes the processor part of a row key ("<proc>.<stream>") into b. */
static int key_proc(const char *key, struct sl_buf *b)
{
	const char *p;

	sl_buf_reset(b);
	for (p = key; *p && *p != '.'; p++) {
		if (*p == '=' && p[1] && p[2]) {
			char hex[3] = {p[1], p[2], '\0'};
			sl_buf_addc(b, (char)strtol(hex, NULL, 16));
			p += 2;
		} else {
			sl_buf_addc(b, *p);
		}
	}
	sl_buf_addc(b, '\0');
	return sl_buf_ok(b);
}

struct vck {
	struct vwalk *w;
	int64_t upto;
	struct sl_buf proc;
};

static int vck_row(void *ud, const char *key, const char *val, size_t len, uint64_t rev,
                   struct sl_diag *d)
{
	struct vck *v = ud;
	struct vwalk *w = v->w;
	struct sl_store_problem p;
	const struct vstream *vs;
	const char *name;
	struct row r;
	int64_t head;
	int rc, present;

	(void)rev;
	if ((rc = row_decode(w->s, key, val, len, &r, &present, d)) || !present)
		return rc;
	w->sum->checkpoints++;
	name = r.stream;
	vs = *name && w->n ? bsearch(&name, w->st, w->n, sizeof(*w->st), cmp_vstream) : NULL;
	head = *name ? (vs ? vs->head : 0) : v->upto;
	if (r.offset > head) {
		if (!key_proc(key, &v->proc)) {
			row_release(&r);
			return oom(d);
		}
		vproblem(&p, "checkpoint-ahead", *name ? name : NULL);
		p.processor = v->proc.ptr;
		p.offset = r.offset;
		p.head = head;
		if (*name)
			snprintf(w->msg, sizeof(w->msg),
			         "processor '%s' has a checkpoint at offset %lld of stream '%s', "
			         "whose"
			         " head is %lld",
			         v->proc.ptr, (long long)r.offset, name, (long long)head);
		else
			snprintf(w->msg, sizeof(w->msg),
			         "processor '%s' has a checkpoint at position %lld, above the "
			         "store's"
			         " head position %lld",
			         v->proc.ptr, (long long)r.offset, (long long)head);
		rc = vreport(w, &p);
	}
	row_release(&r);
	return rc;
}

/* Every checkpoint row against its stream's head (a mode all one against the store's
 * head position). */
static int vckpts(struct vwalk *w, int64_t upto, struct sl_diag *d)
{
	struct vck v = {w, upto, {0}};
	int rc, none;

	if ((rc = rows_bucket(w->s, B_CKPT, 0, &none, d)) || none)
		return rc;
	sl_buf_init(&v.proc);
	rc = kv_each(w->s, w->s->kv[B_CKPT], ">", vck_row, &v, d);
	sl_buf_release(&v.proc);
	return rc;
}

const struct sl_store_ops sl_store_nats_ops = {
	.name = "nats",
	.open = nats_open,
	.close = nats_close,
	.append = nats_append,
	.read = nats_read,
	.read_all = nats_read_all,
	.streams = nats_streams,
	.head_position = nats_head_position,
	.data_version = nats_data_version,
	.watch_file = NULL,
	.wake_start = nats_wake_start,
	.wake_stop = nats_wake_stop,
	.verify = nats_verify,
	.proc_get = nats_proc_get,
	.ckpt_get = nats_ckpt_get,
	.ckpt_each = nats_ckpt_each,
	.ckpt_behind = nats_ckpt_behind,
	.dead_letters = nats_dead_letters,
	.lease_acquire = nats_lease_acquire,
	.lease_release = nats_lease_release,
	.lease_get = nats_lease_get,
	.part_acquire = nats_part_acquire,
	.part_release = nats_part_release,
	.part_get = nats_part_get,
	.runners = nats_runners,
	.commit_begin = nats_commit_begin,
	.commit_end = nats_commit_end,
	.group_begin = NULL,
	.group_end = NULL,
	.commit_append = nats_commit_append,
	.commit_projection = nats_commit_projection,
	.proc_put = nats_proc_put,
	.proc_hashes = nats_proc_hashes,
	.ckpt_put = nats_ckpt_put,
	.rates_put = nats_rates_put,
	.rate_get = nats_rate_get,
	.reload_error_put = nats_reload_error_put,
	.reload_error_get = nats_reload_error_get,
	.ckpt_put_offset = nats_ckpt_put_offset,
	.fault = nats_fault,
	.clear_fault = nats_clear_fault,
	.background_failure = nats_background_failure,
	.dead_letter = nats_dead_letter,
	.dead_letters_clear = nats_dead_letters_clear,
	.reset = nats_reset,
	.drop_tables = nats_drop_tables,
};
