#!/usr/bin/env bash
# examples/custom-device end to end: an embedder's own virtio device
# (upper-cases requests) and legacy port, driven by the guest-kit guest
# tests/guest/upcase.c over virtio-pci and virtio-mmio.
# usage: test-custom-device.sh CUSTOM-DEVICE UPCASE-ELF
set -uo pipefail
exe=$1 elf=$2
if [ ! -c /dev/kvm ]; then
  if [ "${CI:-}" = true ]; then echo "FAIL: CI=true but there is no /dev/kvm"; exit 1; fi
  echo "SKIP: needs /dev/kvm"; exit 77
fi
fails=0
for t in pci mmio; do
  out=$(timeout 120 "$exe" "$elf" "$t" "transport=$t" 2>&1)
  rc=$?
  # The guest exits through the exit port with 0: status (0 << 1) | 1.
  if [ "$rc" = 1 ] && grep -q "upcase reply=HELLO VMKIT len=11" <<<"$out" &&
     grep -q "upcase reply=CUSTOM DEVICE 42 len=16" <<<"$out" &&
     grep -q "upcase served=2 port=2" <<<"$out" &&
     grep -q "custom-device: port 0x520 <- 0xc0de" <<<"$out" &&
     grep -q "custom-device: upcase served 2 requests" <<<"$out"; then
    echo "ok   $t"
  else
    echo "FAIL $t (exit $rc):"; sed 's/^/  | /' <<<"$out" | tail -20
    fails=$((fails + 1))
  fi
done
[ "$fails" = 0 ]
