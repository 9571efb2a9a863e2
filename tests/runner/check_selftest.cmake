# cmake -DEXE=<mp_runner_selftest> -DEMPTY=<mp_runner_empty>
#       -DDISCOVER=<discover.cmake> -P check_selftest.cmake
# The harness's own test: every pass_* test passes, every skip_* is skipped
# with its reason, every fail_* fails with the diagnostic its name promises,
# the command line works, and CTest registration marks skips and refuses an
# executable without tests.
function(fail msg)
  message(FATAL_ERROR "runner selftest: ${msg}\n--- output ---\n${out}")
endfunction()

# --list: "id timeout" lines, scaled by MP_TEST_TIMEOUT_MULTIPLIER
set(ENV{MP_TEST_TIMEOUT_MULTIPLIER} 2.5)
execute_process(COMMAND ${EXE} --list OUTPUT_VARIABLE out RESULT_VARIABLE rc)
unset(ENV{MP_TEST_TIMEOUT_MULTIPLIER})
if(NOT rc EQUAL 0 OR NOT out MATCHES "(^|\n)pass_plain 75\n" OR NOT out MATCHES "\nfail_timeout 3\n"
   OR NOT out MATCHES "\npass_variant/fork 75\npass_variant/spawn 75\npass_variant/forkserver 75\n")
  fail("--list")
endif()

# --run: the exit status is the verdict
execute_process(COMMAND ${EXE} --run pass_variant/spawn OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\nok 1 - pass_variant/spawn\n1 passed, 0 failed, 0 skipped\n$")
  fail("--run of a passing test")
endif()
execute_process(COMMAND ${EXE} --run fail_in_helper OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT out MATCHES "selftest.c:[0-9]+: ASSERT_FALSE\\(1\\) is true\n(.*\n)?not ok 1 - fail_in_helper\n")
  fail("--run of a failing test")
endif()
# a skip: status 77 (CTest's SKIP_RETURN_CODE), the reason on the TAP line
execute_process(COMMAND ${EXE} --run skip_plain OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 77 OR NOT out MATCHES "\nok 1 - skip_plain # SKIP no frobnicator here\n0 passed, 0 failed, 1 skipped\n$")
  fail("--run of a skipped test gave ${rc}")
endif()
execute_process(COMMAND ${EXE} --run fail_exit_skip_status OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 1 OR NOT out MATCHES "exited with status 77 without MP_TEST_SKIP\n(.*\n)?not ok 1 - fail_exit_skip_status\n")
  fail("--run of a test exiting 77 without MP_TEST_SKIP gave ${rc}")
endif()
execute_process(COMMAND ${EXE} --run no_such_test OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 2)
  fail("--run of an unknown test gave ${rc}")
endif()

# all of them
execute_process(COMMAND ${EXE} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(rc EQUAL 0)
  fail("a run with failing tests exited 0")
endif()
string(REGEX MATCHALL "(not )?ok [0-9]+ - [a-z_/]+( # SKIP [^\n]*)?" verdicts "${out}")
set(passed 0)
set(failed 0)
set(skipped 0)
foreach(v IN LISTS verdicts)
  string(REGEX REPLACE ".* - ([a-z_/]+).*" "\\1" id "${v}")
  if(v MATCHES " # SKIP ")
    math(EXPR skipped "${skipped} + 1")
    if(NOT id MATCHES "^skip_")
      fail("${id} was skipped")
    endif()
  elseif(v MATCHES "^not ok")
    math(EXPR failed "${failed} + 1")
    if(NOT id MATCHES "^fail_")
      fail("${id} failed")
    endif()
  else()
    math(EXPR passed "${passed} + 1")
    if(NOT id MATCHES "^pass_")
      fail("${id} passed")
    endif()
  endif()
endforeach()
if(NOT out MATCHES "\n${passed} passed, ${failed} failed, ${skipped} skipped\n$"
   OR passed LESS 6 OR failed LESS 17 OR NOT skipped EQUAL 4)
  fail("summary line (${passed} passed, ${failed} failed, ${skipped} skipped)")
endif()

# each failure for its own reason
foreach(expect
    "ASSERT_EQ\\(1, 2\\): 1 == 2 is false"
    "# output of a failed test is shown"
    "ASSERT_OK\\(MP_EEMPTY\\): -4201 \\(MP_EEMPTY: queue is empty\\)"
    "ASSERT_ERR\\(MP_EINVAL, MP_ETIMEDOUT\\): got -110 \\(MP_ETIMEDOUT\\), want -22 \\(MP_EINVAL\\)"
    "ASSERT_STREQ\\(\"abc\", NULL\\)"
    "ASSERT_MEMEQ.*offset 3"
    "fail_exit_status: exited with status 3"
    "fail_crash: killed by signal 11"
    "fail_expected_signal_missing: should have died by signal 6 but exited with status 0"
    "leak: fd [0-9]+ \\(pipe:"
    "leak: child process [0-9]+ \\(mp_runner_selft\\) is still running"
    "leak: child process [0-9]+ was left unreaped"
    "leak: process [0-9]+ \\([^)]*\\) outlived the test and was reaped"
    "leak: process [0-9]+ \\([^)]*\\) still running after the test: killed"
    "fail_timeout: timed out after 1 s"
    "ok [0-9]+ - skip_variant/fork # SKIP from a helper\n"
    "ok [0-9]+ - skip_variant/spawn # SKIP not under spawn\n"
    "fail_exit_skip_status: exited with status 77 without MP_TEST_SKIP"
    "leak: /dev/shm/mp-selftest-skip-[0-9]+ was left behind[^\n]*\n(# [^\n]*\n)*not ok [0-9]+ - fail_skip_after_shm_left\n"
    "leak: /dev/shm/mp-selftest-[0-9]+ was left behind")
  if(NOT out MATCHES "${expect}")
    fail("no line matching: ${expect}")
  endif()
endforeach()
if(out MATCHES "this output is not shown")
  fail("the output of a passing test was shown")
endif()
file(GLOB left /dev/shm/mp-selftest-*)
if(left)
  fail("left in /dev/shm: ${left}")
endif()

# an executable without tests: an empty list, and a full run fails
execute_process(COMMAND ${EMPTY} --list OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out STREQUAL "")
  fail("--list of an executable without tests")
endif()
execute_process(COMMAND ${EMPTY} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT out MATCHES "0 passed, 0 failed, 0 skipped\n# no tests")
  fail("a run of an executable without tests exited ${rc}")
endif()

# CTest's registration (discover.cmake), with add_test recorded here: every
# test may skip with 77; an executable without tests gets a failing entry.
set(registered "")
set(skip_codes "")
function(add_test name)
  set(registered "${registered};${name}=${ARGN}" PARENT_SCOPE)
endfunction()
function(set_tests_properties name)
  cmake_parse_arguments(P "" "SKIP_RETURN_CODE" "" ${ARGN})
  if(P_SKIP_RETURN_CODE)
    set(skip_codes "${skip_codes};${name}=${P_SKIP_RETURN_CODE}" PARENT_SCOPE)
  endif()
endfunction()
function(discover exe prefix)
  set(MP_TEST_EXE "${exe}")
  set(MP_TEST_PREFIX "${prefix}")
  set(MP_TEST_TIMEOUT_MARGIN 30)
  include("${DISCOVER}")
  set(registered "${registered}" PARENT_SCOPE)
  set(skip_codes "${skip_codes}" PARENT_SCOPE)
endfunction()
discover("${EXE}" selftest)
set(out "${registered}\n${skip_codes}")
if(NOT registered MATCHES ";selftest.skip_plain=${EXE};--run;skip_plain"
   OR NOT skip_codes MATCHES ";selftest.skip_plain=77(;|$)"
   OR NOT skip_codes MATCHES ";selftest.pass_variant/fork=77(;|$)")
  fail("discover.cmake: skip_plain is not registered to skip on 77")
endif()
set(registered "")
discover("${EMPTY}" empty)
set(out "${registered}")
if(NOT registered STREQUAL ";empty.NO_TESTS=${EMPTY}")
  fail("discover.cmake: an executable without tests got no failing entry")
endif()
