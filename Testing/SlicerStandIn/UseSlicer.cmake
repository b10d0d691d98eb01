# Stand-in for Slicer's UseSlicer.cmake (see SlicerConfig.cmake).
include(ctkMacroCompilePythonScript)
option(BUILD_TESTING "Register the module tests" ON)
enable_testing()

set(_standin_record "${CMAKE_BINARY_DIR}/SlicerStandInRecord.txt")
file(WRITE "${_standin_record}" "")

function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT MY_NAME)
    message(FATAL_ERROR "slicerMacroBuildScriptedModule: NAME is mandatory")
  endif()
  if(MY_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "slicerMacroBuildScriptedModule: unknown arguments ${MY_UNPARSED_ARGUMENTS}")
  endif()
  list(FIND MY_SCRIPTS "${MY_NAME}.py" _index)
  if(_index EQUAL -1)
    message(FATAL_ERROR "slicerMacroBuildScriptedModule: SCRIPTS must list ${MY_NAME}.py")
  endif()
  ctkMacroCompilePythonScript(
    TARGET_NAME ${MY_NAME}
    SCRIPTS "${MY_SCRIPTS}"
    RESOURCES "${MY_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
    NO_INSTALL_SUBDIR
    )
  file(APPEND "${CMAKE_BINARY_DIR}/SlicerStandInRecord.txt" "module ${MY_NAME}\n")
  if(MY_WITH_GENERIC_TESTS)
    file(APPEND "${CMAKE_BINARY_DIR}/SlicerStandInRecord.txt" "generic-tests ${MY_NAME}\n")
  endif()
endfunction()

function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT;TESTNAME_PREFIX" "SLICER_ARGS" ${ARGN})
  if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT}")
    message(FATAL_ERROR "slicer_add_python_unittest: ${MY_SCRIPT} not found")
  endif()
  get_filename_component(_name "${MY_SCRIPT}" NAME_WE)
  # Real Slicer runs: Slicer --no-splash --testing --python-code "slicer.testing.runUnitTest(...)"
  add_test(NAME py_${MY_TESTNAME_PREFIX}${_name} COMMAND ${CMAKE_COMMAND} -E echo "would run ${_name}Test in Slicer")
  file(APPEND "${CMAKE_BINARY_DIR}/SlicerStandInRecord.txt" "python-unittest ${MY_SCRIPT}\n")
endfunction()
