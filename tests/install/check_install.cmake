# Install the built tree to a scratch prefix, then build and run the
# consumer against it with pkg-config and with find_package(multiproc).
# -DBUILD=<build dir> -DSRC=<this directory> -DWORK=<scratch dir> -DCC=<compiler>
# Optional: -DCXX=<C++ compiler> -DCXX_SRC=<C++ program>, to build that
# program too, as C++11 with -pedantic -Werror (skipped without a compiler).
include(${CMAKE_CURRENT_LIST_DIR}/install_common.cmake)

# man pages, and link pages for the functions they describe
foreach(page multiproc mp_queue_new mp_queue_put mp_listener_new mp_imap_next)
  if(NOT EXISTS ${prefix}/share/man/man3/${page}.3)
    message(FATAL_ERROR "not installed: share/man/man3/${page}.3")
  endif()
endforeach()

# pkg-config
pkg_config_flags(flags multiproc)
run(${CC} ${SRC}/consumer.c ${flags} -Wl,-rpath,${prefix}/lib -o ${WORK}/consumer_pc)
run_expect("pkg-config consumer" "consumer: .* ok" ${WORK}/consumer_pc)

# pkg-config, from C++: the installed header compiles as C++11
if(CXX AND CXX_SRC)
  run(${CXX} -std=c++11 -Wall -Wextra -pedantic -Werror ${CXX_SRC} ${flags}
      -Wl,-rpath,${prefix}/lib -o ${WORK}/consumer_cxx)
  run_expect("C++ consumer" "cxx consumer: .* ok" ${WORK}/consumer_cxx)
  set(cxx_done ", C++")
else()
  message(STATUS "no C++ compiler: the C++ consumer is not checked")
endif()

# find_package
build_with_find_package()
foreach(exe consumer_cmake consumer_cmake_static)
  run_expect(${exe} "consumer: .* ok" ${WORK}/cm/${exe})
endforeach()
file(REMOVE_RECURSE ${WORK})
message(STATUS "install, pkg-config${cxx_done} and find_package: ok")
