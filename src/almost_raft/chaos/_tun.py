"""TUN devices and named network namespaces, made with ``/dev/net/tun`` and ``ip``.

A TUN device is created in this process's namespace, and its file descriptor keeps working
after ``ip link set DEV netns NS`` moves the device elsewhere: the descriptor is bound to
the device, not to a namespace. So one process can read and write the IP packets of every
namespace it made, which is what lets a single forwarder stand between them.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import shutil
import struct
import subprocess
import sys

__all__ = [
    "NamespaceError",
    "free_subnets",
    "ip",
    "open_tun",
    "unavailable_reason",
]

_TUN_PATH = "/dev/net/tun"
# From <linux/if_tun.h>.
_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
# struct ifreq: a 16-byte name, then a union of 24 bytes whose first field is the flags.
_IFREQ = "16sH22x"
IFNAMSIZ = 16
# Route types `ip route show table all` may put before the destination.
_ROUTE_TYPES = {
    "local",
    "broadcast",
    "unicast",
    "anycast",
    "multicast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
}


class NamespaceError(RuntimeError):
    """Network namespaces cannot be made here, or an ``ip`` command failed; the message
    says what to do."""


def unavailable_reason() -> str | None:
    """Why namespaces with TUN devices cannot be made by this process, or ``None``."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return (
            "network namespaces need root: run as root, or use ProxyNetwork, which "
            "models the network in user space"
        )
    if not os.path.exists(_TUN_PATH):
        return (
            f"no {_TUN_PATH}: load the module (modprobe tun), or give the container the "
            "device (docker run --device /dev/net/tun --cap-add NET_ADMIN)"
        )
    if shutil.which("ip") is None:
        return "no `ip` command: install iproute2"
    return None


def open_tun(name: str) -> int:
    """Create the TUN device ``name`` (raw IP packets, no packet information header) in
    this process's namespace and return its non-blocking descriptor.

    The device lives as long as the descriptor: closing it removes the device, in
    whatever namespace it is by then.
    """
    if len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ - 1} bytes")
    fd = os.open(_TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack(_IFREQ, name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise NamespaceError(f"could not create the TUN device {name}: {exc}") from exc
    return fd


def ip(*args: str) -> str:
    """Run ``ip ARGS`` and return its output.

    Raises:
        NamespaceError: it failed; the message has its error output.
    """
    result = subprocess.run(
        ["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise NamespaceError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def free_subnets(candidates: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """The ``candidates`` that overlap no route or address of this namespace.

    A subnet routed from here into the forwarder must not shadow a real network, nor the
    subnet of a parallel run.
    """
    taken: list[ipaddress.IPv4Network] = []
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if words and words[0] in _ROUTE_TYPES:
            words = words[1:]
        if words and words[0] != "default":
            taken += _network(words[0])
    for line in ip("-4", "-o", "addr", "show").splitlines():
        words = line.split()
        if "inet" in words:
            taken += _network(words[words.index("inet") + 1])
    return [net for net in candidates if not any(net.overlaps(other) for other in taken)]


def _network(text: str) -> list[ipaddress.IPv4Network]:
    try:
        return [ipaddress.IPv4Network(text, strict=False)]
    except ValueError:
        return []
