/* sl_watch.h - a watcher of a set of files on the libuv loop, for hot reload (DESIGN §8):
 * it calls back once after a burst of changes to any of them.
 *
 * What counts as a change: the content of a watched file differs from what the watcher
 * last saw, or the file appeared or disappeared. The ways editors and tools change a
 * file are all caught: a write in place, a write to a temporary file renamed over it
 * (vim, sed -i, mv), a delete followed by a new file. A rewrite with the same bytes, a
 * touch, a chmod, and any change to another file of the same directory do not count.
 *
 * How: one uv_fs_event per distinct directory of the watched paths (not per file: a
 * watch on a file follows its inode, which a rename over it or a delete leaves behind),
 * filtered by file name, so the directory's other traffic (the store's WAL next to the
 * deployment, say) costs one name comparison per event. An event for a watched name
 * restarts the debounce timer; when it expires (debounce_ms after the last event of the
 * burst) every watched file is compared with what was seen last: its (device, inode,
 * size, mtime, ctime) first, then, if that differs or the file had an event, the hash
 * of its bytes (sl_hash.h). fn runs when a content changed, at most once per expiry;
 * a burst that goes on (a file rewritten more often than every debounce_ms) postpones
 * it for as long as it lasts.
 * A timer every SL_WATCH_POLL_MS is the fallback for what events cannot say: it
 * re-arms the watch of a directory that was removed and made again (or could not be
 * watched: it is logged once), and compares every file's (device, inode, size, mtime,
 * ctime), so a change that made no event (a symlink's target changing elsewhere, a
 * full inotify queue) is seen within about a second. A file whose mtime is within
 * SL_WATCH_RACY_S of when it was last hashed is hashed again by that timer (file
 * times have a granularity of a few milliseconds: two writes of the same size in one
 * tick look alike).
 *
 * Reading the files: call sl_watch_set before reading them (loading the deployment,
 * its scripts and contracts), so a change made while you read fires; the worst case
 * is one extra callback for a change you already read. The callback may call
 * sl_watch_set (a reload that found a new script) and sl_watch_free.
 *
 * Invariants: fn is never called from inside sl_watch_new, sl_watch_set or
 * sl_watch_free, nor after sl_watch_free. The watcher's handles are unreferenced: it
 * never keeps the loop alive by itself.
 *
 * Ownership: the watcher copies the paths; the loop is borrowed and must outlive it;
 * ud is the caller's. Threads: the loop thread only.
 */
#ifndef SL_WATCH_H
#define SL_WATCH_H

#include <stddef.h>

#include "sl_error.h"

struct uv_loop_s;
struct sl_watch;

#define SL_WATCH_DEBOUNCE_MS 50.0          /* the usual debounce */
#define SL_WATCH_DEBOUNCE_MAX_MS 3600000.0 /* an hour */
#define SL_WATCH_POLL_MS 1000              /* the fallback comparison and re-arming */
#define SL_WATCH_RACY_S 2                  /* a file this recent is hashed again by the poll */

/* Called on the loop thread once after a burst of changes (ud as given). */
typedef void (*sl_watch_fn)(void *ud);

/* A watcher on loop, watching nothing yet, that calls fn(ud) debounce_ms after the
 * last change of a burst (0 to SL_WATCH_DEBOUNCE_MAX_MS; with 0 it still waits for
 * the loop's next turn). Returns SL_EINVAL for a debounce out of range or a NULL fn,
 * SL_ENOMEM. */
int sl_watch_new(struct sl_watch **out, struct uv_loop_s *loop, double debounce_ms, sl_watch_fn fn,
                 void *ud);

/* Replaces the watched set with files[0..n) (paths as open(2) takes them, relative to
 * the current directory or absolute; each must name a file, not end in '/'). A file
 * that was in the previous set keeps what was last seen of it, so a change not yet
 * reported is still reported; a new one is read now. A file or directory that does
 * not exist is fine: its appearance is a change. On an error (SL_EINVAL for a bad
 * path, SL_ENOMEM) the previous set stays, and d says why. Directories no longer
 * needed are closed (their memory goes once the loop ran, as for sl_watch_free). */
int sl_watch_set(struct sl_watch *w, const char *const *files, size_t n, struct sl_diag *d);

/* Stops watching and closes every handle; NULL is a no-op. The memory is freed by the
 * handles' close callbacks: the loop must run once more (uv_run, UV_RUN_NOWAIT is
 * enough) before it is closed. fn is not called again. */
void sl_watch_free(struct sl_watch *w);

#endif
