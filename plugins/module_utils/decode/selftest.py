# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The iommufd selftest mock device (drivers/iommu/iommufd/selftest.c).

``decode_selftest`` decodes struct iommu_test_hw_info (drivers/iommu/iommufd/iommufd_test.h:204-211).
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.decode.bits import _hex, _reg
from ansible_collections.iommu.host.plugins.module_utils.decode.common import _guard, _result

__metaclass__ = type


IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef               # iommufd_test.h:206


def _selftest(flags, test_reg, errors, raw_extra=None):
    raw = {'flags': _hex(flags), 'test_reg': _hex(test_reg)}
    raw.update(raw_extra or {})
    out = _result(0xfeedbeef, raw, errors)
    out['flags'] = flags
    out['test_reg'] = test_reg
    d = {}
    if test_reg is not None:
        # mock_domain_hw_info() sets test_reg = IOMMU_HW_INFO_SELFTEST_REGVAL (selftest.c:304-322)
        d['test_reg_is_selftest_regval'] = test_reg == IOMMU_HW_INFO_SELFTEST_REGVAL
    out['derived'] = d
    return out


@_guard('selftest')
def decode_selftest(flags, test_reg):
    """Decode struct iommu_test_hw_info (flags, test_reg)."""
    errors = []
    fl = _reg(flags if flags is not None else 0, 32, 'flags', errors)
    reg = _reg(test_reg, 32, 'test_reg', errors)
    return _selftest(fl, reg, errors)
