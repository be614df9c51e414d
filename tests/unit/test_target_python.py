"""Code that runs on target hosts: Python 3.9 syntax, standard library only.

The CI interpreter is newer than the oldest target we support, so compile-on-3.11
would not catch 3.10+ syntax; ast with feature_version=(3, 9) does.
"""
import ast
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_DIRS = ("plugins/modules", "plugins/module_utils")
ALLOWED_PREFIXES = ("ansible.module_utils", "ansible_collections.iommu.host.plugins.module_utils", "__future__")
# module_utils used only on the controller (filters), with its optional controller-side import
CONTROLLER_ONLY = {"plugins/module_utils/policy/custom.py": {"jmespath"}}


def target_files():
    """Each module, and each package (policy/, decode/) as one case covering all its files."""
    for d in TARGET_DIRS:
        for name in sorted(os.listdir(os.path.join(REPO, d))):
            if name.endswith(".py") or (os.path.isdir(os.path.join(REPO, d, name)) and name != "__pycache__"):
                yield "%s/%s" % (d, name)


def python_files(rel):
    if rel.endswith(".py"):
        return [rel]
    found = []
    for root, dirs, files in os.walk(os.path.join(REPO, rel)):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        found.extend(os.path.relpath(os.path.join(root, n), REPO) for n in sorted(files) if n.endswith(".py"))
    return found


@pytest.mark.parametrize("unit", list(target_files()))
def test_python39_syntax_and_stdlib_only(unit):
    for rel in python_files(unit):
        check_file(rel)


def check_file(rel):
    with open(os.path.join(REPO, rel)) as f:
        tree = ast.parse(f.read(), rel, feature_version=(3, 9))
    stdlib = sys.stdlib_module_names
    extra = CONTROLLER_ONLY.get(rel, set())
    for node in ast.walk(tree):
        if isinstance(node, ast.Match):
            pytest.fail("%s:%d: match statement needs Python 3.10" % (rel, node.lineno))
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            assert (top in stdlib or name.startswith(ALLOWED_PREFIXES) or top in extra), \
                "%s:%d imports %s, which is not in the standard library" % (rel, node.lineno, name)
