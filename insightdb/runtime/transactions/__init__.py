"""Transactions across the admin and the customer database, without ``session=``.

A MongoDB transaction lives in one client session, so it can span both databases only
when they are on the same cluster (the same client). A :class:`Transaction` block
(:mod:`.block`) starts a session and a transaction on the client the requested groups
share and makes it the open transaction of the current task
(:mod:`insightdb.session_context`): every insightdb Document operation inside the block
joins it without ``session=``. It commits when the block ends normally and aborts when
it raises (:mod:`.attempt`, one run of the block). Retries follow the driver's
``with_transaction`` (:mod:`.policy`): the whole block again after a transient error,
the commit alone when its outcome is unknown, and insightdb adds a bound on the number
of attempts.

Nested blocks join the enclosing transaction; see ``docs/transactions.md``. This module
only re-exports.
"""

from __future__ import annotations

from insightdb.runtime.transactions.attempt import Attempt
from insightdb.runtime.transactions.block import Transaction
from insightdb.runtime.transactions.policy import (
    DEFAULT_MAX_ATTEMPTS,
    TIME_LIMIT_S,
    backoff_delay,
    has_label,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "TIME_LIMIT_S",
    "Attempt",
    "Transaction",
    "backoff_delay",
    "has_label",
]
