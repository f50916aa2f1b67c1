# Third-party libraries the library links, all from Debian packages (scripts/install-deps):
#   zlib (gzip datasets), OpenSSL libcrypto (HMAC for DTRAIN_SECRET), cJSON (safetensors
#   headers, snapshot records), OpenBLAS (GEMM). Appends to DTRAIN_LINK_LIBS.
find_package(ZLIB REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(PkgConfig REQUIRED)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
find_library(OPENBLAS_LIB NAMES openblas REQUIRED)
find_path(CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas x86_64-linux-gnu/openblas-pthread openblas-pthread REQUIRED)
list(APPEND DTRAIN_LINK_LIBS ZLIB::ZLIB OpenSSL::Crypto PkgConfig::CJSON ${OPENBLAS_LIB})
set(DTRAIN_LINK_LIBS ${DTRAIN_LINK_LIBS} CACHE INTERNAL "")
set(DTRAIN_PC_LIBS_PRIVATE "-lopenblas -lcjson -lcrypto -lz -lpthread -lm -lrt" CACHE INTERNAL "")
