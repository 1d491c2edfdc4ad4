"""Strict reading of the JSON bodies the back office's services accept (the centre's API).

A body a service cannot take gets a short reason (BadBody → HTTP 400), never an exception
escaping into the server: not UTF-8 (a BOM included), not JSON, NaN/Infinity (not JSON, though
Python's parser takes them), a key given twice (which one would count?), nesting deeper than
MAX_DEPTH (Python's parser recurses: very deep nesting raised RecursionError in the handler and
the connection died without an answer), not an object at the top, or a field of the wrong type.
"""
from __future__ import annotations

import json

MAX_DEPTH = 32   # the centre's documents are 2 deep; this leaves room and bounds every walk


class BadBody(ValueError):
    """The request body is not acceptable; str(exc) is the short reason for the client."""


def _no_constant(name: str):
    raise BadBody(f"{name} is not JSON")


def _pairs(pairs: list) -> dict:
    doc = {}
    for key, value in pairs:
        if key in doc:
            raise BadBody(f"key {key[:40]!r} given twice")
        doc[key] = value
    return doc


def _depth_within(value, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def json_object(body: bytes, *, max_depth: int = MAX_DEPTH) -> dict:
    """The JSON object in `body` (UTF-8), or BadBody saying why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the body is not UTF-8 (byte {exc.start})") from None
    # A cheap bound before parsing: the parser recurses once per bracket.
    if text.count("[") + text.count("{") > max_depth and not _shallow_enough(text, max_depth):
        raise BadBody(f"the JSON is nested deeper than {max_depth} levels")
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except RecursionError:
        raise BadBody(f"the JSON is nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise BadBody(f"the body is not JSON ({exc.msg} at {exc.pos})") from None
    if not isinstance(doc, dict):
        raise BadBody("the body must be a JSON object")
    if not _depth_within(doc, max_depth):
        raise BadBody(f"the JSON is nested deeper than {max_depth} levels")
    return doc


def _shallow_enough(text: str, max_depth: int) -> bool:
    """Whether brackets outside strings never nest deeper than `max_depth` (a linear scan that
    only runs when the body holds more brackets than that at all)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def check_fields(doc: dict, types: dict, *, required=()) -> None:
    """Each present key of `types` has that type (bool is not an int here); `required` are present."""
    for key in required:
        if key not in doc:
            raise BadBody(f"{key} is required")
    for key, kind in types.items():
        if key in doc:
            value = doc[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise BadBody(f"{key} must be a {_TYPE_NAMES.get(kind, kind.__name__)}")


_TYPE_NAMES = {str: "string", bool: "boolean (true/false)", int: "number", dict: "object", list: "list"}

__all__ = ["BadBody", "MAX_DEPTH", "json_object", "check_fields"]
