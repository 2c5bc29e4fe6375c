/* sl_repl.h - `sluice repl`: an interactive Lua session over a deployment and its
 * store (sl_repl.c; the helpers are lua/sluice/repl.lua). */
#ifndef SL_REPL_H
#define SL_REPL_H

/* Runs the session on deployment (NULL: the store of $SLUICE_STORE, else
 * ./sluice.db): code given (-e) evaluates it alone; otherwise standard input, on a
 * terminal interactively. Returns the exit status (0, or 1 after an error off a
 * terminal). */
int sl_repl_main(const char *deployment, const char *code);

#endif
