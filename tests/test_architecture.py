"""Import contracts: the protocol core is pure, and the bridge never pulls in the UI."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def imported_after(module: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after importing ``module``."""
    code = f"import sys, {module}; print(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(result.stdout.split())


def test_protocol_imports_no_io_library() -> None:
    """bridge.protocol imports none of redis, websockets, textual (it is pure)."""
    assert not imported_after("bridge.protocol") & {"redis", "websockets", "textual", "asyncio"}


def test_bridge_never_imports_textual() -> None:
    """The bridge service runs without the UI stack."""
    loaded = imported_after("bridge.cli") | imported_after("bridge.server")
    assert not loaded & {"textual", "bbb_tui"}
