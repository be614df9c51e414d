"""Captured sysfs/procfs trees of the test-bed guests, stored as tests/fixtures/sysfs/<name>.tar.xz.

sysfs names contain ':' (PCI addresses), which a collection may not hold in file names
(ansible-test, ansible-galaxy), so each tree captured by tests/testbed/capture_fixtures.py is
kept as one deterministic archive and extracted here on first use.
"""
import hashlib
import os
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARCHIVES = os.path.join(REPO, "tests", "fixtures", "sysfs")
CACHE = os.path.join(REPO, "build", "fixture-trees")


def names():
    return sorted(f[:-len(".tar.xz")] for f in os.listdir(ARCHIVES) if f.endswith(".tar.xz"))


def root(name):
    """Path of the extracted tree ``name`` (e.g. 'intel-vfio'), extracting it if needed."""
    archive = os.path.join(ARCHIVES, name + ".tar.xz")
    with open(archive, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    dest = os.path.join(CACHE, "%s-%s" % (name, digest))
    if not os.path.isdir(dest):
        tmp = dest + ".%d" % os.getpid()
        os.makedirs(tmp)
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(tmp, filter="data")
        try:
            os.rename(tmp, dest)
        except OSError:  # another process won the race
            pass
    return dest


def pack(tree, archive):
    """Write ``tree`` as a deterministic archive (sorted, mtime 0, root-owned)."""
    def norm(ti):
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
        return ti
    entries = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            entries.append(os.path.join(dirpath, n))
    with tarfile.open(archive + ".tmp", "w:xz", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            tar.add(path, arcname=os.path.relpath(path, tree), recursive=False, filter=norm)
    os.replace(archive + ".tmp", archive)
