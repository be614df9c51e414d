"""sysfs/procfs readers on synthetic trees, and their pure parsers."""
import os

import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from tests.support import synthetic


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path)
    addrs = synthetic.build(root, n_devices=4, n_units=2, vfio=(1,), bridge_groups=1,
                            holders={4242: ["/dev/vfio/devices/vfio0"]})
    return root, addrs


def test_units_intel(tree):
    root, addrs = tree
    r = sysfs.SysfsReader(root)
    units = r.units()
    assert sorted(units) == ["dmar0", "dmar1"]
    assert units["dmar0"]["vendor"] == "intel_vtd"
    assert units["dmar0"]["registers"]["cap"] == "%x" % synthetic.VTD_CAP
    assert units["dmar0"]["registers"]["ecap"] == "%x" % synthetic.VTD_ECAP
    assert addrs[0] in units["dmar0"]["devices"]
    assert addrs[1] in units["dmar1"]["devices"]
    assert r.errors == []


def test_units_amd_both_feature_formats(tmp_path):
    root = str(tmp_path)
    synthetic.build(root, vendor="amd")
    r = sysfs.SysfsReader(root)
    unit = r.units()["ivhd0"]
    assert unit["vendor"] == "amd"
    assert (unit["registers"]["efr"], unit["registers"]["efr2"]) == (0x29D3, 0)
    assert sysfs.parse_amd_features("29d3") == (0x29D3, None, None)
    assert sysfs.parse_amd_features("29d3:0") == (0x29D3, 0, None)
    assert sysfs.parse_amd_features("zz:1")[2].startswith("unrecognised format")


def test_pci_devices_and_groups(tree):
    root, addrs = tree
    r = sysfs.SysfsReader(root)
    devs = r.pci_devices()
    vfio_dev = devs[addrs[1]]
    assert vfio_dev["driver"] == "vfio-pci"
    assert vfio_dev["driver_override"] == "vfio-pci"
    assert vfio_dev["vfio_cdev"] == "vfio0"
    assert vfio_dev["iommu_unit"] == "dmar1"
    assert vfio_dev["vendor_id"] == "0x8086" and vfio_dev["device_id"] == "0x10d3"
    assert devs[addrs[0]]["driver"] == "e1000e"
    assert devs[addrs[0]]["driver_override"] is None
    bridge = [d for d in devs.values() if d["is_bridge"]]
    assert len(bridge) == 1 and bridge[0]["driver"] is None
    groups = r.groups()
    shared = groups[bridge[0]["iommu_group"]]
    assert len(shared["devices"]) == 3
    assert shared["type"] == "DMA-FQ"
    assert shared["reserved_regions"] == [{"start": "0xfee00000", "end": "0xfeefffff", "type": "msi"}]


def test_group_viability_names_blockers(tree):
    root, addrs = tree
    r = sysfs.SysfsReader(root)
    devs = r.pci_devices()
    shared = [a for a in addrs if a.startswith("0000:81:")]
    group = r.groups()[devs[shared[0]]["iommu_group"]]["devices"]
    # bridge does not count; the sibling bound to e1000e does
    assert sysfs.group_members_not_vfio(devs, group, shared[0]) == ["%s (e1000e)" % shared[1]]
    devs[shared[1]]["driver"] = "vfio-pci"
    assert sysfs.group_members_not_vfio(devs, group, shared[0]) == []
    devs[shared[1]]["driver"] = None
    assert sysfs.group_members_not_vfio(devs, group, shared[0]) == []


def test_vfio_holders(tree):
    root, _addrs = tree
    holders = sysfs.SysfsReader(root).vfio_holders()
    assert holders == {"/dev/vfio/devices/vfio0": ["4242 (qemu-system-x86)"]}


def test_interrupt_remapping(tmp_path):
    on, off = str(tmp_path / "on"), str(tmp_path / "off")
    synthetic.build(on, interrupt_remapping=True)
    synthetic.build(off, interrupt_remapping=False)
    assert sysfs.SysfsReader(on).interrupt_remapping()["enabled"] is True
    got = sysfs.SysfsReader(off).interrupt_remapping()
    assert got["enabled"] is False and "PCI-MSIX-0000:00:09.0" in got["evidence"]
    assert sysfs.SysfsReader(str(tmp_path / "none")).interrupt_remapping()["enabled"] is None


def test_cmdline(tree):
    root, _addrs = tree
    c = sysfs.SysfsReader(root).cmdline()
    assert c["args"] == {"intel_iommu": ["on"], "iommu": ["pt"]}
    assert c["effects"]["intel_iommu"] == "on"
    assert c["effects"]["passthrough"] is True


@pytest.mark.parametrize("line,key,value", [
    ("intel_iommu=on,sm_on", "scalable_mode", True),
    ("intel_iommu=on,sm_off", "scalable_mode", False),
    ("intel_iommu=off", "intel_iommu", "off"),
    ("amd_iommu=off", "amd_iommu", "off"),
    ("iommu=off", "iommu_off", True),
    ("iommu=pt iommu.passthrough=0", "passthrough", False),
    ("iommu.strict=1", "strict", True),
    ("intremap=off", "intremap_off", True),
    ("iommufd.allow_unsafe_interrupts=1", "allow_unsafe_interrupts", True),
    ('quiet "intel_iommu=on,igfx_off" ro', "intel_iommu", "on"),
])
def test_cmdline_effects(line, key, value):
    args = {}
    for token in sysfs._split_cmdline(line):
        k, sep, v = token.partition("=")
        args.setdefault(k, []).append(v if sep else True)
    assert sysfs.cmdline_effects(args)[key] == value


def test_kernel_config_and_builtin(tmp_path):
    root = str(tmp_path)
    synthetic.build(root)
    rel = "7.3.4-iommu-host"
    os.makedirs(os.path.join(root, "boot"))
    with open(os.path.join(root, "boot", "config-" + rel), "w") as f:
        f.write("CONFIG_IOMMUFD=m\n# CONFIG_VFIO_DEVICE_CDEV is not set\nCONFIG_OTHER=y\n")
    os.makedirs(os.path.join(root, "lib/modules", rel))
    with open(os.path.join(root, "lib/modules", rel, "modules.builtin"), "w") as f:
        f.write("kernel/drivers/vfio/vfio.ko\n")
    r = sysfs.SysfsReader(root)
    cfg = r.kernel_config(rel)
    assert cfg == {"values": {"CONFIG_IOMMUFD": "m", "CONFIG_VFIO_DEVICE_CDEV": "n"},
                   "source": "/boot/config-" + rel}
    assert r.builtin_modules(rel)["vfio"] is True
    assert r.builtin_modules(rel)["iommufd"] is False


def test_proc_config_gz(tmp_path):
    import gzip
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "proc"))
    with open(os.path.join(root, "proc/config.gz"), "wb") as f:
        f.write(gzip.compress(b"CONFIG_IOMMUFD=y\n"))
    cfg = sysfs.SysfsReader(root).kernel_config(None)
    assert cfg == {"values": {"CONFIG_IOMMUFD": "y"}, "source": "/proc/config.gz"}


def test_reserved_regions_parser():
    regions, problems = sysfs.parse_reserved_regions(
        "0x00000000fee00000 0x00000000feefffff msi\n0x0000000000000000 0x0000000000ffffff direct\nbad")
    assert [r["type"] for r in regions] == ["msi", "direct"]
    assert problems == ["unparsable line 'bad'"]


def test_empty_root_says_nothing_exists(tmp_path):
    r = sysfs.SysfsReader(str(tmp_path))
    assert r.units() == {} and r.groups() == {} and r.pci_devices() == {} and r.mdevs() == {}
    assert r.dev_nodes() == {"iommu": False, "vfio_container": False, "vfio_cdevs": [], "vfio_groups": []}
    assert r.errors == []


# -- property tests: garbage in any file never raises; problems become errors ------------

_GARBAGE = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda s: s.encode("utf-8", "replace")))
_FILES = [
    "proc/cmdline", "proc/interrupts", "proc/sys/kernel/osrelease", "proc/config.gz",
    "sys/devices/virtual/iommu/dmar0/intel-iommu/cap", "sys/devices/virtual/iommu/dmar0/intel-iommu/ecap",
    "sys/devices/pci0000:00/0000:01:00.0/class", "sys/devices/pci0000:00/0000:01:00.0/vendor",
    "sys/devices/pci0000:00/0000:01:00.0/driver_override", "sys/kernel/iommu_groups/0/reserved_regions",
    "sys/kernel/iommu_groups/0/type", "sys/module/iommufd/parameters/allow_unsafe_interrupts",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.tuples(st.sampled_from(_FILES), _GARBAGE), min_size=1, max_size=6))
def test_garbage_never_raises(tmp_path_factory, data):
    from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
    root = str(tmp_path_factory.mktemp("g"))
    synthetic.build(root, n_devices=1, vfio=())
    for rel, blob in data:
        with open(os.path.join(root, rel), "wb") as f:
            f.write(blob)
    facts = iommu_facts.gather(root=root, sysfs_only=True)
    assert facts["schema_version"] == 1
    assert isinstance(facts["findings"], list)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_amd_features_parser_total(text):
    efr, efr2, problem = sysfs.parse_amd_features(text)
    assert (problem is None) or (efr is None and efr2 is None)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_cmdline_parser_total(text):
    args = {}
    for token in sysfs._split_cmdline(text):
        k, sep, v = token.partition("=")
        args.setdefault(k, []).append(v if sep else True)
    sysfs.cmdline_effects(args)


def test_uevent_and_attribute_files_agree(tmp_path):
    fast, slow = str(tmp_path / "fast"), str(tmp_path / "slow")
    synthetic.build(fast, n_devices=6, vfio=(2,), bridge_groups=1, uevent=True)
    synthetic.build(slow, n_devices=6, vfio=(2,), bridge_groups=1, uevent=False)
    a, b = sysfs.SysfsReader(fast).pci_devices(), sysfs.SysfsReader(slow).pci_devices()
    assert a == b
    assert a["0000:01:02.0"]["class"] == "0x020000" and a["0000:80:00.0"]["is_bridge"] is True


def test_parse_pci_uevent():
    text = ("DRIVER=e1000e\nPCI_CLASS=20000\nPCI_ID=8086:10D3\nPCI_SUBSYS_ID=8086:0000\n"
            "PCI_SLOT_NAME=0000:00:09.0\nMODALIAS=pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00\n")
    assert sysfs.parse_pci_uevent(text) == {
        "vendor": "8086", "device": "10D3", "subsystem_vendor": "8086", "subsystem_device": "0000",
        "class": "20000", "driver": "e1000e"}
    assert sysfs.parse_pci_uevent("PCI_SLOT_NAME=0000:00:09.0\n") is None
    assert sysfs.parse_pci_uevent(None) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_uevent_parser_total(text):
    sysfs.parse_pci_uevent(text)


@pytest.mark.parametrize("name", ["intel", "intel-vfio", "amd", "none"])
def test_group_members_from_links_equal_listing(name):
    from tests.support import fixture_trees
    r = sysfs.SysfsReader(fixture_trees.root(name))
    assert r.groups(r.pci_devices()) == r.groups()


def test_non_pci_groups_are_listed(tmp_path):
    root = str(tmp_path)
    synthetic.build(root, n_devices=2)
    platform = os.path.join(root, "sys/kernel/iommu_groups/99")
    os.makedirs(os.path.join(platform, "devices/arm-smmu-v3.0.auto"))
    with open(os.path.join(platform, "type"), "w") as f:
        f.write("DMA\n")
    r = sysfs.SysfsReader(root)
    groups = r.groups(r.pci_devices())
    assert groups["99"]["devices"] == ["arm-smmu-v3.0.auto"]
    assert groups == r.groups()
