# Stand-in for Slicer's extension config generation: checks the EXTENSION_* metadata like the
# Extensions Index checks do, then writes the description file (<name>.s4ext) Slicer generates.
foreach(_var HOMEPAGE CATEGORY CONTRIBUTORS DESCRIPTION ICONURL SCREENSHOTURLS DEPENDS)
  if("${EXTENSION_${_var}}" STREQUAL "")
    message(FATAL_ERROR "EXTENSION_${_var} is not set")
  endif()
endforeach()
if(PROJECT_NAME MATCHES "^Slicer")
  message(FATAL_ERROR "The extension name must not start with 'Slicer' (the repository name should)")
endif()
set(_accepted "Active Learning;Cardiac;Diffusion;DICOM;Examples;Filtering;Informatics;IGT;Neuroimaging;Quantification;Radiotherapy;Registration;Segmentation;Shape Analysis;Spectral Imaging;Surface Models;Utilities;Wizards")
list(FIND _accepted "${EXTENSION_CATEGORY}" _index)
if(_index EQUAL -1)
  message(FATAL_ERROR "EXTENSION_CATEGORY '${EXTENSION_CATEGORY}' is not an accepted category")
endif()
foreach(_url ${EXTENSION_ICONURL} ${EXTENSION_SCREENSHOTURLS})
  if(NOT _url MATCHES "^https://raw\\.githubusercontent\\.com/.+/Slicer${PROJECT_NAME}/.+\\.(png|jpg)$")
    message(FATAL_ERROR "Image URL ${_url} is not a raw GitHub URL in the Slicer${PROJECT_NAME} repository")
  endif()
endforeach()
file(WRITE "${CMAKE_BINARY_DIR}/${PROJECT_NAME}.s4ext"
  "homepage ${EXTENSION_HOMEPAGE}\ncategory ${EXTENSION_CATEGORY}\ncontributors ${EXTENSION_CONTRIBUTORS}\n"
  "description ${EXTENSION_DESCRIPTION}\niconurl ${EXTENSION_ICONURL}\nscreenshoturls ${EXTENSION_SCREENSHOTURLS}\n"
  "depends ${EXTENSION_DEPENDS}\n")
