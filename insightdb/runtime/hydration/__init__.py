"""The fast Documents path: Beanie's reads and writes of insightdb Documents, minus its overhead.

Beanie turns every document it reads into a ``Document`` through ``parse_obj``, which
validates the data twice over (its ``Document.__init__`` makes Pydantic re-enter
validation), initialises private attributes up to three times, and pays a Python-level
``__getattribute__`` (``lazy_model``'s) on every attribute it touches; and it encodes every
document it writes (and every saved state) with a general-purpose encoder that looks
each value up in a table of 19 types. Together that is several times the cost of the
driver itself.

A :class:`DocumentPlan` is compiled once per model (and again whenever Beanie
initialises it anew) and does the same work directly:

* **reading** — one validation by the model's own schema, without the model wrapper
  that calls ``__init__`` (the instance is built the way Pydantic builds it), private
  attributes from a precomputed template, then Beanie's saved state;
* **writing** — the dictionary Beanie's ``get_dict`` would produce, built field by field
  from a precomputed table of aliases, exclusions and links, with values of plain BSON
  types copied and every other value handed to Beanie's own encoder.

A model is read this way only when nothing it declares could behave differently: no
``__init__`` or ``__new__`` of its own, no ``model_post_init`` of its own, no model
validator outside Pydantic's inner schema, and data that is a plain ``dict``; otherwise —
and for lazy parsing and inheritance routing — Beanie's own path runs. The
assumptions about Beanie and Pydantic are listed in :mod:`insightdb.runtime._beanie_seams`.

Turning it off: ``class Settings: insightdb_fast_path = False`` on a model, or
``features.fast_documents = false`` in the settings (read when Beanie initialises the
model).

The package: :mod:`~insightdb.runtime.hydration.plan` (the per-model plan: reading and
the cache), :mod:`~insightdb.runtime.hydration.encode` (writing),
:mod:`~insightdb.runtime.hydration.schema` (which models qualify, and the compiled
validator) and :mod:`~insightdb.runtime.hydration.queries` (Beanie's query classes with
a batched ``to_list``).
"""

from insightdb.runtime.hydration.plan import (
    FAST_PATH_SETTING,
    RUNTIME_SWITCH_ATTR,
    DocumentPlan,
    plan_for,
)
from insightdb.runtime.hydration.queries import (
    FastAggregationQuery,
    FastFindMany,
    FastFindOne,
    hydrate_many,
)
from insightdb.runtime.hydration.schema import register_plain_init

__all__ = [
    "FAST_PATH_SETTING",
    "RUNTIME_SWITCH_ATTR",
    "DocumentPlan",
    "FastAggregationQuery",
    "FastFindMany",
    "FastFindOne",
    "hydrate_many",
    "plan_for",
    "register_plain_init",
]
