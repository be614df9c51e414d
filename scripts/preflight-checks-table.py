# Copyright: iommu.host contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the generated tables of docs/preflight.md from the policy engine, so they cannot drift.

Two blocks between markers: the QEMU releases the rules know (policy/releases.py VERIFIED) and,
per check, its scope, profiles and the releases a running QEMU (the test bed's oracle) verified it
on (policy catalogue(), from each check's registration). tests/unit/test_policy_releases.py fails
when docs/preflight.md differs from what this script writes.

    python3 scripts/preflight-checks-table.py          # rewrite docs/preflight.md
    python3 scripts/preflight-checks-table.py --check  # exit 1 when it is stale
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "preflight.md")

RELEASES_BEGIN = "<!-- BEGIN generated releases table (scripts/preflight-checks-table.py); do not edit -->"
RELEASES_END = "<!-- END generated releases table -->"
CHECKS_BEGIN = "<!-- BEGIN generated checks table (scripts/preflight-checks-table.py); do not edit -->"
CHECKS_END = "<!-- END generated checks table -->"


def _policy():
    try:
        from ansible_collections.iommu.host.plugins.module_utils.policy import api
    except ImportError:
        sys.path.insert(0, os.path.join(REPO, "build", "collections"))   # the link tests/conftest.py makes
        from ansible_collections.iommu.host.plugins.module_utils.policy import api
    return api


def releases_table(api=None):
    api = api or _policy()
    rel = api.releases
    lines = ["| QEMU release | rules verified by | against |", "|---|---|---|"]
    for series in sorted(rel.VERIFIED):
        how, what = rel.VERIFIED[series]
        lines.append("| %d.%d%s | %s | %s |" % (series + (" (default)" if series == rel.NEWEST else "",
                                                          "oracle (a running QEMU)" if how == "oracle" else
                                                          "source reading", what)))
    return "\n".join(lines)


def checks_table(api=None):
    api = api or _policy()
    every = sorted(api.PROFILES)
    lines = ["| check | scope | mdevs | profiles | verified by the oracle on |", "|---|---|---|---|---|"]
    for entry in api.catalogue():
        profiles = "all" if entry["profiles"] == every else ", ".join("`%s`" % p for p in entry["profiles"])
        if entry["verified"]:
            verified = ", ".join("QEMU %s" % v for v in entry["verified"])
        elif entry["scope"] == "host":
            verified = "- (host facts; no QEMU release changes them)"
        else:
            verified = "- (source reading only)"
        mdev = "yes" if entry["mdev"] else "no" if entry["scope"] == "device" else "-"
        lines.append("| `%s` | %s | %s | %s | %s |" % (entry["id"], entry["scope"], mdev, profiles, verified))
    return "\n".join(lines)


def _replace(text, begin, end, body):
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError("docs/preflight.md lacks the markers %r ... %r" % (begin, end))
    return text[:start + len(begin)] + "\n" + body + "\n" + text[stop:]


def render(text, api=None):
    """``text`` (docs/preflight.md) with both generated blocks rewritten."""
    api = api or _policy()
    text = _replace(text, RELEASES_BEGIN, RELEASES_END, releases_table(api))
    return _replace(text, CHECKS_BEGIN, CHECKS_END, checks_table(api))


def main(argv):
    with open(DOC) as f:
        text = f.read()
    new = render(text)
    if "--check" in argv:
        if new != text:
            sys.stderr.write("docs/preflight.md is stale: run python3 scripts/preflight-checks-table.py\n")
            return 1
        return 0
    if new != text:
        with open(DOC, "w") as f:
            f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
