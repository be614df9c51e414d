"""module_utils/nodeset.py: the one node/CPU-set parser and formatter (vmdef and the memory checks)."""
from hypothesis import given, settings, strategies as st

from ansible_collections.iommu.host.plugins.module_utils import nodeset
from ansible_collections.iommu.host.plugins.module_utils.policy.checks import memory
from ansible_collections.iommu.host.plugins.module_utils.vmdef import common


def test_forms_libvirt_and_qemu_write():
    assert nodeset.parse("0-3,^2,5") == {0, 1, 3, 5}
    assert nodeset.parse(" 1 , 3-4 ") == {1, 3, 4}
    assert nodeset.parse([1, "3-4"]) == {1, 3, 4}
    assert nodeset.parse(7) == {7}
    assert nodeset.parse("") == set()
    assert nodeset.text({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert nodeset.text(None) == "" and nodeset.text(set()) == ""


def test_unreadable_is_none():
    for bad in ("x", "3-1", "1-", "-1", "^", "0-65536", "99999999", True, -1, 1.5, {"a": 1}, "1" * 5000,
                [1, "x"], 65536):
        assert nodeset.parse(bad) is None, bad


def test_both_layers_use_it():
    assert memory.node_set is nodeset.parse and memory.nodes_text is nodeset.text
    assert common.parse_nodeset("0-1") == {0, 1} and common.format_nodeset({0, 1}) == "0-1"
    assert common.format_nodeset(None) is None and common.MAX_NODE == nodeset.MAX_NODE


@settings(max_examples=300, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=nodeset.MAX_NODE), max_size=40))
def test_round_trip(nodes):
    assert nodeset.parse(nodeset.text(nodes)) == nodes


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=40), st.text(alphabet="0123456789-^, ", max_size=40)))
def test_any_text_gives_a_set_or_none(value):
    out = nodeset.parse(value)
    assert out is None or (isinstance(out, set) and all(0 <= n <= nodeset.MAX_NODE for n in out))
