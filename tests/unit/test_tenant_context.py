"""Unit tests of :mod:`insightdb.tenancy`: tenant ids, ``tenant_context`` and ``unscoped``.

Pure and server-free: the tenant lives in context variables, so these tests check
validation, nesting and restoring (also after exceptions), the logged escape hatch,
and that concurrent asyncio tasks never see one another's tenant.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest
from loguru import logger

from insightdb import TenantContextError
from insightdb.tenancy import (
    MAX_TENANT_ID_LENGTH,
    current_tenant,
    tenant_context,
    unscoped,
    unscoped_reason,
    validate_tenant_id,
)


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """Collect what insightdb logs at WARNING and above while the test runs."""
    lines: list[str] = []
    logger.enable("insightdb")
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    try:
        yield lines
    finally:
        logger.remove(sink)
        logger.disable("insightdb")


@pytest.fixture(autouse=True)
def _starts_and_ends_outside_any_tenant() -> Iterator[None]:
    assert current_tenant() is None
    assert unscoped_reason() is None
    yield
    assert current_tenant() is None, "a tenant leaked out of the test"
    assert unscoped_reason() is None, "an unscoped block leaked out of the test"


# -- validate_tenant_id ----------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "\t\n ",
        "x" * (MAX_TENANT_ID_LENGTH + 1),
        "$acme",
        "ac$me",
        "acme.eu",
        ".",
        "ac\x00me",
        "\x00",
    ],
    ids=["empty", "space", "whitespace", "129-chars", "dollar-first", "dollar", "dot", "only-dot",
         "nul", "only-nul"],
)  # fmt: skip
def test_invalid_tenant_ids_are_refused(bad: str) -> None:
    with pytest.raises(TenantContextError):
        validate_tenant_id(bad)


@pytest.mark.parametrize("bad", [None, 42, b"acme", ["acme"], {"$ne": ""}, 1.5, object()])
def test_non_string_tenant_ids_are_refused(bad: object) -> None:
    with pytest.raises(TenantContextError, match="must be a string"):
        validate_tenant_id(bad)


def test_error_messages_say_why() -> None:
    with pytest.raises(TenantContextError, match="empty"):
        validate_tenant_id("  ")
    with pytest.raises(TenantContextError, match="129 characters long; at most 128"):
        validate_tenant_id("a" * 129)
    with pytest.raises(TenantContextError, match=r"'\$'"):
        validate_tenant_id("a$")
    with pytest.raises(TenantContextError, match=r"'\.'"):
        validate_tenant_id("a.b")
    with pytest.raises(TenantContextError, match="NUL"):
        validate_tenant_id("a\x00")


@pytest.mark.parametrize(
    "good",
    ["acme", "a", "x" * MAX_TENANT_ID_LENGTH, "tenant-42_EU", "ümlaut-ß", "550e8400-e29b-41d4"],
)
def test_valid_tenant_ids_are_returned_unchanged(good: str) -> None:
    assert validate_tenant_id(good) == good


def test_max_length_is_128() -> None:
    assert MAX_TENANT_ID_LENGTH == 128


def test_tenant_context_validates_before_entering() -> None:
    with pytest.raises(TenantContextError):
        tenant_context("bad.id")
    with pytest.raises(TenantContextError):
        tenant_context(None)  # type: ignore[arg-type]
    assert current_tenant() is None


# -- tenant_context --------------------------------------------------------------------


def test_current_tenant_is_none_outside_any_context() -> None:
    assert current_tenant() is None


def test_sync_context_sets_and_restores() -> None:
    ctx = tenant_context("acme")
    assert ctx.tenant_id == "acme"
    with ctx as entered:
        assert entered == "acme"
        assert current_tenant() == "acme"
    assert current_tenant() is None


async def test_async_context_sets_and_restores() -> None:
    async with tenant_context("acme") as entered:
        assert entered == "acme"
        await asyncio.sleep(0)
        assert current_tenant() == "acme"
    assert current_tenant() is None


def test_nesting_restores_the_outer_tenant() -> None:
    with tenant_context("outer"):
        with tenant_context("inner"):
            assert current_tenant() == "inner"
            with tenant_context("innermost"):
                assert current_tenant() == "innermost"
            assert current_tenant() == "inner"
        assert current_tenant() == "outer"
    assert current_tenant() is None


async def test_async_nesting_mixed_with_sync_restores_the_outer_tenant() -> None:
    async with tenant_context("outer"):
        with tenant_context("inner"):
            async with tenant_context("innermost"):
                await asyncio.sleep(0)
                assert current_tenant() == "innermost"
            assert current_tenant() == "inner"
        assert current_tenant() == "outer"
    assert current_tenant() is None


def test_same_object_can_be_nested_in_itself() -> None:
    ctx = tenant_context("acme")
    with ctx, tenant_context("other"), ctx:
        assert current_tenant() == "acme"
    assert current_tenant() is None


def test_exception_inside_restores_the_outer_tenant() -> None:
    with tenant_context("outer"):
        with pytest.raises(RuntimeError, match="boom"), tenant_context("inner"):
            raise RuntimeError("boom")
        assert current_tenant() == "outer"
    assert current_tenant() is None


async def test_exception_inside_async_context_restores_and_propagates() -> None:
    async def fail_inside() -> None:
        async with tenant_context("acme"):
            await asyncio.sleep(0)
            raise KeyError("x")

    with pytest.raises(KeyError):
        await fail_inside()
    assert current_tenant() is None


def test_exit_without_enter_is_refused() -> None:
    with pytest.raises(TenantContextError):
        tenant_context("acme").__exit__(None, None, None)
    assert current_tenant() is None


def test_context_manager_does_not_swallow_exceptions() -> None:
    ctx = tenant_context("acme")
    with pytest.raises(ValueError, match="kept"), ctx:
        raise ValueError("kept")


# -- unscoped --------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", None, 3])
def test_unscoped_requires_a_reason(reason: object) -> None:
    with pytest.raises(TenantContextError, match="needs a reason"):
        unscoped(reason)  # type: ignore[arg-type]


def test_unscoped_clears_the_tenant_and_records_the_reason() -> None:
    with tenant_context("acme"):
        with unscoped("  nightly report  "):
            assert current_tenant() is None
            assert unscoped_reason() == "nightly report"
        assert current_tenant() == "acme"
        assert unscoped_reason() is None


async def test_unscoped_as_async_context_manager() -> None:
    async with tenant_context("acme"):
        async with unscoped("migration"):
            await asyncio.sleep(0)
            assert (current_tenant(), unscoped_reason()) == (None, "migration")
        assert (current_tenant(), unscoped_reason()) == ("acme", None)


def test_unscoped_logs_a_warning_with_the_reason(warnings_logged: list[str]) -> None:
    with unscoped("support ticket 1234"):
        pass
    assert len(warnings_logged) == 1
    assert "WARNING" in warnings_logged[0]
    assert "support ticket 1234" in warnings_logged[0]


async def test_async_unscoped_logs_each_entry(warnings_logged: list[str]) -> None:
    block = unscoped("export")
    async with block:
        pass
    async with block:
        pass
    assert sum("export" in line for line in warnings_logged) == 2


def test_tenant_context_inside_unscoped_is_scoped_again() -> None:
    with unscoped("report"):
        with tenant_context("acme"):
            assert current_tenant() == "acme"
            assert unscoped_reason() is None
        assert current_tenant() is None
        assert unscoped_reason() == "report"
    assert unscoped_reason() is None


def test_nested_unscoped_restores_the_outer_reason() -> None:
    with unscoped("outer"):
        with unscoped("inner"):
            assert unscoped_reason() == "inner"
        assert unscoped_reason() == "outer"


def test_exception_inside_unscoped_restores_the_tenant() -> None:
    with tenant_context("acme"):
        with pytest.raises(RuntimeError), unscoped("oops"):
            raise RuntimeError
        assert (current_tenant(), unscoped_reason()) == ("acme", None)


# -- concurrency -----------------------------------------------------------------------


async def test_200_interleaved_tasks_never_see_another_tasks_tenant() -> None:
    rng = random.Random(4)
    seen_wrong: list[tuple[str, str | None]] = []
    entered = 0

    async def work(index: int) -> str:
        nonlocal entered
        tenant = f"tenant-{index}"
        assert current_tenant() is None
        async with tenant_context(tenant):
            entered += 1
            for step in range(rng.randint(3, 12)):
                await asyncio.sleep(0)
                if current_tenant() != tenant:
                    seen_wrong.append((tenant, current_tenant()))
                if step % 4 == 0:
                    # Nested blocks inside the task, interleaved with other tasks.
                    with tenant_context(f"{tenant}-nested"):
                        await asyncio.sleep(0)
                        if current_tenant() != f"{tenant}-nested":
                            seen_wrong.append((f"{tenant}-nested", current_tenant()))
                    if step % 8 == 0:
                        async with unscoped("task step"):
                            await asyncio.sleep(0)
                            if current_tenant() is not None:
                                seen_wrong.append(("unscoped", current_tenant()))
        final = current_tenant()
        return tenant if final is None else f"leaked {final}"

    results = await asyncio.gather(*(work(i) for i in range(200)))
    assert entered == 200
    assert seen_wrong == []
    assert results == [f"tenant-{i}" for i in range(200)]
    assert current_tenant() is None


async def test_child_tasks_inherit_the_tenant_but_cannot_change_the_parents() -> None:
    async with tenant_context("parent"):

        async def child() -> str | None:
            inherited = current_tenant()
            async with tenant_context("child"):
                await asyncio.sleep(0)
            return inherited

        assert await asyncio.create_task(child()) == "parent"
        assert current_tenant() == "parent"


async def test_one_tenant_context_object_shared_by_concurrent_tasks() -> None:
    # A single instance (e.g. built once per request and handed to helpers that run
    # concurrently with gather) is entered in several tasks. Each task must see the
    # tenant and leave cleanly; the instance's token stack is shared between tasks,
    # so exits happen in another task's Context.
    shared = tenant_context("acme")

    async def work(delay: int) -> str | None:
        async with shared:
            for _ in range(delay):
                await asyncio.sleep(0)
            return current_tenant()

    results = await asyncio.gather(work(1), work(5), return_exceptions=True)
    assert list(results) == ["acme", "acme"]
