"""greenwave: an emergency-vehicle green-wave traffic signal controller for SUMO."""

__version__ = "0.1.0"
MAX_SEED = 2**31 - 1  # the largest seed SUMO takes (it reads --seed as a C int)
