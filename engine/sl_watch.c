/* sl_watch.c - the file watcher of hot reload: directory watches filtered by name, a
 * debounce timer, and a poll as the fallback (see sl_watch.h for what counts).
 *
 * Why directories: a watch on a file follows its inode. An editor that writes a
 * temporary file and renames it over the original (vim, sed -i, mv) or deletes and
 * recreates it leaves that inode behind, and the watch goes silent. A directory's
 * watch sees every name in it come, go and change.
 *
 * Why compare before firing: events say that something happened to a name, not that
 * its content differs (a touch, a chmod, a rewrite of the same bytes, an editor's
 * backup dance that ends where it began). The comparison at the end of the debounce
 * makes one burst one callback, and no change no callback.
 *
 * Memory: each directory is its own allocation, since its uv_fs_event_t must stay put
 * until its close callback ran; the watcher itself goes with the last close callback
 * after sl_watch_free (pending counts the handles being closed).
 */
#include "sl_watch.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <uv.h>

#include "sl_hash.h"
#include "sl_log.h"

/* What was last seen of a file. */
struct snap {
	int state; /* 0: missing (stat failed), 1: read, 2: exists but could not be read */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	uint64_t hash;  /* of the bytes, when state is 1 */
	time_t seen_at; /* when it was hashed (wall clock, like mtime) */
};

struct dir {
	struct sl_watch *w;
	uv_fs_event_t h;
	char *path;
	const char *base; /* into path: its last segment, which libuv names for an event
	                   * on the directory itself (deleted, moved) */
	dev_t dev;        /* identity of the directory the watch was started on */
	ino_t ino;
	int armed;  /* h is started */
	int warned; /* a failure to watch it was logged */
	int keep;   /* scratch of sl_watch_set: still needed */
	struct dir *next;
};

struct file {
	char *path;
	const char *name; /* into path: after the last '/' */
	struct dir *dir;
	struct snap snap;
	int dirty; /* had an event since the last comparison */
};

struct sl_watch {
	uv_loop_t *loop;
	uint64_t debounce_ms;
	sl_watch_fn fn;
	void *ud;
	uv_timer_t debounce, poll;
	struct dir *dirs;
	struct file *files;
	size_t nfiles;
	int pending; /* handles closed whose close callback has not run */
	int freed;
};

/* ---- what a file looks like ----------------------------------------------------------- */

/* Fills the stat part of s (state 0 or 1). */
static void take_sig(const char *path, struct snap *s)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	if (stat(path, &st) != 0)
		return;
	s->state = 1;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->size = st.st_size;
	s->mtime = st.st_mtim;
	s->ctime = st.st_ctim;
}

static int sig_equal(const struct snap *a, const struct snap *b)
{
	if (!a->state || !b->state)
		return !a->state == !b->state;
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Whether the file was hashed so soon after its last write that another write of the
 * same size in the same timestamp tick would leave its stat unchanged. */
static int racy(const struct snap *s)
{
	return s->state && s->mtime.tv_sec + SL_WATCH_RACY_S >= s->seen_at;
}

/* The hash of the file's bytes; -1 if it cannot be read. */
static int hash_file(const char *path, uint64_t *out)
{
	char buf[16384];
	uint64_t h = SL_HASH_INIT;
	FILE *f = fopen(path, "rb");
	size_t n;
	int err;

	if (!f)
		return -1;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		h = sl_hash_bytes(h, buf, n);
	err = ferror(f);
	fclose(f);
	*out = h;
	return err ? -1 : 0;
}

/* Compares the file with what was seen last and records what it is now; hashes it
 * when forced, when its stat differs, or when the last look was racy. Returns 1 if
 * its content changed (or it appeared, disappeared, became unreadable). */
static int check_file(struct file *f, int force)
{
	struct snap now;
	int changed;

	take_sig(f->path, &now);
	if (!force && sig_equal(&now, &f->snap) && !racy(&f->snap))
		return 0;
	if (now.state && hash_file(f->path, &now.hash))
		now.state = 2;
	now.seen_at = time(NULL);
	changed = now.state != f->snap.state || (now.state == 1 && now.hash != f->snap.hash);
	f->snap = now;
	return changed;
}

/* ---- timers and events ------------------------------------------------------------------ */

/* The end of a burst: compare every file; fn once if any changed. */
static void on_debounce(uv_timer_t *t)
{
	struct sl_watch *w = t->data;
	int changed = 0;
	size_t i;

	for (i = 0; i < w->nfiles; i++) {
		changed |= check_file(&w->files[i], w->files[i].dirty);
		w->files[i].dirty = 0;
	}
	if (changed)
		w->fn(w->ud); /* last: fn may replace the set or free the watcher */
}

/* (Re)starts the debounce: fires debounce_ms after the last call. */
static void restart(struct sl_watch *w)
{
	uv_timer_start(&w->debounce, on_debounce, w->debounce_ms, 0);
}

static void mark_dir(struct sl_watch *w, const struct dir *dir)
{
	size_t i;

	for (i = 0; i < w->nfiles; i++)
		if (w->files[i].dir == dir)
			w->files[i].dirty = 1;
}

static int arm(struct dir *dir);

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
	struct dir *dir = h->data;
	struct sl_watch *w = dir->w;
	int hit = 0;
	size_t i;

	(void)events;
	if (status < 0 || (filename && strcmp(filename, dir->base) == 0)) {
		/* The watch broke, or the directory itself may have gone (its inode number
		 * can be reused at once by a new one, so the poll's identity check cannot
		 * tell): watch what is there now, or let the poll try again. */
		uv_fs_event_stop(h);
		dir->armed = 0;
		arm(dir);
		mark_dir(w, dir);
		restart(w);
		if (status < 0)
			return;
	}
	for (i = 0; i < w->nfiles; i++) {
		struct file *f = &w->files[i];
		if (f->dir == dir && (!filename || strcmp(f->name, filename) == 0)) {
			f->dirty = 1;
			hit = 1;
		}
	}
	if (hit)
		restart(w);
}

/* Starts the directory's watch if it is not running on the directory that is there
 * now (first time, after a failure, after the directory was replaced). Returns 1 if it
 * was (re)started. */
static int arm(struct dir *dir)
{
	struct stat st;
	int rc;

	if (stat(dir->path, &st) != 0) {
		if (dir->armed)
			uv_fs_event_stop(&dir->h);
		dir->armed = 0;
		return 0; /* not there (yet): the poll looks again */
	}
	if (dir->armed && st.st_dev == dir->dev && st.st_ino == dir->ino)
		return 0;
	if (dir->armed)
		uv_fs_event_stop(&dir->h);
	dir->armed = 0;
	if ((rc = uv_fs_event_start(&dir->h, on_event, dir->path, 0))) {
		if (!dir->warned)
			sl_log(SL_LOG_WARN, NULL, NULL, 0,
			       "cannot watch directory '%s': %s (looked at once a second instead)",
			       dir->path, uv_strerror(rc));
		dir->warned = 1;
		return 0;
	}
	dir->armed = 1;
	dir->warned = 0;
	dir->dev = st.st_dev;
	dir->ino = st.st_ino;
	return 1;
}

/* The fallback: re-arm directories, and look at every file's stat. A difference
 * starts the debounce (unless a burst already runs it), which compares the content. */
static void on_poll(uv_timer_t *t)
{
	struct sl_watch *w = t->data;
	struct dir *dir;
	int kick = 0;
	size_t i;

	for (dir = w->dirs; dir; dir = dir->next)
		if (arm(dir))
			mark_dir(w, dir); /* it was not watched for a while */
	for (i = 0; i < w->nfiles; i++) {
		struct file *f = &w->files[i];
		struct snap now;

		if (!f->dirty) {
			take_sig(f->path, &now);
			f->dirty = !sig_equal(&now, &f->snap) || racy(&f->snap);
		}
		kick |= f->dirty;
	}
	if (kick && !uv_is_active((uv_handle_t *)&w->debounce))
		restart(w);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static void release(struct sl_watch *w)
{
	if (--w->pending == 0 && w->freed)
		free(w);
}

static void on_timer_closed(uv_handle_t *h)
{
	release(h->data);
}

static void on_dir_closed(uv_handle_t *h)
{
	struct dir *dir = h->data;
	struct sl_watch *w = dir->w;

	free(dir->path);
	free(dir);
	release(w);
}

static void close_dir(struct dir *dir)
{
	dir->w->pending++;
	uv_close((uv_handle_t *)&dir->h, on_dir_closed);
}

int sl_watch_new(struct sl_watch **out, uv_loop_t *loop, double debounce_ms, sl_watch_fn fn,
                 void *ud)
{
	struct sl_watch *w;

	*out = NULL;
	if (!(debounce_ms >= 0 && debounce_ms <= SL_WATCH_DEBOUNCE_MAX_MS) || !fn)
		return SL_EINVAL;
	if (!(w = calloc(1, sizeof(*w))))
		return SL_ENOMEM;
	w->loop = loop;
	w->debounce_ms = (uint64_t)ceil(debounce_ms);
	w->fn = fn;
	w->ud = ud;
	uv_timer_init(loop, &w->debounce);
	uv_timer_init(loop, &w->poll);
	w->debounce.data = w->poll.data = w;
	uv_unref((uv_handle_t *)&w->debounce);
	uv_unref((uv_handle_t *)&w->poll);
	uv_timer_start(&w->poll, on_poll, SL_WATCH_POLL_MS, SL_WATCH_POLL_MS);
	*out = w;
	return 0;
}

static void free_files(struct file *f, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(f[i].path);
	free(f);
}

/* The directory for path dpath (taken over: freed here unless it becomes the new
 * directory's), from the current set or the new ones, made if needed. */
static struct dir *dir_for(struct sl_watch *w, struct dir **added, char *dpath)
{
	struct dir *dir;

	for (dir = w->dirs; dir; dir = dir->next)
		if (strcmp(dir->path, dpath) == 0) {
			dir->keep = 1;
			free(dpath);
			return dir;
		}
	for (dir = *added; dir; dir = dir->next)
		if (strcmp(dir->path, dpath) == 0) {
			free(dpath);
			return dir;
		}
	if (!(dir = calloc(1, sizeof(*dir)))) {
		free(dpath);
		return NULL;
	}
	dir->w = w;
	dir->path = dpath;
	dir->base = strrchr(dpath, '/') && dpath[1] ? strrchr(dpath, '/') + 1 : dpath;
	uv_fs_event_init(w->loop, &dir->h);
	dir->h.data = dir;
	uv_unref((uv_handle_t *)&dir->h);
	dir->next = *added;
	*added = dir;
	return dir;
}

/* Fills f for path: its copy, name and directory. */
static int file_for(struct sl_watch *w, struct dir **added, struct file *f, const char *path,
                    struct sl_diag *d)
{
	const char *slash;
	char *dpath;
	size_t len = path ? strlen(path) : 0;

	if (!len || path[len - 1] == '/')
		return sl_diag_set(d, SL_EINVAL, "cannot watch '%s': not a file path",
		                   path ? path : "(null)");
	if (!(f->path = strdup(path)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	slash = strrchr(f->path, '/');
	f->name = slash ? slash + 1 : f->path;
	if (!slash)
		dpath = strdup(".");
	else if (slash == f->path)
		dpath = strdup("/");
	else
		dpath = strndup(f->path, (size_t)(slash - f->path));
	if (!dpath || !(f->dir = dir_for(w, added, dpath)))
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	return 0;
}

/* What was seen of path in the current set, or NULL. */
static const struct file *old_file(const struct sl_watch *w, const char *path)
{
	size_t i;

	for (i = 0; i < w->nfiles; i++)
		if (strcmp(w->files[i].path, path) == 0)
			return &w->files[i];
	return NULL;
}

int sl_watch_set(struct sl_watch *w, const char *const *files, size_t n, struct sl_diag *d)
{
	struct file *nf = calloc(n ? n : 1, sizeof(*nf));
	struct dir *added = NULL, *dir, **link;
	int rc = 0;
	size_t i;

	if (!nf)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	for (dir = w->dirs; dir; dir = dir->next)
		dir->keep = 0;
	for (i = 0; i < n && !rc; i++)
		rc = file_for(w, &added, &nf[i], files[i], d);
	if (rc) { /* nothing changed: the new directories were never started */
		while ((dir = added)) {
			added = dir->next;
			close_dir(dir);
		}
		free_files(nf, n);
		return rc;
	}
	/* Watch first, then look: a change made in between has an event. */
	for (dir = added; dir; dir = dir->next)
		arm(dir);
	for (i = 0; i < n; i++) {
		const struct file *old = old_file(w, nf[i].path);
		if (old) {
			nf[i].snap = old->snap;
			nf[i].dirty = old->dirty;
		} else {
			check_file(&nf[i], 1);
		}
	}
	for (link = &w->dirs; (dir = *link);) {
		if (dir->keep) {
			link = &dir->next;
			continue;
		}
		*link = dir->next;
		close_dir(dir);
	}
	*link = added;
	free_files(w->files, w->nfiles);
	w->files = nf;
	w->nfiles = n;
	return 0;
}

void sl_watch_free(struct sl_watch *w)
{
	struct dir *dir;

	if (!w)
		return;
	while ((dir = w->dirs)) {
		w->dirs = dir->next;
		close_dir(dir);
	}
	free_files(w->files, w->nfiles);
	w->files = NULL;
	w->nfiles = 0;
	w->freed = 1;
	w->pending += 2;
	uv_close((uv_handle_t *)&w->debounce, on_timer_closed);
	uv_close((uv_handle_t *)&w->poll, on_timer_closed);
}
