# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device selection: which PCI functions and mdevs of the host the gate applies to.

``select_devices`` resolves ``all_vfio`` (every PCI device bound to vfio-pci), PCI addresses,
``vendor:device`` patterns and mdev UUIDs against the facts.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.iommu.host.plugins.module_utils import iommu_sysfs as sysfs

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dict, _int, _text

__metaclass__ = type


ALL_VFIO = "all_vfio"

_VENDOR_DEVICE_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4}|\*)$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _on_vfio_driver(dev):
    """Bound to any VFIO driver: the facts' vfio.bound (kernel evidence), else driver == vfio-pci (0.1 facts)."""
    bound = _dict(dev.get("vfio")).get("bound")
    return bound if isinstance(bound, bool) else dev.get("driver") == "vfio-pci"


def select_devices(facts, devices):
    """Resolve device specs against the facts.

    Specs: ``all_vfio`` (every PCI device bound to a VFIO driver: vfio-pci or a variant), a PCI address
    (``0000:01:00.0`` or ``01:00.0``), ``vendor:device`` (``8086:10d3``, ``8086:*``)
    or an mdev UUID. A string may hold several, separated by commas or spaces.
    Returns (pci addresses, mdev uuids, [(spec, problem)], [(spec, matched)]).
    """
    facts = _dict(facts)
    pci_devs = _dict(facts.get("devices"))
    mdevs = _dict(facts.get("mdevs"))
    if devices is None:
        specs = [ALL_VFIO]
    elif isinstance(devices, str):
        specs = [s for s in re.split(r"[\s,]+", devices) if s]
    elif isinstance(devices, (list, tuple)):
        specs = []
        for item in devices:
            if isinstance(item, str):
                specs.extend(s for s in re.split(r"[\s,]+", item) if s)
            else:
                specs.append(item)
    else:
        specs = [devices]
    pci, mdev, problems, matched = [], [], [], []
    for spec in specs:
        if not isinstance(spec, str):
            problems.append((_text(spec), "not a PCI address, vendor:device, mdev UUID or all_vfio"))
            continue
        text = spec.strip().lower()
        found = []
        addr = sysfs.normalize_pci_address(text)
        if text.replace("-", "_") == ALL_VFIO:
            found = [a for a in sorted(pci_devs) if _on_vfio_driver(_dict(pci_devs[a]))]
            if not found:
                problems.append((spec, "no PCI device is bound to a VFIO driver (vfio-pci or a variant) on this host"))
            pci.extend(a for a in found if a not in pci)
        elif addr:
            if addr in pci_devs:
                found = [addr]
                if addr not in pci:
                    pci.append(addr)
            else:
                problems.append((spec, "no PCI device %s on this host" % addr))
        elif _VENDOR_DEVICE_RE.match(text):
            vid, did = _VENDOR_DEVICE_RE.match(text).groups()
            for addr in sorted(pci_devs):
                dev = _dict(pci_devs[addr])
                if _int(dev.get("vendor_id")) == int(vid, 16) and (
                        did == "*" or _int(dev.get("device_id")) == int(did, 16)):
                    found.append(addr)
                    if addr not in pci:
                        pci.append(addr)
            if not found:
                problems.append((spec, "no PCI device with vendor:device %s on this host" % text))
        elif _UUID_RE.match(text):
            if text in mdevs:
                found = [text]
                if text not in mdev:
                    mdev.append(text)
            else:
                problems.append((spec, "no mediated device %s on this host" % text))
        else:
            problems.append((spec, "not a PCI address, vendor:device, mdev UUID or all_vfio"))
        if found:
            matched.append((spec, found))
    return pci, mdev, problems, matched
