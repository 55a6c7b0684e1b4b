# ctest "install_lib_preset": the README's install route (`cmake --workflow
# --preset lib`) must configure on a machine without libcmocka-dev and
# without python3. Simulated here: configure the lib preset with every
# system prefix hidden from find_* (CMAKE_IGNORE_PREFIX_PATH) and a PATH
# that holds only the compiler, assembler, linker and make - then check that
# the same configure with the tests switched on does fail, so the check can
# tell. Arguments: SOURCE_DIR (the project root), WORK_DIR, C_COMPILER.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}/bin")
foreach(tool as ld make)
  find_program(tool_${tool} ${tool} REQUIRED)
  file(CREATE_LINK "${tool_${tool}}" "${WORK_DIR}/bin/${tool}" SYMBOLIC)
endforeach()
set(hidden "-DCMAKE_IGNORE_PREFIX_PATH=/usr;/usr/local;/" "-DCMAKE_C_COMPILER=${C_COMPILER}"
  "-DCMAKE_MAKE_PROGRAM=${WORK_DIR}/bin/make")

# configure(<dir> <extra args>...): sets rc and log in the caller.
macro(configure dir)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PATH=${WORK_DIR}/bin
      ${CMAKE_COMMAND} -S "${SOURCE_DIR}" --preset lib -B "${WORK_DIR}/${dir}" ${hidden} ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
endmacro()

configure(lib)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the lib preset needs something beyond cc and make:\n${log}")
endif()
configure(with-tests -DMPIPC_BUILD_TESTS=ON)
if(rc EQUAL 0 OR NOT log MATCHES "cmocka")
  message(FATAL_ERROR "cmocka was not hidden, so the check proves nothing:\n${log}")
endif()
message(STATUS "the lib preset configures without cmocka and python3")
