/* sl_deploy.h - deployment files: a Lua file returning a table (DESIGN §6).
 *
 * The file is loaded as text into an empty environment (no library at all: a
 * deployment is configuration, not a program) and run in a protected call. Its table
 * is validated against schemas/deployment.schema.json; every error is reported with
 * its path in the table ("deploy.lua: /processors/counter/streams: type: expected
 * string, got number"), at every depth, unknown fields with the closest known name,
 * sorted (so the order does not depend on Lua's table order). The file runs in a
 * protected call with a fixed allowance of instructions and memory; every later
 * access to its table is protected too, so a key that is not a string
 * (`processors = { [1] = ... }`) is an error naming the file and field. Paths in it are relative to
 * the file's directory and are resolved here.
 */
#ifndef SL_DEPLOY_H
#define SL_DEPLOY_H

#include <stddef.h>

#include "sl_error.h"
#include "sl_store.h"

/* Ranges of the numeric settings (also in schemas/deployment.schema.json); every
 * setting is checked against its range when the file loads:
 *	batchSize 1..SL_DEPLOY_MAX_BATCH, retry.attempts 1..SL_DEPLOY_MAX_ATTEMPTS,
 *	limits.instructions 1..1e15, limits.memory 0..1024GiB (0: no budget),
 *	limits.wallclock 0..24h (0: no budget), retry.backoff and shutdownTimeout 0..24h,
 *	lease 100ms..24h, partitions 1..SL_PARTITIONS_MAX. */
#define SL_DEPLOY_MAX_BATCH 100000
#define SL_DEPLOY_MAX_ATTEMPTS 1000

struct sl_deploy_proc {
	char *name;
	char *script;  /* resolved */
	char *streams; /* name or pattern */
	int mode_all;
	int effects_all;
	int batch_size;      /* events per batch (1000) */
	double instructions; /* limits (defaults: 1e8, 64 MiB, 10 s) */
	double memory;
	double wallclock_ms;
	int retry_attempts; /* retry (defaults: 4, 100 ms) */
	double backoff_ms;
};

struct sl_deploy {
	char *file;  /* as given */
	char *dir;   /* its directory, for relative paths */
	char *store; /* resolved store path */
	enum sl_durability durability;
	char *ns;          /* namespace of a nats:// store (default SL_STORE_NS_DEFAULT) */
	int replicas;      /* replicas of a nats:// store, 1..5, 0 when not set */
	char *projections; /* a nats:// store's projection database, resolved (default
	                    * <dir>/<ns>.projections.db); NULL on a SQLite store */
	char **schemas;    /* resolved contract directories */
	size_t nschemas;
	struct sl_deploy_proc *procs; /* sorted by name */
	size_t nprocs;
	char *console;        /* resolved, or NULL */
	double shutdown_ms;   /* shutdownTimeout (default 10 s) */
	double lease_ms;      /* lease of each processor's runner (default 2 s, >= 100 ms) */
	int partitions;       /* partitions of a processor on a store that has partitioned
	                       * runners (nats://; default 16; 1: one lease per processor) */
	char *http;           /* the HTTP interface's address "HOST:PORT" (DESIGN §10), or NULL */
	char *http_token;     /* httpToken: the environment variable holding the bearer token */
	double http_max_body; /* httpMaxBody: bytes of one request body (default 16 MiB) */
	double http_timeout_ms; /* httpTimeout: how long a request may take to arrive (10 s) */
	char **http_origins;    /* httpOrigins: the web origins whose pages may call it ("*":
	                         * any), NULL-terminated; NULL: none */
	size_t nhttp_origins;
};

/* Loads and validates `file`. Every error goes to errs; returns SL_EINVAL (or
 * SL_ENOMEM) if there was any, with *out NULL. */
int sl_deploy_load(struct sl_deploy **out, const char *file, struct sl_errs *errs);
void sl_deploy_free(struct sl_deploy *dp);

/* The processor named `name`, or NULL. */
const struct sl_deploy_proc *sl_deploy_proc(const struct sl_deploy *dp, const char *name);

/* Resolves `path` against the deployment's directory; the result is owned. */
char *sl_deploy_path(const struct sl_deploy *dp, const char *path);

/* An HTTP address as the deployment's `http` and `sluice run --http` take it:
 * "HOST:PORT" where HOST is an IPv4 address, an IPv6 address in brackets ("[::1]") or
 * "localhost", and PORT 1..65535. */
struct sl_http_addr {
	char host[64]; /* the address to bind, without brackets ("localhost": 127.0.0.1) */
	int port;
	int ipv6;
	int loopback; /* 127.0.0.0/8 or ::1 */
};

/* Parses s into out; returns 0, or SL_EINVAL with d saying what is wrong (the
 * caller puts the field in front). */
int sl_http_addr_parse(const char *s, struct sl_http_addr *out, struct sl_diag *d);

/* Parses "64MiB" into bytes and "100ms" / "10s" / "2m" into milliseconds; -1 if bad. */
double sl_parse_size(const char *s);
double sl_parse_duration(const char *s);

#endif
