/* sl_spool.c - validated `append --jsonl` events in an unlinked temporary file. */
#define _GNU_SOURCE /* O_TMPFILE */
#include "sl_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_buf.h"
#include "sl_store_backend.h"

#define IO_BUF (256 * 1024) /* the file's stdio buffer: few, large reads and writes */
#define NO_FIELD UINT32_MAX /* the length of an absent key or metadata */

enum { F_STREAM, F_TYPE, F_KEY, F_PAYLOAD, F_METADATA, NFIELDS };

/* One event in the file: this header, then each present field's bytes and a NUL. */
struct rec {
	int64_t lineno, offset;
	uint32_t len[NFIELDS];
};

struct sl_spool {
	FILE *f;
	char dir[PATH_MAX];
	size_t count;
	struct sl_buf tmp[2]; /* compacted payload and metadata of the event being added */
	/* Reading back: one chunk. */
	struct sl_buf arena; /* the chunk's field bytes */
	struct rec *recs;
	size_t *body; /* where each event's fields start in arena */
	struct sl_event_in *ev;
	int64_t *lineno;
	size_t cap;
	struct rec next; /* a header read that did not fit the last chunk */
	int has_next;
};

static size_t body_len(const struct rec *r)
{
	size_t n = 0;
	int i;

	for (i = 0; i < NFIELDS; i++)
		if (r->len[i] != NO_FIELD)
			n += (size_t)r->len[i] + 1;
	return n;
}

/* Opens an anonymous file in dir: -1 with errno set on failure. */
static int open_anon(const char *dir)
{
	char path[PATH_MAX];
	int fd;

#ifdef O_TMPFILE
	if ((fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT)
		return -1;
#endif
	if ((size_t)snprintf(path, sizeof(path), "%s/.sluice-spool-XXXXXX", dir) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = mkstemp(path)) < 0)
		return -1;
	unlink(path);
	return fd;
}

/* The directory of path ("." when it names none) into out. */
static void dir_of(const char *path, char *out, size_t n)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(out, n, ".");
	else if (slash == path)
		snprintf(out, n, "/");
	else
		snprintf(out, n, "%.*s", (int)(slash - path), path);
}

int sl_spool_new(struct sl_spool **out, const char *store_path, struct sl_diag *d)
{
	const char *tmpdir = getenv("TMPDIR");
	char dirs[3][PATH_MAX];
	struct sl_spool *sp;
	int i, nd = 0, fd = -1, err = 0, first = 0;

	*out = NULL;
	if (store_path && *store_path)
		dir_of(store_path, dirs[nd++], sizeof(dirs[0]));
	if (tmpdir && *tmpdir)
		snprintf(dirs[nd++], sizeof(dirs[0]), "%s", tmpdir);
	snprintf(dirs[nd++], sizeof(dirs[0]), "/tmp");
	for (i = 0; i < nd && fd < 0; i++)
		if ((fd = open_anon(dirs[i])) < 0 && i == 0)
			err = errno, first = i;
	if (fd < 0)
		return sl_diag_set(d, SL_EIO, "cannot create a temporary file in '%s': %s",
		                   dirs[first], strerror(err));
	if (!(sp = calloc(1, sizeof(*sp))) || !(sp->f = fdopen(fd, "w+b"))) {
		close(fd);
		free(sp);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	setvbuf(sp->f, NULL, _IOFBF, IO_BUF);
	snprintf(sp->dir, sizeof(sp->dir), "%s", dirs[i - 1]);
	sl_buf_init(&sp->tmp[0]);
	sl_buf_init(&sp->tmp[1]);
	sl_buf_init(&sp->arena);
	*out = sp;
	return 0;
}

void sl_spool_free(struct sl_spool *sp)
{
	if (!sp)
		return;
	fclose(sp->f);
	sl_buf_release(&sp->tmp[0]);
	sl_buf_release(&sp->tmp[1]);
	sl_buf_release(&sp->arena);
	free(sp->recs);
	free(sp->body);
	free(sp->ev);
	free(sp->lineno);
	free(sp);
}

static int io_error(struct sl_spool *sp, const char *what, struct sl_diag *d)
{
	int err = errno ? errno : EIO;

	return sl_diag_set(d, SL_EIO, "cannot %s the temporary file in '%s': %s", what, sp->dir,
	                   strerror(err));
}

int sl_spool_add(struct sl_spool *sp, const struct sl_event_in *ev, int64_t lineno,
                 struct sl_diag *d)
{
	const char *field[NFIELDS] = {ev->stream, ev->type, ev->key, "{}", NULL};
	size_t len[NFIELDS] = {strlen(ev->stream), strlen(ev->type), ev->key ? strlen(ev->key) : 0,
	                       2, 0};
	struct rec r;
	int i;

	if (ev->payload)
		field[F_PAYLOAD] = sl_store_compact(ev->payload, ev->payload_len, &len[F_PAYLOAD],
		                                    &sp->tmp[0]);
	if (ev->metadata)
		field[F_METADATA] = sl_store_compact(ev->metadata, ev->metadata_len,
		                                     &len[F_METADATA], &sp->tmp[1]);
	if (!field[F_PAYLOAD] || (ev->metadata && !field[F_METADATA]))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	memset(&r, 0, sizeof(r));
	r.lineno = lineno;
	r.offset = ev->offset;
	for (i = 0; i < NFIELDS; i++)
		r.len[i] = field[i] ? (uint32_t)len[i] : NO_FIELD; /* each <= SL_EVENT_MAX */
	errno = 0;
	if (fwrite(&r, sizeof(r), 1, sp->f) != 1)
		return io_error(sp, "write", d);
	for (i = 0; i < NFIELDS; i++)
		if (field[i] && fwrite(field[i], 1, len[i] + 1, sp->f) != len[i] + 1)
			return io_error(sp, "write", d);
	sp->count++;
	return 0;
}

size_t sl_spool_count(const struct sl_spool *sp)
{
	return sp->count;
}

int sl_spool_rewind(struct sl_spool *sp, struct sl_diag *d)
{
	errno = 0;
	if (fflush(sp->f) || ferror(sp->f))
		return io_error(sp, "write", d);
	if (fseek(sp->f, 0, SEEK_SET))
		return io_error(sp, "read", d);
	sp->has_next = 0;
	return 0;
}

/* Room for a chunk of max events. */
static int reserve(struct sl_spool *sp, size_t max, struct sl_diag *d)
{
	struct rec *recs;
	size_t *body;
	struct sl_event_in *ev;
	int64_t *lineno;

	if (max <= sp->cap)
		return 0;
	if (max > SIZE_MAX / sizeof(*ev))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if ((recs = realloc(sp->recs, max * sizeof(*recs))))
		sp->recs = recs;
	if ((body = realloc(sp->body, max * sizeof(*body))))
		sp->body = body;
	if ((ev = realloc(sp->ev, max * sizeof(*ev))))
		sp->ev = ev;
	if ((lineno = realloc(sp->lineno, max * sizeof(*lineno))))
		sp->lineno = lineno;
	if (!recs || !body || !ev || !lineno)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	sp->cap = max;
	return 0;
}

/* Points ev at the fields of its record in the arena. */
static void view(const struct rec *r, const char *p, struct sl_event_in *ev)
{
	const char *at[NFIELDS] = {NULL};
	int i;

	for (i = 0; i < NFIELDS; i++)
		if (r->len[i] != NO_FIELD) {
			at[i] = p;
			p += r->len[i] + 1;
		}
	memset(ev, 0, sizeof(*ev));
	ev->stream = at[F_STREAM];
	ev->type = at[F_TYPE];
	ev->key = at[F_KEY];
	ev->payload = at[F_PAYLOAD];
	ev->payload_len = r->len[F_PAYLOAD];
	ev->metadata = at[F_METADATA];
	ev->metadata_len = at[F_METADATA] ? r->len[F_METADATA] : 0;
	ev->offset = r->offset;
}

int sl_spool_next(struct sl_spool *sp, size_t max, struct sl_spool_chunk *c, struct sl_diag *d)
{
	size_t n = 0, len, i;
	struct rec r;
	int rc;

	c->n = 0;
	if ((rc = reserve(sp, max, d)))
		return rc;
	sl_buf_reset(&sp->arena);
	while (n < max) {
		if (sp->has_next) {
			r = sp->next;
			sp->has_next = 0;
		} else if (errno = 0, fread(&r, sizeof(r), 1, sp->f) != 1) {
			if (ferror(sp->f))
				return io_error(sp, "read", d);
			break; /* the end */
		}
		len = body_len(&r);
		if (n && sp->arena.len + len > SL_SPOOL_CHUNK_BYTES) {
			sp->next = r;
			sp->has_next = 1;
			break;
		}
		if (sl_buf_grow(&sp->arena, len))
			return sl_diag_set(d, SL_ENOMEM, "out of memory");
		errno = 0;
		if (fread(sp->arena.ptr + sp->arena.len, 1, len, sp->f) != len) {
			if (!ferror(sp->f))
				errno = EIO; /* the file ended inside a record */
			return io_error(sp, "read", d);
		}
		sp->recs[n] = r;
		sp->body[n] = sp->arena.len;
		sp->arena.len += len;
		n++;
	}
	for (i = 0; i < n; i++) {
		view(&sp->recs[i], sp->arena.ptr + sp->body[i], &sp->ev[i]);
		sp->lineno[i] = sp->recs[i].lineno;
	}
	c->ev = sp->ev;
	c->lineno = sp->lineno;
	c->n = n;
	return 0;
}
