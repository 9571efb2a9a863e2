# cmake -DEXE=<mp_runner_selftest> -P check_selftest.cmake
# The harness's own test: every pass_* test passes, every fail_* fails with
# the diagnostic its name promises, and the command line works.
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
if(NOT rc EQUAL 0 OR NOT out MATCHES "\nok 1 - pass_variant/spawn\n1 passed, 0 failed\n$")
  fail("--run of a passing test")
endif()
execute_process(COMMAND ${EXE} --run fail_in_helper OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT out MATCHES "selftest.c:[0-9]+: ASSERT_FALSE\\(1\\) is true\n(.*\n)?not ok 1 - fail_in_helper\n")
  fail("--run of a failing test")
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
string(REGEX MATCHALL "(not )?ok [0-9]+ - [a-z_/]+" verdicts "${out}")
set(passed 0)
set(failed 0)
foreach(v IN LISTS verdicts)
  string(REGEX REPLACE ".* - " "" id "${v}")
  if(v MATCHES "^not ok")
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
if(NOT out MATCHES "\n${passed} passed, ${failed} failed\n$" OR passed LESS 6 OR failed LESS 15)
  fail("summary line (${passed} passed, ${failed} failed)")
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
