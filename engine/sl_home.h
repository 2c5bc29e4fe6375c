/* sl_home.h - where the engine finds the files it ships: its built-in schemas
 * (schemas/NAME.json) and its Lua modules (lua/sluice/NAME.lua).
 *
 * The home directory is, in this order:
 *   1. $SLUICE_HOME, when it is set and not empty (taken as it is, so a wrong value
 *      shows in the error that follows);
 *   2. ../share/sluice next to the running executable (readlink /proc/self/exe), as
 *      `make install` lays it out: /usr/local/bin/sluice finds /usr/local/share/sluice;
 *   3. the source tree the binary was built from (compiled in), so that the binaries
 *      of a build directory, the tests among them, work without installing.
 * A candidate of 2 or 3 counts only if it holds schemas/deployment.schema.json; when
 * none does, the source tree's path is returned and the errors name it.
 *
 * Resolved once per process, on first use; safe to call from any thread. The
 * strings are static and live as long as the process.
 */
#ifndef SL_HOME_H
#define SL_HOME_H

/* The home directory, without a trailing '/'. */
const char *sl_home(void);
/* The built-in schemas: <home>/schemas. */
const char *sl_home_schemas(void);
/* The directory holding the engine's Lua modules (sluice/NAME.lua): <home>/lua. */
const char *sl_home_lua(void);

#endif
