"""Which checkpoints charseq wrote here, so that their recorded paths may be trusted.

A run's description names files (its checkpoint, metrics log, checkpoint paths, corpus).
A checkpoint from elsewhere, or one whose description was edited, could name any file,
and a checksum does not help: anyone can compute one. So the description is sealed with
an HMAC under a key that only this user's charseq holds (a random file, mode 0600, in the
cache directory). A resumed run whose checkpoint carries a valid seal may replace the
run's own files; one without may only create new files, and must be told its corpus.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

_KEY_NAME = "run-key"
_KEY_BYTES = 32


def _key_path() -> Path | None:
    from charseq.textfiles import cache_dir

    try:
        return cache_dir() / _KEY_NAME
    except Exception:  # no usable cache directory: nothing can be sealed, nothing trusted
        return None


def _key(create: bool) -> bytes | None:
    path = _key_path()
    if path is None:
        return None
    try:
        key = path.read_bytes()
        return key if len(key) == _KEY_BYTES else None
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return _key(create=False)
    except OSError:
        return None
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(_KEY_BYTES))
    return _key(create=False)


def _canonical(run: dict[str, Any]) -> bytes:
    return json.dumps(run, sort_keys=True, separators=(",", ":")).encode("utf-8")


def seal(run: dict[str, Any]) -> str | None:
    """The seal of a run description written here; None when no key can be kept."""
    key = _key(create=True)
    return None if key is None else hmac.new(key, _canonical(run), hashlib.sha256).hexdigest()


def sealed(run: dict[str, Any], value: Any) -> bool:
    """Whether `value` is this user's seal of `run`: the checkpoint was written here, unedited."""
    key = _key(create=False)
    if key is None or not isinstance(value, str):
        return False
    return hmac.compare_digest(value, hmac.new(key, _canonical(run), hashlib.sha256).hexdigest())
