/* sl_instcache.c - instances by stream, and the LRU of their cached state tables. */
#include "sl_instcache.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "sl_hash.h"
#include "sl_lstack.h"

void sl_instcache_init(struct sl_instcache *c, lua_State *L)
{
	memset(c, 0, sizeof(*c));
	c->L = L;
	c->lru.lru_next = c->lru.lru_prev = &c->lru;
}

void sl_instcache_release(struct sl_instcache *c)
{
	size_t i;

	for (i = 0; i < c->nslots; i++) {
		if (c->slot[i].in) {
			free(c->slot[i].in->stream);
			free(c->slot[i].in);
		}
	}
	free(c->slot);
	c->slot = NULL;
	c->nslots = c->ninst = c->ncached = 0;
	c->lru.lru_next = c->lru.lru_prev = &c->lru;
}

/* The slot of `stream` (of hash h): its instance, or the empty slot where it goes. */
static struct sl_instslot *inst_slot(struct sl_instcache *c, const char *stream, uint64_t h)
{
	size_t i = (size_t)h & (c->nslots - 1);

	while (c->slot[i].in && (c->slot[i].hash != h || strcmp(c->slot[i].in->stream, stream)))
		i = (i + 1) & (c->nslots - 1);
	return &c->slot[i];
}

/* Doubles the table (64 slots at first); the load factor stays at most 1/2. */
static int inst_grow(struct sl_instcache *c)
{
	struct sl_instslot *old = c->slot;
	size_t n = c->nslots, i;

	c->nslots = n ? n * 2 : 64;
	if (!(c->slot = calloc(c->nslots, sizeof(*c->slot)))) {
		c->slot = old;
		c->nslots = n;
		return SL_ENOMEM;
	}
	for (i = 0; i < n; i++) { /* distinct streams: the first empty slot will do */
		size_t k = (size_t)old[i].hash & (c->nslots - 1);
		if (!old[i].in)
			continue;
		while (c->slot[k].in)
			k = (k + 1) & (c->nslots - 1);
		c->slot[k] = old[i];
	}
	free(old);
	return 0;
}

struct sl_inst *sl_instcache_get(struct sl_instcache *c, const char *stream)
{
	struct sl_instslot *slot;
	struct sl_inst *in;
	uint64_t h = sl_hash_str(stream);

	if ((c->ninst + 1) * 2 > c->nslots && inst_grow(c))
		return NULL;
	slot = inst_slot(c, stream, h);
	if (slot->in)
		return slot->in;
	if (!(in = calloc(1, sizeof(*in))) || !(in->stream = strdup(stream))) {
		free(in);
		return NULL;
	}
	in->state_ref = LUA_NOREF;
	c->ninst++;
	slot->hash = h;
	return slot->in = in;
}

static void lru_unlink(struct sl_inst *in)
{
	if (in->lru_prev) {
		in->lru_prev->lru_next = in->lru_next;
		in->lru_next->lru_prev = in->lru_prev;
		in->lru_prev = in->lru_next = NULL;
	}
}

/* [-1, +0, m] */
void sl_instcache_put_state(struct sl_instcache *c, struct sl_inst *in)
{
	struct sl_inst *old;
	SL_STACK_ENTER(c->L);

	if (in->state_ref != LUA_NOREF) {
		luaL_unref(c->L, LUA_REGISTRYINDEX, in->state_ref);
		lru_unlink(in);
		c->ncached--;
	}
	in->state_ref = luaL_ref(c->L, LUA_REGISTRYINDEX);
	in->lru_next = c->lru.lru_next;
	in->lru_prev = &c->lru;
	c->lru.lru_next->lru_prev = in;
	c->lru.lru_next = in;
	if (++c->ncached > SL_INSTCACHE_STATES) {
		old = c->lru.lru_prev;
		lru_unlink(old);
		luaL_unref(c->L, LUA_REGISTRYINDEX, old->state_ref);
		old->state_ref = LUA_NOREF;
		c->ncached--;
	}
	SL_STACK_CHECK(c->L, -1);
}

/* [-0, +0, -] */
void sl_instcache_unload(struct sl_instcache *c, struct sl_inst *in)
{
	if (in->state_ref != LUA_NOREF) {
		lru_unlink(in);
		luaL_unref(c->L, LUA_REGISTRYINDEX, in->state_ref);
		in->state_ref = LUA_NOREF;
		c->ncached--;
	}
	in->loaded = 0;
}

/* After the memory budget was exceeded the next attempt starts from what the script
 * really holds. [-0, +0, -] */
void sl_instcache_drop_states(struct sl_instcache *c)
{
	struct sl_inst *in;

	while ((in = c->lru.lru_next) != &c->lru) {
		lru_unlink(in);
		luaL_unref(c->L, LUA_REGISTRYINDEX, in->state_ref);
		in->state_ref = LUA_NOREF;
	}
	c->ncached = 0;
	lua_gc(c->L, LUA_GCCOLLECT, 0);
}

void sl_instcache_forget(struct sl_instcache *c)
{
	size_t i;

	sl_instcache_drop_states(c);
	for (i = 0; i < c->nslots; i++) {
		struct sl_inst *in = c->slot[i].in;
		if (!in)
			continue;
		in->loaded = in->has_row = in->faulted = 0;
		in->offset = in->effects_mark = 0;
		in->fails = 0;
		in->retry_at = 0;
	}
}
