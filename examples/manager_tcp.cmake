# ctest driver for the manager_tcp_server / manager_tcp_client pair: runs
# both at once (execute_process starts its COMMANDs together, as a shell
# pipeline; the server writes nothing on stdout), the client finding the
# server through an address file. Both must exit 0: the client once its
# totals are exact, the server once the client's shutdown request arrives.
#   cmake -DSERVER=<exe> -DCLIENT=<exe> -DADDRESS_FILE=<path> -P manager_tcp.cmake
cmake_minimum_required(VERSION 3.25)
file(REMOVE "${ADDRESS_FILE}")
execute_process(
  COMMAND ${SERVER} ${ADDRESS_FILE}
  COMMAND ${CLIENT} ${ADDRESS_FILE}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULTS_VARIABLE rcs TIMEOUT 50)
execute_process(COMMAND ${CMAKE_COMMAND} -E echo_append "${err}${out}")
if(NOT rcs STREQUAL "0;0")
  message(FATAL_ERROR "server and client exited with ${rcs}")
endif()
