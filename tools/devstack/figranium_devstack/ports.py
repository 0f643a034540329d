import random
import socket
from pathlib import Path

# Ports the kernel hands to outgoing connections (Linux's default range): a port picked from
# it can be taken by any process's next connection before the server that was meant to get
# it binds. Ports are picked below it, where only listeners go.
_EPHEMERAL_DEFAULT = (32768, 60999)
_LOWEST = 10000
_random = random.SystemRandom()  # test workers pick independently of each other's seeds


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return _EPHEMERAL_DEFAULT
    return low, high


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing was listening on a moment ago, outside the
    range the kernel picks outgoing connections' ports from (when there is room below it)."""
    low, _ = ephemeral_range()
    if low - 1 - _LOWEST >= 1000:
        for _ in range(200):
            port = _random.randint(_LOWEST, low - 1)
            if port_is_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so a port only held by TIME_WAIT leftovers is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
