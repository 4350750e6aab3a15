"""The newcomer demo: `python -m demo` (see __main__)."""
