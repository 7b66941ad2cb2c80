"""The closest known names to a mistyped one, for error messages (no SQL, no imports beyond
the standard library: the playbook checks use it too)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """'; did you mean X?' (or 'X or Y') for the closest of ``known``, else the known names
    when there are few, else nothing."""
    names = sorted({str(k) for k in known})
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    if names and len(names) <= 8:
        return "; known: " + ", ".join(names)
    return ""
