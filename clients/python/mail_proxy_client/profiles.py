"""Named connection profiles (a URL and a token) kept in ``~/.mail-proxy/profiles.json``.

``MAIL_PROXY_HOME`` moves the whole directory (tests use a temporary one). The file holds tokens, so it is
written owner-only (0600, in a 0700 directory) and replaced atomically.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

HOME_VARIABLE = "MAIL_PROXY_HOME"
PROFILES_FILE = "profiles.json"
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Words of the command line that are commands, so they cannot be profile names.
RESERVED_NAMES = frozenset({"keygen", "start", "stop", "profile", "profiles", "help", "version", "completion",
                            "tenants", "status", "health", "command-log", "accounts", "messages", "send",
                            "suppressions", "run-now", "suspend", "activate"})


class ProfileError(ValueError):
    """A profile that does not exist, or a name or URL that cannot be one."""


@dataclass(frozen=True)
class Profile:
    name: str
    url: str
    token: str

    @property
    def masked_token(self) -> str:
        """Enough of the token to tell two apart, not enough to use it."""
        return self.token[:6] + "…" if len(self.token) > 10 else "…"


def home_dir() -> Path:
    """``$MAIL_PROXY_HOME`` or ``~/.mail-proxy``."""
    configured = os.environ.get(HOME_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".mail-proxy"


class ProfileStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or home_dir()
        self.path = self.directory / PROFILES_FILE

    def all(self) -> dict[str, Profile]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ProfileError(f"cannot read {self.path}: {exc}") from exc
        profiles = data.get("profiles", {}) if isinstance(data, dict) else {}
        return {name: Profile(name, str(entry["url"]), str(entry["token"]))
                for name, entry in profiles.items() if isinstance(entry, dict) and "url" in entry}

    def get(self, name: str) -> Profile:
        profiles = self.all()
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none yet"
            raise ProfileError(f"no profile named {name!r} (profiles: {known}); "
                               f"add one with: mail-proxy profile add {name} --url URL --token TOKEN")
        return profiles[name]

    def add(self, name: str, url: str, token: str) -> Profile:
        """Adds or replaces a profile."""
        if not PROFILE_NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise ProfileError(f"{name!r} cannot be a profile name: use letters, digits, '.', '_' and '-', "
                               f"not one of {', '.join(sorted(RESERVED_NAMES))}")
        if not url.startswith(("http://", "https://")):
            raise ProfileError(f"the URL must start with http:// or https://, not {url!r}")
        if not token or any(c.isspace() for c in token):
            raise ProfileError("the token must be non-empty and without spaces")
        profiles = self.all()
        profiles[name] = Profile(name, url.rstrip("/"), token)
        self._write(profiles)
        return profiles[name]

    def remove(self, name: str) -> None:
        profiles = self.all()
        if name not in profiles:
            self.get(name)  # raises with the list of known names
        del profiles[name]
        self._write(profiles)

    def _write(self, profiles: dict[str, Profile]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"profiles": {p.name: {"url": p.url, "token": p.token} for p in profiles.values()}}
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".profiles-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2, sort_keys=True)
                out.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
