#!/bin/sh
# scripts/usb-vm/run.sh — boots the test:usb VM and runs the USB transport contract in it (ENVIRONMENT.md §4).
#
#   1. build-vm.sh: Debian's kernel (apt-get download, cached) and a busybox initramfs;
#   2. make -C firmware-bindings emulator (the C device the guest runs on the gadget side);
#   3. compiles the TypeScript host (session, serial and HID transports, enroll.ts when present, and the whole CLI
#      from src/cli/main.ts) to <repo>/.cache/usb-vm/js.PID with tsc, with bin/meshkit.js beside it (js.PID/bin, its
#      ../dist pointing at the compiled tree), so the guest runs plain node (its root file system is the host's,
#      read-only);
#   4. the inputs of the guest's CLI run (<repo>/.cache/usb-vm/cli.PID): an account with a software admin key
#      (`meshkit demo --software` for the ceremony and its key stores, then `meshkit admin init` from that ceremony
#      without a portal), a bench key in a software key store (`meshkit key generate`, passphrase in a
#      file the guest puts into an environment variable), a configuration file;
#   5. qemu-system-x86_64 (TCG) with the host's / shared read-only over 9p; the guest creates an ACM + HID gadget
#      on dummy_hcd and runs scripts/usb-vm/contract.mjs, then scripts/usb-vm/cli.mjs (the real `meshkit bench run`
#      over both transports, `bench verify`, an unplug mid-run); its console is printed here and kept in
#      $CACHE/console.log.
#
# Exit status: the guest's ("MKUSB-EXIT n" on the console); 3 = QEMU cannot start here (qemu-system-x86_64,
# busybox-static, kmod or cpio missing, or the kernel package cannot be downloaded) — the reason is printed on a
# line "MKUSB-SKIP <reason>"; 1 for any other failure (build, boot, timeout).
# Environment: MESHKIT_USB_VM_CACHE (default: $XDG_CACHE_HOME/meshkit-usb-vm if XDG_CACHE_HOME is set, else
# <repo>/.cache/usb-vm) for the kernel and initramfs; MESHKIT_USB_VM_TIMEOUT seconds (default 240).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [ -n "${MESHKIT_USB_VM_CACHE:-}" ]; then CACHE=$MESHKIT_USB_VM_CACHE
elif [ -n "${XDG_CACHE_HOME:-}" ]; then CACHE=$XDG_CACHE_HOME/meshkit-usb-vm
else CACHE=$REPO/.cache/usb-vm
fi
# The compiled host code must live inside the repository so that it resolves node_modules; one directory per run.
JS=$REPO/.cache/usb-vm/js.$$
CLI=$REPO/.cache/usb-vm/cli.$$
trap 'rm -rf "$JS" "$CLI"' EXIT
TIMEOUT=${MESHKIT_USB_VM_TIMEOUT:-240}
T0=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) $T0" | awk '{ printf "%.1f", $1 - $2 }'; }

skip() { echo "MKUSB-SKIP $1"; exit 3; }
QEMU=$(command -v qemu-system-x86_64 || true)
[ -n "$QEMU" ] || skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"

mkdir -p "$CACHE" "$REPO/.cache/usb-vm"
sh "$HERE/build-vm.sh" "$CACHE" 2>"$CACHE/build-vm.log"
rc=$?
cat "$CACHE/build-vm.log"
if [ $rc -eq 3 ]; then skip "$(tail -n 1 "$CACHE/build-vm.log")"; fi
[ $rc -eq 0 ] || { echo "run: build-vm.sh failed ($rc)"; exit 1; }
echo "MKUSB-TIME prepare-vm $(elapsed)s"

if ! make -s -C "$REPO/firmware-bindings" emulator >"$CACHE/make.log" 2>&1; then
  cat "$CACHE/make.log"
  echo "run: building the C emulator failed"
  exit 1
fi

# Compile only what the contract imports (plus everything they import), whatever the rest of the tree's state.
FILES="src/device/session.ts src/device/transport/serial.ts src/device/transport/hid.ts src/device/transport/types.ts src/core/keys.ts src/core/profiles.ts src/cli/main.ts"
[ -f "$REPO/src/device/enroll.ts" ] && FILES="$FILES src/device/enroll.ts"
(cd "$REPO" && ./node_modules/.bin/tsc --outDir "$JS" --rootDir . --module NodeNext --moduleResolution NodeNext \
  --target ES2022 --lib ES2023 --types node --skipLibCheck --strict --declaration false --sourceMap false \
  --noEmit false $FILES) >"$CACHE/tsc.log" 2>&1
if [ ! -f "$JS/src/device/session.js" ] || [ ! -f "$JS/src/device/transport/hid.js" ]; then
  cat "$CACHE/tsc.log"
  echo "run: compiling the TypeScript host failed"
  exit 1
fi
[ -s "$CACHE/tsc.log" ] && { echo "run: tsc reported (output emitted anyway):"; head -n 20 "$CACHE/tsc.log"; }
# The real bin/meshkit.js imports ../dist/cli/main.js: give it the tree just compiled (and, beside it, devices/ and
# firmware-bindings/, which the CLI finds relative to its own files).
mkdir -p "$JS/bin" && cp "$REPO/bin/meshkit.js" "$JS/bin/meshkit.js" && ln -s src "$JS/dist" \
  && ln -s "$REPO/devices" "$JS/devices" && ln -s "$REPO/firmware-bindings" "$JS/firmware-bindings"
echo "MKUSB-TIME prepare-host $(elapsed)s"

# Inputs of the guest's CLI run. A failure here is reported, and the guest then runs the contract only (the host
# test expects the CLI checks, so it fails).
prepare_cli() {
  mkdir -p "$CLI" || return 1
  [ -f "$JS/src/cli/main.js" ] || { echo "run: the CLI did not compile"; return 1; }
  node "$JS/bin/meshkit.js" demo --software --out "$CLI/demo" --json >"$CLI/demo.json" 2>"$CLI/demo.log" \
    || { echo "run: meshkit demo --software failed:"; tail -n 20 "$CLI/demo.log"; return 1; }
  # A fresh account from the demo's ceremony, without the demo's (stopped) portal: connecting a device publishes
  # nothing, and the account is only the guest's copy.
  node "$JS/bin/meshkit.js" admin init --account "$CLI/account" --ceremony "$CLI/demo/ceremony" --json >"$CLI/account.json" 2>"$CLI/account.log" \
    || { echo "run: meshkit admin init failed:"; cat "$CLI/account.log"; return 1; }
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLI/bench.pass") || return 1
  MKUSB_BENCH_PASS=$(cat "$CLI/bench.pass") node "$JS/bin/meshkit.js" key generate --key "file:$CLI/bench.keys#bench" \
    --alg Ed25519 --kdf-cost 14 --pin-env MKUSB_BENCH_PASS --json >"$CLI/bench.json" 2>"$CLI/bench.log" \
    || { echo "run: meshkit key generate failed:"; cat "$CLI/bench.log"; return 1; }
  node -e 'const k = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(Buffer.from(k.publicJwk.x, "base64url").toString("hex"))' \
    "$CLI/bench.json" >"$CLI/bench.hex" || return 1
  [ "$(wc -c <"$CLI/bench.hex")" -eq 64 ] || { echo "run: no Ed25519 public key in $CLI/bench.json"; return 1; }
  printf '{"wifi":{"ssid":"usb-vm-line","psk":"not-a-real-psk"},"mqtt":"mqtts://broker.example:8883"}\n' >"$CLI/config.json"
}
CLI_ARG=
if prepare_cli; then CLI_ARG="MKUSB_CLI=$CLI"; else echo "MKUSB-NOTE the CLI inputs could not be prepared: the guest runs the contract only"; fi
echo "MKUSB-TIME prepare-cli $(elapsed)s"

# TCG (no VMX/SVM here); -cpu max for the instructions node needs; the host root and the repository read-only over 9p.
timeout --kill-after=10 "$TIMEOUT" "$QEMU" \
  -accel tcg -cpu max -smp 2 -m 1536 -nographic -no-reboot -nic none \
  -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init MKUSB_REPO=$REPO MKUSB_JS=$JS $CLI_ARG" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$REPO",mount_tag=repo,security_model=none,readonly=on,multidevs=remap \
  </dev/null 2>&1 | tr -d '\r' | tee "$CACHE/console.log"
qrc=$(sed -n 's/^MKUSB-EXIT \([0-9]*\)$/\1/p' "$CACHE/console.log" | tail -n 1)
echo "MKUSB-TIME total $(elapsed)s"
if [ -z "$qrc" ]; then
  if grep -q "MKUSB-BOOT init" "$CACHE/console.log"; then echo "run: the guest did not finish (timeout ${TIMEOUT}s or crash)"; exit 1; fi
  echo "run: QEMU started but the guest never reached /init (see $CACHE/console.log)"; exit 1
fi
exit "$qrc"
