# The PyPI ROS 2 wheels export *__rosidl_generator_py targets whose include paths point at the
# manylinux build interpreter (/opt/python/...). Re-point them at this interpreter. Harmless on a
# normal ROS install (nothing matches there).
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
get_property(_imported DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(_t IN LISTS _imported)
  get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
  if(_inc AND "${_inc}" MATCHES "/opt/python/")
    list(FILTER _inc EXCLUDE REGEX "^/opt/python/")
    list(APPEND _inc ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
    set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_inc}")
  endif()
endforeach()
