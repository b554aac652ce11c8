"""Following AIP-158 page tokens: one loop for every ``iter_all_*`` method."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

_Item = TypeVar("_Item")


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


_P = TypeVar("_P", bound=_Page)


async def follow_pages(
    fetch: Callable[[str], Awaitable[_P]], items: Callable[[_P], Iterable[_Item]]
) -> AsyncIterator[_Item]:
    """Yield every item of every page, starting from the first.

    Args:
        fetch: ``page_token -> page`` (``""`` asks for the first page).
        items: The items of a page.

    Raises:
        PatternServiceError: If a page request fails (from ``fetch``).
    """
    token = ""
    while True:
        page = await fetch(token)
        for item in items(page):
            yield item
        token = page.next_page_token
        if not token:
            return
