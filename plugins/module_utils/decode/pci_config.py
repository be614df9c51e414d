# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PCI configuration space in, PCIe port type and ACS out (pure; never raises).

``parse_config(blob)`` reads the bytes of ``/sys/bus/pci/devices/<a>/config`` as the kernel
gives them: 4096 bytes (extended configuration space) to root for a PCIe function, 256 for a
conventional PCI function or when the platform has no ECAM, and only the first 64 bytes to
other users (drivers/pci/pci-sysfs.c pci_read_config: "Only root may read the whole header").
It walks the standard capability list (include/uapi/linux/pci_regs.h PCI_CAPABILITY_LIST,
PCI_CAP_ID_EXP 0x10) for the PCIe port type (PCI_EXP_FLAGS_TYPE) and the extended capability
list from 0x100 (PCI_EXT_CAP_ID_ACS 0x0d) for Access Control Services: the capability
(PCI_ACS_CAP, +4) and control (PCI_ACS_CTRL, +6) registers, each decoded into the seven
bits lspci prints (SrcValid, TransBlk, ReqRedir, CmpltRedir, UpstreamFwd, EgressCtrl,
DirectTrans). ``isolates`` applies the kernel's test (drivers/pci/pci.c pci_acs_flags_enabled
with REQ_ACS_FLAGS of drivers/iommu/iommu.c): source validation, request and completion
redirect and upstream forwarding enabled wherever the port implements them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

EXT_CONFIG_SIZE = 4096
CONFIG_SIZE = 256
HEADER_SIZE = 64

PCI_CAP_ID_EXP = 0x10
PCI_EXT_CAP_ID_ACS = 0x000D

# include/uapi/linux/pci_regs.h PCI_ACS_*: bit, key, lspci's name
ACS_BITS = (
    (0, "sv", "SrcValid"),       # PCI_ACS_SV  source validation
    (1, "tb", "TransBlk"),       # PCI_ACS_TB  translation blocking
    (2, "rr", "ReqRedir"),       # PCI_ACS_RR  P2P request redirect
    (3, "cr", "CmpltRedir"),     # PCI_ACS_CR  P2P completion redirect
    (4, "uf", "UpstreamFwd"),    # PCI_ACS_UF  upstream forwarding
    (5, "ec", "EgressCtrl"),     # PCI_ACS_EC  P2P egress control
    (6, "dt", "DirectTrans"),    # PCI_ACS_DT  direct translated P2P
)
# drivers/iommu/iommu.c REQ_ACS_FLAGS: what the kernel requires of a port to isolate what is below it
REQUIRED = ("sv", "rr", "cr", "uf")

# PCI_EXP_FLAGS_TYPE values (include/uapi/linux/pci_regs.h PCI_EXP_TYPE_*)
PORT_TYPES = {
    0x0: "endpoint", 0x1: "legacy_endpoint", 0x4: "root_port", 0x5: "upstream_port",
    0x6: "downstream_port", 0x7: "pcie_to_pci_bridge", 0x8: "pci_to_pcie_bridge",
    0x9: "rc_integrated_endpoint", 0xa: "rc_event_collector",
}
# Ports whose own ACS the kernel tests for what lies below them (pci_acs_enabled)
ACS_PORTS = ("root_port", "downstream_port")

_MAX_STD_CAPS = 48      # (256 - 64) / 4: a longer walk is a loop
_MAX_EXT_CAPS = 960     # (4096 - 256) / 4


def _u8(blob, off):
    return blob[off] if 0 <= off < len(blob) else None


def _u16(blob, off):
    if off < 0 or off + 2 > len(blob):
        return None
    return blob[off] | (blob[off + 1] << 8)


def _u32(blob, off):
    if off < 0 or off + 4 > len(blob):
        return None
    return blob[off] | (blob[off + 1] << 8) | (blob[off + 2] << 16) | (blob[off + 3] << 24)


def decode_acs_bits(value):
    """{sv, tb, rr, cr, uf, ec, dt} of an ACS capability or control register value."""
    value = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return dict((key, bool((value >> bit) & 1)) for bit, key, _name in ACS_BITS)


def acs_isolates(cap, ctrl):
    """The kernel's pci_acs_flags_enabled(dev, REQ_ACS_FLAGS): every required flag the port
    implements is enabled (a flag the port does not implement is not required)."""
    required = 0
    for bit, key, _name in ACS_BITS:
        if key in REQUIRED and (cap >> bit) & 1:
            required |= 1 << bit
    return (ctrl & required) == required


def lspci_line(bits):
    """'SrcValid+ TransBlk- ...' as lspci -vvv prints ACSCap/ACSCtl."""
    return " ".join("%s%s" % (name, "+" if bits.get(key) else "-") for _bit, key, name in ACS_BITS)


def _std_caps(blob, problems):
    """{cap id: offset} of the standard capability list (first occurrence)."""
    caps = {}
    status = _u16(blob, 0x06)
    if status is None or not status & 0x10:        # PCI_STATUS_CAP_LIST
        return caps
    pos = _u8(blob, 0x34)
    seen = set()
    for _i in range(_MAX_STD_CAPS):
        if pos is None or pos < 0x40:
            break
        pos &= 0xfc
        if pos in seen:
            problems.append("capability list loops at 0x%02x" % pos)
            break
        seen.add(pos)
        cid, nxt = _u8(blob, pos), _u8(blob, pos + 1)
        if cid is None or nxt is None:
            problems.append("capability at 0x%02x lies beyond the %d bytes read" % (pos, len(blob)))
            break
        if cid == 0xff:
            break
        caps.setdefault(cid, pos)
        pos = nxt
    return caps


def _ext_caps(blob, problems):
    """[(id, version, offset)] of the extended capability list from 0x100."""
    out = []
    pos = 0x100
    seen = set()
    for _i in range(_MAX_EXT_CAPS):
        header = _u32(blob, pos)
        if header is None:
            problems.append("extended capability at 0x%03x lies beyond the %d bytes read" % (pos, len(blob)))
            break
        if header in (0, 0xffffffff):
            break
        if pos in seen:
            problems.append("extended capability list loops at 0x%03x" % pos)
            break
        seen.add(pos)
        out.append((header & 0xffff, (header >> 16) & 0xf, pos))
        nxt = (header >> 20) & 0xffc
        if nxt < 0x100:
            break
        pos = nxt
    return out


def parse_config(blob):
    """Decode a config-space blob. Returns a dict (never raises):

    ``size`` bytes read; ``readable``: 'extended' (4096), 'conventional' (256), 'header' (64,
    not root) or 'none'; ``pcie`` (bool or None when unknown); ``port_type`` (PORT_TYPES name,
    or None); ``multifunction`` (header type bit 7); ``acs``: None when the capability is
    absent or cannot be seen, else {offset, version, cap_raw, ctrl_raw, capability{...},
    control{...}, egress_vector_size, isolates}; ``acs_status``: 'present', 'absent',
    'not_pcie' (conventional PCI has no ACS), 'extended_config_not_readable', 'not_readable';
    ``note``: one sentence saying why when there is no ACS to show; ``problems``: malformed lists.
    """
    out = {"size": 0, "readable": "none", "vendor_id": None, "device_id": None, "pcie": None,
           "port_type": None, "multifunction": None, "acs": None, "acs_status": "not_readable",
           "note": None, "problems": []}
    if not isinstance(blob, (bytes, bytearray)):
        out["note"] = "configuration space not readable"
        return out
    blob = bytes(blob[:EXT_CONFIG_SIZE])
    out["size"] = len(blob)
    if len(blob) < HEADER_SIZE:
        out["note"] = "configuration space not readable (%d bytes)" % len(blob)
        return out
    vendor, device = _u16(blob, 0), _u16(blob, 2)
    out["vendor_id"], out["device_id"] = "0x%04x" % vendor, "0x%04x" % device
    out["multifunction"] = bool(_u8(blob, 0x0e) & 0x80)
    if len(blob) < CONFIG_SIZE:
        out["readable"] = "header"
        out["note"] = ("only the %d-byte header is readable (not root): capabilities, and so ACS, "
                       "not readable" % len(blob))
        return out
    out["readable"] = "extended" if len(blob) >= EXT_CONFIG_SIZE else "conventional"
    caps = _std_caps(blob, out["problems"])
    exp = caps.get(PCI_CAP_ID_EXP)
    out["pcie"] = exp is not None
    if exp is not None:
        flags = _u16(blob, exp + 2)
        if flags is not None:
            out["port_type"] = PORT_TYPES.get((flags >> 4) & 0xf, "type_%d" % ((flags >> 4) & 0xf))
    if exp is None:
        out["acs_status"] = "not_pcie"
        out["note"] = "conventional PCI function (no PCI Express capability): no ACS"
        return out
    if out["readable"] != "extended":
        out["acs_status"] = "extended_config_not_readable"
        out["note"] = ("extended config space not readable (%d bytes): ACS unknown, not absent"
                       % len(blob))
        return out
    for cid, version, pos in _ext_caps(blob, out["problems"]):
        if cid != PCI_EXT_CAP_ID_ACS:
            continue
        cap, ctrl = _u16(blob, pos + 4), _u16(blob, pos + 6)
        if cap is None or ctrl is None:
            out["problems"].append("ACS capability at 0x%03x is cut short" % pos)
            break
        out["acs"] = {
            "offset": "0x%03x" % pos, "version": version,
            "cap_raw": "0x%04x" % cap, "ctrl_raw": "0x%04x" % ctrl,
            "capability": decode_acs_bits(cap), "control": decode_acs_bits(ctrl),
            "egress_vector_size": (cap >> 8) & 0xff if cap & 0x20 else None,
            "isolates": acs_isolates(cap, ctrl),
        }
        out["acs_status"] = "present"
        return out
    out["acs_status"] = "absent"
    out["note"] = "no ACS extended capability (ID 0x000d)"
    return out
