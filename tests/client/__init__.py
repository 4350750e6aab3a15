"""Tests of the Python client, the mail-proxy command line, the Django backend, the demo and the README quick start."""
