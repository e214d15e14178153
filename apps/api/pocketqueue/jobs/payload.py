"""What may travel as a job's arguments or result: strict JSON, shallow enough for every hop.

A job's args and kwargs pass through the API's JSON parser, a Lua script, Celery's JSON
message, the worker's decoder, billiard's pickle to a pool process, and back out through
the API's response encoder; its result takes most of that road back. Python's `json`
accepts values that some of those hops cannot carry, and each one broke the queue once:

- deep nesting: pydantic's encoder gives up past ~255 levels (a 500 after the job was
  written) and billiard's pickle past ~490 (the worker's main process died, and the
  restored message killed every restart);
- lone surrogates (`"\\ud800"`): valid JSON escapes, but not UTF-8, so no response or
  Redis command can encode them;
- NaN and Infinity: Python writes them, no other JSON reader accepts them;
- integers past 64 bits: Python reads at most 4,300 digits, and no other client
  (JavaScript, Go, a database column) keeps more than 64 bits;
- non-string keys and non-JSON types: `json.dumps` turns `{1: x}` into `{"1": x}` and
  refuses sets, so what runs would not be what was sent.

`check_json` is called once per dispatch, in the code path every entry point shares
(`DispatchRequest.check`), before anything is written; and on every result a worker
records. It walks the value once, with no copies.
"""

from __future__ import annotations

import math
from typing import Any

from pocketqueue.errors import InvalidRequest

# The range of a 64-bit integer, signed or unsigned: what every JSON client can hold.
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1


class PayloadError(InvalidRequest):
    """A value that cannot travel as a job's arguments or result; `detail` says where and why."""

    title = "Payload cannot be carried"
    slug = "invalid-payload"


class _Bad(Exception):
    """Raised deep in the walk; each container on the way out adds its step to `path`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def check_json(value: Any, where: str, max_depth: int) -> None:
    """Raise PayloadError unless `value` is strict JSON nested at most `max_depth` levels.

    `where` names the value in the message (e.g. "kwargs"); a dict or list is one level,
    so `{"a": {"b": 1}}` is nested 2 levels deep.
    """
    try:
        _check(value, max_depth, max_depth)
    except _Bad as bad:
        path = where + "".join(reversed(bad.path))
        raise PayloadError(f"{path}: {bad.reason}") from None


def _check(value: Any, levels_left: int, max_depth: int) -> None:
    if isinstance(value, dict | list | tuple):
        if levels_left == 0:
            raise _Bad(f"nested deeper than {max_depth} levels (QUEUE_MAX_JSON_DEPTH)")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _Bad(f"object keys must be strings, not {type(key).__name__} ({key!r})")
                _step(item, levels_left, max_depth, f"[{_quote(key)}]", key)
        else:
            for index, item in enumerate(value):
                _step(item, levels_left, max_depth, f"[{index}]")
    else:
        _check_scalar(value)


def _check_scalar(value: Any) -> None:
    if isinstance(value, str):
        _check_text(value)
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise _Bad("integers must fit in 64 bits (-2**63 to 2**64-1); send larger numbers as strings")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("NaN and Infinity are not JSON")
    else:
        raise _Bad(f"{type(value).__name__} is not a JSON type (use strings, numbers, booleans, null, lists, objects)")


def _step(item: Any, levels_left: int, max_depth: int, step: str, key: str | None = None) -> None:
    try:
        if key is not None:
            _check_text(key)
        _check(item, levels_left - 1, max_depth)
    except _Bad as bad:
        bad.path.append(step)
        raise


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad("text must be valid Unicode (a lone surrogate such as \\ud800 cannot be encoded)") from None


def _quote(key: str) -> str:
    # The path is for people: show the key, made printable, without echoing a huge one.
    # (repr escapes what cannot be printed, lone surrogates included.)
    return repr(key if len(key) <= 40 else key[:37] + "...")
