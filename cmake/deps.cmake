# Third-party libraries the library links, all from Debian packages (scripts/install-deps).
# Appends to DTRAIN_LINK_LIBS; later layers add theirs here (OpenBLAS, zlib, ...).
find_package(ZLIB REQUIRED)
list(APPEND DTRAIN_LINK_LIBS ZLIB::ZLIB)
set(DTRAIN_LINK_LIBS ${DTRAIN_LINK_LIBS} CACHE INTERNAL "")
set(DTRAIN_PC_LIBS_PRIVATE "-lz -lpthread -lm -lrt" CACHE INTERNAL "")
