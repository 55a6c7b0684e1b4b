# ctest "install": install the build tree into a temporary prefix, then build
# and run a consumer with find_package(mpipc) (shared and static targets) and
# one with pkg-config. Arguments: BUILD_DIR, SOURCE_DIR, WORK_DIR, C_COMPILER,
# and EXTRA_FLAGS (the sanitizer flags the library was built with, if any).
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/mpipc.h include/mpipc/conn.h include/mpipc/version.h)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
file(GLOB_RECURSE pcs "${prefix}/*/mpipc.pc")
file(GLOB_RECURSE configs "${prefix}/*/mpipcConfig.cmake")
file(GLOB_RECURSE sonames "${prefix}/*/libmpipc.so.0")
file(GLOB_RECURSE statics "${prefix}/*/libmpipc.a")
foreach(v pcs configs sonames statics)
  if(NOT ${v})
    message(FATAL_ERROR "install is missing ${v}")
  endif()
endforeach()
list(GET pcs 0 pc)
get_filename_component(pcdir "${pc}" DIRECTORY)
list(GET sonames 0 so)
get_filename_component(libdir "${so}" DIRECTORY)

# Route 1: find_package(mpipc), both the shared and the static target.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/consumer" -B "${WORK_DIR}/cmake-build"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
    "-DCMAKE_C_FLAGS=${EXTRA_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}")
run(${CMAKE_COMMAND} --build "${WORK_DIR}/cmake-build")
foreach(exe consumer consumer_static)
  run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir} "${WORK_DIR}/cmake-build/${exe}")
  if(NOT last_output MATCHES "consumer ok")
    message(FATAL_ERROR "${exe} printed: ${last_output}")
  endif()
endforeach()

# Route 2: pkg-config, the way a Makefile user builds.
find_program(PKG_CONFIG pkg-config REQUIRED)
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} ${PKG_CONFIG} --cflags --libs mpipc)
string(STRIP "${last_output}" flags)
separate_arguments(flags UNIX_COMMAND "${flags} ${EXTRA_FLAGS}")
run(${C_COMPILER} "${SOURCE_DIR}/consumer/consumer.c" ${flags} -o "${WORK_DIR}/pc-consumer")
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir} "${WORK_DIR}/pc-consumer")
if(NOT last_output MATCHES "consumer ok")
  message(FATAL_ERROR "pkg-config consumer printed: ${last_output}")
endif()
# The installed .pc describes a relocatable prefix.
run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pcdir} ${PKG_CONFIG} --modversion mpipc)
message(STATUS "installed libmpipc ${last_output} works through find_package and pkg-config")
