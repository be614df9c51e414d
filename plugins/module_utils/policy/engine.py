# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evaluation: facts + profiles + devices (+ custom checks) -> the gate's result.

``evaluate`` unwraps the facts (``unwrap_facts``), resolves the profiles and parameters
(params.py), selects the devices (select.py), runs every registered check of the selected
profiles in registration order (checks/), adds the custom checks (custom.py) and builds the
result: findings sorted failures first, counts, status, ``summary`` lines (``summary_lines``).
``catalogue`` lists every check with the profiles using it (docs and tests). Never raises.
"""

from __future__ import absolute_import, division, print_function

# Importing the check families registers every check, in the order of the findings (checks/__init__.py).
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import all as _all_checks  # noqa: F401 pylint: disable=unused-import
from ansible_collections.iommu.host.plugins.module_utils.policy import releases
from ansible_collections.iommu.host.plugins.module_utils.policy.custom import _custom_finding, evaluate_custom
from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _get, path, plain, _text
from ansible_collections.iommu.host.plugins.module_utils.policy.params import PROFILES, resolve_profiles
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import (
    CHECKS, FAIL, NA, _ORDER, PASS, STATUSES, WARN, Context, _r)
from ansible_collections.iommu.host.plugins.module_utils.policy.select import ALL_VFIO, select_devices

__metaclass__ = type


ENGINE_VERSION = 1
FACTS_SCHEMA_VERSION = 1

_RANK = {FAIL: 0, WARN: 1, PASS: 2, NA: 3}
_LABEL = {FAIL: "FAIL", WARN: "WARN", PASS: "PASS", NA: "N/A "}


_FACT_KEYS = ("schema_version", "devices", "kernel", "units", "groups", "present", "cmdline", "firmware", "mdevs")


def unwrap_facts(data):
    """The iommu facts from ansible_facts (with 'iommu'), hostvars-like dicts or the iommu dict itself.

    An ``iommu`` (or ``ansible_iommu``) key wins: ansible_facts gathered with ``setup`` too also have
    ``devices`` and ``cmdline`` keys, which are not ours.
    """
    if not isinstance(data, dict):
        return None
    for key in ("iommu", "ansible_iommu"):
        if isinstance(data.get(key), dict):
            return data[key]
    if isinstance(data.get("ansible_facts"), dict):
        inner = unwrap_facts(data["ansible_facts"])
        if inner is not None:
            return inner
    if any(key in data for key in _FACT_KEYS):
        return data
    if isinstance(data.get("ansible_facts"), dict):
        return unwrap_facts(data["ansible_facts"])
    return None


def _safe(func, *args):
    try:
        res = func(*args)
    except Exception as e:  # a check must never break the gate; report the bug as a failure
        return _r(FAIL, "Internal error evaluating this check: %s: %s" % (type(e).__name__, e), {}, "iommu.host",
                  "Report this bug to the iommu.host maintainers, with the facts.")
    if not isinstance(res, dict) or res.get("status") not in STATUSES:
        return _r(FAIL, "Internal error: the check returned %s." % _text(res), {}, "iommu.host", None)
    return res


def _effect(chk, res):
    """What QEMU does about this finding: refuse (the VM does not start), block_migration, warning, or None."""
    if res["status"] not in (FAIL, WARN):
        return None
    if res.get("effect"):
        return res["effect"]
    if res["status"] == WARN:
        return None
    return "block_migration" if chk["id"].startswith("migration.") else "refuse"


def _finish(chk, ctx, res, device, profiles):
    return {"id": chk["id"], "host": ctx.host, "device": device, "status": res["status"],
            "qemu_effect": _effect(chk, res),
            "message": res["message"], "evidence": res.get("evidence") or {},
            "remedy": res.get("remedy") if res["status"] in (FAIL, WARN) else None,
            "rule": res.get("rule") or chk["rule"], "title": chk["title"], "profiles": profiles}


def _meta(check_id, host, status, message, evidence, remedy, rule, title):
    return {"id": check_id, "host": host, "device": None, "status": status, "qemu_effect": None, "message": message,
            "evidence": evidence, "remedy": remedy if status in (FAIL, WARN) else None, "rule": rule,
            "title": title, "profiles": []}


def evaluate(facts, profiles=None, devices=None, host=None, custom=None, params=None, assume_plain=False):
    """Evaluate the selected profiles (and custom checks) for the selected devices.

    facts: the ``iommu`` facts (or ansible_facts holding them); profiles: names or dicts
    (default [passthrough]); devices: 'all_vfio' (default), PCI addresses, vendor:device or mdev
    UUIDs; custom: user-defined checks (see evaluate_custom); params: profile parameters.
    Every input is first copied into plain JSON types (facts.plain), since Ansible hands filters
    its own str/dict subclasses; ``assume_plain=True`` skips that for callers that did it once
    (placement over many hosts).
    Returns {host, status, findings, summary, failed, counts, selected, profiles, params, ...};
    findings are sorted failures first. Never raises.
    """
    try:
        if not assume_plain:
            facts, profiles, devices, custom, params = (plain(x) for x in (facts, profiles, devices, custom, params))
        return _evaluate(facts, profiles, devices, host, custom, params)
    except Exception as e:  # pragma: no cover - last line of defence
        finding = _meta("engine.error", host, FAIL, "Internal error in the preflight engine: %s: %s" % (
            type(e).__name__, e), {}, "Report this bug to the iommu.host maintainers.", "iommu.host", "engine")
        return _result(host, [finding], [], [], [], {}, {}, None)


def _evaluate(facts, profiles, devices, host, custom, params):
    host = str(host) if host is not None else "localhost"
    iommu = unwrap_facts(facts)
    findings = []
    names, values, given, problems = resolve_profiles(profiles, params)
    rule_cfg = "iommu.host preflight profiles (docs/preflight.md)"
    if problems:
        findings.append(_meta("config.profiles", host, FAIL, "Invalid preflight configuration: %s." % "; ".join(problems),
                              {"profiles": _text(profiles), "params": _text(params)},
                              "Fix the profiles/params (docs/preflight.md lists them).", rule_cfg,
                              "Profiles and parameters valid"))
    if values.get("_qemu_note") and any(
            "qemu_version" in PROFILES[n]["params"] for n in names):
        note = values["_qemu_note"]
        findings.append(_meta("config.qemu_version", host, WARN, "%s%s." % (note[:1].upper(), note[1:]),
                              {"params.qemu_version": values.get("qemu_version"),
                               "verified": releases.verified_text()},
                              "Give the QEMU release the VM runs on as qemu_version (the rules are verified for %s)."
                              % releases.verified_text(), "iommu.host policy/releases.py",
                              "QEMU release has verified rules"))
    if not isinstance(iommu, dict) or not iommu:
        findings.append(_meta("facts.iommu", host, FAIL, "No iommu facts for this host: nothing can be checked.",
                              {"iommu": _text(iommu) if iommu is not None else None},
                              "Gather them with iommu.host.iommu_facts (the preflight role does this).",
                              "iommu.host facts schema", "IOMMU facts present"))
        return _result(host, findings, names, [], [], values, given, None)
    schema = iommu.get("schema_version")
    if schema != FACTS_SCHEMA_VERSION:
        findings.append(_meta("facts.iommu", host, WARN,
                              "The facts have schema_version %s; this engine reads version %d: checks may "
                              "miss facts." % (_text(schema), FACTS_SCHEMA_VERSION), {"schema_version": schema},
                              "Gather the facts again with this collection's iommu.host.iommu_facts.",
                              "iommu.host facts schema", "IOMMU facts present"))
    pci, mdevs, sel_problems, matched = select_devices(iommu, devices)
    device_level = bool(names)
    ctx = Context(iommu, host, values, pci, mdevs, names)

    sel_ev = {"devices": _text(devices if devices is not None else ALL_VFIO), "selected": pci + mdevs,
              "source": "devices, mdevs, summary.vfio_pci_devices"}
    rule_sel = "iommu.host preflight device selection (PCI address, vendor:device, mdev UUID, all_vfio)"
    if not device_level:
        findings.append(_meta("selection.devices", host, NA, "No device-level profile is selected.", sel_ev, None,
                              rule_sel, "Devices to gate selected"))
    elif not pci and not mdevs:
        findings.append(_meta("selection.devices", host, FAIL, "No device selected, so there is nothing to gate: %s." %
                              "; ".join("%s: %s" % (s, p) for s, p in sel_problems) if sel_problems else
                              "No device selected, so there is nothing to gate.", sel_ev,
                              "Bind the devices the VM will use to vfio-pci, or name them (PCI address, vendor:device) "
                              "in preflight_devices.", rule_sel, "Devices to gate selected"))
    elif sel_problems:
        findings.append(_meta("selection.devices", host, FAIL, "Selected %s, but %s." % (
            ", ".join(pci + mdevs), "; ".join("%s: %s" % (s, p) for s, p in sel_problems)), sel_ev,
            "Name only devices present on this host.", rule_sel, "Devices to gate selected"))
    else:
        findings.append(_meta("selection.devices", host, PASS, "Selected %s (%s)." % (
            ", ".join(pci + mdevs), "; ".join("%s -> %s" % (s, ", ".join(f)) for s, f in matched)), sel_ev, None,
            rule_sel, "Devices to gate selected"))

    check_ids, owners = [], {}
    for name in names:
        for cid in PROFILES[name]["checks"]:
            if cid not in owners:
                check_ids.append(cid)
                owners[cid] = []
            owners[cid].append(name)
    for cid in check_ids:
        chk = CHECKS[cid]
        profs = owners[cid]
        if chk["scope"] == "host":
            if chk["host_iommu"] and ctx.only_mdevs:
                res = _r(NA, "Only mediated devices are assigned; they do not use the host IOMMU directly.",
                         {"selected mdevs": mdevs}, "device selection")
            else:
                res = _safe(chk["func"], ctx, values)
            findings.append(_finish(chk, ctx, res, None, profs))
        elif chk["scope"] == "vm":
            if not pci and not mdevs:
                res = _r(NA, "No device selected (see selection.devices).", {}, "device selection")
            else:
                res = _safe(chk["func"], ctx, values)
            findings.append(_finish(chk, ctx, res, None, profs))
        else:
            if not pci and not mdevs:
                findings.append(_finish(chk, ctx, _r(NA, "No device selected (see selection.devices).", {},
                                                     "device selection"), None, profs))
            for addr in pci:
                res = _safe(chk["func"], ctx, addr, ctx.dev(addr), values)
                findings.append(_finish(chk, ctx, res, addr, profs))
            for uuid in mdevs:
                if chk["mdev"] is True:
                    res = _safe(chk["func"], ctx, uuid, ctx.dev(uuid), values)
                    findings.append(_finish(chk, ctx, res, uuid, profs))
                    continue
                res = _r(NA, "Not applicable: %s." % chk["mdev"], {path("mdevs", uuid, "has_iommu"): _get(
                    iommu, "mdevs", uuid, "has_iommu"), path("mdevs", uuid, "parent"): _get(iommu, "mdevs", uuid, "parent")},
                    "sysfs /sys/bus/mdev/devices")
                findings.append(_finish(chk, ctx, res, uuid, profs))
    if custom is not None and not isinstance(custom, (list, tuple)):
        custom = [custom]
    for spec in custom or []:
        try:
            findings.extend(evaluate_custom(spec, iommu, host, pci))
        except Exception as e:  # pragma: no cover - evaluate_custom guards itself
            findings.append(_custom_finding(spec if isinstance(spec, dict) else {}, host, None, FAIL,
                                            "Internal error: %s" % e, {}, None))
    return _result(host, findings, names, pci, mdevs, values, given, iommu)


def _result(host, findings, names, pci, mdevs, values, given, iommu):
    order = dict((cid, i) for i, cid in enumerate(_ORDER))
    findings = sorted(findings, key=lambda f: (_RANK.get(f["status"], 9), order.get(f["id"], -1 if not str(
        f["id"]).startswith("custom.") else len(order)), str(f.get("device") or "")))
    counts = dict((s, sum(1 for f in findings if f["status"] == s)) for s in STATUSES)
    status = FAIL if counts[FAIL] else (WARN if counts[WARN] else PASS)
    public = dict((k, v) for k, v in values.items() if not k.startswith("_"))
    result = {
        "engine_version": ENGINE_VERSION,
        "host": host,
        "status": status,
        "counts": counts,
        "profiles": list(names),
        "params": public,
        "params_given": dict(given),
        "selected": {"pci": list(pci), "mdev": list(mdevs)},
        "facts_mode": _get(iommu, "mode") if isinstance(iommu, dict) else None,
        "findings": findings,
    }
    result["summary"] = summary_lines(result)
    result["failed"] = [_line(f) for f in findings if f["status"] == FAIL]
    return result


def _line(f):
    where = " [%s]" % f["device"] if f.get("device") else ""
    text = "%s %s%s: %s" % (_LABEL.get(f["status"], f["status"]), f["id"], where, f["message"])
    if f.get("remedy") and f["status"] in (FAIL, WARN):
        text += " Fix: %s" % f["remedy"]
    return text


def summary_lines(result):
    """One header line, then one line per finding (failures first)."""
    c = result["counts"]
    selected = result["selected"]["pci"] + result["selected"]["mdev"]
    head = "%s: %s - %d failed, %d warning(s), %d passed, %d not applicable (profiles: %s; devices: %s%s)" % (
        result["host"], result["status"].upper(), c[FAIL], c[WARN], c[PASS], c[NA],
        ", ".join(result["profiles"]) or "none", ", ".join(selected) or "none",
        "; facts: %s" % result["facts_mode"] if result.get("facts_mode") else "")
    return [head] + [_line(f) for f in result["findings"]]


def catalogue():
    """Every check: id, scope, title, reads, rule, the profiles using it, whether it applies to mdevs and
    the QEMU releases the test bed's oracle verified it on ('10.0', ...; [] when none), for docs and tests."""
    out = []
    for cid in _ORDER:
        chk = CHECKS[cid]
        out.append({"id": cid, "scope": chk["scope"], "title": chk["title"], "reads": chk["reads"],
                    "rule": chk["rule"], "profiles": [p for p in sorted(PROFILES) if cid in PROFILES[p]["checks"]],
                    "mdev": chk["mdev"] is True,
                    "verified": ["%d.%d" % tuple(v) for v in chk.get("verified") or ()]})
    return out


def meta_finding(check_id, host, status, message, evidence, remedy, rule, title):
    """A finding that is not a registered check (configuration, facts, VM definition)."""
    return _meta(check_id, host, status, message, evidence, remedy, rule, title)


def add_findings(result, findings):
    """Add findings to an evaluate() result and recompute its order, counts, status and summary."""
    merged = _result(result.get("host"), list(result.get("findings") or []) + list(findings), result.get("profiles") or [],
                     (result.get("selected") or {}).get("pci") or [], (result.get("selected") or {}).get("mdev") or [],
                     {}, result.get("params_given") or {}, {"mode": result.get("facts_mode")})
    for key in ("findings", "counts", "status", "summary", "failed"):
        result[key] = merged[key]
    return result
