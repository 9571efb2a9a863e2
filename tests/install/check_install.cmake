# Install the built tree to a scratch prefix, then build and run the
# consumer against it with pkg-config and with find_package(multiproc).
# -DBUILD=<build dir> -DSRC=<this directory> -DWORK=<scratch dir> -DCC=<compiler>
# Optional: -DCXX=<C++ compiler> -DCXX_SRC=<C++ program>, to build that
# program too, as C++11 with -pedantic -Werror (skipped without a compiler).
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_out "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix})

# man pages, and link pages for the functions they describe
foreach(page multiproc mp_queue_new mp_queue_put mp_listener_new mp_imap_next)
  if(NOT EXISTS ${prefix}/share/man/man3/${page}.3)
    message(FATAL_ERROR "not installed: share/man/man3/${page}.3")
  endif()
endforeach()

# pkg-config
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig:${prefix}/lib64/pkgconfig")
run(pkg-config --cflags --libs multiproc)
string(STRIP "${last_out}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CC} ${SRC}/consumer.c ${flags} -Wl,-rpath,${prefix}/lib -o ${WORK}/consumer_pc)
run(${WORK}/consumer_pc)
if(NOT last_out MATCHES "consumer: .* ok")
  message(FATAL_ERROR "pkg-config consumer printed: ${last_out}")
endif()

# pkg-config, from C++: the installed header compiles as C++11
if(CXX AND CXX_SRC)
  run(${CXX} -std=c++11 -Wall -Wextra -pedantic -Werror ${CXX_SRC} ${flags}
      -Wl,-rpath,${prefix}/lib -o ${WORK}/consumer_cxx)
  run(${WORK}/consumer_cxx)
  if(NOT last_out MATCHES "cxx consumer: .* ok")
    message(FATAL_ERROR "C++ consumer printed: ${last_out}")
  endif()
  set(cxx_done ", C++")
else()
  message(STATUS "no C++ compiler: the C++ consumer is not checked")
endif()

# find_package
run(${CMAKE_COMMAND} -S ${SRC} -B ${WORK}/cm -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_C_COMPILER=${CC} -DCMAKE_BUILD_RPATH=${prefix}/lib)
run(${CMAKE_COMMAND} --build ${WORK}/cm)
foreach(exe consumer_cmake consumer_cmake_static)
  run(${WORK}/cm/${exe})
  if(NOT last_out MATCHES "consumer: .* ok")
    message(FATAL_ERROR "${exe} printed: ${last_out}")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
message(STATUS "install, pkg-config${cxx_done} and find_package: ok")
