/* sl_jsonl.h - one line of `sluice append --jsonl`, parsed and validated.
 *
 * A line is a JSON object with the envelope fields `stream`, `type`, `payload`,
 * `metadata`, `idempotencyKey` and `offset` (README, "CLI"); `createdAt`, `position`
 * and any other field are refused. The parsed event is validated as the store
 * validates an append (sl_store_check_event), so a line that parses is one the store
 * takes as far as its own content goes. This is the CLI's parser, in the library so
 * that a fuzz target (tests/fuzz/fuzz_jsonl.c) runs exactly what the CLI runs.
 */
#ifndef SL_JSONL_H
#define SL_JSONL_H

#include <stddef.h>

#include "sl_error.h"
#include "sl_store.h"

/* A parsed line. stream, type and key are owned; ev points at them and, for
 * payload and metadata, into the line's text (borrowed: keep the text alive). */
struct sl_jsonl_line {
	struct sl_event_in ev;
	char *stream, *type, *key;
	char *text; /* owned copies of payload and metadata after sl_jsonl_own, else NULL */
	int lineno; /* the caller's; sl_jsonl_parse sets it to 0 */
};

/* Parses text[0..len) into ln (zeroed first) and validates it; `stream` (or NULL)
 * is the stream of a line that names none; check/ud validate core payloads (as
 * sl_store_check_event). Returns 0, or a negative code with d filled ("<field>:
 * <message>"). ln must be released either way. */
int sl_jsonl_parse(const char *text, size_t len, const char *stream, struct sl_jsonl_line *ln,
                   sl_payload_check_fn check, void *ud, struct sl_diag *d);

/* Copies ln's payload and metadata out of the text it was parsed from, so that the
 * text may change or go while ln is kept (append --jsonl --stream holds lines across
 * reads of its input). Returns 0, or SL_ENOMEM with ln unchanged. */
int sl_jsonl_own(struct sl_jsonl_line *ln);

/* Frees what ln owns and zeroes it. */
void sl_jsonl_release(struct sl_jsonl_line *ln);

#endif
