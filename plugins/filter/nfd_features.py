# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.nfd_features: the IOMMU capabilities as a Node Feature Discovery local feature file
(docs: DOCUMENTATION below)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: nfd_features
author: iommu.host contributors
version_added: "0.2.0"
short_description: The IOMMU capabilities of a host as a Kubernetes Node Feature Discovery local feature file
description:
  - Renders C(ansible_facts.iommu.capabilities) (see M(iommu.host.iommu_facts)) as the text of a file for
    the local feature source of nfd-worker (C(/etc/kubernetes/node-feature-discovery/features.d/)) - one
    C(name=value) line per capability, sorted; unknown (null) values are left out and
    C(dirty_tracking_devices) becomes C(dirty_tracking_device_count).
  - Values are made valid Kubernetes label values (63 characters at most, letters, digits, C(-_.)).
  - Without O(namespace) nfd-worker labels each line C(feature.node.kubernetes.io/<name>), for example
    C(feature.node.kubernetes.io/iommu-vendor=intel_vtd). nfd-master accepts other namespaces only when
    allowed (its C(extraLabelNs) setting); subdomains of C(feature.node.kubernetes.io) are allowed.
positional: _input
options:
  _input:
    description:
      - C(ansible_facts) holding C(iommu), the C(iommu) facts, or their C(capabilities) dict.
    type: dict
    required: true
  namespace:
    description:
      - Label namespace written before each name (C(<namespace>/<name>)), e.g. C(iommu.feature.node.kubernetes.io).
    type: str
  name_prefix:
    description:
      - Written before each capability name.
    type: str
    default: iommu-
"""

EXAMPLES = r"""
- name: Let Node Feature Discovery label the node with its IOMMU capabilities
  ansible.builtin.copy:
    dest: /etc/kubernetes/node-feature-discovery/features.d/iommu-host
    content: "{{ ansible_facts | iommu.host.nfd_features }}"
    mode: "0644"
"""

RETURN = r"""
---
_value:
  description: The file's text, a comment line then one C(name=value) line per known capability.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.module_utils.fleet.capabilities import nfd_features as _nfd_features
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy


def nfd_features(data, namespace=None, name_prefix="iommu-"):
    """The text of an NFD features.d file; see DOCUMENTATION above."""
    data = policy.plain(data)
    if isinstance(namespace, str) and not namespace.strip():
        namespace = None
    if namespace is not None and (not isinstance(namespace, str) or any(
            c not in "abcdefghijklmnopqrstuvwxyz0123456789-." for c in namespace) or len(namespace) > 253):
        raise AnsibleFilterError("iommu.host.nfd_features: namespace must be a DNS subdomain (lower-case letters, "
                                 "digits, '-' and '.'), e.g. iommu.feature.node.kubernetes.io; got %r" % (namespace,))
    facts = data
    if isinstance(data, dict) and "iommufd_usable" not in data:
        facts = policy.unwrap_facts(data)
    return _nfd_features(facts, name_prefix=str(name_prefix or ""), namespace=namespace)


class FilterModule(object):
    """Node Feature Discovery filters."""

    def filters(self):
        return {"nfd_features": nfd_features}
