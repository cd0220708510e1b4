"""The always-visible connection line and counters."""

from __future__ import annotations

from urllib.parse import unquote

from rich.style import Style
from rich.text import Text

from bbb_tui.client import ConnState, ConnStatus
from bbb_tui.monitor import Monitor
from bbb_tui.widgets.safe import safe_text
from bbb_tui.widgets.themed import Palette

#: Each state's mark and meaning (a palette role); all bold, so they read with NO_COLOR.
STATE_STYLES = {
    ConnState.CONNECTING: ("\N{CIRCLED WHITE BULLET}", "warn"),
    ConnState.CONNECTED: ("\N{BLACK CIRCLE}", "ok"),
    ConnState.RECONNECTING: ("\N{CIRCLED WHITE BULLET}", "warn"),
    ConnState.DISCONNECTED: ("\N{BLACK CIRCLE}", "error"),
}
#: The fewest cells worth showing of the URL (cut in the middle); with less room, none.
MIN_URL = 12
_BOLD = Style(bold=True)


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


def shown_url(url: str) -> str:
    """A URL as people write it: ``?types=job-refresh,queue-refresh``, not ``%2C``."""
    return unquote(url)


def status_text(
    status: ConnStatus,
    monitor: Monitor,
    now: float,
    *,
    palette: Palette,
    width: int,
    read_only: bool = False,
    data: str = "",
) -> Text:
    """Two lines of at most ``width`` cells: the connection, then the message counters.

    The state and its details (uptime; attempt and countdown) always fit: the URL gives
    way first (cut in the middle), then the error (cut at its end).
    """
    mark, role = STATE_STYLES[status.state]
    redis_down = status.state is ConnState.CONNECTED and monitor.redis_down_since is not None
    state_style = palette["warn" if redis_down else role] + _BOLD
    head = Text()
    head.append(f"{mark} {status.state.value}", style=state_style)
    if redis_down and monitor.redis_down_since is not None:
        down = duration_short(now - monitor.redis_down_since)
        head.append(f" \N{MIDDLE DOT} Redis down {down}", style=state_style)
    if read_only:
        head.append("  read-only", style="bold")
    details = Text()
    if status.state is ConnState.CONNECTED and status.connected_at is not None:
        details.append(f"  up {duration(now - status.connected_at)}")
        if status.connections > 1:
            details.append(f"  reconnects {status.connections - 1}", style="dim")
    elif status.state in (ConnState.CONNECTING, ConnState.RECONNECTING):
        details.append(f"  attempt {status.attempt}")
        if status.retry_at is not None:
            details.append(f"  retry in {max(status.retry_at - now, 0):.1f}s", style="bold")
    error = status.error if status.state is not ConnState.CONNECTED else ""
    # The URL's room; with an error, a few cells stay for its start (and the ellipsis).
    room = width - head.cell_len - details.cell_len - 2 - (5 if error else 0)
    text = head
    if room >= MIN_URL:  # else the URL gives way: the state and its details come first
        text.append("  ")
        text.append_text(safe_text(shown_url(status.url), room, where="middle", pad=False))
    text.append_text(details)
    if error:
        text.append("  (", style="dim")
        text.append_text(safe_text(error, style="dim"))
        text.append(")", style="dim")
    text.append("\n")
    text.append(f"{monitor.events:,} events", style="bold")
    text.no_wrap = True  # one line each, cut with an ellipsis on narrow terminals
    text.overflow = "ellipsis"
    text.append(f"  {monitor.rate.rate(now):,.0f}/s")
    problems = monitor.problems
    text.append(
        f"  {problems:,} unparsable/unknown",
        style=palette["alarm"] if problems else "dim",
    )
    if monitor.replayed:
        text.append(f"  {monitor.replayed:,} replayed", style="dim")
    if monitor.resyncs:
        text.append(f"  {monitor.resyncs:,} resyncs", style=palette["warn"])
    if monitor.paused:
        text.append(f"  log paused ({monitor.held:,} new)", style=palette["warn"] + _BOLD)
    if data:
        text.append(f"  {data}", style="dim")
    return text
