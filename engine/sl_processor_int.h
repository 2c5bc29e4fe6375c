/* sl_processor_int.h - what the processor's own modules share: the processor, the
 * running batch and their pending appends. Only sl_processor.c and sl_luaapi.c
 * include it; everyone else goes through sl_processor.h.
 *
 * Threads: the loop thread only.
 */
#ifndef SL_PROCESSOR_INT_H
#define SL_PROCESSOR_INT_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "sl_buf.h"
#include "sl_instcache.h"
#include "sl_processor.h"

struct sl_work;
struct sl_work_src;

/* One ctx.append waiting for its commit; strings live in the arena of its list. */
struct pending_append {
	size_t stream, type, payload, metadata, key; /* offsets into arena */
	size_t payload_len, metadata_len;
};

/* Appends waiting for their commit: a batch's, or work's deferred ones. */
struct appends {
	struct sl_buf arena;
	struct pending_append *app;
	size_t napp, capp;
	struct sl_append_result *res; /* their results: valid until the commit ends */
};

/* The batch being run. It lives on the heap: with blocking work pending it outlives
 * sl_proc_ingest. Its events (ev) are borrowed for the synchronous phase only. */
struct run {
	struct sl_proc *p;
	sl_ingest_cb done;
	void *ud;
	struct sl_inst *in;
	const struct sl_event *ev;
	size_t n;
	int64_t last; /* running checkpoint */
	int64_t effects_mark;
	size_t nconsumed;
	const struct sl_event *source; /* event being processed (sync phase only) */
	struct sl_work_src *src;       /* the source of appends, shared with work */
	struct appends ap;
	struct sl_buf dblog; /* ctx.db writes, replayed if the batch waits */
	int pending;         /* block work items not settled */
	int hooks_done, failed, state_ref;
	char *traceback;     /* of the first failure */
	int64_t fail_offset; /* offset of the event the hooks failed at, or 0 */
	struct sl_diag fail;
	struct sl_buf state_json;
	int batch_ref;        /* registry ref of the batch table (processEventBatch only) */
	size_t last_consumed; /* index of the batch's last consumed event */
	size_t current;       /* index of the event being reduced */
	size_t *ridx;         /* event index of each reduced entry */
	unsigned char *rfx;   /* its sideEffects, as the engine decided it */
	size_t nreduced;
	int in_batch_hook; /* processEventBatch runs (an override) */
	int in_fanout;     /* ctx.fanOut runs inside it */
	int warned_fx;     /* --strict warned about an append despite sideEffects false */
	int priv_ref;      /* registry ref of the engine's own copy of the reduced entries:
	                    * [3k+1] event, [3k+2] previousState, [3k+3] state of entry k */
	struct sl_diag *d;
};

/* A dead-lettered event of the processor: skipped whenever it comes again (after a
 * reset or a rebuild), never reduced or faulted on again. */
struct dead {
	char *stream;
	int64_t offset;
};

/* A background failure not yet counted in the store. */
struct bgfail {
	char *stream; /* the instance */
	struct bgfail *next;
};

struct sl_proc {
	struct sl_proc_cfg cfg;
	const struct sl_contract *contract;
	lua_State *L;
	int ref_reduce, ref_process, ref_batch, ref_prepare, ref_ctx, ref_initial;
	int prepared;
	struct sl_store *store;
	struct sl_commit
		*commit; /* open for prepare or a batch (synchronous parts only), or NULL */
	struct sl_dbapi *db;
	int64_t anchor;
	struct sl_instcache cache; /* instances and their cached states */
	struct run *cur;           /* the batch running hooks, or NULL */
	struct sl_workq *wq;       /* NULL until sl_proc_set_loop */
	struct appends wap;        /* appends of work, deferred while p->commit is open */
	struct bgfail *bgf;        /* background failures not yet counted in the store */
	char *last_traceback;
	int64_t last_fail_offset;
	int preparing;        /* prepare is running */
	char script_hash[17]; /* of the script file's bytes */
	int claim_moved;      /* the last activation rebuilt or cleared faults */
	struct dead *dead;    /* its dead letters, sorted: the events it skips */
	size_t ndead;
	struct sl_work_src *prep_src; /* the source of work started by prepare */
	struct sl_fence fence;        /* of every commit when fence.owner is set */
	char *fence_owner;            /* owned copy of fence.owner */
	/* Partitioned (sl_proc_set_partitions): nparts > 0, and the epoch at which this
	 * runner holds each partition's lease (borrowed from the pump; 0: not held). */
	int nparts;
	const int64_t *part_epochs;
	struct sl_fence pfence; /* the fence fence_for handed out last */
};

/* ---- the batch model, for ctx (sl_processor.c) ---- */

/* The default processEventBatch: processEvent for each reduced entry with side
 * effects. [-0, +0, e] */
void sl_proc_fan_out(lua_State *L, struct sl_proc *p, struct run *r);
/* Makes ev the source of appends and of work registered from now on. [-0, +0, e] */
void sl_proc_set_source(lua_State *L, struct run *r, const struct sl_event *ev);
/* Completion of one ctx.block item of the batch r (ud). */
void sl_proc_block_done(void *ud, struct sl_work *w, const char *err, const char *tb);

#endif
