/* sl_http.h - the HTTP interface of `sluice run` (DESIGN §10), on the engine's loop.
 *
 * h2o (libh2o, its libuv flavour) parses HTTP/1.1 and runs on the host's uv loop
 * beside the pump; this module routes requests and renders answers:
 *
 *   POST /streams/{stream}                appends one event, or (Content-Type:
 *                                         application/x-ndjson) one per line
 *   GET  /streams?prefix=P                the rows of `sluice streams` (JSON lines)
 *   GET  /streams/{stream}/events?from=&limit=&type=[&follow=1]
 *                                         JSON lines; with follow, server-sent events
 *                                         that go on as events are appended
 *   GET  /processors/{p}/state?stream=S   the line(s) of `sluice state`
 *   GET  /status                          the rows of `sluice status`, a JSON array
 *   GET  /metrics                         Prometheus text exposition format
 *   GET  /healthz                         200 while no instance is faulted, else 503
 *
 * Names in paths. {stream} is everything after "/streams/" (up to a last "/events"
 * for the read), percent-decoded: "/" may be written as %2F or as it is, so
 * /streams/counters%2Fa and /streams/counters/a name the same stream. {p} is one
 * percent-decoded segment. A name that does not decode (a bad escape, %00, invalid
 * UTF-8) or is not a valid stream name is a 400.
 *
 * Appends are validated as `sluice append --deployment` validates them (the
 * envelope, core payloads, and the payloads of types the deployment's contracts
 * define), before anything is written: a bad body or line is a 400 naming the line
 * and the field, and nothing of the request is written. Valid requests wait for the
 * next group commit: every request that arrived while the loop was busy (a commit's
 * fsync included) shares one transaction and one fsync, each request all-or-nothing
 * inside it (sl_commit_append rolls a failing request back alone), and each is
 * answered with the result lines of `sluice append` only after that commit ended.
 *
 * Errors are {"error": "<message>"} with 400 (bad input), 401 (missing or wrong
 * bearer token), 404 (unknown path, processor), 405 (method), 409 (offset conflict,
 * paused stream), 413 (a body over httpMaxBody or an event over 1 MiB), 503 (the
 * store could not commit). Every request must carry `Authorization: Bearer <token>`
 * when the deployment names an httpToken (compared in constant time).
 *
 * Threads: the loop thread only. The server borrows the host, its store, pump and
 * deployment for its lifetime.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include <stddef.h>

#include "sl_error.h"

struct sl_deploy;
struct sl_host;
struct sl_http;
struct sl_pump;
struct sl_store;
struct uv_loop_s;

struct sl_http_opts {
	const char *addr;  /* HOST:PORT (sl_http_addr_parse) */
	const char *field; /* where addr came from, for messages: "http" or "--http" */
};

/* Starts serving on o->addr: checks the address (a non-loopback one needs the
 * deployment's httpToken, whose environment variable must hold a token), binds and
 * listens. On failure nothing is left running and d says why ("--http: cannot listen
 * on 127.0.0.1:8428: address already in use"). */
int sl_http_new(struct sl_http **out, struct sl_host *h, struct uv_loop_s *loop,
                struct sl_store *store, struct sl_pump *pump, const struct sl_deploy *dp,
                const struct sl_http_opts *o, struct sl_diag *d);

/* Validates appends against the contracts of dp's schemas directories from now on
 * (a reload adopted dp); the requests already accepted were validated before. On
 * failure the contracts in use stay, and d says why. */
int sl_http_use_contracts(struct sl_http *srv, const struct sl_deploy *dp, struct sl_diag *d);

/* Stops serving: answers the appends it accepted, ends the event streams (follow=1)
 * and closes its handles; with no connection open it disposes of h2o's context too.
 * Connections still open are closed with the process. NULL is a no-op. */
void sl_http_stop(struct sl_http *srv);

/* Frees a stopped server; call it only once the loop has closed every handle
 * (uv_loop_close succeeded): h2o's connections and timers point into it. NULL is a
 * no-op. */
void sl_http_free(struct sl_http *srv);

#endif
