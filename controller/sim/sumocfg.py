"""Reading a user's SUMO configuration without letting it write anywhere but ``--out``.

A ``.sumocfg`` may name its own outputs (tripinfo, logs, state files) and its additional
files may carry detectors with ``file="..."`` attributes, all written next to the user's files.
greenwave keeps the inputs, drops every output option, and rewrites additional files that
name output files into copies under the run's folder, with their outputs redirected there.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import ScenarioError

# Options whose values are input files (comma or space separated lists).
# (gui-settings-file: relative to the configuration's folder, as SUMO reads it; SUMO, run from
# --out, found no 'view.xml' there)
_PATH_LIST_OPTIONS = {"net-file", "route-files", "additional-files", "weight-files", "state-files",
                      "gui-settings-file"}
_RENAMED = {"n": "net-file", "r": "route-files", "a": "additional-files", "b": "begin", "e": "end"}
# options that are no outputs, dropped as these are
CONSOLE_AND_SERVER_OPTIONS = frozenset({
    # console reports: greenwave prints its own progress and summary (with these, SUMO's
    # loading messages and end-of-run statistics flooded the console)
    "verbose", "v", "duration-log.statistics", "t", "print-options",
    # a TraCI server for other clients: greenwave runs SUMO itself, and SUMO waited for
    # a second client on a port nobody was told of (a hang), or refused a second port
    "remote-port", "num-clients"})
_DROP_EXACT = {"log", "log-file", "l", "message-log", "error-log", "summary", "tripinfo", "save-configuration",
               "save-template", "save-schema", "save-commented", "configuration-file", "c",
               *CONSOLE_AND_SERVER_OPTIONS}


def _is_output_option(name: str) -> bool:
    return name in _DROP_EXACT or "output" in name or "dump" in name or name.startswith("save-")


def split_files(value: str) -> list[str]:
    return [v for v in value.replace(",", " ").split() if v]


@dataclass(frozen=True)
class SumoInputs:
    """The inputs of a simulation: files and the options that are not outputs."""

    net_file: Path
    route_files: tuple[Path, ...] = ()
    additional_files: tuple[Path, ...] = ()
    begin_s: float | None = None
    end_s: float | None = None
    step_length_s: float | None = None
    options: dict[str, str] = field(default_factory=dict)  # other kept options, name -> value
    dropped: tuple[str, ...] = ()  # output options of the user's config that greenwave ignored


def sumo_time_s(raw: str) -> float | None:
    """A SUMO time value in seconds: ``57700``, ``57700.5`` or ``[[D:]H:]M:S`` (``16:01:40``);
    None if it is none of these."""
    parts = raw.strip().split(":")
    if len(parts) > 4:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in values) or (len(values) > 1 and any(v < 0 for v in values)):
        return None
    total = 0.0
    for value, unit in zip(reversed(values), (1.0, 60.0, 3600.0, 86400.0), strict=False):
        total += value * unit
    return total


def read_sumocfg(path: Path) -> SumoInputs:
    """Parse a SUMO configuration; relative paths are resolved against its folder."""
    if path.is_dir():
        raise ScenarioError(f"'{path}' is a folder, not a SUMO configuration file")
    if not path.is_file():
        raise ScenarioError(f"SUMO configuration '{path}' does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ScenarioError(f"{path}: not a valid SUMO configuration (XML error: {e})") from None
    base = path.resolve().parent
    options: dict[str, str] = {}
    dropped: list[str] = []
    for section in root:
        if not isinstance(section.tag, str):
            continue
        for opt in section:
            if not isinstance(opt.tag, str):
                continue
            name = _RENAMED.get(opt.tag, opt.tag)
            value = opt.get("value", opt.get("v"))  # (SUMO takes the short attribute 'v' too)
            if value is None:
                continue
            if _is_output_option(name):
                dropped.append(name)
                continue
            options[name] = value
    net = options.pop("net-file", None)
    if not net:
        if root.tag in ("net", "routes", "additional", "trips"):  # (its content read as no options)
            kind = "network" if root.tag == "net" else root.tag
            raise ScenarioError(f"{path}: not a SUMO configuration but a {kind} file (its root element is "
                                f"<{root.tag}>)")
        raise ScenarioError(f"{path}: no 'net-file' in the configuration")

    def files(name: str) -> tuple[Path, ...]:
        out = []
        for f in split_files(options.pop(name, "")):
            p = Path(f)
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                raise ScenarioError(f"{path}: option '{name}': file '{p}' does not exist")
            out.append(p.resolve())
        return tuple(out)

    net_path = Path(net)
    net_path = (net_path if net_path.is_absolute() else base / net_path).resolve()
    if not net_path.is_file():
        raise ScenarioError(f"{path}: option 'net-file': file '{net_path}' does not exist")
    routes = files("route-files")
    additionals = files("additional-files")
    for name in _PATH_LIST_OPTIONS - {"net-file", "route-files", "additional-files"}:
        if name in options:
            options[name] = ",".join(str(p) for p in files(name))

    def num(name: str) -> float | None:
        if name not in options:
            return None
        raw = options.pop(name)
        seconds = sumo_time_s(raw)
        if seconds is None:
            raise ScenarioError(f"{path}: option '{name}': '{raw}' is not a time (seconds, or [[D:]H:]M:S)")
        return seconds

    return SumoInputs(
        net_file=net_path,
        route_files=routes,
        additional_files=additionals,
        begin_s=num("begin"),
        end_s=num("end"),
        step_length_s=num("step-length"),
        options=options,
        dropped=tuple(dropped),
    )


def _unique_name(used: dict[str, Path], origin: Path) -> str:
    """A file name for ``origin`` in a folder where ``used`` (name -> origin) are taken: its own
    name, or with ``-2``, ``-3``, ... before the extension when another file has that name."""
    name = origin.name
    k = 1
    while used.get(name, origin) != origin:
        k += 1
        name = f"{origin.stem}-{k}{origin.suffix}"
    used[name] = origin
    return name


# The attributes of an additional file's elements that name an output file: ``file`` (detectors,
# edge and lane data, route probes), but a ``timedEvent``'s ``dest`` (SaveTLSStates and its kin)
# and a calibrator's ``output``; an ``include``'s ``href``, a variable speed sign's or a
# rerouter's ``file`` (their definitions) are inputs.
_OUTPUT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "include": (),
    "variableSpeedSign": (),
    "rerouter": (),
    "timedEvent": ("dest",),
    "calibrator": ("output",),
}


def redirect_additional_outputs(additional: Path, out_dir: Path, used: dict[str, Path] | None = None) -> Path:
    """Return ``additional`` itself, or, if it names output files, a copy under ``out_dir``
    whose output attributes (``file``; a ``timedEvent``'s ``dest``) point into ``out_dir/outputs``.
    ``used``: the names already given in those two folders for this run (name -> the file it
    stands for), shared across calls, so that two files of one name in different folders stay
    two files."""
    used = {} if used is None else used
    try:
        tree = ET.parse(additional)
    except ET.ParseError as e:
        raise ScenarioError(f"{additional}: not valid XML: {e}") from None
    changed = False
    outputs = out_dir / "outputs"
    for el in tree.iter():
        for attr in _OUTPUT_ATTRIBUTES.get(str(el.tag), ("file",)):
            f = el.get(attr)
            if f is None or not f.strip():
                continue
            outputs.mkdir(parents=True, exist_ok=True)
            # (SUMO reads a relative file name from the additional file's folder)
            name = _unique_name(used, (additional.parent / f).resolve())
            el.set(attr, str((outputs / name).resolve()))
            changed = True
    if not changed:
        return additional
    for el in tree.iter("include"):
        # the copy lives elsewhere: what it includes is named from the original's folder
        href = el.get("href")
        if href is not None and not Path(href).is_absolute():
            el.set("href", str((additional.parent / href).resolve()))
    inputs = out_dir / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    copy = inputs / _unique_name(used, additional.resolve())
    tree.write(copy, encoding="utf-8", xml_declaration=True)
    return copy.resolve()
