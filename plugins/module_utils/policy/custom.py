# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""User-defined checks: a JMESPath expression over the ``iommu`` facts and a comparison.

``evaluate_custom`` runs one check (scope host: over the facts; scope device: over each selected
device's facts) and returns findings with ids ``custom.<name>``. ``jmespath`` is a controller-side
dependency of the collection; without it the check says it was not evaluated.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dict, _get, _text
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import FAIL, NA, PASS, WARN

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:  # pragma: no cover - exercised by monkeypatching HAS_JMESPATH
    jmespath = None
    HAS_JMESPATH = False

__metaclass__ = type


_CUSTOM_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "truthy", "falsy")


def _compare(op, actual, expected):
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if op == "truthy":
        return bool(actual)
    if op == "falsy":
        return not actual
    if op in ("in", "not_in"):
        if isinstance(expected, str):
            found = isinstance(actual, str) and actual in expected
        elif isinstance(expected, (list, tuple, dict)):
            found = actual in expected
        else:
            raise TypeError("%s needs a list or a string as expected value, not %s" % (op, _text(expected)))
        return found if op == "in" else not found
    if op == "contains":
        if isinstance(actual, str) and isinstance(expected, str):
            return expected in actual
        return isinstance(actual, (list, tuple, dict)) and expected in actual
    if isinstance(actual, bool) or isinstance(expected, bool) or not (
            isinstance(actual, (int, float)) and isinstance(expected, (int, float))) and not (
            isinstance(actual, str) and isinstance(expected, str)):
        raise TypeError("cannot compare %s with %s using %s" % (_text(actual), _text(expected), op))
    return {"lt": actual < expected, "le": actual <= expected, "gt": actual > expected, "ge": actual >= expected}[op]


def _custom_finding(spec, host, device, status, message, evidence, remedy):
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or not _CUSTOM_NAME_RE.match(name):
        name = "invalid"
    return {"id": "custom.%s" % name, "host": host, "device": device, "status": status, "qemu_effect": None,
            "message": message,
            "evidence": evidence, "remedy": remedy,
            "rule": "user-defined: JMESPath %s" % _text(_get(spec, "expression")),
            "title": (_get(spec, "title") if isinstance(_get(spec, "title"), str) else None) or "custom check %s" % name,
            "profiles": ["custom"]}


def evaluate_custom(spec, facts, host, pci):
    """Findings of one user-defined check.

    spec: {name, expression, expected?, operator? (eq when expected is set and not null, else truthy;
    to compare with null, give operator eq explicitly),
    scope? (host: the expression runs on the iommu facts; device: on each selected device's facts,
    with 'address' added), severity? (fail|warn), message?, remedy?, title?}
    """
    if not isinstance(spec, dict):
        return [_custom_finding({}, host, None, FAIL, "Custom check %s is not a dict." % _text(spec), {}, None)]
    problems = []
    name = spec.get("name")
    if not isinstance(name, str) or not _CUSTOM_NAME_RE.match(name):
        problems.append("name must match %s" % _CUSTOM_NAME_RE.pattern)
    expr = spec.get("expression")
    if not isinstance(expr, str) or not expr.strip():
        problems.append("expression must be a non-empty JMESPath string")
    has_expected = spec.get("expected") is not None
    op = spec.get("operator") or ("eq" if has_expected else "truthy")
    if op not in _OPERATORS:
        problems.append("operator must be one of %s" % ", ".join(_OPERATORS))
    severity = spec.get("severity") or FAIL
    if severity not in (FAIL, WARN):
        problems.append("severity must be fail or warn")
        severity = FAIL
    scope = spec.get("scope") or "host"
    if scope not in ("host", "device"):
        problems.append("scope must be host or device")
    remedy = spec.get("remedy") if isinstance(spec.get("remedy"), str) else None
    if problems:
        return [_custom_finding(spec, host, None, FAIL, "Invalid custom check: %s." % "; ".join(problems),
                                {"check": _text(spec)}, "Fix the check definition.")]
    if not HAS_JMESPATH:
        return [_custom_finding(spec, host, None, severity, "Not evaluated: the Python library jmespath is not "
                                "installed on the controller.", {"expression": expr},
                                "Install jmespath on the controller (pip install jmespath).")]
    try:
        compiled = jmespath.compile(expr)
    except Exception as e:  # jmespath raises its own ParseError/LexerError hierarchy
        return [_custom_finding(spec, host, None, FAIL, "Invalid JMESPath expression %s: %s" % (_text(expr), e),
                                {"expression": expr}, "Fix the expression (https://jmespath.org).")]
    targets = [(None, _dict(facts))] if scope == "host" else [
        (a, dict(_dict(_dict(_dict(facts).get("devices")).get(a)), address=a)) for a in pci]
    if not targets:
        return [_custom_finding(spec, host, None, NA, "No device is selected for this device-scope check.",
                                {"expression": expr}, None)]
    out = []
    for addr, data in targets:
        ev = {"expression": expr, "operator": op, "source": "user-defined JMESPath over the iommu facts"
              + (" of device %s" % addr if addr else "")}
        if has_expected or op not in ("truthy", "falsy"):
            ev["expected"] = spec.get("expected")
        try:
            actual = compiled.search(data)
            ev["actual"] = actual
            ok = _compare(op, actual, spec.get("expected"))
        except Exception as e:
            out.append(_custom_finding(spec, host, addr, severity, "Could not evaluate %s: %s" % (expr, e), ev, remedy))
            continue
        message = spec.get("message") if isinstance(spec.get("message"), str) else None
        default = "%s -> %s%s" % (expr, _text(actual), " (%s)" % op if op in ("truthy", "falsy")
                                  else " (%s %s)" % (op, _text(spec.get("expected"))))
        if ok:
            out.append(_custom_finding(spec, host, addr, PASS, "%s: %s" % (message, default) if message else default,
                                       ev, None))
        else:
            text = "%s: %s" % (message or "Requirement not met", default)
            out.append(_custom_finding(spec, host, addr, severity, text, ev, remedy))
    return out
