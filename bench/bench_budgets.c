/* bench_budgets.c - what the sandbox's budgets cost pure Lua inside a hook call
 * (issue 13, item 4): the same computation run as budgeted calls in a state with a
 * processor's default limits (instructions 1e8, memory 64 MiB, wall clock 10 s) and
 * in a state without budgets (no hook, no memory limit), taking turns, best of the
 * rounds each. Rows: calls of about 2 ms (a heavy reduce or processEvent; target on
 * >= 0.8x off) and calls of about 100 ms (reported: past its first 10-20 ms a call
 * runs with the count hook, which Lua 5.4 makes cost every instruction).
 *
 *   build/bench_budgets [ROUNDS]   (default 5)
 */
#define BENCH_NAME "bench_budgets"
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "bench_util.h"
#include "sl_sandbox.h"

/* A pure-Lua computation of n iterations: arithmetic, a table, string keys. */
static const char WORK[] = "local n = ...\n"
			   "local s, t = 0, {}\n"
			   "for i = 1, n do\n"
			   "  s = (s + i * 7) % 1000003\n"
			   "  t[i % 64 + 1] = s\n"
			   "end\n"
			   "return s + #t\n";

static lua_State *state(int budgets)
{
	struct sl_limits on = {1e8, 64.0 * 1024 * 1024, 10000}, off = {0, 0, 0};
	struct sl_diag d;
	lua_State *L;

	sl_diag_init(&d);
	if (sl_sandbox_new(&L, "bench", budgets ? &on : &off, &d)) {
		fprintf(stderr, BENCH_NAME ": %s\n", sl_diag_msg(&d));
		exit(1);
	}
	if (luaL_loadbuffer(L, WORK, sizeof(WORK) - 1, "=work") != LUA_OK) {
		fprintf(stderr, BENCH_NAME ": %s\n", lua_tostring(L, -1));
		exit(1);
	}
	return L;
}

/* Seconds for calls budgeted calls of n iterations each. */
static double run(lua_State *L, int calls, lua_Integer n)
{
	double t0 = now();
	int i;

	for (i = 0; i < calls; i++) {
		struct sl_sbmark m = sl_sandbox_enter(L);
		int st;
		lua_pushvalue(L, 1);
		lua_pushinteger(L, n);
		st = lua_pcall(L, 1, 1, 0);
		sl_sandbox_leave(L, m);
		if (st != LUA_OK) {
			fprintf(stderr, BENCH_NAME ": %s\n", lua_tostring(L, -1));
			exit(1);
		}
		lua_pop(L, 1);
	}
	return now() - t0;
}

struct row {
	const char *name;
	int calls;
	lua_Integer n;
	double on, off;
	double target; /* 0: reported */
};

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 5, r, i, rc = 0;
	struct row rows[] = {
		{"pure Lua, calls of ~2 ms, budgets on vs off", 400, 100000, 1e9, 1e9, 0.8},
		{"pure Lua, calls of ~100 ms, budgets on vs off", 8, 5000000, 1e9, 1e9, 0},
	};
	lua_State *on = state(1), *off = state(0);

	for (r = 0; r < rounds; r++)
		for (i = 0; i < 2; i++) {
			double a, b;
			if (r % 2) {
				a = run(on, rows[i].calls, rows[i].n);
				b = run(off, rows[i].calls, rows[i].n);
			} else {
				b = run(off, rows[i].calls, rows[i].n);
				a = run(on, rows[i].calls, rows[i].n);
			}
			if (a < rows[i].on)
				rows[i].on = a;
			if (b < rows[i].off)
				rows[i].off = b;
		}
	printf("\nsluice budgets benchmark: the same pure-Lua work as budgeted calls, best of %d "
	       "rounds\n\n",
	       rounds);
	printf("| %-48s | %-12s | %-30s | %5s | %-14s | %s |\n", "benchmark", "result",
	       "limit/baseline", "ratio", "target", "mark  ");
	printf("|%s|%s|%s|%s|%s|%s|\n", dashes(50), dashes(14), dashes(32), dashes(7), dashes(16),
	       dashes(8));
	for (i = 0; i < 2; i++) {
		double ratio = rows[i].off / rows[i].on;
		char res[32], base[48], target[24];
		int pass = !rows[i].target || ratio >= rows[i].target;
		snprintf(res, sizeof(res), "%.3f s", rows[i].on);
		snprintf(base, sizeof(base), "%.3f s (budgets off)", rows[i].off);
		if (rows[i].target)
			snprintf(target, sizeof(target), "ratio >= %.2f", rows[i].target);
		else
			snprintf(target, sizeof(target), "none (reported)");
		printf("| %-48s | %-12s | %-30s | %5.3f | %-14s | %s |\n", rows[i].name, res, base,
		       ratio, target,
		       !rows[i].target ? "—"
		       : pass          ? "✓ pass"
		                       : "✗ FAIL");
		if (!pass)
			rc = 1;
	}
	sl_sandbox_close(on);
	sl_sandbox_close(off);
	return rc;
}
