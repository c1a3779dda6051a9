"""The settings that shape the anti-abuse limits: trusted proxies and rate overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tidings.config import Settings
from tidings.core.limits import DEFAULT_RATES


def test_rate_limit_overrides_replace_only_the_named_buckets() -> None:
    rates = Settings(rate_limits={"otp_address_burst": 5000, "otp_block_rate": 0.25}).rates
    assert rates.otp_address_burst == 5000
    assert isinstance(rates.otp_address_burst, int)
    assert rates.otp_block_rate == 0.25
    assert rates.send_rate == DEFAULT_RATES.send_rate
    assert Settings().rates == DEFAULT_RATES


def test_rate_limit_overrides_come_from_json_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TIDINGS_RATE_LIMITS", '{"register_address_burst": 100000}')
    assert Settings().rates.register_address_burst == 100_000


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"otp_adress_burst": 1}, "unknown rate limits"), ({"send_rate": -1}, "negative")],
)
def test_unknown_or_negative_rate_limits_are_refused(
    overrides: dict[str, float], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(rate_limits=overrides)


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(trusted_proxies="10.0.0.0/8, 2001:db8::1").trusted_proxies
    with pytest.raises(ValidationError, match="'ingress' is not an IP address"):
        Settings(trusted_proxies="10.0.0.1, ingress")
