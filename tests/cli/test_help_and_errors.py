"""The command line as a new user meets it: every argument's help and default, and errors as one line, exit 2, no secret."""

from __future__ import annotations

import argparse
import socket
import time

import pytest

from keap_pipeline.cli import build_parser, main
from keap_pipeline.entities import ENTITIES

PASSWORD = "hunter2secret"
API_KEY = "KeapAK-cli-test-SECRET"


def _parsers(parser: argparse.ArgumentParser, path: str = "keap-pipeline") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.extend(_parsers(child, f"{path} {name}"))
    return found


def _defaulted(action: argparse.Action) -> bool:
    # a default worth saying: not the absence of a value, not an off switch
    return action.default not in (None, False, [], argparse.SUPPRESS) and not action.required


def test_every_argument_has_help_and_says_its_default() -> None:
    missing: list[str] = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = f"{path} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{name}: no help")
            elif _defaulted(action) and "default" not in action.help:
                missing.append(f"{name}: help does not say its default ({action.default!r})")
    assert missing == []


def test_the_named_papercuts_have_their_help(capsys: pytest.CaptureFixture[str]) -> None:
    helps = {}
    for command in (["db"], ["rollback"], ["sync"], ["dead-letters"], ["sandbox"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        helps[command[0]] = " ".join(capsys.readouterr().out.split())
    assert "up: start it" in helps["db"] and "down: stop it" in helps["db"] and "status:" in helps["db"]
    assert "--to VERSION required: keep the migrations up to this version" in helps["rollback"]
    for flag, default in (("--strategy", "default keap_wins"), ("--merge-rule", "default manual")):
        assert flag in helps["sync"] and default in helps["sync"] and default in helps["dead-letters"]
    assert "KEAP_API_KEY (required)" in helps["sync"] and "KEAP_BASE_URL" in helps["sync"]
    assert "'sandbox-key'" in helps["sandbox"] and "'sandbox-demo-key'" in helps["sandbox"]


def test_dead_letters_offer_exactly_the_entities_with_a_loader(migrated_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    [entity] = [a for a in _parsers(build_parser())[0][1]._actions if isinstance(a, argparse._SubParsersAction)]
    dead_letters = entity.choices["dead-letters"]
    [option] = [a for a in dead_letters._actions if a.dest == "entity"]
    assert list(option.choices or ()) == list(ENTITIES) == ["tags", "products", "contacts", "orders", "subscriptions"]
    for name in ENTITIES:  # each one replays (its normalizer and upsert exist), nothing to do here
        assert main(["dead-letters", "replay", "--entity", name, "--database-url", migrated_database]) == 0
        assert "replayed 0: []" in capsys.readouterr().out


def test_replaying_an_id_that_is_no_open_dead_letter_says_so(migrated_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    # it printed "replayed 0: []" and exited 0, as if the letter had been replayed
    assert main(["dead-letters", "replay", "--entity", "orders", "--id", "424242", "--database-url", migrated_database]) == 1
    captured = capsys.readouterr()
    assert "replayed 0: []" in captured.out
    assert captured.err.strip() == (
        "keap-pipeline dead-letters: no open orders dead letter with id 424242 "
        "(`keap-pipeline dead-letters list --entity orders --status all` shows them all)"
    )


def _closed_port() -> int:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


COMMANDS = [
    ["migrate"], ["rollback", "--to", "0"], ["migrations"], ["dead-letters", "list"], ["dead-letters", "replay"],
    ["maintain", "partitions"], ["maintain", "vacuum"], ["sync", "contacts"], ["sync", "all"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("form", ["closed port", "unparseable password", "from the environment"])
def test_database_errors_of_every_command_are_one_line_exit_2_no_secret(
    command: list[str], form: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    url = {
        "closed port": f"postgresql://someone:{PASSWORD}@127.0.0.1:{port}/nowhere",
        # libpq quotes the token it cannot decode: the password itself
        "unparseable password": f"postgresql://someone:{PASSWORD}%zz@127.0.0.1:{port}/nowhere",
        "from the environment": f"postgresql://someone:{PASSWORD}%zz@127.0.0.1:{port}/nowhere",
    }[form]
    monkeypatch.setenv("KEAP_API_KEY", API_KEY)
    argv = [*command, "--base-url", f"http://127.0.0.1:{_closed_port()}/crm/rest/v2"] if command[0] == "sync" else command
    if form == "from the environment":
        monkeypatch.setenv("KEAP_PIPELINE_DATABASE_URL", url)
    else:
        argv = [*argv, "--database-url", url]
    status = main(argv)
    out = capsys.readouterr()
    errors = out.err.strip().splitlines()
    assert status == 2
    # `sync all` prints a line per entity that ran (tags, products; the others are skipped after them)
    assert errors and all("database error: " in line for line in errors), out.err
    assert len(errors) == (2 if command == ["sync", "all"] else 1), out.err
    assert errors[0].startswith(f"keap-pipeline {command[0]}"), out.err
    assert PASSWORD not in out.err + out.out and API_KEY not in out.err + out.out


def test_a_database_without_the_schema_says_to_migrate(fresh_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letters", "list", "--database-url", fresh_database]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("keap-pipeline dead-letters: database error: relation ")
    assert line.endswith("is the schema migrated? run `keap-pipeline migrate`")


def test_a_refused_keap_connection_is_one_line_at_once(
    migrated_database: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEAP_API_KEY", API_KEY)
    port = _closed_port()
    started = time.monotonic()
    status = main(["sync", "contacts", "--base-url", f"http://127.0.0.1:{port}/crm/rest/v2",
                   "--database-url", migrated_database])
    elapsed = time.monotonic() - started
    out = capsys.readouterr()
    assert status == 2
    [line] = out.err.strip().splitlines()
    assert line.startswith(f"keap-pipeline sync contacts: GET /contacts: connection refused by 127.0.0.1:{port}")
    assert "timeout" not in line and API_KEY not in out.err + out.out
    assert elapsed < 5.0  # no backoff (it used to retry for ~7.8 s)


def test_a_keap_pipeline_home_that_is_a_file_is_one_line(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    # it was a FileExistsError traceback from mkdir
    afile = tmp_path / "home"
    afile.write_text("not a folder")
    monkeypatch.delenv("KEAP_PIPELINE_DATABASE_URL", raising=False)
    for home, said in ((afile, "is a file, not a folder"), (afile / "below", "cannot be created (Not a directory)")):
        monkeypatch.setenv("KEAP_PIPELINE_HOME", str(home))
        assert main(["db", "status"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"keap-pipeline db: KEAP_PIPELINE_HOME {home} ") and said in err and "Traceback" not in err
