"""The command line where no proxy is needed: profiles, keygen, usage errors, an unreachable proxy, finding
the repository for `start local`."""

from __future__ import annotations

import base64
import json
import socket
import stat
from pathlib import Path

import pytest
from mail_proxy_client.local_stack import LocalStackError, find_repository
from mail_proxy_client.profiles import ProfileError, ProfileStore

from tests.client.conftest import REPO, Cli


def test_keygen_prints_base64_of_32_random_bytes(cli: Cli) -> None:
    first, second = cli("keygen"), cli("keygen")
    assert first.code == 0 and len(base64.b64decode(first.stdout.strip(), validate=True)) == 32
    assert first.stdout != second.stdout


def test_profiles_are_kept_in_mail_proxy_home_readable_only_by_the_owner(cli: Cli) -> None:
    added = cli("profile", "add", "prod", "--url", "https://mail.example.com/", "--token", "tok-0123456789abcdef")
    assert added.code == 0, added.output
    path = cli.home / "profiles.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(cli.home.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["profiles"]["prod"] == {"url": "https://mail.example.com",
                                                                "token": "tok-0123456789abcdef"}


def test_profile_list_never_shows_a_whole_token(cli: Cli) -> None:
    cli("profile", "add", "prod", "--url", "https://mail.example.com", "--token", "tok-0123456789abcdef")
    listed, as_json = cli("profile", "list"), cli("profile", "list", "--json")
    assert listed.code == 0 and "prod" in listed.stdout and "https://mail.example.com" in listed.stdout
    assert "0123456789abcdef" not in listed.output + as_json.output
    assert as_json.json() == [{"name": "prod", "url": "https://mail.example.com", "token": "tok-01…"}]


def test_a_token_can_be_read_from_stdin(cli: Cli) -> None:
    assert cli("profile", "add", "p", "--url", "http://127.0.0.1:1", "--token-stdin", stdin="secret-tok\n").code == 0
    assert ProfileStore(cli.home).get("p").token == "secret-tok"


def test_profile_remove_forgets_the_profile(cli: Cli) -> None:
    cli("profile", "add", "p", "--url", "http://127.0.0.1:1", "--token", "t0123456789")
    assert cli("profile", "remove", "p").code == 0
    assert ProfileStore(cli.home).all() == {}
    assert cli("profile", "remove", "p").code == 1


def test_a_command_word_cannot_be_a_profile_name(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot be a profile name"):
        ProfileStore(tmp_path).add("start", "http://127.0.0.1:1", "token")


def test_an_unknown_profile_is_a_usage_error_naming_the_fix(cli: Cli) -> None:
    result = cli("nowhere", "tenants", "list")
    assert result.code == 1 and "no profile named 'nowhere'" in result.stderr and "profile add" in result.stderr


def test_bad_arguments_exit_1_with_the_usage(cli: Cli) -> None:
    cli("profile", "add", "p", "--url", "http://127.0.0.1:1", "--token", "t0123456789")
    result = cli("p", "acme", "accounts", "add", "--host", "smtp.example.com")
    assert result.code == 1 and "usage:" in result.stderr and "--id" in result.stderr
    assert cli().code == 1 and cli("--help").code == 0


def test_an_unreachable_proxy_exits_5(cli: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli("profile", "add", "down", "--url", f"http://127.0.0.1:{port}", "--token", "t0123456789")
    result = cli("down", "tenants", "list", "--retries", "0")
    assert result.code == 5 and "cannot reach" in result.stderr


def test_json_errors_are_parseable(cli: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli("profile", "add", "down", "--url", f"http://127.0.0.1:{port}", "--token", "t0123456789")
    result = cli("down", "status", "--json", "--retries", "0")
    assert result.code == 5 and result.json()["ok"] is False and result.json()["status"] is None


def test_start_local_finds_the_repository_it_was_installed_from() -> None:
    assert find_repository() == REPO


def test_start_local_refuses_a_directory_that_is_not_the_repository(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match="not the mail-proxy repository"):
        find_repository(tmp_path)


def test_stop_local_without_a_running_stack_says_so(cli: Cli) -> None:
    result = cli("stop", "local")
    assert result.code == 1 and "no local stack is running" in result.stderr


def test_a_token_starting_with_a_dash_is_saved_when_given_with_equals(cli: Cli) -> None:
    added = cli("profile", "add", "dash", "--url", "https://mail.example.com", "--token=-FtkTC3RPKtHSvQxHzl")
    assert added.code == 0, added.output
    assert json.loads((cli.home / "profiles.json").read_text())["profiles"]["dash"]["token"] == "-FtkTC3RPKtHSvQxHzl"
