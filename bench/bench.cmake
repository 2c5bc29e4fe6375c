# bench.cmake - the benchmarks, run by `make bench` as build/bench_store and
# build/bench_runtime. They are built with everything else (so `make bench` finds
# them) but never registered with ctest: they take minutes and their figures depend
# on the machine.
add_executable(bench_store bench/bench_store.c)
target_link_libraries(bench_store PRIVATE sluice_engine PkgConfig::LUA PkgConfig::SQLITE
  sl_warnings)

# The engine at run time: catch-up through sl_host_run at 1, 100 and 100 000 streams
# against a lua5.4 + cjson script over the same events (which it writes and runs with
# the lua5.4 interpreter at run time) and a C decode+reduce loop, the cost per event
# at 10 000 000 events, and 1 000 000 instances in mode "each" (peak RSS, instances per
# second). It links the SL_TESTING engine for SLUICE_BUDGETS=off, the budgets-off
# side of row e.
add_executable(bench_runtime bench/bench_runtime.c)
target_link_libraries(bench_runtime PRIVATE sluice_engine_testing PkgConfig::LUA sl_warnings)

# `sluice run` as a service: append -> processEvent latency at 1 000 events/s, and the
# CPU share and new-event time of an idle run over 1 000 000 caught-up streams. It
# starts the sluice binary built beside it.
add_executable(bench_live bench/bench_live.c)
target_link_libraries(bench_live PRIVATE sluice_engine Threads::Threads sl_warnings)

# What the budgets cost pure Lua inside a hook call: the sandbox with a processor's
# default limits against one without budgets.
add_executable(bench_budgets bench/bench_budgets.c)
target_link_libraries(bench_budgets PRIVATE sluice_engine PkgConfig::LUA sl_warnings)

# `sluice append --jsonl` (peak RSS at 100 000 to 3 000 000 lines, the default batch
# size against the fastest, the cost per line at 10 000 000 lines against 1 000 000)
# and single appends during a catch-up. It runs the sluice
# binary built beside it and bench/gen_jsonl.sh, which writes its inputs.
add_executable(bench_append bench/bench_append.c)
target_compile_definitions(bench_append PRIVATE SL_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
target_link_libraries(bench_append PRIVATE sl_warnings)

# The HTTP interface of `sluice run`: appends/s over 1, 4 and 16 keep-alive clients
# with the requests per group commit (from /metrics), and POST -> emitted event on a
# server-sent event stream at 1 000 events/s. It starts the sluice binary built beside
# it, with processors/echo.lua and schemas/ from the source tree.
add_executable(bench_http bench/bench_http.c)
target_compile_definitions(bench_http PRIVATE SL_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
target_link_libraries(bench_http PRIVATE Threads::Threads sl_warnings)

# The JetStream store beside SQLite in one run: appends/s and catch-up ev/s, and the
# wake-up of a live run, on one nats-server and on a 3-node loopback cluster (R3) that
# it starts itself (the JetStream columns are skipped without nats-server). It runs
# the sluice binary built beside it.
add_executable(bench_nats bench/bench_nats.c)
target_link_libraries(bench_nats PRIVATE sluice_engine Threads::Threads sl_warnings)
