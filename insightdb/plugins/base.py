"""The common base of the plugin mixins: the model's collection, seen through its plugins.

Beanie reaches the driver only through ``Document.get_pymongo_collection()``; insightdb
answers it with the model's :class:`~insightdb.tenancy.collection.GuardedCollection`. A model
that mixes in a plugin answers with a :class:`~insightdb.plugins.collection.PluginCollection`
around that guarded collection instead: the plugins rewrite a command (stamp times, hide
soft-deleted documents, record an audit entry) and the guarded collection below still
scopes it to the tenant, checks its options and joins the open transaction. One wrapper
per model and guarded collection, built on first use and kept on the class.

The plugin collection knows every plugin mixin, and every mixin imports this module, so
this module does not import it: :mod:`insightdb.plugins.collection` registers its class
with :func:`register_plugin_collection` when it is imported, which importing anything of
:mod:`insightdb.plugins` does first.

The mixins must come before the document base class (``class Invoice(Timestamped,
TenantScoped, CustomerDocument)``), in any order among themselves and with
``TenantScoped``; a model that puts them after it is refused when it is defined, since
Beanie would then never see them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel

__all__ = ["PluginMixin", "plugin_models", "register_plugin_collection"]

_CACHE_ATTR = "__insightdb_plugin_collection__"

# Builds the wrapper of a model's guarded collection: PluginCollection(inner, model).
_wrap: Callable[[Any, type[Any]], Any] | None = None


def register_plugin_collection(factory: Callable[[Any, type[Any]], Any]) -> None:
    """Set what wraps a plugin model's guarded collection (``PluginCollection``)."""
    global _wrap
    _wrap = factory


class PluginMixin(BaseModel):
    """Base of ``Timestamped``, ``SoftDeletable`` and ``Audited``; not used directly."""

    __insightdb_plugin__: ClassVar[bool] = True

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        from beanie import Document

        mro = cls.__mro__
        if Document in mro and mro.index(PluginMixin) > mro.index(Document):
            raise TypeError(
                f"{cls.__name__}: put the plugin mixins (Timestamped, SoftDeletable, "
                "Audited) before the document base class, e.g. "
                f"class {cls.__name__}(Timestamped, TenantScoped, CustomerDocument)"
            )

    @classmethod
    def get_pymongo_collection(cls) -> Any:
        """The model's guarded collection, seen through its plugins."""
        inner = super().get_pymongo_collection()  # type: ignore[misc]
        cached = cls.__dict__.get(_CACHE_ATTR)
        if cached is not None and cached[0] is inner:
            return cached[1]
        from insightdb.tenancy.collection import GuardedCollection

        if not isinstance(inner, GuardedCollection):
            return inner  # init_beanie at work: Beanie needs its own collection
        if _wrap is None:  # importing insightdb.plugins registers it first
            raise RuntimeError("insightdb.plugins.collection has not been imported")
        wrapper = _wrap(inner, cls)
        type.__setattr__(cls, _CACHE_ATTR, (inner, wrapper))
        return wrapper


def plugin_models(models: Any) -> list[type[Any]]:
    """The models among ``models`` that mix in a plugin."""
    return [m for m in models if isinstance(m, type) and issubclass(m, PluginMixin)]
