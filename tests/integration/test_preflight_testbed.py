"""The preflight gate (role iommu.host.preflight) against real-kernel guests."""
import pytest

from guestops import NIC, bind_vfio

FAIL_TASK = "Fail when requirements are not met (enforcing mode)"
SHARED = ("0000:02:01.0", "0000:02:02.0")


def gate_play(hosts, profiles, devices=(NIC,), mode="enforce", params=None):
    return {"name": "gate", "hosts": hosts, "gather_facts": False,
            "roles": [{"role": "iommu.host.preflight", "vars": {
                "iommu_preflight_profiles": list(profiles),
                "iommu_preflight_devices": list(devices),
                "iommu_preflight_params": params or {},
                "iommu_preflight_mode": mode}}],
            "post_tasks": [{"name": "result", "ansible.builtin.debug": {"var": "iommu_preflight"}}]}


def fail_message(result, host):
    """The role's enforce-mode failure message (role task names carry a 'preflight : ' prefix)."""
    for name, res in result.task_results(host):
        if name.endswith(FAIL_TASK) and res.get("failed"):
            return res["msg"]
    raise AssertionError("host %s did not fail in the gate:\n%s" % (host, result))


def verdict(result, host):
    """(status, {check id: [findings]}) of one host, from the report-mode result task."""
    pre = result.result(host, "result")["iommu_preflight"]
    by_id = {}
    for f in pre["findings"]:
        by_id.setdefault(f["id"], []).append(f)
    return pre["status"], by_id


def statuses(by_id, check):
    return sorted(set(f["status"] for f in by_id.get(check, [])))


@pytest.mark.testbed("intel")
def test_passthrough_passes_on_intel(testbed, ansible_playbook):
    bind_vfio(testbed["intel"])
    result = ansible_playbook(gate_play("intel", ["passthrough"]))
    assert result.rc == 0, result
    status, by_id = verdict(result, "intel")
    assert status == "pass", by_id
    for check in ("host.iommu_firmware", "host.iommufd", "host.interrupt_remapping", "device.vfio_pci",
                  "device.not_in_use", "device.group_viable", "device.hw_info"):
        assert statuses(by_id, check) == ["pass"], (check, by_id.get(check))
    assert by_id["device.hw_info"][0]["device"] == NIC


@pytest.mark.testbed("amd")
def test_passthrough_fails_on_amd_with_interrupt_remapping_remedy(testbed, ansible_playbook):
    bind_vfio(testbed["amd"])
    result = ansible_playbook(gate_play("amd", ["passthrough"]))
    assert result.rc != 0, result
    msg = fail_message(result, "amd")
    assert "host.interrupt_remapping" in msg and "device.hw_info" in msg
    report = ansible_playbook(gate_play("amd", ["passthrough"], mode="report"))
    assert report.rc == 0, report
    status, by_id = verdict(report, "amd")
    assert status == "fail"
    ir = by_id["host.interrupt_remapping"][0]
    assert ir["status"] == "fail" and "intremap" in ir["remedy"]
    hw = by_id["device.hw_info"][0]
    assert hw["status"] == "fail" and hw["device"] == NIC and "EPERM" in repr(hw)


@pytest.mark.testbed("intel", "intel-sm")
@pytest.mark.parametrize("profile", ["intel", "intel-sm"])
def test_live_migration_fails_on_emulated_iommus(testbed, ansible_playbook, profile):
    bind_vfio(testbed[profile])
    result = ansible_playbook(gate_play(profile, ["live_migration"], mode="report"))
    assert result.rc == 0, result
    status, by_id = verdict(result, profile)
    assert status == "fail"
    dirty = by_id["migration.dirty_tracking"]
    assert [f["status"] for f in dirty] == ["fail"] and dirty[0]["device"] == NIC
    assert NIC in dirty[0]["message"]


@pytest.mark.testbed("intel", "intel-sm")
def test_intel_viommu_aw_bits_48(testbed, ansible_playbook):
    """-device intel-iommu,aw-bits=48,caching-mode=on with an assigned device (QEMU requires
    caching-mode=on for VFIO devices behind intel-iommu)."""
    for name in ("intel", "intel-sm"):
        bind_vfio(testbed[name])
    result = ansible_playbook(gate_play("intel:intel-sm", ["intel_viommu"], mode="report",
                                        params={"aw_bits": 48, "caching_mode": True}))
    assert result.rc == 0, result
    status, by_id = verdict(result, "intel")
    assert status == "fail" and statuses(by_id, "viommu.intel.aw_bits") == ["fail"]
    assert "39" in by_id["viommu.intel.aw_bits"][0]["message"]
    status, by_id = verdict(result, "intel-sm")
    assert statuses(by_id, "viommu.intel.aw_bits") == ["pass"]
    assert status != "fail", [f for fs in by_id.values() for f in fs if f["status"] == "fail"]


@pytest.mark.testbed("none")
def test_no_iommu_fails_iommu_present(ansible_playbook):
    result = ansible_playbook(gate_play("none", ["passthrough"], devices=["all_vfio"], mode="report"))
    assert result.rc == 0, result
    status, by_id = verdict(result, "none")
    assert status == "fail"
    assert statuses(by_id, "host.iommu_firmware") == ["fail"]
    assert statuses(by_id, "host.iommu_enabled") == ["fail"]


@pytest.mark.testbed("intel")
def test_shared_group_names_the_other_member(testbed, ansible_playbook):
    guest = testbed["intel"]
    bind_vfio(guest, SHARED[0])
    result = ansible_playbook(gate_play("intel", ["passthrough"], devices=[SHARED[0]], mode="report"))
    assert result.rc == 0, result
    status, by_id = verdict(result, "intel")
    assert status == "fail"
    group = by_id["device.group_viable"][0]
    assert group["status"] == "fail" and group["device"] == SHARED[0]
    assert SHARED[1] in group["message"] and "e1000" in group["message"]


@pytest.mark.testbed
def test_one_run_gates_each_host(testbed, ansible_playbook):
    for name in ("intel", "intel-sm", "amd"):
        bind_vfio(testbed[name])
    result = ansible_playbook(gate_play("testbed", ["passthrough"]))
    assert result.rc != 0
    stats = result.stats
    assert stats["intel"]["failures"] == 0 and stats["intel-sm"]["failures"] == 0, stats
    assert stats["amd"]["failures"] == 1 and stats["none"]["failures"] == 1, stats
    assert "host.interrupt_remapping" in fail_message(result, "amd")
    assert "host.iommu_firmware" in fail_message(result, "none")
