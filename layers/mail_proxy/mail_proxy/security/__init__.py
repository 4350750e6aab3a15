"""Secrets and trust: encryption, tokens, signatures, signed links, the guard on tenant-given hosts."""
