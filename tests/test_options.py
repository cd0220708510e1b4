"""Every flag and variable of every command: a wrong value is one line, exit 2, nothing run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

import bbb_tui.cli
import bridge.cli
import bridge.tools.tail
from bridge.config import (
    SERVE_OPTIONS,
    ConfigError,
    Settings,
    redis_url_from_env,
    settings_from,
)
from bridge.options import Command, Option
from scripts import readme
from tests.helpers import run

COMMANDS: list[tuple[str, Command]] = [
    *((f"bbb-bridge {name}", command) for name, command in bridge.cli.COMMANDS.items()),
    ("bbb-tui", bbb_tui.cli.COMMAND),
]


def cases() -> list[tuple[str, Option, str, str]]:
    """(command, option, source, bad value) for every option that can be given wrong."""
    found = []
    for name, command in COMMANDS:
        for option in command.options:
            if option.hidden:
                continue
            for bad in option.bad_values:
                if not option.switch:
                    found.append((name, option, option.flag, bad))
                variable = "REDIS_URL" if option.env_reader else (option.env or ("",))[0]
                if variable and bad.strip():  # an empty variable means "not set"
                    found.append((name, option, variable, bad))
    return found


CASES = cases()


def test_every_option_can_be_walked() -> None:
    """Every option is walked but free text (a token's subject) and a switch without a
    variable (it takes no value that could be wrong)."""
    walked = {(name, option.flag) for name, option, _, _ in CASES}
    unwalked = {
        (name, option.flag)
        for name, command in COMMANDS
        for option in command.options
        if not option.hidden and (name, option.flag) not in walked
    }
    assert unwalked == {("bbb-bridge token", "--sub"), ("bbb-bridge simulate", "--workload")}
    assert len(CASES) > 150


@pytest.fixture
def nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a command would do once its options are accepted fails the test instead."""

    def accepted(*args: object, **kwargs: object) -> int:
        raise AssertionError("a wrong value was accepted")

    for target, name in [
        (bridge.cli, "_serve"),
        (bridge.cli, "_simulate"),
        (bridge.cli, "_token"),
        (bridge.tools.tail, "tail"),
        (bbb_tui.cli, "run_demo"),
        (bbb_tui.cli, "BbbApp"),
    ]:
        monkeypatch.setattr(target, name, accepted)


@pytest.mark.parametrize(
    "name,option,source,bad",
    CASES,
    ids=[f"{name}:{source}={bad[:20]!r}" for name, _, source, bad in CASES],
)
def test_a_wrong_value_is_one_line_naming_its_source(
    name: str,
    option: Option,
    source: str,
    bad: str,
    nothing_runs: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong value from a flag or a variable: exit 2, one line on stderr that names the flag
    or the variable, never a secret, and nothing started."""
    program, _, command = name.partition(" ")
    argv = [command] if command else []
    environ: dict[str, str] = {}
    if source.startswith("--"):
        argv += [source, bad]
    else:
        environ[source] = bad
    main: Callable[..., int] = bridge.cli.main if program == "bbb-bridge" else bbb_tui.cli.main
    assert main(argv, environ=environ) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"{program}: error: {source}: "), err
    if option.secret and len(bad) > 3:  # a token, a secret, a URL with a password
        assert ("hunter2" if "hunter2" in bad else bad) not in err


@pytest.mark.parametrize(
    "environ,message",
    [
        ({"REDIS_PORT": "x"}, "REDIS_PORT: must be a whole number from 1 to 65,535"),
        ({"REDIS_HOST": "h", "REDIS_USE_TLS": "perhaps"}, "REDIS_USE_TLS: must be true or false"),
    ],
)
def test_the_original_redis_variables_are_checked_too(
    environ: dict[str, str], message: str, nothing_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """REDIS_PORT and REDIS_USE_TLS of the original deployment are checked like the rest."""
    assert bridge.cli.main([], environ=environ) == 2
    assert message in capsys.readouterr().err


def test_a_command_reads_only_its_own_variables() -> None:
    """A bad variable of another command breaks neither this one nor --help (real processes)."""
    secret = "s" * 40
    token = run("token", env={"WEBSOCKET_PORT": "abc", "BBB_AUTH_SECRET": secret})
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2  # a JWT on the last line
    tui_help = run("--help", env={"BBB_LOG_LINES": "x"}, module="bbb_tui")
    assert tui_help.returncode == 0 and "usage: bbb-tui" in tui_help.stdout
    serve = run("--port", "0", env={"BBB_LOG_LINES": "x", "BBB_REPLAY_SIZE": "-5"})
    assert serve.returncode == 2
    assert serve.stderr == (
        "bbb-bridge: error: BBB_REPLAY_SIZE: must be a whole number from 0 to 10,000,000, "
        "got '-5'\n"
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--port"], "argument --port: expected one argument"),
        (["tail", "--count"], "argument --count: expected one argument"),
    ],
)
def test_a_mistyped_command_line_is_one_line_not_the_usage_block(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's own errors are one line with a --help hint, not the whole usage block."""
    assert bridge.cli.main(argv, environ={}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "--help" in err and "usage:" not in err


def test_out_of_range_values_are_refused_not_clamped() -> None:
    """Values that used to be clamped silently are errors now; the limits themselves pass."""
    with pytest.raises(ConfigError, match="--slow-client-timeout"):
        bridge.cli.parse(["--slow-client-timeout", "-3"], {})
    with pytest.raises(ConfigError, match="--workers"):
        bridge.cli.parse(["--workers", "0"], {})
    edge = bridge.cli.parse(["--max-client-frame", "125", "--redis-timeout", "0.2"], {})
    assert (edge.max_client_frame, edge.redis_timeout) == (125, 0.2)


def test_the_table_defaults_are_the_settings_defaults() -> None:
    """Settings built from no flags and no environment equal the dataclass's own defaults."""
    assert settings_from(bridge.cli.parse([], {})) == Settings()
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {o.dest for o in SERVE_OPTIONS} - fields == {"log_format"}  # for the logger only


def test_the_readme_tables_are_the_option_tables() -> None:
    """The README's options tables are exactly what the option tables generate."""
    text = readme.README.read_text()
    assert readme.blocks(text) == list(readme.TABLES)
    assert readme.render(text) == text, "README.md is stale: run 'make readme'"


@pytest.mark.parametrize(
    "environ,message",
    [
        ({"BBB_AUTH_SECRET": "     "}, "BBB_AUTH_SECRET: is blank"),
        ({"BBB_MAX_PAYLOAD": " "}, "BBB_MAX_PAYLOAD: is blank"),
        ({"REDIS_URL": "  "}, "REDIS_URL: is blank"),
        ({"REDIS_HOST": "evil@h"}, "REDIS_HOST: must be a host name"),
        ({"REDIS_HOST": "h/x"}, "REDIS_HOST: must be a host name"),
    ],
)
def test_a_blank_or_odd_variable_is_a_mistake_not_unset(
    environ: dict[str, str], message: str, nothing_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A variable of blanks is refused (a blank secret must not mean "no auth"), as is a
    REDIS_HOST that would change the URL around it; an empty variable still means unset."""
    assert bridge.cli.main([], environ=environ) == 2
    assert message in capsys.readouterr().err
    empty = {name: "" for name in environ}
    assert settings_from(bridge.cli.parse([], empty)) == Settings()


def test_an_ipv6_redis_host_gets_its_brackets() -> None:
    """REDIS_HOST=::1 is an address, written [::1] in the URL."""
    assert redis_url_from_env({"REDIS_HOST": "::1"}) == "redis://[::1]:6379"
