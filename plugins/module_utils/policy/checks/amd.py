# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AMD vIOMMU checks (profile amd_viommu): QEMU amd-iommu with assigned devices.

viommu.amd.dma_remap (scope vm). QEMU checks no host AMD-Vi capability for amd-iommu, only its
own dma-remap property. Rules mirror QEMU hw/i386/amd_iommu.c amdvi_iommu_notify_flag_changed().
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.params import _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, PASS, _check, _r

__metaclass__ = type


@_check("viommu.amd.dma_remap", "vm", "amd-iommu dma-remap=on for VFIO",
        "params.{dma_remap,qemu_version}",
        "QEMU hw/i386/amd_iommu.c amdvi_iommu_notify_flag_changed(): v10.2.0+ (7e24cddf1f) \"device %02x.%02x.%x "
        "requires dma-remap=1\"; v10.1 and earlier \"device %02x.%02x.%x requires iommu notifier which is not "
        "currently supported\"; QEMU applies no host-capability check for amd-iommu")
def _amd_dma_remap(ctx, params):
    ev = {"params.dma_remap": params.get("dma_remap"), "params.qemu_version": params.get("qemu_version")}
    if ctx.qemu < (10, 2, 0):
        return _r(FAIL, "QEMU %s cannot put VFIO devices behind amd-iommu: \"device BB.DD.F requires iommu notifier "
                        "which is not currently supported\" (BB.DD.F = the device's guest address)."
                  % _version_text(ctx.qemu), ev, "preflight parameters",
                  "Use QEMU >= 10.2 with amd-iommu,dma-remap=on, or intel-iommu.")
    if not params.get("dma_remap"):
        return _r(FAIL, "dma-remap is off; QEMU refuses VFIO devices behind amd-iommu: \"device BB.DD.F requires "
                        "dma-remap=1\" (BB.DD.F = the device's guest address).", ev, "preflight parameters",
                  "Add dma-remap=on to -device amd-iommu.")
    return _r(PASS, "dma-remap=on, as VFIO behind amd-iommu requires (QEMU checks no host AMD-Vi capability).", ev,
              "preflight parameters")
