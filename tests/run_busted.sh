#!/bin/sh
# run_busted.sh LUA BUSTED SPEC - runs one busted spec under lua5.4 with TAP output.
# busted's own script starts with "#!/usr/bin/env lua", which may be Lua 5.1, so the
# interpreter is named explicitly. Under the sanitizer build the (uninstrumented)
# interpreter needs the sanitizer runtime preloaded to load sluice.core.
lua=$1 busted=$2 spec=$3
# The engine's Lua module and Lua code come first; ";;" keeps the default paths.
export LUA_CPATH="$SLUICE_BUILD/lua/?.so;;"
export LUA_PATH="$SLUICE_SRC/lua/?.lua;$SLUICE_SRC/lua/?/init.lua;;"
if [ -n "$SL_ASAN_PRELOAD" ]; then
	LD_PRELOAD=$SL_ASAN_PRELOAD exec "$lua" "$busted" -o TAP "$spec"
fi
exec "$lua" "$busted" -o TAP "$spec"
