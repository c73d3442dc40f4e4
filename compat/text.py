"""Text helpers every view shares: numbers in a compact form, sizes, and untrusted text made safe to show."""

from __future__ import annotations

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean(text, keep_newlines: bool = False) -> str:
    """``text`` with what could deceive a reader made visible: control characters (a terminal escape in a
    file name), bidirectional overrides (a name that displays reversed) and bytes that are not UTF-8
    (kept by the file system as surrogates) become ``\\xNN`` / ``\\uNNNN``."""
    text = str(text)
    if text.isprintable() and not _BIDI.intersection(text):
        return text
    out = []
    for ch in text:
        o = ord(ch)
        if keep_newlines and ch in "\n\t":
            out.append(ch)
        elif 0xDC80 <= o <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or 0x7F <= o < 0xA0 or ch in _BIDI or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def fmt(x, digits: int = 2) -> str:
    """A number for a table cell: ``-`` for None, ``0``, ``inf``, else scientific notation."""
    if x is None:
        return "-"
    if x == float("inf"):
        return "inf"
    if x == 0:
        return "0"
    return f"{x:.{digits}e}"


def size(n: int) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
