# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""virtio-iommu checks (profile virtio_viommu): QEMU virtio-iommu-pci with assigned devices.

viommu.virtio.granule (scope device). When VFIO sets the host IOMMU device on virtio-iommu,
QEMU intersects the vIOMMU's page-size mask (its ``granule`` property) with the host container's
(hw/virtio/virtio-iommu.c virtio_iommu_set_page_size_mask()): no common size refuses the device
with "virtio-iommu reports a page size mask 0x%lx incompatible with currently supported mask 0x%lx".
The iommufd backend's container reports the host page size only (hw/vfio/iommufd.c: pgsizes =
qemu_real_host_page_size()), so a granule larger than the host page is refused there.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dev_path
from ansible_collections.iommu.host.plugins.module_utils.policy.params import _version_text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import (
    FAIL, _MDEV_VIOMMU, PASS, WARN, _check, _qemu_err, _r)

__metaclass__ = type

_GRANULES = {"4k": 4096, "8k": 8192, "16k": 16384, "64k": 65536}
_MASK64 = (1 << 64) - 1
HOST_PAGE = 4096  # x86 and the common arm64 kernels; the facts do not record the host page size


def page_size_mask(granule):
    """virtio-iommu's page_size_mask for its granule property (GRANULE_MODE_HOST = the host page)."""
    size = _GRANULES.get(granule, HOST_PAGE)
    return (-size) & _MASK64


@_check("viommu.virtio.granule", "device", "virtio-iommu page sizes compatible with the host container",
        "params.{granule,iommufd,qemu_version}",
        "QEMU hw/virtio/virtio-iommu.c virtio_iommu_set_page_size_mask(): \"virtio-iommu reports a page size mask "
        "0x%lx incompatible with currently supported mask 0x%lx\"; hw/vfio/iommufd.c container pgsizes = host page "
        "size", mdev=_MDEV_VIOMMU, verified=((10, 0), (11, 1)))
def _virtio_granule(ctx, addr, dev, params):
    granule = params.get("granule") or "host"
    cur = page_size_mask(granule)
    ev = {"params.granule": granule, "params.iommufd": params.get("iommufd"),
          "virtio-iommu page_size_mask": "0x%x" % cur, _dev_path(addr, "iommu_group"): dev.get("iommu_group")}
    if params.get("iommufd", True):
        new = HOST_PAGE
        ev["iommufd container page sizes"] = "0x%x" % new
        if not cur & new:
            return _r(FAIL, "granule=%s: the iommufd container maps host pages only (0x%x), which the vIOMMU's "
                            "page-size mask 0x%x lacks; QEMU %s refuses the device: \"%s\"." % (
                                granule, new, cur, _version_text(ctx.qemu), _qemu_err(
                                    addr, "%s: virtio-iommu reports a page size mask 0x%x incompatible with "
                                          "currently supported mask 0x%x" % (addr, new, cur))),
                      ev, "preflight parameters", "Use granule=4k or granule=host on virtio-iommu-pci with the iommufd "
                                                  "backend.")
        return _r(PASS, "granule=%s shares the host page size (4 KiB) with the iommufd container." % granule, ev,
                  "preflight parameters")
    if granule in ("4k", "host"):
        return _r(PASS, "granule=%s: every VFIO type1 container supports 4 KiB pages." % granule, ev,
                  "preflight parameters")
    return _r(WARN, "granule=%s on the legacy VFIO container: QEMU accepts the device only if the host IOMMU's page "
                    "sizes (VFIO_IOMMU_GET_INFO iova_pgsizes) include a size of at least %s; the facts do not record "
                    "them." % (granule, granule), ev, "preflight parameters",
              "Use granule=4k or host, or the iommufd backend with granule=4k.")
