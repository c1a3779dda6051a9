"""Client addresses behind trusted proxies, IPv6 buckets and blocks of numbers."""

from __future__ import annotations

import pytest

from tidings.core.limitkeys import (
    UNKNOWN_ADDRESS,
    address_key,
    client_address,
    number_block,
    parse_networks,
)

PROXIES = parse_networks("10.0.0.0/8, 2001:db8:ffff::1")


def test_parse_networks_takes_addresses_and_cidr_and_refuses_junk() -> None:
    assert [str(n) for n in PROXIES] == ["10.0.0.0/8", "2001:db8:ffff::1/128"]
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match=r"'proxy\.local' is not an IP address"):
        parse_networks("10.0.0.1, proxy.local")


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_claims() -> None:
    assert client_address("203.0.113.7", "198.51.100.1", ()) == "203.0.113.7"
    assert client_address("203.0.113.7", "198.51.100.1", PROXIES) == "203.0.113.7"


def test_a_trusted_proxy_names_the_client() -> None:
    assert client_address("10.1.2.3", "198.51.100.1", PROXIES) == "198.51.100.1"
    assert client_address("2001:db8:ffff::1", "2001:db8:1::5", PROXIES) == "2001:db8:1::5"


def test_entries_the_client_wrote_itself_are_not_believed() -> None:
    # The client sent "X-Forwarded-For: 192.0.2.66"; the proxy appended the real peer.
    assert client_address("10.1.2.3", "192.0.2.66, 198.51.100.1", PROXIES) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    chain = "192.0.2.66, 198.51.100.1, 10.9.9.9, 10.8.8.8"
    assert client_address("10.1.2.3", chain, PROXIES) == "198.51.100.1"


def test_a_garbled_entry_stops_at_the_last_real_address() -> None:
    assert client_address("10.1.2.3", "198.51.100.1, unknown", PROXIES) == "10.1.2.3"
    assert client_address("10.1.2.3", " , ", PROXIES) == "10.1.2.3"


def test_a_request_without_a_peer_shares_one_bucket() -> None:
    assert client_address(None, "198.51.100.1", PROXIES) == UNKNOWN_ADDRESS
    assert client_address("testclient", None, PROXIES) == "testclient"


def test_ipv6_clients_are_counted_per_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_key("198.51.100.1") == "198.51.100.1"
    assert address_key(UNKNOWN_ADDRESS) == UNKNOWN_ADDRESS


def test_number_block_is_the_first_digits() -> None:
    assert number_block("+14155550123", 6) == "+141555"
    assert number_block("+14155550123", 6) == number_block("+14155559999", 6)
    assert number_block("+1234567", 10) == "+1234567"
