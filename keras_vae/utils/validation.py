"""Checks at the edge: argparse types, numeric ranges, output paths, and short echoes of bad values.

Everything here is pure Python (no TensorFlow) and raises ``ConfigError`` / ``ArtifactError`` (or
``argparse.ArgumentTypeError`` inside argparse types), so that every bad input becomes one line
that names the problem and the fix.
"""
from __future__ import annotations

import argparse
import errno
import ipaddress
import math
import os
import reprlib
import socket
from pathlib import Path

from keras_vae.errors import ArtifactError, ConfigError

SEED_MAX = 2 ** 32 - 1  # NumPy's global seed (keras.utils.set_random_seed) takes 0 .. 2^32 - 1
PORT_MAX = 65535
ECHO_LIMIT = 80  # characters of a user's value echoed in an error message
MESSAGE_LIMIT = 1000  # characters of any one-line error message the CLI prints
IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = ECHO_LIMIT, ECHO_LIMIT, ECHO_LIMIT


def short(value, limit: int = ECHO_LIMIT) -> str:
    """A bounded ``repr(value)`` of at most ``limit`` characters: containers are cut by depth and
    length before they are printed (a YAML anchor bomb shares one list 9^9 times: a full repr
    would be hundreds of MB)."""
    try:
        text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named
        text = f"<{type(value).__name__}>"
    if isinstance(value, int) and not isinstance(value, bool) and len(text) > limit:
        text = text[: limit - 3] + "..."
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message on one line (whitespace runs collapsed), at most ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- argparse types (argparse turns ArgumentTypeError into "argument --x: MESSAGE", exit 2) ----------
def _int(text: str, flag: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {short(text)}") from None


def seed_type(text: str) -> int:
    """A random seed: an integer in [0, 2^32 - 1]."""
    value = _int(text, "seed")
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"seed must be an integer in [0, {SEED_MAX}] (2^32 - 1), got {value}")
    return value


def port_type(text: str) -> int:
    """A TCP port: an integer in [0, 65535] (0 lets the system pick a free one)."""
    value = _int(text, "port")
    if not 0 <= value <= PORT_MAX:
        raise argparse.ArgumentTypeError(f"port must be in [0, {PORT_MAX}] (0 picks a free port), got {value}")
    return value


def bounded_int(low: int, high: int, what: str = "value"):
    """argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        value = _int(text, what)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be an integer in [{low}, {high}], got {value}")
        return value

    parse.__name__ = f"int[{low},{high}]"
    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (rejects nan and inf)."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {short(text)}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {short(text)}")
    return value


# -- values ------------------------------------------------------------------------------------------
def check_seed(name: str, value) -> int:
    """ConfigError unless ``value`` is an integer seed in [0, 2^32 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{name} must be an integer in [0, {SEED_MAX}] (2^32 - 1), got {short(value)}")
    return value


def check_host(host: str) -> str:
    """ConfigError unless ``host`` is an IP address or a name this machine can resolve (no network lookup
    for literal addresses)."""
    if not isinstance(host, str) or not host or len(host) > 253:
        raise ConfigError(f"--host {short(host)} is not a host name or IP address: use e.g. 127.0.0.1")
    try:
        if all(part.isdigit() for part in host.split(".")):  # looks like IPv4: check it without any lookup
            ipaddress.IPv4Address(host)
        else:
            socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError) as exc:  # AddressValueError is a ValueError
        raise ConfigError(f"--host {short(host)} is not a valid address or a name this machine resolves "
                          f"({exc}): use e.g. 127.0.0.1 or 0.0.0.0") from None
    return host


def listen_error(host: str, port: int, exc: OSError) -> ArtifactError:
    """The one-line error for a server that cannot bind ``host:port``."""
    if exc.errno == errno.EADDRINUSE:
        return ArtifactError(f"port {port} on {host} is already in use: stop the other server or pass "
                             "another --port (0 picks a free one)")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ArtifactError(f"no permission to listen on {host}:{port} (ports below 1024 need root): "
                             "pass a --port >= 1024")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ArtifactError(f"{host} is not an address of this machine: pass --host 127.0.0.1 (or 0.0.0.0 "
                             "for every interface)")
    return ArtifactError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port")


# -- output paths --------------------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if os.path.lexists(parent):
            return parent
    return Path(".")


def _check_writable_folder(folder: Path, what: str, flag: str) -> None:
    """ArtifactError unless files can be created in ``folder`` (an existing folder): tried, not guessed
    (``os.access`` says yes to root even on read-only or virtual file systems such as /proc)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".keras-vae-write-test-", dir=folder)
    except OSError as exc:
        raise ArtifactError(f"{flag} {short(str(what))}: cannot create files in {str(folder)!r} "
                            f"({exc.strerror or exc}): choose a writable folder") from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path, flag: str = "--out") -> Path:
    """ArtifactError unless ``path`` is (or can become) a writable folder; creates nothing."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise ArtifactError(f"{flag} {str(path)!r} is a file, not a folder: pass a folder name")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ArtifactError(f"{flag} {str(path)!r}: {str(existing)!r} is a file, so no folder can be made "
                            "there: pass another folder name")
    _check_writable_folder(existing, str(path), flag)
    return path


def check_output_file(path, flag: str = "--out", suffixes=None) -> Path:
    """ArtifactError unless ``path`` names a file (not a folder) that can be written; with ``suffixes``
    (e.g. IMAGE_SUFFIXES) its extension must be one of them."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(("/", os.sep)):
        hint = f" such as {str(path / ('out' + next(iter(suffixes))))!r}" if suffixes else ""
        raise ArtifactError(f"{flag} {str(path)!r} is a folder: pass a file name{hint}")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ArtifactError(f"{flag} {str(path)!r}: unknown image type {path.suffix or '(no extension)'!r}: "
                            f"use a name ending in {', '.join(sorted(suffixes))}")
    existing = _nearest_existing(path.parent if str(path.parent) else Path("."))
    if not existing.is_dir():
        raise ArtifactError(f"{flag} {str(path)!r}: {str(existing)!r} is a file, not a folder")
    _check_writable_folder(existing, str(path), flag)
    return path
