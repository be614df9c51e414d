"""iommu.host.vfio_pci and the role iommu.host.provision against a real-kernel guest.

The intel guest (tests/testbed) has two e1000e (8086:10d3) at 00:08.0 and 00:09.0, each in its
own IOMMU group, and two e1000 at 02:01.0 / 02:02.0 sharing a group behind a PCIe-to-PCI bridge.
The kernel does the binding for real (driver_override, unbind, drivers_probe). Every test puts the
devices back on their drivers and removes the files it created, so the tests run in any order.
The management NIC (00:02.0), the 9p shares (00:03.0, 00:04.0) and the disk (00:05.0) are never
selected except to prove they are refused.
"""

import pytest

HOST = "intel"
NICS = ("0000:00:08.0", "0000:00:09.0")          # e1000e, 8086:10d3
SHARED = ("0000:02:01.0", "0000:02:02.0")        # e1000, one IOMMU group
DRIVERS = {NICS[0]: "e1000e", NICS[1]: "e1000e", SHARED[0]: "e1000", SHARED[1]: "e1000"}
RULES = "/etc/udev/rules.d/80-iommu-host-vfio.rules"
RULES_MARK = 'KERNEL=="0000:00:09.0", ATTR{driver_override}="vfio-pci"'
MODLOAD = "/etc/modules-load.d/iommu-host-vfio.conf"
ROLE_FILES = ("/etc/modules-load.d/iommu-host.conf", "/etc/udev/rules.d/81-iommu-host-access.rules",
              "/etc/default/grub")

RESTORE = r"""
for dev in {devs}; do
  d=/sys/bus/pci/devices/$dev
  drv=$(basename "$(readlink $d/driver 2>/dev/null)")
  if [ "$(cat $d/driver_override)" != "(null)" ] || [ "$drv" = vfio-pci ]; then
    echo > $d/driver_override
    [ -e $d/driver ] && echo $dev > $d/driver/unbind
    echo $dev > /sys/bus/pci/drivers_probe
  fi
done
rm -f {files}
"""


def drivers(guest):
    out = guest.run("for d in %s; do echo $d $(basename $(readlink /sys/bus/pci/devices/$d/driver) 2>/dev/null); done"
                    % " ".join(DRIVERS), timeout=60, check=True).stdout
    return dict(line.split(" ", 1) if " " in line else (line, None) for line in out.split("\n") if line)


def restore(guest):
    guest.run(RESTORE.format(devs=" ".join(DRIVERS), files=" ".join((RULES, MODLOAD) + ROLE_FILES)),
              timeout=120, check=True)
    assert drivers(guest) == DRIVERS


@pytest.fixture
def guest(testbed):
    g = testbed[HOST]
    restore(g)
    yield g
    restore(g)


def vfio_play(devices, check=False, name="vfio", **options):
    task = {"name": name, "iommu.host.vfio_pci": dict(devices=list(devices), **options)}
    if check:
        task["check_mode"] = True
        task["diff"] = True
    return {"name": "vfio_pci", "hosts": HOST, "gather_facts": False, "tasks": [task]}


def vfio(ansible_playbook, devices, check=False, expect_ok=True, **options):
    result = ansible_playbook(vfio_play(devices, check=check, **options))
    res = result.result(HOST, "vfio")
    if expect_ok:
        assert result.rc == 0, result
    return res


def plan_view(devices):
    """The per-device plan fields both check mode and a real run report."""
    keys = ("address", "ids", "iommu_group", "selected", "group_member_of", "group_members", "driver_before",
            "driver_after", "actions", "changed")
    return [dict((k, d.get(k)) for k in keys) for d in devices]


@pytest.mark.testbed(HOST)
def test_bind_by_vendor_device_check_mode_and_idempotence(guest, ansible_playbook):
    predicted = vfio(ansible_playbook, ["8086:10d3"], check=True)
    assert predicted["changed"] is True
    assert [d["address"] for d in predicted["devices"]] == list(NICS)
    assert drivers(guest) == DRIVERS, "check mode changed a driver"
    assert guest.run("test -e %s" % RULES, timeout=30).rc != 0, "check mode wrote the rule file"
    diff = dict((d["before_header"], d) for d in predicted["diff"])
    assert diff["PCI drivers"]["before"] == "%s: e1000e\n%s: e1000e\n" % NICS
    assert diff["PCI drivers"]["after"] == "%s: vfio-pci\n%s: vfio-pci\n" % NICS
    assert diff[RULES]["before"] == "" and 'KERNEL=="%s"' % NICS[1] in diff[RULES]["after"]

    real = vfio(ansible_playbook, ["8086:10d3"])
    assert real["changed"] is True
    assert plan_view(real["devices"]) == plan_view(predicted["devices"])
    assert [(d["driver_before"], d["driver_after"]) for d in real["devices"]] == [("e1000e", "vfio-pci")] * 2
    assert sorted(real["files_written"]) == sorted([RULES, MODLOAD])
    now = drivers(guest)
    assert now[NICS[0]] == now[NICS[1]] == "vfio-pci"
    cdevs = guest.run("ls /sys/bus/pci/devices/%s/vfio-dev" % NICS[1], timeout=30, check=True).stdout.split()
    assert cdevs and cdevs[0].startswith("vfio")

    again = vfio(ansible_playbook, ["8086:10d3"])
    assert again["changed"] is False and all(d["actions"] == [] for d in again["devices"])
    assert again["files_written"] == []

    released = vfio(ansible_playbook, ["8086:10d3"], state="absent")
    assert released["changed"] is True
    assert [(d["address"], d["restored_to"]) for d in released["devices"]] == [(n, "e1000e") for n in NICS]
    assert drivers(guest) == DRIVERS
    assert guest.run("test -e %s || test -e %s" % (RULES, MODLOAD), timeout=30).rc != 0
    assert vfio(ansible_playbook, ["8086:10d3"], state="absent")["changed"] is False


@pytest.mark.testbed(HOST)
def test_nic_up_with_address_is_refused(guest, ansible_playbook):
    ifname = guest.run("ls /sys/bus/pci/devices/%s/net" % NICS[0], timeout=30, check=True).stdout.split()[0]
    guest.run("ip addr add 192.0.2.5/24 dev %s; ip link set %s up" % (ifname, ifname), timeout=30, check=True)
    try:
        res = vfio(ansible_playbook, ["8086:10d3"], expect_ok=False)
        assert res.get("failed") is True
        assert ifname in res["msg"] and "192.0.2.5/24" in res["msg"] and NICS[0] in res["msg"]
        assert "force: true" in res["msg"]
        f = [x for x in res["failures"] if x["code"] == "network_in_use"]
        assert [(x["device"], x["interface"]) for x in f] == [(NICS[0], ifname)]
        assert drivers(guest) == DRIVERS, "a refused run must not touch any device"
        # the host's own devices: management NIC, 9p root and state share, the disk
        res = vfio(ansible_playbook, ["0000:00:02.0", "0000:00:03.0", "0000:00:04.0", "0000:00:05.0"],
                   expect_ok=False)
        codes = sorted((x["device"], x["code"]) for x in res["failures"])
        assert codes == [("0000:00:02.0", "network_in_use"), ("0000:00:03.0", "backs_storage"),
                         ("0000:00:04.0", "backs_storage"), ("0000:00:05.0", "backs_storage")], res["msg"]
        assert "10.0.2.15/24" in res["msg"] and "/dev/vda" in res["msg"] and "/dev/root" in res["msg"]
    finally:
        guest.run("ip addr flush dev %s; ip link set %s down" % (ifname, ifname), timeout=30)


@pytest.mark.testbed(HOST)
def test_shared_group_bind_all_and_refuse(guest, ansible_playbook):
    refused = vfio(ansible_playbook, [SHARED[0]], group_policy="refuse", expect_ok=False)
    assert refused.get("failed") is True and SHARED[1] in refused["msg"]
    assert refused["failures"][0]["members"] == [SHARED[1]]
    assert drivers(guest) == DRIVERS

    bound = vfio(ansible_playbook, [SHARED[0]], group_policy="bind_all")
    assert bound["changed"] is True and bound["group_members_bound"] == [SHARED[1]]
    assert [(d["address"], d["driver_after"]) for d in bound["devices"]] == [(a, "vfio-pci") for a in SHARED]
    now = drivers(guest)
    assert now[SHARED[0]] == now[SHARED[1]] == "vfio-pci"

    released = vfio(ansible_playbook, [SHARED[0]], state="absent")
    assert [(d["address"], d["restored_to"]) for d in released["devices"]] == [(a, "e1000") for a in SHARED]
    assert drivers(guest) == DRIVERS


@pytest.mark.testbed(HOST)
def test_persistence_across_reboot(guest, ansible_playbook):
    bound = vfio(ansible_playbook, [NICS[1]])
    assert bound["changed"] is True and bound["persistent_devices"] == [NICS[1]]
    # The guests run udevd with a PCI coldplug at boot (tests/testbed/guest-init.sh), as a
    # host does: the rule the module installed must bring the NIC back on vfio-pci by itself.
    udevd = guest.run("pgrep -x systemd-udevd", timeout=30)
    assert udevd.rc == 0, "the guest runs no udevd: scripts/setup-debian.sh testbed installs udev"
    guest.reboot()
    assert RULES_MARK in guest.run("cat %s" % RULES, timeout=30, check=True).stdout
    assert guest.run("cat %s" % MODLOAD, timeout=30, check=True).stdout.splitlines()[-1] == "vfio-pci"
    assert drivers(guest)[NICS[1]] == "vfio-pci", "not on vfio-pci after the reboot"
    assert guest.run("ls /sys/bus/pci/devices/%s/vfio-dev" % NICS[1], timeout=30).stdout.strip() == "vfio0"
    # the module sees its own work: nothing to do
    again = vfio(ansible_playbook, [NICS[1]])
    assert again["changed"] is False
    released = vfio(ansible_playbook, [NICS[1]], state="absent")
    assert released["devices"][0]["restored_to"] == "e1000e"


@pytest.mark.testbed(HOST)
def test_provision_role_end_to_end(guest, ansible_playbook):
    # a GRUB defaults file for iommu.host.kernel_args to edit (the guest boots its kernel directly)
    guest.run("printf 'GRUB_DEFAULT=0\\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\\nGRUB_CMDLINE_LINUX=\"\"\\n' "
              "> /etc/default/grub", timeout=30, check=True)
    play = {"name": "provision", "hosts": HOST, "gather_facts": False,
            "roles": [{"role": "iommu.host.provision", "vars": {
                "provision_devices": [NICS[1]],
                "provision_bootloader": "grub",
                "provision_bootloader_update": False,
                "provision_device_group": "kvm"}}],
            "post_tasks": [{"name": "result", "ansible.builtin.debug": {"var": "preflight_result"}},
                           {"name": "provisioned", "ansible.builtin.debug": {"var": "provision_result"}}]}
    result = ansible_playbook(play)
    assert result.rc == 0, result
    pre = result.result(HOST, "result")["preflight_result"]
    assert pre["status"] == "pass", pre["summary"]
    hw = [f for f in pre["findings"] if f["id"] == "device.hw_info"]
    assert [(f["status"], f["device"]) for f in hw] == [("pass", NICS[1])]
    prov = result.result(HOST, "provisioned")["provision_result"]
    assert prov["vendor"] == "intel" and prov["kernel_args"] == ["intel_iommu=on"]
    assert prov["bound_devices"] == [NICS[1]] and not prov["reboot_pending"]
    grub = guest.run("cat /etc/default/grub", timeout=30, check=True).stdout
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"' in grub
    loaded = guest.run("cat /etc/modules-load.d/iommu-host.conf; stat -c '%G %a' /dev/iommu", timeout=30,
                       check=True).stdout
    assert "vfio-pci\niommufd\n" in loaded and "kvm 660" in loaded
    assert drivers(guest)[NICS[1]] == "vfio-pci"
    # a second run changes nothing and still passes the gate
    again = ansible_playbook(play)
    assert again.rc == 0, again
    assert again.stats[HOST]["changed"] == 0, [n for n, r in again.task_results(HOST) if r.get("changed")]
    assert again.result(HOST, "result")["preflight_result"]["status"] == "pass"
