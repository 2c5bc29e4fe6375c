/* sl_repl.h - `sluice repl`: an interactive Lua session over a deployment and its
 * store (sl_repl.c; the helpers are lua/sluice/repl.lua), and the line-reading loop
 * it shares with `sluice console` (sl_console.c), whose evaluations run elsewhere. */
#ifndef SL_REPL_H
#define SL_REPL_H

#include <stddef.h>

/* Runs the session on deployment (NULL: the store of $SLUICE_STORE, else
 * ./sluice.db): code given (-e) evaluates it alone; otherwise standard input, on a
 * terminal interactively. Returns the exit status (0, or 1 after an error off a
 * terminal). */
int sl_repl_main(const char *deployment, const char *code);

/* Where a session's chunks are evaluated. */
struct sl_repl_backend {
	void *ud;
	/* Evaluates one complete chunk and prints its results: pretty on a terminal (tty
	 * 1), else one JSON line each. Returns 0, or 1 after printing the error ("error:
	 * <message>" on stdout on a terminal, "sluice: <message>" on stderr otherwise);
	 * -1 when the session cannot go on (it printed why). */
	int (*eval)(void *ud, const char *chunk, int tty);
	/* Tab completion: an array of *n candidates for word, which begins at start
	 * (1-based) of line; the array and its strings are malloc'd, the caller frees
	 * them. NULL for none. */
	char **(*complete)(void *ud, const char *line, int start, const char *word, size_t *n);
	/* Called from the SIGINT handler while eval runs (async-signal-safe). */
	void (*interrupt)(void *ud);
	const char *prompt, *prompt2; /* "sluice> ", "sluice>> " */
	const char *banner;           /* printed first on a terminal */
	const int *leaving;           /* nonzero once exit() was called */
};

/* The loop: code (-e) alone, else standard input, interactively on a terminal (line
 * editing, history in ~/.sluice_history, completion, multi-line chunks: a chunk
 * whose syntax error is at <eof> continues). Returns the exit status. */
int sl_repl_loop(const struct sl_repl_backend *be, const char *code);

/* The strings of the array at idx as a malloc'd array of *n malloc'd strings (NULL
 * when there are none): completion candidates. [-0, +0, m] */
struct lua_State;
char **sl_repl_strings(struct lua_State *L, int idx, size_t *n);

/* Whether a terminal session runs (stdin and stdout are terminals, no -e). */
int sl_repl_tty(const char *code);

#endif
