/* fuzz_contract.c - libFuzzer target: a contract file (schemas/NAME.contract.json)
 * loaded and checked as `sluice check` does: meta-schema, imports (the built-in
 * core), consumes/emits, event schemas compiled, initialState validated. */
#include <stdint.h>

#include "fuzz_util.h"
#include "sl_contract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *dirs[1];
	const struct sl_contract *c = NULL;
	struct sl_contracts *cs;
	struct sl_errs errs;
	struct sl_diag d;
	size_t i;

	fuzz_write("fz.contract.json", data, size);
	dirs[0] = fuzz_dir();
	sl_diag_init(&d);
	if (sl_contracts_new(&cs, dirs, 1, &d))
		abort();
	sl_errs_init(&errs);
	if (sl_contracts_load(cs, "fz", &c, &errs)) {
		FUZZ_ASSERT(errs.n > 0 || errs.nomem, "refused without an error");
	} else {
		FUZZ_ASSERT(c && errs.n == 0, "loaded with %zu errors", errs.n);
		for (i = 0; i < c->nconsumes; i++)
			FUZZ_ASSERT(sl_contract_consumes(c, c->consumes[i]), "consumes");
	}
	for (i = 0; i < errs.n; i++)
		FUZZ_ASSERT(strlen(errs.msg[i]) < SL_DIAG_MAX, "a message too long");
	sl_errs_release(&errs);
	sl_contracts_free(cs);
	return 0;
}
