# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe access to ``iommu`` facts of any shape, for every check.

Facts may be partial, cached by an older collection, or hand-written: these helpers never raise.
``_dict``/``_list``/``_get``/``_int``/``_flag`` read values defensively; ``path``/``_dev_path``
build the JMESPath expressions used as evidence keys; ``vendor_view`` and ``_vfield`` give a
device's decoded IOMMU registers, from its own IOMMU_GET_HW_INFO answer when there is one, else
from the sysfs registers of its unit (labelled derived by ``_derived_note``);
``_intel_scalable_mode`` reads whether the Intel driver runs in scalable mode.
"""

from __future__ import absolute_import, division, print_function

import json
import re

__metaclass__ = type


_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# hw_info type ids (include/uapi/linux/iommufd.h enum iommu_hw_info_type)
_TYPE_IDS = {"intel_vtd": 1, "arm_smmuv3": 2, "tegra241_cmdqv": 3, "amd": 4}


def _dict(value):
    return value if isinstance(value, dict) else {}


def _list(value):
    return list(value) if isinstance(value, (list, tuple)) else []


def _get(obj, *keys):
    """obj[k1][k2]...; None as soon as a level is not a dict or lacks the key."""
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _int(value):
    """An int from an int or a decimal/0x string; None otherwise (bools are not ints here)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        try:
            return int(text, 16) if text.startswith("0x") else int(text)
        except ValueError:
            return None
    return None


def _flag(value):
    """True/False for a bool or a 0/1 int, None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def _text(value):
    try:
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):  # pragma: no cover - json.dumps with default=str rarely fails
        return repr(value)


def _qkey(key):
    key = str(key)
    return key if _IDENT_RE.match(key) else json.dumps(key)


def path(*keys):
    """A JMESPath expression for a fact: path('devices', '0000:00:09.0', 'driver')."""
    return ".".join(_qkey(k) for k in keys)


def _dev_path(addr, *keys):
    return path("devices", addr, *keys)


def _hw_ok(hw):
    return isinstance(hw, dict) and hw.get("source") == "iommufd" and not hw.get("error")


def _hw_type_id(hw):
    tid = _int(hw.get("type_id"))
    if tid is None:
        tid = _int(_get(hw, "vendor", "type_id"))
    if tid is None and isinstance(hw.get("type"), str):
        tid = _TYPE_IDS.get(hw["type"], 0 if hw["type"] == "none" else None)
    return tid


def vendor_view(ctx, addr):
    """The decoded vendor registers of a device's IOMMU and where they come from.

    iommufd (the device's own IOMMU_GET_HW_INFO answer, ``devices[a].hw_info.vendor``) is
    preferred; otherwise the sysfs registers of its unit (``units[u].decoded``).
    Returns {kind, decoded, basis ('iommufd'|'sysfs'), path, source, unit} or None.
    """
    dev = ctx.dev(addr)
    hw = dev.get("hw_info")
    unit_name = dev.get("iommu_unit")
    if _hw_ok(hw):
        vendor = hw.get("vendor")
        kind = _get(hw, "vendor", "type") or hw.get("type")
        if isinstance(vendor, dict) and kind not in (None, "none", "unknown"):
            return {"kind": kind, "decoded": vendor, "basis": "iommufd", "unit": unit_name,
                    "path": _dev_path(addr, "hw_info", "vendor"),
                    "source": "iommufd: IOMMU_GET_HW_INFO of %s" % addr}
    unit = _dict(ctx.units.get(unit_name)) if isinstance(unit_name, str) else {}
    if unit:
        decoded = unit.get("decoded") if isinstance(unit.get("decoded"), dict) else None
        kind = unit.get("vendor") if isinstance(unit.get("vendor"), str) else None   # junk facts: no vendor
        return {"kind": kind, "decoded": decoded, "basis": "sysfs", "unit": unit_name,
                "path": path("units", unit_name, "decoded"),
                "source": "sysfs: registers of IOMMU unit %s (%s)" % (
                    unit_name, unit.get("source") or unit.get("sysfs") or "/sys/class/iommu/%s" % unit_name)}
    return None


def _vfield(view, section, field):
    """(value, fact path) of a decoded register field; value None when unknown."""
    if not view or not isinstance(view.get("decoded"), dict):
        return None, None
    sec = view["decoded"].get(section)
    p = "%s.%s.%s" % (view["path"], _qkey(section), _qkey(field))
    if not isinstance(sec, dict) or field not in sec:
        return None, p
    value = sec[field]
    if isinstance(value, bool) or isinstance(value, int):
        return value, p
    return None, p


def _derived_note(view):
    if view and view["basis"] == "sysfs":
        return ("derived per vendor from the sysfs registers of %s (the kernel did not report it "
                "for this device: no IOMMU_GET_HW_INFO answer)" % view["unit"])
    return None


def _intel_scalable_mode(ctx):
    """(True/False/None, evidence): whether the Intel driver runs in scalable mode (intel_iommu_sm)."""
    eff = ctx.effects.get("scalable_mode")
    if isinstance(eff, bool):
        return eff, {"cmdline.effects.scalable_mode": eff}
    cfg = _get(ctx.kernel, "config", "CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON")
    ev = {"kernel.config.CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON": cfg,
          "cmdline.effects.scalable_mode": eff}
    if cfg == "y":
        return True, ev
    if cfg == "n":
        return False, ev
    return None, ev


def plain(value, _depth=0):
    """A copy of ``value`` made of exact JSON types (dict, list, str, int, float, bool, None).

    Ansible hands filters its own subclasses (AnsibleUnsafeText, 2.19's tagged str/dict/list), which
    JMESPath functions such as length(), keys(), contains() or starts_with() reject as "unknown"
    types. Keys become str; anything else becomes its str(); nesting deeper than 100 levels is cut.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if _depth > 100:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, dict):
        return dict((str(k) if not isinstance(k, str) else str.__str__(k), plain(v, _depth + 1))
                    for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
