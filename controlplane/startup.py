"""Turn a configuration problem into one sentence on stderr and an exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from apps.core.env import StartupError

T = TypeVar("T")


def exit_on_startup_error(start: Callable[[], T], *, exit_code: int = 2) -> T:
    try:
        return start()
    except StartupError as exc:
        sys.stderr.write(f"Bulwark cannot start: {exc}\n")
        raise SystemExit(exit_code) from None
