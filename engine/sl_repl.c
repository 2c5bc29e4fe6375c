/* sl_repl.c - `sluice repl [DEPLOYMENT]`: an interactive Lua 5.4 session over the
 * store and the deployment (DESIGN §9), its helpers in lua/sluice/repl.lua; and the
 * line-reading loop `sluice console` shares (sl_repl_loop).
 *
 * On a terminal: line editing and history (~/.sluice_history) with libedit, tab
 * completion from the session (helpers, processor and stream names inside a helper
 * call's string, fields of tables), multi-line input as lua.c does it (a chunk whose
 * syntax error is at <eof> continues on the next line, the second prompt), a bare
 * expression prints its values (`=expr` too) through sluice.pretty, an error prints
 * `error: <message>` and the session goes on, Ctrl-C stops the running evaluation
 * (at the prompt it discards the line), Ctrl-D or exit() leaves.
 * Not on a terminal (stdin, or -e CODE): each result is one JSON line on stdout, and
 * the first error prints `sluice: <message>` and exits 1.
 *
 * The REPL's lua_State is the user's own (all standard libraries, as `lua`): the
 * REPL runs no processor code and holds no engine state a script could harm.
 */
#include "sl_repl.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sl_buf.h"
#include "sl_home.h"

int luaopen_sluice_core(lua_State *L);

/* ---- compiling ------------------------------------------------------------------------ */

/* Whether a load failure means the chunk is not complete yet. [-0, +0, -] */
static int incomplete(lua_State *L, int status)
{
	size_t len;
	const char *msg;

	if (status != LUA_ERRSYNTAX)
		return 0;
	msg = lua_tolstring(L, -1, &len);
	return len >= 5 && !strcmp(msg + len - 5, "<eof>");
}

/* Compiles src as "return src" first (an expression), else as statements; "=expr"
 * is an expression. Leaves the function or the error message. [-0, +1, -] */
static int compile(lua_State *L, const char *src, const char *name)
{
	struct sl_buf b;
	int status;

	if (*src == '=')
		src++;
	sl_buf_init(&b);
	sl_buf_adds(&b, "return ");
	sl_buf_adds(&b, src);
	status = sl_buf_ok(&b) ? luaL_loadbuffer(L, b.ptr, b.len, name) : LUA_ERRMEM;
	sl_buf_release(&b);
	if (status == LUA_OK)
		return status;
	lua_pop(L, 1);
	return luaL_loadbuffer(L, src, strlen(src), name);
}

/* ---- the loop ------------------------------------------------------------------------------ */

static const struct sl_repl_backend *cur; /* for the signal and completion handlers */
static volatile sig_atomic_t prompt_interrupted;

static void on_sigint_eval(int sig)
{
	(void)sig;
	if (cur->interrupt)
		cur->interrupt(cur->ud);
}

static void on_sigint_prompt(int sig)
{
	(void)sig;
	prompt_interrupted = 1;
}

static void set_sigint(void (*fn)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: a read at the prompt returns */
	sigaction(SIGINT, &sa, NULL);
}

static int leaving(void)
{
	return cur->leaving && *cur->leaving;
}

/* Feeds the lines of in to the backend, a complete chunk at a time (chk: a bare
 * state that only compiles). The first error ends it with 1. */
static int run_stream(lua_State *chk, FILE *in)
{
	struct sl_buf chunk;
	char line[8192];
	int rc = 0;

	sl_buf_init(&chunk);
	while (!rc && !leaving() && fgets(line, sizeof(line), in)) {
		int status;
		sl_buf_adds(&chunk, line);
		sl_buf_addc(&chunk, '\0');
		chunk.len--; /* a C string, and more can follow */
		if (!sl_buf_ok(&chunk)) {
			rc = 1;
			break;
		}
		status = incomplete(chk, compile(chk, chunk.ptr, "=stdin"));
		lua_pop(chk, 1);
		if (status)
			continue;
		rc = cur->eval(cur->ud, chunk.ptr, 0) ? 1 : 0;
		sl_buf_reset(&chunk);
	}
	if (!rc && chunk.len) { /* an unfinished chunk at the end: its error */
		sl_buf_addc(&chunk, '\0');
		rc = cur->eval(cur->ud, chunk.ptr, 0) ? 1 : 0;
	}
	sl_buf_release(&chunk);
	return rc;
}

static char **matches;
static size_t nmatches, next_match;

static void free_matches(void)
{
	size_t i;

	for (i = 0; i < nmatches; i++)
		free(matches[i]);
	free(matches);
	matches = NULL;
	nmatches = 0;
}

static char *match_gen(const char *text, int state)
{
	(void)text;
	if (!state)
		next_match = 0;
	return next_match < nmatches ? strdup(matches[next_match++]) : NULL;
}

/* libedit's completion: the candidates come from the backend. */
static char **complete(const char *text, int start, int end)
{
	(void)end;
	free_matches();
	rl_attempted_completion_over = 1; /* no file names */
	if (cur->complete)
		matches = cur->complete(cur->ud, rl_line_buffer, start + 1, text, &nmatches);
	if (!matches)
		nmatches = 0;
	return nmatches ? rl_completion_matches(text, match_gen) : NULL;
}

static void history_path(char *out, size_t n)
{
	const char *home = getenv("HOME");

	snprintf(out, n, "%s/.sluice_history", home && *home ? home : ".");
}

static int run_tty(lua_State *chk)
{
	struct sl_buf chunk;
	char hist[4200];
	int rc = 0;

	history_path(hist, sizeof(hist));
	using_history();
	read_history(hist);
	rl_readline_name = "sluice";
	rl_attempted_completion_function = complete;
	rl_basic_word_break_characters = " \t\n\"'(),=[]{}<>~;"; /* not / - . : in names */
	rl_completion_append_character = '\0';
	set_sigint(on_sigint_prompt);
	if (cur->banner)
		printf("%s\n", cur->banner);
	sl_buf_init(&chunk);
	while (!leaving()) {
		char *line;
		int status;
		prompt_interrupted = 0;
		line = readline(chunk.len ? cur->prompt2 : cur->prompt);
		if (!line) {
			if (prompt_interrupted) { /* Ctrl-C at the prompt: a new line */
				putchar('\n');
				sl_buf_reset(&chunk);
				continue;
			}
			putchar('\n');
			break; /* Ctrl-D */
		}
		if (*line) {
			add_history(line);
			write_history(hist);
		}
		if (chunk.len)
			sl_buf_addc(&chunk, '\n');
		sl_buf_adds(&chunk, line);
		free(line);
		sl_buf_addc(&chunk, '\0');
		chunk.len--;
		if (!sl_buf_ok(&chunk))
			break;
		status = incomplete(chk, compile(chk, chunk.ptr, "=stdin"));
		lua_pop(chk, 1);
		if (status)
			continue;
		set_sigint(on_sigint_eval);
		status = cur->eval(cur->ud, chunk.ptr, 1);
		set_sigint(on_sigint_prompt);
		sl_buf_reset(&chunk);
		fflush(stdout);
		if (status < 0) {
			rc = 1;
			break;
		}
	}
	sl_buf_release(&chunk);
	free_matches();
	write_history(hist);
	return rc;
}

int sl_repl_tty(const char *code)
{
	return !code && isatty(0) && isatty(1);
}

int sl_repl_loop(const struct sl_repl_backend *be, const char *code)
{
	lua_State *chk;
	int rc;

	if (code)
		return be->eval(be->ud, code, 0) ? 1 : 0;
	if (!(chk = luaL_newstate())) {
		fprintf(stderr, "sluice: out of memory\n");
		return 1;
	}
	cur = be;
	rc = sl_repl_tty(NULL) ? run_tty(chk) : run_stream(chk, stdin);
	lua_close(chk);
	return rc;
}

/* ---- the REPL's own session --------------------------------------------------------------- */

static lua_State *session_L; /* for the SIGINT handler */
static int exit_called;

/* The hook the SIGINT handler installs: raises in the running code. [-0, +1, v] */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	luaL_error(L, "interrupted");
}

static void interrupt_local(void *ud)
{
	(void)ud;
	/* Setting a hook is signal-safe in Lua 5.4 (lua.c does the same). */
	lua_sethook(session_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* The message handler of evaluations: the message only, no traceback (the engine's
 * helpers raise plain messages). [-1, +1, -] */
static int msghandler(lua_State *L)
{
	if (!lua_isstring(L, 1) && !luaL_callmeta(L, 1, "__tostring"))
		lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	return 1;
}

/* Prints the values from first to the top, pretty on a terminal, else one JSON line
 * each (sluice.core's encoder; a value it cannot encode as its tostring). Pops them.
 * [-n, +0, -] */
static void print_results(lua_State *L, int first, int tty)
{
	int top = lua_gettop(L), i;

	for (i = first; i <= top; i++) {
		lua_getglobal(L, tty ? "__sluice_show" : "__sluice_json");
		lua_pushvalue(L, i);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
			lua_pop(L, 1);
			lua_pushstring(L, luaL_tolstring(L, i, NULL));
			lua_remove(L, -2);
		}
		puts(lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_settop(L, first - 1);
	fflush(stdout);
}

/* Evaluates one chunk in the session: its results printed, or its error. */
static int eval_local(void *ud, const char *src, int tty)
{
	lua_State *L = ud;
	int status = compile(L, src, "=stdin");

	if (status == LUA_OK) {
		lua_pushcfunction(L, msghandler);
		lua_insert(L, 1);
		status = lua_pcall(L, 0, LUA_MULTRET, 1);
		lua_sethook(L, NULL, 0, 0);
		lua_remove(L, 1);
	}
	if (status != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (tty)
			printf("error: %s\n", msg ? msg : "(no message)");
		else
			fprintf(stderr, "sluice: %s\n", msg ? msg : "(no message)");
		lua_settop(L, 0);
		return 1;
	}
	print_results(L, 1, tty);
	return 0;
}

/* The candidates of the session's complete(). */
static char **complete_local(void *ud, const char *line, int start, const char *word, size_t *n)
{
	lua_State *L = ud;
	char **out = NULL;

	*n = 0;
	lua_getglobal(L, "__sluice_session");
	lua_getfield(L, -1, "complete");
	lua_pushstring(L, line);
	lua_pushinteger(L, start);
	lua_pushstring(L, word);
	if (lua_pcall(L, 3, 1, 0) == LUA_OK)
		out = sl_repl_strings(L, -1, n);
	lua_settop(L, 0);
	return out;
}

char **sl_repl_strings(lua_State *L, int idx, size_t *n)
{
	char **out = NULL;
	size_t i, k;

	*n = 0;
	if (!lua_istable(L, idx) || !(k = (size_t)lua_rawlen(L, idx)))
		return NULL;
	idx = lua_absindex(L, idx);
	if ((out = calloc(k + 1, sizeof(*out))))
		for (i = 1; i <= k; i++) {
			lua_rawgeti(L, idx, (lua_Integer)i);
			if (lua_isstring(L, -1) && (out[*n] = strdup(lua_tostring(L, -1))))
				(*n)++;
			lua_pop(L, 1);
		}
	return out;
}

static int l_exit(lua_State *L)
{
	(void)L;
	exit_called = 1;
	return 0;
}

/* Protected: builds the session's printers and its sys table (what repl.lua may use
 * of the process: files, output, the clock). [-0, +0, e] */
static int setup(lua_State *L)
{
	const char *lua_dir = sl_home_lua();

	luaL_openlibs(L);
	luaL_requiref(L, "sluice.core", luaopen_sluice_core, 0);
	lua_pop(L, 1);
	lua_getglobal(L, "package");
	lua_pushfstring(L, "%s/?.lua;", lua_dir);
	lua_getfield(L, -2, "path");
	lua_concat(L, 2);
	lua_setfield(L, -2, "path");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_exit);
	lua_setglobal(L, "exit");
	if (luaL_dostring(L, "local pretty = require 'sluice.pretty'\n"
	                     "local core = require 'sluice.core'\n"
	                     "local color = __sluice_color\n"
	                     "__sluice_show = function(v)\n"
	                     "  if type(v) == 'string' and v:find('\\n') then return v end\n"
	                     "  return pretty.format(v, { color = color })\n"
	                     "end\n"
	                     "__sluice_json = function(v)\n"
	                     "  local s = core.encode(v)\n"
	                     "  if s then return s end\n"
	                     "  return core.encode(tostring(v))\n"
	                     "end\n"
	                     "__sluice_sys = {\n"
	                     "  core = core,\n"
	                     "  loadscript = function(path)\n"
	                     "    return loadfile(path, 't', setmetatable({}, { __index = _G }))\n"
	                     "  end,\n"
	                     "  readfile = function(path)\n"
	                     "    local f = io.open(path, 'rb')\n"
	                     "    if not f then return nil end\n"
	                     "    local s = f:read('a')\n"
	                     "    f:close()\n"
	                     "    return s\n"
	                     "  end,\n"
	                     "  write = function(s) io.write(s) io.flush() end,\n"
	                     "  getenv = os.getenv,\n"
	                     "  sleep = core.sleep,\n"
	                     "  now = function() return os.date('!%Y-%m-%dT%H:%M:%S.000Z') end,\n"
	                     "  show = function(v)\n"
	                     "    if color then return __sluice_show(v) end\n"
	                     "    return __sluice_json(v)\n"
	                     "  end,\n"
	                     "}\n") != LUA_OK)
		return lua_error(L);
	return 0;
}

/* The session: the printers (setup), then the helpers of sluice.repl in the globals. */
static int open_session(lua_State *L, const char *deployment, int color)
{
	lua_pushboolean(L, color);
	lua_setglobal(L, "__sluice_color");
	lua_pushcfunction(L, setup);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK)
		goto fail;
	lua_getglobal(L, "require");
	lua_pushstring(L, "sluice.repl");
	if (lua_pcall(L, 1, 1, 0) != LUA_OK)
		goto fail;
	lua_getfield(L, -1, "new");
	if (deployment)
		lua_pushstring(L, deployment);
	else
		lua_pushnil(L);
	lua_pushglobaltable(L);
	lua_getglobal(L, "__sluice_sys");
	if (lua_pcall(L, 3, 1, 0) != LUA_OK)
		goto fail;
	lua_setglobal(L, "__sluice_session");
	lua_pop(L, 1);
	return 0;
fail:
	fprintf(stderr, "sluice: repl: %s\n", lua_tostring(L, -1));
	return 1;
}

int sl_repl_main(const char *deployment, const char *code)
{
	lua_State *L = luaL_newstate();
	char banner[4300];
	struct sl_repl_backend be = {0};
	int rc;

	if (!L) {
		fprintf(stderr, "sluice: repl: out of memory\n");
		return 1;
	}
	session_L = L;
	if (open_session(L, deployment, sl_repl_tty(code))) {
		lua_close(L);
		return 1;
	}
	snprintf(banner, sizeof(banner),
	         "sluice REPL (%s) on %s. help() lists the helpers; Ctrl-D leaves.", LUA_RELEASE,
	         deployment ? deployment : "the store");
	be.ud = L;
	be.eval = eval_local;
	be.complete = complete_local;
	be.interrupt = interrupt_local;
	be.prompt = "sluice> ";
	be.prompt2 = "sluice>> ";
	be.banner = banner;
	be.leaving = &exit_called;
	rc = sl_repl_loop(&be, code);
	lua_getglobal(L, "__sluice_session");
	if (lua_istable(L, -1) && lua_getfield(L, -1, "close") == LUA_TFUNCTION)
		lua_pcall(L, 0, 0, 0);
	lua_close(L);
	return rc;
}
