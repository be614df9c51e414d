# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Register values in, bit fields out: the helpers every vendor decoder uses.

``to_int`` / ``to_count`` (and ``_reg``, which records problems in an ``errors`` list) coerce ints
and hex strings as sysfs prints them, never raising; ``_field``, ``_field_get`` (FIELD_GET of
include/linux/bitfield.h), ``_genmask`` (GENMASK of include/linux/bits.h), ``_decode_masks`` and
``_mask_union`` read the (name, mask) tables the vendor modules copy from the kernel headers;
``_sizes`` names page-size bitmaps; ``_pred`` builds a derived predicate {supported, basis}.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type


_HEX_RE = re.compile(r'^(?:0[xX])?([0-9a-fA-F]+)$')
_MAX_HEX_DIGITS = 32


def _describe(value):
    """A short, never-raising description of an arbitrary input value."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__
        text = '<%s>' % type(value).__name__
    if len(text) > 80:
        text = text[:77] + '...'
    return text


def _hex(value):
    return None if value is None else '0x%x' % value


def _bit(value, n):
    return bool((value >> n) & 1)


def _field(value, shift, width):
    return (value >> shift) & ((1 << width) - 1)


def _field_get(mask, value):
    """FIELD_GET(mask, value) of include/linux/bitfield.h."""
    shift = (mask & -mask).bit_length() - 1
    return (value & mask) >> shift


def _genmask(high, low):
    return ((1 << (high - low + 1)) - 1) << low


def _size_name(size):
    for unit, shift in (('PiB', 50), ('TiB', 40), ('GiB', 30), ('MiB', 20), ('KiB', 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return '%d%s' % (size >> shift, unit)
    return '%dB' % size


def _sizes(bitmap):
    return [_size_name(1 << b) for b in range(64) if (bitmap >> b) & 1]


def _pred(supported, basis):
    """A derived predicate: supported is True/False, or None when the registers cannot tell."""
    return {'supported': supported, 'basis': basis}


def to_int(value, bits=64, name='value'):
    """Coerce a register value; returns (int, None) or (None, error).

    Accepts ints and hex strings: "0x1f", "1F" or sysfs style "d2008c22260286".
    Strings are always read as hex (sysfs prints every register with %llx / %x).
    """
    try:
        if isinstance(value, bool):
            return None, '%s: %s is a boolean, not a register value' % (name, value)
        if isinstance(value, int):
            number = int(value)
        elif isinstance(value, (str, bytes)):
            text = value.decode('ascii', 'replace') if isinstance(value, bytes) else value
            text = text.strip()
            match = _HEX_RE.match(text)
            if not match:
                return None, '%s: %s is not a hex number' % (name, _describe(value))
            if len(match.group(1)) > _MAX_HEX_DIGITS:
                return None, '%s: %s is too long for a %d-bit register' % (name, _describe(value), bits)
            number = int(match.group(1), 16)
        else:
            return None, '%s: %s (%s) is not an int or a hex string' % (
                name, _describe(value), type(value).__name__)
        if number < 0:
            return None, '%s: %d is negative' % (name, number)
        if number >> bits:
            return None, '%s: 0x%x does not fit in %d bits' % (name, number, bits)
        return number, None
    except Exception as e:  # pragma: no cover - belt and braces
        return None, '%s: cannot read %s (%s)' % (name, _describe(value), e)


def to_count(value, bits=8, name='value'):
    """Coerce a small count (log2 sizes, versions); returns (int, None) or (None, error).

    Unlike register values, strings are decimal ("20"), or hex only with a 0x prefix ("0x14").
    """
    if isinstance(value, str) and re.match(r'^\s*[0-9]{1,20}\s*$', value):
        value = int(value.strip())
    elif isinstance(value, str) and not re.match(r'^\s*0[xX]', value):
        return None, '%s: %s is not a decimal or 0x-prefixed number' % (name, _describe(value))
    return to_int(value, bits, name)


def _reg(value, bits, name, errors, required=True, count=False):
    """to_int() that records problems in ``errors``; None when missing or invalid."""
    if value is None:
        if required:
            errors.append('%s is missing' % name)
        return None
    number, err = (to_count if count else to_int)(value, bits, name)
    if err:
        errors.append(err)
    return number


def _mask_union(table):
    mask = 0
    for _key, m in table:
        mask |= m
    return mask


def _decode_masks(value, table):
    out = {}
    for key, mask in table:
        v = _field_get(mask, value)
        out[key] = bool(v) if (mask & (mask - 1)) == 0 else v
    return out
