# Install the built tree to a scratch prefix, then build the MPI consumer
# against it with pkg-config multiproc-mpi and with find_package(multiproc
# COMPONENTS mpi), and run each under mpiexec -n 3 (run_mpi.sh).
# -DBUILD=<build dir> -DSRC=<this directory> -DWORK=<scratch dir> -DCC=<compiler>
# -DRUN=<run_mpi.sh> -DMPIEXEC=<mpiexec>
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
foreach(f include/multiproc/mpi.h lib/libmultiproc-mpi.a lib/pkgconfig/multiproc-mpi.pc)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# pkg-config
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig:${prefix}/lib64/pkgconfig")
run(pkg-config --cflags --libs multiproc-mpi)
string(STRIP "${last_out}" flags)
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${CC} ${SRC}/consumer_mpi.c ${flags} -Wl,-rpath,${prefix}/lib -o ${WORK}/consumer_mpi_pc)
run(${RUN} 120 3 ${MPIEXEC} ${WORK}/consumer_mpi_pc)
if(NOT last_out MATCHES "consumer_mpi: 10000 items, item 4321 alone failed \\(MP_EWORKER, signal 9\\) ok")
  message(FATAL_ERROR "pkg-config consumer printed: ${last_out}")
endif()

# find_package(multiproc COMPONENTS mpi)
run(${CMAKE_COMMAND} -S ${SRC} -B ${WORK}/cm -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_C_COMPILER=${CC} -DCMAKE_BUILD_RPATH=${prefix}/lib)
run(${CMAKE_COMMAND} --build ${WORK}/cm)
run(${RUN} 120 3 ${MPIEXEC} ${WORK}/cm/consumer_mpi_cmake)
if(NOT last_out MATCHES "consumer_mpi: .* ok")
  message(FATAL_ERROR "find_package consumer printed: ${last_out}")
endif()
file(REMOVE_RECURSE ${WORK})
message(STATUS "install, pkg-config multiproc-mpi and find_package(multiproc COMPONENTS mpi): ok")
