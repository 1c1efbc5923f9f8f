"""Every part of Beanie and Pydantic that the fast Documents path relies on, in one place.

:mod:`insightdb.runtime.hydration` reads and writes insightdb Documents without Beanie's
per-document machinery, yet must behave exactly as Beanie does. It leans on Beanie only
where Beanie itself offers a seam — classmethods and class attributes it looks up on the
model (``model_validate``, ``_save_state``, ``_find_many_query_class``,
``_find_one_query_class``, ``AggregationQueryType``) — and on a few internals it imports
from here. Where insightdb repeats a short piece of Beanie's logic (the body of
``insert``, the encoder's rules for a document), the Beanie source it mirrors is pinned
by a fingerprint in :data:`MIRRORED`: ``tests/unit/test_beanie_seams.py`` recomputes
each one and checks every other assumption listed here, so that a Beanie or Pydantic
upgrade that changes any of them fails a test by name instead of changing behaviour.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from beanie import Document
from beanie.odm.actions import EventTypes, wrap_with_actions
from beanie.odm.fields import LinkTypes, PydanticObjectId
from beanie.odm.operators.update.general import Set as SetOperator
from beanie.odm.queries.aggregation import AggregationQuery
from beanie.odm.queries.cursor import BaseCursorQuery
from beanie.odm.queries.find import FindMany, FindOne
from beanie.odm.utils.dump import get_dict
from beanie.odm.utils.encoder import BSON_SCALAR_TYPES, Encoder
from beanie.odm.utils.parsing import parse_obj
from beanie.odm.utils.pydantic import get_field_type, parse_object_as
from beanie.odm.utils.self_validation import validate_self_before
from beanie.odm.utils.state import save_state_after, saved_state_needed
from beanie.odm.utils.typing import extract_id_class
from bson import ObjectId
from lazy_model import LazyModel  # type: ignore[import-untyped]
from pydantic import BaseModel
from pydantic._internal._model_construction import init_private_attributes
from pydantic._internal._utils import IMMUTABLE_NON_COLLECTIONS_TYPES, smart_deepcopy

__all__ = [
    "BSON_SCALAR_TYPES",
    "DOCUMENT_INIT",
    "INSERT_BODY",
    "MIRRORED",
    "POST_INIT_WRAPPER_NAME",
    "SAVE_BODY",
    "AggregationQuery",
    "BaseCursorQuery",
    "Encoder",
    "EventTypes",
    "FindMany",
    "FindOne",
    "LinkTypes",
    "SetOperator",
    "extract_id_class",
    "fill_back_refs_function",
    "fingerprint",
    "get_dict",
    "get_field_type",
    "immutable_default",
    "init_private_attributes",
    "is_object_id_validator",
    "parse_obj",
    "parse_object_as",
    "save_state_after",
    "saved_state_needed",
    "smart_deepcopy",
    "validate_object_id",
    "validate_self_before",
    "wrap_with_actions",
]

DOCUMENT_INIT: Callable[..., None] = Document.__init__
"""Beanie's ``Document.__init__``: Pydantic's ``__init__`` plus a check that the class
was initialised. A model that keeps it may be hydrated without calling it (a document
read from a collection comes from an initialised class); one that overrides it may not."""

INSERT_BODY: Callable[..., Any] = inspect.unwrap(Document.insert)
"""``Document.insert`` without its three decorators (validation, events, state): the
fast ``insert`` keeps the decorators and hands cascading link writes to this body."""

SAVE_BODY: Callable[..., Any] = inspect.unwrap(Document.save)
"""``Document.save`` without its decorators, for the cases the fast ``save`` leaves to
Beanie (cascading link writes, ``keep_nulls = False``)."""

_OBJECT_ID_VALIDATE = PydanticObjectId.__dict__["_validate"].__func__

POST_INIT_WRAPPER_NAME = "wrapped_model_post_init"
"""The name of the wrapper Pydantic puts around an inherited ``model_post_init`` on a
class with private attributes (it initialises them, then calls the original)."""


def fill_back_refs_function() -> Any:
    """Return the function of Beanie's ``fill_back_refs`` model validator (mode ``before``).

    It only adds back-link placeholders for back-link fields missing from the input, so
    a model without back-links can skip it.
    """
    return Document.__dict__["fill_back_refs"].__func__


def validate_object_id(value: Any) -> Any:
    """Beanie's validator of ``PydanticObjectId`` (what an id field runs on a value)."""
    return PydanticObjectId._validate(value)  # type: ignore[no-untyped-call]


def is_object_id_validator(function: Any) -> bool:
    """Tell whether ``function`` (from a core schema) is ``PydanticObjectId._validate``."""
    return (
        getattr(function, "__func__", None) is _OBJECT_ID_VALIDATE
        and getattr(function, "__self__", None) is PydanticObjectId
    )


def immutable_default(value: Any) -> bool:
    """Tell whether Pydantic hands a private attribute's ``default`` out uncopied."""
    return type(value) in IMMUTABLE_NON_COLLECTIONS_TYPES


def fingerprint(function: Any) -> str:
    """Return a short digest of ``function``'s source (see :data:`MIRRORED`)."""
    source = inspect.getsource(inspect.unwrap(function))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _mirrored() -> dict[str, tuple[Any, str]]:
    return {
        # hydration.encode.WritePlan.to_dict mirrors get_dict and the encoder's document rules.
        "get_dict": (get_dict, "c0de93e3a4992eda"),
        "Encoder.encode": (Encoder.encode, "1eafbc9e0734863c"),
        "Encoder._encode_document": (Encoder._encode_document, "a7f34185b2993c4c"),
        "Encoder._iter_model_items": (Encoder._iter_model_items, "15d582aca11a65c5"),
        "Encoder._should_exclude_field": (Encoder._should_exclude_field, "3395900d4df277a9"),
        "BaseModel.__iter__": (BaseModel.__iter__, "0c32e57258b7bb36"),
        "LazyModel.parse_store": (LazyModel.parse_store, "f299f2e47f6904b1"),
        # hydration.plan.DocumentPlan.hydrate mirrors parse_obj for a plain Document.
        "parse_obj": (parse_obj, "d0bee2138bc9c759"),
        "init_private_attributes": (init_private_attributes, "868effa3fc042739"),
        # hydration.plan.DocumentPlan.fill mirrors Beanie's __init__ around Pydantic's.
        "Document.__init__": (DOCUMENT_INIT, "c17a6591d81b608e"),
        "BaseModel.__init__": (BaseModel.__init__, "6aa598869da493bd"),
        "Document._save_state": (Document._save_state, "f952390572f160df"),
        # The batched cursor mirrors BaseCursorQuery.to_list.
        "BaseCursorQuery.to_list": (BaseCursorQuery.to_list, "0c28b099f1d7cecb"),
        # InsightDocument's writes mirror these bodies.
        "Document.insert": (INSERT_BODY, "fa5775bfec6fb611"),
        "Document.insert_many": (Document.insert_many, "73471664f2f147ed"),
        "Document.save": (SAVE_BODY, "796feb0b543afc1f"),
        "Document.is_changed": (
            Document.is_changed.fget,  # type: ignore[attr-defined]
            "846701961389447a",
        ),
        "Document.get_changes": (Document.get_changes, "f178043d3eb2cf05"),
        # hydration.schema.object_id copies an ObjectId's bytes as these do.
        "PydanticObjectId._validate": (PydanticObjectId._validate, "17c0d08c251b074e"),
        "ObjectId.__init__": (ObjectId.__init__, "25b75efd49166a19"),
        "FindOne.replace_one": (FindOne.replace_one, "c664aee71ef8eee8"),
    }


MIRRORED: dict[str, tuple[Any, str]] = _mirrored()
"""Name → (the Beanie or Pydantic function insightdb mirrors or relies on line by line,
the fingerprint of its source when the mirror was written). A changed fingerprint means:
read the new source, update the mirror in :mod:`insightdb.runtime.hydration` or
:mod:`insightdb.runtime.documents`, then the fingerprint."""
