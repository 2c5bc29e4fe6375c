/* sl_processor.h - one deployment processor: its script in its own lua_State, its
 * contract, and the batch model that feeds its instances (DESIGN §4, §5).
 *
 * A processor (struct sl_proc) owns one lua_State holding the compiled hooks, shared
 * by all its instances. An instance (struct sl_inst) is one stream's state and
 * checkpoint in mode "each", or the single instance of mode "all" (stream ""); its
 * state table is cached in the lua_State and dropped when the cache is full, to be
 * decoded again from its checkpoint row on demand.
 *
 * sl_proc_ingest runs one batch for one instance:
 *   1. load once: prepare (if any), then the checkpoint; a failure fails this call
 *      and the next call retries both;
 *   2. events at or below the running checkpoint are skipped;
 *   3. each consumed event is payload-validated (named types), reduced, and the new
 *      state validated; other events only advance the checkpoint;
 *   4. if no new event remains, nothing is written;
 *   5. processEventBatch (or the default fan-out to processEvent) runs once;
 *   6. state, checkpoint, appends and ctx.db writes commit in one transaction, and
 *      only then does the instance's in-memory state advance.
 * Any failure fails the batch: nothing is committed, the diag says why, and the next
 * batch runs normally (the same events are delivered again).
 *
 * Sandbox (sl_sandbox.h): the script runs in a sandboxed state. Every hook call
 * (the script's top level, prepare, each reduce, each processEvent, processEventBatch,
 * each resume of work) has its own instruction and wall-clock budget; the state has
 * one memory budget. A batch that exceeds one fails with exactly "processor '<name>'
 * exceeded its <instruction|memory|wallclock> budget" and goes through the host's
 * retry and fault policy like any failure. While reduce runs, ctx functions,
 * math.random and collectgarbage raise, and ctx's per-batch fields are nil. With
 * cfg.strict a hook that changes a table it was given fails the batch, naming the
 * field, and every batch is reduced a second time from the same state: a different
 * result fails it too.
 *
 * Ingest is asynchronous: `done` is called exactly once, when the batch has settled.
 * A batch without ctx.block work settles before sl_proc_ingest returns; one with
 * blocking work settles later on the loop, after its last item ended.
 *
 * What Lua sees (the ctx table, where each primitive may be called) is described in
 * sl_luaapi.h; the instances and their cached states live in sl_instcache.h.
 *
 * Threads: everything here runs on the loop thread.
 */
#ifndef SL_PROCESSOR_H
#define SL_PROCESSOR_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"
#include "sl_store.h"

struct sl_contracts;
struct sl_contract;
struct uv_loop_s;
struct sl_buf;

/* A processor's settings, from the deployment. Strings are copied. */
struct sl_proc_cfg {
	const char *name;    /* the deployment's name for it */
	const char *script;  /* resolved path */
	const char *streams; /* stream name or pattern */
	int mode_all;
	int effects_all; /* sideEffects = "all" */
	int batch_size;
	int strict; /* fail a batch whose hook mutated a table it was given, or whose
	             * reduce gives another state when the batch is reduced again */
	/* Budgets (DESIGN §6 `limits`, sl_sandbox.h); 0 disables one. Per hook call:
	 * instructions and wallclock; memory is the processor's whole lua_State. */
	double instructions;
	double memory; /* bytes */
	double wallclock_ms;
};

struct sl_proc;

/* One instance. Owned by its processor. */
struct sl_inst {
	char *stream;         /* "" for mode all */
	int64_t offset;       /* committed checkpoint (a position in mode all) */
	int64_t effects_mark; /* last offset whose side effects ran */
	int64_t head;         /* the stream's head (store head position in mode all), for ctx */
	int state_ref;        /* registry ref of the cached state, or LUA_NOREF */
	/* Flags (a million instances are a million of these: kept small): */
	unsigned char loaded;  /* checkpoint row read */
	unsigned char has_row; /* a checkpoint row exists: status is not "new" */
	unsigned char faulted;
	/* Kept by the host: */
	unsigned char busy;          /* a batch is in flight */
	unsigned char queued;        /* on the pump's list of instances behind their head */
	unsigned char rate_recorded; /* the last batch's commit recorded rate_next */
	int fails;                   /* consecutive failures of the current batch */
	uint64_t retry_at;           /* loop time (ms) of the next attempt */
	size_t rate_slot;            /* 1 + its index in the pump's rate window, 0 when not in it */
	/* The rate the next batch's commit records with its checkpoint where the store
	 * can (sl_commit_rate), and until when it holds (0: none). */
	double rate_next;
	int64_t rate_until;
	struct sl_inst *lru_prev, *lru_next;
};

/* Loads and checks the script against its contract. Every error goes to errs as
 * "<file>: <field>: <message>"; returns SL_EINVAL if there was any. */
int sl_proc_load(struct sl_proc **out, const struct sl_proc_cfg *cfg, struct sl_contracts *cs,
                 struct sl_errs *errs);
void sl_proc_free(struct sl_proc *p);

const char *sl_proc_name(const struct sl_proc *p);
const struct sl_contract *sl_proc_contract(const struct sl_proc *p);
const struct sl_proc_cfg *sl_proc_cfg(const struct sl_proc *p);
/* The hash of the script file's bytes as loaded (16 hex digits). */
const char *sl_proc_script_hash(const struct sl_proc *p);

/* Binds the processor to a store (borrowed: it must outlive the processor): reads
 * its processor row; on a contract version change discards every checkpoint's state
 * and the processor's tables (keeping the side-effects marks); with `set_anchor`
 * (sluice run) stores the side-effect anchor the first time. Every write of the
 * processor goes through a commit of the store (sl_commit_begin); a batch's commit is
 * open only while its synchronous parts run (the hooks, and the settling after its
 * blocking work), never while work waits on the loop. */
int sl_proc_attach(struct sl_proc *p, struct sl_store *s, int set_anchor, struct sl_diag *d);

/* The lease fence (sl_store.h) every later commit of the processor carries: its
 * batches, faults, prepare, work's appends (f is copied; NULL: no fence). */
void sl_proc_set_fence(struct sl_proc *p, const struct sl_fence *f);
/* The fence set by sl_proc_set_fence, or NULL. */
const struct sl_fence *sl_proc_fence(const struct sl_proc *p);
/* The fence of a commit for instance stream: the processor's fence, or on a
 * partitioned processor the lease of the stream's partition at the epoch in the
 * processor's table (stream NULL, the processor's own writes: none). Valid until the
 * next call; NULL without a runner. */
const struct sl_fence *sl_proc_fence_for(struct sl_proc *p, const char *stream);
/* Partitions the processor's commits over n partitions (sl_partition_of), fenced on
 * the leases whose epochs[0..n) this runner holds (borrowed, kept up to date by the
 * caller; 0 where it holds none). epochs NULL: not partitioned (the default). */
void sl_proc_set_partitions(struct sl_proc *p, int n, const int64_t *epochs);
/* A runner took the processor's lease (sluice run): sets the fence, forgets every
 * instance (their checkpoints are read again: another runner may have moved them),
 * and does the writes sl_proc_attach does with set_anchor (faults cleared on a
 * changed script or contract, rebuild on a version change, the anchor stored the
 * first time), all under the fence. prepare runs again with the next batch. */
int sl_proc_activate(struct sl_proc *p, const struct sl_fence *f, struct sl_diag *d);
/* Whether the last sl_proc_activate moved instances: a rebuild (every checkpoint back
 * to 0) or faults cleared (faulted instances have events to process again). */
int sl_proc_claim_moved(const struct sl_proc *p);
/* Forgets what the processor knows of its instances: cached states, loaded
 * checkpoints, failure counts. Instances stay valid (a batch in flight keeps its). */
void sl_proc_forget(struct sl_proc *p);

/* The instance for `stream` ("" in mode all), created (not loaded) on first use. */
struct sl_inst *sl_proc_instance(struct sl_proc *p, const char *stream);
/* Reads the instance's checkpoint row if not done yet. */
int sl_proc_inst_load(struct sl_proc *p, struct sl_inst *in, struct sl_diag *d);
/* Forgets the instance's checkpoint and cached state, read again on next use: a
 * commit they came from was taken back (its commit group failed). */
void sl_proc_inst_unload(struct sl_proc *p, struct sl_inst *in);
/* What sl_proc_inst_load would read, from a row read by other means (sl_ckpt_behind);
 * an instance already loaded keeps what it has. */
void sl_proc_inst_preset(struct sl_inst *in, int64_t offset, int64_t effects_mark, int faulted,
                         int has_row);

/* Completion of a batch: rc 0, or a negative code with d filled. */
typedef void (*sl_ingest_cb)(void *ud, struct sl_inst *in, int rc, const struct sl_diag *d);

/* Runs one batch of events (in offset order for mode each, position order for mode
 * all) for instance `in`. The events are borrowed for the call only: the processor
 * copies what it keeps (the source of appends and work, the appends themselves), so
 * the caller may free or reuse them once sl_proc_ingest returns, even when `done`
 * runs later. `done` gets a diag that lives during the call. */
void sl_proc_ingest(struct sl_proc *p, struct sl_inst *in, const struct sl_event *ev, size_t n,
                    sl_ingest_cb done, void *ud);

/* Writes the instance's state as JSON into b (the initial state when it has none).
 * d may be NULL, as everywhere in this header. */
int sl_proc_state_json(struct sl_proc *p, struct sl_inst *in, struct sl_buf *b, struct sl_diag *d);

/* Checks the stored state of every instance of the processor (its name's checkpoint
 * rows in s; an instance without a stored state has the initial state and is skipped)
 * against p's contract state schema, as a reduce result is validated: what a hot
 * reload checks before a new version takes over (DESIGN §8). p need not be attached
 * (s is borrowed for the call). The first failure, in stream order, is the error:
 * SL_EINVAL with "state of instance 'counters/a' does not match the new state schema:
 * /count: type: expected integer, got string" ("state of the instance ..." in mode
 * all); a state that cannot be decoded or exceeds the memory budget fails the same
 * way. Not from inside one of p's hooks. */
int sl_proc_check_states(struct sl_proc *p, struct sl_store *s, struct sl_diag *d);

/* Gives the processor the loop its blocking and background work runs on (ctx.block,
 * ctx.background, ctx.sleep, ctx.exec, ctx.http need it). */
int sl_proc_set_loop(struct sl_proc *p, struct uv_loop_s *loop, struct sl_diag *d);
/* Runs prepare now if it has not run in this process (sluice run does it at start,
 * so that recovery work in prepare starts even when no event is waiting). A failure
 * is retried by the next ingest. */
int sl_proc_prepare(struct sl_proc *p, struct sl_diag *d);
/* Work items (blocking and background) still running. */
size_t sl_proc_work_running(const struct sl_proc *p);
/* Kills the children of running ctx.exec calls. */
void sl_proc_kill_work(struct sl_proc *p);
/* Writes what work left pending while the processor's commit was open (its appends,
 * the count of background failures). */
void sl_proc_flush(struct sl_proc *p);
/* The traceback of the last failed batch, or NULL. */
const char *sl_proc_last_traceback(const struct sl_proc *p);

/* Records ev as a dead letter of instance in (error err, after attempts attempts,
 * with the last traceback) and moves its checkpoint past it, in one commit under
 * the processor's fence: the processor skips the event from then on. */
int sl_proc_dead_letter(struct sl_proc *p, struct sl_inst *in, const struct sl_event *ev,
                        const char *err, int attempts, struct sl_diag *d);
/* The offset of the event the last failed batch failed at (0 when unknown). */
int64_t sl_proc_last_fail_offset(const struct sl_proc *p);
/* Whether msg, the message of a failed batch, is a budget's ("processor 'x' exceeded
 * its <...> budget"). */
int sl_proc_is_budget_failure(const char *msg);

/* Whether the processor's pattern matches a stream name. */
int sl_pattern_match(const char *pattern, const char *stream);

#endif
