"""JSON bodies with big arrays of numbers, read and written without one Python float per number.

``json.loads`` turns every number of a request into a Python float (32 bytes with its list slot), so
a 57 MB predict body of image pixels grew the contract server by 627 MB before NumPy saw it, and
``json.dumps(array.tolist())`` does the same for the response. Here:

- :func:`loads` returns what ``json.loads`` returns, except that every array of JSON numbers that is
  rectangular (every row the same length, at every depth), at least ``min_array_bytes`` long as text
  and at most :data:`MAX_RANK` deep comes back as a :class:`NumericArray`: its shape, and its text
  left in the body. ``np.asarray(value, dtype)`` parses it a few MiB of text at a time, straight into
  an array of that dtype. Everything else (short bodies, strings, objects, ragged or non-numeric
  arrays) goes through ``json.loads`` unchanged. Grammar: numbers follow JSON's (no ``NaN``,
  ``Infinity``, leading zeros, ``+``, ``1.``); values equal ``json.loads`` + ``np.asarray`` (both round
  the decimal to float64 first; integers beyond 2^53 may differ by that one rounding).
- :func:`iter_json` yields the bytes of ``json.dumps(payload)`` (default separators), a slice of rows of
  each NumPy array at a time, so a response is never held as Python floats or as one string.
"""
from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["MAX_RANK", "MIN_ARRAY_BYTES", "NumericArray", "Rows", "iter_json", "loads"]

MIN_ARRAY_BYTES = 64 << 10  # shorter arrays: json.loads is as lean (and the body is small)
MAX_RANK = 32
CHUNK_BYTES = 1 << 20  # text parsed (or formatted) at a time: a few copies of it are the overhead

_WS = b" \t\n\r"
_NUMBER = rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
# an array body: ']' and whitespace; '[' or ',' followed by a number (then ']' or ',') or by '[' -- so no
# empty slot ("[1, , 2]": np.fromstring would read it as -1) and no number anywhere else
_ARRAY_TOKENS = re.compile(rb"(?:[ \t\n\r\]]+|[\[,][ \t\n\r]*(?:" + _NUMBER + rb"(?=[ \t\n\r]*[\],])|(?=\[)))*+")
_NEXT = re.compile(rb'["\[]')  # the next string or array
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"', re.DOTALL)
_RUN = re.compile(rb"[\[\]0-9 \t\n\r,.eE+\-]*+")  # the characters an array of numbers is made of
_NOT_SEPARATORS = _WS + b"0123456789.eE+-"
_SEPARATORS = b"[],"


class NumericArray:
    """A rectangular array of JSON numbers, still as text: ``shape`` is known, values are parsed by
    ``np.asarray(value, dtype)`` (or :meth:`to_numpy`); a malformed number or a count that does not fill
    ``shape`` raises ValueError then."""

    __slots__ = ("_text", "end", "shape", "start")

    def __init__(self, text: bytes, start: int, end: int, shape: tuple[int, ...]):
        self._text, self.start, self.end, self.shape = text, start, end, tuple(shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"NumericArray(shape={self.shape}, {self.end - self.start} bytes of text)"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.to_numpy(np.float64 if dtype is None else dtype)

    def to_numpy(self, dtype=np.float64, chunk_bytes: int | None = None) -> np.ndarray:
        """The values as a new array of ``dtype``, parsed ``chunk_bytes`` (default CHUNK_BYTES) of text at a time."""
        dtype = np.dtype(dtype)
        chunk_bytes = chunk_bytes or CHUNK_BYTES
        out = np.empty(self.size, dtype)
        text, pos, filled = self._text, self.start, 0
        while pos < self.end:
            stop = self.end
            if pos + chunk_bytes < self.end:  # cut after a comma: every piece holds whole numbers
                cut = text.rfind(b",", pos, pos + chunk_bytes)
                if cut < 0:
                    cut = text.find(b",", pos + chunk_bytes, self.end)
                stop = self.end if cut < 0 else cut + 1
            piece = bytes(text[pos:stop].translate(None, b"[]").strip(_WS + b","))  # bytes: fromstring's type
            pos = stop
            if not piece:
                continue
            if dtype.kind in "fc":
                values = np.fromstring(piece, dtype=np.float64, sep=",")  # ValueError on anything else
            else:  # integers, booleans: exactly what np.asarray does with json.loads' Python numbers
                values = np.asarray(json.loads(b"[" + piece + b"]"), dtype=dtype)
            if filled + values.size > out.size:
                break
            with np.errstate(over="ignore", invalid="ignore"):  # float32 overflow -> inf, refused by the caller
                out[filled:filled + values.size] = values
            filled += values.size
        if filled != out.size or pos < self.end:
            raise ValueError(f"a JSON array of shape {list(self.shape)} does not hold {out.size} numbers")
        return out.reshape(self.shape)


class Rows:
    """Row-format outputs for :func:`iter_json`: ``[{name: arrays[name][i], ...} for every row i]``."""

    __slots__ = ("arrays",)

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays


# --------------------------------------------------------------------------------------------- read
def loads(raw: bytes, min_array_bytes: int = MIN_ARRAY_BYTES,
          parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(raw)``, with long rectangular arrays of numbers as :class:`NumericArray` (see the module).

    ``parse_constant`` is json.loads' (called for ``NaN``, ``Infinity``, ``-Infinity``). Raises ValueError
    (json.JSONDecodeError) or RecursionError for what json.loads refuses.
    """
    regions = _find_arrays(raw, min_array_bytes) if len(raw) >= min_array_bytes else []
    if not regions:
        return json.loads(raw, parse_constant=parse_constant)
    tag = "\0keras-vae-array:" + secrets.token_hex(8) + ":"
    parts, last, by_tag, shifts = [], 0, {}, []  # shifts: (offset in text, bytes the text is shorter)
    for i, region in enumerate(regions):
        placeholder = json.dumps(tag + str(i)).encode()
        parts += [raw[last:region.start], placeholder]
        by_tag[tag + str(i)] = region
        last = region.end
        shifts.append((region.start - (shifts[-1][1] if shifts else 0) + len(placeholder),
                       (shifts[-1][1] if shifts else 0) + region.end - region.start - len(placeholder)))
    parts.append(raw[last:])
    try:
        return _put_back(json.loads(b"".join(parts), parse_constant=parse_constant), by_tag)
    except json.JSONDecodeError as e:  # say where in the body, not in the text with placeholders
        at = e.pos + max([shift for offset, shift in shifts if offset <= e.pos], default=0)
        raise _decode_error(e.msg, raw, min(at, len(raw))) from None


def _decode_error(msg: str, raw: bytes, pos: int) -> json.JSONDecodeError:
    line = raw.count(b"\n", 0, pos) + 1
    column = pos - raw.rfind(b"\n", 0, pos)
    error = json.JSONDecodeError(msg, "", 0)
    error.args = (f"{msg}: line {line} column {column} (char {pos})",)
    error.pos, error.lineno, error.colno = pos, line, column
    return error


def _put_back(value, by_tag: dict):
    """Replace the placeholder strings by their arrays (iteratively: depth is json.loads' to bound)."""
    if isinstance(value, str):
        return by_tag.get(value, value)
    stack = [value]
    while stack:
        item = stack.pop()
        pairs = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in list(pairs):
            if isinstance(key, str) and key in by_tag:
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", "", 0)
            if isinstance(child, str) and child in by_tag:
                item[key] = by_tag[child]
            elif isinstance(child, (dict, list)):
                stack.append(child)
    return value


def _find_arrays(raw: bytes, min_array_bytes: int) -> list[NumericArray]:
    """The outermost long rectangular arrays of numbers in ``raw``, outside strings, in order."""
    found, pos = [], 0
    while True:
        m = _NEXT.search(raw, pos)
        if m is None:
            return found
        start = m.start()
        if raw[start] == 0x22:  # a string: skip it whole
            s = _STRING.match(raw, start)
            if s is None:
                return found  # unterminated: json.loads reports it
            pos = s.end()
            continue
        run_end = _RUN.match(raw, start).end()
        if run_end - start < min_array_bytes:
            pos = start + 1
            continue
        region = _numeric_array(raw, start, run_end)
        if region is not None and region.end - start >= min_array_bytes:
            found.append(region)
            pos = region.end
        else:  # ragged, empty or too deep: left to json.loads whole (no quadratic re-scan of the run)
            pos = run_end


def _numeric_array(raw: bytes, start: int, run_end: int) -> NumericArray | None:
    """The rectangular array of numbers that starts at ``raw[start] == '['`` (within ``run_end``), or None."""
    skeleton = b"".join(raw[i:min(i + CHUNK_BYTES, run_end)].translate(None, _NOT_SEPARATORS)  # '[', ']', ','
                        for i in range(start, run_end, CHUNK_BYTES))
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    if not 1 <= rank <= MAX_RANK:
        return None
    shape = [0] * rank
    leaf_end = skeleton.find(b"]", rank)
    if leaf_end < 0 or skeleton[rank:leaf_end] != b"," * (leaf_end - rank):
        return None
    shape[-1] = leaf_end - rank + 1  # commas + 1 (an empty row is refused by the count when parsed)
    brackets = 1  # '[' in one sub-array of the level below
    for level in range(rank - 2, -1, -1):  # level 0 is the outermost
        close = skeleton.find(b"]" * (rank - level), level)
        if close < 0:
            return None
        end = close + rank - level  # just after this level's first array
        opens = skeleton.count(b"[", level, end) - 1
        if opens < 1 or opens % brackets:
            return None
        shape[level] = opens // brackets
        brackets = 1 + shape[level] * brackets
    canonical = _skeleton(shape)
    if not skeleton.startswith(canonical):
        return None
    end = _after_separator(raw, start, run_end, len(canonical))
    tokens = _ARRAY_TOKENS.match(raw, start, end)
    if tokens is None or tokens.end() != end:
        return None
    return NumericArray(raw, start, end, tuple(shape))


def _skeleton(shape) -> bytes:
    """The brackets and commas of a JSON array of ``shape`` (numbers left out): (2, 3) -> '[[,,],[,,]]'."""
    out = b"[" + b"," * (shape[-1] - 1) + b"]"
    for n in reversed(shape[:-1]):
        out = b"[" + b",".join([out] * n) + b"]"
    return out


def _after_separator(raw: bytes, start: int, stop: int, n: int) -> int:
    """The offset just after the ``n``-th of '[', ']', ',' in ``raw[start:stop]`` (counted a chunk at a time)."""
    pos, seen = start, 0
    while pos < stop:
        chunk = raw[pos:min(pos + (1 << 16), stop)]  # small: the positions below take 8 bytes per separator
        here = len(chunk) - len(chunk.translate(None, _SEPARATORS))
        if seen + here >= n:
            codes = np.frombuffer(chunk, np.uint8)
            where = np.flatnonzero((codes == ord("[")) | (codes == ord("]")) | (codes == ord(",")))
            return pos + int(where[n - seen - 1]) + 1
        seen += here
        pos += len(chunk)
    raise AssertionError("the skeleton holds more separators than the text")  # unreachable


# -------------------------------------------------------------------------------------------- write
def iter_json(payload, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes of ``json.dumps(payload)`` in pieces; NumPy arrays (and :class:`Rows`) are written as
    their ``tolist()`` would be, a slice of rows of about ``chunk_bytes`` at a time."""
    if isinstance(payload, np.ndarray):
        yield from _iter_array(payload, chunk_bytes)
    elif isinstance(payload, Rows):
        yield from _iter_rows(payload.arrays, chunk_bytes)
    elif isinstance(payload, dict):
        yield b"{"
        for i, (key, value) in enumerate(payload.items()):
            yield (", " if i else "").encode() + json.dumps(str(key)).encode() + b": "
            yield from iter_json(value, chunk_bytes)
        yield b"}"
    else:
        yield json.dumps(payload).encode()


def _slices(batch: int, row_items: int, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    step = max(1, chunk_bytes // max(1, 24 * row_items))  # ~24 bytes per formatted float
    for i in range(0, batch, step):
        yield i, min(i + step, batch)


def _iter_array(array: np.ndarray, chunk_bytes: int) -> Iterator[bytes]:
    if array.ndim == 0 or array.shape[0] == 0:
        yield json.dumps(array.tolist()).encode()
        return
    yield b"["
    row_items = math.prod(array.shape[1:])
    for i, j in _slices(array.shape[0], row_items, chunk_bytes):
        text = json.dumps(array[i:j].tolist())
        yield (", " if i else "").encode() + text[1:-1].encode()
    yield b"]"


def _iter_rows(arrays: dict[str, np.ndarray], chunk_bytes: int) -> Iterator[bytes]:
    batch = len(next(iter(arrays.values())))
    if batch == 0:
        yield b"[]"
        return
    yield b"["
    row_items = sum(math.prod(a.shape[1:]) for a in arrays.values())
    for i, j in _slices(batch, row_items, chunk_bytes):
        lists = {k: a[i:j].tolist() for k, a in arrays.items()}
        text = json.dumps([{k: lists[k][r] for k in lists} for r in range(j - i)])
        yield (", " if i else "").encode() + text[1:-1].encode()
    yield b"]"
