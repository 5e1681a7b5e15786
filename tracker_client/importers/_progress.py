"""A progress bar on a terminal (tqdm, when installed and stderr is a TTY), else nothing."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class Progress:
    """``with Progress(total, "points") as bar: bar.update(n)``; silent off a terminal."""

    def __init__(self, total: int | None, unit: str, desc: str = "") -> None:
        self._bar: Any = None
        if not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, unit=unit, desc=desc, unit_scale=True, leave=False,
                         file=sys.stderr)

    def update(self, n: int) -> None:
        """Advance by ``n``."""
        if self._bar is not None:
            self._bar.update(n)

    def describe(self, text: str) -> None:
        """Show what is being worked on."""
        if self._bar is not None:
            self._bar.set_description_str(text[:40])

    def add_total(self, n: int) -> None:
        """Grow the total (sources whose size is learnt as they are read)."""
        if self._bar is not None:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
