"""Mutation check: switch off tenant scoping at one injection point, and get caught.

insightdb injects the tenant at these points, all in :mod:`insightdb.tenancy.collection`
(with the pure rewriting in :mod:`insightdb.tenancy.scoping`):

    find, find_one, count_documents, distinct, aggregate (leading $match),
    aggregate sub-pipelines ($lookup / $unionWith into a scoped collection),
    insert_one, insert_many, update_one, update_many, find_one_and_update,
    replace_one, delete_one, delete_many, bulk_write, and the no-tenant refusal.

Each case below replaces exactly one of them with a version that passes the call
through unscoped, runs the Beanie operation that reaches it, and asserts that the
tenant guard (the plugin's CommandListener) reports the command. So removing any
single injection point makes the suite fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from beanie import BulkWriter, UpdateResponse
from beanie.odm.operators.update.general import Inc, Set

import insightdb
import insightdb.tenancy.pipelines as pipelines
from insightdb import CustomerDocument, Settings, TenantIsolationError, TenantScoped
from insightdb.tenancy import allowlist, current_tenant, tenant_context
from insightdb.tenancy import operations as operations_module
from insightdb.tenancy.collection import GuardedCollection
from insightdb.tenancy.cursor import GuardedCursor
from insightdb.testing.guard import TenantGuard
from tests.commandcounter import COUNTER


class MutProject(TenantScoped, CustomerDocument):
    title: str
    budget: int = 0


class MutTask(TenantScoped, CustomerDocument):
    title: str


def _passthrough(method: str) -> Callable[..., Any]:
    """An unscoped stand-in for one GuardedCollection method."""
    if method == "find":

        def find(self: GuardedCollection, *args: Any, **kwargs: Any) -> Any:
            return GuardedCursor(self._raw.find(*args, **kwargs), self)

        return find
    if method == "aggregate":

        async def aggregate(self: GuardedCollection, *args: Any, **kwargs: Any) -> Any:
            return GuardedCursor(await self._raw.aggregate(*args, **kwargs), self)

        return aggregate

    async def passthrough(self: GuardedCollection, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self._raw, method)(*args, **kwargs)

    return passthrough


def _lookup_without_tenant(
    sub: Any, tenant: str | None, is_scoped: Any, name: Any
) -> list[dict[str, Any]]:
    return pipelines._scope_stages([dict(s) for s in sub or []], tenant, is_scoped)


def _tenant_optional(
    self: GuardedCollection, operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    # The refusal without a tenant is gone (the options are still checked).
    return current_tenant(), allowlist.check_options(operation, "t", args, kwargs)


async def _bulk() -> None:
    async with BulkWriter() as writer:
        await MutProject.find(MutProject.title == "a").update(
            Set({MutProject.budget: 3}), bulk_writer=writer
        )


_LOOKUP = [{"$lookup": {"from": "MutTask", "pipeline": [], "as": "tasks"}}]

CASES: dict[str, tuple[str, Any, Callable[[], Awaitable[Any]], bool]] = {
    # name: (attribute to patch, replacement, operation, run without a tenant?)
    "find": ("find", _passthrough("find"), lambda: MutProject.find_all().to_list(), False),
    "find_one": (
        "find_one",
        _passthrough("find_one"),
        lambda: MutProject.find_one(MutProject.title == "a"),
        False,
    ),
    "count_documents": (
        "count_documents",
        _passthrough("count_documents"),
        lambda: MutProject.count(),
        False,
    ),
    "distinct": ("distinct", _passthrough("distinct"), lambda: MutProject.distinct("title"), False),
    "aggregate": (
        "aggregate",
        _passthrough("aggregate"),
        lambda: MutProject.aggregate([{"$match": {}}]).to_list(),
        False,
    ),
    "aggregate sub-pipeline": (
        "pipelines._scoped_sub",
        _lookup_without_tenant,
        lambda: MutProject.aggregate(_LOOKUP).to_list(),
        False,
    ),
    "insert_one": (
        "insert_one",
        _passthrough("insert_one"),
        lambda: MutProject.insert_one(MutProject(title="n", tenant_id="")),
        False,
    ),
    "insert_many": (
        "insert_many",
        _passthrough("insert_many"),
        lambda: MutProject.insert_many([MutProject(title="m", tenant_id="")]),
        False,
    ),
    "update_one": (
        "update_one",
        _passthrough("update_one"),
        lambda: MutProject.find_one(MutProject.title == "a").update(Inc({MutProject.budget: 1})),
        False,
    ),
    "update_many": (
        "update_many",
        _passthrough("update_many"),
        lambda: MutProject.find_all().update(Inc({MutProject.budget: 1})),
        False,
    ),
    "find_one_and_update": (
        "find_one_and_update",
        _passthrough("find_one_and_update"),
        lambda: MutProject.find_one(MutProject.title == "a").update(
            Inc({MutProject.budget: 1}), response_type=UpdateResponse.NEW_DOCUMENT
        ),
        False,
    ),
    "replace_one": (
        "replace_one",
        _passthrough("replace_one"),
        lambda: _replace_first(),
        False,
    ),
    "delete_one": (
        "delete_one",
        _passthrough("delete_one"),
        lambda: MutProject.find_one(MutProject.title == "a").delete(),
        False,
    ),
    "delete_many": (
        "delete_many",
        _passthrough("delete_many"),
        lambda: MutProject.find_all().delete(),
        False,
    ),
    "bulk_write": ("bulk_write", _passthrough("bulk_write"), _bulk, False),
    "no-tenant refusal": ("_prepare", _tenant_optional, lambda: MutProject.count(), True),
}

_WIDE = {"locale": "en", "strength": 2}
_COUNT_ALL = [{"$group": {"_id": 1, "n": {"$sum": 1}}}]  # replaces count_documents' own

# Checks that refuse an operation outright: (module attribute, replacement, operation).
# Unmutated, the operation raises before a command is sent; with the check switched
# off it reaches the server, and the guard must notice.
REFUSALS: dict[str, tuple[str, Any, Callable[[], Awaitable[Any]]]] = {
    "collation (find)": (
        "check_collation",
        lambda value, where: value,
        lambda: MutProject.find(MutProject.title == "a", collation=_WIDE).to_list(),
    ),
    "collation (update)": (
        "check_collation",
        lambda value, where: value,
        lambda: MutProject.find(MutProject.title == "A").update(
            Inc({MutProject.budget: 1}), collation=_WIDE
        ),
    ),
    "keyword allowlist (count pipeline)": (
        "check_options",
        lambda operation, label, args, kwargs: kwargs,
        lambda: MutProject.find(MutProject.title == "a", pipeline=_COUNT_ALL).count(),
    ),
    "keyword allowlist (findAndModify query)": (
        "check_options",
        lambda operation, label, args, kwargs: kwargs,
        lambda: MutProject.find_one(MutProject.title == "a").update(
            Inc({MutProject.budget: 1}),
            response_type=UpdateResponse.NEW_DOCUMENT,
            query={},
        ),
    ),
}


async def _replace_first() -> None:
    doc = await MutProject.find_one(MutProject.title == "a")
    assert doc is not None
    doc.budget = 42
    await doc.replace()


@pytest.fixture
async def seeded(insightdb_settings: Settings) -> AsyncIterator[None]:
    async with insightdb.connect(insightdb_settings, models=[MutProject, MutTask]):
        for tenant in ("acme", "globex"):
            async with tenant_context(tenant):
                await MutProject(title="a").insert()
                await MutTask(title="t").insert()
        yield


@pytest.mark.insightdb_allow_unscoped
@pytest.mark.parametrize("case", list(CASES))
async def test_switching_off_one_injection_point_is_caught(
    case: str,
    seeded: None,
    insightdb_tenant_guard: TenantGuard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attribute, replacement, operation, without_tenant = CASES[case]

    # Unmutated, the operation is clean.
    insightdb_tenant_guard.reset()
    if not without_tenant:
        async with tenant_context("acme"):
            await operation()
        assert insightdb_tenant_guard.violations() == []

    if attribute.startswith("pipelines."):
        monkeypatch.setattr(pipelines, attribute.split(".", 1)[1], replacement)
    else:
        monkeypatch.setattr(GuardedCollection, attribute, replacement)
    insightdb_tenant_guard.reset()
    if without_tenant:
        await operation()
    else:
        async with tenant_context("acme"):
            await operation()
    caught = insightdb_tenant_guard.violations()
    insightdb_tenant_guard.reset()
    assert caught, f"removing the tenant at {case!r} went unnoticed"


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_switching_off_one_refusal_is_caught(
    case: str,
    seeded: None,
    insightdb_tenant_guard: TenantGuard,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attribute, replacement, operation = REFUSALS[case]
    before = COUNTER.count
    async with tenant_context("acme"):
        with pytest.raises(TenantIsolationError):
            await operation()
    assert COUNTER.count == before, "refused, yet a command was sent"

    monkeypatch.setattr(operations_module, attribute, replacement)
    insightdb_tenant_guard.reset()
    async with tenant_context("acme"):
        await operation()
    caught = insightdb_tenant_guard.violations()
    insightdb_tenant_guard.reset()
    assert caught, f"switching off {case!r} went unnoticed"
