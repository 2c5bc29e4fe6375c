/* sl_contract.h - contracts: what a processor consumes, emits and keeps as state
 * (DESIGN §3).
 *
 * A contract lives in NAME.contract.json on the contract search path (the built-in
 * schemas directory is always on it). Loading checks, and reports every error as
 * "<file>: <field>: <message>":
 *   - the file is valid against schemas/contract.schema.json, and its name matches;
 *   - every entry of `consumes` and `emits` is a key of `events` or of an imported
 *     contract's `events` (a typo gets "did you mean"); "*" may appear in `consumes`
 *     only;
 *   - no type resolves to two different definitions within the contract and its
 *     transitive imports (the same imported definition reached twice is fine);
 *   - every event schema and the state schema compile; `initialState` is an object
 *     valid against `state`.
 *
 * Ownership: a registry (struct sl_contracts) owns every contract it loaded and
 * their compiled schemas; pointers it hands out live as long as the registry.
 * Threads: a registry is used by one thread at a time.
 */
#ifndef SL_CONTRACT_H
#define SL_CONTRACT_H

#include <stddef.h>
#include <stdint.h>

#include "sl_error.h"

struct sl_schema;

/* An event type visible to a contract: its own or an imported one. */
struct sl_evtype {
	char *type;
	struct sl_schema *schema; /* owned by the contract named `origin` */
	const char *origin;
};

struct sl_contract {
	char *name;
	char *file;
	int64_t version;
	uint64_t hash;    /* of the file's bytes and its imports' hashes */
	int consumes_all; /* "*" is in consumes */
	char **consumes;  /* the named consumed types */
	size_t nconsumes;
	char **emits;
	size_t nemits;
	struct sl_evtype *types; /* sorted by type */
	size_t ntypes;
	struct sl_schema *state;
	char *initial_state; /* compact JSON object text */
	size_t initial_len;
};

struct sl_contracts;

/* Creates a registry searching `dirs` (borrowed strings, copied) and then the built-in
 * schemas directory. */
int sl_contracts_new(struct sl_contracts **out, const char *const *dirs, size_t ndirs,
                     struct sl_diag *d);
void sl_contracts_free(struct sl_contracts *cs);

/* Loads contract `name` (once; later calls return the same contract or fail the
 * same way). Adds every error to errs and returns SL_EINVAL, or 0 with *out set. */
int sl_contracts_load(struct sl_contracts *cs, const char *name, const struct sl_contract **out,
                      struct sl_errs *errs);

/* Calls fn with every file a contract loaded so far (or looked for, imports
 * included) could come from: <dir>/<name>.contract.json for each directory of the
 * search path but the built-in one, whether or not it exists (a file that appears
 * earlier on the path takes over). What hot reload watches. A non-zero return of fn
 * stops and is returned. */
typedef int (*sl_contract_path_fn)(void *ud, const char *path);
int sl_contracts_each_path(const struct sl_contracts *cs, sl_contract_path_fn fn, void *ud);

/* The schema of `type` if the contract sees it (own or imported), else NULL. */
const struct sl_evtype *sl_contract_type(const struct sl_contract *c, const char *type);
/* 1 if the contract consumes `type` ("*" consumes everything). */
int sl_contract_consumes(const struct sl_contract *c, const char *type);
/* 1 if `type` is named in consumes (not only through "*"). */
int sl_contract_consumes_named(const struct sl_contract *c, const char *type);
int sl_contract_emits(const struct sl_contract *c, const char *type);

/* The core validator: checks the payloads of the core event types (stream/...)
 * against the built-in core contract (schemas/core.contract.json), for the store's
 * payload check (sl_store_opts.check = sl_core_validate, check_ud = the validator).
 * It owns a contract registry of its own, with its own scratch lua_State, built on
 * the first core type it sees and freed with it. Used by one thread at a time. */
struct sl_core_validator;

int sl_core_validator_new(struct sl_core_validator **out, struct sl_diag *d);
/* Frees the validator and its lua_State; NULL is a no-op. */
void sl_core_validator_free(struct sl_core_validator *v);

/* Makes the validator also check the types the contracts in dirs[0..n) define (every
 * NAME.contract.json there, loaded and checked as `sluice check` loads them; a
 * contract that does not load is an error naming it): `sluice append --deployment`,
 * so that a producer's bad event is refused before it can fault a consumer. A type
 * several contracts define must satisfy each definition. */
int sl_core_validator_use_contracts(struct sl_core_validator *v, const char *const *dirs, size_t n,
                                    struct sl_diag *d);

/* An sl_payload_check_fn (ud: the validator): types neither the core contract nor
 * (with sl_core_validator_use_contracts) a deployment contract defines pass. Returns 0
 * or SL_EINVAL with d: "/: required: missing property 'metadata'", and for a
 * deployment contract "/qty: type: expected integer, got string (as contract
 * 'billing' defines 'order/placed', schemas/billing.contract.json)"; SL_EIO when the
 * core contract cannot be loaded. */
int sl_core_validate(void *ud, const char *type, const char *payload, size_t len,
                     struct sl_diag *d);

#endif
