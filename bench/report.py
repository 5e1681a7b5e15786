"""Output of the benchmarks: a progress bar on stderr, a readable table, JSON."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def si(value: float | None, unit: str = "") -> str:
    """1234567 -> '1.23 M' (with unit)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


class Progress:
    """A one-line progress bar on stderr (a line every few seconds when not a tty)."""

    def __init__(self, label: str, total: float | None, unit: str = "pts",
                 stream: Any = sys.stderr) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self._last_line = 0.0
        self._last = (self.t0, 0.0)
        self._rate = 0.0

    def update(self, done: float, fraction: float | None = None, extra: str = "") -> None:
        """Redraw with ``done`` units so far (``fraction`` overrides done/total)."""
        now = time.monotonic()
        dt = now - self._last[0]
        if dt >= 0.5:
            inst = (done - self._last[1]) / dt
            self._rate = inst if not self._rate else 0.5 * self._rate + 0.5 * inst
            self._last = (now, done)
        if fraction is None:
            fraction = done / self.total if self.total else 0.0
        fraction = min(max(fraction, 0.0), 1.0)
        width = 28
        filled = round(fraction * width)
        bar = "#" * filled + "." * (width - filled)
        line = (f"{self.label} [{bar}] {fraction * 100:5.1f}%  {si(done)}{self.unit}  "
                f"{si(self._rate)}{self.unit}/s  {now - self.t0:5.1f}s {extra}")
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
            self.stream.flush()
        elif now - self._last_line >= 5:
            self._last_line = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def table(rows: Iterable[tuple[str, Any, str]], title: str = "") -> str:
    """Readable two-column table: (label, value, note)."""
    lines = [title, "-" * max(len(title), 60)] if title else []
    for label, value, note in rows:
        if isinstance(value, float):
            text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.3g}"
        elif isinstance(value, int) and not isinstance(value, bool):
            text = f"{value:,}"
        elif value is None:
            text = "n/a"
        else:
            text = str(value)
        lines.append(f"  {label:<30} {text:>18}  {note}")
    return "\n".join(lines)


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (NaN -> null)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(clean(data), indent=2) + "\n")
