# bench.cmake - the store benchmark, run by `make bench` as build/bench_store.
# It is built with everything else (so `make bench` finds it) but never registered
# with ctest: it takes minutes and its figures depend on the machine.
add_executable(bench_store bench/bench_store.c)
target_link_libraries(bench_store PRIVATE sluice_engine PkgConfig::LUA PkgConfig::SQLITE
  sl_warnings)
