"""Smoke test of the real-kernel test bed: every profile boots into the guest it claims to be.

Values come from the real kernel and QEMU 7.2 (see docs of tests/testbed and
/work/shared/reference/testbed.md): VT-d cap/ecap registers, the AMD-Vi
extended features, the PCI topology and its IOMMU groups.
"""
import base64
import json
import os

import pytest

PROFILES = ("intel", "intel-sm", "amd", "none")
# the 9p-root guests, booted in parallel once per session (the disk-booted, igb and arm64 guests have tests
# of their own)
pytestmark = pytest.mark.testbed(*PROFILES)
IOMMU_PROFILES = ("intel", "intel-sm", "amd")

# What each profile's vIOMMU reports in sysfs (registers as the kernel prints them).
EXPECTED_UNITS = {
    "intel": {"dmar0": {"intel-iommu/cap": 0xd2008c22260286, "intel-iommu/ecap": 0xf00f4a}},
    "intel-sm": {"dmar0": {"intel-iommu/cap": 0xd2008c222f0686, "intel-iommu/ecap": 0x480080f00f4a}},
    "amd": {"ivhd0": {"amd-iommu/features": "29d3:0"}},
    "none": {},
}
E1000E = ("0000:00:08.0", "0000:00:09.0")
E1000 = ("0000:02:01.0", "0000:02:02.0")   # behind the pcie-pci-bridge at 0000:01:00.0

PROBE = r'''
import json, os
def read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return None
def link(p):
    return os.path.basename(os.readlink(p)) if os.path.islink(p) else None
out = {"units": {}, "groups": {}, "pci": {}}
for u in sorted(os.listdir("/sys/class/iommu")):
    base = "/sys/class/iommu/" + u
    out["units"][u] = {f"{sub}/{n}": read(f"{base}/{sub}/{n}")
                       for sub in ("intel-iommu", "amd-iommu") if os.path.isdir(f"{base}/{sub}")
                       for n in os.listdir(f"{base}/{sub}")}
if os.path.isdir("/sys/kernel/iommu_groups"):
    for g in os.listdir("/sys/kernel/iommu_groups"):
        out["groups"][g] = sorted(os.listdir(f"/sys/kernel/iommu_groups/{g}/devices"))
for d in sorted(os.listdir("/sys/bus/pci/devices")):
    base = "/sys/bus/pci/devices/" + d
    out["pci"][d] = {"vendor": read(base + "/vendor"), "device": read(base + "/device"),
                     "driver": link(base + "/driver"), "group": link(base + "/iommu_group"),
                     "path": os.path.realpath(base)}
out["dev_iommu"] = os.path.exists("/dev/iommu") and not os.path.isfile("/dev/iommu")
out["release"] = os.uname().release
out["cmdline"] = read("/proc/cmdline")
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def probes(testbed):
    guests = testbed.boot(*PROFILES)
    result = {}
    for name, guest in guests.items():
        rc, out, err = guest.run(["python3", "-c", PROBE], timeout=120)
        assert rc == 0, "%s: probe failed (rc %d): %s" % (name, rc, err)
        result[name] = json.loads(out)
    return result


@pytest.mark.parametrize("profile", PROFILES)
def test_iommu_units(probes, profile):
    units = probes[profile]["units"]
    hardware = {u: regs for u, regs in units.items() if not u.startswith("iommufd_selftest_iommu.")}
    assert sorted(hardware) == sorted(EXPECTED_UNITS[profile]), units
    for unit, expected in EXPECTED_UNITS[profile].items():
        for attr, value in expected.items():
            got = hardware[unit][attr]
            if isinstance(value, int):
                assert int(got, 16) == value, "%s %s/%s = %s, expected %#x" % (profile, unit, attr, got, value)
            else:
                assert got == value, "%s %s/%s" % (profile, unit, attr)
    # the iommufd selftest mock (CONFIG_IOMMUFD_TEST) is there whatever the vIOMMU
    assert any(u.startswith("iommufd_selftest_iommu.") for u in units), units


@pytest.mark.parametrize("profile", PROFILES)
def test_pci_topology(probes, profile):
    pci = probes[profile]["pci"]
    for addr in E1000E:
        assert addr in pci, "%s: no %s" % (profile, addr)
        assert (pci[addr]["vendor"], pci[addr]["device"]) == ("0x8086", "0x10d3")
        assert pci[addr]["driver"] == "e1000e"
    for addr in E1000:
        assert addr in pci, "%s: no %s" % (profile, addr)
        assert (pci[addr]["vendor"], pci[addr]["device"]) == ("0x8086", "0x100e")
        assert pci[addr]["driver"] == "e1000"
        assert "/0000:01:00.0/%s" % addr in pci[addr]["path"], pci[addr]["path"]
    assert pci["0000:01:00.0"]["device"] == "0x000e"  # pcie-pci-bridge (1b36:000e)


@pytest.mark.parametrize("profile", PROFILES)
def test_iommu_groups(probes, profile):
    pci, groups = probes[profile]["pci"], probes[profile]["groups"]
    if profile not in IOMMU_PROFILES:
        assert groups == {}
        assert all(d["group"] is None for d in pci.values())
        return
    shared = {pci[a]["group"] for a in E1000}
    assert len(shared) == 1 and None not in shared, "%s: e1000 groups %s" % (profile, shared)
    group = shared.pop()
    assert set(E1000) <= set(groups[group]), groups[group]
    own = [pci[a]["group"] for a in E1000E]
    assert None not in own and len(set(own)) == 2 and group not in own, own
    for a, g in zip(E1000E, own):
        assert groups[g] == [a], "%s: %s shares group %s: %s" % (profile, a, g, groups[g])


@pytest.mark.parametrize("profile", PROFILES)
def test_dev_iommu(probes, profile):
    assert probes[profile]["dev_iommu"], "%s: no /dev/iommu character device" % profile


@pytest.mark.parametrize("profile", PROFILES)
def test_kernel_command_line(probes, profile):
    cmdline = probes[profile]["cmdline"].split()
    assert ("intel_iommu=on" in cmdline) == profile.startswith("intel")


def test_ansible_against_all_guests(ansible_playbook, probes):
    play = {"hosts": "testbed", "gather_facts": False,
            "tasks": [{"name": "facts", "ansible.builtin.setup": {"gather_subset": ["min"]}}]}
    res = ansible_playbook(play)
    assert res.rc == 0, res
    assert sorted(res.stats) == sorted(PROFILES), res
    for host in PROFILES:
        assert res.stats[host]["failures"] == 0 and res.stats[host]["unreachable"] == 0, res
        facts = res.result(host, "facts")["ansible_facts"]
        assert facts["ansible_hostname"] == host
        assert facts["ansible_kernel"] == probes[host]["release"]


@pytest.mark.testbed("none")
def test_reboot_keeps_files(ansible_playbook):
    """ansible.builtin.reboot works (guest shim) and the guest's files survive it (disk-backed overlay)."""
    marker = "/etc/testbed-reboot-check"
    play = {"hosts": "none", "gather_facts": False, "tasks": [
        {"name": "write", "ansible.builtin.copy": {"dest": marker, "content": "kept\n"}},
        {"name": "boot id before", "ansible.builtin.slurp": {"src": "/proc/sys/kernel/random/boot_id"}},
        {"name": "reboot", "ansible.builtin.reboot": {"reboot_timeout": 300}},
        {"name": "boot id after", "ansible.builtin.slurp": {"src": "/proc/sys/kernel/random/boot_id"}},
        {"name": "read", "ansible.builtin.slurp": {"src": marker}},
        {"name": "clean up", "ansible.builtin.file": {"path": marker, "state": "absent"}},
    ]}
    res = ansible_playbook(play)
    assert res.rc == 0, res

    def decode(task):
        return base64.b64decode(res.result("none", task)["content"]).decode()
    assert decode("boot id before") != decode("boot id after")
    assert decode("read") == "kept\n"
    assert not os.path.exists(marker), "the guest wrote to the host's /etc"
