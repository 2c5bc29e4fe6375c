/* sl_render.c - rows as JSON text, for the CLI and the HTTP interface (sl_render.h). */
#include "sl_render.h"

#include <string.h>

#include "sl_buf.h"
#include "sl_host.h"
#include "sl_store.h"

/* A JSON string, or null for NULL. */
static void add_str_or_null(struct sl_buf *b, const char *s)
{
	if (s)
		sl_buf_addjstr(b, s, strlen(s));
	else
		sl_buf_adds(b, "null");
}

void sl_render_append_result(struct sl_buf *b, const char *stream, const struct sl_append_result *r)
{
	sl_buf_adds(b, "{\"stream\":");
	sl_buf_addjstr(b, stream, strlen(stream));
	sl_buf_adds(b, ",\"offset\":");
	sl_buf_addi(b, r->offset);
	sl_buf_adds(b, ",\"position\":");
	sl_buf_addi(b, r->position);
	if (r->duplicate) /* an idempotency key matched: the stored event, not a new one */
		sl_buf_adds(b, ",\"duplicate\":true");
	sl_buf_addc(b, '}');
}

void sl_render_stream(struct sl_buf *b, const struct sl_stream_info *info)
{
	sl_buf_adds(b, "{\"stream\":");
	sl_buf_addjstr(b, info->stream, strlen(info->stream));
	sl_buf_adds(b, ",\"head\":");
	sl_buf_addi(b, info->head);
	sl_buf_adds(b, info->paused ? ",\"paused\":true" : ",\"paused\":false");
	sl_buf_adds(b, ",\"metadata\":");
	sl_buf_adds(b, info->metadata);
	sl_buf_addc(b, '}');
}

void sl_render_row_start(struct sl_buf *b, const char *proc, const char *stream)
{
	sl_buf_adds(b, "{\"processor\":");
	sl_buf_addjstr(b, proc, strlen(proc));
	sl_buf_adds(b, ",\"stream\":");
	add_str_or_null(b, stream);
}

void sl_render_state(struct sl_buf *b, const struct sl_state_row *r)
{
	sl_render_row_start(b, r->processor, r->stream);
	sl_buf_addf(b, ",\"offset\":%lld,\"status\":\"%s\",\"state\":", (long long)r->offset,
	            r->status);
	sl_buf_add(b, r->state_json, r->state_len);
	sl_buf_addc(b, '}');
}

void sl_render_status(struct sl_buf *b, const struct sl_status_row *r)
{
	sl_render_row_start(b, r->processor, r->stream);
	sl_buf_addf(b,
	            ",\"offset\":%lld,\"head\":%lld,\"lag\":%lld,\"status\":\"%s\",\"lastError\":",
	            (long long)r->offset, (long long)r->head, (long long)r->lag, r->status);
	add_str_or_null(b, r->last_error);
	sl_buf_addf(b, ",\"backgroundFailures\":%lld", (long long)r->background_failures);
	if (r->partition >= 0)
		sl_buf_addf(b, ",\"partition\":%d", r->partition);
	sl_buf_adds(b, ",\"runner\":");
	add_str_or_null(b, r->runner);
	sl_buf_addf(b, ",\"rate\":%.10g,\"reloadError\":", r->rate);
	add_str_or_null(b, r->reload_error);
	sl_buf_addc(b, '}');
}
