# ctest "install": install the build tree into a temporary prefix (not a
# system directory), check that headers, libraries, package files and docs
# land, then build and run consumers with find_package(mpipc) (shared and
# static targets, from their build tree and installed) and with pkg-config.
# Every consumer runs with LD_LIBRARY_PATH unset: the rpath must find the
# library. Arguments: BUILD_DIR, SOURCE_DIR, WORK_DIR, C_COMPILER, and
# EXTRA_FLAGS (the sanitizer flags the library was built with, if any).
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

# run_consumer(<label> <program>): runs it without LD_LIBRARY_PATH and
# requires its "consumer ok" line.
function(run_consumer label exe)
  run(${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH "${exe}")
  if(NOT last_output MATCHES "consumer ok")
    message(FATAL_ERROR "${label} (${exe}) printed: ${last_output}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/mpipc.h include/mpipc/conn.h include/mpipc/version.h)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
# The headers point to docs/*.md: they are installed under share/doc/mpipc,
# with the README, the licence and CHANGES.md when the source has one.
set(docs wire.md manager.md conventions.md architecture.md guide.md README.md LICENSE)
if(EXISTS "${SOURCE_DIR}/../../CHANGES.md")
  list(APPEND docs CHANGES.md)
endif()
foreach(f IN LISTS docs)
  if(NOT EXISTS "${prefix}/share/doc/mpipc/${f}")
    message(FATAL_ERROR "not installed: share/doc/mpipc/${f}")
  endif()
endforeach()
file(GLOB_RECURSE pcs "${prefix}/*/mpipc.pc")
file(GLOB_RECURSE configs "${prefix}/*/mpipcConfig.cmake")
file(STRINGS "${prefix}/include/mpipc/version.h" major_line REGEX "define MP_VERSION_MAJOR ")
string(REGEX REPLACE ".*MAJOR ([0-9]+).*" "\\1" major "${major_line}")
file(GLOB_RECURSE sonames "${prefix}/*/libmpipc.so.${major}")
file(GLOB_RECURSE statics "${prefix}/*/libmpipc.a")
foreach(v pcs configs sonames statics)
  if(NOT ${v})
    message(FATAL_ERROR "install is missing ${v}")
  endif()
endforeach()
list(GET pcs 0 pc)
get_filename_component(pcdir "${pc}" DIRECTORY)
file(STRINGS "${prefix}/include/mpipc/version.h" vlines REGEX "define MP_VERSION_(MAJOR|MINOR) ")
string(REGEX REPLACE ".*MAJOR ([0-9]+).*MINOR ([0-9]+).*" "\\1.\\2" version "${vlines}")

# Route 1: find_package(mpipc), both the shared and the static target. In
# its build tree CMake's build rpath finds the library; once installed,
# CMAKE_INSTALL_RPATH_USE_LINK_PATH (set by the consumer) does.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/consumer" -B "${WORK_DIR}/cmake-build"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
    -DMPIPC_WANT_VERSION=${version} -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/app
    "-DCMAKE_C_FLAGS=${EXTRA_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}")
run(${CMAKE_COMMAND} --build "${WORK_DIR}/cmake-build")
run(${CMAKE_COMMAND} --install "${WORK_DIR}/cmake-build")
foreach(exe consumer consumer_static)
  run_consumer("find_package, build tree" "${WORK_DIR}/cmake-build/${exe}")
  run_consumer("find_package, installed" "${WORK_DIR}/app/bin/${exe}")
endforeach()

# Route 2: pkg-config, the way a Makefile user builds. The prefix is not a
# system directory, so Libs carries -Wl,-rpath,${libdir}.
find_program(PKG_CONFIG pkg-config REQUIRED)
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} ${PKG_CONFIG} --cflags --libs mpipc)
string(STRIP "${last_output}" flags)
if(NOT flags MATCHES "-Wl,-rpath,")
  message(FATAL_ERROR "pkg-config --libs for a non-system prefix has no rpath: ${flags}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags} ${EXTRA_FLAGS}")
run(${C_COMPILER} "${SOURCE_DIR}/consumer/consumer.c" ${flags} -o "${WORK_DIR}/pc-consumer")
run_consumer("pkg-config" "${WORK_DIR}/pc-consumer")
# The static library through pkg-config, as the README shows (naming the
# archive: -lmpipc would pick the .so).
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} ${PKG_CONFIG} --cflags mpipc)
separate_arguments(static_flags UNIX_COMMAND "${last_output}")
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} ${PKG_CONFIG} --variable=libdir mpipc)
string(STRIP "${last_output}" pc_libdir)
list(APPEND static_flags "${pc_libdir}/libmpipc.a")
separate_arguments(extra UNIX_COMMAND "${EXTRA_FLAGS}")
run(${C_COMPILER} "${SOURCE_DIR}/consumer/consumer.c" ${static_flags} -pthread -lm ${extra}
    -o "${WORK_DIR}/pc-static")
run_consumer("pkg-config, static" "${WORK_DIR}/pc-static")
# The installed .pc describes a relocatable prefix: moved elsewhere, it
# still gives flags that build a program that runs.
file(RENAME "${prefix}" "${WORK_DIR}/moved")
string(REPLACE "${prefix}" "${WORK_DIR}/moved" pcdir "${pcdir}")
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} ${PKG_CONFIG} --cflags --libs mpipc)
string(STRIP "${last_output}" flags)
separate_arguments(flags UNIX_COMMAND "${flags} ${EXTRA_FLAGS}")
run(${C_COMPILER} "${SOURCE_DIR}/consumer/consumer.c" ${flags} -o "${WORK_DIR}/pc-moved")
run_consumer("pkg-config, moved prefix" "${WORK_DIR}/pc-moved")
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} ${PKG_CONFIG} --modversion mpipc)
string(STRIP "${last_output}" version)
message(STATUS "installed libmpipc ${version} works through find_package and pkg-config, without LD_LIBRARY_PATH")
