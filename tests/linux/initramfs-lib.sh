# Shared helpers for the initramfs builders (tests/linux/mkinitramfs,
# tests/hostvm/mkinitramfs). Source it from bash with `set -euo pipefail`.
# Everything comes from Debian packages: busybox-static, cpio, gzip, kmod.

VMKIT_CACHE=${VMKIT_CACHE:-$HOME/.cache/vmkit}
ird_linux_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

ird_die() {
  echo "${ird_prog:-initramfs}: $*" >&2
  exit 1
}

# ird_need_tools: fail with one line when a tool is missing.
ird_need_tools() {
  local t
  for t in cpio gzip sha256sum python3; do
    command -v "$t" >/dev/null || ird_die "needs $t (run scripts/deps)"
  done
  [ -x /sbin/depmod ] || command -v depmod >/dev/null || ird_die "needs depmod (run scripts/deps)"
  [ -x "$IRD_BUSYBOX" ] || ird_die "needs a static busybox at $IRD_BUSYBOX (Debian busybox-static; run scripts/deps)"
  file_is_static "$IRD_BUSYBOX" || ird_die "$IRD_BUSYBOX is not statically linked (install busybox-static)"
}

IRD_BUSYBOX=${VMKIT_BUSYBOX:-/bin/busybox}

file_is_static() {
  # A static ELF has no PT_INTERP program header.
  python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read(1 << 16)
if d[:4] != b"\x7fELF" or d[4] != 2:
    sys.exit(1)
phoff, = struct.unpack_from("<Q", d, 0x20)
phentsize, phnum = struct.unpack_from("<HH", d, 0x36)
for i in range(phnum):
    off = phoff + i * phentsize
    if off + 4 <= len(d) and struct.unpack_from("<I", d, off)[0] == 3:
        sys.exit(1)
sys.exit(0)
EOF
}

# ird_key INPUT_TEXT...: prints a short hash of the given strings plus the
# contents (not the names) of the files in IRD_KEY_FILES (array).
ird_key() {
  {
    printf '%s\n' "$@"
    local f
    for f in "${IRD_KEY_FILES[@]}"; do
      sha256sum < "$f"
    done
  } | sha256sum | cut -c1-16
}

# ird_stage_busybox STAGE: /bin/busybox plus a link per applet, the usual dirs.
ird_stage_busybox() {
  local stage=$1 a
  mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules}
  cp "$IRD_BUSYBOX" "$stage/bin/busybox"
  chmod 755 "$stage/bin/busybox"
  while read -r a; do
    [ -n "$a" ] && [ "$a" != bin/busybox ] || continue
    [ -e "$stage/$a" ] || ln -s /bin/busybox "$stage/$a"
  done < <("$IRD_BUSYBOX" --list-full)
}

# ird_stage_modules STAGE MODDIR MODULE...: copies MODULE and its dependencies
# (resolved with modules.dep) into STAGE/lib/modules/ and writes the load
# order to STAGE/lib/modules/load.list (one file name a line).
ird_stage_modules() {
  local stage=$1 moddir=$2
  shift 2
  local list p
  list=$("$ird_linux_dir/modclosure" "$moddir" "$@") || ird_die "cannot resolve modules in $moddir"
  : > "$stage/lib/modules/load.list"
  while read -r p; do
    [ -n "$p" ] || continue
    case $p in
      *.ko) cp "$moddir/$p" "$stage/lib/modules/" ;;
      *.ko.xz) xz -dc "$moddir/$p" > "$stage/lib/modules/$(basename "${p%.xz}")"; p=${p%.xz} ;;
      *.ko.zst) zstd -dcq "$moddir/$p" > "$stage/lib/modules/$(basename "${p%.zst}")"; p=${p%.zst} ;;
      *.ko.gz) gzip -dc "$moddir/$p" > "$stage/lib/modules/$(basename "${p%.gz}")"; p=${p%.gz} ;;
      *) ird_die "unexpected module file $p" ;;
    esac
    basename "$p" >> "$stage/lib/modules/load.list"
  done <<< "$list"
}

# ird_write_cpio STAGE OUT COMPRESS(gz|none): a newc archive, owned by root,
# entries sorted, timestamps kept as staged. Written atomically.
ird_write_cpio() {
  local stage=$1 out=$2 comp=$3
  mkdir -p "$(dirname "$out")"
  local tmp
  tmp=$(mktemp "$out.tmp.XXXXXX")
  if [ "$comp" = gz ]; then
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
      cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -n -6 > "$tmp"
  else
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
      cpio --quiet -o -H newc -R 0:0 --reproducible) > "$tmp"
  fi
  chmod 644 "$tmp"
  mv -f "$tmp" "$out"
}
