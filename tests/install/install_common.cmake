# Included by check_install.cmake and mpi/install/check_install_mpi.cmake:
# install the built tree to a fresh scratch prefix (${prefix}) and give
# both the steps they build and run their consumers with.
# Needs -DBUILD=<build dir> -DSRC=<consumer sources> -DWORK=<scratch dir>
# -DCC=<compiler> from the including script's command line.
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)

# Run a command; fail the check on a nonzero status.  Its stdout is left
# in last_out for the caller to look at.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_out "${out}" PARENT_SCOPE)
endfunction()

# run(), and fail unless what it printed matches <regex>; <what> names the
# consumer in the message.
function(run_expect what regex)
  run(${ARGN})
  if(NOT last_out MATCHES "${regex}")
    message(FATAL_ERROR "${what} printed: ${last_out}")
  endif()
endfunction()

# The compile and link flags that pkg-config gives for <module> from the
# scratch prefix, as a list in <var>.
function(pkg_config_flags var module)
  set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig:${prefix}/lib64/pkgconfig")
  run(pkg-config --cflags --libs ${module})
  string(STRIP "${last_out}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  set(${var} ${flags} PARENT_SCOPE)
endfunction()

# Configure and build ${SRC}'s CMake project against the scratch prefix
# (find_package) in ${WORK}/cm.
function(build_with_find_package)
  run(${CMAKE_COMMAND} -S ${SRC} -B ${WORK}/cm -DCMAKE_PREFIX_PATH=${prefix}
      -DCMAKE_C_COMPILER=${CC} -DCMAKE_BUILD_RPATH=${prefix}/lib)
  run(${CMAKE_COMMAND} --build ${WORK}/cm)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix})
