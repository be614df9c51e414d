# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code of the VM-definition parsers: the error class, value normalisation, sizes,
PCI addresses, and the step from a parsed definition to the gate's profiles and params.

Both parsers (``libvirt.py``, ``qemu.py``) fill a :class:`Definition` with what QEMU would
receive; :func:`finish` turns it into the documented result::

    {source, name, arch, machine, viommu: {model, properties}, devices, iommufd, memory,
     profiles, params, problems}

Pure stdlib; nothing here touches a host. docs/vm-definitions.md has the mapping tables.
"""

from __future__ import absolute_import, division, print_function

import json
import re

from ansible_collections.iommu.host.plugins.module_utils import nodeset

__metaclass__ = type

#: Largest input accepted (characters of XML or of a command line, or argv words in total).
MAX_INPUT_CHARS = 4 * 1024 * 1024
#: Largest number of argv words accepted.
MAX_WORDS = 100000
#: Largest NUMA node or CPU number read from a node/CPU set.
MAX_NODE = nodeset.MAX_NODE

#: QEMU device name of each vIOMMU model -> the gate profile that judges it.
VIOMMU_PROFILES = {
    "intel-iommu": "intel_viommu",
    "amd-iommu": "amd_viommu",
    "arm-smmuv3": "smmuv3_accel",
    "virtio-iommu": "virtio_viommu",
}

#: QEMU device (driver) names -> vIOMMU model. virtio-iommu is the alias QEMU (and libvirt)
#: use for virtio-iommu-pci; virtio-iommu-device is the transport-less device (virt, microvm).
VIOMMU_DRIVERS = {
    "intel-iommu": "intel-iommu",
    "amd-iommu": "amd-iommu",
    "arm-smmuv3": "arm-smmuv3",
    "virtio-iommu": "virtio-iommu",
    "virtio-iommu-pci": "virtio-iommu",
    "virtio-iommu-device": "virtio-iommu",
}

#: QOM parents whose -global properties a device inherits (object_apply_global_props() applies a
#: global to every object that object_dynamic_cast()s to the global's driver).
QOM_PARENTS = {
    "intel-iommu": ("x86-iommu",),
    "amd-iommu": ("x86-iommu",),
    "arm-smmuv3": ("arm-smmu",),
    "virtio-iommu": ("virtio-iommu-pci",),
    "virtio-iommu-pci": ("virtio-iommu",),
    "vfio-pci-nohotplug": ("vfio-pci",),
}

#: Properties that place a device; they are kept in viommu.properties but are not gate parameters.
PLACEMENT = frozenset(("id", "bus", "addr", "multifunction", "primary-bus", "driver", "failover_pair_id",
                       "x-pci-slot", "x-pci-bus"))

#: vIOMMU properties QEMU never compares with the host IOMMU (so there is nothing for the gate to judge):
#: interrupt remapping is emulated for the guest; the host's own remapping is judged by
#: host.interrupt_remapping whatever the VM says. Both spellings exist in QEMU 10.0.13 and 11.1.3
#: (tests/fixtures/qemu-strings/); other unjudged properties stay in ``problems``.
NO_HOST_REQUIREMENT = {
    "intel-iommu": frozenset(("intremap",)),
    "amd-iommu": frozenset(("intremap",)),
}

#: vfio-pci properties the gate uses (underscore spelling = gate parameter, unless VFIO_PARAM_NAMES renames it).
VFIO_GATE_PROPERTIES = ("enable-migration", "x-device-dirty-page-tracking", "ats")

#: vfio-pci properties whose gate parameter has another name: vfio-pci's ats (QEMU 11.1+) is vfio_ats, since
#: ats is arm-smmuv3's.
VFIO_PARAM_NAMES = {"ats": "vfio_ats"}

_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")
_INT_RE = re.compile(r"^[+-]?(?:0x[0-9a-f]+|[0-9]+)$")
_PCI_RE = re.compile(r"^(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_QEMU_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|0x[0-9a-f]+)([bkmgtpe]?)$")


class VMDefinitionError(ValueError):
    """The input is not a VM definition that can be read (malformed, unsafe or too large)."""


def plain(value, depth=0):
    """Plain Python types from anything Ansible hands over (tagged / unsafe str subclasses, tuples)."""
    if depth > 50:
        raise VMDefinitionError("the input is nested more than 50 levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        # an exact str, whatever the subclass (AnsibleUnsafeText, 2.19's tagged str) overrides
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return dict((plain(k, depth + 1), plain(v, depth + 1)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    return value


def text(value):
    """A short readable rendering of a value for messages."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:77] + "..."
    try:
        out = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        out = repr(value)
    return out if len(out) <= 80 else out[:77] + "..."


def norm_value(value):
    """QEMU property value, normalised: on/off/yes/no/true/false -> bool, integers -> int.

    Strings that are neither stay strings (``auto``, ``host``, ``iommu0``). JSON values keep their
    type (a JSON bool is a bool, a JSON number an int); lists are normalised element by element.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, (list, tuple)):
        return [norm_value(v) for v in value]
    if isinstance(value, dict):
        return dict((k, norm_value(v)) for k, v in value.items())
    if not isinstance(value, str):
        return value
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    if _INT_RE.match(low) and len(low) <= 40:
        digits = low.lstrip("+-")
        number = int(digits, 16) if digits.startswith("0x") else int(digits)
        return -number if low.startswith("-") else number
    return value


def norm_props(props):
    """Properties with normalised values; placement properties (id, bus, addr) keep their text."""
    return dict((str(k), v if k in PLACEMENT else norm_value(v)) for k, v in props.items())


def qemu_size(value, default_unit="b"):
    """Bytes from a QEMU size (qemu_strtosz): ``4G``, ``219136k``, ``1.5g``, ``0x1000``; ints are
    taken in ``default_unit`` (-m uses MiB, object and device sizes bytes). None when unreadable."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * units[default_unit] if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _QEMU_SIZE_RE.match(value.strip().lower())
    if not m or len(value) > 40:
        return None
    number, suffix = m.group(1), m.group(2) or default_unit
    if number.startswith("0x"):
        if m.group(2):
            return None  # QEMU refuses hex with a suffix
        amount = int(number, 16)
    elif "." in number:
        amount = float(number)
    else:
        amount = int(number)
    result = int(amount * units[suffix])
    return result if result < (1 << 64) else None


def libvirt_scale(value, unit, default_unit="KiB"):
    """Bytes from a libvirt scaled integer (virScaleInteger): unit b/bytes, k/KiB (1024), KB (1000),
    M/MiB, MB, G/GiB, GB, T/TiB, TB, P/PiB, PB, E/EiB, EB. None when unreadable."""
    if value is None:
        return None
    text_value = str(value).strip()
    if len(text_value) > 40:
        return None
    try:
        number = int(text_value, 10)
    except ValueError:
        return None
    if number < 0:
        return None
    unit = (unit or default_unit).strip()
    low = unit.lower()
    if low in ("b", "bytes", "byte"):
        return number
    powers = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
    if not low or low[0] not in powers:
        return None
    rest = low[1:]
    if rest in ("", "ib"):
        base = 1024
    elif rest == "b":
        base = 1000
    else:
        return None
    result = number * base ** powers[low[0]]
    return result if result < (1 << 64) else None


def pci_address(value):
    """``0000:01:00.0`` from ``01:00.0``, ``0000:01:00.0`` (any case); None if not an address."""
    if not isinstance(value, str):
        return None
    m = _PCI_RE.match(value.strip().lower())
    if not m:
        return None
    return "%04x:%02x:%02x.%d" % (int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16),
                                  int(m.group(4)))


def mdev_uuid(value):
    if not isinstance(value, str):
        return None
    low = value.strip().lower()
    return low if _UUID_RE.match(low) else None


def parse_nodeset(value):
    """Set of ints from a libvirt/QEMU node or CPU set: ``0-3,^2,5``; None when unreadable."""
    return nodeset.parse(value)


def format_nodeset(nodes):
    """``0-3,5`` from a set of ints (None stays None)."""
    return None if nodes is None else nodeset.text(nodes)


def machine_version(machine):
    """(major, minor) of a versioned x86 machine type (pc-q35-9.1, pc-i440fx-8.2, pc-9.0); None
    for unversioned aliases (q35, pc) and vendor types (pc-q35-rhel9.4.0)."""
    if not isinstance(machine, str):
        return None
    m = re.match(r"^pc-(?:q35-|i440fx-)?([0-9]+)\.([0-9]+)$", machine.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def gate_params():
    """The gate's parameter table (policy.params.PARAMS)."""
    from ansible_collections.iommu.host.plugins.module_utils.policy.params import PARAMS
    return PARAMS


def empty_memory():
    return {
        "size": None,          # initial guest RAM, bytes
        "max_size": None,      # maxmem (memory hotplug), bytes
        "slots": None,         # memory hotplug slots
        "locked": False,       # memory locked (libvirt <locked/>, QEMU -overcommit mem-lock=on)
        "hard_limit": None,    # libvirt <memtune><hard_limit>, bytes
        "shared": False,       # memory shared with other processes (memfd/file backing with share=on)
        "source": None,        # anonymous | file | memfd | hugetlbfs
        "hugepages": [],       # [{size: bytes or None (host default), nodeset: guest NUMA nodes or None}]
        "host_nodes": None,    # host NUMA nodes of the memory (numatune / backend host-nodes)
        "policy": None,        # strict/bind, preferred, interleave, restrictive
        "numa": [],            # guest NUMA cells: {id, cpus, size, host_nodes, policy, hugepage_size}
    }


class Definition(object):
    """What a parser found, in QEMU's terms, before the gate's profiles and params are derived."""

    def __init__(self, source):
        self.source = source
        self.name = None
        self.arch = None
        self.machine = None
        self.machine_props = {}
        self.viommus = []       # [(model, {property: value}, origin)]
        self.devices = []       # [{"address": str} or {"mdev": uuid}, plus "iommufd": bool|None, "props": {...}]
        self.iommufd_objects = []
        self.iommufd_default = None  # libvirt domain-wide iommufd setting
        self.memory = empty_memory()
        self.problems = []

    def problem(self, message):
        if message not in self.problems:
            self.problems.append(message)


def implied_params(defn, model, props, problems):
    """Gate params QEMU's defaults imply for this machine type although the definition does not set
    them: intel-iommu aw-bits is 39 on machine types <= 9.1 (hw/i386/pc.c, pc_compat_9_1) and 48 since;
    virtio-iommu-pci aw-bits is 39 on every pc/q35 machine type (machine-type compat defaults)."""
    out = {}
    if model == "virtio-iommu" and "aw-bits" not in props and isinstance(defn.machine, str) \
            and re.match(r"^(pc|q35)(-|$)", defn.machine.strip()):
        # hw/i386/pc_q35.c pc_q35_compat_defaults / pc_piix.c: virtio-iommu-pci aw-bits 39 on x86 PCs
        out["aw_bits"] = 39
    if model != "intel-iommu" or "aw-bits" in props:
        return out
    version = machine_version(defn.machine)
    if version is not None and version <= (9, 1):
        out["aw_bits"] = 39
    elif version is None and defn.machine and not re.match(r"^(q35|pc)$", defn.machine.strip()):
        problems.append("intel-iommu aw-bits is not given and machine type %s is not a versioned upstream "
                        "type: the gate assumes QEMU's current default (48; it is 39 on machine types up "
                        "to 9.1)" % defn.machine)
    return out


def _gate_name(prop):
    return prop.replace("-", "_")


def finish(defn):
    """The documented result dict from a filled Definition."""
    problems = list(defn.problems)
    known = gate_params()

    # --- the vIOMMU
    model, props = None, {}
    if defn.viommus:
        model, props, origin = defn.viommus[0]
        for other_model, other_props, other_origin in defn.viommus[1:]:
            if other_model != model:
                problems.append("more than one vIOMMU model (%s from %s, %s from %s): the gate judges one; "
                                "it judges %s" % (model, origin, other_model, other_origin, model))
            else:
                mine = dict((k, v) for k, v in props.items() if k not in PLACEMENT)
                theirs = dict((k, v) for k, v in other_props.items() if k not in PLACEMENT)
                if mine != theirs:
                    problems.append("%s instances differ (%s: %s; %s: %s): the gate judges the first" % (
                        model, origin, text(mine), other_origin, text(theirs)))

    # --- devices and the iommufd backend
    devices, iommufd_flags = [], []
    for dev in defn.devices:
        ident = dev.get("address") or dev.get("mdev")
        if ident and ident not in devices:
            devices.append(ident)
        if dev.get("iommufd") is not None:
            iommufd_flags.append(bool(dev["iommufd"]))
    if iommufd_flags and all(iommufd_flags):
        iommufd = True
    elif iommufd_flags and any(iommufd_flags):
        iommufd = True
        problems.append("some assigned devices use the iommufd backend and some the legacy VFIO container; "
                        "the gate is asked for iommufd (the stricter of the two)")
    elif iommufd_flags:
        iommufd = False
    else:
        iommufd = bool(defn.iommufd_objects) if defn.iommufd_default is None else bool(defn.iommufd_default)
    if not devices:
        problems.append("no assigned host device (vfio-pci, mdev) in the definition: the gate has nothing "
                        "to judge per device")

    # --- profiles
    profiles = ["passthrough"]
    if model == "arm-smmuv3" and props.get("accel") is not True:
        if devices:
            problems.append("arm-smmuv3 without accel=on is QEMU's emulated SMMUv3 (also -machine virt,iommu=smmuv3): "
                            "it cannot translate for an assigned VFIO device (\"SMMUv3 does not support "
                            "notification on MAP\"); the gate has no profile for it and judges passthrough only")
    elif model:
        profiles.append(VIOMMU_PROFILES[model])

    # --- params
    params = {"iommufd": iommufd, "viommu": model or "none"}
    for key in ("iommufd", "viommu"):
        if known and key not in known:
            problems.append("gate parameter %s is not known to this gate version" % key)
            params.pop(key)
    for prop, value in props.items():
        if prop in PLACEMENT:
            continue
        name = _gate_name(prop)
        if name in known:
            params[name] = value
        elif model == "arm-smmuv3" and prop == "accel":
            continue  # judged through the profile: accel=on selects smmuv3_accel
        elif prop in NO_HOST_REQUIREMENT.get(model, ()):
            continue
        else:
            problems.append("%s property %s (%s) is not judged by the gate" % (model, prop, text(value)))
    for name, value in implied_params(defn, model, props, problems).items():
        if name in known and name not in params:
            params[name] = value
    vfio_seen = {}
    for dev in defn.devices:
        for prop in VFIO_GATE_PROPERTIES:
            if prop not in dev.get("props", {}):
                continue
            value = dev["props"][prop]
            label = dev.get("address") or dev.get("mdev") or dev.get("label") or "vfio-pci"
            if prop in vfio_seen and vfio_seen[prop][0] != value:
                problems.append("vfio-pci %s differs between devices (%s: %s, %s: %s): the gate takes one value; "
                                "it is given %s" % (prop, vfio_seen[prop][1], text(vfio_seen[prop][0]), label,
                                                    text(value), text(vfio_seen[prop][0])))
                continue
            if prop in vfio_seen:
                continue
            vfio_seen[prop] = (value, label)
            name = VFIO_PARAM_NAMES.get(prop) or _gate_name(prop)
            if name in known:
                params[name] = value
            else:
                problems.append("vfio-pci property %s (%s) is not judged by the gate" % (prop, text(value)))

    return {
        "source": defn.source,
        "name": defn.name,
        "arch": defn.arch,
        "machine": defn.machine,
        "viommu": {"model": model, "properties": dict(props)},
        "devices": devices,
        "iommufd": iommufd,
        "memory": defn.memory,
        "profiles": profiles,
        "params": params,
        "problems": problems,
    }
