"""The compiled core: the per-tick modules compiled with mypyc, kept out of the source tree.

``greenwave accel`` compiles :data:`MODULES` from the installed sources into a cache folder named
after the Python version and a hash of those sources. On import, :func:`install` puts that folder
first on ``controller.core``'s search path when it holds a build of the current sources, so a
stale build is never used: edit a source and the Python files are imported until the next
``greenwave accel``. ``GREENWAVE_PURE=1`` always imports the Python files.

The compiled modules are the same code: the tests and the replay of a recorded run (identical
commands) hold for both.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, MutableSequence
from pathlib import Path

MODULES = ("eta", "planner", "greenwave", "transitions", "progress", "corridor", "snapshot", "states")
_CORE = Path(__file__).resolve().parent
_PACKAGE = _CORE.parent


def sources_hash() -> str:
    h = hashlib.sha256()
    for name in MODULES:
        h.update(name.encode())
        h.update((_CORE / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    """``$GREENWAVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/greenwave``, else ``~/.cache/greenwave``."""
    return Path(os.environ.get("GREENWAVE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "greenwave"
    ))


def build_dir() -> Path:
    """:func:`cache_root` ``/accel/<python>-<hash of the sources>``."""
    tag = sys.implementation.cache_tag or "python"
    return cache_root() / "accel" / f"{tag}-{sources_hash()}"


def built(d: Path) -> bool:
    """Does ``d`` hold a complete build (every module, and the mark written last)?"""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return (d / "BUILT").is_file() and all((d / "core" / f"{m}{suffix}").is_file() for m in MODULES)


def install(package_path: MutableSequence[str]) -> bool:
    """Use a build of the current sources, if there is one (called by ``controller.core``)."""
    if os.environ.get("GREENWAVE_PURE") == "1":
        return False
    try:
        d = build_dir()
    except OSError:
        return False
    if not built(d):
        return False
    package_path.insert(0, str(d / "core"))
    # mypyc's shared library is a top-level module; its folder holds nothing else (a folder named
    # controller on sys.path would shadow the package in child processes of an editable install)
    if str(d / "lib") not in sys.path:
        sys.path.append(str(d / "lib"))
    return True


def build(starting: Callable[[], None] = lambda: None) -> Path:
    """Compile :data:`MODULES` into :func:`build_dir` (nothing to do when it is there; else
    ``starting()`` first, once what the build needs is there).

    Raises RuntimeError naming what is missing (mypy, a C compiler) or what failed."""
    target = build_dir()
    if built(target):
        return target
    try:
        import mypyc  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "the compiled core needs mypy (with mypyc): pip install -e '.[accel]' in the greenwave checkout"
        ) from None
    starting()
    with tempfile.TemporaryDirectory(prefix="greenwave-accel-") as tmp:
        work = Path(tmp)
        shutil.copytree(_PACKAGE, work / "controller", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        # the copy's loader must not pick up an older build while compiling
        env = {**os.environ, "GREENWAVE_PURE": "1", "MYPYPATH": ""}
        cmd = [sys.executable, "-m", "mypyc", *(f"controller/core/{m}.py" for m in MODULES)]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"mypyc failed (exit {proc.returncode}):\n{tail}")
        staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=_ensure(target.parent)))
        (staging / "core").mkdir()
        (staging / "lib").mkdir()
        for so in work.glob("*__mypyc*"):
            if so.is_file():
                shutil.copy2(so, staging / "lib" / so.name)
        for m in MODULES:
            for so in (work / "controller" / "core").glob(f"{m}.*"):
                if so.suffix != ".py" and so.is_file():
                    shutil.copy2(so, staging / "core" / so.name)
        (staging / "BUILT").write_text(" ".join(cmd) + "\n", encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:  # another build of the same sources finished first (or a broken one is there)
            if built(target):
                shutil.rmtree(staging, ignore_errors=True)
            else:
                shutil.rmtree(target)
                staging.rename(target)
    if not built(target):
        raise RuntimeError(f"mypyc ran but the build in {target} is incomplete")
    return target


def _ensure(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return d
