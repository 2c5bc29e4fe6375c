/* sl_store.c - the backend-neutral half of the store: input validation, the caller's
 * payload check, the one-commit-at-a-time rule, and dispatch to the backend.
 *
 * What an event may look like is decided here once, for every backend: a backend's
 * append sees only events that passed sl_store_check_event. Which backend serves a
 * store is decided by its path (sl_store_open); the rest of this file only forwards.
 */
#include "sl_store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sl_buf.h"
#include "sl_checkpoint.h"
#include "sl_hash.h"
#include "sl_json.h"
#include "sl_store_backend.h"

/* ---- validation -------------------------------------------------------------------- */

static int seg_first(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '-';
}

int sl_stream_name_valid(const char *name)
{
	size_t i, len = name ? strlen(name) : 0;
	int at_start = 1;

	if (len == 0 || len > SL_STREAM_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '/') {
			if (at_start)
				return 0;
			at_start = 1;
		} else if (at_start) {
			if (!seg_first(c) || c > 0x7f)
				return 0;
			at_start = 0;
		} else if (!(seg_first(c) || c == '.') || c > 0x7f) {
			return 0;
		}
	}
	return !at_start;
}

int sl_store_ns_valid(const char *ns)
{
	size_t len = ns ? strlen(ns) : 0;

	return len >= 1 && len <= SL_STORE_NS_MAX &&
	       strspn(ns, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") ==
	               len;
}

static int is_blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return 0;
	return 1;
}

static int has_control(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 1;
	return 0;
}

/* Core types written only by the store itself. */
static int engine_only_type(const char *type)
{
	return !strcmp(type, "stream/created") || !strcmp(type, "stream/child-stream-created");
}

/* Length of the JSON text without whitespace outside strings. */
static size_t compact_len(const char *p, size_t n)
{
	size_t i, len = 0;
	int in_str = 0;

	for (i = 0; i < n; i++) {
		char c = p[i];
		if (in_str) {
			if (c == '\\')
				len++, i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			continue;
		} else if (c == '"') {
			in_str = 1;
		}
		len++;
	}
	return len;
}

const char *sl_store_compact(const char *p, size_t n, size_t *outlen, struct sl_buf *b)
{
	size_t i, run = 0;
	int in_str = 0;

	if ((*outlen = compact_len(p, n)) == n)
		return p;
	sl_buf_reset(b);
	for (i = 0; i < n; i++) {
		char c = p[i];
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
		} else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			sl_buf_add(b, p + run, i - run);
			run = i + 1;
		} else if (c == '"') {
			in_str = 1;
		}
	}
	sl_buf_add(b, p + run, n - run);
	return sl_buf_ok(b) ? b->ptr : NULL;
}

static int check_object(const char *field, const char *p, size_t n, struct sl_diag *d)
{
	enum sl_json_kind kind;
	int rc;

	if ((rc = sl_json_check(p, n, &kind, d))) {
		sl_diag_prefix(d, "%s", field);
		return rc; /* (not the prefix's result: d may be NULL) */
	}
	if (kind != SL_JSON_OBJECT)
		return sl_diag_set(d, SL_EINVAL, "%s: must be a JSON object, got %s", field,
		                   sl_json_kind_name(kind));
	return 0;
}

/* The length of the event's JSON line, with the widest numbers and a createdAt. */
static size_t envelope_len(const struct sl_event_in *ev)
{
	size_t n = sizeof("{\"stream\":,\"offset\":,\"position\":,\"type\":,\"payload\":"
	                  ",\"createdAt\":\"2026-11-25T12:00:00.123Z\"}") -
	           1;

	n += sl_jstr_len(ev->stream, strlen(ev->stream)) + 2 * 20;
	n += sl_jstr_len(ev->type, strlen(ev->type));
	n += ev->payload ? compact_len(ev->payload, ev->payload_len) : 2;
	if (ev->metadata)
		n += sizeof(",\"metadata\":") - 1 + compact_len(ev->metadata, ev->metadata_len);
	if (ev->key)
		n += sizeof(",\"idempotencyKey\":") - 1 + sl_jstr_len(ev->key, strlen(ev->key));
	return n;
}

/* The caller's check of the payload ("{}" when the event has none). */
static int check_payload(const struct sl_event_in *ev, sl_payload_check_fn check, void *ud,
                         struct sl_diag *d)
{
	int rc;

	if (!check)
		return 0;
	if ((rc = ev->payload ? check(ud, ev->type, ev->payload, ev->payload_len, d)
	                      : check(ud, ev->type, "{}", 2, d)))
		sl_diag_prefix(d, "payload");
	return rc;
}

int sl_store_check_event(const struct sl_event_in *ev, sl_payload_check_fn check, void *ud,
                         struct sl_diag *d)
{
	size_t tlen, size;
	int rc;

	_Static_assert(SL_STREAM_MAX == 255, "SL_STREAM_RULE says 255 bytes");
	if (!ev->stream || !sl_stream_name_valid(ev->stream))
		return sl_diag_set(d, SL_EINVAL,
		                   "stream: invalid stream name '%.*s%s'" SL_STREAM_RULE,
		                   SL_ECHO(ev->stream ? ev->stream : ""));
	if (!ev->type || !(tlen = strlen(ev->type)))
		return sl_diag_set(d, SL_EINVAL, "type: must be a non-empty string");
	if (tlen > SL_TYPE_MAX)
		return sl_diag_set(d, SL_EINVAL, "type: longer than %d bytes (%zu)", SL_TYPE_MAX,
		                   tlen);
	if (!sl_utf8_valid(ev->type, tlen) || has_control(ev->type, tlen))
		return sl_diag_set(d, SL_EINVAL,
		                   "type: must be UTF-8 text without control characters");
	if (engine_only_type(ev->type))
		return sl_diag_set(d, SL_EINVAL, "type: '%.*s%s' is written by the store only",
		                   SL_ECHO(ev->type));
	if (ev->payload && (rc = check_object("payload", ev->payload, ev->payload_len, d)))
		return rc;
	if (ev->metadata && (rc = check_object("metadata", ev->metadata, ev->metadata_len, d)))
		return rc;
	if (ev->key && (is_blank(ev->key) || !sl_utf8_valid(ev->key, strlen(ev->key))))
		return sl_diag_set(d, SL_EINVAL,
		                   "idempotencyKey: must be a non-blank UTF-8 string");
	if (ev->offset < 0)
		return sl_diag_set(d, SL_EINVAL, "offset: must be a positive integer, got %lld",
		                   (long long)ev->offset);
	if ((size = envelope_len(ev)) > SL_EVENT_MAX)
		return sl_diag_set(d, SL_ETOOBIG, "event: %zu bytes, over the %d-byte limit", size,
		                   SL_EVENT_MAX);
	return check_payload(ev, check, ud, d);
}

/* Validates every event of a batch (unless the caller did), before anything is
 * written: *failed is the first bad one. */
static int check_batch(struct sl_store *s, const struct sl_event_in *ev, size_t n, int flags,
                       size_t *failed, struct sl_diag *d)
{
	size_t i;
	int rc;

	if (flags & SL_APPEND_CHECKED)
		return 0;
	for (i = 0; i < n; i++) {
		if ((rc = sl_store_check_event(&ev[i], s->check, s->check_ud, d))) {
			*failed = i;
			return rc;
		}
	}
	return 0;
}

/* ---- time and the envelope --------------------------------------------------------- */

void sl_store_now(char *out, size_t n)
{
	struct timespec ts;
	struct tm tm;
	char base[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, n, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000));
}

int64_t sl_store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sl_event_to_json(const struct sl_event *ev, struct sl_buf *b)
{
	sl_buf_adds(b, "{\"stream\":");
	sl_buf_addjstr(b, ev->stream, strlen(ev->stream));
	sl_buf_adds(b, ",\"offset\":");
	sl_buf_addi(b, ev->offset);
	sl_buf_adds(b, ",\"position\":");
	sl_buf_addi(b, ev->position);
	sl_buf_adds(b, ",\"type\":");
	sl_buf_addjstr(b, ev->type, strlen(ev->type));
	sl_buf_adds(b, ",\"payload\":");
	sl_buf_add(b, ev->payload, ev->payload_len);
	if (ev->metadata) {
		sl_buf_adds(b, ",\"metadata\":");
		sl_buf_add(b, ev->metadata, ev->metadata_len);
	}
	if (ev->key) {
		sl_buf_adds(b, ",\"idempotencyKey\":");
		sl_buf_addjstr(b, ev->key, strlen(ev->key));
	}
	sl_buf_adds(b, ",\"createdAt\":\"");
	sl_buf_adds(b, ev->created_at);
	sl_buf_adds(b, "\"}");
}

/* ---- opening and the event log ------------------------------------------------------- */

int sl_store_open(struct sl_store **out, const char *path, const struct sl_store_opts *opts,
                  struct sl_diag *d)
{
	static const struct sl_store_opts defaults = {
		SL_DURABILITY_FULL, 0, NULL, NULL, NULL, 0, NULL};
	const struct sl_store_ops *ops = &sl_store_sqlite_ops;
	int rc;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (!strncmp(path, "nats://", 7))
		ops = &sl_store_nats_ops;
	if ((rc = ops->open(out, path, opts, d)))
		return rc;
	(*out)->ops = ops;
	(*out)->check = opts->check;
	(*out)->check_ud = opts->check_ud;
	(*out)->open = NULL;
	(*out)->group = 0;
	return 0;
}

void sl_store_close(struct sl_store *s)
{
	if (!s)
		return;
	sl_commit_end(s->open, 0, NULL);
	sl_store_group_end(s, 0, NULL);
	s->ops->close(s);
}

/* Refuses a unit of work of its own while a commit is open. */
static int refuse_open(struct sl_store *s, const char *what, struct sl_diag *d)
{
	if (!s->open && !s->group)
		return 0;
	return sl_diag_set(d, SL_EBUSY, "store '%s': cannot %s while a commit%s is open", s->path,
	                   what, s->open ? "" : " group");
}

int sl_store_append(struct sl_store *s, const struct sl_event_in *ev, size_t n,
                    struct sl_append_result *res, int flags, size_t *failed, struct sl_diag *d)
{
	size_t bad = 0;
	int rc;

	if (!(rc = refuse_open(s, "append on its own", d)) &&
	    !(rc = check_batch(s, ev, n, flags, &bad, d)))
		rc = s->ops->append(s, ev, n, res, &bad, d);
	if (failed)
		*failed = bad;
	return rc;
}

/* A read of one stream as the backend hands it over, checked for holes. */
struct read_check {
	struct sl_store *s;
	const char *stream, *type;
	int64_t next, limit, n; /* the offset that must come next; events given to fn */
	sl_event_fn fn;
	void *ud;
	struct sl_diag *d;
};

/* Passes ev on to the reader if it is the next offset and of the type asked for. */
static int read_next(void *ud, const struct sl_event *ev)
{
	struct read_check *rc = ud;
	int r;

	if (ev->offset != rc->next)
		return sl_diag_set(
			rc->d, SL_ECORRUPT,
			"store '%s': stream '%s' has no event at offset %lld (the store is"
			" damaged: see sluice verify)",
			rc->s->path, rc->stream, (long long)rc->next);
	rc->next++;
	if (rc->type && strcmp(ev->type, rc->type))
		return 0;
	if ((r = rc->fn(rc->ud, ev)))
		return r;
	return rc->limit > 0 && ++rc->n >= rc->limit ? 1 : 0;
}

/* The backend reads every event from `from` on (no type filter, no limit), so that a
 * missing offset shows even where the reader would skip it; the filter and the limit
 * are applied here. */
int sl_store_read(struct sl_store *s, const char *stream, int64_t from, int64_t limit,
                  const char *type, sl_event_fn fn, void *ud, struct sl_diag *d)
{
	struct read_check rc = {s, stream, type, from < 1 ? 1 : from, limit, 0, fn, ud, d};

	return s->ops->read(s, stream, rc.next, type ? 0 : limit, NULL, read_next, &rc, d);
}

int sl_store_read_all(struct sl_store *s, int64_t from, int64_t limit, sl_event_fn fn, void *ud,
                      struct sl_diag *d)
{
	return s->ops->read_all(s, from, limit, fn, ud, d);
}

int sl_store_read_range(struct sl_store *s, const char *stream, int64_t from, const char *last,
                        int64_t limit, sl_event_fn fn, void *ud, struct sl_diag *d)
{
	if (!s->ops->read_range)
		return sl_diag_set(d, SL_EINVAL, "store '%s': the %s backend has no range read",
		                   s->path, s->ops->name);
	return s->ops->read_range(s, stream, from, last, limit, fn, ud, d);
}

int sl_store_has_read_range(const struct sl_store *s)
{
	return s->ops->read_range != NULL;
}

int sl_store_streams(struct sl_store *s, const char *prefix, sl_stream_fn fn, void *ud,
                     struct sl_diag *d)
{
	return s->ops->streams(s, prefix, fn, ud, d);
}

int sl_store_head_position(struct sl_store *s, int64_t *pos, struct sl_diag *d)
{
	return s->ops->head_position(s, pos, d);
}

int sl_store_data_version(struct sl_store *s, int64_t *v, struct sl_diag *d)
{
	return s->ops->data_version(s, v, d);
}

int sl_store_verify(struct sl_store *s, int flags, sl_problem_fn fn, sl_verify_progress_fn progress,
                    void *ud, struct sl_store_verify_summary *sum, struct sl_diag *d)
{
	int rc;

	memset(sum, 0, sizeof(*sum));
	if ((rc = refuse_open(s, "verify", d)))
		return rc;
	return s->ops->verify(s, flags, fn, progress, ud, sum, d);
}

const char *sl_store_watch_file(struct sl_store *s)
{
	return s->ops->watch_file ? s->ops->watch_file(s) : NULL;
}

int sl_store_wake_start(struct sl_store *s, sl_store_wake_fn fn, void *ud, struct sl_diag *d)
{
	if (!s->ops->wake_start)
		return SL_ENOTSUP;
	return s->ops->wake_start(s, fn, ud, d);
}

void sl_store_wake_stop(struct sl_store *s)
{
	if (s->ops->wake_stop)
		s->ops->wake_stop(s);
}

/* ---- the commit ------------------------------------------------------------------------ */

int sl_commit_begin(struct sl_store *s, const struct sl_fence *fence, struct sl_commit **out,
                    struct sl_diag *d)
{
	int rc;

	*out = NULL;
	if (s->open)
		return sl_diag_set(d, SL_EBUSY, "store '%s': a commit is already open", s->path);
	if (fence && (!fence->processor || !fence->owner))
		return sl_diag_set(d, SL_EINVAL, "fence: needs a processor and an owner");
	if (fence && fence->part && (!s->ops->part_acquire || fence->part > SL_PARTITIONS_MAX))
		return sl_diag_set(d, SL_EINVAL, "fence: no partition %d on store '%s'",
		                   fence->part - 1, s->path);
	if ((rc = s->ops->commit_begin(s, fence, out, d)))
		return rc;
	s->open = *out;
	return 0;
}

int sl_commit_end(struct sl_commit *c, int commit, struct sl_diag *d)
{
	struct sl_store *s;

	if (!c)
		return 0;
	s = c->store;
	s->open = NULL;
	return s->ops->commit_end(c, commit, d);
}

int sl_store_group_begin(struct sl_store *s)
{
	if (s->group || s->open || !s->ops->group_begin || !s->ops->group_begin(s))
		return 0;
	s->group = 1;
	return 1;
}

int sl_store_in_group(const struct sl_store *s)
{
	return s->group;
}

int sl_store_group_end(struct sl_store *s, int commit, struct sl_diag *d)
{
	if (!s->group)
		return 0;
	if (s->open) /* a caller's bug: the open commit is not part of what commits */
		sl_commit_end(s->open, 0, NULL);
	s->group = 0;
	return s->ops->group_end(s, commit, d);
}

int sl_commit_append(struct sl_commit *c, const struct sl_event_in *ev, size_t n,
                     struct sl_append_result *res, int flags, size_t *failed, struct sl_diag *d)
{
	size_t bad = 0;
	int rc;

	if (!(rc = check_batch(c->store, ev, n, flags, &bad, d)))
		rc = c->store->ops->commit_append(c, ev, n, res, &bad, d);
	if (failed)
		*failed = bad;
	return rc;
}

struct sl_proj *sl_commit_projection(struct sl_commit *c)
{
	return c->store->ops->commit_projection(c);
}

/* ---- leases ------------------------------------------------------------------------------ */

static int check_lease_args(const char *proc, const char *owner, struct sl_diag *d)
{
	size_t n = owner ? strlen(owner) : 0;

	if (!proc || !*proc)
		return sl_diag_set(d, SL_EINVAL, "lease: needs a processor name");
	if (owner && (n == 0 || n > SL_OWNER_MAX))
		return sl_diag_set(d, SL_EINVAL, "lease: owner must be 1 to %d bytes, got %zu",
		                   SL_OWNER_MAX, n);
	return 0;
}

int sl_store_lease_acquire(struct sl_store *s, const char *proc, const char *owner, int64_t ttl_ms,
                           struct sl_lease *out, struct sl_diag *d)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!owner)
		return sl_diag_set(d, SL_EINVAL, "lease: needs an owner");
	if ((rc = check_lease_args(proc, owner, d)) || (rc = refuse_open(s, "take a lease", d)))
		return rc;
	if (ttl_ms <= 0)
		return sl_diag_set(d, SL_EINVAL, "lease: the time to live must be positive");
	return s->ops->lease_acquire(s, proc, owner, ttl_ms, out, d);
}

int sl_store_lease_release(struct sl_store *s, const char *proc, const char *owner,
                           struct sl_diag *d)
{
	int rc;

	if (!owner)
		return sl_diag_set(d, SL_EINVAL, "lease: needs an owner");
	if ((rc = check_lease_args(proc, owner, d)) || (rc = refuse_open(s, "release a lease", d)))
		return rc;
	return s->ops->lease_release(s, proc, owner, d);
}

int sl_store_lease_get(struct sl_store *s, const char *proc, struct sl_lease *out, int *found,
                       struct sl_diag *d)
{
	int rc;

	memset(out, 0, sizeof(*out));
	*found = 0;
	if ((rc = check_lease_args(proc, NULL, d)))
		return rc;
	return s->ops->lease_get(s, proc, out, found, d);
}

/* ---- partitioned runners ------------------------------------------------------------------ */

int sl_store_has_partitions(const struct sl_store *s)
{
	return s->ops->part_acquire != NULL;
}

int sl_partition_of(const char *stream, int n)
{
	return n > 1 ? (int)(sl_hash_str(stream) % (uint64_t)n) : 0;
}

static int check_part_args(struct sl_store *s, const char *proc, int part, const char *owner,
                           struct sl_diag *d)
{
	int rc;

	if (!s->ops->part_acquire)
		return sl_diag_set(d, SL_EINVAL,
		                   "store '%s': partitioned runners need a nats:// store", s->path);
	if ((rc = check_lease_args(proc, owner, d)))
		return rc;
	if (part < 0 || part >= SL_PARTITIONS_MAX)
		return sl_diag_set(d, SL_EINVAL, "lease: partition must be 0 to %d, got %d",
		                   SL_PARTITIONS_MAX - 1, part);
	return 0;
}

int sl_store_part_acquire(struct sl_store *s, const char *proc, int part, const char *owner,
                          int64_t ttl_ms, struct sl_lease *out, struct sl_diag *d)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!owner)
		return sl_diag_set(d, SL_EINVAL, "lease: needs an owner");
	if ((rc = check_part_args(s, proc, part, owner, d)) ||
	    (rc = refuse_open(s, "take a lease", d)))
		return rc;
	if (ttl_ms <= 0)
		return sl_diag_set(d, SL_EINVAL, "lease: the time to live must be positive");
	return s->ops->part_acquire(s, proc, part, owner, ttl_ms, out, d);
}

int sl_store_part_release(struct sl_store *s, const char *proc, int part, const char *owner,
                          struct sl_diag *d)
{
	int rc;

	if (!owner)
		return sl_diag_set(d, SL_EINVAL, "lease: needs an owner");
	if ((rc = check_part_args(s, proc, part, owner, d)) ||
	    (rc = refuse_open(s, "release a lease", d)))
		return rc;
	return s->ops->part_release(s, proc, part, owner, d);
}

int sl_store_part_get(struct sl_store *s, const char *proc, int part, struct sl_lease *out,
                      int *found, struct sl_diag *d)
{
	int rc;

	memset(out, 0, sizeof(*out));
	*found = 0;
	if ((rc = check_part_args(s, proc, part, NULL, d)))
		return rc;
	return s->ops->part_get(s, proc, part, out, found, d);
}

int sl_store_runners(struct sl_store *s, const char *proc, const char *owner, int64_t ttl_ms,
                     sl_runner_fn fn, void *ud, struct sl_diag *d)
{
	int rc;

	if ((rc = check_part_args(s, proc, 0, owner, d)))
		return rc;
	if (owner && (rc = refuse_open(s, "write a heartbeat", d)))
		return rc;
	if (ttl_ms < 0)
		return sl_diag_set(d, SL_EINVAL, "runners: the time to live must not be negative");
	return s->ops->runners(s, proc, owner, ttl_ms, fn, ud, d);
}

/* ---- rows (sl_checkpoint.h) ---------------------------------------------------------------- */

void sl_ckpt_release(struct sl_ckpt *c)
{
	free(c->state);
	free(c->last_error);
	memset(c, 0, sizeof(*c));
}

int sl_ckpt_proc_get(struct sl_store *s, const char *proc, int *exists, int64_t *version,
                     int64_t *anchor, struct sl_diag *d)
{
	return s->ops->proc_get(s, proc, exists, version, anchor, d);
}

int sl_ckpt_get(struct sl_store *s, const char *proc, const char *stream, struct sl_ckpt *c,
                int *found, struct sl_diag *d)
{
	return s->ops->ckpt_get(s, proc, stream, c, found, d);
}

int sl_ckpt_each(struct sl_store *s, const char *proc, sl_ckpt_fn fn, void *ud, struct sl_diag *d)
{
	return s->ops->ckpt_each(s, proc, fn, ud, d);
}

int sl_ckpt_behind(struct sl_store *s, const char *proc, sl_behind_fn fn, void *ud,
                   struct sl_diag *d)
{
	return s->ops->ckpt_behind(s, proc, fn, ud, d);
}

int sl_ckpt_dead_letters(struct sl_store *s, sl_dead_fn fn, void *ud, struct sl_diag *d)
{
	return s->ops->dead_letters(s, fn, ud, d);
}

int sl_ckpt_proc_put(struct sl_commit *c, const char *proc, int64_t version, int64_t anchor,
                     struct sl_diag *d)
{
	return c->store->ops->proc_put(c, proc, version, anchor, d);
}

int sl_ckpt_proc_hashes(struct sl_commit *c, const char *proc, const char *script_hash,
                        const char *contract_hash, int *cleared, struct sl_diag *d)
{
	*cleared = 0;
	return c->store->ops->proc_hashes(c, proc, script_hash, contract_hash, cleared, d);
}

int sl_ckpt_put(struct sl_commit *c, const char *proc, const char *stream, int64_t offset,
                const char *state, size_t state_len, int64_t effects_mark, struct sl_diag *d)
{
	int rc =
		c->store->ops->ckpt_put(c, proc, stream, offset, state, state_len, effects_mark, d);

	c->has_rate = 0;
	return rc;
}

int sl_commit_rate(struct sl_commit *c, const struct sl_rate *r)
{
	if (!c->store->ops->ckpt_rates)
		return 0;
	c->rate = *r;
	c->has_rate = 1;
	return 1;
}

int sl_ckpt_rates_put(struct sl_commit *c, const char *proc, const struct sl_rate *r, size_t n,
                      int64_t at_ms, struct sl_diag *d)
{
	return c->store->ops->rates_put(c, proc, r, n, at_ms, d);
}

int sl_ckpt_rate_get(struct sl_store *s, const char *proc, const char *stream, double *rate,
                     struct sl_diag *d)
{
	int64_t at;
	int rc = s->ops->rate_get(s, proc, stream, rate, &at, d);

	/* A runner records its rates every second: an older row is a runner gone. */
	if (rc == 0 && at < sl_store_now_ms() - SL_RATE_STALE_MS)
		*rate = 0;
	return rc;
}

int sl_ckpt_reload_error_put(struct sl_commit *c, const char *proc, const char *msg,
                             struct sl_diag *d)
{
	if (!proc || !*proc)
		return sl_diag_set(d, SL_EINVAL, "reload error: needs a processor name");
	return c->store->ops->reload_error_put(c, proc, msg, d);
}

int sl_ckpt_reload_error_get(struct sl_store *s, const char *proc, char **msg_out,
                             struct sl_diag *d)
{
	*msg_out = NULL;
	if (!proc || !*proc)
		return sl_diag_set(d, SL_EINVAL, "reload error: needs a processor name");
	return s->ops->reload_error_get(s, proc, msg_out, d);
}

int sl_ckpt_put_offset(struct sl_commit *c, const char *proc, const char *stream, int64_t offset,
                       int64_t effects_mark, struct sl_diag *d)
{
	int rc = c->store->ops->ckpt_put_offset(c, proc, stream, offset, effects_mark, d);

	c->has_rate = 0;
	return rc;
}

int sl_ckpt_fault(struct sl_commit *c, const char *proc, const char *stream, const char *error,
                  struct sl_diag *d)
{
	return c->store->ops->fault(c, proc, stream, error, d);
}

int sl_ckpt_clear_fault(struct sl_commit *c, const char *proc, const char *stream,
                        struct sl_diag *d)
{
	return c->store->ops->clear_fault(c, proc, stream, d);
}

int sl_ckpt_add_background_failure(struct sl_commit *c, const char *proc, const char *stream,
                                   struct sl_diag *d)
{
	return c->store->ops->background_failure(c, proc, stream, d);
}

int sl_ckpt_dead_letter(struct sl_commit *c, const struct sl_dead_letter *dl, struct sl_diag *d)
{
	return c->store->ops->dead_letter(c, dl, d);
}

int sl_ckpt_dead_letters_clear(struct sl_commit *c, const char *proc, int64_t *n, struct sl_diag *d)
{
	return c->store->ops->dead_letters_clear(c, proc, n, d);
}

int sl_ckpt_reset(struct sl_commit *c, const char *proc, const char *stream, int with_effects,
                  struct sl_diag *d)
{
	return c->store->ops->reset(c, proc, stream, with_effects, d);
}

int sl_ckpt_drop_tables(struct sl_commit *c, const char *proc, struct sl_diag *d)
{
	return c->store->ops->drop_tables(c, proc, d);
}
