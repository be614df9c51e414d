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
"""

from __future__ import absolute_import, division, print_function

import re

from collections.abc import Mapping

__metaclass__ = type

# ------------------------------------------------------------------------------------------------
# hw_info types (include/uapi/linux/iommufd.h:716-723; selftest: iommufd_test.h:205)
# ------------------------------------------------------------------------------------------------

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

IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0           # iommufd.h:575-582
IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI = 1 << 0  # iommufd.h:606-614
IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef               # iommufd_test.h:206

_HEX_RE = re.compile(r'^(?:0[xX])?([0-9a-fA-F]+)$')
_MAX_HEX_DIGITS = 32


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------

def _describe(value):
    """A short, never-raising description of an arbitrary input value."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__
        text = '<%s>' % type(value).__name__
    if len(text) > 80:
        text = text[:77] + '...'
    return text


def _hex(value):
    return None if value is None else '0x%x' % value


def _bit(value, n):
    return bool((value >> n) & 1)


def _field(value, shift, width):
    return (value >> shift) & ((1 << width) - 1)


def _field_get(mask, value):
    """FIELD_GET(mask, value) of include/linux/bitfield.h."""
    shift = (mask & -mask).bit_length() - 1
    return (value & mask) >> shift


def _genmask(high, low):
    return ((1 << (high - low + 1)) - 1) << low


def _size_name(size):
    for unit, shift in (('PiB', 50), ('TiB', 40), ('GiB', 30), ('MiB', 20), ('KiB', 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return '%d%s' % (size >> shift, unit)
    return '%dB' % size


def _sizes(bitmap):
    return [_size_name(1 << b) for b in range(64) if (bitmap >> b) & 1]


def _pred(supported, basis):
    """A derived predicate: supported is True/False, or None when the registers cannot tell."""
    return {'supported': supported, 'basis': basis}


def to_int(value, bits=64, name='value'):
    """Coerce a register value; returns (int, None) or (None, error).

    Accepts ints and hex strings: "0x1f", "1F" or sysfs style "d2008c22260286".
    Strings are always read as hex (sysfs prints every register with %llx / %x).
    """
    try:
        if isinstance(value, bool):
            return None, '%s: %s is a boolean, not a register value' % (name, value)
        if isinstance(value, int):
            number = int(value)
        elif isinstance(value, (str, bytes)):
            text = value.decode('ascii', 'replace') if isinstance(value, bytes) else value
            text = text.strip()
            match = _HEX_RE.match(text)
            if not match:
                return None, '%s: %s is not a hex number' % (name, _describe(value))
            if len(match.group(1)) > _MAX_HEX_DIGITS:
                return None, '%s: %s is too long for a %d-bit register' % (name, _describe(value), bits)
            number = int(match.group(1), 16)
        else:
            return None, '%s: %s (%s) is not an int or a hex string' % (
                name, _describe(value), type(value).__name__)
        if number < 0:
            return None, '%s: %d is negative' % (name, number)
        if number >> bits:
            return None, '%s: 0x%x does not fit in %d bits' % (name, number, bits)
        return number, None
    except Exception as e:  # pragma: no cover - belt and braces
        return None, '%s: cannot read %s (%s)' % (name, _describe(value), e)


def to_count(value, bits=8, name='value'):
    """Coerce a small count (log2 sizes, versions); returns (int, None) or (None, error).

    Unlike register values, strings are decimal ("20"), or hex only with a 0x prefix ("0x14").
    """
    if isinstance(value, str) and re.match(r'^\s*[0-9]{1,20}\s*$', value):
        value = int(value.strip())
    elif isinstance(value, str) and not re.match(r'^\s*0[xX]', value):
        return None, '%s: %s is not a decimal or 0x-prefixed number' % (name, _describe(value))
    return to_int(value, bits, name)


def _reg(value, bits, name, errors, required=True, count=False):
    """to_int() that records problems in ``errors``; None when missing or invalid."""
    if value is None:
        if required:
            errors.append('%s is missing' % name)
        return None
    number, err = (to_count if count else to_int)(value, bits, name)
    if err:
        errors.append(err)
    return number


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


# ------------------------------------------------------------------------------------------------
# iommu_hw_info.out_capabilities (enum iommufd_hw_capabilities, iommufd.h:726-750)
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# Intel VT-d: DMAR_CAP_REG / DMAR_ECAP_REG (drivers/iommu/intel/iommu.h)
# ------------------------------------------------------------------------------------------------

# (key, shift, width, transform).  Single-bit fields decode to bool (the kernel macros
# return 0/1, or 0/2 for ecap_qis, 0/1 for ecap_coherent); transforms reproduce the macro
# arithmetic exactly.
_VTD_CAP = (
    ('esrtps', 63, 1, None),                # :157 cap_esrtps
    ('esirtps', 62, 1, None),               # :158 cap_esirtps
    ('ecmds', 61, 1, None),                 # :159 cap_ecmds
    ('fl5lp_support', 60, 1, None),         # :160 cap_fl5lp_support
    ('pi_support', 59, 1, None),            # :161 cap_pi_support
    ('fl1gp_support', 56, 1, None),         # :162 cap_fl1gp_support
    ('read_drain', 55, 1, None),            # :163 cap_read_drain
    ('write_drain', 54, 1, None),           # :164 cap_write_drain
    ('max_amask_val', 48, 6, None),         # :165 cap_max_amask_val
    ('num_fault_regs', 40, 8, 'plus1'),     # :166 cap_num_fault_regs = field + 1
    ('pgsel_inv', 39, 1, None),             # :167 cap_pgsel_inv
    ('super_page_val', 34, 4, None),        # :169 cap_super_page_val
    ('fault_reg_offset', 24, 10, 'x16'),    # :171 cap_fault_reg_offset = field * 16
    ('zlr', 22, 1, None),                   # :175 cap_zlr
    ('isoch', 23, 1, None),                 # :176 cap_isoch
    ('mgaw', 16, 6, 'plus1'),               # :177 cap_mgaw = field + 1 (width in bits)
    ('sagaw', 8, 5, None),                  # :178 cap_sagaw
    ('caching_mode', 7, 1, None),           # :179 cap_caching_mode
    ('phmr', 6, 1, None),                   # :180 cap_phmr
    ('plmr', 5, 1, None),                   # :181 cap_plmr
    ('rwbf', 4, 1, None),                   # :182 cap_rwbf
    ('afl', 3, 1, None),                    # :183 cap_afl
    ('ndoms', 0, 3, 'ndoms'),               # :184 cap_ndoms = 1UL << (4 + 2 * field)
)
_VTD_ECAP = (
    ('pms', 51, 1, None),                   # :189 ecap_pms
    ('rps', 49, 1, None),                   # :190 ecap_rps
    ('smpwc', 48, 1, None),                 # :191 ecap_smpwc
    ('flts', 47, 1, None),                  # :192 ecap_flts
    ('slts', 46, 1, None),                  # :193 ecap_slts
    ('slads', 45, 1, None),                 # :194 ecap_slads
    ('smts', 43, 1, None),                  # :195 ecap_smts
    ('dit', 41, 1, None),                   # :196 ecap_dit
    ('pds', 42, 1, None),                   # :197 ecap_pds
    ('pasid', 40, 1, None),                 # :198 ecap_pasid
    ('pss', 35, 5, None),                   # :199 ecap_pss
    ('eafs', 34, 1, None),                  # :200 ecap_eafs
    ('nwfs', 33, 1, None),                  # :201 ecap_nwfs
    ('srs', 31, 1, None),                   # :202 ecap_srs
    ('ers', 30, 1, None),                   # :203 ecap_ers
    ('prs', 29, 1, None),                   # :204 ecap_prs
    ('broken_pasid', 28, 1, None),          # :205 ecap_broken_pasid
    ('dis', 27, 1, None),                   # :206 ecap_dis
    ('nest', 26, 1, None),                  # :207 ecap_nest
    ('mts', 25, 1, None),                   # :208 ecap_mts
    ('iotlb_offset', 8, 10, 'x16'),         # :209 ecap_iotlb_offset = field * 16
    ('coherent', 0, 1, None),               # :211 ecap_coherent = (e & 0x1)
    ('qis', 1, 1, None),                    # :212 ecap_qis = (e & 0x2), unshifted: a bool here
    ('pass_through', 6, 1, None),           # :213 ecap_pass_through
    ('eim_support', 4, 1, None),            # :214 ecap_eim_support
    ('ir_support', 3, 1, None),             # :215 ecap_ir_support
    ('dev_iotlb_support', 2, 1, None),      # :216 ecap_dev_iotlb_support
    ('max_handle_mask', 20, 4, None),       # :217 ecap_max_handle_mask
    ('sc_support', 7, 1, None),             # :218 ecap_sc_support
)


def _decoded_mask(table):
    mask = 0
    for _key, shift, width, _t in table:
        mask |= ((1 << width) - 1) << shift
    return mask


# Register bits that no kernel macro reads (reserved, or not used by Linux).
VTD_CAP_UNDECODED = ((1 << 64) - 1) & ~_decoded_mask(_VTD_CAP)
VTD_ECAP_UNDECODED = ((1 << 64) - 1) & ~_decoded_mask(_VTD_ECAP)


def _decode_table(value, table):
    out = {}
    for key, shift, width, transform in table:
        raw = _field(value, shift, width)
        if transform == 'plus1':
            out[key] = raw + 1
        elif transform == 'x16':
            out[key] = raw * 16
        elif transform == 'ndoms':
            out[key] = 1 << (4 + 2 * raw)
        elif width == 1:
            out[key] = bool(raw)
        else:
            out[key] = raw
    return out


def _vtd_cap(cap):
    out = _decode_table(cap, _VTD_CAP)
    # :172-173 cap_max_fault_reg_offset = cap_fault_reg_offset + cap_num_fault_regs * 16
    out['max_fault_reg_offset'] = out['fault_reg_offset'] + out['num_fault_regs'] * 16
    return out


def _vtd_ecap(ecap):
    out = _decode_table(ecap, _VTD_ECAP)
    # :210 ecap_max_iotlb_offset = ecap_iotlb_offset + 16
    out['max_iotlb_offset'] = out['iotlb_offset'] + 16
    return out


# CAP.SAGAW bit -> adjusted guest address width: bit1 = 39 (3-level), bit2 = 48 (4-level),
# bit3 = 57 (5-level) as compute_vasz_lg2_ss() uses them (intel/iommu.c:2913-2935); bit0 = 30
# (2-level) and bit4 = 64 (6-level) are the VT-d spec's reserved encodings [EXT].
_SAGAW_WIDTHS = ((0, 30), (1, 39), (2, 48), (3, 57), (4, 64))

_SM_NOTE = ('; the kernel must also run the unit in scalable mode: intel_iommu=sm_on or '
            'CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON (sm_supported, iommu.h:531)')


def _ffs(value):
    """ffs(3): 1-based index of the lowest set bit, 0 for 0."""
    return (value & -value).bit_length()


def _vtd_second_stage_walk(sagaw, mgaw):
    """compute_vasz_lg2_ss() (intel/iommu.c:2913-2935): (IOVA bits, page-table levels)."""
    if mgaw > 48 and sagaw >= 1 << 3:
        return min(57, mgaw), 5
    if mgaw > 39 and sagaw >= 1 << 2:
        return min(48, mgaw), 3 + _ffs(sagaw >> 3) + 1
    if mgaw > 30 and sagaw >= 1 << 1:
        return min(39, mgaw), 2 + _ffs(sagaw >> 2) + 1
    return 0, 0


def _vtd_derived(cap, ecap):
    d = {}
    if cap is not None:
        c = _vtd_cap(cap)
        d['max_guest_address_width_bits'] = c['mgaw']
        d['supported_guest_address_widths'] = [w for b, w in _SAGAW_WIDTHS if (c['sagaw'] >> b) & 1]
        iova, levels = _vtd_second_stage_walk(c['sagaw'], c['mgaw'])
        d['second_stage_iova_bits'] = iova
        d['second_stage_page_table_levels'] = levels
        # Second stage: 4 KiB always; CAP.SSLPS bit0 = 2 MiB, bit1 = 1 GiB (intel/iommu.c:2999-3004)
        sizes = ['4KiB']
        if c['super_page_val'] & 1:
            sizes.append('2MiB')
        if c['super_page_val'] & 2:
            sizes.append('1GiB')
        d['second_stage_page_sizes'] = sizes
        # First stage: x86-64 page table (4K/2M/1G); 1 GiB dropped without FS1GP
        # (intel/iommu.c:2905-2906); 5-level only with FS5LP.
        d['first_stage_page_sizes'] = ['4KiB', '2MiB'] + (['1GiB'] if c['fl1gp_support'] else [])
        d['first_stage_address_widths'] = [48] + ([57] if c['fl5lp_support'] else [])
        d['domains_supported'] = c['ndoms']
        d['fault_recording_registers'] = c['num_fault_regs']
        d['caching_mode'] = _pred(
            c['caching_mode'],
            'CAP.CM (cap_caching_mode, iommu.h:179): set by virtual IOMMUs (QEMU intel-iommu '
            'caching-mode=on), i.e. this host is itself a VM')
        d['posted_interrupts'] = _pred(c['pi_support'], 'CAP.PI (cap_pi_support, iommu.h:161)')
        d['write_buffer_flush_required'] = _pred(c['rwbf'], 'CAP.RWBF (cap_rwbf, iommu.h:182)')
    if ecap is not None:
        e = _vtd_ecap(ecap)
        d['pasid_width'] = e['pss'] + 1 if e['pasid'] else 0
        # dmar.c:1205-1206 max_pasids = 2UL << ecap_pss (only when pasid_supported)
        d['max_pasids'] = (2 << e['pss']) if e['pasid'] else 0
        d['scalable_mode'] = _pred(
            e['smts'],
            'ECAP.SMTS (ecap_smts, iommu.h:195): the hardware can do scalable-mode translation'
            + _SM_NOTE)
        d['pasid'] = _pred(
            e['smts'] and e['pasid'],
            'ECAP.SMTS && ECAP.PASID (pasid_supported, iommu.h:532); PASID width = ECAP.PSS + 1 '
            '(dmar.c:1201-1206)' + _SM_NOTE)
        d['dirty_tracking'] = _pred(
            e['smts'] and e['slads'] and e['smpwc'],
            'ECAP.SMTS && ECAP.SLADS(45) && ECAP.SMPWC(48) (ssads_supported, iommu.h:533, '
            'IOMMU_CAP_DIRTY_TRACKING in intel_iommu_capable) and scalable mode must also be '
            'enabled by the kernel (intel_iommu=sm_on or CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON); '
            'dirty-tracking domains are second-stage, so ECAP.SLTS is needed too')
        d['nesting'] = _pred(
            e['smts'] and e['nest'] and e['slts'],
            'ECAP.SMTS && ECAP.NEST(26) (nested_supported, iommu.h:535) && ECAP.SLTS(46) for the '
            'second-stage parent (intel/iommu.c:2957-2965)' + _SM_NOTE)
        d['first_stage'] = _pred(
            e['flts'],
            'ECAP.FLTS(47) (ecap_flts, iommu.h:192); the kernel also needs scalable mode '
            '(intel/iommu.c:2873-2874)')
        d['second_stage'] = _pred(
            e['slts'] or not e['smts'],
            'ECAP.SLTS(46) in scalable mode; legacy (non-scalable) remapping is always second-stage')
        d['interrupt_remapping'] = _pred(e['ir_support'], 'ECAP.IR(3) (ecap_ir_support, iommu.h:215)')
        d['x2apic_interrupt_mode'] = _pred(e['eim_support'], 'ECAP.EIM(4) (ecap_eim_support, iommu.h:214)')
        d['queued_invalidation'] = _pred(e['qis'], 'ECAP.QI(1) (ecap_qis, iommu.h:212)')
        d['device_iotlb'] = _pred(
            e['dev_iotlb_support'],
            'ECAP.DT(2) (ecap_dev_iotlb_support, iommu.h:216): ATS possible, per device also '
            'pci_ats_supported && dmar_ats_supported (intel/iommu.c:3300-3303)')
        d['snoop_control'] = _pred(
            e['sc_support'],
            'ECAP.SC(7) (ecap_sc_support, iommu.h:218) -> IOMMU_CAP_ENFORCE_CACHE_COHERENCY')
        d['page_requests'] = _pred(e['prs'], 'ECAP.PRS(29) (ecap_prs, iommu.h:204)')
        d['pass_through'] = _pred(e['pass_through'], 'ECAP.PT(6) (ecap_pass_through, iommu.h:213)')
        d['page_walk_coherency'] = _pred(
            e['smpwc'] if e['smts'] else e['coherent'],
            'ECAP.SMPWC(48) in scalable mode, ECAP.C(0) in legacy mode')
    undecoded = {}
    if cap is not None:
        undecoded['cap'] = _hex(cap & VTD_CAP_UNDECODED)
    if ecap is not None:
        undecoded['ecap'] = _hex(ecap & VTD_ECAP_UNDECODED)
    d['undecoded_bits_set'] = undecoded
    return d


def _vtd(cap, ecap, flags, errors, raw_extra=None):
    raw = {'cap_reg': _hex(cap), 'ecap_reg': _hex(ecap)}
    if flags is not None:
        raw['flags'] = _hex(flags)
    raw.update(raw_extra or {})
    out = _result(1, raw, errors)
    out['cap'] = _vtd_cap(cap) if cap is not None else None
    out['ecap'] = _vtd_ecap(ecap) if ecap is not None else None
    if flags is not None:
        out['flags'] = {
            # intel_iommu_hw_info() sets it unconditionally (intel/iommu.c:3709-3729):
            # read-only mappings are refused on a nest parent domain.
            'errata_772415_spr17': bool(flags & IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17),
            'unknown_bits': _hex(flags & ~IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17),
        }
    out['derived'] = _vtd_derived(cap, ecap)
    return out


@_guard('intel_vtd')
def decode_vtd(cap_reg, ecap_reg, flags=None):
    """Decode VT-d CAP and ECAP (ints or hex strings); flags = iommu_hw_info_vtd.flags if known."""
    errors = []
    cap = _reg(cap_reg, 64, 'cap_reg', errors)
    ecap = _reg(ecap_reg, 64, 'ecap_reg', errors)
    fl = _reg(flags, 32, 'flags', errors, required=False)
    return _vtd(cap, ecap, fl, errors)


# ------------------------------------------------------------------------------------------------
# AMD-Vi: EFR (MMIO 0x30) and EFR2 (MMIO 0x1A0) (drivers/iommu/amd/amd_iommu_types.h)
# ------------------------------------------------------------------------------------------------

_AMD_EFR = (
    ('prefetch', 1 << 0),                   # :76 FEATURE_PREFETCH
    ('ppr', 1 << 1),                        # :77 FEATURE_PPR
    ('x2apic', 1 << 2),                     # :78 FEATURE_X2APIC
    ('nx', 1 << 3),                         # :79 FEATURE_NX
    ('gt', 1 << 4),                         # :80 FEATURE_GT
    ('ia', 1 << 6),                         # :81 FEATURE_IA
    ('ga', 1 << 7),                         # :82 FEATURE_GA
    ('he', 1 << 8),                         # :83 FEATURE_HE
    ('pc', 1 << 9),                         # :84 FEATURE_PC
    ('hats', _genmask(11, 10)),             # :85 FEATURE_HATS
    ('gats', _genmask(13, 12)),             # :86 FEATURE_GATS
    ('glx', _genmask(15, 14)),              # :87 FEATURE_GLX
    ('gam_vapic', 1 << 21),                 # :88 FEATURE_GAM_VAPIC
    ('pasmax', _genmask(36, 32)),           # :89 FEATURE_PASMAX
    ('giosup', 1 << 48),                    # :90 FEATURE_GIOSUP
    ('hasup', 1 << 49),                     # :91 FEATURE_HASUP
    ('ephsup', 1 << 50),                    # :92 FEATURE_EPHSUP
    ('hdsup', 1 << 52),                     # :93 FEATURE_HDSUP
    ('snp', 1 << 63),                       # :94 FEATURE_SNP
)
_AMD_EFR2 = (
    ('sevsnpio_sup', 1 << 1),               # :98 FEATURE_SEVSNPIO_SUP
    ('gcr3trpmode', 1 << 3),                # :99 FEATURE_GCR3TRPMODE
    ('snpavicsup', _genmask(7, 5)),         # :100 FEATURE_SNPAVICSUP
    ('ht_range_ignore', 1 << 11),           # :103 FEATURE_HT_RANGE_IGNORE
    ('snp_page_mode0_sup', 1 << 13),        # :104 FEATURE_SNP_PAGE_MODE0_SUP
    ('num_int_remap_sup', _genmask(9, 8)),  # :106 FEATURE_NUM_INT_REMAP_SUP
)


def _mask_union(table):
    mask = 0
    for _key, m in table:
        mask |= m
    return mask


AMD_EFR_UNDECODED = ((1 << 64) - 1) & ~_mask_union(_AMD_EFR)
AMD_EFR2_UNDECODED = ((1 << 64) - 1) & ~_mask_union(_AMD_EFR2)

# print_iommu_info() (amd/init.c:2284-2321): names of EFR bits 0..9, in this order.
_AMD_FEAT_STR = ('PreF', 'PPR', 'X2APIC', 'NX', 'GT', '[5]', 'IA', 'GA', 'HE', 'PC')

# AMD_IOMMU_PGSIZES = GENMASK_ULL(51, 12) ^ SZ_512G (amd_iommu_types.h:303): the v1 (host)
# page table; AMD_IOMMU_PGSIZES_V2 = 4K | 2M | 1G (:309) for the v2 (guest/first-stage) table.
AMD_IOMMU_PGSIZES = _genmask(51, 12) ^ (1 << 39)
AMD_IOMMU_PGSIZES_V2 = (1 << 12) | (1 << 21) | (1 << 30)

# "Current VMM-allowed list": EFR[GTSup, GASup, GioSup, PPRSup, EPHSup, GATS, GLX, PASmax]
# (iommufd.h:698-699); mask derived from the FEATURE_* bits above.
AMD_EFR_VMM_ALLOWED = ((1 << 4) | (1 << 7) | (1 << 48) | (1 << 1) | (1 << 50) | _genmask(13, 12)
                       | _genmask(15, 14) | _genmask(36, 32))


def _decode_masks(value, table):
    out = {}
    for key, mask in table:
        v = _field_get(mask, value)
        out[key] = bool(v) if (mask & (mask - 1)) == 0 else v
    return out


def _amd_efr2(efr2):
    out = _decode_masks(efr2, _AMD_EFR2)
    # :101-102 FEATURE_SNPAVICSUP_GAM(x) = FIELD_GET(FEATURE_SNPAVICSUP, x) == 0x1
    out['snpavicsup_gam'] = out['snpavicsup'] == 1
    # :107-108 FEATURE_NUM_INT_REMAP_SUP_2K(x) = FIELD_GET(FEATURE_NUM_INT_REMAP_SUP, x) == 0x1
    out['num_int_remap_sup_2k'] = out['num_int_remap_sup'] == 1
    return out


def amd_feature_names(efr, efr2=0):
    """The names the kernel prints after 'AMD-Vi: Extended features (...):' (amd/init.c:2284-2321)."""
    if not efr:
        return []  # print_iommu_info() prints the line only when amd_iommu_efr != 0
    names = [n for i, n in enumerate(_AMD_FEAT_STR) if (efr >> i) & 1]
    if efr & (1 << 21):
        names.append('GA_vAPIC')
    if efr & (1 << 63):
        names.append('SNP')
    if efr2 and efr2 & (1 << 1):
        names.append('SEV-TIO')
    return names


def _amd_derived(efr, efr2):
    d = {}
    if efr is not None:
        f = _decode_masks(efr, _AMD_EFR)
        hats_ok = f['hats'] != 3
        d['host_translation'] = _pred(
            hats_ok,
            'EFR.HATS != 3; HATS == 3 is invalid and the kernel disables host (v1) translation, '
            'amd_iommu_hatdis (amd/init.c:3296-3308); the IVHD HATDis attribute (ACPI) can also '
            'disable it')
        if hats_ok:
            d['host_page_table_levels'] = f['hats'] + 4
            # amd_iommu_hpt_vasize = min(IVINFO VAsize (64 when not given), (HATS + 3) * 9 + 21)
            d['host_address_width_bits'] = min(64, (f['hats'] + 3) * 9 + 21)
            d['second_stage_page_sizes'] = _sizes(AMD_IOMMU_PGSIZES)
        else:
            d['host_page_table_levels'] = 0
            d['host_address_width_bits'] = 0
            d['second_stage_page_sizes'] = []
        v2 = f['gt'] and f['giosup']
        d['first_stage'] = _pred(
            v2, 'EFR.GTSup(4) && EFR.GIoSup(48) (amd_iommu_v2_pgtbl_supported, amd_iommu.h:120-123): '
                'v2 (x86-64 format) page table')
        d['first_stage_page_sizes'] = _sizes(AMD_IOMMU_PGSIZES_V2) if v2 else []
        # amd_iommu_gpt_level = 5 when EFR.GATS == GUEST_PGTABLE_5_LEVEL and the CPU has LA57
        # (amd/init.c:3291-3294), 4 otherwise.
        d['first_stage_page_table_levels'] = (5 if f['gats'] == 1 else 4) if v2 else 0
        d['first_stage_address_width_bits'] = (57 if f['gats'] == 1 else 48) if v2 else 0
        # amd/init.c:2194-2199: max_pasids = (1 << (PASmax + 1)) - 1 when GT
        d['pasid_width'] = f['pasmax'] + 1 if f['gt'] else 0
        d['max_pasids'] = ((1 << (f['pasmax'] + 1)) - 1) if f['gt'] else 0
        d['dirty_tracking'] = _pred(
            f['hdsup'] and hats_ok,
            'EFR.HDSup(52) (amd_iommu_hd_support, amd/iommu.c:2611-2617); false when host '
            'translation is disabled (amd_iommu_hatdis: EFR.HATS == 3 here, or the IVHD HATDis '
            'attribute, which the registers cannot show)')
        d['interrupt_remapping'] = _pred(
            None,
            'not reported in EFR: AMD-Vi interrupt remapping is set up from the ACPI IVRS table; '
            'dmesg says "AMD-Vi: Interrupt remapping enabled"')
        d['x2apic_interrupt_mode'] = _pred(f['x2apic'], 'EFR.XTSup(2) (FEATURE_X2APIC)')
        d['posted_interrupts'] = _pred(
            f['ga'] and f['gam_vapic'],
            'EFR.GASup(7) && EFR.GAMSup vAPIC(21) (amd/init.c:3027-3033); with SNP enabled it also '
            'needs EFR2.SNPAVICSup == 1 (amd/init.c:3035-3040)')
        d['page_requests'] = _pred(f['ppr'], 'EFR.PPRSup(1) (FEATURE_PPR)')
        d['performance_counters'] = _pred(f['pc'], 'EFR.PCSup(9) (FEATURE_PC, amd/init.c:2090)')
        d['snp'] = _pred(f['snp'], 'EFR.SNPSup(63) (FEATURE_SNP)')
        d['efr_vmm_allowed'] = _hex(efr & AMD_EFR_VMM_ALLOWED)
    if efr is not None and efr2 is not None:
        f = _decode_masks(efr, _AMD_EFR)
        f2 = _amd_efr2(efr2)
        d['nesting'] = _pred(
            f['gt'] and f['giosup'] and f2['gcr3trpmode'],
            'EFR.GTSup(4) && EFR.GIoSup(48) && EFR2.GCR3TRPMode(3) (is_nest_parent_supported, '
            'amd/iommu.c:2849-2855)')
    if efr2 is not None:
        f2 = _amd_efr2(efr2)
        # amd/iommu.c:2539: MAX_IRQS_PER_TABLE_2K when EFR2.NumIntRemapSup == 1, else 512
        d['interrupt_remap_table_entries'] = 2048 if f2['num_int_remap_sup_2k'] else 512
    undecoded = {}
    if efr is not None:
        undecoded['efr'] = _hex(efr & AMD_EFR_UNDECODED)
    if efr2 is not None:
        undecoded['efr2'] = _hex(efr2 & AMD_EFR2_UNDECODED)
    d['undecoded_bits_set'] = undecoded
    return d


def _amd(efr, efr2, errors, raw_extra=None):
    raw = {'efr': _hex(efr), 'efr2': _hex(efr2)}
    raw.update(raw_extra or {})
    out = _result(4, raw, errors)
    out['efr'] = _decode_masks(efr, _AMD_EFR) if efr is not None else None
    out['efr2'] = _amd_efr2(efr2) if efr2 is not None else None
    out['names'] = amd_feature_names(efr, efr2 or 0) if efr is not None else []
    out['derived'] = _amd_derived(efr, efr2)
    return out


@_guard('amd')
def decode_amd(efr, efr2=0):
    """Decode AMD-Vi EFR and EFR2 (ints or hex strings); ``names`` is the kernel's dmesg list."""
    errors = []
    e1 = _reg(efr, 64, 'efr', errors)
    e2 = _reg(efr2 if efr2 is not None else 0, 64, 'efr2', errors)
    return _amd(e1, e2, errors)


def parse_amd_features(text):
    """sysfs ivhdN/amd-iommu/features: 'efr:efr2' (or 'efr' on older kernels) -> (efr, efr2, error)."""
    if not isinstance(text, str):
        return None, None, 'features %s is not a string' % _describe(text)
    parts = text.strip().split(':')
    if len(parts) > 2:
        return None, None, 'features %s is not "efr:efr2"' % _describe(text)
    efr, err = to_int(parts[0], 64, 'features efr')
    if err:
        return None, None, err
    efr2 = 0
    if len(parts) == 2:
        efr2, err = to_int(parts[1], 64, 'features efr2')
        if err:
            return efr, None, err
    return efr, efr2, None


# ------------------------------------------------------------------------------------------------
# ARM SMMUv3: IDR0-5, IIDR, AIDR (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h)
# ------------------------------------------------------------------------------------------------

_SMMU_IDR0 = (
    ('st_lvl', _genmask(28, 27)),           # :23 IDR0_ST_LVL
    ('term_model', 1 << 26),                # not in drivers/iommu: SMMU_IDR0.TERM_MODEL [EXT/secondary]
    ('stall_model', _genmask(25, 24)),      # :25 IDR0_STALL_MODEL
    ('ttendian', _genmask(22, 21)),         # :28 IDR0_TTENDIAN
    ('cd2l', 1 << 19),                      # :32 IDR0_CD2L
    ('vmid16', 1 << 18),                    # :33 IDR0_VMID16
    ('pri', 1 << 16),                       # :34 IDR0_PRI
    ('sev', 1 << 14),                       # :35 IDR0_SEV
    ('msi', 1 << 13),                       # :36 IDR0_MSI
    ('asid16', 1 << 12),                    # :37 IDR0_ASID16
    ('ats', 1 << 10),                       # :38 IDR0_ATS
    ('hyp', 1 << 9),                        # :39 IDR0_HYP
    ('httu', _genmask(7, 6)),               # :40 IDR0_HTTU
    ('btm', 1 << 5),                        # not in drivers/iommu: SMMU_IDR0.BTM [EXT/secondary]
    ('cohacc', 1 << 4),                     # :44 IDR0_COHACC
    ('ttf', _genmask(3, 2)),                # :45 IDR0_TTF
    ('s1p', 1 << 1),                        # :47 IDR0_S1P
    ('s2p', 1 << 0),                        # :48 IDR0_S2P
)
_SMMU_IDR1 = (
    ('tables_preset', 1 << 30),             # :51 IDR1_TABLES_PRESET
    ('queues_preset', 1 << 29),             # :52 IDR1_QUEUES_PRESET
    ('rel', 1 << 28),                       # :53 IDR1_REL
    ('attr_types_ovr', 1 << 27),            # :54 IDR1_ATTR_TYPES_OVR
    ('cmdqs', _genmask(25, 21)),            # :55 IDR1_CMDQS
    ('evtqs', _genmask(20, 16)),            # :56 IDR1_EVTQS
    ('priqs', _genmask(15, 11)),            # :57 IDR1_PRIQS
    ('ssidsize', _genmask(10, 6)),          # :58 IDR1_SSIDSIZE
    ('sidsize', _genmask(5, 0)),            # :59 IDR1_SIDSIZE
)
_SMMU_IDR3 = (
    ('fwb', 1 << 8),                        # :62 IDR3_FWB
    ('ril', 1 << 10),                       # :63 IDR3_RIL
    ('bbm', _genmask(12, 11)),              # :64 IDR3_BBM (the spec's BBML field)
)
_SMMU_IDR5 = (
    ('stall_max', _genmask(31, 16)),        # :67 IDR5_STALL_MAX
    ('ds', 1 << 7),                         # :68 IDR5_DS
    ('gran64k', 1 << 6),                    # :69 IDR5_GRAN64K
    ('gran16k', 1 << 5),                    # :70 IDR5_GRAN16K
    ('gran4k', 1 << 4),                     # :71 IDR5_GRAN4K
    ('oas', _genmask(2, 0)),                # :72 IDR5_OAS
    ('vax', _genmask(11, 10)),              # :80 IDR5_VAX
)
_SMMU_IIDR = (
    ('productid', _genmask(31, 20)),        # :84 IIDR_PRODUCTID
    ('variant', _genmask(19, 16)),          # :85 IIDR_VARIANT
    ('revision', _genmask(15, 12)),         # :86 IIDR_REVISION
    ('implementer', _genmask(11, 0)),       # :87 IIDR_IMPLEMENTER
)
# No AIDR field macros in the tree; ArchMinorRev 3:0, ArchMajorRev 7:4 [EXT/secondary].
_SMMU_AIDR = (
    ('archminorrev', _genmask(3, 0)),
    ('archmajorrev', _genmask(7, 4)),
)
_SMMU_TABLES = {'idr0': _SMMU_IDR0, 'idr1': _SMMU_IDR1, 'idr3': _SMMU_IDR3, 'idr5': _SMMU_IDR5,
                'iidr': _SMMU_IIDR, 'aidr': _SMMU_AIDR}
SMMU_UNDECODED = dict((reg, 0xffffffff & ~_mask_union(table)) for reg, table in _SMMU_TABLES.items())

# Names of the field values the header defines (arm-smmu-v3.h:24-81).
SMMU_FIELD_VALUE_NAMES = {
    'idr0.st_lvl': {0: 'linear', 1: '2lvl'},                                 # IDR0_ST_LVL_2LVL
    'idr0.stall_model': {0: 'stall', 1: 'no_stall', 2: 'force'},             # _STALL, _FORCE
    'idr0.ttendian': {0: 'mixed', 2: 'le', 3: 'be'},                         # _MIXED, _LE, _BE
    'idr0.httu': {0: 'none', 1: 'access', 2: 'access_dirty', 3: 'access_dirty_haft'},
    'idr0.ttf': {1: 'aarch32', 2: 'aarch64', 3: 'aarch32_aarch64'},          # IDR0_TTF_AARCH64 = 2
    'idr5.oas': {0: '32_bit', 1: '36_bit', 2: '40_bit', 3: '42_bit', 4: '44_bit', 5: '48_bit',
                 6: '52_bit'},
    'idr5.vax': {0: '48_bit', 1: '52_bit'},                                  # IDR5_VAX_52_BIT
}
# arm_smmu_device_hw_probe() OAS switch (arm-smmu-v3.c:5202-5229); unknown values -> 48.
_SMMU_OAS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}
# arm-smmu-v3.c:4975-4979
_SMMU_ARM_PRODUCTS = {0x483: 'MMU-600', 0x487: 'MMU-700', 0x48a: 'MMU-L1', 0x498: 'MMU-S3'}
IIDR_IMPLEMENTER_ARM = 0x43b


def _smmu_nesting_errata(iidr):
    """arm_smmu_device_iidr_probe() (arm-smmu-v3.c:4981-5021): errata that clear FEAT_NESTING."""
    if iidr is None:
        return None
    f = _decode_masks(iidr, _SMMU_IIDR)
    if f['implementer'] != IIDR_IMPLEMENTER_ARM:
        return None
    if f['productid'] == 0x483 and f['variant'] < 2:
        return 'Arm erratum 1209401 (MMU-600 r0/r1)'
    if f['productid'] == 0x487 and (f['variant'] < 1 or f['revision'] < 1):
        return 'Arm errata 2268618, 2812531 (MMU-700 before r1p1)'
    return None


def _smmu_derived(regs, flags):
    d = {}
    idr0, idr1, idr3, idr5 = regs.get('idr0'), regs.get('idr1'), regs.get('idr3'), regs.get('idr5')
    iidr, aidr = regs.get('iidr'), regs.get('aidr')
    if idr0 is not None:
        f = _decode_masks(idr0, _SMMU_IDR0)
        names = SMMU_FIELD_VALUE_NAMES
        d['stream_table'] = names['idr0.st_lvl'].get(f['st_lvl'], 'reserved')
        d['translation_table_endianness'] = names['idr0.ttendian'].get(f['ttendian'], 'reserved')
        d['stall_model'] = names['idr0.stall_model'].get(f['stall_model'], 'reserved')
        d['hardware_table_update'] = names['idr0.httu'][f['httu']]
        d['asid_bits'] = 16 if f['asid16'] else 8
        d['vmid_bits'] = 16 if f['vmid16'] else 8
        d['first_stage'] = _pred(f['s1p'], 'IDR0.S1P(1) (ARM_SMMU_FEAT_TRANS_S1)')
        d['second_stage'] = _pred(f['s2p'], 'IDR0.S2P(0) (ARM_SMMU_FEAT_TRANS_S2)')
        erratum = _smmu_nesting_errata(iidr)
        basis = ('IDR0.S1P && IDR0.S2P (ARM_SMMU_FEAT_NESTING, arm-smmu-v3.c:5255-5257); a vIOMMU '
                 'also needs S2FWB or a CANWBS firmware flag (arm-smmu-v3-iommufd.c:533-567)')
        if erratum:
            basis += '; cleared by ' + erratum
        d['nesting'] = _pred(f['s1p'] and f['s2p'] and not erratum, basis)
        d['dirty_tracking'] = _pred(
            f['httu'] >= 2,
            'IDR0.HTTU >= 2 (ACCESS_DIRTY) -> ARM_SMMU_FEAT_HD, taken from IDR0 only on DT systems '
            '(from IORT on ACPI, arm_smmu_get_httu, arm-smmu-v3.c:5023-5047); also needs coherency '
            'from firmware: DT dma-coherent or IORT COHACC override (arm_smmu_dbm_capable, '
            'arm-smmu-v3.c:2759-2787); IDR0.COHACC is %d' % int(f['cohacc']))
        d['coherent_access'] = _pred(
            f['cohacc'], 'IDR0.COHACC(4); the kernel uses the firmware description and only warns '
                         'on a mismatch (arm-smmu-v3.c:5115-5117)')
        d['ats'] = _pred(f['ats'], 'IDR0.ATS(10), with CONFIG_PCI_ATS; per device also pci_ats_supported')
        d['page_requests'] = _pred(f['pri'], 'IDR0.PRI(16), with CONFIG_PCI_PRI')
        d['msi'] = _pred(f['msi'], 'IDR0.MSI(13)')
        d['aarch64_tables'] = _pred(bool(f['ttf'] & 2), 'IDR0.TTF & AARCH64 (arm-smmu-v3.c:5137-5141)')
        d['interrupt_remapping'] = _pred(
            None, 'an SMMU does not remap interrupts: MSI isolation comes from the GIC ITS')
    if idr1 is not None:
        f = _decode_masks(idr1, _SMMU_IDR1)
        d['stream_id_bits'] = f['sidsize']
        d['pasid_width'] = f['ssidsize']               # ssid_bits; max_pasids = 1 << ssid_bits
        d['max_pasids'] = 1 << f['ssidsize']
        d['command_queue_log2_entries'] = f['cmdqs']
        d['event_queue_log2_entries'] = f['evtqs']
        d['embedded_implementation'] = _pred(
            f['tables_preset'] or f['queues_preset'] or f['rel'],
            'IDR1.TABLES_PRESET || QUEUES_PRESET || REL: Linux refuses such an SMMU '
            '(arm-smmu-v3.c:5149-5152)')
    if idr3 is not None:
        f = _decode_masks(idr3, _SMMU_IDR3)
        d['range_invalidation'] = _pred(f['ril'], 'IDR3.RIL(10) (ARM_SMMU_FEAT_RANGE_INV)')
        d['stage2_force_write_back'] = _pred(f['fwb'], 'IDR3.FWB(8) (ARM_SMMU_FEAT_S2FWB)')
        d['bbml2'] = _pred(f['bbm'] == 2, 'IDR3.BBM == 2 (ARM_SMMU_FEAT_BBML2, arm-smmu-v3.c:5197-5198)')
    if idr5 is not None:
        f = _decode_masks(idr5, _SMMU_IDR5)
        oas = _SMMU_OAS_BITS.get(f['oas'], 48)
        d['output_address_width_bits'] = oas
        d['virtual_address_width_bits'] = 52 if f['vax'] == 1 else 48
        bitmap = 0
        if f['gran64k']:
            bitmap |= (1 << 16) | (1 << 29)             # SZ_64K | SZ_512M
        if f['gran16k']:
            bitmap |= (1 << 14) | (1 << 25)             # SZ_16K | SZ_32M
        if f['gran4k']:
            bitmap |= (1 << 12) | (1 << 21) | (1 << 30)  # SZ_4K | SZ_2M | SZ_1G
        if f['oas'] == 6:
            bitmap |= 1 << 42                           # 4TB with 52-bit OAS
        d['page_sizes'] = _sizes(bitmap)
        if idr0 is not None:
            f0 = _decode_masks(idr0, _SMMU_IDR0)
            d['first_stage_page_sizes'] = d['page_sizes'] if f0['s1p'] else []
            d['second_stage_page_sizes'] = d['page_sizes'] if f0['s2p'] else []
        d['large_physical_addresses'] = _pred(f['ds'], 'IDR5.DS(7) (ARM_SMMU_FEAT_DS)')
        d['max_outstanding_stalls'] = f['stall_max']
    if iidr is not None:
        f = _decode_masks(iidr, _SMMU_IIDR)
        if f['implementer'] == IIDR_IMPLEMENTER_ARM:
            d['implementer'] = 'Arm'
            d['product'] = _SMMU_ARM_PRODUCTS.get(f['productid'])
        else:
            d['implementer'] = _hex(f['implementer'])
            d['product'] = None
        d['product_revision'] = 'r%dp%d' % (f['variant'], f['revision'])
    if aidr is not None:
        f = _decode_masks(aidr, _SMMU_AIDR)
        d['architecture'] = ('SMMUv3.%d' % f['archminorrev']) if f['archmajorrev'] == 0 else None
    undecoded = {}
    for reg in ('idr0', 'idr1', 'idr3', 'idr5', 'iidr', 'aidr'):
        if regs.get(reg) is not None:
            undecoded[reg] = _hex(regs[reg] & SMMU_UNDECODED[reg])
    d['undecoded_bits_set'] = undecoded
    return d


def _smmuv3(regs, flags, errors, raw_extra=None):
    """regs: dict idr0..idr5, iidr, aidr -> int or None."""
    raw = {'idr': [_hex(regs.get('idr%d' % i)) for i in range(6)],
           'iidr': _hex(regs.get('iidr')), 'aidr': _hex(regs.get('aidr'))}
    if flags is not None:
        raw['flags'] = _hex(flags)
    raw.update(raw_extra or {})
    out = _result(2, raw, errors)
    for reg in ('idr0', 'idr1', 'idr3', 'idr5', 'iidr', 'aidr'):
        value = regs.get(reg)
        out[reg] = _decode_masks(value, _SMMU_TABLES[reg]) if value is not None else None
    for reg in ('idr2', 'idr4'):  # no field macros in the tree; hw_info still copies them
        value = regs.get(reg)
        out[reg] = {'raw': _hex(value)} if value is not None else None
    if flags is not None:
        out['flags'] = {
            # set when arm_smmu_erratum_repeat_tlbi_cfgi() (arm-smmu-v3-iommufd.c:10-43)
            'errata_repeat_tlbi_cfgi': bool(flags & IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI),
            'unknown_bits': _hex(flags & ~IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI),
        }
    out['derived'] = _smmu_derived(regs, flags)
    return out


@_guard('arm_smmuv3')
def decode_smmuv3(idr, iidr=0, aidr=0, flags=None):
    """Decode SMMUv3 IDR0-5 (a list of 6 values), IIDR and AIDR; flags of iommu_hw_info_arm_smmuv3."""
    errors = []
    regs = {}
    if isinstance(idr, (list, tuple)):
        if len(idr) != 6:
            errors.append('idr: %d values given, IDR0-IDR5 are 6' % len(idr))
        for i, value in enumerate(list(idr)[:6]):
            regs['idr%d' % i] = _reg(value, 32, 'idr[%d]' % i, errors)
    elif idr is None:
        errors.append('idr is missing')
    else:
        errors.append('idr: %s is not a list of 6 values' % _describe(idr))
    regs['iidr'] = _reg(iidr if iidr is not None else 0, 32, 'iidr', errors)
    regs['aidr'] = _reg(aidr if aidr is not None else 0, 32, 'aidr', errors)
    fl = _reg(flags, 32, 'flags', errors, required=False)
    return _smmuv3(regs, fl, errors)


# ------------------------------------------------------------------------------------------------
# NVIDIA Tegra241 CMDQV (iommufd.h:658-678, tegra241-cmdqv.c:870-893)
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# iommufd selftest mock device (drivers/iommu/iommufd/iommufd_test.h:204-211)
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# Raw vendor structs (IOMMU_GET_HW_INFO data_uptr)
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# Filter-plugin input
# ------------------------------------------------------------------------------------------------

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
    """Decode one filter-plugin request (see plugins/filter/decode_hw_info.yml).

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


__all__ = [
    'HW_INFO_TYPES', 'HW_INFO_TYPE_IDS', 'SMMU_FIELD_VALUE_NAMES',
    'decode_capabilities', 'decode_vtd', 'decode_amd', 'decode_smmuv3', 'decode_tegra241_cmdqv',
    'decode_selftest', 'decode_hw_info_data', 'decode_request', 'parse_type', 'requested_type',
    'to_int', 'to_count', 'amd_feature_names', 'parse_amd_features', 'pack_hw_info_data',
]
