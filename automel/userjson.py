"""Reading JSON that a user (or someone else's data set or model folder) hands over, with limits.

Python's ``json`` module trusts its input: 100,000 nested brackets end in a ``RecursionError``, an integer
of 5,000 digits in a ``ValueError`` (or, below Python's digit limit, in an overflow much later, where the
number meets numpy), a NUL byte or a lone surrogate in a string in a ``ValueError`` or
``UnicodeEncodeError`` as soon as it becomes a path. :func:`read_user_json` (and :func:`parse_user_json`
for text already read) refuse all of these at the door, in one line that names the file and the field
(``metadata.json: speakers.id10001[3].mel_len: ...``), raising the caller's error type (:class:`DataError`
for data sets, :class:`ConfigError` for configuration files). :func:`check_path_text` is the extra rule for
strings that become file names: no control characters.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from automel.errors import AutomelError, DataError

__all__ = ["MAX_DEPTH", "MAX_INT", "MAX_STRING", "check_path_text", "parse_user_json", "read_user_json"]

MAX_BYTES = 512 * 2**20  # the full HW4 metadata.json is ~7 MB; anything this large is no data set's JSON
MAX_DEPTH = 32  # automel's own files nest 4 deep; hostile ones nest 100,000 deep
MAX_INT = 2**63 - 1  # every integer automel reads fits an int64, as numpy and torch take them
MAX_INT_DIGITS = 19  # len(str(MAX_INT)): longer literals are refused before Python converts them
MAX_STRING = 65536  # characters of one string or key: far above any name, path or note
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Refused(str):
    """A literal the parser met but must not convert (a huge integer, NaN, Infinity): the walk names it."""


def read_user_json(path: Path, error: type[AutomelError] = DataError, what: str = "") -> Any:
    """The JSON value in ``path``, checked by :func:`parse_user_json`; ``error`` (one line naming ``path``)
    when the file is missing, unreadable, not UTF-8, not JSON, or beyond the limits. ``what`` (``"model
    config"``) is added to the not-found message."""
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{path}: cannot be read: it is a folder, not a JSON file")
        if path.stat().st_size > MAX_BYTES:
            raise error(f"{path}: {path.stat().st_size:,} bytes; a JSON file automel reads holds at most "
                        f"{MAX_BYTES:,}")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what + ' ' if what else ''}file not found") from None
    except OSError as exc:  # no permission, a device, a name the file system refuses
        raise error(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except ValueError as exc:  # a NUL byte in the path itself
        raise error(f"{str(path)!r}: not a usable file name ({exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})") from None
    return parse_user_json(text, str(path), error)


def parse_user_json(text: str, source: str, error: type[AutomelError] = DataError) -> Any:
    """Parse ``text`` (from ``source``, named in errors) within the limits: nesting at most
    :data:`MAX_DEPTH`, integers within ±:data:`MAX_INT`, finite numbers, strings and keys of at most
    :data:`MAX_STRING` characters that are valid Unicode (no lone surrogates). NUL and other control
    characters are allowed in general strings here; :func:`check_path_text` refuses them where a string
    becomes a path."""
    deepest = _depth(text)
    if deepest > MAX_DEPTH:
        raise error(f"{source}: nested {deepest} levels deep; at most {MAX_DEPTH} are allowed")
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_Refused)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # what the limits above still let through
        raise error(f"{source}: not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    _walk(value, source, error)
    return value


def check_path_text(value: str, source: str, field: str, error: type[AutomelError] = DataError) -> str:
    """``value`` if it can be a file name: no NUL or other control character; else ``error`` naming both."""
    if _CONTROL.search(value):
        raise error(f"{source}: {field} {shorten(value)!r} holds a control character; a path cannot")
    return value


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with its length said: a 5,000-digit key stays readable."""
    return text if len(text) <= limit else f"{text[:limit - 20]}…({len(text):,} characters)"


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth(text: str) -> int:
    """The deepest bracket nesting of ``text`` (strings skipped), without recursion."""
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _parse_int(literal: str) -> int | _Refused:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        return _Refused(literal)
    number = int(literal)
    return number if -MAX_INT <= number <= MAX_INT else _Refused(literal)


def _parse_float(literal: str) -> float | _Refused:
    number = float(literal)
    return number if math.isfinite(number) else _Refused(literal)


def _walk(value: Any, source: str, error: type[AutomelError]) -> None:
    """Find what the parser marked or what breaks later (an overlong or invalid string), naming its field."""
    todo: list[tuple[Any, str]] = [(value, "")]
    while todo:
        item, where = todo.pop()
        if isinstance(item, _Refused):
            kind = "integer" if item.lstrip("-").isdigit() else "number"
            limit = f"within ±{MAX_INT}" if kind == "integer" else "finite"
            raise error(f"{source}: {where or 'the value'}: {kind} {shorten(str(item), 40)} is out of range "
                        f"(it must be {limit})")
        if isinstance(item, str):
            _check_string(item, where or "the value", source, error)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, f"{where or 'the object'}: key", source, error)
                todo.append((child, _field(where, key)))
        elif isinstance(item, list):
            todo += [(child, f"{where}[{index}]") for index, child in enumerate(item)]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _field(where: str, key: str) -> str:
    """``speakers.id10001``: plain keys dotted, others quoted (``speakers['a\\x00b']``) so the line stays one."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{where}.{key}" if where else key
    return f"{where}[{shorten(key)!r}]"


def _check_string(text: str, where: str, source: str, error: type[AutomelError]) -> None:
    if len(text) > MAX_STRING:
        raise error(f"{source}: {shorten(where)}: a string of {len(text):,} characters; at most {MAX_STRING:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{source}: {shorten(where)}: {shorten(text)!r} is not valid Unicode (a lone surrogate)") from None
