# Install the built tree to a scratch prefix, then build and run the
# consumer against it with pkg-config and with find_package(multiproc).
# -DBUILD=<build dir> -DSRC=<this directory> -DWORK=<scratch dir> -DCC=<compiler>
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
message(STATUS "install, pkg-config and find_package: ok")
