# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report's data: hosts x requirements, VMs x hosts and migration pools, from cached facts.

Pure, controller-side, deterministic (the same inputs give the same dict, key for key), never raises on
odd facts. The renderers (html.py, junit.py, jsondoc.py) turn its output into files; docs/report.md
describes the schema (``iommu.host.report/1``):

    {schema, title, generated, inputs: {profiles, params, devices, vm_params},
     summary: {hosts, hosts_without_facts, status: {pass, warn, fail}, requirements, vms, pools},
     requirements: [{id, title, rule, profiles, counts: {pass, warn, fail, not_applicable, not_evaluated}}],
     findings: [{id, status, device, message, remedy, qemu_effect, evidence}],        (distinct findings)
     hosts: [{name, status, facts, counts, cells: {requirement id: {status, findings: [index]}}}],
     vms: [{name, viommu, problems, error, pass, warn, fail}],
     placement: {cells: [{status, failed, warnings, first: {id, status, device, message, remedy,
                                                             qemu_effect, evidence} | null}],
                 matrix: {vm name: [cell index per host, in the order of hosts]}},
     pools: [{name, hosts, members, excluded: [{host, reason}], models: {model: {params, properties:
              {property: {value, possible, parameter, limited_by: [{hosts, value, possible, id, status,
              device, message, remedy}]}}}}, vms: [{name, viommu, status, error, refused_by: [{hosts, id,
              status, device, message, remedy, qemu_effect}]}]}]}

Hosts with identical facts share one evaluation (fleet.api.hosts_facts), and identical findings and
placement cells are stored once and referenced by index, so the report of a large fleet stays small.
"""

from __future__ import absolute_import, division, print_function

import json

from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy

__metaclass__ = type

SCHEMA = "iommu.host.report/1"
NOT_EVALUATED = "not_evaluated"
# worst first: a requirement's cell takes the worst status of its findings (one per device)
SEVERITY = {policy.FAIL: 0, policy.WARN: 1, policy.PASS: 2, policy.NA: 3, NOT_EVALUATED: 4}
_LEADING = ("facts.", "config.", "engine.", "selection.")


class ReportError(Exception):
    """Report inputs that cannot be used (bad argument types); odd facts never raise."""


def _key(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _text(value):
    return None if value is None else "%s" % value


def worst(statuses):
    """The worst of some statuses (fail > warn > pass > not_applicable); not_evaluated for none."""
    statuses = [s for s in statuses if s in SEVERITY]
    return min(statuses, key=lambda s: SEVERITY[s]) if statuses else NOT_EVALUATED


class _Table:
    """Distinct JSON-able values, each stored once, referenced by index."""

    def __init__(self):
        self.items, self._index = [], {}

    def add(self, value):
        key = _key(value)
        if key not in self._index:
            self._index[key] = len(self.items)
            self.items.append(value)
        return self._index[key]


def _finding(f):
    return {"id": _text(f.get("id")), "status": _text(f.get("status")), "device": _text(f.get("device")),
            "message": _text(f.get("message")), "remedy": _text(f.get("remedy")),
            "qemu_effect": _text(f.get("qemu_effect")), "evidence": policy.plain(f.get("evidence") or {})}


def _names(value, what):
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ReportError("%s must be a list of host names, got %s" % (what, type(value).__name__))
    return [_text(v) for v in value]


def _pools(pools):
    """[(name, [hosts])] from {name: [hosts]} (or a list of {name, hosts}), in the given order."""
    if pools is None:
        return []
    if isinstance(pools, dict):
        items = list(pools.items())
    elif isinstance(pools, (list, tuple)):
        items = []
        for i, p in enumerate(pools):
            if not isinstance(p, dict) or "hosts" not in p:
                raise ReportError("each pool must be {name, hosts}, got %r" % (p,))
            items.append((p.get("name") or "pool%d" % (i + 1), p["hosts"]))
    else:
        raise ReportError("pools must be a dict pool name -> list of hosts, got %s" % type(pools).__name__)
    return [(_text(name), _names(hosts, "pool %s" % name) or []) for name, hosts in items]


# --------------------------------------------------------------------------- hosts x requirements

def _columns(seen):
    """Requirement ids in a stable order: configuration and facts first, then the registered checks in
    the catalogue's order, then the rest (custom checks, VM definition) by name."""
    order = [c["id"] for c in policy.catalogue()]
    lead = sorted(i for i in seen if i.startswith(_LEADING) and i not in order)
    known = [i for i in order if i in seen]
    rest = sorted(i for i in seen if i not in order and i not in lead)
    return lead + known + rest


def _hosts_requirements(host_list, keys, profiles, params, devices, custom, findings):
    results, infos = {}, {}
    for host, facts in host_list:
        key = keys.get(host)
        if key in results:
            continue
        result = policy.evaluate(facts, profiles=profiles, devices=devices, params=params, custom=custom, host="-",
                                 assume_plain=True)
        cells = {}
        for f in result.get("findings") or []:
            rid = _text(f.get("id"))
            infos.setdefault(rid, {"title": _text(f.get("title")), "rule": _text(f.get("rule")),
                                   "profiles": [_text(p) for p in f.get("profiles") or []]})
            cells.setdefault(rid, []).append((findings.add(_finding(f)), _text(f.get("status"))))
        results[key] = (result.get("status"), cells)
    columns = _columns(infos)
    counts = dict((rid, dict((s, 0) for s in SEVERITY)) for rid in columns)
    rows, status_count = [], {policy.PASS: 0, policy.WARN: 0, policy.FAIL: 0}
    for host, facts in host_list:
        status, cells = results[keys.get(host)]
        row_cells, host_counts = {}, dict((s, 0) for s in SEVERITY)
        for rid in columns:
            entries = cells.get(rid) or []
            cell_status = worst([s for _i, s in entries])
            counts[rid][cell_status] += 1
            host_counts[cell_status] += 1
            row_cells[rid] = {"status": cell_status, "findings": [i for i, _s in entries]}
        status_count[status] = status_count.get(status, 0) + 1
        rows.append({"name": host, "status": status, "facts": facts is not None, "counts": host_counts,
                     "cells": row_cells})
    requirements = [dict(infos[rid], id=rid, counts=counts[rid]) for rid in columns]
    return requirements, rows, status_count


# --------------------------------------------------------------------------- VMs x hosts

def _placement(host_list, vms, vm_params):
    """placement() over the hosts' plain facts, plus each cell's evidence (the full finding of the
    memoised gate evaluation)."""
    gate = fleet._Gate()  # pylint: disable=protected-access
    host_names = [h for h, _facts in host_list]
    host_facts = dict(host_list)
    matrix = fleet.placement(host_facts, vms, params=vm_params, hosts=host_names, _gate=gate)
    cells, by_id, out_matrix, vm_rows = _Table(), {}, {}, []
    for row, (_name, vm) in zip(matrix["vms"], fleet._vm_list(vms)):  # pylint: disable=protected-access
        inputs = fleet.vm_inputs(vm, vm_params, None)
        inputs_key = None if inputs.get("error") else fleet._fingerprint(  # pylint: disable=protected-access
            [inputs["profiles"], inputs["devices"], inputs["params"]])
        line = []
        for host in host_names:
            cell = matrix["matrix"][row["name"]][host]
            ident = (id(cell), inputs_key)
            if ident not in by_id:
                by_id[ident] = cells.add(_vm_cell(gate, host, host_facts.get(host), cell, inputs, inputs_key))
            line.append(by_id[ident])
        out_matrix[row["name"]] = line
        vm_rows.append({"name": row["name"], "viommu": row.get("viommu"), "problems": row.get("problems") or [],
                        "error": row.get("error"), "pass": len(row["pass"]), "warn": len(row["warn"]),
                        "fail": len(row["fail"])})
    return vm_rows, {"cells": cells.items, "matrix": out_matrix}


def _vm_cell(gate, host, facts, cell, inputs, inputs_key):
    first = cell.get("first")
    out = {"status": cell.get("status"), "failed": cell.get("failed", 0), "warnings": cell.get("warnings", 0),
           "first": None}
    if not first:
        return out
    evidence = {}
    if first.get("id") == "vm.definition":
        evidence = {"problems": inputs.get("problems") or [], "error": inputs.get("error")}
    elif inputs_key is not None:
        result = gate.evaluate(host, facts, inputs["profiles"], inputs["devices"], inputs["params"], inputs_key)
        match = next((f for f in result.get("findings") or [] if f.get("id") == first.get("id")
                      and f.get("device") == first.get("device") and f.get("status") == first.get("status")), None)
        evidence = policy.plain((match or {}).get("evidence") or {})
    out["first"] = dict(_finding(first), evidence=evidence)
    return out


# --------------------------------------------------------------------------- migration pools

def _grouped(entries, host_key="host"):
    """Entries that differ only by host merged into one with ``hosts`` (first-seen order)."""
    groups, order = {}, []
    for e in entries:
        rest = dict((k, policy.plain(v)) for k, v in e.items() if k != host_key)
        key = _key(rest)
        if key not in groups:
            groups[key] = dict(rest, hosts=[])
            order.append(key)
        groups[key]["hosts"].append(_text(e.get(host_key)))
    return [groups[k] for k in order]


def _pool(hostvars_like, name, members, vms, vm_params):
    pool = fleet.migration_pool(hostvars_like, hosts=members, vms=vms if vms else None, params=vm_params)
    models = {}
    for model, entry in pool["models"].items():
        props = {}
        for prop, p in entry["properties"].items():
            props[prop] = {"value": policy.plain(p["value"]), "possible": policy.plain(p["possible"]),
                           "parameter": p["parameter"], "limited_by": _grouped(p["limited_by"])}
        models[model] = {"properties": props}
        if "params" in entry:
            models[model]["params"] = policy.plain(entry["params"])
    pool_vms = [{"name": v["name"], "viommu": v.get("viommu"), "status": v["status"], "error": v.get("error"),
                 "refused_by": _grouped(v.get("refused_by") or [])} for v in pool["vms"]]
    return {"name": name, "hosts": pool["hosts"], "members": pool["members"], "excluded": policy.plain(pool["excluded"]),
            "models": models, "vms": pool_vms}


# --------------------------------------------------------------------------- the report

def build(hostvars_like, hosts=None, profiles=None, params=None, devices=None, custom=None, vms=None, pools=None,
          vm_params=None, title=None, generated=None):
    """The report dict (schema ``iommu.host.report/1``, see the module docstring).

    ``hostvars_like``: hostvars (or host -> ansible_facts / iommu facts); ``hosts``: the host names (default:
    all of them); ``profiles``/``params``/``devices``/``custom``: the gate's inputs for hosts x requirements
    (as iommu.host.check takes them); ``vms``: VM definitions for VMs x hosts and the pools (vm_requirements
    outputs, libvirt XML, QEMU command lines); ``pools``: {pool name: [hosts]}; ``vm_params``: parameters
    applied over every VM's own (e.g. qemu_version). Raises ReportError only for unusable argument types.
    """
    hosts = _names(hosts, "hosts")
    profiles = policy.plain(profiles) if profiles is not None else ["passthrough"]
    params = policy.plain(params) if params is not None else {}
    devices = policy.plain(devices) if devices is not None else policy.ALL_VFIO
    custom = policy.plain(custom) if custom is not None else []
    vm_params = policy.plain(vm_params) if vm_params is not None else None
    if isinstance(vms, dict) and "profiles" not in vms:
        vms = dict((_text(k), v) for k, v in vms.items())
    pool_list = _pools(pools)
    keys = {}
    host_list = fleet.hosts_facts(hostvars_like, hosts, keys)
    findings = _Table()
    requirements, rows, status_count = _hosts_requirements(host_list, keys, profiles, params, devices, custom,
                                                           findings)
    vm_rows, placement = [], {"cells": [], "matrix": {}}
    if vms:
        vm_rows, placement = _placement(host_list, vms, vm_params)
    out_pools = [_pool(hostvars_like, name, members, vms, vm_params) for name, members in pool_list]
    return {
        "schema": SCHEMA,
        "title": _text(title) if title else "IOMMU fleet report",
        "generated": _text(generated) if generated else None,
        "inputs": {"profiles": profiles, "params": params, "devices": devices, "vm_params": vm_params or {}},
        "summary": {"hosts": len(rows), "hosts_without_facts": sum(1 for r in rows if not r["facts"]),
                    "status": status_count, "requirements": len(requirements), "vms": len(vm_rows),
                    "pools": len(out_pools)},
        "requirements": requirements,
        "findings": findings.items,
        "hosts": rows,
        "vms": vm_rows,
        "placement": placement,
        "pools": out_pools,
    }


def validate(report):
    """Problems of a report dict (what the renderers need), as a list of messages; [] when usable."""
    if not isinstance(report, dict):
        return ["the report must be a dict (the output of iommu.host.fleet_report), got %s" % type(report).__name__]
    problems = []
    if report.get("schema") != SCHEMA:
        problems.append("schema is %r, expected %r" % (report.get("schema"), SCHEMA))
    for key, kind in (("requirements", list), ("findings", list), ("hosts", list), ("vms", list), ("pools", list),
                      ("placement", dict), ("summary", dict)):
        if not isinstance(report.get(key), kind):
            problems.append("%s must be a %s" % (key, kind.__name__))
    if problems:
        return problems
    n_findings, n_hosts = len(report["findings"]), len(report["hosts"])
    ids = set()
    for r in report["requirements"]:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str):
            problems.append("a requirement without an id")
            continue
        ids.add(r["id"])
    for h in report["hosts"]:
        if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not isinstance(h.get("cells"), dict):
            problems.append("a host without name or cells")
            continue
        for rid, cell in h["cells"].items():
            refs = cell.get("findings") if isinstance(cell, dict) else None
            if rid not in ids or not isinstance(refs, list) or any(
                    not isinstance(i, int) or not 0 <= i < n_findings for i in refs):
                problems.append("host %s: bad cell %s" % (h["name"], rid))
                break
    cells = report["placement"].get("cells")
    matrix = report["placement"].get("matrix")
    if not isinstance(cells, list) or not isinstance(matrix, dict):
        problems.append("placement must have cells (list) and matrix (dict)")
    else:
        for vm, line in matrix.items():
            if not isinstance(line, list) or len(line) != n_hosts or any(
                    not isinstance(i, int) or not 0 <= i < len(cells) for i in line):
                problems.append("placement of %s: one cell index per host expected" % vm)
    return problems[:20]
