# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ACS checks: are IOMMU groups backed by the hardware's isolation (issue 12).

host.acs_override (scope host): ``pcie_acs_override`` on the kernel command line (patched kernels:
Proxmox VE, linux-zen) makes the kernel pretend that ports and multi-function devices have ACS,
so it splits IOMMU groups the hardware does not isolate: peer-to-peer DMA between the split
devices can bypass the IOMMU. The check recomputes the groups the kernel makes without the override
(drivers/iommu/iommu.c pci_device_group: pci_acs_path_enabled with REQ_ACS_FLAGS, and
drivers/pci/pci.c pci_acs_enabled per PCIe port type) from the ACS facts, and names the devices
whose groups differ.

device.acs_path (scope device): the ACS of every bridge and port between the device and the
root complex (informational without the override: the kernel's groups already account for a
missing ACS; not applicable to integrated endpoints on the root bus).

QEMU does not look at the host's ACS (hw/vfio checks no ACS): these findings never refuse
a VM start; their qemu_effect is None.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dev_path, _dict, _get, _list
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import NA, PASS, WARN, _check, _r

__metaclass__ = type

_QEMU = "QEMU does not check ACS (it trusts the host's IOMMU groups)"
_RULE = ("Linux drivers/iommu/iommu.c pci_device_group (pci_acs_path_enabled, REQ_ACS_FLAGS = SV|RR|CR|UF) "
         "and drivers/pci/pci.c pci_acs_enabled; QEMU checks no ACS")
# PCIe port types whose own ACS decides (pci_acs_enabled); bridges that never isolate
_ACS_PORTS = ("root_port", "downstream_port")
_NEVER = ("pcie_to_pci_bridge", "pci_to_pcie_bridge", "rc_event_collector")


def kernel_acs_enabled(acs):
    """pci_acs_enabled(dev, REQ_ACS_FLAGS) from a device's ``acs`` facts: True, False, or None (unknown).

    Device-specific quirks of the kernel (drivers/pci/quirks.c pci_dev_acs_enabled) are not modelled."""
    acs = _dict(acs)
    if not acs or acs.get("readable") in (None, "none", "header"):
        return None
    if acs.get("pcie") is False:
        return False                       # conventional PCI: a shared bus
    ptype = acs.get("port_type")
    if ptype in _NEVER:
        return False
    if ptype in _ACS_PORTS or acs.get("multifunction") is True:
        if acs.get("status") == "present":
            return acs.get("isolates") is True
        if acs.get("status") == "absent":
            return False
        return None                        # extended config space not readable
    return True                            # single-function endpoints, upstream ports: nothing to check


def _acs_of(devices, addr):
    return _dict(devices.get(addr)).get("acs")


def path_enabled(devices, bridges):
    """pci_acs_path_enabled(bridges[0], NULL): every bridge from there to the root enables ACS."""
    unknown = False
    for b in bridges:
        ok = kernel_acs_enabled(_acs_of(devices, b))
        if ok is False:
            return False
        if ok is None:
            unknown = True
    return None if unknown else True


def anchor(devices, addr, memo=None, depth=0):
    """The key of the group the kernel gives ``addr`` without the override (None: unknown)."""
    memo = {} if memo is None else memo
    if addr in memo:
        return memo[addr]
    memo[addr] = None
    dev = _dict(devices.get(addr))
    upstream = [b for b in _list(dev.get("upstream")) if isinstance(b, str)]
    result = ("dev", addr)
    for i, bridge in enumerate(upstream):
        ok = path_enabled(devices, upstream[i:])
        if ok is None:
            result = None
            break
        if ok:
            break
        result = anchor(devices, bridge, memo, depth + 1) if depth < 32 else None
        break
    if result == ("dev", addr) and not dev.get("physfn"):
        slot = addr.rsplit(".", 1)[0]
        siblings = sorted(a for a in devices if a.rsplit(".", 1)[0] == slot and not _dict(devices[a]).get("physfn"))
        if len(siblings) > 1:
            own = kernel_acs_enabled(_dict(dev).get("acs"))
            if own is None:
                result = None
            elif own is False:
                result = ("slot", slot)
    memo[addr] = result
    return result


def split_groups(devices):
    """Devices the kernel would put in one group (no override) but that sit in different groups.

    Returns (splits [{anchor, devices {addr: group}}], unknown [addrs whose ACS path cannot be read])."""
    by_anchor, unknown = {}, []
    memo = {}
    for addr in sorted(devices):
        dev = _dict(devices[addr])
        if "upstream" not in dev or not dev.get("iommu_group"):
            continue
        key = anchor(devices, addr, memo)
        if key is None:
            unknown.append(addr)
            continue
        by_anchor.setdefault(key, {})[addr] = dev.get("iommu_group")
    splits = []
    for key, members in sorted(by_anchor.items()):
        if len(set(members.values())) > 1:
            splits.append({"anchor": key[1], "devices": members})
    return splits, unknown


def _override(ctx):
    values = _list(_get(ctx.cmdline, "args", "pcie_acs_override"))
    return ["" if v is True else str(v) for v in values]


@_check("host.acs_override", "host", "IOMMU groups not split by pcie_acs_override",
        "cmdline.args.pcie_acs_override, acs.override, devices.*.{iommu_group,upstream,acs}",
        _RULE + "; pcie_acs_override= (out-of-tree ACS override patch) fakes ACS on ports and "
        "multi-function devices")
def _host_acs_override(ctx, params):
    values = _override(ctx)
    ev = {"cmdline.args.pcie_acs_override": _get(ctx.cmdline, "args", "pcie_acs_override")}
    source = "/proc/cmdline; sysfs /sys/bus/pci/devices/*/config (ACS)"
    if not values:
        return _r(PASS, "pcie_acs_override is not on the kernel command line: the IOMMU groups follow the "
                        "hardware's ACS. %s." % _QEMU, ev, source)
    setting = "pcie_acs_override=%s" % ",".join(values)
    if not any("upstream" in _dict(d) for d in ctx.devices.values()):
        return _r(WARN, "%s is on the kernel command line: isolation is not guaranteed for the groups it split, "
                        "and the facts have no ACS data to tell which (gathered by an older iommu.host). %s."
                  % (setting, _QEMU), ev, source,
                  "Gather the facts again with iommu.host.iommu_facts, and remove pcie_acs_override unless you "
                  "accept peer-to-peer DMA between the devices it separates.")
    splits, unknown = split_groups(ctx.devices)
    ev["split"] = [dict(s["devices"]) for s in splits]
    if unknown:
        ev["acs_unknown"] = unknown
    if splits:
        parts = []
        for s in splits:
            parts.append("%s (below %s)" % (", ".join("%s in group %s" % (a, g) for a, g in sorted(s["devices"].items())),
                                            s["anchor"]))
        return _r(WARN, "%s is on the kernel command line and split IOMMU groups the hardware does not isolate: "
                        "isolation is not guaranteed between %s - without ACS these devices can reach each "
                        "other by peer-to-peer DMA that bypasses the IOMMU. %s."
                  % (setting, "; ".join(parts), _QEMU), ev, source,
                  "Assign the devices of each split set to the same VM (or keep them on the host), move them to "
                  "slots behind ports with ACS, or remove pcie_acs_override from the kernel command line.")
    if unknown:
        return _r(WARN, "%s is on the kernel command line: isolation is not guaranteed, and the ACS of the ports "
                        "above %s cannot be read (extended config space not readable: gather facts as root), so "
                        "the split groups cannot be named. %s." % (setting, ", ".join(unknown[:8]), _QEMU),
                  ev, source, "Gather the facts as root (become: true), or remove pcie_acs_override.")
    return _r(PASS, "%s is on the kernel command line, but every IOMMU group is what the hardware's ACS gives "
                    "(no group was split by it; a mainline kernel ignores the option). %s." % (setting, _QEMU),
              ev, source)


@_check("device.acs_path", "device", "ACS on the path to the root complex",
        "devices.<a>.{upstream,acs_path}, devices.<bridge>.acs, cmdline.args.pcie_acs_override",
        _RULE + "; informational unless pcie_acs_override is on",
        mdev="mediated device: its DMA goes through its parent's IOMMU group")
def _device_acs_path(ctx, addr, dev, params):
    ev = {_dev_path(addr, "upstream"): dev.get("upstream"), _dev_path(addr, "acs_path"): dev.get("acs_path")}
    source = "sysfs /sys/bus/pci/devices/<bridge>/config (ACS extended capability 0x000d)"
    if not isinstance(dev.get("upstream"), list):
        return _r(NA, "The facts have no upstream path for this device (gathered by an older iommu.host).", ev, "facts")
    upstream = [b for b in dev["upstream"] if isinstance(b, str)]
    if not upstream:
        return _r(NA, "Integrated endpoint on the root bus: no bridge or port between it and the root complex, "
                      "so ACS does not apply.", ev, source)
    lacking, unknown, fine = [], [], []
    for b in upstream:
        acs = _dict(_acs_of(ctx.devices, b))
        ok = kernel_acs_enabled(acs)
        what = "%s (%s)" % (b, acs.get("port_type") or ("conventional PCI" if acs.get("pcie") is False else "?"))
        if ok is False:
            lacking.append(what + (": %s" % acs["note"] if acs.get("note") else ": ACS not enabled (SV/RR/CR/UF)"))
        elif ok is None:
            unknown.append(what + (": %s" % acs["note"] if acs.get("note") else ": ACS not read"))
        else:
            fine.append(what)
    override = _override(ctx)
    group = dev.get("iommu_group")
    members = [m for m in _list(dev.get("group_members")) if isinstance(m, str)]
    if not lacking and not unknown:
        return _r(PASS, "Every bridge/port above it isolates with ACS (%s). %s." % (", ".join(fine), _QEMU), ev, source)
    if override and (lacking or unknown):
        return _r(WARN, "Isolation is not guaranteed: pcie_acs_override=%s is on and the path to the root complex "
                        "lacks ACS at %s. %s." % (",".join(override), "; ".join(lacking + unknown), _QEMU), ev, source,
                  "Assign every device below that port to the same VM, use a slot behind a port with ACS, or "
                  "remove pcie_acs_override.")
    if lacking:
        return _r(PASS, "Informational: no ACS at %s; the kernel therefore keeps what is below it in one IOMMU group "
                        "(group %s%s), so VFIO assigns them together and isolation holds per group. %s."
                  % ("; ".join(lacking), group, ": with %s" % ", ".join(members) if members else "", _QEMU),
                  ev, source)
    return _r(PASS, "Informational: the ACS of %s is unknown; the IOMMU groups are the kernel's own (no "
                    "pcie_acs_override). %s." % ("; ".join(unknown), _QEMU), ev, source)
