"""Unit tests of :mod:`insightdb.tenancy`: tenant ids, ``tenant_context`` and ``unscoped``.

Pure and server-free: the tenant lives in a context variable, so these tests check
validation (the canonical form of tenant ids), nesting and restoring (also after
exceptions), the logged escape hatch, that concurrent asyncio tasks never see one
another's tenant, and that exits are matched to their entries: a scope abandoned in a
suspended (sync or async) generator never changes the consumer's scope once the
consumer's own scope ends, and a mismatched exit raises and fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import random
import threading
import unicodedata
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator

import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st
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


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("ac\u202eme", "format character U+202E RIGHT-TO-LEFT OVERRIDE at index 2"),
        ("acme\u2066", "format character U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("ac\u200bme", "format character U+200B ZERO WIDTH SPACE"),
        ("\ufeffacme", "format character U+FEFF"),
        ("ac\u00adme", "format character U+00AD SOFT HYPHEN"),
        ("a b", "whitespace U+0020 SPACE at index 1"),
        ("acme ", "whitespace U+0020"),
        ("a\u00a0b", "whitespace U+00A0 NO-BREAK SPACE"),
        ("a\u3000b", "whitespace U+3000 IDEOGRAPHIC SPACE"),
        ("a\u2028b", "line separator U+2028"),
        ("a\u2029b", "paragraph separator U+2029"),
        ("a\tb", "control character U+0009"),
        ("acme\n", "control character U+000A"),
        ("a\x7fb", "control character U+007F"),
        ("a\x85b", "control character U+0085"),
        ("a\ud800b", "surrogate U+D800"),
        ("a\ue000b", "private-use character U+E000"),
        ("a\U000f0000", "private-use character U+F0000"),
        ("a\u0378b", "unassigned code point U+0378"),
        ("a\U0010ffff", "unassigned code point U+10FFFF"),
    ],
)
def test_unsafe_characters_are_refused_by_name(bad: str, problem: str) -> None:
    with pytest.raises(TenantContextError) as caught:
        validate_tenant_id(bad)
    message = caught.value.message
    assert problem in message
    assert message.isascii(), "the message must be one safe line"
    assert message.isprintable(), "the message must be one safe line"
    with pytest.raises(TenantContextError):
        tenant_context(bad)


@pytest.mark.parametrize(
    "not_nfc",
    ["caf\u0065\u0301", "\u212bngstr\u00f6m", "\u1100\u1161-tenant", "n\u0303", "\u0041\u030a"],
    ids=["e-combining-acute", "angstrom-sign", "hangul-jamo", "n-combining-tilde", "A-ring"],
)
def test_ids_not_in_nfc_are_refused(not_nfc: str) -> None:
    assert not unicodedata.is_normalized("NFC", not_nfc)
    with pytest.raises(TenantContextError, match="not NFC-normalised"):
        validate_tenant_id(not_nfc)
    assert validate_tenant_id(unicodedata.normalize("NFC", not_nfc))


def test_messages_never_echo_a_long_id() -> None:
    long_id = "secret-" + "x" * 500
    for bad in (long_id, "a b" + "y" * 100, "\u202e" + "z" * 100):
        with pytest.raises(TenantContextError) as caught:
            validate_tenant_id(bad)
        message = caught.value.message
        assert len(message) < 200
        assert "\n" not in message
        for filler in "xyz":
            assert filler * 30 not in message


@pytest.mark.parametrize(
    "good",
    [
        "acme-corp",
        "tenant_42",
        str(uuid.uuid4()),
        uuid.uuid4().hex,
        str(ObjectId()),
        "ÜBER-straße",
        "東京-テナント",
        "αθήνα",
        "киев-1",
        "café",
        "mañana",
        "x" * MAX_TENANT_ID_LENGTH,
        "a:b/c@d+e=f",
    ],
)
def test_ordinary_ids_are_accepted(good: str) -> None:
    assert validate_tenant_id(good) == good
    assert tenant_context(good).tenant_id == good


_SAFE_CHARS = st.characters(
    categories=["Lu", "Ll", "Lt", "Lo", "Nd", "Pd", "Pc"], exclude_characters="$."
)


@settings(max_examples=300, deadline=None)
@given(st.text(_SAFE_CHARS, min_size=1, max_size=MAX_TENANT_ID_LENGTH))
def test_letters_digits_dashes_in_nfc_are_accepted(text: str) -> None:
    candidate = unicodedata.normalize("NFC", text)
    if len(candidate) <= MAX_TENANT_ID_LENGTH:
        assert validate_tenant_id(candidate) == candidate


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=MAX_TENANT_ID_LENGTH + 20))
def test_every_string_is_either_canonical_or_refused_in_one_line(text: str) -> None:
    try:
        accepted = validate_tenant_id(text)
    except TenantContextError as exc:
        message = exc.message
    else:
        message = ""
    if message:
        assert "\n" not in message
        assert len(message) < 300
        return
    assert accepted is text
    assert 0 < len(text) <= MAX_TENANT_ID_LENGTH
    assert unicodedata.is_normalized("NFC", text)
    assert not set(text) & {"$", ".", "\x00"}
    refused = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
    assert not {unicodedata.category(char) for char in text} & refused


@settings(max_examples=200, deadline=None)
@given(
    st.text(_SAFE_CHARS, min_size=0, max_size=20),
    st.characters(categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"]),
    st.text(_SAFE_CHARS, min_size=0, max_size=20),
)
def test_one_unsafe_character_anywhere_is_refused(before: str, bad: str, after: str) -> None:
    with pytest.raises(TenantContextError):
        validate_tenant_id(before + bad + after)


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


# -- generators: a scope left open in an abandoned generator ------------------------------


def _state() -> tuple[str | None, str | None]:
    return current_tenant(), unscoped_reason()


def _unscoped_rows() -> Generator[int]:
    with unscoped("generator report"):
        yield 1
        yield 2


def _other_tenant_rows() -> Generator[int]:
    with tenant_context("other"):
        yield 1
        yield 2


async def _async_unscoped_rows() -> AsyncGenerator[int]:
    async with unscoped("async generator report"):
        yield 1
        yield 2


async def _async_other_tenant_rows() -> AsyncGenerator[int]:
    async with tenant_context("other"):
        yield 1
        yield 2


def test_sync_generator_closed_at_break_restores_the_consumer_at_once() -> None:
    # CPython closes a generator as soon as the loop drops it, in the consumer's context.
    with tenant_context("acme"):
        for _ in _unscoped_rows():
            break
        assert _state() == ("acme", None)
    assert _state() == (None, None)


@pytest.mark.parametrize("rows", [_unscoped_rows, _other_tenant_rows])
def test_abandoned_sync_generator_cannot_outlive_the_consumers_scope(
    rows: Callable[[], Generator[int]],
) -> None:
    iterator = rows()

    def consume() -> None:
        with tenant_context("acme"):
            for _ in iterator:
                break  # the generator is kept alive, suspended with its scope open

    with pytest.raises(TenantContextError, match="still open"):
        consume()
    assert _state() == (None, None)
    with tenant_context("later"):
        iterator.close()  # its late exit changes nothing
        assert _state() == ("later", None)
    assert _state() == (None, None)


def test_abandoned_sync_generator_collected_later_changes_nothing() -> None:
    alive = [_unscoped_rows()]
    inside: list[tuple[str | None, str | None]] = []

    def consume() -> None:
        with tenant_context("acme"):
            next(alive[0])
            inside.append(_state())

    with pytest.raises(TenantContextError):
        consume()
    assert inside == [(None, "generator report")]  # Python runs it in our context
    with tenant_context("later"):
        alive.clear()  # the last reference: CPython closes it here, in this context
        gc.collect()
        assert _state() == ("later", None)
    assert _state() == (None, None)


@pytest.mark.parametrize("rows", [_async_unscoped_rows, _async_other_tenant_rows])
async def test_abandoned_async_generator_cannot_outlive_the_consumers_scope(
    rows: Callable[[], AsyncGenerator[int]],
) -> None:
    async def consume() -> None:
        async with tenant_context("acme"):
            async for _ in rows():
                break  # asyncio closes it later, in a task of its own

    with pytest.raises(TenantContextError, match="still open"):
        await consume()
    assert _state() == (None, None)
    async with tenant_context("later"):
        for _ in range(5):  # let the event loop's finaliser run aclose()
            await asyncio.sleep(0)
        assert _state() == ("later", None)
    assert _state() == (None, None)


async def test_async_generator_closed_explicitly_after_the_consumers_scope() -> None:
    rows = _async_unscoped_rows()
    with pytest.raises(TenantContextError):
        async with tenant_context("acme"):
            assert await anext(rows) == 1
    async with tenant_context("later"):
        await rows.aclose()
        assert _state() == ("later", None)
    assert _state() == (None, None)


async def test_aclosing_makes_abandoning_a_generator_clean() -> None:
    async with tenant_context("acme"):
        async with contextlib.aclosing(_async_unscoped_rows()) as rows:
            async for _ in rows:
                break
        assert _state() == ("acme", None)
    assert _state() == (None, None)


def test_consumers_outer_scopes_fail_closed_until_they_exit() -> None:
    iterator = _unscoped_rows()
    with tenant_context("outer"):
        with pytest.raises(TenantContextError), tenant_context("inner"):
            next(iterator)
        # Neither the generator's unscoped block nor a guessed tenant: nothing runs.
        assert _state() == (None, None)
        with tenant_context("again"):
            assert _state() == ("again", None)
        assert _state() == (None, None)
    assert _state() == (None, None)
    iterator.close()
    assert _state() == (None, None)


def test_generator_closed_while_the_consumer_is_in_a_later_scope() -> None:
    # The generator's exit finds the consumer's later scope above its own frame: it
    # can't know whose state is right, so it raises and leaves no tenant at all.
    iterator = _other_tenant_rows()
    with tenant_context("acme"):
        next(iterator)
        with tenant_context("b"):
            with pytest.raises(TenantContextError, match="still open"):
                iterator.close()
            assert _state() == (None, None)
        assert _state() == (None, None)
    assert _state() == (None, None)


def test_generator_exhausted_inside_the_consumers_scope_is_matched() -> None:
    with tenant_context("acme"):
        assert list(_unscoped_rows()) == [1, 2]
        assert _state() == ("acme", None)


def test_scope_helpers_written_as_context_manager_generators_still_work() -> None:
    @contextlib.contextmanager
    def as_support(ticket: str) -> Iterator[None]:
        with unscoped(f"support ticket {ticket}"):
            yield

    with tenant_context("acme"):
        with as_support("42"):
            assert _state() == (None, "support ticket 42")
        assert _state() == ("acme", None)


async def test_yield_dependency_shape_runs_the_handler_in_the_tenant() -> None:
    # What FastAPI does with an async generator dependency: enter it, run the handler
    # in the same task, then close it.
    async def dependency() -> AsyncIterator[str]:
        async with tenant_context("acme"):
            yield "acme"

    async with contextlib.asynccontextmanager(dependency)() as tenant:
        assert current_tenant() == tenant
    assert _state() == (None, None)


async def test_handler_abandoning_a_generator_fails_the_dependencys_exit() -> None:
    async def dependency() -> AsyncIterator[str]:
        async with tenant_context("acme"):
            yield "acme"

    async def request() -> None:
        async with contextlib.asynccontextmanager(dependency)():
            async for _ in _async_unscoped_rows():
                break

    with pytest.raises(TenantContextError):
        await request()
    assert _state() == (None, None)


# -- mismatched exits ------------------------------------------------------------------


def test_exiting_an_outer_scope_first_raises_and_fails_closed() -> None:
    outer, inner = tenant_context("outer"), unscoped("inner")
    with tenant_context("base"):
        outer.__enter__()
        inner.__enter__()
        with pytest.raises(TenantContextError, match="still open"):
            outer.__exit__(None, None, None)
        assert _state() == (None, None)
        inner.__exit__(None, None, None)  # already dropped: a no-op
        assert _state() == (None, None)
    assert _state() == (None, None)


def test_matched_exit_restores_exactly_what_its_entry_replaced() -> None:
    first, second = tenant_context("first"), tenant_context("second")
    with unscoped("report"):
        first.__enter__()
        second.__enter__()
        second.__exit__(None, None, None)
        assert _state() == ("first", None)
        first.__exit__(None, None, None)
        assert _state() == (None, "report")


def test_exit_in_another_context_raises_and_fails_closed() -> None:
    scope = tenant_context("elsewhere")
    other = contextvars.copy_context()
    other.run(scope.__enter__)
    with tenant_context("acme"):
        with pytest.raises(TenantContextError, match="not entered in"):
            scope.__exit__(None, None, None)
        assert _state() == (None, None)
    assert _state() == (None, None)
    assert other.run(current_tenant) == "elsewhere"  # the entering context is untouched


def test_exit_in_another_thread_raises_and_fails_closed() -> None:
    scope = unscoped("thread")
    entered = threading.Event()

    def enter() -> None:
        scope.__enter__()
        entered.set()

    worker = threading.Thread(target=enter)
    worker.start()
    worker.join()
    assert entered.is_set()
    with tenant_context("acme"):
        with pytest.raises(TenantContextError):
            scope.__exit__(None, None, None)
        assert _state() == (None, None)


def test_extra_exit_inside_a_scope_fails_closed() -> None:
    stray = tenant_context("stray")
    with tenant_context("acme"):
        with pytest.raises(TenantContextError, match="more often"):
            stray.__exit__(None, None, None)
        assert _state() == (None, None)
    assert _state() == (None, None)


def test_mismatch_during_an_exception_chains_it() -> None:
    rows = _unscoped_rows()

    def fail() -> None:
        with tenant_context("acme"):
            next(rows)
            raise ValueError("the original error")

    with pytest.raises(TenantContextError) as caught:
        fail()
    assert isinstance(caught.value.__context__, ValueError)
    rows.close()


async def test_mismatch_never_replaces_a_cancellation(warnings_logged: list[str]) -> None:
    rows = _async_unscoped_rows()
    started = asyncio.Event()

    async def handler() -> None:
        async with tenant_context("acme"):
            await anext(rows)
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(handler())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert any("still open" in line for line in warnings_logged)
    await rows.aclose()
    assert _state() == (None, None)


# -- a reference model of the rule, checked against random entries and exits --------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.integers(0, 10)), max_size=40))
def test_random_entries_and_exits_follow_the_rule(steps: list[tuple[bool, int, int]]) -> None:
    # Model: the chain is a list of ("scope", entry, state) or ("seal",). An exit finds
    # its entry; on top it pops; deeper it drops what is above (sealing and raising if
    # a live scope was dropped); not there at all (dropped earlier) it does nothing.
    def run() -> None:
        chain: list[tuple[object, ...]] = []
        open_entries: list[
            tuple[int, tenant_context | unscoped, tuple[str | None, str | None]]
        ] = []
        counter = 0
        for enter, kind, pick in steps:
            if enter or not open_entries:
                counter += 1
                state = (f"t{kind}", None) if kind < 5 else (None, f"reason {kind}")
                scope: tenant_context | unscoped = (
                    tenant_context(state[0]) if state[0] else unscoped(str(state[1]))
                )
                scope.__enter__()
                chain.append(("scope", counter, state))
                open_entries.append((counter, scope, state))
            else:
                entry, scope, _ = open_entries.pop(pick % len(open_entries))
                where = [i for i, item in enumerate(chain) if item[:2] == ("scope", entry)]
                expect_error = False
                if where:
                    i = where[0]
                    above = chain[i + 1 :]
                    chain = chain[:i]
                    if any(item[0] == "scope" for item in above):
                        chain.append(("seal",))
                        expect_error = True
                if expect_error:
                    with pytest.raises(TenantContextError):
                        scope.__exit__(None, None, None)
                else:
                    scope.__exit__(None, None, None)
            top = chain[-1] if chain else ("seal",)
            expected = top[2] if top[0] == "scope" else (None, None)
            assert _state() == expected
            # Safety: any tenant or reason in force belongs to a scope still open.
            if _state() != (None, None):
                assert any(_state() == state for _, _, state in open_entries)

    contextvars.copy_context().run(run)


# -- concurrency: abandoned generators in concurrent tasks --------------------------------


async def test_tasks_abandoning_generators_never_affect_one_another() -> None:
    seen_wrong: list[tuple[str, tuple[str | None, str | None]]] = []

    async def work(index: int) -> str:
        tenant = f"tenant-{index}"
        try:
            async with tenant_context(tenant):
                for step in range(6):
                    await asyncio.sleep(0)
                    if index % 3 == 0 and step == 2:
                        async for _ in _async_unscoped_rows():
                            break  # this task now runs unscoped until its scope ends
                    elif _state() != (tenant, None) and not (index % 3 == 0 and step > 2):
                        seen_wrong.append((tenant, _state()))
        except TenantContextError:
            if index % 3:
                return f"unexpected error in {tenant}"
        await asyncio.sleep(0)
        return tenant if _state() == (None, None) else f"leaked {_state()}"

    results = await asyncio.gather(*(work(i) for i in range(60)))
    assert seen_wrong == []
    assert results == [f"tenant-{i}" for i in range(60)]


def test_threads_each_see_their_own_tenant() -> None:
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        with tenant_context(f"t{index}"):
            barrier.wait()
            for _ in range(200):
                if current_tenant() != f"t{index}":
                    errors.append(f"t{index} saw {current_tenant()}")
        if current_tenant() is not None:
            errors.append(f"t{index} leaked")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
