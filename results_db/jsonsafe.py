"""JSON as the standard has it: no ``Infinity`` or ``NaN`` (which Python writes unless told
not to), for the store's JSON columns and every JSON the commands print."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every inf and nan inside it made None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def strict_json(value: Any) -> str:
    """JSON as the standard has it: inf and nan (which Python would write as ``Infinity``,
    making SQLite's JSON functions fail on the row, and every query with them) become null."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False)
