"""Cursor pagination shared by every list: newest first over positions in ascending order.

`keys` is a range or a sorted list, so a cursor is a bisect, never a scan."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence


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
