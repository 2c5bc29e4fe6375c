# fuzz.cmake - the libFuzzer targets (tests/fuzz/fuzz_*.c), built when SL_FUZZ is on
# with clang (`make fuzz`). The engine is compiled with the fuzzer's coverage
# instrumentation and the sanitizers (see CMakeLists.txt); each target links
# libFuzzer's main. Not part of ctest: `make fuzz` and `make test` run them.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "SL_FUZZ needs clang (cmake -DCMAKE_C_COMPILER=clang)")
endif()
foreach(name IN ITEMS json jsonl schema contract deploy)
  add_executable(fuzz_${name} tests/fuzz/fuzz_${name}.c)
  target_link_libraries(fuzz_${name} PRIVATE sluice_engine PkgConfig::LUA sl_warnings)
  target_include_directories(fuzz_${name} PRIVATE tests/fuzz)
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(fuzz_${name} PROPERTIES EXCLUDE_FROM_ALL ON)
  list(APPEND SL_FUZZ_TARGETS fuzz_${name})
endforeach()
add_custom_target(fuzz_all DEPENDS ${SL_FUZZ_TARGETS})
