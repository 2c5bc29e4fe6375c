/* sl_sandbox.c - the state processors run in: allow-list, allocator, budgets.
 *
 * Why this mechanism (the README's "Sandbox" section says it for users): an
 * in-process count hook plus wrapped library functions, not a watchdog thread and
 * not one worker process per processor. A watchdog can only interrupt a state
 * between VM instructions (lua_sethook from another thread), which is what the count
 * hook already does without a thread, and it cannot stop a long C call either. A
 * process per processor could be killed at any point, but every ctx call, every
 * event and every state would cross a pipe, and the batch transaction (state,
 * checkpoint, appends and ctx.db rows in one SQLite commit) would have to be split
 * across processes. So the gaps a count hook leaves are closed one by one instead:
 *
 *   - pcall/xpcall: the hook re-arms itself to fire at every instruction once a
 *     budget is exceeded, and the sandbox's pcall/xpcall rethrow budget errors;
 *   - message handlers: Lua runs the handler of an error raised by a hook with hooks
 *     off, so xpcall's handler is wrapped and never called for a budget error;
 *   - __gc finalizers (run with hooks off): setmetatable refuses __gc; the engine's
 *     own metatables are locked so no __gc can be added to them;
 *   - __close handlers run with hooks on, so the re-armed hook stops them;
 *   - long C calls: pattern matching (sl_strmatch.c), the loops of
 *     table.insert/remove/move/concat (here), string.rep and table.sort
 *     (sl_sandbox_lib.c) count steps and check the budgets; the functions that scan
 *     their arguments in C check them when called (sl_sandbox_lib.c says which);
 *     memory bombs (string.rep, tables, concatenation) end at the allocator, which
 *     also reads the clock before every large block; a compile of a huge chunk reads
 *     its text through a reader that checks the budget; collectgarbage() offers
 *     "count" only, so no script can ask for repeated full collections;
 *   - a long SQLite query: ctx.db installs a progress handler (sl_dbapi.c);
 *   - cjson: scripts get a proxy with encode, decode and null only, so its depth
 *     limits stay at their defaults; encode first walks the value with a size cap
 *     (a small graph of shared tables would encode to gigabytes);
 *   - the wall clock is read in the hook, in the allocator and in those loops, so a
 *     runaway that is slow per instruction still stops near its wall-clock budget.
 */
#include "sl_sandbox.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "sl_home.h"
#include "sl_log.h"
#include "sl_sandbox_int.h"
#include "sl_luajson.h"
#include "sl_strmatch.h"

#define HOOK_PERIOD 10000       /* instructions between two runs of the count hook */
#define ALLOC_PERIOD 255u       /* allocations between two reads of the clock (mask) */
#define STOP_EVERY_NS 50000000u /* how often sl_sandbox_set_stop's fn is asked */
#define ALLOC_LARGE 65536       /* growth in bytes that reads the clock at once */
#define CHUNK_PIECE 4096        /* bytes the load reader hands the parser at once */
#define CJSON_DEPTH 1000        /* lua-cjson's default encode_max_depth */

enum { REFUSED_NONE, REFUSED_LIMIT, REFUSED_SYSTEM, REFUSED_TRIPPED };

/* The small-block pool of a state (see "The allocator"). */
#define POOL_GRAIN 16 /* block sizes are multiples of this */
#define POOL_MAX 256  /* blocks up to this size come from the pool */
#define POOL_CLASSES (POOL_MAX / POOL_GRAIN)
#define POOL_CHUNK (64 * 1024)               /* bytes taken from malloc at once */
#define POOL_CLASS(n) (((n)-1) / POOL_GRAIN) /* n in 1..POOL_MAX */

/* Under AddressSanitizer the pool's free blocks and the slack behind each block are
 * poisoned, so that a use after free or an overrun is caught as with malloc. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct pool {
	void *free[POOL_CLASSES]; /* free blocks of each size, linked through their first word */
	char *cur, *end;          /* what is left of the newest chunk */
	void *chunks;             /* every chunk, linked through its first word */
};

struct sl_sandbox {
	lua_State *L; /* the main thread */
	char *name;
	struct sl_limits lim;
	size_t used, limit; /* bytes held; limit 0: none */
	int refusal;        /* why the last allocation was refused */
	unsigned allocs;
	struct pool pool;
	/* The budget of the running hook call. */
	int depth, reducing;
	lua_State *cur; /* the thread running it */
	enum sl_budget tripped;
	double count;          /* instructions (and C steps) so far */
	int period;            /* of the count hook; 0: no hook */
	uint64_t deadline;     /* monotonic ns, or 0 */
	char msg[4][160];      /* the budget errors, as C strings */
	int (*stop)(void *ud); /* sl_sandbox_set_stop */
	void *stop_ud;
	uint64_t next_stop; /* when stop is asked next */
	/* The late hook (see "The late count hook" below). */
	int late;            /* this state's calls start without the count hook */
	int late_call;       /* the running call started without it */
	volatile int hooked; /* the running call has it now (a sampling window) */
	uint64_t started;    /* when the running call started (monotonic ns) */
	uint64_t win_at;     /* when the sampling window open now began (precise ns) */
	uint64_t sampled_at; /* when the last one ended (0: none yet in this call) */
	double rate;         /* unhooked instructions per ns, from the windows */
};

/* Private registry keys. */
static const char envmt_key = 0, lock_key = 0, loaded_key = 0, cjson_key = 0;
static const char msg_keys[4] = {0};

static const char *const budget_names[] = {"", "instruction", "memory", "wallclock"};

/* The budget clock. The coarse clock is read without a timer read (a few ns, a
 * resolution of a few ms): good enough for budgets of 100 ms and more, and read at
 * every hook call. */
#ifdef CLOCK_MONOTONIC_COARSE
#define BUDGET_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define BUDGET_CLOCK CLOCK_MONOTONIC
#endif

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(BUDGET_CLOCK, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

static struct sl_sandbox *sandbox_of(lua_State *L)
{
	void *ud;

	return lua_getallocf(L, &ud) == sb_alloc ? ud : NULL;
}

/* ---- budgets ------------------------------------------------------------------ */

static void count_hook(lua_State *L, lua_Debug *ar);

/* ---- the late count hook ----------------------------------------------------------
 *
 * Lua 5.4 runs every instruction through luaG_traceexec while any hook is set,
 * whatever its period: a count hook costs pure Lua ~1.75x its time. Most hook calls
 * (a reduce, a processEvent) last microseconds, so a state whose instruction budget
 * is large (LATE_MIN or more, or none) starts each call without the hook: a watchdog
 * thread that wakes every LATE_NS sees a call that has been running since its last
 * wake-up and signals the engine's thread, whose handler installs the count hook
 * (lua_sethook is meant to be called from signal handlers; lua.c does it for
 * Ctrl-C). The hook then samples: it fires once, after HOOK_PERIOD instructions,
 * checks the budgets and takes itself off again; the watchdog opens the next window
 * 10 ms later. Each window measures the rate (instructions per ns of the thread's
 * CPU time, corrected by LATE_HOOKED for the hook's own cost) and the CPU time between
 * two windows is credited at that rate, so a long call runs at full speed with its wall clock
 * checked every 10 ms and its instruction count an estimate (the 10-20 ms before the
 * first window are not counted; the tightest loops are undercounted by about 20 %).
 * Budgets under LATE_MIN keep the exact hook from the first instruction. The
 * allocator, the long C
 * loops and a tripped budget check and install as before, hook or not. A state with
 * a small instruction budget keeps the hook from the first instruction, and so does
 * a state used on another thread than the first one that ran a late call.
 */
#define LATE_MIN 1e8      /* instruction budgets from here on start calls unhooked */
#define LATE_NS 10000000u /* the watchdog's period: 10 ms */
#define LATE_HOOKED 2.0   /* how much slower Lua runs with a hook set (1.75-2.4 measured) */

/* The owner thread's CPU time: the windows and the credit between them count the
 * time the thread ran, so a thread that waits for a core (a busy machine) or in a C
 * function that blocks is not charged for instructions it never ran. Read on the
 * owner thread only (in the signal handler and the hook; clock_gettime is
 * async-signal-safe). */
static uint64_t precise_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void unhook(struct sl_sandbox *sb, lua_State *L);

static struct {
	pthread_once_t once;
	int ok;                             /* the watchdog runs */
	pthread_t owner;                    /* the thread whose calls it watches */
	_Atomic(struct sl_sandbox *) armed; /* the call running, or NULL */
	atomic_uint gen;                    /* counts the calls started */
} late = {PTHREAD_ONCE_INIT, 0, 0, NULL, 0};

static int late_signal(void)
{
	return SIGRTMIN + 4;
}

/* On the owner thread, between two instructions of a late call: the count hook. */
static void on_late_signal(int sig)
{
	struct sl_sandbox *sb = atomic_load(&late.armed);
	int saved = errno;

	(void)sig;
	if (sb && sb->depth && sb->late_call && !sb->hooked && !sb->tripped) {
		uint64_t now = precise_ns();
		if (sb->sampled_at && sb->rate > 0) /* what ran since the last window */
			sb->count += (double)(now - sb->sampled_at) * sb->rate;
		sb->win_at = now;
		if (sb->cur)
			lua_sethook(sb->cur, count_hook, LUA_MASKCOUNT, sb->period);
		lua_sethook(sb->L, count_hook, LUA_MASKCOUNT, sb->period);
		sb->hooked = 1;
	}
	errno = saved;
}

static void *watchdog(void *arg)
{
	unsigned seen = 0;
	struct timespec ts = {0, LATE_NS};

	(void)arg;
	for (;;) {
		unsigned gen;
		nanosleep(&ts, NULL);
		gen = atomic_load(&late.gen);
		if (atomic_load(&late.armed) && gen == seen)
			pthread_kill(late.owner, late_signal()); /* a window for the long call */
		seen = gen;
	}
	return NULL;
}

static void start_watchdog(void)
{
	struct sigaction sa;
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_late_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(late_signal(), &sa, NULL))
		return;
	late.owner = pthread_self();
	/* The watchdog takes no signal meant for the process. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	late.ok = pthread_create(&t, &attr, watchdog, NULL) == 0;
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Whether this call can start without the hook (the watchdog runs for this thread). */
static int late_here(void)
{
	pthread_once(&late.once, start_watchdog);
	return late.ok && pthread_equal(late.owner, pthread_self());
}

/* Takes the hook off the threads of a call that ended. */
static void unhook(struct sl_sandbox *sb, lua_State *L)
{
	lua_sethook(sb->L, NULL, 0, 0);
	lua_sethook(L, NULL, 0, 0);
	if (sb->cur)
		lua_sethook(sb->cur, NULL, 0, 0);
}

/* Marks the budget exceeded and makes every hooked thread stop at its next
 * instruction. Safe anywhere, also inside the allocator: lua_sethook only sets
 * fields. */
static void trip(struct sl_sandbox *sb, enum sl_budget b, lua_State *L)
{
	if (!sb->tripped)
		sb->tripped = b;
	if (!sb->period)
		return;
	lua_sethook(sb->L, count_hook, LUA_MASKCOUNT, 1);
	if (sb->cur)
		lua_sethook(sb->cur, count_hook, LUA_MASKCOUNT, 1);
	if (L)
		lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
}

/* Checks the instruction count and the clock. */
static void check(struct sl_sandbox *sb, lua_State *L)
{
	if (sb->tripped)
		return;
	if (sb->lim.instructions > 0 && sb->count >= sb->lim.instructions) {
		trip(sb, SL_BUDGET_INSTRUCTIONS, L);
	} else if (sb->deadline || sb->stop) {
		uint64_t now = now_ns();
		if (sb->deadline && now >= sb->deadline) {
			trip(sb, SL_BUDGET_WALLCLOCK, L);
		} else if (sb->stop && now >= sb->next_stop) {
			sb->next_stop = now + STOP_EVERY_NS;
			if (sb->stop(sb->stop_ud))
				trip(sb, SL_BUDGET_WALLCLOCK, L);
		}
	}
}

void sl_sandbox_set_stop(lua_State *L, int (*fn)(void *ud), void *ud)
{
	struct sl_sandbox *sb = sandbox_of(L);

	if (sb) {
		sb->stop = fn;
		sb->stop_ud = ud;
		sb->next_stop = 0;
	}
}

void sl_sandbox_pushmessage(lua_State *L, enum sl_budget b)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &msg_keys[b]);
}

int sl_sandbox_raise(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);

	sl_sandbox_pushmessage(L, sb && sb->tripped ? sb->tripped : SL_BUDGET_INSTRUCTIONS);
	return lua_error(L);
}

/* The count hook: adds up instructions, reads the clock, and once a budget is
 * exceeded raises at every instruction. [-0, +0, v] */
static void count_hook(lua_State *L, lua_Debug *ar)
{
	struct sl_sandbox *sb = sandbox_of(L);

	(void)ar;
	if (!sb || !sb->depth)
		return; /* a hook left on a suspended coroutine */
	if (!sb->tripped && sb->late_call && sb->hooked) { /* a sampling window closes */
		uint64_t now = precise_ns();
		sb->count += sb->period;
		if (now > sb->win_at) /* hooked instructions run LATE_HOOKED times slower */
			sb->rate = sb->period * LATE_HOOKED / (double)(now - sb->win_at);
		sb->sampled_at = now;
		check(sb, L);
		if (!sb->tripped) {
			sb->hooked = 0;
			unhook(sb, L);
			return;
		}
	} else if (!sb->tripped) {
		sb->count += sb->period;
		check(sb, L);
		if (!sb->tripped)
			return;
	}
	trip(sb, sb->tripped, L);
	sl_sandbox_raise(L);
}

struct sl_sbmark sl_sandbox_mark(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);
	struct sl_sbmark m = {0, 0, NULL};

	if (sb) {
		m.depth = sb->depth;
		m.reducing = sb->reducing;
		m.cur = sb->cur;
	}
	return m;
}

/* Gives thread L the count hook at its normal period, unless it has it: the hook
 * stays installed between calls (doing nothing at depth 0), so a call costs no
 * lua_sethook. Its count is not reset either: a call's first run of the hook may
 * come up to one period early, which overcounts by at most one period. Resetting it
 * at every nested call instead would let a loop of short nested calls (ctx.fanOut
 * in a loop) run without the hook ever firing. */
static void hook_thread(struct sl_sandbox *sb, lua_State *L)
{
	int period = sb->tripped ? 1 : sb->period;

	if (sb->late_call && !sb->hooked && !sb->tripped)
		return; /* the watchdog hooks it if it runs long */
	if (sb->period && (lua_gethook(L) != count_hook || lua_gethookcount(L) != period))
		lua_sethook(L, count_hook, LUA_MASKCOUNT, period);
}

struct sl_sbmark sl_sandbox_enter(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);
	struct sl_sbmark m = sl_sandbox_mark(L);

	if (!sb)
		return m;
	if (sb->depth++ == 0) {
		sb->count = 0;
		sb->tripped = SL_BUDGET_NONE;
		sb->refusal = REFUSED_NONE;
		sb->started = now_ns();
		sb->deadline = sb->lim.wallclock_ms > 0
		                       ? sb->started + (uint64_t)(sb->lim.wallclock_ms * 1e6)
		                       : 0;
		sb->hooked = 0;
		sb->sampled_at = 0;
		if ((sb->late_call = sb->late && late_here())) {
			if (lua_gethook(L)) /* left by an earlier call on a coroutine */
				lua_sethook(L, NULL, 0, 0);
			atomic_fetch_add(&late.gen, 1);
			atomic_store(&late.armed, sb);
		}
	}
	hook_thread(sb, L); /* a nested call on another thread shares the budget */
	sb->cur = L;
	return m;
}

void sl_sandbox_leave(lua_State *L, struct sl_sbmark m)
{
	struct sl_sandbox *sb = sandbox_of(L);

	if (!sb)
		return;
	if (m.depth == 0 && sb->late_call) {
		atomic_store(&late.armed, NULL);
		if (sb->hooked || sb->tripped)
			unhook(sb, L);
		sb->late_call = 0;
		sb->hooked = 0;
	} else if (m.depth == 0 && sb->tripped && sb->period) { /* back to the normal period */
		lua_sethook(sb->L, count_hook, LUA_MASKCOUNT, sb->period);
		lua_sethook(L, count_hook, LUA_MASKCOUNT, sb->period);
		if (sb->cur)
			lua_sethook(sb->cur, count_hook, LUA_MASKCOUNT, sb->period);
	}
	sb->depth = m.depth;
	sb->reducing = m.reducing;
	sb->cur = m.cur;
	if (m.depth == 0) {
		sb->tripped = SL_BUDGET_NONE;
		sb->refusal = REFUSED_NONE;
		sb->deadline = 0;
	}
}

enum sl_budget sl_sandbox_exceeded(lua_State *L, int status)
{
	struct sl_sandbox *sb = sandbox_of(L);

	if (!sb || status == LUA_OK || status == LUA_YIELD)
		return SL_BUDGET_NONE;
	if (sb->tripped)
		return sb->tripped;
	if (status == LUA_ERRMEM && sb->refusal == REFUSED_LIMIT)
		return SL_BUDGET_MEMORY;
	return SL_BUDGET_NONE;
}

const char *sl_sandbox_message(lua_State *L, enum sl_budget b)
{
	struct sl_sandbox *sb = sandbox_of(L);

	return sb ? sb->msg[b] : "";
}

int sl_sandbox_is_budget_message(const char *msg)
{
	const char *p;

	if (!msg || strncmp(msg, "processor '", 11) || !(p = strstr(msg, "' exceeded its ")))
		return 0;
	p += 15;
	return !strncmp(p, "instruction budget", 18) || !strncmp(p, "memory budget", 13) ||
	       !strncmp(p, "wallclock budget", 16);
}

void sl_sandbox_rethrow(lua_State *L, int status)
{
	struct sl_sandbox *sb = sandbox_of(L);
	enum sl_budget b = sl_sandbox_exceeded(L, status);

	if (!b || !sb->depth)
		return;
	trip(sb, b, L);
	sl_sandbox_raise(L);
}

void sl_sandbox_tick(lua_State *L, unsigned n)
{
	struct sl_sandbox *sb = sandbox_of(L);

	if (!sb || !sb->depth)
		return;
	sb->count += n;
	check(sb, L);
	if (sb->tripped)
		sl_sandbox_raise(L);
}

int sl_sandbox_poll(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);

	if (!sb || !sb->depth)
		return 0;
	check(sb, L);
	return sb->tripped != SL_BUDGET_NONE;
}

void sl_sandbox_reducing(lua_State *L, int on)
{
	struct sl_sandbox *sb = sandbox_of(L);

	if (sb)
		sb->reducing = on;
}

int sl_sandbox_in_reduce(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);

	return sb && sb->reducing;
}

void sl_sandbox_no_reduce(lua_State *L, const char *what)
{
	if (sl_sandbox_in_reduce(L))
		luaL_error(L, "%s is not available in reduce (reduce must be deterministic)", what);
}

/* ---- the allocator ---------------------------------------------------------------- */

/* A block of n bytes (1..POOL_MAX) from the pool, or NULL when malloc refuses a
 * new chunk. */
static void *pool_get(struct pool *pl, size_t n)
{
	size_t k = POOL_CLASS(n), size = POOL_GRAIN * (k + 1);
	void *b = pl->free[k];
	char *c;

	if (b) {
		UNPOISON(b, sizeof(void *));
		pl->free[k] = *(void **)b;
	} else {
		if ((size_t)(pl->end - pl->cur) < size) {
			/* The rest of the old chunk stays unused: under POOL_MAX bytes. */
			if (!(c = malloc(POOL_CHUNK)))
				return NULL;
			*(void **)c = pl->chunks;
			pl->chunks = c;
			pl->cur = c + POOL_GRAIN; /* the link, padded to keep blocks aligned */
			pl->end = c + POOL_CHUNK;
			POISON(pl->cur, (size_t)(pl->end - pl->cur));
		}
		b = pl->cur;
		pl->cur += size;
	}
	UNPOISON(b, n);
	return b;
}

/* Gives a block of n bytes back to the pool. */
static void pool_put(struct pool *pl, void *b, size_t n)
{
	size_t k = POOL_CLASS(n);

	UNPOISON(b, sizeof(void *));
	*(void **)b = pl->free[k];
	pl->free[k] = b;
	POISON(b, POOL_GRAIN * (k + 1));
}

static void pool_release(struct pool *pl)
{
	void *c, *next;

	for (c = pl->chunks; c; c = next) {
		UNPOISON(c, POOL_CHUNK);
		next = *(void **)c;
		free(c);
	}
	memset(pl, 0, sizeof(*pl));
}

/* Moves a block of old bytes (0: none) to one of n, pool or malloc by size. NULL
 * when no memory is left (the old block is then untouched). */
static void *block_move(struct pool *pl, void *ptr, size_t old, size_t n)
{
	void *q;

	if (old > POOL_MAX && n > POOL_MAX)
		return realloc(ptr, n);
	if (old && old <= POOL_MAX && n <= POOL_MAX && POOL_CLASS(old) == POOL_CLASS(n)) {
		POISON(ptr, POOL_GRAIN * (POOL_CLASS(n) + 1)); /* the block already has room */
		UNPOISON(ptr, n);
		return ptr;
	}
	if (!(q = n <= POOL_MAX ? pool_get(pl, n) : malloc(n)))
		return NULL;
	if (old) {
		memcpy(q, ptr, old < n ? old : n);
		if (old <= POOL_MAX)
			pool_put(pl, ptr, old);
		else
			free(ptr);
	}
	return q;
}

/* Lua's allocator contract: nsize 0 frees; a shrink never fails. Growth beyond the
 * memory budget, or any growth once a budget tripped inside a hook call, fails:
 * Lua then runs an emergency collection and tries once more before it raises.
 *
 * Blocks of up to POOL_MAX bytes (tables, short strings, closures: most of what a
 * batch makes and drops per event) come from free lists by size class, carved from
 * 64 KiB chunks freed when the state closes; Lua passes the old size of every block
 * it frees or resizes, so nothing needs a header. Larger blocks are malloc's. */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct sl_sandbox *sb = ud;
	size_t old = ptr ? osize : 0;
	void *q;

	if (nsize == 0) {
		if (old > POOL_MAX)
			free(ptr);
		else if (old)
			pool_put(&sb->pool, ptr, old);
		sb->used -= old;
		return NULL;
	}
	if (nsize > old) {
		if (sb->tripped && sb->depth) {
			sb->refusal = REFUSED_TRIPPED;
			return NULL;
		}
		if (sb->limit && sb->used - old + nsize > sb->limit) {
			sb->refusal = REFUSED_LIMIT;
			return NULL;
		}
	}
	if (!(q = block_move(&sb->pool, ptr, old, nsize))) {
		if (nsize < old) {
			/* A shrink must not fail: the block stays as it is, big enough for
			 * the class it is freed to later (freed with the pool's chunks). */
			sb->used = sb->used - old + nsize;
			return ptr;
		}
		sb->refusal = REFUSED_SYSTEM;
		return NULL;
	}
	sb->used = sb->used - old + nsize;
	/* A large block is about to be filled by a C loop (string.upper, gsub's result,
	 * a concatenation): its time is checked before that work, not 255 blocks later. */
	if (sb->depth && sb->deadline && !sb->tripped &&
	    ((++sb->allocs & ALLOC_PERIOD) == 0 || nsize - old >= ALLOC_LARGE) &&
	    now_ns() >= sb->deadline)
		trip(sb, SL_BUDGET_WALLCLOCK, NULL);
	return q;
}

struct sl_limits sl_sandbox_limits(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);
	struct sl_limits none = {0, 0, 0};

	return sb ? sb->lim : none;
}

size_t sl_sandbox_memory(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);

	return sb ? sb->used : 0;
}

/* ---- locked tables ------------------------------------------------------------------ */

/* __newindex of a read-only proxy (its name at upvalue 1). [-3, +0, v] */
static int readonly_write(lua_State *L)
{
	return luaL_error(L, "attempt to modify read-only table '%s'",
	                  lua_tostring(L, lua_upvalueindex(1)));
}

/* The iterator of a proxy's pairs: next() over the table behind it (upvalue 1),
 * which the script never gets hold of. [-2, +(1|2), e] */
static int proxy_next(lua_State *L)
{
	lua_settop(L, 2);
	if (lua_next(L, lua_upvalueindex(1)))
		return 2;
	lua_pushnil(L);
	return 1;
}

/* __pairs of a proxy (the table behind it at upvalue 1). [-1, +3, m] */
static int proxy_pairs(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushcclosure(L, proxy_next, 1);
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return 3;
}

/* Protects the metatable at idx: getmetatable() returns false, setmetatable()
 * refuses to replace it, and rawset() refuses the tables that carry it. [-0, +0, m] */
static void lock_mt(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_pushboolean(L, 0);
	lua_setfield(L, idx, "__metatable");
	lua_pushboolean(L, 1);
	lua_rawsetp(L, idx, &lock_key);
}

void sl_sandbox_lock(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_createtable(L, 0, 2);
	lock_mt(L, -1);
	lua_setmetatable(L, idx);
}

/* Replaces the table on top by a read-only proxy of it. [-1, +1, m] */
static void make_proxy(lua_State *L, const char *name)
{
	lua_newtable(L);
	lua_createtable(L, 0, 5);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, name);
	lua_pushcclosure(L, readonly_write, 1);
	lua_setfield(L, -2, "__newindex");
	lua_pushvalue(L, -3);
	lua_pushcclosure(L, proxy_pairs, 1);
	lua_setfield(L, -2, "__pairs");
	lock_mt(L, -1);
	lua_setmetatable(L, -2);
	lua_replace(L, -2);
}

/* Whether the table at idx is locked (a proxy or a script environment). */
static int is_locked(lua_State *L, int idx)
{
	int locked = 0;

	if (lua_getmetatable(L, idx)) {
		locked = lua_rawgetp(L, -1, &lock_key) != LUA_TNIL;
		lua_pop(L, 2);
	}
	return locked;
}

/* ---- the environment ------------------------------------------------------------------ */

/* __newindex of a script environment. [-3, +0, v] */
static int global_write(lua_State *L)
{
	return luaL_error(L, "assignment to undeclared global '%s'", luaL_tolstring(L, 2, NULL));
}

static const char *const absent_globals[] = {
	"io",        "os",         "debug",  "package", "dofile",  "loadfile", "print",
	"coroutine", "loadstring", "module", "setfenv", "getfenv", "_G",       NULL};

/* __index of the globals table: the names scripts might reach for and may not use
 * raise a clear error; any other missing name reads as nil. [-2, +(0|1), v] */
static int missing_global(lua_State *L)
{
	const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
	int i;

	for (i = 0; k && absent_globals[i]; i++)
		if (!strcmp(k, absent_globals[i]))
			return luaL_error(L,
			                  "'%s' is not available to processors (sluice sandbox)%s",
			                  k, !strcmp(k, "print") ? "; use ctx.log" : "");
	return 0;
}

void sl_sandbox_pushenv(lua_State *L)
{
	lua_newtable(L);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &envmt_key);
	lua_setmetatable(L, -2);
}

int sl_sandbox_loadfile(lua_State *L, const char *file)
{
	int rc = luaL_loadfilex(L, file, "t");

	if (rc == LUA_OK) {
		sl_sandbox_pushenv(L);
		lua_setupvalue(L, -2, 1);
	}
	return rc;
}

/* ---- wrapped base functions ------------------------------------------------------------ */

/* Continuation of pcall and xpcall (also after a yield inside them). */
static int after_pcall(lua_State *L, int status, lua_KContext extra)
{
	if (status != LUA_OK && status != LUA_YIELD) {
		sl_sandbox_rethrow(L, status);
		lua_pushboolean(L, 0);
		lua_pushvalue(L, -2);
		return 2; /* false, message */
	}
	return lua_gettop(L) - (int)extra;
}

/* pcall(f, ...) [-n, +m, v] */
static int sb_pcall(lua_State *L)
{
	int status;

	luaL_checkany(L, 1);
	lua_pushboolean(L, 1); /* first result if no errors */
	lua_insert(L, 1);
	status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, after_pcall);
	return after_pcall(L, status, 0);
}

/* The message handler xpcall installs: the user's handler (upvalue 1), except for
 * a budget error, which goes on untouched. Lua calls a handler for an error raised
 * by a hook with hooks disabled; the user's code must never run then. [-1, +1, e] */
static int xpcall_handler(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);

	if (sb && sb->tripped) {
		lua_settop(L, 1);
		return 1;
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* xpcall(f, handler, ...) [-n, +m, v] */
static int sb_xpcall(lua_State *L)
{
	int status, n = lua_gettop(L);

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, xpcall_handler, 1);
	lua_replace(L, 2);
	lua_pushboolean(L, 1); /* first result */
	lua_pushvalue(L, 1);   /* function */
	lua_rotate(L, 3, 2);   /* move them below the function's arguments */
	status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, after_pcall);
	return after_pcall(L, status, 2);
}

/* setmetatable(t, mt): no __gc, and protected metatables stay. [-2, +1, v] */
static int sb_setmetatable(lua_State *L)
{
	int t = lua_type(L, 2);

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(
				L, "setmetatable: __gc metamethods are not allowed in"
				   " processors (a finalizer would run outside the budgets)");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

/* rawset(t, k, v): not on read-only tables. [-3, +1, v] */
static int sb_rawset(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkany(L, 2);
	luaL_checkany(L, 3);
	if (is_locked(L, 1))
		return luaL_error(L, "rawset: the table is read-only");
	lua_settop(L, 3);
	lua_rawset(L, 1);
	return 1;
}

/* collectgarbage("count") only: anything else would let a script run full
 * collections (long C calls) or stop the collector. [-(0|1), +1, v] */
static int sb_collectgarbage(lua_State *L)
{
	const char *opt = luaL_optstring(L, 1, "collect");

	if (strcmp(opt, "count"))
		return luaL_error(L,
		                  "collectgarbage('%s') is not available to processors"
		                  " (only 'count')",
		                  opt);
	sl_sandbox_no_reduce(L, "collectgarbage('count')");
	lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
	                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
	return 1;
}

#define LOAD_RESERVED 5 /* stack slot keeping a reader function's last piece */

struct piece {
	const char *s; /* a text chunk: what is left of it */
	size_t left;
	int reader;      /* or the stack index of a reader function */
	int first;       /* nothing handed to the parser yet */
	int binary_mode; /* the caller's mode allows binary chunks */
};

/* The next piece of a reader function, as lbaselib's generic_reader; it stays in
 * the reserved slot while the parser reads it. [-0, +0, e] */
static const char *reader_piece(lua_State *L, struct piece *pc, size_t *n)
{
	luaL_checkstack(L, 2, "too many nested functions");
	lua_pushvalue(L, pc->reader);
	lua_call(L, 0, 1);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		*n = 0;
		return NULL;
	}
	if (!lua_isstring(L, -1))
		luaL_error(L, "reader function must return a string");
	lua_replace(L, LOAD_RESERVED);
	return lua_tolstring(L, LOAD_RESERVED, n);
}

/* Hands the parser a chunk's text in pieces, checking the budget between them. A
 * binary chunk is refused here when the caller's mode would let Lua load it; in
 * mode "t" Lua refuses it itself, with its own message. [-0, +0, e] */
static const char *load_reader(lua_State *L, void *ud, size_t *size)
{
	struct piece *pc = ud;
	size_t n;
	const char *s;

	if (pc->reader) {
		s = reader_piece(L, pc, &n);
	} else {
		n = pc->left < CHUNK_PIECE ? pc->left : CHUNK_PIECE;
		s = pc->s;
		pc->s += n;
		pc->left -= n;
	}
	sl_sandbox_tick(L, (unsigned)(n / 16) + 1);
	if (pc->first && n > 0) {
		pc->first = 0;
		if (s[0] == LUA_SIGNATURE[0] && pc->binary_mode) {
			lua_pushliteral(L, "attempt to load a binary chunk (processors may"
			                   " load text chunks only)");
			lua_error(L);
		}
	}
	*size = n;
	return n ? s : NULL;
}

/* load(chunk [, chunkname [, mode [, env]]]), as Lua's, with text chunks only: the
 * chunk is a string or a reader function; errors are returned as nil, message. The
 * mode defaults to "t" (Lua's own refusal of a binary chunk then says why).
 * The chunk gets `env` or a fresh sandbox environment. [-(1..4), +(1|2), v] */
static int sb_load(lua_State *L)
{
	struct piece pc = {NULL, 0, 0, 1, 0};
	const char *chunkname, *mode = luaL_optstring(L, 3, "t");
	int status, env = !lua_isnone(L, 4) ? 4 : 0;

	pc.binary_mode = strchr(mode, 'b') != NULL;
	if ((pc.s = lua_tolstring(L, 1, &pc.left)) != NULL) {
		chunkname = luaL_optstring(L, 2, pc.s);
	} else {
		chunkname = luaL_optstring(L, 2, "=(load)");
		luaL_checktype(L, 1, LUA_TFUNCTION);
		lua_settop(L, LOAD_RESERVED);
		pc.reader = 1;
	}
	status = lua_load(L, load_reader, &pc, chunkname, mode);
	if (status != LUA_OK) {
		sl_sandbox_rethrow(L, status);
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2; /* nil, message */
	}
	if (env)
		lua_pushvalue(L, env);
	else
		sl_sandbox_pushenv(L);
	if (!lua_setupvalue(L, -2, 1))
		lua_pop(L, 1);
	return 1;
}

/* ---- require ------------------------------------------------------------------------------ */

/* cjson.encode(v): the value's JSON size is checked first (see the top of the file).
 * The real encode is upvalue 1. [-1, +1, e] */
static int cjson_encode(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);
	size_t cap = sb && sb->limit ? sb->limit : (size_t)1 << 30;

	if (lua_gettop(L) >= 1)
		sl_sandbox_check_size(L, 1, cap, CJSON_DEPTH, "cjson.encode: the value");
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* Pushes the scripts' cjson: a read-only proxy with encode, decode and null only.
 * [-0, +1, e] */
static void push_cjson(lua_State *L)
{
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cjson_key) == LUA_TTABLE)
		return;
	lua_pop(L, 1);
	lua_getglobal(L, "require"); /* package's own require, in the state's globals */
	lua_pushliteral(L, "cjson");
	lua_call(L, 1, 1);
	if (!lua_istable(L, -1))
		luaL_error(L, "module 'cjson' did not load");
	lua_createtable(L, 0, 3);
	lua_getfield(L, -2, "encode");
	lua_pushcclosure(L, cjson_encode, 1);
	lua_setfield(L, -2, "encode");
	lua_getfield(L, -2, "decode");
	lua_setfield(L, -2, "decode");
	lua_getfield(L, -2, "null");
	lua_setfield(L, -2, "null");
	make_proxy(L, "cjson");
	lua_remove(L, -2);
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &cjson_key);
}

/* Whether `mod` (after "sluice.") is dot-separated segments of [A-Za-z0-9_]. */
static int module_name_ok(const char *mod)
{
	int seg = 0;

	for (; *mod; mod++) {
		if (*mod == '.') {
			if (!seg)
				return 0;
			seg = 0;
		} else if ((*mod >= 'a' && *mod <= 'z') || (*mod >= 'A' && *mod <= 'Z') ||
		           (*mod >= '0' && *mod <= '9') || *mod == '_') {
			seg++;
		} else {
			return 0;
		}
	}
	return seg > 0;
}

/* require "sluice.x": the engine's Lua module lua/sluice/x.lua, loaded as text into
 * a sandbox environment once per state. [-1, +2, e] */
static int require_sluice(lua_State *L, const char *name)
{
	const char *dir = sl_home_lua(); /* the engine's own Lua modules */
	char path[1024];
	size_t i, n;

	if (!module_name_ok(name + 7))
		return luaL_error(L, "module '%s': not a valid module name", name);
	if (!strcmp(name, "sluice.core") || !strcmp(name, "sluice.testing"))
		return luaL_error(L,
		                  "module '%s' is not available to processors (it reaches"
		                  " outside the sandbox)",
		                  name);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &loaded_key);
	if (lua_getfield(L, -1, name) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	n = (size_t)snprintf(path, sizeof(path), "%s/%s.lua", dir, name);
	if (n >= sizeof(path))
		return luaL_error(L, "module '%s': name too long", name);
	for (i = strlen(dir) + 1; i < n - 4; i++)
		if (path[i] == '.')
			path[i] = '/';
	if (sl_sandbox_loadfile(L, path) != LUA_OK)
		return luaL_error(L, "module '%s' not found or not loadable: %s", name,
		                  lua_tostring(L, -1));
	lua_pushstring(L, name);
	lua_call(L, 1, 1);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, name);
	return 1;
}

/* require(name): cjson and sluice.* only. [-1, +1, e] */
static int sb_require(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);

	if (!strcmp(name, "cjson")) {
		push_cjson(L);
		return 1;
	}
	if (!strncmp(name, "sluice.", 7))
		return require_sluice(L, name);
	return luaL_error(L,
	                  "module '%s' is not available to processors (only cjson and"
	                  " sluice.*)",
	                  name);
}

/* ---- the sluice helpers ------------------------------------------------------------------- */

/* sluice.array([t]) [-0|1, +1, m] */
static int helper_array(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL && !sl_lj_isarray(L, 1))
		return luaL_error(L, "sluice.array: the table has a protected metatable");
	lua_settop(L, 1);
	sl_lj_pusharraymt(L);
	lua_setmetatable(L, 1);
	return 1;
}

/* sluice.isarray(v) [-1, +1, -] */
static int helper_isarray(lua_State *L)
{
	lua_pushboolean(L, sl_lj_isarray(L, 1));
	return 1;
}

/* ---- budgeted library functions ------------------------------------------------------------- */

#define TAB_R 1
#define TAB_W 2
#define TAB_L 4
#define TAB_STEP 1024 /* loop iterations between budget checks */

/* Pushes field key of the metatable n - 1 slots below the top (counting the key);
 * whether it is set. */
static int meta_field(lua_State *L, const char *key, int n)
{
	lua_pushstring(L, key);
	return lua_rawget(L, -n) != LUA_TNIL;
}

/* As ltablib's checktab: a table, or a value with the needed metamethods. */
static void check_tab(lua_State *L, int arg, int what)
{
	int n = 1; /* values to pop: the metatable and the fields tested */

	if (lua_type(L, arg) == LUA_TTABLE)
		return;
	if (lua_getmetatable(L, arg) && (!(what & TAB_R) || meta_field(L, "__index", ++n)) &&
	    (!(what & TAB_W) || meta_field(L, "__newindex", ++n)) &&
	    (!(what & TAB_L) || meta_field(L, "__len", ++n)))
		lua_pop(L, n);
	else
		luaL_checktype(L, arg, LUA_TTABLE); /* raises */
}

static lua_Integer tab_len(lua_State *L, int what)
{
	check_tab(L, 1, what | TAB_L);
	return luaL_len(L, 1);
}

/* table.insert(t, [pos,] v) [-(2|3), +0, e] */
static int sb_tinsert(lua_State *L)
{
	lua_Integer e = tab_len(L, TAB_R | TAB_W), pos, i;

	e = (lua_Integer)((lua_Unsigned)e + 1u); /* first empty element */
	switch (lua_gettop(L)) {
	case 2:
		pos = e;
		break;
	case 3:
		pos = luaL_checkinteger(L, 2);
		luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2,
		              "position out of bounds");
		for (i = e; i > pos; i--) { /* move up elements */
			if ((i & (TAB_STEP - 1)) == 0)
				sl_sandbox_tick(L, TAB_STEP);
			lua_geti(L, 1, i - 1);
			lua_seti(L, 1, i);
		}
		break;
	default:
		return luaL_error(L, "wrong number of arguments to 'insert'");
	}
	lua_seti(L, 1, pos);
	return 0;
}

/* table.remove(t [, pos]) [-(1|2), +1, e] */
static int sb_tremove(lua_State *L)
{
	lua_Integer size = tab_len(L, TAB_R | TAB_W);
	lua_Integer pos = luaL_optinteger(L, 2, size);

	if (pos != size) /* Lua 5.4.4 names argument 1 here */
		luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 1,
		              "position out of bounds");
	lua_geti(L, 1, pos);
	for (; pos < size; pos++) {
		if ((pos & (TAB_STEP - 1)) == 0)
			sl_sandbox_tick(L, TAB_STEP);
		lua_geti(L, 1, pos + 1);
		lua_seti(L, 1, pos);
	}
	lua_pushnil(L);
	lua_seti(L, 1, pos);
	return 1;
}

/* table.move(a1, f, e, t [, a2]) [-(4|5), +1, e] */
static int sb_tmove(lua_State *L)
{
	lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
	lua_Integer t = luaL_checkinteger(L, 4), n, i;
	int tt = !lua_isnoneornil(L, 5) ? 5 : 1; /* destination table */

	check_tab(L, 1, TAB_R);
	check_tab(L, tt, TAB_W);
	if (e >= f) {
		luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
		n = e - f + 1;
		luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
		if (t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ))) {
			for (i = 0; i < n; i++) {
				if ((i & (TAB_STEP - 1)) == TAB_STEP - 1)
					sl_sandbox_tick(L, TAB_STEP);
				lua_geti(L, 1, f + i);
				lua_seti(L, tt, t + i);
			}
		} else {
			for (i = n - 1; i >= 0; i--) {
				if ((i & (TAB_STEP - 1)) == 0)
					sl_sandbox_tick(L, TAB_STEP);
				lua_geti(L, 1, f + i);
				lua_seti(L, tt, t + i);
			}
		}
	}
	lua_pushvalue(L, tt);
	return 1;
}

static void concat_field(lua_State *L, luaL_Buffer *b, lua_Integer i)
{
	lua_geti(L, 1, i);
	if (!lua_isstring(L, -1))
		luaL_error(L, "invalid value (%s) at index %I in table for 'concat'",
		           luaL_typename(L, -1), (LUAI_UACINT)i);
	luaL_addvalue(b);
}

/* table.concat(t [, sep [, i [, j]]]) [-(1..4), +1, e] */
static int sb_tconcat(lua_State *L)
{
	luaL_Buffer b;
	lua_Integer last = tab_len(L, TAB_R), i;
	size_t lsep;
	const char *sep = luaL_optlstring(L, 2, "", &lsep);

	i = luaL_optinteger(L, 3, 1);
	last = luaL_optinteger(L, 4, last);
	luaL_buffinit(L, &b);
	for (; i < last; i++) {
		if ((i & (TAB_STEP - 1)) == 0)
			sl_sandbox_tick(L, TAB_STEP);
		concat_field(L, &b, i);
		luaL_addlstring(&b, sep, lsep);
	}
	if (i == last)
		concat_field(L, &b, i);
	luaL_pushresult(&b);
	return 1;
}

/* ---- sizes ------------------------------------------------------------------------------ */

struct size_walk {
	lua_State *L;
	size_t size, cap;
	unsigned nodes;
	int maxdepth;
	const char *what;
};

static void too_large(struct size_walk *w)
{
	luaL_error(w->L, "%s is too large (more than %I bytes as JSON)", w->what,
	           (LUAI_UACINT)w->cap);
}

/* Adds the JSON size of the value at idx (absolute). Past maxdepth it stops
 * descending: the encoder reports the nesting in its own words. */
static void size_value(struct size_walk *w, int idx, int depth)
{
	lua_State *L = w->L;

	if (++w->nodes % 1024 == 0)
		sl_sandbox_tick(L, 1024);
	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		w->size += lua_rawlen(L, idx) + 2;
		break;
	case LUA_TNUMBER:
		w->size += 8;
		break;
	case LUA_TTABLE:
		w->size += 2;
		if (depth >= w->maxdepth)
			break;
		luaL_checkstack(L, 3, "value nested too deeply");
		lua_pushnil(L);
		while (lua_next(L, idx)) {
			w->size += 1 + (lua_type(L, -2) == LUA_TSTRING ? lua_rawlen(L, -2) + 3 : 0);
			size_value(w, lua_gettop(L), depth + 1);
			lua_pop(L, 1);
			if (w->size > w->cap)
				too_large(w);
		}
		break;
	default:
		w->size += 4;
	}
	if (w->size > w->cap)
		too_large(w);
}

void sl_sandbox_check_size(lua_State *L, int idx, size_t cap, int depth, const char *what)
{
	struct size_walk w = {L, 0, cap, 0, depth, what};

	size_value(&w, lua_absindex(L, idx), 0);
}

/* ---- creating the state ------------------------------------------------------------------ */

static const char *const plain_globals[] = {
	"assert", "error",        "ipairs",   "next",     "pairs", "rawequal", "rawget", "rawlen",
	"select", "getmetatable", "tonumber", "tostring", "type",  "_VERSION", NULL};

static const luaL_Reg wrapped_globals[] = {
	{"pcall", sb_pcall},     {"xpcall", sb_xpcall}, {"setmetatable", sb_setmetatable},
	{"rawset", sb_rawset},   {"load", sb_load},     {"collectgarbage", sb_collectgarbage},
	{"require", sb_require}, {NULL, NULL},
};

static const char *const script_libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                          LUA_UTF8LIBNAME, NULL};

/* The libraries as scripts may use them (changed in place: the state is the
 * processor's alone and the engine's C code does not call them). [-0, +0, e] */
static void adapt_libs(lua_State *L)
{
	static const luaL_Reg strfns[] = {{"find", sl_strmatch_find},
	                                  {"match", sl_strmatch_match},
	                                  {"gmatch", sl_strmatch_gmatch},
	                                  {"gsub", sl_strmatch_gsub},
	                                  {NULL, NULL}};
	static const luaL_Reg tabfns[] = {{"insert", sb_tinsert},
	                                  {"remove", sb_tremove},
	                                  {"move", sb_tmove},
	                                  {"concat", sb_tconcat},
	                                  {NULL, NULL}};

	sl_sandbox_budget_libs(L);
	lua_getglobal(L, LUA_STRLIBNAME);
	luaL_setfuncs(L, strfns, 0);
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	lua_pushliteral(L, ""); /* the string metatable: locked */
	lua_getmetatable(L, -1);
	lock_mt(L, -1);
	lua_pop(L, 2);
	sl_lj_pusharraymt(L); /* the engine's array tag: no __gc may be added to it */
	lock_mt(L, -1);
	lua_pop(L, 1);
	lua_getglobal(L, LUA_TABLIBNAME);
	luaL_setfuncs(L, tabfns, 0);
	lua_pop(L, 1);
}

/* The table script environments read their globals from. [-0, +1, m] */
static void push_base(lua_State *L)
{
	int i;

	lua_newtable(L);
	for (i = 0; plain_globals[i]; i++) {
		lua_getglobal(L, plain_globals[i]);
		lua_setfield(L, -2, plain_globals[i]);
	}
	luaL_setfuncs(L, wrapped_globals, 0);
	for (i = 0; script_libs[i]; i++) {
		lua_getglobal(L, script_libs[i]);
		make_proxy(L, script_libs[i]);
		lua_setfield(L, -2, script_libs[i]);
	}
	lua_createtable(L, 0, 3);
	sl_lj_pushnull(L);
	lua_setfield(L, -2, "null");
	lua_pushcfunction(L, helper_array);
	lua_setfield(L, -2, "array");
	lua_pushcfunction(L, helper_isarray);
	lua_setfield(L, -2, "isarray");
	make_proxy(L, "sluice");
	lua_setfield(L, -2, "sluice");
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, missing_global);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, -2);
}

/* Protected: opens the libraries and builds the environment (sandbox at 1). */
static int setup(lua_State *L)
{
	static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},
	                                {LUA_LOADLIBNAME, luaopen_package},
	                                {LUA_STRLIBNAME, luaopen_string},
	                                {LUA_TABLIBNAME, luaopen_table},
	                                {LUA_MATHLIBNAME, luaopen_math},
	                                {LUA_UTF8LIBNAME, luaopen_utf8},
	                                {NULL, NULL}};
	struct sl_sandbox *sb = lua_touserdata(L, 1);
	const luaL_Reg *lib;
	int b;

	for (lib = libs; lib->func; lib++) {
		luaL_requiref(L, lib->name, lib->func, 1);
		lua_pop(L, 1);
	}
	for (b = SL_BUDGET_INSTRUCTIONS; b <= SL_BUDGET_WALLCLOCK; b++) {
		lua_pushstring(L, sb->msg[b]);
		lua_rawsetp(L, LUA_REGISTRYINDEX, &msg_keys[b]);
	}
	adapt_libs(L);
	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
	push_base(L);
	lua_createtable(L, 0, 4); /* the metatable of every script environment */
	lua_insert(L, -2);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, global_write);
	lua_setfield(L, -2, "__newindex");
	lock_mt(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &envmt_key);
	return 0;
}

static int panic(lua_State *L)
{
	struct sl_sandbox *sb = sandbox_of(L);
	const char *msg = lua_tostring(L, -1);

	sl_log(SL_LOG_ERROR, sb ? sb->name : NULL, NULL, 0,
	       "PANIC: unprotected error in processor '%s': %s", sb ? sb->name : "?",
	       msg ? msg : "(not a string)");
	return 0; /* Lua aborts */
}

static int hook_period(const struct sl_limits *lim)
{
	if (lim->instructions > 0 && lim->instructions < HOOK_PERIOD)
		return lim->instructions < 1 ? 1 : (int)lim->instructions;
	return lim->instructions > 0 || lim->wallclock_ms > 0 ? HOOK_PERIOD : 0;
}

int sl_sandbox_new(lua_State **out, const char *name, const struct sl_limits *lim,
                   struct sl_diag *d)
{
	struct sl_sandbox *sb = calloc(1, sizeof(*sb));
	lua_State *L;
	int b;

	*out = NULL;
	if (!sb || !(sb->name = strdup(name))) {
		free(sb);
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	sb->lim = *lim;
	sb->limit = lim->memory > 0 ? (size_t)lim->memory : 0;
	sb->period = hook_period(lim);
	sb->late = sb->period && (lim->instructions <= 0 || lim->instructions >= LATE_MIN);
	for (b = SL_BUDGET_INSTRUCTIONS; b <= SL_BUDGET_WALLCLOCK; b++)
		snprintf(sb->msg[b], sizeof(sb->msg[b]),
		         "processor '%.100s' exceeded its %s budget", name, budget_names[b]);
	if (!(L = lua_newstate(sb_alloc, sb))) {
		b = sb->refusal == REFUSED_LIMIT;
		pool_release(&sb->pool);
		free(sb->name);
		free(sb);
		return b ? sl_diag_set(d, SL_ENOMEM,
		                       "processor '%s' exceeded its memory budget (too"
		                       " small to start a Lua state)",
		                       name)
		         : sl_diag_set(d, SL_ENOMEM, "out of memory");
	}
	sb->L = L;
	lua_atpanic(L, panic);
	if (sb->period && !sb->late) /* installed for good; does nothing between calls */
		lua_sethook(L, count_hook, LUA_MASKCOUNT, sb->period);
	lua_pushcfunction(L, setup);
	lua_pushlightuserdata(L, sb);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		if (sb->refusal == REFUSED_LIMIT)
			sl_diag_set(d, SL_ENOMEM,
			            "processor '%s' exceeded its memory budget (too small"
			            " for the Lua libraries)",
			            name);
		else
			sl_diag_set(d, SL_ENOMEM, "processor '%s': cannot set up its Lua state: %s",
			            name, lua_tostring(L, -1));
		sl_sandbox_close(L);
		return d ? d->code : SL_ENOMEM;
	}
	*out = L;
	return 0;
}

void sl_sandbox_close(lua_State *L)
{
	struct sl_sandbox *sb;

	if (!L)
		return;
	sb = sandbox_of(L);
	lua_close(L);
	if (sb) {
		pool_release(&sb->pool);
		free(sb->name);
		free(sb);
	}
}
