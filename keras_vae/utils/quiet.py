"""Hide TensorFlow's start-up lines from the CLI's stderr, keep everything else.

On import TensorFlow writes lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1795843882.439441   13589 port.cc:153] oneDNN custom operations are on ...
    I0000 00:00:1795843882.439985   13589 cudart_stub.cc:31] Could not find cuda drivers on your machine ...
    E0000 00:00:1795843913.116068   13589 cuda_platform.cc:52] failed call to cuInit: ... (303)

from C++ straight to file descriptor 2, partly before ``TF_CPP_MIN_LOG_LEVEL`` is read, so an
environment variable alone cannot hide them. ``StderrFilter`` puts a pipe on descriptor 2 and a
thread copies every line to the real stderr except those ``is_startup_noise`` recognises: C++ INFO
and WARNING lines (which ``TF_CPP_MIN_LOG_LEVEL=2`` hides once logging is initialised), and the
ERROR lines a machine without a GPU always prints (cuInit, CUDA plugin registration). Other
errors, Python warnings and tracebacks pass unchanged. The CLI's ``-v`` turns the filter off.
"""
from __future__ import annotations

import os
import re
import sys
import threading

_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPP_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.\-]+:\d+\] (.*)$")
_GPU_ABSENT = re.compile(r"cuInit|Could not find cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory|"
                         r"computation placer already registered|TF-TRT Warning|cuda_dnn|cuda_fft|cuda_blas|"
                         # oneDNN's notice that int32 ops use Eigen on CPUs without AVX-512: logged as an
                         # ERROR, harmless (seen on every VAEGAN training on AVX2/AMX-less kernels)
                         r"oneDNN supports DT_INT32 only on platforms with AVX-512")


_ORIGINAL: list[int] = []  # descriptor 2 as it was before the innermost active StderrFilter


def original_stderr() -> int:
    """A descriptor of the real stderr while a StderrFilter is active (else 2): for a child process whose
    lines must appear while this process cannot run the filter's thread (a C call holding the GIL)."""
    return _ORIGINAL[-1] if _ORIGINAL else 2


def is_startup_noise(line: str) -> bool:
    """True for TensorFlow's C++ INFO/WARNING lines and its no-GPU ERROR lines; False for anything else."""
    line = line.rstrip("\r\n")
    if line == _ABSL_PREAMBLE:
        return True
    match = _CPP_LINE.match(line)
    if match is None:
        return False
    level, message = match.groups()
    return level in "IW" or (level == "E" and _GPU_ABSENT.search(message) is not None)


class StderrFilter:
    """Context manager: while active, lines written to file descriptor 2 pass through ``is_startup_noise``."""

    def __init__(self, keep=lambda line: not is_startup_noise(line)) -> None:
        self.keep = keep
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "StderrFilter":
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):
            return self  # no real descriptor 2 (embedded interpreters): leave stderr alone
        os.dup2(write_end, 2)
        os.close(write_end)
        self._saved = saved
        _ORIGINAL.append(saved)
        self._thread = threading.Thread(target=self._pump, args=(read_end, os.dup(saved)), daemon=True,
                                        name="keras-vae-stderr-filter")
        self._thread.start()
        return self

    def _pump(self, read_end: int, out_fd: int) -> None:
        with os.fdopen(read_end, "rb") as source, os.fdopen(out_fd, "wb", buffering=0) as sink:
            for raw in source:
                if self.keep(raw.decode("utf-8", errors="replace")):
                    sink.write(raw)

    def __exit__(self, *exc) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the thread sees EOF and drains
        if self._saved in _ORIGINAL:
            _ORIGINAL.remove(self._saved)
        os.close(self._saved)
        self._saved = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
