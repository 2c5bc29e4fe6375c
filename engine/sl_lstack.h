/* sl_lstack.h - the debug-build check that a C function left the Lua stack as its
 * contract says ([-o, +p, x] in the Lua manual's notation).
 *
 * At the top of a function that touches a lua_State, SL_STACK_ENTER(L) saves the
 * top; before each return that keeps the contract, SL_STACK_CHECK(L, delta) asserts
 * that the top moved by exactly `delta`. Both compile to nothing when NDEBUG is
 * defined (the release build); the Debug (ASan) build runs them. A function may use
 * SL_STACK_ENTER once per scope. Only normal returns are checked: an error unwinds
 * the stack by itself.
 */
#ifndef SL_LSTACK_H
#define SL_LSTACK_H

#include <lua.h>

#ifndef NDEBUG
#include <assert.h>

#define SL_STACK_ENTER(L) const int sl_stack_top_ = lua_gettop(L)
#define SL_STACK_CHECK(L, delta) assert(lua_gettop(L) == sl_stack_top_ + (delta))
#else
#define SL_STACK_ENTER(L) struct sl_stack_unused_
#define SL_STACK_CHECK(L, delta) ((void)0)
#endif

#endif
