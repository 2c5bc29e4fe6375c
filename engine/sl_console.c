/* sl_console.c - the console: its server inside `sluice run` and its client
 * (`sluice console`). See sl_console.h for the protocol and the rules. */
#include "sl_console.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "sl_buf.h"
#include "sl_deploy.h"
#include "sl_error.h"
#include "sl_host.h"
#include "sl_log.h"
#include "sl_luajson.h"
#include "sl_repl.h"
#include "sl_sandbox.h"
#include "sl_store.h"

int luaopen_sluice_core(lua_State *L);

#define LINE_MAX_BYTES ((size_t)4 << 20) /* a request or an answer */
#define OUTPUT_MAX ((size_t)1 << 20)     /* print() output of one evaluation */

/* ---- the socket's path ---------------------------------------------------------------- */

/* The console path of deployment dp: its `console`, else the store's path + ".sock"
 * (for a nats:// store, which is no file: "sluice.sock" in the current directory).
 * Returns 0, or SL_ETOOBIG when it does not fit a Unix socket address. */
static int socket_path(const char *console, const char *store, char *out, size_t n,
                       struct sl_diag *d)
{
	int len;

	if (!console && store && !strncmp(store, "nats://", 7))
		console = "sluice.sock";
	len = console ? snprintf(out, n, "%s", console) : snprintf(out, n, "%s.sock", store);

	if (len < 0 || (size_t)len >= n)
		return sl_diag_set(d, SL_ETOOBIG,
		                   "console: the socket path '%s%s' is longer than a Unix socket "
		                   "address allows (%zu bytes); set a shorter `console` path",
		                   console ? console : store, console ? "" : ".sock", n - 1);
	return 0;
}

/* ---- the server ---------------------------------------------------------------------------- */

struct client;

struct sl_console {
	struct sl_host *h;
	uv_loop_t *loop;
	uv_pipe_t server;
	uv_idle_t idle; /* evaluates one waiting request per turn of the loop */
	int listening, idling;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct client *clients;
};

struct client {
	uv_pipe_t pipe;
	struct sl_console *con;
	struct client *next;
	struct sl_buf in;           /* bytes read that are not a whole line yet */
	struct sl_buf out;          /* print() output of the evaluation running */
	lua_State *L;               /* the session, made at the first request */
	int G, session, show, opts; /* registry refs: globals, repl session, formatter, its opts */
	int exit_called;
	int ready;       /* a whole request is waiting (reading stopped meanwhile) */
	int interrupted; /* the evaluation running was stopped by the client */
	int follow;      /* tail() asked the client to follow */
	char follow_what[512];
	int64_t follow_from;
	int closing;
};

struct wreq {
	uv_write_t req;
	uv_buf_t buf;
};

static struct client *client_of(lua_State *L)
{
	return lua_touserdata(L, lua_upvalueindex(1));
}

/* print(...) in the console: into the answer's output. [-n, +0, e] */
static int l_print(lua_State *L)
{
	struct client *c = client_of(L);
	int n = lua_gettop(L), i;

	for (i = 1; i <= n; i++) {
		size_t len;
		const char *s = luaL_tolstring(L, i, &len);
		if (c->out.len < OUTPUT_MAX) {
			if (i > 1)
				sl_buf_addc(&c->out, '\t');
			sl_buf_add(&c->out, s, len);
		}
		lua_pop(L, 1);
	}
	if (c->out.len < OUTPUT_MAX)
		sl_buf_addc(&c->out, '\n');
	return 0;
}

static int l_exit(lua_State *L)
{
	client_of(L)->exit_called = 1;
	return 0;
}

/* sys.follow(what, from): tail() in the console; the client polls. [-2, +0, e] */
static int l_follow(lua_State *L)
{
	struct client *c = client_of(L);
	size_t len;
	const char *what = luaL_checklstring(L, 1, &len);

	if (len >= sizeof(c->follow_what))
		return luaL_error(L, "tail: the pattern is too long");
	memcpy(c->follow_what, what, len + 1);
	c->follow_from = luaL_checkinteger(L, 2);
	c->follow = 1;
	return 0;
}

/* sys.loadscript(path) -> chunk | nil, message: a processor script in an environment
 * of the sandbox, as the engine loads it. [-1, +1|2, m] */
static int l_loadscript(lua_State *L)
{
	if (sl_sandbox_loadfile(L, luaL_checkstring(L, 1)) != LUA_OK) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	return 1;
}

/* sys.readfile(path) -> text | nil (at most 16 MiB). [-1, +1, m] */
static int l_readfile(lua_State *L)
{
	FILE *f = fopen(luaL_checkstring(L, 1), "rb");
	luaL_Buffer b;
	size_t n, total = 0;

	if (!f) {
		lua_pushnil(L);
		return 1;
	}
	luaL_buffinit(L, &b);
	do {
		char *p = luaL_prepbuffer(&b);
		n = fread(p, 1, LUAL_BUFFERSIZE, f);
		luaL_addsize(&b, n);
		total += n;
	} while (n == LUAL_BUFFERSIZE && total < ((size_t)16 << 20));
	fclose(f);
	luaL_pushresult(&b);
	return 1;
}

/* sys.now() -> the time as the store writes createdAt. [-0, +1, m] */
static int l_now(lua_State *L)
{
	char at[40];

	sl_store_now(at, sizeof(at));
	lua_pushstring(L, at);
	return 1;
}

/* sys.reload(): loads the deployment again now. [-0, +1, -] */
static int l_reload(lua_State *L)
{
	sl_host_reload_now(client_of(L)->con->h);
	lua_pushboolean(L, 1);
	return 1;
}

/* The runner's reset: core.reset(deployment, p [, stream [, {withEffects=}]]).
 * [-n, +1|2, m] */
static int l_reset(lua_State *L)
{
	struct client *c = client_of(L);
	const char *proc = luaL_checkstring(L, 2), *stream = luaL_optstring(L, 3, NULL);
	int fx = lua_istable(L, 4) && lua_getfield(L, 4, "withEffects") && lua_toboolean(L, -1);
	struct sl_diag d;

	sl_diag_init(&d);
	if (sl_host_run_reset(c->con->h, proc, stream, fx, &d)) {
		lua_pushnil(L);
		lua_pushstring(L, sl_diag_msg(&d));
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* The runner's resume: core.resume(deployment, p [, stream [, {skip=, skipAll=}]]) ->
 * {resumed=N}; with skip the runner runs the faulted batch one event at a time and
 * dead-letters what fails alone. [-n, +1|2, m] */
static int l_resume(lua_State *L)
{
	struct client *c = client_of(L);
	const char *proc = luaL_checkstring(L, 2), *stream = luaL_optstring(L, 3, NULL);
	struct sl_diag d;
	int64_t n = 0;
	int skip = 0;

	if (lua_istable(L, 4)) {
		if (lua_getfield(L, 4, "skipAll") && lua_toboolean(L, -1))
			skip = SL_RESUME_SKIP_ALL;
		else if (lua_getfield(L, 4, "skip") && lua_toboolean(L, -1))
			skip = SL_RESUME_SKIP;
	}
	sl_diag_init(&d);
	if (sl_host_run_resume(c->con->h, proc, stream, skip, &n, &d)) {
		lua_pushnil(L);
		lua_pushstring(L, sl_diag_msg(&d));
		return 2;
	}
	lua_createtable(L, 0, 1);
	lua_pushinteger(L, n);
	lua_setfield(L, -2, "resumed");
	return 1;
}

static const char *const CORE_KEEP[] = {"open",  "decode",  "encode",      "array", "isarray",
                                        "check", "state",   "status",      "info",  "query",
                                        "null",  "version", "deadLetters", NULL};

/* The results formatter: pretty (with colour when asked), or one JSON text. */
static const char FORMATTER[] = "local core, pretty, opts = ...\n"
				"return function(v)\n"
				"  if opts.json then\n"
				"    local s = core.encode(v)\n"
				"    if s then return s end\n"
				"    return core.encode(tostring(v))\n"
				"  end\n"
				"  if type(v) == 'string' and v:find('\\n') then return v end\n"
				"  return pretty.format(v, { color = opts.color })\n"
				"end\n";

/* Protected: builds the session of client (light userdata at 1): the globals (a
 * table of the user's own over the sandbox's allow-list), the console's core and
 * sys, the helpers of sluice.repl. Leaves nothing. [-1, +0, e] */
static int session_open(lua_State *L)
{
	struct client *c = lua_touserdata(L, 1);
	int G, core, sys, i;

	lua_settop(L, 1);
	/* The globals: the user's table, reading through to the allow-list. */
	lua_newtable(L);
	G = lua_gettop(L);
	lua_newtable(L);
	sl_sandbox_pushenv(L);
	lua_getmetatable(L, -1);
	lua_getfield(L, -1, "__index");
	lua_setfield(L, -4, "__index");
	lua_pop(L, 2);
	lua_setmetatable(L, G);
	lua_pushlightuserdata(L, c);
	lua_pushcclosure(L, l_print, 1);
	lua_setfield(L, G, "print");
	lua_pushlightuserdata(L, c);
	lua_pushcclosure(L, l_exit, 1);
	lua_setfield(L, G, "exit");
	/* The console's core: sluice.core's readers, the runner's reset and resume. */
	lua_pushcfunction(L, luaopen_sluice_core);
	lua_call(L, 0, 1);
	lua_newtable(L);
	core = lua_gettop(L);
	for (i = 0; CORE_KEEP[i]; i++) {
		lua_getfield(L, core - 1, CORE_KEEP[i]);
		lua_setfield(L, core, CORE_KEEP[i]);
	}
	lua_pushlightuserdata(L, c);
	lua_pushcclosure(L, l_reset, 1);
	lua_setfield(L, core, "reset");
	lua_pushlightuserdata(L, c);
	lua_pushcclosure(L, l_resume, 1);
	lua_setfield(L, core, "resume");
	/* sys */
	lua_newtable(L);
	sys = lua_gettop(L);
	lua_pushvalue(L, core);
	lua_setfield(L, sys, "core");
	lua_pushcfunction(L, l_loadscript);
	lua_setfield(L, sys, "loadscript");
	lua_pushcfunction(L, l_readfile);
	lua_setfield(L, sys, "readfile");
	lua_pushcfunction(L, l_now);
	lua_setfield(L, sys, "now");
	lua_pushlightuserdata(L, c);
	lua_pushcclosure(L, l_print, 1);
	lua_setfield(L, sys, "write");
	lua_pushlightuserdata(L, c);
	lua_pushcclosure(L, l_reload, 1);
	lua_setfield(L, sys, "reload");
	lua_pushlightuserdata(L, c);
	lua_pushcclosure(L, l_follow, 1);
	lua_setfield(L, sys, "follow");
	/* The formatter, and sys.show through it. */
	if (luaL_loadbufferx(L, FORMATTER, sizeof(FORMATTER) - 1, "=console", "t") != LUA_OK)
		return lua_error(L);
	sl_sandbox_pushenv(L);
	lua_setupvalue(L, -2, 1);
	lua_pushvalue(L, core);
	lua_getfield(L, G, "require");
	lua_pushstring(L, "sluice.pretty");
	lua_call(L, 1, 1);
	lua_newtable(L); /* opts */
	lua_pushvalue(L, -1);
	c->opts = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_call(L, 3, 1);
	lua_pushvalue(L, -1);
	c->show = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_setfield(L, sys, "show");
	/* The helpers. */
	lua_getfield(L, G, "require");
	lua_pushstring(L, "sluice.repl");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "new");
	lua_pushstring(L, sl_host_deploy(c->con->h)->file);
	lua_pushvalue(L, G);
	lua_pushvalue(L, sys);
	lua_call(L, 3, 1);
	c->session = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, G);
	c->G = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_settop(L, 0);
	return 0;
}

#define INTERRUPT "{\"interrupt\":true}"

static int has_interrupt(const char *p, size_t n)
{
	size_t k = sizeof(INTERRUPT) - 1;

	for (; n >= k; p++, n--)
		if (*p == '{' && !memcmp(p, INTERRUPT, k))
			return 1;
	return 0;
}

/* The sandbox's early stop: the client sent its interrupt (Ctrl-C) after the request
 * being evaluated, or hung up. Peeks at what it sent (reading is stopped while its
 * request runs) without taking it. */
static int client_stop(void *ud)
{
	struct client *c = ud;
	char buf[4096];
	uv_os_fd_t fd;
	ssize_t n;

	if (c->in.len && has_interrupt(c->in.ptr, c->in.len))
		return c->interrupted = 1;
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd))
		return 0;
	n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n > 0 && has_interrupt(buf, (size_t)n)))
		return c->interrupted = 1; /* Ctrl-C, or nobody waits for the answer */
	return 0;
}

/* The message of a failed evaluation; a budget error says which budget. [-0, +0, -] */
static const char *failure(struct client *c, int status, char *buf, size_t n)
{
	lua_State *L = c->L;
	enum sl_budget b = sl_sandbox_exceeded(L, status);
	const char *msg;

	if (c->interrupted && b != SL_BUDGET_NONE)
		return "interrupted";
	if (b == SL_BUDGET_WALLCLOCK || b == SL_BUDGET_INSTRUCTIONS) {
		snprintf(buf, n, "evaluation stopped: it ran past the console's budget of %d ms",
		         SL_CONSOLE_BUDGET_MS);
		return buf;
	}
	if (b == SL_BUDGET_MEMORY || status == LUA_ERRMEM) {
		snprintf(buf, n,
		         "evaluation stopped: the session went past its memory budget (%d MiB)",
		         (int)(SL_CONSOLE_MEMORY / (1024 * 1024)));
		return buf;
	}
	msg = lua_tostring(L, -1);
	return msg ? msg : "(error object is not a string)";
}

/* The message handler of evaluations: the message only. [-1, +1, -] */
static int msghandler(lua_State *L)
{
	if (!lua_isstring(L, 1) && !luaL_callmeta(L, 1, "__tostring"))
		lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	return 1;
}

/* Compiles src (text only) as "return src", else as statements, with the session's
 * globals. [-0, +1, m] */
static int compile(struct client *c, const char *src, size_t len)
{
	lua_State *L = c->L;
	struct sl_buf b;
	int status;

	if (len && *src == '=')
		src++, len--;
	sl_buf_init(&b);
	sl_buf_adds(&b, "return ");
	sl_buf_add(&b, src, len);
	status = sl_buf_ok(&b) ? luaL_loadbufferx(L, b.ptr, b.len, "=console", "t") : LUA_ERRMEM;
	sl_buf_release(&b);
	if (status != LUA_OK) {
		lua_pop(L, 1);
		status = luaL_loadbufferx(L, src, len, "=console", "t");
	}
	if (status == LUA_OK) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, c->G);
		lua_setupvalue(L, -2, 1);
	}
	return status;
}

/* Sets the formatter's options from the request table at idx. [-0, +0, m] */
static void set_format(struct client *c, int idx)
{
	lua_State *L = c->L;

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->opts);
	lua_getfield(L, idx, "json");
	lua_setfield(L, -2, "json");
	lua_getfield(L, idx, "color");
	lua_setfield(L, -2, "color");
	lua_pop(L, 1);
}

/* Appends "key":<the strings of the array at idx> to the answer. [-0, +0, -] */
static void add_strings(struct sl_buf *ans, lua_State *L, int idx)
{
	lua_Integer i, n = (lua_Integer)lua_rawlen(L, idx);

	sl_buf_addc(ans, '[');
	for (i = 1; i <= n; i++) {
		size_t len;
		const char *s;
		lua_rawgeti(L, idx, i);
		s = lua_tolstring(L, -1, &len);
		if (i > 1)
			sl_buf_addc(ans, ',');
		if (s)
			sl_buf_addjstr(ans, s, len);
		else
			sl_buf_adds(ans, "null");
		lua_pop(L, 1);
	}
	sl_buf_addc(ans, ']');
}

/* Formats the values at first..top with the formatter into a new array. Runs in the
 * budget of the evaluation. [-0, +1, e] */
static int format_values(lua_State *L)
{
	struct client *c = lua_touserdata(L, 1);
	int top = lua_gettop(L), i;

	lua_createtable(L, top - 1, 0);
	for (i = 2; i <= top; i++) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, c->show);
		lua_pushvalue(L, i);
		lua_call(L, 1, 1);
		if (!lua_isstring(L, -1)) {
			lua_pop(L, 1);
			luaL_tolstring(L, i, NULL);
		}
		lua_rawseti(L, -2, i - 1);
	}
	return 1;
}

/* Evaluates the request's code: the answer goes into ans. */
static void do_eval(struct client *c, int req, struct sl_buf *ans)
{
	lua_State *L = c->L;
	struct sl_sbmark m;
	size_t len;
	const char *code;
	char buf[200];
	int status, base;

	lua_getfield(L, req, "eval");
	code = lua_tolstring(L, -1, &len);
	if (!code) {
		sl_buf_adds(ans, "{\"error\":\"eval: expected a string\"}");
		lua_pop(L, 1);
		return;
	}
	set_format(c, req);
	sl_buf_reset(&c->out);
	c->follow = 0;
	c->interrupted = 0;
	base = lua_gettop(L);
	lua_pushcfunction(L, msghandler);
	m = sl_sandbox_enter(L);
	status = compile(c, code, len);
	if (status == LUA_OK)
		status = lua_pcall(L, 0, LUA_MULTRET, base + 1);
	if (status == LUA_OK) { /* the values, formatted in the same budget */
		int n = lua_gettop(L) - base - 1;
		lua_pushcfunction(L, format_values);
		lua_insert(L, base + 2);
		lua_pushlightuserdata(L, c);
		lua_insert(L, base + 3);
		status = lua_pcall(L, n + 1, 1, base + 1);
	}
	if (status == LUA_OK) {
		sl_buf_adds(ans, "{\"values\":");
		add_strings(ans, L, -1);
	} else {
		const char *msg = failure(c, status, buf, sizeof(buf));
		sl_buf_adds(ans, "{\"error\":");
		sl_buf_addjstr(ans, msg, strlen(msg));
		c->follow = 0;
	}
	sl_sandbox_leave(L, m);
	sl_buf_adds(ans, ",\"output\":");
	sl_buf_addjstr(ans, c->out.ptr ? c->out.ptr : "", c->out.len);
	if (c->follow) {
		sl_buf_adds(ans, ",\"follow\":{\"what\":");
		sl_buf_addjstr(ans, c->follow_what, strlen(c->follow_what));
		sl_buf_addf(ans, ",\"from\":%lld}", (long long)c->follow_from);
	}
	if (c->exit_called)
		sl_buf_adds(ans, ",\"exit\":true");
	sl_buf_addc(ans, '}');
	lua_settop(L, base - 1); /* and the code */
}

/* Calls session.<name>(args at req's table fields...) in the budget: completion and
 * polls. The fields are read by the caller into the stack above base. Leaves the
 * results or an error. [-n, +r, -] */
static int session_call(struct client *c, const char *name, int nargs, int nres)
{
	lua_State *L = c->L;
	struct sl_sbmark m;
	int status, fn = lua_gettop(L) - nargs;

	lua_rawgeti(L, LUA_REGISTRYINDEX, c->session);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	lua_insert(L, fn + 1);
	lua_pushcfunction(L, msghandler);
	lua_insert(L, fn + 1);
	c->interrupted = 0;
	m = sl_sandbox_enter(L);
	status = lua_pcall(L, nargs, nres, fn + 1);
	if (status != LUA_OK) {
		char buf[200];
		const char *msg = failure(c, status, buf, sizeof(buf));
		lua_pop(L, 1);
		lua_pushstring(L, msg);
	}
	sl_sandbox_leave(L, m);
	lua_remove(L, fn + 1);
	return status;
}

static void do_complete(struct client *c, int req, struct sl_buf *ans)
{
	lua_State *L = c->L;
	int top = lua_gettop(L);

	lua_getfield(L, req, "complete");
	if (!lua_istable(L, -1)) {
		sl_buf_adds(ans, "{\"candidates\":[]}");
		lua_settop(L, top);
		return;
	}
	lua_getfield(L, -1, "line");
	lua_getfield(L, -2, "start");
	lua_getfield(L, -3, "word");
	if (!lua_isstring(L, -3) || !lua_isinteger(L, -2) || !lua_isstring(L, -1) ||
	    session_call(c, "complete", 3, 1) != LUA_OK || !lua_istable(L, -1)) {
		sl_buf_adds(ans, "{\"candidates\":[]}");
	} else {
		sl_buf_adds(ans, "{\"candidates\":");
		add_strings(ans, L, -1);
		sl_buf_addc(ans, '}');
	}
	lua_settop(L, top);
}

static void do_poll(struct client *c, int req, struct sl_buf *ans)
{
	lua_State *L = c->L;
	int top = lua_gettop(L);

	lua_getfield(L, req, "poll");
	if (!lua_istable(L, -1)) {
		sl_buf_adds(ans, "{\"error\":\"poll: expected {what=, from=}\"}");
		lua_settop(L, top);
		return;
	}
	set_format(c, top + 1);
	lua_getfield(L, -1, "what");
	lua_getfield(L, -2, "from");
	if (!lua_isstring(L, -2) || !lua_isinteger(L, -1)) {
		sl_buf_adds(ans, "{\"error\":\"poll: expected {what=, from=}\"}");
	} else if (session_call(c, "poll", 2, 2) != LUA_OK) {
		sl_buf_adds(ans, "{\"error\":");
		sl_buf_addjstr(ans, lua_tostring(L, -1), strlen(lua_tostring(L, -1)));
		sl_buf_addc(ans, '}');
	} else {
		sl_buf_adds(ans, "{\"values\":");
		add_strings(ans, L, -2);
		sl_buf_addf(ans, ",\"from\":%lld}", (long long)lua_tointeger(L, -1));
	}
	lua_settop(L, top);
}

static void on_closed(uv_handle_t *hd)
{
	struct client *c = hd->data;

	sl_sandbox_close(c->L);
	sl_buf_release(&c->in);
	sl_buf_release(&c->out);
	free(c);
}

static void close_client(struct client *c)
{
	struct client **p;

	if (c->closing)
		return;
	c->closing = 1;
	for (p = &c->con->clients; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	uv_close((uv_handle_t *)&c->pipe, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;

	free(w->buf.base);
	free(w);
	(void)status; /* a client that went away: its read ends and closes it */
}

static void send_answer(struct client *c, struct sl_buf *ans)
{
	struct wreq *w;

	sl_buf_addc(ans, '\n');
	if (!sl_buf_ok(ans) || !(w = malloc(sizeof(*w)))) {
		close_client(c);
		return;
	}
	w->buf = uv_buf_init(ans->ptr, (unsigned)ans->len);
	ans->ptr = NULL; /* the write owns it now */
	sl_buf_init(ans);
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, on_written)) {
		free(w->buf.base);
		free(w);
		close_client(c);
	}
}

/* Protected: decodes the request line (light userdata sl_buf-less: text at 1, as a
 * string). Leaves the table. [-1, +1, e] */
static int decode_request(lua_State *L)
{
	size_t len;
	const char *text = lua_tolstring(L, 1, &len);
	struct sl_diag d;

	sl_diag_init(&d);
	if (sl_lj_decode(L, text, len, 0, &d))
		return luaL_error(L, "%s", sl_diag_msg(&d));
	return 1;
}

static void handle_line(struct client *c, const char *line, size_t len)
{
	struct sl_buf ans;
	lua_State *L = c->L;
	int req;

	sl_buf_init(&ans);
	lua_settop(L, 0);
	lua_pushcfunction(L, decode_request);
	lua_pushlstring(L, line, len);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
		sl_buf_adds(&ans, "{\"error\":\"console: a request is one JSON object per line\"}");
	} else {
		req = lua_gettop(L);
		if (lua_getfield(L, req, "interrupt") != LUA_TNIL) {
			/* Ctrl-C after its evaluation ended, or the one that stopped it: no answer
			 */
			lua_settop(L, 0);
			sl_buf_release(&ans);
			return;
		} else if ((lua_pop(L, 1), lua_getfield(L, req, "eval")) != LUA_TNIL) {
			lua_pop(L, 1);
			do_eval(c, req, &ans);
		} else if ((lua_pop(L, 1), lua_getfield(L, req, "complete")) != LUA_TNIL) {
			lua_pop(L, 1);
			do_complete(c, req, &ans);
		} else if ((lua_pop(L, 1), lua_getfield(L, req, "poll")) != LUA_TNIL) {
			lua_pop(L, 1);
			do_poll(c, req, &ans);
		} else {
			sl_buf_adds(&ans, "{\"deployment\":");
			sl_buf_adds(&ans, "");
			sl_buf_addjstr(&ans, sl_host_deploy(c->con->h)->file,
			               strlen(sl_host_deploy(c->con->h)->file));
			sl_buf_addf(&ans, ",\"pid\":%ld,\"budgetMs\":%d}", (long)getpid(),
			            SL_CONSOLE_BUDGET_MS);
		}
	}
	lua_settop(L, 0);
	send_answer(c, &ans);
	sl_buf_release(&ans);
}

/* Makes the client's session at its first request. Returns 0, or -1 (answered with
 * the error, and closed). */
static int ensure_session(struct client *c)
{
	struct sl_limits lim = {0, SL_CONSOLE_MEMORY, SL_CONSOLE_BUDGET_MS};
	struct sl_diag d;
	struct sl_buf ans;
	const char *msg;

	if (c->L)
		return 0;
	sl_diag_init(&d);
	if (sl_sandbox_new(&c->L, "console", &lim, &d)) {
		msg = sl_diag_msg(&d);
	} else {
		sl_sandbox_set_stop(c->L, client_stop, c);
		lua_pushcfunction(c->L, session_open);
		lua_pushlightuserdata(c->L, c);
		if (lua_pcall(c->L, 1, 0, 0) == LUA_OK)
			return 0;
		msg = lua_tostring(c->L, -1);
		sl_log(SL_LOG_ERROR, NULL, NULL, 0, "console: %s", msg ? msg : "?");
	}
	sl_buf_init(&ans);
	sl_buf_adds(&ans, "{\"error\":");
	sl_buf_addjstr(&ans, msg ? msg : "?", strlen(msg ? msg : "?"));
	sl_buf_addc(&ans, '}');
	send_answer(c, &ans);
	sl_buf_release(&ans);
	close_client(c);
	return -1;
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	(void)hd;
	(void)suggested;
	buf->base = malloc(65536);
	buf->len = buf->base ? 65536 : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_turn(uv_idle_t *idle);

/* Whether a whole request line is waiting in c->in. */
static int has_line(const struct client *c)
{
	return c->in.len && memchr(c->in.ptr, '\n', c->in.len) != NULL;
}

/* A client with a whole request waits its turn: reading stops until it was served
 * (a client that sends many requests at once gets one per turn, like the others). */
static void wait_turn(struct client *c)
{
	struct sl_console *con = c->con;

	c->ready = 1;
	uv_read_stop((uv_stream_t *)&c->pipe);
	if (!con->idling) {
		uv_idle_start(&con->idle, on_turn);
		con->idling = 1;
	}
}

/* One turn: the first client in line gets one request evaluated, then goes to the
 * end of the line. Between two turns the loop runs its timers (the pump's rounds)
 * and I/O, so consoles hold ingest up for one budget at a time, however many. */
static void on_turn(uv_idle_t *idle)
{
	struct sl_console *con = idle->data;
	struct client **p, *c, **tail;
	size_t len;
	char *nl;

	for (p = &con->clients; *p && !(*p)->ready; p = &(*p)->next)
		;
	if (!(c = *p)) {
		uv_idle_stop(idle);
		con->idling = 0;
		return;
	}
	*p = c->next; /* to the end of the line */
	c->next = NULL;
	for (tail = &con->clients; *tail; tail = &(*tail)->next)
		;
	*tail = c;
	if (ensure_session(c))
		return;
	nl = memchr(c->in.ptr, '\n', c->in.len);
	len = (size_t)(nl - c->in.ptr);
	handle_line(c, c->in.ptr, len);
	if (c->closing)
		return;
	memmove(c->in.ptr, nl + 1, c->in.len - len - 1);
	c->in.len -= len + 1;
	if (!has_line(c)) {
		c->ready = 0;
		if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read))
			close_client(c);
	}
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct client *c = s->data;

	if (n < 0) {
		free(buf->base);
		close_client(c);
		return;
	}
	sl_buf_add(&c->in, buf->base, (size_t)n);
	free(buf->base);
	if (!sl_buf_ok(&c->in) || (c->in.len > LINE_MAX_BYTES && !has_line(c))) {
		close_client(c); /* too long a request, or out of memory */
		return;
	}
	if (has_line(c))
		wait_turn(c);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct sl_console *con = server->data;
	struct client *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->con = con;
	sl_buf_init(&c->in);
	sl_buf_init(&c->out);
	uv_pipe_init(con->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) ||
	    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read)) {
		uv_close((uv_handle_t *)&c->pipe, on_closed);
		return;
	}
	c->next = con->clients;
	con->clients = c;
}

/* Whether a process answers on the socket at path. */
static int socket_answers(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), ok;

	if (fd < 0)
		return 0;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static int console_start(void *ud, struct sl_host *h, uv_loop_t *loop, struct sl_diag *d)
{
	struct sl_console *con = ud;
	const struct sl_deploy *dp = sl_host_deploy(h);
	struct stat st;
	mode_t old;
	int rc;

	con->loop = loop;
	if ((rc = socket_path(dp->console, dp->store, con->path, sizeof(con->path), d)))
		return rc;
	if (lstat(con->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return sl_diag_set(
				d, SL_EINVAL,
				"console: '%s' exists and is not a socket: this runner has "
				"no console (remove it or set another `console` path)",
				con->path);
		if (socket_answers(con->path))
			return sl_diag_set(
				d, SL_EBUSY,
				"console: '%s' belongs to another runner of the deployment: "
				"this runner has no console",
				con->path);
		unlink(con->path); /* stale: its runner is gone */
	}
	uv_pipe_init(loop, &con->server, 0);
	con->server.data = con;
	uv_idle_init(loop, &con->idle);
	con->idle.data = con;
	old = umask(077); /* the socket is born 0600 */
	rc = uv_pipe_bind(&con->server, con->path);
	umask(old);
	if (!rc)
		rc = uv_listen((uv_stream_t *)&con->server, 16, on_connection);
	if (rc) {
		uv_close((uv_handle_t *)&con->server, NULL);
		uv_close((uv_handle_t *)&con->idle, NULL);
		return sl_diag_set(d, SL_EIO, "console: cannot listen on '%s': %s", con->path,
		                   uv_strerror(rc));
	}
	chmod(con->path, 0600);
	con->listening = 1;
	sl_log(SL_LOG_DEBUG, NULL, NULL, 0, "console on %s", con->path);
	return 0;
}

static void console_stop(void *ud)
{
	struct sl_console *con = ud;

	while (con->clients)
		close_client(con->clients);
	if (con->listening) {
		uv_close((uv_handle_t *)&con->server, NULL);
		uv_close((uv_handle_t *)&con->idle, NULL);
		unlink(con->path);
		con->listening = 0;
	}
}

int sl_console_new(struct sl_console **out, struct sl_host *h)
{
	struct sl_console *con = calloc(1, sizeof(*con));
	struct sl_host_service s;

	if (!con)
		return SL_ENOMEM;
	con->h = h;
	s.ud = con;
	s.start = console_start;
	s.stop = console_stop;
	if (sl_host_add_service(h, &s)) {
		free(con);
		return SL_ENOMEM;
	}
	*out = con;
	return 0;
}

void sl_console_free(struct sl_console *con)
{
	free(con);
}

/* ---- the client: `sluice console` ------------------------------------------------------------ */

struct conn {
	int fd;
	lua_State *L; /* decodes the answers */
	struct sl_buf in;
	int exit_called;
	const char *path;
};

static volatile sig_atomic_t interrupted;

static void interrupt_remote(void *ud)
{
	(void)ud;
	interrupted = 1;
}

static int send_all(struct conn *k, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(k->fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads the next answer line and pushes it decoded (a table). Returns 0, or -1
 * after printing why. [-0, +1|0, -] */
static int read_answer(struct conn *k)
{
	char buf[65536];
	char *nl;
	struct sl_diag d;

	while (!(nl = k->in.len ? memchr(k->in.ptr, '\n', k->in.len) : NULL)) {
		ssize_t n = read(k->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR) {
			if (interrupted == 1) { /* Ctrl-C: ask the runner to stop the evaluation */
				interrupted = 2;
				if (send_all(k, INTERRUPT "\n", sizeof(INTERRUPT)))
					return -1;
			}
			continue;
		}
		if (n <= 0) {
			fprintf(stderr,
			        "sluice: console: the runner closed the connection on '%s'%s\n",
			        k->path, n < 0 ? "" : " (it stopped?)");
			return -1;
		}
		sl_buf_add(&k->in, buf, (size_t)n);
		if (!sl_buf_ok(&k->in)) {
			fprintf(stderr, "sluice: console: out of memory\n");
			return -1;
		}
	}
	sl_diag_init(&d);
	if (sl_lj_decode(k->L, k->in.ptr, (size_t)(nl - k->in.ptr), 0, &d) ||
	    !lua_istable(k->L, -1)) {
		fprintf(stderr, "sluice: console: a malformed answer from the runner: %s\n",
		        sl_diag_msg(&d));
		return -1;
	}
	k->in.len -= (size_t)(nl + 1 - k->in.ptr);
	memmove(k->in.ptr, nl + 1, k->in.len);
	return 0;
}

/* Sends one request and pushes its answer. [-0, +1|0, -] */
static int request(struct conn *k, struct sl_buf *req)
{
	sl_buf_addc(req, '\n');
	if (!sl_buf_ok(req) || send_all(k, req->ptr, req->len)) {
		fprintf(stderr, "sluice: console: cannot send to the runner on '%s': %s\n", k->path,
		        strerror(errno));
		return -1;
	}
	return read_answer(k);
}

/* Prints the strings of the array field `key` of the answer at -1, a line each. */
static void print_lines(lua_State *L, const char *key)
{
	lua_Integer i, n;

	lua_getfield(L, -1, key);
	n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		if (lua_isstring(L, -1))
			puts(lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	fflush(stdout);
}

/* tail() in the console: polls the runner for the events after `from` until Ctrl-C
 * (or, off a terminal, until the runner goes away). */
static int follow(struct conn *k, int tty, const char *what, lua_Integer from)
{
	struct sl_buf req;
	int rc = 0;

	interrupted = 0;
	sl_buf_init(&req);
	while (!interrupted) {
		lua_Integer n;
		sl_buf_reset(&req);
		sl_buf_adds(&req, "{\"poll\":{\"what\":");
		sl_buf_addjstr(&req, what, strlen(what));
		sl_buf_addf(&req, ",\"from\":%lld},\"json\":%s,\"color\":%s}", (long long)from,
		            tty ? "false" : "true", tty ? "true" : "false");
		if (request(k, &req)) {
			rc = -1;
			break;
		}
		if (lua_getfield(k->L, -1, "error") == LUA_TSTRING) {
			fprintf(tty ? stdout : stderr, "%s%s\n",
			        tty ? "error: " : "sluice: ", lua_tostring(k->L, -1));
			lua_settop(k->L, 0);
			rc = 1;
			break;
		}
		lua_pop(k->L, 1);
		print_lines(k->L, "values");
		lua_getfield(k->L, -1, "from");
		n = lua_tointeger(k->L, -1);
		lua_settop(k->L, 0);
		if (n == from) { /* nothing new: wait a little (Ctrl-C ends the wait) */
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		from = n;
	}
	if (interrupted && tty)
		putchar('\n');
	sl_buf_release(&req);
	return rc;
}

static int eval_remote(void *ud, const char *chunk, int tty)
{
	struct conn *k = ud;
	lua_State *L = k->L;
	struct sl_buf req;
	int rc = 0;

	sl_buf_init(&req);
	sl_buf_adds(&req, "{\"eval\":");
	sl_buf_addjstr(&req, chunk, strlen(chunk));
	sl_buf_addf(&req, ",\"json\":%s,\"color\":%s}", tty ? "false" : "true",
	            tty ? "true" : "false");
	interrupted = 0;
	rc = request(k, &req);
	sl_buf_release(&req);
	if (rc)
		return -1;
	if (lua_getfield(L, -1, "output") == LUA_TSTRING) {
		fputs(lua_tostring(L, -1), stdout);
		fflush(stdout);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, -1, "exit") == LUA_TBOOLEAN && lua_toboolean(L, -1))
		k->exit_called = 1;
	lua_pop(L, 1);
	if (lua_getfield(L, -1, "error") == LUA_TSTRING) {
		if (tty)
			printf("error: %s\n", lua_tostring(L, -1));
		else
			fprintf(stderr, "sluice: %s\n", lua_tostring(L, -1));
		lua_settop(L, 0);
		return 1;
	}
	lua_pop(L, 1);
	print_lines(L, "values");
	if (lua_getfield(L, -1, "follow") == LUA_TTABLE) {
		char what[512];
		lua_Integer from;
		lua_getfield(L, -1, "what");
		lua_getfield(L, -2, "from");
		snprintf(what, sizeof(what), "%s", lua_tostring(L, -2) ? lua_tostring(L, -2) : "");
		from = lua_tointeger(L, -1);
		lua_settop(L, 0);
		return follow(k, tty, what, from);
	}
	lua_settop(L, 0);
	return 0;
}

static char **complete_remote(void *ud, const char *line, int start, const char *word, size_t *n)
{
	struct conn *k = ud;
	lua_State *L = k->L;
	struct sl_buf req;
	char **out;

	*n = 0;
	sl_buf_init(&req);
	sl_buf_adds(&req, "{\"complete\":{\"line\":");
	sl_buf_addjstr(&req, line, strlen(line));
	sl_buf_addf(&req, ",\"start\":%d,\"word\":", start);
	sl_buf_addjstr(&req, word, strlen(word));
	sl_buf_adds(&req, "}}");
	if (request(k, &req)) {
		sl_buf_release(&req);
		return NULL;
	}
	sl_buf_release(&req);
	lua_getfield(L, -1, "candidates");
	out = sl_repl_strings(L, -1, n);
	lua_settop(L, 0);
	return out;
}

/* The socket of target: a socket file as it is, else the deployment's console path
 * (NULL: the default store's). Returns 0 or 1 after printing why. */
static int resolve(const char *target, char *out, size_t n)
{
	struct sl_diag d;
	struct stat st;
	int rc;

	sl_diag_init(&d);
	if (!target) {
		const char *store = getenv("SLUICE_STORE");
		rc = socket_path(NULL, store && *store ? store : "sluice.db", out, n, &d);
	} else if (stat(target, &st) != 0 || S_ISSOCK(st.st_mode)) { /* connect says why */
		rc = socket_path(target, NULL, out, n, &d);
	} else {
		struct sl_deploy *dp;
		struct sl_errs errs;
		sl_errs_init(&errs);
		if (sl_deploy_load(&dp, target, &errs)) {
			fprintf(stderr, "sluice: %s\n",
			        errs.n ? errs.msg[0] : "console: cannot read the deployment");
			sl_errs_release(&errs);
			return 1;
		}
		sl_errs_release(&errs);
		rc = socket_path(dp->console, dp->store, out, n, &d);
		sl_deploy_free(dp);
	}
	if (rc)
		fprintf(stderr, "sluice: %s\n", sl_diag_msg(&d));
	return rc ? 1 : 0;
}

int sl_console_main(const char *target, const char *code)
{
	struct sockaddr_un sa;
	struct sl_repl_backend be = {0};
	struct conn k = {-1, NULL, {0}, 0, NULL};
	char banner[4400];
	int rc = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (resolve(target, sa.sun_path, sizeof(sa.sun_path)))
		return 1;
	k.path = sa.sun_path;
	signal(SIGPIPE, SIG_IGN);
	sl_buf_init(&k.in);
	if ((k.fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(k.fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr,
		        "sluice: console: cannot connect to '%s': %s (is `sluice run` running "
		        "with this deployment?)\n",
		        sa.sun_path, strerror(errno));
		goto out;
	}
	if (!(k.L = luaL_newstate())) {
		fprintf(stderr, "sluice: console: out of memory\n");
		goto out;
	}
	{
		struct sl_buf req;
		sl_buf_init(&req);
		sl_buf_adds(&req, "{\"hello\":true}");
		rc = request(&k, &req);
		sl_buf_release(&req);
		if (rc) {
			rc = 1;
			goto out;
		}
		lua_getfield(k.L, -1, "deployment");
		lua_getfield(k.L, -2, "pid");
		snprintf(banner, sizeof(banner),
		         "sluice console (%s) attached to the runner of %s (pid %lld) on %s.\n"
		         "help() lists the helpers; each input runs within %d ms; Ctrl-D leaves.",
		         LUA_RELEASE, lua_tostring(k.L, -2) ? lua_tostring(k.L, -2) : "?",
		         (long long)lua_tointeger(k.L, -1), sa.sun_path, SL_CONSOLE_BUDGET_MS);
		lua_settop(k.L, 0);
	}
	be.ud = &k;
	be.eval = eval_remote;
	be.complete = complete_remote;
	be.interrupt = interrupt_remote;
	be.prompt = "console> ";
	be.prompt2 = "console>> ";
	be.banner = banner;
	be.leaving = &k.exit_called;
	rc = sl_repl_loop(&be, code);
out:
	if (k.fd >= 0)
		close(k.fd);
	if (k.L)
		lua_close(k.L);
	sl_buf_release(&k.in);
	return rc;
}
