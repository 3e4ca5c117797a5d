"""Writing files so that a crash never leaves half of one, and telling what a path is."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from charseq.errors import SaveError


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only, for one-line errors."""
    return str(exc).split("\n", 1)[0]


def atomic_write(path: Path, write: Callable[[BinaryIO], object], durable: bool = True,
                 temp_tag: str | None = None, follow_links: bool = True) -> Path:
    """Write a file whole or not at all: into a new temporary file beside `path`, synced,
    then renamed over it. The file gets the permissions of any new file (the umask's).
    `temp_tag` goes in the temporary file's name (`.NAME.TAG.XXXXXXXX.tmp`), to tell it from
    others'. A symlink at `path` is written through to the file it names (which is what a
    user's output checks looked at), or, without `follow_links` (a shared directory, where
    anyone may have planted it), replaced by the file, which then has the permissions of any
    new file.

    An OSError becomes a SaveError naming the path and the reason; `path` still holds
    whatever it held before.
    """
    name = shown(path)
    # Checked again here, at the moment of writing: a link to nowhere planted since is never followed.
    if dangling(path if follow_links else Path(path).parent):
        raise SaveError(name, "it (or a directory on its way) is a symlink to a place that does not exist")
    path = Path(os.path.realpath(path)) if follow_links else Path(os.path.realpath(Path(path).parent)) / Path(path).name
    directory = path.parent if str(path.parent) else Path(".")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise SaveError(name, exc.strerror or str(exc), exc) from None
    if mode is not None and stat.S_ISLNK(mode):
        mode = None  # (not following links: the link itself is replaced)
    if mode is not None and not stat.S_ISREG(mode):
        raise SaveError(name, "it is not a regular file")  # never replace a device node or a directory
    try:
        fd, temp = _new_file(directory, path.name if temp_tag is None else f"{path.name}.{temp_tag}")
    except OSError as exc:
        raise SaveError(name, exc.strerror or str(exc), exc) from None
    try:
        if follow_links and mode is not None and stat.S_ISREG(mode):
            # A user's file replaced keeps its permissions, as an editor keeps them; in a shared
            # directory a mode left there by someone else (0666, 000) is never taken on.
            os.chmod(temp, stat.S_IMODE(mode))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise SaveError(name, exc.strerror or str(exc), exc) from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(directory)
    return path


def publish(path: Path, data: bytes, *, replace: bool = False, mode: int = 0o666,
            temp_directory: Path | None = None) -> bool:
    """Put a small file holding `data` at `path` whole, so that a reader sees all of it or
    nothing: written to a temporary file (in `temp_directory`, default beside `path`, on the
    same file system), synced, then linked into place, the first one there winning (False
    when a file is there already), or with `replace` renamed over whatever is there. `mode`
    is the new file's, before the umask. OSError is the caller's to handle.

    atomic_write is the other way to write whole: it replaces a user's file keeping its
    permissions and says what went wrong as a SaveError; this is for charseq's own small
    files that more than one process may make at once (the key, a study's marker)."""
    fd, temp = _new_file(temp_directory or path.parent, path.name, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)  # fails, rather than replaces, when there is one
        except FileExistsError:
            return False
        return True
    finally:
        Path(temp).unlink(missing_ok=True)


def _new_file(directory: Path, name: str, mode: int = 0o666) -> tuple[int, str]:
    """A new hidden file `.NAME.XXXXXXXX.tmp` in `directory`, created with `mode` (0666: the
    umask decides its permissions, where mkstemp's are always 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temp = str(directory / f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temp, flags, mode), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def kind_of(path: Path) -> str | None:
    """None for a regular file or a missing path; otherwise what it is, for messages."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def shown(path: str | os.PathLike) -> str:
    """A path for messages: relative to the working directory when it lies below it."""
    text = os.fspath(path)
    try:
        relative = os.path.relpath(text)
    except ValueError:  # another drive
        return text
    return relative if not relative.startswith(os.pardir) else text


def dangling(path: str | os.PathLike) -> bool:
    """Whether the path, or a directory on its way, is a symlink to nothing: writing through
    it would create files where someone else chose."""
    current = os.path.abspath(os.fspath(path))
    while True:
        if os.path.islink(current) and not os.path.exists(current):
            return True
        parent = os.path.dirname(current)
        if parent == current or os.path.exists(current):
            return False
        current = parent
