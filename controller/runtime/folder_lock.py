"""One command at a time per output folder: ``run --out`` and ``bench --out`` hold a lock named
after the folder's full path while they write into it. Two runs into one folder would spoil each
other's outputs (one's summary naming the other's EV), and the second would set the first's
folder aside under it. The lock file is kept in the cache folder (not in or beside the output: a
folder that is renamed or replaced keeps no lock), and the lock ends with the process. A lock
file is removed when its lock is released, and one no process holds (left by a process killed
outright) when another command looks through them; a command that opened a lock file as it was
removed takes a fresh one."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from controller.core.accel import cache_root
from controller.errors import ScenarioError


class FolderLock:
    """The lock of one output folder, held until :meth:`release` (or the ``with`` block's end)."""

    def __init__(self, handle: IO[str] | None, path: Path | None = None) -> None:
        self._handle = handle
        self._path = path

    def release(self) -> None:
        if self._handle is not None:
            if self._path is not None:
                _unlink(self._path)  # (still held: one opening it now sees it removed, and retries)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def hold_folder(out: Path, option: str = "--out", what: str = "run", noun: str = "folder", *,
                inside_own: bool = False) -> FolderLock:
    """Take the lock of ``out`` (a folder, or a file: ``noun``): a ScenarioError naming the other
    process where it, or a folder it is in, is held (``inside_own``: but for a folder this process
    holds).
    Where no lock can be had (no ``fcntl``, the cache folder cannot be written) the command goes
    on unlocked, as before."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return FolderLock(None)
    path = out.resolve()
    folder = cache_root() / "locks"
    own = _lock_file(folder, path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = _take(fcntl, own, what)
    except OSError:
        return FolderLock(None)
    if isinstance(handle, str):
        who = handle
        raise ScenarioError(f"{option} '{out}': another greenwave {who} is writing into this {noun}; "
                            f"wait for it to end, or give another {option}")
    # a folder inside one another command writes into (a bench's run folders), or holding one
    # (a bench into the folder of a run going on): refused too
    for parent in path.parents:
        holder = _held_by_other(fcntl, _lock_file(folder, parent), what, inside_own)
        if holder is not None:
            handle.close()
            raise ScenarioError(f"{option} '{out}' is inside '{parent}', which another greenwave {holder} is writing "
                                f"into; wait for it to end, or give another {option}")
    if noun == "folder":
        for lock in folder.glob("*.lock"):
            if lock != own and _prune(fcntl, lock):
                continue
            held = _held_path(lock)
            if lock == own or held is None or held == path or not held.is_relative_to(path):
                continue
            holder = _held_by_other(fcntl, lock, what, inside_own)
            if holder is not None:
                handle.close()
                raise ScenarioError(f"{option} '{out}' holds '{held}', which another greenwave {holder} is writing "
                                    f"into; wait for it to end, or give another {option}")
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {what} {path}\n")
    handle.flush()
    return FolderLock(handle, own)


def _take(fcntl: Any, lock: Path, what: str, attempts: int = 5) -> IO[str] | str:
    """The lock file ``lock``, opened and locked, or who holds it (``run (process 123)``). A
    file removed between its opening and its locking (released or pruned just then) is
    opened again: a lock on a removed file locks nothing another process can see."""
    for _ in range(attempts):
        handle = lock.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except OSError:
            locked = False
        try:
            current = os.stat(lock)
            same = os.path.samestat(os.fstat(handle.fileno()), current)
        except OSError:
            same = False
        if same:
            if locked:
                return handle
            who = _holder(handle, what)
            handle.close()
            return who
        handle.close()  # removed or replaced since it was opened: again
    raise OSError(f"the lock file {lock} keeps being removed")


def _prune(fcntl: Any, lock: Path) -> bool:
    """Remove the lock file ``lock`` where no process holds it (one left by a process killed
    outright, or by a version that kept them): True where removed."""
    try:
        with lock.open("r", encoding="utf-8") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            if not os.path.samestat(os.fstat(other.fileno()), os.stat(lock)):
                return False
            _unlink(lock)
            return True
    except OSError:
        return False


def _unlink(lock: Path) -> None:
    with contextlib.suppress(OSError):
        lock.unlink()


def _lock_file(folder: Path, path: Path) -> Path:
    return folder / f"{hashlib.sha256(str(path).encode()).hexdigest()[:24]}.lock"


def _holder(handle: IO[str], what: str) -> str:
    """Who holds a lock, as its file says: ``bench (process 123)``."""
    handle.seek(0)
    pid, _, rest = handle.read().partition(" ")
    kind = rest.split(" ", 1)[0]
    return f"{kind if kind in ('run', 'bench', 'serve') else what}{f' (process {pid})' if pid.isdigit() else ''}"


def _held_path(lock: Path) -> Path | None:
    """The folder a lock file was last taken for (its text: pid, command, path)."""
    try:
        text = lock.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    parts = text.rstrip("\n").split(" ", 2)
    return Path(parts[2]) if len(parts) == 3 else None


def _held_by_other(fcntl: Any, lock: Path, what: str, inside_own: bool) -> str | None:
    """Who holds the lock file ``lock`` now (``bench (process 123)``), None where no one does
    (or, with ``inside_own``, this process). Probed with a shared lock, let go at once."""
    if not lock.is_file():
        return None
    try:
        with lock.open("r", encoding="utf-8") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                if inside_own and other.read().partition(" ")[0] == str(os.getpid()):
                    return None  # (in a folder this process holds: a serve's audit log in its --out)
                return _holder(other, what)
    except OSError:
        return None
    return None
