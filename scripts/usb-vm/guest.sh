#!/bin/sh
# Runs inside the test:usb VM, chrooted into the host's root (read-only; /tmp is a tmpfs). Creates a USB gadget on
# dummy_hcd with a CDC-ACM function and a HID function (vendor page 0xFF00, 64-byte reports), waits for both sides'
# device nodes (gadget: /dev/ttyGS0, /dev/hidg0; host: /dev/ttyACM0, /dev/hidraw*) and runs contract.mjs, then
# cli.mjs (the real `meshkit bench run` over both transports) when MKUSB_CLI names its inputs. Exit 0 only when both
# passed.
set -u
REPO=${MKUSB_REPO:?}
G=/sys/kernel/config/usb_gadget/meshkit
export MKUSB_GADGET=$G

gadget() {
  mkdir "$G" || return 1
  echo 0x1209 > "$G/idVendor"     # pid.codes
  echo 0x0001 > "$G/idProduct"    # pid.codes test PID
  echo 0x0100 > "$G/bcdDevice"
  echo 0x0200 > "$G/bcdUSB"
  mkdir "$G/strings/0x409"
  echo "MK-USB-0001" > "$G/strings/0x409/serialnumber"
  echo "meshkit" > "$G/strings/0x409/manufacturer"
  echo "meshkit test gadget (ACM + HID)" > "$G/strings/0x409/product"
  mkdir "$G/configs/c.1"
  mkdir "$G/configs/c.1/strings/0x409"
  echo "ACM + HID" > "$G/configs/c.1/strings/0x409/configuration"
  echo 100 > "$G/configs/c.1/MaxPower"
  mkdir "$G/functions/acm.usb0"
  mkdir "$G/functions/hid.usb0"
  echo 0 > "$G/functions/hid.usb0/protocol"
  echo 0 > "$G/functions/hid.usb0/subclass"
  echo 64 > "$G/functions/hid.usb0/report_length"
  # Usage Page 0xFF00, Usage 1, Collection(Application) { Usage 0x20, 0..255, 8 bits x 64, Input;
  # Usage 0x21, 8 bits x 64, Output } End Collection
  printf '\006\000\377\011\001\241\001\011\040\025\000\046\377\000\165\010\225\100\201\002\011\041\225\100\221\002\300' \
    > "$G/functions/hid.usb0/report_desc"
  ln -s "$G/functions/acm.usb0" "$G/configs/c.1/"
  ln -s "$G/functions/hid.usb0" "$G/configs/c.1/"
  echo dummy_udc.0 > "$G/UDC"
}

if ! gadget; then
  echo "guest: cannot create the USB gadget"
  exit 1
fi
i=0
while [ ! -e /dev/ttyACM0 ] || [ ! -e /dev/ttyGS0 ] || [ ! -e /dev/hidg0 ] || ! ls /dev/hidraw* >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 100 ]; then
    echo "guest: USB device nodes did not appear:"; ls /dev | tr '\n' ' '; echo
    exit 1
  fi
  sleep 0.1
done
echo "MKUSB-BOOT gadget $(cut -d' ' -f1 /proc/uptime)s: $(ls /dev/ttyACM* /dev/ttyGS* /dev/hidg* /dev/hidraw* | tr '\n' ' ')"
cd /tmp || exit 1
node "$REPO/scripts/usb-vm/contract.mjs"
status=$?
echo "MKUSB-TIME guest contract $(cut -d' ' -f1 /proc/uptime)s"
# The real CLI (scripts/usb-vm/cli.mjs) on the same gadget, when run.sh prepared its inputs.
if [ -n "${MKUSB_CLI:-}" ]; then
  node "$REPO/scripts/usb-vm/cli.mjs" || status=1
  echo "MKUSB-TIME guest cli $(cut -d' ' -f1 /proc/uptime)s"
else
  echo "guest: MKUSB_CLI not set: the CLI checks were not run"
fi
exit $status
