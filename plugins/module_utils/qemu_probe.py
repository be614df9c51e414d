# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ask a real QEMU binary what the gate predicts: does this VM configuration start, can it migrate?

The VM configuration is the gate's own input (profiles, parameters and devices, as resolved by
policy.params.resolve_profiles), so a prediction and a probe are made from the same words.
:func:`build_argv` turns it into QEMU arguments for one release (property spellings are the
user's: a property the release lacks is refused by QEMU itself, as it would be in production);
:func:`probe` starts QEMU paused (``-S``) with no guest, no disks and no display, realizes the
vIOMMU and the assigned devices, asks for their migration blockers (QMP ``migrate`` to a
command that discards the stream: a blocker answers with its reason before anything is sent)
and quits. It opens and therefore resets the assigned devices, exactly like starting the VM:
callers must never probe a device that is in use.

Stdlib only (runs on managed hosts through the iommu.host.qemu_probe module and in the test
bed's differential suite).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import subprocess
import time

__metaclass__ = type

BASE_ARGS = ("-nodefaults", "-display", "none", "-S", "-qmp", "stdio", "-m", "128M")
# The Arm virt machine: KVM when the host has it (arm-smmuv3,accel=on refuses to start without it, as the VM
# would), else TCG (QEMU says "falling back to tcg"); -cpu max is the host CPU under KVM and runs under TCG,
# where virt's default CPU (cortex-a15) cannot run under KVM on an arm64 host.
ARM_MACHINE = "virt,accel=kvm:tcg"
ARM_CPU = ("-cpu", "max")
MIGRATE_URI = "exec:cat > /dev/null"
IOMMUFD_ID = "iommufd0"

# gate parameter -> (device, QEMU property); '_' becomes '-' for every other parameter of a model
_INTEL = ("aw_bits", "caching_mode", "scalable_mode", "x_scalable_mode", "fsts", "x_flts", "fs1gp", "x_pasid_mode",
          "svm", "device_iotlb", "dma_translation", "snoop_control")
_AMD = ("dma_remap", "pci_id", "device_iotlb", "dma_translation")
_VIRTIO = ("granule",)
_SMMU = ("accel", "stage", "ril", "ats", "oas", "ssidsize")
_VFIO = ("enable_migration", "x_device_dirty_page_tracking")

_PROG = re.compile(r"^(?:[\w./-]*/)?qemu[\w.-]*: ")
_OPTION = re.compile(r"^-(?:device|object|machine|M|global|drive|netdev|chardev|accel) [^ ]*?: ")


def _qemu_value(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _props(values, names, given):
    """QEMU key=value words for the parameters the user gave (QEMU's own defaults for the rest)."""
    out = []
    for name in names:
        if name in given:
            out.append("%s=%s" % (name.replace("_", "-"), _qemu_value(values.get(name))))
    return out


def build_argv(values, pci=(), mdevs=(), machine=None, mdev_root="/sys/bus/mdev/devices", arch=None):
    """QEMU arguments (after the binary) for a VM with the gate's resolved parameters.

    ``values``: policy.params.resolve_profiles()[1] (it carries ``_given``, the parameters the user
    set, and ``viommu``). ``pci``: host PCI addresses; ``mdevs``: mdev UUIDs. ``arch``: the binary's
    target ('aarch64' or 'x86_64'; None: aarch64 for arm-smmuv3, else x86_64), which picks the default
    machine: ARM_MACHINE with ``-cpu max`` for aarch64, q35 under TCG for x86_64.
    """
    given = set(values.get("_given") or [])
    viommu = values.get("viommu") or "none"
    iommufd = values.get("iommufd", True)
    cpu = []
    if machine is None:
        if viommu == "arm-smmuv3" or arch == "aarch64":
            machine, cpu = ARM_MACHINE, list(ARM_CPU)
        else:
            machine = "q35,accel=tcg"
    argv = ["-machine", machine] + cpu + list(BASE_ARGS)
    if iommufd:
        argv += ["-object", "iommufd,id=%s" % IOMMUFD_ID]
    if viommu == "intel-iommu":
        props = _props(values, _INTEL, given)
        if "pasid_bits" in given and "pasid" not in (values.get("_profiles") or []):
            props.append("pasid-bits=%s" % values.get("pasid_bits"))
        argv += ["-device", ",".join(["intel-iommu"] + props)]
    elif viommu == "amd-iommu":
        props = _props(values, _AMD, given)
        if values.get("pci_id") and "pci_id" in given:
            argv += ["-device", "AMDVI-PCI,id=%s" % values["pci_id"]]
        argv += ["-device", ",".join(["amd-iommu"] + props)]
    elif viommu == "virtio-iommu":
        argv += ["-device", ",".join(["virtio-iommu-pci"] + _props(values, _VIRTIO, given))]
    elif viommu == "arm-smmuv3":
        props = ["accel=%s" % _qemu_value(values.get("accel", True))] + [
            p for p in _props(values, _SMMU, given) if not p.startswith("accel=")]
        argv += ["-device", ",".join(["arm-smmuv3", "primary-bus=pcie.0"] + props)]
    vfio = _props(values, _VFIO, given)
    if "vfio_ats" in given:   # vfio-pci ats (QEMU 11.1+), named vfio_ats beside arm-smmuv3's ats
        vfio.append("ats=%s" % values.get("vfio_ats"))
    backend = ["iommufd=%s" % IOMMUFD_ID] if iommufd else []
    for addr in pci:
        argv += ["-device", ",".join(["vfio-pci", "host=%s" % addr] + backend + vfio)]
    for uuid in mdevs:
        argv += ["-device", ",".join(["vfio-pci", "sysfsdev=%s/%s" % (mdev_root, uuid)] + backend + vfio)]
    return argv


def parse_messages(stderr):
    """QEMU's stderr lines without the program and option prefixes (errors and warnings)."""
    out = []
    for line in (stderr or "").splitlines():
        line = _OPTION.sub("", _PROG.sub("", line.rstrip(), count=1), count=1)
        if line:
            out.append(line)
    return out


def parse_replies(stdout):
    """Every QMP JSON line of QEMU's stdout."""
    replies = []
    for line in (stdout or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                replies.append(json.loads(line))
            except ValueError:
                continue
    return replies


def outcome(rc, stdout, stderr, asked_migration=True, timed_out=False):
    """{started, migration, blocker, messages, errors, warnings, qemu_version} from one run's output.

    started: QEMU answered QMP (every device realized); migration: 'blocked' (the migrate command was
    refused: ``blocker`` is QEMU's reason), 'allowed' (accepted), or None (not asked / not started).
    """
    replies = parse_replies(stdout)
    messages = parse_messages(stderr)
    version = None
    for r in replies:
        v = r.get("QMP", {}).get("version", {}).get("qemu") if isinstance(r.get("QMP"), dict) else None
        if isinstance(v, dict):
            version = "%s.%s.%s" % (v.get("major"), v.get("minor"), v.get("micro"))
    answers = [r for r in replies if "return" in r or "error" in r]
    # QEMU prints its QMP greeting before it creates -device options: only an answer to
    # qmp_capabilities proves that every device was realized
    started = bool(answers) and "return" in answers[0] and not timed_out
    migration, blocker = None, None
    if started and asked_migration:
        # answers: qmp_capabilities, migrate, (query-migrate), quit
        if len(answers) >= 2:
            mig = answers[1]
            if "error" in mig:
                migration, blocker = "blocked", mig["error"].get("desc")
            else:
                migration = "allowed"
    return {"started": started, "rc": rc, "timed_out": timed_out, "migration": migration, "blocker": blocker,
            "messages": messages, "errors": [m for m in messages if not m.startswith("warning:")],
            "warnings": [m for m in messages if m.startswith("warning:")], "qemu_version": version}


def qmp_script(migrate=True):
    """The QMP commands fed to QEMU's stdin."""
    cmds = [{"execute": "qmp_capabilities"}]
    if migrate:
        cmds.append({"execute": "migrate", "arguments": {"uri": MIGRATE_URI}})
    cmds.append({"execute": "quit"})
    return "".join(json.dumps(c) + "\n" for c in cmds)


def probe(binary, argv, migrate=True, timeout=60.0, env=None):
    """Run ``binary argv`` with the QMP script on stdin; the parsed :func:`outcome` plus the command.

    Never raises for QEMU's own failures (they are the answer); an unstartable binary gives
    started False with the OSError in ``errors``.
    """
    cmd = [binary] + list(argv)
    t0 = time.time()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, close_fds=True)
    except OSError as e:
        res = outcome(None, "", "", migrate)
        res["errors"] = res["messages"] = ["cannot start %s: %s" % (binary, e)]
        res.update(command=cmd, seconds=0.0)
        return res
    timed_out = False
    try:
        out, err = proc.communicate(qmp_script(migrate).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    res = outcome(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), migrate,
                  timed_out)
    res.update(command=cmd, seconds=round(time.time() - t0, 3))
    return res


def release_of(binary, timeout=30.0):
    """'11.1.3' from ``binary --version`` (None when it cannot be run or read)."""
    try:
        proc = subprocess.Popen([binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True)
    except OSError:
        return None
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()     # never leave a stuck QEMU behind
        proc.communicate()
        return None
    m = re.search(r"version (\d+\.\d+\.\d+)", out.decode("utf-8", "replace"))
    return m.group(1) if m else None


def arch_of(binary, default=None):
    """'aarch64' / 'x86_64' from a qemu-system-<arch> binary's name; ``default`` for any other name."""
    name = os.path.basename(binary or "")
    for arch in ("aarch64", "x86_64"):
        if name.endswith("-" + arch):
            return arch
    return default


def find_binary(arch="x86_64", path=None):
    """The host's qemu-system-<arch> from PATH (or ``path``), or None."""
    for d in (path or os.environ.get("PATH", "/usr/bin:/bin")).split(os.pathsep):
        cand = os.path.join(d, "qemu-system-%s" % arch)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _words(findings):
    return "; ".join("%s%s: %s" % (f.get("id"), " (%s)" % f["device"] if f.get("device") else "", f.get("message"))
                     for f in findings)


def agreement(verdict, result, migration=True, host=None):
    """The finding ``probe.agreement``: does the gate's prediction (an iommu.host.check result) agree with
    one probe :func:`probe` result? Refusal: a failing finding with qemu_effect 'refuse' <=> QEMU did not
    start; migration (when ``migration``, i.e. the live_migration profile was asked): a failing
    'block_migration' finding <=> QEMU blocked the migration. Both sides' words are in the message."""
    verdict = verdict if isinstance(verdict, dict) else {}
    findings = [f for f in verdict.get("findings") or [] if isinstance(f, dict) and f.get("status") == "fail"]
    refuse = [f for f in findings if f.get("qemu_effect") == "refuse"]
    block = [f for f in findings if f.get("qemu_effect") == "block_migration"]
    out = {"id": "probe.agreement", "host": host or verdict.get("host"), "device": None, "qemu_effect": None,
           "title": "The gate's prediction agrees with the host's QEMU", "rule": "iommu.host.qemu_probe",
           "profiles": [], "remedy": None,
           "evidence": {"qemu.started": None, "qemu.migration": None, "qemu.messages": [], "qemu.version": None,
                        "gate.refuse": [f.get("id") for f in refuse], "gate.block_migration": [f.get("id") for f in block]}}
    if not isinstance(result, dict) or result.get("started") is None:
        out.update(status="not_applicable", message="QEMU was not run (check mode or no probe result).")
        return out
    out["evidence"].update({"qemu.started": result.get("started"), "qemu.migration": result.get("migration"),
                            "qemu.messages": result.get("errors") or [], "qemu.version": result.get("qemu_version")})
    qemu_said = ("QEMU %s refused the VM: %s" % (result.get("qemu_version") or "", " | ".join(
        result.get("errors") or ["(no message)"])) if not result.get("started") else
        "QEMU %s started the VM%s" % (result.get("qemu_version") or "", (
            ", migration %s%s" % (result.get("migration"), ": %s" % result["blocker"] if result.get("blocker") else "")
            if migration and result.get("migration") else "")))
    problems = []
    if result.get("timed_out"):
        problems.append("QEMU did not answer within the timeout")
    elif not result.get("started") and not refuse:
        problems.append("the gate predicts that the VM starts")
    elif result.get("started") and refuse:
        problems.append("the gate predicts a refusal: %s" % _words(refuse))
    elif result.get("started") and migration:
        if result.get("migration") == "blocked" and not block:
            problems.append("the gate predicts that the VM can migrate")
        elif result.get("migration") == "allowed" and block:
            problems.append("the gate predicts that migration is blocked: %s" % _words(block))
    if problems:
        out.update(status="fail", message="The prediction and the host's QEMU disagree: %s; %s." % (
            qemu_said, "; ".join(problems)),
            remedy="Trust QEMU's answer for this host and report the disagreement (configuration, QEMU release, "
                   "both messages) to the iommu.host maintainers.")
    else:
        out.update(status="pass", message="The prediction agrees with the host's QEMU: %s." % qemu_said)
    return out


__all__ = ["agreement", "build_argv", "probe", "outcome", "parse_messages", "parse_replies", "qmp_script", "release_of",
           "find_binary", "arch_of", "MIGRATE_URI", "ARM_MACHINE"]
