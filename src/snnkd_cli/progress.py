"""Progress of long loops outside the training epochs: validation, ``eval-sweep``, energy counts,
calibration, ``predict``.

The engine only calls :func:`track` around its loops; whoever runs it (the command line) decides how
progress is shown by installing a hook with :func:`reporting`. Without a hook, :func:`track` costs nothing.

Timing works the same way: the training loop marks its parts (each batch it waits for, each step, validation,
checkpoint writes) with :func:`timed` and :func:`timed_items`, and a timer installed with :func:`timing`
(``bench/step.py --epoch``) hears of each. Without a timer they cost nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TypeVar

Item = TypeVar("Item")
Hook = Callable[[str, int, "int | None"], None]  # (what, done, total or None)

Timer = Callable[[str, float], None]  # (what, time.perf_counter() at the part's start), called at its end

_hook: ContextVar[Hook | None] = ContextVar("snnkd_progress", default=None)
_timer: ContextVar[Timer | None] = ContextVar("snnkd_timer", default=None)


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


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Tell the installed timer ``(what, start)`` when the block ends (the timer reads the clock itself, so it
    may wait for a device first); nothing without a timer."""
    timer = _timer.get()
    if timer is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timer(what, start)


def timed_items(items: Iterable[Item], what: str) -> Iterable[Item]:
    """``items`` itself without a timer; with one, the items, each wait for the next (the last, which finds none,
    too) timed as a part ``what``."""
    timer = _timer.get()
    return items if timer is None else _timed_items(items, what, timer)


def _timed_items(items: Iterable[Item], what: str, timer: Timer) -> Iterator[Item]:
    it = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            timer(what, start)
            return
        timer(what, start)
        yield item


@contextlib.contextmanager
def timing(timer: Timer | None) -> Iterator[None]:
    """Install ``timer`` for the parts timed inside the block (None: none)."""
    token = _timer.set(timer)
    try:
        yield
    finally:
        _timer.reset(token)
