"""The oracles: QEMU 11.1 and 10.0 run inside a test-bed guest realize (or refuse) a vIOMMU + VFIO VM.

The start of the differential suite (issue 9): in the ``intel`` guest (VT-d,
39-bit, Linux 7.3.4), the e1000e at 0000:00:09.0 is bound to vfio-pci and each
oracle QEMU of the test-bed root (tests/testbed/build-root.sh, /etc/testbed/ORACLES)
is run as a nested TCG process that only realizes its devices and quits
(tests/testbed/oracle.py). Expected outcomes and messages are QEMU's own,
exactly as each release prints them.
"""
import sys
from pathlib import Path

import pytest

from guestops import NIC, bind_vfio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testbed"))
import oracle  # noqa: E402

pytestmark = [pytest.mark.testbed("intel"), pytest.mark.oracle]

RELEASES = ("11.1", "10.0")
# Debian: trixie-backports and trixie (the root's ORACLES file says which point release).
SUITES = {"11.1": "trixie-backports", "10.0": "trixie"}
# What each release says when a device is assigned behind an intel-iommu without caching mode.
CACHING_MODE_REFUSAL = {
    "11.1": "vfio %s: Failed to set vIOMMU: Device assignment is not allowed without enabling "
            "caching-mode=on for Intel IOMMU." % NIC,
    "10.0": "We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU protection.",
}
# The guest's VT-d is 39 bits wide (MGAW); aw-bits=39 keeps the address-width check out of the way.
IOMMUFD_VFIO = ["-object", "iommufd,id=fd0", "-device", "vfio-pci,host=%s,iommufd=fd0" % NIC]


def viommu(caching_mode):
    return ["-device", "intel-iommu,caching-mode=%s,aw-bits=39" % ("on" if caching_mode else "off")]


@pytest.fixture
def guest(testbed):
    g = testbed["intel"]
    bind_vfio(g)
    return g


def test_root_has_both_oracles(testbed):
    intel = testbed["intel"]
    found = oracle.oracles(intel)
    assert sorted(found) == sorted(RELEASES), found
    for rel, orc in found.items():
        assert orc.version.startswith(rel + "."), orc
        assert orc.suite == SUITES[rel], orc
        assert orc.wrapper == "/usr/local/bin/qemu-%s" % rel
        res = intel.run([orc.wrapper, "--version"], timeout=60)
        assert res.rc == 0 and res.stdout.startswith("QEMU emulator version %s (Debian %s)"
                                                     % (orc.version, orc.debian)), res
        assert res.stderr == "", "the wrapper must print nothing of its own: %r" % res.stderr


@pytest.mark.parametrize("release", RELEASES)
def test_caching_mode_on_realizes(guest, release):
    res = oracle.run(guest, release, viommu(True) + IOMMUFD_VFIO)
    assert res.started, res
    assert res.rc == 0 and not res.timed_out and res.errors == [], res
    assert res.qemu_version == oracle.oracles(guest)[release].version, res.replies
    assert [r for r in res.replies if "return" in r] == [{"return": {}}, {"return": {}}], res.replies


@pytest.mark.parametrize("release", RELEASES)
def test_caching_mode_off_refused(guest, release):
    res = oracle.run(guest, release, viommu(False) + IOMMUFD_VFIO)
    assert not res.started, res
    assert res.rc == 1 and not res.timed_out, res
    assert CACHING_MODE_REFUSAL[release] in res.errors, res
    # the QMP monitor greets before the devices are created: the refusal is that release's
    assert res.qemu_version == oracle.oracles(guest)[release].version, res.replies
    assert [r for r in res.replies if "return" in r] == [], res.replies


@pytest.mark.parametrize("release", RELEASES)
def test_default_address_width_refused(guest, release):
    """Both releases default to aw-bits=48; the guest's VT-d has 39 bits (11.1 checks caching mode
    first, 10.0 the address width, so caching-mode=on isolates the address-width check)."""
    res = oracle.run(guest, release, ["-device", "intel-iommu,caching-mode=on"] + IOMMUFD_VFIO)
    assert not res.started and res.rc == 1, res
    assert res.errors == ["vfio %s: Failed to set vIOMMU: aw-bits 48 > host aw-bits 39" % NIC], res
