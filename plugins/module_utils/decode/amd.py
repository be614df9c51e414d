# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AMD-Vi: the extended feature registers EFR (MMIO 0x30) and EFR2 (MMIO 0x1A0) (drivers/iommu/amd/).

``decode_amd`` decodes the ``FEATURE_*`` masks of drivers/iommu/amd/amd_iommu_types.h (76-108)
and derives page tables, PASID width, dirty tracking, nesting, ... as amd/init.c and amd/iommu.c
do; ``amd_feature_names`` is the list the kernel prints in dmesg; ``parse_amd_features`` reads
sysfs ivhdN/amd-iommu/features.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.decode.bits import (
    _decode_masks, _describe, _genmask, _hex, _mask_union, _pred, _reg, _sizes, to_int)
from ansible_collections.iommu.host.plugins.module_utils.decode.common import _guard, _result

__metaclass__ = type


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
