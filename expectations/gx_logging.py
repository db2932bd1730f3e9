"""Keep Great Expectations' own logging at WARNING while dpsynth builds and runs suites.

GX logs at INFO on import and on every data source it registers (``Skipping registering function
…``, ``_get_default_value called with key …``): in an Airflow task, whose root logger is at INFO,
that was 214 of the 255 lines a validate task wrote. Inside :func:`gx_logs_at_warning` the
``great_expectations`` logger (every GX module logs through a child of it) is raised to WARNING
when it is more verbose, and restored afterwards, so a user who configured GX's logging keeps it
outside dpsynth's calls, and GX's warnings and errors still show.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

#: The logger every GX module logs through (``logging.getLogger(__name__)`` under this package).
GX_LOGGER = "great_expectations"

_P = ParamSpec("_P")
_R = TypeVar("_R")
_lock = threading.Lock()
_depth = 0
_saved_level = logging.NOTSET


@contextlib.contextmanager
def gx_logs_at_warning() -> Iterator[None]:
    """Within the block, GX's loggers emit WARNING and above only (nested and thread-safe:
    the level in force before the outermost block is restored when the last block exits)."""
    global _depth, _saved_level
    logger = logging.getLogger(GX_LOGGER)
    with _lock:
        if _depth == 0:
            _saved_level = logger.level
            if logger.getEffectiveLevel() < logging.WARNING:
                logger.setLevel(logging.WARNING)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                logger.setLevel(_saved_level)


def quiet_gx(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``func`` inside :func:`gx_logs_at_warning`."""

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with gx_logs_at_warning():
            return func(*args, **kwargs)

    return wrapper


__all__ = ["GX_LOGGER", "gx_logs_at_warning", "quiet_gx"]
