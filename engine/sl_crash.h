/* sl_crash.h - crash injection for the crash tests (sluice-testing only).
 *
 * SLUICE_CRASH_AT names a point (after-reduce, in-commit, after-commit,
 * projection-window); sl_crash_point(where) kills the process with SIGKILL the Nth
 * time (SLUICE_CRASH_BATCH, default 1) that point is reached. The variables are read
 * once per file that uses it. Only the SL_TESTING build has it; elsewhere the call
 * compiles to nothing.
 */
#ifndef SL_CRASH_H
#define SL_CRASH_H

#ifdef SL_TESTING
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static inline void sl_crash_point(const char *where)
{
	static const char *at;
	static long n = -1;

	if (n < 0) {
		const char *nb = getenv("SLUICE_CRASH_BATCH");
		at = getenv("SLUICE_CRASH_AT");
		n = nb ? atol(nb) : 1;
	}
	if (at && !strcmp(at, where) && --n == 0)
		raise(SIGKILL);
}
#else
#define sl_crash_point(where) ((void)(where))
#endif

#endif
