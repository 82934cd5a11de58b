"""Where a provider ``base_url`` may point (`core_voice_config_sync.outbound`): public
https only, every internal address class refused (literal, by name, or resolved with the
system resolver), and the operator's allow-list as the one way around it."""

import ipaddress

import pytest

from core_voice_config_sync.outbound import (
    OutboundPolicy,
    addresses_problem,
    internal_reason,
    resolve_problem,
    url_problem,
)

pytestmark = pytest.mark.unit

NONE = OutboundPolicy()
SECRET = "tok-sekret-9f2c"  # a token in a URL's path or query must never be echoed

REFUSED = {
    f"http://api.example.com/v1?key={SECRET}": "must be https",
    f"ftp://api.example.com/{SECRET}": "must be an https:// URL",
    "https:///v1": "must be an https:// URL",
    f"https://user:{SECRET}@api.example.com/v1": "must not carry credentials",
    f"https://localhost/{SECRET}": "localhost",
    "https://llm.localhost:8443/v1": "localhost",
    "https://127.0.0.1/v1": "loopback",
    "https://127.8.9.10:9000/v1": "loopback",
    "https://[::1]/v1": "loopback",
    "https://10.0.0.5/v1": "private",
    "https://172.16.3.4/v1": "private",
    "https://192.168.1.1/v1": "private",
    f"https://169.254.169.254/latest/meta-data/{SECRET}": "link-local",
    "https://[fe80::1]/v1": "link-local",
    "https://[fd00::1]/v1": "unique-local",
    "https://224.0.0.1/v1": "multicast",
    "https://[ff02::1]/v1": "multicast",
    "https://0.0.0.0/v1": "unspecified",
    "https://[::]/v1": "unspecified",
    "https://[::ffff:127.0.0.1]/v1": "loopback",  # IPv4-mapped
    "https://[::ffff:169.254.169.254]/v1": "link-local",
    "https://[2002:a9fe:a9fe::1]/v1": "link-local",  # 6to4 around 169.254.169.254
    "https://100.64.0.1/v1": "non-public",  # carrier-grade NAT
    "https://240.0.0.1/v1": "private",  # 240/4, reserved (Python counts it private)
    "https://[::1/v1": "not a valid URL",
    "https://api.example.com:99999/v1": "not a valid URL",
}


@pytest.mark.parametrize("url", sorted(REFUSED))
def test_internal_and_insecure_urls_are_refused_without_echoing_them(url: str) -> None:
    problem = url_problem(url, NONE)
    assert problem is not None and REFUSED[url] in problem, problem
    assert SECRET not in problem and "example" not in problem


@pytest.mark.parametrize(
    "url", ["https://api.example.com/v1", "wss://stream.example.com", "https://8.8.8.8/v1"]
)
def test_public_https_passes(url: str) -> None:
    assert url_problem(url, NONE) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("fc00::5", "unique-local"),
        ("239.1.1.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("198.51.100.7", "private"),  # documentation range: not reachable on the internet
        ("1.1.1.1", None),
        ("2606:4700::1111", None),
    ],
)
def test_every_internal_class_has_its_reason(address: str, reason: str | None) -> None:
    assert internal_reason(ipaddress.ip_address(address)) == reason


async def test_host_names_are_resolved_and_refused_if_any_address_is_internal() -> None:
    # Spellings of 127.0.0.1 that are no IP literal to Python, but that the system
    # resolver (and so a worker's HTTP client) turns into loopback.
    for host in ("2130706433", "0x7f000001", "127.1"):
        problem = await resolve_problem(f"https://{host}/v1", NONE)
        assert problem == "names a host that resolves to a loopback address", host
    missing = await resolve_problem("https://no-such-host.invalid/v1", NONE)
    assert missing == "names a host that does not resolve"
    assert addresses_problem(["8.8.8.8", "10.0.0.1"], NONE) == (
        "names a host that resolves to a private address"
    )
    assert addresses_problem(["8.8.8.8", "2001:4860:4860::8888"], NONE) is None
    assert addresses_problem(["fe80::1%eth0"], NONE) == (
        "names a host that resolves to a link-local address"
    )


async def test_the_allow_list_admits_named_hosts_ports_and_networks_only() -> None:
    policy = OutboundPolicy.parse(" LLM.internal , 127.0.0.1:8443,10.1.0.0/16, ::1/128 ")
    assert policy.hosts == {"llm.internal"}
    assert policy.host_ports == {("127.0.0.1", 8443)}
    allowed = [
        "http://llm.internal/v1",  # any port, plain http, never resolved
        "http://llm.internal:9000/v1",
        "http://127.0.0.1:8443/v1",
        "ws://10.1.200.3/stream",
        "http://[::1]:8000/v1",
    ]
    for url in allowed:
        assert url_problem(url, policy) is None, url
        assert await resolve_problem(url, policy) is None, url
    for url, problem in (
        ("http://127.0.0.1:9999/v1", "must be https"),
        ("https://127.0.0.1:9999/v1", "loopback"),
        ("https://10.2.0.1/v1", "private"),
        ("https://localhost/v1", "localhost"),
        ("ftp://llm.internal/v1", "https"),
    ):
        found = url_problem(url, policy)
        assert found is not None and problem in found, (url, found)
    # A network admits names that resolve into it, not only literals.
    loopback = OutboundPolicy.parse("127.0.0.0/8")
    assert await resolve_problem("https://2130706433/v1", loopback) is None
    assert await resolve_problem("http://2130706433/v1", loopback) is not None  # not http


@pytest.mark.parametrize("text", ["10.0.0.0/33", "host/path", "user@host", "a:b:c", "h:99999"])
def test_a_bad_allow_list_entry_is_refused_by_position(text: str) -> None:
    with pytest.raises(ValueError, match=r"CONFIG_SYNC_BASE_URL_ALLOW: entry 2 is not") as info:
        OutboundPolicy.parse(f"ok.example, {text}")
    assert text not in str(info.value)
