"""The always-visible connection line and counters."""

from __future__ import annotations

from rich.text import Text

from bbb_tui.client import ConnState, ConnStatus
from bbb_tui.monitor import Monitor
from bbb_tui.widgets.safe import safe_text

STATE_STYLES = {
    ConnState.CONNECTING: ("\N{CIRCLED WHITE BULLET}", "bold #e5c07b"),
    ConnState.CONNECTED: ("\N{BLACK CIRCLE}", "bold #98c379"),
    ConnState.RECONNECTING: ("\N{CIRCLED WHITE BULLET}", "bold #d7875f"),
    ConnState.DISCONNECTED: ("\N{BLACK CIRCLE}", "bold #e06c75"),
}


REDIS_DOWN_STYLE = "bold #e5c07b"


def duration_short(seconds: float) -> str:
    """``13s``, ``4m05s``, ``2h03m``."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def status_text(
    status: ConnStatus,
    monitor: Monitor,
    now: float,
    *,
    read_only: bool = False,
    data: str = "",
) -> Text:
    """Two lines: the connection, then the message counters."""
    mark, style = STATE_STYLES[status.state]
    redis_down = status.state is ConnState.CONNECTED and monitor.redis_down_since is not None
    text = Text()
    text.append(f"{mark} {status.state.value}", style=REDIS_DOWN_STYLE if redis_down else style)
    if redis_down and monitor.redis_down_since is not None:
        down = duration_short(now - monitor.redis_down_since)
        text.append(f" \N{MIDDLE DOT} Redis down {down}", style=REDIS_DOWN_STYLE)
    if read_only:
        text.append("  read-only", style="bold")
    text.append("  ")
    text.append_text(safe_text(status.url))
    if status.state is ConnState.CONNECTED and status.connected_at is not None:
        text.append(f"  up {duration(now - status.connected_at)}")
        if status.connections > 1:
            text.append(f"  reconnects {status.connections - 1}", style="dim")
    elif status.state in (ConnState.CONNECTING, ConnState.RECONNECTING):
        text.append(f"  attempt {status.attempt}")
        if status.retry_at is not None:
            text.append(f"  retry in {max(status.retry_at - now, 0):.1f}s", style="bold")
    if status.error and status.state is not ConnState.CONNECTED:
        text.append("  (", style="dim")
        text.append_text(safe_text(status.error, style="dim"))
        text.append(")", style="dim")
    text.append("\n")
    text.append(f"{monitor.events:,} events", style="bold")
    text.no_wrap = True  # one line each, cut with an ellipsis on narrow terminals
    text.overflow = "ellipsis"
    text.append(f"  {monitor.rate.rate(now):,.0f}/s")
    problems = monitor.problems
    text.append(
        f"  {problems:,} unparsable/unknown",
        style="bold #e06c75" if problems else "dim",
    )
    if monitor.replayed:
        text.append(f"  {monitor.replayed:,} replayed", style="dim")
    if monitor.resyncs:
        text.append(f"  {monitor.resyncs:,} resyncs", style="#e5c07b")
    if monitor.paused:
        text.append(f"  log paused ({monitor.held:,} new)", style="bold #e5c07b")
    if data:
        text.append(f"  {data}", style="dim")
    return text
