"""The runtime: the started instance, its connections, models and lifecycle.

:func:`init` loads the settings, opens the clients (:mod:`.connections`), waits for the
servers (:mod:`.startup`), discovers and routes the models (:mod:`.registry`) and returns
the started :class:`InsightDB` (:mod:`.instance`); :mod:`.health` and
:mod:`.transactions` serve it, :mod:`.documents`, :mod:`.references`, :mod:`.hydration`
and :mod:`.fastpath` are the model side, and :mod:`.devserver` is the shared development
server. This module only re-exports.
"""

from __future__ import annotations

from insightdb.runtime.documents import AdminDocument, CustomerDocument
from insightdb.runtime.health import HealthReport
from insightdb.runtime.instance import InsightDB
from insightdb.runtime.lifecycle import close, connect, current, init, transaction
from insightdb.runtime.references import CrossRef
from insightdb.runtime.routes import ModelRegistry, Route

__all__ = [
    "AdminDocument",
    "CrossRef",
    "CustomerDocument",
    "HealthReport",
    "InsightDB",
    "ModelRegistry",
    "Route",
    "close",
    "connect",
    "current",
    "init",
    "transaction",
]
