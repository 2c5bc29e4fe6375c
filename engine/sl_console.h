/* sl_console.h - `sluice console`: the REPL's session inside a running `sluice run`,
 * over a Unix socket (DESIGN §9).
 *
 * The server is a service of the run (sl_host_add_service): it listens on the
 * deployment's `console` path, else the store's path with ".sock" appended, created
 * with mode 0600 (a stale socket left by a runner that died is replaced; one that
 * answers belongs to another runner of the deployment, and this runner then has no
 * console), and removes it when the run ends. Each connection gets a sandboxed
 * lua_State of its own (sl_sandbox.h: the processors' allow-list, budgeted library
 * functions) with the helpers of lua/sluice/repl.lua; each request is evaluated on
 * the loop between batches under a 1 s wall-clock and 256 MiB memory budget, so a
 * console that loops, errors or disconnects holds ingest up for at most that long.
 * reset and resume are carried out by the runner (sl_host_run_reset/resume),
 * reload() reloads the deployment at once, tail hands the following to the client.
 *
 * Protocol: one JSON object per line each way. Requests: {"hello":true},
 * {"eval":CODE, "json":BOOL, "color":BOOL}, {"complete":{"line":..,"start":N,
 * "word":..}}, {"poll":{"what":PATTERN,"from":POSITION,"json":..,"color":..}}. Answers:
 * {"values":[TEXT...], "output":TEXT} or {"error":MESSAGE, "output":TEXT}, with
 * "follow":{"what":..,"from":N} after tail() and "exit":true after exit();
 * {"candidates":[...]}; {"values":[...],"from":N} for a poll; the hello is answered
 * {"deployment":FILE,"pid":N,"budgetMs":N}.
 *
 * Threads: the loop thread only.
 */
#ifndef SL_CONSOLE_H
#define SL_CONSOLE_H

struct sl_console;
struct sl_host;

#define SL_CONSOLE_BUDGET_MS 1000
#define SL_CONSOLE_MEMORY ((double)256 * 1024 * 1024)

/* A console server for host h, registered as its service. Returns 0 or SL_ENOMEM.
 * Free it after sl_host_free. */
int sl_console_new(struct sl_console **out, struct sl_host *h);
void sl_console_free(struct sl_console *c);

/* `sluice console [DEPLOYMENT|SOCKET] [-e CODE]`: attaches to a running runner.
 * Returns the exit status. */
int sl_console_main(const char *target, const char *code);

#endif
