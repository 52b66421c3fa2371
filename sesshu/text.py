"""Untrusted text made fit for a log line, a process title or an error detail.

Targets, plugin names, error details and plugin output all come from
outside. Before any of them reaches a log line or ``ps``, three things must
hold: no ``user:password@`` part survives, no control or bidi character can
start a fake line or reorder the text, and the length is bounded. This is
the one place that knows how.
"""

from __future__ import annotations

import re

# Up to the authority's last "@", as URL parsers split it: a password may hold "@".
_USERINFO = re.compile(r"(?<=://)[^/?#\s]*@")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
ELLIPSIS = "..."


def mask(text: str) -> str:
    """Replace the ``user:password@`` part of every URL in ``text`` by ``***@``."""
    return _USERINFO.sub("***@", text) if "@" in text else text


def escape(text: str) -> str:
    """Escape every character that is not printable: controls, bidi marks, separators, surrogates.

    ``str.isprintable`` is false for exactly the categories that can forge or
    hide a log line (Cc, Cf, Cs, Zl, Zp, and the unassigned ones), so the
    common case costs one C-level scan.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, marked when cut."""
    return text if len(text) <= limit else text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def loggable(text: str, limit: int = 200) -> str:
    """Masked, escaped and bounded: safe in any log line or process title."""
    # Clip generously before the work, so a megabyte of input costs little,
    # and once more after escaping, which can only lengthen the text.
    rough = text[: limit * 4 + 1024]
    return clip(escape(mask(rough)), limit)
