# Run by CTest before testing (TEST_INCLUDE_FILES): registers one test per
# line of `MP_TEST_EXE --list` ("id timeout_s"); a test that exits 77
# (MP_TEST_SKIP) shows as skipped.  An executable that lists no test at all
# gets one failing entry instead of silently counting for nothing.  Set by
# the caller:
# MP_TEST_EXE, MP_TEST_PREFIX (the executable's name), MP_TEST_TIMEOUT_MARGIN.
if(NOT EXISTS "${MP_TEST_EXE}")
  add_test("${MP_TEST_PREFIX}_NOT_BUILT" "${MP_TEST_PREFIX}_NOT_BUILT")
  return()
endif()

# The runner scales the timeouts by MP_TEST_TIMEOUT_MULTIPLIER itself.
execute_process(COMMAND "${MP_TEST_EXE}" --list
                OUTPUT_VARIABLE listing ERROR_VARIABLE errors RESULT_VARIABLE rc
                TIMEOUT 60)
if(NOT rc EQUAL 0)
  message(WARNING "${MP_TEST_EXE} --list failed (${rc}): ${errors}")
  add_test("${MP_TEST_PREFIX}.LIST_FAILED" "${MP_TEST_EXE}" --list-failed)
  return()
endif()

string(REPLACE "\n" ";" lines "${listing}")
set(count 0)
foreach(line IN LISTS lines)
  if(NOT line MATCHES "^([^ ]+) ([0-9]+)$")
    continue()
  endif()
  set(id "${CMAKE_MATCH_1}")
  math(EXPR timeout "${CMAKE_MATCH_2} + ${MP_TEST_TIMEOUT_MARGIN}")
  set(labels "${MP_TEST_PREFIX}")
  if(id MATCHES "/(fork|spawn|forkserver|proxy)$")
    list(APPEND labels "${CMAKE_MATCH_1}")
  endif()
  add_test("${MP_TEST_PREFIX}.${id}" "${MP_TEST_EXE}" --run "${id}")
  set_tests_properties("${MP_TEST_PREFIX}.${id}" PROPERTIES
                      TIMEOUT ${timeout} LABELS "${labels}" SKIP_RETURN_CODE 77)
  math(EXPR count "${count} + 1")
endforeach()
if(count EQUAL 0)
  message(WARNING "${MP_TEST_EXE} --list listed no tests")
  # the runner, run with no argument, fails when it has no test
  add_test("${MP_TEST_PREFIX}.NO_TESTS" "${MP_TEST_EXE}")
  set_tests_properties("${MP_TEST_PREFIX}.NO_TESTS" PROPERTIES LABELS "${MP_TEST_PREFIX}")
endif()
