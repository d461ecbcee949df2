"""Pickling by value that keeps the user's file names in tracebacks.

cloudpickle ships classes and functions defined in ``__main__`` or closures
by value, and renames their code's file to ``<dynamic-code>`` (so that its
payloads are the same wherever the code was defined).  A traceback from an
actor then says ``File "<dynamic-code>", line 10`` and shows no source
line.  Our pickler keeps the real file name: on one machine the file is
right there, so tracebacks name it and ``linecache`` shows the line.
"""

from __future__ import annotations

import io
import types
from collections import ChainMap
from typing import Any, Callable

import cloudpickle

__all__ = ["Pickler", "dumps"]

_DYNAMIC = "<dynamic-code>"
_cloud_dispatch: Any = cloudpickle.Pickler.dispatch_table
_cloud_code_reduce: Callable[[types.CodeType], Any] = _cloud_dispatch[types.CodeType]


def _code_reduce(code: types.CodeType) -> Any:
    rebuild, args = _cloud_code_reduce(code)
    return rebuild, tuple(code.co_filename if arg == _DYNAMIC else arg for arg in args)


class Pickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    """cloudpickle's pickler, but code objects keep ``co_filename``."""

    dispatch_table = ChainMap({types.CodeType: _code_reduce}, _cloud_dispatch)


def dumps(obj: Any, protocol: int = 5, buffer_callback: Callable[[Any], Any] | None = None) -> bytes:
    """``cloudpickle.dumps`` with the user's file names kept."""
    with io.BytesIO() as file:
        Pickler(file, protocol=protocol, buffer_callback=buffer_callback).dump(obj)
        return file.getvalue()
