# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt domain XML -> requirements: every <iommu> attribute as libvirt's QEMU driver passes it,
devices, iommufd, memory, <qemu:commandline>/<qemu:override>, real-world definitions, malformed and
hostile documents, and hypothesis fuzzing."""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import VMDefinitionError, requirements
from ansible_collections.iommu.host.plugins.module_utils.vmdef import common
from ansible_collections.iommu.host.plugins.module_utils.vmdef.common import gate_params

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "vmdef")
PARAMS = gate_params()


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def domain(devices="", machine="pc-q35-10.1", arch="x86_64", extra="", memory="<memory unit='GiB'>4</memory>",
           attrs=""):
    return ("<domain type='kvm'%s><name>t</name>%s<os><type arch='%s' machine='%s'>hvm</type></os>%s"
            "<devices>%s</devices></domain>" % (attrs, memory, arch, machine, extra, devices))


HOSTDEV = ("<hostdev mode='subsystem' type='pci' managed='yes'><source>"
           "<address domain='0x0000' bus='0x3b' slot='0x00' function='0x1'/></source></hostdev>")


def iommu(model, driver_attrs="", inner=""):
    attrs = " ".join("%s='%s'" % kv for kv in driver_attrs) if isinstance(driver_attrs, (list, tuple)) else driver_attrs
    return "<iommu model='%s'><driver %s>%s</driver></iommu>" % (model, attrs, inner)


# ---------------------------------------------------------------------------------------------
# Every <iommu><driver> attribute: libvirt's QEMU property and value
# ---------------------------------------------------------------------------------------------

# (libvirt model, attribute, XML value, QEMU property, value QEMU receives, normalised)
ATTRS = [
    ("intel", "intremap", "on", "intremap", True),
    ("intel", "intremap", "off", "intremap", False),
    ("intel", "caching_mode", "on", "caching-mode", True),
    ("intel", "caching_mode", "off", "caching-mode", False),
    ("intel", "eim", "on", "eim", True),
    ("intel", "iotlb", "on", "device-iotlb", True),
    ("intel", "aw_bits", "48", "aw-bits", 48),
    ("intel", "aw_bits", "39", "aw-bits", 39),
    ("intel", "dma_translation", "off", "dma-translation", False),
    ("intel", "scalable_mode", "on", "scalable-mode", True),
    ("intel", "fsts", "on", "fsts", True),
    ("amd", "intremap", "on", "intremap", True),
    ("amd", "iotlb", "on", "device-iotlb", True),
    ("amd", "xtsup", "on", "xtsup", True),
    ("amd", "passthrough", "off", "pt", False),
    ("virtio", "aw_bits", "48", "aw-bits", 48),
    ("smmuv3", "accel", "on", "accel", True),
    ("smmuv3", "ats", "on", "ats", True),
    ("smmuv3", "ril", "off", "ril", False),
    ("smmuv3", "ssidSize", "20", "ssidsize", 20),
    ("smmuv3", "oas", "48", "oas", 48),
]
MODEL = {"intel": "intel-iommu", "amd": "amd-iommu", "virtio": "virtio-iommu", "smmuv3": "arm-smmuv3"}


@pytest.mark.parametrize("model, attr, raw, prop, value", ATTRS)
def test_iommu_driver_attribute(model, attr, raw, prop, value):
    attrs = [(attr, raw)]
    if model == "smmuv3":
        attrs = [("pciBus", "0")] + ([] if attr == "accel" else [("accel", "on")]) + attrs
    arch, machine = ("aarch64", "virt") if model == "smmuv3" else ("x86_64", "q35")
    r = requirements(domain(iommu(model, attrs) + HOSTDEV, machine=machine, arch=arch))
    assert r["source"] == "libvirt"
    assert r["viommu"]["model"] == MODEL[model]
    assert r["viommu"]["properties"][prop] == value
    name = prop.replace("-", "_")
    if PARAMS is not None and name in PARAMS:
        assert r["params"][name] == value
    elif prop in common.NO_HOST_REQUIREMENT.get(MODEL[model], ()):
        # QEMU compares nothing of the host for it: known, nothing to judge, no problem
        assert not [p for p in r["problems"] if " %s " % prop in p], r["problems"]
    elif not (model == "smmuv3" and prop == "accel"):
        assert "%s property %s (%s) is not judged by the gate" % (MODEL[model], prop, common.text(value)) \
            in r["problems"]


def test_intel_exact_properties_in_libvirt_order():
    r = requirements(domain(iommu("intel", "intremap='on' caching_mode='on' eim='on' iotlb='on' aw_bits='48'"
                                           " dma_translation='on'") + HOSTDEV))
    assert list(r["viommu"]["properties"].items()) == [
        ("id", "iommu0"), ("intremap", True), ("caching-mode", True), ("eim", True), ("device-iotlb", True),
        ("aw-bits", 48), ("dma-translation", True)]


def test_amd_gets_pci_id_of_its_amdvi_pci_companion():
    r = requirements(fixture("libvirt-amd-iommu.xml"))
    # libvirt: -device AMDVI-PCI,id=iommu0,bus=pcie.0,addr=0x1 -device amd-iommu,pci-id=iommu0,intremap=on,...
    expected = {"pci-id": "iommu0", "intremap": True, "device-iotlb": True}
    assert r["viommu"] == {"model": "amd-iommu", "properties": expected}
    assert r["params"]["pci_id"] == "iommu0" and r["profiles"] == ["passthrough", "amd_viommu"]
    assert r["memory"]["size"] == 219136 * 1024  # libvirt rounds 219100 KiB up to whole MiB


def test_amd_alias_names_the_companion():
    r = requirements(domain("<iommu model='amd'><alias name='ua-amdvi'/></iommu>" + HOSTDEV))
    assert r["viommu"]["properties"] == {"pci-id": "ua-amdvi"}


def test_smmuv3_without_pci_bus_is_machine_level():
    r = requirements(fixture("aarch64-machine-smmuv3.xml"))
    assert r["viommu"] == {"model": "arm-smmuv3", "properties": {}}
    assert r["profiles"] == ["passthrough"] and any("emulated SMMUv3" in p for p in r["problems"])
    r = requirements(domain(iommu("smmuv3", "accel='on'") + HOSTDEV, machine="virt", arch="aarch64"))
    assert any("need pciBus" in p for p in r["problems"])


def test_smmuv3_pluggable_device():
    r = requirements(fixture("aarch64-nested-smmuv3.xml"))
    props = r["viommu"]["properties"]
    assert props["primary-bus"] == "ua-pxb1" and props["accel"] is True
    assert (props["ats"], props["ril"], props["ssidsize"], props["oas"]) == (True, False, 20, 48)
    assert r["profiles"] == ["passthrough", "smmuv3_accel"] and r["iommufd"] is True
    r = requirements(domain(iommu("smmuv3", "pciBus='0'") + HOSTDEV + "<controller type='pci' index='0' "
                            "model='pcie-root'/>", machine="virt", arch="aarch64"))
    assert r["viommu"]["properties"] == {"primary-bus": "pcie.0", "id": "iommu0"}
    assert r["profiles"] == ["passthrough"]


def test_virtio_granule_and_address():
    r = requirements(fixture("virtio-iommu-granule.xml"))
    assert r["viommu"] == {"model": "virtio-iommu", "properties": {
        "id": "iommu0", "aw-bits": 48, "granule": "64k", "bus": "pcie.0", "addr": "0x1"}}
    assert r["profiles"] == ["passthrough", "virtio_viommu"]
    r = requirements(domain(iommu("virtio", "", "<granule mode='host'/>") + HOSTDEV))
    assert r["viommu"]["properties"]["granule"] == "host"
    r = requirements(domain(iommu("virtio", "", "<granule size='3' unit='b'/>") + HOSTDEV))
    assert "granule" not in r["viommu"]["properties"] and any("granule" in p for p in r["problems"])


@pytest.mark.parametrize("xml, word", [
    (iommu("intel", "caching_mode='maybe'"), "neither on nor off"),
    (iommu("intel", "aw_bits='wide'"), "not a number"),
    (iommu("intel", "pasid='on'"), "does not know how libvirt passes"),
    (iommu("amd", "dma_translation='on'"), "does not know how libvirt passes"),
    ("<iommu model='riscv'/>", "not a model libvirt knows"),
])
def test_iommu_attribute_problems(xml, word):
    r = requirements(domain(xml + HOSTDEV))
    assert any(word in p for p in r["problems"]), r["problems"]


def test_aw_bits_zero_is_not_emitted():
    r = requirements(domain(iommu("intel", "aw_bits='0'") + HOSTDEV))
    assert "aw-bits" not in r["viommu"]["properties"]


@pytest.mark.parametrize("machine, aw", [("pc-q35-9.1", 39), ("pc-q35-9.2", None), ("q35", None)])
def test_aw_bits_default_follows_the_machine_type(machine, aw):
    r = requirements(domain(iommu("intel", "caching_mode='on'") + HOSTDEV, machine=machine))
    assert r["params"].get("aw_bits") == aw


# ---------------------------------------------------------------------------------------------
# Devices and iommufd
# ---------------------------------------------------------------------------------------------

def test_hostdev_interface_mdev():
    r = requirements(fixture("nova-sriov-numa.xml"))
    assert r["devices"] == ["0000:3b:02.3", "0000:3b:0a.1"]
    r = requirements(fixture("vgpu-mdev.xml"))
    assert r["devices"] == ["c2177883-f1bb-47f0-914d-32a22e3a8804"]
    r = requirements(fixture("virt-manager-q35-intel.xml"))
    assert r["devices"] == ["0000:0b:00.0", "0000:0b:00.1"]  # the USB hostdev is not an IOMMU device


@pytest.mark.parametrize("address, expected", [
    ("domain='0x0000' bus='0x3b' slot='0x00' function='0x1'", "0000:3b:00.1"),
    ("domain='0' bus='59' slot='0' function='1'", "0000:3b:00.1"),
    ("bus='0x3b' slot='0x1f' function='7'", "0000:3b:1f.7"),
    ("domain='0x10000' bus='0' slot='0' function='0'", None),
    ("domain='0' bus='0' slot='0x20' function='0'", None),
    ("domain='0' bus='zz' slot='0' function='0'", None),
])
def test_hostdev_address_forms(address, expected):
    xml = domain("<hostdev mode='subsystem' type='pci'><source><address %s/></source></hostdev>" % address)
    r = requirements(xml)
    assert r["devices"] == ([expected] if expected else [])
    if not expected:
        assert any("no valid <source><address" in p for p in r["problems"])


def test_iommufd_per_hostdev_and_domain_wide():
    on = HOSTDEV.replace("<source>", "<driver name='vfio' iommufd='yes'/><source>")
    assert requirements(domain(on))["iommufd"] is True
    assert requirements(domain(HOSTDEV))["iommufd"] is False
    assert requirements(domain(HOSTDEV, extra="<iommufd enabled='yes'/>"))["iommufd"] is True
    mixed = requirements(domain(on + HOSTDEV.replace("0x3b", "0x3c")))
    assert mixed["iommufd"] is True and any("legacy VFIO container" in p for p in mixed["problems"])


def test_non_vfio_and_s390_devices():
    r = requirements(domain(HOSTDEV.replace("<source>", "<driver name='kvm'/><source>") +
                            "<hostdev mode='subsystem' type='mdev' model='vfio-ccw'><source>"
                            "<address uuid='90c6c135-ad44-41d0-b1b7-bae47de48627'/></source></hostdev>"
                            "<hostdev mode='subsystem' type='mdev'><source><address uuid='bad'/></source></hostdev>"
                            "<interface type='network'><source network='sriov-pool'/><driver name='vfio'/></interface>"
                            "<hostdev mode='capabilities' type='storage'><source><block>/dev/sdf</block></source>"
                            "</hostdev>"))
    text = "\n".join(r["problems"])
    assert "driver name='kvm'" in text and "vfio-ccw" in text and "no valid <source><address uuid" in text
    assert "sriov-pool" in text


def test_qemu_commandline_and_override():
    r = requirements(fixture("amd-qemu-commandline.xml"))
    expected = {"pci-id": "vypriommu", "intremap": True, "dma-remap": True}
    assert r["viommu"] == {"model": "amd-iommu", "properties": expected}
    assert r["devices"] == ["0000:0c:00.0"]
    if PARAMS and "dma_remap" in PARAMS:
        assert r["params"]["dma_remap"] is True
    if PARAMS and "x_device_dirty_page_tracking" in PARAMS:
        assert r["params"]["x_device_dirty_page_tracking"] is False


def test_commandline_globals_reach_libvirt_devices_and_unknown_override_alias():
    ns = " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
    xml = domain(iommu("intel", "caching_mode='on'") + HOSTDEV, attrs=ns, extra="") .replace(
        "</domain>", "<qemu:commandline><qemu:arg value='-global'/><qemu:arg value='intel-iommu.x-flts=on'/>"
        "<qemu:arg value='-global'/><qemu:arg value='vfio-pci.x-device-dirty-page-tracking=off'/>"
        "<qemu:arg value='-object'/><qemu:arg value='iommufd,id=iommufd0'/></qemu:commandline>"
        "<qemu:override><qemu:device alias='hostdev9'><qemu:frontend><qemu:property name='x' type='bool' "
        "value='true'/></qemu:frontend></qemu:device></qemu:override></domain>")
    r = requirements(xml)
    assert r["viommu"]["properties"]["x-flts"] is True
    assert any("alias hostdev9" in p for p in r["problems"])
    if PARAMS and "x_device_dirty_page_tracking" in PARAMS:
        assert r["params"]["x_device_dirty_page_tracking"] is False


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------

def test_memory_virt_manager():
    mem = requirements(fixture("virt-manager-q35-intel.xml"))["memory"]
    assert mem["size"] == 16 << 30 and mem["locked"] is True and mem["source"] == "hugetlbfs"
    assert mem["hugepages"] == [{"size": 1 << 30, "nodeset": None}]
    assert (mem["host_nodes"], mem["policy"]) == ("1", "strict")


def test_memory_nova_numa():
    mem = requirements(fixture("nova-sriov-numa.xml"))["memory"]
    assert mem["size"] == 8 << 30 and mem["shared"] is True
    assert mem["hugepages"] == [{"size": 2 << 20, "nodeset": "0"}]
    assert mem["numa"] == [{"id": 0, "cpus": "0-3", "size": 8 << 30, "host_nodes": "1", "policy": "strict",
                            "hugepage_size": 2 << 20}]


def test_memory_hotplug_memtune_units():
    xml = domain(HOSTDEV, memory="<maxMemory slots='16' unit='GiB'>64</maxMemory><memory unit='MB'>1000</memory>"
                                 "<memtune><hard_limit unit='G'>10</hard_limit></memtune>")
    mem = requirements(xml)["memory"]
    assert mem["max_size"] == 64 << 30 and mem["slots"] == 16 and mem["hard_limit"] == 10 << 30
    assert mem["size"] == 1000 * 1000 * 1000 // (1 << 20) * (1 << 20) + (1 << 20)  # rounded up to a MiB


@pytest.mark.parametrize("value, unit, size", [
    ("1", "b", 1), ("1", "bytes", 1), ("1", "KB", 1000), ("1", "k", 1024), ("1", "KiB", 1024), ("1", "MB", 10 ** 6),
    ("1", "M", 1 << 20), ("1", "GiB", 1 << 30), ("1", "TB", 10 ** 12), ("1", "PiB", 1 << 50), ("1", "EiB", 1 << 60),
    ("1", None, 1024), ("x", "KiB", None), ("1", "parsec", None), ("-1", "KiB", None),
])
def test_libvirt_scale(value, unit, size):
    assert common.libvirt_scale(value, unit) == size


def test_memory_per_cell_hugepages_and_memnodes():
    xml = ("<domain type='kvm'><name>n</name><memory>4194304</memory>"
           "<memoryBacking><hugepages><page size='1' unit='G' nodeset='1'/><page size='2048'/></hugepages>"
           "</memoryBacking><numatune><memory mode='interleave' nodeset='0-3,^2'/>"
           "<memnode cellid='1' mode='preferred' nodeset='3'/></numatune>"
           "<cpu><numa><cell id='0' cpus='0-1' memory='2' unit='GiB'/><cell id='1' cpus='2-3' memory='2097152'/>"
           "</numa></cpu><devices/></domain>")
    mem = requirements(xml)["memory"]
    assert mem["host_nodes"] == "0-1,3" and mem["policy"] == "interleave"
    assert [(c["id"], c["size"], c["host_nodes"], c["policy"], c["hugepage_size"]) for c in mem["numa"]] == [
        (0, 2 << 30, "0-1,3", "interleave", 2 << 20), (1, 2 << 30, "3", "preferred", 1 << 30)]
    assert mem["size"] == 4 << 30


# ---------------------------------------------------------------------------------------------
# Real-world definitions, whole
# ---------------------------------------------------------------------------------------------

def test_virt_manager_definition():
    r = requirements(fixture("virt-manager-q35-intel.xml"))
    assert (r["name"], r["arch"], r["machine"]) == ("win11-gpu", "x86_64", "pc-q35-8.2")
    assert r["viommu"]["properties"] == {"id": "iommu0", "intremap": True, "caching-mode": True, "eim": True,
                                         "device-iotlb": True}
    assert r["profiles"] == ["passthrough", "intel_viommu"]
    assert r["params"]["caching_mode"] is True and r["params"]["aw_bits"] == 39 and r["params"]["iommufd"] is False


def test_nova_definition():
    r = requirements(fixture("nova-sriov-numa.xml"))
    assert (r["name"], r["arch"], r["machine"]) == ("instance-0000a1b2", None, "q35")
    assert r["params"]["aw_bits"] == 48 and r["params"]["caching_mode"] is True


def test_libvirt_and_its_command_line_agree():
    """The XML and the command line libvirt generates for it give the same vIOMMU and devices."""
    xml = fixture("libvirt-amd-iommu.xml").replace(
        "<memballoon", "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' "
        "bus='0x06' slot='0x12' function='0x5'/></source></hostdev><memballoon")
    argv = ("LC_ALL=C HOME=/var/lib/libvirt/qemu/domain-1-QEMUGuest1 /usr/bin/qemu-system-x86_64 "
            "-name guest=QEMUGuest1,debug-threads=on -S "
            "-machine q35,usb=off,kernel_irqchip=split,dump-guest-core=off,memory-backend=pc.ram,acpi=on "
            "-accel kvm -m size=219136k "
            "-object '{\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\",\"size\":224395264}' "
            "-device '{\"driver\":\"AMDVI-PCI\",\"id\":\"iommu0\",\"bus\":\"pcie.0\",\"addr\":\"0x1\"}' \\\n"
            "-device '{\"driver\":\"amd-iommu\",\"pci-id\":\"iommu0\",\"intremap\":\"on\",\"device-iotlb\":true}' \\\n"
            "-device '{\"driver\":\"vfio-pci\",\"host\":\"0000:06:12.5\",\"id\":\"hostdev0\",\"bus\":\"pci.1\","
            "\"addr\":\"0x0\"}'")
    a, b = requirements(xml), requirements(argv)
    for key in ("name", "machine", "viommu", "devices", "iommufd", "profiles", "params"):
        assert a[key] == b[key], key
    assert a["memory"]["size"] == b["memory"]["size"]


# ---------------------------------------------------------------------------------------------
# Malformed and hostile documents
# ---------------------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<domain><name>&lol3;</name></domain>"""

EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<domain><name>&xxe;</name></domain>"""


@pytest.mark.parametrize("data, match", [
    ("", "empty"),
    ("   ", "empty"),
    (b"", "empty"),
    ("<domain><name>x</name><devices>", "malformed XML"),
    ("<domain type='kvm'", "malformed XML"),
    ("<domain><name>a</nam></domain>", "malformed XML"),
    ("<domain/><domain/>", "malformed XML"),
    ("<capabilities/>", "root element is <capabilities>"),
    ("<network><name>default</name></network>", "not a libvirt domain XML"),
    (BILLION_LAUGHS, "DOCTYPE declaration"),
    (EXTERNAL, "DOCTYPE declaration"),
    ("<domain><!ENTITY x 'y'></domain>", "ENTITY declaration"),
    ("<!doctype domain><domain/>", "DOCTYPE"),
    (b"\xff\xfe<\x00d\x00", "not UTF-8"),
    ("<domain>&undefined;</domain>", "malformed XML"),
])
def test_malformed_xml(data, match):
    with pytest.raises(VMDefinitionError, match=match):
        requirements(data)


def test_source_libvirt_forced_on_a_list_and_bytes_accepted():
    with pytest.raises(VMDefinitionError, match="must be a string"):
        requirements(["<domain/>"], source="libvirt")
    r = requirements(fixture("vgpu-mdev.xml").encode("utf-8"))
    assert r["name"] == "vdi-desktop-07"
    with pytest.raises(VMDefinitionError, match="source must be one of"):
        requirements("<domain/>", source="xen")


def test_huge_xml_is_bounded():
    with pytest.raises(VMDefinitionError, match="longer than"):
        requirements("<domain>" + " " * common.MAX_INPUT_CHARS + "</domain>")


def test_deep_nesting_is_refused_or_read():
    deep = "<domain>" + "<a>" * 100000 + "</a>" * 100000 + "</domain>"
    try:
        r = requirements(deep)
    except VMDefinitionError:
        return
    assert r["devices"] == []


def test_unknown_elements_are_ignored():
    xml = domain(HOSTDEV + "<sparkle colour='blue'><deep/></sparkle>", extra="<future-feature/>")
    r = requirements(xml)
    assert r["devices"] == ["0000:3b:00.1"] and r["problems"] == []


def test_minimal_domain():
    r = requirements("<domain type='kvm'><name>x</name></domain>")
    assert r["viommu"] == {"model": None, "properties": {}} and r["devices"] == []
    assert any("no <memory>" in p for p in r["problems"])


# ---------------------------------------------------------------------------------------------
# Fuzzing: only VMDefinitionError, whatever the document
# ---------------------------------------------------------------------------------------------

_NAMES = st.sampled_from(["domain", "devices", "iommu", "driver", "hostdev", "source", "address", "interface",
                          "memory", "memoryBacking", "hugepages", "page", "numatune", "memnode", "cpu", "numa",
                          "cell", "os", "type", "name", "alias", "granule", "maxMemory", "iommufd", "controller"])
_ATTR_NAMES = st.sampled_from(["model", "type", "mode", "intremap", "caching_mode", "aw_bits", "iotlb", "eim",
                               "domain", "bus", "slot", "function", "uuid", "unit", "size", "nodeset", "cellid",
                               "id", "memory", "cpus", "pciBus", "accel", "iommufd", "enabled", "name", "index",
                               "slots", "arch", "machine", "ssidSize", "oas", "dma_translation", "passthrough"])
_VALUES = st.one_of(st.sampled_from(["on", "off", "yes", "no", "intel", "amd", "smmuv3", "virtio", "pci", "mdev",
                                     "subsystem", "0x3b", "0", "48", "KiB", "G", "0-1", "hostdev", "strict",
                                     "c2177883-f1bb-47f0-914d-32a22e3a8804", "-1", "0x10000"]),
                    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                            max_size=10))


def _element(depth):
    children = st.lists(st.deferred(lambda: _element(depth - 1)), max_size=3) if depth > 0 else st.just([])
    return st.builds(_render, _NAMES, st.dictionaries(_ATTR_NAMES, _VALUES, max_size=4), children,
                     st.one_of(st.none(), _VALUES))


def _render(name, attrs, children, text):
    from xml.sax.saxutils import escape, quoteattr
    a = "".join(" %s=%s" % (k, quoteattr("".join(ch for ch in v if ch >= " " or ch in "\t\n\r")))
                for k, v in attrs.items())
    body = "".join(children) + (escape("".join(ch for ch in text if ch >= " " or ch in "\t\n\r")) if text else "")
    return "<%s%s>%s</%s>" % (name, a, body, name)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_element(2), max_size=5))
def test_fuzz_structured_domain(children):
    xml = "<domain type='kvm'><name>f</name>%s</domain>" % "".join(children)
    try:
        r = requirements(xml)
    except VMDefinitionError:
        return
    json.dumps(r)
    assert isinstance(r["problems"], list) and isinstance(r["devices"], list)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(f for f in os.listdir(FIXTURES) if f.endswith(".xml"))),
       st.integers(min_value=0, max_value=6000), st.text(max_size=8))
def test_fuzz_mutated_real_definitions(name, cut, insert):
    text = fixture(name)
    for data in (text[:cut], text[:cut] + insert + text[cut:]):
        try:
            json.dumps(requirements(data, source="libvirt"))
        except VMDefinitionError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_any_text_as_xml(data):
    try:
        requirements("<" + data, source="libvirt")
    except VMDefinitionError:
        pass


def test_vfio_ats_from_commandline_global():
    """libvirt has no hostdev attribute for vfio-pci's ats (QEMU 11.1+); a -global in <qemu:commandline> reaches
    the hostdevs and becomes the gate parameter vfio_ats (ats itself is arm-smmuv3's)."""
    ns = " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
    xml = domain(HOSTDEV, attrs=ns, extra="").replace(
        "</domain>", "<qemu:commandline><qemu:arg value='-global'/><qemu:arg value='vfio-pci.ats=off'/>"
        "</qemu:commandline></domain>")
    r = requirements(xml)
    if PARAMS and "vfio_ats" in PARAMS:
        assert r["params"]["vfio_ats"] is False and "ats" not in r["params"], r["params"]
    else:
        assert any("vfio-pci property ats" in p for p in r["problems"]), r["problems"]
