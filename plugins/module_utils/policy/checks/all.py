# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The check families, one module each. Importing this package registers every check.

The modules are imported in registration order (registry._ORDER), which orders the findings of
equal status and the catalogue: that order is part of the output contract. A new family (e.g.
virtio.py for virtio-iommu) gets its own module here, imported where its checks belong in it,
and its check ids listed in the profiles of params.py.

host.py       host.*: firmware, kernel, iommufd, VFIO cdev, interrupt remapping
device.py     device.vfio_driver, device.not_in_use, device.group_viable, device.hw_info
migration.py  migration.device, migration.dirty_tracking, migration.p2p, migration.viommu
intel.py      viommu.intel.*  (QEMU intel-iommu)
smmuv3.py     viommu.smmuv3.* (QEMU arm-smmuv3,accel=on)
amd.py        viommu.amd.*    (QEMU amd-iommu)
virtio.py     viommu.virtio.* (QEMU virtio-iommu-pci)
memory.py     memory.*        (guest RAM, hugepages, NUMA placement)
acs.py        host.acs_override, device.acs_path (ACS isolation; informational for QEMU)
pasid.py      device.pasid, device.ats
"""

from __future__ import absolute_import, division, print_function

# Registration order = output order: do not sort these imports.
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import host
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import device
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import migration
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import intel
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import smmuv3
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import amd
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import virtio
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import memory
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import acs
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import pasid
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import CHECKS, _ORDER

__metaclass__ = type

FAMILIES = (host, device, migration, intel, smmuv3, amd, virtio, memory, acs, pasid)


def _family_order():
    """Put registry._ORDER in family order, whichever family a caller imported first.

    A family module imported directly (api.py imports checks.migration for dirty_tracking_support)
    registers its checks before this module runs; the output order must not depend on that.
    """
    rank = dict((fam.__name__, i) for i, fam in enumerate(FAMILIES))
    first = dict((cid, i) for i, cid in enumerate(_ORDER))
    _ORDER[:] = sorted(_ORDER, key=lambda cid: (rank.get(CHECKS[cid]["func"].__module__, len(rank)), first[cid]))


_family_order()
