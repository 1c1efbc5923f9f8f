"""One test per assumption the fast Documents path makes about Beanie and Pydantic.

See :mod:`insightdb.runtime._beanie_seams`. A failure here after an upgrade names the assumption
that no longer holds; read the new Beanie or Pydantic source before changing anything.
"""

from __future__ import annotations

import inspect
from typing import Any

import bson
import pytest
from beanie import Document
from beanie.odm.interfaces.find import FindInterface
from beanie.odm.settings.document import DocumentSettings
from beanie.odm.utils.encoder import BSON_SCALAR_TYPES
from pydantic import BaseModel

from insightdb import AdminDocument
from insightdb.runtime import _beanie_seams, hydration
from insightdb.runtime.documents import InsightDocument
from insightdb.runtime.hydration import encode as hydration_encode
from insightdb.runtime.hydration import schema as hydration_schema


class SeamModel(AdminDocument):
    name: str


class SeamChild(SeamModel):
    extra: int = 0


@pytest.mark.parametrize("name", sorted(_beanie_seams.MIRRORED))
def test_mirrored_source_is_unchanged(name: str) -> None:
    function, expected = _beanie_seams.MIRRORED[name]
    assert _beanie_seams.fingerprint(function) == expected, (
        f"{name} changed: compare it with insightdb.runtime.hydration / insightdb.runtime.documents"
    )


@pytest.mark.parametrize(
    ("owner", "method", "attribute"),
    [
        (FindInterface, "find_many", "_find_many_query_class"),
        (FindInterface, "find_one", "_find_one_query_class"),
        (Document, "find_many", "_find_many_query_class"),
        (Document, "find_one", "_find_one_query_class"),
    ],
)
def test_queries_are_built_from_class_attributes(owner: Any, method: str, attribute: str) -> None:
    source = inspect.getsource(inspect.unwrap(getattr(owner, method)))
    assert f"cls.{attribute}(document_model=cls)" in source


def test_find_many_builds_aggregations_from_its_class_attribute() -> None:
    from beanie.odm.queries.find import FindMany

    assert "self.AggregationQueryType(" in inspect.getsource(FindMany.aggregate)


def test_insight_documents_use_the_fast_queries() -> None:
    assert SeamModel._find_many_query_class is hydration.FastFindMany
    assert SeamModel._find_one_query_class is hydration.FastFindOne
    assert hydration.FastFindMany.AggregationQueryType is hydration.FastAggregationQuery


@pytest.mark.parametrize(("name", "event"), [("insert", "INSERT"), ("save", "SAVE")])
def test_writes_are_wrapped_in_validation_events_and_state(name: str, event: str) -> None:
    method = getattr(Document, name)
    chain = []
    while hasattr(method, "__wrapped__"):
        chain.append(method.__code__.co_qualname)
        method = method.__wrapped__
    assert chain == [
        "validate_self_before.<locals>.wrapper",
        "wrap_with_actions.<locals>.decorator.<locals>.wrapper",
        "save_state_after.<locals>.wrapper",
    ]
    assert method is getattr(_beanie_seams, f"{name.upper()}_BODY")
    assert getattr(_beanie_seams.EventTypes, event)
    mine = getattr(InsightDocument, name)
    assert [f.__code__.co_qualname for f in _wrappers(mine)] == chain


def _wrappers(method: Any) -> list[Any]:
    found = []
    while hasattr(method, "__wrapped__"):
        found.append(method)
        method = method.__wrapped__
    return found


def test_model_validate_signature_matches_pydantic() -> None:
    ours = inspect.signature(InsightDocument.model_validate)
    theirs = inspect.signature(BaseModel.model_validate)
    assert list(ours.parameters) == list(theirs.parameters)
    for name, parameter in theirs.parameters.items():
        assert ours.parameters[name].kind == parameter.kind
        assert ours.parameters[name].default == parameter.default


def test_document_schema_is_a_model_around_back_refs_and_fields() -> None:
    schema: Any = SeamModel.__pydantic_core_schema__
    assert schema["type"] == "model"
    assert schema["cls"] is SeamModel
    assert schema["custom_init"] is True  # Document.__init__: Pydantic re-enters validation
    inner = schema["schema"]
    assert inner["type"] == "function-before"
    function = inner["function"]["function"]
    assert function.__func__ is _beanie_seams.fill_back_refs_function()
    assert inner["schema"]["type"] == "model-fields"


def test_fill_back_refs_only_adds_back_link_placeholders() -> None:
    source = inspect.getsource(Document._fill_back_refs)
    assert "BACK_DIRECT" in source
    assert "BACK_LIST" in source
    assert source.count("values[field_name] =") == 2


def test_model_fields_validation_returns_fields_extra_and_fields_set() -> None:
    from pydantic_core import SchemaValidator

    inner: Any = SeamModel.__pydantic_core_schema__["schema"]["schema"]  # type: ignore[index]
    values, extra, fields_set = SchemaValidator(inner).validate_python({"name": "x"})
    assert values == {"id": None, "revision_id": None, "name": "x"}
    assert extra is None
    assert fields_set == {"name"}


def test_id_field_is_validated_by_pydantic_object_id() -> None:
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            function = node.get("function")
            if isinstance(function, dict) and _beanie_seams.is_object_id_validator(
                function.get("function")
            ):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SeamModel.__pydantic_core_schema__)
    assert sorted(node["type"] for node in found) == ["function-after", "function-plain"]


def test_object_id_keeps_its_bytes_in_a_slot() -> None:
    oid = bson.ObjectId()
    assert oid._ObjectId__id == oid.binary  # type: ignore[attr-defined]
    copy = hydration_schema.object_id(oid)
    assert type(copy) is _beanie_seams.PydanticObjectId
    assert copy == oid
    assert copy == _beanie_seams.validate_object_id(oid)


def test_post_init_wrappers_are_recognised() -> None:
    wrapper = SeamChild.model_post_init
    assert wrapper.__code__.co_name == _beanie_seams.POST_INIT_WRAPPER_NAME
    assert hydration_schema.plain_post_init(SeamModel)
    assert hydration_schema.plain_post_init(SeamChild)

    class WithHook(AdminDocument):
        def model_post_init(self, context: Any, /) -> None:
            pass

    assert not hydration_schema.plain_post_init(WithHook)


def test_private_attributes_are_what_documents_initialise() -> None:
    assert set(Document.__private_attributes__) == {
        "_store",
        "_lazily_parsed",
        "_saved_state",
        "_previous_saved_state",
    }


def test_document_settings_ignore_the_opt_out_key() -> None:
    settings = DocumentSettings.model_validate({"insightdb_fast_path": False})
    assert not hasattr(settings, "insightdb_fast_path")


@pytest.mark.parametrize("scalar", hydration_encode.SCALARS, ids=lambda t: t.__name__)
def test_passthrough_types_are_bson_scalars_for_the_encoder(scalar: type[Any]) -> None:
    assert issubclass(scalar, BSON_SCALAR_TYPES)


def test_a_model_with_its_own_init_is_left_to_beanie() -> None:
    class OwnInit(AdminDocument):
        name: str

        def __init__(self, **data: Any) -> None:
            super().__init__(**data)

    assert OwnInit.__init__ not in hydration_schema.PLAIN_INITS
    assert SeamModel.__init__ in hydration_schema.PLAIN_INITS
