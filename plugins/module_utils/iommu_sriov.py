# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV virtual functions of a PCI physical function: planning, in-use refusals, sysfs writes,
the persistence rule.

The kernel interface (Documentation/ABI/testing/sysfs-bus-pci, drivers/pci/iov.c
sriov_numvfs_store):

  sriov_totalvfs            the most VFs the PF (or its driver, pci_sriov_set_totalvfs) offers
  sriov_numvfs              write N to create N VFs; write 0 to remove them. Changing a non-zero
                            count to another non-zero count is refused with EBUSY ("%d VFs already
                            enabled. Disable before enabling %d VFs"): the plan writes 0 first.
                            N > totalvfs gives ERANGE; no driver bound to the PF (or a driver
                            without sriov_configure) gives ENOENT.
  sriov_drivers_autoprobe   1: new VFs are probed by their drivers (igbvf, mlx5_core, ...) at once;
                            0: they come up with no driver (to be bound with vfio_pci)

Removing VFs removes their PCI devices: a VF that vfio-pci holds for a process (a VM) makes the
write wait until the process lets go (vfio_unregister_group_dev), so such a VF is always refused.

Persistence is a udev rule on the PF's ``bind`` event (kernel 4.14+, systemd 247+ handles it) and
on its ``add`` event when a driver is already bound (``DRIVER=="?*"``: the boot-time coldplug of
``udevadm trigger`` replays ``add`` for a PF whose built-in or initramfs driver bound before udevd
started): whenever the PF's driver binds - at boot, when its module is loaded late, after a rebind
or a driver reload that dropped the VFs - udev writes sriov_drivers_autoprobe and sriov_numvfs in
rule order. A oneshot systemd unit only runs once at boot and races the driver's probe. Like
iommu_vfio, everything works below a root directory; planning only reads. Stdlib only.
"""

from __future__ import absolute_import, division, print_function

import errno
import os
import re

from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs
from ansible_collections.iommu.host.plugins.module_utils import iommu_vfio as vfio

__metaclass__ = type

DEFAULT_RULES_FILE = "/etc/udev/rules.d/70-iommu-host-sriov.rules"
MANAGED_MARK = "# Managed by iommu.host.sriov_vfs"
_NETDEV_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_ENTRY_RE = re.compile(r"^# pf (\S+) (\S+) num_vfs=(\d+) drivers_autoprobe=(\S+)$")


class SriovError(Exception):
    """A request that cannot be carried out; ``failures``: dicts (device, code, message, remedy)."""

    def __init__(self, message, failures=None):
        super(SriovError, self).__init__(message)
        self.failures = failures or []


def _fail(device, code, message, remedy, **extra):
    item = {"device": device, "code": code, "message": message, "remedy": remedy}
    item.update(extra)
    return item


def _summary(failures):
    return " | ".join(("%s Remedy: %s" % (f["message"], f["remedy"])) if f.get("remedy") else f["message"]
                      for f in failures)


# ---------------------------------------------------------------------------
# The physical function


def resolve_pf(reader, spec):
    """A PCI address (0000:03:00.0 / 03:00.0) or a network interface name -> PCI address."""
    text = str(spec or "").strip()
    address = sysfs.normalize_pci_address(text)
    if address:
        if not reader.exists("/sys/bus/pci/devices/%s" % address):
            raise SriovError("no PCI device %s" % address, [_fail(
                address, "not_found", "no PCI device %s in /sys/bus/pci/devices" % address,
                "Check the address with lspci -D.")])
        return address
    if not _NETDEV_RE.match(text):
        raise SriovError("%r is neither a PCI address nor a network interface name" % text, [_fail(
            text, "bad_pf", "%r is neither a PCI address (0000:03:00.0) nor a network interface name" % text,
            "Name the PF by PCI address or by its interface (ip link).")])
    rel = "/sys/class/net/%s/device" % text
    if not reader.exists("/sys/class/net/%s" % text):
        raise SriovError("no network interface %s" % text, [_fail(
            text, "not_found", "no network interface %s in /sys/class/net" % text,
            "Check the name with ip link, or give the PF's PCI address.")])
    owner = os.path.basename(reader.realpath(rel)) if reader.exists(rel) else None
    address = sysfs.normalize_pci_address(owner or "")
    if not address:
        raise SriovError("interface %s is not a PCI function" % text, [_fail(
            text, "not_pci", "interface %s has no PCI device (%s)" % (text, rel),
            "Give the PF's PCI address.")])
    return address


def read_state(reader, address):
    """The PF's SR-IOV state (iommu_sysfs.SysfsReader.sriov) plus its driver and ids."""
    state = reader.sriov(address)
    base = "/sys/bus/pci/devices/%s" % address
    return state, reader.link_name(base + "/driver"), reader.read(base + "/vendor"), reader.read(base + "/device")


# ---------------------------------------------------------------------------
# VFs in use


def vf_users(reader, vfs, devices, scanner, holders=None):
    """{vf: [{"kind", "text", "overridable"}]}: what holds each VF.

    ``vfio``   bound to a VFIO driver and its cdev or group node held open by a process (never
               overridable: removing it would wait for that process)
    ``netdev`` a network interface of the VF that is up (overridable with force)
    ``storage``/``console`` what iommu_vfio.UsageScanner finds (overridable with force)
    """
    holders = reader.vfio_holders() if holders is None else holders
    storage = scanner.storage_users() if scanner else {}
    network = scanner.network_users(dict((v, devices[v]) for v in vfs if v in devices)) if scanner else {}
    out = {}
    for vf in vfs:
        dev = devices.get(vf) or {}
        items = []
        held = []
        if dev.get("vfio_cdev"):
            held += holders.get("/dev/vfio/devices/%s" % dev["vfio_cdev"], [])
        if dev.get("iommu_group") and sysfs.is_vfio_bound(dev):
            held += holders.get("/dev/vfio/%s" % dev["iommu_group"], [])
        if held:
            items.append({"kind": "vfio", "overridable": False,
                          "text": "bound to %s and held open by %s" % (dev.get("driver"), ", ".join(sorted(set(held))))})
        reported = set()
        for entry in network.get(vf, []):
            reported.add(entry["interface"])
            items.append({"kind": "netdev", "overridable": True, "interface": entry["interface"],
                          "text": entry["text"]})
        for ifname in dev.get("net_interfaces") or []:
            if ifname in reported:
                continue
            flags = reader.read("/sys/bus/pci/devices/%s/net/%s/flags" % (vf, ifname))
            try:
                up = bool(int(flags, 16) & vfio.IFF_UP) if flags else False
            except ValueError:
                up = False
            if up:
                items.append({"kind": "netdev", "overridable": True, "interface": ifname,
                              "text": "network interface %s (driver %s) is up" % (ifname, dev.get("driver"))})
        for what in storage.get(vf, []):
            items.append({"kind": "storage", "overridable": True, "text": "backs the %s" % what})
        if items:
            out[vf] = items
    return out


# ---------------------------------------------------------------------------
# The persistence rule


def read_managed(reader, rules_file):
    """{pf: {"ids", "num_vfs", "drivers_autoprobe"}} from the managed rule file."""
    managed = {}
    text = reader.read(rules_file) or ""
    for line in text.splitlines():
        m = _ENTRY_RE.match(line.strip())
        if m:
            autoprobe = {"1": True, "0": False}.get(m.group(4))
            managed[m.group(1)] = {"ids": None if m.group(2) == "-" else m.group(2),
                                   "num_vfs": int(m.group(3)), "drivers_autoprobe": autoprobe}
    return managed


def render_rules(managed):
    """The udev rule file ('' when nothing is managed). Values are quoted as udev requires;
    ATTR{} assignments run in rule order, so autoprobe is set before the VFs are created."""
    if not managed:
        return ""
    lines = [MANAGED_MARK + ": SR-IOV virtual functions created whenever the PF's driver binds",
             "# (boot, module load, rebind). Changed by the module; state: absent removes a PF's entry.",
             ""]
    for pf in sorted(managed):
        info = managed[pf]
        ap = info.get("drivers_autoprobe")
        lines.append("# pf %s %s num_vfs=%d drivers_autoprobe=%s"
                     % (pf, info.get("ids") or "-", info["num_vfs"], "-" if ap is None else ("1" if ap else "0")))
        match = 'ACTION=="add|bind", SUBSYSTEM=="pci", KERNEL=="%s", DRIVER=="?*"' % pf
        ids = info.get("ids") or ""
        if ":" in ids:
            vendor, device = ids.split(":", 1)
            match += ', ATTR{vendor}=="0x%s", ATTR{device}=="0x%s"' % (vendor, device)
        assign = ""
        if ap is not None:
            assign += ', ATTR{sriov_drivers_autoprobe}="%s"' % ("1" if ap else "0")
        assign += ', ATTR{sriov_numvfs}="%d"' % info["num_vfs"]
        lines.append(match + assign)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# The plan


def build_plan(reader, pf, num_vfs=None, drivers_autoprobe=None, state="present", persistent=True,
               force=False, rules_file=DEFAULT_RULES_FILE, scanner=None, holders=None):
    """What a run would do. Reads only. Raises SriovError listing every problem.

    ``state`` present: ``num_vfs`` VFs (None: keep the current count), ``drivers_autoprobe`` (None:
    leave it); absent: no VFs and no persistence entry.
    """
    address = resolve_pf(reader, pf)
    sriov, driver, vendor, device = read_state(reader, address)
    ids = None
    if vendor and device and vendor.startswith("0x") and device.startswith("0x"):
        ids = "%s:%s" % (vendor[2:], device[2:])
    failures = []
    if sriov is None:
        physfn = reader.link_name("/sys/bus/pci/devices/%s/physfn" % address)
        why = ("%s is a virtual function of %s; only a physical function creates VFs" % (address, physfn)
               if physfn else "%s is not SR-IOV capable: it has no sriov_totalvfs (no SR-IOV capability, or "
               "CONFIG_PCI_IOV is off)" % address)
        raise SriovError(why, [_fail(address, "not_sriov", why, "Name an SR-IOV physical function "
                                     "(lspci -vvv shows 'Single Root I/O Virtualization').")])
    current = sriov["numvfs"] or 0
    total = sriov["totalvfs"]
    target = 0 if state == "absent" else (current if num_vfs is None else num_vfs)
    if target < 0:
        failures.append(_fail(address, "bad_num_vfs", "num_vfs must be 0 or more, not %d" % target,
                              "Give a number of VFs from 0 to sriov_totalvfs (%s)." % total))
    elif total is not None and target > total:
        failures.append(_fail(address, "too_many_vfs",
                              "%d VFs requested but %s offers at most %d (sriov_totalvfs); the kernel "
                              "would refuse with ERANGE" % (target, address, total),
                              "Ask for %d VFs or fewer." % total))
    if target != current and driver is None:
        failures.append(_fail(address, "pf_no_driver",
                              "no driver is bound to %s: the kernel creates and removes VFs through the "
                              "PF's driver (it would refuse with ENOENT)" % address,
                              "Bind the PF to its network/storage driver first (it must not be on vfio-pci "
                              "unless that driver supports SR-IOV: vfio-pci needs enable_sriov=1)."))
    affected = list(sriov["vfs"]) if (current and target != current) else []
    users = {}
    if affected:
        devices = reader.pci_devices()
        users = vf_users(reader, affected, devices, scanner, holders)
        for vf in sorted(users):
            blocking = [u for u in users[vf] if not (force and u["overridable"])]
            if not blocking:
                continue
            failures.append(_fail(
                vf, "vf_in_use",
                "VF %s of %s is in use: %s; changing sriov_numvfs from %d to %d removes every VF"
                % (vf, address, "; ".join(u["text"] for u in blocking), current, target),
                "Stop the VM or process holding it (and bring its interface down), then run again"
                + ("" if any(not u["overridable"] for u in blocking) else ", or set force: true") + ".",
                holders=[u["text"] for u in blocking]))
    if failures:
        raise SriovError(_summary(failures), failures)

    actions = []
    autoprobe_before = sriov["drivers_autoprobe"]
    if drivers_autoprobe is not None and state == "present" and drivers_autoprobe != autoprobe_before:
        actions.append({"attr": "sriov_drivers_autoprobe", "value": "1" if drivers_autoprobe else "0",
                        "text": "set sriov_drivers_autoprobe to %d" % (1 if drivers_autoprobe else 0)})
    if target != current:
        if current and target:
            actions.append({"attr": "sriov_numvfs", "value": "0",
                            "text": "write 0 to sriov_numvfs (the kernel changes a non-zero count only "
                                    "through 0): removes %s" % ", ".join(affected)})
        actions.append({"attr": "sriov_numvfs", "value": str(target),
                        "text": "write %d to sriov_numvfs" % target
                                + (": removes %s" % ", ".join(affected) if not target else "")})

    managed = read_managed(reader, rules_file)
    new = dict(managed)
    if state == "absent":
        new.pop(address, None)
    elif persistent:
        ap = drivers_autoprobe if drivers_autoprobe is not None else (managed.get(address) or {}).get(
            "drivers_autoprobe")
        new[address] = {"ids": ids, "num_vfs": target, "drivers_autoprobe": ap}
    before_text = reader.read(rules_file)
    before_text = None if before_text is None else before_text + "\n"
    after = render_rules(new) or None
    if state == "present" and not persistent:
        after = before_text
    file_changed = (before_text or None) != after
    return {
        "pf": address, "ids": ids, "driver": driver, "state": state,
        "totalvfs": total, "num_vfs_before": current, "num_vfs_after": target,
        "drivers_autoprobe_before": autoprobe_before,
        "drivers_autoprobe_after": drivers_autoprobe if (drivers_autoprobe is not None and state == "present")
        else autoprobe_before,
        "vfs_before": list(sriov["vfs"]), "vfs_removed": affected,
        "vfs_after": list(sriov["vfs"]) if target == current else predict_vfs(address, sriov, target),
        "in_use_overridden": dict((vf, [u["text"] for u in us]) for vf, us in users.items()) if force else {},
        "actions": actions,
        "file": {"path": rules_file, "before": before_text, "after": after, "changed": file_changed,
                 "action": vfio._file_action(before_text, after)},
        "persistent_pfs": sorted(new),
        "changed": bool(actions) or file_changed,
    }


def predict_vfs(address, sriov, count):
    """VF addresses the kernel gives ``count`` VFs: routing ID of the PF + First VF Offset + i * VF Stride
    (PCIe SR-IOV spec 9.3.3.9-10; drivers/pci/iov.c pci_iov_virtfn_bus/devfn). None when unknown."""
    offset, stride = sriov.get("offset"), sriov.get("stride")
    m = re.match(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$", address)
    if not count:
        return []
    if m is None or offset is None or (count > 1 and not stride):
        return None
    domain, bus, dev, fn = m.group(1), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4))
    rid = (bus << 8) | (dev << 3) | fn
    out = []
    for i in range(count):
        r = rid + offset + i * (stride or 0)
        if r > 0xffff:
            return None
        out.append("%s:%02x:%02x.%d" % (domain, r >> 8, (r >> 3) & 0x1f, r & 7))
    return out


# ---------------------------------------------------------------------------
# Carrying the plan out

_ERRNO = {
    errno.EBUSY: ("busy", "the kernel refused with EBUSY: VFs are already enabled (a non-zero count changes "
                          "only through 0) or the PF driver is busy",
                  "Write 0 first (the module does), and check that no VF is held (lsof /dev/vfio/*)."),
    errno.ERANGE: ("too_many_vfs", "the kernel refused with ERANGE: more VFs than sriov_totalvfs",
                   "Ask for sriov_totalvfs VFs or fewer."),
    errno.ENOMEM: ("no_resources", "the PF driver could not allocate the VFs (ENOMEM): not enough MMIO space "
                                   "or bus numbers behind the PF's bridge, or no memory",
                   "Try fewer VFs, 'pci=realloc' on the kernel command line, or enable SR-IOV support in "
                   "the firmware (BIOS) setup."),
    errno.ENOENT: ("pf_no_driver", "the kernel refused with ENOENT: no driver is bound to the PF, or its driver "
                                   "cannot configure SR-IOV through sysfs (no sriov_configure)",
                   "Bind the PF to its native driver (vfio-pci needs enable_sriov=1)."),
    errno.EINVAL: ("invalid", "the kernel rejected the value (EINVAL)", "Give an integer from 0 to sriov_totalvfs."),
    errno.EPERM: ("not_permitted", "the kernel refused with EPERM: not permitted (needs root and CAP_SYS_ADMIN; "
                                   "some PF drivers refuse while VFs are assigned to VMs)",
                  "Run as root (become: true); release the VFs from their VMs."),
    errno.EACCES: ("not_permitted", "permission denied (EACCES) writing the sysfs attribute",
                   "Run as root (become: true)."),
    errno.EIO: ("io_error", "the PF driver failed to enable SR-IOV (EIO)",
                "Check dmesg for the PF driver's message; the firmware may have SR-IOV disabled."),
    errno.ENOSPC: ("no_resources", "no space for the VFs (ENOSPC): bus numbers or interrupt vectors ran out",
                   "Try fewer VFs, or 'pci=realloc'/'pci=assign-busses'."),
    errno.EOPNOTSUPP: ("not_supported", "the PF driver does not support this (EOPNOTSUPP)",
                       "Check the driver's documentation (some need a module parameter such as max_vfs)."),
    errno.ENODEV: ("no_device", "the device is gone (ENODEV)", "Check that the PF is still present (lspci)."),
}


def errno_failure(address, attr, value, exc, step="write"):
    """A failure dict for an OSError writing ``attr`` (every errno gets a message and a remedy)."""
    code_no = getattr(exc, "errno", None)
    if step == "open" and code_no == errno.ENOENT:
        return _fail(address, "not_sriov", "%s has no %s: the device is not SR-IOV capable (or CONFIG_PCI_IOV is "
                                           "off)" % (address, attr), "Name an SR-IOV physical function.",
                     errno=code_no, attribute=attr)
    code, text, remedy = _ERRNO.get(code_no, ("sysfs_write", "writing failed: %s" % (
        os.strerror(code_no) if code_no else exc), "Check dmesg for the PF driver's message."))
    return _fail(address, code, "%s: writing %s to %s: %s" % (address, value, attr, text), remedy,
                 errno=code_no, errno_name=errno.errorcode.get(code_no), attribute=attr)


class SysfsWriter(vfio.SysfsWriter):
    """iommu_vfio.SysfsWriter whose attribute writes tell an open failure from a write failure."""

    def write_attr_checked(self, rel, text):
        try:
            fd = os.open(self.path(rel), os.O_WRONLY)
        except OSError as e:
            return "open", e
        try:
            os.write(fd, text.encode())
        except OSError as e:
            return "write", e
        finally:
            os.close(fd)
        return None, None


def execute(plan, reader, writer):
    """Carry out the plan; returns what the kernel shows afterwards. Raises SriovError on a refusal."""
    base = "/sys/bus/pci/devices/%s" % plan["pf"]
    for action in plan["actions"]:
        if hasattr(writer, "write_attr_checked"):
            step, exc = writer.write_attr_checked("%s/%s" % (base, action["attr"]), action["value"])
        else:
            step, exc = None, None
            try:
                writer.write_attr("%s/%s" % (base, action["attr"]), action["value"])
            except OSError as e:
                step, exc = "write", e
        if exc is not None:
            failure = errno_failure(plan["pf"], action["attr"], action["value"], exc, step)
            raise SriovError(_summary([failure]), [failure])
    after = reader.sriov(plan["pf"]) or {}
    problems = []
    if after.get("numvfs") != plan["num_vfs_after"]:
        problems.append(_fail(plan["pf"], "not_applied", "%s has %s VFs after the write, not %d"
                              % (plan["pf"], after.get("numvfs"), plan["num_vfs_after"]),
                              "Check dmesg for the PF driver's message."))
    elif len(after.get("vfs") or []) != plan["num_vfs_after"]:
        problems.append(_fail(plan["pf"], "not_applied", "%s shows %d virtfn links, not %d"
                              % (plan["pf"], len(after.get("vfs") or []), plan["num_vfs_after"]),
                              "Check dmesg for the PF driver's message."))
    if problems:
        raise SriovError(_summary(problems), problems)
    f = plan["file"]
    if f["changed"]:
        if f["after"] is None:
            writer.remove_file(f["path"])
        else:
            writer.write_file(f["path"], f["after"])
    return after
