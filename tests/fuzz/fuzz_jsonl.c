/* fuzz_jsonl.c - libFuzzer target: one line of `sluice append --jsonl`, parsed and
 * validated exactly as the CLI does (sl_jsonl_parse with the core validator). */
#include <stdint.h>

#include "fuzz_util.h"
#include "sl_contract.h"
#include "sl_jsonl.h"
#include "sl_store.h"

static struct sl_core_validator *core;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_jsonl_line ln;
	struct sl_diag d;
	int rc;

	sl_diag_init(&d);
	if (!core && sl_core_validator_new(&core, &d))
		abort();
	/* Half the inputs name no stream of their own, as with `append STREAM --jsonl`. */
	rc = sl_jsonl_parse((const char *)data, size, size % 2 ? "fuzz/stream" : NULL, &ln,
	                    sl_core_validate, core, &d);
	if (!rc) {
		FUZZ_ASSERT(ln.ev.stream && sl_stream_name_valid(ln.ev.stream), "stream");
		FUZZ_ASSERT(ln.ev.type && *ln.ev.type, "type");
		FUZZ_ASSERT(!sl_store_check_event(&ln.ev, sl_core_validate, core, &d), "%s", d.msg);
	} else {
		FUZZ_ASSERT(d.msg[0], "an error without a message (%d)", rc);
	}
	sl_jsonl_release(&ln);
	return 0;
}
