"""Masking of credentials in URIs, free text and nested settings."""

from __future__ import annotations

import pytest

from insightdb._redact import mask_mapping, mask_text, mask_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mongodb://bob:pw@h:1/db", "mongodb://bob:****@h:1/db"),
        (
            "mongodb+srv://bob:p%40ss@c.example.net/?w=1",
            "mongodb+srv://bob:****@c.example.net/?w=1",
        ),
        ("mongodb://h1,h2/?replicaSet=rs", "mongodb://h1,h2/?replicaSet=rs"),
        (
            "mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:abc&w=1",
            "mongodb://h/?authMechanismProperties=****&w=1",
        ),
        ("", ""),
    ],
)
def test_mask_uri(uri: str, expected: str) -> None:
    assert mask_uri(uri) == expected


def test_mask_text_finds_uris_inside_sentences() -> None:
    text = "could not reach mongodb://amy:hunter2@db:27017 after 3 tries"
    assert mask_text(text) == "could not reach mongodb://amy:****@db:27017 after 3 tries"


def test_mask_mapping_masks_nested_secrets_and_uris() -> None:
    data = {
        "databases": {"admin": {"uri": "mongodb://a:b@h/", "name": "x"}},
        "admin_password": "pw",
        "api_token": "",
        "other_uri": "mongodb://c:d@h/",
    }
    assert mask_mapping(data) == {
        "databases": {"admin": {"uri": "mongodb://a:****@h/", "name": "x"}},
        "admin_password": "****",
        "api_token": "",
        "other_uri": "mongodb://c:****@h/",
    }
