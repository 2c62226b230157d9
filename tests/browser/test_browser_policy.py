"""Egress rules: each one proven by rule evaluation (no traffic), and the refusals on real Chromium.

Only loopback traffic is ever sent: private, metadata and public addresses are checked by evaluating
the rules on addresses, never by connecting to them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator

import pytest
from browser_helpers import PageServer

from coderunner.backends.inprocess import InProcessBackend
from coderunner.browser import BrowserSettings, DestinationBlockedError, EgressPolicy, browser_manager_for
from coderunner.browser.policy import IPAddress
from coderunner.config import Settings
from coderunner.errors import ConfigurationError

pytestmark = pytest.mark.browser

PUBLIC = "93.184.216.34"  # only ever evaluated, never contacted
PRIVATE = ["10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fc00::1", "fd12:3456::1"]
LOOPBACK = ["127.0.0.1", "127.8.9.10", "::1", "0.0.0.0", "::", "::ffff:127.0.0.1"]
METADATA = ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"]
LINK_LOCAL = ["169.254.1.1", "fe80::1"]


def _addrs(*texts: str) -> list[IPAddress]:
    return [ipaddress.ip_address(t) for t in texts]


@pytest.mark.parametrize("address", METADATA + LINK_LOCAL)
def test_metadata_and_link_local_are_always_refused(address: str) -> None:
    for policy in (EgressPolicy(), EgressPolicy(public_bind=True), EgressPolicy(allow=["*"])):
        decision = policy.check_address(address)
        assert not decision.allowed, (policy, address)
        assert "metadata" in decision.reason or "link-local" in decision.reason


@pytest.mark.parametrize("host", ["metadata.google.internal", "METADATA.google.internal.", "metadata.goog"])
def test_metadata_names_are_refused_without_dns(host: str) -> None:
    decision = EgressPolicy(allow=["*.internal"]).check(host)
    assert not decision.allowed and "metadata" in decision.reason


def test_metadata_opens_only_by_explicit_cidr() -> None:
    assert EgressPolicy(allow=["169.254.169.254/32"]).check_address("169.254.169.254").allowed
    assert not EgressPolicy(allow=["169.254.169.254/32"]).check_address("169.254.1.1").allowed


@pytest.mark.parametrize("address", LOOPBACK + PRIVATE + [PUBLIC])
def test_loopback_private_and_public_allowed_by_default(address: str) -> None:
    assert EgressPolicy().check_address(address).allowed


@pytest.mark.parametrize("address", LOOPBACK + PRIVATE)
def test_public_bind_refuses_loopback_and_private(address: str) -> None:
    decision = EgressPolicy(public_bind=True).check_address(address)
    assert not decision.allowed
    assert "public_bind" in decision.reason and "CODERUNNER_BROWSER_ALLOW" in decision.reason


def test_public_bind_keeps_public_addresses() -> None:
    assert EgressPolicy(public_bind=True).check_address(PUBLIC).allowed


def test_allow_rules_reopen_private_ranges_under_public_bind() -> None:
    policy = EgressPolicy(allow=["127.0.0.0/8", "intranet.example"], public_bind=True)
    assert policy.check_address("127.0.0.1").allowed
    assert not policy.check_address("::1").allowed
    assert policy.check("intranet.example", _addrs("10.0.0.5")).allowed  # by host name
    assert not policy.check("other.example", _addrs("10.0.0.5")).allowed


def test_every_resolved_address_must_pass() -> None:
    policy = EgressPolicy(public_bind=True)
    assert policy.check("mixed.example", _addrs(PUBLIC)).allowed
    decision = policy.check("mixed.example", _addrs(PUBLIC, "192.168.0.10"))
    assert not decision.allowed and "192.168.0.10" in decision.reason


def test_deny_rules_win() -> None:
    policy = EgressPolicy(allow=["*"], deny=["*.ads.example", "203.0.113.0/24"])
    assert not policy.check("x.ads.example", _addrs(PUBLIC)).allowed
    assert not policy.check("cdn.example", _addrs("203.0.113.9")).allowed
    assert policy.check("cdn.example", _addrs(PUBLIC)).allowed


def test_allow_list_mode() -> None:
    policy = EgressPolicy(allow=["*.example.org", "198.51.100.0/24"], default="deny")
    assert policy.check("docs.example.org", _addrs(PUBLIC)).allowed
    assert policy.check_address("198.51.100.7").allowed
    decision = policy.check("example.com", _addrs(PUBLIC))
    assert not decision.allowed and "allow list" in decision.reason


def test_localhost_name_is_resolved_before_deciding() -> None:
    # Resolving "localhost" reads the hosts file: no traffic leaves the machine.
    decision = asyncio.run(EgressPolicy(public_bind=True).resolve_and_check("localhost", 80))
    assert not decision.allowed and "loopback" in decision.reason
    assert asyncio.run(EgressPolicy().resolve_and_check("localhost", 80)).allowed


def test_bad_rules_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        EgressPolicy(allow=["http://example.com/path"])
    with pytest.raises(ConfigurationError):
        EgressPolicy(deny=[""])
    with pytest.raises(ConfigurationError):
        EgressPolicy(default="maybe")  # type: ignore[arg-type]


def test_settings_from_environment() -> None:
    env = {
        "CODERUNNER_BROWSER_ALLOW": "10.0.0.0/8, intranet.example",
        "CODERUNNER_BROWSER_DENY": "*.ads.example",
        "CODERUNNER_BROWSER_PUBLIC_BIND": "yes",
        "CODERUNNER_BROWSER_EGRESS_DEFAULT": "deny",
        "CODERUNNER_BROWSER_MAX_SESSIONS": "3",
        "CODERUNNER_BROWSER_IDLE_TIMEOUT": "0",
        "CODERUNNER_BROWSER_POOL_SIZE": "2",
        "CODERUNNER_CHROMIUM": "/opt/chrome",
    }
    settings = BrowserSettings.from_env(env)
    assert settings.allow == ("10.0.0.0/8", "intranet.example")
    assert settings.deny == ("*.ads.example",)
    assert settings.public_bind and settings.egress_default == "deny"
    assert (settings.max_sessions, settings.idle_timeout, settings.pool_size) == (3, None, 2)
    assert settings.chromium == "/opt/chrome"
    assert BrowserSettings.from_env(env, max_sessions=5, public_bind=False).max_sessions == 5
    with pytest.raises(ConfigurationError, match="CODERUNNER_BROWSER_MAX_SESSIONS"):
        BrowserSettings.from_env({"CODERUNNER_BROWSER_MAX_SESSIONS": "many"})
    with pytest.raises(ConfigurationError, match="Unknown browser option"):
        BrowserSettings.from_env({}, max_tabs=3)


# -- on real Chromium ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_backend(needs_chromium: None) -> Iterator[InProcessBackend]:
    b = InProcessBackend(Settings.from_env(pool_size=0), browser_settings=BrowserSettings(public_bind=True))
    yield b
    b.close()


def test_public_bind_refuses_a_loopback_navigation(public_backend: InProcessBackend, pages: PageServer) -> None:
    before = len(pages.requests)
    with browser_manager_for(public_backend).create_session() as session:
        with pytest.raises(DestinationBlockedError) as info:
            session.navigate(pages.url("/form"))
        assert "127.0.0.1 is a loopback address" in info.value.message
        with pytest.raises(DestinationBlockedError):
            session.navigate(f"http://localhost:{pages.port}/form")
        with pytest.raises(DestinationBlockedError, match="'file' scheme"):
            session.navigate("file:///etc/hostname")
        # Pages that need no network still work, and the browser stays up.
        result = session.navigate("data:text/html,<title>inline</title><p>ok</p>")
        assert result["data"]["title"] == "inline"
    assert len(pages.requests) == before, "no request may reach the loopback server"
