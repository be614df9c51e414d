# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AMD vIOMMU checks (profile amd_viommu): QEMU amd-iommu with assigned devices.

viommu.amd.dma_remap (scope vm). QEMU checks no host AMD-Vi capability for amd-iommu, only its
own properties. Rules mirror QEMU hw/i386/amd_iommu.c amdvi_iommu_notify_flag_changed() per
release: up to 10.1 every VFIO device behind amd-iommu is refused when VFIO registers its IOMMU
notifier; from 10.2 dma-remap=on makes it work, and without it the device is accepted but left
untranslated (QEMU 11.1.3 in the test bed starts it).
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy import releases
from ansible_collections.iommu.host.plugins.module_utils.policy.params import _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, PASS, WARN, _check, _r
from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _get

__metaclass__ = type


@_check("viommu.amd.dma_remap", "vm", "amd-iommu translates VFIO devices (dma-remap)",
        "params.{dma_remap,pci_id,qemu_version}",
        "QEMU hw/i386/amd_iommu.c amdvi_iommu_notify_flag_changed(): up to 10.1 \"device %02x.%02x.%x requires "
        "iommu notifier which is not currently supported\" (hw/vfio \"memory listener initialization failed: "
        "Region amd_iommu: ...\"); from 10.2 (7e24cddf1f) dma-remap=on; dma-remap (10.2+) and pci-id (10.1+) are "
        "properties of those releases only", verified=((10, 0), (11, 1)))
def _amd_dma_remap(ctx, params):
    ev = {"params.dma_remap": params.get("dma_remap"), "params.pci_id": params.get("pci_id"),
          "params.qemu_version": params.get("qemu_version")}
    given = params.get("_given") or []
    missing = ["\"%s\"" % releases.missing_property(p, ctx.qemu) for p in ("pci_id", "dma_remap")
               if p in given and not releases.has_property(p, ctx.qemu)]
    if missing:
        return _r(FAIL, "QEMU %s has no such amd-iommu property: %s." % (_version_text(ctx.qemu), "; ".join(missing)),
                  ev, "preflight parameters", "Use the properties of QEMU %s (dma-remap: 10.2+, pci-id: 10.1+)."
                  % _version_text(ctx.qemu))
    if not ctx.since(10, 2):
        addr = ctx.first_device()
        where = addr
        if not params.get("iommufd", True):  # the legacy container reports it while setting the group up
            where = "%s: failed to setup container for group %s" % (addr, _get(ctx.dev(addr), "iommu_group"))
        return _r(FAIL, "QEMU %s cannot put VFIO devices behind amd-iommu: \"vfio %s: memory listener initialization "
                        "failed: Region amd_iommu: device BB.DD.F requires iommu notifier which is not currently "
                        "supported\" (BB.DD.F = the device's guest address)." % (_version_text(ctx.qemu), where),
                  ev, "preflight parameters", "Use QEMU 10.2 or later with amd-iommu,dma-remap=on, or intel-iommu.")
    if not params.get("dma_remap"):
        return _r(WARN, "dma-remap is off: QEMU %s starts the VM, but amd-iommu does not translate the assigned "
                        "devices' DMA; when the guest enables AMD-Vi for them, QEMU reports \"device BB.DD.F requires "
                        "dma-remap=1\" and the guest gets no isolation for them." % _version_text(ctx.qemu), ev,
                  "preflight parameters", "Add dma-remap=on to -device amd-iommu.")
    return _r(PASS, "dma-remap=on, as VFIO behind amd-iommu requires (QEMU checks no host AMD-Vi capability).", ev,
              "preflight parameters")
