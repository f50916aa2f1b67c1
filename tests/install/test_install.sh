#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds and runs a small
# program against it twice: through pkg-config (shared and static) and through
# CMake's find_package(dtrain).
set -euo pipefail
build=$1; src=$2
# Under a sanitizer build the consumer needs the same -fsanitize flags.
san=${DTRAIN_TEST_SANITIZE:+-fsanitize=$DTRAIN_TEST_SANITIZE}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
pc=$(find "$tmp/prefix" -name dtrain.pc | head -n1)
[ -n "$pc" ] || { echo "no dtrain.pc installed"; exit 1; }
test -x "$tmp/prefix/bin/dtinfo" || { echo "dtinfo not installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir dtrain)
test -f "$libdir/libdtrain.so" && test -f "$libdir/libdtrain.a" || { echo "libraries missing in $libdir"; exit 1; }

cc $san -Wall -Wextra -Werror -o "$tmp/consumer_shared" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs dtrain)
LD_LIBRARY_PATH=$libdir "$tmp/consumer_shared" | tee "$tmp/out1"
grep -q "consumer ok" "$tmp/out1"
cc $san -Wall -Wextra -Werror -o "$tmp/consumer_static" "$src/tests/install/consumer.c" $(pkg-config --cflags dtrain) \
   "$libdir/libdtrain.a" $(pkg-config --static --libs-only-l dtrain | sed 's/-ldtrain//')
"$tmp/consumer_static" | grep -q "consumer ok"

mkdir -p "$tmp/cm"
cp "$src/tests/install/consumer.c" "$tmp/cm/"
cat > "$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(dtrain 0.1 REQUIRED)
add_executable(consumer consumer.c)
target_link_libraries(consumer PRIVATE dtrain::dtrain)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_FLAGS="$san" > "$tmp/cm.log" 2>&1 || { cat "$tmp/cm.log"; exit 1; }
cmake --build "$tmp/cm/build" > "$tmp/cmb.log" 2>&1 || { cat "$tmp/cmb.log"; exit 1; }
LD_LIBRARY_PATH=$libdir "$tmp/cm/build/consumer" | grep -q "consumer ok"
echo "install test passed"
