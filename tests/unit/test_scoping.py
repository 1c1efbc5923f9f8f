"""Unit tests of :mod:`insightdb.tenancy.scoping`: the pure rewriting behind tenant isolation.

No server and no context variables: every function gets its arguments and the tenant
and must return what is safe to send, or raise ``TenantIsolationError`` /
``TenantContextError``. Besides the rules themselves, these tests check that the
caller's filters, updates, pipelines and bulk requests are not changed behind its back.
"""

from __future__ import annotations

import copy
import struct
from typing import Any

import bson
import pytest
from bson.raw_bson import RawBSONDocument
from pymongo.collation import Collation
from pymongo.operations import (
    DeleteMany,
    DeleteOne,
    IndexModel,
    InsertOne,
    ReplaceOne,
    UpdateMany,
    UpdateOne,
)

from insightdb import TenantContextError, TenantIsolationError
from insightdb.tenancy.pipelines import reads_scoped, scope_pipeline
from insightdb.tenancy.scoping import (
    scope_bulk_request,
    scope_document,
    scope_filter,
    scope_replacement,
    scope_update,
)

T = "acme"
OTHER = "globex"
MATCH_T = {"$match": {"tenant_id": T}}
SCOPED_COLLECTIONS = frozenset({"projects", "tasks"})


def is_scoped(name: str) -> bool:
    return name in SCOPED_COLLECTIONS


def pipe(pipeline: list[dict[str, Any]], tenant: str | None = T, **kw: Any) -> list[dict[str, Any]]:
    """Scope ``pipeline`` and check that the caller's pipeline was left as it was."""
    before = copy.deepcopy(pipeline)
    result = scope_pipeline(pipeline, tenant, is_scoped, **kw)
    assert pipeline == before, "scope_pipeline changed the caller's pipeline"
    return result


# -- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", [None, {}])
def test_empty_filter_becomes_the_tenant_equality(query: dict[str, Any] | None) -> None:
    assert scope_filter(query, T) == {"tenant_id": T}


def test_filter_without_tenant_key_gets_the_equality_added() -> None:
    query = {"name": "x", "n": {"$gt": 1}}
    assert scope_filter(query, T) == {"name": "x", "n": {"$gt": 1}, "tenant_id": T}
    assert query == {"name": "x", "n": {"$gt": 1}}, "the caller's filter was changed"


def test_filter_naming_another_tenant_is_anded_so_it_matches_nothing() -> None:
    query = {"tenant_id": OTHER, "name": "x"}
    assert scope_filter(query, T) == {"$and": [{"tenant_id": OTHER, "name": "x"}, {"tenant_id": T}]}
    assert query == {"tenant_id": OTHER, "name": "x"}


def test_filter_with_operator_on_tenant_id_cannot_widen_scope() -> None:
    query: dict[str, Any] = {"tenant_id": {"$in": [T, OTHER]}}
    assert scope_filter(query, T) == {"$and": [query, {"tenant_id": T}]}
    query = {"tenant_id": {"$ne": T}}
    assert scope_filter(query, T) == {"$and": [query, {"tenant_id": T}]}


def test_filter_naming_the_same_tenant_is_kept_as_is() -> None:
    # Wrapping it again would name tenant_id twice in an upsert's filter (refused by
    # MongoDB); an exact equality on the current tenant is already scoped.
    query = {"tenant_id": T, "name": "x"}
    assert scope_filter(query, T) == query
    assert scope_filter({"tenant_id": {"$eq": T}}, T) == {
        "$and": [{"tenant_id": {"$eq": T}}, {"tenant_id": T}]
    }


def test_or_filter_stays_anded_with_the_tenant() -> None:
    query = {"$or": [{"tenant_id": OTHER}, {"name": "x"}]}
    scoped = scope_filter(query, T)
    # Top-level keys of a filter are ANDed: the $or can only narrow the tenant's documents.
    assert scoped == {"$or": [{"tenant_id": OTHER}, {"name": "x"}], "tenant_id": T}
    assert query == {"$or": [{"tenant_id": OTHER}, {"name": "x"}]}


def test_nor_and_expr_filters_stay_anded_with_the_tenant() -> None:
    query = {"$nor": [{"tenant_id": T}], "$expr": {"$eq": ["$a", "$b"]}}
    assert scope_filter(query, T) == {**query, "tenant_id": T}


def test_dotted_tenant_path_is_not_the_tenant_key() -> None:
    assert scope_filter({"tenant_id.x": 1}, T) == {"tenant_id.x": 1, "tenant_id": T}


def test_scope_filter_returns_a_new_dict() -> None:
    query = {"name": "x"}
    scoped = scope_filter(query, T)
    scoped["extra"] = 1
    assert query == {"name": "x"}


# -- documents -------------------------------------------------------------------------


def test_document_without_tenant_is_stamped() -> None:
    assert scope_document({"name": "x"}, T) == {"name": "x", "tenant_id": T}


@pytest.mark.parametrize("empty", ["", None])
def test_document_with_empty_tenant_is_stamped(empty: str | None) -> None:
    assert scope_document({"tenant_id": empty}, T) == {"tenant_id": T}


def test_document_of_the_current_tenant_is_kept() -> None:
    document = {"tenant_id": T, "name": "x"}
    assert scope_document(document, T) == {"tenant_id": T, "name": "x"}


@pytest.mark.parametrize("value", [OTHER, T.upper(), 0, False, ["acme"], {"$ne": "x"}])
def test_document_of_another_tenant_is_refused_untouched(value: object) -> None:
    document = {"tenant_id": value, "name": "x"}
    with pytest.raises(TenantIsolationError):
        scope_document(document, T)
    assert document == {"tenant_id": value, "name": "x"}


@pytest.mark.parametrize("document", [[("tenant_id", T)], "doc", None, 3, (("a", 1),)])
def test_non_dict_document_is_refused(document: object) -> None:
    with pytest.raises(TenantIsolationError, match="pass a dict"):
        scope_document(document, T)


def test_document_stamping_is_in_place_like_pymongo_inserting_an_id() -> None:
    # Pinned on purpose: insert_one already adds "_id" to the caller's dict, and the
    # stamped tenant is stored alongside it. Documented here so a change is deliberate.
    document: dict[str, Any] = {"name": "x"}
    assert scope_document(document, T) is document
    assert document["tenant_id"] == T


def test_replacement_follows_the_document_rules() -> None:
    assert scope_replacement({"name": "x"}, T) == {"name": "x", "tenant_id": T}
    assert scope_replacement({"tenant_id": T}, T) == {"tenant_id": T}
    with pytest.raises(TenantIsolationError, match="replacement"):
        scope_replacement({"tenant_id": OTHER}, T)
    with pytest.raises(TenantIsolationError):
        scope_replacement([("name", "x")], T)


def test_replacement_does_not_change_the_callers_dict() -> None:
    # replace_one never adds anything to the caller's replacement in PyMongo, so a
    # caller may reuse it, e.g. the same template replacement for several tenants.
    replacement: dict[str, Any] = {"name": "template"}
    assert scope_replacement(replacement, T)["tenant_id"] == T
    assert replacement == {"name": "template"}, "scope_replacement stamped the caller's dict"
    assert scope_replacement(replacement, OTHER)["tenant_id"] == OTHER


# -- updates ---------------------------------------------------------------------------


@pytest.mark.parametrize("operator", ["$set", "$setOnInsert"])
def test_setting_tenant_id_to_the_same_tenant_is_allowed(operator: str) -> None:
    update = {operator: {"tenant_id": T, "name": "x"}}
    assert scope_update(update, T) == update


@pytest.mark.parametrize("operator", ["$set", "$setOnInsert"])
@pytest.mark.parametrize("value", [OTHER, None, "", 1])
def test_setting_tenant_id_to_another_value_is_refused(operator: str, value: object) -> None:
    with pytest.raises(TenantIsolationError):
        scope_update({operator: {"tenant_id": value}}, T)


@pytest.mark.parametrize(
    "update",
    [
        {"$unset": {"tenant_id": ""}},
        {"$rename": {"tenant_id": "old_tenant"}},
        {"$inc": {"tenant_id": 1}},
        {"$push": {"tenant_id": "x"}},
        {"$addToSet": {"tenant_id": "x"}},
        {"$pull": {"tenant_id": "x"}},
        {"$pullAll": {"tenant_id": ["x"]}},
        {"$pop": {"tenant_id": 1}},
        {"$min": {"tenant_id": "a"}},
        {"$max": {"tenant_id": "z"}},
        {"$mul": {"tenant_id": 2}},
        {"$currentDate": {"tenant_id": True}},
        {"$bit": {"tenant_id": {"and": 1}}},
    ],
    ids=lambda update: next(iter(update)),
)
def test_every_other_operator_on_tenant_id_is_refused(update: dict[str, Any]) -> None:
    with pytest.raises(TenantIsolationError):
        scope_update(update, T)


@pytest.mark.parametrize("target", ["tenant_id", "tenant_id.inner"])
def test_renaming_another_field_to_tenant_id_is_refused(target: str) -> None:
    with pytest.raises(TenantIsolationError, match=r"\$rename"):
        scope_update({"$rename": {"owner": target}}, T)


@pytest.mark.parametrize("operator", ["$set", "$setOnInsert", "$unset", "$inc", "$push"])
def test_dotted_tenant_paths_are_refused(operator: str) -> None:
    with pytest.raises(TenantIsolationError):
        scope_update({operator: {"tenant_id.x": 1}}, T)


def test_a_field_that_merely_starts_like_tenant_id_is_allowed() -> None:
    update = {"$set": {"tenant_idx": 1}, "$rename": {"a": "tenant_id_old"}}
    assert scope_update(update, T) == update


def test_plain_update_is_returned_unchanged() -> None:
    update = {"$set": {"name": "x"}, "$inc": {"n": 1}}
    assert scope_update(update, T) == {"$set": {"name": "x"}, "$inc": {"n": 1}}


def test_upsert_adds_set_on_insert_of_the_tenant_without_touching_the_input() -> None:
    update = {"$set": {"name": "x"}}
    scoped = scope_update(update, T, upsert=True)
    assert scoped == {"$set": {"name": "x"}, "$setOnInsert": {"tenant_id": T}}
    assert update == {"$set": {"name": "x"}}


def test_upsert_merges_into_an_existing_set_on_insert() -> None:
    update = {"$inc": {"n": 1}, "$setOnInsert": {"created": 1}}
    scoped = scope_update(update, T, upsert=True)
    assert scoped == {"$inc": {"n": 1}, "$setOnInsert": {"created": 1, "tenant_id": T}}
    assert update == {"$inc": {"n": 1}, "$setOnInsert": {"created": 1}}


@pytest.mark.parametrize("operator", ["$set", "$setOnInsert"])
def test_upsert_that_already_pins_the_tenant_is_left_alone(operator: str) -> None:
    update = {operator: {"tenant_id": T, "name": "x"}}
    assert scope_update(update, T, upsert=True) == update


def test_upsert_is_still_refused_when_it_names_another_tenant() -> None:
    with pytest.raises(TenantIsolationError):
        scope_update({"$set": {"tenant_id": OTHER}}, T, upsert=True)


@pytest.mark.parametrize("upsert", [False, True])
def test_pipeline_update_gets_a_final_set_of_the_tenant(upsert: bool) -> None:
    update = [{"$set": {"tenant_id": OTHER}}, {"$unset": "tenant_id"}]
    scoped = scope_update(update, T, upsert=upsert)
    assert scoped == [*update, {"$set": {"tenant_id": T}}]
    assert update == [{"$set": {"tenant_id": OTHER}}, {"$unset": "tenant_id"}]


def test_tuple_pipeline_update_is_scoped_too() -> None:
    assert scope_update(({"$set": {"a": 1}},), T) == [
        {"$set": {"a": 1}},
        {"$set": {"tenant_id": T}},
    ]


@pytest.mark.parametrize("update", ["$set", b"$set", 3, None])
def test_update_of_unknown_type_is_refused(update: object) -> None:
    with pytest.raises(TenantIsolationError):
        scope_update(update, T)


# -- pipelines: the root -----------------------------------------------------------------


def test_pipeline_starts_with_a_match_on_the_tenant() -> None:
    assert pipe([{"$sort": {"a": 1}}]) == [MATCH_T, {"$sort": {"a": 1}}]
    assert pipe([]) == [MATCH_T]


def test_pipeline_leading_match_is_prepended_not_merged() -> None:
    pipeline = [{"$match": {"tenant_id": OTHER}}]
    assert pipe(pipeline) == [MATCH_T, {"$match": {"tenant_id": OTHER}}]


def test_geonear_first_gets_its_query_scoped() -> None:
    near = {"near": [0, 0], "distanceField": "d", "query": {"kind": "shop"}}
    scoped = pipe([{"$geoNear": near}, {"$limit": 3}])
    assert scoped == [
        {"$geoNear": {**near, "query": {"kind": "shop", "tenant_id": T}}},
        {"$limit": 3},
    ]


def test_geonear_without_query_gets_one() -> None:
    scoped = pipe([{"$geoNear": {"near": [0, 0], "distanceField": "d"}}])
    assert scoped == [
        {"$geoNear": {"near": [0, 0], "distanceField": "d", "query": {"tenant_id": T}}}
    ]


@pytest.mark.parametrize(
    "stage",
    ["$search", "$searchMeta", "$vectorSearch", "$collStats", "$indexStats", "$documents"],
)
def test_first_only_stages_are_refused_on_a_scoped_root(stage: str) -> None:
    with pytest.raises(TenantIsolationError, match="first stage"):
        pipe([{stage: {}}])


def test_scoped_root_without_tenant_is_a_context_error() -> None:
    with pytest.raises(TenantContextError):
        pipe([{"$match": {}}], None)


def test_unscoped_root_without_tenant_passes_through() -> None:
    pipeline: list[dict[str, Any]] = [
        {"$match": {"a": 1}},
        {"$lookup": {"from": "plans", "as": "p"}},
    ]
    assert pipe(pipeline, None, root_scoped=False) == pipeline


def test_unscoped_root_with_tenant_gets_no_leading_match() -> None:
    assert pipe([{"$match": {"a": 1}}], T, root_scoped=False) == [{"$match": {"a": 1}}]


# -- pipelines: $lookup ----------------------------------------------------------------


def test_lookup_local_field_form_into_scoped_collection_gets_a_pipeline() -> None:
    lookup = {"from": "tasks", "localField": "_id", "foreignField": "project", "as": "t"}
    assert pipe([{"$lookup": lookup}]) == [MATCH_T, {"$lookup": {**lookup, "pipeline": [MATCH_T]}}]


def test_lookup_pipeline_form_into_scoped_collection_is_prefixed() -> None:
    lookup = {
        "from": "tasks",
        "let": {"p": "$_id"},
        "pipeline": [{"$match": {"$expr": {"$eq": ["$project", "$$p"]}}}],
        "as": "t",
    }
    scoped = pipe([{"$lookup": lookup}])
    assert scoped[1] == {"$lookup": {**lookup, "pipeline": [MATCH_T, *lookup["pipeline"]]}}


def test_nested_lookups_are_scoped_at_every_depth() -> None:
    inner = {"from": "projects", "localField": "project", "foreignField": "_id", "as": "p"}
    outer = {"from": "tasks", "pipeline": [{"$lookup": inner}], "as": "t"}
    scoped = pipe([{"$lookup": outer}])
    assert scoped[1] == {
        "$lookup": {
            "from": "tasks",
            "pipeline": [MATCH_T, {"$lookup": {**inner, "pipeline": [MATCH_T]}}],
            "as": "t",
        }
    }


def test_lookup_into_unscoped_collection_is_untouched() -> None:
    lookup = {"from": "plans", "localField": "plan", "foreignField": "_id", "as": "p"}
    assert pipe([{"$lookup": lookup}]) == [MATCH_T, {"$lookup": lookup}]


def test_lookup_into_unscoped_collection_scopes_nested_scoped_lookups_only() -> None:
    nested = {"from": "tasks", "localField": "_id", "foreignField": "plan", "as": "t"}
    outer = {"from": "plans", "pipeline": [{"$match": {"a": 1}}, {"$lookup": nested}], "as": "p"}
    scoped = pipe([{"$lookup": outer}])
    assert scoped[1] == {
        "$lookup": {
            "from": "plans",
            "pipeline": [{"$match": {"a": 1}}, {"$lookup": {**nested, "pipeline": [MATCH_T]}}],
            "as": "p",
        }
    }


def test_lookup_without_from_scopes_its_nested_lookups() -> None:
    nested = {"from": "tasks", "localField": "x", "foreignField": "_id", "as": "t"}
    lookup = {"pipeline": [{"$documents": [{"x": 1}]}, {"$lookup": nested}], "as": "d"}
    scoped = pipe([{"$lookup": lookup}])
    assert scoped[1]["$lookup"]["pipeline"] == [
        {"$documents": [{"x": 1}]},
        {"$lookup": {**nested, "pipeline": [MATCH_T]}},
    ]


@pytest.mark.parametrize("target", [{"db": "other", "coll": "tasks"}, {"db": "x", "coll": "plans"}])
def test_cross_database_lookup_is_refused(target: dict[str, str]) -> None:
    with pytest.raises(TenantIsolationError, match="another database"):
        pipe([{"$lookup": {"from": target, "localField": "a", "foreignField": "b", "as": "c"}}])


def test_unscoped_root_lookup_into_scoped_without_tenant_is_a_context_error() -> None:
    lookup = {"from": "tasks", "localField": "a", "foreignField": "b", "as": "c"}
    with pytest.raises(TenantContextError):
        pipe([{"$lookup": lookup}], None, root_scoped=False)


def test_unscoped_root_nested_lookup_into_scoped_without_tenant_is_a_context_error() -> None:
    nested = {"from": "tasks", "localField": "a", "foreignField": "b", "as": "c"}
    with pytest.raises(TenantContextError):
        pipe(
            [{"$lookup": {"from": "plans", "pipeline": [{"$lookup": nested}], "as": "p"}}],
            None,
            root_scoped=False,
        )


def test_unscoped_root_lookup_into_scoped_with_tenant_is_scoped() -> None:
    lookup = {"from": "tasks", "localField": "a", "foreignField": "b", "as": "c"}
    scoped = pipe([{"$lookup": lookup}], T, root_scoped=False)
    assert scoped == [{"$lookup": {**lookup, "pipeline": [MATCH_T]}}]


# -- pipelines: $unionWith, $graphLookup, $facet -----------------------------------------


def test_union_with_string_form_into_scoped_collection() -> None:
    assert pipe([{"$unionWith": "tasks"}]) == [
        MATCH_T,
        {"$unionWith": {"coll": "tasks", "pipeline": [MATCH_T]}},
    ]


def test_union_with_dict_form_into_scoped_collection() -> None:
    union = {"coll": "tasks", "pipeline": [{"$project": {"a": 1}}]}
    assert pipe([{"$unionWith": union}])[1] == {
        "$unionWith": {"coll": "tasks", "pipeline": [MATCH_T, {"$project": {"a": 1}}]}
    }


def test_union_with_unscoped_collection_is_not_prefixed() -> None:
    assert pipe([{"$unionWith": "plans"}])[1] == {"$unionWith": {"coll": "plans", "pipeline": []}}
    nested = {"from": "tasks", "localField": "a", "foreignField": "b", "as": "c"}
    scoped = pipe([{"$unionWith": {"coll": "plans", "pipeline": [{"$lookup": nested}]}}])
    assert scoped[1]["$unionWith"]["pipeline"] == [{"$lookup": {**nested, "pipeline": [MATCH_T]}}]


def test_union_with_scoped_collection_without_tenant_is_a_context_error() -> None:
    with pytest.raises(TenantContextError):
        pipe([{"$unionWith": "tasks"}], None, root_scoped=False)


def test_union_with_another_database_is_refused() -> None:
    with pytest.raises(TenantIsolationError):
        pipe([{"$unionWith": {"coll": {"db": "x", "coll": "tasks"}}}])


def test_graph_lookup_into_scoped_collection_restricts_the_search() -> None:
    graph = {
        "from": "tasks",
        "startWith": "$parent",
        "connectFromField": "parent",
        "connectToField": "_id",
        "as": "ancestors",
        "restrictSearchWithMatch": {"done": False},
    }
    scoped = pipe([{"$graphLookup": graph}])
    assert scoped[1] == {
        "$graphLookup": {**graph, "restrictSearchWithMatch": {"done": False, "tenant_id": T}}
    }


def test_graph_lookup_without_restriction_gets_one() -> None:
    graph = {"from": "tasks", "startWith": "$p", "connectFromField": "p", "connectToField": "_id"}
    scoped = pipe([{"$graphLookup": {**graph, "as": "a"}}])
    assert scoped[1]["$graphLookup"]["restrictSearchWithMatch"] == {"tenant_id": T}


def test_graph_lookup_restriction_naming_another_tenant_matches_nothing() -> None:
    graph = {"from": "tasks", "as": "a", "restrictSearchWithMatch": {"tenant_id": OTHER}}
    assert pipe([{"$graphLookup": graph}])[1]["$graphLookup"]["restrictSearchWithMatch"] == {
        "$and": [{"tenant_id": OTHER}, {"tenant_id": T}]
    }


def test_graph_lookup_into_unscoped_collection_is_untouched() -> None:
    graph = {"from": "plans", "as": "a", "startWith": "$p"}
    assert pipe([{"$graphLookup": graph}])[1] == {"$graphLookup": graph}


def test_graph_lookup_into_scoped_without_tenant_is_a_context_error() -> None:
    with pytest.raises(TenantContextError):
        pipe([{"$graphLookup": {"from": "tasks", "as": "a"}}], None, root_scoped=False)


def test_graph_lookup_into_another_database_is_refused() -> None:
    with pytest.raises(TenantIsolationError):
        pipe([{"$graphLookup": {"from": {"db": "x", "coll": "tasks"}, "as": "a"}}])


def test_facet_sub_pipelines_scope_their_lookups() -> None:
    lookup = {"from": "tasks", "localField": "_id", "foreignField": "project", "as": "t"}
    facet = {
        "tasks": [{"$lookup": lookup}],
        "plain": [{"$count": "n"}],
        "graph": [{"$graphLookup": {"from": "projects", "as": "g"}}],
    }
    scoped = pipe([{"$facet": facet}])
    assert scoped == [
        MATCH_T,
        {
            "$facet": {
                "tasks": [{"$lookup": {**lookup, "pipeline": [MATCH_T]}}],
                "plain": [{"$count": "n"}],
                "graph": [{"$graphLookup": {"from": "projects", "as": "g", **_restrict(T)}}],
            }
        },
    ]


def test_facet_without_tenant_on_unscoped_root_refuses_scoped_lookups() -> None:
    facet = {
        "t": [{"$lookup": {"from": "tasks", "localField": "a", "foreignField": "b", "as": "c"}}]
    }
    with pytest.raises(TenantContextError):
        pipe([{"$facet": facet}], None, root_scoped=False)


def _restrict(tenant: str) -> dict[str, Any]:
    return {"restrictSearchWithMatch": {"tenant_id": tenant}}


# -- pipelines: $out / $merge ------------------------------------------------------------


@pytest.mark.parametrize(
    "stage",
    [
        {"$out": "reports"},
        {"$out": {"db": "x", "coll": "reports"}},
        {"$merge": "reports"},
        {"$merge": {"into": "reports"}},
        {"$merge": {"into": {"db": "x", "coll": "reports"}}},
    ],
    ids=str,
)
@pytest.mark.parametrize("root_scoped", [True, False])
def test_out_and_merge_are_refused_in_tenant_scope(
    stage: dict[str, Any], root_scoped: bool
) -> None:
    with pytest.raises(TenantIsolationError, match="refused in tenant scope"):
        pipe([stage], T, root_scoped=root_scoped)


@pytest.mark.parametrize(
    "stage",
    [{"$out": "tasks"}, {"$merge": "tasks"}, {"$merge": {"into": "projects", "on": "_id"}}],
    ids=str,
)
def test_out_and_merge_into_scoped_collection_are_refused_even_without_tenant(
    stage: dict[str, Any],
) -> None:
    with pytest.raises(TenantIsolationError):
        pipe([{"$match": {}}, stage], None, root_scoped=False)


def test_merge_into_another_database_is_refused_without_tenant() -> None:
    with pytest.raises(TenantIsolationError):
        pipe([{"$merge": {"into": {"db": "customer", "coll": "plans"}}}], None, root_scoped=False)


def test_out_into_another_database_is_refused_without_tenant() -> None:
    # is_scoped only knows the collections of the pipeline's own database; in another
    # database "plans" may well be tenant-scoped, and $out replaces the whole
    # collection. $merge into another database is refused for this reason; $out must
    # be too.
    with pytest.raises(TenantIsolationError):
        pipe([{"$out": {"db": "customer", "coll": "plans"}}], None, root_scoped=False)


def test_out_and_merge_into_unscoped_collection_without_tenant_pass() -> None:
    pipeline: list[dict[str, Any]] = [{"$match": {}}, {"$out": "reports"}]
    assert pipe(pipeline, None, root_scoped=False) == pipeline
    pipeline = [{"$merge": {"into": "reports"}}]
    assert pipe(pipeline, None, root_scoped=False) == pipeline


# -- pipelines: inputs are not mutated ------------------------------------------------------


def test_scope_pipeline_never_mutates_a_deep_pipeline() -> None:
    lookup = {"from": "tasks", "localField": "_id", "foreignField": "project", "as": "t"}
    pipeline: list[dict[str, Any]] = [
        {"$geoNear": {"near": [0, 0], "distanceField": "d", "query": {"a": 1}}},
        {"$lookup": {"from": "plans", "pipeline": [{"$lookup": lookup}], "as": "p"}},
        {"$unionWith": {"coll": "tasks", "pipeline": [{"$lookup": lookup}]}},
        {"$graphLookup": {"from": "tasks", "as": "g", "restrictSearchWithMatch": {"x": 1}}},
        {"$facet": {"a": [{"$lookup": lookup}], "b": [{"$unionWith": "projects"}]}},
    ]
    scoped = pipe(pipeline)  # pipe() asserts the input is unchanged
    assert scoped[0]["$geoNear"]["query"] == {"a": 1, "tenant_id": T}
    assert scoped[1]["$lookup"]["pipeline"][0]["$lookup"]["pipeline"] == [MATCH_T]
    assert scoped[2]["$unionWith"]["pipeline"][0] == MATCH_T
    assert scoped[3]["$graphLookup"]["restrictSearchWithMatch"] == {"x": 1, "tenant_id": T}
    assert scoped[4]["$facet"]["b"] == [{"$unionWith": {"coll": "projects", "pipeline": [MATCH_T]}}]


def test_scope_pipeline_accepts_a_tuple_and_returns_a_list() -> None:
    assert scope_pipeline(({"$limit": 1},), T, is_scoped) == [MATCH_T, {"$limit": 1}]


# -- bulk requests ---------------------------------------------------------------------


def test_bulk_insert_one_is_stamped() -> None:
    scoped = scope_bulk_request(InsertOne({"name": "x"}), T)
    assert isinstance(scoped, InsertOne)
    assert scoped._doc == {"name": "x", "tenant_id": T}


def test_bulk_insert_one_of_another_tenant_is_refused() -> None:
    with pytest.raises(TenantIsolationError):
        scope_bulk_request(InsertOne({"tenant_id": OTHER}), T)


@pytest.mark.parametrize("kind", [DeleteOne, DeleteMany])
def test_bulk_deletes_are_scoped_and_keep_their_options(kind: type[Any]) -> None:
    request = kind({"name": "x"}, collation={"locale": "simple"}, hint="name_1")
    scoped = scope_bulk_request(request, T)
    assert type(scoped) is kind
    assert scoped._filter == {"name": "x", "tenant_id": T}
    assert scoped._collation == {"locale": "simple"}
    assert scoped._hint == "name_1"
    assert request._filter == {"name": "x"}


def test_bulk_delete_naming_another_tenant_matches_nothing() -> None:
    scoped = scope_bulk_request(DeleteMany({"tenant_id": OTHER}), T)
    assert scoped._filter == {"$and": [{"tenant_id": OTHER}, {"tenant_id": T}]}


def test_bulk_replace_one_is_scoped_and_keeps_its_options() -> None:
    request = ReplaceOne(
        {"_id": 1}, {"name": "y"}, upsert=True, collation={"locale": "simple"}, hint="_id_"
    )
    scoped = scope_bulk_request(request, T)
    assert isinstance(scoped, ReplaceOne)
    assert scoped._filter == {"_id": 1, "tenant_id": T}
    assert scoped._doc == {"name": "y", "tenant_id": T}
    assert (scoped._upsert, scoped._collation, scoped._hint) == (True, {"locale": "simple"}, "_id_")


def test_bulk_replace_one_with_another_tenant_is_refused() -> None:
    with pytest.raises(TenantIsolationError):
        scope_bulk_request(ReplaceOne({"_id": 1}, {"tenant_id": OTHER}), T)


@pytest.mark.parametrize("kind", [UpdateOne, UpdateMany])
def test_bulk_updates_are_scoped_and_keep_their_options(kind: type[Any]) -> None:
    request = kind(
        {"name": "x"},
        {"$set": {"tags.$[t]": "y"}},
        upsert=True,
        collation={"locale": "simple"},
        array_filters=[{"t": "old"}],
        hint="name_1",
    )
    scoped = scope_bulk_request(request, T)
    assert type(scoped) is kind
    assert scoped._filter == {"name": "x", "tenant_id": T}
    assert scoped._doc == {"$set": {"tags.$[t]": "y"}, "$setOnInsert": {"tenant_id": T}}
    assert scoped._upsert is True
    assert scoped._collation == {"locale": "simple"}
    assert scoped._array_filters == [{"t": "old"}]
    assert scoped._hint == "name_1"
    assert request._filter == {"name": "x"}
    assert request._doc == {"$set": {"tags.$[t]": "y"}}


@pytest.mark.parametrize("kind", [UpdateOne, UpdateMany])
def test_bulk_update_without_upsert_gets_no_set_on_insert(kind: type[Any]) -> None:
    scoped = scope_bulk_request(kind({}, {"$inc": {"n": 1}}), T)
    assert scoped._doc == {"$inc": {"n": 1}}
    assert scoped._filter == {"tenant_id": T}


@pytest.mark.parametrize("kind", [UpdateOne, UpdateMany])
def test_bulk_update_moving_tenant_is_refused(kind: type[Any]) -> None:
    with pytest.raises(TenantIsolationError):
        scope_bulk_request(kind({}, {"$set": {"tenant_id": OTHER}}), T)
    with pytest.raises(TenantIsolationError):
        scope_bulk_request(kind({}, {"$unset": {"tenant_id": 1}}), T)


def test_bulk_pipeline_update_is_pinned() -> None:
    scoped = scope_bulk_request(UpdateOne({}, [{"$set": {"a": 1}}]), T)
    assert scoped._doc == [{"$set": {"a": 1}}, {"$set": {"tenant_id": T}}]


@pytest.mark.parametrize("request_", [IndexModel("a"), {"insertOne": {"document": {}}}, None])
def test_unknown_bulk_request_type_is_refused(request_: object) -> None:
    with pytest.raises(TenantIsolationError, match="can't be scoped"):
        scope_bulk_request(request_, T)


def test_bulk_request_scoping_leaves_the_callers_request_unchanged() -> None:
    # scope_bulk_request promises "a tenant-scoped copy"; a caller may keep a request
    # (or build one from a shared template) and send it again under another tenant.
    insert = InsertOne({"name": "x"})
    replace = ReplaceOne({"_id": 1}, {"name": "y"})
    assert scope_bulk_request(insert, T)._doc["tenant_id"] == T
    assert scope_bulk_request(replace, T)._doc["tenant_id"] == T
    assert insert._doc == {"name": "x"}, "the caller's InsertOne document was stamped"
    assert replace._doc == {"name": "y"}, "the caller's ReplaceOne replacement was stamped"


def test_bulk_replace_one_can_be_reused_for_another_tenant() -> None:
    replace = ReplaceOne({"key": "k"}, {"name": "template"}, upsert=True)
    assert scope_bulk_request(replace, T)._doc["tenant_id"] == T
    # Fails today: the first call stamped T into the shared replacement dict.
    assert scope_bulk_request(replace, OTHER)._doc["tenant_id"] == OTHER


@pytest.mark.parametrize(
    "collation",
    [
        {"locale": "en", "strength": 2},
        {"locale": "en", "strength": 1},
        {"locale": "en", "alternate": "shifted"},
        {"locale": "simple", "strength": 2},
        Collation("fr"),
    ],
)
@pytest.mark.parametrize("kind", [DeleteOne, DeleteMany, UpdateOne, UpdateMany, ReplaceOne])
def test_bulk_requests_with_a_widening_collation_are_refused(
    kind: type[Any], collation: Any
) -> None:
    args: tuple[Any, ...] = ({"name": "x"},)
    if kind in (UpdateOne, UpdateMany):
        args += ({"$set": {"n": 1}},)
    elif kind is ReplaceOne:
        args += ({"name": "y"},)
    with pytest.raises(TenantIsolationError, match="collation"):
        scope_bulk_request(kind(*args, collation=collation), T)


@pytest.mark.parametrize("kind", [DeleteOne, DeleteMany])
def test_bulk_requests_without_a_collation_get_the_simple_one(kind: type[Any]) -> None:
    # Sent explicitly, so that a collection's default collation can't widen the filter.
    assert scope_bulk_request(kind({"name": "x"}), T)._collation == {"locale": "simple"}


def test_bulk_request_subclasses_are_refused() -> None:
    class Sneaky(DeleteOne):
        pass

    with pytest.raises(TenantIsolationError, match="Sneaky"):
        scope_bulk_request(Sneaky({}), T)


@pytest.mark.parametrize("stage", ["$search", "$lookupFuture", "$currentOp", "$changeStream"])
def test_unknown_or_first_only_stages_are_refused_in_tenant_scope(stage: str) -> None:
    with pytest.raises(TenantIsolationError):
        scope_pipeline([{"$match": {}}, {stage: {}}], T, lambda _: True)
    with pytest.raises(TenantIsolationError):
        scope_pipeline(
            [{"$lookup": {"from": "other", "pipeline": [{stage: {}}], "as": "x"}}],
            T,
            lambda name: name == "projects",
            root_scoped=False,
        )


def test_reads_scoped_finds_every_way_into_a_scoped_collection() -> None:
    def is_scoped(name: str) -> bool:
        return name == "projects"

    assert not reads_scoped([{"$match": {}}], is_scoped)
    assert reads_scoped([{"$lookup": {"from": "projects", "as": "p"}}], is_scoped)
    assert reads_scoped([{"$unionWith": "projects"}], is_scoped)
    assert reads_scoped([{"$unionWith": {"coll": "projects"}}], is_scoped)
    assert reads_scoped([{"$graphLookup": {"from": "projects"}}], is_scoped)
    assert reads_scoped([{"$facet": {"a": [{"$unionWith": "projects"}]}}], is_scoped)
    assert reads_scoped(
        [{"$lookup": {"pipeline": [{"$unionWith": "projects"}], "as": "x"}}], is_scoped
    )
    assert reads_scoped([{"$lookup": {"from": {"db": "x", "coll": "y"}, "as": "p"}}], is_scoped)


class _Lying(dict[str, Any]):
    """A mapping whose lookups disagree with what it encodes."""

    def __getitem__(self, key: str) -> Any:
        return T if key == "tenant_id" else super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return T if key == "tenant_id" else super().get(key, default)


def test_what_is_checked_is_what_is_sent() -> None:
    # A filter or document that answers "tenant_id" with the current tenant but holds
    # another: the plain copy that is checked is the one returned for sending.
    scoped = scope_filter(_Lying({"tenant_id": OTHER}), T)
    assert type(scoped) is dict
    assert scoped == {"$and": [{"tenant_id": OTHER}, {"tenant_id": T}]}
    with pytest.raises(TenantIsolationError):
        scope_document(_Lying({"tenant_id": OTHER}), T)
    scoped_update = scope_update(RawBSONDocument(bson.encode({"$set": {"n": 1}})), T)
    assert all(type(v) is dict for v in scoped_update.values())


def test_duplicate_keys_in_raw_updates_are_checked_as_sent() -> None:
    # A $set of tenant_id hidden behind a second "$set" key that decoding keeps.
    inner_ok = bson.encode({"n": 1})
    inner_bad = bson.encode({"tenant_id": OTHER})

    def element(name: str, document: bytes) -> bytes:
        return b"\x03" + name.encode() + b"\x00" + document

    body = element("$set", inner_bad) + element("$set", inner_ok)
    raw = RawBSONDocument(struct.pack("<i", len(body) + 5) + body + b"\x00")
    assert dict(raw["$set"]) == {"n": 1}  # the decoded view hides the first $set
    scoped = scope_update(raw, T)
    # What is sent is the decoded, checked copy, not the raw bytes that move tenant_id.
    assert type(scoped) is dict
    assert scoped == {"$set": {"n": 1}}


@pytest.mark.parametrize("stage", ["$currentOp", "$listSessions", "$planCacheStats"])
def test_server_introspection_stages_are_refused_without_a_tenant_too(stage: str) -> None:
    with pytest.raises(TenantIsolationError, match="whole server"):
        scope_pipeline([{stage: {}}], None, lambda _: False, root_scoped=False)
