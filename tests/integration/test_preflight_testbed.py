"""The preflight gate (role iommu.host.preflight) against real-kernel guests."""
import pytest

from guestops import NIC, bind_vfio

FAIL_TASK = "Fail when requirements are not met (enforcing mode)"
SHARED = ("0000:02:01.0", "0000:02:02.0")


def gate_play(hosts, profiles, devices=(NIC,), mode="enforce", params=None):
    return {"name": "gate", "hosts": hosts, "gather_facts": False,
            "roles": [{"role": "iommu.host.preflight", "vars": {
                "preflight_profiles": list(profiles),
                "preflight_devices": list(devices),
                "preflight_params": params or {},
                "preflight_mode": mode}}],
            "post_tasks": [{"name": "result", "ansible.builtin.debug": {"var": "preflight_result"}}]}


def fail_message(result, host):
    """The role's enforce-mode failure message (role task names carry a 'preflight : ' prefix)."""
    for name, res in result.task_results(host):
        if name.endswith(FAIL_TASK) and res.get("failed"):
            return res["msg"]
    raise AssertionError("host %s did not fail in the gate:\n%s" % (host, result))


def verdict(result, host):
    """(status, {check id: [findings]}) of one host, from the report-mode result task."""
    pre = result.result(host, "result")["preflight_result"]
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
    for check in ("host.iommu_firmware", "host.iommufd", "host.interrupt_remapping", "device.vfio_driver",
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
    # QEMU stops at a device's first blocker: plain vfio-pci cannot migrate at all, so the
    # dirty-tracking question does not arise for it
    device = by_id["migration.device"]
    assert [f["status"] for f in device] == ["fail"] and device[0]["device"] == NIC
    assert NIC in device[0]["message"]
    assert statuses(by_id, "migration.dirty_tracking") == ["not_applicable"]


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


@pytest.mark.testbed("intel", "intel-sm", "amd", "none")  # the 9p-root guests
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


@pytest.mark.testbed("intel")
def test_live_migration_blocks_plain_vfio_pci_with_qemus_words(testbed, ansible_playbook):
    """An e1000e on plain vfio-pci has no VFIO migration driver: QEMU adds a migration blocker.
    The words are QEMU 11.1.3's (the default release) and, asked for 10.0, QEMU 10.0.13's."""
    bind_vfio(testbed["intel"])
    for release, words in (("11.1", "%s: VFIO migration init failed: migration is not supported in kernel"),
                           ("10.0", "%s: VFIO migration is not supported in kernel")):
        result = ansible_playbook(gate_play("intel", ["live_migration"], mode="report",
                                            params={"qemu_version": release}))
        assert result.rc == 0, result
        status, by_id = verdict(result, "intel")
        assert status == "fail"
        mig = by_id["migration.device"][0]
        assert mig["status"] == "fail" and mig["device"] == NIC, mig
        assert mig["qemu_effect"] == "block_migration", mig
        assert words % NIC in mig["message"], mig
        # read from the device through VFIO_DEVICE_FEATURE, not from the driver's name
        assert mig["evidence"]["devices.\"0000:00:09.0\".vfio_features.migration"]["supported"] is False, mig


SETUP_AND_IOMMU = {
    "name": "gate over ansible_facts with setup facts gathered in the same play",
    "hosts": "intel", "gather_facts": True, "gather_timeout": 300,
    # setup's hardware subset has the 'devices' fact (and 'cmdline' comes with every subset); serial
    # gathering, since a TCG guest takes longer than the parallel gatherer's default wait
    "module_defaults": {"ansible.builtin.setup": {"gather_subset": ["!all", "hardware"], "gather_timeout": 240}},
    "vars": {"ansible_facts_parallel": False,
             "ansible_facts_modules": ["iommu.host.iommu_facts", "ansible.builtin.setup"],
             "custom": [
                 {"name": "groups_present", "expression": "length(keys(groups))", "operator": "gt", "expected": 0},
                 {"name": "kernel_7", "expression": "starts_with(kernel.release, '7.')"},
                 {"name": "vfio_devices", "expression": "max_by(values(devices), &length(group_members)).address",
                  "operator": "truthy"}]},
    "tasks": [
        {"name": "both", "ansible.builtin.set_fact": {
            "via_ansible_facts": "{{ ansible_facts | iommu.host.check(profiles=['passthrough'], custom=custom) }}",
            "via_iommu": "{{ ansible_facts.iommu | iommu.host.check(profiles=['passthrough'], custom=custom) }}",
            "setup_keys": "{{ ['devices', 'cmdline'] | select('in', ansible_facts) | list }}"}},
        {"name": "result", "ansible.builtin.debug": {"msg": {
            "a": "{{ via_ansible_facts }}", "b": "{{ via_iommu }}", "setup_keys": "{{ setup_keys }}"}}},
    ],
}


@pytest.mark.testbed("intel")
def test_check_over_ansible_facts_with_setup_and_custom_jmespath(testbed, ansible_playbook):
    """The documented ``ansible_facts | iommu.host.check`` with setup's facts (which also have
    ``devices`` and ``cmdline``) gives the findings of ``ansible_facts.iommu | ...``, and custom
    JMESPath checks see Ansible's own (tagged/unsafe) types as plain JSON."""
    bind_vfio(testbed["intel"])
    result = ansible_playbook(SETUP_AND_IOMMU)
    assert result.rc == 0, result
    msg = result.result("intel", "result")["msg"]
    assert sorted(msg["setup_keys"]) == ["cmdline", "devices"], msg["setup_keys"]
    a, b = msg["a"], msg["b"]
    assert a["findings"] == b["findings"], (a["summary"], b["summary"])
    assert a["status"] == "pass", a["summary"]
    custom = dict((f["id"], f) for f in a["findings"] if f["id"].startswith("custom."))
    assert custom["custom.groups_present"]["status"] == "pass", custom
    assert custom["custom.groups_present"]["evidence"]["actual"] > 0
    assert custom["custom.kernel_7"]["status"] == "pass", custom
    assert custom["custom.vfio_devices"]["status"] == "pass", custom
