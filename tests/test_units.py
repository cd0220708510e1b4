"""Pure units of the bridge: backoff, log limiter, settings from the environment."""

from __future__ import annotations

import pytest

from bridge.checks import check_redis_url, redact
from bridge.cli import parse
from bridge.config import (
    WEBSOCKET_URL,
    ConfigError,
    redis_url_from_env,
    settings_from,
)
from bridge.core.backoff import Backoff
from bridge.core.budget import Budget
from bridge.core.loglimit import LogLimiter


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    """Ceilings go base, 2*base, ... up to cap; reset starts again from base."""
    backoff = Backoff(base=0.5, cap=4.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_jitter_is_full_but_floored() -> None:
    """A draw of 0 still waits the floor; a draw of 0.5 waits half the ceiling."""
    assert Backoff(base=1.0, cap=8.0, floor=0.05, rand=lambda: 0.0).next_delay() == 0.05
    assert Backoff(base=1.0, cap=8.0, rand=lambda: 0.5).next_delay() == 0.5


def test_budget_refills_at_its_rate_up_to_the_burst() -> None:
    """A full bucket holds the burst; time refills it at the rate and never past the burst."""
    now = [0.0]
    budget = Budget(rate=10.0, burst=20.0, clock=lambda: now[0])
    assert budget.available() == 20.0
    budget.spend(20.0)
    assert budget.available() == 0.0 and budget.wait() == pytest.approx(0.1)
    now[0] = 0.5
    assert budget.available() == pytest.approx(5.0) and budget.wait() == 0.0
    now[0] = 100.0
    assert budget.available() == 20.0


def test_budget_debt_is_paid_back_before_anything_is_spent_again() -> None:
    """Spending past zero (a subscription frame naming 256 queues) leaves a debt that
    delays the next unit by the debt's time, not just one unit's."""
    now = [0.0]
    budget = Budget(rate=100.0, burst=200.0, clock=lambda: now[0])
    budget.spend(450.0)
    assert budget.available() == -250.0
    assert budget.wait() == pytest.approx(2.51)
    now[0] = 2.51
    assert budget.available() == pytest.approx(1.0)


def test_log_limiter_allows_once_per_interval_and_counts_the_rest() -> None:
    """Within one interval a key is allowed once; the next yes reports what was swallowed."""
    now = [0.0]
    limiter = LogLimiter(1.0, clock=lambda: now[0])
    assert limiter.allow("a") == 0
    assert limiter.allow("a") is None
    assert limiter.allow("a") is None
    assert limiter.allow("b") == 0
    now[0] = 1.5
    assert limiter.allow("a") == 2


def test_log_limiter_table_stays_bounded() -> None:
    """Hostile, ever-new keys never grow the table past its bound."""
    now = [0.0]
    limiter = LogLimiter(1.0, max_keys=16, clock=lambda: now[0])
    for i in range(1000):
        now[0] = i * 0.2  # a few new keys per interval, under the global cap
        assert limiter.allow(f"k{i}") == 0
    assert len(limiter._last) <= 16


def test_log_limiter_caps_all_keys_together_and_counts_the_rest() -> None:
    """A flood of distinct keys gets max_per_interval yeses per interval; the rest are counted
    and handed over once, after their interval ended."""
    now = [0.0]
    limiter = LogLimiter(1.0, max_per_interval=3, clock=lambda: now[0])
    said = [limiter.allow(f"k{i}") for i in range(100)]
    assert said.count(0) == 3 and said.count(None) == 97
    assert limiter.overflow() == 0  # not before the interval is over
    now[0] = 1.0
    assert limiter.overflow() == 97
    assert limiter.overflow() == 0


@pytest.mark.parametrize(
    "environ,url",
    [
        ({}, None),
        ({"REDIS_URL": "redis://r:1/2"}, "redis://r:1/2"),
        ({"REDIS_HOST": "cache"}, "redis://cache:6379"),
        ({"REDIS_HOST": "cache", "REDIS_PORT": "7000"}, "redis://cache:7000"),
        ({"REDIS_HOST": "c", "REDIS_USE_TLS": "true"}, "rediss://c:6379"),
        ({"REDIS_HOST": "c", "REDIS_USE_TLS": "false"}, "redis://c:6379"),
        ({"REDIS_HOST": "c", "REDIS_PASSWORD": "p@ss:w"}, "redis://:p%40ss%3Aw@c:6379"),
        ({"REDIS_HOST": "c", "REDIS_USERNAME": "u", "REDIS_PASSWORD": "p"}, "redis://u:p@c:6379"),
        ({"REDIS_URL": "redis://a:1", "REDIS_HOST": "b"}, "redis://a:1"),
    ],
)
def test_redis_url_from_the_original_environment(environ: dict[str, str], url: str | None) -> None:
    """The original deployment's REDIS_* variables build the same URL a user would write."""
    assert redis_url_from_env(environ) == url


def test_redact_hides_passwords() -> None:
    """Logs never show a Redis password."""
    assert redact("redis://u:secret@h:1/0") == "redis://u:***@h:1/0"
    assert redact("redis://h:1") == "redis://h:1"


@pytest.mark.parametrize(
    "url", ["http://x", "redis://h:notaport", "redis://", "redis://h:1/0?socket_timeout=abc"]
)
def test_check_redis_url_rejects_urls_redis_cannot_use(url: str) -> None:
    """A wrong Redis URL is a one-line ConfigError."""
    with pytest.raises(ConfigError):
        check_redis_url(url)


def test_flags_win_over_environment_and_environment_over_defaults() -> None:
    """Each flag has an environment variable; the flag wins."""
    environ = {"WEBSOCKET_PORT": "9000", "WEBSOCKET_HOST": "127.0.0.1", "BBB_EVENTS_PREFIX": "p:"}
    from_env = settings_from(parse(["serve"], environ))
    assert (from_env.port, from_env.host, from_env.prefix) == (9000, "127.0.0.1", "p:")
    assert not from_env.redis_configured
    from_flags = settings_from(parse(["serve", "--port", "9001", "--prefix", "q:"], environ))
    assert (from_flags.port, from_flags.prefix) == (9001, "q:")
    assert settings_from(parse(["serve"], {})).port == 8081


def test_websocket_url_prefers_ours_then_the_frontends() -> None:
    """BBB_WEBSOCKET_URL, then NEXT_PUBLIC_WEBSOCKET_URL, then WEBSOCKET_URL, then the default."""

    def url(environ: dict[str, str]) -> str:
        return str(parse(["tail"], environ).url)

    assert url({}) == "ws://localhost:8081"
    assert url({"WEBSOCKET_URL": "ws://c"}) == "ws://c"
    assert url({"WEBSOCKET_URL": "ws://c", "NEXT_PUBLIC_WEBSOCKET_URL": "ws://b"}) == "ws://b"
    assert url({"BBB_WEBSOCKET_URL": "ws://a", "WEBSOCKET_URL": "ws://c"}) == "ws://a"
    assert WEBSOCKET_URL.env[0] == "BBB_WEBSOCKET_URL"
