# tests.cmake - every test, registered with ctest and labelled:
#   unit  C unit tests (TAP), one executable per module
#   lua   busted specs, run under lua5.4 with TAP output
#   e2e   end-to-end tests of the sluice CLI (shell scripts)
#   slow  tests that take more than a few seconds

# C unit tests: tests/test_<name>.c, linked against the engine and Lua.
foreach(name IN ITEMS error buf json luajson store schema schema_suite processor sandbox log watch)
  add_executable(test_${name} tests/test_${name}.c)
  target_link_libraries(test_${name} PRIVATE sluice_engine PkgConfig::LUA sl_warnings)
  target_include_directories(test_${name} PRIVATE tests)
  add_test(NAME unit/${name} COMMAND test_${name})
  set_tests_properties(unit/${name} PROPERTIES LABELS unit)
endforeach()

# The store on its JetStream backend: needs a server, so tests/e2e/nats_store.sh
# starts one and runs this with its URL (built here, not registered on its own).
add_executable(test_store_nats tests/test_store_nats.c)
target_link_libraries(test_store_nats PRIVATE sluice_engine PkgConfig::LUA sl_warnings)
target_include_directories(test_store_nats PRIVATE tests)

# The environment shared by busted specs and end-to-end tests: the built binary (and
# sluice-testing, the same with the SL_TESTING switches for the crash tests), the Lua
# module, the shipped Lua code and the source tree.
set(SL_TEST_ENV
  "SLUICE=$<TARGET_FILE:sluice>"
  "SLUICE_TESTING=$<TARGET_FILE:sluice-testing>"
  "SLUICE_SRC=${CMAKE_SOURCE_DIR}"
  "SLUICE_BUILD=${CMAKE_BINARY_DIR}")
if(SL_SANITIZE)
  # lua5.4 itself is not instrumented: preload the sanitizer runtime for the module.
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
    OUTPUT_VARIABLE SL_ASAN_LIB OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND SL_TEST_ENV "SL_ASAN_PRELOAD=${SL_ASAN_LIB}"
    "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

# The end-to-end tests run the binary with LeakSanitizer on: what sluice allocates is
# freed by the time it exits (the busted specs keep it off: lua5.4 itself is not built
# to free everything).
set(SL_E2E_ENV ${SL_TEST_ENV})
if(SL_SANITIZE)
  list(TRANSFORM SL_E2E_ENV REPLACE "^ASAN_OPTIONS=detect_leaks=0" "ASAN_OPTIONS=detect_leaks=1")
endif()

# busted specs: each tests/spec/*_spec.lua is one ctest case.
file(GLOB SL_SPECS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/spec/*_spec.lua)
foreach(spec IN LISTS SL_SPECS)
  get_filename_component(name ${spec} NAME_WE)
  add_test(NAME lua/${name}
    COMMAND ${CMAKE_SOURCE_DIR}/tests/run_busted.sh ${LUA54} ${BUSTED} ${spec}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(lua/${name} PROPERTIES LABELS lua ENVIRONMENT "${SL_TEST_ENV}")
endforeach()

# End-to-end CLI tests: each tests/e2e/*.sh is one ctest case; names ending in
# _slow.sh are also labelled slow.
file(GLOB SL_E2E CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/e2e/*.sh)
foreach(script IN LISTS SL_E2E)
  get_filename_component(name ${script} NAME_WE)
  set(labels e2e)
  if(name MATCHES "_slow$")
    list(APPEND labels slow)
  endif()
  add_test(NAME e2e/${name} COMMAND bash ${script})
  set_tests_properties(e2e/${name} PROPERTIES LABELS "${labels}" ENVIRONMENT "${SL_E2E_ENV}"
    TIMEOUT 1200)
endforeach()
