# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NVIDIA Tegra241 CMDQV (drivers/iommu/arm/arm-smmu-v3/tegra241-cmdqv.c).

``decode_tegra241_cmdqv`` decodes struct iommu_hw_info_tegra241_cmdqv (iommufd.h:658-678, filled
by tegra241-cmdqv.c:870-893): version, VCMDQs and SIDs per VINTF, and the PARAM register value a
VMM can emulate.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.decode.bits import _hex, _reg
from ansible_collections.iommu.host.plugins.module_utils.decode.common import _guard, _result

__metaclass__ = type


def _tegra(fields, errors, raw_extra=None):
    raw = dict((k, _hex(fields.get(k))) for k in ('flags', 'version', 'log2vcmdqs', 'log2vsids'))
    raw.update(raw_extra or {})
    out = _result(3, raw, errors)
    for key in ('flags', 'version', 'log2vcmdqs', 'log2vsids'):
        out[key] = fields.get(key)
    d = {}
    if fields.get('log2vcmdqs') is not None:
        # ilog2(num_lvcmdqs_per_vintf): per VINTF, not the total (tegra241-cmdqv.c:1008-1012)
        d['vcmdqs_per_vintf'] = 1 << fields['log2vcmdqs']
    if fields.get('log2vsids') is not None:
        d['sids_per_vintf'] = 1 << fields['log2vsids']
    parts = [fields.get(k) for k in ('version', 'log2vcmdqs', 'log2vsids')]
    if all(p is not None and p < 16 for p in parts):
        # "VMM can use these fields directly in its emulated global PARAM register" with
        # NUM_VINTF_LOG2 (bits 11:8) = 0: VER 3:0, NUM_VCMDQ_LOG2 7:4, NUM_SID_PER_VM_LOG2 15:12
        d['vmm_param_register'] = _hex(parts[0] | (parts[1] << 4) | (parts[2] << 12))
    out['derived'] = d
    return out


@_guard('tegra241_cmdqv')
def decode_tegra241_cmdqv(flags, version, log2vcmdqs, log2vsids):
    """Decode struct iommu_hw_info_tegra241_cmdqv fields (version and log2 sizes are counts:
    decimal strings, or hex with 0x)."""
    errors = []
    fields = {
        'flags': _reg(flags if flags is not None else 0, 32, 'flags', errors),
        'version': _reg(version, 8, 'version', errors, count=True),
        'log2vcmdqs': _reg(log2vcmdqs, 8, 'log2vcmdqs', errors, count=True),
        'log2vsids': _reg(log2vsids, 8, 'log2vsids', errors, count=True),
    }
    return _tegra(fields, errors)
