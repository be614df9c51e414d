"""SR-IOV (iommu.host.sriov_vfs) and ACS facts on the real kernel (issue 12, parts 4 and 5).

The ``intel-igb`` guest (tests/testbed/testbed.py) has QEMU's igb (82576, 7 VFs offered by the
kernel's igb driver) at 03:00.0 behind its own pcie-root-port 00:0b.0, with the intel profile's VT-d.
QEMU 11.1 from the test-bed root is its outer VMM (igb needs QEMU 8.0+). The VFs appear at 03:10.0,
03:10.2, ... (First VF Offset 128, VF Stride 2), each in its own IOMMU group: the root port has ACS.
Marker ``sriov``: ``pytest tests -m sriov`` runs these alone.
"""
import re

import pytest

HOST = "intel-igb"
PF = "0000:03:00.0"
PORT = "0000:00:0b.0"
VFS = ("0000:03:10.0", "0000:03:10.2")
RULES = "/etc/udev/rules.d/70-iommu-host-sriov.rules"
VFIO_RULES = "/etc/udev/rules.d/80-iommu-host-vfio.rules"
HOLDER_PID = "/run/iommu-host-sriov-holder.pid"

pytestmark = [pytest.mark.sriov, pytest.mark.testbed(HOST)]

RESET = r"""
d=/sys/bus/pci/devices/{pf}
[ -f {pidfile} ] && kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}
sleep 0.5
for vf in $(ls -d $d/virtfn* 2>/dev/null); do
  a=$(basename $(readlink $vf)); v=/sys/bus/pci/devices/$a
  echo > $v/driver_override
  [ -e $v/driver ] && echo $a > $v/driver/unbind
done
rm -f {rules} {vfio_rules}; udevadm control --reload
echo 0 > $d/sriov_numvfs; echo 1 > $d/sriov_drivers_autoprobe
cat $d/sriov_numvfs
"""


def sh(guest, cmd, timeout=120):
    return guest.run(cmd, timeout=timeout, check=True).stdout


def numvfs(guest):
    return int(sh(guest, "cat /sys/bus/pci/devices/%s/sriov_numvfs" % PF).strip())


@pytest.fixture
def guest(testbed):
    g = testbed[HOST]
    assert sh(g, RESET.format(pf=PF, pidfile=HOLDER_PID, rules=RULES, vfio_rules=VFIO_RULES)).strip() == "0"
    yield g
    g.run(RESET.format(pf=PF, pidfile=HOLDER_PID, rules=RULES, vfio_rules=VFIO_RULES), timeout=120)


def play(name, module, args, check=False):
    task = {"name": name, module: args}
    if check:
        task.update(check_mode=True, diff=True)
    return {"name": name, "hosts": HOST, "gather_facts": False, "tasks": [task]}


def sriov(ansible_playbook, check=False, expect_ok=True, **args):
    args.setdefault("pf", PF)
    result = ansible_playbook(play("sriov", "iommu.host.sriov_vfs", args, check=check))
    if expect_ok:
        assert result.rc == 0, result
    return result.result(HOST, "sriov")


def groups(guest, addrs):
    out = sh(guest, "for a in %s; do echo $a $(basename $(readlink /sys/bus/pci/devices/$a/iommu_group)) "
                    "$(ls /sys/bus/pci/devices/$a/iommu_group/devices | wc -l); done" % " ".join(addrs))
    return dict((line.split()[0], (line.split()[1], int(line.split()[2]))) for line in out.splitlines())


def test_vfs_created_check_mode_idempotent_grouped_persistent(guest, ansible_playbook):
    ifname = sh(guest, "ls /sys/bus/pci/devices/%s/net" % PF).split()[0]      # the PF named by its interface
    predicted = sriov(ansible_playbook, check=True, pf=ifname, num_vfs=2, drivers_autoprobe=False)
    assert predicted["changed"] is True and numvfs(guest) == 0, "check mode created VFs"
    assert predicted["vfs"] == list(VFS)
    assert predicted["actions"] == ["set sriov_drivers_autoprobe to 0", "write 2 to sriov_numvfs"]
    assert guest.run("test -e %s" % RULES, timeout=30).rc != 0, "check mode wrote the rule"
    diff = dict((d["before_header"], d) for d in predicted["diff"])
    rule = diff[RULES]["after"]
    assert 'KERNEL=="%s", DRIVER=="?*", ATTR{vendor}=="0x8086", ATTR{device}=="0x10c9", ' \
           'ATTR{sriov_drivers_autoprobe}="0", ATTR{sriov_numvfs}="2"' % PF in rule

    real = sriov(ansible_playbook, pf=ifname, num_vfs=2, drivers_autoprobe=False)
    assert real["changed"] is True and real["actions"] == predicted["actions"] and real["vfs"] == list(VFS)
    assert numvfs(guest) == 2
    assert sh(guest, "cat %s" % RULES) == rule
    # the VFs are real PCI functions of the PF, with no driver (autoprobe off), each in its own IOMMU group
    links = sh(guest, "for a in %s; do basename $(readlink /sys/bus/pci/devices/$a/physfn); "
                      "readlink /sys/bus/pci/devices/$a/driver || echo none; done" % " ".join(VFS)).split()
    assert links == [PF, "none", PF, "none"]
    g = groups(guest, (PF,) + VFS)
    assert len(set(v[0] for v in g.values())) == 3 and all(v[1] == 1 for v in g.values()), g

    again = sriov(ansible_playbook, pf=PF, num_vfs=2, drivers_autoprobe=False)
    assert again["changed"] is False and again["actions"] == [] and again["file"]["action"] == "unchanged"

    # 2 -> 3: through 0 (the kernel refuses a non-zero to non-zero change with EBUSY)
    direct = guest.run("echo 3 > /sys/bus/pci/devices/%s/sriov_numvfs" % PF, timeout=30)
    assert direct.rc != 0 and "Device or resource busy" in direct.stderr
    grown = sriov(ansible_playbook, num_vfs=3)
    assert grown["actions"][0].startswith("write 0 to sriov_numvfs") and grown["vfs_removed"] == list(VFS)
    assert numvfs(guest) == 3 and 'ATTR{sriov_numvfs}="3"' in sh(guest, "cat %s" % RULES)
    too_many = sriov(ansible_playbook, num_vfs=8, expect_ok=False)
    assert too_many["failed"] and "at most 7 (sriov_totalvfs)" in too_many["msg"]

    # persistence: the rule recreates the VFs when the PF's driver binds again, and at boot
    sh(guest, "echo %s > /sys/bus/pci/drivers/igb/unbind" % PF)
    assert numvfs(guest) == 0
    # no PF driver: the kernel refuses (drivers/pci/iov.c sriov_numvfs_store), the module before writing
    nodrv = guest.run("echo 1 > /sys/bus/pci/devices/%s/sriov_numvfs" % PF, timeout=30)
    assert nodrv.rc != 0 and "No such file or directory" in nodrv.stderr, nodrv
    unbound = sriov(ansible_playbook, num_vfs=1, expect_ok=False)
    assert unbound["failures"][0]["code"] == "pf_no_driver" and "ENOENT" in unbound["msg"]
    sh(guest, "echo %s > /sys/bus/pci/drivers/igb/bind; udevadm settle --timeout=30" % PF)
    assert numvfs(guest) == 3
    guest.reboot()
    assert numvfs(guest) == 3, "the udev rule did not recreate the VFs at boot"
    assert sh(guest, "cat /sys/bus/pci/devices/%s/sriov_drivers_autoprobe" % PF).strip() == "0"

    gone = sriov(ansible_playbook, state="absent")
    assert gone["changed"] is True and numvfs(guest) == 0 and gone["file"]["action"] == "remove"
    assert guest.run("test -e %s" % RULES, timeout=30).rc != 0


HOLD = ("setsid nohup python3 -c 'import os, time; fd = os.open(\"/dev/vfio/devices/{cdev}\", os.O_RDWR); "
        "open(\"{pidfile}\", \"w\").write(str(os.getpid())); time.sleep(3600)' >/dev/null 2>&1 </dev/null & "
        "for i in $(seq 50); do [ -s {pidfile} ] && break; sleep 0.2; done; cat {pidfile}")


def test_vf_bound_gated_and_in_use_refused(guest, ansible_playbook):
    sriov(ansible_playbook, num_vfs=2, drivers_autoprobe=False)
    bind = ansible_playbook(play("bind", "iommu.host.vfio_pci", {"devices": [VFS[0]]}))
    assert bind.rc == 0, bind
    assert bind.result(HOST, "bind")["devices"][0]["driver_after"] == "vfio-pci"

    gate = ansible_playbook({"name": "gate", "hosts": HOST, "gather_facts": False,
                             "roles": [{"role": "iommu.host.preflight", "vars": {
                                 "preflight_profiles": ["passthrough"], "preflight_devices": [VFS[0]],
                                 "preflight_mode": "report"}}],
                             "post_tasks": [{"name": "result", "ansible.builtin.debug": {"var": "preflight_result"}}]})
    assert gate.rc == 0, gate
    pre = gate.result(HOST, "result")["preflight_result"]
    by_id = dict(((f["id"], f["device"]), f) for f in pre["findings"])
    assert pre["status"] == "pass", [(f["id"], f["status"], f["message"]) for f in pre["findings"]]
    for check in ("device.vfio_driver", "device.not_in_use", "device.group_viable", "device.hw_info",
                  "device.acs_path"):
        assert by_id[(check, VFS[0])]["status"] == "pass", by_id[(check, VFS[0])]
    assert "0000:00:0b.0 (root_port)" in by_id[("device.acs_path", VFS[0])]["message"]

    cdev = sh(guest, "ls /sys/bus/pci/devices/%s/vfio-dev" % VFS[0]).split()[0]
    pid = sh(guest, HOLD.format(cdev=cdev, pidfile=HOLDER_PID)).strip()
    assert pid.isdigit()
    refused = sriov(ansible_playbook, num_vfs=1, expect_ok=False)
    assert refused["failed"] and numvfs(guest) == 2
    failure = refused["failures"][0]
    assert failure["device"] == VFS[0] and failure["code"] == "vf_in_use"
    assert "held open by %s (python3)" % pid in failure["message"]
    forced = sriov(ansible_playbook, num_vfs=1, force=True, expect_ok=False)
    assert forced["failed"] and numvfs(guest) == 2, "force must not remove a VF held through VFIO"

    sh(guest, "kill %s; rm -f %s; sleep 0.5" % (pid, HOLDER_PID))
    done = sriov(ansible_playbook, num_vfs=1)
    assert done["changed"] is True and done["vfs"] == [VFS[0]] and numvfs(guest) == 1


LSPCI_DEV = re.compile(r"^([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) (.*)$")


def parse_lspci(text):
    """{address: {"bridge", "acs": (offset, version, cap, ctl) or None, "secondary"}} from lspci -D -vvv."""
    out, cur, want = {}, None, None
    for line in text.splitlines():
        m = LSPCI_DEV.match(line)
        if m:
            cur = out.setdefault(m.group(1), {"bridge": "PCI bridge" in m.group(2), "acs": None, "secondary": None})
            continue
        if cur is None:
            continue
        s = line.strip()
        b = re.match(r"Bus: primary=([0-9a-f]+), secondary=([0-9a-f]+)", s)
        if b:
            cur["secondary"] = int(b.group(2), 16)
        c = re.match(r"Capabilities: \[([0-9a-f]+) v(\d+)\] Access Control Services", s)
        if c:
            want = [int(c.group(1), 16), int(c.group(2)), None, None]
            cur["acs"] = want
        elif s.startswith("ACSCap:") and want is not None:
            want[2] = s.split(":", 1)[1].strip()
        elif s.startswith("ACSCtl:") and want is not None:
            want[3] = s.split(":", 1)[1].strip()
    return out


def test_acs_facts_match_lspci(guest, ansible_playbook):
    from ansible_collections.iommu.host.plugins.module_utils.decode import pci_config

    sriov(ansible_playbook, num_vfs=2)
    result = ansible_playbook({"name": "facts", "hosts": HOST, "gather_facts": False, "tasks": [
        {"name": "gather", "iommu.host.iommu_facts": {"sysfs_only": True}}]})
    assert result.rc == 0, result
    facts = result.result(HOST, "gather")["ansible_facts"]["iommu"]
    lspci = parse_lspci(sh(guest, "lspci -D -vvv 2>/dev/null"))
    devices = facts["devices"]
    bridges = sorted(a for a, d in lspci.items() if d["bridge"])
    assert PORT in bridges and "0000:00:0a.0" in bridges and "0000:01:00.0" in bridges
    for addr in bridges:
        acs = devices[addr]["acs"]
        assert acs["readable"] == "extended" and acs["bytes_read"] == 4096, acs
        seen = lspci[addr]["acs"]
        if seen is None:
            assert acs["status"] == "absent" and acs["capability"] is None, (addr, acs)
            continue
        assert acs["status"] == "present", (addr, acs)
        assert (int(acs["offset"], 16), seen[1]) == (seen[0], 1)
        assert pci_config.lspci_line(acs["capability"]) == seen[2], addr
        assert pci_config.lspci_line(acs["control"]) == seen[3], addr
    # the upstream chains agree with lspci's bridge windows (secondary bus -> bridge)
    by_secondary = dict((d["secondary"], a) for a, d in lspci.items() if d["bridge"] and d["secondary"] is not None)
    for addr in lspci:
        bus = int(addr.split(":")[1], 16)
        up = devices[addr]["upstream"]
        assert (up[0] if up else None) == by_secondary.get(bus), (addr, up)
    for vf in VFS:
        assert devices[vf]["physfn"] == PF and devices[vf]["acs_path"][0]["isolates"] is True
    sr = devices[PF]["sriov"]
    assert (sr["totalvfs"], sr["numvfs"], sr["vf_device"], sr["offset"], sr["stride"], sr["vfs"]) == \
        (7, 2, "0x10ca", 128, 2, list(VFS))
    assert facts["acs"]["override"]["present"] is False
