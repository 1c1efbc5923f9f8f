"""The dictionary a document is written and compared as, for the fast write methods.

Beanie's ``get_dict(document, to_db=True, ...)`` is what an insert stores and what
state management compares (less the revision). The write methods of
:class:`~insightdb.runtime.documents.InsightDocument` build it through the model's plan
(:mod:`insightdb.runtime.hydration`) where there is one, and through Beanie's own
``get_dict`` otherwise.
"""

from __future__ import annotations

from typing import Any

from insightdb.runtime import _beanie_seams as seams
from insightdb.runtime.hydration import plan_for

__all__ = ["stored"]


def stored(document: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``get_dict(document, to_db=True, keep_nulls=..., exclude=...)``, through the plan.

    Args:
        document: A document of any model; Beanie's ``get_dict`` where it has no plan.
        exclude: Stored names to leave out (state management leaves out the revision).
    """
    plan = plan_for(type(document))
    keep_nulls = document.get_settings().keep_nulls
    if plan is None:
        as_stored: dict[str, Any] = seams.get_dict(
            document, to_db=True, keep_nulls=keep_nulls, exclude=set(exclude)
        )
        return as_stored
    return plan.to_dict(document, to_db=True, keep_nulls=keep_nulls, exclude=exclude)
