"""The shape of ``make bench``'s output, with every part replaced by a stub (the benchmarks themselves never run
as tests): a table row per part that ran, then one JSON line with every headline figure, null and a reason for
a part that could not run; compare.sh's output parsed into ``e2e_over_peer``."""

from __future__ import annotations

import json
from typing import Any

import pytest

import bench.__main__ as bench_main
from bench.latency import percentile
from bench.peer import parse_compare_output

FIGURES: dict[str, dict[str, Any]] = {
    "sender": {"sender_over_smtplib": 0.6, "sender_msgs_per_s": 600.0, "smtplib_msgs_per_s": 1000.0,
               "aws_requests_per_message": 3.1},
    "cost": {"usd_per_million": 2.5, "usd_per_million_api_batch_500": 2.1, "dynamodb_wru_per_message": 3.0},
    "coldstart": {"coldstart_ratio_max": 1.2, "coldstart_baseline_ms": 300.0},
    "layer": {"layer_mb": 17.3, "layer_plain_mb": 22.6},
    "e2e": {"e2e_over_peer": 2.4, "e2e_msgs_per_s": 140.0, "e2e_peer_msgs_per_s": 58.0, "e2e_lost": 0,
            "e2e_duplicates": 0},
}


def _stub_parts(monkeypatch: pytest.MonkeyPatch, failing: str) -> list[str]:
    ran: list[str] = []

    def run(section: str, args: Any) -> dict[str, Any]:
        ran.append(section)
        if section == failing:
            raise RuntimeError("the local stack did not start")
        return dict(FIGURES[section])

    monkeypatch.setattr(bench_main, "_run", run)
    return ran


def test_every_part_runs_and_the_last_line_holds_every_headline_figure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ran = _stub_parts(monkeypatch, failing="latency")
    code = bench_main.main(["--max-seconds", "60"])
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert ran == list(bench_main.PARTS)
    for key in ("e2e_over_peer", "sender_over_smtplib", "usd_per_million", "coldstart_ratio_max", "layer_mb",
                "submit_to_sink_p50_ms", "submit_to_sink_p95_ms"):
        assert key in summary
    assert summary["e2e_over_peer"] == 2.4 and summary["layer_mb"] == 17.3
    assert summary["submit_to_sink_p50_ms"] is None and summary["submit_to_sink_p95_ms"] is None
    assert summary["failures"] == {"latency": "the local stack did not start"}
    assert code == 1
    table = "\n".join(lines)
    assert "| 17.3 MB | requirements.txt installed plainly 22.6 MB | <= 20 MB | yes |" in table
    assert "not measured: the local stack did not start" in table


def test_only_runs_one_part_and_the_others_stay_null(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ran = _stub_parts(monkeypatch, failing="none")
    code = bench_main.main(["--only", "cost"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ran == ["cost"] and code == 0
    assert summary["usd_per_million"] == 2.5
    assert summary["sender_over_smtplib"] is None and summary["failures"] == {}


def test_a_part_reporting_a_problem_keeps_its_figures_and_fails_the_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_main, "_run", lambda section, args: {**FIGURES["e2e"], "e2e_lost": 3,
                                                                  "problem": "ours lost 3 and sent 0 twice"})
    code = bench_main.main(["--only", "e2e"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and summary["e2e_lost"] == 3 and "problem" not in summary
    assert summary["failures"] == {"e2e": "ours lost 3 and sent 0 twice"}


COMPARE_STDOUT = """\
{"mode": "peer-fixed", "n": 2000, "submit_s": 3.1, "total_s": 33.8, "delivered": 2000, "duplicates": 0, \
"lost": 0, "msgs_per_s": 59.1, "end": "all_delivered"}
{"mode": "ours", "n": 2000, "submit_s": 21.0, "total_s": 77.5, "delivered": 2000, "duplicates": 0, "lost": 0, \
"msgs_per_s": 25.8, "end": "all_delivered"}
{"ratio": "ours/peer msgs_per_s", "ours_over_peer_fixed": 0.44}
"""


def test_compare_output_gives_the_ratio_and_both_rates() -> None:
    result = parse_compare_output(COMPARE_STDOUT)
    assert result["e2e_over_peer"] == 0.44
    assert (result["e2e_msgs_per_s"], result["e2e_peer_msgs_per_s"]) == (25.8, 59.1)
    assert (result["e2e_lost"], result["e2e_duplicates"], result["e2e_submit_s"]) == (0, 0, 21.0)
    assert "problem" not in result


def test_compare_output_without_a_ratio_says_why() -> None:
    stdout = ('{"mode": "peer-fixed", "n": 5, "error": "pip failed"}\n'
              '{"mode": "ours", "n": 5, "msgs_per_s": 20.0, "lost": 0, "duplicates": 0}\n'
              '{"ratio": "ours/peer msgs_per_s", "ours_over_peer_fixed": null, "why_null": "pip failed"}\n')
    result = parse_compare_output(stdout)
    assert result["e2e_over_peer"] is None and result["e2e_msgs_per_s"] == 20.0
    assert result["problem"] == "pip failed"
    assert parse_compare_output("[run.sh] progress only\n")["problem"] == "compare.sh printed no ratio line"


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None


def test_compare_sh_gets_no_make_state_so_its_make_run_ignores_the_benchs_arguments() -> None:
    from bench.peer import compare_environment

    outer = {"PATH": "/usr/bin", "MAKEFLAGS": " -- ARGS=--only\\ e2e", "MAKELEVEL": "1", "MFLAGS": "-s",
             "MAKEOVERRIDES": "${-*-command-variables-*-}"}
    env = compare_environment(outer, 8341, 2600)
    assert not {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"} & set(env)
    assert env["PATH"] == "/usr/bin" and env["OURS_PORT"] == env["MAIL_PROXY_PORT"] == "8341"
    assert env["MAIL_PROXY_SMTP_PORT"] == "2600" and env["PEER_DEFAULT_N"] == "0"
