"""Where an agent's provider ``base_url`` may send the workers.

The workers run inside the platform's network, and they send the agent's provider key
(and the call's audio and text) to ``base_url``. A tenant must not be able to point them
at cloud metadata (169.254.169.254), the platform's own services or anything else only
the platform can reach. So a ``base_url`` must be ``https`` (or ``wss``), carry no
credentials, and name a host that is not, and does not resolve to, a loopback, private,
link-local, unique-local, multicast, unspecified, reserved or otherwise non-public
address; ``localhost`` and ``*.localhost`` are refused by name.

The operator's exception is ``CONFIG_SYNC_BASE_URL_ALLOW``: a comma list of hosts,
``host:port`` pairs and CIDR networks that may be plain ``http``/``ws`` and internal (the
offline demo and the tests' fake providers on 127.0.0.1 use it).

Limits (DNS rebinding): a host name is resolved when the edit is validated. A name that
resolves to a public address then and to an internal one later passes; the check stops
mistakes and casual abuse at edit time, and the network must still keep workers away
from what they must not reach (egress rules for the worker pool).

Messages never echo the URL: it may carry a token in its path or query.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

ALLOW_ENV = "CONFIG_SYNC_BASE_URL_ALLOW"
SECURE_SCHEMES = frozenset({"https", "wss"})
ALLOWABLE_SCHEMES = frozenset({"http", "ws", *SECURE_SCHEMES})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
RESOLVE_TIMEOUT_S = 3.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


def internal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public one (a word for the message), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return internal_reason(mapped)
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unique-local", address in _UNIQUE_LOCAL),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((word for word, hit in checks if hit), None)


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The operator's allow-list; empty (the default) allows nothing internal."""

    hosts: frozenset[str] = frozenset()
    host_ports: frozenset[tuple[str, int]] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "OutboundPolicy":
        """From ``CONFIG_SYNC_BASE_URL_ALLOW``; `ValueError` naming the bad entry's
        position (not its text)."""
        hosts: set[str] = set()
        host_ports: set[tuple[str, int]] = set()
        networks: list[Network] = []
        entries = [e.strip().lower() for e in text.split(",") if e.strip()]
        for position, entry in enumerate(entries, 1):
            try:
                if "/" in entry:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                parsed = urlsplit(f"//{entry}")
                host, port = parsed.hostname, parsed.port
                if not host or parsed.username or parsed.path or parsed.query:
                    raise ValueError(entry)
            except ValueError:
                raise ValueError(
                    f"{ALLOW_ENV}: entry {position} is not a host, host:port or CIDR network"
                ) from None
            if port is None:
                hosts.add(host)
            else:
                host_ports.add((host, port))
        return cls(frozenset(hosts), frozenset(host_ports), tuple(networks))

    def allows_host(self, host: str, port: int) -> bool:
        if host in self.hosts or (host, port) in self.host_ports:
            return True
        address = _ip(host)
        return address is not None and self.in_networks(address)

    def in_networks(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


def _split(url: str) -> tuple[SplitResult, str, int] | str:
    """The parts of ``url``, or the problem with it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ALLOWABLE_SCHEMES or not host:
        return "must be an https:// URL naming a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (give the key in keys)"
    return parts, host, port or DEFAULT_PORTS[parts.scheme]


def url_problem(url: str, policy: OutboundPolicy) -> str | None:
    """What is wrong with ``url`` without resolving it (see the module docstring)."""
    split = _split(url)
    if isinstance(split, str):
        return split
    parts, host, port = split
    if policy.allows_host(host, port):
        return None
    if parts.scheme not in SECURE_SCHEMES:
        return f"must be https (or wss), not {parts.scheme}"
    if _is_localhost(host):
        return "must not point at localhost"
    address = _ip(host)
    if address is not None and (reason := internal_reason(address)) is not None:
        return f"must not point at a {reason} address"
    return None


async def resolve_problem(url: str, policy: OutboundPolicy) -> str | None:
    """`url_problem`, then: a host name must resolve, and only to public addresses
    (or ones in the allow-list's networks)."""
    problem = url_problem(url, policy)
    if problem is not None:
        return problem
    split = _split(url)
    assert not isinstance(split, str)
    _, host, port = split
    if policy.allows_host(host, port) or _ip(host) is not None:
        return None
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        return "names a host that does not resolve"
    return addresses_problem((str(info[4][0]) for info in infos), policy)


def addresses_problem(addresses: Iterable[str], policy: OutboundPolicy) -> str | None:
    """The problem with a host resolving to ``addresses`` (any internal one is enough)."""
    for text in addresses:
        address = _ip(text.split("%", 1)[0])  # an IPv6 zone index is not part of it
        if address is None:
            return "names a host that does not resolve"
        reason = internal_reason(address)
        if reason is not None and not policy.in_networks(address):
            return f"names a host that resolves to a {reason} address"
    return None
