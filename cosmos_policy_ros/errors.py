"""The project's error base class and the one line every node and CLI prints for an error.

Every error type the project raises (``ConfigError``, ``CheckpointError``, ``BagError`` ...) also
derives from :class:`CosmosError`, next to the builtin base it always had (``ValueError``,
``RuntimeError``, ``KeyError``), so ``except ValueError`` keeps working. The outermost layer
(``nodes/common.py:run_node``, a CLI ``main``) catches ``EXPECTED_ERRORS`` and prints
``error: {one_line(exc)}`` instead of a traceback: the message already names the file, topic or
parameter at fault and the cause. Anything else is a bug and keeps its traceback.

This module imports nothing of the package, so every module can import it.
"""
from __future__ import annotations

import re
import sys
from typing import Callable


class CosmosError(Exception):
    """Base of the project's error types: the message is one line naming what is at fault and why."""


# What an outermost layer reports in one line: the project's errors and the OS's (a missing or
# unreadable file: OSError carries the file name).
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (CosmosError, OSError)

# CSI sequences (colours, bold: "\x1b[1m"), other two-character escapes, then other control characters
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_CHARS = 500


def run_main(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None, prog: str = "",
             code: int = 1) -> int:
    """``main(argv)``'s exit status; a project or OS error escaping it becomes one stderr line and ``code``.

    The line is ``<prog>: error: <one_line(exc)>`` (``error: ...`` without ``prog``). The guard of
    every CLI entry point (``cli.py:main``, ``python -m`` of a tool); other exceptions keep their traceback.
    """
    try:
        return int(main(argv) or 0)
    except EXPECTED_ERRORS as exc:
        print(f"{prog + ': ' if prog else ''}error: {one_line(exc)}", file=sys.stderr, flush=True)
        return code


def clean(text: str) -> str:
    """``text`` without ANSI escapes or control characters; newlines and tabs become spaces, runs of blanks one."""
    text = _ANSI.sub("", text).replace("\t", " ")
    return " ".join(_CONTROL.sub("", line).strip() for line in text.splitlines() if line.strip())


def one_line(exc: BaseException | str, limit: int = MAX_CHARS) -> str:
    """The first meaningful line of an error's message, without ANSI escapes, at most ``limit`` characters.

    An OSError with a file name reads ``<file>: <reason>``; a KeyError its message unquoted; an
    empty message the exception's type name.
    """
    if isinstance(exc, str):
        text = exc
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
        if exc.filename2 is not None:
            text += f" (-> {exc.filename2})"
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    lines = [ln for ln in (clean(raw) for raw in _ANSI.sub("", text).splitlines()) if ln]
    line = lines[0] if lines else (type(exc).__name__ if isinstance(exc, BaseException) else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


# First bytes -> what a file is, for "expected X, it looks like Y" messages (most specific first).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x89MCAP", "an MCAP file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"PK\x03\x04", "a zip archive (torch.save)"),
    (b"\x1f\x8b", "a gzip file"),
)


def looks_like(head: bytes) -> str:
    """What a file whose first bytes are ``head`` (16 are plenty) appears to be, e.g. ``a Python pickle``."""
    if not head:
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000:
        return "a safetensors file"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "a Python pickle"
    if any(b < 9 or (13 < b < 32 and b != 27) for b in head):
        return "binary data"
    try:
        text = head.decode("utf-8").lstrip()
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut off at the end of `head`
            return "binary data"
        text = head[: exc.start].decode("utf-8").lstrip()
    return "JSON" if text[:1] in ("{", "[") else "text"


def file_head(path, n: int = 16) -> bytes:
    """The first ``n`` bytes of ``path`` (b"" if it cannot be read: the caller's own error says why)."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""
