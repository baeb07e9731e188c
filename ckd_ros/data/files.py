"""Files a user names: text read and outputs placed, with operating-system failures as InputError.

Every reader and writer of a user-named path goes through these, so a missing, unreadable,
non-UTF-8 or unwritable file becomes one message naming that file (the CLI prints it as one line
and exits 2) instead of an ``OSError`` or ``UnicodeDecodeError`` traceback from deep inside.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ckd_ros.errors import InputError


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; ``what`` names the file's role in the message ("result file")."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    except IsADirectoryError:
        raise InputError(f"{path}: {what} is a folder, not a file") from None
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def number_rows(path: str | Path, what: str) -> Iterator[tuple[int, str, list[float]]]:
    """(line number, stripped line, numbers) of each non-blank line, the numbers split on commas and
    whitespace alike: ground-truth and result files of the RGBT benchmarks mix all three separators,
    so every box reader splits them the same way and names the file and line of a non-number."""
    for n, line in enumerate(read_text(path, what).splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            values = [float(p) for p in re.split(r"[,\s]+", line) if p]
        except ValueError:
            raise InputError(f"{path}:{n}: not numbers: {line!r}") from None
        yield n, line, values


def output_dir(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as an existing folder, created with its parents if needed.

    An existing file there, a parent that is a file, or a read-only place (``/proc``) raise here,
    before any work is done, rather than after minutes of tracking.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: the {what} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create the {what}: {exc.strerror or exc}") from None
    return path


def output_file(path: str | Path, what: str = "output file") -> Path:
    """``path`` ready to be written: its folder exists (created if needed) and it is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: the {what} is a folder; name a file")
    output_dir(path.parent, f"folder of the {what}")
    return path


@contextmanager
def removed_on_error(*paths: Path) -> Iterator[None]:
    """Delete ``paths`` (files or folders) that did not exist before if the block fails, so a
    half-written output is never left to look complete (a resumed run trusts what it finds)."""
    fresh = [p for p in paths if not p.exists()]
    try:
        yield
    except BaseException:
        for p in fresh:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                with suppress(OSError):  # the error being raised is the one to report
                    p.unlink()
        raise
