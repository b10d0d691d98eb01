# A minimal stand-in for a Slicer build tree's SlicerConfig.cmake, used by
# Testing/test_slicer_packaging.py to configure, build and install the extension without building
# Slicer (the idea of the Extensions Index's package_python_extension.py dummy SlicerConfig).
#
# It reproduces what matters for a Python-only extension: the same variables and macros
# (slicerMacroBuildScriptedModule, ctkMacroCompilePythonScript, slicer_add_python_unittest), the
# same layout (files copied keeping their path relative to the calling CMakeLists.txt, installed
# under lib/Slicer-X.Y/qt-scripted-modules) and a check of the EXTENSION_* metadata. A listed
# file that does not exist is a configure error, as in Slicer.

set(Slicer_FOUND TRUE)
set(Slicer_VERSION_MAJOR 5)
set(Slicer_VERSION_MINOR 13)
set(Slicer_REQUIRED_PYTHON_VERSION "3.12")
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-${Slicer_VERSION_MAJOR}.${Slicer_VERSION_MINOR}/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake")
list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_LIST_DIR}")
