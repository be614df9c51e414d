# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Intel VT-d: DMAR_CAP_REG and DMAR_ECAP_REG (drivers/iommu/intel/).

``decode_vtd`` decodes every ``cap_*`` (iommu.h:157-184) and ``ecap_*`` (189-218) macro of
drivers/iommu/intel/iommu.h, plus the flags of struct iommu_hw_info_vtd (iommufd.h:575-582), and
derives what the kernel derives from them: address widths (compute_vasz_lg2_ss), page sizes,
scalable mode, PASID width, dirty tracking (ssads_supported), nesting (nested_supported), ...
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.decode.bits import _field, _hex, _pred, _reg
from ansible_collections.iommu.host.plugins.module_utils.decode.common import _guard, _result

__metaclass__ = type


IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0           # iommufd.h:575-582


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
