# Install-time half of mpipc.pc: run by `cmake --install` (install(CODE) in
# the top CMakeLists.txt), where CMAKE_INSTALL_PREFIX is the real prefix.
# Writes the relocatable .pc and decides whether its Libs carry an rpath.
#
# Why an rpath: a program linked with `$(pkg-config --libs mpipc)` against a
# prefix the dynamic loader does not search (/opt/mpipc, $HOME/.local) would
# otherwise need LD_LIBRARY_PATH to start. Why only there: in /usr/lib or
# /usr/local/lib the loader finds the library already, and distributions
# forbid an rpath to a system directory. MPIPC_PC_RPATH=ON/OFF overrides.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(_mp_libdir "${CMAKE_INSTALL_LIBDIR}")
else()
  set(_mp_libdir "${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}")
endif()
get_filename_component(_mp_real "${_mp_libdir}" REALPATH)

set(_mp_system FALSE)
foreach(_mp_dir IN LISTS MPIPC_PC_SYSTEM_DIRS)
  if(_mp_dir)
    get_filename_component(_mp_dir "${_mp_dir}" REALPATH)
    if(_mp_dir STREQUAL _mp_real)
      set(_mp_system TRUE)
    endif()
  endif()
endforeach()
# /usr/local/lib is searched by the loader's default configuration
# (/etc/ld.so.conf.d/libc.conf) though not by the linker's implicit path.
if(_mp_real MATCHES "^/usr/local/lib(64|/[^/]*-linux-gnu)?$")
  set(_mp_system TRUE)
endif()

if(MPIPC_PC_RPATH STREQUAL "ON" OR (MPIPC_PC_RPATH STREQUAL "AUTO" AND NOT _mp_system))
  set(MPIPC_PC_LIBS_RPATH " -Wl,-rpath,\${libdir}")
else()
  set(MPIPC_PC_LIBS_RPATH "")
endif()
configure_file("${MPIPC_PC_IN}" "${MPIPC_PC_OUT}" @ONLY)
# file(INSTALL) applies DESTDIR and records the file in install_manifest.txt.
file(INSTALL DESTINATION "${_mp_libdir}/pkgconfig" TYPE FILE FILES "${MPIPC_PC_OUT}")
