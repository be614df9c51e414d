# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hw_info types and the shape every decoder returns.

``HW_INFO_TYPES`` is enum iommu_hw_info_type (include/uapi/linux/iommufd.h:716-723; selftest:
drivers/iommu/iommufd/iommufd_test.h:205); ``parse_type`` reads a type from an int, a numeric
string or a name, ``requested_type`` gives the in_data_type to ask IOMMU_GET_HW_INFO for.
``_result`` is the {type, type_id, raw, derived, errors} skeleton of every decoder's answer, and
``@_guard`` makes a public decoder return an error instead of raising, whatever it is given.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.iommu.host.plugins.module_utils.decode.bits import _MAX_HEX_DIGITS, _describe

__metaclass__ = type


HW_INFO_TYPES = {
    0: 'none',
    1: 'intel_vtd',
    2: 'arm_smmuv3',
    3: 'tegra241_cmdqv',
    4: 'amd',
    0xfeedbeef: 'selftest',
}
HW_INFO_TYPE_IDS = dict((name, type_id) for type_id, name in HW_INFO_TYPES.items())

# Other spellings accepted by parse_type() (lower case, '-' read as '_').
_TYPE_ALIASES = {
    'default': 0,
    'vtd': 1,
    'intel': 1,
    'intel_iommu': 1,
    'smmuv3': 2,
    'arm': 2,
    'smmu_v3': 2,
    'tegra241': 3,
    'cmdqv': 3,
    'amd_vi': 4,
    'amd_iommu': 4,
    'mock': 0xfeedbeef,
}


def parse_type(value):
    """The hw_info type id for an int, a numeric string or a name; returns (type_id, error).

    Names: the HW_INFO_TYPES values ('intel_vtd', 'arm_smmuv3', 'tegra241_cmdqv', 'amd',
    'selftest', 'none'), the kernel's IOMMU_HW_INFO_TYPE_* names and a few aliases (vtd,
    smmuv3, amd_vi, default).  Numbers: 4, '4', '0xfeedbeef'.  Unknown numbers are valid ids.
    """
    try:
        if value is None:
            return None, 'type is missing'
        if isinstance(value, bool):
            return None, 'type %s is a boolean' % value
        if isinstance(value, int):
            number = int(value)
        elif isinstance(value, str):
            text = value.strip().lower()
            if re.match(r'^0x[0-9a-f]+$', text):
                number = int(text, 16) if len(text) <= 2 + _MAX_HEX_DIGITS else -1
            elif re.match(r'^[0-9]+$', text):
                number = int(text) if len(text) <= 20 else -1
            else:
                name = text.replace('-', '_')
                if name.startswith('iommu_hw_info_type_'):
                    name = name[len('iommu_hw_info_type_'):]
                if name in HW_INFO_TYPE_IDS:
                    return HW_INFO_TYPE_IDS[name], None
                if name in _TYPE_ALIASES:
                    return _TYPE_ALIASES[name], None
                return None, 'unknown hw_info type %s (known: %s, or a number)' % (
                    _describe(value), ', '.join(sorted(HW_INFO_TYPE_IDS)))
        else:
            return None, 'type %s (%s) is not a name or a number' % (_describe(value), type(value).__name__)
        if number < 0 or number > 0xffffffff:
            return None, 'type %s is not a 32-bit type id' % _describe(value)
        return number, None
    except Exception as e:  # pragma: no cover - belt and braces
        return None, 'cannot read type %s (%s)' % (_describe(value), e)


def requested_type(value):
    """The in_data_type to ask IOMMU_GET_HW_INFO for: None for 'default'/None, else the type id.

    An unknown name also gives None (the driver's default); modules validate their choices.
    """
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ('', 'default'):
        return None
    type_id, err = parse_type(value)
    if err or type_id == 0:
        return None
    return type_id


def _result(type_id, raw, errors):
    return {
        'type': HW_INFO_TYPES.get(type_id, 'unknown') if type_id is not None else None,
        'type_id': type_id,
        'raw': raw,
        'derived': {},
        'errors': errors,
    }


def _guard(type_name):
    """Decorator: a public decoder never raises, whatever it is given."""
    def wrap(func):
        def inner(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except Exception as e:  # pragma: no cover - reached only through a decoder bug
                type_id = HW_INFO_TYPE_IDS.get(type_name)
                return _result(type_id, {}, ['internal error while decoding: %s: %s'
                                             % (type(e).__name__, e)])
        inner.__name__ = func.__name__
        inner.__doc__ = func.__doc__
        return inner
    return wrap
