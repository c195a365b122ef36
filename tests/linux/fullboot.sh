#!/usr/bin/env bash
# Boot a stock Linux guest with the test initramfs through a launcher and
# assert what it reports (markers of tests/linux/guest-init).
#
# usage: tests/linux/fullboot.sh [options] [-- LAUNCHER [ARG...]]
#   LAUNCHER   default tests/linux/qemu-launcher; it gets
#              --kernel K --initrd I --cmdline C --mem MiB --cpus N appended
#              and must put the guest's serial console (ttyS0) on stdout
#              (vmkit-run has that interface)
# options:
#   --kernel FILE   default $VMKIT_CACHE/kernels/cloud/vmlinuz (bzImage)
#   --pvh           use $VMKIT_CACHE/kernels/cloud/vmlinux (ELF, PVH entry)
#   --initrd FILE   default: tests/linux/mkinitramfs's output
#   --cpus N        default 1;  --mem MiB  default 512
#   --end A         poweroff (default), reboot or panic: what init does last
#   --expect-rc N   the launcher's expected exit status (default 0)
#   --check NAME    one more vmkit.check (repeatable; ncpus, memtotal_kib
#                   and cmdline are always checked)
#   --run CMD       vmkit.run="CMD" (no double quotes in CMD)
#   --expect ERE    a console line must match ERE (grep -E; repeatable)
#   --append TEXT   more kernel command line
#   --timeout S     default 600;  --log FILE  keep the console output
# Checks: exit status; `VMKIT-INIT: userspace`; ncpus = --cpus; MemTotal
# between half of --mem and --mem; the command line came through (a nonce);
# `VMKIT-END <action>`; for panic the kernel's sysrq panic line; --expect.
# Prints one line per check and the time to the userspace marker; exits 0
# when all pass, 1 otherwise (with the console tail), 77 (skip) when a
# prerequisite is missing and CI is not "true".
set -euo pipefail
prog=fullboot
here=$(cd "$(dirname "$0")" && pwd)
VMKIT_CACHE=${VMKIT_CACHE:-$HOME/.cache/vmkit}

skip() {
  if [ "${CI:-}" = true ]; then
    echo "$prog: FAIL (prerequisite missing under CI): $*" >&2
    exit 1
  fi
  echo "$prog: SKIP: $*" >&2
  exit 77
}
usage_err() { echo "$prog: $*" >&2; exit 2; }

kernel='' initrd='' pvh=0 cpus=1 mem=512 end=poweroff expect_rc=0 timeout_s=600
append='' run='' log_keep=''
checks=(ncpus memtotal_kib cmdline)
expects=()
while [ $# -gt 0 ]; do
  case $1 in
    --kernel) kernel=${2:-}; shift ;;
    --pvh) pvh=1 ;;
    --initrd) initrd=${2:-}; shift ;;
    --cpus) cpus=${2:-}; shift ;;
    --mem) mem=${2:-}; shift ;;
    --end) end=${2:-}; shift ;;
    --expect-rc) expect_rc=${2:-}; shift ;;
    --check) checks+=("${2:-}"); shift ;;
    --run) run=${2:-}; shift ;;
    --expect) expects+=("${2:-}"); shift ;;
    --append) append=${2:-}; shift ;;
    --timeout) timeout_s=${2:-}; shift ;;
    --log) log_keep=${2:-}; shift ;;
    -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) usage_err "unknown option '$1' (see --help)" ;;
  esac
  shift
done
for v in cpus mem timeout_s; do
  [[ ${!v} =~ ^[1-9][0-9]{0,6}$ ]] || usage_err "bad --${v%_s} '${!v}'"
done
[[ $expect_rc =~ ^[0-9]{1,3}$ ]] || usage_err "bad --expect-rc '$expect_rc'"
case $end in poweroff | reboot | panic) ;; *) usage_err "bad --end '$end'" ;; esac
case $run in *'"'*) usage_err "--run CMD must not contain double quotes" ;; esac
if [ $# -gt 0 ]; then
  launcher=("$@")
else
  launcher=("$here/qemu-launcher")
fi

if [ -z "$kernel" ]; then
  if [ "$pvh" = 1 ]; then kernel=$VMKIT_CACHE/kernels/cloud/vmlinux; else kernel=$VMKIT_CACHE/kernels/cloud/vmlinuz; fi
fi
[ -r "$kernel" ] || skip "no kernel $kernel (run tests/linux/fetch-kernel)"
if [ -z "$initrd" ]; then
  initrd=$("$here/mkinitramfs" 2>&1) || skip "no test initramfs: ${initrd##*$'\n'}"
fi
[ -r "$initrd" ] || skip "cannot read initramfs $initrd"
command -v "${launcher[0]}" >/dev/null || skip "launcher ${launcher[0]} not found"
if [ "${launcher[0]}" = "$here/qemu-launcher" ] && [ "${VMKIT_QEMU_ACCEL:-kvm}" = kvm ]; then
  [ -w /dev/kvm ] || skip "no usable /dev/kvm"
  if [ -d /sys/module/kvm_pvm ]; then
    skip "this host's /dev/kvm is kvm_pvm, where stock Linux cannot boot; run this inside tests/hostvm/run"
  fi
fi

nonce=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
checklist=$(IFS=,; echo "${checks[*]}")
cmdline="console=ttyS0 panic=-1 vmkit.nonce=$nonce vmkit.check=$checklist vmkit.end=$end"
[ -z "$run" ] || cmdline+=" vmkit.run=\"$run\""
[ -z "$append" ] || cmdline+=" $append"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmkit-fullboot.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/console.log
: > "$log"

echo "$prog: ${launcher[*]##*/} --kernel ${kernel##*/} --cpus $cpus --mem $mem --end $end"
t0=$EPOCHREALTIME
set +e
# Stall diagnostics: when the console has not grown for 60 s, record where
# each thread of the launcher is (kernel wait channel, syscall, stack) so a
# hang can be told apart: a vCPU thread inside KVM_RUN vs. one in the VMM.
(
  last=-1 still=0
  while sleep 5; do
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    if [ "$size" = "$last" ]; then still=$((still + 5)); else still=0; last=$size; fi
    if [ "$still" -ge 60 ] && [ ! -e "$work/stall" ]; then
      for pid in $(pgrep -x vmkit-run) $(pgrep -f qemu-system-x86_64 | head -1); do
        for t in /proc/$pid/task/*; do
          echo "stall: pid $pid task ${t##*/} $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null) syscall=$(cut -d' ' -f1 "$t/syscall" 2>/dev/null) state=$(awk '{print $3}' "$t/stat" 2>/dev/null)"
          sed 's/^/stall:     /' "$t/stack" 2>/dev/null | head -8
        done
      done > "$work/stall"
    fi
  done
) &
monitor=$!
timeout -k 10 "$timeout_s" "${launcher[@]}" --kernel "$kernel" --initrd "$initrd" \
  --cmdline "$cmdline" --mem "$mem" --cpus "$cpus" </dev/null 2>"$work/stderr" |
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    printf '%s\n' "$line" >> "$log"
    if [ ! -e "$work/t_user" ] && [[ $line == *"VMKIT-INIT: userspace"* ]]; then
      echo "$EPOCHREALTIME" > "$work/t_user"
    fi
  done
rc=${PIPESTATUS[0]}
kill "$monitor" 2>/dev/null || true
wait "$monitor" 2>/dev/null || true
set -e
if [ -s "$work/stall" ]; then
  echo "$prog: the console stalled for 60 s; where the launcher's threads were:"
  cat "$work/stall"
fi
t1=$EPOCHREALTIME
[ -z "$log_keep" ] || cp "$log" "$log_keep"

fails=0
ok() { echo "$prog: ok   $*"; }
failed=()
bad() { echo "$prog: FAIL $*"; fails=$((fails + 1)); failed+=("$*"); }
# value NAME: the value printed by `VMKIT-CHECK NAME ...`
value() { sed -n "s/.*VMKIT-CHECK $1 //p" "$log" | head -n 1; }

if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  bad "the guest did not finish within $timeout_s s"
elif [ "$rc" = "$expect_rc" ]; then
  ok "launcher exit status $rc"
else
  bad "launcher exit status $rc, expected $expect_rc ($(tail -n 1 "$work/stderr" 2>/dev/null))"
fi
if grep -q 'VMKIT-INIT: userspace' "$log"; then
  ok "reached userspace in $(awk -v a="$t0" -v b="$(cat "$work/t_user")" 'BEGIN { printf "%.1f", b - a }') s"
else
  bad "no 'VMKIT-INIT: userspace' marker"
fi
v=$(value ncpus)
if [ "$v" = "$cpus" ]; then ok "ncpus $v"; else bad "ncpus '$v', expected $cpus"; fi
v=$(value memtotal_kib)
if [[ $v =~ ^[0-9]+$ ]] && [ "$v" -le $((mem * 1024)) ] && [ "$v" -gt $((mem * 512)) ]; then
  ok "memtotal_kib $v (of $((mem * 1024)))"
else
  bad "memtotal_kib '$v', expected between $((mem * 512)) and $((mem * 1024))"
fi
v=$(value cmdline)
if [[ " $v " == *" vmkit.nonce=$nonce "* ]]; then ok "command line passed"; else bad "command line '$v' lacks vmkit.nonce=$nonce"; fi
if grep -q "VMKIT-END $end" "$log"; then ok "init ended with $end"; else bad "no 'VMKIT-END $end' marker"; fi
if [ "$end" = panic ]; then
  if grep -q 'Kernel panic - not syncing: sysrq triggered crash' "$log"; then ok "kernel panicked"; else bad "no kernel panic line"; fi
fi
for e in "${expects[@]}"; do
  if grep -Eq -- "$e" "$log"; then ok "console matches /$e/"; else bad "no console line matches /$e/"; fi
done
echo "$prog: total $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s wall"

if [ "$fails" -gt 0 ]; then
  echo "$prog: $fails check(s) failed; console tail:"
  tail -n 40 "$log" | sed 's/^/  | /'
  [ ! -s "$work/stderr" ] || { echo "$prog: launcher stderr:"; tail -n 10 "$work/stderr" | sed 's/^/  ! /'; }
  # the failed checks again, last, so that a log's tail names them
  for f in "${failed[@]}"; do echo "$prog: FAIL $f"; done
  exit 1
fi
exit 0
