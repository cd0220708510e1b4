"""The one door for untrusted text: nothing that acts on a terminal passes; widths are cells."""

from __future__ import annotations

import json
import logging
import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st
from rich.cells import cell_len

from bridge.core.sanitize import ELLIPSIS, ESCAPE, cells, fit, is_forbidden, sanitize
from bridge.ops.logformat import formatter, redact_secrets
from bridge.tools.tail import as_json_line

#: What attackers send: escape sequences of every family, C1 controls, bidi overrides,
#: zero-width and joiner characters, line separators, wide and emoji characters.
HOSTILE_PIECES = [
    "\x1b[c",  # DA1: the terminal answers as typed keys
    "\x1b[>c",  # DA2
    "\x1b[18t",  # report the window size
    "\x1b[6n",  # report the cursor position
    "\x1b]0;pwned\x07",  # set the title
    "\x1b]2;pwned\x1b\\",
    "\x1b]52;c;cm0gLXJmIH4=\x07",  # OSC 52: write the clipboard
    "\x1bP+q544e\x1b\\",  # DCS
    "\x1b_apc\x1b\\",
    "\x1b[2J\x1b[H",
    "\x1b[?1049l\x1b[?1000l",
    "\x9b31m",  # a C1 CSI
    "\x85",  # NEL
    "\u202e",  # right-to-left override
    "\u2066\u2069",  # isolates
    "\u200b\u200c\u200d",  # zero-width space, non-joiner, joiner
    "\u2028\u2029",
    "\ufeff",
    "\u00ad",  # soft hyphen
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a ZWJ family
    "\u2764\ufe0f",  # an emoji presentation selector
    "\u4e2d\u6587",  # wide
    "\U0001f600",
    "e\u0301",  # a combining accent
    "[bold red]markup[/]",
    "\\x1b literal",
    "\x00\x7f\t\r\n",
]
hostile_text = st.lists(
    st.one_of(
        st.sampled_from(HOSTILE_PIECES),
        st.text(alphabet=st.characters(codec=None, exclude_categories=())),
    ),
    max_size=12,
).map("".join)


def test_every_family_of_escape_is_shown_not_obeyed() -> None:
    """ESC, C1, bidi and separators come out as visible escapes, and nothing else changes."""
    assert sanitize("orders\x1b[c") == "orders\\x1b[c"
    assert sanitize("a\x9b31mb") == "a\\x9b31mb"
    assert sanitize("\u202eevil") == "\\u202eevil"
    assert sanitize("line\u2028forged") == "line\\u2028forged"
    assert sanitize("\U000e0001tag") == "\\U000e0001tag"
    assert sanitize("plain-id-42 [bold]") == "plain-id-42 [bold]"
    assert sanitize("\u4e2d\u6587 caf\u00e9") == "\u4e2d\u6587 caf\u00e9"


@given(hostile_text)
@example("\ud800")  # a lone surrogate: cannot even be encoded for the terminal
def test_sanitized_text_holds_no_forbidden_character(text: str) -> None:
    """Whatever comes in, no C0, C1, DEL, Cc, Cf, Cs, Cn, Zl, Zp or variation selector goes out."""
    safe = sanitize(text)
    assert not any(is_forbidden(c) for c in safe)
    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"} for c in safe)
    safe.encode("utf-8")  # encodable, as the terminal needs (raises if not)
    assert sanitize(safe) == safe


@given(hostile_text, st.integers(min_value=0, max_value=60))
def test_fit_is_exactly_the_width_asked_for_in_cells(text: str, width: int) -> None:
    """Padded, the result is exactly ``width`` terminal cells; unpadded, at most that."""
    padded = fit(text, width)
    assert cell_len(padded) == width
    assert not any(is_forbidden(c) for c in padded)
    assert cell_len(fit(text, width, pad=False)) <= width
    assert cell_len(fit(text, width, where="middle")) == width


@given(hostile_text, st.integers(min_value=1, max_value=60))
def test_a_cut_is_visible_and_never_splits_an_escape(text: str, width: int) -> None:
    """Text that does not fit ends in an ellipsis, and what is kept is whole escapes."""
    safe = sanitize(text)
    kept = fit(text, width, pad=False)
    if cells(text) <= width:
        assert kept == safe
        return
    assert kept.endswith(ELLIPSIS)
    head = kept[: -len(ELLIPSIS)]
    assert safe.startswith(head)
    cut = len(head)
    assert not any(m.start() < cut < m.end() for m in ESCAPE.finditer(safe))


@given(hostile_text, st.integers(min_value=3, max_value=60))
def test_a_middle_cut_keeps_both_ends(text: str, width: int) -> None:
    """Cut in the middle, the kept start and end are whole pieces of the sanitized text."""
    safe = sanitize(text)
    kept = fit(text, width, where="middle", pad=False)
    if cells(text) <= width:
        assert kept == safe
        return
    head, _, tail = kept.partition(ELLIPSIS)
    assert safe.startswith(head) and safe.endswith(tail)
    for cut in (len(head), len(safe) - len(tail)):
        assert not any(m.start() < cut < m.end() for m in ESCAPE.finditer(safe))


def test_two_long_ids_sharing_a_prefix_do_not_look_alike() -> None:
    """Cut in the middle, ids that differ only at the end stay apart, with a visible cut."""
    a = fit("import-2026-12-01-batch-000001", 16, where="middle")
    b = fit("import-2026-12-01-batch-000002", 16, where="middle")
    assert a != b and ELLIPSIS in a


def test_wide_characters_are_measured_in_cells() -> None:
    """Ten CJK characters are twenty cells: cut to 9 cells they keep four, and the ellipsis."""
    assert fit("\u4e2d" * 10, 9, pad=False) == "\u4e2d" * 4 + ELLIPSIS
    assert cell_len(fit("\u4e2d" * 10, 10)) == 10  # 4 wide + ellipsis + 1 space of padding


@given(hostile_text)
def test_tail_lines_are_the_same_json_and_safe_on_a_terminal(text: str) -> None:
    """`bbb-bridge tail` writes each message as JSON that decodes to the same message, with no
    character that could act on the terminal it prints to (nor a lone surrogate to crash it)."""
    frame = json.dumps({"type": "job-refresh", "data": {"jobId": text}})
    line = as_json_line(frame)
    assert line is not None
    assert json.loads(line) == json.loads(frame)
    assert not any(is_forbidden(c) for c in line)
    line.encode("utf-8")


def test_tail_refuses_what_json_cannot_hold() -> None:
    """NaN and Infinity from a hostile bridge are not JSON: tail reports them as unparsable."""
    assert as_json_line('{"type":"x","data":{"v":NaN}}') is None
    assert as_json_line('{"type":"x","data":{"v":-Infinity}}') is None


def test_log_lines_are_sanitized_line_by_line() -> None:
    """A log message holding escape sequences (a Redis error, a close reason) is written
    escaped; a traceback keeps its lines."""
    record = logging.LogRecord("x", logging.WARNING, "", 0, "got %s", ("\x1b]0;t\x07\u202e",), None)
    text = formatter("text").format(record)
    assert "\\x1b]0;t\\x07\\u202e" in text and not any(is_forbidden(c) for c in text)
    assert json.loads(formatter("json").format(record))["message"] == "got \x1b]0;t\x07\u202e"
    assert formatter("json").format(record).isascii()


def test_the_log_redacts_tokens_however_they_are_spelled() -> None:
    """Tokens in a query (percent-escaped or not), a header, or bare (a JWT) become ***;
    an escaped newline does not start a forged line."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjF9.c2lnbmF0dXJl"
    for line in (
        f"< GET /?token={jwt} HTTP/1.1",
        "< GET /?%74oken=" + "".join(f"%{ord(c):02x}" for c in jwt) + " HTTP/1.1",
        f"< Authorization: Bearer {jwt}",
        f"frame {jwt}",
    ):
        redacted = redact_secrets(line)
        assert "c2lnbmF0dXJl" not in redacted and "***" in redacted, redacted
    assert "\n" not in redact_secrets("/?x=%0a2026-01-01 INFO forged")


def test_a_huge_text_is_cut_before_it_is_worked_on() -> None:
    """A 17 MB queue name (from Redis) costs what a short one does: cut first, then
    sanitized, its ends kept, an escape in what is kept still escaped."""
    assert fit("B" * 17_000_000, 24) == "B" * 23 + "\N{HORIZONTAL ELLIPSIS}"
    assert fit("A" * 1_000_000 + "\x1b" + "Z" * 5, 24, where="middle") == (
        "A" * 12 + "\N{HORIZONTAL ELLIPSIS}" + "AA\\x1bZZZZZ"
    )
