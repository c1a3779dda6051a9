"""Every explicit limit Tidings enforces, in one place (the README lists them)."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

INBOX_POLL_INTERVAL_S = 120.0
"""Seconds between inbox reads of an idle socket: only a safety net, since a stored
message wakes its device's socket at once. Every idle socket pays it: 10,000 idle
sockets on one distributed gateway at 30 s cost 40% of a core there and a quarter of one
in Cassandra (three reads each), at 2 s they would be 5,000 reads a second."""


@dataclass(frozen=True)
class Limits:
    """Sizes and counts; one instance per deployment, overridable in settings."""

    envelope_bytes: int = 96 * KIB
    """Largest accepted send request body (REST body or WebSocket frame), in bytes."""
    http_body_bytes: int = 96 * KIB
    """Largest JSON request body on any REST route."""
    ws_frame_bytes: int = 1 * MIB
    """Frames above this are refused by the WebSocket layer itself (close code 1009)."""
    devices_per_user: int = 6
    prekeys_per_upload: int = 100
    prekeys_stored_per_device: int = 1000
    group_members: int = 256
    group_name_chars: int = 100
    display_name_chars: int = 64
    about_chars: int = 140
    discovery_batch: int = 500
    contacts_per_user: int = 5000
    presence_subscriptions: int = 500
    receipt_batch: int = 100
    receipt_hold_s: float = 0.25
    """How long a gateway holds the ``delivered`` receipts of recorded acks so that the
    acks of one reader for one sender in that time become one receipt."""
    media_bytes: int = 100 * MIB
    media_url_ttl_s: int = 900
    max_in_flight: int = 32
    """Deliveries sent on one socket and not yet acked."""
    otp_ttl_s: int = 600
    otp_verify_attempts: int = 5
    link_code_ttl_s: int = 600
    provisioning_blob_chars: int = 2048
    """A provisioning blob left for a new device (its payload is about 300 bytes)."""
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 24 * 3600
    heartbeat_timeout_s: float = 90.0
    dedupe_ttl_s: int = 7 * 24 * 3600
    number_block_digits: int = 6
    """Code requests are also limited per block of numbers sharing their first digits
    (``+1415555...``: country and area code): walking through numbers hits one bucket."""


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class RateLimits:
    """Token buckets (rate per second, burst); keys are per device, account, phone,
    client address or block of numbers. Overridable per deployment with the
    ``rate_limits`` setting (a load test registering thousands of accounts from one
    address raises the ``*_address_*`` and ``otp_block_*`` ones)."""

    send_rate: float = 20.0
    send_burst: int = 200
    otp_request_rate: float = 1 / 60
    otp_request_burst: int = 3
    otp_address_rate: float = 1 / 60
    """Code requests per client address: many numbers from one place."""
    otp_address_burst: int = 20
    otp_block_rate: float = 1 / 2
    """Code requests per block of numbers (``Limits.number_block_digits``), from every
    address together: many numbers from many places."""
    otp_block_burst: int = 30
    register_address_rate: float = 1 / 60
    """Registration attempts (right or wrong code) per client address."""
    register_address_burst: int = 20
    prekey_fetch_rate: float = 5.0
    prekey_fetch_burst: int = 100
    prekey_pair_rate: float = 1 / 360
    """Bundle fetches by one account of another's keys: each claims one-time prekeys, so
    a stranger fetching in a loop would use them all up."""
    prekey_pair_burst: int = 10
    discovery_rate: float = 1.0
    discovery_burst: int = 20
    discovery_daily_numbers: int = 5000
    """Numbers one account may look up per day (refilled continuously), so a few
    accounts cannot walk through the numbering plan."""
    media_rate: float = 2.0
    media_burst: int = 50
    receipt_rate: float = 5.0
    """``receipt`` frames per device (its socket): a reader catching up on many
    conversations sends one per conversation, each with up to 100 ids."""
    receipt_burst: int = 100
    typing_rate: float = 2.0
    """``typing`` frames per device (its socket): a started and a stopped signal per
    burst of typing is the usual pace."""
    typing_burst: int = 20


DEFAULT_RATES = RateLimits()
