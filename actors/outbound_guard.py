"""The SSRF guard under actors/outbound.py: which addresses an outbound call may reach, and a
requests adapter whose connections go only to an address that was checked.

Checking a URL's host and then letting the HTTP library resolve the name again is not enough:
the name can answer a public address to the check and 127.0.0.1 to the connection (DNS
rebinding). Here the connection itself resolves the name once, checks every address it got,
and connects to one of exactly those addresses. The URL's host name stays the connection's host,
so the Host header, TLS SNI and the certificate's host name check are all the URL's, as without
the guard. Every connection does this, so each redirect hop (when a call allows redirects) and
every reconnect is checked again.

Refused: loopback, private (RFC 1918, IPv6 unique local), link-local (169.254.0.0/16 with the
cloud metadata address, fe80::/10), multicast, reserved, unspecified, shared (100.64.0.0/10),
and whatever else Python's ``ipaddress`` does not call global (documentation, benchmarking…).
An IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged by the IPv4 address it
carries. ``LAMPLIGHTER_OUTBOUND_ALLOW`` opens exceptions: host names, addresses, networks.
"""
from __future__ import annotations

import ipaddress
import socket
import sys
from socket import timeout as SocketTimeout
from typing import Callable, Iterable

from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from storage import settings_sections

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses the name resolves to, as strings.
Resolver = Callable[[str, int], list[str]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = ipaddress.ip_address("169.254.169.254")


class AddressRefused(Exception):
    """The guard refused to connect. Not an OSError: urllib3 must not retry it as a failed
    connection, and requests must not turn it into a ConnectionError."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, as the system resolver answers (numeric hosts,
    including forms like ``2130706433`` for 127.0.0.1, are converted without a query)."""
    family = urllib3_connection.allowed_gai_family()
    answers = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    return list(dict.fromkeys(sockaddr[0] for *_, sockaddr in answers))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (not :: nor ::1)
        return ipaddress.IPv4Address(int(ip))
    return None


def refusal(address: str | Address) -> str | None:
    """Why ``address`` may not be connected to (a few words), or None when it is global."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if ip.version == 6:
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        carried = embedded_ipv4(ip)
        if carried is not None:
            reason = refusal(carried)
            return f"{reason}, as {carried}" if reason else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip == _METADATA:
        return "link-local, the cloud metadata address"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in network for network in _PRIVATE if network.version == ip.version):
        return "private"
    if ip.version == 4 and ip in _SHARED:
        return "shared address space (carrier-grade NAT)"
    if ip.version == 6 and ip.is_site_local:
        return "site-local"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "special-purpose, not globally routable"
    return None


def parse_allow(entries: Iterable[str]) -> tuple[frozenset[str], tuple]:
    """Allow-list entries as (host names, networks), by LAMPLIGHTER_OUTBOUND_ALLOW's rules
    (storage/settings.py): a bad entry raises SettingsError."""
    hosts, networks = set(), []
    for entry in settings_sections.outbound_allow_entries(entries):
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return frozenset(hosts), tuple(networks)


class OutboundGuard:
    """Resolves a host once and says which of its addresses a connection may use.

    ``resolve`` and ``connect`` are the seams to the world outside this machine: tests pass a
    resolver that answers any address they like, and a ``connect`` that refuses to leave the
    machine, so no test sends a packet to a private or public address."""

    def __init__(self, allow: Iterable[str] = (), *, resolve: Resolver = system_resolver,
                 connect: Callable[..., socket.socket] = urllib3_connection.create_connection):
        self.allowed_hosts, self.allowed_networks = parse_allow(allow)
        self.resolve = resolve
        self.connect = connect

    def allowed(self, ip: Address) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        forms = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and (carried := embedded_ipv4(ip)) is not None:
            forms.append(carried)
        return any(form in network for form in forms for network in self.allowed_networks
                   if network.version == form.version)

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` a connection may go to, in the resolver's order. Raises
        AddressRefused when any of them is refused: a name that answers a private address among
        public ones is not one to call."""
        answered = self.resolve(host, port)
        if not answered:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} resolved to no address")
        if host.lower().rstrip(".") in self.allowed_hosts:
            return list(answered)
        for text in answered:
            ip = ipaddress.ip_address(text)
            if self.allowed(ip):
                continue
            reason = refusal(ip)
            if reason is not None:
                named = text if host.strip("[]") == text else f"{host} resolves to {text}"
                raise AddressRefused(f"refused: {named} ({reason}); LAMPLIGHTER_OUTBOUND_ALLOW opens exceptions")
        return list(answered)


class _GuardedConnection:
    """urllib3's connection, connecting to an address the guard checked instead of resolving
    ``host`` itself; everything else (Host header, SNI, certificate check) still uses ``host``."""

    guard: OutboundGuard | None = None

    def _new_conn(self) -> socket.socket:
        if self.guard is None:
            raise AddressRefused("refused: the connection has no outbound guard")
        try:
            addresses = self.guard.addresses(self._dns_host, self.port)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        failure: Exception | None = None
        for ip in addresses:
            try:
                sock = self.guard.connect((ip, self.port), self.timeout, source_address=self.source_address,
                                          socket_options=self.socket_options)
            except SocketTimeout as e:
                failure = ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})")
                failure.__cause__ = e
            except OSError as e:
                failure = NewConnectionError(self, f"Failed to establish a new connection: {e}")
                failure.__cause__ = e
            else:
                sys.audit("http.client.connect", self, self.host, self.port)
                return sock
        raise failure


class GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection
    guard: OutboundGuard | None = None

    def _new_conn(self):
        conn = super()._new_conn()
        conn.guard = self.guard
        return conn


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection
    guard: OutboundGuard | None = None

    def _new_conn(self):
        conn = super()._new_conn()
        conn.guard = self.guard
        return conn


class GuardedPoolManager(PoolManager):
    def __init__(self, guard: OutboundGuard, **kwargs):
        super().__init__(**kwargs)
        self.guard = guard
        self.pool_classes_by_scheme = {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}

    def _new_pool(self, scheme, host, port, request_context=None):
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.guard = self.guard
        return pool


class GuardedAdapter(HTTPAdapter):
    """requests' HTTPAdapter over guarded connections. No proxies: a proxy would resolve the
    name itself, out of the guard's sight."""

    def __init__(self, guard: OutboundGuard, **kwargs):
        self.guard = guard
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        self._pool_connections, self._pool_maxsize, self._pool_block = connections, maxsize, block
        self.poolmanager = GuardedPoolManager(self.guard, num_pools=connections, maxsize=maxsize, block=block,
                                              **pool_kwargs)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise AddressRefused("refused: a proxy would resolve the host out of the outbound guard's sight")
