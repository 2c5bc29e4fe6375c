/* sl_faultlog.h - where a runner notes the faults its store could not take.
 *
 * A fault is normally a row of the store (sl_ckpt_fault). When the store cannot take
 * it (a full disk: the very failure that faulted the batch), status would go on
 * showing the instance as "ok". So a runner keeps, next to the store, a small file
 * "<store>-faults" whose space it reserved when it started (posix_fallocate): writing
 * a record into reserved space needs no new block, so it works on a full disk. `sluice
 * status` reads it and shows those instances as faulted; the runner empties it when it
 * starts again, since it retries those instances anyway (their checkpoints did not
 * move).
 *
 * Format: records "processor US stream US message LF" (US = 0x1f; a message's control
 * characters become spaces) from offset 0, then NUL bytes up to the reserved size; a
 * record that does not fit is dropped (the run's exit status still says it).
 *
 * Threads: one runner writes (the loop thread); readers are other processes.
 */
#ifndef SL_FAULTLOG_H
#define SL_FAULTLOG_H

#include <stddef.h>

#include "sl_error.h"

#define SL_FAULTLOG_SIZE 65536 /* bytes reserved for records */

struct sl_faultlog;

/* Opens (creating) "<store_path>-faults", reserves its space and empties it. */
int sl_faultlog_open(struct sl_faultlog **out, const char *store_path, struct sl_diag *d);
/* Appends a record; SL_ETOOBIG when it does not fit in the reserved space, SL_EIO
 * when it cannot be written. */
int sl_faultlog_add(struct sl_faultlog *f, const char *proc, const char *stream, const char *msg);
void sl_faultlog_close(struct sl_faultlog *f);

/* Calls fn for every record of the store's fault log (none when it does not exist); a
 * non-zero return of fn stops and is returned. */
typedef int (*sl_faultlog_fn)(void *ud, const char *proc, const char *stream, const char *msg);
int sl_faultlog_read(const char *store_path, sl_faultlog_fn fn, void *ud);

#endif
