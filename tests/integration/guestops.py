"""Operations on test-bed guests shared by the integration tests."""

NIC = "0000:00:09.0"        # e1000e the facts/gate tests bind to vfio-pci

BIND = r"""
set -e
d=/sys/bus/pci/devices/{dev}
if [ "$(basename "$(readlink $d/driver 2>/dev/null)")" != vfio-pci ]; then
  echo vfio-pci > $d/driver_override
  if [ -e $d/driver ]; then echo {dev} > $d/driver/unbind; fi
  echo {dev} > /sys/bus/pci/drivers_probe
fi
basename "$(readlink $d/driver)"
"""

RELEASE = r"""
d=/sys/bus/pci/devices/{dev}
if [ "$(basename "$(readlink $d/driver 2>/dev/null)")" = vfio-pci ]; then
  echo > $d/driver_override
  echo {dev} > $d/driver/unbind
  echo {dev} > /sys/bus/pci/drivers_probe
fi
"""

# (guest, device) bound by the running test; conftest's autouse fixture restore_drivers
# gives them back after it, so tests sharing the session's guests do not depend on order.
BOUND = []


def bind_vfio(guest, dev=NIC):
    res = guest.run(BIND.format(dev=dev), timeout=120, check=True)
    assert res.stdout.strip() == "vfio-pci", res
    BOUND.append((guest, dev))


def restore_bound():
    while BOUND:
        guest, dev = BOUND.pop()
        if guest.is_running():
            guest.run(RELEASE.format(dev=dev), timeout=120, check=True)
