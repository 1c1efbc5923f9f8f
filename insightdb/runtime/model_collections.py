"""Which collection a model hands Beanie: the guarded one, the raw one, or none.

Beanie reaches the driver only through ``get_pymongo_collection()`` (see
:class:`~insightdb.runtime.documents.InsightDocument`). After ``init``, a model answers
with the guarded collection insightdb installed on it (:func:`install_collection`).
While insightdb runs ``init_beanie`` (:func:`beanie_initialising`) it answers with the
raw one, which Beanie needs to create indexes, and any guarded collection of an earlier
``init`` is stale. A framework base answers with a :class:`BaseClassCollection`, which
never reaches a server.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from beanie import Document

from insightdb.exceptions import RoutingError

__all__ = [
    "COLLECTION_ATTR",
    "INITIALISING",
    "BaseClassCollection",
    "beanie_initialising",
    "install_collection",
]

#: True while insightdb runs init_beanie: Beanie then needs the raw collection (to
#: create indexes), and any guarded collection of an earlier init is stale.
INITIALISING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "insightdb_beanie_initialising", default=False
)
#: The class attribute that holds a model's installed (guarded) collection.
COLLECTION_ATTR = "__insightdb_collection__"


class BaseClassCollection:
    """What a framework base answers for its collection: nothing that reaches a server.

    ``init_beanie`` initialises every parent class of a model, bases included, and reads
    each one's indexes (``listIndexes``) — a command on a collection nobody uses, which
    would show up in the metrics. The bases declare no index, so Beanie gets an empty
    answer here; anything else is a routing mistake and says so.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    async def index_information(self) -> dict[str, Any]:
        return {}

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):  # copy, pickle and hasattr() probes
            raise AttributeError(attribute)
        raise RoutingError(
            f"{self._name} is a base class, not a collection: query a model derived from it"
        )


@contextmanager
def beanie_initialising() -> Iterator[None]:
    """Mark the enclosed ``init_beanie`` calls: models hand Beanie their raw collection."""
    token = INITIALISING.set(True)
    try:
        yield
    finally:
        INITIALISING.reset(token)


def install_collection(model: type[Document], collection: Any) -> None:
    """Make ``collection`` what ``model.get_pymongo_collection()`` returns from now on."""
    type.__setattr__(model, COLLECTION_ATTR, collection)
