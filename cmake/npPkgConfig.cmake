# np_install_pkgconfig(TEMPLATE NAME): installs NAME.pc made from TEMPLATE,
# generated at install time so that both CMAKE_INSTALL_PREFIX and
# `cmake --install --prefix DIR` give it the right paths. The template sees
# @NP_PC_PREFIX@, @NP_PC_LIBDIR@, @NP_PC_INCLUDEDIR@ and @NP_PC_VERSION@.
function(np_install_pkgconfig template name)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${name}.pc")
  install(CODE "
    set(NP_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
    set(NP_PC_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
    set(NP_PC_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
    foreach(d NP_PC_LIBDIR NP_PC_INCLUDEDIR)
      if(NOT IS_ABSOLUTE \"\${\${d}}\")
        set(\${d} \"\\\${prefix}/\${\${d}}\")
      endif()
    endforeach()
    set(NP_PC_VERSION \"${PROJECT_VERSION}\")
    configure_file(\"${template}\" \"${out}\" @ONLY)
  ")
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()
