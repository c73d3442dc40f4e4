"""Protocol Buffers' wire format over bytes in memory, for reading model files without their libraries (ONNX
without ``onnx``): fields as (number, wire type, value), length-delimited payloads as spans, never copies.
A leaf: imports nothing of modelport.

``walk`` follows a message tree by a schema (which fields of which message hold other messages) and fails where
protobuf's own parser would: a truncated or overlong field, an unknown wire type, an unmatched group, nesting
deeper than protobuf allows."""

from __future__ import annotations

MAX_DEPTH = 100  # protobuf's default recursion limit: a deeper message does not parse


class WireError(Exception):
    """The bytes do not parse as the message they should hold."""


def varint(data, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``pos``."""
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"ends inside a varint at byte {pos}")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def fields(data, start: int, end: int):
    """Yield (number, wire type, value) for the fields in ``data[start:end]``: ints for varints, the
    ``(start, end)`` span of the payload for length-delimited fields, None for fixed-size ones and groups."""
    pos = start
    while pos < end:
        key, pos = varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        if wire == 0:
            value, pos = varint(data, pos, end)
        elif wire == 2:
            length, pos = varint(data, pos, end)
            value = (pos, pos + length)
            pos += length
        elif wire == 1 or wire == 5:
            value, pos = None, pos + (8 if wire == 1 else 4)
        elif wire == 3:
            value, pos = None, _skip_group(data, pos, end, number)
        else:
            raise WireError(f"wire type {wire} at byte {pos}")
        if pos > end:
            raise WireError(f"field {number} runs past the end of its message at byte {end}")
        yield number, wire, value


def _skip_group(data, pos: int, end: int, number: int) -> int:
    """Past the END_GROUP that closes the group ``number`` opened just before ``pos``."""
    open_groups = [number]
    while open_groups:
        key, pos = varint(data, pos, end)
        n, wire = key >> 3, key & 7
        if wire == 4:
            if n != open_groups.pop():
                raise WireError(f"unmatched end of group at byte {pos}")
        elif wire == 3:
            open_groups.append(n)
        elif wire == 0:
            _, pos = varint(data, pos, end)
        elif wire == 2:
            length, pos = varint(data, pos, end)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise WireError(f"wire type {wire} at byte {pos}")
        if pos > end:
            raise WireError(f"group {number} runs past the end of its message")
    return pos


def walk(data, span: tuple[int, int], kind: str, schema: dict, visit=None, watch=()) -> None:
    """Check every message under ``span`` (a message of ``kind``) parses, following ``schema[kind]`` (field
    number -> kind of message it holds); ``visit(kind, span, number, wire, value)``, when given, sees every
    field of the messages whose kind is in ``watch`` (``span``: the message's). Iterative: a deep file cannot
    exhaust Python's stack. The loop is ``fields`` written out: a model holds hundreds of thousands of fields."""
    stack = [(kind, span[0], span[1], 1)]
    while stack:
        kind, pos, end, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise WireError(f"messages nested more than {MAX_DEPTH} deep")
        here = (pos, end)
        holds = schema.get(kind) or {}
        seen = visit if visit is not None and kind in watch else None
        while pos < end:
            key = data[pos]
            pos += 1
            if key >= 0x80:
                key, pos = varint(data, pos - 1, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise WireError(f"field number 0 at byte {pos}")
            if wire == 0:
                if seen is not None:
                    value, pos = varint(data, pos, end)
                else:  # skip it, with varint's checks
                    first = pos
                    while True:
                        if pos >= end:
                            raise WireError(f"ends inside a varint at byte {pos}")
                        more = data[pos] >= 0x80
                        pos += 1
                        if not more:
                            break
                        if pos - first >= 10:
                            raise WireError(f"varint longer than 10 bytes at byte {pos}")
                    value = None
            elif wire == 2:
                length = data[pos] if pos < end else 0x80
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = varint(data, pos, end)
                value = (pos, pos + length)
                pos += length
                inner = holds.get(number)
                if inner is not None and pos <= end:
                    stack.append((inner, value[0], value[1], depth + 1))
            elif wire == 1 or wire == 5:
                value, pos = None, pos + (8 if wire == 1 else 4)
            elif wire == 3:
                value, pos = None, _skip_group(data, pos, end, number)
            else:
                raise WireError(f"wire type {wire} at byte {pos}")
            if pos > end:
                raise WireError(f"field {number} runs past the end of its message at byte {end}")
            if seen is not None:
                seen(kind, here, number, wire, value)


def text(data, span: tuple[int, int], limit: int = 4096) -> str:
    """A string field's payload (at most ``limit`` bytes of it), decoded leniently."""
    return bytes(data[span[0]:min(span[1], span[0] + limit)]).decode("utf-8", "replace")
