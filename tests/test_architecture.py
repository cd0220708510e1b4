"""Import contracts: the layers are declared in pyproject.toml and checked by `make lint`
(import-linter); these check what a fresh interpreter actually loads."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def imported_after(module: str) -> set[str]:
    """The modules a fresh interpreter has loaded after importing ``module``."""
    code = f"import sys, {module}; print(' '.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(result.stdout.split())


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_the_core_imports_no_io_library() -> None:
    """bridge.core's modules import none of asyncio, redis, websockets, textual (pure)."""
    loaded = top_level(imported_after("bridge.core.protocol, bridge.core.journal"))
    assert not loaded & {"redis", "websockets", "textual", "asyncio"}


def test_the_bridge_never_imports_the_ui() -> None:
    """The bridge service runs without the UI stack."""
    loaded = top_level(imported_after("bridge.cli") | imported_after("bridge.serving.server"))
    assert not loaded & {"textual", "bbb_tui"}


def test_the_tui_does_not_load_the_server() -> None:
    """bbb-tui loads the bridge's core, wsio and configuration, not its server, tokens or
    metrics (the demo loads them when asked for)."""
    loaded = imported_after("bbb_tui.cli")
    assert not top_level(loaded) & {"jwt", "prometheus_client"}
    rooms = {m.split(".")[1] for m in loaded if m.startswith("bridge.") and m.count(".") >= 1}
    assert not rooms & {"serving", "sources", "ops", "tools", "cli"}
