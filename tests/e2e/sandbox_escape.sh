#!/bin/bash
# sandbox_escape.sh - hostile processors that reach for what the sandbox leaves out
# (the file system, processes, native code, the debug library, the shared library
# tables, binary chunks), each beside a control processor on the same stream (issue 5);
# see lib/sandboxlib.sh for what every case checks. Scripts that try it at their top
# level are refused at load.
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sandboxlib.sh"

hostile os_execute "cases/os_execute.lua:[0-9]+: 'os' is not available to processors"
hostile io_open "cases/io_open.lua:[0-9]+: 'io' is not available to processors"
hostile io_popen "'io' is not available to processors"
hostile require_os "module 'os' is not available to processors"
hostile require_io "module 'io' is not available to processors"
hostile loadlib "'package' is not available to processors"
hostile binary_load "attempt to load a binary chunk"
hostile dump "attempt to call a nil value \(field 'dump'\)"
hostile sethook "'debug' is not available to processors"
hostile string_meta "attempt to index a boolean value"
hostile setmeta_env "cannot change a protected metatable"
hostile rawset_lib "rawset: the table is read-only"
hostile cjson_depth "attempt to call a nil value \(field 'decode_max_depth'\)"
hostile global_write "cases/global_write.lua:6: assignment to undeclared global 'counter'"

refused_at_load load_loop "exceeded its instruction budget"
refused_at_load load_os "'os' is not available to processors"
refused_at_load load_global "load_global.lua: line 2: assignment to undeclared global 'helper'"
refused_at_load load_bomb "exceeded its memory budget"

# A script table whose metamethods loop is read raw: the engine never runs them.
setup_case load_meta
timeout 60 $S check "$TMP/load_meta/deploy.lua" >/dev/null 2>&1
eq "load_meta: check reads the script table raw and returns" "$?" "0"

finish
