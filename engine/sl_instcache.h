/* sl_instcache.h - a processor's instances by stream, and the bounded cache of their
 * state tables (DESIGN §5: a million per-stream instances fit in memory).
 *
 * Instances live in an open-addressing hash table keyed by stream (sl_hash_str) and
 * stay until the cache is released. Their decoded state tables are registry refs of
 * the processor's lua_State, kept in a least-recently-used list of at most
 * SL_INSTCACHE_STATES entries; an evicted state is decoded again from its checkpoint
 * row on demand (its instance keeps state_ref = LUA_NOREF).
 *
 * Ownership: the cache owns the instances (struct sl_inst) and their refs; L is
 * borrowed and must outlive the cache. Threads: the loop thread only.
 */
#ifndef SL_INSTCACHE_H
#define SL_INSTCACHE_H

#include <stddef.h>

#include <lua.h>

#include <stdint.h>

#include "sl_processor.h"

#define SL_INSTCACHE_STATES 4096 /* cached state tables per processor */

/* A slot of the table: the stream's hash beside its instance, so that a probe past
 * another instance reads neither it nor its name. */
struct sl_instslot {
	uint64_t hash;
	struct sl_inst *in; /* NULL: empty */
};

struct sl_instcache {
	lua_State *L;
	struct sl_instslot *slot; /* instances by stream, open addressing */
	size_t nslots, ninst;
	struct sl_inst lru; /* sentinel of the cached-state list, most recent first */
	size_t ncached;
};

/* Starts an empty cache whose states are refs of L. */
void sl_instcache_init(struct sl_instcache *c, lua_State *L);
/* Frees every instance. Their state refs are not released: call it after
 * sl_instcache_drop_states, or when L is closed anyway. */
void sl_instcache_release(struct sl_instcache *c);

/* The instance for `stream`, created (not loaded) on first use; NULL when out of
 * memory. */
struct sl_inst *sl_instcache_get(struct sl_instcache *c, const char *stream);

/* Makes the table on top of c->L the instance's cached state and pops it, evicting
 * the least recently used state when the cache is full. [-1, +0, m] */
void sl_instcache_put_state(struct sl_instcache *c, struct sl_inst *in);
/* Drops every cached state and marks every instance not loaded, with no failures:
 * their checkpoint rows are read again on next use. [-0, +0, -] */
void sl_instcache_forget(struct sl_instcache *c);
/* Drops every cached state and runs a full collection. [-0, +0, -] */
void sl_instcache_drop_states(struct sl_instcache *c);
/* Forgets what is known of one instance (its cached state; its checkpoint is read
 * again on next use), after a commit it learnt from was taken back. [-0, +0, -] */
void sl_instcache_unload(struct sl_instcache *c, struct sl_inst *in);

#endif
