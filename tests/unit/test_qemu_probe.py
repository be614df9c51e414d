# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.qemu_probe (module) and module_utils/qemu_probe.py against a fake QEMU.

The fake is a small executable Python file that speaks QMP on stdio like ``qemu-system-x86_64 -S
-qmp stdio``: it greets, refuses an intel-iommu without caching mode the way QEMU 11.1.3 does (exit 1,
its words on stderr after the ``-device ...:`` prefix), answers qmp_capabilities, refuses ``migrate``
with a VFIO blocker unless every device is an mdev, and quits. It logs each run's argv, so the tests
see whether QEMU ran at all. The host is a synthetic sysfs tree (tests/support/synthetic.py).
"""

import json
import stat
import sys

import pytest

from ansible_collections.iommu.host.plugins.module_utils import qemu_probe as Q
from ansible_collections.iommu.host.plugins.modules import qemu_probe as M
from tests.support import synthetic

FAKE_QEMU = r'''#!/usr/bin/env python3
import json, os, sys, time
argv = sys.argv[1:]
log = os.environ.get("FAKE_QEMU_LOG")
if log:
    with open(log, "a") as f:
        f.write(json.dumps(argv) + "\n")
if argv == ["--version"]:
    print("QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1~bpo13+1)")
    sys.exit(0)
if os.environ.get("FAKE_QEMU_HANG"):
    time.sleep(600)
devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
print(json.dumps({"QMP": {"version": {"qemu": {"major": 11, "minor": 1, "micro": 3}, "package": ""},
                          "capabilities": []}}), flush=True)
vfio = [d for d in devices if d.startswith("vfio-pci,")]
for d in devices:
    if d.startswith("intel-iommu") and "caching-mode=on" not in d and vfio:
        host = vfio[0].split("host=")[1].split(",")[0]
        sys.stderr.write("qemu-system-x86_64: -device %s: vfio %s: Failed to set vIOMMU: Device assignment is not "
                         "allowed without enabling caching-mode=on for Intel IOMMU.\n" % (vfio[0], host))
        sys.exit(1)
sys.stderr.write("qemu-system-x86_64: warning: VFIO dma-buf not supported in kernel, using mmap fallback\n")
pci = [d.split("host=")[1].split(",")[0] for d in vfio if "host=" in d]
for line in sys.stdin:
    cmd = json.loads(line)["execute"]
    if cmd == "migrate":
        if pci:
            print(json.dumps({"error": {"class": "GenericError", "desc": "%s: VFIO migration init failed: migration "
                                        "is not supported in kernel: Inappropriate ioctl for device" % pci[0]}}))
        else:
            print(json.dumps({"return": {}}))
    elif cmd == "quit":
        print(json.dumps({"return": {}}))
        print(json.dumps({"event": "SHUTDOWN", "data": {"guest": False, "reason": "host-qmp-quit"}}))
        sys.exit(0)
    else:
        print(json.dumps({"return": {}}), flush=True)
'''


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "root"
    addrs = synthetic.build(str(root), n_devices=3, vfio=(0, 1), holders={777: ["/dev/vfio/devices/vfio1"]})
    return str(root), addrs


@pytest.fixture
def fake(tmp_path, monkeypatch):
    path = tmp_path / "qemu-system-x86_64"
    path.write_text(FAKE_QEMU)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "runs.log"
    monkeypatch.setenv("FAKE_QEMU_LOG", str(log))
    return str(path), log


def args(**kw):
    base = {"profiles": ["passthrough"], "params": {}, "devices": ["all_vfio"], "vm": None, "vms": None,
            "binary": None, "timeout": 30.0, "migrate": True, "prediction": None}
    base.update(kw)
    return base


def runs(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_started_and_migration_blocked(host, fake):
    root, addrs = host
    binary, log = fake
    out = M.run(args(binary=binary, profiles=["intel_viommu", "live_migration"],
                     params={"caching_mode": True, "aw_bits": 39}, devices=[addrs[0]]), root=root)
    assert not out.get("failed"), out
    (res,) = out["results"]
    assert res["probed"] and res["started"] is True and res["rc"] == 0 and not res["timed_out"]
    assert res["qemu_version"] == "11.1.3"
    assert res["migration"] == "blocked"
    assert res["blocker"] == ("%s: VFIO migration init failed: migration is not supported in kernel: Inappropriate "
                              "ioctl for device" % addrs[0])
    assert res["errors"] == [] and res["warnings"] == [
        "warning: VFIO dma-buf not supported in kernel, using mmap fallback"]
    assert "-S" in res["argv"] and "intel-iommu,aw-bits=39,caching-mode=on" in res["argv"]
    assert "vfio-pci,host=%s,iommufd=iommufd0" % addrs[0] in res["argv"]
    assert runs(log) == [res["argv"]]


def test_refusal_message_without_prefixes(host, fake):
    root, addrs = host
    binary, _log = fake
    out = M.run(args(binary=binary, profiles=["intel_viommu"], params={"caching_mode": False},
                     devices=[addrs[0]]), root=root)
    (res,) = out["results"]
    assert res["started"] is False and res["rc"] == 1 and res["migration"] is None
    assert res["errors"] == ["vfio %s: Failed to set vIOMMU: Device assignment is not allowed without enabling "
                             "caching-mode=on for Intel IOMMU." % addrs[0]]
    assert res["qemu_version"] == "11.1.3"  # the greeting came before the refusal


def test_device_held_open_is_refused_and_nothing_runs(host, fake):
    root, addrs = host
    binary, log = fake
    out = M.run(args(binary=binary, devices=[addrs[0], addrs[1]]), root=root)
    assert out["failed"] and "holds open" in out["msg"] and addrs[1] in out["msg"] and "777" in out["msg"]
    assert list(out["in_use"]) == [addrs[1]] and out["in_use"][addrs[1]][0].startswith("777 ")
    assert runs(log) == []
    # all_vfio includes the held device: refused too
    assert M.run(args(binary=binary), root=root)["failed"]
    assert runs(log) == []


def test_check_mode_opens_nothing_and_reports_argv(host, fake):
    root, addrs = host
    binary, log = fake
    out = M.run(args(binary=binary, profiles=["amd_viommu"], params={"dma_remap": True}, devices=[addrs[0]]),
                check_mode=True, root=root)
    (res,) = out["results"]
    assert res["probed"] is False and res["started"] is None and runs(log) == []
    assert res["argv"][:2] == ["-machine", "q35,accel=tcg"] and "amd-iommu,dma-remap=on" in res["argv"]


def test_timeout_kills_qemu(host, fake, monkeypatch):
    root, addrs = host
    binary, _log = fake
    monkeypatch.setenv("FAKE_QEMU_HANG", "1")
    out = M.run(args(binary=binary, devices=[addrs[0]], timeout=1.0), root=root)
    (res,) = out["results"]
    assert res["timed_out"] and res["started"] is False and res["seconds"] < 30


def test_missing_binary_is_an_answer_not_a_traceback(host, tmp_path):
    root, addrs = host
    out = M.run(args(binary=str(tmp_path / "nope"), devices=[addrs[0]]), root=root)
    (res,) = out["results"]
    assert res["started"] is False and res["errors"][0].startswith("cannot start %s" % (tmp_path / "nope"))


def test_no_binary_in_path(host, monkeypatch, tmp_path):
    root, addrs = host
    monkeypatch.setenv("PATH", str(tmp_path))
    out = M.run(args(devices=[addrs[0]]), root=root)
    assert out["failed"] and "no qemu-system-x86_64 in PATH" in out["msg"]


def test_vm_definition_and_several_configurations(host, fake):
    root, addrs = host
    binary, log = fake
    cmdline = ("qemu-system-x86_64 -machine q35 -object iommufd,id=fd0 -device intel-iommu,caching-mode=on,"
               "aw-bits=39 -device vfio-pci,host=%s,iommufd=fd0" % addrs[0])
    out = M.run(args(binary=binary, vms=[
        {"name": "from argv", "vm": cmdline},
        {"name": "legacy", "profiles": ["passthrough"], "params": {"iommufd": False}, "devices": [addrs[0]]},
    ]), root=root)
    first, second = out["results"]
    assert (first["name"], second["name"]) == ("from argv", "legacy")
    assert "intel-iommu,aw-bits=39,caching-mode=on" in first["argv"] and first["started"]
    assert "vfio-pci,host=%s" % addrs[0] in second["argv"] and "iommufd" not in " ".join(second["argv"])
    assert len(runs(log)) == 2


@pytest.mark.parametrize("kw,words", [
    ({"profiles": ["nope"]}, "invalid profiles/params"),
    ({"params": {"aw_bits": "wide"}, "profiles": ["intel_viommu"]}, "aw_bits must be an integer"),
    ({"devices": ["zz:zz"]}, "devices:"),
    ({"vm": "<domain><devices>"}, "unusable VM definition"),
    ({"timeout": 0}, "timeout must be a positive"),
    ({"devices": ["8086:ffff"]}, "devices"),
])
def test_bad_input_is_a_clear_failure(host, fake, kw, words):
    root, _addrs = host
    binary, log = fake
    out = M.run(args(binary=binary, **kw), root=root)
    assert out["failed"] and words in out["msg"], out
    assert runs(log) == []


# ---------------------------------------------------------------------------
# module_utils/qemu_probe.py parsing


def test_outcome_parsing():
    stdout = "\n".join(json.dumps(x) for x in (
        {"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 13}}}}, {"return": {}},
        {"event": "STOP"}, {"error": {"class": "GenericError", "desc": "blocked because"}}, {"return": {}}))
    res = Q.outcome(0, stdout + "\nnot json {\n", "qemu-system-x86_64: -device x,y=z: boom\nwarning: w\n")
    assert res["started"] and res["migration"] == "blocked" and res["blocker"] == "blocked because"
    assert res["qemu_version"] == "10.0.13" and res["errors"] == ["boom"] and res["warnings"] == ["warning: w"]
    # the greeting alone does not prove the devices were realized
    res = Q.outcome(1, json.dumps({"QMP": {"version": {"qemu": {"major": 11, "minor": 1, "micro": 3}}}}), "")
    assert not res["started"] and res["migration"] is None and res["qemu_version"] == "11.1.3"
    assert Q.outcome(None, "", "", timed_out=True)["started"] is False
    assert Q.outcome(0, '{"return": {}}\n{"return": {}}', "", asked_migration=False)["migration"] is None


def test_build_argv_spellings_and_backends():
    values = {"viommu": "intel-iommu", "iommufd": False, "_given": ["x_scalable_mode", "caching_mode"],
              "x_scalable_mode": True, "caching_mode": True}
    argv = Q.build_argv(values, ["0000:00:09.0"], ["83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"])
    assert "intel-iommu,caching-mode=on,x-scalable-mode=on" in argv and "-object" not in argv
    assert "vfio-pci,sysfsdev=/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001" in argv
    argv = Q.build_argv({"viommu": "amd-iommu", "_given": ["pci_id", "dma_remap"], "pci_id": "p0",
                         "dma_remap": True}, ["0000:00:09.0"])
    assert argv.index("AMDVI-PCI,id=p0") < argv.index("amd-iommu,dma-remap=on,pci-id=p0")
    assert Q.qmp_script().count("\n") == 3 and "exec:cat > /dev/null" in Q.qmp_script()


# ---------------------------------------------------------------------------
# probe.agreement (the preflight role's comparison)


def _verdict(*findings):
    return {"host": "h", "findings": [dict({"device": None}, **f) for f in findings]}


REFUSE = {"id": "viommu.intel.caching_mode", "status": "fail", "qemu_effect": "refuse",
          "message": "QEMU refuses: \"Device assignment is not allowed without enabling caching-mode=on\""}
BLOCK = {"id": "migration.device", "status": "fail", "qemu_effect": "block_migration", "message": "blocked"}


@pytest.mark.parametrize("verdict,result,migration,status,words", [
    (_verdict(REFUSE), {"started": False, "errors": ["boom"], "qemu_version": "11.1.3"}, False, "pass",
     "QEMU 11.1.3 refused the VM: boom"),
    (_verdict(), {"started": False, "errors": ["boom"], "qemu_version": "11.1.3"}, False, "fail",
     "the gate predicts that the VM starts"),
    (_verdict(REFUSE), {"started": True, "migration": "allowed"}, False, "fail", "caching-mode=on"),
    (_verdict(BLOCK), {"started": True, "migration": "blocked", "blocker": "nope"}, True, "pass", "migration blocked"),
    (_verdict(), {"started": True, "migration": "blocked", "blocker": "nope"}, True, "fail", "can migrate"),
    (_verdict(BLOCK), {"started": True, "migration": "allowed"}, True, "fail", "migration is blocked: migration"),
    (_verdict(), {"started": True, "migration": "blocked", "blocker": "nope"}, False, "pass", "started the VM"),
    (_verdict(REFUSE), {"started": False, "timed_out": True, "errors": []}, False, "fail", "timeout"),
    (_verdict(REFUSE), {"started": None}, False, "not_applicable", "not run"),
    (None, None, True, "not_applicable", "not run"),
])
def test_agreement(verdict, result, migration, status, words):
    f = Q.agreement(verdict, result, migration=migration)
    assert f["id"] == "probe.agreement" and f["status"] == status and words in f["message"], f
    assert (f["remedy"] is not None) == (status == "fail")


def test_module_reports_agreement(host, fake):
    root, addrs = host
    binary, _log = fake
    prediction = _verdict(REFUSE)
    out = M.run(args(binary=binary, profiles=["intel_viommu"], params={"caching_mode": False}, devices=[addrs[0]],
                     prediction=prediction), root=root)
    assert out["agreement"]["status"] == "pass"
    out = M.run(args(binary=binary, profiles=["intel_viommu", {"name": "live_migration"}],
                     params={"caching_mode": True, "aw_bits": 39}, devices=[addrs[0]], prediction=_verdict()),
                root=root)
    assert out["agreement"]["status"] == "fail" and "can migrate" in out["agreement"]["message"]


def test_release_of(fake, tmp_path):
    binary, _log = fake
    assert Q.release_of(binary) == "11.1.3"
    assert Q.release_of(str(tmp_path / "missing")) is None
    stuck = tmp_path / "stuck"
    stuck.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck.chmod(0o755)
    assert Q.release_of(str(stuck), timeout=0.5) is None


# ---------------------------------------------------------------------------
# qemu-system-aarch64: the virt machine (the arm64 test bed's oracle runs these argv)


def test_build_argv_arm_machine():
    smmu = {"viommu": "arm-smmuv3", "accel": True, "_given": []}
    argv = Q.build_argv(smmu, ["0000:00:09.0"])
    assert argv[:4] == ["-machine", "virt,accel=kvm:tcg", "-cpu", "max"]
    assert "arm-smmuv3,primary-bus=pcie.0,accel=on" in argv and "vfio-pci,host=0000:00:09.0,iommufd=iommufd0" in argv
    off = Q.build_argv(dict(smmu, accel=False, iommufd=False), ["0000:00:09.0"])
    assert "arm-smmuv3,primary-bus=pcie.0,accel=off" in off and "vfio-pci,host=0000:00:09.0" in off
    assert Q.build_argv({"viommu": "none"}, ["0000:00:09.0"], arch="aarch64")[:4] == argv[:4]
    assert Q.build_argv({"viommu": "none"}, ["0000:00:09.0"])[:2] == ["-machine", "q35,accel=tcg"]
    # an explicit machine is taken as it is, without -cpu
    assert Q.build_argv(smmu, [], machine="virt,accel=tcg")[:3] == ["-machine", "virt,accel=tcg", "-nodefaults"]


@pytest.mark.parametrize("binary,arch", [
    ("/usr/bin/qemu-system-aarch64", "aarch64"), ("qemu-system-x86_64", "x86_64"),
    ("/usr/local/bin/qemu-11.1", None), ("", None), (None, None)])
def test_arch_of(binary, arch):
    assert Q.arch_of(binary) == arch
    assert Q.arch_of(binary, "x86_64") == (arch or "x86_64")


def test_module_on_an_arm64_host(host, tmp_path, monkeypatch):
    """On an arm64 host the module runs the host's qemu-system-aarch64 with the virt machine, also without a vSMMU."""
    root, addrs = host
    path = tmp_path / "bin" / "qemu-system-aarch64"
    path.parent.mkdir()
    path.write_text(FAKE_QEMU)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "runs.log"
    monkeypatch.setenv("FAKE_QEMU_LOG", str(log))
    (path.parent / "python3").symlink_to(sys.executable)          # the fake's interpreter, and nothing else
    monkeypatch.setenv("PATH", str(path.parent))
    monkeypatch.setattr(M.platform, "machine", lambda: "aarch64")
    out = M.run(args(devices=[addrs[0]], migrate=False), root=root)
    assert out["binary"] == str(path)
    (res,) = out["results"]
    assert res["argv"][:4] == ["-machine", "virt,accel=kvm:tcg", "-cpu", "max"] and res["started"] is True
    assert runs(log)[0] == res["argv"]
    monkeypatch.setattr(M.platform, "machine", lambda: "x86_64")
    out = M.run(args(devices=[addrs[0]], migrate=False), root=root)
    assert out["failed"] and "no qemu-system-x86_64 in PATH" in out["msg"]
