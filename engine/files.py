"""Atomic file writes: a crash or a full disk never leaves half a file behind."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import: os.umask can only be read by setting it


UNICODE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))
"""Byte-order marks of the encodings text files come in besides UTF-8 (PowerShell's ``>`` and
Notepad's "Unicode" write UTF-16 LE with one). UTF-32's come first: they start like UTF-16's."""


def foreign_encoding(head: bytes) -> str | None:
    """``"UTF-16"`` or ``"UTF-32"`` when ``head`` (a file's first bytes) starts with that
    encoding's byte-order mark, else None."""
    return next((name for bom, name in UNICODE_BOMS if head.startswith(bom)), None)


def atomic_write_bytes(path: Path, data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` to a temp file in the same folder, fsync it, then rename over ``path``.

    ``data`` may be a sequence of chunks, written one by one: a large dataset's lines then
    never need to be joined into one more full-size copy in memory.

    The rename is atomic on POSIX and on NTFS (``os.replace``), so readers see either the
    old file or the new one, never a mix. The file keeps what a plain write would keep: its
    permissions (a new file gets the umask's, not the temp file's 0600), and a symlink stays a
    link (its target is written). A read-only file is refused (PermissionError), as an editor
    refuses it, not silently replaced; so is one this user can't write.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    else:
        if not mode & 0o222 or not os.access(path, os.W_OK):  # the mode too: root passes os.access
            raise PermissionError(errno.EACCES, f"the file is read-only ({stat.filemode(mode)[1:]})", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if os.name == "posix":
            os.fchmod(fd, mode)
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


def folder_bytes(path: str | os.PathLike) -> int:
    """The bytes of the files under ``path`` (links not followed, unreadable entries skipped)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            continue
    return total
