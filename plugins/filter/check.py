# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.check: evaluate preflight requirements over IOMMU facts (docs: check.yml)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils import policy

__metaclass__ = type


def check(data, profiles=None, devices=None, params=None, custom=None, host=None):
    """Evaluate ``profiles`` for ``devices`` over the facts; see plugins/filter/check.yml.

    ``data`` is ansible_facts (holding ``iommu``) or the ``iommu`` facts themselves. Bad facts or a
    bad configuration never raise: they become ``fail`` findings in the result.
    """
    return policy.evaluate(
        data,
        profiles=profiles if profiles is not None else ["passthrough"],
        devices=devices if devices is not None else policy.ALL_VFIO,
        host=host,
        custom=custom,
        params=params,
    )


class FilterModule(object):
    """IOMMU preflight filters."""

    def filters(self):
        return {"check": check}
