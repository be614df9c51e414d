#!/usr/bin/env python
"""Real-kernel test bed: QEMU guests with emulated IOMMUs, reachable by Ansible over SSH.

Each guest boots the test-bed kernel (tests/testbed/build-kernel.sh) under QEMU
(TCG, q35, 1 vCPU, 1 GiB) with the test bed's own Debian trixie root
(tests/testbed/build-root.sh: python3, sshd, udev, grub tools and the two oracle
QEMUs) shared read-only over virtio-9p; nothing of the host's file system is
visible in the guest. The root's /usr/local/sbin/testbed-init mounts the
per-guest state share and runs tests/testbed/guest-init.sh from it (PID 1),
which puts a writable overlay on top (upper layer on the guest's own disk
image, so the root cannot be written and files survive a guest reboot),
configures the management NIC and starts sshd. SSH is forwarded from
127.0.0.1:<free port> only; root logs in with a key generated per guest.

Every guest has the same PCI topology, whatever its vIOMMU:

  00:02.0  virtio-net   management NIC (user networking, hostfwd to 22), iommu_platform=off
  00:03.0  virtio-9p    the test-bed root (build-root.sh), read-only (tag /dev/root)
  00:04.0  virtio-9p    guest state share, read-only (tag testbed: keys, guest.env, init scripts)
  00:05.0  virtio-blk   the guest's disk image (overlay upper layer, serial testbed-persist)
  00:08.0  e1000e       test NIC (own IOMMU group)
  00:09.0  e1000e       test NIC (own IOMMU group; the one the tests bind to vfio-pci)
  00:0a.0  pcie-root-port
  01:00.0    pcie-pci-bridge
  02:01.0      e1000    conventional PCI NIC \\ behind a PCIe-to-PCI bridge:
  02:02.0      e1000    conventional PCI NIC / one shared IOMMU group

Profile intel-igb adds (its profile's qemu_args; outer QEMU: the root's 11.1):

  00:0b.0  pcie-root-port (with ACS)
  03:00.0    igb        SR-IOV PF (82576); its VFs at 03:10.0, 03:10.2, ... (one IOMMU group each)

Python API::

    import testbed
    guests = testbed.boot_many(["intel", "amd"])      # parallel, owned: stopped at exit
    rc, out, err = guests["intel"].run("cat /sys/class/iommu/dmar0/intel-iommu/cap")
    path = testbed.inventory(guests.values())        # Ansible YAML inventory
    testbed.stop_all(guests.values())

CLI (guests booted by the CLI keep running until ``stop``)::

    testbed.py boot intel [amd ...|all]   testbed.py ssh intel -- cat /proc/cmdline
    testbed.py list                        testbed.py stop [NAME ...]
    testbed.py inventory [-o FILE]         testbed.py reboot intel
    testbed.py profiles

Environment: TESTBED_RUN_DIR (default /tmp/iommu-host-testbed), TESTBED_KERNEL
(bzImage; default: the newest cached build), TESTBED_ROOT (root directory;
default: the newest cached build-root.sh root), TESTBED_QEMU
(qemu-system-x86_64), TESTBED_OUTER_QEMU (host, the default, or root: the root's
QEMU 11.1 as the outer VMM, through the root's dynamic loader; opt-in, the suite
expects the host QEMU's values), TESTBED_BOOT_TIMEOUT (seconds, default 180),
IOMMU_HOST_CACHE. The arm64 guest (profile arm64-smmuv3, not in `all`): TESTBED_KERNEL_ARM64
(Image; default: the newest build-kernel-arm64.sh build), TESTBED_ROOT_ARM64 (default: the
newest build-root-arm64.sh root), TESTBED_QEMU_AARCH64 (default: the qemu-system-aarch64 11.1
build-root-arm64.sh unpacked, run through the x86 root's loader and libraries).
"""
from __future__ import annotations

import argparse
import atexit
import collections
import concurrent.futures
import datetime
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUEST_INIT = HERE / "guest-init.sh"
BUILD_KERNEL = HERE / "build-kernel.sh"
BUILD_ROOT = HERE / "build-root.sh"
# arm64 guests (profile arm64-smmuv3): cross-built kernel, arm64 root, outer qemu-system-aarch64
BUILD_KERNEL_ARM64 = HERE / "build-kernel-arm64.sh"
BUILD_ROOT_ARM64 = HERE / "build-root-arm64.sh"
BUILD_DISK = HERE / "build-disk.sh"
# UEFI firmware of the disk-sdboot profile (Debian's ovmf; the VARS file is copied per guest)
OVMF_CODE = os.environ.get("TESTBED_OVMF_CODE", "/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = os.environ.get("TESTBED_OVMF_VARS", "/usr/share/OVMF/OVMF_VARS_4M.fd")
ROOT_INIT = "/usr/local/sbin/testbed-init"   # in the root; runs guest-init.sh from the state share
CACHE = Path(os.environ.get("IOMMU_HOST_CACHE", "/var/cache/iommu-host"))
DEFAULT_RUN_DIR = Path(os.environ.get("TESTBED_RUN_DIR") or "/tmp/iommu-host-testbed")
QEMU = os.environ.get("TESTBED_QEMU", "qemu-system-x86_64")
# The outer VMM: "host" (default: $TESTBED_QEMU, the host's package) or "root": the test-bed root's own
# QEMU 11.1, started through the root's dynamic loader and libraries (works on a Debian 12 host too).
# Opt-in only: the suite's expected values (registers, address widths) are those of the host's QEMU.
OUTER = os.environ.get("TESTBED_OUTER_QEMU", "host")
ROOT_LIBDIR = "usr/lib/x86_64-linux-gnu"
# The arm64 guests' outer VMM: $TESTBED_QEMU_AARCH64 (e.g. the host's qemu-system-aarch64), else
# qemu-system-aarch64 11.1 that build-root-arm64.sh unpacked beside the arm64 root, run through the
# x86 root's dynamic loader and libraries (the x86 root installs the same QEMU release).
QEMU_AARCH64 = os.environ.get("TESTBED_QEMU_AARCH64", "")
# vIOMMU property names QEMU 11 renamed; the profiles use the older spelling.
RENAMED_IN_11 = (("x-scalable-mode=", "scalable-mode="),)
DEFAULT_BOOT_TIMEOUT = float(os.environ.get("TESTBED_BOOT_TIMEOUT") or 180)
DISK_BOOT_FACTOR = 3       # boot and reboot timeouts of the disk-booted profiles (disk-grub, disk-sdboot)
MEMORY = "1G"
CPUS = 1
PERSIST_SIZE = 1 << 30  # sparse disk image for the overlay's upper layer
READY_MARK = "TESTBED-READY"
GUEST_PYTHON = "/usr/bin/python3"


# --------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    """One kind of guest: which vIOMMU QEMU emulates and how the kernel is told about it.

    ``iommu_args`` go on the QEMU command line before any PCI device (a vIOMMU
    must exist before the devices it translates for); ``kernel_args`` are
    appended to the guest kernel command line.
    """
    name: str
    description: str
    machine: str = "q35"
    iommu_args: tuple = ()
    kernel_args: tuple = ()
    qemu_args: tuple = ()
    outer: str = ""         # "root": always the root's QEMU 11.1 as the outer VMM (devices the host QEMU lacks)
    disk: str = ""          # "grub" / "systemd-boot": boot the build-disk.sh image through firmware (no -kernel)
    arch: str = "x86_64"    # "aarch64": the arm64 kernel and root, qemu-system-aarch64 (see ARCH_BUILDS)
    console: str = "ttyS0"
    # default: booted by a plain @pytest.mark.testbed and by `boot all`; the others (disk, SR-IOV and arm64
    # guests) only when a test names them, alone, not with the batch
    default: bool = True


PROFILES = {
    "intel": Profile(
        "intel", "Intel VT-d (legacy mode) with interrupt remapping",
        machine="q35,kernel-irqchip=split",
        iommu_args=("-device", "intel-iommu,intremap=on,caching-mode=on"),
        kernel_args=("intel_iommu=on",)),
    "intel-sm": Profile(
        "intel-sm", "Intel VT-d scalable mode, 48-bit address width, interrupt remapping",
        machine="q35,kernel-irqchip=split",
        iommu_args=("-device", "intel-iommu,intremap=on,caching-mode=on,x-scalable-mode=on,aw-bits=48"),
        kernel_args=("intel_iommu=on",)),
    "amd": Profile(
        "amd", "AMD-Vi without interrupt remapping (iommufd refuses to bind devices: EPERM)",
        iommu_args=("-device", "amd-iommu")),
    "none": Profile("none", "no IOMMU (iommufd selftest mock only)"),
    # SR-IOV (issue 12): QEMU's igb (82576; the kernel's igb offers 7 VFs; QEMU 8.0+: the root's 11.1 is the outer VMM)
    # behind its own PCIe root port at 00:0b.0 (bus 3): the PF at 03:00.0, its VFs at 03:10.0, 03:10.2, ...
    "intel-igb": Profile(
        "intel-igb", "Intel VT-d (legacy mode) + an SR-IOV NIC (igb) behind a PCIe root port",
        machine="q35,kernel-irqchip=split",
        iommu_args=("-device", "intel-iommu,intremap=on,caching-mode=on"),
        kernel_args=("intel_iommu=on",),
        qemu_args=("-device", "pcie-root-port,id=rp1,bus=pcie.0,addr=0x0b,chassis=2",
                   "-netdev", "user,id=sriov0,restrict=on",
                   "-device", "igb,netdev=sriov0,bus=rp1,addr=0x0"),
        outer="root", default=False),
    # Disk-booted guests (issue 12): firmware -> bootloader -> kernel + initramfs from their own disk
    # (a per-guest qcow2 overlay of build-disk.sh's image at 00:05.0), systemd as init, so that
    # kernel_args edits what the real tools read and a reboot brings up the new command line.
    # The images boot with intel_iommu=off (a host before provisioning). Extra: an rtl8139 at 00:0c.0
    # (8139too is a module: early binding).
    "disk-grub": Profile(
        "disk-grub", "Intel VT-d + interrupt remapping; boots its disk through SeaBIOS and GRUB (intel_iommu=off)",
        machine="q35,kernel-irqchip=split",
        iommu_args=("-device", "intel-iommu,intremap=on,caching-mode=on"),
        qemu_args=("-netdev", "user,id=nic9,restrict=on", "-device", "rtl8139,netdev=nic9,addr=0x0c"),
        disk="grub", default=False),
    "disk-sdboot": Profile(
        "disk-sdboot", "Intel VT-d + interrupt remapping; boots its disk through OVMF and systemd-boot "
                       "(intel_iommu=off)",
        machine="q35,kernel-irqchip=split",
        iommu_args=("-device", "intel-iommu,intremap=on,caching-mode=on"),
        qemu_args=("-netdev", "user,id=nic9,restrict=on", "-device", "rtl8139,netdev=nic9,addr=0x0c"),
        disk="systemd-boot", default=False),
    # arm64 (issue 13): QEMU's virt machine with an emulated SMMUv3 in front of its PCIe root complex
    # (device tree, no ACPI/IORT) and a GICv3 with its ITS (MSI isolation, which iommufd requires),
    # the same PCI topology as the x86 guests; the cross-built kernel, the arm64 root. Opt-in (not
    # in `all`): `testbed.py boot arm64-smmuv3`, @pytest.mark.testbed("arm64-smmuv3").
    "arm64-smmuv3": Profile(
        "arm64-smmuv3", "arm64 virt machine, emulated SMMUv3 (iommu=smmuv3), GICv3 ITS",
        machine="virt,iommu=smmuv3,gic-version=3",
        arch="aarch64", console="ttyAMA0", default=False),
}

# Where the kernel and root of each non-x86 architecture come from: (kernel env, build script,
# cached kernels glob, root env, build script, cached roots' marker glob).
ARCH_BUILDS = {
    "aarch64": ("TESTBED_KERNEL_ARM64", BUILD_KERNEL_ARM64, "kernel-arm64/*/Image",
                "TESTBED_ROOT_ARM64", BUILD_ROOT_ARM64, "root-arm64/*/QEMU"),
}
# {arch: (kernel, root)} set by the caller (the pytest session builds them on demand).
ARCH_ARTIFACTS = {}


def default_profiles() -> list:
    """The profiles a plain @pytest.mark.testbed and `boot all` mean (Profile.default)."""
    return [n for n, p in PROFILES.items() if p.default]


def topology_args(port: int, share_dir: Path, persist_img: Path | None, root: Path) -> list:
    """QEMU arguments common to every profile (see the module docstring)."""
    args = [
        # management NIC: user networking, SSH forwarded from 127.0.0.1 only
        "-netdev", "user,id=mgmt,hostfwd=tcp:127.0.0.1:%d-:22" % port,
        "-device", "virtio-net-pci,netdev=mgmt,addr=0x02,iommu_platform=off",
        # the test-bed root (build-root.sh), read-only
        "-fsdev", "local,id=hostroot,path=%s,security_model=none,readonly=on,multidevs=remap" % root,
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=/dev/root,addr=0x03,iommu_platform=off",
        # per-guest state (host key, authorized_keys, guest.env), read-only
        "-fsdev", "local,id=state,path=%s,security_model=none,readonly=on" % share_dir,
        "-device", "virtio-9p-pci,fsdev=state,mount_tag=testbed,addr=0x04,iommu_platform=off",
    ]
    if persist_img is not None:
        args += [
            "-drive", "file=%s,format=raw,if=none,id=persist,cache=unsafe,discard=unmap" % persist_img,
            "-device", "virtio-blk-pci,drive=persist,serial=testbed-persist,addr=0x05,iommu_platform=off",
        ]
    # two PCIe NICs on the root complex (integrated endpoints: one group each)
    for i, addr in enumerate((0x08, 0x09)):
        args += ["-netdev", "user,id=nic%d,restrict=on" % i,
                 "-device", "e1000e,netdev=nic%d,addr=0x%02x" % (i, addr)]
    # conventional PCI NICs behind a PCIe-to-PCI bridge: one shared IOMMU group
    args += ["-device", "pcie-root-port,id=rp0,bus=pcie.0,addr=0x0a,chassis=1",
             "-device", "pcie-pci-bridge,id=br0,bus=rp0,addr=0x0"]
    for i, addr in enumerate((0x01, 0x02), start=2):
        args += ["-netdev", "user,id=nic%d,restrict=on" % i,
                 "-device", "e1000,netdev=nic%d,bus=br0,addr=0x%02x" % (i, addr)]
    return args


# --------------------------------------------------------------------------
# Errors and host checks
# --------------------------------------------------------------------------

class TestbedError(RuntimeError):
    pass


class MissingDependency(TestbedError):
    """The kernel, the root, QEMU or OpenSSH is missing: the test bed cannot run here."""


class BootError(TestbedError):
    pass


def cached_kernels() -> list:
    """Built test-bed kernels in the cache, newest first."""
    paths = glob.glob(str(CACHE / "kernel" / "*" / "bzImage"))
    return sorted((Path(p) for p in paths), key=lambda p: p.stat().st_mtime, reverse=True)


def find_kernel(build: bool = False) -> Path:
    """The bzImage to boot: $TESTBED_KERNEL, or build-kernel.sh's answer (build=True),
    or the newest cached build."""
    env = os.environ.get("TESTBED_KERNEL")
    if env:
        if not os.path.isfile(env):
            raise MissingDependency("TESTBED_KERNEL=%s does not exist" % env)
        return Path(env)
    if build:
        proc = subprocess.run(["bash", str(BUILD_KERNEL)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not os.path.isfile(lines[-1]):
            raise MissingDependency("build-kernel.sh failed (rc %d): %s"
                                    % (proc.returncode, proc.stderr.strip()[-2000:]))
        return Path(lines[-1])
    kernels = cached_kernels()
    if not kernels:
        raise MissingDependency("no test-bed kernel in %s/kernel/*/bzImage: run %s"
                                % (CACHE, BUILD_KERNEL))
    return kernels[0]


def cached_roots() -> list:
    """Built test-bed roots (build-root.sh) in the cache, newest first."""
    paths = glob.glob(str(CACHE / "root" / "*" / "ORACLES"))
    return sorted((Path(p).parent / "rootfs" for p in paths),
                  key=lambda p: p.parent.stat().st_mtime, reverse=True)


def find_root(build: bool = False) -> Path:
    """The root directory the guests boot: $TESTBED_ROOT, or build-root.sh's answer
    (build=True), or the newest cached build."""
    env = os.environ.get("TESTBED_ROOT")
    if env:
        if not os.path.isdir(env):
            raise MissingDependency("TESTBED_ROOT=%s is not a directory" % env)
        return Path(env)
    if build:
        proc = subprocess.run(["bash", str(BUILD_ROOT)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not os.path.isdir(lines[-1]):
            raise MissingDependency("build-root.sh failed (rc %d): %s"
                                    % (proc.returncode, proc.stderr.strip()[-2000:]))
        return Path(lines[-1])
    roots = cached_roots()
    if not roots:
        raise MissingDependency("no test-bed root in %s/root/*/rootfs: run %s (make root)"
                                % (CACHE, BUILD_ROOT))
    return roots[0]


def cached_disks() -> list:
    """Built disk image sets (build-disk.sh) in the cache, newest first."""
    paths = glob.glob(str(CACHE / "disk" / "*" / "BUILDINFO"))
    return sorted((Path(p).parent for p in paths), key=lambda p: p.stat().st_mtime, reverse=True)


def find_disks(kernel=None, build: bool = False) -> Path:
    """The directory with grub.raw and systemd-boot.raw: $TESTBED_DISK_DIR, or build-disk.sh's
    answer for ``kernel`` (build=True; a cache hit takes a second), or the newest cached build."""
    env = os.environ.get("TESTBED_DISK_DIR")
    if env:
        if not os.path.isdir(env):
            raise MissingDependency("TESTBED_DISK_DIR=%s is not a directory" % env)
        return Path(env)
    if build:
        argv = ["bash", str(BUILD_DISK)] + (["--kernel", str(kernel)] if kernel else [])
        # progress (stderr) goes to the caller's stderr: a cold build takes minutes
        proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not os.path.isdir(lines[-1]):
            raise MissingDependency("build-disk.sh failed (rc %d); see its output above" % proc.returncode)
        return Path(lines[-1])
    disks = cached_disks()
    if not disks:
        raise MissingDependency("no disk images in %s/disk/*/: run %s (make disk)" % (CACHE, BUILD_DISK))
    return disks[0]


def outer_qemu(root, data_dir, outer=None) -> tuple:
    """(argv prefix, extra environment) of the outer QEMU (see OUTER; ``outer``: a profile's own choice)."""
    if (outer or OUTER) != "root":
        return [QEMU], {}
    root, lib = Path(root), Path(root) / ROOT_LIBDIR
    return ([str(lib / "ld-linux-x86-64.so.2"), "--library-path", str(lib),
             str(root / "usr/bin/qemu-system-x86_64"), "-L", str(data_dir)],
            {"QEMU_MODULE_DIR": str(lib / "qemu")})


def root_data_dir(root, dest: Path) -> Path:
    """The root's /usr/share/qemu as seen from the host: its absolute links (firmware from the
    root's seabios/ipxe packages) re-pointed into the root, so the host's files are never used."""
    src = Path(root) / "usr/share/qemu"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for entry in sorted(os.listdir(src)):
        path = src / entry
        target = os.readlink(path) if path.is_symlink() else None
        if target and os.path.isabs(target):
            os.symlink(os.path.join(str(root), target.lstrip("/")), dest / entry)
        else:
            os.symlink(path, dest / entry)
    return dest


def _run_build(script) -> Path:
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not os.path.exists(lines[-1]):
        raise MissingDependency("%s failed (rc %d); see its output above" % (script.name, proc.returncode))
    return Path(lines[-1])


def find_arch_artifacts(arch: str, build: bool = False) -> tuple:
    """(kernel, root) of a non-x86 architecture: ARCH_ARTIFACTS, else the environment
    (TESTBED_KERNEL_ARM64, TESTBED_ROOT_ARM64), else the build scripts' answers (build=True;
    progress on stderr) or the newest cached builds."""
    if arch in ARCH_ARTIFACTS:
        return ARCH_ARTIFACTS[arch]
    kenv, kscript, kglob, renv, rscript, rglob = ARCH_BUILDS[arch]
    found = []
    for env, script, pattern, what in ((kenv, kscript, kglob, "kernel"), (renv, rscript, rglob, "root")):
        if os.environ.get(env):
            if not os.path.exists(os.environ[env]):
                raise MissingDependency("%s=%s does not exist" % (env, os.environ[env]))
            found.append(Path(os.environ[env]))
        elif build:
            found.append(_run_build(script))
        else:
            paths = sorted(glob.glob(str(CACHE / pattern)), key=os.path.getmtime, reverse=True)
            if not paths:
                raise MissingDependency("no %s %s in %s/%s: run %s" % (arch, what, CACHE, pattern, script))
            found.append(Path(paths[0]) if what == "kernel" else Path(paths[0]).parent / "rootfs")
    return tuple(found)


def outer_qemu_aarch64(root, data_dir) -> tuple:
    """(argv prefix, extra environment) of the arm64 guests' outer QEMU (see QEMU_AARCH64)."""
    if QEMU_AARCH64:
        return [QEMU_AARCH64], {}
    x86, lib = find_root(), find_root() / ROOT_LIBDIR
    return ([str(lib / "ld-linux-x86-64.so.2"), "--library-path", str(lib),
             str(Path(root).parent / "outer-qemu/usr/bin/qemu-system-aarch64"), "-L", str(data_dir)],
            {"QEMU_MODULE_DIR": str(lib / "qemu")})


def outer_qemu_release(root) -> str:
    """The arm64 outer QEMU's upstream version (build-root-arm64.sh's QEMU file), '' if unknown."""
    try:
        return (Path(root).parent / "QEMU").read_text().split()[1]
    except (OSError, IndexError):
        return ""


def root_problems(root) -> list:
    """What the guests need and the root lacks (empty list: nothing)."""
    problems = []
    needed = [ROOT_INIT, "/usr/sbin/sshd", "/usr/lib/openssh/sftp-server", GUEST_PYTHON, "/usr/sbin/switch_root"]
    if OUTER == "root":
        needed += ["/%s/ld-linux-x86-64.so.2" % ROOT_LIBDIR, "/usr/bin/qemu-system-x86_64"]
    for path in needed:
        if not os.path.lexists(os.path.join(str(root), path.lstrip("/"))):
            problems.append("%s not found in the root %s (tests/testbed/build-root.sh builds it)"
                            % (path, root))
    return problems


def host_problems(persist: bool = True) -> list:
    """What is missing on this host to boot guests (empty list: nothing)."""
    problems = []
    if OUTER not in ("host", "root"):
        problems.append("TESTBED_OUTER_QEMU=%s: expected host or root" % OUTER)
    if OUTER == "host" and not shutil.which(QEMU):
        problems.append("%s not found (scripts/setup-debian.sh testbed installs it)" % QEMU)
    for tool in ("ssh", "ssh-keygen", "setsid"):
        if not shutil.which(tool):
            problems.append("%s not found" % tool)
    if persist and not (shutil.which("mkfs.ext4") or os.path.exists("/usr/sbin/mkfs.ext4")):
        problems.append("mkfs.ext4 not found (e2fsprogs)")
    return problems


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

SSHResult = collections.namedtuple("SSHResult", "rc stdout stderr")

_port_lock = threading.Lock()
_ports_given = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and not handed out before by this process."""
    with _port_lock:
        for _attempt in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise TestbedError("no free TCP port")


def pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pid_cmdline(pid) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e.strerror)
    return "\n".join(data.replace("\r", "").splitlines()[-lines:])


def qmp(sock_path, command: str, arguments: dict | None = None, timeout: float = 10):
    """Run one QMP command; returns its "return" value (None if QEMU hung up first, e.g. quit)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        f = s.makefile("rwb")

        def read():
            while True:
                line = f.readline()
                if not line:
                    return None
                msg = json.loads(line)
                if "event" not in msg:
                    return msg

        if read() is None:  # greeting
            return None
        for cmd, args in (("qmp_capabilities", None), (command, arguments)):
            req = {"execute": cmd}
            if args:
                req["arguments"] = args
            try:
                f.write(json.dumps(req).encode() + b"\n")
                f.flush()
                reply = read()
            except (BrokenPipeError, ConnectionResetError):
                return None
            if reply is None:
                return None
            if "error" in reply:
                raise TestbedError("QMP %s: %s" % (cmd, reply["error"]))
        return reply.get("return")


# --------------------------------------------------------------------------
# Guests
# --------------------------------------------------------------------------

_owned_lock = threading.Lock()
_owned = []           # guests this process started and must stop
_signal_installed = False


def _cleanup_owned():
    with _owned_lock:
        guests = list(_owned)
    for g in guests:
        try:
            g.stop(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            g.kill()


_previous_handlers = {}


def _on_signal(signum, frame):
    """SIGTERM/SIGHUP: stop the guests this process owns, then do what was done before."""
    _cleanup_owned()
    prev = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    elif prev != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


atexit.register(_cleanup_owned)


def _own(guest):
    global _signal_installed
    with _owned_lock:
        if guest not in _owned:
            _owned.append(guest)
    if not _signal_installed and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            prev = signal.getsignal(sig)
            if prev is _on_signal or prev == signal.SIG_IGN:
                continue
            _previous_handlers[sig] = prev
            signal.signal(sig, _on_signal)
        _signal_installed = True


def _disown(guest):
    with _owned_lock:
        if guest in _owned:
            _owned.remove(guest)


@dataclass(eq=False)
class Guest:
    """One QEMU guest. Create with :func:`boot` / :func:`boot_many` or :func:`load`."""
    name: str
    profile: str
    dir: Path
    kernel: Path
    root: Path | None = None           # the directory the guest boots (build-root.sh)
    port: int = 0
    pid: int = 0
    persist: bool = True
    extra_kernel_args: tuple = ()
    owned: bool = True
    argv: list = field(default_factory=list)
    env: dict = field(default_factory=dict)       # extra environment of the outer QEMU
    append: str = ""
    started: float = 0.0
    boot_seconds: float | None = None
    owner_pid: int | None = None      # the process that stops this guest (None: nobody, e.g. the CLI)
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    # -- paths --------------------------------------------------------------
    @property
    def share_dir(self) -> Path:
        return self.dir / "share"

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def qemu_log(self) -> Path:
        return self.dir / "qemu.log"

    @property
    def qmp_socket(self) -> Path:
        return self.dir / "qmp.sock"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def persist_img(self) -> Path:
        return self.dir / "persist.img"

    @property
    def state_file(self) -> Path:
        return self.dir / "guest.json"

    @property
    def disk_overlay(self) -> Path:      # disk profiles: qcow2 overlay of the cached image
        return self.dir / "disk.qcow2"

    @property
    def efi_vars(self) -> Path:          # disk-sdboot: this guest's copy of OVMF_VARS
        return self.dir / "OVMF_VARS.fd"

    def prepare_disk(self, kind: str):
        """Disk profiles: the per-guest overlay (kept over restarts) and UEFI variables."""
        if not shutil.which("qemu-img"):
            raise MissingDependency("qemu-img not found (scripts/setup-debian.sh disk installs it)")
        if kind == "systemd-boot":
            for path in (OVMF_CODE, OVMF_VARS):
                if not os.path.isfile(path):
                    raise MissingDependency("%s not found (Debian's ovmf; scripts/setup-debian.sh disk)" % path)
            if not self.efi_vars.exists():
                shutil.copyfile(OVMF_VARS, self.efi_vars)
        if self.disk_overlay.exists():
            return
        build = os.environ.get("TESTBED_BUILD_DISK", "1") != "0"
        base = find_disks(self.kernel, build=build) / ("%s.raw" % kind)
        if not base.is_file():
            raise MissingDependency("%s not found (tests/testbed/build-disk.sh builds it)" % base)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw",
                        str(self.disk_overlay)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    # -- state --------------------------------------------------------------
    def to_json(self) -> dict:
        return {"name": self.name, "profile": self.profile, "dir": str(self.dir),
                "kernel": str(self.kernel), "root": str(self.root) if self.root else None,
                "port": self.port, "pid": self.pid,
                "persist": self.persist, "extra_kernel_args": list(self.extra_kernel_args),
                "argv": self.argv, "append": self.append, "started": self.started,
                "boot_seconds": self.boot_seconds, "owner_pid": self.owner_pid}

    def save(self):
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, guest_dir) -> "Guest":
        d = json.loads((Path(guest_dir) / "guest.json").read_text())
        return cls(name=d["name"], profile=d["profile"], dir=Path(d["dir"]), kernel=Path(d["kernel"]),
                   root=Path(d["root"]) if d.get("root") else None, port=d["port"], pid=d["pid"], persist=d.get("persist", True),
                   extra_kernel_args=tuple(d.get("extra_kernel_args", ())), owned=False,
                   argv=d.get("argv", []), append=d.get("append", ""), started=d.get("started", 0.0),
                   boot_seconds=d.get("boot_seconds"), owner_pid=d.get("owner_pid"))

    def owner_alive(self) -> bool:
        """Whether another live process manages this guest (e.g. a pytest session)."""
        return bool(self.owner_pid) and self.owner_pid != os.getpid() and pid_alive(self.owner_pid)

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return pid_alive(self.pid) and str(self.dir) in pid_cmdline(self.pid)

    @property
    def qemu_command(self) -> str:
        return shlex.join(self.argv)

    # -- lifecycle ----------------------------------------------------------
    def prepare(self):
        """Create the guest directory: keys, state share, disk image."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.share_dir.mkdir(exist_ok=True)
        for stale in (self.serial_log, self.qemu_log, self.qmp_socket):
            if stale.exists() or stale.is_symlink():
                stale.unlink()
        hostkey = self.share_dir / "ssh_host_ed25519_key"
        if not hostkey.exists():
            _keygen(hostkey, "testbed-host-%s" % self.name)
        if not self.key.exists():
            _keygen(self.key, "testbed-client-%s" % self.name)
        (self.share_dir / "authorized_keys").write_text(
            Path(str(self.key) + ".pub").read_text())
        # The guest sees no host files: its init script and power shim come from the state share
        # (the root's testbed-init runs guest-init.sh from there).
        for script in (GUEST_INIT, HERE / "guest-power.sh"):
            shutil.copy2(script, self.share_dir / script.name)
        (self.share_dir / "guest.env").write_text(
            "TESTBED_NAME=%s\nTESTBED_PROFILE=%s\n" % (shlex.quote(self.name), shlex.quote(self.profile)))
        if PROFILES[self.profile].arch == "aarch64" and not QEMU_AARCH64:
            root_data_dir(find_root(), self.dir / "qemu-data")   # the x86 root's QEMU 11.1 data
        elif (PROFILES[self.profile].outer or OUTER) == "root":
            root_data_dir(self.root or find_root(), self.dir / "qemu-data")
        if PROFILES[self.profile].disk:
            self.prepare_disk(PROFILES[self.profile].disk)
        elif self.persist and not self.persist_img.exists():
            tmp = self.persist_img.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.truncate(PERSIST_SIZE)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", "testbed-persist",
                            "-E", "lazy_itable_init=0,lazy_journal_init=0", str(tmp)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"))
            os.replace(tmp, self.persist_img)

    def build_argv(self) -> list:
        prof = PROFILES[self.profile]
        append = ["console=%s" % prof.console, "root=/dev/root", "rootfstype=9p",
                  "rootflags=trans=virtio,version=9p2000.L,cache=loose,msize=262144",
                  "ro", "init=%s" % ROOT_INIT, "panic=0",
                  # The early IO-APIC timer check can fail on an emulated CPU that the host
                  # is slowing down ("timer doesn't work through Interrupt-remapped IO-APIC",
                  # a panic seen here under TCG); the parameter exists for virtual machines.
                  "no_timer_check"]
        if prof.arch != "x86_64":
            append.remove("no_timer_check")   # an x86 parameter
        append += list(prof.kernel_args) + list(self.extra_kernel_args)
        self.append = " ".join(append)
        if self.root is None:
            self.root = find_root()
        if prof.arch == "aarch64":
            prefix, self.env = outer_qemu_aarch64(self.root, self.dir / "qemu-data")
        else:
            prefix, self.env = outer_qemu(self.root, self.dir / "qemu-data", prof.outer)
        argv = prefix + ["-name", "testbed-%s,process=testbed-%s" % (self.name, self.name),
                         "-nodefaults", "-no-user-config", "-display", "none",
                         "-machine", prof.machine, "-accel", "tcg", "-cpu", "max",
                         "-m", MEMORY, "-smp", str(CPUS)]
        iommu_args = list(prof.iommu_args)
        if (prof.outer or OUTER) == "root":   # the root's QEMU is 11.1
            for old, new in RENAMED_IN_11:
                iommu_args = [a.replace(old, new) for a in iommu_args]
        argv += iommu_args
        if prof.disk:   # firmware and bootloader from the guest's own disk; its command line is its own
            self.append = ""
            if prof.disk == "systemd-boot":
                argv += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=%s" % OVMF_CODE,
                         "-drive", "if=pflash,format=raw,unit=1,file=%s" % self.efi_vars]
        else:
            argv += ["-kernel", str(self.kernel), "-append", self.append]
        argv += ["-chardev", "file,id=serial0,path=%s" % self.serial_log, "-serial", "chardev:serial0",
                 "-qmp", "unix:%s,server=on,wait=off" % self.qmp_socket,
                 "-pidfile", str(self.dir / "qemu.pid")]
        argv += topology_args(self.port, self.share_dir,
                              self.persist_img if self.persist and not prof.disk else None, self.root)
        if prof.disk:
            argv += ["-drive", "file=%s,format=qcow2,if=none,id=disk,cache=unsafe,discard=unmap" % self.disk_overlay,
                     "-device", "virtio-blk-pci,drive=disk,addr=0x05,iommu_platform=off,bootindex=0"]
        argv += list(prof.qemu_args)
        return argv

    def start(self):
        """Start QEMU (does not wait for SSH). Retries with another port if the forward cannot bind."""
        self.prepare()
        for attempt in range(5):
            self.port = self.port if (attempt == 0 and self.port) else free_port()
            self.argv = self.build_argv()
            cmd = list(self.argv)
            main = threading.current_thread() is threading.main_thread()
            if self.owned and main and shutil.which("setpriv"):
                # QEMU dies with this process even on SIGKILL (the death signal
                # follows the forking thread, hence main thread only).
                cmd = ["setpriv", "--pdeathsig", "KILL", "--"] + cmd
            log = open(self.qemu_log, "wb")
            self.started = time.time()
            try:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                              start_new_session=True, close_fds=True,
                                              env=dict(os.environ, **self.env) if self.env else None)
            finally:
                log.close()
            self.pid = self._proc.pid
            self.owner_pid = os.getpid() if self.owned else None
            if self.owned:
                _own(self)
            self.save()
            # QMP answers once QEMU is through its set-up (netdevs included).
            deadline = time.time() + 30
            while time.time() < deadline:
                if self._proc.poll() is not None:
                    break
                try:
                    qmp(self.qmp_socket, "query-status", timeout=5)
                    return self
                except (OSError, TestbedError, ValueError):
                    time.sleep(0.1)
            self._proc.poll()
            err = tail(self.qemu_log, 20)
            if self._proc.returncode is not None and "host forwarding" in err:
                continue  # port taken meanwhile: try another
            self.kill()
            raise BootError("%s: QEMU did not start (rc %s):\n%s\ncommand: %s"
                            % (self.name, self._proc.returncode, err, self.qemu_command))
        raise BootError("%s: could not find a free port for the SSH forward" % self.name)

    def wait_ready(self, timeout: float = DEFAULT_BOOT_TIMEOUT) -> "Guest":
        """Wait until SSH answers; on failure kill QEMU and raise BootError with the serial log tail."""
        timeout = self.scaled(timeout)
        deadline = self.started + timeout
        last_try = 0.0
        last_err = ""
        while True:
            now = time.time()
            if not self.is_running():
                self._fail("QEMU exited (rc %s) before SSH came up" % (self._proc.returncode if self._proc else "?"))
            ready = False
            try:
                log = self.serial_log.read_text(errors="replace")
            except OSError:
                log = ""
            ready = READY_MARK in log
            if "Kernel panic - not syncing" in log:
                time.sleep(1)  # let the panic message reach the log
                self._fail("the guest kernel panicked")
            if ready or now - last_try > 10:
                last_try = now
                res = self.run("true", timeout=20, connect_timeout=5)
                if res.rc == 0:
                    self.boot_seconds = round(time.time() - self.started, 1)
                    self.save()
                    return self
                last_err = (res.stderr or "").strip()
            if now > deadline:
                self._fail("SSH on 127.0.0.1:%d did not answer within %ds (last ssh error: %s)"
                           % (self.port, timeout, last_err or "-"))
            time.sleep(1 if ready else 0.5)

    def scaled(self, timeout: float) -> float:
        """Disk-booted guests go through firmware, a bootloader, an initramfs and systemd: 3x the time."""
        return timeout * (DISK_BOOT_FACTOR if PROFILES[self.profile].disk else 1)

    def _fail(self, why):
        self.kill()
        raise BootError("%s (%s profile): %s\n--- serial log %s (tail) ---\n%s\n--- QEMU output ---\n%s\n"
                        "--- QEMU command ---\n%s"
                        % (self.name, self.profile, why, self.serial_log, tail(self.serial_log, 60),
                           tail(self.qemu_log, 20), self.qemu_command))

    def stop(self, timeout: float = 20):
        """Power off: QMP quit, then SIGTERM, then SIGKILL. Always leaves QEMU gone."""
        try:
            if self.is_running():
                try:
                    qmp(self.qmp_socket, "quit", timeout=min(timeout, 5))
                except (OSError, TestbedError, ValueError):
                    pass
                if not self._wait_gone(timeout):
                    self._signal(signal.SIGTERM)
                    if not self._wait_gone(5):
                        self.kill()
        finally:
            self._reap()
            _disown(self)
            if self.qmp_socket.exists():
                try:
                    self.qmp_socket.unlink()
                except OSError:
                    pass

    def kill(self):
        self._signal(signal.SIGKILL)
        self._wait_gone(5)
        self._reap()
        _disown(self)

    def _signal(self, sig):
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    self._proc.send_signal(sig)
                except ProcessLookupError:
                    pass
        elif self.is_running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _wait_gone(self, timeout) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.is_running():
                return True
            time.sleep(0.1)
        return not self.is_running()

    def _reap(self):
        if self._proc is not None:
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    def detach(self):
        """Let this guest outlive the process (the CLI's ``boot``)."""
        self.owned = False
        self.owner_pid = None
        _disown(self)
        self.save()

    # -- SSH ----------------------------------------------------------------
    def ssh_options(self, strict: bool = True) -> list:
        opts = ["-F", "/dev/null", "-i", str(self.key), "-p", str(self.port),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=8"]
        if strict:
            self._write_known_hosts()
            opts += ["-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=%s" % self.known_hosts]
        else:
            opts += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        return opts

    def _write_known_hosts(self):
        pub = (self.share_dir / "ssh_host_ed25519_key.pub").read_text().split()
        line = "[127.0.0.1]:%d %s %s\n" % (self.port, pub[0], pub[1])
        if not self.known_hosts.exists() or self.known_hosts.read_text() != line:
            self.known_hosts.write_text(line)

    def ssh_argv(self, command=None, tty: bool = False, connect_timeout: int = 10) -> list:
        argv = ["ssh"] + self.ssh_options() + ["-o", "ConnectTimeout=%d" % connect_timeout]
        argv += ["-t"] if tty else ["-T"]
        argv += ["root@127.0.0.1"]
        if command is not None:
            argv += ["--", command if isinstance(command, str) else shlex.join(command)]
        return argv

    def run(self, command, timeout: float = 120, input=None, check: bool = False,
            binary: bool = False, connect_timeout: int = 10) -> SSHResult:
        """Run a command in the guest over SSH: (rc, stdout, stderr). ``command``: a shell
        string or an argv list. rc 255 is an SSH failure; -1 a timeout."""
        if isinstance(input, str):
            input = input.encode()
        try:
            proc = subprocess.run(self.ssh_argv(command, connect_timeout=connect_timeout), input=input,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL, check=False)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = -1, e.stdout or b"", (e.stderr or b"") + b"\n(timed out after %ds)" % timeout
        if not binary:
            out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if check and rc != 0:
            detail = err if isinstance(err, str) else err.decode()
            raise TestbedError("%s: %r failed (rc %d): %s" % (self.name, command, rc, detail))
        return SSHResult(rc, out, err)

    def boot_id(self) -> str | None:
        res = self.run("cat /proc/sys/kernel/random/boot_id", timeout=30)
        return res.stdout.strip() if res.rc == 0 else None

    # -- reboot -------------------------------------------------------------
    def reboot(self, timeout: float = DEFAULT_BOOT_TIMEOUT, hard: bool = False) -> "Guest":
        """Reboot the guest inside the same QEMU (same port and disk image), wait for SSH.

        Default: the guest's own ``reboot`` (sync + reboot(2)); ``hard=True``: QMP
        system_reset after a sync. Files written to the guest's root survive.
        """
        before = self.boot_id()
        timeout = self.scaled(timeout)
        self.started = time.time()
        with open(self.serial_log, "ab") as f:
            f.write(b"\n=== testbed: reboot (%s) ===\n" % (b"reset" if hard else b"guest"))
        if hard:
            self.run("sync", timeout=60)
            qmp(self.qmp_socket, "system_reset")
        else:
            self.run("reboot", timeout=60)
        deadline = self.started + timeout
        while time.time() < deadline:
            if not self.is_running():
                self._fail("QEMU exited during reboot")
            now_id = self.boot_id()
            if now_id and now_id != before:
                self.boot_seconds = round(time.time() - self.started, 1)
                self.save()
                return self
            time.sleep(2)
        self._fail("no new boot within %ds after reboot" % timeout)

    def restart(self, extra_kernel_args=None, timeout: float = DEFAULT_BOOT_TIMEOUT) -> "Guest":
        """Cold restart: stop QEMU and boot again with the same disk image and keys
        (optionally other extra kernel arguments). Files written in the guest are kept."""
        if self.is_running():
            self.run("sync", timeout=60)  # QMP quit pulls the plug: flush the guest's page cache first
        self.stop()
        if extra_kernel_args is not None:
            self.extra_kernel_args = tuple(extra_kernel_args)
        self.start()
        return self.wait_ready(timeout)


def _keygen(path: Path, comment: str):
    for p in (path, Path(str(path) + ".pub")):
        if p.exists():
            p.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# --------------------------------------------------------------------------
# Module-level API
# --------------------------------------------------------------------------

def _guest_dir(run_dir, name) -> Path:
    return Path(run_dir or DEFAULT_RUN_DIR) / name


def load(name: str, run_dir=None) -> Guest | None:
    d = _guest_dir(run_dir, name)
    if not (d / "guest.json").exists():
        return None
    return Guest.load(d)


def guests_in(run_dir=None, running_only: bool = True, sessions: bool = False) -> list:
    """Guests recorded in a run dir; with ``sessions`` also one level below (pytest session dirs)."""
    run_dir = Path(run_dir or DEFAULT_RUN_DIR)
    found = []
    for pattern in ("*/guest.json", "*/*/guest.json") if sessions else ("*/guest.json",):
        for p in sorted(run_dir.glob(pattern)):
            try:
                g = Guest.load(p.parent)
            except (OSError, ValueError, KeyError):
                continue
            if not running_only or g.is_running():
                found.append(g)
    return found


def boot_many(profiles, run_dir=None, kernel=None, timeout: float = DEFAULT_BOOT_TIMEOUT,
              persist: bool = True, reuse: bool = False, owned: bool = True,
              extra_kernel_args=(), root=None) -> dict:
    """Boot several guests at once; returns {name: Guest} once all answer SSH.

    ``profiles``: profile names, or (name, profile) pairs for several guests of
    one profile. With ``reuse``, a guest of that name already running in the run
    dir is returned as is; otherwise it is an error. ``owned`` guests are stopped
    when this process exits (atexit, SIGTERM, and QEMU's parent-death signal).
    If any guest fails to boot, all guests started here are stopped and the
    BootError lists every failure.
    """
    problems = host_problems(persist)
    if problems:
        raise MissingDependency("; ".join(problems))
    kernel = Path(kernel) if kernel else find_kernel()
    root = Path(root) if root else find_root()
    problems = root_problems(root)
    if problems:
        raise MissingDependency("; ".join(problems))
    run_dir = Path(run_dir or DEFAULT_RUN_DIR)
    run_dir.mkdir(parents=True, exist_ok=True)
    wanted = []
    for item in profiles:
        name, prof = (item, item) if isinstance(item, str) else item
        if prof not in PROFILES:
            raise TestbedError("unknown profile %r (known: %s)" % (prof, ", ".join(PROFILES)))
        wanted.append((name, prof))
    result, started = {}, []
    try:
        for name, prof in wanted:
            existing = load(name, run_dir)
            if existing is not None and existing.is_running():
                if not reuse or existing.profile != prof:
                    raise TestbedError("guest %s is already running (pid %d, %s); stop it first"
                                       % (name, existing.pid, existing.dir))
                result[name] = existing
                continue
            gdir = _guest_dir(run_dir, name)
            if gdir.exists():
                shutil.rmtree(gdir)
            g_kernel, g_root = kernel, root
            if PROFILES[prof].arch != "x86_64":   # its own kernel and root (ARCH_BUILDS)
                g_kernel, g_root = find_arch_artifacts(PROFILES[prof].arch)
                problems = root_problems(g_root)
                if problems:
                    raise MissingDependency("; ".join(problems))
            g = Guest(name=name, profile=prof, dir=gdir, kernel=g_kernel, root=g_root, persist=persist,
                      owned=owned, extra_kernel_args=tuple(extra_kernel_args))
            g.start()
            started.append(g)
            result[name] = g
        errors = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
            futures = {pool.submit(g.wait_ready, timeout): g for g in started}
            for fut in concurrent.futures.as_completed(futures):
                try:
                    fut.result()
                except BootError as e:
                    errors.append(str(e))
        if errors:
            raise BootError("\n\n".join(errors))
    except BaseException:
        for g in started:
            g.stop(timeout=5)
        raise
    return result


def boot(profile: str, name: str | None = None, **kwargs) -> Guest:
    """Boot one guest and wait for SSH (see boot_many for the keyword arguments)."""
    name = name or profile
    return boot_many([(name, profile)], **kwargs)[name]


def stop_all(guests=None, run_dir=None, timeout: float = 20) -> list:
    """Stop the given guests, or every running guest recorded in the run dir. Returns their names."""
    if guests is None:
        guests = guests_in(run_dir)
    guests = list(guests)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(guests))) as pool:
        list(pool.map(lambda g: g.stop(timeout=timeout), guests))
    return [g.name for g in guests]


def inventory(guests, path=None) -> Path:
    """Write an Ansible YAML inventory for the guests (group ``testbed``); returns its path."""
    guests = list(guests)
    hosts = {}
    for g in guests:
        hosts[g.name] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": g.port,
            "ansible_user": "root",
            "ansible_connection": "ssh",
            "ansible_ssh_private_key_file": str(g.key),
            "ansible_python_interpreter": GUEST_PYTHON,
            # Keepalives: when a guest reboots, QEMU's user-mode NAT does not reset the host side
            # of the TCP connection, and an SSH ControlMaster on it would hang instead of failing
            # (seen with ansible.builtin.reboot); 5 s x 6 missed answers drop it in 30 s.
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                       "-o IdentitiesOnly=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=6",
            "testbed_profile": g.profile,
            "testbed_dir": str(g.dir),
        }
    data = {"all": {"children": {"testbed": {"hosts": hosts}}}}
    if path is None:
        base = guests[0].dir.parent if guests else DEFAULT_RUN_DIR
        path = Path(base) / "inventory.yml"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import yaml
        text = yaml.safe_dump(data, default_flow_style=False, sort_keys=True)
    except ImportError:  # JSON is YAML too
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("# Generated by tests/testbed/testbed.py on %s\n%s"
                   % (datetime.datetime.now().isoformat(timespec="seconds"), text))
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _cli_guest(args, name) -> Guest:
    """The guest called name: the run dir's own, else a running one one level below (pytest sessions)."""
    cands = [g for g in guests_in(args.run_dir, running_only=False, sessions=True) if g.name == name]
    if not cands:
        sys.exit("no guest %r in %s (testbed.py list)" % (name, args.run_dir))
    running = [g for g in cands if g.is_running()]
    if not running:
        sys.exit("guest %r is not running (serial log: %s)" % (name, cands[0].serial_log))
    if running[0].owner_alive():
        print("(%s belongs to live process %d: %s)" % (name, running[0].owner_pid, running[0].dir),
              file=sys.stderr)
    return running[0]


def _print_table(guests):
    print("%-10s %-9s %-7s %-6s %-8s %-7s %s" % ("NAME", "PROFILE", "PID", "PORT", "BOOT(s)", "OWNER", "DIR"))
    for g in guests:
        pid = g.pid if g.is_running() else "-"
        row = (g.name, g.profile, pid, g.port, g.boot_seconds or "-", g.owner_pid or "-", g.dir)
        print("%-10s %-9s %-7s %-6s %-8s %-7s %s" % row)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR), help="default: %(default)s ($TESTBED_RUN_DIR)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("boot", help="boot guests (in parallel); they keep running until `stop`")
    p.add_argument("profiles", nargs="+", help="profile names or 'all' (%s)" % ", ".join(PROFILES))
    p.add_argument("--kernel", help="bzImage (default: $TESTBED_KERNEL or the newest cached build)")
    p.add_argument("--build-kernel", action="store_true", help="run build-kernel.sh to find/build the kernel")
    p.add_argument("--root", help="root directory (default: $TESTBED_ROOT or the newest cached build)")
    p.add_argument("--build-root", action="store_true", help="run build-root.sh to find/build the root")
    p.add_argument("--timeout", type=float, default=DEFAULT_BOOT_TIMEOUT)
    p.add_argument("--no-persist", action="store_true", help="tmpfs overlay instead of a disk image")
    p.add_argument("--append", default="", help="extra kernel arguments")
    p.add_argument("--reuse", action="store_true", help="keep guests of the same name that already run")
    p = sub.add_parser("ssh", help="ssh into a guest (or run a command after --)")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("list", help="guests recorded in the run dir")
    p = sub.add_parser("stop", help="stop guests (default: the CLI's and orphaned ones)")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true",
                   help="also guests that a live process (e.g. a pytest session) manages")
    p = sub.add_parser("inventory", help="write an Ansible inventory of the running guests")
    p.add_argument("-o", "--output", help="default: RUN_DIR/inventory.yml")
    p = sub.add_parser("reboot", help="reboot a guest and wait for SSH")
    p.add_argument("name")
    p.add_argument("--hard", action="store_true", help="QMP system_reset instead of the guest's reboot")
    sub.add_parser("profiles", help="list the profiles")
    args = ap.parse_args(argv)
    args.run_dir = Path(args.run_dir)

    if args.cmd == "profiles":
        for prof in PROFILES.values():
            print("%-9s %s\n          qemu: %s  kernel: %s" % (prof.name, prof.description,
                  " ".join(("-machine", prof.machine) + prof.iommu_args), " ".join(prof.kernel_args) or "-"))
        return 0
    if args.cmd == "boot":
        names = default_profiles() if args.profiles == ["all"] else args.profiles
        try:
            kernel = args.kernel or find_kernel(build=args.build_kernel)
            root = args.root or find_root(build=args.build_root)
        except TestbedError as e:
            print(str(e), file=sys.stderr)
            return 1
        t0 = time.time()
        try:
            guests = boot_many(names, run_dir=args.run_dir, kernel=kernel, root=root, timeout=args.timeout,
                               persist=not args.no_persist, reuse=args.reuse, owned=False,
                               extra_kernel_args=tuple(shlex.split(args.append)))
        except TestbedError as e:
            print(str(e), file=sys.stderr)
            return 1
        for g in guests.values():
            g.detach()
        print("booted %d guest(s) in %.1fs with %s and %s" % (len(guests), time.time() - t0, kernel, root))
        _print_table(guests.values())
        path = inventory(guests_in(args.run_dir), args.run_dir / "inventory.yml")
        print("inventory (all running guests): %s" % path)
        return 0
    if args.cmd == "ssh":
        g = _cli_guest(args, args.name)
        cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not cmd:
            os.execvp("ssh", g.ssh_argv(tty=True))
        argv = g.ssh_argv(cmd[0] if len(cmd) == 1 else shlex.join(cmd))
        return subprocess.call(argv)
    if args.cmd == "list":
        _print_table(guests_in(args.run_dir, running_only=False, sessions=True))
        return 0
    if args.cmd == "stop":
        if args.names:
            targets = [_cli_guest(args, n) for n in args.names]
        else:
            targets = guests_in(args.run_dir, sessions=True)
        skipped = [g for g in targets if g.owner_alive() and not args.all]
        targets = [g for g in targets if g not in skipped]
        stop_all(targets)
        print("stopped: %s" % (" ".join(str(g.dir) for g in targets) or "(none running)"))
        for g in skipped:
            print("left running: %s (managed by live process %d; --all to stop it anyway)"
                  % (g.dir, g.owner_pid))
        return 0
    if args.cmd == "inventory":
        guests = guests_in(args.run_dir)
        if not guests:
            print("no running guests in %s" % args.run_dir, file=sys.stderr)
            return 1
        path = inventory(guests, args.output or args.run_dir / "inventory.yml")
        print(path)
        return 0
    if args.cmd == "reboot":
        g = _cli_guest(args, args.name)
        g.reboot(hard=args.hard)
        print("%s rebooted in %.1fs" % (g.name, g.boot_seconds))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
