"""Typed, frozen, validated settings loaded through dynaconf.

This is the one package that imports dynaconf or reads ``os.environ``. It layers, from
lowest to highest precedence:

1. the defaults declared on the models,
2. ``[default]`` then ``[<env>]`` of ``settings.toml``,
3. ``[default]`` then ``[<env>]`` of ``.secrets.toml`` (git-ignored),
4. the seed system's variable names (``DATABASE_ADMIN_URI``, ``DATABASE_CUSTOMER_URI``,
   ``ENABLE_HEALTH_CHECKS``, ``ENABLE_METRICS``, ``ENABLE_AUDIT_TRAIL``),
5. ``INSIGHTDB_<KEY>`` variables, ``__`` separating nested keys
   (``INSIGHTDB_DATABASES__ADMIN__URI``),
6. the ``overrides`` mapping passed to :func:`get_settings` (tests, tools).

The environment is ``env=`` if given, else ``INSIGHTDB_ENV``, else ``development``.
The result is a frozen :class:`Settings`; any invalid value is a one-line
:class:`~insightdb.exceptions.ConfigurationError` naming the key, and credentials are
masked in every ``repr``.

The modules: :mod:`.sections` (the section models) and :mod:`.model` (the root
:class:`Settings`) on :mod:`.base`; :mod:`.loader` (:func:`get_settings`) reads
:mod:`.files` and :mod:`.environ`, then :mod:`.validation` and :mod:`.driver` (the
driver's own checks of the options it builds). This module only re-exports.
"""

from __future__ import annotations

from insightdb.settings.base import MAX_DRIVER_MS as MAX_DRIVER_MS
from insightdb.settings.base import Ms as Ms
from insightdb.settings.base import Seconds as Seconds
from insightdb.settings.base import Str as Str
from insightdb.settings.loader import get_settings
from insightdb.settings.model import ENVIRONMENTS, GROUPS, Settings
from insightdb.settings.sections import (
    DatabaseSettings,
    DatabasesSettings,
    DriverSettings,
    EmbeddedSettings,
    FeatureSettings,
    MonitoringSettings,
    PoolSettings,
    ResilienceSettings,
    StartupSettings,
    TimeoutSettings,
)

__all__ = [
    "ENVIRONMENTS",
    "GROUPS",
    "DatabaseSettings",
    "DatabasesSettings",
    "DriverSettings",
    "EmbeddedSettings",
    "FeatureSettings",
    "MonitoringSettings",
    "PoolSettings",
    "ResilienceSettings",
    "Settings",
    "StartupSettings",
    "TimeoutSettings",
    "get_settings",
]
