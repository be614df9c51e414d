"""Facts gathered from sysfs/procfs trees captured on the real-kernel test-bed guests.

The trees (tests/fixtures/sysfs/<profile>.tar.xz) are produced by
tests/testbed/capture_fixtures.py (`make fixtures`) from guests running Linux 7.3.4
under QEMU; they are never edited by hand. These tests pin what our readers and
decoders make of them.
"""
import pytest

from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
from tests.support import fixture_trees
PROFILES = ["intel", "intel-vfio", "intel-sm", "intel-sm-vfio", "amd", "amd-vfio", "none"]
SHARED = ("0000:02:01.0", "0000:02:02.0")   # two e1000 behind a PCIe-to-PCI bridge
VFIO = "0000:00:09.0"                       # the e1000e the -vfio captures bound to vfio-pci


ARM64_TREES = ["arm64-debian-6.12",           # tests/unit/test_arm64.py (another kernel, no iommufd selftest)
               "arm64-smmuv3", "arm64-smmuv3-vfio"]   # the 7.3 arm64 guest: tests/unit/test_fixtures_arm64.py


def test_every_profile_was_captured():
    assert fixture_trees.names() == sorted(PROFILES + ARM64_TREES)


def facts(profile):
    return iommu_facts.gather(root=fixture_trees.root(profile), sysfs_only=True)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_tree_reads_without_findings(profile):
    f = facts(profile)
    assert f["findings"] == []
    assert f["kernel"]["release"] == "7.3.4"
    assert f["kernel"]["config"]["CONFIG_IOMMUFD"] == "y"
    assert f["kernel"]["config_source"] == "/proc/config.gz"
    assert f["kernel"]["iommufd"]["available"] is True
    assert "iommufd_selftest_iommu.0" in f["units"]


@pytest.mark.parametrize("profile,cap,ecap,mgaw", [
    ("intel", "d2008c22260286", "f00f4a", 39),
    ("intel-sm", "d2008c222f0686", "480080f00f4a", 48),
])
def test_intel_units(profile, cap, ecap, mgaw):
    f = facts(profile)
    assert f["present"] is True and f["vendors"] == ["intel_vtd"]
    unit = f["units"]["dmar0"]
    assert unit["registers"]["cap"] == cap and unit["registers"]["ecap"] == ecap
    assert unit["decoded"]["cap"]["mgaw"] == mgaw
    assert unit["decoded"]["cap"]["caching_mode"] is True        # a virtual IOMMU
    assert unit["decoded"]["ecap"]["smts"] is (profile == "intel-sm")
    assert f["kernel"]["interrupt_remapping"]["enabled"] is True
    assert f["firmware"]["acpi"]["dmar"]["present"] is True
    assert f["cmdline"]["effects"]["intel_iommu"] == "on"


@pytest.mark.parametrize("profile", ["amd", "amd-vfio"])
def test_amd_unit(profile):
    f = facts(profile)
    unit = f["units"]["ivhd0"]
    assert unit["registers"]["features"] == "29d3:0"
    assert unit["decoded"]["names"] == ["PreF", "PPR", "GT", "IA", "GA", "HE"]
    assert unit["decoded"]["efr"]["hdsup"] is False
    # QEMU's amd-iommu without intremap: the kernel disables interrupt remapping
    assert f["kernel"]["interrupt_remapping"]["enabled"] is False
    assert f["firmware"]["acpi"]["ivrs"]["present"] is True


def test_no_iommu():
    f = facts("none")
    assert f["present"] is False and f["vendors"] == [] and f["groups"] == {}
    assert all(d["has_iommu"] is False for d in f["devices"].values())
    assert f["firmware"]["acpi"]["dmar"]["present"] is False
    assert f["firmware"]["acpi"]["ivrs"]["present"] is False


@pytest.mark.parametrize("profile", ["intel", "intel-sm", "amd"])
def test_shared_group_behind_bridge(profile):
    f = facts(profile)
    a, b = (f["devices"][x] for x in SHARED)
    assert a["iommu_group"] == b["iommu_group"]
    assert a["group_viable"] is False and a["group_blockers"] == ["%s (e1000)" % SHARED[1]]
    bridge = [m for m in a["group_members"] if f["devices"][m]["is_bridge"]]
    assert bridge == ["0000:01:00.0"]


@pytest.mark.parametrize("profile", ["intel-vfio", "intel-sm-vfio", "amd-vfio"])
def test_vfio_bound_device(profile):
    f = facts(profile)
    dev = f["devices"][VFIO]
    assert dev["driver"] == "vfio-pci" and dev["driver_override"] == "vfio-pci"
    assert dev["vfio_cdev"] == "vfio0" and dev["group_viable"] is True
    assert (dev["vendor_id"], dev["device_id"]) == ("0x8086", "0x10d3")
    assert f["kernel"]["dev_nodes"]["vfio_cdevs"] == ["vfio0"]
    assert f["summary"]["vfio_pci_devices"] == [VFIO]
    assert dev["hw_info"] == {"source": "none", "skipped": "sysfs_only: device not opened"}
    # the other e1000e stays with its driver
    assert f["devices"]["0000:00:08.0"]["driver"] == "e1000e"
