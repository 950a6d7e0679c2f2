"""greenwave: an emergency-vehicle green-wave traffic signal controller for SUMO."""

__version__ = "0.1.0"
MAX_WINDOW_S = 7 * 86400.0  # the longest simulated window of one run (1e12 s was taken, and never ended)
MAX_TRIPS = 2_000_000  # the most background trips generated for one run (1e9 per hour ran out of memory)
MAX_SEED = 2**31 - 1  # the largest seed SUMO takes (it reads --seed as a C int)
MAX_ID_LENGTH = 64  # an escort id in the API (and the ids greenwave gives by default)
