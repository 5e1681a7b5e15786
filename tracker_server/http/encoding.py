"""JSON encoding of the REST API: special floats and 64-bit integers.

JSON has no NaN or infinities, and JavaScript reads every number as a double, so an
integer beyond 2^53 would silently lose digits. The API therefore writes (and reads):

- NaN, +Inf, -Inf as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (protobuf's
  JSON mapping); every other float as a JSON number (-0.0 stays ``-0.0``);
- an integer ``v`` with ``|v| <= 2^53`` as a JSON number, any other as a decimal string.
  Wall times in nanoseconds (about 1.7e18) are therefore strings.

Arrays are encoded with numpy and orjson (``OPT_SERIALIZE_NUMPY``): the common cases
(all floats finite; all integers small, or all big) never touch a point in Python.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import JSONResponse

from tracker_server.domain.errors import invalid

SAFE_INT = 2**53
"""Largest integer magnitude a JSON number carries exactly to JavaScript."""
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

ENCODING_DOC = (
    "Floats: NaN, +Inf and -Inf are the strings \"NaN\", \"Infinity\", \"-Infinity\". "
    "Integers (steps, wall_time_ns, seeds): JSON numbers when |v| <= 2^53, decimal "
    "strings otherwise; requests may send either form."
)

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def enc_float(value: float | None) -> float | str | None:
    """One float for JSON."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def enc_int(value: int | None) -> int | str | None:
    """One integer for JSON."""
    if value is None or -SAFE_INT <= value <= SAFE_INT:
        return value
    return str(value)


def float_array(values: npt.NDArray[np.float64]) -> Any:
    """A float64 column for JSON: the array itself when every value is finite."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values
    out = values.astype(object)
    out[np.isnan(values)] = "NaN"
    out[values == np.inf] = "Infinity"
    out[values == -np.inf] = "-Infinity"
    return out.tolist()


def int_array(values: npt.NDArray[np.int64]) -> Any:
    """An int64 column for JSON: the array itself when every value is within 2^53,
    decimal strings for those beyond."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    big = (values > SAFE_INT) | (values < -SAFE_INT)
    if not big.any():
        return values
    if big.all():
        return values.astype(str).tolist()
    out = values.astype(object)
    out[big] = values[big].astype(str)
    return out.tolist()


def plain(value: Any) -> Any:
    """Free-form JSON (run metadata) with the same float and integer rules."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return enc_int(value)
    if isinstance(value, float):
        return enc_float(value)
    return value


def float_column(values: list[Any]) -> npt.NDArray[np.float64]:
    """A validated float column (numbers and the three special strings) -> float64;
    numpy converts the strings itself, no per-point Python."""
    return np.array(values, dtype=np.float64)


def int_column(values: list[Any], field: str) -> npt.NDArray[np.int64]:
    """A validated integer column (numbers and decimal strings) -> int64; a string
    outside the int64 range is INVALID_ARGUMENT naming ``field``."""
    try:
        return np.array(values, dtype=np.int64)
    except (OverflowError, ValueError):
        raise invalid(f"{field} holds a value outside the int64 range",
                      [(field, "outside the int64 range")]) from None


def parse_int(value: int | str) -> int:
    """One integer of a request (a number or a decimal string, already validated)."""
    return value if isinstance(value, int) else int(value)


def parse_float(value: float | str) -> float:
    """One float of a request (a number or one of the three special strings)."""
    return SPECIAL_FLOATS[value] if isinstance(value, str) else float(value)


def dumps(content: Any) -> bytes:
    """JSON bytes (numpy arrays, datetimes and UUIDs handled by orjson)."""
    return orjson.dumps(content, option=_OPTIONS)


class JsonResponse(JSONResponse):
    """A JSON response serialized with :func:`dumps`; content must already follow the
    float and integer rules (see :func:`enc_float`, :func:`float_array`, ...). A
    ``JSONResponse`` so that FastAPI describes routes by their ``response_model``."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Serialize."""
        return dumps(content)
