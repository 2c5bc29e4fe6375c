/* sl_log.h - the engine's log (DESIGN §8): one call, four levels, one line per record.
 *
 * A record is a level, a message and where it comes from: a processor, a stream and
 * an offset, each optional (NULL or "" means no processor or stream, 0 no offset:
 * offsets start at 1). Every module logs through sl_log(); ctx.log.* of processors
 * goes here too, with the processor and stream filled in. Errors of the CLI itself
 * are not log records: they keep the "sluice: " form of DESIGN §6.
 *
 * The two formats, absent fields omitted:
 *
 *   text  2026-12-03T06:00:00.123Z info counter counters/a: <message>
 *         2026-12-03T06:00:00.123Z warn <message>            (no processor, no stream)
 *   json  {"time":"2026-12-03T06:00:00.123Z","level":"info","msg":"<message>",
 *          "processor":"counter","stream":"counters/a","offset":5}
 *
 * A record is always one line: in text, control characters of the message (the
 * newlines of a traceback, a terminal escape) are written as \n, \t, \r or \xhh; in
 * JSON the message is an escaped JSON string, and bytes that are not UTF-8 become
 * U+FFFD so that every line parses. A message longer than SL_LOG_MSG_MAX bytes is
 * cut there and marked " [truncated]".
 *
 * Each record is written with a single write(2) on the log's descriptor, so records
 * of processes and threads sharing it do not interleave (a pipe write of at most
 * PIPE_BUF bytes and an append to a file opened O_APPEND are atomic).
 *
 * Thread rules: sl_log() may be called from any thread. The settings (level, format,
 * descriptor) are process-wide; set them at start-up, before other threads start.
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define SL_LOG_MSG_MAX 16384

enum sl_log_level { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR };

enum sl_log_format {
	SL_LOG_AUTO, /* text when the descriptor is a terminal, else json (the default) */
	SL_LOG_TEXT,
	SL_LOG_JSON,
};

/* ---- records ---- */

/* Logs one record if `level` passes the filter. processor and stream are borrowed;
 * either may be NULL or "". offset 0 means none. Never fails: a record that cannot
 * be written (out of memory, a closed descriptor) is dropped. */
void sl_log(enum sl_log_level level, const char *processor, const char *stream, int64_t offset,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void sl_logv(enum sl_log_level level, const char *processor, const char *stream, int64_t offset,
             const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* 1 if a record of `level` would be written: lets a caller skip building a message. */
int sl_log_enabled(enum sl_log_level level);

/* ---- process settings ---- */

/* Records below `level` are dropped (default SL_LOG_INFO). */
void sl_log_set_level(enum sl_log_level level);
/* The format (default SL_LOG_AUTO). */
void sl_log_set_format(enum sl_log_format format);
/* Where records go (default 2, standard error); the descriptor is borrowed. */
void sl_log_set_fd(int fd);

/* Writes p[0..n) to fd with one write(2), finishing only a write that a signal cut
 * short; errors are dropped (a log line is never worth a failure). */
void sl_log_write(int fd, const char *p, size_t n);

/* fn(ud) runs before each line is written (NULL: nothing): the progress lines
 * (sl_progress.h) erase themselves there so that a log line never lands inside one. */
void sl_log_set_before(void (*fn)(void *ud), void *ud);

/* Parses "debug", "info", "warn" or "error"; returns 0, or SL_EINVAL. */
int sl_log_parse_level(const char *name, enum sl_log_level *level);
/* Parses "text" or "json"; returns 0, or SL_EINVAL. */
int sl_log_parse_format(const char *name, enum sl_log_format *format);
/* "debug", "info", "warn" or "error" (static storage). */
const char *sl_log_level_name(enum sl_log_level level);

#endif
