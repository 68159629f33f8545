#!/bin/sh
# scripts/usb-vm/build-vm.sh CACHE_DIR — prepares the nested-VM boot files for `npm run test:usb`:
#   CACHE_DIR/kernel/        Debian's linux-image-6.1.0-*-amd64 (apt-get download + dpkg-deb -x; not installed)
#   CACHE_DIR/vmlinuz        its kernel
#   CACHE_DIR/initramfs.gz   busybox (static) + the modules for virtio/9p, USB gadgets (dummy_hcd, configfs ACM + HID)
#                            and the host drivers (cdc-acm, usbhid, hid-generic), and scripts/usb-vm/init as /init
# Idempotent: the kernel package is fetched once; the initramfs is rebuilt when init or this script changes.
# Needs: apt-get, dpkg-deb, depmod (kmod), cpio, gzip, busybox (busybox-static). Exit 3 = a prerequisite is missing
# or the kernel package cannot be downloaded (the caller reports it as "QEMU cannot start").
set -eu

CACHE=${1:?usage: build-vm.sh CACHE_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

missing() { echo "build-vm: $1" >&2; exit 3; }
for tool in apt-get dpkg-deb depmod cpio gzip; do
  command -v "$tool" >/dev/null 2>&1 || missing "'$tool' is not installed (apt-get install kmod cpio)"
done
BUSYBOX=
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ] && LC_ALL=C ldd "$b" 2>&1 | grep -q "not a dynamic executable"; then BUSYBOX=$b; fi
done
[ -n "$BUSYBOX" ] || missing "a static busybox is not installed (apt-get install busybox-static)"

# ---- the kernel package
if [ ! -f "$CACHE/kernel/.done" ]; then
  PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9.]*-[0-9]*-amd64\)$/\1/p' | head -n 1)
  [ -n "$PKG" ] || PKG=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null | cut -d' ' -f1 | sort -V | tail -n 1)
  [ -n "$PKG" ] || missing "no linux-image-6.1.0-*-amd64 package known to apt (run apt-get update)"
  rm -rf "$CACHE/download" "$CACHE/kernel"
  mkdir -p "$CACHE/download"
  echo "build-vm: downloading $PKG" >&2
  (cd "$CACHE/download" && apt-get download "$PKG" >&2) || missing "apt-get download $PKG failed"
  mkdir -p "$CACHE/kernel"
  dpkg-deb -x "$CACHE"/download/*.deb "$CACHE/kernel"
  rm -rf "$CACHE/download"
  touch "$CACHE/kernel/.done"
fi
KVER=$(ls "$CACHE/kernel/lib/modules" | head -n 1)
MODDIR="$CACHE/kernel/lib/modules/$KVER"
[ -f "$MODDIR/modules.dep" ] || depmod -b "$CACHE/kernel" "$KVER"
cp "$CACHE/kernel/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"

# ---- the initramfs
STAMP=$(cat "$HERE/init" "$0" | md5sum | cut -d' ' -f1)-$KVER
if [ -f "$CACHE/initramfs.gz" ] && [ "$(cat "$CACHE/initramfs.stamp" 2>/dev/null)" = "$STAMP" ]; then exit 0; fi

# Modules in load order: each module after everything it depends on (modules.dep lists a module's dependencies,
# the ones needed first last).
WANT="virtio_pci 9pnet_virtio 9p configfs dummy_hcd libcomposite u_serial usb_f_acm usb_f_hid cdc-acm hid usbhid hid-generic"
ORDER=""
add_module() { # $1 = path relative to MODDIR
  case " $ORDER " in *" $1 "*) return 0 ;; esac
  deps=$(grep "^$1:" "$MODDIR/modules.dep" | cut -d: -f2)
  rev=""
  for d in $deps; do rev="$d $rev"; done
  for d in $rev; do add_module "$d"; done
  ORDER="$ORDER $1"
}
for m in $WANT; do
  path=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$MODDIR/modules.dep" | cut -d: -f1 | head -n 1)
  if [ -z "$path" ]; then
    if grep -qE "(^|/)$m\.ko" "$MODDIR/modules.builtin"; then continue; fi
    missing "module $m not found in $KVER"
  fi
  add_module "$path"
done

ROOT="$CACHE/initramfs.d"
rm -rf "$ROOT"
mkdir -p "$ROOT/bin" "$ROOT/modules" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/host"
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"
: > "$ROOT/modules/order"
for p in $ORDER; do
  name=$(basename "$p")
  case "$name" in
    *.ko.xz) xz -dc "$MODDIR/$p" > "$ROOT/modules/${name%.xz}"; name=${name%.xz} ;;
    *.ko.zst) zstd -dqc "$MODDIR/$p" > "$ROOT/modules/${name%.zst}"; name=${name%.zst} ;;
    *) cp "$MODDIR/$p" "$ROOT/modules/$name" ;;
  esac
  echo "$name" >> "$ROOT/modules/order"
done
cp "$HERE/init" "$ROOT/init"
chmod 755 "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc --quiet) | gzip -1 > "$CACHE/initramfs.gz.tmp"
mv "$CACHE/initramfs.gz.tmp" "$CACHE/initramfs.gz"
rm -rf "$ROOT"
echo "$STAMP" > "$CACHE/initramfs.stamp"
echo "build-vm: kernel $KVER, $(echo $ORDER | wc -w) modules" >&2
