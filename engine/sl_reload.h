/* sl_reload.h - hot reload of a running deployment (DESIGN §8).
 *
 * A running `sluice run` watches its deployment file, every processor's script and
 * every file its contracts come from (sl_contracts_each_path: imports included, and
 * a contract file that does not exist yet on the search path). After a change (or at
 * once on SIGHUP, or sl_reload_now) it loads the whole deployment again into fresh
 * objects, checked exactly as `sluice check` checks it (sl_deploy_load,
 * sl_contracts_new, sl_proc_load), and compares each processor with the version
 * that runs:
 *   - unchanged (same script bytes, contract hash and settings): the running version
 *     stays, and the new copy is dropped;
 *   - changed and valid: when the contract changed at the same version, every stored
 *     state is checked against its state schema first (sl_proc_check_states); then
 *     the new version replaces the running one between batches (sl_pump_set): states
 *     and checkpoints carry over through the store, a raised contract version
 *     rebuilds the processor in place, faults are cleared;
 *   - invalid: the running version stays; each error is logged as
 *     `reload: <file>: <message>` and stored as the processor's reloadError (shown by
 *     `sluice status`) until a version loads that is valid or the same as the
 *     running one;
 *   - added to the deployment: it starts (taking its lease); removed: it stops,
 *     releases its lease and keeps its rows.
 * An error of the deployment file or the contract registry applies to every
 * processor. Settings of the whole run (store, durability, lease, shutdownTimeout)
 * take effect at the next start: a changed store is an error, the others a warning.
 *
 * Ownership: sl_reload_new takes over the processors it is given (the caller must
 * not free them) and every version it loads; dp and cs stay the caller's and must
 * outlive the reloader. A version that left the pump is freed once its background
 * work ended (or at sl_reload_free, which kills what still runs). The loop, store
 * and pump are borrowed. Threads: the loop thread only.
 */
#ifndef SL_RELOAD_H
#define SL_RELOAD_H

#include <stddef.h>

#include "sl_error.h"

struct sl_contracts;
struct sl_deploy;
struct sl_deploy_proc;
struct sl_proc_cfg;
struct sl_pump;
struct sl_pump_proc;
struct sl_reload;
struct sl_store;
struct uv_loop_s;

/* The settings a processor of the deployment is loaded with; strict as `run
 * --strict`. */
void sl_reload_proc_cfg(const struct sl_deploy_proc *dp, int strict, struct sl_proc_cfg *cfg);

/* A reloader of the deployment file `deployment` whose current version is dp, cs and
 * procs[0..n) (the processors the pump runs), for pm on loop. It watches at once and
 * clears the reloadError of the deployment's processors (the run starts with a valid
 * version). */
int sl_reload_new(struct sl_reload **out, struct uv_loop_s *loop, struct sl_store *store,
                  struct sl_pump *pm, const char *deployment, int strict,
                  const struct sl_deploy *dp, const struct sl_contracts *cs,
                  const struct sl_pump_proc *procs, size_t n, struct sl_diag *d);

/* Called each time a reload adopted a new version of the deployment (it loaded, its
 * contracts too), after its processors were started or kept: what else checks events
 * against the deployment's contracts (the HTTP interface) takes dp's from then on. */
typedef void (*sl_reload_adopt_fn)(void *ud, const struct sl_deploy *dp);
void sl_reload_on_adopt(struct sl_reload *r, sl_reload_adopt_fn fn, void *ud);

/* Loads the deployment again now (SIGHUP does this). */
void sl_reload_now(struct sl_reload *r);

/* Stops watching, frees every version (killing background work that still runs).
 * The loop must run once more for the watcher's handles to close. NULL is a no-op. */
void sl_reload_free(struct sl_reload *r);

#endif
