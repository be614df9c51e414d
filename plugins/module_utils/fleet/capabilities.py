# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A flat summary of a host's IOMMU facts (``ansible_facts.iommu.capabilities``), for grouping.

Booleans, numbers and short strings only, so that ``group_by`` and the ``constructed``
inventory plugin's ``keyed_groups`` can group hosts without JMESPath (docs/fleet.md).
Pure and stdlib only (it also runs on the target, inside iommu_facts); never raises:
a value that cannot be known is None.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# the IOVA (input address) width each vendor decoder derives (decode/*.py)
_IOVA_KEYS = {"intel_vtd": "second_stage_iova_bits", "amd": "host_address_width_bits",
              "arm_smmuv3": "virtual_address_width_bits"}
_NOT_REAL = ("selftest",)


def _d(value):
    return value if isinstance(value, dict) else {}


def _l(value):
    return list(value) if isinstance(value, (list, tuple)) else []


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _supported(derived, key):
    value = _d(derived.get(key)).get("supported")
    return value if isinstance(value, bool) else None


def _hw_caps(dev):
    hw = _d(dev.get("hw_info"))
    if hw.get("source") == "iommufd" and not hw.get("error"):
        return _d(hw.get("capabilities"))
    return None


def _scalable_mode(facts):
    eff = _d(_d(facts.get("cmdline")).get("effects")).get("scalable_mode")
    if isinstance(eff, bool):
        return eff
    cfg = _d(_d(facts.get("kernel")).get("config")).get("CONFIG_INTEL_IOMMU_SCALABLE_MODE_DEFAULT_ON")
    return {"y": True, "n": False}.get(cfg)


def _unit_derived(units, dev):
    unit = _d(units.get(dev.get("iommu_unit"))) if isinstance(dev.get("iommu_unit"), str) else {}
    return unit.get("vendor"), _d(_d(unit.get("decoded")).get("derived"))


def _device_dirty(facts, units, dev):
    """Whether the IOMMU of a device tracks dirty pages: the kernel's answer, else derived."""
    caps = _hw_caps(dev)
    if caps is not None and isinstance(caps.get("dirty_tracking"), bool):
        return caps["dirty_tracking"]
    vendor, derived = _unit_derived(units, dev)
    value = _supported(derived, "dirty_tracking")
    if value and vendor == "intel_vtd" and _scalable_mode(facts) is not True:
        return False if _scalable_mode(facts) is False else None
    return value


def _device_pasid(facts, units, dev):
    caps = _hw_caps(dev)
    if caps is not None and _int(caps.get("max_pasid_log2")) is not None:
        return caps["max_pasid_log2"]
    vendor, derived = _unit_derived(units, dev)
    if vendor == "intel_vtd":
        if _supported(derived, "pasid") is False or _scalable_mode(facts) is False:
            return 0
    return _int(derived.get("pasid_width"))


def _intel_sm(facts, real):
    """Whether the Intel driver runs in scalable mode: the kernel's setting and an SMTS-capable unit."""
    hw = [_supported(_d(_d(u.get("decoded")).get("derived")), "scalable_mode") for u in real
          if u.get("vendor") == "intel_vtd"]
    if hw and all(v is False for v in hw):
        return False
    return _scalable_mode(facts)


def _any(values):
    """True if any is True, False if all are False, None if unknown (or empty)."""
    if any(v is True for v in values):
        return True
    if values and all(v is False for v in values):
        return False
    return None


def capabilities(facts):
    """The flat capabilities of one host's ``iommu`` facts (schema_version 1); never raises."""
    try:
        return _capabilities(_d(facts))
    except Exception:  # pragma: no cover - odd facts become unknowns, never an error
        return _capabilities({})


def _capabilities(facts):
    kernel = _d(facts.get("kernel"))
    units = _d(facts.get("units"))
    devices = _d(facts.get("devices"))
    summary = _d(facts.get("summary"))
    vendors = [v for v in _l(facts.get("vendors")) if isinstance(v, str)]
    real = [u for u in units.values() if isinstance(u, dict) and u.get("vendor") not in _NOT_REAL]
    vfio = [a for a in _l(summary.get("vfio_devices")) if isinstance(a, str) and isinstance(devices.get(a), dict)]
    nodes = _d(kernel.get("dev_nodes"))
    ir = _d(kernel.get("interrupt_remapping")).get("enabled")

    iova = [_int(_d(_d(u.get("decoded")).get("derived")).get(_IOVA_KEYS.get(u.get("vendor"), ""))) for u in real]
    iova = [v for v in iova if v is not None]
    nesting = [_supported(_d(_d(u.get("decoded")).get("derived")), "nesting") for u in real]
    dirty = dict((a, _device_dirty(facts, units, devices[a])) for a in vfio)
    pasid = [_device_pasid(facts, units, devices[a]) for a in vfio]
    pasid = [p for p in pasid if p is not None]
    if not vfio:
        pasid = [_int(_d(_d(u.get("decoded")).get("derived")).get("pasid_width")) for u in real]
        pasid = [p for p in pasid if p is not None]
    iommufd = _d(kernel.get("iommufd")).get("available")
    cdev = _d(kernel.get("vfio_device_cdev")).get("available")
    domains = [t for t in _l(summary.get("default_domain_types")) if isinstance(t, str)]
    return {
        "present": facts.get("present") if isinstance(facts.get("present"), bool) else None,
        "vendor": vendors[0] if len(vendors) == 1 else ("mixed" if vendors else "none"),
        "units": len(real),
        "iommufd_usable": bool(iommufd is True and nodes.get("iommu") is not False),
        "vfio_cdev": cdev if isinstance(cdev, bool) else None,
        "interrupt_remapping": ir if isinstance(ir, bool) else None,
        "scalable_mode": _intel_sm(facts, real) if "intel_vtd" in vendors else None,
        "default_domain": domains[0] if len(domains) == 1 else ("mixed" if domains else None),
        "max_iova_bits": max(iova) if iova else None,
        "min_iova_bits": min(iova) if iova else None,
        "nesting": _any(nesting),
        "pasid_bits": max(pasid) if pasid else None,
        "vfio_devices": len(vfio),
        "mdevs": len(_d(facts.get("mdevs"))),
        "dirty_tracking": _any(list(dirty.values())),
        "dirty_tracking_devices": sorted(a for a, v in dirty.items() if v is True),
        "kernel_release": kernel.get("release") if isinstance(kernel.get("release"), str) else None,
    }


def with_capabilities(facts):
    """``facts`` with its ``capabilities`` summary added (iommu_facts.gather)."""
    if isinstance(facts, dict):
        facts["capabilities"] = capabilities(facts)
    return facts


_NFD_NAME_OK = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."


def _nfd_value(value):
    """A Kubernetes label value (63 characters at most, alphanumeric at both ends, -_. inside), or None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value >= 0 else None  # "-1" is no label value
    if not isinstance(value, str):
        return None
    text = "".join(c if c in _NFD_NAME_OK else "-" for c in value)[:63].strip("-_.")
    return text or None


def nfd_features(facts, name_prefix="iommu-", namespace=None):
    """``facts``: the iommu facts, or their capabilities. The capabilities as a Node Feature Discovery local feature file (features.d): one ``name=value``
    line each, sorted; None values are left out, ``dirty_tracking_devices`` becomes its count. Without
    ``namespace`` NFD labels them ``feature.node.kubernetes.io/<name>``."""
    if isinstance(facts, dict) and isinstance(facts.get("capabilities"), dict):
        caps = facts["capabilities"]
    elif isinstance(facts, dict) and "iommufd_usable" in facts:
        caps = facts  # the capabilities dict itself
    else:
        caps = capabilities(facts)
    lines = ["# iommu.host capabilities (ansible_facts.iommu.capabilities), for nfd-worker's local source"]
    for key in sorted(caps):
        value = caps[key]
        if key == "dirty_tracking_devices":
            key, value = "dirty_tracking_device_count", len(value) if isinstance(value, list) else None
        value = _nfd_value(value)
        if value is None:
            continue
        name = "".join(c if c in _NFD_NAME_OK else "-" for c in "%s%s" % (name_prefix or "", key))[:63]
        lines.append("%s%s=%s" % ("%s/" % namespace if namespace else "", name, value))
    return "\n".join(lines) + "\n"
