"""The ports `make run` listens on, and the one line it prints when one of them is taken.

The HTTP API and the SMTP sink take their ports from `--port` / `--smtp-port`, else `MAIL_PROXY_PORT` /
`MAIL_PROXY_SMTP_PORT`, else 8000 and 2525 (`make run PORT=... SMTP_PORT=...` sets the variables). Both are
checked before anything starts, so two busy ports are named together, with free ones to use instead, in the
form the stack was started with (`MAIL_PROXY_LOCAL_VIA=make` is set by the Makefile, `mail-proxy` by the CLI).
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

DEFAULT_PORT = 8000
DEFAULT_SMTP_PORT = 2525
PORT_VARIABLE = "MAIL_PROXY_PORT"
SMTP_PORT_VARIABLE = "MAIL_PROXY_SMTP_PORT"
_SEARCH = 50
"""How many ports above a busy one are tried for a free one to suggest."""


class PortConfigError(ValueError):
    """A port variable that is not a port number."""


def port_from_environment(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise PortConfigError(f"{variable}={raw!r} is not a port number (0 picks a free one)") from None
    if not 0 <= port <= 65535:
        raise PortConfigError(f"{variable}={raw} is not a port number (0 to 65535; 0 picks a free one)")
    return port


@dataclass(frozen=True)
class BusyPort:
    role: str
    """`HTTP API` or `SMTP sink`."""
    port: int
    reason: str
    in_use: bool
    """Another program listens there (the usual case); otherwise `reason` says why binding failed."""


def bind_problem(host: str, port: int) -> tuple[bool, str] | None:
    """Why `host:port` cannot be listened on, as (address in use, reason); None if it can (port 0 always can)."""
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE, error.strerror or str(error)
    return None


def free_port_after(host: str, port: int, taken: set[int]) -> int | None:
    """The first port above `port` that can be listened on and is not in `taken`."""
    for candidate in range(port + 1, min(port + 1 + _SEARCH, 65536)):
        if candidate not in taken and bind_problem(host, candidate) is None:
            return candidate
    return None


def busy_ports(host: str, ports: dict[str, int]) -> list[BusyPort]:
    """The ports (by role) that cannot be listened on right now."""
    busy = []
    for role, port in ports.items():
        problem = bind_problem(host, port)
        if problem is not None:
            busy.append(BusyPort(role, port, problem[1], problem[0]))
    return busy


def fix_command(host: str, api_port: int, smtp_port: int, busy: list[BusyPort]) -> str:
    """The command that starts the stack on free ports, in the form it was started with."""
    taken = {api_port, smtp_port}
    chosen = {"HTTP API": api_port, "SMTP sink": smtp_port}
    for item in busy:
        suggestion = free_port_after(host, item.port, taken) if item.in_use else None
        chosen[item.role] = suggestion if suggestion is not None else 0
        taken.add(chosen[item.role])
    new_api, new_smtp = chosen["HTTP API"], chosen["SMTP sink"]
    via = os.environ.get("MAIL_PROXY_LOCAL_VIA", "")
    if via == "make":
        parts = ["make run"]
        parts += [f"PORT={new_api}"] if new_api != api_port else []
        parts += [f"SMTP_PORT={new_smtp}"] if new_smtp != smtp_port else []
        return " ".join(parts)
    program = "mail-proxy start local" if via == "mail-proxy" else "python -m local"
    parts = [program]
    parts += [f"--port {new_api}"] if new_api != api_port else []
    parts += [f"--smtp-port {new_smtp}"] if new_smtp != smtp_port else []
    return " ".join(parts)


def busy_message(host: str, api_port: int, smtp_port: int, busy: list[BusyPort]) -> str:
    """One line: which ports are taken and the command that avoids them."""
    described = ", ".join(
        f"{item.role} port {item.port} is in use" if item.in_use
        else f"{item.role} port {item.port} cannot be used ({item.reason})"
        for item in busy
    )
    advice = " (another local stack or program listens there)" if any(item.in_use for item in busy) else ""
    return (f"local stack could not start: on {host}, {described}{advice}; "
            f"use other ports: {fix_command(host, api_port, smtp_port, busy)}")
