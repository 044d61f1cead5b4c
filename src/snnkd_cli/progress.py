"""Progress of long loops outside the training epochs: validation, ``eval-sweep``, energy counts,
calibration, ``predict``.

The engine only calls :func:`track` around its loops; whoever runs it (the command line) decides how
progress is shown by installing a hook with :func:`reporting`. Without a hook, :func:`track` costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TypeVar

Item = TypeVar("Item")
Hook = Callable[[str, int, "int | None"], None]  # (what, done, total or None)

_hook: ContextVar[Hook | None] = ContextVar("snnkd_progress", default=None)


def track(items: Iterable[Item], what: str, total: int | None = None) -> Iterator[Item]:
    """Yield ``items``, telling the installed hook ``(what, done, total)`` before the first and after each.

    ``total`` defaults to ``len(items)`` where it has one (a DataLoader: its number of batches).
    """
    hook = _hook.get()
    if hook is None:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    hook(what, 0, total)
    for done, item in enumerate(items, 1):
        yield item
        hook(what, done, total)


def report(what: str, done: int, total: int | None) -> None:
    """Tell the installed hook where a job that is not a loop stands (``done`` of ``total`` stages)."""
    hook = _hook.get()
    if hook is not None:
        hook(what, done, total)


@contextlib.contextmanager
def reporting(hook: Hook | None) -> Iterator[None]:
    """Install ``hook`` for the loops run inside the block (None: silent); its ``close()``, if it has one,
    is called at the end."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)
        close = getattr(hook, "close", None)
        if close is not None:  # a bar left by a loop that raised or stopped early
            close()
