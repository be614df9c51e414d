# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bind PCI devices to vfio-pci (or a VFIO variant driver) and release them: planning, safety
checks, sysfs actions.

Everything works below a root directory (``/`` on a real host, a fixture tree
in tests), like the readers of :mod:`iommu_sysfs`. The planning functions are
pure: they read sysfs/procfs and return what would be done, so check mode and
a real run compute the same plan. :class:`Executor` carries a plan out with
the kernel's documented interface (Documentation/ABI/testing/sysfs-bus-pci):

  bind     echo vfio-pci > driver_override; echo BDF > driver/unbind; echo BDF > drivers_probe
  release  echo > driver_override; echo BDF > driver/unbind; echo BDF > drivers_probe

``new_id`` is never used: it would make vfio-pci claim every device with the
same ID, not only the selected one. A VFIO variant driver (``driver``, e.g.
mlx5_vfio_pci) is bound the same way, with its name in driver_override, as
driverctl does. Stdlib only; nothing here runs a command
(the module passes the functions that do, e.g. ``modprobe`` or ``ip``).
"""

from __future__ import absolute_import, division, print_function

import errno
import os
import re
import socket
import stat
import struct
import tempfile

from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs

__metaclass__ = type

VFIO_DRIVER = "vfio-pci"
DEFAULT_RULES_FILE = "/etc/udev/rules.d/80-iommu-host-vfio.rules"
DEFAULT_MODULES_FILE = "/etc/modules-load.d/iommu-host-vfio.conf"
MANAGED_MARK = "# Managed by iommu.host.vfio_pci"

# A driver name as sysfs shows it under /sys/bus/pci/drivers (no path separators).
_DRIVER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")
_ID_RE = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$")
_GROUP_RE = re.compile(r"^(?:group[:=]?)?([0-9]+)$")
# One managed rule line; the original driver is kept in a comment on the line before it.
_RULE_RE = re.compile(r'KERNEL=="([^"]+)"')
_ORIG_RE = re.compile(r"^# device (\S+) (\S+) original-driver=(\S+)(?: driver=(\S+))?$")
_OVERRIDE_RE = re.compile(r'ATTR\{driver_override\}="([^"]+)"')

IFF_UP = 0x1
SIOCGIFADDR = 0x8915

# Filesystems whose "device" is not a block device.
_NET_FS = ("9p", "virtiofs")


class VfioError(Exception):
    """A request that cannot be carried out; ``failures`` are dicts (device, code, message, remedy)."""

    def __init__(self, message, failures=None):
        super(VfioError, self).__init__(message)
        self.failures = failures or []


# ---------------------------------------------------------------------------
# Selection


def parse_selector(spec):
    """'0000:00:09.0' / '00:09.0' / '8086:10d3' / 7 / 'group:7' -> (kind, value) or (None, reason)."""
    text = str(spec).strip()
    address = sysfs.normalize_pci_address(text)
    if address:
        return "address", address
    m = _ID_RE.match(text)
    if m:
        return "id", "%s:%s" % (m.group(1).lower(), m.group(2).lower())
    m = _GROUP_RE.match(text.lower())
    if m:
        return "group", str(int(m.group(1)))
    return None, ("%r is not a PCI address (0000:00:09.0), vendor:device ID (8086:10d3) "
                  "or IOMMU group number (7, group:7)" % text)


def device_ids(dev):
    """'8086:10d3' from the reader's '0x8086' / '0x10d3'."""
    if not dev.get("vendor_id") or not dev.get("device_id"):
        return None
    return "%s:%s" % (dev["vendor_id"][2:], dev["device_id"][2:])


def select(specs, devices, groups):
    """Resolve selectors to PCI addresses. Returns (addresses in request order, failures)."""
    chosen, failures = [], []
    for spec in specs:
        kind, value = parse_selector(spec)
        matched = []
        if kind is None:
            failures.append({"device": str(spec), "code": "bad_selector", "message": value,
                             "remedy": "Name devices by PCI address, vendor:device ID or IOMMU group number."})
            continue
        if kind == "address":
            if value in devices and devices[value].get("is_bridge"):
                failures.append({"device": value, "code": "bridge",
                                 "message": "%s is a PCI bridge; bridges are never bound to vfio-pci" % value,
                                 "remedy": "Select the endpoints behind it."})
                continue
            if value in devices:
                matched = [value]
        elif kind == "id":
            matched = sorted(a for a, d in devices.items()
                             if device_ids(d) == value and not d.get("is_bridge"))
        else:
            group = groups.get(value)
            if group:
                matched = [a for a in group["devices"]
                           if a in devices and not devices[a].get("is_bridge")]
        if not matched:
            where = {"address": "no PCI device %s in /sys/bus/pci/devices",
                     "id": "no PCI device with ID %s",
                     "group": "no IOMMU group %s with PCI endpoints"}[kind] % value
            failures.append({"device": str(spec), "code": "not_found", "message": where,
                             "remedy": "Check the selector against `lspci -Dnn` and /sys/kernel/iommu_groups."})
            continue
        for addr in matched:
            if addr not in chosen:
                chosen.append(addr)
    return chosen, failures


def _with_drivers(addresses, devices):
    return ", ".join("%s (%s)" % (m, devices[m].get("driver")) for m in addresses)


def expand_groups(selected, devices, groups, policy):
    """Add the other endpoints of each selected device's IOMMU group.

    Returns (targets {address: {"selected": bool, "for": [selected addresses]}}, failures).
    ``policy`` bind_all takes every endpoint (a group is only usable by VFIO when all its
    endpoints are on vfio-pci, or have no driver); ``refuse`` fails when a group holds
    endpoints that were not selected and are bound to another driver.
    """
    targets, failures = {}, []
    for addr in selected:
        targets.setdefault(addr, {"selected": True, "for": []})["selected"] = True
    for addr in selected:
        dev = devices[addr]
        gid = dev.get("iommu_group")
        members = groups.get(gid, {}).get("devices", []) if gid else []
        others = [m for m in members if m != addr and m in devices and not devices[m].get("is_bridge")]
        unselected = [m for m in others if m not in selected]
        if policy == "refuse":
            blocking = [m for m in unselected if devices[m].get("driver") not in (VFIO_DRIVER, "pci-stub", None)
                        and not sysfs.is_vfio_bound(devices[m])]
            if blocking:
                failures.append({
                    "device": addr, "code": "group_not_selected",
                    "message": "IOMMU group %s of %s also holds %s, which %s not selected; VFIO can only "
                               "use a group when all its endpoints are on vfio-pci (group_policy=refuse)."
                               % (gid, addr, _with_drivers(blocking, devices),
                                  "was" if len(blocking) == 1 else "were"),
                    "members": blocking,
                    "remedy": "Select the whole group (devices: [%s]) or use group_policy: bind_all."
                              % ", ".join([addr] + blocking)})
            continue
        for m in others:
            entry = targets.setdefault(m, {"selected": False, "for": []})
            if addr not in entry["for"] and not entry["selected"]:
                entry["for"].append(addr)
    return targets, failures


# ---------------------------------------------------------------------------
# Safety: what the host itself is using


def owning_pci_function(real_path):
    """The PCI function that owns a sysfs device path (the last PCI address component)."""
    owner = None
    for part in real_path.split(os.sep):
        if part.count(":") == 2 and sysfs.PCI_ADDRESS_RE.match(part):   # sysfs names carry the domain
            owner = part.lower()
    return owner


def _unescape_mount(text):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _block_busy(name):
    """Whether /dev/<name> is in use: open(O_RDONLY|O_EXCL) on a block device fails with EBUSY
    when it is mounted, used as swap or claimed by dm/md. Reads nothing, changes nothing."""
    path = "/dev/%s" % name
    try:
        if not stat.S_ISBLK(os.stat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | os.O_EXCL | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        return e.errno == errno.EBUSY
    os.close(fd)
    return False


class UsageScanner:
    """Finds what on the host depends on PCI functions: mounts, swap, network links, console.

    ``ipv4_addresses``: callable returning {ifname: ["192.0.2.5/24", ...]} (the module runs
    ``ip -j -4 addr``), or None when it cannot tell; then (and by default) the SIOCGIFADDR ioctl
    on ``/``, nothing on a fixture root.
    """

    def __init__(self, reader, ipv4_addresses=None, block_busy=None):
        self.reader = reader
        self.root = reader.root
        self._ipv4 = ipv4_addresses
        self._busy = block_busy if block_busy is not None else (
            _block_busy if self.root in ("/", "") else (lambda name: False))

    # -- block devices --------------------------------------------------------

    def _block_owners(self, name, seen=None):
        """PCI functions behind a block device (following dm/md slaves)."""
        seen = set() if seen is None else seen
        if name in seen:
            return set()
        seen.add(name)
        rel = "/sys/class/block/%s" % name
        if not self.reader.exists(rel):
            return set()
        owners = set()
        owner = owning_pci_function(os.path.realpath(self.reader.path(rel)))
        if owner:
            owners.add(owner)
        for slave in self.reader.listdir(rel + "/slaves"):
            owners |= self._block_owners(slave, seen)
        return owners

    def _block_name(self, source):
        """Kernel name of the block device a mount/swap source names (/dev/mapper/x -> dm-0)."""
        if not source.startswith("/dev/"):
            return None
        path = self.reader.path(source)
        try:
            real = os.path.realpath(path)
            st = os.stat(real)
            if stat.S_ISBLK(st.st_mode):
                dev_rel = "/sys/dev/block/%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
                if self.reader.exists(dev_rel):
                    return os.path.basename(os.path.realpath(self.reader.path(dev_rel)))
            return os.path.basename(real)
        except OSError:
            return os.path.basename(source)

    def _virtio_tags(self):
        """{tag: PCI function} of virtio 9p / virtiofs devices."""
        tags = {}
        for vdev in self.reader.listdir("/sys/bus/virtio/devices"):
            base = "/sys/bus/virtio/devices/%s" % vdev
            tag = self.reader.read(base + "/mount_tag") or self.reader.read(base + "/tag")
            if tag:
                tags[tag.rstrip("\x00")] = owning_pci_function(os.path.realpath(self.reader.path(base)))
        for fs in self.reader.listdir("/sys/fs/virtiofs"):  # virtiofs: /sys/fs/virtiofs/N/{tag,device}
            base = "/sys/fs/virtiofs/%s" % fs
            tag = self.reader.read(base + "/tag")
            if tag:
                tags.setdefault(tag, owning_pci_function(os.path.realpath(self.reader.path(base + "/device"))))
        return tags

    def storage_users(self):
        """{PCI function: ["mount /dev/vda1 on / (ext4)", "swap /dev/vdb", ...]}."""
        users = {}
        mounts = []
        text = self.reader.read("/proc/mounts", limit=8 << 20) or ""
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            mounts.append((_unescape_mount(fields[0]), _unescape_mount(fields[1]), fields[2]))
        tags = None
        # The boot root is often hidden below an overlay or switch_root (absent from /proc/mounts):
        # root=TAG rootfstype=9p|virtiofs on the kernel command line names its transport.
        boot = dict(t.partition("=")[::2] for t in sysfs._split_cmdline(self.reader.read("/proc/cmdline") or ""))
        if boot.get("rootfstype") in _NET_FS and boot.get("root") and \
                not any(m[0] == boot["root"] and m[2] in _NET_FS for m in mounts):
            mounts.append((boot["root"], "/ (boot root, root= on the kernel command line)", boot["rootfstype"]))
        for source, target, fstype in mounts:
            what = "filesystem %s mounted on %s (%s)" % (source, target, fstype)
            owners = set()
            if fstype in _NET_FS:
                if tags is None:
                    tags = self._virtio_tags()
                if source in tags and tags[source]:
                    owners.add(tags[source])
            else:
                name = self._block_name(source)
                if name:
                    owners = self._block_owners(name)
            for owner in owners:
                users.setdefault(owner, []).append(what)
        swaps = self.reader.read("/proc/swaps") or ""
        for line in swaps.splitlines()[1:]:
            fields = line.split()
            if not fields:
                continue
            path = _unescape_mount(fields[0])
            owners = set()
            name = self._block_name(path) if path.startswith("/dev/") else None
            if name and self.reader.exists("/sys/class/block/%s" % name):
                owners = self._block_owners(name)
            else:  # a swap file: the filesystem holding it
                best = None
                for source, target, fstype in mounts:
                    if (path == target or path.startswith(target.rstrip("/") + "/")) and \
                            (best is None or len(target) > len(best[1])):
                        best = (source, target, fstype)
                if best:
                    bname = self._block_name(best[0])
                    owners = self._block_owners(bname) if bname else set()
            for owner in owners:
                users.setdefault(owner, []).append("active swap %s" % path)
        # Mounts invisible from here (another namespace, below an overlay's upper/lower layer),
        # LVM/MD members: the kernel refuses an exclusive open of a block device that is in use.
        for name in self.reader.listdir("/sys/class/block"):
            owner = owning_pci_function(os.path.realpath(self.reader.path("/sys/class/block/%s" % name)))
            if owner and owner not in users and self._busy(name):
                users.setdefault(owner, []).append(
                    "block device /dev/%s, which is in use (an exclusive open gives EBUSY: mounted, "
                    "swap or held by device-mapper/MD)" % name)
        return users

    # -- network ---------------------------------------------------------------

    def _interfaces(self):
        """{ifname: (PCI function, sysfs dir)} for every network interface."""
        out = {}
        for ifname in self.reader.listdir("/sys/class/net"):
            rel = "/sys/class/net/%s" % ifname
            owner = owning_pci_function(os.path.realpath(self.reader.path(rel)))
            if owner:
                out[ifname] = (owner, rel)
        return out

    def _ipv6(self):
        addrs = {}
        text = self.reader.read("/proc/net/if_inet6") or ""
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 6:
                raw = f[0]
                addr = ":".join(raw[i:i + 4] for i in range(0, 32, 4))
                addrs.setdefault(f[5], []).append("%s/%d" % (addr, int(f[2], 16)))
        return addrs

    def _routes(self):
        routes = {}
        text = self.reader.read("/proc/net/route") or ""
        for line in text.splitlines()[1:]:
            f = line.split()
            if len(f) >= 8:
                try:
                    dest = socket.inet_ntoa(struct.pack("<I", int(f[1], 16)))
                    mask = bin(int(f[7], 16)).count("1")
                except (ValueError, struct.error):
                    continue
                routes.setdefault(f[0], []).append("default" if dest == "0.0.0.0" and mask == 0
                                                   else "%s/%d" % (dest, mask))
        text = self.reader.read("/proc/net/ipv6_route") or ""
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 10 and f[9] != "lo":
                dest = ":".join(f[0][i:i + 4] for i in range(0, 32, 4))
                routes.setdefault(f[9], []).append("%s/%d" % (dest, int(f[1], 16)))
        return routes

    def _ipv4_default(self, names):
        if self.root not in ("/", "") or not hasattr(socket, "AF_INET"):
            return {}
        import fcntl
        out = {}
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for name in names:
                try:
                    req = struct.pack("256s", name.encode()[:15])
                    res = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, req)
                    out[name] = [socket.inet_ntoa(res[20:24])]
                except (OSError, IOError):
                    continue
        finally:
            sock.close()
        return out

    def network_users(self, devices):
        """{PCI function: ["interface eth0 is up with addresses ... and routes ...", ...]}."""
        ifaces = self._interfaces()
        for addr, dev in devices.items():
            for ifname in dev.get("net_interfaces") or []:
                ifaces.setdefault(ifname, (addr, "/sys/bus/pci/devices/%s/net/%s" % (addr, ifname)))
        if not ifaces:
            return {}
        v4 = self._ipv4(list(ifaces)) if self._ipv4 else None
        if v4 is None:  # no `ip -j` (iproute2 < 4.13) or it failed: the SIOCGIFADDR ioctl
            v4 = self._ipv4_default(list(ifaces))
        v6 = self._ipv6()
        routes = self._routes()
        users = {}
        for ifname, (owner, rel) in sorted(ifaces.items()):
            flags = self.reader.read(rel + "/flags")
            oper = self.reader.read(rel + "/operstate")
            try:
                up = bool(int(flags, 16) & IFF_UP) if flags else oper == "up"
            except ValueError:
                up = oper == "up"
            if not up:
                continue
            addrs = list((v4 or {}).get(ifname, [])) + [a for a in v6.get(ifname, [])
                                                        if not a.startswith("fe80")]
            rts = routes.get(ifname, [])
            if not addrs and not rts:
                continue
            parts = []
            if addrs:
                parts.append("address%s %s" % ("es" if len(addrs) > 1 else "", ", ".join(addrs)))
            if rts:
                parts.append("route%s %s" % ("s" if len(rts) > 1 else "", ", ".join(rts)))
            users.setdefault(owner, []).append({
                "interface": ifname,
                "text": "network interface %s is up with %s" % (ifname, " and ".join(parts))})
        return users

    # -- console ---------------------------------------------------------------

    def console_users(self, devices):
        users = {}
        for fb in self.reader.listdir("/sys/class/graphics"):
            if not fb.startswith("fb"):
                continue
            rel = "/sys/class/graphics/%s/device" % fb
            if not self.reader.exists(rel):
                continue
            owner = owning_pci_function(os.path.realpath(self.reader.path(rel)))
            if owner:
                name = self.reader.read("/sys/class/graphics/%s/name" % fb)
                users.setdefault(owner, []).append(
                    "framebuffer /dev/%s%s%s" % (fb, " (%s)" % name if name else "",
                                                 " is the active console" if fb == "fb0" else ""))
        for addr, dev in devices.items():
            if self.reader.read("/sys/bus/pci/devices/%s/boot_vga" % addr) == "1" and \
                    dev.get("driver") not in (None, VFIO_DRIVER) and not sysfs.is_vfio_bound(dev) \
                    and addr not in users:
                users.setdefault(addr, []).append(
                    "boot VGA device (boot_vga=1) driven by %s, likely the console" % dev.get("driver"))
        return users


def safety_failures(targets, devices, scanner):
    """Refusals for targets the host is using. Returns [failure dict]."""
    storage = scanner.storage_users()
    network = scanner.network_users(devices)
    console = scanner.console_users(devices)
    failures = []
    for addr in sorted(targets):
        dev = devices[addr]
        if dev.get("driver") == VFIO_DRIVER or sysfs.is_vfio_bound(dev):
            continue  # already taken from the host (vfio-pci or a VFIO variant driver)
        via = "" if targets[addr]["selected"] else " (member of the IOMMU group of %s)" % ", ".join(
            targets[addr]["for"])
        for what in storage.get(addr, []):
            failures.append({
                "device": addr, "code": "backs_storage", "reason": what,
                "message": "%s%s backs the %s; binding it to vfio-pci would take the storage away."
                           % (addr, via, what),
                "remedy": "Unmount it (and swapoff) first, choose another device, or set force: true."})
        for entry in network.get(addr, []):
            failures.append({
                "device": addr, "code": "network_in_use", "interface": entry["interface"],
                "reason": entry["text"],
                "message": "%s%s: %s; binding it to vfio-pci would cut that link."
                           % (addr, via, entry["text"]),
                "remedy": "Take the interface down first (ip addr flush dev %s; ip link set %s down), "
                          "choose another device, or set force: true." % (entry["interface"], entry["interface"])})
        for what in console.get(addr, []):
            failures.append({
                "device": addr, "code": "console", "reason": what,
                "message": "%s%s: %s; binding it to vfio-pci would take the console away." % (addr, via, what),
                "remedy": "Move the console to another device, choose another device, or set force: true."})
    return failures


# ---------------------------------------------------------------------------
# Persistence files


def read_managed(reader, rules_file):
    """Addresses in the managed udev rule file: {address: {"ids": ..., "original_driver": ...}}."""
    text = reader.read(rules_file)
    managed = {}
    if not text:
        return managed
    pending = {}
    for line in text.splitlines():
        m = _ORIG_RE.match(line.strip())
        if m:
            pending[m.group(1)] = {"ids": None if m.group(2) == "-" else m.group(2),
                                   "original_driver": None if m.group(3) == "-" else m.group(3)}
            continue
        if line.startswith("#") or 'driver_override' not in line:
            continue
        m = _RULE_RE.search(line)
        if m:
            entry = dict(pending.get(m.group(1), {"ids": None, "original_driver": None}))
            o = _OVERRIDE_RE.search(line)
            entry["driver"] = o.group(1) if o else VFIO_DRIVER
            managed[m.group(1)] = entry
    return managed


def render_rules(managed):
    """The udev rule file for ``managed`` ({address: {ids, original_driver}}), '' when empty.

    On ``add`` (boot coldplug or hotplug) udev sets driver_override before any driver probes a
    device that appears later; a device a built-in or initramfs driver already claimed is then
    released and re-probed (RUN), so vfio-pci gets it either way.
    """
    if not managed:
        return ""
    lines = [MANAGED_MARK + ": PCI devices kept on vfio-pci (or a VFIO variant driver) across reboots.",
             "# Changed by the module (state: absent removes entries, and the file with the last one).",
             "# driver_override makes only the named driver match the device (no new_id: no other device "
             "is affected).",
             ""]
    for addr in sorted(managed):
        info = managed[addr]
        drv = info.get("driver") or VFIO_DRIVER
        lines.append("# device %s %s original-driver=%s%s"
                     % (addr, info.get("ids") or "-", info.get("original_driver") or "-",
                        "" if drv == VFIO_DRIVER else " driver=%s" % drv))
        lines.append('ACTION=="add", SUBSYSTEM=="pci", KERNEL=="%s", ATTR{driver_override}="%s"' % (addr, drv))
        lines.append('ACTION=="add", SUBSYSTEM=="pci", KERNEL=="%s", DRIVER=="?*", DRIVER!="%s", '
                     'RUN+="/bin/sh -c \'echo %%k > /sys/bus/pci/devices/%%k/driver/unbind; '
                     'echo %%k > /sys/bus/pci/drivers_probe\'"' % (addr, drv))
    return "\n".join(lines) + "\n"


def render_modules(managed, modules=None):
    """modules-load.d text: the module of every driver the rule names (vfio-pci first).

    ``modules``: {driver: module name} where sysfs told it; otherwise the driver's name,
    which modprobe and systemd-modules-load accept for drivers named after their module.
    """
    if not managed:
        return ""
    drivers = sorted(set(info.get("driver") or VFIO_DRIVER for info in managed.values()),
                     key=lambda d: (d != VFIO_DRIVER, d))
    names = []
    for drv in drivers:
        name = (modules or {}).get(drv) or drv
        if name not in names:
            names.append(name)
    what = "vfio-pci" if drivers == [VFIO_DRIVER] else "the VFIO drivers"
    return "%s: load %s at boot for the devices in %s.\n%s\n" % (
        MANAGED_MARK, what, "the udev rule", "\n".join(names))


# ---------------------------------------------------------------------------
# The target driver


def check_driver(reader, driver, devices):
    """Whether ``driver`` is a VFIO driver, as far as the kernel tells.

    Returns {"driver", "loaded", "module", "vfio": True/False/None, "evidence"/"reason"}.
    ``vfio`` is True for vfio-pci, for a driver whose module is a holder of vfio_pci_core
    or vfio, or one that already has a device with a VFIO device (vfio-dev/); False when
    its module is a loaded module while the VFIO core modules are loaded modules too and
    it holds none of them; None when it cannot be told (not loaded, or built in).
    """
    out = {"driver": driver, "loaded": reader.exists("/sys/bus/pci/drivers/%s" % driver),
           "module": None, "vfio": None, "evidence": []}
    if driver == VFIO_DRIVER:
        out["vfio"] = True
        out["evidence"] = ["driver vfio-pci"]
        out["module"] = reader.driver_module("pci", driver) if out["loaded"] else None
        return out
    if not out["loaded"]:
        out["reason"] = "the driver is not loaded: /sys/bus/pci/drivers/%s does not exist" % driver
        return out
    module = reader.driver_module("pci", driver)
    out["module"] = module
    loadable_cores = [c for c in sysfs.VFIO_CORE_MODULES if reader.exists("/sys/module/%s/holders" % c)]
    for core in loadable_cores:
        if module and module in reader.module_holders(core):
            out["evidence"].append("/sys/module/%s/holders/%s" % (core, module))
    for addr, dev in sorted(devices.items()):
        if dev.get("driver") == driver and sysfs.is_vfio_bound(dev) and (dev.get("vfio") or {}).get("cdev"):
            out["evidence"].append("%s on %s has vfio-dev/%s" % (addr, driver, dev["vfio"]["cdev"]))
            break
    if out["evidence"]:
        out["vfio"] = True
    elif module and reader.exists("/sys/module/%s/holders" % module) and loadable_cores:
        out["vfio"] = False
        out["reason"] = ("its module %s is loaded but is not a holder of %s: it does not use the VFIO core, "
                         "so it is not a VFIO driver" % (module, " or ".join(loadable_cores)))
    else:
        out["reason"] = ("cannot tell: %s is built into the kernel (no holders in /sys/module) and no device "
                         "on it has a VFIO device yet; the bind is verified afterwards" % (module or driver))
    return out


# ---------------------------------------------------------------------------
# The plan


def build_plan(reader, specs, state="present", group_policy="bind_all", persistent=True, force=False,
               rules_file=DEFAULT_RULES_FILE, modules_file=DEFAULT_MODULES_FILE, scanner=None,
               driver=VFIO_DRIVER):
    """What a run would do. Pure: reads only. Raises VfioError listing every problem.

    ``driver``: the VFIO driver the selected devices go to (vfio-pci, or a VFIO variant
    driver such as mlx5_vfio_pci). Other members of their IOMMU groups go to vfio-pci:
    a group is usable by VFIO when every endpoint is on some VFIO driver, and a variant
    driver is made for specific devices only.
    """
    driver = VFIO_DRIVER if driver is None else str(driver).strip()
    if not _DRIVER_RE.match(driver):
        raise VfioError("%r is not a PCI driver name" % driver, [{
            "device": None, "code": "bad_driver", "message": "%r is not a PCI driver name (as listed in "
            "/sys/bus/pci/drivers)" % driver, "remedy": "Name the VFIO driver, e.g. vfio-pci or mlx5_vfio_pci."}])
    devices = reader.pci_devices()
    groups = reader.groups(devices)
    selected, failures = select(specs, devices, groups)
    if failures:
        raise VfioError(_summary(failures), failures)
    drv_check = check_driver(reader, driver, devices) if state == "present" else None
    if drv_check and drv_check["vfio"] is False:
        failures = [{"device": None, "code": "not_vfio_driver", "driver": driver,
                     "message": "%s is not a VFIO driver: %s." % (driver, drv_check["reason"]),
                     "remedy": "Name a VFIO driver: vfio-pci, or a VFIO variant driver made for this device "
                               "(for example mlx5_vfio_pci, virtio_vfio_pci, pds_vfio_pci, hisi_acc_vfio_pci)."}]
        raise VfioError(_summary(failures), failures)
    if state == "present":
        targets, failures = expand_groups(selected, devices, groups, group_policy)
        if failures:
            raise VfioError(_summary(failures), failures)
        if not force:
            failures = safety_failures(targets, devices, scanner or UsageScanner(reader))
            if failures:
                raise VfioError(_summary(failures), failures)
    else:
        if group_policy == "bind_all":
            targets = expand_groups(selected, devices, groups, "bind_all")[0]
            # release group members only when they were taken for VFIO
            targets = dict((a, t) for a, t in targets.items()
                           if t["selected"] or sysfs.is_vfio_bound(devices[a])
                           or devices[a].get("driver_override") in (VFIO_DRIVER, driver))
        else:
            targets = dict((a, {"selected": True, "for": []}) for a in selected)

    managed = read_managed(reader, rules_file)
    plan = {"state": state, "driver": driver, "driver_check": drv_check, "load_module": False,
            "modules_to_load": [], "devices": [], "files": []}
    new_managed = dict(managed)
    wanted = set()
    for addr in _ordered(targets, selected):
        dev = devices[addr]
        gid = dev.get("iommu_group")
        members = [m for m in (groups.get(gid, {}).get("devices", []) if gid else [])
                   if m in devices and not devices[m].get("is_bridge")]
        entry = {"address": addr, "ids": device_ids(dev), "iommu_group": gid,
                 "selected": targets[addr]["selected"], "group_member_of": targets[addr]["for"],
                 "group_members": members, "driver_before": dev.get("driver"),
                 "driver_override_before": dev.get("driver_override"), "actions": []}
        on_vfio = sysfs.is_vfio_bound(dev)
        if state == "present":
            target = driver if targets[addr]["selected"] else VFIO_DRIVER
            if not targets[addr]["selected"] and on_vfio:
                target = dev.get("driver")   # a group member already on a VFIO driver stays there
            entry["driver_target"] = target
            if dev.get("driver_override") != target:
                entry["actions"].append("set driver_override to %s" % target)
            if dev.get("driver") != target:
                wanted.add(target)
                if dev.get("driver"):
                    entry["actions"].append("unbind from %s" % dev["driver"])
                entry["actions"].append("probe (%s takes the device)" % target)
            entry["driver_after"] = target
            if persistent:
                prev = managed.get(addr, {})
                orig = prev.get("original_driver") or (
                    dev.get("driver") if dev.get("driver") != target and not on_vfio else None)
                new_managed[addr] = {"ids": device_ids(dev), "original_driver": orig, "driver": target}
        else:
            orig = managed.get(addr, {}).get("original_driver")
            entry["vfio_driver_before"] = dev.get("driver") if on_vfio else None
            if dev.get("driver_override"):
                entry["actions"].append("clear driver_override (%s)" % dev["driver_override"])
            if on_vfio:
                entry["actions"].append("unbind from %s" % dev.get("driver"))
            if on_vfio or (dev.get("driver_override") and not dev.get("driver")):
                entry["actions"].append("probe (the default driver takes the device)")
                entry["driver_after"] = orig
            else:
                entry["driver_after"] = dev.get("driver")
            entry["original_driver"] = orig
            new_managed.pop(addr, None)
        entry["changed"] = bool(entry["actions"])
        plan["devices"].append(entry)
    if state == "present":
        for drv in sorted(wanted, key=lambda d: (d != VFIO_DRIVER, d)):
            if not reader.exists("/sys/bus/pci/drivers/%s" % drv):
                plan["modules_to_load"].append(drv)
        plan["load_module"] = bool(plan["modules_to_load"])

    modules = {}
    for info in new_managed.values():
        drv = info.get("driver") or VFIO_DRIVER
        if drv != VFIO_DRIVER and reader.exists("/sys/bus/pci/drivers/%s" % drv):
            modules[drv] = reader.driver_module("pci", drv)
    for path, before_text, after_text in (
            (rules_file, reader.read(rules_file), render_rules(new_managed)),
            (modules_file, reader.read(modules_file), render_modules(new_managed, modules))):
        before_text = None if before_text is None else before_text + "\n"
        after = after_text or None
        if state == "present" and not persistent:
            after = before_text  # leave the files as they are
        plan["files"].append({"path": path, "before": before_text, "after": after,
                              "changed": (before_text or None) != after,
                              "action": _file_action(before_text, after)})
    plan["managed_after"] = sorted(new_managed)
    plan["changed"] = plan["load_module"] or any(d["changed"] for d in plan["devices"]) or \
        any(f["changed"] for f in plan["files"])
    return plan


def _file_action(before, after):
    if (before or None) == after:
        return "unchanged"
    if after is None:
        return "remove"
    return "create" if before is None else "update"


def _ordered(targets, selected):
    out = []
    for addr in selected:
        if addr in targets and addr not in out:
            out.append(addr)
        for other in sorted(targets):
            if addr in targets[other]["for"] and other not in out:
                out.append(other)
    for addr in sorted(targets):
        if addr not in out:
            out.append(addr)
    return out


def _summary(failures):
    return " | ".join(("%s Remedy: %s" % (f["message"], f["remedy"])) if f.get("remedy") else f["message"]
                      for f in failures)


# ---------------------------------------------------------------------------
# Carrying the plan out


class SysfsWriter:
    """Writes sysfs attributes and files below ``root``. Tests replace it (or wrap it) with a fake kernel."""

    def __init__(self, root="/"):
        self.root = root

    def path(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def write_attr(self, rel, text):
        fd = os.open(self.path(rel), os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def write_file(self, rel, text, mode=0o644):
        path = self.path(rel)
        d = os.path.dirname(path)
        if not os.path.isdir(d):
            os.makedirs(d, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".iommu-host-", dir=d)
        try:
            os.write(fd, text.encode())
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def remove_file(self, rel):
        try:
            os.unlink(self.path(rel))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise


def execute(plan, reader, writer, load_module=None):
    """Carry out ``plan``. Returns the plan's devices with what actually happened.

    ``load_module``: callable(name) that loads a kernel module (the module runs modprobe).
    Raises VfioError when the kernel did not do what was asked (verification after each device).
    """
    if plan["load_module"]:
        if load_module is None:
            raise VfioError("%s is not loaded and no way to load it was given" % ", ".join(plan["modules_to_load"]))
        for drv in plan["modules_to_load"]:
            load_module(drv)
            if not reader.exists("/sys/bus/pci/drivers/%s" % drv):
                raise VfioError("%s is still absent from /sys/bus/pci/drivers after loading it" % drv,
                                [{"device": None, "code": "no_vfio_pci" if drv == VFIO_DRIVER else "no_driver",
                                  "message": "the %s driver is not available after modprobe %s" % (drv, drv),
                                  "remedy": "Install a kernel with CONFIG_VFIO_PCI (module vfio-pci)."
                                  if drv == VFIO_DRIVER else
                                  "Check the driver's name (it is the name in /sys/bus/pci/drivers once loaded) "
                                  "and that the kernel has it (modinfo %s)." % drv}])
            if drv != VFIO_DRIVER:
                checked = check_driver(reader, drv, reader.pci_devices())
                if checked["vfio"] is False:
                    raise VfioError("%s is not a VFIO driver: %s" % (drv, checked["reason"]), [{
                        "device": None, "code": "not_vfio_driver", "driver": drv,
                        "message": "%s (loaded by modprobe) is not a VFIO driver: %s." % (drv, checked["reason"]),
                        "remedy": "Name a VFIO driver: vfio-pci or a VFIO variant driver made for this device."}])
    failures = []
    results = []
    for entry in plan["devices"]:
        res = dict(entry)
        addr = entry["address"]
        base = "/sys/bus/pci/devices/%s" % addr
        target = entry.get("driver_target", VFIO_DRIVER)
        try:
            if plan["state"] == "present":
                if entry["changed"]:
                    writer.write_attr(base + "/driver_override", target)
                    current = reader.link_name(base + "/driver")
                    if current and current != target:
                        writer.write_attr(base + "/driver/unbind", addr)
                    if current != target:
                        writer.write_attr("/sys/bus/pci/drivers_probe", addr)
            elif entry["changed"]:
                writer.write_attr(base + "/driver_override", "\n")
                current = reader.link_name(base + "/driver")
                on_vfio = current is not None and current in (VFIO_DRIVER, entry.get("vfio_driver_before"))
                if on_vfio:
                    writer.write_attr(base + "/driver/unbind", addr)
                if on_vfio or not current:
                    writer.write_attr("/sys/bus/pci/drivers_probe", addr)
        except (OSError, IOError) as e:
            failures.append({"device": addr, "code": "sysfs_write",
                             "message": "%s: writing sysfs failed: %s" % (addr, os.strerror(e.errno) if e.errno else e),
                             "remedy": "Run as root; check dmesg for the driver's message."})
        res["driver_after"] = reader.link_name(base + "/driver")
        override = reader.read(base + "/driver_override")
        res["driver_override_after"] = None if override in (None, "", "(null)") else override
        if plan["state"] == "present" and res["driver_after"] != target:
            failures.append({"device": addr, "code": "bind_failed",
                             "message": "%s is on %s, not %s, after the probe"
                                        % (addr, res["driver_after"] or "no driver", target),
                             "remedy": "Check dmesg: the device may be unsupported by %s or locked." % target})
        if plan["state"] == "absent":
            res["restored_to"] = res["driver_after"]
            if res["driver_after"] is not None and \
                    res["driver_after"] in (VFIO_DRIVER, entry.get("vfio_driver_before")):
                failures.append({"device": addr, "code": "release_failed",
                                 "message": "%s is still on %s after the release" % (addr, res["driver_after"]),
                                 "remedy": "Check whether a process holds /dev/vfio/* open."})
        results.append(res)
    if not failures:
        for f in plan["files"]:
            if not f["changed"]:
                continue
            if f["after"] is None:
                writer.remove_file(f["path"])
            else:
                writer.write_file(f["path"], f["after"])
    if failures:
        err = VfioError(_summary(failures), failures)
        err.results = results
        raise err
    return results
