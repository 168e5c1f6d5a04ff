"""Test hosts as Linux network namespaces, and TCP forwarders to the services on loopback.

Each host is a network namespace joined to this one by one veth pair per
service (PostgreSQL, RabbitMQ), so that one link can be cut while the other
stays up. The pairs take /30s of one 10.213.N.0/24 that no interface or route
of this machine uses: the namespaces have no other interface and no default
route, so nothing they send can leave them except to the forwarders. A
forwarder, in this namespace, listens on the root end of a pair and relays to
the service on 127.0.0.1; the services' own configuration is never touched.

A cut is silent packet loss in both directions, as a dead switch or a pulled
cable somewhere between the hosts would be: the interfaces stay up, nothing is
closed, but each end's neighbour entry for the other names a MAC address that
does not exist, so every frame is dropped by the receiving veth. (There is no
netem or netfilter in this kernel; taking a link down would make the kernel
report errors at once, which a real partition does not.) Restoring deletes
those entries: ARP finds the real addresses again.

Everything is removed on the way out, even after a failure: the processes
started in the namespaces, the forwarders and their connections, and the
namespaces (which takes their veth pairs with them). A namespace left behind
by a test run that was killed is removed by the next run.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

SUBNET_PREFIX = "10.213"  # the test hosts take one free 10.213.N.0/24
_PREFIX = "bbtp"  # namespace names: bbtp-<pid of the test process>-<token>-<host>
_LOCK = "/tmp/bbt-netlab.lock"  # two runs at once must not pick the same N
_BOGUS_MAC = "02:62:62:74:00:{:02x}"  # locally administered, used by no interface
SERVICES = {"pg": 5432, "mq": 5672}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def available() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"{_PREFIX}-{os.getpid()}-probe"
    made = ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    ip("netns", "del", name, check=False)
    return None


# -- forwarders -----------------------------------------------------------


@dataclass
class Relay:
    """One forwarded connection: the client's end (down) and the service's end (up)."""

    down: socket.socket
    up: socket.socket
    upstream_port: int  # our port towards the service: what PostgreSQL sees as client_port
    opened: float = field(default_factory=time.time)
    ended: float | None = None
    ended_by: str | None = None  # "service", "client" or "teardown"
    amqp: AmqpDeliveries | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open_at(self, when: float) -> bool:
        return self.opened <= when and (self.ended is None or when <= self.ended)

    def end(self, by: str) -> None:
        with self.lock:
            if self.ended is not None:
                return
            self.ended, self.ended_by = time.time(), by
            if self.amqp is not None:
                self.amqp.connection_ended(self.ended)
        for s in (self.down, self.up):
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the other pump's recv
            except OSError:
                pass
            s.close()


class AmqpDeliveries:
    """The deliveries a client holds unacked, read from the AMQP frames passing through.

    The broker's own view of them: a delivery is held from its Basic.Deliver
    until the client's Basic.Ack, Nack or Reject reaches the broker, or the
    connection ends (then the broker requeues it).
    """

    def __init__(self):
        self.held: dict[tuple[int, int], float] = {}  # (channel, tag) -> delivered at
        self.resolved: dict[tuple[int, int], tuple[float, str]] = {}  # -> (when, how)
        self._lock = threading.Lock()

    def snapshot(self) -> set[tuple[int, int]]:
        with self._lock:
            return set(self.held)

    def connection_ended(self, when: float) -> None:
        with self._lock:
            for key in self.held:
                self.resolved[key] = (when, "connection ended")
            self.held.clear()

    def _settle(self, channel: int, tag: int, multiple: bool, how: str) -> None:
        now = time.time()
        with self._lock:
            keys = [
                k
                for k in self.held
                if k[0] == channel and (k[1] == tag or (multiple and (tag == 0 or k[1] <= tag)))
            ]
            for key in keys:
                del self.held[key]
                self.resolved[key] = (now, how)

    def from_broker(self, channel: int, cls: int, method: int, args: bytes) -> None:
        if (cls, method) == (60, 60):  # Basic.Deliver: consumer-tag, delivery-tag, ...
            tag_at = 1 + args[0]
            (tag,) = struct.unpack_from(">Q", args, tag_at)
            with self._lock:
                self.held[(channel, tag)] = time.time()
        elif cls == 20 and method in (40, 41):  # Channel.Close / Close-Ok: requeued
            self._settle(channel, 0, True, "channel closed")

    def from_client(self, channel: int, cls: int, method: int, args: bytes) -> None:
        if cls == 60 and method in (80, 90, 120):  # Basic.Ack, Reject, Nack
            tag, bits = struct.unpack_from(">QB", args, 0)
            multiple = method != 90 and bool(bits & 1)
            requeue = bool(bits & (1 if method == 90 else 2))
            how = {80: "ack", 90: "reject", 120: "nack"}[method]
            if method != 80 and not requeue:
                how += " without requeue"
            self._settle(channel, tag, multiple, how)
        elif cls == 20 and method in (40, 41):
            self._settle(channel, 0, True, "channel closed")


class _FrameReader:
    """Splits one direction of an AMQP 0-9-1 stream into method frames."""

    def __init__(self, on_method, skip: int = 0):
        self.buffer = b""
        self.skip = skip  # the client opens with an 8-byte protocol header
        self.on_method = on_method

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.skip:
            taken = min(self.skip, len(self.buffer))
            self.buffer, self.skip = self.buffer[taken:], self.skip - taken
        while len(self.buffer) >= 7:
            kind, channel, size = struct.unpack_from(">BHI", self.buffer, 0)
            if len(self.buffer) < 8 + size:
                return
            payload = self.buffer[7 : 7 + size]
            self.buffer = self.buffer[8 + size :]
            if kind == 1 and size >= 4:
                cls, method = struct.unpack_from(">HH", payload, 0)
                self.on_method(channel, cls, method, payload[4:])


class Forwarder:
    """Listens on (address, any port) and relays each connection to 127.0.0.1:`target`."""

    def __init__(self, address: str, target: int, amqp: bool = False):
        self.target = target
        self.amqp = amqp
        self.relays: list[Relay] = []
        self._listener = socket.create_server((address, 0))
        self._listener.settimeout(0.2)
        self.address, self.port = self._listener.getsockname()[:2]
        self._stopping = threading.Event()
        self._frozen = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                down, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                down.close()
                continue
            for s in (down, up):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            relay = Relay(down, up, up.getsockname()[1])
            readers = (None, None)
            if self.amqp:
                relay.amqp = AmqpDeliveries()
                readers = (
                    _FrameReader(relay.amqp.from_client, skip=8),
                    _FrameReader(relay.amqp.from_broker),
                )
            self.relays.append(relay)
            for src, dst, reader, by in (
                (down, up, readers[0], "client"),
                (up, down, readers[1], "service"),
            ):
                threading.Thread(
                    target=self._pump, args=(relay, src, dst, reader, by), daemon=True
                ).start()

    def _pump(self, relay: Relay, src, dst, reader: _FrameReader | None, by: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self._frozen.is_set():
                    continue  # a link gone dead: nothing arrives, nothing is refused
                if reader is not None:
                    reader.feed(data)
                dst.sendall(data)
        except OSError:
            pass
        relay.end(by)

    def freeze(self) -> None:
        """From now on relay nothing, in either direction, and close nothing.

        What a frozen relay drops is lost: a connection that lived through a freeze
        is broken for good; thaw() serves the connections made after it."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def close(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)
        for relay in list(self.relays):
            relay.end("teardown")


# -- namespaces -----------------------------------------------------------


@dataclass
class Link:
    service: str
    root_if: str
    host_if: str
    root_ip: str
    host_ip: str
    forwarder: Forwarder | None = None
    cut: bool = False


@dataclass
class Host:
    name: str
    netns: str
    links: dict[str, Link]
    processes: list[subprocess.Popen] = field(default_factory=list)

    def url_address(self, service: str) -> str:
        """host:port the host reaches `service` at."""
        link = self.links[service]
        return f"{link.forwarder.address}:{link.forwarder.port}"

    def relays(self, service: str) -> list[Relay]:
        return list(self.links[service].forwarder.relays)

    def owns_port(self, port: int, when: float) -> bool:
        """Whether a PostgreSQL client_port seen at `when` was this host's connection."""
        return any(r.upstream_port == port and r.open_at(when) for r in self.relays("pg"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_netns(name: str) -> None:
    """Kill whatever runs in the namespace, then delete it (and so its veth pairs)."""
    for _ in range(50):
        pids = ip("netns", "pids", name, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    ip("netns", "del", name, check=False)


def remove_leftovers() -> None:
    """Namespaces of earlier runs whose test process is gone (killed before its teardown)."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = re.fullmatch(rf"{_PREFIX}-(\d+)-\w+", name)
        if found and not _alive(int(found.group(1))):
            _remove_netns(name)


def _free_subnet() -> int:
    """A third octet N such that nothing here uses 10.213.N.0/24."""
    used = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show", "table", "all").stdout
    taken = {int(m) for m in re.findall(rf"{re.escape(SUBNET_PREFIX)}\.(\d+)\.", used)}
    # 10.213.0.0/16 as a whole in a route would cover every N: then give up.
    if re.search(rf"(?<![\d.]){re.escape(SUBNET_PREFIX)}\.0\.0/(\d+)", used):
        raise RuntimeError(
            f"{SUBNET_PREFIX}.0.0/16 is routed on this machine; cannot pick a subnet"
        )
    free = [n for n in range(1, 255) if n not in taken]
    if not free:
        raise RuntimeError(f"no free {SUBNET_PREFIX}.N.0/24 left")
    return random.choice(free)


class Lab:
    """The test hosts. Use as a context manager: everything is removed on the way out."""

    def __init__(self, names: tuple[str, ...] = ("a", "b")):
        self.names = names
        self.token = f"{random.getrandbits(24):06x}"
        self.hosts: dict[str, Host] = {}
        self.subnet: ipaddress.IPv4Network | None = None

    def __enter__(self) -> Lab:
        try:
            remove_leftovers()
            with open(_LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                octet = _free_subnet()
                self.subnet = ipaddress.ip_network(f"{SUBNET_PREFIX}.{octet}.0/24")
                for i, name in enumerate(self.names):
                    self.hosts[name] = self._make_host(i, name)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _make_host(self, i: int, name: str) -> Host:
        netns = f"{_PREFIX}-{os.getpid()}-{self.token}-{name}"
        ip("netns", "add", netns)
        host = Host(name, netns, {})
        ip("-n", netns, "link", "set", "lo", "up")
        base = int(self.subnet.network_address) + 8 * i
        for j, (service, port) in enumerate(SERVICES.items()):
            net = ipaddress.ip_network(f"{ipaddress.ip_address(base + 4 * j)}/30")
            root_ip, host_ip = (str(a) for a in list(net.hosts()))
            root_if = f"bp{self.token}{i}{j}r"
            host_if = f"bp{self.token}{i}{j}h"
            # The peer is made inside the namespace: deleting the namespace deletes both ends.
            ip("link", "add", root_if, "type", "veth", "peer", "name", host_if, "netns", netns)
            ip("addr", "add", f"{root_ip}/30", "dev", root_if)
            ip("link", "set", root_if, "up")
            ip("-n", netns, "addr", "add", f"{host_ip}/30", "dev", host_if)
            ip("-n", netns, "link", "set", host_if, "up")
            link = Link(service, root_if, host_if, root_ip, host_ip)
            link.forwarder = Forwarder(root_ip, port, amqp=service == "mq")
            host.links[service] = link
        return host

    # -- cutting ----------------------------------------------------------

    def cut(self, host: str, services: tuple[str, ...]) -> None:
        """Drop every frame both ways on the host's links to `services`; nothing is closed."""
        for service in services:
            link = self.hosts[host].links[service]
            netns = self.hosts[host].netns
            ip(
                "neigh",
                "replace",
                link.host_ip,
                "lladdr",
                _BOGUS_MAC.format(1),
                "dev",
                link.root_if,
                "nud",
                "permanent",
            )
            ip(
                "-n",
                netns,
                "neigh",
                "replace",
                link.root_ip,
                "lladdr",
                _BOGUS_MAC.format(2),
                "dev",
                link.host_if,
                "nud",
                "permanent",
            )
            link.cut = True

    def restore(self, host: str) -> None:
        """Undo every cut of the host: ARP finds the real addresses again."""
        for link in self.hosts[host].links.values():
            if link.cut:
                ip("neigh", "del", link.host_ip, "dev", link.root_if, check=False)
                ip(
                    "-n",
                    self.hosts[host].netns,
                    "neigh",
                    "del",
                    link.root_ip,
                    "dev",
                    link.host_if,
                    check=False,
                )
                link.cut = False

    # -- processes --------------------------------------------------------

    def popen(self, host: str, argv: list[str], env: dict, **kwargs) -> subprocess.Popen:
        """A process on the host: its network is the namespace's, nothing else changes."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.hosts[host].netns, *argv],
            env=env,
            start_new_session=True,
            **kwargs,
        )
        self.hosts[host].processes.append(process)
        return process

    def close(self) -> None:
        for host in self.hosts.values():
            for process in host.processes:
                _stop(process)
        for host in self.hosts.values():
            for link in host.links.values():
                if link.forwarder is not None:
                    link.forwarder.close()
            _remove_netns(host.netns)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL what is left after 10 s."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def lab(*names: str):
    with Lab(names or ("a", "b")) as made:
        yield made
