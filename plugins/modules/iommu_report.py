#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: iommu_report
short_description: Write the fleet report (HTML, JSON, JUnit XML) of hosts x requirements, VMs x hosts and migration pools
version_added: "0.3.0"
description:
  - Renders a fleet report computed by the filter P(iommu.host.fleet_report#filter) into files in
    O(dest) - C(report.html), a self-contained page (inline CSS and JavaScript, no external asset, no
    network; works opened from disk), C(report.json), the report itself, and C(report.junit.xml), one
    test suite per host (a test case per requirement), per VM (a test case per host placement) and per
    migration pool, so CI systems can gate on it.
  - Meant to run on the controller (C(delegate_to=localhost), C(run_once=true)), as the role
    the role P(iommu.host.report#role) does; it reads no facts itself.
  - Idempotent - the same report gives the same bytes, and a file is only rewritten when its bytes
    change. Nothing time-dependent is written unless given as O(generated).
author:
  - iommu.host maintainers (@iommu-host)
options:
  dest:
    description: Directory to write the files into; created (with parents) when missing.
    type: path
    required: true
  data:
    description:
      - The report - the output of P(iommu.host.fleet_report#filter) (a dict, or the same as a JSON string).
    type: raw
    required: true
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [html, json, junit]
    default: [html, json, junit]
  title:
    description: Title of the report (page title and JUnit C(testsuites) name); overrides the title in O(data).
    type: str
  generated:
    description:
      - A label shown as the report's generation time (for example C(ansible_date_time.iso8601)) and
        written as each JUnit test suite's C(timestamp). Overrides C(generated) in O(data). Unset, the
        files carry no time, so an unchanged fleet leaves them unchanged.
    type: str
  junit_warnings_as_failures:
    description:
      - Write C(warn) verdicts as JUnit C(<failure type="warn">) instead of passing test cases with the
        warning in C(<system-out>).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.files
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: The files are rendered and compared with those on disk; nothing is written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Per file, its size and SHA-256 before and after (the files are too large for a text diff).
notes:
  - The JSON schema (C(iommu.host.report/1)) and the page are described in docs/report.md.
seealso:
  - plugin: iommu.host.fleet_report
    plugin_type: filter
  - plugin: iommu.host.placement
    plugin_type: filter
  - plugin: iommu.host.migration_pool
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Compute the fleet report from the fact cache and write it on the controller
  iommu.host.iommu_report:
    dest: "{{ playbook_dir }}/report"
    data: >-
      {{ hostvars | iommu.host.fleet_report(hosts=groups['hypervisors'], profiles=['passthrough'],
                                            vms=[lookup('file', 'web.xml')],
                                            pools={'rack1': groups['rack1']}) }}
  delegate_to: localhost
  run_once: true

- name: Only the JUnit file, warnings count as failures
  iommu.host.iommu_report:
    dest: build/junit
    data: "{{ report_data }}"
    formats: [junit]
    junit_warnings_as_failures: true
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
files:
  description: Per written format, the file - C(path), C(changed), C(size) (bytes) and C(sha256).
  returned: always
  type: dict
  sample:
    html: {path: /srv/report/report.html, changed: true, size: 183211, sha256: 3b1f...}
    json: {path: /srv/report/report.json, changed: false, size: 90211, sha256: 8c2e...}
summary:
  description: The report's summary - hosts, hosts without facts, hosts per status, requirements, VMs, pools.
  returned: always
  type: dict
  sample: {hosts: 4, hosts_without_facts: 1, status: {pass: 1, warn: 1, fail: 2}, requirements: 17, vms: 2, pools: 1}
failed_hosts:
  description: Hosts whose verdict is C(fail).
  returned: always
  type: list
  elements: str
"""

import hashlib
import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.iommu.host.plugins.module_utils.report import html, jsondoc, junit, model

FILES = {"html": "report.html", "json": "report.json", "junit": "report.junit.xml"}


def render(report, formats, junit_warnings_as_failures=False):
    """{format: bytes} of the report."""
    out = {}
    for fmt in formats:
        if fmt == "html":
            text = html.render(report)
        elif fmt == "json":
            text = jsondoc.render(report)
        else:
            text = junit.render(report, warnings_as_failures=junit_warnings_as_failures)
        out[fmt] = text.encode("utf-8", "surrogatepass")
    return out


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def _describe(data):
    if data is None:
        return "(absent)\n"
    return "%d bytes, sha256 %s\n" % (len(data), hashlib.sha256(data).hexdigest())


def _write(module, path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".iommu_report.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            data=dict(type="raw", required=True),
            formats=dict(type="list", elements="str", choices=sorted(FILES), default=["html", "json", "junit"]),
            title=dict(type="str"),
            generated=dict(type="str"),
            junit_warnings_as_failures=dict(type="bool", default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    p = module.params
    report = p["data"]
    if isinstance(report, (str, bytes)):
        try:
            report = json.loads(report)
        except ValueError as e:
            module.fail_json(msg="data is a string but not JSON: %s" % to_native(e))
    problems = model.validate(report)
    if problems:
        module.fail_json(msg="data is not a fleet report (the output of iommu.host.fleet_report): %s"
                         % "; ".join(problems))
    report = dict(report)
    if p["title"]:
        report["title"] = p["title"]
    if p["generated"]:
        report["generated"] = p["generated"]
    formats = []
    for fmt in p["formats"]:
        if fmt not in formats:
            formats.append(fmt)
    try:
        rendered = render(report, formats, p["junit_warnings_as_failures"])
    except (TypeError, ValueError) as e:
        module.fail_json(msg="the report cannot be rendered: %s" % to_native(e))

    dest = p["dest"]
    if os.path.exists(dest) and not os.path.isdir(dest):
        module.fail_json(msg="dest %s exists and is not a directory" % dest)
    changed = not os.path.isdir(dest)
    if changed and not module.check_mode:
        try:
            os.makedirs(dest)
        except OSError as e:
            module.fail_json(msg="cannot create %s: %s" % (dest, to_native(e)))
    files, diffs = {}, []
    for fmt in formats:
        path = os.path.join(dest, FILES[fmt])
        data = rendered[fmt]
        before = _read(path)
        file_changed = before != data
        if file_changed:
            diffs.append({"before_header": path, "after_header": path, "before": _describe(before),
                          "after": _describe(data)})
            if not module.check_mode:
                try:
                    _write(module, path, data)
                except (IOError, OSError) as e:
                    module.fail_json(msg="cannot write %s: %s" % (path, to_native(e)))
        if not module.check_mode and os.path.exists(path):
            file_args = module.load_file_common_arguments(p, path=path)
            file_changed = module.set_fs_attributes_if_different(file_args, file_changed)
        changed = changed or file_changed
        files[fmt] = {"path": path, "changed": file_changed, "size": len(data),
                      "sha256": hashlib.sha256(to_bytes(data)).hexdigest()}
    failed_hosts = [h["name"] for h in report["hosts"] if h.get("status") == "fail"]
    module.exit_json(changed=changed, files=files, summary=report.get("summary"), failed_hosts=failed_hosts,
                     diff=diffs)


if __name__ == "__main__":
    main()
