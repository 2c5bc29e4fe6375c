/* fuzz_deploy.c - libFuzzer target: a deployment file (Lua text returning a table)
 * loaded and validated as `sluice check` does (sl_deploy_load). */
#include <stdint.h>

#include "fuzz_util.h"
#include "sl_deploy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_deploy *dp = NULL;
	struct sl_errs errs;
	const char *path = fuzz_write("fz.deploy.lua", data, size);
	size_t i, n;
	int rc;

	sl_errs_init(&errs);
	rc = sl_deploy_load(&dp, path, &errs);
	if (rc) {
		FUZZ_ASSERT(!dp && (errs.n > 0 || errs.nomem), "refused without an error");
	} else {
		FUZZ_ASSERT(dp && errs.n == 0, "loaded with %zu errors", errs.n);
		for (i = 0; i < dp->nprocs; i++) {
			const struct sl_deploy_proc *p = &dp->procs[i];
			FUZZ_ASSERT(p->batch_size >= 1 && p->batch_size <= SL_DEPLOY_MAX_BATCH,
			            "batch");
			FUZZ_ASSERT(p->retry_attempts >= 1 &&
			                    p->retry_attempts <= SL_DEPLOY_MAX_ATTEMPTS,
			            "attempts");
			FUZZ_ASSERT(p->memory >= 0 && p->wallclock_ms >= 0 && p->backoff_ms >= 0 &&
			                    p->wallclock_ms <= 86400000.0 &&
			                    p->backoff_ms <= 86400000.0,
			            "amounts");
			FUZZ_ASSERT(p->instructions >= 1 && p->instructions <= 1e15,
			            "instructions");
			FUZZ_ASSERT(i == 0 || strcmp(dp->procs[i - 1].name, p->name) < 0, "sorted");
		}
		FUZZ_ASSERT(dp->lease_ms >= 100 && dp->lease_ms <= 86400000.0, "lease");
		FUZZ_ASSERT(dp->shutdown_ms >= 0 && dp->shutdown_ms <= 86400000.0, "shutdown");
	}
	for (i = 0, n = errs.n; i < n; i++)
		FUZZ_ASSERT(!strncmp(errs.msg[i], path, strlen(path)),
		            "'%s' does not name the file", errs.msg[i]);
	sl_errs_release(&errs);
	sl_deploy_free(dp);
	return 0;
}
