# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight requirement engine: ``iommu`` facts + requirements -> findings.

Pure functions over the facts built by :mod:`iommu_facts` (schema_version 1).
Nothing here touches a host, so the engine runs on the controller, also over
cached facts. Stdlib only; ``jmespath`` is used for user-defined checks when it
can be imported (it is a controller-side dependency of the collection).

Each check has a stable id, the facts it reads, the rule it mirrors (QEMU or
Linux source, with the QEMU version) and returns one finding per host, per VM
configuration or per assigned device:

    {id, host, device, status, qemu_effect, message, evidence, remedy, rule, title, profiles}

``status`` is ``pass``, ``warn``, ``fail`` or ``not_applicable``. ``evidence``
maps fact paths (JMESPath expressions into the ``iommu`` facts) to the values
used, plus ``source`` (where the facts came from) and, for register-derived
values, ``basis``. Messages that describe a refusal by QEMU quote QEMU's own
wording of the release asked for (``qemu_version``, releases.py; docs/preflight.md lists each
rule), and ``qemu_effect`` says what QEMU does: refuse, block_migration, warning or None.

Entry point: :func:`evaluate`. Nothing in it raises on partial or odd facts;
a missing fact becomes a finding that says what is missing.

Layout (imports go one way: facts <- params <- registry <- checks <- engine):

engine.py     evaluate(), unwrap_facts(), the result, summary_lines(), catalogue()
registry.py   statuses, CHECKS and @_check, _r() (a check's answer), Context
params.py     PARAMS, PROFILES, parse_qemu_version(), resolve_profiles()
select.py     select_devices(): all_vfio, PCI address, vendor:device, mdev UUID
facts.py      safe access to facts of any shape; a device's decoded IOMMU registers
checks/       one module per family of checks (see checks/__init__.py)
custom.py     user-defined JMESPath checks
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.checks.migration import dirty_tracking_support
from ansible_collections.iommu.host.plugins.module_utils.policy.custom import evaluate_custom
from ansible_collections.iommu.host.plugins.module_utils.policy.engine import (
    ENGINE_VERSION,
    FACTS_SCHEMA_VERSION,
    add_findings,
    catalogue,
    evaluate,
    meta_finding,
    summary_lines,
    unwrap_facts,
)
from ansible_collections.iommu.host.plugins.module_utils.policy import releases
from ansible_collections.iommu.host.plugins.module_utils.policy.facts import path, plain, vendor_view
from ansible_collections.iommu.host.plugins.module_utils.policy.params import (
    PARAMS,
    PROFILES,
    QEMU_DEFAULT,
    QEMU_MASTER,
    QEMU_TREE,
    parse_qemu_version,
    resolve_profiles,
)
from ansible_collections.iommu.host.plugins.module_utils.policy.registry import CHECKS, FAIL, NA, PASS, STATUSES, WARN, Context
from ansible_collections.iommu.host.plugins.module_utils.policy.select import ALL_VFIO, select_devices

__metaclass__ = type

__all__ = [
    'ALL_VFIO', 'CHECKS', 'QEMU_DEFAULT', 'add_findings', 'meta_finding', 'plain', 'releases', 'ENGINE_VERSION',
    'FACTS_SCHEMA_VERSION', 'FAIL', 'NA', 'PARAMS', 'PASS',
    'PROFILES', 'QEMU_MASTER', 'QEMU_TREE', 'STATUSES', 'WARN', 'Context', 'catalogue',
    'dirty_tracking_support', 'evaluate', 'evaluate_custom', 'parse_qemu_version', 'path',
    'resolve_profiles', 'select_devices', 'summary_lines', 'unwrap_facts', 'vendor_view',
]
