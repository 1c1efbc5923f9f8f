"""The inventory: every public method of the driver and Beanie objects is scoped or refused.

insightdb's tenancy rests on allowlists (:mod:`insightdb.tenancy.allowlist`, the guarded
objects of :mod:`insightdb.tenancy.guarded`). These tests walk the installed PyMongo and Beanie
and fail when a public name exists that insightdb has not classified, or when an
option insightdb allows no longer exists — so an upgrade that adds a method or an option
fails here instead of opening a hole. No server: this is about the libraries' shapes.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import beanie
import pytest
from beanie import Document, UnionDoc, View
from beanie.odm.queries.aggregation import AggregationQuery
from beanie.odm.queries.find import FindMany, FindOne
from pydantic import BaseModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.command_cursor import AsyncCommandCursor
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.mongo_client import AsyncMongoClient

from insightdb.tenancy import allowlist, database, guarded
from insightdb.tenancy.collection import GuardedCollection
from insightdb.tenancy.cursor import _CURSOR_SAFE, GuardedCursor


def _public(cls: type[Any], *minus: type[Any]) -> set[str]:
    hidden: set[str] = set()
    for base in minus:
        hidden |= set(dir(base))
    names = {n for n in dir(cls) if not n.startswith("_") and n not in hidden}
    return names | ({"__getitem__", "__getattr__"} & set(vars(cls)))


def test_every_collection_method_is_classified() -> None:
    classified = (
        allowlist.COLLECTION_DATA
        | allowlist.COLLECTION_DERIVED
        | allowlist.COLLECTION_METADATA
        | allowlist.COLLECTION_ADMIN
        | allowlist.COLLECTION_INERT
        | allowlist.HARMLESS
    )
    unknown = _public(AsyncCollection) - classified
    assert not unknown, f"unclassified AsyncCollection names: {sorted(unknown)}"


def test_every_scoped_method_is_implemented_by_the_guarded_collection() -> None:
    for name in allowlist.COLLECTION_DATA | {"with_options", "database"}:
        assert name in vars(GuardedCollection), name


@pytest.mark.parametrize("method", sorted(allowlist.OPTIONS))
def test_allowed_options_exist_and_every_named_option_is_decided(method: str) -> None:
    """Allowed options are real; each option the driver names is allowed or refused here."""
    if method in {"find", "find_one", "find_raw_batches"}:
        parameters = inspect.signature(AsyncCursor.__init__).parameters
        named = set(list(parameters)[3:])
    else:
        parameters = inspect.signature(getattr(AsyncCollection, method)).parameters
        named = {
            n
            for n, p in list(parameters.items())[allowlist._PRIMARY[method] :]
            if p.kind is not p.VAR_KEYWORD
        }
    allowed = allowlist.OPTIONS[method]
    # Options only reachable through **kwargs are the driver's documented command
    # options (maxTimeMS, collation...); each named parameter must be decided.
    refused = named - allowed
    assert refused <= _REFUSED_NAMED.get(method, set()), (method, sorted(refused))
    assert named <= allowed | _REFUSED_NAMED.get(method, set())


# Named parameters of the driver that insightdb refuses on purpose.
_REFUSED_NAMED: dict[str, set[str]] = {
    "find": {"oplog_replay", "max_scan", "snapshot"},
    "find_one": {"oplog_replay", "max_scan", "snapshot"},
    "find_raw_batches": {"oplog_replay", "max_scan", "snapshot"},
}


def test_unknown_options_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(Exception, match="does not accept 'pipeline'"):
        allowlist.check_options("count_documents", "c.p", (), {"pipeline": []})
    with pytest.raises(Exception, match="does not accept 'query'"):
        allowlist.check_options("find_one_and_update", "c.p", (), {"query": {}})
    with pytest.raises(Exception, match="extra positional"):
        allowlist.check_options("delete_one", "c.p", tuple(range(20)), {})
    # Positional options are named as the driver would bind them, then checked.
    assert allowlist.check_options("find", "c.p", ({"a": 1},), {}) == {"projection": {"a": 1}}


def test_every_database_method_is_classified() -> None:
    handled = set(vars(guarded.GuardedDatabase)) | database._DATABASE_METADATA | allowlist.HARMLESS
    unknown = _public(AsyncDatabase) - handled - {"next", "watch", "cursor_command"}
    assert not unknown, f"unclassified AsyncDatabase names: {sorted(unknown)}"
    # The refused ones really are refused by __getattr__ (not in the guarded class).
    for name in ("watch", "cursor_command"):
        assert name not in vars(guarded.GuardedDatabase)


def test_every_client_method_is_classified() -> None:
    handled = set(vars(guarded.GuardedClient)) | guarded._CLIENT_HARMLESS
    refused = {"bulk_write", "watch", "next"}
    allowed_as_is = {"close", "aclose"}
    unknown = _public(AsyncMongoClient) - handled - refused - allowed_as_is
    assert not unknown, f"unclassified AsyncMongoClient names: {sorted(unknown)}"


def test_every_session_attribute_is_classified() -> None:
    # Everything is forwarded except ``client``, which is the guarded client.
    assert "client" in vars(guarded.GuardedSession)
    forwarded = {
        "abort_transaction",
        "advance_cluster_time",
        "advance_operation_time",
        "bind",
        "cluster_time",
        "commit_transaction",
        "end_session",
        "has_ended",
        "in_transaction",
        "operation_time",
        "options",
        "session_id",
        "start_transaction",
        "with_transaction",
        "client",
    }
    assert _public(AsyncClientSession) == forwarded


def test_every_cursor_method_is_classified() -> None:
    handled = _CURSOR_SAFE | set(vars(GuardedCursor))
    refused = {"explain", "session", "__getitem__"}
    for cls in (AsyncCursor, AsyncCommandCursor):
        unknown = _public(cls) - handled - refused
        assert not unknown, f"unclassified {cls.__name__} names: {sorted(unknown)}"


# Beanie: every public method reaches the driver only through the model's collection
# (get_pymongo_collection / get_settings().pymongo_collection), which insightdb guards.
_BEANIE_DOCUMENT = {
    "add_child", "aggregate", "all", "avg", "bulk_writer", "count", "create",
    "current_date", "delete", "delete_all", "distinct", "fetch_all_links", "fetch_link",
    "fill_back_refs", "find", "find_all", "find_many", "find_one", "get", "get_bson_encoders",
    "get_changes", "get_collection_name", "get_link_fields", "get_model_type",
    "get_previous_changes", "get_previous_saved_state", "get_pymongo_collection",
    "get_saved_state", "get_settings", "has_changed", "inc", "insert", "insert_many",
    "insert_one", "inspect_collection", "is_changed", "lazy_parse", "link_from_id", "max",
    "min", "parse_store", "replace", "replace_many", "rollback", "save", "save_changes",
    "set", "set_collection", "set_collection_name", "set_database",
    "state_management_replace_objects", "state_management_save_previous", "sum", "sync",
    "to_ref", "update", "update_all", "use_state_management", "validate_self",
}  # fmt: skip
_BEANIE_FIND_MANY = {
    "AggregationQueryType", "DeleteQueryType", "UpdateQueryType", "aggregate", "avg",
    "build_aggregation_pipeline", "clone", "count", "current_date", "cursor", "delete",
    "delete_many", "distinct", "exists", "find", "find_many", "first_or_none", "get_cursor",
    "get_filter_query", "get_projection_model", "inc", "lazy_parse", "limit", "max", "min",
    "prepare_find_expressions", "project", "set", "set_session", "skip", "sort", "sum",
    "to_list", "update", "update_many", "upsert",
}  # fmt: skip
_BEANIE_FIND_ONE = {
    "AggregationQueryType", "DeleteQueryType", "UpdateQueryType", "clone", "count",
    "current_date", "delete", "delete_one", "exists", "find_one", "get_filter_query",
    "get_projection_model", "inc", "prepare_find_expressions", "project", "replace_one",
    "set", "set_session", "update", "update_one", "upsert",
}  # fmt: skip
_BEANIE_AGGREGATION = {
    "clone", "cursor", "get_aggregation_pipeline", "get_cursor", "get_projection_model",
    "lazy_parse", "set_session", "to_list",
}  # fmt: skip
_BEANIE_UNION = {
    "aggregate", "all", "avg", "bulk_writer", "count", "find", "find_all", "find_many",
    "find_one", "get_bson_encoders", "get_collection_name", "get_link_fields",
    "get_model_type", "get_pymongo_collection", "get_settings", "max", "min", "register_doc",
    "sum",
}  # fmt: skip
_BEANIE_VIEW = {
    "aggregate", "all", "avg", "count", "fetch_all_links", "fetch_link", "find", "find_all",
    "find_many", "find_one", "get_bson_encoders", "get_collection_name", "get_link_fields",
    "get_model_type", "get_pymongo_collection", "get_settings", "max", "min", "sum",
}  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "minus", "known"),
    [
        (Document, (BaseModel,), _BEANIE_DOCUMENT),
        (FindMany, (), _BEANIE_FIND_MANY),
        (FindOne, (), _BEANIE_FIND_ONE),
        (AggregationQuery, (), _BEANIE_AGGREGATION),
        (UnionDoc, (), _BEANIE_UNION),
        (View, (BaseModel,), _BEANIE_VIEW),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_beanie_public_methods_are_the_reviewed_ones(
    cls: type[Any], minus: tuple[type[Any], ...], known: set[str]
) -> None:
    """A Beanie release that adds a public method fails here until it is reviewed."""
    current = _public(cls, *minus) - {"__getitem__", "__getattr__"}
    assert current == known, (
        f"{cls.__name__}: new {sorted(current - known)}, gone {sorted(known - current)}"
    )


# The only places in Beanie that touch the driver's collection or database objects
# other than through the model's getters: settings, the getters and setters themselves,
# initialisation, and the migration runner (which insightdb does not use).
_BEANIE_DRIVER_SEAMS = {
    "odm/settings/base.py",
    "odm/interfaces/getters.py",
    "odm/interfaces/setters.py",
    "odm/utils/init.py",
    "migrations/runner.py",
    "migrations/database.py",
    "executors/migrate.py",
}
_DRIVER_ACCESS = re.compile(
    r"pymongo_db|(?<!get_)pymongo_collection\b|AsyncMongoClient|AsyncDatabase\("
)


def test_beanie_reaches_the_driver_only_through_the_guarded_seams() -> None:
    root = Path(beanie.__file__).parent
    touching = {
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if _DRIVER_ACCESS.search(path.read_text(encoding="utf-8"))
    }
    assert touching <= _BEANIE_DRIVER_SEAMS, sorted(touching - _BEANIE_DRIVER_SEAMS)


# insightdb's own additions to Documents: the plugin mixins' public methods. Each reaches
# the driver only through the model's collection (the plugin collection wrapping the
# guarded one): delete/hard_delete/restore are Beanie's delete and set underneath.
_PLUGIN_METHODS = {
    "Timestamped": {"get_pymongo_collection"},
    "SoftDeletable": {"get_pymongo_collection", "delete", "hard_delete", "restore", "is_deleted"},
    "Audited": {"get_pymongo_collection"},
}


@pytest.mark.parametrize("name", sorted(_PLUGIN_METHODS))
def test_plugin_mixins_add_only_the_reviewed_public_methods(name: str) -> None:
    from insightdb import plugins

    mixin = getattr(plugins, name)
    current = _public(mixin, BaseModel) - {"__getitem__", "__getattr__"}
    assert current == _PLUGIN_METHODS[name], sorted(current ^ _PLUGIN_METHODS[name])


def test_the_plugin_collection_implements_every_data_method() -> None:
    """No read or write path can skip a plugin by falling through to the guarded one."""
    from insightdb.plugins.collection import PluginCollection

    for name in allowlist.COLLECTION_DATA | {"with_options", "__getitem__"}:
        assert name in vars(PluginCollection), name


def test_crossref_adds_only_the_reviewed_public_methods() -> None:
    """A reference reads its target only through the target model's own find()."""
    from pydantic import RootModel

    from insightdb.runtime.references import CrossRef

    reviewed = {"document", "group", "id", "model", "resolve", "resolved", "target"}
    current = _public(CrossRef, RootModel) - {"__getitem__", "__getattr__"}
    assert current == reviewed, sorted(current ^ reviewed)
