/* sl_sandbox_int.h - what the sandbox's files share (sl_sandbox.c, sl_sandbox_lib.c);
 * nothing outside the sandbox includes it.
 */
#ifndef SL_SANDBOX_INT_H
#define SL_SANDBOX_INT_H

#include <lua.h>

/* In a wrapper that caught an error with `status` (pcall, xpcall, load, a checked
 * call): a failure caused by a budget is raised again as the budget error, and a
 * memory error past the memory budget becomes the tripped memory budget. Returns
 * when the failure was not a budget's. [-0, +0, v] */
void sl_sandbox_rethrow(lua_State *L, int status);

/* Replaces, in the state's global tables (the base functions and the string, table,
 * math and utf8 libraries), the functions that can run long in C by budgeted ones
 * (sl_sandbox_lib.c says which and how). Call once, while setting up the state.
 * [-0, +0, e] */
void sl_sandbox_budget_libs(lua_State *L);

#endif
