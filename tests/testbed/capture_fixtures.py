#!/usr/bin/env python
"""Capture what real test-bed guests expose about IOMMUs into tests/fixtures/sysfs/<profile>.tar.xz.

For each profile, a script runs inside the guest (over SSH, ``python3 -``) and
streams a tar of the relevant sysfs/procfs/dev entries to stdout; it is
extracted here into a tree rooted like ``/`` and packed into an archive
(tests/support/fixture_trees: sysfs names hold ':', which a collection's file
names may not), which the tests extract, so code that reads
``<root>/sys/...`` sees what it would see on the guest:

* symlinks are kept as the same (relative) symlinks;
* readable regular files are copied by content (sysfs/procfs sizes are
  meaningless), files over 64 KiB and write-only attributes are skipped, read
  errors are tolerated (reported on stderr);
* device nodes (/dev/iommu, /dev/vfio/...) become empty regular files.

With ``--vfio`` (default for intel, intel-sm, amd) a second capture is made
into ``<profile>-vfio.tar.xz`` after binding the e1000e at 0000:00:09.0 to vfio-pci
(the device is given back to e1000e afterwards). Each tree gets a CAPTURED file
(date, kernel release, QEMU command line, profile). Never edit the output by
hand: re-run this script.

    .venv/bin/python tests/testbed/capture_fixtures.py [PROFILE ...]

Guests already running in the run dir under the profile's name are used (and
left running); the others are booted in parallel and stopped at the end.
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import testbed  # noqa: E402
from tests.support import fixture_trees  # noqa: E402

FIXTURES = testbed.REPO / "tests" / "fixtures" / "sysfs"
VFIO_DEVICE = "0000:00:09.0"
VFIO_PROFILES = ("intel", "intel-sm", "amd", "arm64-smmuv3")
# Profiles whose IOMMU has no registers in sysfs (SMMUv3): their hw_info answer (IOMMU_GET_HW_INFO of the
# e1000e on vfio-pci) and the driver's own view (dmesg, device tree) go to tests/fixtures/hw_info/<profile>.json.
HW_INFO_PROFILES = ("arm64-smmuv3",)
HW_INFO_FIXTURES = testbed.REPO / "tests" / "fixtures" / "hw_info"

# Runs in the guest (python3 from the host's Debian: 3.11, stdlib only).
GUEST_SCRIPT = r'''
import os, re, sys, tarfile

MAX = 64 * 1024
BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
PCI_FILES = ("uevent", "vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision",
             "driver_override", "numa_node", "enable")
PCI_LINKS = ("driver", "iommu", "iommu_group", "physfn")
MODULES = ("iommufd", "vfio", "vfio_pci", "vfio_pci_core", "vfio_iommu_type1")

tar = tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT)
done = set()

def warn(path, why):
    sys.stderr.write("capture: %s: %s\n" % (path, why))

def info(path, kind):
    ti = tarfile.TarInfo(path.lstrip("/"))
    ti.type = kind
    ti.mtime = 0
    ti.uname = ti.gname = "root"
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return ti

def add_dir(path):
    path = os.path.normpath(path)
    if path == "/" or path in done:
        return
    add_dir(os.path.dirname(path))
    done.add(path)
    tar.addfile(info(path, tarfile.DIRTYPE))

def add_link(path):
    if path in done:
        return
    try:
        target = os.readlink(path)
    except OSError as e:
        return warn(path, e.strerror)
    add_dir(os.path.dirname(path))
    done.add(path)
    ti = info(path, tarfile.SYMTYPE)
    ti.linkname = target
    tar.addfile(ti)

def add_bytes(path, data):
    add_dir(os.path.dirname(path))
    done.add(path)
    ti = info(path, tarfile.REGTYPE)
    ti.size = len(data)
    tar.addfile(ti, __import__("io").BytesIO(data))

def add_file(path):
    if path in done:
        return
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not st.st_mode & 0o444:
        return  # write-only attribute (bind, unbind, new_id, remove, ...)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX + 1)
    except OSError as e:
        return warn(path, "read: " + (e.strerror or str(e)))
    if len(data) > MAX:
        return warn(path, "larger than 64 KiB, skipped")
    add_bytes(path, data)

def add_node(path):
    """A device node as an empty regular file (git cannot store device nodes)."""
    if os.path.lexists(path) and path not in done:
        add_bytes(path, b"")

def add_any(path, depth=0, skip=("power",)):
    """A file, a symlink (kept, not followed) or a directory (recursing depth levels)."""
    if os.path.islink(path):
        return add_link(path)
    if os.path.isdir(path):
        add_dir(path)
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            return warn(path, e.strerror)
        for name in names:
            sub = os.path.join(path, name)
            if name in skip:
                continue
            if os.path.islink(sub):
                add_link(sub)
            elif os.path.isdir(sub):
                if depth > 0:
                    add_any(sub, depth - 1, skip)
            else:
                add_file(sub)
        return
    if os.path.exists(path):
        add_file(path)

def add_class_links(path, depth):
    """Entries of a /sys/class-like directory: the links, and the directories they point to."""
    if not os.path.isdir(path):
        return
    add_dir(path)
    for name in sorted(os.listdir(path)):
        sub = os.path.join(path, name)
        add_any(sub, 0)
        if os.path.islink(sub):
            add_any(os.path.realpath(sub), depth)

def add_pci_device(devdir):
    add_dir(devdir)
    for name in PCI_FILES:
        add_file(os.path.join(devdir, name))
    for name in PCI_LINKS:
        p = os.path.join(devdir, name)
        if os.path.islink(p):
            add_link(p)
    vfio = os.path.join(devdir, "vfio-dev")
    if os.path.isdir(vfio):
        add_dir(vfio)
        for name in sorted(os.listdir(vfio)):
            add_any(os.path.join(vfio, name), 0)
    net = os.path.join(devdir, "net")
    if os.path.isdir(net):
        add_dir(net)
        for ifname in sorted(os.listdir(net)):
            for attr in ("operstate", "address"):
                add_file(os.path.join(net, ifname, attr))

# IOMMU units and what the class links point to (attributes, intel-iommu/,
# amd-iommu/, devices/ links)
add_class_links("/sys/class/iommu", 1)
# IOMMU groups: type, reserved_regions, name, devices/ links
add_any("/sys/kernel/iommu_groups", 2)
# PCI devices: the bus links and every device directory they point to
if os.path.isdir("/sys/bus/pci/devices"):
    add_dir("/sys/bus/pci/devices")
    for name in sorted(os.listdir("/sys/bus/pci/devices")):
        link = os.path.join("/sys/bus/pci/devices", name)
        add_link(link)
        add_pci_device(os.path.realpath(link))
# PCI drivers: directory names and their device links
if os.path.isdir("/sys/bus/pci/drivers"):
    add_dir("/sys/bus/pci/drivers")
    for drv in sorted(os.listdir("/sys/bus/pci/drivers")):
        d = os.path.join("/sys/bus/pci/drivers", drv)
        add_dir(d)
        for name in sorted(os.listdir(d)):
            if BDF.match(name) and os.path.islink(os.path.join(d, name)):
                add_link(os.path.join(d, name))
# VFIO cdevs and mediated devices
add_class_links("/sys/class/vfio-dev", 0)
add_class_links("/sys/bus/mdev/devices", 1)
# ACPI tables (bytes)
for name in ("DMAR", "IVRS", "IORT"):
    add_any("/sys/firmware/acpi/tables/" + name)
# device tree (arm64): the top-level node names, their compatible, the GIC's children (the ITS)
DT = "/sys/firmware/devicetree/base"
if os.path.isdir(DT):
    add_dir(DT)
    for name in sorted(os.listdir(DT)):
        node = os.path.join(DT, name)
        if os.path.isdir(node) and not os.path.islink(node):
            add_dir(node)
            for prop in ("compatible", "dma-coherent", "msi-map", "msi-parent", "iommu-map"):
                add_file(os.path.join(node, prop))
            if name.startswith(("intc", "interrupt-controller")):
                for child in sorted(os.listdir(node)):
                    sub = os.path.join(node, child)
                    if os.path.isdir(sub):
                        add_dir(sub)
                        for prop in ("compatible", "msi-controller", "socionext,synquacer-pre-its"):
                            add_file(os.path.join(sub, prop))
# built-in modules (existence) and their parameters
for mod in MODULES:
    d = "/sys/module/" + mod
    if os.path.isdir(d):
        add_dir(d)
        add_any(d + "/parameters", 0)
# procfs
for path in ("/proc/cmdline", "/proc/interrupts", "/proc/config.gz", "/proc/modules",
             "/proc/sys/kernel/osrelease"):
    add_any(path)
add_any("/lib/modules/%s/modules.builtin" % os.uname().release)
# device nodes
add_node("/dev/iommu")
for base in ("/dev/vfio", "/dev/vfio/devices"):
    if os.path.isdir(base):
        add_dir(base)
        for name in sorted(os.listdir(base)):
            p = os.path.join(base, name)
            if not os.path.isdir(p):
                add_node(p)
tar.close()
'''

BIND_VFIO = r'''
set -e
d=/sys/bus/pci/devices/{dev}
echo vfio-pci > $d/driver_override
if [ -e $d/driver ]; then echo {dev} > $d/driver/unbind; fi
echo {dev} > /sys/bus/pci/drivers_probe
for i in $(seq 50); do [ -d $d/vfio-dev ] && exit 0; sleep 0.1; done
echo "no $d/vfio-dev after binding to vfio-pci (driver: $(readlink $d/driver))" >&2
exit 1
'''

UNBIND_VFIO = r'''
d=/sys/bus/pci/devices/{dev}
echo > $d/driver_override
if [ -e $d/driver ]; then echo {dev} > $d/driver/unbind; fi
echo {dev} > /sys/bus/pci/drivers_probe
readlink $d/driver
'''


def _member_filter(dest: Path):
    real_dest = os.path.realpath(dest)

    def check(member, path):
        name = member.name
        if name.startswith("/") or ".." in name.split("/"):
            raise tarfile.FilterError("unsafe member name %r" % name)
        parent = os.path.join(real_dest, os.path.dirname(name))
        if os.path.realpath(parent) != os.path.normpath(parent):
            raise tarfile.FilterError("%r would be written through a symlink" % name)
        if member.issym():
            if os.path.isabs(member.linkname):
                raise tarfile.FilterError("absolute symlink %r -> %r" % (name, member.linkname))
            return member.replace(uid=0, gid=0, uname="", gname="", mode=None, deep=False)
        if not (member.isfile() or member.isdir()):
            raise tarfile.FilterError("unexpected member type %r" % name)
        return tarfile.data_filter(member, path)

    return check


def capture(guest, dest: Path, variant: str) -> int:
    """Capture the guest into the archive ``dest``.tar.xz (replaced). Returns the number of tar members.

    The tree is packed (tests/support/fixture_trees.pack) because sysfs names hold ':',
    which a collection may not contain in file names.
    """
    res = guest.run(["python3", "-"], input=GUEST_SCRIPT, binary=True, timeout=600)
    if res.rc != 0:
        raise testbed.TestbedError("%s: capture script failed (rc %d): %s"
                                   % (guest.name, res.rc, res.stderr.decode("utf-8", "replace")))
    for line in res.stderr.decode("utf-8", "replace").splitlines():
        print("  [%s] %s" % (guest.name, line), file=sys.stderr)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(res.stdout), mode="r:") as tar:
        members = tar.getmembers()
        tar.extractall(tmp, filter=_member_filter(tmp))
    release = guest.run("uname -r", check=True).stdout.strip()
    cmdline = guest.run("cat /proc/cmdline", check=True).stdout.strip()
    (tmp / "CAPTURED").write_text(
        "captured: %s\nprofile: %s\nvariant: %s\nkernel release: %s\nkernel command line: %s\n"
        "qemu command line: %s\ntool: tests/testbed/capture_fixtures.py (do not edit this tree by hand)\n"
        % (datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), guest.profile,
           variant, release, cmdline, guest.qemu_command))
    fixture_trees.pack(str(tmp), str(dest) + ".tar.xz")
    shutil.rmtree(tmp)
    return len(members)


# Runs in the guest with the collection's module_utils on sys.path: the facts gatherer's own answer for the
# bound e1000e (the same code iommu.host.iommu_facts runs), the driver's dmesg lines, the device tree.
HW_INFO_SCRIPT = r'''
import json, os, subprocess, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.iommu.host.plugins.module_utils import iommu_facts
dev = sys.argv[2]
facts = iommu_facts.gather(selected=[dev])
hw = facts["devices"][dev]["hw_info"]
dmesg = subprocess.run(["dmesg"], stdout=subprocess.PIPE, universal_newlines=True).stdout
lines = [l.split("] ", 1)[-1] for l in dmesg.splitlines() if "arm-smmu-v3" in l or "ITS" in l or "GICv3" in l]
dt = "/sys/firmware/devicetree/base"
smmu_nodes = sorted(n for n in os.listdir(dt) if "smmu" in n) if os.path.isdir(dt) else []
print(json.dumps({
    "device": dev, "hw_info": {k: hw.get(k) for k in ("source", "type", "type_id", "data_len", "raw", "error")},
    "dmesg": lines, "devicetree_smmu_nodes": smmu_nodes,
    # of_dma_is_coherent(): the node or an ancestor has dma-coherent
    "dma_coherent": {n: os.path.exists(os.path.join(dt, n, "dma-coherent")) or os.path.exists(dt + "/dma-coherent")
                     for n in smmu_nodes},
    "interrupt_remapping": facts["kernel"]["interrupt_remapping"],
    "allow_unsafe_interrupts": facts["kernel"]["allow_unsafe_interrupts"],
}, indent=2, sort_keys=True))
'''


def capture_hw_info(guest, out_dir: Path) -> Path:
    """Bind the e1000e to vfio-pci (the caller did), ask IOMMU_GET_HW_INFO through the facts gatherer, write
    tests/fixtures/hw_info/<profile>.json (with the kernel release and the outer QEMU)."""
    import json
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(testbed.REPO / "plugins" / "module_utils"),
                arcname="ansible_collections/iommu/host/plugins/module_utils",
                filter=lambda ti: None if "__pycache__" in ti.name else ti)
    dest = "/tmp/iommu-host-capture"
    guest.run("rm -rf {0} && mkdir -p {0} && tar -x -C {0}".format(dest), input=buf.getvalue(), timeout=120,
              check=True)
    res = guest.run(["python3", "-c", HW_INFO_SCRIPT, dest, VFIO_DEVICE], timeout=300)
    if res.rc != 0:
        raise testbed.TestbedError("%s: hw_info capture failed (rc %d): %s" % (guest.name, res.rc, res.stderr))
    data = json.loads(res.stdout)
    data["captured"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data["profile"] = guest.profile
    data["kernel_release"] = guest.run("uname -r", check=True).stdout.strip()
    data["qemu"] = testbed.outer_qemu_release(guest.root) if PROFILES_ARCH.get(guest.profile) == "aarch64" else None
    data["qemu_command"] = guest.qemu_command
    data["tool"] = "tests/testbed/capture_fixtures.py (do not edit by hand)"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("%s.json" % guest.profile)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


PROFILES_ARCH = dict((n, p.arch) for n, p in testbed.PROFILES.items())


def capture_profile(guest, out_dir: Path, vfio: bool):
    name = guest.profile
    t0 = time.time()
    n = capture(guest, out_dir / name, "as booted")
    print("%s: %d entries -> %s.tar.xz (%.1fs)" % (name, n, out_dir / name, time.time() - t0))
    if not vfio:
        return
    res = guest.run(BIND_VFIO.format(dev=VFIO_DEVICE), timeout=120)
    if res.rc != 0:
        raise testbed.TestbedError("%s: binding %s to vfio-pci failed: %s" % (name, VFIO_DEVICE, res.stderr))
    try:
        n = capture(guest, out_dir / (name + "-vfio"), "after binding %s to vfio-pci" % VFIO_DEVICE)
        print("%s-vfio: %d entries -> %s.tar.xz" % (name, n, out_dir / (name + "-vfio")))
        if name in HW_INFO_PROFILES:
            print("%s: hw_info -> %s" % (name, capture_hw_info(guest, HW_INFO_FIXTURES)))
    finally:
        res = guest.run(UNBIND_VFIO.format(dev=VFIO_DEVICE), timeout=120)
        if res.rc != 0 or "e1000e" not in res.stdout:
            print("warning: %s: %s not given back to e1000e: %s%s" % (name, VFIO_DEVICE, res.stdout, res.stderr),
                  file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("profiles", nargs="*", default=[n for n, p in testbed.PROFILES.items() if p.default])
    ap.add_argument("--out", default=str(FIXTURES), help="default: %(default)s")
    ap.add_argument("--run-dir", default=str(testbed.DEFAULT_RUN_DIR))
    ap.add_argument("--kernel")
    ap.add_argument("--timeout", type=float, default=testbed.DEFAULT_BOOT_TIMEOUT * 2)
    ap.add_argument("--no-vfio", action="store_true", help="skip the <profile>-vfio captures")
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    guests, to_boot = {}, []
    for prof in args.profiles:
        if prof not in testbed.PROFILES:
            ap.error("unknown profile %r" % prof)
        g = testbed.load(prof, args.run_dir)
        if g is not None and g.is_running() and g.profile == prof:
            print("using running guest %s (port %d)" % (prof, g.port))
            guests[prof] = g
        else:
            to_boot.append(prof)
    booted = {}
    try:
        if to_boot:
            t0 = time.time()
            booted = testbed.boot_many(to_boot, run_dir=args.run_dir, kernel=args.kernel, timeout=args.timeout)
            print("booted %s in %.1fs" % (", ".join(to_boot), time.time() - t0))
            guests.update(booted)
        for prof in args.profiles:
            capture_profile(guests[prof], out_dir, vfio=not args.no_vfio and prof in VFIO_PROFILES)
    finally:
        testbed.stop_all(booted.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
