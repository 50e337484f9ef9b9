"""Which network addresses a KMS request may go to, however they are spelled. Pure: no I/O.

Used twice: on the endpoint URL before anything is sent (``domain.policy``), and on every address a
host name resolves to, at connect time (``kms.transport``), so neither another spelling of an
address nor a DNS answer can lead a request to instance metadata, a link-local service or, unless
the endpoint itself names it, this machine.
"""

from __future__ import annotations

import ipaddress
import re
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services answer on these besides link-local 169.254.169.254: Alibaba Cloud's
# ECS metadata, and AWS's IPv6 one (harmless to block anywhere).
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")})
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.aliyun.internal"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291), still routed by some stacks
_INET_ATON = re.compile(r"^[0-9a-fx.]+$")  # decimal, octal (0...), hex (0x...), and the 1- to 3-part forms


def literal_address(host: str) -> Address | None:
    """The address a host literal means, in any spelling the C resolver accepts; None for a name.

    ``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376`` and ``169.254.43518`` are all
    169.254.169.254 to getaddrinfo (inet_aton rules), so they are to this check too.
    """
    text = host.strip().lower().strip("[]").rstrip(".")
    text = text.split("%", 1)[0]  # an IPv6 zone (fe80::1%eth0) does not change the address
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and _INET_ATON.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))  # parsing only, no lookup
        except OSError:
            return None
    return None


def embedded_ipv4(address: Address) -> list[Address]:
    """The address itself and any IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4, Teredo)."""
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address in IPV4_COMPATIBLE and int(address) > 1:  # ::a9fe:a9fe is ::169.254.169.254; not :: or ::1
            found.append(ipaddress.IPv4Address(int(address)))
        if address in NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
    return found


def address_problem(address: Address, *, allow_loopback: bool) -> str | None:
    """Why a request may not go to ``address``, or None."""
    for a in embedded_ipv4(address):
        reserved = isinstance(a, ipaddress.IPv4Address) and a.is_reserved  # 240/4; IPv6's "reserved" holds ::1
        if a in METADATA_ADDRESSES or a.is_link_local or a.is_multicast or a.is_unspecified or reserved:
            return f"{address} is a link-local or metadata address; it is never allowed"
        if a.is_loopback and not allow_loopback:
            return f"{address} is this machine (loopback), and the endpoint does not name it"
    return None


def names_loopback(host: str) -> bool:
    """The endpoint itself names this machine: a loopback literal, or localhost."""
    name = host.strip().lower().strip("[]").rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = literal_address(host)
    return address is not None and any(a.is_loopback for a in embedded_ipv4(address))


def host_problem(host: str) -> str | None:
    """Why a host (name or literal) in an endpoint URL is never allowed, or None."""
    name = host.strip().lower().strip("[]").rstrip(".")
    if name in METADATA_NAMES:
        return f"{host} is a metadata service name; it is never allowed"
    address = literal_address(host)
    if address is None:
        return None
    return address_problem(address, allow_loopback=True)
