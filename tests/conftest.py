"""Make the repository importable as the collection ``ansible_collections.iommu.host``.

The repository root is the collection root. Python imports collection code
through ``ansible_collections.<namespace>.<name>``, so the tests put a symlink
``build/collections/ansible_collections/iommu/host`` -> repository root on
sys.path (the Makefile exports the same path to ansible-playbook as
ANSIBLE_COLLECTIONS_PATH).
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, "build", "collections")


def _ensure_collection_link():
    ns = os.path.join(COLLECTIONS, "ansible_collections", "iommu")
    link = os.path.join(ns, "host")
    os.makedirs(ns, exist_ok=True)
    if not os.path.islink(link):
        tmp = link + ".%d" % os.getpid()
        os.symlink(REPO, tmp)
        os.replace(tmp, link)
    if COLLECTIONS not in sys.path:
        sys.path.insert(0, COLLECTIONS)
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", COLLECTIONS)


_ensure_collection_link()
