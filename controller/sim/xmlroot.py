"""The root element of a SUMO input file, to tell a network from a route file before either is read."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from pathlib import Path

# what each kind of SUMO input has at its root
NET_ROOTS = ("net",)
ROUTE_ROOTS = ("routes", "additional")  # (SUMO reads vehicles and vTypes from either)
ADDITIONAL_ROOTS = ("additional", "routes")
CONFIG_ROOTS = ("configuration", "sumoConfiguration")


def root_tag(path: Path) -> str | None:
    """The name of ``path``'s root element (gzip-compressed files too); None where the file
    cannot be read or is no XML (whoever reads it names that)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
            for _event, el in ET.iterparse(f, events=("start",)):
                return str(el.tag)
    except (OSError, EOFError, ET.ParseError):
        return None
    return None


def wrong_kind(path: Path, roots: tuple[str, ...], what: str) -> str | None:
    """Why ``path`` is not a file of the kind ``what`` whose root is one of ``roots``, or None."""
    tag = root_tag(path)
    if tag is None or tag in roots:
        return None
    kind = {"net": "a SUMO network", "routes": "a route file", "additional": "an additional file",
            "configuration": "a SUMO configuration", "sumoConfiguration": "a SUMO configuration"}.get(tag)
    return (f"'{path.name}' is {kind or 'not ' + what} (its root element is <{tag}>, "
            f"{what}'s is <{roots[0]}>)")
