"""Text from trials, playbooks and exceptions made safe to show: control characters and
bidirectional overrides become visible escapes instead of acting on a terminal or a page.

An ESC sequence in a description could recolour or clear a terminal; a right-to-left
override (U+202E) makes a report say the opposite of what it stores. Newlines and tabs stay.
"""

from __future__ import annotations

import html
import re

# C0 controls but tab and newline, DEL, C1 controls, and the bidi marks, embeddings,
# overrides and isolates (Trojan Source, CVE-2021-42574).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every unsafe character replaced by its backslash escape."""
    return _UNSAFE.sub(_escape, text)


def html_text(value: object) -> str:
    """``value`` as HTML text: escaped, with control and bidi characters made visible."""
    return html.escape(visible(str(value)))
