/* sl_render.h - rows as JSON text: the one rendering of the lines `sluice append`,
 * `streams`, `state` and `status` print, shared by the CLI (sl_cli.c) and the HTTP
 * interface (sl_http.c), so both say the same thing in the same bytes.
 *
 * Each function appends one JSON object (no newline) to b; b's own error state
 * (sl_buf_ok) says whether memory ran out. Arguments are borrowed. Events are
 * rendered by sl_event_to_json (sl_store.h).
 */
#ifndef SL_RENDER_H
#define SL_RENDER_H

struct sl_buf;
struct sl_append_result;
struct sl_stream_info;
struct sl_state_row;
struct sl_status_row;

/* {"stream":..,"offset":..,"position":..[,"duplicate":true]} */
void sl_render_append_result(struct sl_buf *b, const char *stream,
                             const struct sl_append_result *r);
/* {"stream":..,"head":..,"paused":..,"metadata":..} */
void sl_render_stream(struct sl_buf *b, const struct sl_stream_info *info);
/* The opening {"processor":P,"stream":S of every processor row (S null when NULL),
 * for rows of the CLI's own (resumed, dead letters) to go on with. */
void sl_render_row_start(struct sl_buf *b, const char *proc, const char *stream);
/* {"processor":..,"stream":..,"offset":..,"status":..,"state":..} */
void sl_render_state(struct sl_buf *b, const struct sl_state_row *r);
/* {"processor":..,"stream":..,"offset":..,"head":..,"lag":..,"status":..,"lastError":..,
 *  "backgroundFailures":..,"runner":..,"rate":..,"reloadError":..} */
void sl_render_status(struct sl_buf *b, const struct sl_status_row *r);

#endif
