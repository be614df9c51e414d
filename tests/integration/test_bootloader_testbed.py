"""The provision role end to end through a real bootloader and a real reboot (issue 12).

The disk-booted guests (profiles disk-grub and disk-sdboot, images from tests/testbed/build-disk.sh)
boot like hosts: firmware (SeaBIOS / OVMF), GRUB from the MBR / systemd-boot from the ESP, the
kernel and initramfs from their own disk, systemd as init. Their images start with
``intel_iommu=off`` on the kernel command line: a host before provisioning, whose VT-d unit
(QEMU intel-iommu, interrupt remapping on) the kernel leaves off.

One test, both guests booted together and provisioned in the same plays (Ansible runs the two
hosts in parallel); each is booted once and rebooted once, by the role:

1. /proc/cmdline has intel_iommu=off, no DMAR unit is active, 00:09.0 is on e1000e;
2. ``ansible-playbook --check --diff`` with the role (kernel arguments, modules, binding 00:09.0,
   ``provision_reboot: true``): rc 0, nothing changed in the guest (same boot, same files, same
   driver), and the list of tasks it reports changed ...
3. ... is exactly the list the real run reports changed;
4. after the real run (the role rebooted the guest through its bootloader): /proc/cmdline has
   intel_iommu=on (the bootloader's own configuration was regenerated: grub.cfg / the loader entry
   kernel-install wrote), the facts show the VT-d unit active with 00:09.0 in an IOMMU group,
   00:09.0 is on vfio-pci (bound after the reboot, by the persistent rule), the gate passed;
5. a second run changes nothing.

IOMMU_HOST_WRITE_TRANSCRIPT=1 rewrites the transcript section of docs/provision.md from the run.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

NIC = "0000:00:09.0"
REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "provision.md"
TRANSCRIPT_BEGIN = "<!-- transcript: tests/integration/test_bootloader_testbed.py %s begin -->"
TRANSCRIPT_END = "<!-- transcript: tests/integration/test_bootloader_testbed.py %s end -->"
# IOMMU_HOST_BOOTLOADER_PROFILES=disk-grub (comma-separated) runs the test on some of them only.
BOOTLOADERS = {p: b for p, b in {"disk-grub": "grub", "disk-sdboot": "systemd-boot"}.items()
               if p in (os.environ.get("IOMMU_HOST_BOOTLOADER_PROFILES") or "disk-grub,disk-sdboot").split(",")}

pytestmark = pytest.mark.bootloader
ROLE = "iommu.host.provision : "      # task names as Ansible reports them
GATE = "iommu.host.preflight : "


def provision_play(hosts):
    return [{
        "name": "provision through the bootloader",
        "hosts": ",".join(hosts),
        "gather_facts": False,
        "roles": [{"role": "iommu.host.provision", "vars": {
            "provision_devices": [NIC],
            "provision_reboot": True,
            "provision_reboot_timeout": 600,
        }}],
        "post_tasks": [{"name": "Read the IOMMU facts", "iommu.host.iommu_facts": {"sysfs_only": True}}],
    }]


def changed_tasks(result, host) -> list:
    return [name for name, res in result.task_results(host) if res.get("changed")]


def state(guest) -> dict:
    """What the provisioning changes, read in the guest."""
    out = guest.run(
        "cat /proc/sys/kernel/random/boot_id; cat /proc/cmdline; "
        "basename \"$(readlink /sys/bus/pci/devices/%s/driver)\"; "
        "basename \"$(readlink /sys/bus/pci/devices/%s/iommu_group)\"; "
        "ls /sys/class/iommu | tr '\\n' ' '; echo; "
        "cat /etc/modules-load.d/iommu-host.conf /etc/udev/rules.d/80-iommu-host-vfio.rules 2>/dev/null "
        "| md5sum" % (NIC, NIC), timeout=60, check=True).stdout.split("\n")
    return {"boot_id": out[0], "cmdline": out[1], "driver": out[2], "group": out[3],
            "iommu_units": out[4].split(), "files": out[5]}


def boot_config(guest, bootloader) -> str:
    """The kernel command line as the bootloader will read it at the next boot."""
    if bootloader == "grub":
        cmd = "grep -m1 -E '^\\s*linux\\s' /boot/grub/grub.cfg"
    else:
        cmd = "grep -h '^options' /boot/efi/loader/entries/*.conf"
    return guest.run(cmd, timeout=60, check=True).stdout.strip()


def transcript(profile, bootloader, before, before_cfg, check, real, after, after_cfg, second, seconds) -> str:
    lines = ["```", "# %s: before (booted through %s from its disk)" % (profile, bootloader),
             "$ cat /proc/cmdline", before["cmdline"],
             "$ ls /sys/class/iommu", " ".join(before["iommu_units"]) or "(no DMAR unit)",
             "$ readlink /sys/bus/pci/devices/%s/driver" % NIC, "../../../bus/pci/drivers/" + before["driver"],
             "# the bootloader's configuration", before_cfg, "",
             "$ ansible-playbook provision.yml --check --diff    # rc %d, %.0f s" % (check.rc, seconds["check"]),
             "changed (predicted): " + ", ".join(changed_tasks(check, profile)), "",
             "$ ansible-playbook provision.yml --diff            # rc %d, %.0f s" % (real.rc, seconds["real"])]
    for name, res in real.task_results(profile):
        if res.get("skipped"):
            continue
        status = "changed" if res.get("changed") else ("failed" if res.get("failed") else "ok")
        line = "TASK [%s] %s" % (name, status)
        if name == ROLE + "Add the IOMMU kernel arguments":
            commands = [" ".join(c) if isinstance(c, list) else c for c in res.get("commands", [])]
            line += "  bootloader=%s files=%s commands=%s reboot_required=%s" % (
                res.get("bootloader"), res.get("files"), commands, res.get("reboot_required"))
        elif name == ROLE + "Reboot for the kernel arguments":
            line += "  rebooted=%s elapsed=%ss" % (res.get("rebooted"), res.get("elapsed"))
        elif name == ROLE + "Bind the devices to vfio-pci":
            line += "  " + ", ".join("%s %s -> %s" % (d["address"], d.get("driver_before"), d.get("driver_after"))
                                     for d in res.get("devices", []))
        elif name == GATE + "Show the preflight summary":
            msg = res.get("msg")
            line += "".join("\n    " + str(m) for m in (msg if isinstance(msg, list) else [msg]))
        lines.append(line)
    lines += ["", "# after", "$ cat /proc/cmdline", after["cmdline"],
              "$ ls /sys/class/iommu", " ".join(after["iommu_units"]),
              "$ readlink /sys/bus/pci/devices/%s/driver" % NIC, "../../../bus/pci/drivers/" + after["driver"],
              "$ readlink /sys/bus/pci/devices/%s/iommu_group" % NIC, "../../../kernel/iommu_groups/" + after["group"],
              "# the bootloader's configuration", after_cfg, "",
              "$ ansible-playbook provision.yml --diff            # second run: rc %d, changed=%d"
              % (second.rc, len(changed_tasks(second, profile))), "```"]
    return "\n".join(lines)


def write_transcript(profile, text):
    begin, end = TRANSCRIPT_BEGIN % profile, TRANSCRIPT_END % profile
    doc = DOC.read_text()
    if begin not in doc or end not in doc:
        raise AssertionError("docs/provision.md has no %s ... %s markers" % (begin, end))
    head, rest = doc.split(begin, 1)
    tail = rest.split(end, 1)[1]
    DOC.write_text(head + begin + "\n" + text + "\n" + end + tail)


@pytest.fixture
def disk_guests(testbed):
    """Both disk-booted guests, booted together; stopped after the test (nothing else here uses them)."""
    guests = testbed.boot(*BOOTLOADERS)
    yield guests
    for name in BOOTLOADERS:
        stopped = testbed.guests.pop(name, None)
        if stopped is not None:
            stopped.stop()


def host_ok(result, host):
    stats = result.stats.get(host, {})
    assert stats and stats.get("failures") == 0 and stats.get("unreachable") == 0, \
        "%s: the run failed on this host:\n%s" % (host, result)


def check_host(h, guest, before, before_cfg, check, real, second):
    """Every claim about one guest (raises AssertionError); returns (after, after_cfg)."""
    bootloader = BOOTLOADERS[h]
    host_ok(check, h)
    predicted = changed_tasks(check, h)
    kargs = check.result(h, ROLE + "Add the IOMMU kernel arguments")
    assert kargs["bootloader"] == bootloader and kargs["reboot_required"] is True, (h, kargs)
    assert kargs["pending"] == ["intel_iommu=on"], (h, kargs)
    for task in (ROLE + "Add the IOMMU kernel arguments", ROLE + "Load the kernel modules at every boot",
                 ROLE + "Reboot for the kernel arguments", ROLE + "Bind the devices to vfio-pci"):
        assert task in predicted, (h, task, predicted)

    host_ok(real, h)
    assert changed_tasks(real, h) == predicted, (h, "check mode did not predict the run")
    kargs = real.result(h, ROLE + "Add the IOMMU kernel arguments")
    assert kargs["bootloader"] == bootloader and kargs["changed"] is True, (h, kargs)
    assert kargs["reboot_required"] is True, (h, kargs)
    assert real.result(h, ROLE + "Reboot for the kernel arguments")["rebooted"] is True
    bound = real.result(h, ROLE + "Bind the devices to vfio-pci")["devices"]
    assert [(d["address"], d["driver_before"], d["driver_after"]) for d in bound] == \
        [(NIC, "e1000e", "vfio-pci")], (h, bound)
    facts = real.result(h, "Read the IOMMU facts")["ansible_facts"]["iommu"]
    assert facts["present"] is True and "intel_vtd" in facts["vendors"], (h, facts.get("vendors"))
    assert facts["devices"][NIC]["driver"] == "vfio-pci", h
    gate = real.result(h, GATE + "Evaluate the preflight requirements")["ansible_facts"]["preflight_result"]
    assert gate["status"] != "fail" and gate["failed"] == [], (h, gate["failed"])

    host_ok(second, h)
    assert changed_tasks(second, h) == [], (h, "second run changed something", changed_tasks(second, h))
    assert second.result(h, ROLE + "Add the IOMMU kernel arguments")["reboot_required"] is False

    # the guest now (after the second run, which changed nothing and did not reboot)
    after = state(guest)
    after_cfg = boot_config(guest, bootloader)
    assert after["boot_id"] != before["boot_id"], (h, "the guest did not reboot")
    assert "intel_iommu=on" in after["cmdline"].split(), (h, after["cmdline"])
    assert "intel_iommu=off" not in after["cmdline"].split(), (h, after["cmdline"])
    assert "intel_iommu=on" in after_cfg.split() and "intel_iommu=off" not in after_cfg.split(), (h, after_cfg)
    assert after["driver"] == "vfio-pci" and re.fullmatch(r"[0-9]+", after["group"]), (h, after)
    assert [u for u in after["iommu_units"] if u.startswith("dmar")] == ["dmar0"], (h, after)
    assert str(facts["devices"][NIC]["iommu_group"]) == after["group"], h
    return after, after_cfg


@pytest.mark.testbed(*BOOTLOADERS)
def test_provision_through_bootloader_and_reboot(disk_guests, ansible_playbook):
    """Both guests in the same plays: Ansible runs them in parallel, one reboot each."""
    hosts = list(BOOTLOADERS)
    before = {h: state(disk_guests[h]) for h in hosts}
    before_cfg = {h: boot_config(disk_guests[h], BOOTLOADERS[h]) for h in hosts}
    for h in hosts:
        assert "intel_iommu=off" in before[h]["cmdline"].split(), (h, before[h]["cmdline"])
        assert not [u for u in before[h]["iommu_units"] if u.startswith("dmar")], (h, before[h]["iommu_units"])
        assert before[h]["driver"] == "e1000e" and before[h]["group"] == "", (h, before[h])
        assert "intel_iommu=off" in before_cfg[h].split(), (h, before_cfg[h])

    seconds = {}
    t0 = time.time()
    check = ansible_playbook(provision_play(hosts), args=["--check", "--diff"])
    seconds["check"] = time.time() - t0
    assert {h: state(disk_guests[h]) for h in hosts} == before, "check mode changed a guest"
    assert {h: boot_config(disk_guests[h], BOOTLOADERS[h]) for h in hosts} == before_cfg, \
        "check mode changed a boot configuration"
    t0 = time.time()
    real = ansible_playbook(provision_play(hosts), args=["--diff"])
    seconds["real"] = time.time() - t0
    t0 = time.time()
    second = ansible_playbook(provision_play(hosts), args=["--diff"])
    seconds["second"] = time.time() - t0
    print("\ncheck %.0fs, run %.0fs (with the reboot), second run %.0fs (both guests in parallel)"
          % (seconds["check"], seconds["real"], seconds["second"]))

    errors = []
    for h in hosts:   # every host's claims, so one bootloader's failure does not hide the other's result
        try:
            after, after_cfg = check_host(h, disk_guests[h], before[h], before_cfg[h], check, real, second)
        except AssertionError as e:
            errors.append("%s: %s" % (h, e))
            continue
        print("%s: /proc/cmdline before: %s\n%s: /proc/cmdline after:  %s"
              % (h, before[h]["cmdline"], h, after["cmdline"]))
        if os.environ.get("IOMMU_HOST_WRITE_TRANSCRIPT") == "1":
            write_transcript(h, transcript(h, BOOTLOADERS[h], before[h], before_cfg[h], check, real, after,
                                           after_cfg, second, seconds))
    assert not errors, "\n\n".join(errors)
