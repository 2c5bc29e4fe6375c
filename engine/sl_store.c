/* sl_store.c - the embedded SQLite event log behind sl_store.h.
 *
 * Layout. sl_events is a WITHOUT ROWID table clustered on (stream, "offset"), so a
 * replay of one stream reads consecutive pages; a unique index on position serves
 * store-wide reads and the next position; a partial unique index on
 * (stream, idem_key) serves idempotency look-ups. sl_streams holds each stream's
 * head, pause state and metadata, so the pause door and the compare-and-set cost one
 * primary-key read per stream per batch. PRAGMA user_version numbers the schema.
 *
 * An append batch keeps the streams it touches in a small hash table, loaded once
 * per batch, and writes their rows back once at the end.
 */
#include "sl_store.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "sl_buf.h"
#include "sl_hash.h"
#include "sl_contract.h"
#include "sl_json.h"
#include "sl_store_int.h"

#define SCHEMA_VERSION 3

static const char *const schema_v1 =
	"CREATE TABLE sl_streams("
	" stream TEXT PRIMARY KEY NOT NULL,"
	" head INTEGER NOT NULL,"
	" paused INTEGER NOT NULL DEFAULT 0,"
	" pause_reason TEXT,"
	" metadata TEXT NOT NULL DEFAULT '{}'"
	") WITHOUT ROWID;"
	"CREATE TABLE sl_events("
	" stream TEXT NOT NULL,"
	" \"offset\" INTEGER NOT NULL,"
	" position INTEGER NOT NULL,"
	" type TEXT NOT NULL,"
	" payload TEXT NOT NULL,"
	" metadata TEXT,"
	" idem_key TEXT,"
	" created_at TEXT NOT NULL,"
	" PRIMARY KEY (stream, \"offset\")"
	") WITHOUT ROWID;"
	"CREATE UNIQUE INDEX sl_events_position ON sl_events(position);"
	"CREATE UNIQUE INDEX sl_events_key ON sl_events(stream, idem_key)"
	" WHERE idem_key IS NOT NULL;";

/* Version 2: the processor runtime's tables (used by sl_checkpoint.c and sl_dbapi.c). */
static const char *const schema_v2 =
	"CREATE TABLE sl_processors("
	" name TEXT PRIMARY KEY NOT NULL,"
	" version INTEGER NOT NULL,"
	" anchor INTEGER"
	") WITHOUT ROWID;"
	"CREATE TABLE sl_checkpoints("
	" processor TEXT NOT NULL,"
	" stream TEXT NOT NULL,"
	" \"offset\" INTEGER NOT NULL,"
	" state TEXT,"
	" effects_mark INTEGER NOT NULL DEFAULT 0,"
	" status TEXT NOT NULL DEFAULT 'ok',"
	" last_error TEXT,"
	" background_failures INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY (processor, stream)"
	") WITHOUT ROWID;"
	"CREATE TABLE sl_tables("
	" name TEXT PRIMARY KEY NOT NULL,"
	" processor TEXT NOT NULL"
	") WITHOUT ROWID;";

/* Version 3: what changed scripts and contracts are detected by, and dead letters. */
static const char *const schema_v3 =
	"ALTER TABLE sl_processors ADD COLUMN script_hash TEXT;"
	"ALTER TABLE sl_processors ADD COLUMN contract_hash TEXT;"
	"CREATE TABLE sl_dead_letters("
	" id INTEGER PRIMARY KEY,"
	" processor TEXT NOT NULL,"
	" stream TEXT NOT NULL,"
	" \"offset\" INTEGER NOT NULL,"
	" position INTEGER NOT NULL,"
	" type TEXT NOT NULL,"
	" error TEXT NOT NULL,"
	" traceback TEXT,"
	" attempts INTEGER NOT NULL,"
	" at TEXT NOT NULL"
	");";

enum {
	ST_MAXPOS,
	ST_STREAM_GET,
	ST_STREAM_INS,
	ST_STREAM_UPD,
	ST_KEY_GET,
	ST_EVENT_INS,
	ST_READ,
	ST_READ_TYPE,
	ST_READ_ALL,
	ST_STREAMS_ALL,
	ST_STREAMS_PREFIX,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_MAXPOS] = "SELECT coalesce(max(position), 0) FROM sl_events",
	[ST_STREAM_GET] = "SELECT head, paused, pause_reason, metadata FROM sl_streams"
			  " WHERE stream = ?1",
	[ST_STREAM_INS] = "INSERT INTO sl_streams(stream, head) VALUES (?1, 0)",
	[ST_STREAM_UPD] = "UPDATE sl_streams SET head = ?2, paused = ?3, pause_reason = ?4,"
			  " metadata = ?5 WHERE stream = ?1",
	[ST_KEY_GET] = "SELECT \"offset\", position FROM sl_events"
		       " WHERE stream = ?1 AND idem_key = ?2",
	[ST_EVENT_INS] = "INSERT INTO sl_events(stream, \"offset\", position, type, payload,"
			 " metadata, idem_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_READ] = "SELECT stream, \"offset\", position, type, payload, metadata, idem_key,"
		    " created_at FROM sl_events WHERE stream = ?1 AND \"offset\" >= ?2"
		    " ORDER BY \"offset\" LIMIT ?3",
	[ST_READ_TYPE] = "SELECT stream, \"offset\", position, type, payload, metadata, idem_key,"
			 " created_at FROM sl_events WHERE stream = ?1 AND \"offset\" >= ?2"
			 " AND type = ?4 ORDER BY \"offset\" LIMIT ?3",
	[ST_READ_ALL] = "SELECT stream, \"offset\", position, type, payload, metadata, idem_key,"
			" created_at FROM sl_events WHERE position >= ?1"
			" ORDER BY position LIMIT ?2",
	[ST_STREAMS_ALL] = "SELECT stream, head, paused, pause_reason, metadata FROM sl_streams"
			   " ORDER BY stream",
	[ST_STREAMS_PREFIX] = "SELECT stream, head, paused, pause_reason, metadata FROM sl_streams"
			      " WHERE stream = ?1 OR (stream > ?1 || '/' AND stream < ?1 || '0')"
			      " ORDER BY stream",
};

struct sl_store {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *st[ST_COUNT];
	struct sl_buf tmp[2]; /* compacted payload and metadata of the event being written */
};

/* A stream touched by the batch being appended. */
struct sstate {
	char *name;
	int64_t head;
	int paused;
	char *reason; /* owned, or NULL */
	char *metadata; /* owned JSON text */
	int dirty;
};

struct batch {
	struct sl_store *s;
	int64_t pos; /* last position written */
	char created_at[32];
	struct sstate **slot; /* open addressing, power-of-two size */
	size_t nslots, used;
};

/* ---- errors ---------------------------------------------------------------- */

int sl_store_db_error(struct sl_store *s, struct sl_diag *d, const char *what)
{
	int rc = sqlite3_errcode(s->db);
	int code = (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) ? SL_EBUSY
		   : rc == SQLITE_NOMEM                      ? SL_ENOMEM
							     : SL_EIO;

	return sl_diag_set(d, code, "store '%s': %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* ---- opening ------------------------------------------------------------- */

static int exec_sql(struct sl_store *s, const char *sql, struct sl_diag *d)
{
	char *err = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) == SQLITE_OK)
		return 0;
	sl_diag_set(d, SL_EIO, "store '%s': %s", s->path, err ? err : sqlite3_errmsg(s->db));
	sqlite3_free(err);
	return d ? d->code : SL_EIO;
}

static int user_version(struct sl_store *s, int *v, struct sl_diag *d)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return sl_store_db_error(s, d, "cannot read schema version");
	rc = sqlite3_step(st);
	*v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : sl_store_db_error(s, d, "cannot read schema version");
}

/* Brings the schema to SCHEMA_VERSION, one step per version, each in a transaction. */
static int migrate(struct sl_store *s, int readonly, struct sl_diag *d)
{
	int v, rc;
	char sql[64];

	if ((rc = user_version(s, &v, d)))
		return rc;
	if (v > SCHEMA_VERSION)
		return sl_diag_set(d, SL_EVERSION,
				   "store '%s' has schema version %d; this sluice knows up to %d",
				   s->path, v, SCHEMA_VERSION);
	if (v == SCHEMA_VERSION)
		return 0;
	if (readonly)
		return sl_diag_set(d, SL_EVERSION, "store '%s' is not initialized", s->path);
	if ((rc = exec_sql(s, "BEGIN IMMEDIATE", d)))
		return rc;
	if ((rc = user_version(s, &v, d)))
		goto fail;
	if (v < 1 && (rc = exec_sql(s, schema_v1, d)))
		goto fail;
	if (v < 2 && (rc = exec_sql(s, schema_v2, d)))
		goto fail;
	if (v < 3 && (rc = exec_sql(s, schema_v3, d)))
		goto fail;
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
	if ((rc = exec_sql(s, sql, d)) || (rc = exec_sql(s, "COMMIT", d)))
		goto fail;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static int configure(struct sl_store *s, const struct sl_store_opts *o, struct sl_diag *d)
{
	int rc;

	sqlite3_busy_timeout(s->db, SL_STORE_BUSY_MS);
	sqlite3_extended_result_codes(s->db, 0);
	if (!o->readonly && (rc = exec_sql(s, "PRAGMA journal_mode=WAL", d)))
		return rc;
	if ((rc = exec_sql(s, o->durability == SL_DURABILITY_NORMAL ? "PRAGMA synchronous=NORMAL"
								     : "PRAGMA synchronous=FULL",
			   d)))
		return rc;
	return exec_sql(s, "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-16384", d);
}

int sl_store_open(struct sl_store **out, const char *path, const struct sl_store_opts *opts,
		  struct sl_diag *d)
{
	static const struct sl_store_opts defaults = { SL_DURABILITY_FULL, 0 };
	struct sl_store *s;
	int rc, i, flags;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (!(s = calloc(1, sizeof(*s))) || !(s->path = strdup(path))) {
		free(s);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	sl_buf_init(&s->tmp[0]);
	sl_buf_init(&s->tmp[1]);
	flags = opts->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	if (sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		rc = sl_diag_set(d, SL_EIO, "cannot open store '%s': %s", path,
				 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	if ((rc = configure(s, opts, d)) || (rc = migrate(s, opts->readonly, d)))
		goto fail;
	for (i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
				       NULL) != SQLITE_OK) {
			rc = sl_store_db_error(s, d, "cannot prepare statement");
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	sl_store_close(s);
	return rc;
}

void sl_store_close(struct sl_store *s)
{
	int i;

	if (!s)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	sl_buf_release(&s->tmp[0]);
	sl_buf_release(&s->tmp[1]);
	free(s->path);
	free(s);
}

/* ---- validation ------------------------------------------------------------ */

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

static int type_is(const char *type, const char *what)
{
	return !strcmp(type, what);
}

/* The payload of a core type is checked against schemas/core.contract.json. */
static int check_core_payload(const char *type, const char *p, size_t n, struct sl_diag *d)
{
	if (strncmp(type, "stream/", 7))
		return 0;
	if (!p) {
		p = "{}";
		n = 2;
	}
	if (sl_core_validate(type, p, n, d))
		return sl_diag_prefix(d, "payload");
	return 0;
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

/* Returns the text of a checked JSON document without whitespace outside strings:
 * p itself when it has none, else a copy in b. */
static const char *compact(const char *p, size_t n, size_t *outlen, struct sl_buf *b)
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

	if ((rc = sl_json_check(p, n, &kind, d)))
		return sl_diag_prefix(d, "%s", field);
	if (kind != SL_JSON_OBJECT)
		return sl_diag_set(d, SL_EINVAL, "%s: must be a JSON object, got %s", field,
				   sl_json_kind_name(kind));
	return 0;
}

/* The length of the event's JSON line, with the widest numbers and a createdAt. */
static size_t envelope_len(const struct sl_event_in *ev)
{
	size_t n = sizeof("{\"stream\":,\"offset\":,\"position\":,\"type\":,\"payload\":"
			  ",\"createdAt\":\"2026-11-25T12:00:00.123Z\"}") - 1;

	n += sl_jstr_len(ev->stream, strlen(ev->stream)) + 2 * 20;
	n += sl_jstr_len(ev->type, strlen(ev->type));
	n += ev->payload ? compact_len(ev->payload, ev->payload_len) : 2;
	if (ev->metadata)
		n += sizeof(",\"metadata\":") - 1 + compact_len(ev->metadata, ev->metadata_len);
	if (ev->key)
		n += sizeof(",\"idempotencyKey\":") - 1 + sl_jstr_len(ev->key, strlen(ev->key));
	return n;
}

int sl_store_check_event(const struct sl_event_in *ev, struct sl_diag *d)
{
	size_t tlen, size;
	int rc;

	if (!ev->stream || !sl_stream_name_valid(ev->stream))
		return sl_diag_set(d, SL_EINVAL,
				   "stream: invalid stream name '%s' (segments of"
				   " [A-Za-z0-9_-][A-Za-z0-9._-]* joined by '/', at most %d bytes)",
				   ev->stream ? ev->stream : "", SL_STREAM_MAX);
	if (!ev->type || !(tlen = strlen(ev->type)))
		return sl_diag_set(d, SL_EINVAL, "type: must be a non-empty string");
	if (tlen > SL_TYPE_MAX)
		return sl_diag_set(d, SL_EINVAL, "type: longer than %d bytes (%zu)", SL_TYPE_MAX,
				   tlen);
	if (!sl_utf8_valid(ev->type, tlen) || has_control(ev->type, tlen))
		return sl_diag_set(d, SL_EINVAL,
				   "type: must be UTF-8 text without control characters");
	if (engine_only_type(ev->type))
		return sl_diag_set(d, SL_EINVAL, "type: '%s' is written by the store only",
				   ev->type);
	if (ev->payload && (rc = check_object("payload", ev->payload, ev->payload_len, d)))
		return rc;
	if (ev->metadata && (rc = check_object("metadata", ev->metadata, ev->metadata_len, d)))
		return rc;
	if (ev->key && (is_blank(ev->key) || !sl_utf8_valid(ev->key, strlen(ev->key))))
		return sl_diag_set(d, SL_EINVAL, "idempotencyKey: must be a non-blank UTF-8 string");
	if (ev->offset < 0)
		return sl_diag_set(d, SL_EINVAL, "offset: must be a positive integer, got %lld",
				   (long long)ev->offset);
	if ((size = envelope_len(ev)) > SL_EVENT_MAX)
		return sl_diag_set(d, SL_ETOOBIG, "event: %zu bytes, over the %d-byte limit", size,
				   SL_EVENT_MAX);
	return check_core_payload(ev->type, ev->payload, ev->payload_len, d);
}

/* ---- the streams of a batch -------------------------------------------------- */

static void sstate_free(struct sstate *ss)
{
	if (ss) {
		free(ss->name);
		free(ss->reason);
		free(ss->metadata);
		free(ss);
	}
}

static void batch_release(struct batch *bt)
{
	size_t i;

	for (i = 0; i < bt->nslots; i++)
		sstate_free(bt->slot[i]);
	free(bt->slot);
	bt->slot = NULL;
	bt->nslots = bt->used = 0;
}

/* Returns the slot where `name` is or would go. */
static struct sstate **batch_slot(struct batch *bt, const char *name)
{
	size_t i = (size_t)sl_hash_str(name) & (bt->nslots - 1);

	while (bt->slot[i] && strcmp(bt->slot[i]->name, name))
		i = (i + 1) & (bt->nslots - 1);
	return &bt->slot[i];
}

static int batch_grow(struct batch *bt)
{
	struct batch bigger = *bt;
	size_t i;

	bigger.nslots = bt->nslots ? bt->nslots * 2 : 16;
	if (!(bigger.slot = calloc(bigger.nslots, sizeof(*bigger.slot))))
		return SL_ENOMEM;
	for (i = 0; i < bt->nslots; i++)
		if (bt->slot[i])
			*batch_slot(&bigger, bt->slot[i]->name) = bt->slot[i];
	free(bt->slot);
	*bt = bigger;
	return 0;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? strdup((const char *)t) : NULL;
}

/* Finds `name` among the batch's streams, loading it from the store on first use.
 * Sets *out to NULL when the stream does not exist yet. */
static int batch_stream(struct batch *bt, const char *name, struct sstate **out,
			struct sl_diag *d)
{
	sqlite3_stmt *st = bt->s->st[ST_STREAM_GET];
	struct sstate **slot, *ss;
	int rc;

	*out = NULL;
	if ((bt->used + 1) * 2 > bt->nslots && batch_grow(bt))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	slot = batch_slot(bt, name);
	if (*slot) {
		*out = *slot;
		return 0;
	}
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(st);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		return sl_store_db_error(bt->s, d, "cannot read stream");
	}
	ss = calloc(1, sizeof(*ss));
	if (ss) {
		ss->name = strdup(name);
		ss->head = sqlite3_column_int64(st, 0);
		ss->paused = sqlite3_column_int(st, 1);
		ss->reason = dup_col(st, 2);
		ss->metadata = dup_col(st, 3);
	}
	sqlite3_reset(st);
	if (!ss || !ss->name || !ss->metadata) {
		sstate_free(ss);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	*slot = *out = ss;
	bt->used++;
	return 0;
}

/* ---- writing events ------------------------------------------------------------ */

struct put {
	const char *type;
	const char *payload; /* checked JSON object text */
	size_t payload_len;
	const char *metadata;
	size_t metadata_len;
	const char *key;
	int64_t offset;
	int engine; /* the store's own append: passes the pause door */
};

static int lookup_key(struct batch *bt, struct sstate *ss, const char *key,
		      struct sl_append_result *res, struct sl_diag *d)
{
	sqlite3_stmt *st = bt->s->st[ST_KEY_GET];
	int rc;

	sqlite3_bind_text(st, 1, ss->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		res->offset = sqlite3_column_int64(st, 0);
		res->position = sqlite3_column_int64(st, 1);
		res->duplicate = 1;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return sl_store_db_error(bt->s, d, "cannot look up idempotency key");
	return 0;
}

/* Copies a string member's value, for the core events' effects. */
struct member_pick {
	const char *key;
	enum sl_json_kind kind;
	char *text; /* owned copy of the decoded string or the raw object text */
};

static int pick_member(void *ud, const struct sl_json_member *m, struct sl_diag *d)
{
	struct member_pick *mp = ud;

	if (m->kind != mp->kind || strlen(mp->key) != m->keylen || memcmp(m->key, mp->key, m->keylen))
		return 0;
	free(mp->text);
	if (!(mp->text = malloc(m->len + 1)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	memcpy(mp->text, m->text, m->len);
	mp->text[m->len] = '\0';
	return 0;
}

/* Applies a core event's effect on its stream: pause, resume, metadata. */
static int apply_core(struct sstate *ss, const struct put *p, struct sl_diag *d)
{
	struct member_pick mp = { NULL, SL_JSON_STRING, NULL };
	int rc;

	if (type_is(p->type, "stream/paused"))
		mp.key = "reason";
	else if (type_is(p->type, "stream/metadata-updated"))
		mp.key = "metadata", mp.kind = SL_JSON_OBJECT;
	else if (type_is(p->type, "stream/resumed")) {
		ss->paused = 0;
		free(ss->reason);
		ss->reason = NULL;
		return 0;
	} else
		return 0;
	if ((rc = sl_json_members(p->payload, p->payload_len, pick_member, &mp, d)))
		return rc;
	if (mp.kind == SL_JSON_OBJECT) {
		size_t n;
		struct sl_buf b;
		const char *c;

		sl_buf_init(&b);
		c = compact(mp.text, strlen(mp.text), &n, &b);
		free(ss->metadata);
		ss->metadata = c ? strndup(c, n) : NULL;
		sl_buf_release(&b);
		free(mp.text);
		return ss->metadata ? 0 : sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	ss->paused = 1;
	free(ss->reason);
	ss->reason = mp.text;
	return 0;
}

static int insert_event(struct batch *bt, struct sstate *ss, const struct put *p,
			struct sl_diag *d)
{
	struct sl_store *s = bt->s;
	sqlite3_stmt *st = s->st[ST_EVENT_INS];
	const char *payload = p->payload;
	size_t plen = p->payload_len, mlen = 0;
	const char *meta = NULL;
	int rc;

	if (!(payload = compact(payload, plen, &plen, &s->tmp[0])))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if (p->metadata && !(meta = compact(p->metadata, p->metadata_len, &mlen, &s->tmp[1])))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	sqlite3_bind_text(st, 1, ss->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, ss->head + 1);
	sqlite3_bind_int64(st, 3, bt->pos + 1);
	sqlite3_bind_text(st, 4, p->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, payload, (int)plen, SQLITE_STATIC);
	if (meta)
		sqlite3_bind_text(st, 6, meta, (int)mlen, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 6);
	if (p->key)
		sqlite3_bind_text(st, 7, p->key, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 7);
	sqlite3_bind_text(st, 8, bt->created_at, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return sl_store_db_error(s, d, "cannot insert event");
	ss->head++;
	bt->pos++;
	ss->dirty = 1;
	return 0;
}

/* Writes one event to the stream `ss`, after its key, pause and offset checks. */
static int put_event(struct batch *bt, struct sstate *ss, const struct put *p,
		     struct sl_append_result *res, struct sl_diag *d)
{
	int rc;

	res->duplicate = 0;
	if (p->key && (rc = lookup_key(bt, ss, p->key, res, d)))
		return rc;
	if (res->duplicate) {
		if (p->offset && p->offset != res->offset)
			return sl_diag_set(d, SL_ECONFLICT,
					   "offset: idempotency key '%s' was used at offset %lld,"
					   " not %lld",
					   p->key, (long long)res->offset, (long long)p->offset);
		return 0;
	}
	if (ss->paused && !p->engine && !type_is(p->type, "stream/resumed") &&
	    !type_is(p->type, "stream/error-occurred"))
		return sl_diag_set(d, SL_EPAUSED, "stream paused: %s",
				   ss->reason && *ss->reason ? ss->reason : "no reason given");
	if (p->offset && p->offset != ss->head + 1)
		return sl_diag_set(d, SL_ECONFLICT,
				   "offset: expected %lld (the head of '%s' is %lld), got %lld",
				   (long long)ss->head + 1, ss->name, (long long)ss->head,
				   (long long)p->offset);
	if ((rc = apply_core(ss, p, d)) || (rc = insert_event(bt, ss, p, d)))
		return rc;
	res->offset = ss->head;
	res->position = bt->pos;
	return 0;
}

/* An engine-written event whose payload is {"<field>": "<value>"}. */
static int put_engine_event(struct batch *bt, struct sstate *ss, const char *type,
			    const char *field, const char *value, const char *key,
			    struct sl_diag *d)
{
	struct sl_append_result res;
	struct put p = { type, NULL, 0, NULL, 0, key, 0, 1 };
	struct sl_buf b;
	int rc;

	sl_buf_init(&b);
	sl_buf_addf(&b, "{\"%s\":", field);
	sl_buf_addjstr(&b, value, strlen(value));
	sl_buf_addc(&b, '}');
	p.payload = b.ptr;
	p.payload_len = b.len;
	rc = sl_buf_ok(&b) ? put_event(bt, ss, &p, &res, d) : sl_diag_set(d, SL_ENOMEM, "out of memory");
	sl_buf_release(&b);
	return rc;
}

/* Creates stream `name` (and its missing ancestors, top down): its row, its
 * stream/created event, and one stream/child-stream-created on each ancestor. */
static int create_stream(struct batch *bt, const char *name, struct sstate **out,
			 struct sl_diag *d)
{
	sqlite3_stmt *st = bt->s->st[ST_STREAM_INS];
	char *anc = NULL, *key = NULL, *slash;
	struct sstate *parent;
	int rc;

	if (!(anc = strdup(name)) || !(key = malloc(strlen(name) + 32))) {
		rc = sl_diag_set(d, SL_ENOMEM, "out of memory");
		goto out;
	}
	if ((slash = strrchr(anc, '/'))) {
		*slash = '\0';
		if ((rc = batch_stream(bt, anc, &parent, d)) ||
		    (!parent && (rc = create_stream(bt, anc, &parent, d))))
			goto out;
	}
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		rc = sl_store_db_error(bt->s, d, "cannot create stream");
		goto out;
	}
	if ((rc = batch_stream(bt, name, out, d)) ||
	    (rc = put_engine_event(bt, *out, "stream/created", "path", name, NULL, d)))
		goto out;
	sprintf(key, "child-stream-created:%s", name);
	strcpy(anc, name);
	while ((slash = strrchr(anc, '/'))) {
		*slash = '\0';
		if ((rc = batch_stream(bt, anc, &parent, d)) ||
		    (rc = put_engine_event(bt, parent, "stream/child-stream-created", "childPath",
					   name, key, d)))
			goto out;
	}
out:
	free(anc);
	free(key);
	return rc;
}

/* ---- batches and transactions ---------------------------------------------------- */

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

static int flush_streams(struct batch *bt, struct sl_diag *d)
{
	sqlite3_stmt *st = bt->s->st[ST_STREAM_UPD];
	struct sstate *ss;
	size_t i;
	int rc;

	for (i = 0; i < bt->nslots; i++) {
		if (!(ss = bt->slot[i]) || !ss->dirty)
			continue;
		sqlite3_bind_text(st, 1, ss->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, ss->head);
		sqlite3_bind_int(st, 3, ss->paused);
		if (ss->reason)
			sqlite3_bind_text(st, 4, ss->reason, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 4);
		sqlite3_bind_text(st, 5, ss->metadata, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return sl_store_db_error(bt->s, d, "cannot update stream");
	}
	return 0;
}

static int max_position(struct sl_store *s, int64_t *pos, struct sl_diag *d)
{
	sqlite3_stmt *st = s->st[ST_MAXPOS];
	int rc = sqlite3_step(st);

	*pos = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 0 : sl_store_db_error(s, d, "cannot read head position");
}

int sl_store_head_position(struct sl_store *s, int64_t *pos, struct sl_diag *d)
{
	return max_position(s, pos, d);
}

int sl_store_begin(struct sl_store *s, struct sl_diag *d)
{
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return sl_store_db_error(s, d, "cannot begin transaction");
	return 0;
}

int sl_store_commit(struct sl_store *s, struct sl_diag *d)
{
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sl_store_db_error(s, d, "cannot commit");
		sl_store_rollback(s);
		return d ? d->code : SL_EIO;
	}
	return 0;
}

int sl_store_in_txn(struct sl_store *s)
{
	return !sqlite3_get_autocommit(s->db);
}

void sl_store_rollback(struct sl_store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Runs the events of one batch inside an open transaction or savepoint. */
static int append_events(struct batch *bt, const struct sl_event_in *ev, size_t n,
			 struct sl_append_result *res, int flags, size_t *failed,
			 struct sl_diag *d)
{
	struct sstate *ss;
	size_t i;
	int rc = 0;

	if ((rc = max_position(bt->s, &bt->pos, d)))
		return rc;
	sl_store_now(bt->created_at, sizeof(bt->created_at));
	for (i = 0; i < n; i++) {
		struct put p = { ev[i].type, ev[i].payload ? ev[i].payload : "{}",
				 ev[i].payload ? ev[i].payload_len : 2, ev[i].metadata,
				 ev[i].metadata_len, ev[i].key, ev[i].offset, 0 };
		*failed = i;
		if (!(flags & SL_APPEND_CHECKED) && (rc = sl_store_check_event(&ev[i], d)))
			return rc;
		if ((rc = batch_stream(bt, ev[i].stream, &ss, d)) ||
		    (!ss && (rc = create_stream(bt, ev[i].stream, &ss, d))) ||
		    (rc = put_event(bt, ss, &p, &res[i], d)))
			return rc;
	}
	return flush_streams(bt, d);
}

int sl_store_append(struct sl_store *s, const struct sl_event_in *ev, size_t n,
		    struct sl_append_result *res, int flags, size_t *failed, struct sl_diag *d)
{
	struct batch bt = { s, 0, "", NULL, 0, 0 };
	int own = sqlite3_get_autocommit(s->db), rc;
	size_t bad = 0;

	if (own ? sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK
		: sqlite3_exec(s->db, "SAVEPOINT sl_append", NULL, NULL, NULL) != SQLITE_OK) {
		rc = sl_store_db_error(s, d, "cannot begin transaction");
		goto out;
	}
	rc = append_events(&bt, ev, n, res, flags, &bad, d);
	if (rc == 0 && own && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = sl_store_db_error(s, d, "cannot commit");
	if (rc == 0 && !own && sqlite3_exec(s->db, "RELEASE sl_append", NULL, NULL, NULL) != SQLITE_OK)
		rc = sl_store_db_error(s, d, "cannot release savepoint");
	if (rc && own)
		sl_store_rollback(s);
	if (rc && !own)
		sqlite3_exec(s->db, "ROLLBACK TO sl_append; RELEASE sl_append", NULL, NULL, NULL);
out:
	batch_release(&bt);
	if (failed)
		*failed = bad;
	return rc;
}

/* ---- reading ------------------------------------------------------------------- */

static const char *col_text(sqlite3_stmt *st, int col, size_t *len)
{
	const char *t = (const char *)sqlite3_column_text(st, col);

	if (len)
		*len = (size_t)sqlite3_column_bytes(st, col);
	return t;
}

static int run_events(struct sl_store *s, sqlite3_stmt *st, sl_event_fn fn, void *ud,
		      struct sl_diag *d)
{
	struct sl_event ev;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ev.stream = col_text(st, 0, NULL);
		ev.offset = sqlite3_column_int64(st, 1);
		ev.position = sqlite3_column_int64(st, 2);
		ev.type = col_text(st, 3, NULL);
		ev.payload = col_text(st, 4, &ev.payload_len);
		ev.metadata = col_text(st, 5, &ev.metadata_len);
		ev.key = col_text(st, 6, NULL);
		ev.created_at = col_text(st, 7, NULL);
		if ((rc = fn(ud, &ev))) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sl_store_db_error(s, d, "cannot read events");
}

int sl_store_read(struct sl_store *s, const char *stream, int64_t from, int64_t limit,
		  const char *type, sl_event_fn fn, void *ud, struct sl_diag *d)
{
	sqlite3_stmt *st = s->st[type ? ST_READ_TYPE : ST_READ];

	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, from);
	sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1);
	if (type)
		sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
	return run_events(s, st, fn, ud, d);
}

int sl_store_read_all(struct sl_store *s, int64_t from, int64_t limit, sl_event_fn fn,
		      void *ud, struct sl_diag *d)
{
	sqlite3_stmt *st = s->st[ST_READ_ALL];

	sqlite3_bind_int64(st, 1, from);
	sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
	return run_events(s, st, fn, ud, d);
}

int sl_store_streams(struct sl_store *s, const char *prefix, sl_stream_fn fn, void *ud,
		     struct sl_diag *d)
{
	sqlite3_stmt *st = s->st[prefix && *prefix ? ST_STREAMS_PREFIX : ST_STREAMS_ALL];
	struct sl_stream_info info;
	int rc;

	if (prefix && *prefix)
		sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		info.stream = col_text(st, 0, NULL);
		info.head = sqlite3_column_int64(st, 1);
		info.paused = sqlite3_column_int(st, 2);
		info.pause_reason = col_text(st, 3, NULL);
		info.metadata = col_text(st, 4, NULL);
		if ((rc = fn(ud, &info))) {
			sqlite3_reset(st);
			return rc < 0 ? rc : 0;
		}
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : sl_store_db_error(s, d, "cannot list streams");
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

sqlite3 *sl_store_db(struct sl_store *s)
{
	return s->db;
}

const char *sl_store_path(const struct sl_store *s)
{
	return s->path;
}
