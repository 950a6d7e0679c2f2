"""Whether a SUMO network is geo-referenced (its ``<location projParameter>`` is not ``!``)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

_PROJ = re.compile(rb'<location\b[^>]*\bprojParameter="([^"]*)"')


def is_geo_referenced(net_file: Path) -> bool:
    """The network carries a projection, so longitude/latitude can be converted to its x, y."""
    opener = gzip.open if net_file.suffix == ".gz" else open
    with opener(net_file, "rb") as f:
        head = f.read(256 * 1024)  # netconvert writes <location> at the top
    match = _PROJ.search(head)
    return match is not None and match.group(1).strip() not in (b"", b"!")
