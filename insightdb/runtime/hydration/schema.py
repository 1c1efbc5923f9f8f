"""Which models the fast path may build, and the validator it builds them with.

A model qualifies when nothing it declares could behave differently from Pydantic's
own construction: Beanie's or InsightDocument's ``__init__``, no ``__new__``, a
``model_post_init`` that only initialises private attributes, and no model validator
outside Pydantic's inner schema. Its validator is the model's inner core schema —
without the model wrapper that calls ``__init__``, without Beanie's ``fill_back_refs``
when the model has no back-links, and with ``PydanticObjectId``'s validator taking a
driver ``ObjectId`` inline.
"""

from __future__ import annotations

from typing import Any

import bson
from beanie import Document
from beanie.odm.fields import PydanticObjectId
from pydantic import BaseModel
from pydantic_core import SchemaValidator, core_schema

from insightdb.runtime import _beanie_seams as seams

__all__ = ["compile_validator", "plain_construction", "register_plain_init"]

_new = object.__new__

# The ``__init__`` methods a model may keep and still be built by the plan: Beanie's, and
# InsightDocument's (which is the plan's ``DocumentPlan.fill``, or Beanie's).
PLAIN_INITS: set[Any] = {seams.DOCUMENT_INIT}


def register_plain_init(function: Any) -> None:
    """Declare ``function`` an ``__init__`` that builds the document as Beanie's does."""
    PLAIN_INITS.add(function)


def plain_construction(model: type[Document]) -> bool:
    """Tell whether ``model`` is built as Pydantic builds it (see the module docstring)."""
    return (
        model.__init__ in PLAIN_INITS and model.__new__ is object.__new__ and plain_post_init(model)
    )


def compile_validator(model: type[Document], *, keep_back_refs: bool) -> SchemaValidator | None:
    """Return the validator of ``model``'s fields, or ``None`` when its schema has more.

    It validates a dictionary into ``(fields, extra, fields_set)``.

    Args:
        model: A model for which :func:`plain_construction` holds.
        keep_back_refs: Keep Beanie's ``fill_back_refs`` (the model has back-links).
    """
    schema: Any = model.__pydantic_core_schema__
    definitions = None
    if schema.get("type") == "definitions":
        definitions, schema = schema["definitions"], schema["schema"]
    if schema.get("type") == "definition-ref" and definitions is not None:
        ref = schema["schema_ref"]
        schema = next((d for d in definitions if d.get("ref") == ref), None)
        if schema is None:
            return None
    if schema.get("type") != "model" or schema.get("cls") is not model:
        return None  # validators or serialisers around the model: Beanie's path
    inner = schema["schema"]
    if not keep_back_refs and is_fill_back_refs(inner):
        inner = inner["schema"]
    inner = rewrite(inner)
    if definitions is not None:
        inner = core_schema.definitions_schema(inner, [rewrite(d) for d in definitions])
    return SchemaValidator(inner, schema.get("config"))


def object_id(value: Any) -> Any:
    """``PydanticObjectId``'s validator, with the common case (a driver ``ObjectId``) inline.

    ``PydanticObjectId(oid)`` copies ``oid``'s twelve bytes through ``ObjectId.__init__``;
    this copies them directly. Anything else goes to Beanie's validator.
    """
    if type(value) is bson.ObjectId:
        copy = _new(PydanticObjectId)
        copy._ObjectId__id = value._ObjectId__id  # type: ignore[attr-defined]
        return copy
    return seams.validate_object_id(value)


def rewrite(node: Any) -> Any:
    """Copy a core schema, with Beanie's ``PydanticObjectId`` validator replaced by ours."""
    if isinstance(node, list):
        return [rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    function = node.get("function")
    if (
        node.get("type") == "function-plain"
        and isinstance(function, dict)
        and seams.is_object_id_validator(function.get("function"))
    ):
        return {**node, "function": {"type": "no-info", "function": object_id}}
    return {key: rewrite(value) for key, value in node.items()}


def plain_post_init(model: type[BaseModel]) -> bool:
    """Tell whether ``model_post_init`` only initialises private attributes."""
    function: Any = model.model_post_init
    function = getattr(function, "__func__", function)
    while True:
        if function is seams.init_private_attributes or function is NOOP_POST_INIT:
            return True
        if function is BaseModel.model_post_init:
            return True
        wrapped = getattr(function, "__wrapped__", None)
        code = getattr(function, "__code__", None)
        if (
            code is None
            or code.co_name != seams.POST_INIT_WRAPPER_NAME
            or code.co_filename != seams.init_private_attributes.__code__.co_filename
            or wrapped is None
        ):
            return False
        function = getattr(wrapped, "__func__", wrapped)


NOOP_POST_INIT: Any = BaseModel.model_post_init


def is_fill_back_refs(schema: Any) -> bool:
    if schema.get("type") != "function-before":
        return False
    function = schema.get("function", {}).get("function")
    return getattr(function, "__func__", None) is seams.fill_back_refs_function()
