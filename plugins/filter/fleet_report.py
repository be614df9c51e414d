# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.fleet_report: the fleet report's data from cached IOMMU facts (docs: DOCUMENTATION below)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: fleet_report
author: iommu.host contributors
version_added: "0.3.0"
short_description: The fleet report - hosts x requirements, VMs x hosts and migration pools from cached facts
description:
  - Computes, over the cached IOMMU facts of many hosts, what the module M(iommu.host.iommu_report) writes as
    HTML, JSON and JUnit XML (and the role P(iommu.host.report#role) runs) - hosts x requirements (the findings
    of P(iommu.host.check#filter) per host for O(profiles), O(params), O(devices)), VMs x hosts (the verdicts of
    P(iommu.host.placement#filter) for O(vms), each with the evidence of its first failing requirement) and
    migration pools (P(iommu.host.migration_pool#filter) for each pool of O(pools)).
  - Pure data transformation on the controller; it touches no host. Odd or missing facts never fail the
    task - a host without facts is reported as such.
  - Hosts with identical facts share one evaluation; identical findings and placement cells are stored once
    and referenced by index, so the report of thousands of hosts stays small. The result is deterministic
    (the same facts give the same report), so the files written from it only change when the fleet does.
  - The schema (C(iommu.host.report/1)) is described in docs/report.md.
positional: _input
options:
  _input:
    description:
      - The hosts - C(hostvars) (or any dict host name -> that host's variables, C(ansible_facts) or C(iommu) facts).
    type: dict
    required: true
  hosts:
    description: Host names to report on (default every host of O(_input)), e.g. C(ansible_play_hosts_all).
    type: list
    elements: str
  profiles:
    description: Profiles evaluated on every host (as for P(iommu.host.check#filter)); default C([passthrough]).
    type: list
    elements: str
  params:
    description: Profile parameters for the hosts x requirements view (as for P(iommu.host.check#filter)).
    type: dict
  devices:
    description: Devices gated on every host (default C(all_vfio)).
    type: raw
  custom:
    description: User-defined checks (JMESPath), as for P(iommu.host.check#filter).
    type: list
    elements: dict
  vms:
    description:
      - VM definitions for VMs x hosts and the pools - a list (or a dict name -> definition) of libvirt domain
        XML documents, QEMU command lines or P(iommu.host.vm_requirements#filter) outputs.
    type: raw
  pools:
    description: Migration pools, a dict pool name -> list of host names.
    type: dict
  vm_params:
    description:
      - "Profile parameters applied over every VM's own, e.g. C({qemu_version: '10.0'})."
    type: dict
  title:
    description: Title of the report.
    type: str
  generated:
    description: A label for the generation time, shown in the report (none by default, so the report is stable).
    type: str
seealso:
  - module: iommu.host.iommu_report
  - plugin: iommu.host.placement
    plugin_type: filter
  - plugin: iommu.host.migration_pool
    plugin_type: filter
"""

EXAMPLES = r"""
- name: The fleet report's data, from the fact cache
  ansible.builtin.set_fact:
    fleet: >-
      {{ hostvars | iommu.host.fleet_report(hosts=groups['hypervisors'], profiles=['passthrough', 'live_migration'],
                                            vms=[lookup('file', 'web.xml')],
                                            pools={'rack1': groups['rack1']}) }}
  run_once: true

- name: Hosts that fail
  ansible.builtin.debug:
    msg: "{{ fleet.hosts | selectattr('status', 'eq', 'fail') | map(attribute='name') | list }}"
"""

RETURN = r"""
---
_value:
  description: The report (schema C(iommu.host.report/1); docs/report.md).
  type: dict
  contains:
    schema:
      description: C(iommu.host.report/1).
      type: str
    summary:
      description: Counts - C(hosts), C(hosts_without_facts), C(status) (hosts per verdict), C(requirements), C(vms), C(pools).
      type: dict
    requirements:
      description: The requirements (columns) - C(id), C(title), C(rule), C(profiles), C(counts) (hosts per status).
      type: list
      elements: dict
    findings:
      description:
        - The distinct findings - C(id), C(status), C(device), C(message), C(remedy), C(qemu_effect), C(evidence);
          referenced by index from the hosts' cells.
      type: list
      elements: dict
    hosts:
      description:
        - Per host - C(name), C(status), C(facts) (whether it has iommu facts), C(counts), C(cells) (requirement
          id -> C({status, findings})), C(status) the worst of the requirement's findings or C(not_evaluated).
      type: list
      elements: dict
    vms:
      description: Per VM - C(name), C(viommu), C(problems), C(error) and the number of hosts per verdict.
      type: list
      elements: dict
    placement:
      description:
        - C(cells), the distinct VM x host cells (C(status), C(failed), C(warnings), C(first) with the evidence), and
          C(matrix), VM name -> one cell index per host in the order of C(hosts).
      type: dict
    pools:
      description:
        - Per pool - C(name), C(hosts), C(members), C(excluded), C(models) (per model C(params) and per property
          C(value), C(possible), C(parameter), C(limited_by) grouped by finding with C(hosts)) and C(vms)
          (C(status) C(within), C(exceeds) or C(error), C(refused_by) grouped by finding with C(hosts)).
      type: list
      elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.module_utils.report import model


def fleet_report(data, hosts=None, profiles=None, params=None, devices=None, custom=None, vms=None, pools=None,
                 vm_params=None, title=None, generated=None):
    """The fleet report's data; see DOCUMENTATION above. Raises only for arguments of the wrong type."""
    try:
        return model.build(data, hosts=hosts, profiles=profiles, params=params, devices=devices, custom=custom,
                           vms=vms, pools=pools, vm_params=vm_params, title=title, generated=generated)
    except model.ReportError as e:
        raise AnsibleFilterError("iommu.host.fleet_report: %s" % e)


class FilterModule(object):
    """Fleet report filter."""

    def filters(self):
        return {"fleet_report": fleet_report}
