# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.migration_pool: the strongest vIOMMU configuration a group of hosts accepts
(docs: migration_pool.yml)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.fleet import api as fleet

__metaclass__ = type


def migration_pool(data, hosts=None, models=None, vms=None, params=None):
    """Per vIOMMU model, the strongest properties every host accepts; see plugins/filter/migration_pool.yml."""
    return fleet.migration_pool(data, hosts=hosts, models=models, vms=vms, params=params)


class FilterModule(object):
    """Fleet migration-pool filters."""

    def filters(self):
        return {"migration_pool": migration_pool}
