# One version everywhere: CMake's project(VERSION) against what the library
# reports (mp_version()), the header's macros, the pkg-config file, the CMake
# package's ConfigVersion file and the shared library's SONAME.
# -DEXE=<mp_print_version> -DVERSION=<PROJECT_VERSION> -DPC=<multiproc.pc>
# -DCONFIGVERSION=<multiprocConfigVersion.cmake> -DSONAME=<libmultiproc.so.N>
# -DCHANGELOG=<CHANGELOG.md>
set(errors "")
macro(expect what got want)
  if(NOT "${got}" STREQUAL "${want}")
    string(APPEND errors "\n  ${what} is '${got}', project(VERSION) is '${want}'")
  endif()
endmacro()

execute_process(COMMAND ${EXE} RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} failed (${rc})")
endif()
foreach(key mp_version MULTIPROC_VERSION MULTIPROC_VERSION_NUMBERS)
  if(out MATCHES "(^|\n)${key}=([^\n]*)")
    expect("${key} (mp_print_version)" "${CMAKE_MATCH_2}" "${VERSION}")
  else()
    string(APPEND errors "\n  ${EXE} printed no ${key}")
  endif()
endforeach()

file(STRINGS ${PC} pc_version REGEX "^Version:")
string(REGEX REPLACE "^Version: *" "" pc_version "${pc_version}")
expect("Version: in ${PC}" "${pc_version}" "${VERSION}")

include(${CONFIGVERSION})          # sets PACKAGE_VERSION
expect("PACKAGE_VERSION in ${CONFIGVERSION}" "${PACKAGE_VERSION}" "${VERSION}")

string(REGEX MATCH "^[0-9]+" major "${VERSION}")
expect("the SONAME" "${SONAME}" "libmultiproc.so.${major}")

if(CHANGELOG)
  file(READ ${CHANGELOG} log)
  if(NOT log MATCHES "\n## \\[${VERSION}\\]")
    string(APPEND errors "\n  ${CHANGELOG} has no '## [${VERSION}]' entry")
  endif()
endif()

if(errors)
  message(FATAL_ERROR "version mismatch:${errors}")
endif()
message(STATUS "version ${VERSION}: library, header, multiproc.pc, ConfigVersion, SONAME"
               " and CHANGELOG.md agree")
