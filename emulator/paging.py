"""Cursor pagination shared by every list (newest first over positions in ascending order) and
Stripe's list envelope. `keys` is a range or a sorted list, so a cursor is a bisect, not a scan."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Any

from emulator import errors


def page(
    keys: Sequence[int],
    *,
    limit: int,
    starting_after: int | None = None,
    ending_before: int | None = None,
) -> tuple[list[int], bool]:
    """The positions of one page, newest first, and whether more lie beyond it."""
    if starting_after is not None:
        end = bisect_left(keys, starting_after)
        start = max(0, end - limit)
        has_more = start > 0
    elif ending_before is not None:
        start = bisect_right(keys, ending_before)
        end = min(len(keys), start + limit)
        has_more = end < len(keys)
    else:
        end = len(keys)
        start = max(0, end - limit)
        has_more = start > 0
    return list(reversed(keys[start:end])), has_more


def list_object(data: list[dict[str, Any]], has_more: bool, url: str) -> dict[str, Any]:
    """Stripe's list envelope around one page."""
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def exclusive_cursors(params: dict[str, Any]) -> None:
    if "starting_after" in params and "ending_before" in params:
        raise errors.StripeError(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            code="parameters_exclusive",
            param="ending_before",
        )


def page_by_id(
    keys: list[int],
    params: dict[str, Any],
    position: dict[str, int],
    kind: str,
    visible: Callable[[int], bool],
) -> tuple[list[int], bool]:
    """One page of `keys` whose cursors are object ids, looked up in `position`; an object
    the request may not see (another scope's) is no cursor: it does not exist for it."""
    exclusive_cursors(params)
    cursors: dict[str, int] = {}
    for name in ("starting_after", "ending_before"):
        if name in params:
            found = position.get(params[name])
            if found is None or not visible(found):
                raise errors.no_such(kind, params[name], param=name, status=400)
            cursors[name] = found
    return page(keys, limit=params.get("limit", 10), **cursors)
