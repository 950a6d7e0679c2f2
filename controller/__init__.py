"""greenwave: an emergency-vehicle green-wave traffic signal controller for SUMO."""

__version__ = "0.1.0"
