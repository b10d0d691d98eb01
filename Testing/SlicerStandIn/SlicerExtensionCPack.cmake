# Stand-in for Slicer's extension CPack setup: a plain archive of the install tree.
set(CPACK_PACKAGE_NAME "${PROJECT_NAME}")
set(CPACK_GENERATOR "TGZ")
set(CPACK_PACKAGE_FILE_NAME "${PROJECT_NAME}-standin")
include(CPack)
