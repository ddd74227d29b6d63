"""Atomic file writes: a crash or a full disk never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` to a temp file in the same folder, fsync it, then rename over ``path``.

    ``data`` may be a sequence of chunks, written one by one: a large dataset's lines then
    never need to be joined into one more full-size copy in memory.

    The rename is atomic on POSIX and on NTFS (``os.replace``), so readers see either the
    old file or the new one, never a mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, (bytes, bytearray, memoryview)):
                fh.write(data)
            else:
                fh.writelines(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def write_nowhere(stream) -> None:
    """Point ``stream``'s file descriptor at devnull, after its reader went away (BrokenPipeError).

    Python's recipe (signal module docs): later writes, and the flush at interpreter exit,
    then go nowhere instead of raising again. A stream without a descriptor (captured by a
    test) is left as it is.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(devnull)

