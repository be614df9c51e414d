# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as JUnit XML (report.junit.xml), so CI systems can gate on it. Stdlib only.

- one ``<testsuite name="host <name>">`` per host, one ``<testcase>`` per requirement
  (classname ``hosts.<host>``, name the requirement id): ``fail`` -> ``<failure>`` with the message,
  device, remedy and QEMU's effect; ``warn`` -> passes, with the warning in ``<system-out>`` (a
  ``<failure type="warn">`` with ``warnings_as_failures``); ``not_applicable`` and requirements not
  evaluated (a host without facts) -> ``<skipped>``;
- one ``<testsuite name="vm <name>">`` per VM, one ``<testcase>`` per host placement (classname
  ``vms.<vm>``, name the host): ``fail`` -> ``<failure>`` with the first failing requirement;
- one ``<testsuite name="pool <name>">`` per migration pool: a ``<testcase>`` per VM (``exceeds`` ->
  ``<failure>`` naming the hosts that refuse it) and per excluded host (``<skipped>``).

Written by hand (not ElementTree) so the bytes do not depend on the Python version; characters XML 1.0
cannot carry (control characters, lone surrogates, U+FFFE/U+FFFF) are written as ``\\xNN``/``\\uNNNN``.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

_INVALID = re.compile(u"[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text):
    def repl(m):
        c = ord(m.group(0))
        return "\\x%02x" % c if c < 0x100 else "\\u%04x" % c
    return _INVALID.sub(repl, "%s" % text)


def text(value):
    """Character data: &, <, > escaped (``]]>`` cannot occur unescaped)."""
    return _clean(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attr(value):
    """An attribute value for double quotes; newlines and tabs kept as character references."""
    return (text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;")
            .replace("\t", "&#9;"))


def _lines(f, with_device=True, with_message=True):
    out = [f.get("message") or ""] if with_message else []
    if with_device and f.get("device"):
        out.append("Device: %s" % f["device"])
    if f.get("remedy"):
        out.append("Remedy: %s" % f["remedy"])
    if f.get("qemu_effect"):
        out.append("QEMU: %s" % f["qemu_effect"])
    return "\n".join(out)


def _case(classname, name, outcome=None, detail="", out=None):
    """One <testcase>; outcome is None (pass), ("failure", message, type) or ("skipped", message)."""
    head = '    <testcase classname="%s" name="%s" time="0"' % (attr(classname), attr(name))
    body = []
    if outcome and outcome[0] == "failure":
        body.append('      <failure message="%s" type="%s">%s</failure>' % (
            attr(outcome[1]), attr(outcome[2] or "fail"), text(detail)))
    elif outcome and outcome[0] == "skipped":
        body.append('      <skipped message="%s"/>' % attr(outcome[1]))
    if out:
        body.append("      <system-out>%s</system-out>" % text(out))
    if not body:
        return head + "/>"
    return "\n".join([head + ">"] + body + ["    </testcase>"])


def _suite(name, cases, outcomes, timestamp):
    tests = len(cases)
    failures = sum(1 for o in outcomes if o and o[0] == "failure")
    skipped = sum(1 for o in outcomes if o and o[0] == "skipped")
    stamp = ' timestamp="%s"' % attr(timestamp) if timestamp else ""
    head = '  <testsuite name="%s" tests="%d" failures="%d" errors="0" skipped="%d" time="0"%s' % (
        attr(name), tests, failures, skipped, stamp)
    if not cases:
        return head + "/>", (0, 0, 0)
    return "\n".join([head + ">"] + cases + ["  </testsuite>"]), (tests, failures, skipped)


def _host_suites(report, warnings_as_failures, timestamp):
    findings = report.get("findings") or []
    requirements = report.get("requirements") or []
    for host in report.get("hosts") or []:
        cases, outcomes = [], []
        for req in requirements:
            cell = (host.get("cells") or {}).get(req["id"]) or {"status": "not_evaluated", "findings": []}
            fs = [findings[i] for i in cell.get("findings") or [] if 0 <= i < len(findings)]
            status = cell.get("status")
            bad = [f for f in fs if f.get("status") == status]
            detail = "\n\n".join(_lines(f, with_message=k > 0) for k, f in enumerate(bad))
            outcome, out = None, None
            if status == "fail" or (status == "warn" and warnings_as_failures):
                first = bad[0] if bad else {}
                outcome = ("failure", first.get("message") or status, status if status == "warn" else
                           (first.get("qemu_effect") or "fail"))
            elif status == "warn":
                out = "WARN " + "\n\n".join(_lines(f) for f in bad)
            elif status == "not_applicable":
                outcome = ("skipped", "not applicable: " + "; ".join(f.get("message") or "" for f in fs))
            elif status != "pass":
                outcome = ("skipped", "not evaluated (no facts for this requirement)")
            cases.append(_case("hosts.%s" % host["name"], req["id"], outcome, detail, out))
            outcomes.append(outcome)
        yield _suite("host %s" % host["name"], cases, outcomes, timestamp)


def _vm_suites(report, warnings_as_failures, timestamp):
    placement = report.get("placement") or {}
    cells = placement.get("cells") or []
    hosts = [h.get("name") for h in report.get("hosts") or []]
    for vm in report.get("vms") or []:
        line = (placement.get("matrix") or {}).get(vm["name"]) or []
        cases, outcomes = [], []
        for host, index in zip(hosts, line):
            cell = cells[index] if 0 <= index < len(cells) else {"status": "fail", "first": None}
            first = cell.get("first") or {}
            status = cell.get("status")
            outcome, out = None, None
            if status == "fail" or (status == "warn" and warnings_as_failures):
                outcome = ("failure", "%s: %s" % (first.get("id"), first.get("message")),
                           "warn" if status == "warn" else (first.get("qemu_effect") or "fail"))
            elif status == "warn":
                out = "WARN %s: %s" % (first.get("id"), _lines(first))
            cases.append(_case("vms.%s" % vm["name"], host, outcome, _lines(first, with_message=False) if outcome else "",
                               out))
            outcomes.append(outcome)
        yield _suite("vm %s" % vm["name"], cases, outcomes, timestamp)


def _pool_suites(report, timestamp):
    for pool in report.get("pools") or []:
        cases, outcomes = [], []
        for vm in pool.get("vms") or []:
            outcome, detail = None, ""
            if vm.get("status") == "exceeds":
                refused = vm.get("refused_by") or []
                names = [h for r in refused for h in r.get("hosts") or []]
                outcome = ("failure", "%s exceeds pool %s: refused by %s" % (vm["name"], pool["name"], ", ".join(names)),
                           "exceeds")
                detail = "\n\n".join("%s: %s\n%s" % (", ".join(r.get("hosts") or []), r.get("id"), _lines(r))
                                     for r in refused)
            elif vm.get("status") == "error":
                outcome = ("failure", "%s: %s" % (vm["name"], vm.get("error")), "error")
                detail = vm.get("error") or ""
            cases.append(_case("pools.%s" % pool["name"], "vm %s" % vm["name"], outcome, detail))
            outcomes.append(outcome)
        for ex in pool.get("excluded") or []:
            outcome = ("skipped", "excluded from the pool: %s" % ex.get("reason"))
            cases.append(_case("pools.%s" % pool["name"], "host %s" % ex.get("host"), outcome))
            outcomes.append(outcome)
        yield _suite("pool %s" % pool["name"], cases, outcomes, timestamp)


def render(report, warnings_as_failures=False):
    """report.junit.xml's text (str). ``report['generated']``, when set, becomes each suite's timestamp."""
    timestamp = report.get("generated")
    suites, totals = [], [0, 0, 0]
    for gen in (_host_suites(report, warnings_as_failures, timestamp),
                _vm_suites(report, warnings_as_failures, timestamp), _pool_suites(report, timestamp)):
        for xml, counts in gen:
            suites.append(xml)
            totals = [a + b for a, b in zip(totals, counts)]
    head = '<testsuites name="%s" tests="%d" failures="%d" errors="0" skipped="%d" time="0">' % (
        attr(report.get("title") or "IOMMU fleet report"), totals[0], totals[1], totals[2])
    return "\n".join(['<?xml version="1.0" encoding="UTF-8"?>', head] + suites + ["</testsuites>"]) + "\n"
