#!/usr/bin/env bash
# The embedding example in README.md is examples/embed.c verbatim, which
# the build compiles (so the README's code compiles).
set -euo pipefail
src=$1
readme_code=$(awk '/<!-- embed.c begin -->/{f=1; next} /<!-- embed.c end -->/{f=0} f' "$src/README.md" |
  sed '/^```/d')
if [ "$readme_code" != "$(cat "$src/examples/embed.c")" ]; then
  echo "FAIL: README.md's embedding example differs from examples/embed.c"
  diff <(printf '%s\n' "$readme_code") "$src/examples/embed.c" || true
  exit 1
fi
echo "README example matches examples/embed.c ($(wc -l <"$src/examples/embed.c") lines)"
