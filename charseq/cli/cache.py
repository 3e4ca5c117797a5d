"""`charseq cache`: where the text cache is, what it holds, and clearing what charseq wrote."""

from __future__ import annotations

import json

import click

from charseq.cli.options import json_option
from charseq.cli.output import say
from charseq.errors import CharseqError, counted


_DECIDED_BY = {"CHARSEQ_CACHE": "set by CHARSEQ_CACHE", "XDG_CACHE_HOME": "under XDG_CACHE_HOME",
               "default": "the default, ~/.cache/charseq; CHARSEQ_CACHE or XDG_CACHE_HOME moves it",
               "fallback": "the default place cannot be used; set CHARSEQ_CACHE"}


@click.command(short_help="Show the text cache: where it is, its cap, what it holds.")
@click.option("--clear", is_flag=True, help="Delete the cache's entries (only the files charseq can vouch it wrote).")
@json_option
def cache(clear, as_json):
    """Show where the text cache is, its cap, and what it holds: each entry's size, characters and source files,
    the most recently used first, then those charseq cannot vouch for."""
    from charseq.data.cache_listing import cache_report, clear_cache

    if clear:
        cleared = clear_cache()
        report = cleared.report
        if as_json:
            say(json.dumps({"directory": str(report.directory), "entries": cleared.entries,
                            "freed_bytes": cleared.freed, "left": len(report.unvouched)}), essential=True)
        else:
            say(f"cleared {report.directory}: {_counted_entries(cleared.entries)}, {_bytes(cleared.freed)} freed"
                f"{_left(report, 'left')}", essential=True)
        if cleared.kept:
            path, why = cleared.kept[0]
            more = f" and {counted(len(cleared.kept) - 1, 'more')}" if len(cleared.kept) > 1 else ""
            raise CharseqError(f"could not delete {counted(len(cleared.kept), 'file')} of charseq's: {str(path)!r} "
                               f"({why}){more}; what is left is still charseq's, for the next --clear")
        return
    report = cache_report()
    if as_json:
        say(json.dumps({"directory": str(report.directory), "decided_by": report.decided_by,
                        "entries": [vars(entry) for entry in report.entries], "total_bytes": report.total_size,
                        "unvouched": [str(path) for path in report.unvouched], "cap_bytes": report.cap,
                        "cap_setting": report.cap_setting, "used_bytes": report.used}, indent=2), essential=True)
        return
    say(f"cache: {report.directory} ({_DECIDED_BY[report.decided_by]})", essential=True)
    say(_cap(report), essential=True)
    apart = next((entry for entry in report.entries if not entry.verified), None)  # listed after charseq's own
    for entry in report.entries:
        if entry is apart:
            say("charseq cannot vouch for these (another user's or key's, an earlier release's, or edited): never "
                "evicted nor cleared, but for the record of an entry whose ids were edited", essential=True)
        characters = counted(entry.characters, "character") if entry.characters is not None else "incomplete"
        sources = entry.sources or ["source unknown"]
        more = f" and {counted(len(sources) - 1, 'more file')}" if len(sources) > 1 else ""
        say(f"{_bytes(entry.size):>9}  {characters:>20}  {sources[0]}{more}", essential=True)
    say(f"{_counted_entries(_vouched(report))}, {_bytes(report.total_size)} in all"
        f"{_left(report, 'left alone by --clear')}", essential=True)


def _cap(report) -> str:
    """The cap, what set it, and what the entries take of it."""
    if report.cap is None:
        return f"cap: none (CHARSEQ_CACHE_SIZE={report.cap_setting}), {_bytes(report.used)} used"
    setting = ("the default; CHARSEQ_CACHE_SIZE changes it" if report.cap_setting is None
               else f"CHARSEQ_CACHE_SIZE={report.cap_setting}")
    return (f"cap: {_cap_size(report.cap)} ({setting}), {_bytes(report.used)} used; the least recently used "
            "entries, listed last, are evicted first")


def _cap_size(size: int) -> str:
    """A cap as it was most likely set: in powers of 1024 when it is a whole number of KiB
    but not of kB (the default, 1 GiB, was never 1.1 GB), exactly to two decimals at most;
    otherwise as every size is printed."""
    if size < 1024 or size % 1024 or not size % 1000:
        return _bytes(size)
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        hundredths, rest = divmod(size * 100, 1024**power)
        if not rest and hundredths >= 100:
            whole, part = divmod(hundredths, 100)
            return f"{whole:,}{f'.{part:02d}'.rstrip('0') if part else ''} {unit}"
    return _bytes(size)  # (never reached: a whole number of KiB is one)


def _vouched(report) -> int:
    return sum(entry.verified for entry in report.entries)


def _counted_entries(count: int) -> str:
    return f"{count:,} entr{'y' if count == 1 else 'ies'}"


def _left(report, what: str) -> str:
    """The files named like charseq's that it cannot vouch for, when there are any."""
    if not report.unvouched:
        return ""
    return (f"; {what}: {counted(len(report.unvouched), 'file')} named like charseq's that it cannot vouch for "
            "(an earlier release's, or not charseq's: delete them yourself if they are yours to delete)")


def _bytes(size: float) -> str:
    """A size for people: 512 B, 1.2 kB, 3.4 MB (powers of 1000, as the README's tables)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"

