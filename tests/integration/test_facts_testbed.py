"""iommu.host.iommu_facts and iommu.host.iommu_hw_info against real-kernel guests.

Every answer here comes from Linux 7.3.4 running under QEMU with an emulated
IOMMU (tests/testbed): the iommufd ioctls are real, and so are the device
resets they cause (counted in the guest's kernel log).
"""
import io
import json
import os
import tarfile

import pytest

from guestops import NIC, bind_vfio

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTHER_NIC = "0000:00:08.0"  # e1000e left to its driver


def push_module_utils(guest, dest):
    """Copy the collection's module_utils into the guest (the checkout may be invisible there)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(os.path.join(REPO, "plugins", "module_utils"),
                arcname="ansible_collections/iommu/host/plugins/module_utils",
                filter=lambda ti: None if "__pycache__" in ti.name else ti)
    res = guest.run("rm -rf {0} && mkdir -p {0} && tar -x -C {0}".format(dest), input=buf.getvalue(),
                    timeout=120)
    assert res.rc == 0, res


def resets(guest, dev=NIC):
    """How many times the kernel logged a reset of ``dev`` (vfio-pci logs 'resetting')."""
    res = guest.run("dmesg", timeout=60, check=True)
    return sum(1 for line in res.stdout.splitlines() if dev in line and "resetting" in line)


def sysfs_value(guest, path):
    return guest.run("cat %s" % path, timeout=60, check=True).stdout.strip()


def facts_play(host, **options):
    return {"name": "facts", "hosts": host, "gather_facts": False,
            "tasks": [{"name": "gather", "iommu.host.iommu_facts": options}]}


def gather(ansible_playbook, host, **options):
    result = ansible_playbook(facts_play(host, **options))
    assert result.rc == 0, result
    return result.result(host, "gather")["ansible_facts"]["iommu"]


@pytest.mark.testbed("intel", "intel-sm")
@pytest.mark.parametrize("profile,cap_mgaw", [("intel", 39), ("intel-sm", 48)])
def test_intel_iommufd_facts_equal_sysfs(testbed, ansible_playbook, profile, cap_mgaw):
    guest = testbed[profile]
    bind_vfio(guest)
    before = resets(guest)
    facts = gather(ansible_playbook, profile)
    assert resets(guest) > before, "the iommufd bind should reset the device (vfio-pci open_device)"
    assert facts["mode"] == "iommufd" and facts["queried"] == [NIC]
    hw = facts["devices"][NIC]["hw_info"]
    assert hw["source"] == "iommufd" and hw["device_reset"] is True
    assert (hw["type"], hw["type_id"], hw["data_len"]) == ("intel_vtd", 1, 24)
    # iommufd's registers are the ones sysfs prints for the unit
    cap = int(sysfs_value(guest, "/sys/class/iommu/dmar0/intel-iommu/cap"), 16)
    ecap = int(sysfs_value(guest, "/sys/class/iommu/dmar0/intel-iommu/ecap"), 16)
    assert int(hw["vendor"]["raw"]["cap_reg"], 16) == cap
    assert int(hw["vendor"]["raw"]["ecap_reg"], 16) == ecap
    assert hw["consistent_with_sysfs"] == {"equal": True, "mismatches": []}
    assert facts["units"]["dmar0"]["iommufd"]["via"] == NIC
    assert hw["vendor"]["cap"]["mgaw"] == cap_mgaw
    assert hw["vendor"]["flags"]["errata_772415_spr17"] is True   # set unconditionally by 7.3
    caps = hw["capabilities"]
    assert caps["raw"] == "0x8" and caps["ats_not_supported"] is True
    assert caps["dirty_tracking"] is False     # QEMU emulates no second-stage A/D
    assert caps["reported_by_kernel"]["dirty_tracking"] is True
    # the NIC left to e1000e is reported, not opened
    assert facts["devices"][OTHER_NIC]["driver"] == "e1000e"
    assert "hw_info" not in facts["devices"][OTHER_NIC]
    if profile == "intel":
        os.makedirs(os.path.join(REPO, "build"), exist_ok=True)
        with open(os.path.join(REPO, "build", "testbed-facts-intel.json"), "w") as f:
            json.dump(facts, f, indent=1, sort_keys=True)


@pytest.mark.testbed("intel")
def test_sysfs_only_opens_nothing(testbed, ansible_playbook):
    guest = testbed["intel"]
    bind_vfio(guest)
    before = resets(guest)
    facts = gather(ansible_playbook, "intel", sysfs_only=True)
    assert resets(guest) == before
    assert facts["mode"] == "sysfs_only" and facts["queried"] == []
    assert facts["devices"][NIC]["hw_info"]["skipped"].startswith("sysfs_only")
    assert facts["units"]["dmar0"]["decoded"]["cap"]["mgaw"] == 39


@pytest.mark.testbed("intel")
def test_check_mode_opens_nothing(testbed, ansible_playbook):
    guest = testbed["intel"]
    bind_vfio(guest)
    before = resets(guest)
    result = ansible_playbook(facts_play("intel"), args=["--check"])
    assert result.rc == 0, result
    facts = result.result("intel", "gather")["ansible_facts"]["iommu"]
    assert facts["queried"] == [] and resets(guest) == before


@pytest.mark.testbed("intel")
def test_hw_info_module_by_cdev(testbed, ansible_playbook):
    guest = testbed["intel"]
    bind_vfio(guest)
    play = {"hosts": "intel", "gather_facts": False, "tasks": [
        {"name": "query", "iommu.host.iommu_hw_info": {"devices": ["/dev/vfio/devices/vfio0", "00:09.0"]}}]}
    result = ansible_playbook(play)
    assert result.rc == 0, result
    out = result.result("intel", "query")
    assert out["changed"] is False and out["failures"] == []
    assert out["devices"][NIC]["type"] == "intel_vtd"
    assert out["devices"][NIC]["vendor"]["cap"]["mgaw"] == 39


@pytest.mark.testbed("intel")
def test_device_in_use_is_not_opened(testbed, ansible_playbook):
    guest = testbed["intel"]
    bind_vfio(guest)
    holder = guest.run(
        "nohup python3 -c 'import os, time; fd = os.open(\"/dev/vfio/devices/vfio0\", os.O_RDWR); "
        "time.sleep(600)' >/dev/null 2>&1 & echo $!", timeout=60, check=True).stdout.strip()
    try:
        guest.run("sleep 2", timeout=30)
        before = resets(guest)
        facts = gather(ansible_playbook, "intel")
        dev = facts["devices"][NIC]
        assert dev["in_use_by"] == ["%s (python3)" % holder]
        assert dev["hw_info"]["source"] == "none" and "in use by %s" % holder in dev["hw_info"]["skipped"]
        assert facts["queried"] == []
        play = {"hosts": "intel", "gather_facts": False, "tasks": [
            {"name": "query", "iommu.host.iommu_hw_info": {"devices": [NIC]}, "ignore_errors": True}]}
        result = ansible_playbook(play)
        out = result.result("intel", "query")
        assert out["failed"] is True
        assert out["failures"][0]["code"] == "in_use" and holder in out["msg"]
        assert resets(guest) == before, "a device in use must not be reset"
    finally:
        guest.run("kill %s" % holder, timeout=30)


@pytest.mark.testbed("amd")
def test_amd_bind_refused_without_interrupt_remapping(testbed, ansible_playbook):
    guest = testbed["amd"]
    bind_vfio(guest)
    facts = gather(ansible_playbook, "amd")
    err = facts["devices"][NIC]["hw_info"]["error"]
    assert err["code"] == "no_interrupt_remapping" and err["errno"] == "EPERM"
    assert err["step"] == "VFIO_DEVICE_BIND_IOMMUFD" and err["device"] == NIC
    assert "interrupt remapping is not enabled" in err["message"]
    assert "allow_unsafe_interrupts" in err["remedy"]
    assert facts["kernel"]["interrupt_remapping"]["enabled"] is False
    # the EFR is still decoded from sysfs
    unit = facts["units"]["ivhd0"]
    assert unit["registers"]["features"] == "29d3:0"
    assert unit["decoded"]["names"] == ["PreF", "PPR", "GT", "IA", "GA", "HE"]
    play = {"hosts": "amd", "gather_facts": False, "tasks": [
        {"name": "query", "iommu.host.iommu_hw_info": {"devices": [NIC]}, "ignore_errors": True}]}
    out = ansible_playbook(play).result("amd", "query")
    assert out["failed"] is True and NIC in out["msg"] and "interrupt remapping" in out["msg"]
    assert "Remedy:" in out["msg"]


@pytest.mark.testbed("none")
def test_no_iommu_host(testbed, ansible_playbook):
    facts = gather(ansible_playbook, "none")
    assert facts["present"] is False and facts["vendors"] == [] and facts["groups"] == {}
    assert facts["findings"] == []


@pytest.mark.testbed("none")
def test_selftest_mock_reports_dirty_tracking(testbed):
    """The iommufd selftest mock device: the one real-kernel source of DIRTY_TRACKING here."""
    guest = testbed["none"]
    push_module_utils(guest, "/root/iommu-host")
    script = r"""
import json, sys
sys.path.insert(0, "/root/iommu-host")
from ansible_collections.iommu.host.plugins.module_utils import iommu_uapi as u
from ansible_collections.iommu.host.plugins.module_utils.decode import api as d
out = {}
for flags in (0, u.MOCK_FLAGS_DEVICE_NO_DIRTY, u.MOCK_FLAGS_DEVICE_PASID):
    info = u.selftest_mock_hw_info(flags)
    out[flags] = {"type_id": info["type_id"], "data_len": info["data_len"],
                  "caps": info["capabilities"], "pasid": info["max_pasid_log2"],
                  "decoded": d.decode_capabilities(info["capabilities"], info["max_pasid_log2"]),
                  "vendor": d.decode_hw_info_data(info["type_id"], info["data"])}
print(json.dumps(out))
"""
    res = guest.run(["python3", "-c", script], timeout=120)
    assert res.rc == 0, res
    out = json.loads(res.stdout)
    for flags, caps, pasid in (("0", 0x9, 0), ("1", 0x8, 0), ("4", 0x9, 20)):
        r = out[flags]
        assert (r["type_id"], r["data_len"]) == (0xFEEDBEEF, 8)
        assert (r["caps"], r["pasid"]) == (caps, pasid)
        assert r["decoded"]["dirty_tracking"] is bool(caps & 1)
        assert r["decoded"]["ats_not_supported"] is True
        assert r["vendor"]["type"] == "selftest" and r["vendor"]["test_reg"] == 0xDEADBEEF


@pytest.mark.testbed("intel", "intel-sm", "amd", "none")  # the 9p-root guests
def test_one_run_over_all_guests(testbed, ansible_playbook):
    result = ansible_playbook(facts_play("testbed", sysfs_only=True))
    assert result.rc == 0, result
    present = {h: result.result(h, "gather")["ansible_facts"]["iommu"]["present"]
               for h in ("intel", "intel-sm", "amd", "none")}
    assert present == {"intel": True, "intel-sm": True, "amd": True, "none": False}
    vendors = {h: result.result(h, "gather")["ansible_facts"]["iommu"]["vendors"]
               for h in ("intel", "amd")}
    assert vendors == {"intel": ["intel_vtd"], "amd": ["amd"]}


@pytest.mark.testbed("intel")
def test_gather_facts_module(ansible_playbook):
    """iommu_facts as a gather_facts facts module (FACTS_MODULES), options via module_defaults."""
    play = {"hosts": "intel", "gather_facts": True,
            "module_defaults": {"iommu.host.iommu_facts": {"sysfs_only": True}},
            "tasks": [{"name": "show", "ansible.builtin.debug": {"var": "ansible_facts.iommu.units.dmar0.registers.cap"}}]}
    result = ansible_playbook(play, env={"ANSIBLE_FACTS_MODULES": "iommu.host.iommu_facts"})
    assert result.rc == 0, result
    assert result.result("intel", "show")["ansible_facts.iommu.units.dmar0.registers.cap"] == "d2008c22260286"
