"""The local stack: the whole application on one machine, no Docker (`python -m local`)."""
