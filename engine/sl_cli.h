/* sl_cli.h - the `sluice` command line (DESIGN §6): output is JSON lines on stdout,
 * each error one "sluice: ..." line on stderr, exit 0 on success and 1 on error. */
#ifndef SL_CLI_H
#define SL_CLI_H

/* Runs the command line; returns the process exit status. */
int sl_cli_main(int argc, char **argv);

#endif
