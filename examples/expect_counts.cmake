# ctest helper for examples whose lines come in an order the scheduler
# picks: run the example and require each marker to occur exactly so many
# times in its output.
#   cmake -DEXE=<program> "-DMARKS=text1|text2" "-DTIMES=n1|n2" -P expect_counts.cmake
cmake_minimum_required(VERSION 3.25)
execute_process(COMMAND ${EXE} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
  TIMEOUT 60)
message("${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} exited with ${rc}\n${err}")
endif()
string(REPLACE "|" ";" marks "${MARKS}")
string(REPLACE "|" ";" times "${TIMES}")
foreach(mark want IN ZIP_LISTS marks times)
  # Count by deleting: (length before - length after) / length of the mark.
  string(LENGTH "${out}" before)
  string(REPLACE "${mark}" "" without "${out}")
  string(LENGTH "${without}" after)
  string(LENGTH "${mark}" len)
  math(EXPR n "(${before} - ${after}) / ${len}")
  if(NOT n EQUAL want)
    message(FATAL_ERROR "'${mark}' occurs ${n} times, expected ${want}")
  endif()
endforeach()
