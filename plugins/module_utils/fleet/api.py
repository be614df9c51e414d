# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet views over the cached facts of many hosts: placement matrix and migration pools.

Pure, controller-side, never raises on odd facts (a host without facts is reported as such).

``placement(hosts, vms)``: for every VM (iommu.host.vm_requirements output, or a libvirt domain
XML / QEMU command line) x host, the gate's verdict (policy.evaluate with the VM's profiles,
params and devices) and its first failing (else warning) requirement. Each host's facts are
copied into plain JSON types once; hosts whose facts are identical (and VMs whose gate inputs are
identical) share one evaluation, so the cost is linear in distinct VMs x distinct hosts.

``migration_pool(hosts)``: the strongest vIOMMU configuration every host of a group accepts, per
model, found by asking the gate itself: for each property, its candidate values are tried from
the strongest down on each host (the property's own checks must pass without a warning), and the
pool gets the weakest of the hosts' best values, with the hosts that limit it and the gate's
message for the stronger value they refuse or cannot confirm (``possible``: the same ignoring
warnings, i.e. what no host is known to refuse). VM definitions given too are gated on every pool host, and each VM that
exceeds the pool is named with the host(s) that would refuse it.
"""

from __future__ import absolute_import, division, print_function

import json

try:
    from collections.abc import Mapping
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    Mapping = dict

from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy

__metaclass__ = type


# property: (profile, base params, parameter or None, candidates strongest first, check ids, kind)
# kind "max": the pool gets the weakest of the hosts' best values; "all": the candidates every host accepts.
_SMMU_ACCEL_CHECKS = ("viommu.smmuv3.hw_info_type", "viommu.smmuv3.stlevel", "viommu.smmuv3.ttendian",
                      "viommu.smmuv3.ttf", "viommu.smmuv3.sidsize", "viommu.smmuv3.gran4k",
                      "viommu.smmuv3.gran16k", "viommu.smmuv3.gran64k", "viommu.smmuv3.nesting")
_INTEL_BASE = {"caching_mode": True}
POOL_PROPERTIES = {
    "host": [
        ("device_assignment", "passthrough", {}, None, [True, False],
         ("host.iommu_firmware", "host.iommu_enabled", "host.iommu_not_disabled", "host.default_domain",
          "device.vfio_driver", "device.group_viable"), "max"),
        ("iommufd", "passthrough", {}, None, [True, False], ("host.iommufd", "host.vfio_cdev"), "max"),
        ("interrupt_remapping", "passthrough", {}, None, [True, False], ("host.interrupt_remapping",), "max"),
        ("dirty_tracking", "live_migration", {"viommu": "none"}, None, [True, False],
         ("migration.dirty_tracking",), "max"),
    ],
    "intel-iommu": [
        ("aw_bits", "intel_viommu", _INTEL_BASE, "aw_bits", [48, 39], ("viommu.intel.aw_bits",), "max"),
        ("fsts", "intel_viommu", dict(_INTEL_BASE, scalable_mode=True), "fsts", [True, False],
         ("viommu.intel.x_flts", "viommu.intel.nesting"), "max"),
        ("pasid_bits", "intel_viommu", dict(_INTEL_BASE, scalable_mode=True, fsts=True), "pasid_bits",
         list(range(20, -1, -1)), ("viommu.intel.pasid",), "max"),
    ],
    "arm-smmuv3": [
        ("accel", "smmuv3_accel", {"accel": True}, None, [True, False], _SMMU_ACCEL_CHECKS, "max"),
        ("oas", "smmuv3_accel", {"accel": True}, "oas", [48, 44], ("viommu.smmuv3.oas",), "max"),
        ("ssidsize", "smmuv3_accel", {"accel": True}, "ssidsize", list(range(20, -1, -1)),
         ("viommu.smmuv3.ssidsize",), "max"),
        ("ril", "smmuv3_accel", {"accel": True}, "ril", [True, False], ("viommu.smmuv3.ril",), "max"),
    ],
    "amd-iommu": [
        ("dma_remap", "amd_viommu", {}, "dma_remap", [True, False], ("viommu.amd.dma_remap",), "max"),
    ],
    "virtio-iommu": [
        ("granule", "virtio_viommu", {}, "granule", ["4k", "8k", "16k", "64k", "host"],
         ("viommu.virtio.granule",), "all"),
    ],
}
MODELS = tuple(POOL_PROPERTIES)


# --------------------------------------------------------------------------- inputs

def _fingerprint(value):
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # pragma: no cover - plain() output always serialises
        return repr(value)


def hosts_facts(hostvars_like, hosts=None, _keys=None):
    """[(host, plain iommu facts or None)] from hostvars-like data (host -> hostvars entry,
    ansible_facts or the iommu facts), keeping ``hosts`` (a list of names) when given.

    Hosts whose facts are identical share one plain copy (facts.plain runs once per distinct
    facts); ``_keys`` (a dict) receives each host's facts fingerprint."""
    data = hostvars_like
    if isinstance(data, (list, tuple)):
        data = dict((str(h), None) for h in data)
    if not hasattr(data, "keys"):
        return []
    try:
        names = [str(h) for h in data.keys()]
    except Exception:  # pragma: no cover - a broken mapping
        return []
    if hosts is not None:
        names = [str(h) for h in (hosts if isinstance(hosts, (list, tuple)) else [hosts])]
    out, shared = [], {}
    for name in names:
        try:
            entry = data[name] if name in data else None
        except Exception:  # hostvars raise on undefined variables
            entry = None
        raw = _gate_view(policy.unwrap_facts(_entry(entry))) if entry is not None else None
        key = _fingerprint(raw) if isinstance(raw, dict) and raw else None
        if key is not None and key not in shared:
            facts = policy.unwrap_facts(policy.plain(raw))
            shared[key] = facts if isinstance(facts, dict) and facts else None
        facts = shared.get(key) if key is not None else None
        if _keys is not None:
            _keys[name] = key if facts is not None else None
        out.append((name, facts))
    return out


def _gate_view(facts):
    """The facts the gate reads: without the gathering findings and the capabilities summary, and with the
    command line's text blanked (the checks read its parsed ``args``/``effects``; of ``raw`` only whether it
    was read), so that hosts differing only there (root=UUID=...) share one evaluation."""
    if not isinstance(facts, dict) or not facts:
        return facts
    view = dict((k, v) for k, v in facts.items() if k not in ("findings", "capabilities"))
    cmdline = view.get("cmdline")
    if isinstance(cmdline, dict) and isinstance(cmdline.get("raw"), str):
        view["cmdline"] = dict(cmdline, raw="")
    return view


def _entry(entry):
    """A dict view of a host's entry: Ansible's hostvars entries are Mappings, not dicts (only the keys
    that can hold the facts are read, so other variables are not templated)."""
    if isinstance(entry, dict) or not isinstance(entry, Mapping):
        return entry
    out = {}
    for key in ("iommu", "ansible_iommu", "ansible_facts"):
        try:
            if key in entry:
                out[key] = entry[key]
        except Exception:  # an undefined or broken variable: no facts from it
            continue
    return out


def vm_inputs(vm, params=None, devices=None):
    """{name, profiles, devices, params, problems, error} for one VM definition (vm_requirements output,
    libvirt domain XML or QEMU command line); ``params``/``devices`` given here win over the VM's."""
    if isinstance(vm, (str, list, tuple)) and not isinstance(vm, dict):
        from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import VMDefinitionError, requirements
        try:
            vm = requirements(vm)
        except VMDefinitionError as e:
            return {"name": None, "error": "the VM definition cannot be read: %s" % e}
        except Exception as e:  # pragma: no cover - vmdef turns every error into VMDefinitionError
            return {"name": None, "error": "the VM definition cannot be read: %s: %s" % (type(e).__name__, e)}
    vm = policy.plain(vm)
    if not isinstance(vm, dict) or not isinstance(vm.get("profiles"), list):
        return {"name": vm.get("name") if isinstance(vm, dict) else None,
                "error": "a VM must be the output of iommu.host.vm_requirements (a dict with profiles, params and "
                         "devices), a libvirt domain XML or a QEMU command line"}
    declared = set()
    for name in vm["profiles"]:
        declared.update(policy.PROFILES.get(name if isinstance(name, str) else "", {}).get("params", ()))
    merged = dict((k, v) for k, v in (vm.get("params") if isinstance(vm.get("params"), dict) else {}).items()
                  if k in declared)
    merged.update(policy.plain(params) if isinstance(params, dict) else {})
    vm_devices = [d for d in vm.get("devices") or [] if isinstance(d, str)]
    problems = ["%s" % p.get("message", p) if isinstance(p, dict) else "%s" % p for p in vm.get("problems") or []]
    chosen = policy.plain(devices) if devices is not None else (vm_devices or None)
    if chosen is None:
        problems.append("the VM definition assigns no host device")
        chosen = policy.ALL_VFIO
    profiles = list(vm["profiles"])
    memory = vm.get("memory")
    if "memory" in policy.PROFILES and vm_gives_memory(memory):
        # the memory profile judges the VM's memory (docs/memory.md); a given params.guest_memory wins
        if "memory" not in profiles:
            profiles.append("memory")
        merged.setdefault("guest_memory", memory)
    return {"name": vm.get("name") if isinstance(vm.get("name"), str) else None, "profiles": profiles,
            "devices": chosen, "params": merged, "problems": problems, "error": None,
            "viommu": (vm.get("viommu") or {}).get("model") if isinstance(vm.get("viommu"), dict) else None}


def vm_gives_memory(memory):
    """True when a VM definition's memory (vm_requirements ``memory``) gives a size or hugepage backing."""
    return isinstance(memory, dict) and (memory.get("size") is not None or bool(memory.get("hugepages")))


def _vm_list(vms):
    if vms is None:
        return []
    if isinstance(vms, dict):
        # one vm_requirements dict, or a mapping name -> VM definition
        if "profiles" in vms:
            return [(None, vms)]
        return [(str(k), v) for k, v in vms.items()]
    if isinstance(vms, (list, tuple)):
        return [(None, v) for v in vms]
    return [(None, vms)]


def _unique(name, seen):
    base, n = name, 1
    while name in seen:
        n += 1
        name = "%s#%d" % (base, n)
    seen.add(name)
    return name


def _brief(f):
    return {"id": f.get("id"), "status": f.get("status"), "device": f.get("device"), "message": f.get("message"),
            "remedy": f.get("remedy"), "qemu_effect": f.get("qemu_effect")}


# --------------------------------------------------------------------------- placement

class _Gate:
    """policy.evaluate over plain facts, memoised by (facts, gate inputs) content."""

    def __init__(self):
        self.keys = {}
        self._memo = {}
        self._cells = {}
        self.evaluations = 0

    def facts_key(self, host, facts):
        if host not in self.keys:
            self.keys[host] = _fingerprint(facts) if facts is not None else None
        return self.keys[host]

    def evaluate(self, host, facts, profiles, devices, params, inputs_key):
        key = (self.facts_key(host, facts), inputs_key)
        if key not in self._memo:
            self.evaluations += 1
            self._memo[key] = policy.evaluate(facts, profiles=profiles, devices=devices, params=params,
                                              host="-", assume_plain=True)
        return self._memo[key]

    def cell(self, host, facts, inputs, inputs_key):
        key = (self.facts_key(host, facts), inputs_key, tuple(inputs["problems"]))
        if key not in self._cells:
            result = self.evaluate(host, facts, inputs["profiles"], inputs["devices"], inputs["params"], inputs_key)
            self._cells[key] = _cell(result, inputs["problems"])
        return self._cells[key]


def _cell(result, problems):
    findings = result.get("findings") or []
    status = result.get("status")
    first = next((f for f in findings if f.get("status") == policy.FAIL), None)
    if first is None and problems:
        status = policy.WARN
        first = {"id": "vm.definition", "status": policy.WARN, "device": None, "qemu_effect": None,
                 "message": "The gate cannot judge part of the VM definition: %s." % "; ".join(problems),
                 "remedy": "Review those parts of the VM by hand, or express them as profiles/params."}
    if first is None:
        first = next((f for f in findings if f.get("status") == policy.WARN), None)
    counts = result.get("counts") or {}
    return {"status": status, "first": _brief(first) if first else None,
            "failed": counts.get(policy.FAIL, 0), "warnings": counts.get(policy.WARN, 0) + (
                1 if problems and first and first["id"] == "vm.definition" else 0)}


def _error_cell(message):
    return {"status": policy.FAIL, "failed": 1, "warnings": 0,
            "first": {"id": "vm.definition", "status": policy.FAIL, "device": None, "qemu_effect": None,
                      "message": message[:1].upper() + message[1:] + ".",
                      "remedy": "Give the output of iommu.host.vm_requirements, a libvirt domain XML or a QEMU "
                                "command line."}}


def placement(hostvars_like, vms, params=None, devices=None, hosts=None, _gate=None):
    """The placement matrix of VMs x hosts; see plugins/filter/placement.py. Never raises.

    Returns {hosts, vms: [{name, viommu, problems, error, pass, warn, fail}], matrix: {vm: {host: cell}},
    cells: [{vm, host, status, first, failed, warnings}], hosts_without_facts, evaluations}, where a cell's
    ``first`` is the first failing requirement (else the first warning) {id, status, device, message,
    remedy, qemu_effect}.
    """
    gate = _gate or _Gate()
    host_list = hosts_facts(hostvars_like, hosts, gate.keys)
    vm_rows, matrix, cells, seen = [], {}, [], set()
    for index, (key, vm) in enumerate(_vm_list(vms)):
        inputs = vm_inputs(vm, params, devices)
        name = _unique(key or inputs.get("name") or "vm%d" % (index + 1), seen)
        row = {"name": name, "viommu": inputs.get("viommu"), "problems": inputs.get("problems") or [],
               "error": inputs.get("error"), "pass": [], "warn": [], "fail": []}
        matrix[name] = {}
        error_cell = _error_cell(inputs["error"]) if inputs["error"] else None
        inputs_key = None if inputs["error"] else _fingerprint(
            [inputs["profiles"], inputs["devices"], inputs["params"]])
        for host, facts in host_list:
            cell = error_cell if inputs["error"] else gate.cell(host, facts, inputs, inputs_key)
            matrix[name][host] = cell
            row.get(cell["status"], row["fail"]).append(host)
            cells.append(dict(cell, vm=name, host=host))
        vm_rows.append(row)
    return {"hosts": [h for h, _facts in host_list], "vms": vm_rows, "matrix": matrix, "cells": cells,
            "hosts_without_facts": [h for h, facts in host_list if facts is None], "evaluations": gate.evaluations}


# --------------------------------------------------------------------------- migration pools

def _probe(gate, host, facts, spec, value):
    """(accepted, warned, finding) of one candidate value of a pool property on one host."""
    _name, profile, base, param, _cands, checks, _kind = spec
    params = dict(base)
    if param is not None:
        params[param] = value
    key = _fingerprint(["pool", profile, params])
    result = gate.evaluate(host, facts, [profile], policy.ALL_VFIO, params, key)
    mine = [f for f in result.get("findings") or [] if f.get("id") in checks]
    failed = next((f for f in mine if f.get("status") == policy.FAIL), None)
    warned = next((f for f in mine if f.get("status") == policy.WARN), None)
    return failed is None, warned, failed


def _host_best(gate, host, facts, spec):
    """A host's answer for one property: (confirmed, possible, finding) where ``confirmed`` is the strongest
    candidate its checks pass without a warning, ``possible`` the strongest they do not fail, and ``finding``
    the failure or warning that stopped the stronger candidates. For "all" properties, the lists of such
    candidates. Boolean features without a parameter: True/False for "the feature's checks pass"."""
    _name, _profile, _base, param, cands, _checks, kind = spec
    if param is None:
        ok, warned, failed = _probe(gate, host, facts, spec, None)
        return ok and warned is None, ok, failed or warned
    confirmed, possible, stop = [], [], None
    for value in cands:
        ok, warned, failed = _probe(gate, host, facts, spec, value)
        if ok:
            possible.append(value)
        if ok and warned is None:
            confirmed.append(value)
            if kind == "max":
                break
        elif stop is None:
            stop = failed or warned
    if kind == "all":
        return confirmed, possible, stop
    return (confirmed[0] if confirmed else None), (possible[0] if possible else None), stop


def _weakest(values, order):
    """The weakest of the hosts' values (None = no candidate at all, weaker than every candidate)."""
    ranks = [order.index(v) if v in order else len(order) for v in values]
    worst = max(ranks) if ranks else 0
    return (order[worst] if worst < len(order) else None), worst


def _pool_property(gate, members, spec):
    _name, _profile, _base, param, cands, _checks, kind = spec
    order = list(cands) if param is not None else [True, False]
    per_host, possible, stops = {}, {}, {}
    for host, facts in members:
        per_host[host], possible[host], stop = _host_best(gate, host, facts, spec)
        if stop is not None:
            stops[host] = stop
    if not members:
        value = optimistic = None
        limited = []
    elif kind == "all":
        value = [c for c in cands if all(c in per_host[h] for h, _facts in members)]
        optimistic = [c for c in cands if all(c in possible[h] for h, _facts in members)]
        limited = [h for h, _facts in members if len(per_host[h]) < len(cands)]
    else:
        value, worst = _weakest(list(per_host.values()), order)
        optimistic = _weakest(list(possible.values()), order)[0]
        limited = [h for h, v in per_host.items() if worst > 0 and (order.index(v) if v in order else len(order)) == worst]
    limited_by = []
    for host in limited:
        f = stops.get(host) or {}
        limited_by.append({"host": host, "value": per_host[host], "possible": possible[host], "id": f.get("id"),
                           "status": f.get("status"), "device": f.get("device"), "message": f.get("message"),
                           "remedy": f.get("remedy")})
    return {"value": value, "possible": optimistic, "parameter": param, "candidates": list(cands),
            "per_host": per_host, "limited_by": limited_by}


def _pool_params(model, props):
    """The vIOMMU parameters (gate params) of the pool's strongest configuration of a model."""
    if any(p["parameter"] and p["value"] is None for p in props.values()):
        return None  # no candidate of a property is accepted by every host: the model is not usable
    out = {}
    if model == "intel-iommu":
        out = dict(_INTEL_BASE)
        if props["fsts"]["value"] is True:
            out.update(scalable_mode=True, fsts=True)
        if props["pasid_bits"]["value"]:
            out.update(scalable_mode=True, pasid_bits=props["pasid_bits"]["value"])
    elif model == "arm-smmuv3" and props["accel"]["value"] is not True:
        return None
    for prop in props.values():
        param, value = prop["parameter"], prop["value"]
        if not param or value is None or isinstance(value, list) or param in out:
            continue
        # QEMU's defaults are left out, so the configuration also suits releases without the property
        if value != (policy.PARAMS.get(param) or {}).get("default") and not (param == "pasid_bits" and value == 0):
            out[param] = value
    if model == "virtio-iommu":
        granules = props["granule"]["value"] or []
        out = {"granule": "host" if "host" in granules else (granules[0] if granules else None)}
    return out


def migration_pool(hostvars_like, hosts=None, models=None, vms=None, params=None):
    """The strongest vIOMMU configuration every host of a group accepts; see plugins/filter/migration_pool.py.

    Returns {hosts, members, excluded: [{host, reason}], models: {model: {properties: {name: {value,
    possible, parameter, candidates, per_host, limited_by: [{host, value, possible, id, status, device,
    message, remedy}]}}, params}}, vms: [{name, status: within|exceeds|error, refused_by: [{host, id, ...}]}]}.
    Never raises.
    """
    gate = _Gate()
    host_list = hosts_facts(hostvars_like, hosts, gate.keys)
    if models is None:
        wanted = list(MODELS)
    else:
        wanted = [str(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    unknown = [m for m in wanted if m not in POOL_PROPERTIES]
    wanted = [m for m in wanted if m in POOL_PROPERTIES]
    if "host" not in wanted:
        wanted.insert(0, "host")
    members, excluded = [], []
    for host, facts in host_list:
        if facts is None:
            excluded.append({"host": host, "reason": "no iommu facts (gather them with iommu.host.iommu_facts)"})
            continue
        result = gate.evaluate(host, facts, ["passthrough"], policy.ALL_VFIO, {}, _fingerprint(["pool-select"]))
        sel = next((f for f in result.get("findings") or [] if f.get("id") == "selection.devices"), None)
        if sel is not None and sel.get("status") == policy.FAIL:
            excluded.append({"host": host, "reason": "no device bound to a VFIO driver, so the vIOMMU properties "
                                                     "cannot be judged: %s" % sel.get("message")})
            continue
        members.append((host, facts))
    out_models = {}
    for model in wanted:
        props = dict((spec[0], _pool_property(gate, members, spec)) for spec in POOL_PROPERTIES[model])
        entry = {"properties": props}
        if model != "host":
            entry["params"] = _pool_params(model, props) if members else None
        out_models[model] = entry
    result = {"hosts": [h for h, _facts in host_list], "members": [h for h, _facts in members], "excluded": excluded,
              "models": out_models, "unknown_models": unknown, "vms": []}
    if vms is not None:
        member_names = [h for h, _facts in members]
        pool_facts = dict(members)
        matrix = placement(pool_facts, vms, params=params, hosts=member_names, _gate=gate)
        for row in matrix["vms"]:
            refused = []
            for host in member_names:
                cell = matrix["matrix"][row["name"]][host]
                if cell["status"] == policy.FAIL:
                    refused.append(dict(cell["first"] or {}, host=host))
            status = "error" if row["error"] else ("exceeds" if refused else "within")
            result["vms"].append({"name": row["name"], "viommu": row["viommu"], "status": status,
                                  "refused_by": refused, "error": row["error"]})
    result["evaluations"] = gate.evaluations
    return result
