"""Which checkpoints charseq wrote here, so that what they record may be trusted.

A run's description names files (its checkpoint, metrics log, checkpoint paths, corpus).
A checkpoint from elsewhere, or an edited one, could name any file, and a checksum does
not help: anyone can compute one. So each checkpoint's checksum (which covers every array
and all the metadata) is sealed with an HMAC under a key only this user's charseq holds:
a random file of 32 bytes, mode 0600, in a directory of the user's own (CHARSEQ_STATE,
else $XDG_STATE_HOME/charseq, else ~/.local/state/charseq). A resumed run from a sealed
checkpoint continues its run, outputs and all; one from an unsealed checkpoint keeps none
of the paths it records (see charseq.training.run).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

from charseq.files import publish

_KEY_NAME = "run-key"
_KEY_BYTES = 32


def state_dir() -> Path:
    """Where charseq keeps its key: not the cache, which users clear. CHARSEQ_STATE must be
    absolute (a relative one would name another directory from every working directory)."""
    chosen = os.environ.get("CHARSEQ_STATE")
    if chosen and os.path.isabs(chosen):
        return Path(chosen)
    base = os.environ.get("XDG_STATE_HOME")
    if not base or not os.path.isabs(base):
        base = str(Path.home() / ".local" / "state")
    return Path(base) / "charseq"


def _fallback_dir() -> Path:
    """A private directory of the user's in the temporary directory, when the state
    directory cannot be made (a home that does not exist)."""
    uid = os.geteuid() if hasattr(os, "geteuid") else "user"
    return Path(tempfile.gettempdir()) / f"charseq-state-{uid}"


@functools.cache
def _warn_fallback(directory: Path) -> None:
    import warnings

    from charseq.errors import CharseqWarning

    warnings.warn(f"charseq cannot keep its key in {str(state_dir())!r}; it keeps it in {str(directory)!r}, which "
                  "may not last (set CHARSEQ_STATE to a directory of yours)", CharseqWarning, stacklevel=4)


def problem() -> str | None:
    """Why checkpoints cannot be sealed here, for messages; None when they can."""
    if _key(create=False) is not None:
        return None
    directory = _directory()
    if directory is None:
        return (f"charseq has no usable key to seal checkpoints with (in {str(state_dir())!r}: it must be a directory "
                "of yours that no one else may write, holding a key file readable by you alone; set CHARSEQ_STATE to "
                "such a directory)")
    if not os.path.lexists(directory / _KEY_NAME):
        return (f"charseq has no key in {str(directory)!r} yet (it makes one when it first seals a file), so nothing "
                "was sealed with it")
    return (f"charseq has no usable key to seal checkpoints with ({str(directory / _KEY_NAME)!r} must be a file of "
            f"{_KEY_BYTES} bytes readable by you alone: mend it with chmod 600)")


def _private(info: os.stat_result) -> bool:
    """Owned by this user, and nobody else may write it (the key file: nor read it)."""
    owner = info.st_uid == os.geteuid() if hasattr(os, "geteuid") else True
    return owner and not info.st_mode & 0o022


def _directory() -> Path | None:
    for directory in (state_dir(), _fallback_dir()):
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(directory)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and _private(info):
            if directory != state_dir():
                _warn_fallback(directory)
            return directory
        if directory == state_dir():
            return None  # a state directory of the wrong kind is a mistake to say, not to route around
    return None


def _read_key(path: Path) -> bytes | None:
    """The key, if the file is one: regular, private, exactly 32 bytes (never a device or a
    link that could be made to read without end)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not _private(info) or info.st_mode & 0o077 or \
                info.st_size != _KEY_BYTES:
            return None
        key = os.read(fd, _KEY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return key if len(key) == _KEY_BYTES else None


def _key(create: bool) -> bytes | None:
    directory = _directory()
    if directory is None:
        return None
    path = directory / _KEY_NAME
    key = _read_key(path)
    if key is not None or not create:
        return key
    # Written to a file of its own, then linked into place: another process sees either no
    # key or a whole one, and of two made at once the first linked wins.
    key = secrets.token_bytes(_KEY_BYTES)
    try:
        if not publish(path, key, mode=0o600):
            # Only a key that holds nothing (a write cut short) is replaced: any other key that
            # cannot be used (shared, a link) is the user's to mend, and would still vouch for
            # their checkpoints once mended.
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_size != _KEY_BYTES and _private(info):
                publish(path, key, replace=True, mode=0o600)
    except OSError:
        return None
    return _read_key(path)


def seal(text: str, create: bool = True) -> str | None:
    """This user's seal of `text` (a checkpoint's checksum, a cache entry's record): an
    HMAC-SHA256 in hex; None when no key can be kept (what it seals is then written
    unsealed, and is not trusted when read back), or, unless `create`, when there is none yet."""
    key = _key(create=create)
    return None if key is None else hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def sealed(text: str, value: bytes | str | None) -> bool:
    """Whether `value` is this user's seal of `text`: charseq wrote it here and it is as it
    was written."""
    key = _key(create=False)
    if key is None or value is None:
        return False
    expected = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest().encode("ascii")
    given = value.encode("ascii", "replace") if isinstance(value, str) else value
    return hmac.compare_digest(given, expected)
