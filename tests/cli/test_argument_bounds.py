"""Every number a command takes is checked before anything runs: out of range is one line naming the option, exit 2.

Before keap_pipeline.cli_args, `push --batch-size 0`, `sync --max-changes 0` and `reconcile --max-count -1`
ended in a traceback from a settings class, `sync --lock-timeout -1` in a database error after a batch had
been tried, `push --limit -1` in a run that claimed nothing and said it succeeded, `maintain partitions
--months-ahead 1000000` in a traceback after connecting, and `rollback --to -1` rolled every migration back.
"""

from __future__ import annotations

import argparse

import pytest

from keap_pipeline.cli import build_parser, main
from tests.cli.test_help_and_errors import _parsers

# (the command's words, its positional arguments, option, refused values, an accepted value); nothing
# here reaches a database or Keap
BOUNDS = [
    (["migrate"], [], "--to", ["-1", "x", "1.5"], "0"),
    (["rollback"], [], "--to", ["-1", "x"], "0"),
    (["sync"], ["contacts"], "--pages-per-batch", ["0", "-2", "x", "51"], "50"),
    (["sync"], ["contacts"], "--max-pages-per-batch", ["0"], "1"),
    (["sync"], ["contacts"], "--max-changes", ["0", "-3"], "250"),
    (["sync"], ["contacts"], "--lock-timeout", ["-1", "nan", "inf", "x", "3601", "1e10"], "3600"),
    (["sync"], ["contacts"], "--stall-timeout", ["-1", "-inf", "86401"], "0"),
    (["sync"], ["contacts"], "--wait", ["-0.5", "nan", "1e12"], "86400"),
    (["dead-letters"], ["list"], "--limit", ["0", "-1"], "5"),
    (["dead-letters"], ["replay"], "--id", ["0", "-4", "abc"], "7"),
    (["dead-letters"], ["replay"], "--wait", ["-1"], "0"),
    (["push"], [], "--limit", ["0", "-1"], "10"),
    (["push"], [], "--batch-size", ["0", "-5", "1001"], "1000"),
    (["push"], [], "--max-seconds", ["0", "-1", "nan", "86401"], "0.5"),
    (["push"], [], "--quota-share", ["0", "2", "150%", "-0.1", "%", "5%%", "nan%"], "50%"),
    (["reconcile"], ["contacts"], "--max-count", ["-1"], "0"),
    (["reconcile"], ["contacts"], "--max-share", ["1.5", "-1%"], "2%"),
    (["reconcile"], ["contacts"], "--quota-reserve", ["1", "100%"], "0.99"),
    (["reconcile"], ["contacts"], "--max-changes", ["0"], "1"),
    (["reconcile"], ["contacts"], "--clock-skew", ["-1", "86401"], "0"),
    (["reconcile"], ["contacts"], "--wait", ["-1"], "0"),
    (["reconcile"], ["contacts"], "--lock-timeout", ["-1", "3601"], "0"),
    (["maintain", "partitions"], [], "--months-ahead", ["-1", "121", "1000000"], "120"),
    (["maintain", "partitions"], [], "--retention-months", ["0", "10000"], "9999"),
    (["maintain", "queue"], [], "--keep-days", ["0", "36501"], "36500"),
    (["sandbox"], [], "--per-second", ["0"], "1"),
    (["sandbox"], [], "--per-minute", ["0"], "1"),
    (["sandbox"], [], "--per-day", ["0"], "1"),
    (["sandbox"], [], "--latency-ms", ["-1"], "0"),
    (["sandbox"], [], "--slow-every", ["-1"], "0"),
    (["sandbox"], [], "--slow-ms", ["-1"], "0"),
]


def _dest(parser: argparse.ArgumentParser, words: list[str], option: str) -> str:
    command = dict(_parsers(parser))[" ".join(["keap-pipeline", *words])]
    [action] = [a for a in command._actions if option in a.option_strings]
    return action.dest


@pytest.mark.parametrize(
    ("words", "positional", "option", "refused", "accepted"), BOUNDS,
    ids=[f"{' '.join(w)} {o}" for w, _, o, _, _ in BOUNDS],
)
def test_a_number_out_of_range_is_refused_before_anything_runs(
    words: list[str], positional: list[str], option: str, refused: list[str], accepted: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    for value in refused:
        with pytest.raises(SystemExit) as stopped:
            # the parser alone decides (main would go on to run the command): nothing is connected to
            parser.parse_args([*words, *positional, f"{option}={value}"])
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert f"argument {option}" in err[-1] and repr(value) in err[-1], err
        assert "Traceback" not in "\n".join(err)
    # the honest value passes the same check
    args = parser.parse_args([*words, *positional, f"{option}={accepted}"])
    assert getattr(args, _dest(parser, words, option)) not in (None, [])


def test_main_refuses_with_exit_2_and_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # through main, as a user runs it: refused before the database URL is even looked at
    with pytest.raises(SystemExit) as stopped:
        main(["rollback", "--to", "-1", "--database-url", "postgresql://nobody@127.0.0.1:1/none"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "keap-pipeline rollback: error: argument --to: '-1': must be 0 or more"
    )


def test_no_option_takes_any_number_unchecked() -> None:
    # a new numeric option takes a type of keap_pipeline.cli_args (or choices): the sandbox's counts, port
    # and shares are checked by SandboxConfig (one line, exit 2: tests/sandbox), its seed is any integer
    checked_by_the_sandbox_config = {
        "--port", "--contacts", "--tags", "--products", "--orders", "--subscriptions", "--companies", "--seed",
        "--error-share", "--drop-share", "--hide-share",
    }
    plain = [
        f"{path} {'/'.join(action.option_strings)}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if action.type in (int, float) and action.choices is None
        and not (path == "keap-pipeline sandbox" and set(action.option_strings) <= checked_by_the_sandbox_config)
    ]
    assert plain == []


def test_every_bounded_option_is_in_the_table() -> None:
    # the table above attacks every option whose type is one of cli_args' (so a new one gets its attack)
    from keap_pipeline import cli_args

    kinds = {cli_args.share, cli_args.share_below_one, cli_args.positive_share}
    made = {"whole number", "seconds", "positive seconds"}  # the names of what whole() and seconds() make
    bounded = {
        (path, opt)
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if action.type in kinds or getattr(action.type, "__name__", "") in made
        for opt in action.option_strings[:1]
    }
    listed = {(" ".join(["keap-pipeline", *words]), option) for words, _, option, _, _ in BOUNDS}
    assert bounded - listed == set()
