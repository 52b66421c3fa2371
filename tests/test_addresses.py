"""sesshu.plugin.addresses: which addresses the outbound address guard refuses, and the allow list."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sesshu.plugin import addresses


@pytest.fixture(autouse=True)
def nothing_allowed() -> Iterator[None]:
    addresses.allow([])
    yield
    addresses.allow([])


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.0.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),  # the instance metadata service
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%lo", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("0.1.2.3", "private"),  # "this network"
    ("fec0::1", "site-local"),
    # IPv4-mapped and NAT64 addresses are the IPv4 address they stand for.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    ("64:ff9b::169.254.169.254", "link-local"),
    ("64:ff9b::7f00:1", "loopback"),
    # 6to4 and Teredo carry IPv4 addresses: a refused one refuses the address.
    ("2002:7f00:1::", "loopback (127.0.0.1 inside it)"),
    ("2002:a9fe:a9fe::1", "link-local (169.254.169.254 inside it)"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private (192.0.2.45 inside it)"),  # Teredo, RFC 4380's example
    # The deprecated IPv4-compatible form is reserved space.
    ("::127.0.0.1", "reserved"),
    # Where Python releases' is_private tables disagree, the guard's own table decides.
    ("192.0.0.8", "private"), ("192.0.0.255", "private"), ("2001:20::1", "private"), ("3fff::1", "private"),
    ("5f00::1", "private"), ("64:ff9b:1::1", "private"), ("100::1", "private"),
])
def test_refused_addresses_say_why(address: str, why: str) -> None:
    assert addresses.refused(address) == why


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.32.0.1", "169.255.0.1",
    "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8",
    "2002:808:808::1",
])
def test_public_addresses_pass(address: str) -> None:
    assert addresses.refused(address) is None


def test_refused_takes_an_address_object_and_refuses_what_is_not_one() -> None:
    assert addresses.refused(ipaddress.ip_address("127.0.0.1")) == "loopback"
    with pytest.raises(ValueError):
        addresses.refused("localhost")


def test_allow_takes_ranges_out_of_the_refusal() -> None:
    addresses.allow(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])
    assert addresses.allowed() == ("127.0.0.1/32", "10.0.0.0/8", "fd00::/8")
    for ok in ("127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "10.200.0.1", "::ffff:10.0.0.1", "fd00::5"):
        assert addresses.refused(ok) is None, ok
    assert addresses.refused("127.0.0.2") == "loopback"
    assert addresses.refused("::1") == "loopback"  # ranges are per family: 127.0.0.1/32 is not ::1
    assert addresses.refused("169.254.169.254") == "link-local"
    assert addresses.refused("fc00::1") == "private"


def test_allow_replaces_the_list_and_an_empty_one_allows_nothing() -> None:
    addresses.allow(["127.0.0.0/8"])
    addresses.allow(["::1"])
    assert addresses.allowed() == ("::1/128",)
    assert addresses.refused("127.0.0.1") == "loopback"
    addresses.allow([])
    assert addresses.refused("::1") == "loopback"


@pytest.mark.parametrize("cidr", ["nope", "10.0.0.1/8", "10.0.0.0/33", "300.0.0.0/8", "", "fd00::/129"])
def test_allow_refuses_what_is_not_a_range_and_keeps_the_list(cidr: str) -> None:
    addresses.allow(["127.0.0.0/8"])
    with pytest.raises(ValueError):
        addresses.allow(["::1", cidr])
    assert addresses.allowed() == ("127.0.0.0/8",)


@pytest.mark.parametrize(("host", "address"), [
    ("127.0.0.1", "127.0.0.1"),
    ("169.254.169.254", "169.254.169.254"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ("fe80::1%eth0", "fe80::1"),
    # The legacy spellings inet_aton, and so getaddrinfo, reads as IPv4 addresses.
    ("2130706433", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
])
def test_literal_address_reads_every_spelling(host: str, address: str) -> None:
    assert addresses.literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["localhost", "example.com", "1e100.net", "cafe", "0x7g.1", "127.0.0.1.evil.test",
                                  ""])
def test_literal_address_leaves_host_names_alone(host: str) -> None:
    assert addresses.literal_address(host) is None


def test_the_policy_module_imports_only_the_standard_library() -> None:
    code = ("import sys; import sesshu.plugin.addresses; "
            "print(sorted(m for m in ('requests', 'urllib3', 'yaml', 'cerberus', 'boto3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
