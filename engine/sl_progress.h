/* sl_progress.h - the catch-up progress lines of `sluice run` (DESIGN §8).
 *
 * One line per processor that is catching up, on stderr, refreshed at most 10 times a
 * second and removed when it caught up:
 *   counter  412 000 / 1 000 000 events  452k ev/s  ETA 1s
 * On a terminal the lines are redrawn in place (cursor up, erase line) and erased
 * before every log line (sl_log_set_before), so logs and progress never mix. Off a
 * terminal (with --progress) each refresh is one plain line per processor, at most
 * 10 times a second, without escape sequences.
 *
 * Ownership: the progress keeps copies of the names. Threads: the loop thread only
 * (the log hook may run on another thread; it takes the same lock).
 */
#ifndef SL_PROGRESS_H
#define SL_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

struct sl_progress;

/* Progress lines on fd; tty: redraw in place (else plain lines). Returns NULL when
 * out of memory (the run goes on without progress). */
struct sl_progress *sl_progress_new(int fd, int tty);
/* Clears the lines and frees; NULL is a no-op. */
void sl_progress_free(struct sl_progress *pr);

/* Processor proc has done `done` of `total` events of its catch-up at now_ms (a
 * monotonic clock); redraws if the last drawing is 100 ms old. */
void sl_progress_update(struct sl_progress *pr, const char *proc, int64_t done, int64_t total,
                        uint64_t now_ms);
/* proc caught up: its line goes. */
void sl_progress_done(struct sl_progress *pr, const char *proc);

/* Formats one line (no newline) into out[0..n): "counter  412 000 / 1 000 000 events
 * 452k ev/s  ETA 1s". rate is in events per second; a rate of 0 gives no ETA. */
void sl_progress_format(char *out, size_t n, const char *proc, int64_t done, int64_t total,
                        double rate);

#endif
