"""Output-folder locks: a lock file lives while its lock is held. They were never removed: one
per folder ever written into (a bench's every run folder), all read again by every command."""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from controller.errors import ScenarioError
from controller.runtime import folder_lock
from controller.runtime.folder_lock import hold_folder


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GREENWAVE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "locks"


def test_a_lock_file_is_removed_with_its_lock(tmp_path: Path, locks: Path) -> None:
    with hold_folder(tmp_path / "a"):
        assert len(list(locks.glob("*.lock"))) == 1
        with pytest.raises(ScenarioError, match="another greenwave run"):
            hold_folder(tmp_path / "a")
    assert list(locks.glob("*.lock")) == []
    with hold_folder(tmp_path / "a"):  # taken again after it
        pass
    assert list(locks.glob("*.lock")) == []


def test_a_lock_file_no_one_holds_is_removed_by_the_next_command(tmp_path: Path, locks: Path) -> None:
    # as a process killed outright (or an earlier version) leaves them; one still held stays
    locks.mkdir(parents=True)
    stale = locks / "0123456789abcdef01234567.lock"
    stale.write_text(f"999999 run {tmp_path / 'gone'}\n")
    with hold_folder(tmp_path / "held"), hold_folder(tmp_path / "x"):
        assert not stale.exists() and len(list(locks.glob("*.lock"))) == 2
    assert list(locks.glob("*.lock")) == []


def test_a_lock_file_removed_between_its_opening_and_its_locking_is_taken_afresh(
    tmp_path: Path, locks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the releasing process removes the file just after this one opened it: the lock then taken
    # on the removed file would lock nothing another process can see
    calls: list[int] = []

    class Racing:
        LOCK_EX, LOCK_SH, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_SH, fcntl.LOCK_NB

        @staticmethod
        def flock(handle: Any, how: int) -> None:
            calls.append(how)
            if len(calls) == 1:
                os.unlink(handle.name)
            fcntl.flock(handle, how)

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "fcntl", Racing)
        lock = hold_folder(tmp_path / "a")
    files = list(locks.glob("*.lock"))
    assert len(calls) == 2 and len(files) == 1
    with pytest.raises(ScenarioError, match="another greenwave run"):  # held: the file as it is now
        hold_folder(tmp_path / "a")
    lock.release()
    assert not files[0].exists()


def test_take_says_who_holds_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    held = folder_lock._take(fcntl, path, "run")
    assert not isinstance(held, str)
    held.write(f"{os.getpid()} bench {tmp_path}\n")
    held.flush()
    assert folder_lock._take(fcntl, path, "run") == f"bench (process {os.getpid()})"
    held.close()


@pytest.mark.parametrize("text", ["999999 run {gone}\n", ""])
def test_a_stale_lock_file_being_pruned_is_waited_for_not_named_as_the_holder(tmp_path: Path, locks: Path,
                                                                              text: str) -> None:
    # another command holds the stale file (process 999999, gone; or an empty one, left by a
    # command killed before it wrote its text) for a moment to remove it: a run taking that
    # folder then was refused, naming the dead process
    locks.mkdir(parents=True)
    gone = (tmp_path / "gone").resolve()
    stale = folder_lock._lock_file(locks, gone)
    stale.write_text(text.format(gone=gone))
    held = threading.Event()

    def prune() -> None:
        with stale.open("r") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            held.set()
            time.sleep(0.05)
            stale.unlink()

    pruner = threading.Thread(target=prune)
    pruner.start()
    held.wait()
    with hold_folder(gone):
        assert stale.read_text().startswith(f"{os.getpid()} run ")
    pruner.join()


def test_a_lock_just_taken_is_seen_with_its_folder(tmp_path: Path, locks: Path) -> None:
    # the lock's text (its folder) was written after the checks: a bench looking through the
    # locks then passed over the empty file of a run starting inside its folder, and both ran
    with hold_folder(tmp_path / "out" / "x"):
        [file] = locks.glob("*.lock")
        assert file.read_text() == f"{os.getpid()} run {(tmp_path / 'out' / 'x').resolve()}\n"
        with pytest.raises(ScenarioError, match=r"holds '.*out/x', which another greenwave run"):
            hold_folder(tmp_path / "out", what="bench")
    assert list(locks.glob("*.lock")) == []  # (the refused bench's own file removed too)


def test_a_cache_folder_that_cannot_be_written_keeps_the_locks_in_the_temporary_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a service account whose home is missing: two runs into one folder went on unlocked, both
    # saying their outputs were written, and a second service took a live one's audit log for
    # a killed session's
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("x")
    monkeypatch.setenv("GREENWAVE_CACHE_DIR", str(not_a_folder))
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "tmp"))
    with hold_folder(tmp_path / "out"):
        assert len(list((tmp_path / "tmp").glob("greenwave-locks-*/*.lock"))) == 1
        with pytest.raises(ScenarioError, match="another greenwave run"):
            hold_folder(tmp_path / "out")
    # neither can be written: refused, naming both and what to do
    (tmp_path / "tmp2").write_text("x")
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path / "tmp2"))
    with pytest.raises(ScenarioError, match=r"no lock can be kept for it .* set GREENWAVE_CACHE_DIR to a folder"):
        hold_folder(tmp_path / "out")
