#!/usr/bin/env bash
# libvmkit.so exports exactly the public API: every dynamic symbol it
# defines starts with vmkit_ and carries the VMKIT_0.1 version node, and
# every VMKIT_EXPORT function in the headers is exported.
set -euo pipefail
src=$1 lib=$2
defined=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}')
bad=$(printf '%s\n' "$defined" | grep -v '^vmkit_[a-z0-9_]*@@VMKIT_0\.1$' | grep -v '^VMKIT_0\.1@@VMKIT_0\.1$' || true)
if [ -n "$bad" ]; then
  echo "FAIL: symbols leak out of the version script:"; echo "$bad"; exit 1
fi
want=$(grep -h -v '^#' "$src"/include/vmkit/*.h | grep -o 'VMKIT_EXPORT [^(]*(' | sed -E 's/.*[ *]([a-z0-9_]+)\($/\1/' | sort -u)
have=$(printf '%s\n' "$defined" | sed 's/@.*//' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$want") <(printf '%s\n' "$have"))
if [ -n "$missing" ]; then
  echo "FAIL: declared in the headers but not exported:"; echo "$missing"; exit 1
fi
echo "symbols OK: $(printf '%s\n' "$have" | wc -l) exported"
