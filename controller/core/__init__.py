"""The pure core: no SUMO, no HTTP, no clock. Time is always an argument."""
