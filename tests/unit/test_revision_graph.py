"""The revision graph, without files or a server: ordering, heads, plans and its errors."""

from __future__ import annotations

import pytest

from insightdb.exceptions import MigrationError, MultipleHeadsError
from insightdb.revisions.graph import Revision, RevisionGraph


def graph(*edges: tuple[str, tuple[str, ...]], label: str = "migrations/admin") -> RevisionGraph:
    return RevisionGraph(
        (Revision(rev, downs, message=f"msg {rev}", source=f"{rev}.py") for rev, downs in edges),
        label=label,
        group="admin",
    )


def ids(revisions: list[Revision] | tuple[Revision, ...]) -> list[str]:
    return [r.revision for r in revisions]


LINEAR = (("a1", ()), ("b2", ("a1",)), ("c3", ("b2",)))


def test_empty_graph_has_no_head_and_nothing_to_do() -> None:
    g = graph()
    assert g.head() is None
    assert g.heads == ()
    assert g.upgrade_plan(set()) == []
    assert g.downgrade_plan(set(), target=None) == []


def test_linear_chain_orders_by_down_revision_not_by_id() -> None:
    # Ids sort the other way round: the order must come from the links alone.
    g = graph(("zz", ()), ("mm", ("zz",)), ("aa", ("mm",)))
    assert ids(g.ordered()) == ["zz", "mm", "aa"]
    assert g.head() == "aa"
    assert g.bases == ("zz",)


def test_linear_upgrade_and_downgrade_plans() -> None:
    g = graph(*LINEAR)
    assert ids(g.upgrade_plan(set())) == ["a1", "b2", "c3"]
    assert ids(g.upgrade_plan({"a1"})) == ["b2", "c3"]
    assert ids(g.upgrade_plan(set(), "b2")) == ["a1", "b2"]
    assert g.upgrade_plan({"a1", "b2", "c3"}) == []
    assert ids(g.downgrade_plan({"a1", "b2", "c3"}, steps=2)) == ["c3", "b2"]
    assert ids(g.downgrade_plan({"a1", "b2", "c3"}, target="a1")) == ["c3", "b2"]
    assert ids(g.downgrade_plan({"a1", "b2", "c3"}, target=None)) == ["c3", "b2", "a1"]
    assert g.current({"a1", "b2"}) == ("b2",)
    assert g.current(set()) == ()


def test_branch_has_two_heads_and_upgrade_refuses_without_target() -> None:
    g = graph(("a1", ()), ("b2", ("a1",)), ("c3", ("a1",)))
    assert set(g.heads) == {"b2", "c3"}
    with pytest.raises(MultipleHeadsError) as info:
        g.upgrade_plan(set())
    message = str(info.value)
    assert "2 heads" in message
    assert "b2" in message
    assert "c3" in message
    assert "--merge" in message
    assert "--db admin" in message
    assert "\n" not in message
    # A named head is still reachable.
    assert ids(g.upgrade_plan(set(), "c3")) == ["a1", "c3"]


def test_merge_revision_joins_branches() -> None:
    g = graph(("a1", ()), ("b2", ("a1",)), ("c3", ("a1",)), ("d4", ("b2", "c3")))
    assert g.head() == "d4"
    assert g.get("d4").is_merge
    plan = ids(g.upgrade_plan(set()))
    assert plan[0] == "a1"
    assert plan[-1] == "d4"
    assert set(plan[1:3]) == {"b2", "c3"}
    # Only the missing branch runs when the other one is applied.
    assert ids(g.upgrade_plan({"a1", "b2"})) == ["c3", "d4"]
    # Undoing the merge leaves both branch tips current.
    assert set(g.current({"a1", "b2", "c3"})) == {"b2", "c3"}
    assert ids(g.downgrade_plan({"a1", "b2", "c3", "d4"}, steps=1)) == ["d4"]
    assert g.ancestors("d4") == {"a1", "b2", "c3", "d4"}


def test_multiple_bases_merge_into_one_head() -> None:
    g = graph(("a1", ()), ("x9", ()), ("m5", ("a1", "x9")))
    assert set(g.bases) == {"a1", "x9"}
    assert g.head() == "m5"


def test_unknown_revision_is_a_clear_error() -> None:
    g = graph(*LINEAR)
    with pytest.raises(MigrationError, match=r"migrations/admin: unknown revision 'nope'"):
        g.resolve("nope")
    with pytest.raises(MigrationError, match="unknown revision"):
        g.upgrade_plan(set(), "nope")


def test_resolve_symbols_and_prefixes() -> None:
    g = graph(("abc111", ()), ("abd222", ("abc111",)))
    assert g.resolve("head") == "abd222"
    assert g.resolve("base") is None
    assert g.resolve("abc") == "abc111"
    with pytest.raises(MigrationError, match="ambiguous: abc111, abd222"):
        g.resolve("ab")


def test_missing_down_revision_names_the_file() -> None:
    with pytest.raises(MigrationError) as info:
        graph(("a1", ()), ("b2", ("gone",)))
    assert "'b2' (b2.py) revises 'gone', which has no file" in str(info.value)


def test_cycle_is_named() -> None:
    with pytest.raises(MigrationError) as info:
        graph(("a1", ()), ("b2", ("d4",)), ("c3", ("b2",)), ("d4", ("c3",)))
    message = str(info.value)
    assert message.startswith("migrations/admin: revisions form a cycle: ")
    cycle = message.split(": ")[-1].split(" -> ")
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"b2", "c3", "d4"}


def test_self_reference_is_a_cycle() -> None:
    with pytest.raises(MigrationError, match="cycle: a1 -> a1"):
        graph(("a1", ("a1",)))


def test_duplicate_revision_is_refused() -> None:
    with pytest.raises(MigrationError, match="defined twice"):
        RevisionGraph([Revision("a1", source="x.py"), Revision("a1", source="y.py")])


def test_applied_revisions_without_files_are_reported() -> None:
    g = graph(*LINEAR)
    g.check_applied({"a1", "b2"})
    with pytest.raises(MigrationError, match="records revision 'zz' as applied"):
        g.check_applied({"a1", "zz"}, database="the admin database")


def test_downgrade_bounds_are_checked() -> None:
    g = graph(*LINEAR)
    with pytest.raises(MigrationError, match="not both"):
        g.downgrade_plan({"a1"}, steps=1, target="a1")
    with pytest.raises(MigrationError, match="at least 1"):
        g.downgrade_plan({"a1"}, steps=0)
