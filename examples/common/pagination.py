"""Page-number pagination for list routes: ``?page=1&per_page=20`` in, a :class:`Page` out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

__all__ = ["Page", "PageParams", "page_params"]

T = TypeVar("T")

MAX_PAGE = 10_000
MAX_PER_PAGE = 100


class Page(BaseModel, Generic[T]):
    """One page of a list.

    Attributes:
        items: The page's items.
        page: Its number, from 1.
        per_page: The page size asked for.
        total: How many items match, over all pages.
    """

    items: list[T]
    page: int
    per_page: int
    total: int


@dataclass(frozen=True, slots=True)
class PageParams:
    """The page asked for; ``skip`` is what the query skips."""

    page: int
    per_page: int

    @property
    def skip(self) -> int:
        """The number of items before this page."""
        return (self.page - 1) * self.per_page


def page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page number, from 1")] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="page size")] = 20,
) -> PageParams:
    """The dependency reading ``page`` and ``per_page``."""
    return PageParams(page=page, per_page=per_page)
