# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU command lines -> requirements: shell words, QemuOpts, JSON, every property the gate uses in
both syntaxes, memory, devices, malformed input, and hypothesis fuzzing of both layers."""

import json
import os
import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import VMDefinitionError, requirements
from ansible_collections.iommu.host.plugins.module_utils.vmdef import common, qemu
from ansible_collections.iommu.host.plugins.module_utils.vmdef.common import gate_params

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "vmdef")
PARAMS = gate_params()


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def req(*args):
    return requirements(["qemu-system-x86_64"] + list(args))


# ---------------------------------------------------------------------------------------------
# Shell words
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, words", [
    ("a b  c", ["a", "b", "c"]),
    ("a \\\n  b", ["a", "b"]),
    ("a\\\nb", ["ab"]),
    ("-device '{\"driver\":\"vfio-pci\"}'", ["-device", '{"driver":"vfio-pci"}']),
    ('"a b" c', ["a b", "c"]),
    ('"a\\"b\\\\c\\$d\\x"', ['a"b\\c$d\\x']),
    ("'it'\\''s'", ["it's"]),
    ("a # comment\nb", ["a", "b"]),
    ("#!/bin/sh\nqemu -S", ["qemu", "-S"]),
    ("a#b", ["a#b"]),
    ("", []),
    ("x\\ y", ["x y"]),
    ('"line\\\njoined"', ["linejoined"]),
])
def test_shell_words(line, words):
    assert qemu.shell_words(line)[0] == words


@pytest.mark.parametrize("line, match", [
    ("a 'b", "unterminated single quote"),
    ('a "b', "unterminated double quote"),
    ("qemu -S | tee log", "shell operator"),
    ("qemu -S; reboot", "shell operator"),
    ("qemu -S > /dev/null", "shell operator"),
    ("qemu -S &", "shell operator"),
])
def test_shell_words_errors(line, match):
    with pytest.raises(VMDefinitionError, match=match):
        qemu.shell_words(line)


def test_unexpanded_variables_are_problems():
    r = requirements('qemu-system-x86_64 -m $MEM -device "vfio-pci,host=${BDF}" -name vm1')
    assert any("$MEM" in p for p in r["problems"])
    assert any("${BDF}" in p for p in r["problems"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=0, max_size=30), max_size=12))
def test_shell_words_invert_shlex_quote(words):
    """Whatever shlex.quote writes, the reader gives back the same words."""
    line = " ".join(shlex.quote(w) for w in words)
    assert qemu.shell_words(line)[0] == words


@settings(max_examples=300)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00;|&<>()`$#"), max_size=20), max_size=8))
def test_shell_words_agree_with_shlex(words):
    line = " ".join(shlex.quote(w) for w in words)
    assert qemu.shell_words(line)[0] == shlex.split(line)


# ---------------------------------------------------------------------------------------------
# QemuOpts grammar (util/qemu-option.c)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arg, implied, pairs", [
    ("vfio-pci,host=01:00.0", "driver", [("driver", "vfio-pci"), ("host", "01:00.0")]),
    ("driver=vfio-pci,host=01:00.0", "driver", [("driver", "vfio-pci"), ("host", "01:00.0")]),
    ("a,b=c,,d,e=f", "driver", [("driver", "a"), ("b", "c,d"), ("e", "f")]),
    ("x,,y,z=1", "driver", [("driver", "x,y"), ("z", "1")]),
    ("q35,accel", "type", [("type", "q35"), ("accel", "on")]),
    ("q35,nousb", "type", [("type", "q35"), ("usb", "off")]),
    ("node,cpus=0-1,cpus=4-5", "type", [("type", "node"), ("cpus", "0-1"), ("cpus", "4-5")]),
    ("mem-lock=on", None, [("mem-lock", "on")]),
    ("k=", None, [("k", "")]),
    ("k=a=b", None, [("k", "a=b")]),
    (",", "driver", [("driver", "")]),
    ("a,,", "driver", [("driver", "a,")]),
    ("4G", "size", [("size", "4G")]),
])
def test_parse_opts(arg, implied, pairs):
    assert qemu.parse_opts(arg, implied) == pairs


def test_repeated_cpus_are_kept():
    assert qemu.opts_dict(qemu.parse_opts("node,cpus=0-1,cpus=4-5", "type"))["cpus"] == ["0-1", "4-5"]


@pytest.mark.parametrize("raw, value", [
    ("on", True), ("off", False), ("yes", True), ("no", False), ("true", True), ("false", False),
    ("ON", True), ("y", True), ("n", False), ("48", 48), ("0x30", 48), ("-1", -1), ("auto", "auto"),
    ("host", "host"), ("iommu0", "iommu0"), ("4k", "4k"), (True, True), (7, 7), (2.0, 2), ([1, "on"], [1, True]),
])
def test_norm_value(raw, value):
    assert common.norm_value(raw) == value and type(common.norm_value(raw)) is type(value)


@pytest.mark.parametrize("raw, unit, size", [
    ("4G", "m", 4 << 30), ("4096", "m", 4 << 30), ("219136k", "m", 219136 << 10), ("1.5G", "m", 3 << 29),
    (1073741824, "b", 1 << 30), ("2M", "b", 2 << 20), ("512", "b", 512), ("0x1000", "b", 4096),
    ("1T", "m", 1 << 40), ("4 G", "m", None), ("-1", "m", None), ("x", "m", None), ("0x10k", "b", None),
    (True, "b", None), ("9e", "b", 9 << 60), ("20E", "b", None),
])
def test_qemu_size(raw, unit, size):
    assert common.qemu_size(raw, unit) == size


# ---------------------------------------------------------------------------------------------
# Every property the gate uses, classic and JSON syntax
# ---------------------------------------------------------------------------------------------

# (driver, QEMU property, classic value, expected normalised value)
VIOMMU_PROPS = [
    ("intel-iommu", "aw-bits", "39", 39),
    ("intel-iommu", "caching-mode", "on", True),
    ("intel-iommu", "x-scalable-mode", "on", True),
    ("intel-iommu", "scalable-mode", "on", True),
    ("intel-iommu", "x-flts", "on", True),
    ("intel-iommu", "fsts", "on", True),
    ("intel-iommu", "fs1gp", "off", False),
    ("intel-iommu", "x-pasid-mode", "on", True),
    ("intel-iommu", "pasid-bits", "20", 20),
    ("intel-iommu", "svm", "on", True),
    ("intel-iommu", "snoop-control", "on", True),
    ("intel-iommu", "dma-translation", "off", False),
    ("intel-iommu", "intremap", "on", True),
    ("intel-iommu", "eim", "off", False),
    ("intel-iommu", "device-iotlb", "on", True),
    ("amd-iommu", "dma-remap", "on", True),
    ("amd-iommu", "pci-id", "iommu0", "iommu0"),
    ("amd-iommu", "xtsup", "on", True),
    ("amd-iommu", "pt", "off", False),
    ("arm-smmuv3", "stage", "nested", "nested"),
    ("arm-smmuv3", "stage", "1", 1),
    ("arm-smmuv3", "ril", "off", False),
    ("arm-smmuv3", "ats", "on", True),
    ("arm-smmuv3", "oas", "48", 48),
    ("arm-smmuv3", "ssidsize", "20", 20),
    ("virtio-iommu", "aw-bits", "48", 48),
    ("virtio-iommu", "granule", "host", "host"),
]


def _json_value(value):
    return value


@pytest.mark.parametrize("syntax", ["classic", "json"])
@pytest.mark.parametrize("driver, prop, raw, value", VIOMMU_PROPS)
def test_viommu_property(syntax, driver, prop, raw, value):
    extra = {"arm-smmuv3": {"accel": True}}.get(driver, {})
    if syntax == "classic":
        arg = "%s,%s=%s%s" % (driver, prop, raw, ",accel=on" if extra else "")
    else:
        body = {"driver": driver, prop: value if not isinstance(value, str) or prop == "pci-id" else raw}
        body.update(extra)
        arg = json.dumps(body)
    r = req("-machine", "q35", "-device", arg, "-device", "vfio-pci,host=0000:01:00.0")
    assert r["viommu"]["model"] == driver
    assert r["viommu"]["properties"][prop] == value
    name = prop.replace("-", "_")
    if PARAMS is not None and name in PARAMS:
        assert r["params"][name] == value
        assert not any(" property %s " % prop in p for p in r["problems"])
    elif prop in common.NO_HOST_REQUIREMENT.get(driver, ()):
        assert name not in r["params"]      # QEMU compares nothing of the host for it
        assert not any(" property %s " % prop in p for p in r["problems"]), r["problems"]
    else:
        assert name not in r["params"]
        assert "%s property %s (%s) is not judged by the gate" % (driver, prop, common.text(value)) in r["problems"]


@pytest.mark.parametrize("syntax", ["classic", "json"])
@pytest.mark.parametrize("prop, raw, value", [
    ("x-device-dirty-page-tracking", "off", False),
    ("enable-migration", "on", True),
    ("enable-migration", "auto", "auto"),
])
def test_vfio_property(syntax, prop, raw, value):
    arg = "vfio-pci,host=01:00.0,%s=%s" % (prop, raw) if syntax == "classic" else json.dumps(
        {"driver": "vfio-pci", "host": "0000:01:00.0", prop: value})
    r = req("-device", arg)
    name = prop.replace("-", "_")
    if PARAMS is not None and name in PARAMS:
        assert r["params"][name] == value
    else:
        assert any("vfio-pci property %s" % prop in p for p in r["problems"])


@pytest.mark.parametrize("driver, model, profile", [
    ("intel-iommu", "intel-iommu", "intel_viommu"),
    ("amd-iommu", "amd-iommu", "amd_viommu"),
    ("virtio-iommu", "virtio-iommu", "virtio_viommu"),
    ("virtio-iommu-pci", "virtio-iommu", "virtio_viommu"),
    ("virtio-iommu-device", "virtio-iommu", "virtio_viommu"),
])
def test_models_and_profiles(driver, model, profile):
    r = req("-device", driver, "-device", "vfio-pci,host=01:00.0")
    assert r["viommu"]["model"] == model
    assert r["profiles"] == ["passthrough", profile]
    assert r["params"]["viommu"] == model


def test_smmuv3_accel_selects_the_profile_and_emulated_does_not():
    accel = requirements("qemu-system-aarch64 -M virt -device arm-smmuv3,primary-bus=pcie.0,accel=on "
                         "-object iommufd,id=fd0 -device vfio-pci,host=0009:01:00.0,iommufd=fd0")
    assert accel["profiles"] == ["passthrough", "smmuv3_accel"] and accel["iommufd"] is True
    assert not any("accel" in p for p in accel["problems"]) or (PARAMS and "accel" in PARAMS)
    emulated = requirements("qemu-system-aarch64 -M virt,iommu=smmuv3 -device vfio-pci,host=0009:01:00.0")
    assert emulated["viommu"] == {"model": "arm-smmuv3", "properties": {}}
    assert emulated["profiles"] == ["passthrough"]
    assert any("emulated SMMUv3" in p for p in emulated["problems"])
    plain_dev = requirements("qemu-system-aarch64 -M virt -device arm-smmuv3,primary-bus=pcie.0 "
                             "-device vfio-pci,host=0009:01:00.0")
    assert plain_dev["profiles"] == ["passthrough"]


def test_no_viommu():
    r = req("-M", "q35", "-device", "vfio-pci,host=01:00.0")
    assert r["viommu"] == {"model": None, "properties": {}}
    assert r["profiles"] == ["passthrough"] and r["params"]["viommu"] == "none"


def test_live_migration_is_never_added():
    r = req("-M", "q35", "-device", "intel-iommu,caching-mode=on", "-device", "vfio-pci,host=01:00.0",
            "-incoming", "defer")
    assert "live_migration" not in r["profiles"]
    assert any("-incoming" in p for p in r["problems"])


def test_machine_iommu_on_is_legacy_intel():
    r = req("-M", "q35,iommu=on", "-device", "vfio-pci,host=01:00.0")
    assert r["viommu"]["model"] == "intel-iommu"
    assert any("QEMU 2.x" in p for p in r["problems"])


# ---------------------------------------------------------------------------------------------
# -global, -set, aliases of the machine option
# ---------------------------------------------------------------------------------------------

def test_global_reaches_the_device_and_the_device_wins():
    r = req("-global", "intel-iommu.caching-mode=on", "-global", "intel-iommu.aw-bits=39",
            "-device", "intel-iommu,aw-bits=48", "-device", "vfio-pci,host=01:00.0")
    assert r["viommu"]["properties"]["caching-mode"] is True
    assert r["viommu"]["properties"]["aw-bits"] == 48


def test_global_of_a_qom_parent():
    r = req("-global", "x86-iommu.intremap=off", "-global", "driver=intel-iommu,property=caching-mode,value=on",
            "-device", "intel-iommu", "-device", "vfio-pci,host=01:00.0")
    assert r["viommu"]["properties"] == {"intremap": False, "caching-mode": True}


def test_global_for_vfio_reaches_nohotplug():
    r = req("-global", "vfio-pci.x-device-dirty-page-tracking=off",
            "-device", "vfio-pci-nohotplug,host=01:00.0")
    assert r["devices"] == ["0000:01:00.0"]
    if PARAMS and "x_device_dirty_page_tracking" in PARAMS:
        assert r["params"]["x_device_dirty_page_tracking"] is False


def test_set_changes_one_device():
    r = req("-device", "intel-iommu,id=vi0", "-set", "device.vi0.caching-mode=on",
            "-device", "vfio-pci,host=01:00.0", "-set", "device.nope.x=1")
    assert r["viommu"]["properties"]["caching-mode"] is True
    assert any("no -device with id nope" in p for p in r["problems"])


def test_machine_options_merge_and_double_dash():
    r = req("--machine", "pc-q35-9.1", "-machine", "kernel_irqchip=split", "-device", "intel-iommu",
            "-device", "vfio-pci,host=01:00.0")
    assert r["machine"] == "pc-q35-9.1"
    assert r["params"]["aw_bits"] == 39  # QEMU's default on machine types <= 9.1


@pytest.mark.parametrize("machine, aw", [("pc-q35-9.2", None), ("q35", None), ("pc-q35-7.2", 39),
                                         ("pc-i440fx-9.1", 39), ("pc-q35-10.1", None)])
def test_aw_bits_default_by_machine(machine, aw):
    r = req("-M", machine, "-device", "intel-iommu", "-device", "vfio-pci,host=01:00.0")
    assert r["params"].get("aw_bits") == aw


@pytest.mark.parametrize("machine, aw", [("q35", 39), ("pc-q35-10.1", 39), ("pc-i440fx-9.2", 39), ("virt", None)])
def test_virtio_iommu_aw_bits_default_on_x86_pcs(machine, aw):
    r = req("-M", machine, "-device", "virtio-iommu-pci", "-device", "vfio-pci,host=01:00.0")
    assert r["params"].get("aw_bits") == aw
    r = req("-M", machine, "-device", "virtio-iommu-pci,aw-bits=48", "-device", "vfio-pci,host=01:00.0")
    assert r["params"]["aw_bits"] == 48


def test_vendor_machine_type_warns_about_aw_bits():
    r = req("-M", "pc-q35-rhel9.4.0", "-device", "intel-iommu", "-device", "vfio-pci,host=01:00.0")
    assert "aw_bits" not in r["params"]
    assert any("pc-q35-rhel9.4.0" in p for p in r["problems"])


# ---------------------------------------------------------------------------------------------
# Devices and the iommufd backend
# ---------------------------------------------------------------------------------------------

def test_devices_host_sysfsdev_mdev():
    r = req("-device", "vfio-pci,host=3b:00.0", "-device", "vfio-pci,sysfsdev=/sys/bus/pci/devices/0000:5e:00.1",
            "-device", "vfio-pci,sysfsdev=/sys/bus/mdev/devices/83B8F4F2-509F-382F-3C1E-E6BFE0FA1001",
            "-device", "vfio-pci,sysfsdev=/sys/devices/pci0000:00/0000:00:02.0/4b20d080-1b54-4048-85b3-a6a62d165c01",
            "-device", "vfio-pci,host=3b:00.0")
    assert r["devices"] == ["0000:3b:00.0", "0000:5e:00.1", "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001",
                            "4b20d080-1b54-4048-85b3-a6a62d165c01"]


def test_device_by_fd_is_a_problem_but_with_host_it_is_known():
    r = req("-device", "vfio-pci,fd=23,id=hostdev0", "-device", "vfio-pci,host=01:00.0,fd=24")
    assert r["devices"] == ["0000:01:00.0"]
    assert any("file descriptor" in p and "hostdev0" in p for p in r["problems"])


@pytest.mark.parametrize("arg, word", [
    ("vfio-pci,id=x", "neither host="),
    ("vfio-pci,host=zz:00.0", "not a PCI address"),
    ("vfio-pci,sysfsdev=/sys/class/foo", "neither a PCI function nor an mdev"),
    ("vfio-platform,host=fff51000.ethernet", "vfio-platform"),
    ("vfio-ap,sysfsdev=/sys/devices/vfio_ap/matrix/x", "vfio-ap"),
    ("vfio-user-pci,socket.path=/run/x.sock,socket.type=unix", "vfio-user-pci"),
    ("riscv-iommu-pci", "unknown IOMMU-like device"),
])
def test_device_problems(arg, word):
    r = req("-device", arg)
    assert any(word in p for p in r["problems"]), r["problems"]


def test_iommufd_classic_and_json():
    classic = req("-object", "iommufd,id=iommufd0", "-device", "vfio-pci,host=01:00.0,iommufd=iommufd0")
    js = req("-object", '{"qom-type":"iommufd","id":"iommufd0","fd":"25"}',
             "-device", '{"driver":"vfio-pci","host":"0000:01:00.0","iommufd":"iommufd0"}')
    legacy = req("-device", "vfio-pci,host=01:00.0")
    assert classic["iommufd"] is js["iommufd"] is True and legacy["iommufd"] is False
    assert classic["params"]["iommufd"] is True and legacy["params"]["iommufd"] is False


def test_iommufd_mixed_and_dangling():
    r = req("-object", "iommufd,id=fd0", "-device", "vfio-pci,host=01:00.0,iommufd=fd0",
            "-device", "vfio-pci,host=02:00.0", "-device", "vfio-pci,host=03:00.0,iommufd=nope")
    assert r["iommufd"] is True
    assert any("some assigned devices use the iommufd backend" in p for p in r["problems"])
    assert any("iommufd=nope names no -object iommufd" in p for p in r["problems"])


def test_several_viommus():
    r = req("-device", "intel-iommu", "-device", "virtio-iommu-pci", "-device", "vfio-pci,host=01:00.0")
    assert r["viommu"]["model"] == "intel-iommu"
    assert any("more than one vIOMMU model" in p for p in r["problems"])
    r = requirements("qemu-system-aarch64 -M virt -device arm-smmuv3,primary-bus=a,accel=on,oas=48 "
                     "-device arm-smmuv3,primary-bus=b,accel=on,oas=44 -device vfio-pci,host=01:00.0")
    assert r["viommu"]["properties"]["oas"] == 48
    assert any("arm-smmuv3 instances differ" in p for p in r["problems"])


def test_no_devices_is_a_problem():
    r = req("-device", "intel-iommu")
    assert r["devices"] == [] and any("no assigned host device" in p for p in r["problems"])


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------

def test_memory_legacy_mem_path():
    r = req("-m", "4096", "-mem-path", "/dev/hugepages", "-mem-prealloc", "-realtime", "mlock=on")
    mem = r["memory"]
    assert mem["size"] == 4 << 30 and mem["source"] == "hugetlbfs"
    assert mem["hugepages"] == [{"size": None, "nodeset": None}] and mem["locked"] is True


def test_memory_hotplug_and_memfd():
    r = req("-m", "size=2G,slots=8,maxmem=64G", "-object",
            "memory-backend-memfd,id=ram,size=2G,hugetlb=on,hugetlbsize=1G,share=on,host-nodes=0-1,policy=bind",
            "-machine", "q35,memory-backend=ram")
    mem = r["memory"]
    assert (mem["size"], mem["max_size"], mem["slots"]) == (2 << 30, 64 << 30, 8)
    assert mem["hugepages"] == [{"size": 1 << 30, "nodeset": None}]
    assert (mem["source"], mem["shared"], mem["host_nodes"], mem["policy"]) == ("memfd", True, "0-1", "bind")


def test_memory_numa_legacy_mem_and_missing_backend():
    r = req("-m", "4G", "-numa", "node,nodeid=0,cpus=0-1,cpus=4-5,mem=2G", "-numa", "node,nodeid=1,memdev=gone",
            "-numa", "dist,src=0,dst=1,val=20")
    cells = r["memory"]["numa"]
    assert cells[0]["size"] == 2 << 30 and cells[0]["cpus"] == "0-1,4-5"
    assert cells[1]["id"] == 1 and any("memdev=gone" in p for p in r["problems"])


@pytest.mark.parametrize("path, size", [
    ("/dev/hugepages1G/libvirt/qemu/7-vm", 1 << 30), ("/dev/hugepages-2048kB", 2 << 20),
    ("/mnt/hugetlbfs-1G", 1 << 30), ("/dev/hugepages/libvirt/qemu/1-vm", None),
])
def test_hugepage_size_from_mem_path(path, size):
    r = req("-m", "1G", "-object", "memory-backend-file,id=m,size=1G,mem-path=%s" % path, "-M", "q35,memory-backend=m")
    assert r["memory"]["hugepages"] == [{"size": size, "nodeset": None}]


def test_file_backend_is_not_hugepages():
    r = req("-m", "1G", "-object", "memory-backend-file,id=m,size=1G,mem-path=/dev/shm/vm,share=on",
            "-M", "q35,memory-backend=m")
    assert r["memory"]["hugepages"] == [] and r["memory"]["source"] == "file" and r["memory"]["shared"]


# ---------------------------------------------------------------------------------------------
# Whole command lines
# ---------------------------------------------------------------------------------------------

def test_virsh_style_command_line():
    r = requirements(fixture("virsh-intel-hugepages-numa.args"))
    assert (r["source"], r["name"], r["arch"], r["machine"]) == ("qemu", "db-primary", "x86_64", "pc-q35-9.1")
    assert r["viommu"] == {"model": "intel-iommu", "properties": {
        "id": "iommu0", "intremap": True, "caching-mode": True, "eim": True, "device-iotlb": True}}
    assert r["devices"] == ["0000:af:00.0"] and r["iommufd"] is False
    assert r["profiles"] == ["passthrough", "intel_viommu"]
    assert r["params"]["caching_mode"] is True and r["params"]["aw_bits"] == 39
    mem = r["memory"]
    assert mem["size"] == 32 << 30 and mem["locked"] is True and mem["source"] == "hugetlbfs"
    assert mem["hugepages"] == [{"size": 1 << 30, "nodeset": "0-1"}]
    assert [(c["id"], c["cpus"], c["size"], c["host_nodes"], c["policy"]) for c in mem["numa"]] == [
        (0, "0-7", 16 << 30, "0", "bind"), (1, "8-15", 16 << 30, "1", "bind")]


def test_script_with_exec_and_comments():
    r = requirements(fixture("classic-intel-iommufd.sh"))
    assert r["arch"] == "x86_64" and r["machine"] == "q35"
    assert r["devices"] == ["0000:3b:00.0", "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"]
    assert r["iommufd"] is True
    props = r["viommu"]["properties"]
    assert props["x-flts"] is True and props["x-scalable-mode"] is True and props["aw-bits"] == 48
    assert r["memory"]["hugepages"] == [{"size": 2 << 20, "nodeset": None}]


def test_arm_nested_smmu_command_line():
    r = requirements(fixture("aarch64-accel-smmuv3.args"))
    assert r["arch"] == "aarch64" and r["viommu"]["model"] == "arm-smmuv3"
    assert r["viommu"]["properties"]["ssidsize"] == 20 and r["devices"] == ["0009:01:00.0", "0019:01:00.0"]
    assert not any("instances differ" in p for p in r["problems"])  # only primary-bus and id differ
    assert r["memory"]["max_size"] == 128 << 30 and r["memory"]["slots"] == 4


def test_argv_list_equals_string():
    text = fixture("virsh-intel-hugepages-numa.args")
    words = qemu.shell_words(text)[0]
    assert requirements(words) == requirements(text)
    assert requirements(tuple(words)) == requirements(text)


def test_env_prefix_and_no_binary():
    r = requirements("env -i LC_ALL=C /usr/libexec/qemu-kvm -device intel-iommu,caching-mode=on")
    assert r["arch"] is None and r["viommu"]["model"] == "intel-iommu"
    r = requirements("-device intel-iommu -device vfio-pci,host=01:00.0")
    assert r["devices"] == ["0000:01:00.0"]


def test_readconfig_and_help():
    r = req("-readconfig", "/etc/qemu/vm.cfg", "-device", "help")
    assert any("-readconfig" in p for p in r["problems"])
    assert any("asks QEMU for help" in p for p in r["problems"])


def test_unknown_options_do_not_shift_arguments():
    r = req("-some-new-flag", "-device", "intel-iommu", "-another-opt", "value", "-device", "vfio-pci,host=01:00.0",
            "disk.img")
    assert r["viommu"]["model"] == "intel-iommu" and r["devices"] == ["0000:01:00.0"]


# ---------------------------------------------------------------------------------------------
# Malformed input: a clear VMDefinitionError, nothing else
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, match", [
    ("", "empty"),
    ("   \n", "empty"),
    ([], "empty"),
    ("qemu-system-x86_64 -device", "at the end has no argument"),
    ("qemu-system-x86_64 -device '{\"driver\":'", "malformed -device JSON"),
    ("qemu-system-x86_64 -object '{bad json}'", "malformed -object JSON"),
    (["qemu", 5], "not a string"),
    (["qemu", None], "not a string"),
    (42, "not int"),
    ({"a": 1}, "not dict"),
])
def test_malformed(data, match):
    with pytest.raises(VMDefinitionError, match=match):
        requirements(data)


def test_device_without_driver_is_a_problem():
    r = req("-device", '{"host":"0000:01:00.0"}', "-device", '{"driver":5}')
    assert r["devices"] == [] and sum("has no driver" in p for p in r["problems"]) == 1


@pytest.mark.parametrize("args", [
    ["-device", "{" + '"a":[' * 50000 + "]" * 50000 + "}"],
    ["-device", '{"driver":"vfio-pci","host":"0000:01:00.0","x":' + "[" * 900 + "]" * 900 + "}"],
    ["-m", "9" * 5000],
    ["-m", "9" * 400 + ".5G"],
    ["-device", "intel-iommu,aw-bits=" + "9" * 5000],
    ["-object", "memory-backend-ram,id=m,size=1G,host-nodes=0-9999999", "-M", "q35,memory-backend=m"],
    ["-object", "memory-backend-ram,id=m,size=1G,host-nodes=" + ",".join("%d-65535" % i for i in range(300)),
     "-M", "q35,memory-backend=m"],
    ["-numa", "node,nodeid=" + "1" * 5000],
])
def test_pathological_values_do_not_escape(args):
    try:
        json.dumps(req(*args))
    except VMDefinitionError as e:
        assert "nested too deeply" in str(e) or "JSON" in str(e)


def test_crlf_continuations_and_legacy_assignment():
    r = requirements("qemu-system-x86_64 \\\r\n -device intel-iommu \\\r\n -device pci-assign,host=01:00.0")
    assert r["viommu"]["model"] == "intel-iommu"
    assert any("pci-assign" in p for p in r["problems"]) and r["devices"] == []


def test_huge_inputs_are_bounded():
    with pytest.raises(VMDefinitionError, match="longer than"):
        requirements("qemu -S " + "x" * (common.MAX_INPUT_CHARS + 1))
    with pytest.raises(VMDefinitionError, match="more than"):
        requirements(["-S"] * (common.MAX_WORDS + 1))
    with pytest.raises(VMDefinitionError, match="longer than"):
        requirements(["qemu", "-name", "x" * (common.MAX_INPUT_CHARS + 1)])


_OPTS = st.sampled_from(["-device", "-object", "-machine", "-M", "-m", "-numa", "-global", "-set", "-name",
                         "-mem-path", "-overcommit", "-readconfig", "-S", "-nodefaults", "-incoming", "-x"])
_ARGS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.,=:/{}\"[]", max_size=60),
    st.builds(lambda d, kv: d + "," + kv, st.sampled_from(["intel-iommu", "vfio-pci", "amd-iommu", "arm-smmuv3",
                                                           "iommufd", "memory-backend-file", "node", "q35"]),
              st.text(alphabet="abcdefhmnostx0123456789-=,:./", max_size=40)),
    st.dictionaries(st.sampled_from(["driver", "qom-type", "host", "id", "iommufd", "size", "mem-path", "fd",
                                     "sysfsdev", "caching-mode", "host-nodes"]),
                    st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none(),
                              st.lists(st.integers(), max_size=3)), max_size=5).map(json.dumps),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.one_of(_OPTS, _ARGS), max_size=20))
def test_fuzz_argv(words):
    try:
        r = requirements(["qemu-system-x86_64"] + words)
    except VMDefinitionError:
        return
    assert set(r) == {"source", "name", "arch", "machine", "viommu", "devices", "iommufd", "memory", "profiles",
                      "params", "problems"}
    json.dumps(r)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=300))
def test_fuzz_text(line):
    try:
        r = requirements(line, source="qemu")
    except VMDefinitionError:
        return
    json.dumps(r)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.integers(min_value=0, max_value=4000), st.text(max_size=5))
def test_fuzz_mutated_fixture(cut, insert):
    text = fixture("virsh-intel-hugepages-numa.args")
    mutated = text[:cut] + insert + text[cut:]
    for data in (mutated, text[:cut]):
        try:
            json.dumps(requirements(data, source="qemu"))
        except VMDefinitionError:
            pass


@pytest.mark.parametrize("syntax", ["classic", "json"])
@pytest.mark.parametrize("raw, value", [("on", True), ("off", False), ("auto", "auto")])
def test_vfio_ats_property(syntax, raw, value):
    """vfio-pci's ats (QEMU 11.1+) is the gate parameter vfio_ats (ats is arm-smmuv3's); the gate takes it as
    on/off/auto whatever the spelling."""
    arg = "vfio-pci,host=01:00.0,ats=%s" % raw if syntax == "classic" else json.dumps(
        {"driver": "vfio-pci", "host": "0000:01:00.0", "ats": raw})
    r = req("-device", arg)
    if PARAMS is None or "vfio_ats" not in PARAMS:
        pytest.skip("no gate parameters to map to")
    assert "ats" not in r["params"]
    got = r["params"]["vfio_ats"]
    assert got in (value, raw), r["params"]
    from ansible_collections.iommu.host.plugins.module_utils.policy import params as policy_params
    names, values, given, problems = policy_params.resolve_profiles(["passthrough"], {"vfio_ats": got})
    assert problems == [] and values["vfio_ats"] == raw, (problems, values["vfio_ats"])
