#!/usr/bin/env bash
# The public headers compile on their own, as C99 and as C++, with
# warnings as errors (like libinput's header test).
set -euo pipefail
src=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for h in "$src"/include/vmkit/*.h; do
  name=$(basename "$h")
  printf '#include <vmkit/%s>\nint main(void) { return 0; }\n' "$name" > "$tmp/t.c"
  cc -std=c99 -pedantic -Wall -Wextra -Werror -I"$src/include" -I"$build/include" \
    -c "$tmp/t.c" -o "$tmp/t.o" || { echo "FAIL: $name as C99"; exit 1; }
  cp "$tmp/t.c" "$tmp/t.cpp"
  c++ -std=c++11 -pedantic -Wall -Wextra -Werror -I"$src/include" -I"$build/include" \
    -c "$tmp/t.cpp" -o "$tmp/t.o" || { echo "FAIL: $name as C++"; exit 1; }
done
echo "headers OK"
