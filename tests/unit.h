/* unit.h - a tiny TAP harness for the C unit tests (after tarantool's unit.h).
 *
 * plan(n) prints "1..n"; ok(cond, fmt, ...) prints "ok N - ..." or "not ok N - ...";
 * check_plan() returns the process exit status: 0 only if every test passed and
 * exactly n ran. A test file's main() ends with `return check_plan();`.
 */
#ifndef SL_UNIT_H
#define SL_UNIT_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int unit_planned, unit_run, unit_failed;

static inline void plan(int n)
{
	unit_planned = n;
	printf("1..%d\n", n);
	fflush(stdout);
}

__attribute__((format(printf, 4, 5))) static inline int unit_ok(int cond, const char *file,
                                                                int line, const char *fmt, ...)
{
	va_list ap;

	unit_run++;
	printf("%sok %d - ", cond ? "" : "not ", unit_run);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		unit_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return cond;
}

#define ok(cond, ...) unit_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is(a, b, ...) unit_ok((a) == (b), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(a, b, ...) unit_ok(strcmp((a), (b)) == 0, __FILE__, __LINE__, __VA_ARGS__)
#define diag(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))

static inline int check_plan(void)
{
	if (unit_run != unit_planned) {
		printf("# planned %d tests but ran %d\n", unit_planned, unit_run);
		return 1;
	}
	if (unit_failed)
		printf("# failed %d of %d\n", unit_failed, unit_run);
	return unit_failed ? 1 : 0;
}

#endif
