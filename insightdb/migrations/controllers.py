"""Beanie-style revisions: ``class Forward`` / ``class Backward`` with decorated steps.

A revision file may define its steps as methods of ``Forward`` (run by ``up``) and
``Backward`` (run by ``down``), in the order they are written:

- :func:`iterative` — ``async def step(self, input_document: Old, output_document: New)``
  is called per document, like Beanie's ``iterative_migration``: attributes set on
  ``output_document`` override the input's fields, and the result, validated as ``New``,
  replaces the stored document. ``Old`` and ``New`` are frozen copies of the models
  (``beanie.Document`` subclasses defined in the revision file). Unlike Beanie, documents
  stream through :meth:`MigrationContext.for_each`: unordered bulk writes per batch,
  memory bounded by one batch, a checkpoint per batch.
- :func:`free_fall` — ``async def step(self, ctx)`` (or Beanie's ``(self, session)``)
  runs arbitrary code.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from beanie import Document, init_beanie
from beanie.odm.utils.dump import get_dict
from pymongo import ReplaceOne

from insightdb.exceptions import MigrationError
from insightdb.migrations.context import MigrationContext
from insightdb.runtime.registry import clean_bases

__all__ = ["FreeFallStep", "IterativeStep", "Step", "free_fall", "iterative", "steps_of"]


class _Output:
    """Records the attributes a step sets on ``output_document`` (nested ones included)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_values", {})

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __getattr__(self, name: str) -> Any:
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        if name not in values:
            values[name] = _Output()
        return values[name]

    def as_dict(self) -> dict[str, Any]:
        return {k: v.as_dict() if isinstance(v, _Output) else v for k, v in self._values.items()}


def _deep_update(target: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        current = target.get(name)
        if isinstance(value, dict) and isinstance(current, dict):
            _deep_update(current, value)
        else:
            target[name] = value
    return target


class IterativeStep:
    """A per-document step; built by :func:`iterative`."""

    def __init__(
        self,
        function: Callable[..., Awaitable[None]],
        document_models: Sequence[type[Document]],
        batch_size: int | None,
    ) -> None:
        hints = typing.get_type_hints(function)
        source, target = hints.get("input_document"), hints.get("output_document")
        for label, model in (("input_document", source), ("output_document", target)):
            if not (isinstance(model, type) and issubclass(model, Document)):
                raise MigrationError(
                    f"{function.__qualname__}: annotate {label} with a beanie.Document subclass"
                )
        self.function = function
        self.input_model: type[Document] = typing.cast("type[Document]", source)
        self.output_model: type[Document] = typing.cast("type[Document]", target)
        self.document_models = tuple(document_models)
        self.batch_size = batch_size

    async def run(self, ctx: MigrationContext, name: str) -> None:
        """Bind the frozen models to the group's database and stream the collection."""
        models = list(dict.fromkeys([*self.document_models, self.input_model, self.output_model]))
        with clean_bases():
            await init_beanie(database=ctx.database, document_models=models, skip_indexes=True)
        collection = self.input_model.get_pymongo_collection().name
        keep_nulls = self.output_model.get_settings().keep_nulls

        async def convert(raw: dict[str, Any]) -> ReplaceOne[Any] | None:
            before = self.input_model.model_validate(raw)
            output = _Output()
            await self.function(None, input_document=before, output_document=output)
            merged = _deep_update(before.model_dump(), output.as_dict())
            after = self.output_model.model_validate(merged)
            stored = get_dict(after, to_db=True, keep_nulls=keep_nulls)
            if stored == raw:
                return None  # unchanged: no write
            return ReplaceOne({"_id": raw["_id"]}, stored)

        await ctx.for_each(collection, convert, batch_size=self.batch_size, key=name)


class FreeFallStep:
    """An arbitrary-code step; built by :func:`free_fall`."""

    def __init__(
        self, function: Callable[..., Awaitable[None]], document_models: Sequence[type[Document]]
    ) -> None:
        self.function = function
        self.document_models = tuple(document_models)
        self._parameters = set(inspect.signature(function).parameters)

    async def run(self, ctx: MigrationContext, name: str) -> None:
        """Bind the listed models, then call the function with ``ctx`` or ``session``."""
        if self.document_models:
            with clean_bases():
                await init_beanie(database=ctx.database, document_models=list(self.document_models))
        kwargs: dict[str, Any] = {}
        if "ctx" in self._parameters:
            kwargs["ctx"] = ctx
        if "session" in self._parameters:
            kwargs["session"] = ctx.session
        await self.function(None, **kwargs)


Step = IterativeStep | FreeFallStep


def iterative(
    document_models: Sequence[type[Document]] = (), *, batch_size: int | None = None
) -> Callable[[Callable[..., Awaitable[None]]], IterativeStep]:
    """Declare a per-document step of a ``Forward``/``Backward`` class.

    Args:
        document_models: Extra models to bind (the annotated input and output models
            are bound anyway).
        batch_size: Documents per batch; the run's batch size by default.
    """

    def decorate(function: Callable[..., Awaitable[None]]) -> IterativeStep:
        return IterativeStep(function, document_models, batch_size)

    return decorate


def free_fall(
    document_models: Sequence[type[Document]] = (),
) -> Callable[[Callable[..., Awaitable[None]]], FreeFallStep]:
    """Declare an arbitrary-code step of a ``Forward``/``Backward`` class.

    The method takes ``ctx`` (a :class:`MigrationContext`) or, as in Beanie, ``session``.

    Args:
        document_models: Models to bind to the group's database (indexes created) before
            the step runs.
    """

    def decorate(function: Callable[..., Awaitable[None]]) -> FreeFallStep:
        return FreeFallStep(function, document_models)

    return decorate


def steps_of(cls: type) -> list[tuple[str, Step]]:
    """Return the decorated steps of a ``Forward``/``Backward`` class, in definition order."""
    return [(n, v) for n, v in vars(cls).items() if isinstance(v, IterativeStep | FreeFallStep)]
