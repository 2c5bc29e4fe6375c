/* bench_util.h - what the benchmark programs share: the clock, the interrupt flag,
 * the scratch directory and the table's number formatting. Include it once, after
 * defining BENCH_NAME (the program's name, for messages). */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char dir[4096]; /* the scratch directory, removed at the end */
static volatile sig_atomic_t interrupted;

/* Seconds on the monotonic clock. */
static inline double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* 1 (after saying so) once SIGINT or SIGTERM arrived. */
static inline int stopped(void)
{
	if (interrupted)
		fprintf(stderr, BENCH_NAME ": interrupted\n");
	return interrupted;
}

static inline void path_of(char *out, size_t n, const char *file)
{
	snprintf(out, n, "%s/%s", dir, file);
}

/* Formats v with a space every three digits: 1 234 567. */
static inline const char *group(char *out, size_t n, double v)
{
	char digits[32];
	size_t len, i, o = 0;

	snprintf(digits, sizeof(digits), "%.0f", v < 0 ? 0 : v);
	len = strlen(digits);
	for (i = 0; i < len && o + 2 < n; i++) {
		if (i && (len - i) % 3 == 0)
			out[o++] = ' ';
		out[o++] = digits[i];
	}
	out[o] = '\0';
	return out;
}

/* A run of n dashes (n <= 64) for the table's rule. */
static inline const char *dashes(int n)
{
	static const char d[] = "----------------------------------------------------------------";

	return d + (sizeof(d) - 1 - (size_t)n);
}

#endif
