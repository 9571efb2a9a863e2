# Install the built tree to a scratch prefix, then build the MPI consumer
# against it with pkg-config multiproc-mpi and with find_package(multiproc
# COMPONENTS mpi), and run each under mpiexec -n 3 (run_mpi.sh).
# -DBUILD=<build dir> -DSRC=<this directory> -DWORK=<scratch dir> -DCC=<compiler>
# -DRUN=<run_mpi.sh> -DMPIEXEC=<mpiexec>
include(${CMAKE_CURRENT_LIST_DIR}/../../install/install_common.cmake)

foreach(f include/multiproc/mpi.h lib/libmultiproc-mpi.a lib/pkgconfig/multiproc-mpi.pc)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()

# pkg-config
pkg_config_flags(flags multiproc-mpi)
run(${CC} ${SRC}/consumer_mpi.c ${flags} -Wl,-rpath,${prefix}/lib -o ${WORK}/consumer_mpi_pc)
run_expect("pkg-config consumer"
           "consumer_mpi: 10000 items, item 4321 alone failed \\(MP_EWORKER, signal 9\\) ok"
           ${RUN} 120 3 ${MPIEXEC} ${WORK}/consumer_mpi_pc)

# find_package(multiproc COMPONENTS mpi)
build_with_find_package()
run_expect("find_package consumer" "consumer_mpi: .* ok"
           ${RUN} 120 3 ${MPIEXEC} ${WORK}/cm/consumer_mpi_cmake)
file(REMOVE_RECURSE ${WORK})
message(STATUS "install, pkg-config multiproc-mpi and find_package(multiproc COMPONENTS mpi): ok")
