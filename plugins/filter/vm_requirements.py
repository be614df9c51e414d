# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu.host.vm_requirements: a libvirt domain XML or QEMU command line -> the gate's requirements
(docs: vm_requirements.yml, docs/vm-definitions.md)."""

from __future__ import absolute_import, division, print_function

from ansible.errors import AnsibleFilterError

from ansible_collections.iommu.host.plugins.module_utils.vmdef.api import (
    SOURCES,
    VMDefinitionError,
    plain,
    requirements,
)

__metaclass__ = type


def vm_requirements(data, source="auto"):
    """Requirements of one VM definition; see plugins/filter/vm_requirements.yml."""
    try:
        source = plain(source)
    except VMDefinitionError as e:
        raise AnsibleFilterError("iommu.host.vm_requirements: %s" % e)
    if source not in SOURCES:
        raise AnsibleFilterError("iommu.host.vm_requirements: source must be one of %s, not %r" % (
            ", ".join(SOURCES), source))
    try:
        return requirements(data, source=source)
    except VMDefinitionError as e:
        raise AnsibleFilterError("iommu.host.vm_requirements: %s" % e)
    except Exception as e:  # pylint: disable=broad-except  # last line of defence: never a traceback
        raise AnsibleFilterError("iommu.host.vm_requirements: internal error reading the definition "
                                 "(%s: %s); please report it with the input" % (type(e).__name__, e))


class FilterModule(object):
    """VM definition filters."""

    def filters(self):
        return {"vm_requirements": vm_requirements}
