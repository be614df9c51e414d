#!/bin/sh
# reboot / shutdown / poweroff / halt for test-bed guests, which run without
# systemd (tests/testbed/guest-init.sh links these names to this script).
# Returns at once; after a second the guest syncs and calls reboot(2), so
# the SSH session that asked (e.g. ansible.builtin.reboot) ends cleanly.
# A reboot restarts the kernel inside the same QEMU process (same SSH port);
# the overlay's upper layer is on the guest's disk image, so files written
# before the reboot are still there after it. Power-off ends QEMU.
action=reboot
case ${0##*/} in
  poweroff|halt) action=poweroff ;;
  shutdown) action=poweroff ;;
esac
for arg in "$@"; do
  case $arg in
    -c|--cancel) echo "no pending shutdown"; exit 0 ;;
    --help) echo "usage: ${0##*/} [-r|-h|-P] [TIME] [MESSAGE]  (test-bed shim)"; exit 0 ;;
    -r|--reboot|-[a-zA-Z]*r*) action=reboot ;;
    -h|-H|-P|--halt|--poweroff|-p) action=poweroff ;;
  esac
done
case $action in
  reboot) magic=0x01234567 ;;   # LINUX_REBOOT_CMD_RESTART
  *) magic=0x4321fedc ;;        # LINUX_REBOOT_CMD_POWER_OFF
esac
echo "test-bed guest: $action in 1 s" >&2
echo "testbed-power: $action requested" > /dev/console 2>/dev/null
setsid -f /bin/sh -c "sleep 1; sync; exec /usr/bin/python3 -c 'import ctypes; ctypes.CDLL(None, use_errno=True).reboot($magic)'" \
  </dev/null >/dev/null 2>&1
exit 0
