# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.placement: VMs x hosts placement matrix from cached IOMMU facts (docs: placement.yml)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet

__metaclass__ = type


def placement(data, vms, params=None, devices=None, hosts=None):
    """The verdict of every VM on every host; see plugins/filter/placement.yml. Never raises on odd facts."""
    return fleet.placement(data, vms, params=params, devices=devices, hosts=hosts)


class FilterModule(object):
    """Fleet placement filters."""

    def filters(self):
        return {"placement": placement}
