"""Error lines of failed revisions carry no document values; batch writes get markers."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel, ValidationError
from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from insightdb.exceptions import MigrationError
from insightdb.migrations.batching import (
    MARKER_FIELD,
    is_transient,
    mark_filter,
    mark_op,
    mark_update,
    marker_path,
)
from insightdb.migrations.errors import MAX_LENGTH, describe_error, strip_values

SECRET = "ada@example.com"
DUP = (
    "E11000 duplicate key error collection: db.users index: email_1 "
    f'dup key: {{ email: "{SECRET}" }}'
)


def test_duplicate_key_error_keeps_index_and_code_but_not_the_value() -> None:
    exc = DuplicateKeyError(
        DUP,
        11000,
        {"errmsg": DUP, "code": 11000, "codeName": "DuplicateKey", "keyValue": {"email": SECRET}},
    )
    line = describe_error(exc)
    assert line == (
        "DuplicateKeyError: E11000 duplicate key error collection: db.users index: email_1 "
        "(code 11000 DuplicateKey)"
    )


def test_bulk_write_error_drops_the_failed_operations() -> None:
    exc = BulkWriteError(
        {
            "writeErrors": [
                {"index": 0, "code": 11000, "errmsg": DUP, "keyValue": {"email": SECRET},
                 "op": {"_id": 1, "email": SECRET, "name": "Ada"}},
            ] * 3,
        }
    )  # fmt: skip
    line = describe_error(exc)
    assert SECRET not in line
    assert "Ada" not in line
    assert line.startswith("BulkWriteError: 3 write error(s); first: E11000 duplicate key error")
    assert line.endswith("(code 11000)")


def test_server_errors_lose_embedded_documents() -> None:
    text = (
        "Cannot apply $inc to a value of non-numeric type. {_id: 5} has the field 'n' "
        "of type string"
    )
    exc = OperationFailure(text, 14, {"errmsg": text, "code": 14, "codeName": "TypeMismatch"})
    line = describe_error(exc)
    assert "{_id: 5}" not in line
    assert "(code 14 TypeMismatch)" in line


def test_validation_errors_omit_the_input() -> None:
    class Person(BaseModel):
        age: int

    with pytest.raises(ValidationError) as info:
        Person.model_validate({"age": "ssn 123-45-6789"})
    line = describe_error(info.value)
    assert "123-45" not in line
    assert line.startswith("ValidationError: 1 validation error(s) for Person: age: ")


def test_user_exceptions_keep_their_words_but_not_dict_or_list_literals() -> None:
    doc = {"_id": 7, "ssn": "123-45-6789", "tags": ["x"]}
    assert describe_error(RuntimeError("item 350 is malformed")) == (
        "RuntimeError: item 350 is malformed"
    )
    assert (
        describe_error(ValueError(f"bad {doc}\nsecond line")) == "ValueError: bad {…} second line"
    )
    assert describe_error(ValueError(f"ids {[doc]}")) == "ValueError: ids […]"
    assert describe_error(KeyError("email")) == "KeyError: 'email'"
    assert describe_error(MigrationError("admin: nope")) == "admin: nope"
    assert describe_error(ValueError("")) == "ValueError"


def test_credentials_are_masked_and_the_line_is_bounded_in_linear_time() -> None:
    assert "hunter2" not in describe_error(RuntimeError("mongodb://u:hunter2@h/db down"))
    huge = "x{" * 50_000 + "y" * 100_000
    began = time.perf_counter()
    line = describe_error(RuntimeError(huge))
    assert time.perf_counter() - began < 0.5
    assert len(line) <= MAX_LENGTH
    assert strip_values("a {b [c] d} e { f") == "a {…} e {…}"


def test_markers_are_added_to_updates_and_replacements_only() -> None:
    path = marker_path("r1", "items#0")
    assert path == f"{MARKER_FIELD}.r1__items#0"
    assert mark_filter({}, path) == {path: {"$exists": False}}
    assert mark_update({"$inc": {"n": 1}, "$set": {"a": 1}}, path, 3) == {
        "$inc": {"n": 1},
        "$set": {"a": 1, path: 3},
    }
    assert mark_update([{"$set": {"a": 1}}], path, 3) == [{"$set": {"a": 1}}, {"$set": {path: 3}}]

    update = mark_op(UpdateOne({"_id": 1}, {"$inc": {"n": 1}}, upsert=True), path, 3)
    assert update._filter == {"$and": [{"_id": 1}, {path: {"$exists": False}}]}
    assert update._doc == {"$inc": {"n": 1}, "$set": {path: 3}}
    assert update._upsert is True
    many = mark_op(UpdateMany({"k": 1}, [{"$set": {"a": 1}}]), path, 3)
    assert many._doc == [{"$set": {"a": 1}}, {"$set": {path: 3}}]
    replace = mark_op(ReplaceOne({"_id": 1}, {"name": "x"}), path, 3)
    assert replace._doc == {"name": "x", MARKER_FIELD: {"r1__items#0": 3}}
    insert, delete = InsertOne({"_id": 2}), DeleteOne({"_id": 3})
    assert mark_op(insert, path, 3) is insert
    assert mark_op(delete, path, 3) is delete


def test_transient_transaction_errors() -> None:
    conflict = OperationFailure("Write conflict during transaction commit", None, {})
    labelled = OperationFailure("x", 112, {"errorLabels": ["TransientTransactionError"]})
    assert is_transient(conflict)
    assert is_transient(labelled)
    assert not is_transient(OperationFailure("bad", 2, {}))
    assert not is_transient(RuntimeError("write conflict"))
