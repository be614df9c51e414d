# -*- coding: utf-8 -*-
# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet report as JSON (report.json): the report dict of model.build(), byte-stable.

Keys sorted, compact separators, ASCII only (non-ASCII characters and lone surrogates as \\u escapes),
one trailing newline: the same report always gives the same bytes. Stdlib only.
"""

from __future__ import absolute_import, division, print_function

import json

__metaclass__ = type


def render(report):
    """report.json's text (str, ASCII)."""
    return json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
                      default=str) + "\n"
