# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.nfd_features: the IOMMU capabilities as a Node Feature Discovery local feature file
(docs: nfd_features.yml)."""

from __future__ import absolute_import, division, print_function

from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.module_utils.fleet.capabilities import nfd_features as _nfd_features
from ansible_collections.iommu.host.plugins.module_utils.policy import api as policy

__metaclass__ = type


def nfd_features(data, namespace=None, name_prefix="iommu-"):
    """The text of an NFD features.d file; see plugins/filter/nfd_features.yml."""
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
