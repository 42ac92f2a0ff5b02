"""Keep stdout for results: library noise goes to stderr, at the file-descriptor level.

Some native libraries write to file descriptor 1 directly (HiGHS prints its "Running HiGHS ..." banner from C++
when a solver object is created, before any option can silence it). Inside :func:`quiet_stdout` both
``sys.stdout`` and descriptor 1 point at stderr, so nothing a library prints can land in the command's output;
the command writes its result after the block, to the real stdout. :func:`emit_json` is how every ``--json``
command writes: one JSON document, nothing else.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
from collections.abc import Iterator
from typing import Any


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined,no-any-return]
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None  # an in-memory stream (tests' CliRunner): nothing below Python can write to it


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Within the block, Python-level and fd-level writes to stdout go to stderr instead (re-entrant)."""
    real = sys.stdout
    out_fd, err_fd = _fileno(real), _fileno(sys.stderr)
    saved = None
    with contextlib.suppress(Exception):
        real.flush()
    if out_fd is not None and err_fd is not None and out_fd != err_fd:
        saved = os.dup(out_fd)
        os.dup2(err_fd, out_fd)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        sys.stdout = real
        if saved is not None and out_fd is not None:
            os.dup2(saved, out_fd)
            os.close(saved)


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, inf: not JSON) replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """One indented, standard JSON document (RFC 8259: no NaN or Infinity)."""
    return json.dumps(strict_json(obj), indent=2, allow_nan=False)


def emit_json(obj: Any) -> None:
    """Write ``obj`` as one JSON document (and a newline) on stdout."""
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()
