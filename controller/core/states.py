"""The characters of SUMO's signal state strings, one per link: green, yellow, red.

'u' (red and yellow together, shown before green in some countries) is a red: SUMO's vehicles
stop at it, and it ends no green. 's' (stop sign) counts as red too.

Its own module so that the compiled core (``greenwave accel``) calls these as native functions:
they run for every link of every signal the planner looks at, every tick.
"""

from __future__ import annotations

GREEN_CHARS = frozenset("Gg")
YELLOW_CHARS = frozenset("yY")
RED_CHARS = frozenset("rsu")
# The signal off: 'o' and 'O' (the junction's right of way alone). A target taken from a program
# phase keeps them as the phase shows them (ended with no yellow, they would take an uncontrolled
# right of way away at once; a signal whose program switches a link off and on is left to its
# program: ``CorridorJunction.signal_off``). 's' (stop, then go) is kept as a permissive green
# is, where the service keeps those.
KEPT_AS_SHOWN = "oO"


def is_green(c: str) -> bool:
    return c in GREEN_CHARS


def is_yellow(c: str) -> bool:
    return c in YELLOW_CHARS


def is_red(c: str) -> bool:
    return c in RED_CHARS
