/* sl_work.c - work coroutines and the asynchronous primitives that yield in them.
 *
 * Each work item anchors its coroutine in the registry and is found from the
 * coroutine through the thread's extra space (lua_getextraspace), which Lua copies
 * from the main thread (NULL) into every new thread. A primitive starts its
 * operation, records it in the item, and yields; the operation's last callback
 * pushes the results on the coroutine and resumes it. Handles are closed before
 * their memory is freed (libuv's rule), so every operation counts its open handles.
 */
#include "sl_work.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "sl_buf.h"
#include "sl_deploy.h"
#include "sl_sandbox.h"

struct http_glue; /* curl multi on the loop */

struct sl_workq {
	uv_loop_t *loop;
	lua_State *L;
	struct sl_work *items; /* running, doubly linked */
	size_t running;
	struct http_glue *http;
	struct sl_workq *prev_q, *next_q; /* every queue of the process */
};

/* Every queue, for sl_work_kill_all (loop thread only, like everything here). */
static struct sl_workq *all_queues;

struct exec_op;

struct sl_work {
	struct sl_workq *q;
	lua_State *co;
	int ref;
	enum sl_work_kind kind;
	struct sl_work_src *src;
	sl_work_fn done;
	void *ud;
	uv_timer_t timer; /* ctx.sleep */
	struct exec_op *exec;
	struct sl_work *prev, *next;
};

struct sl_work_src *sl_work_src_new(const char *stream, int64_t offset)
{
	struct sl_work_src *s = calloc(1, sizeof(*s));

	if (s && !(s->stream = strdup(stream))) {
		free(s);
		return NULL;
	}
	if (s) {
		s->offset = offset;
		s->refs = 1;
	}
	return s;
}

void sl_work_src_unref(struct sl_work_src *s)
{
	if (s && --s->refs == 0) {
		free(s->stream);
		free(s);
	}
}

/* [-0, +0, -] */
struct sl_work *sl_work_current(lua_State *L)
{
	return *(struct sl_work **)lua_getextraspace(L);
}

enum sl_work_kind sl_work_kind(const struct sl_work *w)
{
	return w->kind;
}

struct sl_work_src *sl_work_src(const struct sl_work *w)
{
	return w->src;
}

size_t sl_workq_running(const struct sl_workq *q)
{
	return q->running;
}

/* ---- lifecycle of an item ---------------------------------------------------------- */

static void free_work(uv_handle_t *h)
{
	struct sl_work *w = h->data;

	sl_work_src_unref(w->src);
	free(w);
}

/* Protected: the traceback of the dead coroutine (light userdata at 1) with the
 * message at 2. [-2, +1, m] */
static int traceback_body(lua_State *L)
{
	luaL_traceback(L, lua_touserdata(L, 1), lua_touserdata(L, 2), 0);
	return 1;
}

/* The coroutine ended with status st: report, unlink, release. This runs from loop
 * callbacks, outside any protected call: what allocates on the Lua state is
 * protected (the state may be at its memory budget). */
static void finish(struct sl_work *w, int st)
{
	struct sl_workq *q = w->q;
	lua_State *L = q->L;
	const char *err = NULL, *tb = NULL;
	int top = lua_gettop(L);

	if (st != LUA_OK) {
		err = lua_tostring(w->co, -1);
		if (!err)
			err = "(error object is not a string)";
		lua_pushcfunction(L, traceback_body);
		lua_pushlightuserdata(L, w->co);
		lua_pushlightuserdata(L, (void *)err);
		tb = lua_pcall(L, 2, 1, 0) == LUA_OK ? lua_tostring(L, -1) : NULL;
	}
	if (w->prev)
		w->prev->next = w->next;
	else
		q->items = w->next;
	if (w->next)
		w->next->prev = w->prev;
	q->running--;
	w->done(w->ud, w, err, tb);
	lua_settop(L, top);
	*(struct sl_work **)lua_getextraspace(w->co) = NULL;
	luaL_unref(L, LUA_REGISTRYINDEX, w->ref);
	uv_close((uv_handle_t *)&w->timer, free_work);
}

/* Resumes the coroutine with the nargs values on its stack. Each resume is a
 * budgeted call of its own, except the first one of work started by a hook, which
 * runs inside that hook's call and shares its budget. A run that exceeded a budget
 * ends with exactly the budget's message. */
static void resume(struct sl_work *w, int nargs)
{
	struct sl_sbmark m = sl_sandbox_enter(w->co);
	int nres, st = lua_resume(w->co, w->q->L, nargs, &nres);
	enum sl_budget b = sl_sandbox_exceeded(w->co, st);

	sl_sandbox_leave(w->co, m);
	if (st == LUA_YIELD) {
		lua_pop(w->co, nres); /* an operation is pending; it resumes us */
		return;
	}
	if (b) { /* the error object is on top: replace it (no allocation) */
		lua_pop(w->co, 1);
		sl_sandbox_pushmessage(w->co, b);
	}
	finish(w, st);
}

/* [-(nargs+1), +0, e] */
struct sl_work *sl_work_start(lua_State *L, struct sl_workq *q, enum sl_work_kind kind, int nargs,
                              struct sl_work_src *src, sl_work_fn done, void *ud)
{
	struct sl_work *w = calloc(1, sizeof(*w));
	lua_State *co;

	if (!w)
		luaL_error(L, "out of memory");
	co = lua_newthread(L);
	w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	w->q = q;
	w->co = co;
	w->kind = kind;
	w->src = src;
	if (src)
		src->refs++;
	w->done = done;
	w->ud = ud;
	uv_timer_init(q->loop, &w->timer);
	w->timer.data = w;
	*(struct sl_work **)lua_getextraspace(co) = w;
	w->next = q->items;
	if (q->items)
		q->items->prev = w;
	q->items = w;
	q->running++;
	lua_xmove(L, co, nargs + 1);
	resume(w, nargs);
	return w;
}

/* Builds the results of a primitive with fn (light userdata ud at 1) on the main
 * thread, in a protected call, and moves them to the suspended coroutine: loop
 * callbacks run outside any protected call, and the state may be at its memory
 * budget. On failure the coroutine gets nil and the message. Returns how many
 * values it got (at most 2: a yielded C function has room for them). */
static int hand_results(struct sl_work *w, lua_CFunction fn, void *ud)
{
	lua_State *L = w->q->L;
	int top = lua_gettop(L), n;

	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, ud);
	if (lua_pcall(L, 1, LUA_MULTRET, 0) == LUA_OK) {
		n = lua_gettop(L) - top;
	} else {
		lua_pushnil(L);
		lua_insert(L, -2); /* nil, message */
		n = 2;
	}
	lua_xmove(L, w->co, n);
	return n;
}

/* ---- ctx.sleep --------------------------------------------------------------------- */

/* The work item running in L. sl_luaapi checked where the primitive runs (inside
 * yieldable work); this only guards a C caller that did not. [-0, +0, v] */
static struct sl_work *need_work(lua_State *L, const char *what)
{
	struct sl_work *w = sl_work_current(L);

	if (!w || !lua_isyieldable(L))
		luaL_error(L, "%s called outside work", what);
	return w;
}

static void on_sleep(uv_timer_t *t)
{
	resume(t->data, 0);
}

/* Reads a timeout: milliseconds, or a duration string ("10s"). [-0, +0, v] */
static double timeout_ms(lua_State *L, int idx, const char *what)
{
	double ms;

	if (lua_type(L, idx) == LUA_TSTRING) {
		if ((ms = sl_parse_duration(lua_tostring(L, idx))) < 0)
			luaL_error(L, "%s: bad duration '%s' (use e.g. 250ms, 10s, 2m)", what,
			           lua_tostring(L, idx));
		return ms;
	}
	ms = luaL_checknumber(L, idx);
	if (ms < 0)
		luaL_error(L, "%s: negative time", what);
	return ms;
}

/* ctx.sleep(ms) [-1, +0, y] */
int sl_work_sleep(lua_State *L)
{
	struct sl_work *w = need_work(L, "ctx.sleep");
	double ms = timeout_ms(L, 1, "ctx.sleep");

	uv_timer_start(&w->timer, on_sleep, (uint64_t)ms, 0);
	return lua_yield(L, 0);
}

/* ---- ctx.exec ------------------------------------------------------------------------ */

struct exec_op {
	struct sl_work *w;
	uv_process_t proc;
	uv_pipe_t in, out, err;
	uv_timer_t timer;
	uv_write_t wreq;
	char *input;
	size_t input_len;
	struct sl_buf obuf, ebuf;
	int truncated, timed_out, exited, eof_out, eof_err, handles;
	int64_t code;
	int signal;
};

/* Protected: the result table of ctx.exec (light userdata op at 1). [-1, +1, m] */
static int exec_result(lua_State *L)
{
	struct exec_op *op = lua_touserdata(L, 1);

	lua_createtable(L, 0, 6);
	lua_pushinteger(L, op->code);
	lua_setfield(L, -2, "code");
	lua_pushinteger(L, op->signal);
	lua_setfield(L, -2, "signal");
	lua_pushlstring(L, op->obuf.ptr, op->obuf.len);
	lua_setfield(L, -2, "stdout");
	lua_pushlstring(L, op->ebuf.ptr, op->ebuf.len);
	lua_setfield(L, -2, "stderr");
	lua_pushboolean(L, op->truncated);
	lua_setfield(L, -2, "truncated");
	lua_pushboolean(L, op->timed_out);
	lua_setfield(L, -2, "timedOut");
	return 1;
}

static void exec_closed(uv_handle_t *h)
{
	struct exec_op *op = h->data;
	struct sl_work *w;
	int n;

	if (--op->handles > 0)
		return;
	w = op->w;
	w->exec = NULL;
	n = hand_results(w, exec_result, op);
	sl_buf_release(&op->obuf);
	sl_buf_release(&op->ebuf);
	free(op->input);
	free(op);
	resume(w, n);
}

static void close_handle(struct exec_op *op, uv_handle_t *h)
{
	(void)op;
	if (!uv_is_closing(h))
		uv_close(h, exec_closed);
}

/* Once the child exited and both pipes reached their end, close everything. After
 * a timeout the pipes are not waited for: a grandchild may still hold them. */
static void exec_maybe_done(struct exec_op *op)
{
	if (!op->exited || (!op->timed_out && (!op->eof_out || !op->eof_err)))
		return;
	close_handle(op, (uv_handle_t *)&op->proc);
	close_handle(op, (uv_handle_t *)&op->out);
	close_handle(op, (uv_handle_t *)&op->err);
	close_handle(op, (uv_handle_t *)&op->timer);
	if (op->in.data)
		close_handle(op, (uv_handle_t *)&op->in);
}

static void exec_exit(uv_process_t *p, int64_t status, int signum)
{
	struct exec_op *op = p->data;

	op->exited = 1;
	op->code = status;
	op->signal = signum;
	uv_timer_stop(&op->timer);
	exec_maybe_done(op);
}

static void exec_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char scratch[65536];

	(void)h;
	(void)suggested;
	buf->base = scratch; /* copied out at once in exec_read */
	buf->len = sizeof(scratch);
}

static void exec_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct exec_op *op = s->data;
	struct sl_buf *b = s == (uv_stream_t *)&op->out ? &op->obuf : &op->ebuf;
	size_t room;

	if (n < 0) {
		uv_read_stop(s);
		if (s == (uv_stream_t *)&op->out)
			op->eof_out = 1;
		else
			op->eof_err = 1;
		exec_maybe_done(op);
		return;
	}
	room = b->len < SL_EXEC_CAP ? SL_EXEC_CAP - b->len : 0;
	if ((size_t)n > room)
		op->truncated = 1;
	sl_buf_add(b, buf->base, (size_t)n < room ? (size_t)n : room);
}

static void exec_timeout(uv_timer_t *t)
{
	struct exec_op *op = t->data;

	op->timed_out = 1;
	/* The child leads its own process group (UV_PROCESS_DETACHED): kill all of it. */
	if (kill(-op->proc.pid, SIGKILL))
		uv_process_kill(&op->proc, SIGKILL);
}

static void exec_written(uv_write_t *req, int status)
{
	struct exec_op *op = req->data;

	(void)status;
	close_handle(op, (uv_handle_t *)&op->in); /* EOF for the child */
}

static void exec_discard(uv_handle_t *h)
{
	struct exec_op *op = h->data;

	if (--op->handles > 0)
		return;
	sl_buf_release(&op->obuf);
	sl_buf_release(&op->ebuf);
	free(op->input);
	free(op);
}

/* Collects argv (the array part) and env of the table at 1 into C arrays that point
 * into Lua strings held by the table. [-0, +0, v] */
static void exec_args(lua_State *L, const char **argv, int max, const char **env, char *envbuf,
                      size_t envcap)
{
	int n = (int)lua_rawlen(L, 1), i, k = 0;
	size_t used = 0;

	if (n < 1 || n >= max)
		luaL_error(L,
		           "ctx.exec: give the program and its arguments as an array of 1 to %d "
		           "strings",
		           max - 1);
	for (i = 1; i <= n; i++) {
		if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
			luaL_error(L, "ctx.exec: argument %d is not a string", i);
		argv[i - 1] = lua_tostring(L, -1);
		lua_pop(L, 1); /* the table keeps the string alive */
	}
	argv[n] = NULL;
	env[0] = NULL;
	if (lua_getfield(L, 1, "env") != LUA_TTABLE) {
		lua_pop(L, 1);
		return;
	}
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		const char *kk = lua_tostring(L, -2), *v = lua_tostring(L, -1);
		size_t need = (kk ? strlen(kk) : 0) + (v ? strlen(v) : 0) + 2;
		if (!kk || !v || k >= 63 || used + need > envcap)
			luaL_error(L, "ctx.exec: env must map at most 63 names to strings");
		snprintf(envbuf + used, need, "%s=%s", kk, v);
		env[k++] = envbuf + used;
		used += need;
		lua_pop(L, 1);
	}
	env[k] = NULL;
	lua_pop(L, 1);
}

/* Fills the spawn options of op: argv and env, stdin from op->input (if any),
 * stdout and stderr to op's pipes, its own process group. */
static void exec_options(uv_process_options_t *o, uv_stdio_container_t *stdio, struct exec_op *op,
                         const char **argv, const char **env)
{
	memset(o, 0, sizeof(*o));
	o->file = argv[0];
	o->args = (char **)argv;
	o->env = env[0] ? (char **)env : NULL;
	o->exit_cb = exec_exit;
	o->flags = UV_PROCESS_DETACHED; /* its own process group, killed whole at the timeout */
	o->stdio_count = 3;
	o->stdio = stdio;
	stdio[0].flags = op->input ? UV_CREATE_PIPE | UV_READABLE_PIPE : UV_IGNORE;
	stdio[0].data.stream = (uv_stream_t *)&op->in;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&op->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&op->err;
}

/* A new exec op of work w with its handles initialized; a copy of stdin (len bytes at
 * input, or NULL). NULL when out of memory. */
static struct exec_op *exec_op_new(struct sl_work *w, const char *input, size_t len)
{
	struct exec_op *op = calloc(1, sizeof(*op));

	if (!op)
		return NULL;
	op->w = w;
	sl_buf_init(&op->obuf);
	sl_buf_init(&op->ebuf);
	if (input && !(op->input = malloc(len ? len : 1))) {
		free(op);
		return NULL;
	}
	if (input)
		memcpy(op->input, input, len), op->input_len = len;
	uv_pipe_init(w->q->loop, &op->out, 0);
	uv_pipe_init(w->q->loop, &op->err, 0);
	uv_timer_init(w->q->loop, &op->timer);
	op->out.data = op->err.data = op->timer.data = op->proc.data = op;
	op->handles = 4;
	if (input) {
		uv_pipe_init(w->q->loop, &op->in, 0);
		op->in.data = op;
		op->handles++;
	}
	return op;
}

/* The child could not be spawned: closes op's handles (op is freed with the last)
 * and pushes nil and the message. [-0, +2, m] */
static int exec_failed(lua_State *L, struct exec_op *op, const char *file, int rc)
{
	int input = op->input != NULL;

	uv_close((uv_handle_t *)&op->proc, exec_discard);
	uv_close((uv_handle_t *)&op->out, exec_discard);
	uv_close((uv_handle_t *)&op->err, exec_discard);
	uv_close((uv_handle_t *)&op->timer, exec_discard);
	if (input)
		uv_close((uv_handle_t *)&op->in, exec_discard);
	lua_pushnil(L);
	lua_pushfstring(L, "cannot run '%s': %s", file, uv_strerror(rc));
	return 2;
}

/* ctx.exec{argv..., stdin=, timeout=, env=} [-1, +(1|2), y] */
int sl_work_exec(lua_State *L)
{
	struct sl_work *w = need_work(L, "ctx.exec");
	const char *argv[65], *env[64];
	static char envbuf[16384];
	uv_process_options_t o;
	uv_stdio_container_t stdio[3];
	struct exec_op *op;
	double ms = 0;
	size_t len = 0;
	const char *input;
	int rc;

	luaL_checktype(L, 1, LUA_TTABLE);
	exec_args(L, argv, 65, env, envbuf, sizeof(envbuf));
	if (lua_getfield(L, 1, "timeout") != LUA_TNIL)
		ms = timeout_ms(L, -1, "ctx.exec");
	input = lua_getfield(L, 1, "stdin") == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
	if (!(op = exec_op_new(w, input, len)))
		return luaL_error(L, "out of memory");
	exec_options(&o, stdio, op, argv, env);
	if ((rc = uv_spawn(w->q->loop, &op->proc, &o)))
		return exec_failed(L, op, argv[0], rc);
	w->exec = op;
	uv_read_start((uv_stream_t *)&op->out, exec_alloc, exec_read);
	uv_read_start((uv_stream_t *)&op->err, exec_alloc, exec_read);
	if (ms > 0)
		uv_timer_start(&op->timer, exec_timeout, (uint64_t)ms, 0);
	if (op->input) {
		uv_buf_t b = uv_buf_init(op->input, (unsigned)op->input_len);
		op->wreq.data = op;
		uv_write(&op->wreq, (uv_stream_t *)&op->in, &b, 1, exec_written);
	}
	return lua_yield(L, 0);
}

void sl_workq_kill(struct sl_workq *q)
{
	struct sl_work *w;

	for (w = q->items; w; w = w->next)
		if (w->exec && !w->exec->exited && kill(-w->exec->proc.pid, SIGKILL))
			uv_process_kill(&w->exec->proc, SIGKILL);
}

size_t sl_work_kill_all(int reap)
{
	struct sl_workq *q;
	struct sl_work *w;
	size_t n = 0;

	for (q = all_queues; q; q = q->next_q)
		for (w = q->items; w; w = w->next) {
			if (!w->exec || w->exec->exited)
				continue;
			if (kill(-w->exec->proc.pid, SIGKILL))
				uv_process_kill(&w->exec->proc, SIGKILL);
			if (reap) /* the process is about to _exit: no exit callback will run */
				waitpid(w->exec->proc.pid, NULL, 0);
			n++;
		}
	return n;
}

size_t sl_work_children(void)
{
	struct sl_workq *q;
	struct sl_work *w;
	size_t n = 0;

	for (q = all_queues; q; q = q->next_q)
		for (w = q->items; w; w = w->next)
			n += w->exec && !w->exec->exited;
	return n;
}

/* ---- ctx.http ---------------------------------------------------------------------- */

struct http_glue {
	CURLM *multi;
	uv_timer_t timer;
	struct sl_workq *q;
};

struct http_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct http_glue *g;
};

struct http_op {
	struct sl_work *w;
	CURL *easy;
	struct curl_slist *hdrs;
	struct sl_buf body, head;
	char *req_body;
	int truncated;
	char err[CURL_ERROR_SIZE];
};

static void check_done(struct http_glue *g);

static void free_sock(uv_handle_t *h)
{
	free(h->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct http_sock *hs = p->data;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(hs->g->multi, hs->fd, flags, &running);
	check_done(hs->g);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct http_glue *g = userp;
	struct http_sock *hs = socketp;
	int ev = 0;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (hs) {
			uv_poll_stop(&hs->poll);
			uv_close((uv_handle_t *)&hs->poll, free_sock);
			curl_multi_assign(g->multi, s, NULL);
		}
		return 0;
	}
	if (!hs) {
		if (!(hs = calloc(1, sizeof(*hs))))
			return -1;
		hs->fd = s;
		hs->g = g;
		uv_poll_init_socket(g->q->loop, &hs->poll, s);
		hs->poll.data = hs;
		curl_multi_assign(g->multi, s, hs);
	}
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&hs->poll, ev, on_poll);
	return 0;
}

static void on_curl_timeout(uv_timer_t *t)
{
	struct http_glue *g = t->data;
	int running;

	curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(g);
}

static int on_timer_set(CURLM *m, long ms, void *userp)
{
	struct http_glue *g = userp;

	(void)m;
	if (ms < 0)
		uv_timer_stop(&g->timer);
	else
		uv_timer_start(&g->timer, on_curl_timeout, (uint64_t)ms, 0);
	return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct http_op *op = ud;
	size_t len = size * n, room = op->body.len < SL_HTTP_CAP ? SL_HTTP_CAP - op->body.len : 0;

	if (len > room)
		op->truncated = 1;
	sl_buf_add(&op->body, p, len < room ? len : room);
	return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct http_op *op = ud;
	size_t len = size * n;

	if (len >= 5 && !memcmp(p, "HTTP/", 5))
		sl_buf_reset(&op->head); /* a new response (after a redirect or 100) */
	sl_buf_add(&op->head, p, len);
	return len;
}

/* Pushes the response headers as a table of lower-case names. [-0, +1, m] */
static void push_headers(lua_State *co, const struct sl_buf *head)
{
	const char *p = head->ptr, *end = p + head->len, *nl, *colon;

	lua_newtable(co);
	for (; p < end; p = nl + 1) {
		if (!(nl = memchr(p, '\n', (size_t)(end - p))))
			nl = end;
		if (!(colon = memchr(p, ':', (size_t)(nl - p))) || !memcmp(p, "HTTP/", 5))
			continue;
		luaL_Buffer b;
		const char *v = colon + 1, *ve = nl;
		luaL_buffinit(co, &b);
		for (const char *c = p; c < colon; c++)
			luaL_addchar(&b, (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c));
		luaL_pushresult(&b);
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
			ve--;
		lua_pushlstring(co, v, (size_t)(ve - v));
		lua_rawset(co, -3);
	}
}

struct http_done {
	struct http_op *op;
	CURLcode res;
};

/* Protected: the results of ctx.http (light userdata struct http_done at 1).
 * [-1, +(1|2), m] */
static int http_result(lua_State *L)
{
	struct http_done *hd = lua_touserdata(L, 1);
	struct http_op *op = hd->op;
	long status = 0;

	if (hd->res != CURLE_OK) {
		lua_pushnil(L);
		lua_pushstring(L, op->err[0] ? op->err : curl_easy_strerror(hd->res));
		return 2;
	}
	curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &status);
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	push_headers(L, &op->head);
	lua_setfield(L, -2, "headers");
	lua_pushlstring(L, op->body.ptr, op->body.len);
	lua_setfield(L, -2, "body");
	lua_pushboolean(L, op->truncated);
	lua_setfield(L, -2, "truncated");
	return 1;
}

static void http_finish(struct http_op *op, CURLcode res)
{
	struct http_done hd = {op, res};
	struct sl_work *w = op->w;
	int nres = hand_results(w, http_result, &hd);

	curl_easy_cleanup(op->easy);
	curl_slist_free_all(op->hdrs);
	sl_buf_release(&op->body);
	sl_buf_release(&op->head);
	free(op->req_body);
	free(op);
	resume(w, nres);
}

static void check_done(struct http_glue *g)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(g->multi, &left))) {
		struct http_op *op = NULL;
		CURL *e = m->easy_handle;
		CURLcode res = m->data.result;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&op);
		curl_multi_remove_handle(g->multi, e);
		http_finish(op, res);
	}
}

/* The curl multi glue of the queue, made on first use. [-0, +0, v] */
static struct http_glue *glue(lua_State *L, struct sl_workq *q)
{
	struct http_glue *g;

	if (q->http)
		return q->http;
	if (!(g = calloc(1, sizeof(*g))) || !(g->multi = curl_multi_init())) {
		free(g);
		luaL_error(L, "ctx.http: cannot start libcurl");
	}
	g->q = q;
	uv_timer_init(q->loop, &g->timer);
	g->timer.data = g;
	curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
	curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
	curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
	return q->http = g;
}

/* Adds the request headers of the table at -1 to op. [-0, +0, v] */
static void request_headers(lua_State *L, struct http_op *op)
{
	struct curl_slist *l;

	lua_pushnil(L);
	while (lua_next(L, -2)) {
		if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
			luaL_error(L, "ctx.http: headers must map names to strings");
		lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
		if (!(l = curl_slist_append(op->hdrs, lua_tostring(L, -1))))
			luaL_error(L, "out of memory");
		op->hdrs = l;
		lua_pop(L, 2);
	}
}

/* Builds the easy handle from the options table at 1. op is anchored by the
 * caller's userdata, so a raise here leaks nothing. [-0, +0, v] */
static void http_setup(lua_State *L, struct http_op *op)
{
	const char *url, *method = "GET", *body = NULL;
	size_t blen = 0;
	double ms = 30000;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (lua_getfield(L, 1, "url") != LUA_TSTRING)
		luaL_error(L, "ctx.http: url is required");
	url = lua_tostring(L, -1);
	if (lua_getfield(L, 1, "method") == LUA_TSTRING)
		method = lua_tostring(L, -1);
	if (lua_getfield(L, 1, "body") == LUA_TSTRING)
		body = lua_tolstring(L, -1, &blen);
	if (lua_getfield(L, 1, "timeout") != LUA_TNIL)
		ms = timeout_ms(L, -1, "ctx.http");
	if (lua_getfield(L, 1, "headers") == LUA_TTABLE)
		request_headers(L, op);
	curl_easy_setopt(op->easy, CURLOPT_URL, url);
	curl_easy_setopt(op->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(op->easy, CURLOPT_CUSTOMREQUEST, method);
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(op->easy, CURLOPT_NOBODY, 1L);
	if (body) {
		if (!(op->req_body = malloc(blen ? blen : 1)))
			luaL_error(L, "out of memory");
		memcpy(op->req_body, body, blen);
		curl_easy_setopt(op->easy, CURLOPT_POSTFIELDS, op->req_body);
		curl_easy_setopt(op->easy, CURLOPT_POSTFIELDSIZE, (long)blen);
	}
	curl_easy_setopt(op->easy, CURLOPT_HTTPHEADER, op->hdrs);
	curl_easy_setopt(op->easy, CURLOPT_TIMEOUT_MS, (long)ms);
	curl_easy_setopt(op->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(op->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(op->easy, CURLOPT_WRITEDATA, op);
	curl_easy_setopt(op->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(op->easy, CURLOPT_HEADERDATA, op);
	curl_easy_setopt(op->easy, CURLOPT_ERRORBUFFER, op->err);
	curl_easy_setopt(op->easy, CURLOPT_PRIVATE, (char *)op);
}

/* The setup userdata's closer: frees an op that never reached the multi handle. [-0, +0, -] */
static int op_gc(lua_State *L)
{
	struct http_op **box = lua_touserdata(L, 1);
	struct http_op *op = *box;

	if (op) {
		curl_easy_cleanup(op->easy);
		curl_slist_free_all(op->hdrs);
		free(op->req_body);
		free(op);
		*box = NULL;
	}
	return 0;
}

/* ctx.http{method=, url=, headers=, body=, timeout=} [-1, +(1|2), y] */
int sl_work_http(lua_State *L)
{
	struct sl_work *w = need_work(L, "ctx.http");
	struct http_glue *g = glue(L, w->q);
	struct http_op **box, *op;

	box = lua_newuserdatauv(L, sizeof(*box), 0);
	*box = NULL;
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, op_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	if (!(op = calloc(1, sizeof(*op))) || !(op->easy = curl_easy_init())) {
		free(op);
		return luaL_error(L, "out of memory");
	}
	*box = op;
	op->w = w;
	sl_buf_init(&op->body);
	sl_buf_init(&op->head);
	http_setup(L, op);
	*box = NULL; /* the multi handle owns it now */
	/* curl asks for a timeout of 0 through on_timer_set: the transfer starts on the
	 * next turn of the loop, after this coroutine has yielded. */
	curl_multi_add_handle(g->multi, op->easy);
	return lua_yield(L, 0);
}

/* ---- the queue --------------------------------------------------------------------- */

int sl_workq_new(struct sl_workq **out, uv_loop_t *loop, lua_State *L, struct sl_diag *d)
{
	static int curl_ready;
	struct sl_workq *q = calloc(1, sizeof(*q));

	*out = NULL;
	if (!q)
		return sl_diag_set(d, SL_ENOMEM, "out of memory");
	if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK)
		curl_ready = 1;
	q->loop = loop;
	q->L = L;
	*(struct sl_work **)lua_getextraspace(L) = NULL;
	q->next_q = all_queues;
	if (all_queues)
		all_queues->prev_q = q;
	all_queues = q;
	*out = q;
	return 0;
}

static void free_glue(uv_handle_t *h)
{
	struct http_glue *g = h->data;

	curl_multi_cleanup(g->multi);
	free(g);
}

void sl_workq_free(struct sl_workq *q)
{
	if (!q)
		return;
	if (q->prev_q)
		q->prev_q->next_q = q->next_q;
	else
		all_queues = q->next_q;
	if (q->next_q)
		q->next_q->prev_q = q->prev_q;
	if (q->http)
		uv_close((uv_handle_t *)&q->http->timer, free_glue);
	free(q);
}
