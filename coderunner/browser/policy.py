"""Browser egress rules: which hosts and addresses pages may load from, decided on resolved IP addresses.

Order of evaluation for a destination (a host name and the addresses it resolves to):

1. **deny** rules (host globs or CIDRs): a match on the name or on any address refuses.
2. **Always refused** unless a CIDR allow rule (or an exact host-name allow rule) names them: cloud
   metadata endpoints (``169.254.169.254``, ``fd00:ec2::254``, ``100.100.100.200``,
   ``metadata.google.internal``) and the link-local ranges (``169.254.0.0/16``, ``fe80::/10``). A
   wildcard allow such as ``*`` never opens them.
3. With ``public_bind`` (set by the server when it listens on a non-loopback address): loopback,
   private, shared (CGNAT) and unspecified ranges are refused unless an allow rule matches.
4. With ``default="deny"`` (allow-list mode), anything no allow rule matches is refused.
5. Everything else is allowed.

Every address a name resolves to must pass, so a DNS answer mixing a public and a private address
is refused. The decision is enforced by :mod:`coderunner.browser.proxy`, which connects to exactly
the addresses it checked (no second DNS lookup a rebinding attack could change).
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from coderunner.errors import ConfigurationError

__all__ = ["EgressDecision", "EgressPolicy", "IPAddress", "resolve_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
"""Host names of cloud metadata services, refused by name whatever they resolve to."""

_ALWAYS_BLOCKED: tuple[tuple[_Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("169.254.169.254/32", "the cloud metadata service"),
        ("fd00:ec2::254/128", "the AWS IPv6 metadata service"),
        ("100.100.100.200/32", "the Alibaba Cloud metadata service"),
        ("169.254.0.0/16", "a link-local address"),
        ("fe80::/10", "a link-local address"),
    )
)

_PRIVATE: tuple[tuple[_Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("127.0.0.0/8", "a loopback address"),
        ("::1/128", "a loopback address"),
        # Connecting to 0.0.0.0 or :: reaches this machine on Linux.
        ("0.0.0.0/8", "an unspecified address (this machine)"),
        ("::/128", "an unspecified address (this machine)"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("198.18.0.0/15", "a private (benchmarking) address"),
        ("fc00::/7", "a private (unique local) address"),
        ("fec0::/10", "a private (site-local) address"),
    )
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _as_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _effective(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 form embeds (``::ffff:a.b.c.d``, NAT64), or the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class EgressDecision:
    """The verdict on one destination."""

    allowed: bool
    """True when the browser may connect."""
    reason: str
    """Why it was refused (empty when allowed)."""
    addresses: tuple[IPAddress, ...] = ()
    """The addresses that were checked, in resolver order (the proxy connects to these only)."""


@dataclass(frozen=True)
class _Rule:
    text: str
    network: _Network | None
    glob: str | None

    @classmethod
    def parse(cls, text: str) -> _Rule:
        raw = text.strip()
        if not raw:
            raise ConfigurationError("An egress rule cannot be empty.")
        try:
            return cls(raw, ipaddress.ip_network(raw.strip("[]"), strict=False), None)
        except ValueError:
            pass
        glob = _normalize_host(raw)
        if "/" in glob or ":" in glob or " " in glob:
            raise ConfigurationError(
                f"Egress rule {raw!r} is neither a host name glob (e.g. '*.example.com') "
                "nor a CIDR (e.g. '10.0.0.0/8')."
            )
        return cls(raw, None, glob)

    @property
    def is_exact_host(self) -> bool:
        return self.glob is not None and not any(c in self.glob for c in "*?[")

    def matches_host(self, host: str) -> bool:
        return self.glob is not None and fnmatch.fnmatchcase(host, self.glob)

    def matches_address(self, address: IPAddress) -> bool:
        if self.network is None:
            return False
        return any(a.version == self.network.version and a in self.network for a in {address, _effective(address)})


class EgressPolicy:
    """Allow/deny rules for the browser's network destinations. Immutable; cheap to evaluate.

    Args:
        allow: Host globs (``'*.example.com'``, ``'localhost'``) or CIDRs (``'10.1.0.0/16'``) to allow
            even where a default would refuse them.
        deny: Host globs or CIDRs always refused.
        public_bind: Also refuse loopback and private ranges (the server sets this when it listens
            on a non-loopback address, so the browser cannot be used to reach the host's services).
        default: ``'allow'`` (refuse only what the rules and defaults refuse) or ``'deny'``
            (allow-list mode: refuse anything no allow rule matches).

    Raises:
        ConfigurationError: A rule is neither a host glob nor a CIDR, or ``default`` is unknown.
    """

    def __init__(
        self,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        *,
        public_bind: bool = False,
        default: Literal["allow", "deny"] = "allow",
    ) -> None:
        if default not in ("allow", "deny"):
            raise ConfigurationError(f"The egress default must be 'allow' or 'deny', not {default!r}.")
        self.allow: tuple[_Rule, ...] = tuple(_Rule.parse(r) for r in allow)
        self.deny: tuple[_Rule, ...] = tuple(_Rule.parse(r) for r in deny)
        self.public_bind = public_bind
        self.default = default

    def __repr__(self) -> str:
        return (
            f"EgressPolicy(allow={[r.text for r in self.allow]!r}, deny={[r.text for r in self.deny]!r}, "
            f"public_bind={self.public_bind!r}, default={self.default!r})"
        )

    # -- pure evaluation ---------------------------------------------------------------------------

    def check(self, host: str, addresses: Sequence[IPAddress] = ()) -> EgressDecision:
        """Decide on ``host`` given the addresses it resolved to (an IP literal host is its own address).

        Args:
            host: The host name or IP literal of the URL.
            addresses: What the name resolved to; ignored for an IP literal. Empty when unresolved:
                then only name rules apply (the connection will fail anyway).
        """
        name = _normalize_host(host)
        literal = _as_address(name)
        addrs: tuple[IPAddress, ...] = (literal,) if literal is not None else tuple(addresses)
        shown = name if literal is None else str(literal)

        for rule in self.deny:
            if rule.matches_host(name):
                return EgressDecision(False, f"{shown} matches the deny rule {rule.text!r}", addrs)
            for a in addrs:
                if rule.matches_address(a):
                    return EgressDecision(False, f"{shown} ({a}) matches the deny rule {rule.text!r}", addrs)

        exact_allowed = any(r.is_exact_host and r.matches_host(name) for r in self.allow)
        if name in METADATA_HOSTS and not exact_allowed:
            return EgressDecision(False, f"{shown} is a cloud metadata service", addrs)

        name_allowed = any(r.matches_host(name) for r in self.allow)
        for a in addrs:
            cidr_allowed = any(r.matches_address(a) for r in self.allow)
            eff = _effective(a)
            why = _classify(eff, _ALWAYS_BLOCKED)
            if why and not (cidr_allowed or exact_allowed):
                return EgressDecision(False, _refusal(shown, a, why, "always refused"), addrs)
            if self.public_bind and not (cidr_allowed or name_allowed):
                why = _classify(eff, _PRIVATE)
                if why:
                    return EgressDecision(
                        False,
                        _refusal(shown, a, why, "refused while the server listens on a public address (public_bind)"),
                        addrs,
                    )
            if self.default == "deny" and not (cidr_allowed or name_allowed):
                return EgressDecision(False, f"{shown} is not on the allow list (egress default is 'deny')", addrs)
        if not addrs and self.default == "deny" and not name_allowed:
            return EgressDecision(False, f"{shown} is not on the allow list (egress default is 'deny')", addrs)
        return EgressDecision(True, "", addrs)

    def check_address(self, address: str | IPAddress) -> EgressDecision:
        """Decide on a bare IP address (no DNS, no traffic): what a connection to it would meet."""
        return self.check(str(ipaddress.ip_address(address)))

    # -- with DNS ----------------------------------------------------------------------------------

    async def resolve_and_check(self, host: str, port: int) -> EgressDecision:
        """Resolve ``host`` (unless it is an IP literal) and decide on every address it has."""
        name = _normalize_host(host)
        if _as_address(name) is not None:
            return self.check(name)
        early = self.check(name)  # name-only rules (deny globs, metadata names) need no DNS
        if not early.allowed:
            return early
        return self.check(name, await resolve_host(name, port))

    async def check_url(self, url: str) -> EgressDecision:
        """Decide on an http(s)/ws(s) URL's host; other schemes are not network destinations (allowed)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            return EgressDecision(True, "")
        try:
            port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        except ValueError:
            return EgressDecision(False, f"{url!r} has an invalid port")
        return await self.resolve_and_check(parts.hostname, port)


def _classify(address: IPAddress, table: tuple[tuple[_Network, str], ...]) -> str:
    for net, why in table:
        if address.version == net.version and address in net:
            return why
    return ""


def _refusal(shown: str, address: IPAddress, why: str, rule: str) -> str:
    target = shown if shown == str(address) else f"{shown} ({address})"
    return f"{target} is {why}, {rule} (allow it with CODERUNNER_BROWSER_ALLOW if intended)"


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, duplicates removed; empty if it does not resolve."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        # Drop an IPv6 scope id ("fe80::1%eth0") before parsing; the policy does not depend on it.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out
