# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The check registry and what every check is written with.

A check is a function registered with ``@_check(id, scope, title, reads, rule, ...)``:
``scope`` 'host' (run once), 'vm' (once, about the VM configuration in the parameters) or
'device' (once per selected PCI device; mdevs get not_applicable with the ``mdev`` reason).
It receives a :class:`Context` (the facts, the selection, the parameters and the QEMU release)
and returns ``_r(status, message, evidence, source, remedy, rule=None, basis=None)``.
``CHECKS`` maps ids to their registration; ``_ORDER`` is the registration order, which orders the
findings and the catalogue (checks/__init__.py imports the families in that order).
``_qemu_err`` and ``_onoff`` format QEMU's messages; ``_MDEV_VIOMMU`` is the reason the vIOMMU
checks do not apply to mdevs.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.policy.facts import _dict, _list
from ansible_collections.iommu.host.plugins.module_utils.policy import releases
from ansible_collections.iommu.host.plugins.module_utils.policy.params import QEMU_DEFAULT

__metaclass__ = type


PASS = "pass"
WARN = "warn"
FAIL = "fail"
NA = "not_applicable"
STATUSES = (PASS, WARN, FAIL, NA)


CHECKS = {}
_ORDER = []


def _check(check_id, scope, title, reads, rule, mdev=None, host_iommu=False, verified=None):
    """Register a check. scope: 'host' (once), 'vm' (once, VM configuration), 'device' (per device).

    ``mdev``: for device checks, why the check does not apply to a mediated device; True when the
    check applies to mdevs too (then it is called with the mdev's UUID and its facts, and
    ``ctx.is_mdev(uuid)`` is true).
    ``host_iommu``: a host check about the IOMMU itself; not applicable when only mdevs are assigned.
    ``verified``: the QEMU release series whose behaviour the test bed's oracle compared with this
    check (docs/qemu-matrix.md); None for host facts that no QEMU release changes.
    """
    def wrap(func):
        CHECKS[check_id] = {"id": check_id, "scope": scope, "title": title, "reads": reads, "rule": rule,
                            "mdev": mdev, "host_iommu": host_iommu, "func": func, "verified": verified}
        _ORDER.append(check_id)
        return func
    return wrap


def _r(status, message, evidence=None, source=None, remedy=None, rule=None, basis=None, effect=None):
    """A check's result. ``effect``: what QEMU does about a failure or warning - 'refuse' (the VM does not
    start), 'block_migration' (it starts; migration is blocked), 'warning' (QEMU warns) or 'requirement'
    (QEMU starts, but a requirement the user asked for - e.g. a PASID width - is not met); for a
    failure without it the engine assumes 'refuse' for vIOMMU/device checks (see engine._effect)."""
    out = {"status": status, "message": message, "evidence": dict(evidence or {}), "remedy": remedy}
    if effect:
        out["effect"] = effect
    if source:
        out["evidence"]["source"] = source
    if basis:
        out["evidence"]["basis"] = basis
    if rule:
        out["rule"] = rule
    return out


class Context:
    """What the checks see: the facts, the host name, the selection and the parameters."""

    def __init__(self, facts, host, params, pci, mdevs, profiles):
        self.facts = _dict(facts)
        self.host = host
        self.params = params
        self.pci = pci
        self.mdevs = mdevs
        self.profiles = profiles
        self.devices = _dict(self.facts.get("devices"))
        self.units = _dict(self.facts.get("units"))
        self.groups = _dict(self.facts.get("groups"))
        self.kernel = _dict(self.facts.get("kernel"))
        self.cmdline = _dict(self.facts.get("cmdline"))
        self.effects = _dict(self.cmdline.get("effects"))
        self.firmware = _dict(self.facts.get("firmware"))
        self.mdev_facts = _dict(self.facts.get("mdevs"))
        self.qemu = params.get("_qemu") or QEMU_DEFAULT
        # the release series whose rules apply (clamped to the verified range, see releases.py)
        self.series = releases.rules_series(self.qemu)

    def is_mdev(self, device):
        return device in self.mdevs

    def since(self, major, minor):
        """True when the rules of QEMU major.minor or later apply."""
        return self.series >= (major, minor)

    def words(self, key):
        """QEMU's text for ``key`` in the release asked for (releases._MESSAGES)."""
        return releases.message(key, self.qemu)

    def prop(self, param):
        """QEMU's spelling of a parameter in the release asked for (fsts -> x-flts on 10.x)."""
        return releases.property_name(param, self.qemu)

    @property
    def only_mdevs(self):
        return bool(self.mdevs) and not self.pci

    def dev(self, addr):
        if addr in self.mdevs:
            return _dict(self.mdev_facts.get(addr))
        return _dict(self.devices.get(addr))

    def vendors(self):
        return [v for v in _list(self.facts.get("vendors")) if isinstance(v, str)]

    def first_device(self):
        return self.pci[0] if self.pci else (self.mdevs[0] if self.mdevs else "<device>")


def _qemu_err(addr, text):
    """QEMU's error as vfio_pci_realize reports it for a vIOMMU refusal (hw/pci/pci.c, hw/vfio/pci.c)."""
    return "vfio %s: Failed to set vIOMMU: %s" % (addr, text)


def _onoff(value):
    return "on" if value else "off"


_MDEV_VIOMMU = ("mediated device: QEMU creates no HostIOMMUDevice for an mdev, so no vIOMMU host "
                "compatibility check applies (hw/vfio/pci.c:3527, hw/vfio/device.c:421)")
