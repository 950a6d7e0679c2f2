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
import tempfile
import time
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
    The locks are kept in the cache folder, else (it cannot be written: a service account's home
    missing or read-only) in the system's temporary folder; where neither can be written, a
    ScenarioError (two runs into one folder went on unlocked, each saying its outputs were
    written). Without ``fcntl`` (not POSIX) the command goes on unlocked."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return FolderLock(None)
    path = out.resolve()
    tried: list[str] = []
    for folder in lock_folders():
        own = _lock_file(folder, path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = _take(fcntl, own, what)
            break
        except OSError as e:
            tried.append(f"'{folder}' ({e.strerror or e})")
    else:
        raise ScenarioError(f"{option} '{out}': no lock can be kept for it (one {what} at a time writes into a "
                            f"{noun}): {' nor '.join(tried)} can be written; set GREENWAVE_CACHE_DIR to a "
                            "folder that can")
    if isinstance(handle, str):
        who = handle
        raise ScenarioError(f"{option} '{out}': another greenwave {who} is writing into this {noun}; "
                            f"wait for it to end, or give another {option}")
    # who holds it, at once: a command looking through the locks now sees the folder it is for
    # (an empty file was passed over, and a bench took the folder of a run starting)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {what} {path}\n")
    handle.flush()
    lock = FolderLock(handle, own)
    try:
        # a folder inside one another command writes into (a bench's run folders), or holding
        # one (a bench into the folder of a run going on): refused too
        for parent in path.parents:
            holder = _held_by_other(fcntl, _lock_file(folder, parent), what, inside_own)
            if holder is not None:
                raise ScenarioError(f"{option} '{out}' is inside '{parent}', which another greenwave {holder} is "
                                    f"writing into; wait for it to end, or give another {option}")
        if noun == "folder":
            for other in folder.glob("*.lock"):
                if other == own or _prune(fcntl, other):
                    continue
                held = _held_path(other)
                for _ in range(_RETRIES):  # (taken a moment ago: its text comes next)
                    if held is not None or not other.is_file():
                        break
                    time.sleep(_RETRY_S)
                    held = _held_path(other)
                if held is None or held == path or not held.is_relative_to(path):
                    continue
                holder = _held_by_other(fcntl, other, what, inside_own)
                if holder is not None:
                    raise ScenarioError(f"{option} '{out}' holds '{held}', which another greenwave {holder} is "
                                        f"writing into; wait for it to end, or give another {option}")
    except BaseException:
        lock.release()
        raise
    return lock


def lock_folders() -> list[Path]:
    """Where the locks are kept: the cache folder's ``locks``, else one in the system's
    temporary folder (per user)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return [cache_root() / "locks", Path(tempfile.gettempdir()) / f"greenwave-locks-{uid}"]


def _take(fcntl: Any, lock: Path, what: str, attempts: int = 5) -> IO[str] | str:
    """The lock file ``lock``, opened and locked, or who holds it (``run (process 123)``). A
    file removed between its opening and its locking (released or pruned just then) is
    opened again: a lock on a removed file locks nothing another process can see. A lock
    held by a process that no longer runs is a command pruning that stale file: waited for."""
    for _ in range(attempts):
        handle = lock.open("a+", encoding="utf-8")
        locked = False
        for wait in range(_RETRIES + 1):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError:
                if wait == _RETRIES or _holder_runs(handle):
                    break
                time.sleep(_RETRY_S)
        if _same_file(handle, lock):
            if locked:
                return handle
            who = _holder(handle, what)
            handle.close()
            return who
        handle.close()  # removed or replaced since it was opened: again
    raise OSError(f"the lock file {lock} keeps being removed")


_RETRIES, _RETRY_S = 5, 0.02  # a lock file pruned or just taken by another command: its moment


def _same_file(handle: IO[str], lock: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(lock))
    except OSError:
        return False


def _holder_runs(handle: IO[str]) -> bool:
    """Does the process a lock file names still run? One that ended, or a file naming none (a
    command killed before it wrote its text, or one taking it this moment), holds no lock
    that lasts: a command pruning the file does, for a moment, or the taker writes its text."""
    handle.seek(0)
    pid = handle.read().partition(" ")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # (another user's: it runs)
        return True
    return True


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
            for wait in range(_RETRIES + 1):
                try:
                    fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return None
                except OSError:
                    if not _same_file(other, lock):
                        return None  # (pruned or released just now)
                    other.seek(0)
                    if inside_own and other.read().partition(" ")[0] == str(os.getpid()):
                        return None  # (in a folder this process holds: a serve's audit log in its --out)
                    if wait == _RETRIES or _holder_runs(other):
                        return _holder(other, what)
                    time.sleep(_RETRY_S)  # (a stale file being pruned)
    except OSError:
        return None
    return None
