"""One table per command: each option's flag, variables, type, bounds, default and help.

A :class:`Command` turns its table into an argparse parser (flags only, as strings), then
reads the environment for the options the command line left out, and checks every
value with the same function whichever way it came, so that one wrong value gives one
line naming where it came from, and nothing else::

    bbb-bridge: error: --max-payload: must be a whole number from 1 to 536,870,912, got '-1'
    bbb-bridge: error: BBB_MAX_PAYLOAD: must be a whole number from 1 to 536,870,912, got '-1'

The environment is read only after the command is chosen, and only for its options: a
bad variable of another command cannot break this one (or ``--help``). The same table
writes each flag's ``--help`` line and the README's options tables (a test keeps the
README true). Pure: no I/O beyond reading the mapping it is given.
"""

from __future__ import annotations

import argparse
import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

_DECIMAL = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line meant for the user."""


#: Parses one raw value (a string, or a list of strings for a repeatable option) and
#: returns the setting; raises ValueError with what is wrong, e.g. "must be 0 or more".
Parse = Callable[[Any], Any]


@dataclass(frozen=True)
class Option:
    """One setting of one command.

    ``env`` lists the variables that may set it, first found wins; ``env_reader`` reads a
    composite of several (``REDIS_HOST``...), returning (the variable it used, the raw
    value) or None. ``repeat``: the flag may be given several times, and each value (of the
    flags or the variable) may hold several, comma-separated: ``parse`` gets the list.
    ``switch``: a flag without value (``--x``/``--no-x``), its variable read as true/false.
    """

    flag: str
    help: str
    parse: Parse = str
    default: Any = None
    env: tuple[str, ...] = ()
    metavar: str | None = None
    default_text: str | None = None  # how --help and the README say the default
    env_text: str | None = None  # how they name the variables, when not just ``env``
    env_reader: Callable[[Mapping[str, str]], tuple[str, str] | None] | None = None
    repeat: bool = False
    switch: bool = False
    secret: bool = False  # never echoed in an error
    hidden: bool = False  # internal: not in --help or the README
    bad: tuple[str, ...] = ()  # values that must be refused (beyond the parser's own)

    @property
    def bad_values(self) -> tuple[str, ...]:
        """Values this option must refuse, from its parser and its own list."""
        return (*getattr(self.parse, "bad", ()), *self.bad)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def variables(self) -> str:
        return self.env_text or ", ".join(self.env)

    @property
    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        if self.switch:
            return "off" if not self.default else "on"
        return (
            "none"
            if self.default is None
            else f"{self.default:g}"
            if isinstance(self.default, float)
            else str(self.default)
        )

    def full_help(self) -> str:
        text = self.help
        if self.variables:
            text += f" [env: {self.variables}{'=true' if self.switch else ''}]"
        return f"{text} (default: {self.shown_default})".replace("%", "%%")

    def value(self, raw: Any, source: str) -> Any:
        """``raw`` parsed and checked, or a ConfigError naming ``source``."""
        try:
            return self.parse(raw)
        except (ValueError, TypeError) as exc:
            shown = "" if self.secret or isinstance(raw, list) else f", got {raw!r}"
            raise ConfigError(f"{source}: {exc}{shown}") from None


# -- value parsers: each raises ValueError saying what a good value is, and knows a few
# -- bad values (``bad``) for the test that walks every option with them


@dataclass(frozen=True)
class whole:
    """A whole number from ``low`` to ``high``."""

    low: int
    high: int

    def __call__(self, raw: str) -> int:
        text = raw.strip()
        value = int(text) if re.fullmatch(r"-?[0-9]+", text) else None  # ASCII digits only
        if value is None or not self.low <= value <= self.high:
            raise ValueError(f"must be a whole number from {self.low:,} to {self.high:,}")
        return value

    @property
    def bad(self) -> tuple[str, ...]:
        return str(self.low - 1), str(self.high + 1), "1.5", "many", "\u0663", "1_0", "+5"


@dataclass(frozen=True)
class number:
    """A finite number from ``low`` to ``high``."""

    low: float
    high: float

    def __call__(self, raw: str) -> float:
        text = raw.strip()
        value = float(text) if _DECIMAL.fullmatch(text) else math.nan  # no nan, inf, 1_0
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise ValueError(f"must be a number from {_shown(self.low)} to {_shown(self.high)}")
        return value

    @property
    def bad(self) -> tuple[str, ...]:
        return f"{self.low - 1:g}", f"{self.high * 2 + 1:g}", "nan", "inf", "fast", "\uff15"


def _shown(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:g}"


TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"", "0", "false", "no", "off"})


def boolean(raw: str | bool) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off, any case)."""
    if isinstance(raw, bool):
        return raw
    word = raw.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError("must be true or false")


boolean.bad = ("maybe", "2")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class choice:
    """One of ``names`` (any case)."""

    names: tuple[str, ...]

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", names)

    def __call__(self, raw: str) -> str:
        word = raw.strip().lower()
        if word not in self.names:
            raise ValueError(f"must be one of {', '.join(self.names)}")
        return word

    @property
    def bad(self) -> tuple[str, ...]:
        return ("nope",)


def text(raw: str) -> str:
    """Any text at all."""
    return raw


# -- the command line ---------------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` as people read it: names are never split at their hyphens
    (``rose-`` / ``pine``), and the README's Markdown backticks are left out."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        text = " ".join(text.replace("`", "").split())
        return textwrap.wrap(text, width, break_on_hyphens=False)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (no usage block) as a ConfigError."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


@dataclass(frozen=True)
class Command:
    """A command (or subcommand) and its options."""

    name: str
    help: str
    options: tuple[Option, ...]
    description: str = ""

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Declare every option as a flag whose value is kept raw (None when absent)."""
        for option in self.options:
            shown = argparse.SUPPRESS if option.hidden else option.full_help()
            if option.switch:
                parser.add_argument(
                    option.flag, action=argparse.BooleanOptionalAction, default=None, help=shown
                )
            else:
                parser.add_argument(
                    option.flag,
                    action="append" if option.repeat else "store",
                    default=None,
                    metavar=option.metavar,
                    help=shown,
                )

    def settle(self, args: argparse.Namespace, environ: Mapping[str, str]) -> argparse.Namespace:
        """Replace each option's raw flag value, or else its variable, or else its default,
        by the checked value; record where each came from in ``args.sources``."""
        sources: dict[str, str] = {}
        for option in self.options:
            raw = getattr(args, option.dest, None)
            if raw is not None:
                value, source = option.value(_items(option, raw), option.flag), option.flag
            elif found := _from_env(option, environ):
                name, raw_env = found
                value, source = option.value(_items(option, raw_env), name), name
            else:
                value, source = option.default, "default"
            setattr(args, option.dest, value)
            sources[option.dest] = source
        args.sources = sources
        return args


def _items(option: Option, raw: Any) -> Any:
    """A repeatable option's values, each split at commas; any other's raw value as it is."""
    if not option.repeat:
        return raw
    values = raw if isinstance(raw, list) else [raw]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _from_env(option: Option, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(the variable, its value) for ``option``; an empty variable counts as unset, one that
    holds only spaces is a mistake (a secret that is blanks must not mean "no secret")."""
    for name in option.env:
        raw = environ.get(name)
        if raw and not raw.strip():
            raise ConfigError(f"{name}: is blank (unset it, or give it a value)")
    if option.env_reader is not None:
        return option.env_reader(environ)
    for name in option.env:
        raw = environ.get(name)
        if raw:
            return name, raw
    return None


def parse_command(
    command: Command, argv: Sequence[str], environ: Mapping[str, str], *, prog: str
) -> argparse.Namespace:
    """Parse a command without subcommands (``bbb-tui``); raises ConfigError."""
    parser = OneLineParser(prog=prog, description=command.description or command.help)
    command.add_to(parser)
    return command.settle(parser.parse_args(argv), environ)


def markdown_table(options: Sequence[Option]) -> list[str]:
    """The README's table of ``options``: flag, environment, default, meaning."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for option in options:
        if option.hidden:
            continue
        quoted = "`\\g<0>=true`" if option.switch else "`\\g<0>`"
        env = _VARIABLE.sub(quoted, option.variables)
        rows.append(f"| `{option.flag}` | {env} | `{option.shown_default}` | {option.help} |")
    return rows
