# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure decoders for IOMMU capability registers: raw registers in, fields out.

Nothing here touches the system.  Every public function takes plain values
(ints, "0x..." or bare hex strings as sysfs prints them, bytes) and returns a
dict; bad input never raises, it ends up in the result's ``errors`` list.

Sources (line numbers are in Debian's linux-source-7.3, 7.3.4):

* include/uapi/linux/iommufd.h: struct iommu_hw_info and the vendor payload
  structs (584-704), enum iommu_hw_info_type (716-723), enum
  iommufd_hw_capabilities (744-749).
* drivers/iommu/intel/iommu.h: the ``cap_*`` (157-184) and ``ecap_*`` (189-218)
  macros; sm/pasid/ssads/nested_supported (531-538).
* drivers/iommu/amd/amd_iommu_types.h: ``FEATURE_*`` (76-108).
* drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h: ``IDRn_*`` / ``IIDR_*`` (21-87).

The field values are checked against the kernel's own macros, compiled with gcc,
by tests/unit/test_decode_golden.py (vectors from tests/golden/gen_golden.py).

Layout, one module per vendor as drivers/iommu/ lays them out:

bits.py       register coercion (to_int, to_count) and bit-field helpers
common.py     hw_info type ids (parse_type, requested_type), the result skeleton, @_guard
vtd.py        Intel VT-d CAP/ECAP (drivers/iommu/intel/)
amd.py        AMD-Vi EFR/EFR2 (drivers/iommu/amd/)
smmuv3.py     Arm SMMUv3 IDR0-5/IIDR/AIDR (drivers/iommu/arm/arm-smmu-v3/)
tegra241.py   NVIDIA Tegra241 CMDQV (arm-smmu-v3/tegra241-cmdqv.c)
selftest.py   the iommufd selftest mock device (drivers/iommu/iommufd/)
hw_info.py    out_capabilities, raw vendor structs and their dispatch, filter requests
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.decode.amd import (
    AMD_EFR2_UNDECODED,
    AMD_EFR_UNDECODED,
    AMD_EFR_VMM_ALLOWED,
    AMD_IOMMU_PGSIZES,
    AMD_IOMMU_PGSIZES_V2,
    amd_feature_names,
    decode_amd,
    parse_amd_features,
)
from ansible_collections.iommu.host.plugins.module_utils.decode.bits import to_count, to_int
from ansible_collections.iommu.host.plugins.module_utils.decode.common import HW_INFO_TYPE_IDS, HW_INFO_TYPES, parse_type, requested_type
from ansible_collections.iommu.host.plugins.module_utils.decode.hw_info import (
    IOMMU_HW_CAP_DIRTY_TRACKING,
    IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED,
    IOMMU_HW_CAP_PCI_PASID_EXEC,
    IOMMU_HW_CAP_PCI_PASID_PRIV,
    decode_capabilities,
    decode_hw_info_data,
    decode_request,
    pack_hw_info_data,
)
from ansible_collections.iommu.host.plugins.module_utils.decode.selftest import IOMMU_HW_INFO_SELFTEST_REGVAL, decode_selftest
from ansible_collections.iommu.host.plugins.module_utils.decode.smmuv3 import (
    IIDR_IMPLEMENTER_ARM,
    IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI,
    SMMU_FIELD_VALUE_NAMES,
    SMMU_UNDECODED,
    decode_smmuv3,
)
from ansible_collections.iommu.host.plugins.module_utils.decode.tegra241 import decode_tegra241_cmdqv
from ansible_collections.iommu.host.plugins.module_utils.decode.vtd import (
    IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
    VTD_CAP_UNDECODED,
    VTD_ECAP_UNDECODED,
    decode_vtd,
)

__metaclass__ = type

__all__ = [
    'AMD_EFR2_UNDECODED', 'AMD_EFR_UNDECODED', 'AMD_EFR_VMM_ALLOWED', 'AMD_IOMMU_PGSIZES',
    'AMD_IOMMU_PGSIZES_V2', 'HW_INFO_TYPES', 'HW_INFO_TYPE_IDS', 'IIDR_IMPLEMENTER_ARM',
    'IOMMU_HW_CAP_DIRTY_TRACKING', 'IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED', 'IOMMU_HW_CAP_PCI_PASID_EXEC',
    'IOMMU_HW_CAP_PCI_PASID_PRIV', 'IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI',
    'IOMMU_HW_INFO_SELFTEST_REGVAL', 'IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17', 'SMMU_FIELD_VALUE_NAMES',
    'SMMU_UNDECODED', 'VTD_CAP_UNDECODED', 'VTD_ECAP_UNDECODED', 'amd_feature_names', 'decode_amd',
    'decode_capabilities', 'decode_hw_info_data', 'decode_request', 'decode_selftest', 'decode_smmuv3',
    'decode_tegra241_cmdqv', 'decode_vtd', 'pack_hw_info_data', 'parse_amd_features', 'parse_type',
    'requested_type', 'to_count', 'to_int',
]
