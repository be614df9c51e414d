# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whole IOMMU_GET_HW_INFO answers: generic capabilities, raw vendor structs, filter requests.

``decode_capabilities`` decodes out_capabilities / out_max_pasid_log2 of struct iommu_hw_info
(enum iommufd_hw_capabilities, iommufd.h:726-750). ``decode_hw_info_data`` splits the vendor
struct the kernel wrote to data_uptr (layouts in ``_STRUCTS``, iommufd.h:584-704) and dispatches
it to the vendor decoder; ``pack_hw_info_data`` builds such a struct. ``decode_request`` decodes
one request of the iommu.host.decode_hw_info filter (registers by name, or the struct bytes).
"""

from __future__ import absolute_import, division, print_function

import re

from collections.abc import Mapping

from ansible_collections.iommu.host.plugins.module_utils.decode.amd import _amd, parse_amd_features
from ansible_collections.iommu.host.plugins.module_utils.decode.bits import _describe, _hex, _reg
from ansible_collections.iommu.host.plugins.module_utils.decode.common import (
    HW_INFO_TYPE_IDS, HW_INFO_TYPES, _guard, parse_type, _result)
from ansible_collections.iommu.host.plugins.module_utils.decode.selftest import decode_selftest, _selftest
from ansible_collections.iommu.host.plugins.module_utils.decode.smmuv3 import decode_smmuv3, _smmuv3
from ansible_collections.iommu.host.plugins.module_utils.decode.tegra241 import decode_tegra241_cmdqv, _tegra
from ansible_collections.iommu.host.plugins.module_utils.decode.vtd import _vtd

__metaclass__ = type


# struct layouts: (offset, size, name); sizes from iommufd.h (checked by the kernel's BUILD_BUG_ONs
# and by compiling against the uapi header, see docs/kernel-uapi reference section 1.3).
_STRUCTS = {
    1: (24, ((0, 4, 'flags'), (4, 4, 'reserved'), (8, 8, 'cap_reg'), (16, 8, 'ecap_reg'))),
    2: (40, ((0, 4, 'flags'), (4, 4, 'reserved'),
             (8, 4, 'idr0'), (12, 4, 'idr1'), (16, 4, 'idr2'), (20, 4, 'idr3'),
             (24, 4, 'idr4'), (28, 4, 'idr5'), (32, 4, 'iidr'), (36, 4, 'aidr'))),
    3: (8, ((0, 4, 'flags'), (4, 1, 'version'), (5, 1, 'log2vcmdqs'), (6, 1, 'log2vsids'),
            (7, 1, 'reserved'))),
    4: (16, ((0, 8, 'efr'), (8, 8, 'efr2'))),
    0xfeedbeef: (8, ((0, 4, 'flags'), (4, 4, 'test_reg'))),
}


# enum iommufd_hw_capabilities (iommufd.h:744-749)
IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0
IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1
IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2
IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3
_HW_CAPS_KNOWN = 0xf


def decode_capabilities(out_capabilities, max_pasid_log2=0):
    """Decode out_capabilities and out_max_pasid_log2 of struct iommu_hw_info.

    Returns raw, dirty_tracking, pasid_exec, pasid_priv, ats_not_supported, max_pasid_log2 and
    unknown_bits; an ``errors`` list is added only when an input was unusable.
    """
    errors = []
    caps = _reg(out_capabilities, 64, 'out_capabilities', errors)
    pasid = _reg(max_pasid_log2 if max_pasid_log2 is not None else 0, 8, 'max_pasid_log2', errors,
                 count=True)
    out = {
        'raw': _hex(caps),
        # IOMMU_HW_CAP_DIRTY_TRACKING: device_iommu_capable(IOMMU_CAP_DIRTY_TRACKING)
        'dirty_tracking': None if caps is None else bool(caps & IOMMU_HW_CAP_DIRTY_TRACKING),
        # PASID_EXEC / PASID_PRIV: from the device's PCI PASID capability; meaningless when
        # max_pasid_log2 is 0 (iommufd.h:735-740)
        'pasid_exec': None if caps is None else bool(caps & IOMMU_HW_CAP_PCI_PASID_EXEC),
        'pasid_priv': None if caps is None else bool(caps & IOMMU_HW_CAP_PCI_PASID_PRIV),
        # set whenever the driver does not affirm IOMMU_CAP_PCI_ATS_SUPPORTED
        'ats_not_supported': None if caps is None else bool(caps & IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED),
        'max_pasid_log2': pasid,
        'unknown_bits': None if caps is None else _hex(caps & ~_HW_CAPS_KNOWN),
    }
    if errors:
        out['errors'] = errors
    return out


def _to_bytes(data):
    """bytes from bytes/bytearray/memoryview, a hex string (memory order) or a list of byte values."""
    if data is None:
        return b'', None
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), None
    if isinstance(data, str):
        text = re.sub(r'[\s:]', '', data)
        if text[:2] in ('0x', '0X'):
            text = text[2:]
        if len(text) % 2 or not re.match(r'^[0-9a-fA-F]*$', text):
            return None, 'data %s is not a hex byte string' % _describe(data)
        return bytes(bytearray(int(text[i:i + 2], 16) for i in range(0, len(text), 2))), None
    if isinstance(data, (list, tuple)):
        out = bytearray()
        for item in data:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 255:
                return None, 'data list holds %s, not a byte value' % _describe(item)
            out.append(item)
        return bytes(out), None
    return None, 'data %s (%s) is not bytes, a hex string or a list of bytes' % (
        _describe(data), type(data).__name__)


def _unknown(type_id, data, errors):
    out = _result(type_id, {'data': data.hex() if data is not None else None}, errors)
    if type_id not in HW_INFO_TYPES:
        out['type'] = 'unknown'
    return out


@_guard(None)
def decode_hw_info_data(type_id, data):
    """Decode the vendor struct IOMMU_GET_HW_INFO wrote to data_uptr.

    type_id: out_data_type (int, numeric string or name); data: the struct bytes (or hex).
    A short struct decodes the fields it holds and says what is missing in ``errors``; extra
    bytes after the known struct are returned as hex in ``raw.extra``; an unknown type gives
    ``type: unknown`` with the data as hex, which is not an error.
    """
    errors = []
    tid, err = parse_type(type_id)
    if err:
        errors.append(err)
    raw_bytes, err = _to_bytes(data)
    if err:
        errors.append(err)
    if tid is None:
        out = _result(None, {'data': raw_bytes.hex() if raw_bytes is not None else None}, errors)
        return out
    if raw_bytes is None:
        return _unknown(tid, None, errors) if tid not in _STRUCTS else _dispatch(tid, {}, errors, {})
    if tid not in _STRUCTS:
        return _unknown(tid, raw_bytes, errors)

    size, layout = _STRUCTS[tid]
    fields = {}
    missing = []
    for offset, width, name in layout:
        if len(raw_bytes) >= offset + width:
            fields[name] = int.from_bytes(raw_bytes[offset:offset + width], 'little')
        else:
            fields[name] = None
            missing.append(name)
    extra = {}
    if missing:
        errors.append('%s struct truncated: %d of %d bytes, missing %s'
                      % (HW_INFO_TYPES[tid], len(raw_bytes), size, ', '.join(missing)))
    if len(raw_bytes) > size:
        extra['extra'] = raw_bytes[size:].hex()
    if fields.get('reserved') is not None:
        extra['reserved'] = _hex(fields['reserved'])
    return _dispatch(tid, fields, errors, extra)


def _dispatch(tid, fields, errors, extra):
    if tid == 1:
        return _vtd(fields.get('cap_reg'), fields.get('ecap_reg'), fields.get('flags'), errors, extra)
    if tid == 2:
        return _smmuv3(fields, fields.get('flags'), errors, extra)
    if tid == 3:
        return _tegra(fields, errors, extra)
    if tid == 4:
        return _amd(fields.get('efr'), fields.get('efr2'), errors, extra)
    if tid == 0xfeedbeef:
        return _selftest(fields.get('flags'), fields.get('test_reg'), errors, extra)
    return _unknown(tid, b'', errors)


# Pack a vendor struct from register values (tests, and callers that build hw_info by hand).
def pack_hw_info_data(type_id, **fields):
    """bytes of the vendor struct ``type_id`` with the given fields (others 0)."""
    size, layout = _STRUCTS[type_id]
    buf = bytearray(size)
    for offset, width, name in layout:
        value = fields.get(name, 0)
        buf[offset:offset + width] = int(value).to_bytes(width, 'little')
    return bytes(buf)


_REQUEST_KEYS = {
    1: ('cap_reg', 'ecap_reg', 'cap', 'ecap', 'flags'),
    2: ('idr', 'iidr', 'aidr', 'flags'),
    3: ('flags', 'version', 'log2vcmdqs', 'log2vsids'),
    4: ('efr', 'efr2', 'features'),
    0xfeedbeef: ('flags', 'test_reg'),
}
_COMMON_KEYS = ('type', 'data', 'out_capabilities', 'capabilities', 'max_pasid_log2',
                'out_max_pasid_log2')


def _first(obj, *keys):
    for key in keys:
        if key in obj and obj[key] is not None:
            return obj[key]
    return None


@_guard(None)
def decode_request(obj):
    """Decode one filter-plugin request (see the DOCUMENTATION of plugins/filter/decode_hw_info.py).

    Forms: {type: intel_vtd, cap_reg, ecap_reg[, flags]} (cap/ecap as sysfs names them too),
    {type: amd, efr, efr2} or {type: amd, features: 'efr:efr2'}, {type: arm_smmuv3, idr: [6],
    iidr, aidr[, flags]}, {type: tegra241_cmdqv, version, log2vcmdqs, log2vsids[, flags]},
    {type: selftest, flags, test_reg}, or {type: <int or name>, data: '<hex of the struct>'}.
    out_capabilities (and max_pasid_log2) add a ``capabilities`` section.
    Never raises: problems are listed in ``errors``; ``type`` is None when there is no usable type.
    """
    if not isinstance(obj, Mapping):
        return _result(None, {}, ['input must be a dict with a "type", not %s (%s)'
                                  % (_describe(obj), type(obj).__name__)])
    if 'type' not in obj:
        return _result(None, {}, ['input has no "type" (one of %s, or a number)'
                                  % ', '.join(sorted(HW_INFO_TYPE_IDS))])
    tid, err = parse_type(obj['type'])
    if err:
        return _result(None, {}, [err])

    if 'data' in obj:
        res = decode_hw_info_data(tid, obj['data'])
        ignored = sorted(str(k) for k in obj if k not in _COMMON_KEYS)
        if ignored:
            res['errors'].append('data given: ignored %s' % ', '.join(ignored))
    else:
        errors = []
        if tid == 1:
            cap = _reg(_first(obj, 'cap_reg', 'cap'), 64, 'cap_reg', errors)
            ecap = _reg(_first(obj, 'ecap_reg', 'ecap'), 64, 'ecap_reg', errors)
            flags = _reg(obj.get('flags'), 32, 'flags', errors, required=False)
            res = _vtd(cap, ecap, flags, errors)
        elif tid == 4:
            if obj.get('features') is not None and obj.get('efr') is None:
                efr, efr2, perr = parse_amd_features(obj['features'])
                if perr:
                    errors.append(perr)
                res = _amd(efr, efr2, errors)
            else:
                efr = _reg(obj.get('efr'), 64, 'efr', errors)
                efr2 = _reg(obj.get('efr2') if obj.get('efr2') is not None else 0, 64, 'efr2', errors)
                res = _amd(efr, efr2, errors)
        elif tid == 2:
            res = decode_smmuv3(obj.get('idr'), obj.get('iidr', 0), obj.get('aidr', 0), obj.get('flags'))
        elif tid == 3:
            res = decode_tegra241_cmdqv(obj.get('flags', 0), obj.get('version'), obj.get('log2vcmdqs'),
                                        obj.get('log2vsids'))
        elif tid == 0xfeedbeef:
            res = decode_selftest(obj.get('flags', 0), obj.get('test_reg'))
        else:
            res = _unknown(tid, b'', errors)
        known = _REQUEST_KEYS.get(tid, ())
        unknown = sorted(str(k) for k in obj if k not in known and k not in _COMMON_KEYS)
        if unknown:
            res['errors'].append('unknown key(s) for type %s: %s' % (res['type'], ', '.join(unknown)))

    caps = _first(obj, 'out_capabilities', 'capabilities')
    if caps is not None:
        res['capabilities'] = decode_capabilities(caps, _first(obj, 'max_pasid_log2', 'out_max_pasid_log2'))
        res['errors'].extend(res['capabilities'].get('errors', []))
    return res
