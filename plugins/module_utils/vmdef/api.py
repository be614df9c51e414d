# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""VM definitions -> the gate's requirements.

A libvirt domain XML document or a QEMU command line (string or argv list) becomes one dict::

    {source: libvirt|qemu, name, arch, machine, viommu: {model, properties}, devices, iommufd,
     memory, profiles, params, problems}

``profiles`` and ``params`` are what ``iommu.host.check`` takes; ``problems`` lists what the gate
cannot judge. Malformed, unsafe or oversized input raises :class:`VMDefinitionError` (and only that).

Layout: ``common.py`` (error class, normalisation, the step to profiles/params), ``libvirt.py``
(domain XML, translated as libvirt's QEMU driver does), ``qemu.py`` (command lines: shell words,
QemuOpts, JSON). docs/vm-definitions.md has the mapping tables and their sources.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.iommu.host.plugins.module_utils.vmdef.common import (
    MAX_INPUT_CHARS,
    VIOMMU_PROFILES,
    VMDefinitionError,
    finish,
    plain,
)
from ansible_collections.iommu.host.plugins.module_utils.vmdef.libvirt import from_libvirt
from ansible_collections.iommu.host.plugins.module_utils.vmdef.qemu import from_qemu

__metaclass__ = type

SOURCES = ("auto", "libvirt", "qemu")


def detect(data):
    """'libvirt' for an XML document, 'qemu' for anything else (a command line or argv list)."""
    if isinstance(data, bytes):
        head = data.lstrip()[:1]
        return "libvirt" if head in (b"<", b"\xef") else "qemu"
    if isinstance(data, str):
        return "libvirt" if data.lstrip("\ufeff \t\r\n").startswith("<") else "qemu"
    return "qemu"


def requirements(data, source="auto"):
    """The requirements dict of a VM definition; raises VMDefinitionError on unusable input."""
    if source not in SOURCES:
        raise VMDefinitionError("source must be one of %s, not %r" % (", ".join(SOURCES), source))
    try:
        data = plain(data)
    except RecursionError:
        raise VMDefinitionError("the input is nested too deeply")
    if data is None:
        raise VMDefinitionError("no VM definition given (the input is null)")
    if not isinstance(data, (str, bytes, list, tuple)):
        raise VMDefinitionError("a VM definition is a libvirt domain XML string or a QEMU command line "
                                "(string or list of words), not %s" % type(data).__name__)
    try:
        return _requirements(data, source)
    except RecursionError:
        raise VMDefinitionError("the definition is nested too deeply to be read")


def _requirements(data, source):
    kind = detect(data) if source == "auto" else source
    if kind == "libvirt":
        if isinstance(data, (list, tuple)):
            raise VMDefinitionError("a libvirt domain XML must be a string, not a list")
        defn = from_libvirt(data)
    else:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as e:
                raise VMDefinitionError("the command line is not UTF-8: %s" % e)
        defn = from_qemu(data)
    return finish(defn)


__all__ = ["MAX_INPUT_CHARS", "SOURCES", "VIOMMU_PROFILES", "VMDefinitionError", "detect", "plain", "requirements"]
