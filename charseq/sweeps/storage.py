"""Where a study lives: an Optuna storage opened from a URL (SQLite by default; any server
several machines share), refused up front where it cannot hold a study, and its
passwords never shown. Optuna is imported only when a sweep runs (the sweep extra)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from charseq.errors import CharseqError, UsageError, command
from charseq.installation import install_command


DEFAULT_STORAGE = "sqlite:///charseq-sweeps.db"


OPEN_ATTEMPTS = 8


# A worker beats every HEARTBEAT seconds; a running trial silent for GRACE is taken for dead
# (CHARSEQ_SWEEP_HEARTBEAT and CHARSEQ_SWEEP_GRACE change them, for tests).
HEARTBEAT = 30


def _heartbeat() -> tuple[int, int]:
    values: list[int] = []
    for name, default in (("CHARSEQ_SWEEP_HEARTBEAT", HEARTBEAT), ("CHARSEQ_SWEEP_GRACE", None)):
        text = os.environ.get(name)
        if text is None:
            values.append(default if default is not None else 4 * values[0])
            continue
        if not text.strip().isdigit() or int(text) < 1:
            raise UsageError(f"{name} must be a whole number of seconds, at least 1; got {text!r}")
        values.append(int(text))
    return values[0], values[1]


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise CharseqError(f"{command('sweep')} needs Optuna: {install_command('sweep')}") from None
    return optuna


def open_storage(url: str, read_only: bool = False) -> Any:
    """Optuna's storage for `url`, with heartbeats so that dead workers' trials end. One only
    read (a report) makes no table: an SQLite file is opened read-only."""
    optuna = require_optuna()
    import warnings

    # Heartbeats are "experimental" in Optuna 4-5; they are what ends a dead worker's trial.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs: dict[str, Any] = {"skip_table_creation": read_only, "engine_kwargs": _sqlite_engine(url, read_only)}
    import random

    heartbeat, grace = _heartbeat()
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=grace, **kwargs)
        except ImportError as exc:
            raise CharseqError(f"the storage {shown_url(url)} needs a database driver: {masked(str(exc), url)}") from None
        except Exception as exc:  # a URL SQLAlchemy cannot parse, a server that does not answer, or a race:
            # workers (or machines) that open a new storage together all try to make its tables, and
            # all but one fail; opened again, the tables are there.
            if attempt + 1 == OPEN_ATTEMPTS or not _maybe_a_race(exc):
                raise CharseqError(f"cannot open the storage {shown_url(url)}: {type(exc).__name__}: "
                                   f"{masked(str(exc).splitlines()[0] if str(exc) else '', url)}") from None
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")


OPTUNA_TABLES = ("studies", "version_info", "alembic_version")  # what Optuna makes first, and looks at on opening


def holds_studies(url: str) -> bool:
    """Whether the database at `url` holds Optuna's tables (a study may be there), found
    without writing to it (Optuna's storage makes them when they are missing)."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, **_sqlite_engine(url, read_only=True))
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except ImportError as exc:
        raise CharseqError(f"the storage {shown_url(url)} needs a database driver: {masked(str(exc), url)}") from None
    except Exception as exc:  # a URL SQLAlchemy cannot parse, a server that does not answer, a file not a database
        raise CharseqError(f"cannot open the storage {shown_url(url)}: {type(exc).__name__}: "
                           f"{masked(str(exc).splitlines()[0] if str(exc) else '', url)}") from None
    return set(OPTUNA_TABLES) <= tables


def _sqlite_engine(url: str, read_only: bool) -> dict[str, Any]:
    """SQLAlchemy's engine options for an SQLite storage (none for another kind): a wait for
    the lock (several local workers take turns), and, `read_only`, the file opened so (SQLite
    then refuses any write)."""
    if _sqlite(url) is None:
        return {}
    path = sqlite_path(url)
    if not read_only or path is None:
        return {"connect_args": {"timeout": 20}}
    import sqlite3
    from urllib.request import pathname2url

    uri = f"file:{pathname2url(str(path))}?mode=ro"
    return {"creator": lambda: sqlite3.connect(uri, uri=True, timeout=20, check_same_thread=False)}


def _maybe_a_race(exc: Exception) -> bool:
    """An error that two processes making the same tables at once give (SQLAlchemy's)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(words in text for words in ("already exists", "unique", "duplicate", "locked", "integrity"))


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL, as SQLAlchemy reads it (percent-escapes decoded, a
    ``file:`` URI's path); None for another kind of storage, or an SQLite database in memory."""
    found = _sqlite(url)
    if found is None or found[1]:
        return None
    return found[0]


def _sqlite(url: str) -> tuple[Path | None, bool] | None:
    """For an SQLite URL, its file and whether it is in memory, read as SQLAlchemy reads it
    (the text alone misleads: ``%3Amemory%3A`` is ``:memory:``); None for another kind."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy's ArgumentError, or a URL it cannot read at all: opening it says why
        return None
    if parsed.get_backend_name().lower() != "sqlite":
        return None
    query = {_decoded(key).lower(): _decoded(str(value)).lower() for key, value in parsed.query.items()}
    database = parsed.database or ""
    uri = query.get("uri") in ("true", "1", "yes", "on") or database.startswith("file:")
    full = _decoded(database) if uri else database  # a file: URI SQLite decodes again, after SQLAlchemy
    path = full.removeprefix("file:").split("?")[0] if uri else database
    memory = (not path or path.lower() == ":memory:" or query.get("mode") == "memory" or query.get("vfs") == "memdb"
              or (uri and ("mode=memory" in full.lower() or "vfs=memdb" in full.lower())))
    return (Path(path) if path else None), memory


def _decoded(text: str) -> str:
    """`text` with its percent-escapes decoded until none is left (each reader decodes once)."""
    while (plain := unquote(text)) != text:
        text = plain
    return text


# A URL: scheme://rest. The password in its user part, as SQLAlchemy reads one (user, colon, up
# to an @ that a host follows; scheme:// left out, for a URL given without it), and in its query.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.S)


_USER_PASSWORD = re.compile(r"^(?P<head>(?:[A-Za-z][A-Za-z0-9+.-]*://)?[^:/]*:)(?!//)(?P<secret>.*?)"
                            r"(?P<tail>@[^@/?#]*(?:[/?#]|$))", re.S)


_QUERY_PARAMETER = re.compile(r"(?P<head>[?&;](?P<key>[^=&;#]*)=)(?P<secret>[^&;#]*)")


_SECRET_KEY = re.compile(r"^(?:[a-z_]*password|passwd|pass|pwd)$", re.I)  # as the driver reads the name (decoded)


def _secret_parameters(url: str) -> list[re.Match[str]]:
    return [found for found in _QUERY_PARAMETER.finditer(url) if _SECRET_KEY.match(_decoded(found["key"]))]


def check_storage(url: str) -> None:
    """Refuse, before anything is made, a storage that cannot hold a study: text that is not
    a URL (which would be shown whole, password and all), and an SQLite database in memory,
    which ends with the process while the study's runs stay in the directory."""
    found = _URL.match(url)
    if found is None:
        raise UsageError("the storage is not a URL: it needs its scheme://, such as sqlite:///FILE.db or "
                         "postgresql://USER:PASSWORD@HOST/DATABASE")
    sqlite = _sqlite(url)
    if sqlite is not None and sqlite[1]:
        raise UsageError(f"the storage {shown_url(url)} is an SQLite database in memory, which ends with the process "
                         "while the study's runs stay: give a file, such as sqlite:///sweeps.db, or a server's URL")


def shown_url(url: str) -> str:
    """The URL with its passwords (in the user part, and password= parameters) shown as ***,
    and every other character as it was."""
    url = _USER_PASSWORD.sub(r"\g<head>***\g<tail>", url, count=1)
    secret = {found.start() for found in _secret_parameters(url)}
    return _QUERY_PARAMETER.sub(lambda found: found["head"] + "***" if found.start() in secret else found[0], url)


def masked(text: str, url: str) -> str:
    """`text` (an error's, which may quote the URL or its password, as given or decoded) without
    the passwords of `url`."""
    text = text.replace(url, shown_url(url))
    found = [match["secret"] for match in [*_USER_PASSWORD.finditer(url), *_secret_parameters(url)]]
    for secret in sorted({form for raw in found for form in (raw, unquote(raw)) if form}, key=len, reverse=True):
        # (as a whole word: a short password is not every letter of that name in a message)
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


@contextmanager
def passwords_hidden(url: str) -> Iterator[None]:
    """An error that leaves here does not show the storage's password, however deep it began
    (a driver's message may quote the URL): charseq's is masked, another that would show it
    becomes charseq's, in one line."""
    try:
        yield
    except CharseqError as exc:
        exc.args = (masked(str(exc), url),)
        raise
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        if masked(str(exc), url) == str(exc):
            raise
        raise CharseqError(f"the storage {shown_url(url)} failed: {type(exc).__name__}: {masked(text, url)}") from None
