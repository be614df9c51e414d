# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ARM SMMUv3: IDR0-5, IIDR and AIDR (drivers/iommu/arm/arm-smmu-v3/).

``decode_smmuv3`` decodes the ``IDRn_*`` / ``IIDR_*`` fields of arm-smmu-v3.h (21-87), the flags
of struct iommu_hw_info_arm_smmuv3 (iommufd.h:606-614), and derives what
arm_smmu_device_hw_probe() derives (stages, nesting minus errata, dirty tracking, OAS, page
sizes, ...). These registers are only readable through IOMMU_GET_HW_INFO (no sysfs).
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.decode.bits import (
    _decode_masks, _describe, _genmask, _hex, _mask_union, _pred, _reg, _sizes)
from ansible_collections.iommu.host.plugins.module_utils.decode.common import _guard, _result

__metaclass__ = type


IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI = 1 << 0  # iommufd.h:606-614


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


# The driver's feature word (struct arm_smmu_device.features), printed by arm_smmu_device_hw_probe() as
# "oas N-bit (features 0x%08x)": ARM_SMMU_FEAT_* of arm-smmu-v3.h:903-929 (Linux 7.3).
ARM_SMMU_FEAT = (
    (0, '2_lvl_strtab'), (1, '2_lvl_cdtab'), (2, 'tt_le'), (3, 'tt_be'), (4, 'pri'), (5, 'ats'), (6, 'sev'),
    (7, 'msi'), (8, 'coherency'), (9, 'trans_s1'), (10, 'trans_s2'), (11, 'stalls'), (12, 'hyp'),
    (13, 'stall_force'), (14, 'vax'), (15, 'range_inv'), (16, 'btm'), (17, 'sva'), (18, 'e2h'), (19, 'nesting'),
    (20, 'attr_types_ovr'), (21, 'ha'), (22, 'hd'), (23, 's2fwb'), (24, 'bbml2'), (25, 'haft'), (26, 'ds'),
)
# Bits the ID registers alone do not decide: firmware (coherency; HTTU on ACPI), the CPU (e2h: VHE;
# sva: CPU features and CONFIG_ARM_SMMU_V3_SVA). btm is never set by Linux 7.3 (only cleared by errata).
ARM_SMMU_FEAT_NOT_FROM_IDR = ('coherency', 'e2h', 'sva')


# arm_smmu_device_hw_probe(): (IDR register, field, condition, ARM_SMMU_FEAT_* name). The condition is
# "non-zero" (True) or a tuple of the field values that set the feature. pri, ats and e2h also depend
# on the kernel (kernel_features' pci_pri, pci_ats, vhe).
_FEATURE_RULES = (
    (0, 'cd2l', True, '2_lvl_cdtab'),
    (0, 'ttendian', (0, 2), 'tt_le'),                    # mixed or little endian; a little-endian kernel
    (0, 'ttendian', (0,), 'tt_be'),
    (0, 'pri', True, 'pri'),
    (0, 'ats', True, 'ats'),
    (0, 'sev', True, 'sev'),
    (0, 'msi', True, 'msi'),
    (0, 'hyp', True, 'hyp'),
    (0, 'hyp', True, 'e2h'),                             # with a VHE kernel
    (0, 'stall_model', (2,), 'stall_force'),
    (0, 'stall_model', (0, 2), 'stalls'),
    (0, 's1p', True, 'trans_s1'),
    (0, 's2p', True, 'trans_s2'),
    (1, 'attr_types_ovr', True, 'attr_types_ovr'),
    (3, 'ril', True, 'range_inv'),
    (3, 'fwb', True, 's2fwb'),
    (3, 'bbm', (2,), 'bbml2'),
    (5, 'ds', True, 'ds'),
    (5, 'vax', (1,), 'vax'),
)


def kernel_features(idr, iidr=0, coherent=None, firmware='dt', pci_ats=True, pci_pri=True, vhe=False):
    """The ARM_SMMU_FEAT_* word arm_smmu_device_hw_probe() (arm-smmu-v3.c:5049-5262) derives from IDR0-5 and
    IIDR, for comparison with the kernel's own "features 0x..." line.

    ``coherent``: the firmware's coherency (DT dma-coherent / IORT COHACC override; None: take IDR0.COHACC);
    ``firmware``: 'dt' (HTTU from IDR0, arm_smmu_get_httu) or 'acpi' (HTTU from IORT: not predicted);
    ``pci_ats``/``pci_pri``: CONFIG_PCI_ATS/PRI; ``vhe``: the CPU runs the kernel at EL2 (E2H).
    SVA is not predicted (CPU features). Returns {bits, hex, names, per-feature booleans, not_predicted}.
    Raises nothing: odd input gives None.
    """
    regs = list(idr) if isinstance(idr, (list, tuple)) else []
    if len(regs) != 6 or not all(isinstance(v, int) and not isinstance(v, bool) for v in regs):
        return None
    idr0, idr1, idr3, idr5 = (regs[0] & 0xffffffff, regs[1] & 0xffffffff, regs[3] & 0xffffffff,
                              regs[5] & 0xffffffff)
    f = {0: _decode_masks(idr0, _SMMU_IDR0), 1: _decode_masks(idr1, _SMMU_IDR1),
         3: _decode_masks(idr3, _SMMU_IDR3), 5: _decode_masks(idr5, _SMMU_IDR5)}
    f0 = f[0]
    enabled = {'pri': pci_pri, 'ats': pci_ats, 'e2h': vhe}
    on = set(feat for reg, field, value, feat in _FEATURE_RULES
             if enabled.get(feat, True) and (f[reg][field] in value if isinstance(value, tuple)
                                             else bool(f[reg][field])))
    if coherent is None:
        coherent = bool(f0['cohacc'])
    if coherent:
        on.add('coherency')
    if f0['st_lvl'] == 1 and f[1]['sidsize'] > 8:        # STRTAB_SPLIT = 8: small tables stay linear
        on.add('2_lvl_strtab')
    if firmware == 'dt':                                 # HTTU from IDR0 (arm_smmu_get_httu)
        on.update(name for level, name in ((1, 'ha'), (2, 'hd'), (3, 'haft')) if f0['httu'] >= level)
    if f0['s1p'] and f0['s2p'] and not _smmu_nesting_errata(iidr if isinstance(iidr, int) else None):
        on.add('nesting')
    bits = 0
    out = {}
    for bit, name in ARM_SMMU_FEAT:
        out[name] = name in on
        if name in on:
            bits |= 1 << bit
    not_predicted = ['sva'] + ([] if firmware == 'dt' else ['ha', 'hd', 'haft'])
    return {'bits': bits, 'hex': '0x%08x' % bits, 'names': [n for _b, n in ARM_SMMU_FEAT if n in on],
            'features': out, 'not_predicted': not_predicted}


def kernel_feature_names(word):
    """The ARM_SMMU_FEAT_* names of a features word as the kernel prints it (int or "0x..."); None if odd."""
    if isinstance(word, str):
        try:
            word = int(word, 16)
        except ValueError:
            return None
    if not isinstance(word, int) or isinstance(word, bool) or word < 0:
        return None
    return [name for bit, name in ARM_SMMU_FEAT if word & (1 << bit)]
