/* sl_home.c - finding the engine's own files (schemas, Lua modules) at run time.
 *
 * A path compiled in alone ties the binary to the tree it was built in: move the
 * tree, or install the binary elsewhere, and every deployment fails. The installed
 * layout is therefore found relative to the executable, the source tree only last.
 */
#include "sl_home.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SL_SOURCE_DIR
#define SL_SOURCE_DIR "."
#endif
#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#define MARKER "/schemas/deployment.schema.json" /* what makes a directory a home */

static char home[PATH_MAX], schemas[PATH_MAX + 16], lua[PATH_MAX + 16];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Returns 1 if dir holds the built-in schemas. */
static int is_home(const char *dir)
{
	char path[PATH_MAX + sizeof(MARKER)];

	snprintf(path, sizeof(path), "%s%s", dir, MARKER);
	return access(path, R_OK) == 0;
}

/* Writes <directory of the executable>/../share/sluice to out, spelt without the
 * "..", as messages show it (/usr/local/bin/sluice: /usr/local/share/sluice). The
 * kernel's link already names the executable itself, not a symbolic link to it.
 * Returns 0, or -1 when the executable's path cannot be read (no /proc). */
static int installed_home(char *out, size_t n)
{
	char exe[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;
	int k;

	if (len <= 0)
		return -1;
	exe[len] = '\0';
	for (k = 0; k < 2; k++) /* the file name, then its directory (bin) */
		if (!(slash = strrchr(exe, '/')))
			return -1;
		else
			*slash = '\0';
	if ((size_t)snprintf(out, n, "%s/share/sluice", exe) >= n)
		return -1;
	return 0;
}

static void resolve(void)
{
	const char *env = getenv("SLUICE_HOME");
	char cand[PATH_MAX];
	size_t n;

	if (env && *env)
		snprintf(home, sizeof(home), "%s", env);
	else if (!installed_home(cand, sizeof(cand)) && is_home(cand))
		snprintf(home, sizeof(home), "%s", cand);
	else
		snprintf(home, sizeof(home), "%s", SL_SOURCE_DIR);
	n = strlen(home);
	while (n > 1 && home[n - 1] == '/')
		home[--n] = '\0';
	snprintf(schemas, sizeof(schemas), "%s/schemas", home);
	snprintf(lua, sizeof(lua), "%s/lua", home);
}

const char *sl_home(void)
{
	pthread_once(&once, resolve);
	return home;
}

const char *sl_home_schemas(void)
{
	pthread_once(&once, resolve);
	return schemas;
}

const char *sl_home_lua(void)
{
	pthread_once(&once, resolve);
	return lua;
}
