#!/usr/bin/env bash
# vmkit-run's handling of bad input: each case must exit non-zero (not by
# a signal), print exactly one line on stderr naming the problem, and not
# hang. Then the good path: a flat test guest's exit-port status becomes
# the process exit status.
set -uo pipefail
run=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
prefix=()

check() { # name expected-substring -- args...
  local name=$1 want=$2; shift 3
  local rc
  timeout 60 "${prefix[@]}" "$run" "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
  rc=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  if [ "$rc" -eq 0 ] || [ "$rc" -ge 124 ]; then
    echo "FAIL $name: exit status $rc"; fails=$((fails + 1)); return
  fi
  if [ "$lines" -ne 1 ]; then
    echo "FAIL $name: $lines lines on stderr:"; cat "$tmp/err"; fails=$((fails + 1)); return
  fi
  if ! grep -qi -- "$want" "$tmp/err"; then
    echo "FAIL $name: stderr lacks '$want': $(cat "$tmp/err")"; fails=$((fails + 1)); return
  fi
  echo "ok   $name: $(cat "$tmp/err")"
  passes=$((passes + 1))
}

# Cases whose error comes only once /dev/kvm is open (files, devices):
# without KVM they skip here, saying so, except under CI=true.
kcheck() {
  if [ ! -c /dev/kvm ] && [ "${CI:-}" != true ]; then
    echo "skip $1: needs /dev/kvm (vmkit-run opens it before the files)"
    return
  fi
  check "$@"
}

printf 'plain text, not a kernel\n' >"$tmp/notkernel"
printf '{ "cpus": 2,\n  "memory_mib": }\n' >"$tmp/bad.json"
printf '{ "kernal": "/x" }\n' >"$tmp/unknown.json"

kcheck missing-kernel    "no such file"        -- --kernel "$tmp/nonexistent"
kcheck not-a-kernel      "not a"               -- --kernel "$tmp/notkernel"
kcheck missing-initrd    "no such file"        -- --kernel "$tmp/notkernel" --initrd "$tmp/nope"
kcheck no-kernel         "no kernel or firmware" --
check mem-too-small     "too small"           -- --kernel "$tmp/notkernel" --mem 1
check mem-too-large     "too large"           -- --kernel "$tmp/notkernel" --mem 999999999999
check mem-not-number    "not a number"        -- --kernel "$tmp/notkernel" --mem lots
check cpus-zero         "out of range"        -- --kernel "$tmp/notkernel" --cpus 0
check cpus-too-many     "too large"           -- --kernel "$tmp/notkernel" --cpus 1000
check no-kvm-device     "no such device"      -- --kvm "$tmp/kvm" --kernel "$tmp/notkernel"
check not-kvm           "not a KVM device"    -- --kvm /dev/null --kernel "$tmp/notkernel"
check malformed-json    "malformed JSON at line 2" -- --config "$tmp/bad.json"
check unknown-json-key  "unknown key"         -- --config "$tmp/unknown.json"
check missing-config    "no such file"        -- --config "$tmp/none.json"
check unknown-flag      "see --help"          -- --kernal x
kcheck firmware-missing  "no such file"        -- --firmware "$tmp/nobios.bin"
# a kernel for the firmware must be a bzImage; option ROMs need firmware
head -c 65536 /dev/zero >"$tmp/fw.bin"
kcheck firmware-kernel-not-bzimage "setup header (firmware boots only a bzImage)" -- --firmware "$tmp/fw.bin" --kernel "$tmp/notkernel" --option-rom "$tmp/notkernel"
kcheck option-rom-missing "no such file"       -- --firmware "$tmp/fw.bin" --option-rom "$tmp/none.rom"
printf '{"firmware": "%s", "kernel": "%s", "kernel_format": "pvh"}\n' "$tmp/fw.bin" "$tmp/notkernel" >"$tmp/fw-pvh.json"
kcheck firmware-kernel-format "only a bzImage can be handed to the firmware" -- --config "$tmp/fw-pvh.json"
kcheck option-rom-no-firmware "option ROMs are for firmware" -- --kernel "$tmp/notkernel" --option-rom "$tmp/notkernel"
check option-rom-bad-name "file name must be"  -- --firmware "$tmp/fw.bin" --option-rom "$tmp/"
# virtio device flags
truncate -s 1M "$tmp/disk.img"
kcheck disk-missing      "no such file"        -- --kernel "$tmp/notkernel" --disk "$tmp/nodisk.img"
check disk-no-path      "a path is needed"    -- --kernel "$tmp/notkernel" --disk ,readonly
check disk-bad-option   "unknown option 'rw'" -- --kernel "$tmp/notkernel" --disk "$tmp/disk.img,rw"
check disk-bad-transport "unknown transport 'usb' (pci or mmio)" -- --kernel "$tmp/notkernel" --disk "$tmp/disk.img,transport=usb"
check disk-long-serial  "longer than 20 bytes" -- --kernel "$tmp/notkernel" --disk "$tmp/disk.img,serial=123456789012345678901"
kcheck disk-twice        "in use by another disk or process"              -- --kernel "$tmp/notkernel" --disk "$tmp/disk.img" --disk "$tmp/disk.img"
check rng-bad-rate      "not a number"        -- --kernel "$tmp/notkernel" --rng=rate=fast
check balloon-bad       "unknown option 'isa'" -- --kernel "$tmp/notkernel" --balloon=isa
check debugcon-dir      "is a directory"      -- --kernel "$tmp/notkernel" --debugcon "$tmp"
# network and vsock flags
k=(--kernel "$tmp/notkernel")
check net-no-backend    "exactly one of"      -- "${k[@]}" --net mac=52:54:00:00:00:01
check net-two-backends  "exactly one of"      -- "${k[@]}" --net "tap=t0,dgram=$tmp/sw.sock"
check net-bad-mac       "not a MAC address"   -- "${k[@]}" --net tap=t0,mac=52:54:00:zz:00:01
check net-multicast-mac "multicast"           -- "${k[@]}" --net tap=t0,mac=01:00:5e:00:00:01
check net-bad-option    "unknown option 'speed=10'" -- "${k[@]}" --net tap=t0,speed=10
check net-bad-rate      "'fast' is not a number" -- "${k[@]}" --net tap=t0,rx_bps=fast
check net-long-tap-name "longer than 15 bytes" -- "${k[@]}" --net tap=a-very-long-tap-name
check net-bad-transport "unknown transport 'isa'" -- "${k[@]}" --net tap=t0,transport=isa
kcheck net-stream-missing "no such file"       -- "${k[@]}" --net "stream=$tmp/nosock"
kcheck net-dgram-missing "no such file"        -- "${k[@]}" --net "dgram=$tmp/nosock"
kcheck net-bad-fd        "bad file descriptor" -- "${k[@]}" --net fd=99
check vsock-no-cid      "cid=N and path=PATH are needed" -- "${k[@]}" --vsock "path=$tmp/v.sock"
check vsock-bad-cid     "not in 3..4294967294" -- "${k[@]}" --vsock "cid=2,path=$tmp/v.sock"
check vsock-bad-option  "unknown option 'port=5'" -- "${k[@]}" --vsock "cid=3,path=$tmp/v.sock,port=5"
kcheck vsock-no-dir      "no such file"        -- "${k[@]}" --vsock "cid=3,path=$tmp/nodir/v.sock"
kcheck vsock-not-socket  "not a socket"        -- "${k[@]}" --vsock "cid=3,path=$tmp/notkernel"

# A FIFO with no writer where a file is expected: refused, never waited on.
mkfifo "$tmp/fifo"
kcheck kernel-fifo       "not a regular file"  -- --kernel "$tmp/fifo"
kcheck initrd-fifo       "not a regular file"  -- --kernel "$tmp/notkernel" --initrd "$tmp/fifo"
kcheck disk-fifo-ro      "not a regular file or block device" -- --kernel "$tmp/notkernel" --disk "$tmp/fifo,readonly"
check config-fifo       "not a regular file"  -- --config "$tmp/fifo"

# No permission: a user outside the kvm group (nobody, no groups) on a
# /dev/kvm that others may not open (root-only 0600 or Debian's 0660
# root:kvm). Needs root to switch users.
if [ -c /dev/kvm ] && [ "$(id -u)" = 0 ] && [ $((0$(stat -c %a /dev/kvm) & 06)) = 0 ] &&
   command -v setpriv >/dev/null; then
  chmod 755 "$tmp"; chmod 644 "$tmp/notkernel"
  prefix=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  check no-permission "permission denied" -- --kernel "$tmp/notkernel"
  prefix=()
else
  echo "skip no-permission: not root, /dev/kvm open to all users, or no setpriv here"
fi

# The good path needs KVM.
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  printf '\xb0\x2a\xe6\xf4\xeb\xfe' >"$tmp/exit42.bin"   # mov al,42; out 0xf4,al
  printf '{"kernel": "%s", "flat": {"load": "0x10000", "mode": "real"}, "memory_mib": 16}\n' \
    "$tmp/exit42.bin" >"$tmp/flat.json"
  timeout 60 "$run" --config "$tmp/flat.json" </dev/null >/dev/null 2>"$tmp/err"
  rc=$?
  if [ "$rc" -eq $(((42 << 1) | 1)) ]; then
    echo "ok   exit-port-status: $rc"; passes=$((passes + 1))
  else
    echo "FAIL exit-port-status: got $rc, want 85: $(cat "$tmp/err")"; fails=$((fails + 1))
  fi
elif [ "${CI:-}" = true ]; then
  echo "FAIL exit-port-status: CI=true but /dev/kvm is unusable"; fails=$((fails + 1))
else
  echo "skip exit-port-status: needs /dev/kvm"
fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
