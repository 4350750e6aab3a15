"""The command line where no proxy is needed (or a scripted one stands in): profiles, keygen, help, usage
errors and exit codes, the connection from the environment, progress, completion, bulk sends, an unreachable
proxy, finding the repository for `start local`."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from mail_proxy_client import MailProxyClient, progress
from mail_proxy_client import cli as cli_module
from mail_proxy_client.bulk import messages_from_csv, split_addresses
from mail_proxy_client.completion import FILES, subcommands
from mail_proxy_client.local_stack import LocalStackError, find_repository
from mail_proxy_client.profiles import ProfileError, ProfileStore
from mail_proxy_client.progress import ProgressLine

from tests.client.conftest import CONNECTION_VARIABLES, REPO, Cli, client_environment
from tests.client.fake_api import FakeApi


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
    assert cli("profile", "remove", "p").code == 2


def test_a_command_word_cannot_be_a_profile_name(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot be a profile name"):
        ProfileStore(tmp_path).add("start", "http://127.0.0.1:1", "token")


def test_an_unknown_profile_is_a_usage_error_naming_the_fix(cli: Cli) -> None:
    result = cli("nowhere", "tenants", "list")
    assert result.code == 2 and "no profile named 'nowhere'" in result.stderr and "profile add" in result.stderr


def test_bad_arguments_exit_2_with_the_usage(cli: Cli) -> None:
    cli("profile", "add", "p", "--url", "http://127.0.0.1:1", "--token", "t0123456789")
    result = cli("p", "acme", "accounts", "add", "--host", "smtp.example.com")
    assert result.code == 2 and "usage:" in result.stderr and "--id" in result.stderr
    assert cli().code == 2 and cli("--help").code == 0


def test_an_unreachable_proxy_exits_5(cli: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli("profile", "add", "down", "--url", f"http://127.0.0.1:{port}", "--token", "t0123456789")
    result = cli("down", "tenants", "list", "--retries", "0")
    assert result.code == 5 and "cannot reach" in result.stderr
    assert "hint: is the local stack running? Start it with 'make run'" in result.stderr


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
    assert result.code == 2 and "no local stack is running" in result.stderr


def test_a_token_starting_with_a_dash_is_saved_when_given_with_equals(cli: Cli) -> None:
    added = cli("profile", "add", "dash", "--url", "https://mail.example.com", "--token=-FtkTC3RPKtHSvQxHzl")
    assert added.code == 0, added.output
    assert json.loads((cli.home / "profiles.json").read_text())["profiles"]["dash"]["token"] == "-FtkTC3RPKtHSvQxHzl"


# ----------------------------------------------------------------------------- help, usage and exit codes


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, with the words that reach it."""
    found: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found.append((name, parser))
        for word, child in subcommands(parser).items():
            walk(f"{name} {word}", child)

    walk("mail-proxy", cli_module.with_examples(cli_module.top_parser()))
    walk("mail-proxy P", cli_module.with_examples(cli_module.profile_parser("P")))
    walk("mail-proxy P T", cli_module.with_examples(cli_module.tenant_parser("P", "T")))
    return found


def test_every_option_and_argument_has_help_text() -> None:
    missing = [f"{name} {action.option_strings or action.dest}" for name, parser in _parsers()
               for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert missing == []


def test_every_command_help_ends_with_an_example() -> None:
    commands = [(name, parser) for name, parser in _parsers() if name.count(" ") >= 1
                and name not in ("mail-proxy P", "mail-proxy P T")]
    assert len(commands) > 35
    lacking = [name for name, parser in commands if "example" not in (parser.epilog or "")
               or "mail-proxy " not in (parser.epilog or "")]
    assert lacking == []


def test_help_lists_every_command_with_its_description_the_variables_and_the_exit_codes(cli: Cli) -> None:
    shown = cli("--help")
    assert shown.code == 0
    for command in (*cli_module.TOP_COMMANDS, *cli_module.PROFILE_COMMANDS, *cli_module.TENANT_COMMANDS):
        line = next((line for line in shown.stdout.splitlines() if line.startswith(f"  {command}")), None)
        assert line is not None, command
    assert "send a message (.eml or --to/--subject/--body) or a list (--file)" in shown.stdout
    for text in ("MAIL_PROXY_URL", "MAIL_PROXY_TOKEN", "MAIL_PROXY_PROFILE", "--token=VALUE", "130  interrupted",
                 "2    usage", "6    authentication"):
        assert text in shown.stdout, text


def test_the_help_of_profile_add_says_a_dash_token_needs_equals(cli: Cli) -> None:
    assert "--token=VALUE if it starts with '-'" in " ".join(cli("profile", "add", "--help").stdout.split())


def test_a_mistyped_command_gets_a_suggestion_and_is_never_read_as_a_profile(cli: Cli) -> None:
    for argv, suggested in ((["tenats", "list"], "tenants"), (["keygne"], "keygen"), (["statsu"], "status")):
        result = cli(*argv)
        assert result.code == 2, result.output
        assert f"did you mean '{suggested}'?" in result.stderr and "no profile named" not in result.stderr


def test_a_mistyped_command_after_a_profile_or_tenant_gets_a_suggestion(cli: Cli) -> None:
    cli("profile", "add", "p", "--url", "http://127.0.0.1:1", "--token", "t0123456789")
    command = cli("p", "acme", "mesages", "list")
    action = cli("p", "tenants", "lst")
    assert command.code == 2 and "did you mean 'messages'?" in command.stderr
    assert action.code == 2 and "did you mean 'list'?" in action.stderr


def test_json_before_the_command_is_the_option_not_a_profile(cli: Cli) -> None:
    cli("profile", "add", "p", "--url", "http://127.0.0.1:1", "--token", "t0123456789")
    before, after = cli("--json", "profile", "list"), cli("profile", "list", "--json")
    assert before.code == 0 and before.json() == after.json() == [{"name": "p", "url": "http://127.0.0.1:1",
                                                                   "token": "t01234…"}]


def test_usage_errors_print_json_with_json(cli: Cli) -> None:
    for argv in (["--json", "tenats", "list"], ["profile", "add", "p", "--json"]):
        result = cli(*argv)
        assert result.code == 2 and result.json()["ok"] is False and result.json()["error"], argv
    assert cli("--json", "tenats").json()["error"] == "unknown command 'tenats'; did you mean 'tenants'? (see " \
                                                     "mail-proxy --help)"
    assert cli("--json").json()["error"] == "a command is required"
    assert cli("--json", "profile", "ad").json()["error"].endswith("did you mean 'add'?")


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupted(ctx: object) -> NoReturn:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_module.TOP_HANDLERS, "keygen", interrupted)
    result = run_in_process(["keygen"], monkeypatch, tmp_path)
    assert result.code == 130 and "interrupted" in result.stderr


def test_ctrl_c_while_waiting_for_a_message_exits_130(cli: Cli, fake_api: FakeApi) -> None:
    fake_api.answer(200, {"tenant_id": "acme"}).answer(200, {"accounts": [{"id": "main"}]})
    fake_api.answer(200, {"ok": True, "queued": 1, "rejected": []})
    command = [sys.executable, "-m", "mail_proxy_client.cli", "acme", "send", "--to", "ada@example.org",
               "--subject", "s", "--body", "b", "--from", "shop@example.com", "--wait", "30"]
    env = client_environment(cli.home, MAIL_PROXY_URL=fake_api.url, MAIL_PROXY_TOKEN="tok")
    with subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as running:
        deadline = time.monotonic() + 30
        while not any("/messages/" in r.path for r in fake_api.requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        running.send_signal(signal.SIGINT)
        _, stderr = running.communicate(timeout=30)
    assert running.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr


# ----------------------------------------------------------------------------- connection from the environment


def test_the_environment_gives_the_connection_without_a_profile(cli: Cli, fake_api: FakeApi) -> None:
    fake_api.answer(200, {"ok": True, "active": True})
    result = cli("status", env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "env-token"})
    assert result.code == 0, result.output
    assert fake_api.requests[0].headers["x-api-token"] == "env-token"


def test_flags_win_over_the_environment_which_wins_over_the_profile_file(cli: Cli, fake_api: FakeApi) -> None:
    cli("profile", "add", "saved", "--url", fake_api.url, "--token", "file-token")
    env = {"MAIL_PROXY_PROFILE": "saved"}
    assert cli("status", env=env).code == 0
    assert cli("status", env={**env, "MAIL_PROXY_TOKEN": "env-token"}).code == 0
    assert cli("status", "--token=-flag-token", env={**env, "MAIL_PROXY_TOKEN": "env-token"}).code == 0
    assert cli("--token=-flag-token", "status", env={**env, "MAIL_PROXY_TOKEN": "env-token"}).code == 0
    assert [r.headers["x-api-token"] for r in fake_api.requests] == ["file-token", "env-token", "-flag-token",
                                                                     "-flag-token"]


def test_a_profile_named_on_the_command_line_wins_over_the_environment(cli: Cli, fake_api: FakeApi) -> None:
    cli("profile", "add", "saved", "--url", fake_api.url, "--token", "file-token")
    result = cli("saved", "status", env={"MAIL_PROXY_URL": "http://127.0.0.1:1", "MAIL_PROXY_TOKEN": "env-token"})
    assert result.code == 0 and fake_api.requests[0].headers["x-api-token"] == "file-token"


def test_without_profile_or_environment_the_error_names_both(cli: Cli) -> None:
    result = cli("tenants", "list")
    assert result.code == 2 and "MAIL_PROXY_URL" in result.stderr and "PROFILE" in result.stderr


def test_a_profile_without_a_tenant_before_a_tenant_command_is_told_to_name_the_tenant(cli: Cli) -> None:
    cli("profile", "add", "prod", "--url", "http://127.0.0.1:1", "--token", "t0123456789")
    result = cli("prod", "send", "--to", "a@example.org")
    assert result.code == 2 and "'prod' is a profile: name the tenant after it" in result.stderr


def test_a_tenant_command_with_the_environment_takes_the_first_word_as_the_tenant(cli: Cli, fake_api: FakeApi) -> None:
    fake_api.answer(200, {"tenant_id": "acme"}).answer(200, {"accounts": []})
    result = cli("acme", "accounts", "list", env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 0, result.output
    assert [r.path for r in fake_api.requests] == ["/tenant/acme", "/accounts?tenant_id=acme"]


# ----------------------------------------------------------------------------- progress


def test_progress_line_draws_a_bar_where_the_count_is_known() -> None:
    shown = Terminal()
    line = ProgressLine(shown, enabled=True, clock=lambda: 0.0)
    line.start("Sending list.csv", 1000)
    line.update(400, force=True)
    assert line.render() == "Sending list.csv [#########---------------] 400/1,000 (40%, 0 s)"
    line.finish()
    assert shown.getvalue().endswith("\r\x1b[K")


def test_progress_line_is_silent_when_disabled() -> None:
    shown = io.StringIO()
    line = ProgressLine(shown, enabled=False)
    line.start("Reading messages")
    line.update(10, force=True)
    line.message("retrying")
    line.finish()
    assert shown.getvalue() == ""


def _bulk_script(api: FakeApi, *chunks: dict[str, object]) -> None:
    api.answer(200, {"tenant_id": "acme"}).answer(200, {"accounts": [{"id": "main", "user": "shop@example.com"}]})
    for chunk in chunks:
        api.answer(200, chunk)


def test_a_bulk_send_shows_a_progress_bar_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             fake_api: FakeApi) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("to,subject,body\n" + "".join(f"u{n}@example.org,S{n},B{n}\n" for n in range(5)))
    env = {"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"}
    argv = ["acme", "send", "--file", str(listing), "--chunk-size", "2"]
    ok = {"ok": True, "queued": 2, "rejected": []}
    _bulk_script(fake_api, ok, ok, {**ok, "queued": 1})
    on_terminal = run_in_process(argv, monkeypatch, tmp_path, terminal=True, env=env)
    _bulk_script(fake_api, ok, ok, {**ok, "queued": 1})
    piped = run_in_process(argv, monkeypatch, tmp_path, env=env)
    _bulk_script(fake_api, ok, ok, {**ok, "queued": 1})
    as_json = run_in_process([*argv, "--json"], monkeypatch, tmp_path, terminal=True, env=env)
    assert on_terminal.code == piped.code == as_json.code == 0
    assert "Sending list.csv [########################] 5/5 (100%" in on_terminal.stderr
    assert piped.stderr == "" and as_json.stderr == ""
    assert "Queued 5 of 5 messages (3 chunks)." in on_terminal.stdout


def test_retries_are_reported_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            fake_api: FakeApi) -> None:
    monkeypatch.setattr(cli_module, "MailProxyClient", NoWaitClient)
    fake_api.answer(503, {"detail": "busy"}).answer(200, {"ok": True, "active": True})
    result = run_in_process(["status"], monkeypatch, tmp_path, terminal=True,
                            env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 0 and "503 busy: retry 1 of 3 in" in result.stderr


def test_messages_list_all_counts_what_it_has_read_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 fake_api: FakeApi) -> None:
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)  # every record redrawn, however fast they come
    fake_api.answer(200, {"tenant_id": "acme"})
    fake_api.answer(200, {"ok": True, "messages": [{"id": "a"}, {"id": "b"}], "next_cursor": "c1"})
    fake_api.answer(200, {"ok": True, "messages": [{"id": "c"}], "next_cursor": None})
    result = run_in_process(["acme", "messages", "list", "--all"], monkeypatch, tmp_path, terminal=True,
                            env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 0 and "Reading messages: 2 (0 s)" in result.stderr and "Reading messages: 3" in result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["a", "b", "c"]


def test_send_wait_shows_the_status_it_waits_on_on_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               fake_api: FakeApi) -> None:
    monkeypatch.setattr(cli_module, "MailProxyClient", NoWaitClient)
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)
    fake_api.answer(200, {"tenant_id": "acme"}).answer(200, {"accounts": [{"id": "main"}]})
    fake_api.answer(200, {"ok": True, "queued": 1, "rejected": []})
    fake_api.answer(200, {"id": "w1", "status": "pending"}).answer(200, {"id": "w1", "status": "sent"})
    result = run_in_process(["acme", "send", "--id", "w1", "--to", "a@example.org", "--subject", "s", "--body", "b",
                             "--from", "s@example.com", "--wait", "30"], monkeypatch, tmp_path, terminal=True,
                            env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 0 and "Sent 'w1'" in result.stdout
    assert "Waiting for 'w1' (0 s): pending" in result.stderr


# ----------------------------------------------------------------------------- completion


def test_completion_scripts_are_printed_for_each_shell(cli: Cli) -> None:
    for shell, marker in (("bash", "complete -o default -F"), ("zsh", "#compdef mail-proxy"),
                          ("fish", "complete -c mail-proxy")):
        result = cli("completion", shell)
        assert result.code == 0 and marker in result.stdout and "mail-proxy __complete" in result.stdout
    assert cli("completion", "tcsh").code == 2


def test_the_bash_script_is_valid_bash(cli: Cli) -> None:
    checked = subprocess.run(["bash", "-n"], input=cli("completion", "bash").stdout, text=True, capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stderr


def test_completion_follows_the_command_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAIL_PROXY_HOME", str(tmp_path))
    ProfileStore(tmp_path).add("prod", "https://mail.example.com", "t0123456789")
    assert cli_module.complete([], "pr") == ["profile", "prod"]
    assert cli_module.complete(["prod"], "te") == ["tenants"]
    assert cli_module.complete(["prod", "tenants"], "") == ["list", "add", "show", "update", "delete", "api-key",
                                                            "signing-secret"]
    assert cli_module.complete(["prod", "acme"], "me") == ["messages"]
    assert cli_module.complete(["prod", "acme", "messages", "list", "--status"], "se") == ["sending", "sent"]
    assert "--active-only" in cli_module.complete(["prod", "acme", "messages", "list"], "--a")
    assert cli_module.complete(["prod", "acme", "send", "--file"], "") == [FILES]
    assert cli_module.complete(["completion"], "") == ["bash", "zsh", "fish"]
    assert cli_module.complete(["--json", "prod", "acme", "send"], "--ch") == ["--chunk-size"]


# Each shell's script loaded, the words of a half-typed command line given, and what it offers printed.
SHELL_RUNS = {
    "bash": ["bash", "-c", 'source "$1"; COMP_WORDS=(mail-proxy prod acme messages li); COMP_CWORD=4; '
             '_mail_proxy_complete; printf "%s\\n" "${COMPREPLY[@]}"', "bash"],
    "zsh": ["zsh", "-f", "-c", 'compdef() { :; }; compadd() { [[ $1 == -- ]] && shift; print -l -- "$@"; }; '
            'source "$1"; words=(mail-proxy prod acme messages li); CURRENT=5; _mail_proxy', "zsh"],
    "fish": ["fish", "-N", "-c", 'source $argv[1]; complete -C"mail-proxy prod acme messages li"'],
}


@pytest.mark.parametrize("shell", sorted(SHELL_RUNS))
def test_each_shell_completes_through_the_command(cli: Cli, tmp_path: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    cli("profile", "add", "prod", "--url", "https://mail.example.com", "--token", "t0123456789")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "mail-proxy"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mail_proxy_client.cli "$@"\n')
    wrapper.chmod(0o755)
    script = tmp_path / f"completion.{shell}"
    script.write_text(cli("completion", shell).stdout)
    env = client_environment(cli.home, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run([*SHELL_RUNS[shell], str(script)], env=env, text=True, capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == ["list"], done.stderr


# ----------------------------------------------------------------------------- bulk send


def test_a_csv_list_is_sent_in_chunks_with_a_summary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     fake_api: FakeApi) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text('id,to,cc,subject,body,html\n'
                       'm1,"a@example.org; ""Doe, Ada"" <ada@example.org>",,S1,B1,\n'
                       'm2,b@example.org,c@example.org,S2,,<p>H2</p>\n'
                       'm3,nobody,,S3,B3,\n')
    rejected = [{"id": "m3", "reason": "to: 'nobody' is not an e-mail address"}]
    _bulk_script(fake_api, {"ok": True, "queued": 2, "rejected": []}, {"ok": True, "queued": 0, "rejected": rejected})
    result = run_in_process(["acme", "send", "--file", str(listing), "--chunk-size", "2", "--batch-code", "news"],
                            monkeypatch, tmp_path, env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 4
    chunks = [r for r in fake_api.requests if r.path.startswith("/commands/add-messages")]
    sent = [m for r in chunks for m in r.json()["messages"]]
    assert [len(r.json()["messages"]) for r in chunks] == [2, 1]
    assert len({r.headers["idempotency-key"] for r in chunks}) == 2
    assert sent[0] == {"id": "m1", "to": ["a@example.org", '"Doe, Ada" <ada@example.org>'], "subject": "S1",
                       "body": "B1", "account_id": "main", "from": "shop@example.com", "batch_code": "news"}
    assert sent[1]["cc"] == ["c@example.org"] and sent[1]["html_body"] == "<p>H2</p>" and "body" not in sent[1]
    assert "Queued 2 of 3 messages (2 chunks)." in result.stdout
    assert "1  to: 'nobody' is not an e-mail address (ids: m3)" in result.stdout


def test_a_chunk_that_fails_transiently_is_retried_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         fake_api: FakeApi) -> None:
    monkeypatch.setattr(cli_module, "MailProxyClient", NoWaitClient)
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps([{"id": f"m{n}", "to": ["a@example.org"], "from": "s@example.com",
                                    "subject": "s", "body": "b"} for n in range(3)]))
    fake_api.answer(200, {"tenant_id": "acme"}).answer(200, {"accounts": [{"id": "main"}]})
    fake_api.answer(200, {"ok": True, "queued": 2, "rejected": []}).answer(503, {"detail": "busy"})
    fake_api.answer(200, {"ok": True, "queued": 1, "rejected": []})
    result = run_in_process(["acme", "send", "--file", str(listing), "--chunk-size", "2", "--json"], monkeypatch,
                            tmp_path, env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 0, result.stderr
    chunks = [r for r in fake_api.requests if r.path.startswith("/commands/add-messages")]
    assert [[m["id"] for m in r.json()["messages"]] for r in chunks] == [["m0", "m1"], ["m2"], ["m2"]]
    assert chunks[1].headers["idempotency-key"] == chunks[2].headers["idempotency-key"]
    assert json.loads(result.stdout) == {"ok": True, "total": 3, "queued": 3, "rejected": [], "not_submitted": [],
                                         "chunks": 2, "error": None}


def test_a_chunk_that_keeps_failing_stops_the_run_and_names_what_was_not_submitted(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_api: FakeApi) -> None:
    listing = tmp_path / "list.jsonl"
    listing.write_text("".join(json.dumps({"id": f"m{n}", "account_id": "main", "from": "s@example.com",
                                           "to": ["a@example.org"], "subject": "s", "body": "b"}) + "\n"
                               for n in range(3)))
    fake_api.answer(200, {"tenant_id": "acme"}).answer(200, {"ok": True, "queued": 1, "rejected": []})
    fake_api.answer(500, {"detail": "broken"})
    result = run_in_process(["acme", "send", "--file", str(listing), "--chunk-size", "1", "--retries", "0"],
                            monkeypatch, tmp_path, env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 5
    assert "Queued 1 of 3" in result.stdout and "Not submitted 2, from 'm1' on: 500 broken." in result.stdout


def test_a_chunk_too_large_for_the_proxy_is_split_in_halves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             fake_api: FakeApi) -> None:
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"messages": [{"id": f"m{n}", "account_id": "main", "from": "s@example.com",
                                                 "to": ["a@example.org"], "subject": "s", "body": "b"}
                                                for n in range(3)]}))
    too_large, one = {"detail": "request body larger than 10 bytes"}, {"ok": True, "queued": 1, "rejected": []}
    fake_api.answer(200, {"tenant_id": "acme"}).answer(413, too_large).answer(200, one)  # all three; then m0
    fake_api.answer(413, too_large).answer(200, one).answer(413, too_large)  # m1 and m2; then m1; then m2
    result = run_in_process(["acme", "send", "--file", str(listing), "--json"], monkeypatch, tmp_path,
                            env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    chunks = [r for r in fake_api.requests if r.path.startswith("/commands/add-messages")]
    assert [[m["id"] for m in r.json()["messages"]] for r in chunks] == [["m0", "m1", "m2"], ["m0"], ["m1", "m2"],
                                                                          ["m1"], ["m2"]]
    assert result.code == 4
    summary = json.loads(result.stdout)
    assert summary["queued"] == 2 and summary["rejected"] == [
        {"id": "m2", "reason": "too large: request body larger than 10 bytes"}]


def test_a_bad_messages_file_is_a_usage_error_naming_the_fault(cli: Cli, tmp_path: Path, fake_api: FakeApi) -> None:
    env = {"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"}
    (tmp_path / "bad.json").write_text('[{"id": "a",}]')
    (tmp_path / "bad.csv").write_text("to,subjcet\na@example.org,s\n")
    (tmp_path / "list.txt").write_text("a@example.org\n")
    for name, expected in (("bad.json", "invalid JSON at line 1"), ("bad.csv", "unknown column 'subjcet'"),
                           ("list.txt", "name it .json, .jsonl or .csv"), ("missing.csv", "cannot read")):
        result = cli("acme", "send", "--file", str(tmp_path / name), env=env)
        assert result.code == 2 and expected in result.stderr, result.output
    assert not any(r.path.startswith("/commands/add-messages") for r in fake_api.requests)


def test_send_file_cannot_be_combined_with_a_single_message(cli: Cli, tmp_path: Path, fake_api: FakeApi) -> None:
    (tmp_path / "l.csv").write_text("to\na@example.org\n")
    result = cli("acme", "send", "--file", str(tmp_path / "l.csv"), "--to", "b@example.org", "--wait",
                 env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 2 and "--to, --wait cannot be combined with it" in result.stderr


def test_addresses_in_a_cell_are_split_on_commas_and_semicolons_outside_quotes() -> None:
    assert split_addresses('a@x.org, "Doe, Ada" <ada@x.org>; <b@x.org>,') == [
        "a@x.org", '"Doe, Ada" <ada@x.org>', "<b@x.org>"]


def test_csv_columns_become_message_fields() -> None:
    messages = messages_from_csv("ID,To,Reply-To,Priority,Deferred_TS,Account\nm,a@x.org,r@x.org,2,1767225600,main\n")
    assert messages == [{"id": "m", "to": ["a@x.org"], "reply_to": "r@x.org", "priority": 2,
                         "deferred_ts": 1767225600, "account_id": "main"}]


# ----------------------------------------------------------------------------- messages show


def test_messages_show_summarises_attachments_and_decodes_their_names(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path, fake_api: FakeApi) -> None:
    content = base64.b64encode(b"%PDF" + b"x" * 3068).decode()
    record = {"id": "m1", "status": "sent", "message": {
        "from": "shop@example.com", "to": ["a@example.org"], "subject": "Invoice",
        "attachments": [{"filename": "=?utf-8?b?UsOpc3Vtw6kucGRm?=", "storage_path": content,
                         "fetch_mode": "base64", "mime_type": "application/pdf"}]}, "history": []}
    fake_api.answer(200, {"tenant_id": "acme"}).answer(200, record)
    result = run_in_process(["acme", "messages", "show", "m1"], monkeypatch, tmp_path,
                            env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 0
    assert "Résumé.pdf (application/pdf, 3.0 KB)" in result.stdout
    assert content[:40] not in result.stdout


# ----------------------------------------------------------------------------- helpers


class Terminal(io.StringIO):
    """Standard error as a terminal: progress is drawn on it."""

    def isatty(self) -> bool:
        return True


class NoWaitClient(MailProxyClient):
    """The client with its retry waits skipped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, sleep=lambda seconds: None, **kwargs)


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str


def run_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch, home: Path, *, terminal: bool = False,
                   env: dict[str, str] | None = None) -> Ran:
    """``main(argv)`` in this process (where a test can swap parts of it), standard error a terminal or not."""
    monkeypatch.setenv("MAIL_PROXY_HOME", str(home / "mail-proxy-home"))
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    out, err = io.StringIO(), Terminal() if terminal else io.StringIO()
    with monkeypatch.context() as patched:
        patched.setattr(sys, "stdout", out)
        patched.setattr(sys, "stderr", err)
        code = cli_module.main(argv)
    return Ran(code, out.getvalue(), err.getvalue())
