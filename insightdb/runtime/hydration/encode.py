"""Writing on the fast Documents path: the dictionary Beanie's ``get_dict`` would produce.

Built field by field from a table of aliases, exclusions and links computed once per
model; values of plain BSON types are copied, every other value goes to Beanie's own
encoder (with the model's ``bson_encoders``). Mirrors ``get_dict`` and the encoder's
document rules, pinned in :mod:`insightdb.runtime._beanie_seams`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import bson
from beanie import Document
from beanie.odm.fields import PydanticObjectId

from insightdb.runtime import _beanie_seams as seams

__all__ = ["WritePlan"]

_get = object.__getattribute__

# Values of these exact types are what Beanie's encoder returns unchanged (BSON scalars,
# bool as an int); a model's own ``bson_encoders`` can take any of them back.
SCALARS: tuple[type[Any], ...] = (
    str,
    int,
    float,
    bool,
    type(None),
    datetime.datetime,
    bson.ObjectId,
    PydanticObjectId,
    bson.Binary,
    bson.Decimal128,
    bson.DBRef,
    bson.Regex,
    bson.MinKey,
    bson.MaxKey,
)
_LINKS = (seams.LinkTypes.DIRECT, seams.LinkTypes.OPTIONAL_DIRECT)
_LINK_LISTS = (seams.LinkTypes.LIST, seams.LinkTypes.OPTIONAL_LIST)


class WritePlan:
    """What writing one initialised model's documents needs, computed once.

    Attributes:
        model: The Document class.
        settings: Beanie's settings object the plan was compiled against.
        link_fields: Beanie's link fields of the model.
        fields: Field name → (stored name, excluded).
        passthrough: The value types copied as they are (the model's ``bson_encoders``
            may take any of :data:`SCALARS` back).
    """

    def __init__(self, model: type[Document]) -> None:
        self.model = model
        self.settings = model.get_settings()
        self.link_fields = model.get_link_fields() or {}
        self.class_id = self.settings.class_id
        self.union_alias = (
            (self.settings.union_doc_alias or model.__name__)
            if self.settings.union_doc is not None
            else None
        )
        encoders: Mapping[type, Any] = self.settings.bson_encoders or {}
        self.passthrough = frozenset(
            t for t in SCALARS if not any(issubclass(t, k) for k in encoders)
        )
        self.fields: dict[str, tuple[str, bool]] = {
            name: (info.alias or name, info.exclude is True)
            for name, info in model.model_fields.items()
        }
        self._encoders: dict[tuple[bool, bool], Any] = {}

    def _encoder(self, to_db: bool, keep_nulls: bool) -> Any:
        key = (to_db, keep_nulls)
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = seams.Encoder(
                custom_encoders=self.settings.bson_encoders, to_db=to_db, keep_nulls=keep_nulls
            )
            self._encoders[key] = encoder
        return encoder

    def to_dict(
        self,
        document: Any,
        *,
        to_db: bool = False,
        keep_nulls: bool = True,
        exclude: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Return what ``beanie.odm.utils.dump.get_dict`` returns for ``document``.

        Args:
            document: An instance of the plan's model.
            to_db: Drop back-links (as for a write).
            keep_nulls: Keep fields whose value is ``None``.
            exclude: Stored names (aliases) to leave out.
        """
        if _get(document, "__pydantic_private__").get("_store"):
            document.parse_store()  # lazily parsed: every field is parsed first
        values = _get(document, "__dict__")
        excluded = set(exclude)
        if values.get("id") is None:
            excluded.add("_id")
        included = {"revision_id"} - excluded if self.settings.use_revision else set()
        out: dict[str, Any] = {}
        if self.union_alias is not None:
            out[self.class_id] = self.union_alias
        class_id = type(document)._class_id
        if class_id:
            out[self.class_id] = class_id
        encoder = self._encoder(to_db, keep_nulls)
        self._encode_items(values.items(), out, encoder, excluded, included, to_db, keep_nulls)
        extra = _get(document, "__pydantic_extra__")
        if extra:
            self._encode_items(extra.items(), out, encoder, excluded, included, to_db, keep_nulls)
        return out

    def _encode_items(
        self,
        items: Iterable[tuple[str, Any]],
        out: dict[str, Any],
        encoder: Any,
        excluded: set[str],
        included: set[str],
        to_db: bool,
        keep_nulls: bool,
    ) -> None:
        fields, passthrough, links = self.fields, self.passthrough, self.link_fields
        for name, value in items:
            entry = fields.get(name)
            if entry is None:
                if name[:1] == "_":
                    continue
                key, field_excluded = name, False
            else:
                key, field_excluded = entry
            if key not in included and (key in excluded or field_excluded):
                continue
            if value is None and not keep_nulls:
                continue
            link = links.get(key) if links else None
            if link is None:
                out[key] = value if type(value) in passthrough else encoder.encode(value)
                continue
            if link.link_type in _LINKS:
                if value is not None:
                    value = value.to_ref()
            elif link.link_type in _LINK_LISTS:
                if value is not None:
                    value = [item.to_ref() for item in value]
            elif to_db:
                continue
            out[key] = encoder.encode(value)
