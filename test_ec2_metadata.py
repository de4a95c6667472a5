"""Tests of ec2_metadata against a loopback fake of the Instance Metadata Service.

Run with the standard library alone (``python -m unittest``) or under pytest.  No test
ever connects to anything but 127.0.0.1: a guard installed at import makes any other
connection fail the test that tried it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import io
import ipaddress
import itertools
import json
import logging
import operator
import os
import pickle
import random
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
import unittest
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Dict,
    NamedTuple,
    NoReturn,
    TypeVar,
    Union,
    cast,
)
from unittest import mock
from urllib.parse import quote

import ec2_metadata
from ec2_metadata import (
    EC2Metadata,
    EC2MetadataConfigError,
    EC2MetadataConnectionError,
    EC2MetadataDisabledError,
    EC2MetadataError,
    EC2MetadataHTTPError,
    EC2MetadataMalformedError,
    EC2MetadataNotFoundError,
    InstanceTags,
    MetadataTree,
    NetworkInterface,
    PublicKey,
    RebalanceRecommendation,
    SpotInstanceAction,
)

# The guard: no test may open a connection to anything but loopback --------------------


class NonLoopbackConnection(AssertionError):
    """A test tried to connect to an address that is not loopback."""


def is_loopback(address: object) -> bool:
    """True for an AF_INET/AF_INET6 address tuple whose host is a loopback address."""
    if not isinstance(address, tuple):
        return False
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


GUARD_VIOLATIONS: list[object] = []
_unguarded_connect = socket.socket.connect
_unguarded_connect_ex = socket.socket.connect_ex


def _checked(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
        GUARD_VIOLATIONS.append(address)
        raise NonLoopbackConnection(f"a test tried to connect to {address!r}, not loopback")


def _guarded_connect(sock: socket.socket, address: Any) -> None:
    _checked(sock, address)
    _unguarded_connect(sock, address)


def _guarded_connect_ex(sock: socket.socket, address: Any) -> int:
    _checked(sock, address)
    return _unguarded_connect_ex(sock, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]


# The fake Instance Metadata Service ----------------------------------------------------

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"

# The values of the library's fake instance, with the example events it can carry.
EXAMPLE_TREE: Any = ec2_metadata.FakeMetadataService.default_tree(with_events=True)
PRIMARY_MAC: str = EXAMPLE_TREE["meta-data"]["mac"]
SECONDARY_MAC: str = sorted(set(EXAMPLE_TREE["meta-data"]["network"]["interfaces"]["macs"]))[1]
ROLE_NAME: str = next(iter(EXAMPLE_TREE["meta-data"]["iam"]["security-credentials"]))
SSH_KEY: str = EXAMPLE_TREE["meta-data"]["public-keys"]["0"]["openssh-key"]
USER_DATA: bytes = EXAMPLE_TREE["user-data"]
IDENTITY_DOCUMENT = json.loads(EXAMPLE_TREE["dynamic"]["instance-identity"]["document"])
IAM_INFO = json.loads(EXAMPLE_TREE["meta-data"]["iam"]["info"])
PROFILE_ARN: str = IAM_INFO["InstanceProfileArn"]
CREDENTIALS = json.loads(EXAMPLE_TREE["meta-data"]["iam"]["security-credentials"][ROLE_NAME])
SPOT_ACTION = json.loads(EXAMPLE_TREE["meta-data"]["spot"]["instance-action"])
(SCHEDULED_EVENT,) = json.loads(EXAMPLE_TREE["meta-data"]["events"]["maintenance"]["scheduled"])
PKCS7: str = EXAMPLE_TREE["dynamic"]["instance-identity"]["pkcs7"]
RSA2048: str = EXAMPLE_TREE["dynamic"]["instance-identity"]["rsa2048"]
SIGNATURE: str = EXAMPLE_TREE["dynamic"]["instance-identity"]["signature"]

Tree = Dict[str, Union["Tree", str, bytes]]  # typing.Dict: dict[...] needs Python 3.9

# A directory of the tree whose listing is not the plain one (``public-keys/``).
Directory = ec2_metadata._FakeDirectory

if TYPE_CHECKING:
    from ec2_metadata import _FakeHandler
else:
    _FakeHandler = ec2_metadata._fake_server_classes()[0]


def instance_tree(*, mock_quirks: bool = False) -> Tree:
    """The library's fake instance with its example events, in the form the fake serves.

    The secondary interface has ``network-card-index`` instead of ``network-card``, as
    amazon-ec2-metadata-mock serves it.  With ``mock_quirks``, answers look like that
    mock's throughout: tab-indented JSON, ``network-card-index`` on every interface,
    ``security-credentials`` listed both as a value and a directory, a ``public-keys/``
    listing of ``0/`` with no key name, and a ``NotBeforeDeadline`` on the event.
    """
    tree: Any = ec2_metadata.FakeMetadataService.default_tree(with_events=True)
    metadata = tree["meta-data"]
    for mac, interface in metadata["network"]["interfaces"]["macs"].items():
        if mock_quirks or mac == SECONDARY_MAC:
            interface["network-card-index"] = interface.pop("network-card")
    if not mock_quirks:
        return cast(Tree, tree)
    event = dict(SCHEDULED_EVENT, NotBeforeDeadline="6 Dec 2026 09:00:00 GMT")
    metadata["events"]["maintenance"]["scheduled"] = json.dumps([event])
    documents = [
        (metadata["iam"], "info"),
        (metadata["iam"]["security-credentials"], ROLE_NAME),
        (metadata["events"]["maintenance"], "scheduled"),
        (metadata["events"]["recommendations"], "rebalance"),
        (metadata["spot"], "instance-action"),
        (tree["dynamic"]["instance-identity"], "document"),
    ]
    for directory, name in documents:
        directory[name] = json.dumps(json.loads(directory[name]), indent="\t")
    metadata["iam"] = Directory(
        metadata["iam"], "info\nsecurity-credentials\nsecurity-credentials/"
    )
    metadata["public-keys"] = dict(metadata["public-keys"])
    return cast(Tree, tree)


def ipv6_only_tree() -> Tree:
    """An instance in an IPv6-only subnet: AWS documents that ``local-ipv4`` and an
    interface's ``local-ipv4s`` answer 404 there.  It has no IPv4 address at all, public or
    private, and its host names are resource names."""
    tree = instance_tree()
    meta = cast(Tree, tree["meta-data"])
    resource_name = "i-0123456789abcdef0.eu-west-1.compute.internal"
    for name in ("local-ipv4", "public-ipv4", "public-hostname"):
        del meta[name]
    meta["hostname"] = meta["local-hostname"] = resource_name
    macs = cast(Tree, cast(Tree, cast(Tree, meta["network"])["interfaces"])["macs"])
    for interface in macs.values():
        assert isinstance(interface, dict)
        for name in ("local-ipv4s", "public-ipv4s", "ipv4-associations", "public-hostname"):
            interface.pop(name, None)
        for name in ("ipv4-prefix", "subnet-ipv4-cidr-block"):
            interface.pop(name, None)
        interface["local-hostname"] = resource_name
    return tree


if TYPE_CHECKING:
    from typing import Protocol  # Python 3.8 and later

    class Clock(Protocol):
        """What times the tokens of a RecordingIMDS: the time module or a FakeClock."""

        def monotonic(self) -> float: ...

else:
    Clock = object


class Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]


class Reply(NamedTuple):
    """A scripted answer the fake gives instead of the normal one."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Fault = Union[Reply, Callable[[http.server.BaseHTTPRequestHandler], None]]


class FakeIMDS(ec2_metadata.FakeMetadataService):
    """The library's fake IMDS (`ec2_metadata.FakeMetadataService`), plus what tests need.

    It serves ``tree`` (by default `instance_tree`, with the example events), records every
    request in ``requests``, holds each answer back by ``latency`` seconds, lets tests
    script faults per path (`inject`) and put any subtree anywhere (`put`), and times its
    tokens with ``clock``.  The IMDSv2 rules are the library's.
    """

    tree: Tree

    def __init__(
        self,
        tree: Tree | None = None,
        *,
        mock_quirks: bool = False,
        clock: Clock = time,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.tree = instance_tree(mock_quirks=mock_quirks) if tree is None else tree
        self.clock = clock  # what times the tokens: the time module, or a FakeClock
        self.requests: list[Request] = []
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.latency = 0.0

    def __enter__(self) -> FakeIMDS:
        super().__enter__()
        return self

    def client(self, **options: Any) -> EC2Metadata:
        return EC2Metadata(endpoint=self.url, **options)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for request in self.requests
                if method in (None, request.method) and path in (None, request.path)
            )

    def inject(self, method: str, path: str, *faults: Fault) -> None:
        """Answer the next requests for ``path`` (as sent, e.g. ``/latest/meta-data/mac``)
        with ``faults``, one each, before normal service resumes."""
        self.faults.setdefault((method, path), []).extend(faults)

    def put(self, path: str, value: str | bytes | Tree) -> None:
        """Serve ``value`` at ``path`` as it is: a dict is a directory (`set` makes it JSON)."""
        *parents, name = path.split("/")
        node: Any = self.tree
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value

    def answer(self, handler: _FakeHandler, method: str) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self.lock:
            self.requests.append(Request(method, handler.path, headers))
            queued = self.faults.get((method, handler.path))
            fault = queued.pop(0) if queued else None
        if self.latency:
            time.sleep(self.latency)
        if isinstance(fault, Reply):
            handler.reply(fault.status, fault.body, fault.headers)
        elif fault is not None:
            fault(handler)
        else:
            super().answer(handler, method)


def drop_connection(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Close the connection without answering."""
    handler.close_connection = True


def answer_until_close(body: bytes) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    """An answer with no Content-Length, ended by closing the connection."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True

    return answer


# The fake, for fault injection -------------------------------------------------------

ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
ATTEMPTS_VARIABLE = "AWS_METADATA_SERVICE_NUM_ATTEMPTS"
TIMEOUT_VARIABLE = "AWS_METADATA_SERVICE_TIMEOUT"
TOKEN_PATH = "/latest/api/token"
MAC_PATH = "/latest/meta-data/mac"
INSTANCE_ID = "i-0123456789abcdef0"
AMI_ID = "ami-0a1b2c3d4e5f60718"
LIMIT = 1024 * 1024  # the largest answer the client accepts


class Seen(NamedTuple):
    """What a RecordingIMDS notes about one request."""

    method: str
    path: str
    port: int  # the client's port, one per TCP connection
    token: str
    interleaved: bool  # the client sent more on this connection before it was answered
    stale_token: bool  # a GET whose token had expired by the fake's clock


def pending(sock: socket.socket) -> bool:
    """True when the peer has sent bytes that nobody has read yet (False at end of stream)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:  # pragma: no cover - a client that reset the connection
        return False


class _ProbingHandler(_FakeHandler):
    # Unbuffered, so that a request sent early stays in the socket, where `pending` sees it.
    rbufsize = 0


class RecordingIMDS(FakeIMDS):
    """A FakeIMDS that also notes, in ``seen``, each request's client port, whether a second
    request came on its connection before it was answered, and whether its token had expired
    by ``clock``, which also times the tokens it issues.  ``delay`` holds back every answer,
    so that a client interleaving requests on one connection gets caught."""

    def __init__(self, tree: Tree | None = None, **options: Any) -> None:
        super().__init__(tree, **options)
        self.server.RequestHandlerClass = _ProbingHandler
        self.delay = 0.0
        self.seen: list[Seen] = []

    def answer(self, handler: _FakeHandler, method: str) -> None:
        if self.delay:
            time.sleep(self.delay)
        token = handler.headers.get(TOKEN_HEADER, "")
        with self.lock:
            expiry = self.tokens.get(token)
        stale = method == "GET" and expiry is not None and self.clock.monotonic() >= expiry
        port = int(handler.client_address[1])
        seen = Seen(method, handler.path, port, token, pending(handler.connection), stale)
        with self.lock:
            self.seen.append(seen)
        super().answer(handler, method)


class SilentService:
    """A loopback endpoint that accepts TCP connections, counts them, and never answers."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.02)
        self.accepted: list[socket.socket] = []
        self.changed = threading.Condition()
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> SilentService:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.running = False
        self.thread.join()
        self.listener.close()
        for sock in self.accepted:
            sock.close()

    def connections(self, at_least: int) -> int:
        """How many connections were accepted, once there are ``at_least`` (or after 2 s)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.accepted) >= at_least, timeout=2)
            return len(self.accepted)

    def _accept(self) -> None:
        while self.running:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            with self.changed:
                self.accepted.append(sock)
                self.changed.notify_all()


def never_answer(handler: http.server.BaseHTTPRequestHandler) -> None:
    """Hold the request unanswered until the client hangs up (5 s at most)."""
    handler.connection.settimeout(5)
    with contextlib.suppress(OSError):
        handler.rfile.read(1)  # b"" once the client closes
    handler.close_connection = True


def raw_answer(data: bytes) -> Fault:
    """Write ``data`` to the socket as the whole answer, then close the connection."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(OSError):
            handler.wfile.write(data)
        handler.close_connection = True

    return answer


def close_after_answer(body: bytes) -> Fault:
    """Answer as if keeping the connection open, then close it at once (an idle timeout)."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        assert isinstance(handler, _FakeHandler)
        handler.reply(200, body)
        handler.connection.shutdown(socket.SHUT_RDWR)
        handler.close_connection = True

    return answer


def endless(head: bytes, unit: bytes, limit: float = 1.5) -> Fault:
    """Write ``head``, then ``unit`` over and over until the client hangs up or ``limit``
    seconds have passed (so that a client that never stops reading fails, not hangs)."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        handler.connection.settimeout(limit)
        deadline = time.monotonic() + limit
        with contextlib.suppress(OSError):
            handler.wfile.write(head)
            while time.monotonic() < deadline:  # pragma: no branch - ends when the client does
                handler.wfile.write(unit)

    return answer


def cut_answer(body: bytes, cut: int, *, chunked: bool = False) -> Fault:
    """A 200 answer of ``body``, framed by Content-Length or chunked, of which only the
    first ``cut`` bytes are sent before the connection closes."""
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n\r\n"
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        framing = b"Content-Length: %d\r\n\r\n" % len(body)
    return raw_answer((b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + framing + body)[:cut])


class Mutation(NamedTuple):
    """What ChaosIMDS sends instead of an answer."""

    kind: str
    data: bytes  # what goes on the wire instead of the fake's answer
    close: bool  # then close the connection
    stall: bool  # then wait for the client to hang up


REDIRECT_STATUSES = (301, 302, 303, 307, 308)
ERROR_STATUSES = (101, 204, 304, *REDIRECT_STATUSES, 400, 401, 403, 404, 405, 408, 418, 429)
ERROR_STATUSES += (*range(500, 505), 599)


MUTATIONS = {  # each kind of hostile answer, with its weight
    "same": 8,
    "chunked": 3,
    "until close": 2,
    "connection close": 2,
    "HTTP/1.0": 1,
    "100 continue first": 1,
    "junk headers": 2,
    "bogus length": 2,
    "too long a length": 2,
    "cut": 4,
    "error status": 5,
    "junk": 2,
    "drop": 2,
    "stall": 1,
}


def mutate(rng: random.Random, answer: bytes) -> Mutation:
    """A hostile version of one of the fake's answers, chosen by ``rng``.

    A 200 answer is only ever changed into one with the same value, differently framed, or
    into one that a client can tell is broken: cut short in its framing, with another
    status, junk, or nothing.  (Cut short in a body without a length would be undetectable.)
    """
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    headers = [line for line in header_lines if not line.lower().startswith(b"content-length")]
    length = b"Content-Length: %d" % len(body)

    def join(status: bytes, lines: list[bytes], payload: bytes) -> bytes:
        return b"\r\n".join([status, *lines]) + b"\r\n\r\n" + payload

    def chunked() -> bytes:
        pieces, rest = [], body
        while rest:
            size = rng.randint(1, len(rest))
            extension = b";x=1" if rng.random() < 0.2 else b""
            pieces.append(b"%x%s\r\n%s\r\n" % (size, extension, rest[:size]))
            rest = rest[size:]
        trailer = b"X-Trailer: 1\r\n" if rng.random() < 0.3 else b""
        return b"".join(pieces) + b"0\r\n" + trailer + b"\r\n"

    def junk_header() -> bytes:
        name = "".join(rng.choice("abcdefXYZ-") for _ in range(rng.randint(1, 12)))
        value = bytes(rng.choice(b"az09!#$%&'*+.^_`|~:;\xe9\xff") for _ in range(20))
        return b"X-" + name.encode() + b": " + value.lstrip(b":;")

    kind = rng.choices(list(MUTATIONS), weights=list(MUTATIONS.values()))[0]
    if kind == "same":
        return Mutation(kind, answer, False, False)
    if kind == "chunked":
        framed = join(status_line, [*headers, b"Transfer-Encoding: chunked"], chunked())
        return Mutation(kind, framed, False, False)
    if kind == "until close":
        return Mutation(kind, join(status_line, headers, body), True, False)
    if kind == "connection close":
        closing = [*headers, length, b"Connection: close"]
        return Mutation(kind, join(status_line, closing, body), True, False)
    if kind == "HTTP/1.0":
        status_10 = status_line.replace(b"HTTP/1.1", b"HTTP/1.0")
        return Mutation(kind, join(status_10, [*headers, length], body), True, False)
    if kind == "100 continue first":
        return Mutation(kind, b"HTTP/1.1 100 Continue\r\n\r\n" + answer, False, False)
    if kind == "junk headers":
        extra = [junk_header() for _ in range(rng.randint(1, 30))]
        return Mutation(kind, join(status_line, [*extra, *headers, length], body), False, False)
    if kind == "bogus length":
        # Not a number: the answer runs to the end of the connection.
        bogus = rng.choice([b"abc", b"-1", b"", b"%d, %d" % (len(body), len(body))])
        bogus_length = [*headers, b"Content-Length: " + bogus]
        return Mutation(kind, join(status_line, bogus_length, body), True, False)
    if kind == "too long a length":
        longer = b"Content-Length: %d" % (len(body) + rng.randint(1, 5000))
        return Mutation(kind, join(status_line, [*headers, longer], body), True, False)
    if kind == "cut":
        framed = (
            join(status_line, [*headers, b"Transfer-Encoding: chunked"], chunked())
            if rng.random() < 0.3
            else answer
        )
        return Mutation(kind, framed[: rng.randrange(len(framed))], True, False)
    if kind == "error status":
        status = rng.choice(ERROR_STATUSES)
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        extra = rng.choice(
            [
                [b"Content-Length: %d" % len(payload)],
                [b"Content-Length: %d" % (len(payload) + 9)],
                [b"Content-Length: 99999999999"],
                [b"Content-Length: nope"],
                [b"Transfer-Encoding: chunked"],  # but not chunked: a broken answer
                [b"Connection: close", b"Location: http://127.0.0.1:9/latest/meta-data/mac"],
            ]
        )
        status_error = b"HTTP/1.1 %d Whatever" % status
        return Mutation(kind, join(status_error, [*headers, *extra], payload), True, False)
    if kind == "junk":
        data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
        return Mutation(kind, data, True, False)
    if kind == "drop":
        return Mutation(kind, b"", True, False)
    return Mutation(kind, answer[: rng.randrange(len(answer))], True, True)


class ChaosIMDS(FakeIMDS):
    """A FakeIMDS that, for a share ``rate`` of the requests, replaces its answer with a
    hostile one made by `mutate` with a ``random.Random(seed)``; ``log`` notes each choice."""

    def __init__(self, seed: int, rate: float, **options: Any) -> None:
        super().__init__(**options)
        self.rng = random.Random(seed)
        self.rate = rate
        self.log: list[str] = []

    def answer(self, handler: _FakeHandler, method: str) -> None:
        with self.lock:
            hostile = self.rng.random() < self.rate
        if not hostile:
            super().answer(handler, method)
            return
        wire = handler.wfile
        captured = io.BytesIO()
        handler.wfile = captured
        try:
            super().answer(handler, method)
        finally:
            handler.wfile = wire
        with self.lock:
            mutation = mutate(self.rng, captured.getvalue())
            self.log.append(f"{method} {handler.path}: {mutation.kind}")
        handler.close_connection = mutation.close
        with contextlib.suppress(OSError):
            wire.write(mutation.data)
            if mutation.stall:
                never_answer(handler)


Fake = TypeVar("Fake", bound=FakeIMDS)


def started(test: LoopbackTestCase, imds: Fake) -> Fake:
    """``imds`` serving until the end of ``test`` (LoopbackTestCase.serve for subclasses)."""
    imds.__enter__()
    test.addCleanup(imds.__exit__, None, None, None)
    return imds


def leaves(tree: Tree, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    """Every (path, answer body) of the values in ``tree``."""
    for name, node in tree.items():
        if isinstance(node, dict):
            yield from leaves(node, f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", node if isinstance(node, bytes) else node.encode()


# Helpers -------------------------------------------------------------------------------

SETTING_VARIABLES = (
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_METADATA_SERVICE_TIMEOUT",
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS",
    "AWS_PROFILE",
)
# Tests never read the AWS config file of whoever runs them: this path does not exist.
NO_CONFIG_FILE = os.path.join(
    tempfile.gettempdir(), f"ec2-metadata-tests-{os.getpid()}-none", "config"
)

ATTRIBUTES = {
    "account_id": "123456789012",
    "ami_id": "ami-0a1b2c3d4e5f60718",
    "ami_launch_index": 0,
    "ami_manifest_path": "(unknown)",
    "autoscaling_target_lifecycle_state": "InService",
    "availability_zone": "eu-west-1b",
    "availability_zone_id": "euw1-az3",
    "block_device_mapping": {"ami": "/dev/xvda", "ebs1": "sdb", "root": "/dev/xvda"},
    "domain": "amazonaws.com",
    "hostname": "ip-172-31-16-25.eu-west-1.compute.internal",
    "iam_info": IAM_INFO,
    "iam_security_credentials": CREDENTIALS,
    "instance_action": "none",
    "instance_id": "i-0123456789abcdef0",
    "instance_identity_document": IDENTITY_DOCUMENT,
    "instance_identity_pkcs7": PKCS7,
    "instance_identity_rsa2048": RSA2048,
    "instance_identity_signature": SIGNATURE,
    "instance_life_cycle": "spot",
    "instance_profile_arn": PROFILE_ARN,
    "instance_profile_id": "AIPAZ4EXAMPLEPROFILE1",
    "instance_profile_name": "web-stack-WebProfile-O8XJ5GQZ2K1A",
    "instance_type": "t3.micro",
    "ipv6": "2a05:d018:1234:5600::10",
    "kernel_id": "aki-dc9ed9af",
    "mac": PRIMARY_MAC,
    "partition": "aws",
    "placement_group": "web-spread",
    "placement_host_id": "h-0a1b2c3d4e5f60718",
    "placement_partition_number": 3,
    "private_hostname": "ip-172-31-16-25.eu-west-1.compute.internal",
    "private_ipv4": "172.31.16.25",
    "public_hostname": "ec2-54-78-12-34.eu-west-1.compute.amazonaws.com",
    "product_codes": ["6njl1pau431dv1qxipg63mvah"],
    "public_ipv4": "54.78.12.34",
    "ramdisk_id": "ari-f4b3a3f1",
    "rebalance_recommendation": RebalanceRecommendation(
        datetime(2026, 11, 27, 3, 50, tzinfo=timezone.utc)
    ),
    "region": "eu-west-1",
    "reservation_id": "r-0123456789abcdef0",
    "scheduled_events": [
        {
            "NotBefore": datetime(2026, 12, 4, 9, tzinfo=timezone.utc),
            "Code": "system-reboot",
            "Description": "scheduled reboot",
            "EventId": "instance-event-0d59937288b749b32",
            "NotAfter": datetime(2026, 12, 4, 11, tzinfo=timezone.utc),
            "State": "active",
        }
    ],
    "security_groups": ["web", "ssh-access"],
    "spot_instance_action": SpotInstanceAction(
        "terminate", datetime(2026, 11, 27, 4, 2, tzinfo=timezone.utc)
    ),
    "user_data": USER_DATA,
}

PRIMARY_INTERFACE = {
    "device_number": 0,
    "interface_id": "eni-001234567890abcde",
    "ipv4_prefix": ["172.31.16.48/28"],
    "ipv4_associations": {"54.78.12.34": ["172.31.16.25"]},
    "ipv6s": ["2a05:d018:1234:5600::10", "2a05:d018:1234:5600::11"],
    "ipv6_prefix": ["2a05:d018:1234:5600:9c3f::/80"],
    "mac": PRIMARY_MAC,
    "network_card_index": 0,
    "owner_id": "123456789012",
    "private_hostname": "ip-172-31-16-25.eu-west-1.compute.internal",
    "private_ipv4s": ["172.31.16.25", "172.31.16.99"],
    "public_hostname": "ec2-54-78-12-34.eu-west-1.compute.amazonaws.com",
    "public_ipv4s": ["54.78.12.34"],
    "security_groups": ["web", "ssh-access"],
    "security_group_ids": ["sg-0aa11bb22cc33dd44", "sg-0ee55ff66aa77bb88"],
    "subnet_id": "subnet-00a1b2c3d4e5f6789",
    "subnet_ipv4_cidr_block": "172.31.16.0/20",
    "subnet_ipv6_cidr_blocks": ["2a05:d018:1234:5600::/64"],
    "vpc_id": "vpc-0f1e2d3c4b5a69788",
    "vpc_ipv4_cidr_block": "172.31.0.0/16",
    "vpc_ipv4_cidr_blocks": ["172.31.0.0/16", "100.64.0.0/16"],
    "vpc_ipv6_cidr_blocks": ["2a05:d018:1234:5600::/56"],
}

# What a private interface without IPv6 gives where the service answers 404.
SECONDARY_ABSENT: dict[str, object] = {
    "ipv4_associations": {},
    "ipv4_prefix": [],
    "ipv6s": [],
    "ipv6_prefix": [],
    "public_hostname": None,
    "public_ipv4s": [],
    "subnet_ipv6_cidr_blocks": [],
    "vpc_ipv6_cidr_blocks": [],
}


def read_everything(client: EC2Metadata) -> dict[str, object]:
    """Every attribute of the client, of each interface, tag and public key."""
    values: dict[str, object] = {name: getattr(client, name) for name in ATTRIBUTES}
    for mac, interface in client.network_interfaces.items():
        for name in PRIMARY_INTERFACE:
            values[f"{mac}.{name}"] = getattr(interface, name)
    values["tags"] = dict(client.tags)
    values["public_keys"] = {name: key.openssh_key for name, key in client.public_keys.items()}
    return values


class LoopbackTestCase(unittest.TestCase):
    """Runs each test with none of the AWS settings in the environment, and fails it if
    it tried to connect anywhere but loopback (even if the client swallowed the error)."""

    def setUp(self) -> None:
        del GUARD_VIOLATIONS[:]
        environment = mock.patch.dict(os.environ)
        environment.start()
        self.addCleanup(environment.stop)
        for name in SETTING_VARIABLES:
            os.environ.pop(name, None)
        os.environ["AWS_CONFIG_FILE"] = NO_CONFIG_FILE
        ec2_metadata.ec2_metadata.clear_all()
        self.addCleanup(ec2_metadata.ec2_metadata.clear_all)
        self.addCleanup(self.assert_only_loopback)

    def assert_only_loopback(self) -> None:
        self.assertEqual(GUARD_VIOLATIONS, [], "a test connected to a non-loopback address")

    def serve(self, tree: Tree | None = None, **options: Any) -> FakeIMDS:
        return started(self, FakeIMDS(tree, **options))


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Tests ---------------------------------------------------------------------------------


class GuardTests(unittest.TestCase):
    def test_the_guard_is_installed_on_every_socket(self) -> None:
        self.assertIs(socket.socket.connect, _guarded_connect)
        self.assertIs(socket.socket.connect_ex, _guarded_connect_ex)

    def test_the_guard_refuses_everything_but_loopback(self) -> None:
        self.assertTrue(is_loopback(("127.0.0.1", 80)))
        self.assertTrue(is_loopback(("::1", 80, 0, 0)))
        self.assertFalse(is_loopback(("169.254.169.254", 80)))  # the real service
        self.assertFalse(is_loopback(("fd00:ec2::254", 80, 0, 0)))  # the real service
        self.assertFalse(is_loopback(("localhost", 80)))  # a name: connect gets addresses
        self.assertFalse(is_loopback("/run/some.sock"))

    def test_a_refused_address_raises_before_any_packet(self) -> None:
        sock = socket.socket()
        self.addCleanup(sock.close)
        patch_connect = mock.patch.object(sys.modules[__name__], "_unguarded_connect")
        with patch_connect as real, mock.patch(f"{__name__}._unguarded_connect_ex") as real_ex:
            with self.assertRaises(NonLoopbackConnection):
                sock.connect(("169.254.169.254", 80))  # expected: refused by the guard
            with self.assertRaises(NonLoopbackConnection):
                sock.connect_ex(("169.254.169.254", 80))  # expected: refused by the guard
        real.assert_not_called()
        real_ex.assert_not_called()
        self.assertEqual(len(GUARD_VIOLATIONS), 2)
        del GUARD_VIOLATIONS[:]

    def test_loopback_connections_go_through(self) -> None:
        with socket.socket() as listener, socket.socket() as client:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.assertEqual(client.connect_ex(listener.getsockname()), 0)


class FakeIMDSTests(LoopbackTestCase):
    """The fake enforces IMDSv2 the way the real service does."""

    def exchange(
        self, imds: FakeIMDS, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", imds.server.server_address[1])
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def test_token_requests(self) -> None:
        imds = self.serve()
        ttl = {TTL_HEADER: "21600"}
        self.assertEqual(self.exchange(imds, "PUT", "/latest/api/token", {})[0], 400)
        for bad in ("0", "21601", "-5", "soon"):
            self.assertEqual(
                self.exchange(imds, "PUT", "/latest/api/token", {TTL_HEADER: bad})[0], 400
            )
        forwarded = {**ttl, "X-Forwarded-For": "203.0.113.9"}
        self.assertEqual(self.exchange(imds, "PUT", "/latest/api/token", forwarded)[0], 403)
        self.assertEqual(self.exchange(imds, "PUT", "/latest/meta-data/", ttl)[0], 405)
        self.assertEqual(self.exchange(imds, "PUT", "/other", ttl)[0], 404)
        status, token = self.exchange(imds, "PUT", "/latest/api/token", ttl)
        self.assertEqual((status, list(imds.tokens)), (200, [token.decode()]))

    def test_reads_need_a_valid_token(self) -> None:
        imds = self.serve()
        _, token = self.exchange(imds, "PUT", "/latest/api/token", {TTL_HEADER: "60"})
        good = {TOKEN_HEADER: token.decode()}
        self.assertEqual(self.exchange(imds, "GET", "/latest/meta-data/mac", {})[0], 401)
        self.assertEqual(
            self.exchange(imds, "GET", "/latest/meta-data/mac", {TOKEN_HEADER: "forged"})[0], 401
        )
        self.assertEqual(
            self.exchange(imds, "GET", "/latest/meta-data/mac", good), (200, PRIMARY_MAC.encode())
        )
        imds.revoke_tokens()
        self.assertEqual(self.exchange(imds, "GET", "/latest/meta-data/mac", good)[0], 401)

    def test_paths_and_listings(self) -> None:
        imds = self.serve()
        _, token = self.exchange(imds, "PUT", "/latest/api/token", {TTL_HEADER: "60"})
        good = {TOKEN_HEADER: token.decode()}
        self.assertEqual(self.exchange(imds, "GET", "/meta-data/mac", good)[0], 404)
        self.assertEqual(self.exchange(imds, "GET", "/latest/meta-data/nothing", good)[0], 404)
        self.assertEqual(
            self.exchange(imds, "GET", "/latest/meta-data/mac/", good), (200, PRIMARY_MAC.encode())
        )
        self.assertEqual(self.exchange(imds, "GET", "/latest/meta-data/mac/x", good)[0], 404)
        _, listing = self.exchange(imds, "GET", "/latest/meta-data/services/", good)
        self.assertEqual(listing.decode().splitlines(), ["domain", "partition"])
        _, listing = self.exchange(imds, "GET", "/latest/meta-data/iam", good)
        self.assertEqual(listing.decode().splitlines(), ["info", "security-credentials/"])
        _, listing = self.exchange(imds, "GET", "/latest/meta-data/public-keys/", good)
        self.assertEqual(listing, b"0=web-key")


def raw_request(
    url: str, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request over plain http.client, as curl would send it."""
    import http.client
    from urllib.parse import urlsplit

    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw_token(url: str, ttl: str = "60") -> dict[str, str]:
    status, token = raw_request(url, "PUT", TOKEN_PATH, {TTL_HEADER: ttl})
    assert status == 200, status
    return {TOKEN_HEADER: token.decode()}


class FakeMetadataServiceTests(LoopbackTestCase):
    """The public fake: IMDSv2 as AWS documents it, and a realistic instance."""

    def service(self, *args: Any, **options: Any) -> ec2_metadata.FakeMetadataService:
        service = ec2_metadata.FakeMetadataService(*args, **options)
        self.addCleanup(service.stop)
        service.start()
        return service

    def test_the_credentials_are_current_and_expire_in_six_hours(self) -> None:
        credentials = self.service().tree["meta-data"]["iam"]["security-credentials"]
        document = json.loads(credentials[ROLE_NAME])
        updated = datetime.strptime(document["LastUpdated"], "%Y-%m-%dT%H:%M:%SZ")
        expiration = datetime.strptime(document["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        self.assertLess(updated, now)
        self.assertEqual(expiration - updated, timedelta(hours=6))
        self.assertGreater(expiration - now, timedelta(hours=5))
        self.assertEqual(document, CREDENTIALS)  # every fake of a process agrees

    def test_the_token_ttl_must_be_from_1_to_21600_seconds(self) -> None:
        url = self.service().url
        for ttl in ("0", "21601", "-1", "1.5", "soon", ""):
            with self.subTest(ttl=ttl):
                answer = raw_request(url, "PUT", TOKEN_PATH, {TTL_HEADER: ttl})
                self.assertEqual(answer, (400, b"Bad Request"))
        self.assertEqual(raw_request(url, "PUT", TOKEN_PATH)[0], 400)
        for ttl in ("1", "21600"):
            self.assertEqual(raw_request(url, "PUT", TOKEN_PATH, {TTL_HEADER: ttl})[0], 200)

    def test_a_token_request_with_x_forwarded_for_is_refused(self) -> None:
        url = self.service().url
        headers = {TTL_HEADER: "60", "X-Forwarded-For": "203.0.113.9"}
        self.assertEqual(raw_request(url, "PUT", TOKEN_PATH, headers), (403, b"Forbidden"))

    def test_a_read_needs_a_valid_unexpired_token(self) -> None:
        service = self.service()
        clock = FakeClock()
        service.clock = clock
        token = raw_token(service.url, ttl="60")
        self.assertEqual(raw_request(service.url, "GET", MAC_PATH)[0], 401)
        self.assertEqual(
            raw_request(service.url, "GET", MAC_PATH, {TOKEN_HEADER: "forged"})[0], 401
        )
        self.assertEqual(
            raw_request(service.url, "GET", MAC_PATH, token), (200, PRIMARY_MAC.encode())
        )
        clock.now += 60  # expired
        self.assertEqual(raw_request(service.url, "GET", MAC_PATH, token)[0], 401)
        token = raw_token(service.url)
        service.revoke_tokens()
        self.assertEqual(raw_request(service.url, "GET", MAC_PATH, token)[0], 401)

    def test_imdsv1_when_allowed_but_a_bad_token_still_fails(self) -> None:
        service = self.service(allow_imdsv1=True)
        self.assertEqual(raw_request(service.url, "GET", MAC_PATH), (200, PRIMARY_MAC.encode()))
        self.assertEqual(
            raw_request(service.url, "GET", MAC_PATH, {TOKEN_HEADER: "forged"})[0], 401
        )
        self.assertEqual(service.allow_imdsv1, True)

    def test_missing_paths_listings_and_public_keys(self) -> None:
        service = self.service()
        token = raw_token(service.url)
        for path in ("/latest/meta-data/nothing", "/meta-data/mac", "/latest/meta-data/mac/x"):
            self.assertEqual(raw_request(service.url, "GET", path, token), (404, b"Not Found"))
        _, listing = raw_request(service.url, "GET", "/latest/meta-data/", token)
        names = listing.decode().splitlines()
        self.assertIn("placement/", names)
        self.assertIn("instance-id", names)
        self.assertNotIn("spot/", names)  # no interruption until one is simulated
        _, keys = raw_request(service.url, "GET", "/latest/meta-data/public-keys/", token)
        self.assertEqual(keys, b"0=web-key")
        self.assertEqual(raw_request(service.url, "PUT", "/latest/meta-data/", token)[0], 405)

    def test_the_default_instance_has_every_category_with_fake_credentials(self) -> None:
        client = EC2Metadata(endpoint=self.service().url)
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        self.assertEqual(client.region, "eu-west-1")
        self.assertEqual(
            client.network_interfaces[client.mac].subnet_id, "subnet-00a1b2c3d4e5f6789"
        )
        self.assertEqual(len(client.network_interfaces), 2)
        self.assertEqual(dict(client.tags), {"Name": "web-1", "Environment": "production"})
        self.assertEqual(client.public_keys["web-key"].openssh_key, SSH_KEY)
        self.assertEqual(client.iam_info, IAM_INFO)
        credentials = client.iam_security_credentials
        assert credentials is not None
        self.assertTrue(credentials["AccessKeyId"].startswith("ASIAFAKE"))
        self.assertEqual(client.instance_identity_document, IDENTITY_DOCUMENT)
        self.assertEqual(client.user_data, USER_DATA)
        self.assertEqual(client.autoscaling_target_lifecycle_state, "InService")
        self.assertIsNone(client.spot_instance_action)
        self.assertIsNone(client.rebalance_recommendation)
        self.assertEqual(client.scheduled_events, [])

    def test_set_and_remove_paths(self) -> None:
        service = self.service({"meta-data/tags/instance/Owner": "qa"})
        client = EC2Metadata(endpoint=service.url)
        service.set("/latest/meta-data/security-groups", ["a", "b"])
        service.set("meta-data/iam/info", {**IAM_INFO, "InstanceProfileId": "AIPAOTHER"})
        service.set("user-data", b"\x00\xff")
        service.set("meta-data/ami-launch-index", 3)
        service.set("meta-data/tags/instance/Name", None)
        service.remove("meta-data/kernel-id")
        self.assertEqual(dict(client.tags), {"Environment": "production", "Owner": "qa"})
        self.assertEqual(client.security_groups, ["a", "b"])
        self.assertEqual(client.instance_profile_id, "AIPAOTHER")
        self.assertEqual((client.user_data, client.ami_launch_index), (b"\x00\xff", 3))
        self.assertIsNone(client.kernel_id)
        service.remove("meta-data/iam")
        self.assertIsNone(EC2Metadata(endpoint=service.url).iam_info)
        for missing in ("meta-data/kernel-id", "meta-data/mac/x", "nothing/here"):
            with self.subTest(missing), self.assertRaises(KeyError):
                service.remove(missing)
        with self.assertRaisesRegex(EC2MetadataConfigError, "'mac' is a value"):
            service.set("meta-data/mac/x", "y")
        for bad in ("", "meta-data//mac"):
            with self.subTest(bad), self.assertRaisesRegex(
                EC2MetadataConfigError, "not a metadata"
            ):
                service.set(bad, "x")

    def test_it_binds_to_loopback_only_unless_told(self) -> None:
        with self.assertRaisesRegex(EC2MetadataConfigError, "allow_non_loopback=True"):
            ec2_metadata.FakeMetadataService(host="192.0.2.10")
        for host, loopback in (
            ("localhost", True),
            ("127.0.0.2", True),
            ("[::1]", True),
            ("0.0.0.0", False),
            ("example.com", False),
            ("169.254.169.254", False),  # expected text, never connected to
        ):
            self.assertIs(ec2_metadata._is_loopback(host), loopback, host)

    def test_ipv6_loopback(self) -> None:
        try:
            service = self.service(host="::1")
        except OSError:  # pragma: no cover - a machine without IPv6
            self.skipTest("no IPv6 loopback here")
        self.assertTrue(service.url.startswith("http://[::1]:"))
        self.assertEqual(EC2Metadata(endpoint=service.url).region, "eu-west-1")

    def test_stop_before_start_closes_the_socket(self) -> None:
        service = ec2_metadata.FakeMetadataService()
        service.stop()
        self.assertEqual(service.server.socket.fileno(), -1)

    def test_the_client_and_raw_http_agree_on_every_value(self) -> None:
        service = self.service()
        client = EC2Metadata(endpoint=service.url)
        token = raw_token(service.url)
        for path, body in leaves(service.tree):
            with self.subTest(path):
                raw = raw_request(service.url, "GET", "/latest/" + quote(path), token)
                self.assertEqual(raw, (200, body))
                self.assertEqual(client.fetch_bytes(path), body)
        raw_document = raw_request(
            service.url, "GET", "/latest/dynamic/instance-identity/document", token
        )[1]
        self.assertEqual(client.instance_identity_document, json.loads(raw_document))

    def test_a_client_hanging_up_prints_nothing(self) -> None:
        service = self.service()
        errors = (
            ConnectionResetError(104, "reset"),
            BrokenPipeError(32, "pipe"),
            ValueError("bug"),
        )
        printed = []
        with socket.socket() as request:
            for error in errors:
                output = io.StringIO()
                with contextlib.redirect_stderr(output):
                    try:
                        raise error
                    except Exception:
                        service.server.handle_error(request, ("127.0.0.1", 9))
                printed.append(output.getvalue())
        self.assertEqual(printed[:2], ["", ""])
        self.assertIn("ValueError: bug", printed[2])  # a fault of the fake's own still shows


class FakeEventTests(LoopbackTestCase):
    """The simulated events, as the client's uncached attributes see them."""

    def setUp(self) -> None:
        super().setUp()
        self.fake = ec2_metadata.FakeMetadataService()
        self.clock = FakeClock()
        self.fake.clock = self.clock
        self.fake.start()
        self.addCleanup(self.fake.stop)
        self.client = EC2Metadata(endpoint=self.fake.url)

    def assert_soon_after(self, moment: datetime, seconds: float) -> None:
        expected = datetime.now(timezone.utc).timestamp() + seconds
        self.assertLess(abs(moment.timestamp() - expected), 30)

    def test_a_spot_interruption_after_a_delay(self) -> None:
        self.fake.interrupt_spot("hibernate", after=10)
        self.assertIsNone(self.client.spot_instance_action)
        self.clock.now += 10
        action = self.client.spot_instance_action
        assert action is not None
        self.assertEqual(action.action, "hibernate")
        self.assert_soon_after(action.time, 120)
        with self.assertRaises(EC2MetadataNotFoundError):
            self.client.fetch("meta-data/spot/termination-time")

    def test_a_terminate_notice_also_sets_the_termination_time(self) -> None:
        self.fake.interrupt_spot()
        action = self.client.spot_instance_action
        assert action is not None
        self.assertEqual(action.action, "terminate")
        termination = self.client.fetch("meta-data/spot/termination-time")
        self.assertEqual(termination, action.time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        with self.assertRaisesRegex(EC2MetadataConfigError, "hibernate, stop, terminate"):
            self.fake.interrupt_spot("reboot")

    def test_a_rebalance_recommendation(self) -> None:
        self.fake.recommend_rebalance(after=5)
        self.assertIsNone(self.client.rebalance_recommendation)
        self.clock.now += 5
        recommendation = self.client.rebalance_recommendation
        assert recommendation is not None
        self.assert_soon_after(recommendation.notice_time, 0)

    def test_a_scheduled_event_canceled_and_one_completed(self) -> None:
        reboot = self.fake.schedule_event()
        retirement = self.fake.schedule_event("instance-retirement", after=5, starts_in=3600)
        self.assertEqual([event["EventId"] for event in self.client.scheduled_events], [reboot])
        self.clock.now += 5
        events = self.client.scheduled_events
        self.assertEqual([event["EventId"] for event in events], [reboot, retirement])
        self.assertEqual([event["State"] for event in events], ["active", "active"])
        self.assertEqual(events[1]["Code"], "instance-retirement")
        self.assert_soon_after(events[1]["NotBefore"], 3600)
        self.assert_soon_after(events[1]["NotAfter"], 3600 + 7200)
        self.fake.cancel_event(reboot)
        self.fake.complete_event(retirement, after=5)
        events = self.client.scheduled_events
        self.assertEqual([event["State"] for event in events], ["canceled", "active"])
        self.assertTrue(events[0]["Description"].startswith("[Canceled] "))
        self.clock.now += 5
        self.assertEqual(self.client.scheduled_events[1]["State"], "completed")
        with self.assertRaises(KeyError):
            self.fake.cancel_event("instance-event-0000")
        with self.assertRaisesRegex(EC2MetadataConfigError, "system-reboot"):
            self.fake.schedule_event("reboot-now")

    def test_an_event_after_the_events_were_removed(self) -> None:
        self.fake.remove("meta-data/events")
        self.fake.schedule_event("instance-stop")
        self.assertEqual(
            [event["Code"] for event in self.client.scheduled_events], ["instance-stop"]
        )

    def test_an_auto_scaling_lifecycle_change_after_a_delay(self) -> None:
        self.fake.set_target_lifecycle_state("Terminated", after=10)
        self.assertEqual(self.client.autoscaling_target_lifecycle_state, "InService")
        self.clock.now += 10
        self.assertEqual(self.client.autoscaling_target_lifecycle_state, "Terminated")


class ServeCommandTests(LoopbackTestCase):
    """``imds serve``: its flags, its data files, its command mode and how it stops."""

    def arguments(self, *argv: str) -> Any:
        import argparse

        parser = argparse.ArgumentParser()
        ec2_metadata._serve_options(parser)
        return parser.parse_args(["--port", "0", *argv])

    def serve_with(self, *argv: str) -> ec2_metadata.FakeMetadataService:
        service = ec2_metadata._fake_from_arguments(self.arguments(*argv))
        self.addCleanup(service.stop)
        service.start()
        return service

    def data_file(self, document: object) -> str:
        directory = self.temporary_directory()
        path = os.path.join(directory, "data.json")
        with open(path, "w", encoding="utf-8") as file:
            json.dump(document, file)
        return path

    def temporary_directory(self) -> str:
        import tempfile

        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        return directory.name

    def run_main(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = ec2_metadata.main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def test_durations(self) -> None:
        for text, seconds in (("10s", 10), ("500ms", 0.5), ("2m", 120), ("1h", 3600), ("3", 3)):
            self.assertEqual(ec2_metadata._duration(text), seconds)
        for bad in ("soon", "-1s", "nan", "infs", ""):
            with self.subTest(bad), self.assertRaisesRegex(Exception, "not a duration"):
                ec2_metadata._duration(bad)

    def test_the_event_flags_at_their_time(self) -> None:
        service = self.serve_with(
            "--spot-action=stop",
            "--rebalance",
            "--scheduled-event=system-maintenance",
            "--cancel-event-after=20s",
            "--asg-state=Terminated",
            "--after=10s",
        )
        clock = FakeClock()
        clock.now = time.monotonic()
        service.clock = clock
        client = EC2Metadata(endpoint=service.url)
        self.assertEqual(
            (client.spot_instance_action, client.rebalance_recommendation, client.scheduled_events),
            (None, None, []),
        )
        self.assertEqual(client.autoscaling_target_lifecycle_state, "InService")
        clock.now += 10
        action = client.spot_instance_action
        self.assertEqual(action.action if action else None, "stop")
        self.assertIsNotNone(client.rebalance_recommendation)
        self.assertEqual([event["State"] for event in client.scheduled_events], ["active"])
        self.assertEqual(client.autoscaling_target_lifecycle_state, "Terminated")
        clock.now += 10
        self.assertEqual([event["State"] for event in client.scheduled_events], ["canceled"])

    def test_an_event_at_once_and_no_events(self) -> None:
        client = EC2Metadata(endpoint=self.serve_with("--scheduled-event=instance-reboot").url)
        self.assertEqual(client.scheduled_events[0]["Code"], "instance-reboot")
        self.assertIsNone(client.spot_instance_action)
        plain = EC2Metadata(endpoint=self.serve_with().url)
        self.assertEqual((plain.scheduled_events, plain.rebalance_recommendation), ([], None))

    def test_data_files_override_add_and_remove_paths(self) -> None:
        first = self.data_file(
            {
                "meta-data/tags/instance/Name": "from-a-file",
                "meta-data/security-groups": ["db", "ssh"],
                "meta-data/iam": None,
                "dynamic/instance-identity/document": dict(IDENTITY_DOCUMENT, region="us-east-2"),
                "meta-data/events/maintenance/scheduled": [SCHEDULED_EVENT],
            }
        )
        second = self.data_file({"/latest/meta-data/tags/instance/Owner": "qa"})
        service = self.serve_with("--data", first, "--data", second, "--imdsv1")
        client = EC2Metadata(endpoint=service.url)
        self.assertEqual(client.tags["Name"], "from-a-file")
        self.assertEqual(client.tags["Owner"], "qa")
        self.assertEqual(client.security_groups, ["db", "ssh"])
        self.assertIsNone(client.iam_info)
        self.assertIsNone(client.iam_security_credentials)
        self.assertEqual(client.region, "us-east-2")
        self.assertEqual(client.scheduled_events[0]["EventId"], SCHEDULED_EVENT["EventId"])
        self.assertEqual(raw_request(service.url, "GET", MAC_PATH)[0], 200)  # --imdsv1

    def test_bad_arguments_exit_2_with_one_line(self) -> None:
        directory = self.temporary_directory()
        not_json = os.path.join(directory, "bad.json")
        with open(not_json, "w", encoding="utf-8") as file:
            file.write("{nope")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = str(taken.getsockname()[1])
            cases = {
                ("--data", os.path.join(directory, "missing.json")): "missing.json: No such file",
                ("--data", not_json): "bad.json: not JSON",
                ("--data", self.data_file(["a"])): "must hold a JSON object",
                ("--data", self.data_file({"meta-data/nothing": None})): "nothing at",
                ("--data", self.data_file({"meta-data/mac/x": "y"})): "'mac' is a value",
                ("--cancel-event-after", "1s"): "needs a --scheduled-event",
                ("--port", "70000"): "--port must be from 0 to 65535",
                ("--host", "192.0.2.1"): "--allow-non-loopback",
                ("--port", port): f"cannot listen on 127.0.0.1 port {port}",
            }
            for argv, message in cases.items():
                with self.subTest(argv):
                    status, out, err = self.run_main("serve", *argv)
                    self.assertEqual((status, out), (2, ""))
                    self.assertIn(message, err)
                    self.assertEqual(len(err.splitlines()), 1, err)

    def test_a_command_runs_against_the_fake_and_gives_its_status(self) -> None:
        check = (
            "import os, sys, ec2_metadata; "
            "sys.exit(7 if ec2_metadata.ec2_metadata.region == 'eu-west-1' else 1)"
        )
        status, _, err = self.run_main("serve", "--", sys.executable, "-c", check)
        self.assertEqual(status, 7, err)
        self.assertRegex(err, r"^imds serve: fake IMDS on http://127\.0\.0\.1:\d+\n$")
        killed = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
        self.assertEqual(self.run_main("serve", "--", sys.executable, "-c", killed)[0], 143)
        status, _, err = self.run_main("serve", "--", "/nonexistent/command")
        self.assertEqual(status, 127)
        self.assertIn("cannot run /nonexistent/command", err)
        with mock.patch("subprocess.run", side_effect=KeyboardInterrupt):
            self.assertEqual(self.run_main("serve", "--", "sleep", "9")[0], 130)

    def stop_when_serving(self, output: io.StringIO, signal_number: int, seen: list[str]) -> None:
        """Wait for the export line, read the region through it, then send a signal."""
        deadline = time.monotonic() + 10
        while "export " not in output.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        url = output.getvalue().split("=", 1)[1].strip()
        seen.append(EC2Metadata(endpoint=url).region)
        os.kill(os.getpid(), signal_number)

    def test_serve_prints_its_url_and_export_line_and_stops_on_a_signal(self) -> None:
        import signal

        before = signal.getsignal(signal.SIGTERM)
        # Ctrl-C raises KeyboardInterrupt even where the runner was started with SIGINT ignored.
        interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.addCleanup(signal.signal, signal.SIGINT, interrupt)
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal_number):
                out, seen = io.StringIO(), cast("list[str]", [])
                stopper = threading.Thread(
                    target=self.stop_when_serving, args=(out, signal_number, seen)
                )
                stopper.start()
                with contextlib.redirect_stdout(out):
                    status = ec2_metadata.main(["serve", "--port", "0"])
                stopper.join()
                self.assertEqual((status, seen), (0, ["eu-west-1"]))
                first, export = out.getvalue().splitlines()
                self.assertRegex(first, r"^imds serve: fake IMDS on http://127\.0\.0\.1:\d+ ")
                self.assertEqual(export, f"export {ENDPOINT_VARIABLE}={first.split()[5]}")
                self.assertIs(signal.getsignal(signal.SIGTERM), before)


# Runs Python with sys.argv[1:] and SIGINT as a terminal gives it, even where the test
# runner was started with SIGINT ignored (which a child would inherit).
AS_FROM_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class ServeProcessTests(LoopbackTestCase):
    """``imds serve`` as a process, and the README's first command."""

    def test_the_readme_first_command_in_a_directory_with_only_the_module(self) -> None:
        import shutil
        import tempfile

        with open(os.path.join(os.path.dirname(__file__), "README.md"), encoding="utf-8") as file:
            readme = file.read()
        first = readme.split("```sh\n", 1)[1].splitlines()[0].split("#")[0].split()
        self.assertEqual(
            first, ["python3", "ec2_metadata.py", "serve", "--", "python3", "ec2_metadata.py"]
        )
        with tempfile.TemporaryDirectory() as directory:
            shutil.copy(ec2_metadata.__file__, directory)
            environment = {
                name: value for name, value in os.environ.items() if not name.startswith("AWS_")
            }
            environment["PYTHONDONTWRITEBYTECODE"] = "1"
            argv = [sys.executable if word == "python3" else word for word in first]
            result = subprocess.run(
                argv,
                cwd=directory,
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            self.assertEqual(os.listdir(directory), ["ec2_metadata.py"])
        self.assertEqual(result.returncode, 0, result.stderr)
        document = json.loads(result.stdout)
        self.assertEqual((document["region"], document["instance_id"]), ("eu-west-1", INSTANCE_ID))
        self.assertNotIn("Traceback", result.stderr)

    def test_serve_is_stopped_by_sigterm_and_sigint_without_a_traceback(self) -> None:
        import signal

        module = ec2_metadata.__file__
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal_number):
                process = subprocess.Popen(
                    [sys.executable, "-c", AS_FROM_A_TERMINAL, module, "serve", "--port", "0"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                assert process.stdout is not None
                process.stdout.readline()
                url = process.stdout.readline().split("=", 1)[1].strip()
                self.assertEqual(EC2Metadata(endpoint=url).instance_id, INSTANCE_ID)
                process.send_signal(signal_number)
                out, err = process.communicate(timeout=30)
                self.assertEqual((process.returncode, out, err), (0, "", ""))


class AttributeTests(LoopbackTestCase):
    def test_every_attribute_has_its_value_and_type(self) -> None:
        client = self.serve().client()
        for name, expected in ATTRIBUTES.items():
            with self.subTest(name):
                value = getattr(client, name)
                self.assertEqual(value, expected)
                self.assertIs(type(value), type(expected))

    def test_spot_action_time_is_aware_utc(self) -> None:
        action = self.serve().client().spot_instance_action
        assert action is not None
        self.assertEqual(action.action, "terminate")
        self.assertEqual(action.time.utcoffset(), timezone.utc.utcoffset(None))

    def test_spot_action_and_rebalance_values(self) -> None:
        when = datetime(2026, 11, 27, 4, 2, tzinfo=timezone.utc)
        action = SpotInstanceAction("stop", when)
        self.assertEqual(repr(action), f"SpotInstanceAction(action='stop', time={when!r})")
        self.assertEqual(action, SpotInstanceAction("stop", when))
        self.assertNotEqual(action, SpotInstanceAction("terminate", when))
        self.assertNotEqual(action, RebalanceRecommendation(when))
        self.assertNotEqual(action, ("stop", when))
        self.assertEqual(len({action, SpotInstanceAction("stop", when)}), 1)
        self.assertEqual(RebalanceRecommendation(when).notice_time, when)

    def test_spot_action_time_with_an_offset_or_none_becomes_utc(self) -> None:
        imds = self.serve()
        client = imds.client()
        for written, expected in [
            ("2026-11-27T06:02:00+02:00", datetime(2026, 11, 27, 4, 2, tzinfo=timezone.utc)),
            ("2026-11-27T04:02:00", datetime(2026, 11, 27, 4, 2, tzinfo=timezone.utc)),
        ]:
            imds.put(
                "meta-data/spot/instance-action", json.dumps({"action": "stop", "time": written})
            )
            self.assertEqual(client.spot_instance_action, SpotInstanceAction("stop", expected))

    def test_scheduled_event_times_are_aware_utc(self) -> None:
        imds = self.serve()
        event = {
            "NotBefore": "1 Jan 2027 00:30:00 +0100",
            "Code": "instance-stop",
            "Description": "d",
            "EventId": "e",
            "State": "active",
        }
        imds.put("meta-data/events/maintenance/scheduled", json.dumps([event]))
        (parsed,) = imds.client().scheduled_events
        self.assertEqual(parsed["NotBefore"], datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc))
        self.assertNotIn("NotAfter", parsed)
        event["NotBefore"] = "1 Jan 2027 00:30:00"  # no zone: taken as UTC
        imds.put("meta-data/events/maintenance/scheduled", json.dumps([event]))
        (parsed,) = imds.client().scheduled_events
        self.assertEqual(parsed["NotBefore"], datetime(2027, 1, 1, 0, 30, tzinfo=timezone.utc))

    def test_the_secondary_interface_network_card_from_the_mock_path(self) -> None:
        client = self.serve().client()
        self.assertEqual(client.network_interfaces[SECONDARY_MAC].network_card_index, 1)

    def test_network_interfaces_by_mac(self) -> None:
        client = self.serve().client()
        interfaces = client.network_interfaces
        self.assertEqual(list(interfaces), [PRIMARY_MAC, SECONDARY_MAC])
        self.assertEqual(interfaces[PRIMARY_MAC], NetworkInterface(PRIMARY_MAC, client))
        for name, expected in PRIMARY_INTERFACE.items():
            with self.subTest(name):
                self.assertEqual(getattr(interfaces[PRIMARY_MAC], name), expected)

    def test_a_private_interface_gives_empty_values(self) -> None:
        secondary = self.serve().client().network_interfaces[SECONDARY_MAC]
        for name, expected in SECONDARY_ABSENT.items():
            with self.subTest(name):
                self.assertEqual(getattr(secondary, name), expected)
        self.assertEqual(secondary.device_number, 1)
        self.assertEqual(secondary.vpc_ipv4_cidr_block, "172.31.0.0/16")

    def test_network_interface_repr_equality_and_hash(self) -> None:
        client = EC2Metadata(endpoint="http://127.0.0.1:9")
        other_client = EC2Metadata(endpoint="http://127.0.0.1:9")
        interface = NetworkInterface(PRIMARY_MAC, client)
        self.assertEqual(repr(interface), f"NetworkInterface('{PRIMARY_MAC}')")
        self.assertEqual(interface, NetworkInterface(PRIMARY_MAC, client))
        self.assertNotEqual(interface, NetworkInterface(SECONDARY_MAC, client))
        self.assertNotEqual(interface, NetworkInterface(PRIMARY_MAC, other_client))
        self.assertNotEqual(interface, PRIMARY_MAC)
        self.assertEqual(len({interface, NetworkInterface(PRIMARY_MAC, client)}), 1)
        self.assertIs(NetworkInterface(PRIMARY_MAC).parent, ec2_metadata.ec2_metadata)

    def test_public_keys_by_name(self) -> None:
        client = self.serve().client()
        self.assertEqual(client.public_keys, {"web-key": PublicKey(0, client)})
        key = client.public_keys["web-key"]
        self.assertEqual(key.index, 0)
        self.assertEqual(key.openssh_key, SSH_KEY)
        self.assertEqual(repr(key), "PublicKey(0)")

    def test_public_key_repr_equality_and_hash(self) -> None:
        client = EC2Metadata(endpoint="http://127.0.0.1:9")
        self.assertEqual(PublicKey(1, client), PublicKey(1, client))
        self.assertNotEqual(PublicKey(1, client), PublicKey(2, client))
        self.assertNotEqual(PublicKey(1, client), 1)
        self.assertEqual(len({PublicKey(1, client), PublicKey(1, client)}), 1)
        self.assertIs(PublicKey(0).parent, ec2_metadata.ec2_metadata)

    def test_a_public_key_without_openssh_format_gives_none(self) -> None:
        imds = self.serve()
        imds.remove("meta-data/public-keys/0/openssh-key")
        self.assertIsNone(imds.client().public_keys["web-key"].openssh_key)

    def test_tags(self) -> None:
        tags = self.serve().client().tags
        self.assertIsInstance(tags, InstanceTags)
        self.assertEqual(dict(tags), {"Name": "web-1", "Environment": "production"})
        self.assertEqual(repr(tags), "InstanceTags(['Name', 'Environment'])")

    def test_amazon_ec2_metadata_mock_quirks(self) -> None:
        imds = self.serve(mock_quirks=True)
        client = imds.client()
        self.assertEqual(client.network_interfaces[PRIMARY_MAC].network_card_index, 0)
        (event,) = client.scheduled_events
        self.assertEqual(event["NotBeforeDeadline"], datetime(2026, 12, 6, 9, tzinfo=timezone.utc))
        self.assertEqual(client.public_keys, {"0": PublicKey(0, client)})
        self.assertEqual(client.public_keys["0"].openssh_key, SSH_KEY)
        self.assertEqual(client.iam_security_credentials, CREDENTIALS)
        self.assertEqual(client.instance_identity_document, IDENTITY_DOCUMENT)
        self.assertEqual(client.spot_instance_action, ATTRIBUTES["spot_instance_action"])

    def test_the_role_comes_from_the_credentials_listing_not_the_profile_name(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertNotEqual(client.instance_profile_name, ROLE_NAME)
        self.assertEqual(client.iam_security_credentials, CREDENTIALS)
        self.assertEqual(
            imds.count("GET", f"/latest/meta-data/iam/security-credentials/{ROLE_NAME}"), 1
        )


class AbsentValueTests(LoopbackTestCase):
    ABSENT: ClassVar[dict[str, tuple[str, object]]] = {
        "autoscaling_target_lifecycle_state": ("meta-data/autoscaling", None),
        "availability_zone_id": ("meta-data/placement/availability-zone-id", None),
        "block_device_mapping": ("meta-data/block-device-mapping", {}),
        "iam_info": ("meta-data/iam", None),
        "iam_security_credentials": ("meta-data/iam", None),
        "instance_profile_arn": ("meta-data/iam", None),
        "instance_profile_id": ("meta-data/iam", None),
        "instance_profile_name": ("meta-data/iam", None),
        "ipv6": ("meta-data/ipv6", None),
        "kernel_id": ("meta-data/kernel-id", None),
        "placement_group": ("meta-data/placement/group-name", None),
        "placement_host_id": ("meta-data/placement/host-id", None),
        "placement_partition_number": ("meta-data/placement/partition-number", None),
        "product_codes": ("meta-data/product-codes", []),
        "public_hostname": ("meta-data/public-hostname", None),
        "public_ipv4": ("meta-data/public-ipv4", None),
        "public_keys": ("meta-data/public-keys", {}),
        "ramdisk_id": ("meta-data/ramdisk-id", None),
        "rebalance_recommendation": ("meta-data/events/recommendations", None),
        "scheduled_events": ("meta-data/events/maintenance/scheduled", []),
        "spot_instance_action": ("meta-data/spot", None),
        "user_data": ("user-data", None),
    }

    def test_each_absent_value_is_none_or_empty(self) -> None:
        for name, (path, expected) in self.ABSENT.items():
            with self.subTest(name):
                imds = self.serve()
                imds.remove(path)
                self.assertEqual(getattr(imds.client(), name), expected)

    def test_no_scheduled_events_as_an_empty_list(self) -> None:
        imds = self.serve()
        imds.put("meta-data/events/maintenance/scheduled", "[]")
        self.assertEqual(imds.client().scheduled_events, [])

    def test_an_interface_without_a_network_card_entry(self) -> None:
        imds = self.serve()
        imds.remove(f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/network-card")
        interface = imds.client().network_interfaces[PRIMARY_MAC]
        self.assertIsNone(interface.network_card_index)

    def test_no_credentials_when_the_role_listing_is_empty(self) -> None:
        imds = self.serve()
        imds.put("meta-data/iam/security-credentials", {})
        self.assertIsNone(imds.client().iam_security_credentials)

    def test_a_missing_required_value_raises_not_found(self) -> None:
        imds = self.serve()
        imds.remove("meta-data/instance-id")
        imds.remove(f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/subnet-id")
        client = imds.client()
        with self.assertRaises(EC2MetadataNotFoundError) as caught:
            client.instance_id
        self.assertEqual(caught.exception.status, 404)
        self.assertEqual(caught.exception.path, "meta-data/instance-id")
        self.assertIn("/latest/meta-data/instance-id answered 404", str(caught.exception))
        with self.assertRaises(EC2MetadataNotFoundError) as caught:
            client.network_interfaces[PRIMARY_MAC].subnet_id
        self.assertEqual(
            caught.exception.path, f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/subnet-id"
        )

    def test_tags_not_allowed_in_metadata_raise_with_the_fix(self) -> None:
        imds = self.serve()
        imds.remove("meta-data/tags")
        with self.assertRaises(EC2MetadataNotFoundError) as caught:
            imds.client().tags
        self.assertEqual(caught.exception.path, "meta-data/tags/instance/")
        self.assertIn("--instance-metadata-tags enabled", str(caught.exception))


class CachingTests(LoopbackTestCase):
    def test_a_second_read_makes_no_request(self) -> None:
        imds = self.serve()
        client = imds.client()
        first = read_everything(client)
        before = imds.count()
        second = read_everything(client)
        self.assertEqual(first, second)
        self.assertEqual(imds.count() - before, len(ATTRIBUTE_PATHS))
        for path in ATTRIBUTE_PATHS.values():
            self.assertEqual(imds.count("GET", f"/latest/{path}"), 2)

    def test_uncached_attributes_follow_the_service(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.instance_action, "none")
        imds.put("meta-data/instance-action", "reboot")
        imds.put("meta-data/autoscaling/target-lifecycle-state", "Terminated")
        imds.remove("meta-data/spot/instance-action")
        self.assertEqual(client.instance_action, "reboot")
        self.assertEqual(client.autoscaling_target_lifecycle_state, "Terminated")
        self.assertIsNone(client.spot_instance_action)

    def test_del_forgets_one_value(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.tags["Name"], "web-1")
        self.assertEqual(client.instance_type, "t3.micro")
        imds.put("meta-data/tags/instance/Name", "web-2")
        imds.put("meta-data/instance-type", "m7g.large")
        self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(client.tags["Name"], "web-1")
        del client.tags
        self.assertEqual(client.tags["Name"], "web-2")
        self.assertEqual(client.instance_type, "t3.micro")

    def test_clear_all_forgets_every_value_and_the_token(self) -> None:
        imds = self.serve()
        client = imds.client()
        first = read_everything(client)
        self.assertEqual(imds.count("PUT"), 1)
        client.clear_all()
        before = imds.count("GET")
        self.assertEqual(read_everything(client), first)
        self.assertEqual(imds.count("PUT"), 2)
        self.assertEqual(imds.count("GET") - before, before)
        self.assertEqual(imds.connections, 1)  # the connection outlives clear_all()

    def test_clear_all_of_an_interface_and_a_key(self) -> None:
        imds = self.serve()
        client = imds.client()
        interface = client.network_interfaces[PRIMARY_MAC]
        key = client.public_keys["web-key"]
        self.assertEqual(interface.subnet_id, "subnet-00a1b2c3d4e5f6789")
        self.assertEqual(key.openssh_key, SSH_KEY)
        imds.put(f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/subnet-id", "subnet-new")
        imds.put("meta-data/public-keys/0/openssh-key", "ssh-rsa AAAA new\n")
        self.assertEqual(interface.subnet_id, "subnet-00a1b2c3d4e5f6789")
        interface.clear_all()
        key.clear_all()
        self.assertEqual(interface.subnet_id, "subnet-new")
        self.assertEqual(key.openssh_key, "ssh-rsa AAAA new\n")
        self.assertEqual(interface.mac, PRIMARY_MAC)

    def test_tags_are_lazy_and_each_value_is_fetched_once(self) -> None:
        imds = self.serve()
        tags = imds.client().tags
        self.assertEqual(imds.count("GET"), 1)
        self.assertIn("Name", tags)
        self.assertNotIn("Owner", tags)
        self.assertEqual(len(tags), 2)
        self.assertEqual(list(tags), ["Name", "Environment"])
        self.assertEqual(imds.count("GET"), 1)
        self.assertEqual(tags["Name"], "web-1")
        self.assertEqual(tags["Name"], "web-1")
        self.assertEqual(tags.get("Owner", "nobody"), "nobody")
        self.assertEqual(imds.count("GET", "/latest/meta-data/tags/instance/Name"), 1)
        self.assertEqual(imds.count("GET"), 2)
        with self.assertRaises(KeyError):
            tags["Owner"]

    def test_tag_names_are_quoted_in_the_path(self) -> None:
        imds = self.serve()
        imds.put("meta-data/tags/instance/team name", "platform")
        tags = imds.client().tags
        self.assertEqual(tags["team name"], "platform")
        self.assertEqual(imds.count("GET", "/latest/meta-data/tags/instance/team%20name"), 1)


# The uncached attributes, and the path each reads every time.
ATTRIBUTE_PATHS = {
    "autoscaling_target_lifecycle_state": "meta-data/autoscaling/target-lifecycle-state",
    "instance_action": "meta-data/instance-action",
    "rebalance_recommendation": "meta-data/events/recommendations/rebalance",
    "scheduled_events": "meta-data/events/maintenance/scheduled",
    "spot_instance_action": "meta-data/spot/instance-action",
}


class FullReadTests(LoopbackTestCase):
    def test_one_put_one_get_per_path_one_connection(self) -> None:
        imds = self.serve()
        values = read_everything(imds.client())
        self.assertEqual(values["tags"], {"Name": "web-1", "Environment": "production"})
        self.assertEqual(imds.count("PUT"), 1)
        gets = [request.path for request in imds.requests if request.method == "GET"]
        self.assertEqual(len(gets), len(set(gets)), "a path was fetched twice")
        self.assertEqual(imds.connections, 1)

    def test_every_request_carries_imdsv2_headers(self) -> None:
        imds = self.serve()
        read_everything(imds.client())
        put, *gets = imds.requests
        self.assertEqual((put.method, put.path), ("PUT", "/latest/api/token"))
        self.assertEqual(put.headers[TTL_HEADER.lower()], "21600")
        tokens = {request.headers[TOKEN_HEADER.lower()] for request in gets}
        self.assertEqual(tokens, set(imds.tokens))
        self.assertTrue(all(request.method == "GET" for request in gets))
        self.assertFalse(any("x-forwarded-for" in request.headers for request in imds.requests))


class TokenTests(LoopbackTestCase):
    def test_one_token_is_shared_by_every_thread(self) -> None:
        imds = self.serve()
        imds.latency = 0.002
        client = imds.client()
        names = list(ATTRIBUTES)
        results: dict[str, object] = {}

        def read(name: str) -> None:
            results[name] = getattr(client, name)

        threads = [threading.Thread(target=read, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(results, ATTRIBUTES)
        self.assertEqual(imds.count("PUT"), 1)
        self.assertEqual(imds.connections, 1)

    def test_a_token_is_renewed_before_it_expires(self) -> None:
        imds = self.serve()
        clock = FakeClock()
        with mock.patch.object(ec2_metadata, "time", clock):
            client = imds.client(token_ttl=600)
            self.assertEqual(client.instance_id, "i-0123456789abcdef0")
            clock.now += 539  # 600 s, less a 60 s margin, less one second
            self.assertEqual(client.ami_id, "ami-0a1b2c3d4e5f60718")
            self.assertEqual(imds.count("PUT"), 1)
            clock.now += 1
            self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(imds.count("PUT"), 2)
        self.assertEqual(
            imds.requests[1].headers[TOKEN_HEADER.lower()],
            imds.requests[2].headers[TOKEN_HEADER.lower()],
        )
        self.assertNotEqual(
            imds.requests[2].headers[TOKEN_HEADER.lower()],
            imds.requests[4].headers[TOKEN_HEADER.lower()],
        )
        self.assertEqual(imds.requests[3].headers[TTL_HEADER.lower()], "600")

    def test_a_revoked_token_is_renewed_once_and_the_request_retried(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        imds.revoke_tokens()  # what a stop and start does
        self.assertEqual(client.ami_id, "ami-0a1b2c3d4e5f60718")
        self.assertEqual(
            [(r.method, r.path) for r in imds.requests],
            [
                ("PUT", "/latest/api/token"),
                ("GET", "/latest/meta-data/instance-id"),
                ("GET", "/latest/meta-data/ami-id"),
                ("PUT", "/latest/api/token"),
                ("GET", "/latest/meta-data/ami-id"),
            ],
        )

    def test_a_401_for_a_fresh_token_raises_instead_of_looping(self) -> None:
        imds = self.serve()
        imds.inject("GET", "/latest/meta-data/instance-id", Reply(401), Reply(401))
        with self.assertRaises(EC2MetadataHTTPError) as caught:
            imds.client().instance_id
        self.assertEqual(caught.exception.status, 401)
        self.assertIn("rejected a token it had just issued", str(caught.exception))
        self.assertEqual(imds.count("PUT"), 2)
        self.assertEqual(imds.count("GET"), 2)

    def test_server_errors_are_retried_after_a_short_jittered_pause(self) -> None:
        imds = self.serve()
        imds.inject("GET", "/latest/meta-data/instance-id", Reply(500), Reply(503))
        clock = FakeClock()
        fake_time = mock.patch.object(ec2_metadata, "time", clock)
        with fake_time, self.assertLogs("ec2_metadata", "DEBUG") as logs:
            self.assertEqual(imds.client().instance_id, "i-0123456789abcdef0")
        self.assertEqual(len(clock.slept), 2)
        self.assertTrue(0.05 <= clock.slept[0] <= 0.1, clock.slept)
        self.assertTrue(0.1 <= clock.slept[1] <= 0.2, clock.slept)
        self.assertIn("attempt 1 of 3 failed", logs.output[0])
        self.assertIn("answered 500", logs.output[0])

    def test_the_token_never_shows_in_errors_or_reprs(self) -> None:
        imds = self.serve()
        client = imds.client(attempts=1)
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        imds.inject("GET", "/latest/meta-data/mac", Reply(503))
        with self.assertRaises(EC2MetadataHTTPError) as raised:
            client.mac
        (token,) = imds.tokens
        for text in (str(raised.exception), repr(raised.exception), repr(client)):
            self.assertNotIn(token, text)


class FakeClock:
    """Stands in for the ``time`` module inside ec2_metadata."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class ConfigurationTests(LoopbackTestCase):
    def test_the_default_endpoints(self) -> None:
        # Only the URL is checked: nothing connects to the real service.
        expected_ipv4 = "http://169.254.169.254/latest/"  # expected URL, never connected to
        self.assertEqual(EC2Metadata().service_url, expected_ipv4)
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"] = "IPv6"
        self.assertEqual(EC2Metadata().service_url, "http://[fd00:ec2::254]/latest/")
        self.assertEqual(EC2Metadata(endpoint_mode="ipv4").service_url, expected_ipv4)

    def test_the_endpoint_variable_with_or_without_a_trailing_slash(self) -> None:
        imds = self.serve()
        for endpoint in (imds.url, imds.url + "/"):
            os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint
            client = EC2Metadata()
            self.assertEqual(client.service_url, imds.url + "/latest/")
            self.assertEqual(client.instance_id, "i-0123456789abcdef0")

    def test_an_endpoint_with_a_path_prefix_keeps_it(self) -> None:
        client = EC2Metadata(endpoint="http://127.0.0.1:1338/imds/")
        self.assertEqual(client.service_url, "http://127.0.0.1:1338/imds/latest/")

    def test_a_keyword_argument_beats_the_environment(self) -> None:
        imds = self.serve()
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
        os.environ["AWS_METADATA_SERVICE_TIMEOUT"] = "abc"
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        client = EC2Metadata(endpoint=imds.url, timeout=2, disabled=False)
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")

    def test_settings_are_read_at_the_first_request_and_again_after_clear_all(self) -> None:
        first, second = self.serve(), self.serve()
        second.put("meta-data/instance-id", "i-second")
        client = EC2Metadata()
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = first.url
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = second.url
        del client.instance_id
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        client.clear_all()
        self.assertEqual(client.instance_id, "i-second")

    def test_the_singleton_follows_the_environment(self) -> None:
        imds = self.serve()
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds.url
        from ec2_metadata import ec2_metadata as singleton

        self.assertEqual(singleton.region, "eu-west-1")
        self.assertEqual(imds.count("PUT"), 1)

    def test_disabled_raises_at_once_without_traffic(self) -> None:
        imds = self.serve()
        for value in ("true", "TRUE", "True"):
            os.environ["AWS_EC2_METADATA_DISABLED"] = value
            with self.assertRaises(EC2MetadataDisabledError) as caught:
                imds.client().instance_id
            self.assertIn("AWS_EC2_METADATA_DISABLED", str(caught.exception))
        with self.assertRaises(EC2MetadataDisabledError):
            imds.client(disabled=True).region
        os.environ["AWS_EC2_METADATA_DISABLED"] = "false"
        self.assertEqual(imds.count(), 0)
        self.assertEqual(imds.client().instance_id, "i-0123456789abcdef0")

    def test_timeout_and_attempts_are_read(self) -> None:
        os.environ["AWS_METADATA_SERVICE_TIMEOUT"] = "2.5"
        os.environ["AWS_METADATA_SERVICE_NUM_ATTEMPTS"] = "5"
        settings = EC2Metadata()._transport.settings
        self.assertEqual((settings.timeout, settings.attempts), (2.5, 5))
        settings = EC2Metadata(timeout=0.25, attempts=1)._transport.settings
        self.assertEqual((settings.timeout, settings.attempts), (0.25, 1))
        del (
            os.environ["AWS_METADATA_SERVICE_TIMEOUT"],
            os.environ["AWS_METADATA_SERVICE_NUM_ATTEMPTS"],
        )
        settings = EC2Metadata()._transport.settings
        self.assertEqual((settings.timeout, settings.attempts, settings.token_ttl), (1.0, 3, 21600))

    def test_invalid_values_name_the_variable(self) -> None:
        cases = [
            ("AWS_METADATA_SERVICE_TIMEOUT", "abc"),
            ("AWS_METADATA_SERVICE_TIMEOUT", "0"),
            ("AWS_METADATA_SERVICE_TIMEOUT", "-1"),
            ("AWS_METADATA_SERVICE_TIMEOUT", "inf"),
            ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "0"),
            ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "two"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv5"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "127.0.0.1:1338"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "https://127.0.0.1:1338"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:99999"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338/?x=1"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338/latest"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:0"),
            ("AWS_EC2_METADATA_DISABLED", "yes"),
        ]
        for variable, value in cases:
            fake_time = self.subTest(variable=variable, value=value)
            with fake_time, mock.patch.dict(os.environ, {variable: value}):
                client = EC2Metadata()
                with self.assertRaises(EC2MetadataConfigError) as caught:
                    client.instance_id
                self.assertIn(variable, str(caught.exception))
                self.assertIn(repr(value), str(caught.exception))
                self.assertIsInstance(caught.exception, ValueError)

    def test_invalid_keyword_arguments_name_the_argument(self) -> None:
        options: dict[str, Any]
        for options in (
            {"timeout": -1},
            {"attempts": 0},
            {"token_ttl": 21601},
            {"token_ttl": 0},
            {"endpoint_mode": "ipv7"},
            {"endpoint": "ftp://127.0.0.1"},
        ):
            (name,) = options
            with self.subTest(name), self.assertRaises(EC2MetadataConfigError) as caught:
                EC2Metadata(**options).instance_id
            self.assertIn(f"the {name}= argument", str(caught.exception))

    def test_blank_variables_count_as_unset(self) -> None:
        os.environ["AWS_METADATA_SERVICE_TIMEOUT"] = "  "
        self.assertEqual(EC2Metadata()._transport.settings.timeout, 1.0)

    def test_repr_shows_the_arguments_given(self) -> None:
        self.assertEqual(repr(EC2Metadata()), "EC2Metadata()")
        self.assertEqual(
            repr(EC2Metadata(endpoint="http://127.0.0.1:1338", timeout=0.5)),
            "EC2Metadata(endpoint='http://127.0.0.1:1338', timeout=0.5)",
        )

    def test_session_and_pool_manager_warn_and_are_ignored(self) -> None:
        imds = self.serve()
        cases: tuple[dict[str, Any], ...] = (
            {"session": ConnectionMaker()},
            {"pool_manager": ConnectionMaker()},
        )
        for arguments in cases:
            with self.subTest(next(iter(arguments))), warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always", UserWarning)
                client = EC2Metadata(endpoint=imds.url, **arguments)
            self.assertEqual(len(seen), 1, [str(w.message) for w in seen])
            self.assertIn("ignores session= and pool_manager=", str(seen[0].message))
            self.assertEqual(seen[0].filename, __file__)
            self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            EC2Metadata(session=None)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", UserWarning)
            client = EC2Metadata(ConnectionMaker(), endpoint=imds.url)  # 2.x and 3.x: by position
        self.assertEqual(len(seen), 1)
        self.assertEqual(client.region, "eu-west-1")

    def test_what_cannot_be_a_session_or_pool_manager_is_refused(self) -> None:
        imds = self.serve()
        with self.assertRaises(EC2MetadataConfigError) as caught:
            EC2Metadata(imds.url)
        message = str(caught.exception)
        self.assertIn("requests.Session or urllib3.PoolManager", message)
        self.assertIn(f"endpoint={imds.url!r}", message)
        with self.assertRaises(EC2MetadataConfigError) as caught:
            EC2Metadata(pool_manager=42)
        self.assertIn("the pool_manager argument", str(caught.exception))
        self.assertIn(
            "not int; to point the client at another service, pass endpoint=", str(caught.exception)
        )
        with self.assertRaises(EC2MetadataConfigError) as caught:
            EC2Metadata("http://me:hunter2@127.0.0.1:1338")
        self.assertNotIn("hunter2", str(caught.exception))
        self.assertEqual(imds.count(), 0)

    def test_keyword_arguments_are_checked_when_the_client_is_made(self) -> None:
        with self.assertRaises(EC2MetadataConfigError) as caught:
            EC2Metadata(timeout=0)
        self.assertIn("the timeout= argument", str(caught.exception))

    def test_an_unusable_endpoint_is_refused_before_any_connection(self) -> None:
        imds = self.serve()
        port = imds.url.rsplit(":", 1)[1]
        cases = {
            f"http://127.0.0.1:{port}/latest": "leave out the /latest",
            f"http://127.0.0.1:{port}/latest/": "leave out the /latest",
            f"http://127.0.0.1:{port}/imds/latest": "leave out the /latest",
            f"http://127.0.0.1:{port}/?": "query or a fragment",
            f"http://127.0.0.1:{port}#": "query or a fragment",
            "http://127.0.0.1:0": "port 0",
            f"http://127.0.0.1:{port}\udcff": "not ASCII",
            f"http://h\u00f6st:{port}": "not ASCII",
            f"http://a b:{port}": "not a host name or an IP address",
            f"http://127.0.0.1:{port}x": "its port is not a number",
            f"http://[::1:{port}": "Invalid IPv6 URL",
        }
        for endpoint, problem in cases.items():
            with self.subTest(endpoint):
                with self.assertRaises(EC2MetadataConfigError) as caught:
                    EC2Metadata(endpoint=endpoint)
                self.assertIn(problem, str(caught.exception))
                os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint
                with self.assertRaises(EC2MetadataConfigError) as caught:
                    EC2Metadata().instance_id
                self.assertIn("AWS_EC2_METADATA_SERVICE_ENDPOINT", str(caught.exception))
        self.assertEqual((imds.count(), imds.connections), (0, 0))

    def test_the_user_info_of_an_endpoint_is_never_shown(self) -> None:
        secret = "s3cr3t-pa55"
        endpoints = (
            f"http://admin:{secret}@127.0.0.1:1338",
            f"http://{secret}@127.0.0.1:1338/imds",
            f"http://admin:{secret}@127.0.0.1:99999",
            f"http://admin:{secret}@127.0.0.1:1338/latest",
            f"https://admin:{secret}@127.0.0.1:1338",
        )
        log = io.StringIO()
        handler = logging.StreamHandler(log)
        logging.getLogger("ec2_metadata").addHandler(handler)
        self.addCleanup(logging.getLogger("ec2_metadata").removeHandler, handler)
        for endpoint in endpoints:
            with self.subTest(endpoint):
                with self.assertRaises(EC2MetadataConfigError) as caught:
                    EC2Metadata(endpoint=endpoint)
                self.assertNotIn(secret, str(caught.exception))
                self.assertIn("***@127.0.0.1", str(caught.exception))
                os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint
                with self.assertRaises(EC2MetadataConfigError) as caught:
                    EC2Metadata().instance_id
                self.assertNotIn(secret, str(caught.exception))
                client = EC2Metadata()
                with self.assertRaises(EC2MetadataConfigError) as caught:
                    client.service_url = endpoint + "/latest/"
                self.assertNotIn(secret, str(caught.exception))
        self.assertNotIn(secret, log.getvalue())


class ConnectionMaker:
    """Stands for a requests.Session or urllib3.PoolManager: something with request()."""

    def request(self, *args: object, **kwargs: object) -> None:  # pragma: no cover - never called
        raise AssertionError("ec2_metadata must never use a session or pool manager")


class ConfigFileTests(LoopbackTestCase):
    """The AWS shared config file, read as the SDKs read it, below the environment."""

    def setUp(self) -> None:
        super().setUp()
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.path = os.path.join(directory.name, "config")
        os.environ["AWS_CONFIG_FILE"] = self.path

    def write(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as file:
            file.write(text)

    def test_each_key_is_read_from_the_default_profile(self) -> None:
        imds = self.serve()
        self.write(
            "[default]\n"
            f"ec2_metadata_service_endpoint = {imds.url}\n"
            "ec2_metadata_service_endpoint_mode = IPv6\n"
            "metadata_service_timeout = 2.5\n"
            "metadata_service_num_attempts = 4\n"
            "region = eu-west-1\n"
        )
        client = EC2Metadata()
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        settings = client._transport.settings
        self.assertEqual(
            (settings.endpoint_mode, settings.timeout, settings.attempts), ("ipv6", 2.5, 4)
        )
        where = f"config file {self.path}, profile default, key "
        self.assertEqual(
            settings.sources,
            {
                "endpoint_mode": where + "ec2_metadata_service_endpoint_mode",
                "endpoint": where + "ec2_metadata_service_endpoint",
                "timeout": where + "metadata_service_timeout",
                "attempts": where + "metadata_service_num_attempts",
                "disabled": "default",
                "token_ttl": "default",
            },
        )

    def test_the_profile_named_by_aws_profile(self) -> None:
        self.write(
            "[default]\nmetadata_service_timeout = 2\n\n"
            "[profile batch]\nmetadata_service_timeout = 7\n\n"
            "[profile default]\nmetadata_service_num_attempts = 2\n"
        )
        self.assertEqual(EC2Metadata()._transport.settings.attempts, 2)
        os.environ["AWS_PROFILE"] = "batch"
        self.assertEqual(EC2Metadata()._transport.settings.timeout, 7.0)
        os.environ["AWS_PROFILE"] = "missing"
        self.assertEqual(EC2Metadata()._transport.settings.timeout, 1.0)

    def test_arguments_beat_the_environment_which_beats_the_file(self) -> None:
        self.write("[default]\nmetadata_service_timeout = 3\nmetadata_service_num_attempts = 5\n")
        os.environ["AWS_METADATA_SERVICE_TIMEOUT"] = "4"
        settings = EC2Metadata()._transport.settings
        self.assertEqual((settings.timeout, settings.attempts), (4.0, 5))
        self.assertEqual(
            settings.sources["timeout"], "environment variable AWS_METADATA_SERVICE_TIMEOUT"
        )
        settings = EC2Metadata(timeout=6, attempts=1)._transport.settings
        self.assertEqual((settings.timeout, settings.attempts), (6.0, 1))
        self.assertEqual(settings.sources["attempts"], "argument attempts=")

    def test_an_unusable_value_names_the_file_the_profile_and_the_key(self) -> None:
        self.write("[profile batch]\nmetadata_service_num_attempts = many\n")
        os.environ["AWS_PROFILE"] = "batch"
        with self.assertRaises(EC2MetadataConfigError) as caught:
            EC2Metadata().instance_id
        self.assertEqual(
            str(caught.exception),
            f"metadata_service_num_attempts in profile 'batch' of {self.path} must be a whole "
            "number from 1 to 1000, not 'many'",
        )

    def test_a_file_that_is_not_ini_is_an_error_naming_it(self) -> None:
        self.write("metadata_service_timeout = 3\n")
        with self.assertRaises(EC2MetadataConfigError) as caught:
            EC2Metadata().instance_id
        self.assertIn(f"the AWS config file {self.path} cannot be read", str(caught.exception))
        self.assertIn("AWS_CONFIG_FILE", str(caught.exception))

    def test_a_file_that_cannot_be_read_counts_as_empty_as_in_the_sdks(self) -> None:
        with open(self.path, "wb") as file:
            file.write(b"[default]\nmetadata_service_timeout = \xff\n")
        self.assertEqual(EC2Metadata()._transport.settings.timeout, 1.0)
        os.environ["AWS_CONFIG_FILE"] = os.path.dirname(self.path)  # a directory
        self.assertEqual(EC2Metadata()._transport.settings.timeout, 1.0)

    def test_the_file_is_read_at_the_first_request_and_after_clear_all(self) -> None:
        imds = self.serve()
        opened: list[str] = []
        real_open = open

        def counting_open(path: str, *args: Any, **kwargs: Any) -> Any:
            opened.append(path)
            return real_open(path, *args, **kwargs)

        with mock.patch("builtins.open", counting_open):
            client = EC2Metadata(endpoint=imds.url)
            self.assertEqual(opened, [])  # not when the client is made
            client.instance_id
            client.region
            self.assertEqual(opened, [self.path])  # one try when there is no file
            self.write("[default]\nmetadata_service_num_attempts = 9\n")
            self.assertEqual(client._transport.settings.attempts, 3)
            client.clear_all()
            self.assertEqual(client._transport.settings.attempts, 9)

    def test_the_home_directory_is_the_default(self) -> None:
        del os.environ["AWS_CONFIG_FILE"]
        home = os.path.dirname(self.path)
        os.makedirs(os.path.join(home, ".aws"))
        with open(os.path.join(home, ".aws", "config"), "w", encoding="utf-8") as file:
            file.write("[default]\nmetadata_service_timeout = 8\n")
        with mock.patch.dict(os.environ, {"HOME": home}):
            settings = EC2Metadata()._transport.settings
        self.assertEqual(settings.timeout, 8.0)
        self.assertIn(os.path.join(home, ".aws", "config"), settings.sources["timeout"])


class UrlAttributeTests(LoopbackTestCase):
    """ec2-metadata's URL attributes, which code written for it assigns to use a mock."""

    def test_the_url_attributes(self) -> None:
        client = EC2Metadata(endpoint="http://127.0.0.1:1338/")
        base = "http://127.0.0.1:1338/latest/"
        self.assertEqual(
            (client.service_url, client.metadata_url, client.dynamic_url, client.userdata_url),
            (base, base + "meta-data/", base + "dynamic/", base + "user-data/"),
        )

    def test_assigning_a_url_points_later_requests_at_its_endpoint(self) -> None:
        first, second = self.serve(), self.serve()
        second.put("meta-data/instance-id", "i-second")
        second.put("user-data", b"second")
        client = EC2Metadata(endpoint=first.url)
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        client.service_url = second.url + "/latest/"
        self.assertEqual(client.service_url, second.url + "/latest/")
        self.assertEqual(client.fetch("meta-data/instance-id"), "i-second")
        client.metadata_url = first.url + "/latest/meta-data/"
        self.assertEqual(client.fetch("meta-data/instance-id"), "i-0123456789abcdef0")
        client.dynamic_url = second.url + "/latest/dynamic"
        client.userdata_url = second.url + "/latest/user-data/"
        self.assertEqual(client.user_data, b"second")
        self.assertEqual((first.count("PUT"), second.count("PUT")), (2, 2))

    def test_read_from_the_class_they_are_their_descriptors_for_help(self) -> None:
        descriptor = vars(EC2Metadata)["metadata_url"]
        self.assertIs(EC2Metadata.metadata_url, descriptor)
        self.assertIn("Assigning one points the client", descriptor.__doc__)

    def test_the_url_attributes_are_not_metadata_names(self) -> None:
        names = ec2_metadata._metadata_names(EC2Metadata)
        self.assertIn("instance_id", names)
        for attribute in ("service_url", "metadata_url", "dynamic_url", "userdata_url"):
            self.assertNotIn(attribute, names)

    def test_a_url_that_cannot_be_an_endpoint_is_refused(self) -> None:
        client = EC2Metadata(endpoint="http://127.0.0.1:1338")
        cases = {
            "service_url": "http://127.0.0.1:1338/",
            "metadata_url": "http://127.0.0.1:1338/latest/",
            "dynamic_url": "ftp://127.0.0.1:1338/latest/dynamic/",
            "userdata_url": None,
        }
        for attribute, url in cases.items():
            with self.subTest(attribute), self.assertRaises(EC2MetadataConfigError) as caught:
                setattr(client, attribute, url)
            self.assertIn(attribute, str(caught.exception))
        self.assertEqual(client.service_url, "http://127.0.0.1:1338/latest/")


class ModuleNamespaceTests(unittest.TestCase):
    """Drop-in: every public name of ec2-metadata 2.14 and 3.0, and a clean namespace."""

    UPSTREAM_NAMES = (
        "BaseLazyObject",
        "EC2Metadata",
        "IamInfoDict",
        "IamSecurityCredentialsDict",
        "InstanceIdentityDocumentDict",
        "InstanceTags",
        "NetworkInterface",
        "PublicKey",
        "SpotInstanceAction",
        "TOKEN_HEADER",
        "TOKEN_HEADER_TTL",
        "TOKEN_TTL_SECONDS",
        "ec2_metadata",
    )

    def test_every_upstream_name(self) -> None:
        for name in self.UPSTREAM_NAMES:
            self.assertIn(name, dir(ec2_metadata))
            self.assertIsNotNone(getattr(ec2_metadata, name))
        self.assertEqual(ec2_metadata.TOKEN_TTL_SECONDS, 21600)
        self.assertEqual(ec2_metadata.TOKEN_HEADER, TOKEN_HEADER)
        self.assertEqual(ec2_metadata.TOKEN_HEADER_TTL, TTL_HEADER)
        self.assertTrue(issubclass(EC2Metadata, ec2_metadata.BaseLazyObject))

    def test_dir_shows_the_public_names_only(self) -> None:
        names = dir(ec2_metadata)
        self.assertLessEqual(set(ec2_metadata.__all__), set(names))
        for helper in ("os", "time", "cache", "cast", "TYPE_CHECKING", "TypedDict", "_Transport"):
            self.assertNotIn(helper, names)
        for name in ec2_metadata.__all__:
            getattr(ec2_metadata, name)
        with self.assertRaises(AttributeError):
            ec2_metadata.NoSuchName  # type: ignore[attr-defined]
        with self.assertRaises(AttributeError):
            ec2_metadata._ScheduledEventKeys


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


TYPED_DICT_NAMES = (
    "IamInfoDict",
    "IamSecurityCredentialsDict",
    "InstanceIdentityDocumentDict",
    "ScheduledEventDict",
)


@unittest.skipIf(sys.version_info < (3, 8), "Python 3.7 has no typing.TypedDict")
class TypedDictTests(unittest.TestCase):
    """The public TypedDicts are real TypedDicts at run time, built on first access."""

    def test_they_are_typed_dicts(self) -> None:
        import typing

        for name in TYPED_DICT_NAMES:
            cls = getattr(ec2_metadata, name)
            self.assertEqual((cls.__name__, cls.__module__), (name, "ec2_metadata"))
            hints = typing.get_type_hints(cls)
            self.assertIn(hints, [dict(cls.__annotations__)])
            value = cls(**dict.fromkeys(hints, "x"))
            self.assertIs(type(value), dict)
        hints = typing.get_type_hints(ec2_metadata.InstanceIdentityDocumentDict)
        self.assertEqual(hints["billingProducts"], typing.Optional[typing.List[str]])
        self.assertEqual(
            typing.get_args(hints["architecture"]) if sys.version_info >= (3, 8) else (),
            ("i386", "x86_64", "arm64"),
        )
        self.assertEqual(
            typing.get_type_hints(ec2_metadata.ScheduledEventDict)["NotBefore"], datetime
        )

    @unittest.skipIf(sys.version_info < (3, 10), "typing.is_typeddict came with Python 3.10")
    def test_typing_says_they_are_typed_dicts(self) -> None:
        from typing import is_typeddict  # type: ignore[attr-defined,unused-ignore]

        for name in TYPED_DICT_NAMES:
            self.assertTrue(is_typeddict(getattr(ec2_metadata, name)), name)

    @unittest.skipIf(sys.version_info < (3, 9), "__required_keys__ came with Python 3.9")
    def test_required_and_optional_keys(self) -> None:
        events = ec2_metadata.ScheduledEventDict
        self.assertEqual(
            events.__required_keys__,
            frozenset({"Code", "Description", "EventId", "NotBefore", "State"}),
        )
        self.assertEqual(events.__optional_keys__, frozenset({"NotAfter", "NotBeforeDeadline"}))
        info = ec2_metadata.IamInfoDict
        self.assertEqual(
            info.__required_keys__,
            frozenset({"InstanceProfileArn", "InstanceProfileId", "LastUpdated"}),
        )

    def test_each_is_built_once(self) -> None:
        from ec2_metadata import IamInfoDict

        self.assertIs(ec2_metadata.IamInfoDict, IamInfoDict)

    @unittest.skipUnless(installed("typing_extensions"), "typing_extensions is not installed")
    def test_typing_extensions_flavour_has_the_same_keys(self) -> None:
        import typing_extensions

        built = ec2_metadata._typed_dict("ScheduledEventDict", "typing_extensions")
        self.assertTrue(typing_extensions.is_typeddict(built))
        self.assertEqual(
            typing_extensions.get_type_hints(built),
            typing_extensions.get_type_hints(ec2_metadata.ScheduledEventDict),
        )

    @unittest.skipUnless(installed("pydantic"), "pydantic is not installed")
    def test_pydantic_builds_a_schema_from_them(self) -> None:
        import pydantic

        adapter = pydantic.TypeAdapter(ec2_metadata.ScheduledEventDict)
        times = {"NotBefore": "2026-12-04T09:00:00Z", "NotAfter": "2026-12-04T11:00:00Z"}
        event = adapter.validate_python({**SCHEDULED_EVENT, **times})
        self.assertEqual(event["NotBefore"], datetime(2026, 12, 4, 9, tzinfo=timezone.utc))
        with self.assertRaises(pydantic.ValidationError):
            pydantic.TypeAdapter(ec2_metadata.IamInfoDict).validate_python({"InstanceProfileId": 1})

    def test_importing_the_module_does_not_import_typing(self) -> None:
        code = "import sys, ec2_metadata; print('typing' in sys.modules)"
        output = subprocess.run(
            [sys.executable, "-E", "-S", "-c", code],
            cwd=os.path.dirname(os.path.abspath(ec2_metadata.__file__)),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertEqual(output.strip(), "False")


class ErrorTests(LoopbackTestCase):
    def test_a_refused_port_names_the_endpoint_and_the_fix(self) -> None:
        endpoint = f"http://127.0.0.1:{closed_port()}"
        client = EC2Metadata(endpoint=endpoint)
        started = time.monotonic()
        with self.assertRaises(EC2MetadataConnectionError) as caught:
            client.instance_id
        self.assertLess(time.monotonic() - started, 0.5)
        message = str(caught.exception)
        self.assertIn(endpoint, message)
        self.assertIn("connection refused", message)
        self.assertIn("This program may not be running on EC2", message)
        self.assertIn("AWS_EC2_METADATA_SERVICE_ENDPOINT", message)
        self.assertEqual(caught.exception.path, "api/token")

    def test_a_token_request_that_times_out_gives_the_container_fix(self) -> None:
        with SilentService() as service:
            endpoint = service.url
            client = EC2Metadata(endpoint=endpoint, timeout=0.1, attempts=2)
            started = time.monotonic()
            with self.assertRaises(EC2MetadataConnectionError) as caught:
                client.instance_id
            elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.2)
        self.assertLess(elapsed, 1.0)
        message = str(caught.exception)
        self.assertIn("timed out", message)
        self.assertIn("--http-put-response-hop-limit 2", message)
        self.assertIn(endpoint, message)

    def test_an_error_status_has_status_and_path(self) -> None:
        imds = self.serve()
        imds.inject("GET", "/latest/meta-data/instance-type", Reply(400, b"bad"))
        imds.inject("GET", "/latest/meta-data/ami-id", *[Reply(500)] * 3)
        client = imds.client()
        with self.assertRaises(EC2MetadataHTTPError) as caught:
            client.instance_type
        self.assertEqual(
            (caught.exception.status, caught.exception.path), (400, "meta-data/instance-type")
        )
        self.assertNotIsInstance(caught.exception, EC2MetadataNotFoundError)
        with self.assertRaises(EC2MetadataHTTPError) as caught:
            client.ami_id
        self.assertEqual(caught.exception.status, 500)
        self.assertIn("answered 500", str(caught.exception))

    def test_token_request_refusals(self) -> None:
        for status, reason in [
            (403, "refused to issue a token"),
            (405, "does not offer IMDSv2 tokens"),
            (401, "answered an error"),
            (302, "redirects are never followed"),
        ]:
            with self.subTest(status):
                imds = self.serve()
                imds.inject("PUT", "/latest/api/token", Reply(status))
                with self.assertRaises(EC2MetadataHTTPError) as caught:
                    imds.client().instance_id
                self.assertEqual(
                    (caught.exception.status, caught.exception.path), (status, "api/token")
                )
                self.assertIn(reason, str(caught.exception))
                self.assertEqual(imds.count("GET"), 0)

    def test_a_malformed_token_is_refused(self) -> None:
        for body in (b"", b"  \n", b"tok en", "t\u00f6ken".encode()):
            with self.subTest(body):
                imds = self.serve()
                imds.inject("PUT", "/latest/api/token", Reply(200, body))
                with self.assertRaises(EC2MetadataMalformedError) as caught:
                    imds.client().instance_id
                self.assertIn("is not a token", str(caught.exception))

    def test_malformed_answers_name_the_path(self) -> None:
        cases: dict[str, tuple[str, bytes | Tree, str]] = {
            "instance_id": ("meta-data/instance-id", b"i-\xff\xfe", "is not UTF-8"),
            "ami_launch_index": ("meta-data/ami-launch-index", b"first", "cannot be parsed"),
            "instance_identity_document": ("dynamic/instance-identity/document", b"{", "cannot"),
            "iam_info": ("meta-data/iam/info", b"[1, 2]", "expected a JSON object"),
            "region": ("dynamic/instance-identity/document", b'{"accountId": "1"}', "lacks region"),
            "spot_instance_action": (
                "meta-data/spot/instance-action",
                b'{"action": "stop", "time": 5}',
                "expected a date and time",
            ),
            "public_keys": ("meta-data/public-keys", Directory({}, "zero=key"), "cannot be parsed"),
            "scheduled_events": (
                "meta-data/events/maintenance/scheduled",
                b'{"NotBefore": "soon"}',
                "expected a JSON list of objects",
            ),
            "scheduled_events.number": (
                "meta-data/events/maintenance/scheduled",
                b'[{"NotBefore": 5}]',
                "expected a date and time, got 5",
            ),
            "scheduled_events.NotBefore": (
                "meta-data/events/maintenance/scheduled",
                b'[{"NotBefore": "soon"}]',
                "invalid date and time 'soon'",
            ),
            "rebalance_recommendation": (
                "meta-data/events/recommendations/rebalance",
                b'{"noticeTime": "later"}',
                "cannot be parsed",
            ),
        }
        for name, (path, body, problem) in cases.items():
            with self.subTest(name):
                imds = self.serve()
                imds.put(path, body)
                with self.assertRaises(EC2MetadataMalformedError) as caught:
                    getattr(imds.client(), name.split(".")[0])
                self.assertIn(problem, str(caught.exception))
                self.assertTrue(caught.exception.path.startswith(path))
                self.assertIn(caught.exception.path, str(caught.exception))

    def test_every_error_is_an_ec2_metadata_error_and_pickles(self) -> None:
        errors: list[EC2MetadataError] = [
            EC2MetadataHTTPError("m", 500, "p"),
            EC2MetadataNotFoundError("m", 404, "p"),
            EC2MetadataConnectionError("m", "p"),
            EC2MetadataMalformedError("m", "p"),
            EC2MetadataConfigError("m"),
            EC2MetadataDisabledError("m"),
        ]
        for error in errors:
            copy = pickle.loads(pickle.dumps(error))
            self.assertIsInstance(copy, type(error))
            self.assertEqual(vars(copy), vars(error))
            self.assertEqual(str(copy), "m")


class TransportTests(LoopbackTestCase):
    def test_close_and_the_context_manager_close_the_connection(self) -> None:
        imds = self.serve()
        with imds.client() as client:
            self.assertEqual(client.instance_id, "i-0123456789abcdef0")
            client.close()
            self.assertEqual(client.ami_id, "ami-0a1b2c3d4e5f60718")
        self.assertIsNone(client._transport._connection)
        self.assertEqual(imds.connections, 2)
        self.assertEqual(imds.count("PUT"), 1)

    def test_a_connection_the_server_closed_is_replaced(self) -> None:
        imds = self.serve()
        client = imds.client(attempts=1)
        imds.inject(
            "GET",
            "/latest/meta-data/instance-id",
            Reply(200, b"i-0123456789abcdef0", (("Connection", "close"),)),
        )
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        self.assertEqual(client.ami_id, "ami-0a1b2c3d4e5f60718")
        self.assertEqual(imds.connections, 2)

    def test_a_kept_alive_connection_dropped_between_reads_is_replaced_silently(self) -> None:
        imds = self.serve()
        client = imds.client(attempts=1)
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        imds.inject("GET", "/latest/meta-data/ami-id", drop_connection)
        self.assertEqual(client.ami_id, "ami-0a1b2c3d4e5f60718")
        self.assertEqual(imds.connections, 2)
        self.assertEqual(imds.count("GET", "/latest/meta-data/ami-id"), 2)

    def test_an_answer_without_a_length_is_read_to_the_end(self) -> None:
        imds = self.serve()
        imds.inject("GET", "/latest/meta-data/instance-id", answer_until_close(b"i-unframed"))
        client = imds.client(attempts=1)
        self.assertEqual(client.instance_id, "i-unframed")
        self.assertEqual(client.ami_id, "ami-0a1b2c3d4e5f60718")
        self.assertEqual(imds.connections, 2)

    def test_a_child_process_uses_its_own_connection(self) -> None:
        if not hasattr(os, "fork"):  # pragma: no cover - Windows
            self.skipTest("no fork on this platform")
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        parent_socket = client._transport._connection.sock  # type: ignore[union-attr]
        reader, writer = os.pipe()
        with warnings.catch_warnings():
            # The fake's server threads live on in the parent only; the child uses none.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            try:
                same = client._transport._connection is not None
                result = f"{client.ami_id} {same}"
            except BaseException as error:
                result = repr(error)
            os.write(writer, result.encode())
            os._exit(0)
        os.close(writer)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(reader) as pipe:
            self.assertEqual(pipe.read(), "ami-0a1b2c3d4e5f60718 False")
        self.assertEqual(status, 0)
        self.assertIs(client._transport._connection.sock, parent_socket)  # type: ignore[union-attr]
        self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(imds.connections, 2)

    def test_after_fork_the_inherited_connection_is_dropped(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")
        ec2_metadata._forget_connections_after_fork()  # what os.fork() runs in the child
        self.assertIsNone(client._transport._connection)
        self.assertEqual(client.ami_id, "ami-0a1b2c3d4e5f60718")
        self.assertEqual(imds.connections, 2)
        self.assertEqual(imds.count("PUT"), 1)

    def test_an_announced_answer_over_1_mib_is_refused_unread(self) -> None:
        imds = self.serve()
        huge = (("Content-Length", str(64 * 1024 * 1024)),)
        imds.inject("GET", "/latest/user-data", Reply(200, b"x" * 10, huge))
        client = imds.client()
        with self.assertRaises(EC2MetadataMalformedError) as caught:
            client.user_data
        self.assertIn("announced an answer of 67108864 bytes", str(caught.exception))
        self.assertEqual(caught.exception.path, "user-data")
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")

    def test_an_unannounced_answer_over_1_mib_is_refused(self) -> None:
        imds = self.serve()
        imds.inject("GET", "/latest/user-data", answer_until_close(b"x" * (1024 * 1024 + 1)))
        client = imds.client()
        with self.assertRaises(EC2MetadataMalformedError) as caught:
            client.user_data
        self.assertIn("more than the 1048576-byte limit", str(caught.exception))
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")

    def test_an_answer_cut_short_is_never_returned(self) -> None:
        imds = self.serve()
        short = (("Content-Length", "40"), ("Connection", "close"))
        imds.inject("GET", "/latest/meta-data/instance-id", *[Reply(200, b"i-0123", short)] * 2)
        client = imds.client(attempts=2)
        with self.assertRaises(EC2MetadataConnectionError) as caught:
            client.instance_id
        self.assertIn("closed before the answer ended", str(caught.exception))
        self.assertEqual(imds.count("GET", "/latest/meta-data/instance-id"), 2)
        self.assertEqual(client.instance_id, "i-0123456789abcdef0")

    def test_importing_is_cheap(self) -> None:
        code = (
            "import sys; import ec2_metadata; "
            "print(sorted({'http.client', 'json', 'datetime', 'urllib.parse'} & set(sys.modules)))"
        )
        output = subprocess.run(
            [sys.executable, "-E", "-S", "-c", code],
            cwd=os.path.dirname(os.path.abspath(ec2_metadata.__file__)),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertEqual(output.strip(), "[]")


class RetryTests(LoopbackTestCase):
    """Transient errors are retried after a short jittered pause; others are not."""

    def test_429_and_server_errors_then_success_give_the_value(self) -> None:
        for statuses in [(429,), (500, 503), (502, 504), (429, 503)]:
            with self.subTest(statuses):
                imds = self.serve()
                imds.inject("GET", MAC_PATH, *[Reply(status, b"busy") for status in statuses])
                clock = FakeClock()
                with mock.patch.object(ec2_metadata, "time", clock):
                    self.assertEqual(imds.client().mac, PRIMARY_MAC)
                self.assertEqual(imds.count("GET", MAC_PATH), len(statuses) + 1)
                self.assertEqual(len(clock.slept), len(statuses))
                self.assertEqual(imds.count("PUT"), 1)

    def test_a_token_request_is_retried_too(self) -> None:
        imds = self.serve()
        imds.inject("PUT", TOKEN_PATH, Reply(503), Reply(429))
        with mock.patch.object(ec2_metadata, "time", FakeClock()):
            self.assertEqual(imds.client().mac, PRIMARY_MAC)
        self.assertEqual(imds.count("PUT"), 3)

    def test_the_attempts_follow_the_keyword_and_the_variable(self) -> None:
        for attempts, variable in [(1, None), (2, None), (5, None), (None, "4"), (2, "6")]:
            expected = attempts or int(variable or "3")
            with self.subTest(attempts=attempts, variable=variable):
                if variable is not None:
                    os.environ[ATTEMPTS_VARIABLE] = variable
                imds = self.serve()
                client = imds.client(attempts=attempts)
                imds.inject("GET", MAC_PATH, *[Reply(503)] * expected)
                with mock.patch.object(ec2_metadata, "time", FakeClock()):
                    with self.assertRaises(EC2MetadataHTTPError) as caught:
                        client.mac
                    self.assertEqual(caught.exception.status, 503)
                    self.assertEqual(imds.count("GET", MAC_PATH), expected)
                    imds.inject("GET", MAC_PATH, *[Reply(500)] * (expected - 1))
                    self.assertEqual(client.mac, PRIMARY_MAC)
                self.assertEqual(imds.count("GET", MAC_PATH), 2 * expected)

    def test_the_pause_is_short_bounded_and_jittered(self) -> None:
        imds = self.serve()
        imds.inject("GET", MAC_PATH, *[Reply(503)] * 19)
        clock = FakeClock()
        with mock.patch.object(ec2_metadata, "time", clock):
            self.assertEqual(imds.client(attempts=20).mac, PRIMARY_MAC)
        self.assertEqual(len(clock.slept), 19)
        self.assertTrue(0.05 <= clock.slept[0] <= 0.1, clock.slept)
        self.assertTrue(all(0.05 <= pause <= 1.0 for pause in clock.slept), clock.slept)
        self.assertGreater(len(set(clock.slept[5:])), 1, "the pause is not jittered")

    def test_client_errors_are_not_retried(self) -> None:
        for status in (400, 403, 404):
            with self.subTest(status):
                imds = self.serve()
                imds.inject("GET", MAC_PATH, Reply(status, b"no"))
                clock = FakeClock()
                fake_time = mock.patch.object(ec2_metadata, "time", clock)
                with fake_time, self.assertRaises(EC2MetadataHTTPError) as caught:
                    imds.client(attempts=5).mac
                self.assertEqual(caught.exception.status, status)
                self.assertEqual(type(caught.exception) is EC2MetadataNotFoundError, status == 404)
                self.assertEqual(imds.count("GET", MAC_PATH), 1)
                self.assertEqual(clock.slept, [])

    def test_a_401_mid_session_renews_the_token_once_whatever_the_attempts(self) -> None:
        imds = self.serve()
        client = imds.client(attempts=5)
        self.assertEqual(client.instance_id, INSTANCE_ID)
        imds.inject("GET", MAC_PATH, Reply(401), Reply(401))
        clock = FakeClock()
        fake_time = mock.patch.object(ec2_metadata, "time", clock)
        with fake_time, self.assertRaises(EC2MetadataHTTPError) as caught:
            client.mac
        self.assertEqual(caught.exception.status, 401)
        self.assertEqual((imds.count("PUT"), imds.count("GET", MAC_PATH)), (2, 2))
        self.assertEqual(clock.slept, [])
        self.assertEqual(client.mac, PRIMARY_MAC)  # with the new token, which still works
        self.assertEqual(imds.count("PUT"), 2)


class BrokenConnectionTests(LoopbackTestCase):
    """A connection that breaks is replaced; a cut-off answer is never a value."""

    def test_a_token_request_dropped_on_a_fresh_connection_is_retried(self) -> None:
        imds = self.serve()
        imds.inject("PUT", TOKEN_PATH, drop_connection)
        clock = FakeClock()
        with mock.patch.object(ec2_metadata, "time", clock):
            self.assertEqual(imds.client().mac, PRIMARY_MAC)
        self.assertEqual((imds.count("PUT"), imds.connections, len(clock.slept)), (2, 2, 1))

    def test_a_read_dropped_on_a_fresh_connection_is_retried(self) -> None:
        imds = self.serve()
        client = imds.client()
        closing = Reply(200, INSTANCE_ID.encode(), (("Connection", "close"),))
        imds.inject("GET", "/latest/meta-data/instance-id", closing)
        self.assertEqual(client.instance_id, INSTANCE_ID)
        imds.inject("GET", MAC_PATH, drop_connection)  # the first request of a new connection
        with mock.patch.object(ec2_metadata, "time", FakeClock()):
            self.assertEqual(client.mac, PRIMARY_MAC)
        self.assertEqual((imds.count("GET", MAC_PATH), imds.connections), (2, 3))

    def test_a_drop_on_a_fresh_connection_with_one_attempt_raises(self) -> None:
        imds = self.serve()
        imds.inject("PUT", TOKEN_PATH, drop_connection)
        with self.assertRaises(EC2MetadataConnectionError) as caught:
            imds.client(attempts=1).mac
        self.assertEqual(caught.exception.path, "api/token")
        self.assertIn("failed after the connection was made", str(caught.exception))
        self.assertEqual((imds.count("PUT"), imds.connections), (1, 1))

    def test_an_answer_cut_short_is_retried_on_a_fresh_connection(self) -> None:
        body = INSTANCE_ID.encode()
        faults: dict[str, Fault] = {
            "Content-Length longer than the body": Reply(
                200, body[:7], (("Content-Length", str(len(body))), ("Connection", "close"))
            ),
            "closed in the body": cut_answer(body, -5),
            "closed in a chunk": cut_answer(body, -12, chunked=True),
            "closed in the chunk size line": cut_answer(body, -len(body) - 10, chunked=True),
        }
        for name, fault in faults.items():
            with self.subTest(name):
                imds = started(self, RecordingIMDS())
                imds.inject("GET", "/latest/meta-data/instance-id", fault)
                with mock.patch.object(ec2_metadata, "time", FakeClock()):
                    self.assertEqual(imds.client().instance_id, INSTANCE_ID)
                ports = [seen.port for seen in imds.seen if seen.path.endswith("instance-id")]
                self.assertEqual(len(ports), 2)
                self.assertNotEqual(ports[0], ports[1], "retried on the same connection")

    def test_an_answer_cut_short_on_a_connection_left_open_is_retried(self) -> None:
        imds = self.serve()
        short = (("Content-Length", "40"),)  # and the fake waits for the next request
        imds.inject("GET", "/latest/meta-data/instance-id", Reply(200, b"i-0123", short))
        client = imds.client(timeout=0.2)
        with mock.patch.object(ec2_metadata, "time", FakeClock()):
            self.assertEqual(client.instance_id, INSTANCE_ID)
        self.assertEqual(imds.count("GET", "/latest/meta-data/instance-id"), 2)
        self.assertEqual(imds.connections, 2)

    def test_an_answer_cut_off_in_its_headers_is_never_returned(self) -> None:
        # An answer whose header block never ends (no blank line) is cut short, whatever
        # headers made it through: it must not be read as an empty answer.
        status = b"HTTP/1.1 200 OK\r\n"
        cuts = {
            "after the status line": status,
            "status line without a reason": b"HTTP/1.1 200",
            "in a header name": status + b"Content-Type: text/plain\r\nContent-Le",
            "in the Content-Length value": status + b"Content-Length: ",
            "before the blank line": status + b"Content-Type: text/plain\r\n",
        }
        for name, cut in cuts.items():
            for method, path, attribute in [
                ("GET", "/latest/meta-data/instance-id", "instance_id"),
                ("PUT", TOKEN_PATH, "instance_id"),
                ("GET", "/latest/meta-data/security-groups", "security_groups"),
            ]:
                with self.subTest(name, method=method, attribute=attribute):
                    imds = self.serve()
                    imds.inject(method, path, raw_answer(cut))
                    with mock.patch.object(ec2_metadata, "time", FakeClock()):
                        self.assertEqual(getattr(imds.client(), attribute), ATTRIBUTES[attribute])
                    self.assertEqual(imds.count(method, path), 2)

    def test_a_kept_alive_connection_closed_between_reads_is_replaced_silently(self) -> None:
        imds = self.serve()
        client = imds.client(attempts=1)
        imds.inject(
            "GET", "/latest/meta-data/instance-id", close_after_answer(INSTANCE_ID.encode())
        )
        clock = FakeClock()
        with mock.patch.object(ec2_metadata, "time", clock):
            self.assertEqual(client.instance_id, INSTANCE_ID)
            self.assertEqual(client.mac, PRIMARY_MAC)
            self.assertEqual(client.ami_id, AMI_ID)
        self.assertEqual(clock.slept, [])
        self.assertEqual((imds.count("GET", MAC_PATH), imds.connections), (1, 2))
        self.assertEqual(imds.count("PUT"), 1)


class UnresponsiveServiceTests(LoopbackTestCase):
    """Nobody home: a bounded wait when nobody answers, none when nobody listens."""

    # The pauses between three attempts add at most 0.1 + 0.2 s.
    MARGIN = 0.3 + 0.5

    def test_an_endpoint_that_never_answers_raises_within_timeout_times_attempts(self) -> None:
        for attempts, variable in [(3, None), (None, "2")]:
            expected = attempts or int(variable or "3")
            with self.subTest(attempts=attempts, variable=variable), SilentService() as service:
                os.environ[TIMEOUT_VARIABLE] = "0.1"
                if variable is not None:
                    os.environ[ATTEMPTS_VARIABLE] = variable
                client = EC2Metadata(endpoint=service.url, attempts=attempts)
                started_at = time.monotonic()
                with self.assertRaises(EC2MetadataConnectionError) as caught:
                    client.instance_id
                elapsed = time.monotonic() - started_at
                self.assertLess(elapsed, 0.1 * expected + self.MARGIN)
                self.assertIn("timed out", str(caught.exception))
                self.assertEqual(service.connections(at_least=expected), expected)

    def test_a_read_that_is_never_answered_raises_within_timeout_times_attempts(self) -> None:
        imds = self.serve()
        client = imds.client(timeout=0.1, attempts=3)
        self.assertEqual(client.instance_id, INSTANCE_ID)
        imds.inject("GET", MAC_PATH, never_answer, never_answer, never_answer)
        started_at = time.monotonic()
        with self.assertRaises(EC2MetadataConnectionError) as caught:
            client.mac
        self.assertLess(time.monotonic() - started_at, 0.1 * 3 + self.MARGIN)
        self.assertEqual(caught.exception.path, "meta-data/mac")
        self.assertEqual(imds.count("GET", MAC_PATH), 3)
        self.assertEqual(client.mac, PRIMARY_MAC)

    def test_a_refused_port_raises_at_once_whatever_the_attempts(self) -> None:
        os.environ[ATTEMPTS_VARIABLE] = "5"
        for client in (
            EC2Metadata(endpoint=f"http://127.0.0.1:{closed_port()}", attempts=1000),
            EC2Metadata(endpoint=f"http://127.0.0.1:{closed_port()}"),
        ):
            clock = FakeClock()
            started_at = time.monotonic()
            fake_time = mock.patch.object(ec2_metadata, "time", clock)
            with fake_time, self.assertRaises(EC2MetadataConnectionError) as caught:
                client.instance_id
            self.assertLess(time.monotonic() - started_at, 0.5)
            self.assertIn("connection refused", str(caught.exception))
            self.assertEqual(clock.slept, [])


class RedirectAndProxyTests(LoopbackTestCase):
    """A token or a value never goes to a redirect target or a proxy."""

    def test_a_redirect_is_never_followed(self) -> None:
        target = self.serve()
        for method, path, status in [
            *[("GET", MAC_PATH, status) for status in REDIRECT_STATUSES],
            ("PUT", TOKEN_PATH, 307),
            ("PUT", TOKEN_PATH, 308),
        ]:
            for location in (target.url + path, "/elsewhere"):
                with self.subTest(method=method, status=status, location=location):
                    imds = self.serve()
                    imds.inject(method, path, Reply(status, b"", (("Location", location),)))
                    with self.assertRaises(EC2MetadataHTTPError) as caught:
                        imds.client().mac
                    self.assertEqual(caught.exception.status, status)
                    self.assertIn("redirects are never followed", str(caught.exception))
                    self.assertEqual(imds.count(method, path), 1)
                    self.assertEqual(imds.count(path="/elsewhere"), 0)
        self.assertEqual((target.requests, target.connections), ([], 0))

    def test_proxy_variables_are_ignored(self) -> None:
        proxy = self.serve()  # a proxy would see the requests, absolute URL and all
        for scheme in ("HTTP", "HTTPS", "ALL"):
            os.environ[f"{scheme}_PROXY"] = os.environ[f"{scheme.lower()}_proxy"] = proxy.url
        for name in ("NO_PROXY", "no_proxy"):
            os.environ.pop(name, None)
        self.assertEqual(urllib.request.getproxies()["http"], proxy.url)  # urllib would use it
        imds = self.serve()
        os.environ[ENDPOINT_VARIABLE] = imds.url
        for client in (imds.client(), ec2_metadata.ec2_metadata):
            self.assertEqual(client.instance_id, INSTANCE_ID)
            self.assertEqual(client.iam_security_credentials, CREDENTIALS)
        self.assertEqual(imds.count("PUT"), 2)
        self.assertEqual((proxy.requests, proxy.connections), ([], 0))


class HostileAnswerTests(LoopbackTestCase):
    """Answers too large, not UTF-8, not JSON, or oddly laid out."""

    def test_an_endless_answer_is_refused_quickly_in_bounded_memory(self) -> None:
        ok = b"HTTP/1.1 200 OK\r\n"
        chunked = ok + b"Transfer-Encoding: chunked\r\n\r\n"
        block = b"x" * 65536
        answers = {
            "body until close": (ok + b"\r\n", block),
            "chunked body": (chunked, b"10000\r\n" + block + b"\r\n"),
            "one chunk of 2**64 - 1 bytes": (chunked + b"ffffffffffffffff\r\n", block),
            "trailer lines after the last chunk": (
                chunked + b"13\r\n" + INSTANCE_ID.encode() + b"\r\n0\r\n",
                b"X-Trailer: " + b"x" * 1000 + b"\r\n",
            ),
            "interim 100 Continue answers": (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
            "header lines": (ok, b"X-Header: " + b"x" * 1000 + b"\r\n"),
            "one header line": (ok + b"X-Header: ", block),
            "a status line": (b"HTTP/1.1 200 ", block),
        }
        for name, (head, unit) in answers.items():
            with self.subTest(name):
                imds = self.serve()
                client = imds.client(attempts=1, timeout=0.5)
                self.assertEqual(client.mac, PRIMARY_MAC)
                imds.inject("GET", "/latest/meta-data/instance-id", endless(head, unit))
                tracemalloc.start()
                started_at = time.monotonic()
                try:
                    with self.assertRaises(EC2MetadataError):
                        client.instance_id
                    elapsed = time.monotonic() - started_at
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                self.assertLess(elapsed, 1.0, "the error took too long")
                self.assertLess(peak, 4 * LIMIT, "the answer was read into memory")
                self.assertEqual(client.ami_id, AMI_ID)

    def test_an_endless_body_names_the_limit(self) -> None:
        imds = self.serve()
        imds.inject("GET", "/latest/user-data", endless(b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 65536))
        with self.assertRaises(EC2MetadataMalformedError) as caught:
            imds.client().user_data
        self.assertIn("more than the 1048576-byte limit", str(caught.exception))
        self.assertEqual(caught.exception.path, "user-data")

    def test_text_that_is_not_utf8_is_malformed_and_names_the_path(self) -> None:
        interface = f"meta-data/network/interfaces/macs/{PRIMARY_MAC}"

        def primary(client: EC2Metadata) -> Any:
            return client.network_interfaces[PRIMARY_MAC]

        cases: dict[str, tuple[str, Callable[[EC2Metadata], object]]] = {
            name: (f"meta-data/{leaf}", operator.attrgetter(name))
            for name, leaf in [
                ("ami_id", "ami-id"),
                ("availability_zone", "placement/availability-zone"),
                ("availability_zone_id", "placement/availability-zone-id"),
                ("instance_action", "instance-action"),
                ("instance_id", "instance-id"),
                ("instance_type", "instance-type"),
                ("kernel_id", "kernel-id"),
                ("mac", "mac"),
                ("private_ipv4", "local-ipv4"),
                ("public_hostname", "public-hostname"),
                ("public_ipv4", "public-ipv4"),
                ("security_groups", "security-groups"),
                ("network_interfaces", "network/interfaces/macs/"),
                ("tags", "tags/instance/"),
                ("public_keys", "public-keys/"),
                ("iam_security_credentials", "iam/security-credentials/"),
            ]
        }
        cases.update(
            {
                "interface.subnet_id": (
                    f"{interface}/subnet-id",
                    lambda client: primary(client).subnet_id,
                ),
                "interface.public_hostname": (
                    f"{interface}/public-hostname",
                    lambda client: primary(client).public_hostname,
                ),
                "interface.ipv6s": (f"{interface}/ipv6s", lambda client: primary(client).ipv6s),
                "tags[Name]": ("meta-data/tags/instance/Name", lambda client: client.tags["Name"]),
                "openssh_key": (
                    "meta-data/public-keys/0/openssh-key",
                    lambda client: client.public_keys["web-key"].openssh_key,
                ),
                "fetch": ("meta-data/ami-id", lambda client: client.fetch("meta-data/ami-id")),
            }
        )
        for name, (path, read) in cases.items():
            with self.subTest(name):
                imds = self.serve()
                imds.inject("GET", f"/latest/{path}", Reply(200, b"caf\xe9 \xff\xfe"))
                with self.assertRaises(EC2MetadataMalformedError) as caught:
                    read(imds.client())
                self.assertEqual(caught.exception.path, path)
                self.assertIn(f"GET {path} is not UTF-8", str(caught.exception))
        imds = self.serve()
        imds.put("user-data", b"caf\xe9 \xff\xfe")
        self.assertEqual(imds.client().user_data, b"caf\xe9 \xff\xfe")  # bytes: any will do

    def test_json_that_is_not_json_is_malformed_and_names_the_path(self) -> None:
        cases = {
            "iam_info": "meta-data/iam/info",
            "instance_profile_arn": "meta-data/iam/info",
            "iam_security_credentials": f"meta-data/iam/security-credentials/{ROLE_NAME}",
            "instance_identity_document": "dynamic/instance-identity/document",
            "region": "dynamic/instance-identity/document",
            "account_id": "dynamic/instance-identity/document",
            "spot_instance_action": "meta-data/spot/instance-action",
            "rebalance_recommendation": "meta-data/events/recommendations/rebalance",
            "scheduled_events": "meta-data/events/maintenance/scheduled",
        }
        for body in (b"not json", b'{"accountId": "1"', b"<html>busy</html>", b"\xff{}"):
            for name, path in cases.items():
                with self.subTest(name, body=body):
                    imds = self.serve()
                    imds.put(path, body)
                    with self.assertRaises(EC2MetadataMalformedError) as caught:
                        getattr(imds.client(), name)
                    self.assertEqual(caught.exception.path, path)
                    self.assertIn(f"GET {path} ", str(caught.exception))

    def test_listings_with_blank_lines_crlf_and_padding(self) -> None:
        imds = self.serve()
        tree: Any = imds.tree
        macs = tree["meta-data"]["network"]["interfaces"]["macs"]
        listing = f"\r\n{PRIMARY_MAC}/  \r\n\r\n\t{SECONDARY_MAC}/\t\r\n \r\n"
        tree["meta-data"]["network"]["interfaces"]["macs"] = Directory(macs, listing)
        imds.put("meta-data/security-groups", "web \r\n\r\n ssh-access\t\r\n")
        imds.put(f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/security-groups", "\r\nweb\r\n")
        imds.put(
            f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/local-ipv4s",
            "172.31.16.25 \r\n\r\n172.31.16.99\r\n",
        )
        tags = tree["meta-data"]["tags"]["instance"]
        tree["meta-data"]["tags"]["instance"] = Directory(tags, "Name\r\n\r\n Environment \r\n")
        keys = tree["meta-data"]["public-keys"]
        tree["meta-data"]["public-keys"] = Directory(keys, "\r\n0=web-key \r\n\r\n")
        roles = tree["meta-data"]["iam"]["security-credentials"]
        tree["meta-data"]["iam"]["security-credentials"] = Directory(
            roles, f"\r\n{ROLE_NAME} \r\n\r\n"
        )
        client = imds.client()
        self.assertEqual(list(client.network_interfaces), [PRIMARY_MAC, SECONDARY_MAC])
        primary = client.network_interfaces[PRIMARY_MAC]
        self.assertEqual(primary.subnet_id, "subnet-00a1b2c3d4e5f6789")
        self.assertEqual(primary.security_groups, ["web"])
        self.assertEqual(primary.private_ipv4s, ["172.31.16.25", "172.31.16.99"])
        self.assertEqual(client.security_groups, ["web", "ssh-access"])
        self.assertEqual(list(client.tags), ["Name", "Environment"])
        self.assertEqual(dict(client.tags), {"Name": "web-1", "Environment": "production"})
        self.assertEqual(client.public_keys, {"web-key": PublicKey(0, client)})
        self.assertEqual(client.public_keys["web-key"].openssh_key, SSH_KEY)
        self.assertEqual(client.iam_security_credentials, CREDENTIALS)


THREADS = 32

THREAD_READS: dict[str, Callable[[EC2Metadata], object]] = {
    **{name: operator.attrgetter(name) for name in ATTRIBUTES},
    "subnet_id": lambda client: client.network_interfaces[PRIMARY_MAC].subnet_id,
    "tags[Name]": lambda client: client.tags["Name"],
    "openssh_key": lambda client: client.public_keys["web-key"].openssh_key,
}
THREAD_VALUES: dict[str, object] = {
    **ATTRIBUTES,
    "subnet_id": "subnet-00a1b2c3d4e5f6789",
    "tags[Name]": "web-1",
    "openssh_key": SSH_KEY,
}


class ConcurrencyTests(LoopbackTestCase):
    """Threads share one token and take turns on one connection; a fork gets its own."""

    def read_in_threads(self, client: EC2Metadata, imds: RecordingIMDS) -> None:
        for round_number in range(3):
            before = len(imds.seen)
            results = self.read_round(client, round_number)
            for result in results:
                self.assertEqual(result, THREAD_VALUES)
            seen = imds.seen[before:]
            self.assertGreater(len(seen), len(THREAD_READS))
            self.assertEqual([request.method for request in seen].count("PUT"), 1)
            self.assertEqual(len({request.port for request in seen}), 1)
            self.assertEqual([request for request in seen if request.interleaved], [])
            client.clear_all()

    def read_round(self, client: EC2Metadata, round_number: int) -> list[dict[str, object]]:
        """What each of THREADS threads read, started together, each in its own order."""
        barrier = threading.Barrier(THREADS)
        results: list[dict[str, object]] = [{} for _ in range(THREADS)]
        failures: list[BaseException] = []

        def read(index: int) -> None:
            names = list(THREAD_READS)
            random.Random(round_number * THREADS + index).shuffle(names)
            try:
                barrier.wait(timeout=10)
                for name in names:
                    results[index][name] = THREAD_READS[name](client)
            except BaseException as error:  # pragma: no cover - reported below
                failures.append(error)

        threads = [threading.Thread(target=read, args=(index,)) for index in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        self.assertEqual(failures, [])
        return results

    def test_32_threads_share_one_client(self) -> None:
        imds = started(self, RecordingIMDS())
        imds.delay = 0.001
        self.read_in_threads(imds.client(), imds)

    def test_32_threads_share_the_module_client(self) -> None:
        imds = started(self, RecordingIMDS())
        imds.delay = 0.001
        os.environ[ENDPOINT_VARIABLE] = imds.url
        ec2_metadata.ec2_metadata.clear_all()
        self.read_in_threads(ec2_metadata.ec2_metadata, imds)

    def test_the_fake_catches_interleaved_requests(self) -> None:
        # The proof above holds only if the fake sees a request sent before the last answer.
        imds = started(self, RecordingIMDS())
        imds.delay = 0.05
        with socket.create_connection(("127.0.0.1", imds.server.server_address[1])) as sock:
            request = f"PUT {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\n{TTL_HEADER}: 60\r\n\r\n"
            sock.sendall(request.encode() * 2)
            sock.settimeout(5)
            received = b""
            while received.count(b"HTTP/1.1 200") < 2:
                received += sock.recv(4096)
        self.assertEqual([seen.interleaved for seen in imds.seen], [True, False])

    def test_a_forked_child_reads_over_its_own_connection_while_the_parent_reads(self) -> None:
        if not hasattr(os, "fork"):  # pragma: no cover - Windows
            self.skipTest("no fork on this platform")
        imds = started(self, RecordingIMDS())
        imds.delay = 0.002
        client = imds.client()
        self.assertEqual(client.instance_id, INSTANCE_ID)
        connection = client._transport._connection
        assert connection is not None and connection.sock is not None
        parent_port = connection.sock.getsockname()[1]
        go_read, go_write = os.pipe()
        out_read, out_write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the fake's threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            self.read_in_the_child(client, go_read, out_write)
        os.close(out_write)
        os.write(go_write, b"!")
        parent_values = [client.instance_action for _ in range(20)]
        with os.fdopen(out_read) as pipe:
            report = json.loads(pipe.read())
        _, status = os.waitpid(pid, 0)
        os.close(go_read)
        os.close(go_write)
        self.assertEqual(status, 0)
        self.assertEqual(report.get("values"), ["none"] * 20 + [AMI_ID], report)
        self.assertEqual(parent_values, ["none"] * 20)
        self.assertEqual(client.instance_type, "t3.micro")
        connection = client._transport._connection
        assert connection is not None and connection.sock is not None
        self.assertEqual(connection.sock.getsockname()[1], parent_port)
        child_port = report["port"]
        self.assertNotIn(child_port, (0, parent_port))
        ports = [seen.port for seen in imds.seen]
        self.assertEqual(set(ports), {parent_port, child_port})
        self.assertEqual(ports.count(child_port), 21)
        self.assertEqual(ports.count(parent_port), 23)  # PUT, instance_id, 20 reads, the last
        self.assertEqual(imds.count("PUT"), 1)
        self.assertEqual([seen for seen in imds.seen if seen.interleaved], [])

    @staticmethod
    def read_in_the_child(client: EC2Metadata, go: int, out: int) -> NoReturn:  # pragma: no cover
        """Once told to go, read 21 values and report them and the port they came from."""
        try:
            os.read(go, 1)
            values = [client.instance_action for _ in range(20)] + [client.ami_id]
            connection = client._transport._connection
            port = connection.sock.getsockname()[1] if connection and connection.sock else 0
            result = {"values": values, "port": port}
        except BaseException as error:
            result = {"error": repr(error)}
        try:
            os.write(out, json.dumps(result).encode())
        finally:
            os._exit(0)


class TokenLifetimeTests(LoopbackTestCase):
    def test_no_request_carries_a_token_the_client_knew_had_expired(self) -> None:
        for ttl, steps in [
            (10, [0.5] * 40 + [9.0, 0.01, 8.99, 0.01, 10.0, 0.001, 100.0, 8.999, 0.002]),
            (1, [0.3] * 30 + [0.9, 0.1, 1.0, 0.5, 0.4]),
        ]:
            with self.subTest(ttl=ttl):
                clock = FakeClock()
                imds = started(self, RecordingIMDS(clock=clock))
                with mock.patch.object(ec2_metadata, "time", clock):
                    client = imds.client(token_ttl=ttl)
                    for step in steps:
                        self.assertEqual(client.instance_action, "none")
                        clock.now += step
                self.assertEqual([seen for seen in imds.seen if seen.stale_token], [])
                gets = [seen for seen in imds.seen if seen.method == "GET"]
                self.assertEqual(len(gets), len(steps), "a request was answered 401")
                self.assertGreater(imds.count("PUT"), 4)
                puts = [request for request in imds.requests if request.method == "PUT"]
                self.assertEqual({put.headers[TTL_HEADER.lower()] for put in puts}, {str(ttl)})

    def test_changing_the_wall_clock_changes_nothing(self) -> None:
        imds = started(self, RecordingIMDS())
        client = imds.client(token_ttl=3600)
        self.assertEqual(client.instance_action, "none")
        now = time.time()
        for jump in (3 * 86400, -3 * 86400, 400 * 86400, -1e9):
            with mock.patch("time.time", return_value=now + jump):
                self.assertEqual(client.instance_action, "none")
                self.assertEqual(client.instance_id, INSTANCE_ID)
                del client.instance_id
        self.assertEqual(imds.count("PUT"), 1)
        self.assertEqual([seen for seen in imds.seen if seen.stale_token], [])
        self.assertEqual(len({seen.token for seen in imds.seen if seen.method == "GET"}), 1)


class SecretTests(LoopbackTestCase):
    def test_secrets_never_show_in_errors_reprs_or_logs(self) -> None:
        imds = self.serve()
        client = imds.client(attempts=2)
        credentials_path = f"/latest/meta-data/iam/security-credentials/{ROLE_NAME}"
        secret_json = json.dumps(CREDENTIALS).encode()
        missing = dict(CREDENTIALS)
        del missing["Expiration"]
        cut_short = (("Content-Length", "9999"), ("Connection", "close"))
        failures: list[tuple[str, Fault]] = [
            ("a server error echoing the secrets", Reply(500, secret_json)),
            ("credentials lacking a key", Reply(200, json.dumps(missing).encode())),
            ("credentials that are not JSON", Reply(200, secret_json[:-9])),
            ("credentials that are not UTF-8", Reply(200, secret_json + b"\xff")),
            ("credentials cut short", Reply(200, secret_json, cut_short)),
            ("credentials over 1 MiB", Reply(200, secret_json * (LIMIT // len(secret_json) + 1))),
            ("credentials without end", endless(b"HTTP/1.1 200 OK\r\n\r\n", secret_json)),
            ("401 twice", Reply(401, secret_json)),
            ("a redirect", Reply(307, secret_json, (("Location", "http://127.0.0.1:9/x"),))),
        ]
        errors: list[BaseException] = []
        fake_time = mock.patch.object(ec2_metadata, "time", FakeClock())
        with self.assertLogs(level="DEBUG") as logs, fake_time:
            self.assertEqual(client.iam_security_credentials, CREDENTIALS)
            for _, fault in failures:
                vars(client).pop("iam_security_credentials", None)
                imds.inject("GET", credentials_path, fault, fault)
                try:
                    client.iam_security_credentials
                except EC2MetadataError as error:
                    errors.append(error)
                imds.faults.clear()
            imds.inject("PUT", TOKEN_PATH, Reply(503, secret_json), Reply(503, secret_json))
            client.clear_all()
            with self.assertRaises(EC2MetadataHTTPError) as caught:
                client.instance_id
            errors.append(caught.exception)
            logging.getLogger("ec2_metadata").debug("the capture works")
        self.assertEqual(len(errors), len(failures) + 1, [str(error) for error in errors])
        self.assertTrue(any("attempt 1 of 2 failed" in line for line in logs.output))
        secrets = {
            *{
                request.headers[TOKEN_HEADER.lower()]
                for request in imds.requests
                if request.method == "GET"
            },
            CREDENTIALS["SecretAccessKey"],
            CREDENTIALS["Token"],
        }
        texts = [*logs.output, repr(client), repr(client.tags)]
        texts += [repr(client.network_interfaces), repr(client.public_keys)]
        for failure in errors:
            texts += [str(failure), repr(failure), repr(vars(failure))]
            texts += traceback.format_exception(type(failure), failure, failure.__traceback__)
        for secret in secrets:
            for piece in (secret, secret[:12], secret[-12:]):
                for text in texts:
                    self.assertNotIn(piece, text)


def fresh(client: EC2Metadata, name: str, *derived_from: str) -> Callable[[], object]:
    """Reads attribute ``name`` of ``client`` anew (forgetting it and what it derives from)."""

    def read() -> object:
        for cached in (name, *derived_from):
            vars(client).pop(cached, None)
        value = getattr(client, name)
        if name == "network_interfaces":
            return list(value)
        return dict(value) if name == "tags" else value

    return read


class FuzzTests(LoopbackTestCase):
    SEED = 20261127

    def test_hostile_answers_give_right_values_or_ec2_metadata_errors(self) -> None:
        imds = started(self, ChaosIMDS(self.SEED, rate=0.4))
        client = imds.client(timeout=0.2, attempts=3)
        # Only values that must exist: for an optional one, a hostile 404 rightly gives None.
        reads: list[tuple[str, object, Callable[[], object]]] = [
            (path, body, functools.partial(client.fetch_bytes, path))
            for path, body in sorted(leaves(imds.tree))
        ]
        for name, expected in {
            "instance_id": INSTANCE_ID,
            "ami_launch_index": 0,
            "security_groups": ["web", "ssh-access"],
            "instance_identity_document": IDENTITY_DOCUMENT,
            "network_interfaces": [PRIMARY_MAC, SECONDARY_MAC],
            "tags": {"Name": "web-1", "Environment": "production"},
        }.items():
            reads.append((name, expected, fresh(client, name)))
        reads.append(("region", "eu-west-1", fresh(client, "region", "instance_identity_document")))
        rng = random.Random(self.SEED)
        clock = FakeClock()
        outcomes = {"right": 0, "error": 0}
        started_at = time.monotonic()
        with mock.patch.object(ec2_metadata, "time", clock):
            for operation in itertools.count():  # pragma: no branch - left by break
                if imds.count() >= 800:
                    break
                what, expected, read = rng.choice(reads)
                if rng.random() < 0.05:
                    client.clear_all()
                context = f"seed {self.SEED}, operation {operation}, {what}; {imds.log[-3:]}"
                begun = time.monotonic()
                try:
                    value = read()
                except EC2MetadataError:
                    outcomes["error"] += 1
                except BaseException as error:  # pragma: no cover - the failure to report
                    self.fail(f"{context}: raised {error!r}")
                else:
                    self.assertEqual(value, expected, context)
                    outcomes["right"] += 1
                # At most 3 attempts, each of a PUT, a GET, and both again after a 401.
                self.assertLess(time.monotonic() - begun, 3 * 4 * 0.2 + 1, context)
        self.assertLess(time.monotonic() - started_at, 20)
        self.assertTrue(all(pause <= 0.2 for pause in clock.slept), clock.slept)
        self.assertGreater(outcomes["right"], 100, outcomes)
        self.assertGreater(outcomes["error"], 0, outcomes)
        kinds = [entry.rsplit(": ", 1)[1] for entry in imds.log]
        self.assertEqual(set(kinds), set(MUTATIONS))
        self.assertGreater(len(kinds) - kinds.count("same"), 200)


def expected_tree(node: Tree) -> dict[str, object]:
    """What MetadataTree.to_dict() should give for a directory of the fake's tree."""
    names: dict[str, str] = {}
    if isinstance(node, Directory) and "=" in node.listing:
        names = dict(line.split("=", 1) for line in node.listing.splitlines())
    result: dict[str, object] = {}
    for key, value in node.items():
        name = names.get(key, key)
        if isinstance(value, dict):
            result[name] = expected_tree(value)
        else:
            result[name] = value.decode() if isinstance(value, bytes) else value
    return result


class TreeTests(LoopbackTestCase):
    def test_the_whole_tree(self) -> None:
        imds = self.serve()
        tree = imds.client().tree
        self.assertEqual(tree.to_dict(), expected_tree(imds.tree["meta-data"]))  # type: ignore[arg-type]
        self.assertEqual(imds.count("PUT"), 1)
        gets = [request.path for request in imds.requests if request.method == "GET"]
        self.assertEqual(len(gets), len(set(gets)))

    def test_directories_are_trees_leaves_are_strings(self) -> None:
        imds = self.serve()
        tree = imds.client().tree
        placement = tree["placement"]
        self.assertIsInstance(placement, MetadataTree)
        self.assertEqual(repr(placement), "MetadataTree('meta-data/placement/')")
        assert isinstance(placement, MetadataTree)
        self.assertEqual(placement["region"], "eu-west-1")
        self.assertEqual(tree["instance-id"], "i-0123456789abcdef0")
        self.assertEqual(len(placement), 6)
        self.assertIn("host-id", list(placement))
        with self.assertRaises(KeyError):
            placement["nothing"]

    def test_the_tree_is_lazy_and_keeps_what_it_fetched(self) -> None:
        imds = self.serve()
        client = imds.client()
        tree = client.tree
        self.assertEqual(imds.count(), 0)
        self.assertEqual(tree["mac"], PRIMARY_MAC)
        self.assertEqual(tree["mac"], PRIMARY_MAC)
        self.assertEqual(imds.count("GET"), 2)
        self.assertIs(client.tree, tree)
        del client.tree
        self.assertIsNot(client.tree, tree)

    def test_public_keys_by_name_and_the_mock_listing(self) -> None:
        tree = self.serve().client().tree
        self.assertEqual(list(tree["public-keys"]), ["web-key"])
        self.assertEqual(tree["public-keys"]["web-key"]["openssh-key"], SSH_KEY)  # type: ignore[index]
        mock_tree = self.serve(mock_quirks=True).client().tree
        self.assertEqual(mock_tree["public-keys"]["0"]["openssh-key"], SSH_KEY)  # type: ignore[index]

    def test_an_entry_listed_as_leaf_and_directory_is_one_directory(self) -> None:
        tree = self.serve(mock_quirks=True).client().tree
        iam = tree["iam"]
        assert isinstance(iam, MetadataTree)
        self.assertEqual(list(iam), ["info", "security-credentials"])
        self.assertIsInstance(iam["security-credentials"], MetadataTree)
        credentials = iam["security-credentials"]
        assert isinstance(credentials, MetadataTree)
        self.assertEqual(json.loads(cast(str, credentials[ROLE_NAME])), CREDENTIALS)

    def test_fetch_any_path(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.fetch("meta-data/placement/host-id"), "h-0a1b2c3d4e5f60718")
        self.assertEqual(client.fetch("/latest/meta-data/instance-id"), "i-0123456789abcdef0")
        self.assertEqual(
            json.loads(client.fetch("dynamic/instance-identity/document")), IDENTITY_DOCUMENT
        )
        self.assertEqual(client.fetch_bytes("user-data"), USER_DATA)
        self.assertEqual(client.fetch_bytes("/latest/user-data"), USER_DATA)
        self.assertEqual(imds.count("GET", "/latest/user-data"), 2)
        with self.assertRaises(EC2MetadataNotFoundError):
            client.fetch("meta-data/nothing")


class CommandLineTestCase(LoopbackTestCase):
    """Runs ``imds`` in this process against a fake that the environment points at."""

    def imds(self, *argv: str) -> tuple[int, bytes, str]:
        """Run ``imds ARGV`` in this process: its exit status, stdout and stderr.

        ``main`` returns the status: it never raises SystemExit, even for --help.
        """
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        stderr = io.StringIO()
        with mock.patch.object(sys, "stdout", stdout), mock.patch.object(sys, "stderr", stderr):
            status = ec2_metadata.main(list(argv))
            stdout.flush()
        return status, stdout.buffer.getvalue(), stderr.getvalue()

    def setUp(self) -> None:
        super().setUp()
        self.fake = self.serve()
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.fake.url


class CommandLineTests(CommandLineTestCase):
    def test_the_full_dump(self) -> None:
        for argv in ((), ("all",)):
            status, out, err = self.imds(*argv)
            self.assertEqual((status, err), (0, ""))
            document = json.loads(out)
            self.assertEqual(sorted(document), sorted(ec2_metadata._metadata_names(EC2Metadata)))
            self.assertEqual(document["region"], "eu-west-1")
            self.assertEqual(document["user_data"], USER_DATA.decode())
            self.assertEqual(document["tags"], {"Name": "web-1", "Environment": "production"})
            self.assertEqual(
                document["spot_instance_action"],
                {"action": "terminate", "time": "2026-11-27T04:02:00+00:00"},
            )
            self.assertEqual(
                document["scheduled_events"][0]["NotBefore"], "2026-12-04T09:00:00+00:00"
            )
            self.assertEqual(
                document["public_keys"], {"web-key": {"index": 0, "openssh_key": SSH_KEY}}
            )
            primary = document["network_interfaces"][PRIMARY_MAC]
            self.assertEqual(primary["mac"], PRIMARY_MAC)
            self.assertEqual(primary["ipv4_associations"], {"54.78.12.34": ["172.31.16.25"]})
            self.assertEqual(document["instance_identity_document"], IDENTITY_DOCUMENT)
            self.assertNotIn("errors", document)

    def test_the_dump_and_the_tree_against_the_mock(self) -> None:
        mock_imds = self.serve(mock_quirks=True)
        for path in (  # what amazon-ec2-metadata-mock does not serve
            "meta-data/ipv6",
            "dynamic/instance-identity/rsa2048",
            f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/ipv4-prefix",
            f"meta-data/network/interfaces/macs/{PRIMARY_MAC}/ipv6-prefix",
        ):
            mock_imds.remove(path)
        status, out, err = self.imds("--endpoint", mock_imds.url)
        document = json.loads(out)
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(document["public_keys"], {"0": {"index": 0, "openssh_key": SSH_KEY}})
        self.assertIsNone(document["ipv6"])
        self.assertEqual(document["network_interfaces"][PRIMARY_MAC]["ipv6_prefix"], [])
        self.assertEqual(list(document["errors"]), ["instance_identity_rsa2048"])
        status, out, _ = self.imds("--endpoint", mock_imds.url, "tree")
        tree = json.loads(out)
        self.assertEqual(status, 0)
        self.assertEqual(list(tree["iam"]), ["info", "security-credentials"])
        self.assertEqual(tree["public-keys"]["0"]["openssh-key"], SSH_KEY)

    def test_user_data_that_is_not_text_is_base64(self) -> None:
        self.fake.put("user-data", b"\x1f\x8b\x08\x00gzip")
        document = json.loads(self.imds()[1])
        self.assertEqual(document["user_data"], {"base64": "H4sIAGd6aXA="})

    def test_an_attribute_that_fails_is_reported_and_the_rest_printed(self) -> None:
        self.fake.remove("meta-data/tags")
        self.fake.remove(f"meta-data/network/interfaces/macs/{SECONDARY_MAC}/vpc-id")
        status, out, err = self.imds()
        document = json.loads(out)
        self.assertEqual((status, err), (0, ""))
        self.assertIsNone(document["tags"])
        self.assertIn("--instance-metadata-tags enabled", document["errors"]["tags"])
        where = f"network_interfaces.{SECONDARY_MAC}.vpc_id"
        self.assertIn("answered 404", document["errors"][where])
        self.assertEqual(len(document["errors"]), 2)
        self.assertEqual(document["region"], "eu-west-1")

    def test_get_prints_one_value(self) -> None:
        for argv, expected in [
            (("get", "instance-id"), b"i-0123456789abcdef0\n"),
            (("get", "instance_id"), b"i-0123456789abcdef0\n"),
            (("get", "instance-id", "-n"), b"i-0123456789abcdef0"),
            (("get", "ami-launch-index"), b"0\n"),
            (("get", "security-groups"), b"web\nssh-access\n"),
            (("get", "user-data"), USER_DATA),
            (("get", "user-data", "-n"), USER_DATA),
            (("get", "meta-data/placement/host-id"), b"h-0a1b2c3d4e5f60718\n"),
        ]:
            with self.subTest(argv):
                self.assertEqual(self.imds(*argv), (0, expected, ""))

    def test_get_prints_structures_as_json_and_none_as_nothing(self) -> None:
        status, out, _ = self.imds("get", "iam-info")
        self.assertEqual((status, json.loads(out)), (0, IAM_INFO))
        status, out, _ = self.imds("get", "rebalance-recommendation")
        self.assertEqual(json.loads(out), {"notice_time": "2026-11-27T03:50:00+00:00"})
        status, out, _ = self.imds("get", "dynamic/instance-identity/document")
        self.assertEqual(json.loads(out), IDENTITY_DOCUMENT)
        self.fake.remove("meta-data/public-ipv4")
        self.assertEqual(self.imds("get", "public-ipv4"), (0, b"", ""))

    def test_json_prints_the_named_values(self) -> None:
        status, out, err = self.imds("json", "region", "availability-zone", "meta-data/mac")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            json.loads(out),
            {
                "region": "eu-west-1",
                "availability-zone": "eu-west-1b",
                "meta-data/mac": PRIMARY_MAC,
            },
        )

    def test_tree_prints_the_whole_tree(self) -> None:
        status, out, _ = self.imds("tree", "--show-secrets")
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out), expected_tree(self.fake.tree["meta-data"]))  # type: ignore[arg-type]

    def test_a_failure_inside_a_value_fails_get_and_json(self) -> None:
        self.fake.remove(f"meta-data/network/interfaces/macs/{SECONDARY_MAC}/vpc-id")
        status, out, err = self.imds("get", "network-interfaces")
        self.assertEqual(status, 1)
        self.assertIsNone(json.loads(out)[SECONDARY_MAC]["vpc_id"])
        self.assertIn(f"imds: network-interfaces.{SECONDARY_MAC}.vpc_id:", err)
        status, out, err = self.imds("json", "network-interfaces")
        self.assertEqual(status, 1)
        self.assertIsNone(json.loads(out)["network-interfaces"][SECONDARY_MAC]["vpc_id"])
        self.assertIn(f"imds: network-interfaces.{SECONDARY_MAC}.vpc_id:", err)

    def test_an_unknown_name_is_a_usage_error_suggesting_the_closest(self) -> None:
        status, out, err = self.imds("get", "instance-idd")
        self.assertEqual((status, out), (2, b""))
        self.assertEqual(
            err,
            "imds get: unknown name 'instance-idd'; did you mean instance-id? A raw path needs "
            "a '/': meta-data/instance-idd (see imds get --help)\n",
        )

    def test_a_metadata_error_is_one_line_and_status_1(self) -> None:
        status, out, err = self.imds(
            "--endpoint", f"http://127.0.0.1:{closed_port()}", "get", "region"
        )
        self.assertEqual((status, out), (1, b""))
        self.assertEqual(err.count("\n"), 1)
        self.assertTrue(err.startswith("imds: PUT http://127.0.0.1:"))
        self.assertNotIn("Traceback", err)

    def test_endpoint_and_timeout_options_beat_the_environment(self) -> None:
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
        os.environ["AWS_METADATA_SERVICE_TIMEOUT"] = "nonsense"
        status, out, _ = self.imds("--endpoint", self.fake.url, "--timeout", "2", "get", "mac")
        self.assertEqual((status, out), (0, PRIMARY_MAC.encode() + b"\n"))

    def test_an_invalid_option_value_is_a_usage_error_in_the_options_terms(self) -> None:
        status, _, err = self.imds("--timeout", "-1", "get", "mac")
        self.assertEqual(
            (status, err), (2, "imds: --timeout must be a positive number of seconds, not '-1'\n")
        )

    def test_help_names_every_attribute(self) -> None:
        status, out, _ = self.imds("--help")
        self.assertEqual(status, 0)
        for name in ec2_metadata._metadata_names(EC2Metadata):
            self.assertIn(name, out.decode())
        self.assertEqual(self.imds("get", "--help")[0], 0)


class CommandLineSecretTests(CommandLineTestCase):
    """Issue 9, item 5: the dump and the tree keep the credentials' secrets to themselves."""

    SECRETS = (CREDENTIALS["SecretAccessKey"], CREDENTIALS["Token"])

    def assert_redacted(self, credentials: dict[str, object]) -> None:
        self.assertEqual(credentials["SecretAccessKey"], "<redacted>")
        self.assertEqual(credentials["Token"], "<redacted>")
        self.assertEqual(credentials["AccessKeyId"], CREDENTIALS["AccessKeyId"])
        self.assertEqual(credentials["Expiration"], CREDENTIALS["Expiration"])

    def test_the_dump_redacts_the_secret_and_the_token(self) -> None:
        for argv in ((), ("all",)):
            with self.subTest(argv):
                status, out, err = self.imds(*argv)
                self.assertEqual((status, err), (0, ""))
                for secret in self.SECRETS:
                    self.assertNotIn(secret.encode(), out)
                self.assert_redacted(json.loads(out)["iam_security_credentials"])

    def test_the_tree_redacts_every_credentials_document(self) -> None:
        self.fake.put(
            "meta-data/identity-credentials/ec2/security-credentials/ec2-instance",
            json.dumps(CREDENTIALS),
        )
        self.fake.put("meta-data/notes", '{"Token": not JSON')  # left as it is
        status, out, err = self.imds("tree")
        self.assertEqual((status, err), (0, ""))
        for secret in self.SECRETS:
            self.assertNotIn(secret.encode(), out)
        tree = json.loads(out)
        self.assert_redacted(json.loads(tree["iam"]["security-credentials"][ROLE_NAME]))
        identity = tree["identity-credentials"]["ec2"]["security-credentials"]["ec2-instance"]
        self.assert_redacted(json.loads(identity))
        self.assertEqual(tree["notes"], '{"Token": not JSON')

    def test_show_secrets_prints_them_before_or_after_the_command(self) -> None:
        for argv in (("--show-secrets",), ("all", "--show-secrets"), ("--show-secrets", "all")):
            with self.subTest(argv):
                status, out, _ = self.imds(*argv)
                self.assertEqual(status, 0)
                self.assertEqual(json.loads(out)["iam_security_credentials"], CREDENTIALS)
        status, out, _ = self.imds("tree", "--show-secrets")
        leaf = json.loads(out)["iam"]["security-credentials"][ROLE_NAME]
        self.assertEqual((status, json.loads(leaf)), (0, CREDENTIALS))

    def test_asking_for_the_credentials_by_name_prints_them(self) -> None:
        status, out, _ = self.imds("get", "iam-security-credentials")
        self.assertEqual((status, json.loads(out)), (0, CREDENTIALS))
        status, out, _ = self.imds("json", "iam-security-credentials")
        self.assertEqual((status, json.loads(out)), (0, {"iam-security-credentials": CREDENTIALS}))


class CommandLineOutputTests(CommandLineTestCase):
    """Issue 9, items 6 and 7: exact bytes, no added newline, empty lists and events."""

    GZIP = (
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff\xcbH\xcd\xc9\xc9\xe7\x02\x00 0:6\x06\x00\x00\x00"
    )

    def test_user_data_is_written_byte_for_byte(self) -> None:
        self.fake.put("user-data", self.GZIP)
        for argv in (
            ("get", "user-data"),
            ("get", "user-data", "-n"),
            ("get", "/latest/user-data"),
        ):
            with self.subTest(argv):
                self.assertEqual(self.imds(*argv), (0, self.GZIP, ""))

    def test_an_answer_that_is_not_utf8_is_written_byte_for_byte(self) -> None:
        self.fake.put("meta-data/blob", b"\xff\xfe\x00")
        self.assertEqual(self.imds("get", "meta-data/blob"), (0, b"\xff\xfe\x00", ""))
        status, out, _ = self.imds("json", "meta-data/blob")
        self.assertEqual((status, json.loads(out)), (0, {"meta-data/blob": {"base64": "//4A"}}))

    def test_text_that_ends_with_a_newline_gets_no_second_one(self) -> None:
        for argv in (
            ("get", "public-keys/0/openssh-key"),
            ("get", "public-keys/0/openssh-key", "-n"),
            ("get", "public-keys", "web-key"),
        ):
            with self.subTest(argv):
                status, out, _ = self.imds(*argv)
                if argv[-1] == "web-key":
                    self.assertEqual(json.loads(out), {"index": 0, "openssh_key": SSH_KEY})
                else:
                    self.assertEqual((status, out), (0, SSH_KEY.encode()))

    def test_n_leaves_out_the_added_newline_of_text_lists_and_json(self) -> None:
        self.assertEqual(self.imds("get", "security-groups", "-n")[1], b"web\nssh-access")
        self.assertEqual(self.imds("get", "ami-launch-index", "-n")[1], b"0")
        out = self.imds("get", "iam-info", "-n")[1]
        self.assertEqual((out[-1:], json.loads(out)), (b"}", IAM_INFO))

    def test_an_empty_list_prints_nothing(self) -> None:
        self.fake.remove("meta-data/product-codes")
        self.assertEqual(self.imds("get", "product-codes"), (0, b"", ""))
        self.fake.put("meta-data/tags/instance", {})
        self.assertEqual(self.imds("get", "tags"), (0, b"", ""))

    def test_scheduled_events_are_always_json(self) -> None:
        status, out, _ = self.imds("get", "scheduled-events")
        self.assertEqual((status, len(json.loads(out))), (0, 1))
        self.fake.put("meta-data/events/maintenance/scheduled", "[]")
        self.assertEqual(self.imds("get", "scheduled-events"), (0, b"[]\n", ""))
        self.fake.remove("meta-data/events/maintenance/scheduled")
        self.assertEqual(self.imds("get", "scheduled_events"), (0, b"[]\n", ""))


class CommandLineAbsenceTests(CommandLineTestCase):
    """Issue 9, item 7: one rule for absent names and raw paths, and --fail."""

    def test_an_absent_value_prints_nothing_and_exits_0(self) -> None:
        self.fake.remove("meta-data/public-ipv4")
        self.fake.remove("meta-data/instance-id")
        for given in ("public-ipv4", "meta-data/public-ipv4", "public-ipv4/", "instance-id"):
            with self.subTest(given):
                self.assertEqual(self.imds("get", given), (0, b"", ""))

    def test_with_fail_an_absent_value_exits_4_with_one_line(self) -> None:
        self.fake.remove("meta-data/public-ipv4")
        self.fake.remove("meta-data/instance-id")
        for given in ("public-ipv4", "meta-data/public-ipv4", "instance-id"):
            for flag in ("-f", "--fail"):
                with self.subTest(given=given, flag=flag):
                    status, out, err = self.imds("get", flag, given)
                    self.assertEqual((status, out), (4, b""))
                    self.assertTrue(err.startswith(f"imds: {given} is absent"), err)
                    self.assertEqual(err.count("\n"), 1)
        self.assertIn("answered 404", self.imds("get", "-f", "instance-id")[2])

    def test_tags_not_allowed_are_absent_and_fail_says_how_to_allow_them(self) -> None:
        self.fake.remove("meta-data/tags")
        self.assertEqual(self.imds("get", "tags"), (0, b"", ""))
        status, out, err = self.imds("get", "tags", "Name", "--fail")
        self.assertEqual((status, out), (4, b""))
        self.assertIn("--instance-metadata-tags enabled", err)

    def test_json_shows_an_absent_value_as_null_or_fails(self) -> None:
        self.fake.remove("meta-data/public-ipv4")
        status, out, _ = self.imds("json", "region", "public-ipv4", "meta-data/public-ipv4")
        self.assertEqual(status, 0)
        self.assertEqual(
            json.loads(out),
            {"region": "eu-west-1", "public-ipv4": None, "meta-data/public-ipv4": None},
        )
        status, out, err = self.imds("json", "region", "public-ipv4", "--fail")
        self.assertEqual((status, out), (4, b""))
        self.assertIn("public-ipv4 is absent", err)

    def test_a_missing_key_is_absent_and_a_key_needs_a_mapping(self) -> None:
        self.assertEqual(self.imds("get", "tags", "Nope"), (0, b"", ""))
        status, out, err = self.imds("get", "-f", "tags", "Nope")
        self.assertEqual((status, out, err), (4, b"", "imds: tags has no key 'Nope'\n"))
        status, out, err = self.imds("get", "region", "Name")
        self.assertEqual((status, out), (2, b""))
        self.assertIn("KEY is only for mappings", err)


class CommandLineHabitTests(CommandLineTestCase):
    """Issue 9, items 8 and 9: options anywhere, names in any case, raw paths and tags."""

    def test_shared_options_go_before_or_after_the_command(self) -> None:
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
        options = ("--endpoint", self.fake.url, "--timeout", "2", "--attempts", "2")
        for argv in (
            ("get", "region", *options),
            (*options, "get", "region"),
            ("get", *options, "region"),
            ("--endpoint", "http://127.0.0.1:1", "get", "region", "--endpoint", self.fake.url),
        ):
            with self.subTest(argv):
                self.assertEqual(self.imds(*argv), (0, b"eu-west-1\n", ""))
        for command in (("json", "region"), ("tree",), ("all",)):
            with self.subTest(command):
                self.assertEqual(self.imds(*command, "--endpoint", self.fake.url)[0], 0)

    def test_attempts_sets_the_tries_per_request(self) -> None:
        self.fake.inject("GET", "/latest/meta-data/mac", Reply(503), Reply(503))
        status, _, err = self.imds("get", "mac", "--attempts", "1")
        self.assertEqual(status, 1)
        self.assertIn("answered 503", err)
        self.assertEqual(
            self.imds("get", "mac", "--attempts", "2"), (0, PRIMARY_MAC.encode() + b"\n", "")
        )
        self.assertEqual(self.fake.count("GET", "/latest/meta-data/mac"), 3)

    def test_endpoint_mode_chooses_the_default_endpoint(self) -> None:
        del os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
        parser = ec2_metadata._parser([])
        for mode, expected in (
            ("IPv6", "http://[fd00:ec2::254]"),  # expected text, never connected to
            ("ipv4", "http://169.254.169.254"),  # expected text, never connected to
        ):
            with self.subTest(mode):
                args = parser.parse_args(["get", "mac", "--endpoint-mode", mode])
                client = ec2_metadata._client(args)  # no request: settings only
                self.assertEqual(client._transport.settings.endpoint, expected)

    def test_a_command_is_one_entry_in_the_table(self) -> None:
        seen: list[argparse.Namespace] = []

        def hello(args: argparse.Namespace) -> int:
            seen.append(args)
            return 7

        command = ec2_metadata._Command(hello, "say hello")
        with mock.patch.dict(ec2_metadata._COMMANDS, {"hello": command}):
            self.assertEqual(self.imds("hello", "--timeout", "2"), (7, b"", ""))
            self.assertEqual((seen[0].command, seen[0].timeout), ("hello", "2"))
            self.assertIn("say hello", self.imds("--help")[1].decode())

    def test_version(self) -> None:
        self.assertEqual(
            self.imds("--version"), (0, f"imds {ec2_metadata.__version__}\n".encode(), "")
        )

    def test_get_and_json_help_list_the_names_one_a_line_and_explain_raw_paths(self) -> None:
        for command in ("get", "json"):
            with self.subTest(command):
                status, out, _ = self.imds(command, "--help")
                lines = out.decode().splitlines()
                self.assertEqual(status, 0)
                for name in ec2_metadata._metadata_names(EC2Metadata):
                    self.assertIn(f"  {name}", lines)
                self.assertIn("is read under meta-data/", " ".join(lines))
                self.assertLessEqual(max(len(line) for line in lines), 100)
                self.assertIn("--endpoint-mode", out.decode())

    def test_names_are_case_insensitive(self) -> None:
        for given in ("INSTANCE-ID", "Instance_Id", "instance-ID"):
            with self.subTest(given):
                self.assertEqual(self.imds("get", given), (0, b"i-0123456789abcdef0\n", ""))
        status, out, _ = self.imds("json", "Region")
        self.assertEqual((status, json.loads(out)), (0, {"Region": "eu-west-1"}))

    def test_a_misspelt_name_gets_a_suggestion_in_its_own_style(self) -> None:
        for command, given, expected in (
            ("get", "instanse_id", "did you mean instance_id?"),
            ("json", "regoin", "did you mean region?"),
            ("get", "local-ipv4", "A raw path needs a '/': meta-data/local-ipv4"),
            ("get", "frobnicate", "'frobnicate'; A raw path needs a '/': meta-data/frobnicate"),
            ("get", "dynamic", "A raw path needs a '/': dynamic/ (see"),
        ):
            with self.subTest(given):
                status, out, err = self.imds(command, given)
                self.assertEqual((status, out), (2, b""))
                self.assertIn(expected, err)
                self.assertEqual(err.count("\n"), 1)

    def test_raw_paths_are_read_under_meta_data_unless_they_say_where(self) -> None:
        for given, expected in (
            ("placement/host-id", b"h-0a1b2c3d4e5f60718\n"),
            ("meta-data/placement/host-id", b"h-0a1b2c3d4e5f60718\n"),
            ("/latest/meta-data/placement/host-id", b"h-0a1b2c3d4e5f60718\n"),
            ("tags/instance/Name", b"web-1\n"),
            ("dynamic/instance-identity/signature", SIGNATURE.encode() + b"\n"),
            ("services/", b"domain\npartition\n"),
        ):
            with self.subTest(given):
                self.assertEqual(self.imds("get", given), (0, expected, ""))

    def test_tags_as_key_value_lines_and_one_by_name(self) -> None:
        self.assertEqual(self.imds("get", "tags"), (0, b"Name=web-1\nEnvironment=production\n", ""))
        self.assertEqual(self.imds("get", "tags", "Name"), (0, b"web-1\n", ""))
        self.assertEqual(self.imds("get", "tags", "Environment", "-n"), (0, b"production", ""))
        self.assertEqual(self.imds("get", "block-device-mapping", "root"), (0, b"/dev/xvda\n", ""))
        status, out, _ = self.imds("json", "tags")
        tags = {"Name": "web-1", "Environment": "production"}
        self.assertEqual((status, json.loads(out)), (0, {"tags": tags}))


class CommandLineMessageTests(CommandLineTestCase):
    """Issue 9, item 10: messages in the command line's terms, a status for each cause."""

    def test_option_values_are_checked_and_echoed_as_given(self) -> None:
        for argv, message in (
            (("--timeout", "1e999"), "--timeout must be a positive number of seconds, not '1e999'"),
            (("--timeout", "abc"), "--timeout must be a positive number of seconds, not 'abc'"),
            (("--attempts", "0"), "--attempts must be a whole number from 1 to 1000, not '0'"),
            (("--endpoint-mode", "IPv5"), "--endpoint-mode must be IPv4 or IPv6, not 'IPv5'"),
            (("--endpoint", "ftp://127.0.0.1"), "--endpoint must be a URL such as"),
        ):
            with self.subTest(argv):
                status, out, err = self.imds("get", "region", *argv)
                self.assertEqual((status, out), (2, b""))
                self.assertTrue(err.startswith(f"imds: {message}"), err)
                self.assertEqual(err.count("\n"), 1)
        self.assertEqual(self.fake.count(), 0)

    def test_bad_usage_is_one_line_and_status_2(self) -> None:
        for argv in (("get",), ("frobnicate",), ("get", "region", "--bogus"), ("--timeout",)):
            with self.subTest(argv):
                status, out, err = self.imds(*argv)
                self.assertEqual((status, out), (2, b""))
                self.assertEqual(err.count("\n"), 1, err)
                self.assertIn("--help)", err)

    def test_a_bad_environment_value_is_status_3_naming_the_variable(self) -> None:
        os.environ["AWS_METADATA_SERVICE_TIMEOUT"] = "abc"
        status, out, err = self.imds("get", "region")
        self.assertEqual(
            (status, out, err),
            (
                3,
                b"",
                "imds: AWS_METADATA_SERVICE_TIMEOUT must be a positive number of seconds, "
                "not 'abc'\n",
            ),
        )
        self.assertEqual(self.imds("get", "region", "--timeout", "2")[0], 0)

    def test_after_endpoint_the_hint_names_endpoint(self) -> None:
        unreachable = f"http://127.0.0.1:{closed_port()}"
        status, _, err = self.imds("get", "region", "--endpoint", unreachable)
        self.assertEqual(status, 1)
        self.assertIn("pass another --endpoint", err)
        self.assertNotIn("AWS_EC2_METADATA_SERVICE_ENDPOINT", err)
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = unreachable
        status, _, err = self.imds("get", "region")
        self.assertEqual(status, 1)
        self.assertIn("set AWS_EC2_METADATA_SERVICE_ENDPOINT", err)


class BrokenPipeBuffer(io.RawIOBase):
    """A standard output whose reader went away, and that is not a file."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def broken_pipe_stdout(test: unittest.TestCase) -> io.TextIOWrapper:
    """A standard output whose reader went away, closed (quietly) when ``test`` ends."""
    stdout = io.TextIOWrapper(io.BufferedWriter(BrokenPipeBuffer()))

    def close() -> None:
        with contextlib.suppress(OSError):  # its flush fails too, and then it closes
            stdout.close()

    test.addCleanup(close)
    return stdout


class CommandLineInterruptionTests(CommandLineTestCase):
    """Issue 9, item 11: Ctrl-C and failed writes end the command without a traceback."""

    def run_with_stdout(self, stdout: io.TextIOWrapper, *argv: str) -> tuple[int, str]:
        stderr = io.StringIO()
        with mock.patch.object(sys, "stdout", stdout), mock.patch.object(sys, "stderr", stderr):
            status = ec2_metadata.main(list(argv))
        return status, stderr.getvalue()

    def test_ctrl_c_inside_a_request_exits_130_silently(self) -> None:
        with mock.patch.object(ec2_metadata._Connection, "exchange", side_effect=KeyboardInterrupt):
            self.assertEqual(self.imds("get", "region"), (130, b"", ""))

    def test_ctrl_c_to_a_real_process_exits_130_without_a_traceback(self) -> None:
        with SilentService() as silent:
            child = subprocess.Popen(
                [sys.executable, "-m", "ec2_metadata", "get", "region", "--timeout", "30"],
                cwd=os.path.dirname(os.path.abspath(__file__)),
                env=dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=silent.url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            # Each try waits up to 2 s: a slow machine may take longer to start Python.
            connected = any(silent.connections(at_least=1) for _ in range(15))
            self.assertTrue(connected, "the child never connected")  # it waits for the token
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
        self.assertEqual((child.returncode, out, err), (130, b"", b""))

    def test_a_full_disk_is_one_line_and_status_1(self) -> None:
        for argv in (("get", "region"), ("get", "--help")):
            with self.subTest(argv), open("/dev/full", "wb") as full:
                stdout = io.TextIOWrapper(full)
                status, err = self.run_with_stdout(stdout, *argv)
                with contextlib.suppress(OSError):  # its flush fails too, and then it closes
                    stdout.close()
                self.assertEqual(
                    (status, err),
                    (1, "imds: cannot write the output: [Errno 28] No space left on device\n"),
                )

    def test_a_closed_pipe_is_one_line_and_status_1(self) -> None:
        stdout = broken_pipe_stdout(self)
        for argv in (("get", "region"), ("--help",)):
            with self.subTest(argv):
                status, err = self.run_with_stdout(stdout, *argv)
                self.assertEqual(
                    (status, err), (1, "imds: cannot write the output: [Errno 32] Broken pipe\n")
                )

    def test_a_closed_standard_output_is_one_line_and_status_1(self) -> None:
        stderr = io.StringIO()
        with mock.patch.object(sys, "stdout", None), mock.patch.object(sys, "stderr", stderr):
            status = ec2_metadata.main(["get", "region"])
        self.assertEqual(
            (status, stderr.getvalue()),
            (1, "imds: cannot write the output: standard output is closed\n"),
        )

    def test_real_processes_writing_to_dev_full_and_a_closed_pipe(self) -> None:
        command = [sys.executable, "-m", "ec2_metadata", "get", "region"]
        here = os.path.dirname(os.path.abspath(__file__))
        with open("/dev/full", "wb") as full:
            done = subprocess.run(
                command, cwd=here, stdout=full, stderr=subprocess.PIPE, check=False
            )
        self.assertEqual(
            (done.returncode, done.stderr),
            (1, b"imds: cannot write the output: [Errno 28] No space left on device\n"),
        )
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run(
                command, cwd=here, stdout=write_end, stderr=subprocess.PIPE, check=False
            )
        finally:
            os.close(write_end)
        self.assertEqual(
            (done.returncode, done.stderr),
            (1, b"imds: cannot write the output: [Errno 32] Broken pipe\n"),
        )


class ReadmeTests(CommandLineTestCase):
    """Issue 9, items 1 to 3: what the README and the module's docstring say is so."""

    README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")

    def readme(self) -> str:
        with open(self.README, encoding="utf-8") as file:
            return file.read()

    def test_the_python_examples_give_the_fakes_values(self) -> None:
        import doctest

        parser = doctest.DocTestParser()
        blocks = re.findall(r"```python\n(.*?)```", self.readme(), re.DOTALL)
        sources = {"README.md": "\n".join(blocks), "ec2_metadata.py": ec2_metadata.__doc__ or ""}
        for name, text in sources.items():
            with self.subTest(name):
                test = parser.get_doctest(text, {}, name, name, 0)
                self.assertGreater(len(test.examples), 2)
                output = io.StringIO()
                runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
                runner.run(test, out=output.write)
                self.assertEqual(runner.failures, 0, output.getvalue())

    def test_the_console_examples_print_what_they_show(self) -> None:
        text = self.readme()
        section = text[text.index("## The `imds` command") :]
        block = re.search(r"```console\n(.*?)```", section, re.DOTALL)
        assert block is not None
        checked = 0
        for example in re.split(r"^\$ ", block.group(1), flags=re.MULTILINE)[1:]:
            command, _, shown = example.partition("\n")
            argv = shlex.split(command, comments=True)
            if argv[0] != "imds" or not shown or ">" in argv:
                continue
            with self.subTest(command):
                self.assertEqual(self.imds(*argv[1:]), (0, shown.encode(), ""))
                checked += 1
        self.assertGreaterEqual(checked, 6)

    def test_every_command_runs_on_a_machine_with_only_python3(self) -> None:
        self.assertEqual(
            re.findall(
                r"(?<![\w./-])python(?![\w.-])[^\n]*", self.readme().replace("```python", "")
            ),
            [],
        )

    def test_install_commands_that_work_today(self) -> None:
        text = self.readme()
        self.assertIn("python3 -m pip install .", text)
        self.assertIn("python3 -m pip wheel .", text)
        self.assertIn("it is not on PyPI", text)

    def test_the_signature_is_the_one_described(self) -> None:
        import inspect

        described = re.search(r"`(EC2Metadata\(session=.*?\))`", self.readme(), re.DOTALL)
        assert described is not None
        parameters = []
        for parameter in inspect.signature(EC2Metadata).parameters.values():
            if parameter.kind is parameter.KEYWORD_ONLY and "*" not in parameters:
                parameters.append("*")
            parameters.append(f"{parameter.name}={parameter.default!r}")
        actual = f"EC2Metadata({', '.join(parameters)})"
        self.assertEqual(" ".join(described.group(1).split()), actual)

    def test_spot_action_and_rebalance_are_what_the_readme_says(self) -> None:
        when = datetime(2026, 11, 27, 4, 2, tzinfo=timezone.utc)
        action = SpotInstanceAction("terminate", when)
        self.assertEqual(action._asdict(), {"action": "terminate", "time": when})
        self.assertEqual(RebalanceRecommendation(when)._asdict(), {"notice_time": when})
        self.assertEqual(hash(action), hash(SpotInstanceAction("terminate", when)))
        self.assertFalse(isinstance(action, tuple))
        self.assertIn("is a small class, not a tuple", self.readme())


# Doctor --------------------------------------------------------------------------------

DOCTOR_CHECKS = [
    "settings",
    "proxy",
    "ec2",
    "container",
    "connect",
    "token",
    "imdsv1",
    "tags",
    "iam-role",
    "ipv6",
    "clock",
]
DMI = "sys/class/dmi/id/"
NITRO = {f"{DMI}sys_vendor": "Amazon EC2\n", f"{DMI}board_vendor": "Amazon EC2\n"}
XEN = {f"{DMI}sys_vendor": "Xen\n", f"{DMI}bios_version": "4.11.amazon\n"}
LAPTOP = {f"{DMI}sys_vendor": "LENOVO\n", f"{DMI}bios_version": "N2HET71W (1.54 )\n"}
CREDENTIALS_PATH = f"meta-data/iam/security-credentials/{ROLE_NAME}"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")
MODIFY = "aws ec2 modify-instance-metadata-options --instance-id ID"
HOP_LIMIT_FIX = f"{MODIFY} --http-put-response-hop-limit 2"


def utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def shifted_clock(offset: timedelta) -> datetime:
    """The time now, moved by ``offset``."""
    return datetime.now(timezone.utc) + offset


def fresh_credentials(now: datetime, **changes: str) -> str:
    """The fake's credentials, updated 10 minutes before ``now`` and good for 6 hours."""
    fields = dict(
        CREDENTIALS,
        LastUpdated=utc_text(now - timedelta(minutes=10)),
        Expiration=utc_text(now + timedelta(hours=6)),
    )
    fields.update(changes)
    return json.dumps(fields)


class IMDSv1FakeIMDS(FakeIMDS):
    """A FakeIMDS with IMDSv1 still on: a GET without a token is served as one with a token."""

    def _token_is_valid(self, token: str | None) -> bool:
        return token is None or super()._token_is_valid(token)


def run_imds(*argv: str) -> tuple[int, str, str]:
    """Run ``imds ARGV`` in this process: its exit status, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with mock.patch.object(sys, "stdout", stdout), mock.patch.object(sys, "stderr", stderr):
        status = ec2_metadata.main(list(argv))
    return status, stdout.getvalue(), stderr.getvalue()


class DoctorTestCase(LoopbackTestCase):
    """No proxy variables, and the default IPv6 endpoint on a closed loopback port."""

    def setUp(self) -> None:
        super().setUp()
        for name in PROXY_VARIABLES:
            os.environ.pop(name, None)
        # Not even `imds doctor`, whose IPv6 endpoint is the default one, may probe the real one.
        real_ipv6 = mock.patch.dict(
            ec2_metadata._DEFAULT_ENDPOINTS, ipv6=f"http://127.0.0.1:{closed_port()}"
        )
        real_ipv6.start()
        self.addCleanup(real_ipv6.stop)


class DoctorTests(DoctorTestCase):
    """`diagnose` against the fake: each failure the issue lists gives its finding and fix."""

    def setUp(self) -> None:
        super().setUp()
        self.now = datetime.now(timezone.utc)

    def healthy(self, fake: type[FakeIMDS] = FakeIMDS) -> FakeIMDS:
        """A fake with fresh credentials and a role named as its instance profile."""
        imds = started(self, fake())
        imds.put(CREDENTIALS_PATH, fresh_credentials(self.now))
        arn = f"arn:aws:iam::123456789012:instance-profile/{ROLE_NAME}"
        imds.put("meta-data/iam/info", json.dumps(dict(IAM_INFO, InstanceProfileArn=arn)))
        return imds

    def root(self, files: dict[str, str]) -> str:
        """A directory standing for ``/``, holding ``files`` (relative path to text)."""
        import tempfile

        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        for path, text in files.items():
            full = os.path.join(directory.name, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as file:
                file.write(text)
        return directory.name

    def diagnose(
        self, endpoint: str, files: dict[str, str] | None = None, **options: Any
    ) -> dict[str, ec2_metadata.Check]:
        options.setdefault("timeout", 0.5)
        options.setdefault("ipv6_endpoint", f"http://127.0.0.1:{closed_port()}")
        options.setdefault("now", lambda: datetime.now(timezone.utc))
        root = self.root(NITRO if files is None else files)
        checks = ec2_metadata.diagnose(endpoint=endpoint, root=root, **options)
        self.assertEqual([check.name for check in checks], DOCTOR_CHECKS)
        for check in checks:
            self.assertIn(check.status, ("ok", "warn", "fail", "skipped"))
            self.assertEqual(check.fix is not None, check.status in ("warn", "fail"), check)
        return {check.name: check for check in checks}

    def assertCheck(
        self, check: ec2_metadata.Check, status: str, *pieces: str, fix: str | None = None
    ) -> None:
        self.assertEqual(check.status, status, check)
        for piece in pieces:
            self.assertIn(piece, check.finding)
        if fix is not None:
            self.assertIn(fix, check.fix or "")

    def test_a_healthy_instance_passes_every_check(self) -> None:
        imds = self.healthy()
        checks = self.diagnose(imds.url)
        for name in DOCTOR_CHECKS:
            self.assertCheck(checks[name], "ok")
        self.assertCheck(checks["ec2"], "ok", "EC2 instance (Nitro)", "sys_vendor 'Amazon EC2'")
        self.assertCheck(checks["container"], "ok", "not in a container")
        self.assertCheck(checks["connect"], "ok", "connected to 127.0.0.1:")
        self.assertCheck(checks["token"], "ok", "token issued in")
        self.assertCheck(checks["imdsv1"], "ok", "IMDSv1 is off", "(401)")
        self.assertCheck(checks["tags"], "ok", "(2)")
        self.assertCheck(checks["iam-role"], "ok", f"role {ROLE_NAME};", "expire at", "(in 6 h)")
        self.assertCheck(checks["ipv6"], "ok", "not needed", "172.31.16.25")
        self.assertCheck(checks["clock"], "ok", "by the Date of the service's answer")
        # One request without a token, and its token's lifetime is short.
        tokenless = [
            r for r in imds.requests if r.method == "GET" and TOKEN_HEADER.lower() not in r.headers
        ]
        self.assertEqual([r.path for r in tokenless], ["/latest/meta-data/"])
        ttls = {r.headers[TTL_HEADER.lower()] for r in imds.requests if r.method == "PUT"}
        self.assertEqual(ttls, {"60"})

    def test_a_refused_port(self) -> None:
        checks = self.diagnose(f"http://127.0.0.1:{closed_port()}")
        self.assertCheck(
            checks["connect"], "fail", "connection refused", fix="AWS_EC2_METADATA_DISABLED=true"
        )
        for name in ("token", "imdsv1", "tags", "iam-role"):
            self.assertCheck(checks[name], "skipped", "could not connect (see connect)")
        # On EC2, the IPv6 endpoint is tried: here nothing listens there either.
        self.assertCheck(
            checks["ipv6"], "warn", "the IPv4 endpoint cannot be reached", "cannot be reached"
        )
        self.assertCheck(checks["clock"], "skipped", "nothing from the service")

    def test_a_refused_port_off_ec2_tries_no_ipv6(self) -> None:
        checks = self.diagnose(f"http://127.0.0.1:{closed_port()}", LAPTOP)
        self.assertCheck(checks["ec2"], "warn", "not an EC2 instance", "LENOVO")
        self.assertCheck(checks["ipv6"], "skipped", "could not connect")

    def test_an_unreachable_or_blackholed_endpoint(self) -> None:
        import errno

        for error, finding in [
            (OSError(errno.ENETUNREACH, "Network is unreachable"), "(network unreachable, "),
            (socket.timeout("timed out"), "timed out after 0.5s: nothing answers there"),
            (OSError(errno.EPERM, "Operation not permitted"), "([Errno 1] Operation not "),
        ]:
            with self.subTest(finding):
                with mock.patch.object(socket, "create_connection", side_effect=error):
                    checks = self.diagnose(f"http://127.0.0.1:{closed_port()}", LAPTOP)
                self.assertCheck(checks["connect"], "fail", finding, fix="off EC2")

    def test_an_endpoint_that_never_answers_is_diagnosed_within_a_bound(self) -> None:
        with SilentService() as service:
            started_at = time.monotonic()
            checks = self.diagnose(service.url, timeout=0.3)
            elapsed = time.monotonic() - started_at
        self.assertLess(elapsed, 3.0)
        self.assertCheck(checks["connect"], "ok")
        self.assertCheck(
            checks["token"],
            "fail",
            "(timed out, ",
            "a GET was not answered either: this is not the metadata service",
            fix="AWS_EC2_METADATA_SERVICE_ENDPOINT",
        )
        self.assertCheck(checks["imdsv1"], "skipped", "(timed out)")
        self.assertCheck(checks["tags"], "skipped", "no token (see token)")

    def test_the_hop_limit_token_dropped_while_gets_are_answered(self) -> None:
        imds = self.healthy()
        imds.inject("PUT", TOKEN_PATH, never_answer)
        checks = self.diagnose(imds.url, timeout=0.3)
        self.assertCheck(
            checks["token"],
            "fail",
            "the token answer never came within 0.3s",
            "a GET without a token was answered (401)",
            "hop limit of 1",
            fix=HOP_LIMIT_FIX,
        )
        self.assertCheck(checks["imdsv1"], "ok", "(401)")
        self.assertCheck(checks["container"], "ok", "not in a container")
        for name in ("tags", "iam-role", "ipv6"):
            self.assertCheck(checks[name], "skipped", "no token (see token)")

    def test_the_hop_limit_in_a_container_whose_gets_go_unanswered(self) -> None:
        with SilentService() as service:
            checks = self.diagnose(service.url, {**NITRO, ".dockerenv": ""}, timeout=0.3)
        self.assertCheck(checks["token"], "fail", "this runs in a container", fix=HOP_LIMIT_FIX)
        self.assertCheck(
            checks["container"], "warn", "/.dockerenv", "one hop more", fix=HOP_LIMIT_FIX
        )

    def test_container_markers(self) -> None:
        imds = self.healthy()
        for files, marker in [
            ({".dockerenv": ""}, "/.dockerenv"),
            ({"run/.containerenv": "engine=podman"}, "/run/.containerenv"),
            ({"proc/1/cgroup": "0::/kubepods/besteffort/pod1\n"}, "/proc/1/cgroup names kubepods"),
            ({"proc/self/cgroup": "12:pids:/docker/0a1b\n"}, "/proc/self/cgroup names docker"),
        ]:
            with self.subTest(marker):
                checks = self.diagnose(imds.url, {**NITRO, **files})
                self.assertCheck(
                    checks["container"],
                    "ok",
                    f"in a container: {marker}",
                    "token answer reaches it",
                )
        checks = self.diagnose(imds.url, {**NITRO, "proc/1/cgroup": "0::/init.scope\n"})
        self.assertCheck(checks["container"], "ok", "not in a container")

    def test_a_container_without_a_service(self) -> None:
        checks = self.diagnose(f"http://127.0.0.1:{closed_port()}", {".dockerenv": ""})
        self.assertEqual(checks["container"].finding, "in a container: /.dockerenv")

    def test_the_service_turned_off(self) -> None:
        imds = self.healthy()
        imds.inject("PUT", TOKEN_PATH, Reply(403, b"Forbidden"))
        imds.inject("GET", "/latest/meta-data/", Reply(403, b"Forbidden"))
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["token"],
            "fail",
            "refused (403)",
            "turned off",
            fix=f"{MODIFY} --http-endpoint enabled",
        )
        self.assertCheck(checks["imdsv1"], "ok", "refused (403)")
        self.assertCheck(checks["container"], "ok", "not in a container")

    def test_a_token_answered_with_another_status(self) -> None:
        imds = self.healthy()
        for reply in (Reply(405), Reply(503)):
            imds.inject("PUT", TOKEN_PATH, reply)
            checks = self.diagnose(imds.url)
            self.assertCheck(
                checks["token"], "fail", f"answered {reply.status}", fix="try again in a minute"
            )

    def test_a_token_request_cut_off_while_gets_are_answered(self) -> None:
        imds = self.healthy()
        imds.inject("PUT", TOKEN_PATH, drop_connection)
        checks = self.diagnose(imds.url)
        self.assertCheck(checks["token"], "fail", "the token request failed (", fix="try again")
        self.assertNotIn("not the metadata service", checks["token"].finding)

    def test_imdsv1_still_open(self) -> None:
        imds = self.healthy(IMDSv1FakeIMDS)
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["imdsv1"],
            "warn",
            "IMDSv1 is on",
            "answered 200 (its body was discarded)",
            fix=f"{MODIFY} --http-tokens required",
        )
        tokenless = [
            request.path
            for request in imds.requests
            if request.method == "GET" and TOKEN_HEADER.lower() not in request.headers
        ]
        self.assertEqual(tokenless, ["/latest/meta-data/"])

    def test_a_tokenless_get_answered_otherwise(self) -> None:
        imds = self.healthy()
        imds.inject("GET", "/latest/meta-data/", Reply(500))
        checks = self.diagnose(imds.url)
        self.assertCheck(checks["imdsv1"], "skipped", "not answered plainly (answered 500)")

    def test_tags_not_in_the_metadata(self) -> None:
        imds = self.healthy()
        imds.remove("meta-data/tags")
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["tags"], "warn", "answered 404", fix=f"{MODIFY} --instance-metadata-tags enabled"
        )

    def test_no_role(self) -> None:
        imds = self.healthy()
        imds.remove("meta-data/iam")
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["iam-role"],
            "warn",
            "no IAM role is attached",
            "Unable to locate credentials",
            fix="aws ec2 associate-iam-instance-profile --instance-id ID",
        )
        self.assertCheck(checks["clock"], "ok", "by the Date of the service's answer")

    def test_a_profile_without_a_role(self) -> None:
        imds = self.serve()
        imds.remove("meta-data/iam/security-credentials")
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["iam-role"],
            "fail",
            "instance profile web-stack-WebProfile-O8XJ5GQZ2K1A is attached",
            fix="aws iam add-role-to-instance-profile --instance-profile-name web-stack-WebProfile",
        )

    def test_a_role_whose_name_differs_from_the_profiles(self) -> None:
        imds = self.healthy()
        imds.put("meta-data/iam/info", json.dumps(IAM_INFO))
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["iam-role"],
            "warn",
            f"role {ROLE_NAME}",
            "differs from the instance profile's (web-stack-WebProfile-O8XJ5GQZ2K1A)",
            "gets a 404",
            fix="read the role's name from meta-data/iam/security-credentials/",
        )

    def test_a_role_without_a_profile_and_credentials_without_dates(self) -> None:
        imds = self.healthy()
        imds.remove("meta-data/iam/info")
        imds.put(CREDENTIALS_PATH, fresh_credentials(self.now, Expiration="soon"))
        checks = self.diagnose(imds.url)
        self.assertCheck(checks["iam-role"], "ok", "instance profile unknown")
        self.assertNotIn("expire", checks["iam-role"].finding)

    def test_credentials_not_issued(self) -> None:
        imds = self.healthy()
        path = f"/latest/{CREDENTIALS_PATH}"
        failed = json.dumps({"Code": "AssumeRoleUnauthorizedAccess", "LastUpdated": "x"})
        for fault, outcome in [(Reply(404), "(404)"), (Reply(200, failed.encode()), "AssumeRole")]:
            imds.inject("GET", path, fault)
            checks = self.diagnose(imds.url)
            self.assertCheck(
                checks["iam-role"],
                "fail",
                "is listed, but its credentials were not issued",
                outcome,
                fix="trust policy",
            )

    def test_expired_credentials(self) -> None:
        imds = self.healthy()
        imds.put(
            CREDENTIALS_PATH,
            fresh_credentials(self.now, Expiration=utc_text(self.now - timedelta(hours=2))),
        )
        checks = self.diagnose(imds.url)
        self.assertCheck(checks["iam-role"], "ok", "(2 h ago)")
        self.assertCheck(
            checks["clock"],
            "warn",
            "ahead of the service's, by the credentials' Expiration",
            fix="chronyc",
        )

    def test_a_request_that_fails_fails_its_check_only(self) -> None:
        imds = self.healthy()
        imds.inject("GET", "/latest/meta-data/tags/instance/", Reply(500, b"oops"))
        checks = self.diagnose(imds.url)
        self.assertCheck(checks["tags"], "fail", "answered 500", fix="try again")
        self.assertCheck(checks["iam-role"], "ok")

    def test_a_request_never_answered_skips_the_rest(self) -> None:
        imds = self.healthy()
        imds.inject("GET", "/latest/meta-data/tags/instance/", never_answer)
        started_at = time.monotonic()
        checks = self.diagnose(imds.url, timeout=0.3)
        self.assertLess(time.monotonic() - started_at, 3.0)
        self.assertCheck(checks["tags"], "fail", "timed out", fix="longer --timeout")
        self.assertCheck(checks["iam-role"], "skipped", "an earlier request got no answer")
        self.assertCheck(checks["ipv6"], "skipped", "cannot tell whether the instance has an IPv4")
        self.assertEqual(imds.count("GET", "/latest/meta-data/iam/info"), 0)

    def test_proxy_variables(self) -> None:
        imds = self.healthy()
        os.environ.update(
            {"HTTP_PROXY": "http://user:hunter2@proxy.example:3128", "all_proxy": "socks5://p:1080"}
        )
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["proxy"],
            "warn",
            "HTTP_PROXY, all_proxy set, and NO_PROXY does not cover 127.0.0.1",
            "other tools here",
            fix="export NO_PROXY=127.0.0.1,169.254.169.254,fd00:ec2::254",  # expected text
        )
        self.assertNotIn("hunter2", repr(checks))
        os.environ["no_proxy"] = "localhost"
        self.assertIn("NO_PROXY=localhost,127.0.0.1,", self.diagnose(imds.url)["proxy"].fix or "")
        for covering in ("127.0.0.1", "127.0.0.0/8", "*", "localhost, 127.0.0.1"):
            with self.subTest(covering):
                os.environ["NO_PROXY"] = covering
                self.assertCheck(
                    self.diagnose(imds.url)["proxy"], "ok", "NO_PROXY covers 127.0.0.1"
                )

    def test_no_proxy_matching(self) -> None:
        covers = ec2_metadata._no_proxy_covers
        self.assertTrue(covers([".internal"], "imds.internal"))
        self.assertTrue(covers(["*.internal"], "imds.internal"))
        self.assertTrue(covers(["[fd00:ec2::254]"], "fd00:ec2::254"))
        self.assertTrue(covers(["fd00:ec2::/32"], "fd00:ec2::254"))
        self.assertFalse(covers(["ternal", "10.0.0.0/8", "example.com"], "imds.internal"))
        self.assertFalse(covers(["169.254.169.0/24"], "imds.internal"))
        self.assertFalse(covers(["10.0.0.0/8", "fd00::/8"], "169.254.169.254"))

    def test_dmi_files(self) -> None:
        imds = self.healthy()
        for files, status, finding in [
            (NITRO, "ok", "an EC2 instance (Nitro): sys_vendor 'Amazon EC2'"),
            ({f"{DMI}board_vendor": "Amazon EC2"}, "ok", "(Nitro): board_vendor 'Amazon EC2'"),
            (XEN, "ok", "an EC2 instance (Xen): sys_vendor 'Xen', bios_version '4.11.amazon'"),
            (LAPTOP, "warn", "not an EC2 instance, by its DMI: sys_vendor 'LENOVO'"),
            ({}, "skipped", "no DMI files in /sys/class/dmi/id"),
        ]:
            with self.subTest(finding):
                self.assertCheck(self.diagnose(imds.url, files)["ec2"], status, finding)
        self.assertIn(
            "AWS_EC2_METADATA_DISABLED=true", self.diagnose(imds.url, LAPTOP)["ec2"].fix or ""
        )

    def test_clock_skew_by_the_services_date(self) -> None:
        imds = self.healthy()
        for offset, status, shown, direction in [
            (timedelta(seconds=50), "ok", "s", "ahead of"),
            (timedelta(minutes=4), "ok", "4 min", "ahead of"),
            (timedelta(minutes=6), "warn", "6 min", "ahead of"),
            (timedelta(hours=3), "warn", "3 h", "ahead of"),
            (-timedelta(days=400), "warn", "400 days", "behind"),
        ]:
            with self.subTest(offset):
                checks = self.diagnose(imds.url, now=functools.partial(shifted_clock, offset))
                self.assertCheck(
                    checks["clock"], status, f"{shown} {direction} the service's, by the Date"
                )
        self.assertIn("sudo chronyc makestep", checks["clock"].fix or "")

    def test_clock_skew_by_the_credentials(self) -> None:
        imds = self.healthy()
        later = self.now + timedelta(hours=1)
        imds.put(CREDENTIALS_PATH, fresh_credentials(self.now, LastUpdated=utc_text(later)))
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["clock"],
            "warn",
            "behind the service's, by the credentials' LastUpdated",
            "5 minutes",
            fix="chronyc",
        )

    def test_the_clock_without_a_date_header(self) -> None:
        imds = self.healthy()
        token_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n%s\r\ntoken"
        imds.inject("PUT", TOKEN_PATH, raw_answer(token_answer % b""))
        checks = self.diagnose(imds.url)  # the Date of the GET without a token serves
        self.assertCheck(checks["clock"], "ok", "by the Date of the service's answer")
        imds.inject("PUT", TOKEN_PATH, raw_answer(token_answer % b"Date: nonsense\r\n"))
        refusal = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
        imds.inject("GET", "/latest/meta-data/", raw_answer(refusal))
        checks = self.diagnose(imds.url)
        self.assertCheck(checks["clock"], "ok", "past the credentials' LastUpdated and before")
        imds.inject("PUT", TOKEN_PATH, raw_answer(token_answer % b""))
        imds.inject("GET", "/latest/meta-data/", raw_answer(refusal))
        imds.remove("meta-data/iam")
        checks = self.diagnose(imds.url)
        self.assertCheck(checks["clock"], "skipped", "nothing from the service")

    def test_a_date_in_minus_0000_is_utc(self) -> None:
        imds = self.healthy()
        moment = datetime(2026, 11, 30, 4, 0, 1, tzinfo=timezone.utc)
        imds.put(CREDENTIALS_PATH, fresh_credentials(moment))
        date = b"Date: Mon, 30 Nov 2026 04:00:00 -0000\r\n"
        imds.inject(
            "PUT", TOKEN_PATH, raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n%s\r\nt" % date)
        )
        checks = self.diagnose(imds.url, now=lambda: moment)
        self.assertCheck(checks["clock"], "ok", "the local clock is 1s ahead of the service's")

    def test_invalid_settings_fail_and_skip_the_service(self) -> None:
        os.environ[TIMEOUT_VARIABLE] = "soon"
        checks = self.diagnose(f"http://127.0.0.1:{closed_port()}", timeout=None)
        self.assertCheck(checks["settings"], "fail", TIMEOUT_VARIABLE, fix="correct or unset")
        self.assertCheck(checks["proxy"], "ok")
        for name in ("connect", "token", "imdsv1", "tags", "iam-role", "ipv6"):
            self.assertCheck(checks[name], "skipped", "the settings are invalid")

    def test_the_settings_and_where_they_come_from(self) -> None:
        imds = self.healthy()
        config = os.path.join(self.root({"config": "[default]\nmetadata_service_timeout = 0.7\n"}))
        os.environ["AWS_CONFIG_FILE"] = os.path.join(config, "config")
        os.environ[ATTEMPTS_VARIABLE] = "2"
        checks = self.diagnose(imds.url, timeout=None)
        self.assertEqual(
            checks["settings"].finding,
            f"endpoint {imds.url} (argument endpoint=); endpoint mode IPv4 (default); "
            f"timeout 0.7s (config file {config}/config, profile default, key "
            "metadata_service_timeout); attempts 2 (environment variable "
            "AWS_METADATA_SERVICE_NUM_ATTEMPTS); disabled false (default)",
        )
        self.assertCheck(checks["settings"], "ok")
        self.assertCheck(checks["token"], "ok")

    def test_disabled_fails_but_the_service_is_still_checked(self) -> None:
        imds = self.healthy()
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["settings"],
            "fail",
            "disabled true",
            "every metadata read fails",
            fix="AWS_EC2_METADATA_DISABLED",
        )
        self.assertCheck(checks["token"], "ok")
        self.assertCheck(checks["tags"], "ok")

    def test_ipv6_mode(self) -> None:
        imds = self.healthy()
        checks = self.diagnose(imds.url, endpoint_mode="IPv6", ipv6_endpoint=imds.url)
        self.assertCheck(checks["settings"], "ok", "endpoint mode IPv6")
        self.assertCheck(checks["ipv6"], "ok", "the endpoint mode is IPv6", "accepts connections")
        for unreachable in (f"http://127.0.0.1:{closed_port()}", f"http://[::1]:{closed_port()}"):
            checks = self.diagnose(imds.url, endpoint_mode="IPv6", ipv6_endpoint=unreachable)
            self.assertCheck(
                checks["ipv6"],
                "fail",
                f"the endpoint mode is IPv6, but the IPv6 endpoint {unreachable} cannot be reached",
                fix=f"{MODIFY} --http-protocol-ipv6 enabled",
            )

    def test_an_instance_without_ipv4(self) -> None:
        imds = self.healthy()
        imds.remove("meta-data/local-ipv4")
        checks = self.diagnose(imds.url, ipv6_endpoint=imds.url)
        self.assertCheck(checks["ipv6"], "ok", "the instance has no IPv4 address", "accepts")
        checks = self.diagnose(imds.url)
        self.assertCheck(
            checks["ipv6"], "warn", "cannot be reached", fix="--http-protocol-ipv6 enabled"
        )

    def test_an_ipv6_only_instance_on_the_ipv4_endpoint(self) -> None:
        imds = self.healthy()
        checks = self.diagnose(f"http://127.0.0.1:{closed_port()}", ipv6_endpoint=imds.url)
        self.assertCheck(checks["connect"], "fail", "connection refused")
        self.assertCheck(
            checks["ipv6"],
            "warn",
            "the IPv4 endpoint cannot be reached on this EC2 instance",
            "accepts connections",
            fix="export AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6",
        )

    def test_no_secret_is_ever_printed(self) -> None:
        imds = self.healthy()
        secret_json = fresh_credentials(self.now).encode()
        outputs = [repr(self.diagnose(imds.url))]
        path = f"/latest/{CREDENTIALS_PATH}"
        for fault in (
            Reply(500, secret_json),
            Reply(200, secret_json[:-5]),
            Reply(200, json.dumps(dict(CREDENTIALS, Code="Failed")).encode()),
        ):
            imds.inject("GET", path, fault)
            outputs.append(repr(self.diagnose(imds.url)))
        os.environ[ENDPOINT_VARIABLE] = imds.url
        outputs += [run_imds("doctor")[1], run_imds("doctor", "--json")[1]]
        for fault in (Reply(500, secret_json), Reply(200, secret_json)):
            imds.inject("GET", path, fault)
            outputs.append(run_imds("doctor")[1])
        self.assertTrue(any("answered 500" in output for output in outputs))
        tokens = set(imds.tokens)  # every token issued, those of the doctor's probes too
        self.assertGreater(len(tokens), 10)
        for secret in (
            CREDENTIALS["SecretAccessKey"],
            CREDENTIALS["Token"],
            CREDENTIALS["AccessKeyId"],
            *tokens,
        ):
            for output in outputs:
                self.assertNotIn(secret, output)


class DoctorCommandTests(DoctorTestCase):
    """``imds doctor``: the table, ``--json``, and the exit status."""

    def test_the_table(self) -> None:
        imds = self.serve()
        imds.remove("meta-data/tags")
        status, out, err = run_imds("--endpoint", imds.url, "doctor")
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["CHECK", "STATUS", "FINDING"])
        self.assertEqual(lines[-2], "")
        rows = {line.split()[0]: line.split()[1] for line in lines[1:-2] if line[:1].strip()}
        self.assertEqual(list(rows), DOCTOR_CHECKS)
        self.assertEqual(rows["tags"], "warn")
        fix = lines[lines.index(next(line for line in lines if line.startswith("tags"))) + 1]
        self.assertEqual(fix.split("fix: ")[1], f"{MODIFY} --instance-metadata-tags enabled")
        self.assertRegex(lines[-1], r"^0 fail, \d+ warn, \d+ ok, \d+ skipped$")

    def test_json_and_exit_status_1_when_a_check_failed(self) -> None:
        imds = self.serve()
        imds.inject("PUT", TOKEN_PATH, Reply(403))
        status, out, err = run_imds("--endpoint", imds.url, "--timeout", "0.5", "doctor", "--json")
        self.assertEqual((status, err), (1, ""))
        document = json.loads(out)
        self.assertFalse(document["ok"])
        self.assertEqual([check["name"] for check in document["checks"]], DOCTOR_CHECKS)
        token = document["checks"][DOCTOR_CHECKS.index("token")]
        self.assertEqual(token["status"], "fail")
        self.assertEqual(token["fix"], f"{MODIFY} --http-endpoint enabled")
        self.assertEqual(list(token), ["name", "status", "finding", "fix"])
        self.assertIn("timeout 0.5s", document["checks"][0]["finding"])

    def test_a_refused_port_exits_1(self) -> None:
        status, out, _ = run_imds("--endpoint", f"http://127.0.0.1:{closed_port()}", "doctor")
        self.assertEqual(status, 1)
        self.assertIn("connection refused", out)

    def test_a_silent_endpoint_with_the_default_timeout_is_bounded(self) -> None:
        with SilentService() as service:
            started_at = time.monotonic()
            status, out, _ = run_imds("--endpoint", service.url, "doctor")
            elapsed = time.monotonic() - started_at
        self.assertEqual(status, 1)
        self.assertRegex(out, r"\ntoken +fail +connected, but ")
        self.assertLess(elapsed, 6.0)

    def test_help(self) -> None:
        stdout = io.StringIO()
        with mock.patch.object(sys, "stdout", stdout):
            self.assertEqual(ec2_metadata.main(["doctor", "--help"]), 0)
        self.assertIn("--json", stdout.getvalue())


# The watch: imds watch and its library API ------------------------------------------

SPOT_PATH = "meta-data/spot/instance-action"
REBALANCE_PATH = "meta-data/events/recommendations/rebalance"
SCHEDULED_PATH = "meta-data/events/maintenance/scheduled"
LIFECYCLE_PATH = "meta-data/autoscaling/target-lifecycle-state"
NOTICE_PATHS = (SPOT_PATH, REBALANCE_PATH, SCHEDULED_PATH, LIFECYCLE_PATH)
SPOT_KEY = "spot:terminate:2026-11-27T04:02:00+00:00"
REBALANCE_KEY = "rebalance:2026-11-27T03:50:00+00:00"
REBALANCE_NOTICE = json.dumps({"noticeTime": "2026-11-27T03:50:00Z"})
SCHEDULED_KEY = "scheduled:instance-event-0d59937288b749b32:active"

# A hook for --exec: it records the event it got (stdin and IMDS_* variables) in the
# directory OUT as NNN.json, then does what MODE says: "record" exits 0, "fail" exits 3,
# "hang" (or "hang-first", for the first event only) waits to be ended, and notes the
# SIGTERM that ends it in NNN.terminated.
HOOK_SCRIPT = """\
import json, os, signal, sys, time
out, mode = sys.argv[1], sys.argv[2]
number = len([name for name in os.listdir(out) if name.endswith(".json")])
path = os.path.join(out, "%03d" % number)
hang = mode == "hang" or (mode == "hang-first" and number == 0)
def terminated(signum, frame):
    open(path + ".terminated", "w").close()
    sys.exit(0)
if hang:
    signal.signal(signal.SIGTERM, terminated)
record = {
    "stdin": sys.stdin.read(),
    "env": {name: value for name, value in os.environ.items() if name.startswith("IMDS_")},
}
with open(path + ".tmp", "w") as file:
    json.dump(record, file)
os.rename(path + ".tmp", path + ".json")
if mode == "fail":
    sys.exit(3)
if hang:
    time.sleep(60)
"""


def quiet_tree() -> Tree:
    """The instance with no notice posted, in service in its Auto Scaling group."""
    tree = instance_tree()
    events: Any = tree["meta-data"]
    del events["spot"]["instance-action"]
    del events["events"]["recommendations"]["rebalance"]
    del events["events"]["maintenance"]["scheduled"]
    return tree


def spot_notice(action: str = "terminate", at: str = "2026-11-27T04:02:00Z") -> str:
    return json.dumps({"action": action, "time": at})


def scheduled_notice(state: str, event_id: str = "instance-event-0d59937288b749b32") -> str:
    return json.dumps([dict(SCHEDULED_EVENT, State=state, EventId=event_id)])


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Return once ``condition()`` is true; fail the test if it is not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {timeout}s: {condition}"
        time.sleep(0.01)


def restarted(fake: FakeIMDS) -> FakeIMDS:
    """A new fake, with no tokens, on the port of ``fake`` (which must be stopped)."""
    return FakeIMDS(fake.tree, port=fake.server.server_address[1])


class EventWatcherTests(LoopbackTestCase):
    """One poll at a time: what is reported, and that it is reported once."""

    def setUp(self) -> None:
        super().setUp()
        self.fake = self.serve(quiet_tree())
        self.client = self.fake.client(attempts=1)
        self.watcher = ec2_metadata.EventWatcher(self.client)

    def keys(self) -> list[str]:
        return [event.key for event in self.watcher.poll()]

    def test_notices_already_posted_are_reported_by_the_first_poll(self) -> None:
        watcher = ec2_metadata.EventWatcher(self.serve().client())
        events = watcher.poll()
        self.assertEqual([event.key for event in events], [SPOT_KEY, REBALANCE_KEY, SCHEDULED_KEY])
        self.assertEqual([event.kind for event in events], ["spot", "rebalance", "scheduled"])
        for event in events:
            self.assertEqual(event.time.utcoffset(), timezone.utc.utcoffset(None))
            self.assertEqual(event.seen_at.tzinfo, timezone.utc)
        self.assertEqual(events[2].time, datetime(2026, 12, 4, 9, tzinfo=timezone.utc))
        self.assertEqual(events[2].data["Code"], "system-reboot")
        self.assertEqual(events[2].data["NotAfter"], datetime(2026, 12, 4, 11, tzinfo=timezone.utc))
        self.assertEqual(watcher.poll(), [])

    def test_a_spot_notice_appearing_mid_watch(self) -> None:
        self.assertEqual(self.keys(), [])
        self.assertEqual(self.keys(), [])
        self.fake.put(SPOT_PATH, spot_notice("stop", "2026-11-30T05:02:00+01:00"))
        [event] = self.watcher.poll()
        self.assertEqual(event.kind, ec2_metadata.SPOT_INTERRUPTION)
        self.assertEqual(event.key, "spot:stop:2026-11-30T04:02:00+00:00")
        self.assertEqual(event.time, datetime(2026, 11, 30, 4, 2, tzinfo=timezone.utc))
        self.assertEqual(event.data, {"action": "stop", "time": event.time})
        self.assertEqual(self.keys(), [])
        self.fake.put(SPOT_PATH, spot_notice("terminate", "2026-11-30T04:05:00Z"))
        self.assertEqual(self.keys(), ["spot:terminate:2026-11-30T04:05:00+00:00"])

    def test_a_rebalance_recommendation(self) -> None:
        self.assertEqual(self.keys(), [])
        self.fake.put(REBALANCE_PATH, json.dumps({"noticeTime": "2026-11-30T04:00:00Z"}))
        [event] = self.watcher.poll()
        self.assertEqual(event.kind, ec2_metadata.REBALANCE_RECOMMENDATION)
        self.assertEqual(event.key, "rebalance:2026-11-30T04:00:00+00:00")
        self.assertEqual(event.time, datetime(2026, 11, 30, 4, tzinfo=timezone.utc))
        self.assertEqual(self.keys(), [])

    def test_a_scheduled_event_then_canceled(self) -> None:
        self.fake.put(SCHEDULED_PATH, "[]")
        self.assertEqual(self.keys(), [])
        self.fake.put(SCHEDULED_PATH, scheduled_notice("active"))
        self.assertEqual(self.keys(), [SCHEDULED_KEY])
        self.assertEqual(self.keys(), [])
        self.fake.put(SCHEDULED_PATH, scheduled_notice("canceled"))
        [event] = self.watcher.poll()
        self.assertEqual(event.key, "scheduled:instance-event-0d59937288b749b32:canceled")
        self.assertEqual(event.data["State"], "canceled")
        self.assertEqual(self.keys(), [])
        self.fake.put(SCHEDULED_PATH, scheduled_notice("canceled") + "\n")
        self.assertEqual(self.keys(), [])

    def test_auto_scaling_in_service_to_terminated(self) -> None:
        self.assertEqual(self.keys(), [])  # the steady state is not news
        self.fake.put(LIFECYCLE_PATH, "Terminated")
        [event] = self.watcher.poll()
        self.assertEqual(event.kind, ec2_metadata.AUTOSCALING_TRANSITION)
        self.assertEqual(event.key, "autoscaling:InService->Terminated")
        self.assertEqual(event.data, {"previous": "InService", "state": "Terminated"})
        self.assertEqual(event.time, event.seen_at)
        self.assertEqual(self.keys(), [])

    def test_a_first_auto_scaling_state_worth_acting_on_is_reported_from_none(self) -> None:
        self.fake.put(LIFECYCLE_PATH, "Warmed:Terminated\n")
        [event] = self.watcher.poll()
        self.assertEqual(event.key, "autoscaling:->Warmed:Terminated")
        self.assertEqual(event.data, {"previous": None, "state": "Warmed:Terminated"})
        # Gone (out of the group, or a 404 in between), then back: no transition.
        self.fake.remove(LIFECYCLE_PATH)
        self.assertEqual(self.keys(), [])
        self.fake.put(LIFECYCLE_PATH, "Warmed:Terminated")
        self.assertEqual(self.keys(), [])

    def test_the_same_notices_over_many_polls_are_reported_once(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.fake.put(SCHEDULED_PATH, scheduled_notice("active"))
        reported = [event.key for _ in range(200) for event in self.watcher.poll()]
        self.assertEqual(reported, [SPOT_KEY, SCHEDULED_KEY])
        self.assertEqual(self.fake.count("GET"), 4 * 200)
        self.assertEqual(self.fake.count("PUT"), 1)
        self.assertEqual(self.fake.connections, 1)

    def test_a_503_storm_loses_nothing_and_doubles_nothing(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.assertEqual(self.keys(), [SPOT_KEY])
        for path in NOTICE_PATHS:
            self.fake.inject("GET", f"/latest/{path}", *[Reply(503)] * 3)
        self.fake.put(SCHEDULED_PATH, scheduled_notice("active"))
        self.fake.put(LIFECYCLE_PATH, "Terminated")
        for _ in range(3):
            self.assertEqual(self.keys(), [])
            self.assertEqual(len(self.watcher.errors), 4)
            self.assertEqual({error.status for error in self.watcher.errors}, {503})  # type: ignore[attr-defined]
        reported = [event.key for _ in range(20) for event in self.watcher.poll()]
        self.assertEqual(reported, [SCHEDULED_KEY, "autoscaling:InService->Terminated"])
        self.assertEqual(self.watcher.errors, [])

    def test_one_failing_notice_does_not_hold_back_the_others(self) -> None:
        self.fake.put(SPOT_PATH, "not JSON")
        self.fake.put(REBALANCE_PATH, json.dumps({"noticeTime": "2026-11-30T04:00:00Z"}))
        self.fake.put(SCHEDULED_PATH, json.dumps([{"State": "active"}]))
        self.assertEqual(self.keys(), ["rebalance:2026-11-30T04:00:00+00:00"])
        [spot, scheduled] = self.watcher.errors
        self.assertIsInstance(spot, EC2MetadataMalformedError)
        self.assertIn("lacks its EventId or State", str(scheduled))

    def test_a_token_revoked_mid_watch(self) -> None:
        self.assertEqual(self.keys(), [])
        self.fake.revoke_tokens()
        self.fake.put(SPOT_PATH, spot_notice())
        self.assertEqual(self.keys(), [SPOT_KEY])
        self.assertEqual([self.keys() for _ in range(5)], [[]] * 5)
        self.assertEqual(self.watcher.errors, [])
        self.assertEqual(self.fake.count("PUT"), 2)
        self.assertEqual(self.fake.connections, 1)

    def test_a_restarted_service(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.assertEqual(self.keys(), [SPOT_KEY])
        # The service stops: its kept-alive connection ends, and nothing listens.
        self.fake.inject("GET", f"/latest/{SPOT_PATH}", drop_connection)
        self.fake.__exit__(None, None, None)
        # Refused: the rest of the poll is skipped, not tried path by path.
        self.assertEqual(self.keys(), [])
        [error] = self.watcher.errors
        self.assertIsInstance(error, EC2MetadataConnectionError)
        again = started(self, restarted(self.fake))
        again.put(LIFECYCLE_PATH, "Standby")
        self.assertEqual(self.keys(), ["autoscaling:InService->Standby"])
        self.assertEqual(self.watcher.errors, [])
        self.assertEqual(again.count("PUT"), 1)

    def test_kinds_limit_the_requests(self) -> None:
        watcher = ec2_metadata.EventWatcher(self.client, kinds=["autoscaling", "spot"])
        self.assertEqual(watcher.kinds, ("spot", "autoscaling"))
        watcher.poll()
        self.assertEqual(
            [request.path for request in self.fake.requests if request.method == "GET"],
            [f"/latest/{SPOT_PATH}", f"/latest/{LIFECYCLE_PATH}"],
        )
        with self.assertRaisesRegex(EC2MetadataConfigError, "unknown event kind 'spoot'"):
            ec2_metadata.EventWatcher(self.client, kinds=["spoot"])

    def test_settings_errors_end_the_watch(self) -> None:
        watcher = ec2_metadata.EventWatcher(self.fake.client(disabled=True))
        with self.assertRaises(EC2MetadataDisabledError):
            watcher.poll()

    def test_the_module_client_by_default(self) -> None:
        self.assertIs(ec2_metadata.EventWatcher().client, ec2_metadata.ec2_metadata)

    def test_the_event_record(self) -> None:
        at = datetime(2026, 11, 30, 4, tzinfo=timezone.utc)
        event = ec2_metadata.Event("spot", "k", at, {"list": [at], "n": 1}, at)
        same = ec2_metadata.Event("spot", "k", at, {"list": [at], "n": 1}, at)
        self.assertEqual((event, hash(event)), (same, hash(same)))
        self.assertNotEqual(event, ec2_metadata.Event("spot", "k", at, {}, at))
        self.assertIn("kind='spot'", repr(event))
        self.assertEqual(
            list(event.to_dict().items()),
            [
                ("kind", "spot"),
                ("key", "k"),
                ("time", "2026-11-30T04:00:00+00:00"),
                ("seen_at", "2026-11-30T04:00:00+00:00"),
                ("data", {"list": ["2026-11-30T04:00:00+00:00"], "n": 1}),
            ],
        )


class CountingStop(threading.Event):
    """A stop event that records the pauses asked for and is set after ``polls`` of them."""

    def __init__(self, polls: int) -> None:
        super().__init__()
        self.polls = polls
        self.pauses: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(cast(float, timeout))
        if len(self.pauses) >= self.polls:
            self.set()
        return self.is_set()


class WatchTests(LoopbackTestCase):
    """The library's loop: `ec2_metadata.watch`."""

    def setUp(self) -> None:
        super().setUp()
        self.fake = self.serve(quiet_tree())
        self.client = self.fake.client(attempts=1)

    def test_it_yields_events_until_stopped(self) -> None:
        stop = threading.Event()
        self.fake.put(SPOT_PATH, spot_notice())
        seen = []
        for event in ec2_metadata.watch(0.01, client=self.client, stop=stop):
            seen.append(event.key)
            if len(seen) == 1:
                self.fake.put(LIFECYCLE_PATH, "Terminated")
            else:
                stop.set()
        self.assertEqual(seen, [SPOT_KEY, "autoscaling:InService->Terminated"])

    def test_without_a_stop_event_it_sleeps_and_goes_on(self) -> None:
        events = ec2_metadata.watch(0.01, kinds=["spot"], client=self.client)
        self.fake.put(SPOT_PATH, spot_notice())
        self.assertEqual(next(events).key, SPOT_KEY)
        self.fake.put(SPOT_PATH, spot_notice("stop"))
        self.assertEqual(next(events).key, "spot:stop:2026-11-27T04:02:00+00:00")
        self.assertEqual(self.fake.count("GET", f"/latest/{REBALANCE_PATH}"), 0)

    def test_polls_are_jittered_around_the_interval(self) -> None:
        stop = CountingStop(polls=50)
        self.assertEqual(list(ec2_metadata.watch(0.01, client=self.client, stop=stop)), [])
        self.assertEqual(self.fake.count("GET"), 4 * 50)
        self.assertTrue(all(0.009 <= pause <= 0.011 for pause in stop.pauses), stop.pauses)
        self.assertGreater(len(set(stop.pauses)), 1)

    def test_errors_back_off_to_a_cap_and_are_logged_once_with_the_recovery(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.fake.inject("GET", f"/latest/{SPOT_PATH}", *[Reply(503)] * 6)
        stop = CountingStop(polls=10)
        with self.assertLogs("ec2_metadata", logging.WARNING) as logs:
            watching = ec2_metadata.watch(1, kinds=["spot"], client=self.client, stop=stop)
            keys = [event.key for event in watching]
        self.assertEqual(keys, [SPOT_KEY])
        # 2, 4, 8, 8 (the cap: 8 intervals), 8, 8 seconds, then the interval again.
        bases = [2, 4, 8, 8, 8, 8, 1, 1, 1, 1]
        for pause, base in zip(stop.pauses, bases):
            self.assertTrue(0.9 * base <= pause <= 1.1 * base, (stop.pauses, bases))
        [failing, recovered] = logs.output
        self.assertIn("answered 503", failing)
        self.assertIn("backing off up to 8s between polls", failing)
        self.assertIn("the service answers again, after 6 failed polls", recovered)

    def test_a_notice_that_fails_does_not_slow_down_the_others(self) -> None:
        self.fake.inject("GET", f"/latest/{SCHEDULED_PATH}", *[Reply(500)] * 5)
        stop = CountingStop(polls=10)
        with self.assertLogs("ec2_metadata", logging.WARNING) as logs:
            self.assertEqual(list(ec2_metadata.watch(1, client=self.client, stop=stop)), [])
        self.assertTrue(all(0.9 <= pause <= 1.1 for pause in stop.pauses), stop.pauses)
        self.assertEqual(len(logs.output), 2)
        self.assertIn("after 5 failed polls", logs.output[1])

    def test_the_backoff_never_exceeds_30_seconds(self) -> None:
        client = EC2Metadata(endpoint=f"http://127.0.0.1:{closed_port()}")
        stop = CountingStop(polls=30)
        with self.assertLogs("ec2_metadata", logging.WARNING) as logs:
            self.assertEqual(list(ec2_metadata.watch(5, client=client, stop=stop)), [])
        self.assertEqual(len(logs.output), 1)
        self.assertTrue(all(pause <= 33 for pause in stop.pauses))
        self.assertGreater(stop.pauses[-1], 27)

    def test_an_interval_must_be_positive(self) -> None:
        for interval in (0, -1, float("nan")):
            with self.assertRaisesRegex(EC2MetadataConfigError, "must be positive"):
                next(ec2_metadata.watch(interval, client=self.client))


def imds_command(*argv: str) -> tuple[int, bytes, str]:
    """Run ``imds ARGV`` in this process: its exit status, stdout and stderr."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with mock.patch.object(sys, "stdout", stdout), mock.patch.object(sys, "stderr", stderr):
        status = ec2_metadata.main(list(argv))
        stdout.flush()
    return status, stdout.buffer.getvalue(), stderr.getvalue()


def temporary_directory(test: unittest.TestCase) -> str:
    """A new directory, removed with what it holds at the end of ``test``."""
    import tempfile

    directory = tempfile.TemporaryDirectory()
    test.addCleanup(directory.cleanup)
    return directory.name


def hook_command(out: str, mode: str) -> str:
    """An --exec command running HOOK_SCRIPT in ``mode``, recording into ``out``."""
    import shlex

    script = os.path.join(out, "hook.py")
    with open(script, "w") as file:
        file.write(HOOK_SCRIPT)
    return " ".join(shlex.quote(part) for part in (sys.executable, script, out, mode))


def signal_when(condition: Callable[[], object], signum: int = signal.SIGTERM) -> threading.Thread:
    """Send ``signum`` to this process once ``condition()`` is true, from a thread."""

    def send() -> None:
        wait_for(condition)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


class WatchCommandTests(LoopbackTestCase):
    """``imds watch``, run in this process (signals sent to this process too)."""

    def setUp(self) -> None:
        super().setUp()
        self.fake = self.serve(quiet_tree())
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.fake.url
        self.out = temporary_directory(self)

    def hook(self, mode: str) -> str:
        return hook_command(self.out, mode)

    def hook_runs(self) -> list[dict[str, Any]]:
        names = sorted(name for name in os.listdir(self.out) if name.endswith(".json"))
        runs = []
        for name in names:
            with open(os.path.join(self.out, name)) as file:
                runs.append(json.load(file))
        return runs

    def polls(self) -> int:
        return self.fake.count("GET", f"/latest/{LIFECYCLE_PATH}")

    def test_once_prints_the_first_event_and_exits_0(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.fake.put(REBALANCE_PATH, json.dumps({"noticeTime": "2026-11-30T04:00:00Z"}))
        status, out, err = imds_command("watch", "--once", "--interval", "0.01")
        self.assertEqual((status, err), (0, ""))
        [line] = out.decode().splitlines()
        event = json.loads(line)
        self.assertEqual(list(event), ["kind", "key", "time", "seen_at", "data"])
        self.assertEqual(event["key"], SPOT_KEY)
        self.assertEqual(
            event["data"], {"action": "terminate", "time": "2026-11-27T04:02:00+00:00"}
        )

    def test_kind_filters_the_events_and_the_requests(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.fake.put(LIFECYCLE_PATH, "Standby")
        status, out, _ = imds_command("watch", "--once", "--kind", "autoscaling")
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out)["key"], "autoscaling:->Standby")
        self.assertEqual(self.fake.count("GET"), 1)

    def test_service_errors_are_reported_once_then_the_recovery(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        # Three attempts a request: three polls that fail, then one that finds the notice.
        self.fake.inject("GET", f"/latest/{SPOT_PATH}", *[Reply(503)] * 9)
        status, out, err = imds_command("watch", "--once", "--kind", "spot", "--interval", "0.01")
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out)["key"], SPOT_KEY)
        [failing, recovered] = err.splitlines()
        self.assertTrue(failing.startswith("imds: watch: GET http://127.0.0.1:"), failing)
        self.assertIn("answered 503", failing)
        self.assertTrue(recovered.startswith("imds: watch: the service answers again"))

    def test_the_hook_gets_the_event_on_stdin_and_in_its_environment(self) -> None:
        self.fake.put(SCHEDULED_PATH, scheduled_notice("active"))
        status, out, err = imds_command("watch", "--once", "--exec", self.hook("record"))
        self.assertEqual((status, err), (0, ""))
        [run] = self.hook_runs()
        self.assertEqual(json.loads(run["stdin"]), json.loads(out))
        self.assertTrue(run["stdin"].endswith("}\n"))
        event = json.loads(out)
        self.assertEqual(
            run["env"],
            {
                "IMDS_EVENT_KIND": "scheduled",
                "IMDS_EVENT_KEY": SCHEDULED_KEY,
                "IMDS_EVENT_TIME": "2026-12-04T09:00:00+00:00",
                "IMDS_EVENT_SEEN_AT": event["seen_at"],
                "IMDS_EVENT_ID": "instance-event-0d59937288b749b32",
                "IMDS_EVENT_CODE": "system-reboot",
                "IMDS_EVENT_STATE": "active",
            },
        )

    def test_hook_variables_of_spot_and_auto_scaling_events(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        imds_command("watch", "--once", "--exec", self.hook("record"))
        self.fake.put(LIFECYCLE_PATH, "Terminated")
        imds_command("watch", "--once", "--kind", "autoscaling", "--exec", self.hook("record"))
        spot, autoscaling = (run["env"] for run in self.hook_runs())
        self.assertEqual(spot["IMDS_EVENT_ACTION"], "terminate")
        self.assertNotIn("IMDS_EVENT_STATE", spot)
        self.assertEqual(autoscaling["IMDS_EVENT_STATE"], "Terminated")
        self.assertNotIn("IMDS_EVENT_PREVIOUS_STATE", autoscaling)  # the first state seen

    def test_a_failing_hook_is_reported_and_the_watch_goes_on(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.fake.put(REBALANCE_PATH, REBALANCE_NOTICE)
        reporting = mock.patch.object(ec2_metadata, "_say", wraps=ec2_metadata._say)
        said = reporting.start()
        self.addCleanup(reporting.stop)
        signal_when(lambda: said.call_count == 2 and self.polls() > 5)
        status, out, err = imds_command("watch", "--interval", "0.01", "--exec", self.hook("fail"))
        self.assertEqual(status, 0)
        self.assertEqual(len(out.splitlines()), 2)
        self.assertEqual(
            err.splitlines(),
            [
                f"imds: the hook for {SPOT_KEY} failed with exit status 3",
                f"imds: the hook for {REBALANCE_KEY} failed with exit status 3",
            ],
        )

    def test_a_hook_killed_by_a_signal_is_reported(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        status, _, err = imds_command("watch", "--once", "--exec", "kill -KILL $$")
        self.assertEqual(status, 0)
        self.assertEqual(err, f"imds: the hook for {SPOT_KEY} failed with signal 9\n")

    def test_a_hook_that_cannot_start_is_reported(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        with mock.patch("subprocess.Popen", side_effect=OSError("no shell here")):
            status, out, err = imds_command("watch", "--once", "--exec", "true")
        self.assertEqual((status, json.loads(out)["key"]), (0, SPOT_KEY))
        self.assertEqual(err, f"imds: the hook for {SPOT_KEY} could not start: no shell here\n")

    def test_a_hanging_hook_is_ended_at_its_timeout_and_events_keep_coming(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        first_hook = os.path.join(self.out, "000.json")
        ended = os.path.join(self.out, "000.terminated")

        def post_a_notice_while_the_hook_hangs() -> bool:
            if os.path.exists(first_hook) and not os.path.exists(ended):
                self.fake.put(REBALANCE_PATH, REBALANCE_NOTICE)
            return len(self.hook_runs()) == 2

        signal_when(post_a_notice_while_the_hook_hangs)
        status, out, err = imds_command(
            "watch",
            "--interval",
            "0.01",
            "--hook-timeout",
            "3",
            "--exec",
            self.hook("hang-first"),
        )
        self.assertEqual(status, 0)
        self.assertTrue(os.path.exists(ended))
        spot, rebalance = (json.loads(line) for line in out.splitlines())
        self.assertEqual((spot["key"], rebalance["key"]), (SPOT_KEY, REBALANCE_KEY))
        # Printed while the first hook still hung: it was ended 3 s after it started.
        printed_after = datetime.fromisoformat(rebalance["seen_at"]) - datetime.fromisoformat(
            spot["seen_at"]
        )
        self.assertLess(printed_after.total_seconds(), 2.5)
        self.assertEqual(
            err.splitlines()[0], f"imds: the hook for {SPOT_KEY} ran past its 3s timeout: ending it"
        )

    def test_sigterm_while_idle_exits_0(self) -> None:
        signal_when(lambda: self.polls() > 3)
        self.assertEqual(imds_command("watch", "--interval", "0.01"), (0, b"", ""))
        self.assertIs(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)

    def test_sigint_before_an_event_ends_once_with_128_plus_the_signal(self) -> None:
        signal_when(lambda: self.polls() > 3, signal.SIGINT)
        status = imds_command("watch", "--once", "--interval", "0.01")
        self.assertEqual(status, (128 + signal.SIGINT, b"", ""))

    def test_sigterm_while_a_hook_runs_ends_the_hook_and_exits_0(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        self.fake.put(REBALANCE_PATH, REBALANCE_NOTICE)
        signal_when(self.hook_runs)
        status, out, err = imds_command(
            "watch", "--kind", "spot", "--kind", "rebalance", "--exec", self.hook("hang")
        )
        self.assertEqual(status, 0)
        self.assertEqual(len(out.splitlines()), 2)
        self.assertEqual(err, f"imds: stopping the hook for {SPOT_KEY}: imds is exiting\n")
        self.assertTrue(os.path.exists(os.path.join(self.out, "000.terminated")))
        self.assertEqual(len(self.hook_runs()), 1)  # the second event's hook never started

    def test_a_signal_after_the_event_of_once_still_exits_0(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        signal_when(self.hook_runs)
        status, out, _ = imds_command("watch", "--once", "--exec", self.hook("hang"))
        self.assertEqual((status, json.loads(out)["key"]), (0, SPOT_KEY))

    def test_a_signal_while_an_event_is_written_waits_for_the_line(self) -> None:
        signals = ec2_metadata._Signals()
        signals.resume()  # nothing pending: goes on
        signals.deferring = True
        signals.handle(signal.SIGTERM, None)
        with self.assertRaises(ec2_metadata._Stopped) as stopped:
            signals.resume()
        self.assertEqual(stopped.exception.signum, signal.SIGTERM)
        with self.assertRaises(ec2_metadata._Stopped):
            signals.handle(signal.SIGINT, None)

    def test_help_names_every_hook_variable(self) -> None:
        status, out, _ = imds_command("watch", "--help")
        self.assertEqual(status, 0)
        variables = {"IMDS_EVENT_KIND", "IMDS_EVENT_KEY", "IMDS_EVENT_TIME", "IMDS_EVENT_SEEN_AT"}
        for variable in variables | set(ec2_metadata._HOOK_VARIABLES.values()):
            self.assertIn(variable, out.decode())

    def test_invalid_arguments_are_usage_errors(self) -> None:
        for argv in (
            ("--interval", "0"),
            ("--interval", "soon"),
            ("--hook-timeout", "inf"),
            ("--kind", "spoot"),
        ):
            with self.subTest(argv):
                status, _, err = imds_command("watch", *argv)
                self.assertEqual(status, 2)
                self.assertIn(f"imds watch: argument {argv[0]}: ", err)

    def test_a_closed_stdout_ends_it_with_status_1(self) -> None:
        self.fake.put(SPOT_PATH, spot_notice())
        stderr = io.StringIO()
        stdout = broken_pipe_stdout(self)
        with mock.patch.object(sys, "stdout", stdout), mock.patch.object(sys, "stderr", stderr):
            status = ec2_metadata.main(["watch", "--exec", self.hook("record")])
        self.assertEqual(
            (status, stderr.getvalue()),
            (1, "imds: cannot write the output: [Errno 32] Broken pipe\n"),
        )
        self.assertEqual(self.hook_runs(), [])

    def test_settings_errors_end_it(self) -> None:
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        status, _, err = imds_command("watch", "--interval", "0.01")
        self.assertEqual(status, 1)
        self.assertIn("disabled", err)


class WatchProcessTests(LoopbackTestCase):
    """``imds watch`` as its own process, as systemd or a bootstrap script runs it."""

    def setUp(self) -> None:
        super().setUp()
        self.fake = self.serve(quiet_tree())
        here = os.path.dirname(os.path.abspath(__file__))
        self.command = [sys.executable, os.path.join(here, "ec2_metadata.py"), "watch"]
        self.env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=self.fake.url)

    def start(self, *argv: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [*self.command, *argv],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process

    def polls(self) -> int:
        return self.fake.count("GET", f"/latest/{LIFECYCLE_PATH}")

    def test_once_exits_0_after_a_spot_notice_mid_watch(self) -> None:
        process = self.start("--once", "--kind", "spot", "--interval", "0.05")
        wait_for(lambda: self.fake.count("GET") > 3)
        self.fake.put(SPOT_PATH, spot_notice())
        out, err = process.communicate(timeout=20)
        self.assertEqual((process.returncode, err), (0, ""))
        self.assertEqual(json.loads(out)["key"], SPOT_KEY)

    def test_a_reader_that_goes_away(self) -> None:
        process = self.start("--interval", "0.05")
        cast(Any, process.stdout).close()
        minutes = itertools.count()

        def exited_after_a_new_notice() -> bool:
            self.fake.put(SPOT_PATH, spot_notice(at=f"2026-11-30T05:{next(minutes) % 60:02}:00Z"))
            return process.poll() is not None

        wait_for(exited_after_a_new_notice)
        self.assertEqual(process.returncode, 1)
        _, err = process.communicate()
        self.assertEqual(err, "imds: cannot write the output: [Errno 32] Broken pipe\n")

    def test_sigterm_while_idle(self) -> None:
        process = self.start("--interval", "0.05")
        wait_for(lambda: self.polls() > 3)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        self.assertEqual((process.returncode, out, err), (0, "", ""))

    def test_sigterm_while_a_hook_runs(self) -> None:
        out_dir = temporary_directory(self)
        hook = hook_command(out_dir, "hang")
        self.fake.put(SPOT_PATH, spot_notice())
        process = self.start("--interval", "0.05", "--exec", hook)
        wait_for(lambda: os.path.exists(os.path.join(out_dir, "000.json")))
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        self.assertEqual(process.returncode, 0)
        self.assertEqual(json.loads(out)["key"], SPOT_KEY)
        self.assertEqual(err, f"imds: stopping the hook for {SPOT_KEY}: imds is exiting\n")
        self.assertTrue(os.path.exists(os.path.join(out_dir, "000.terminated")))


class ServeAndWatchTests(LoopbackTestCase):
    """The fake's simulated events, as the watch sees them, and end to end from the shell."""

    def test_each_simulated_event_is_seen_once_by_the_watch(self) -> None:
        with ec2_metadata.FakeMetadataService() as fake:
            watcher = ec2_metadata.EventWatcher(EC2Metadata(endpoint=fake.url))

            def keys() -> list[str]:
                return [event.key for event in watcher.poll()]

            self.assertEqual(keys(), [])  # an instance in service, with nothing coming
            fake.interrupt_spot("stop")
            fake.recommend_rebalance()
            [spot, rebalance] = watcher.poll()
            self.assertEqual((spot.kind, spot.data["action"]), ("spot", "stop"))
            self.assertEqual(rebalance.kind, "rebalance")
            event_id = fake.schedule_event("instance-retirement")
            self.assertEqual(keys(), [f"scheduled:{event_id}:active"])
            fake.cancel_event(event_id)
            self.assertEqual(keys(), [f"scheduled:{event_id}:canceled"])
            fake.set_target_lifecycle_state("Terminated")
            self.assertEqual(keys(), ["autoscaling:InService->Terminated"])
            self.assertEqual(keys(), [])
            self.assertEqual(watcher.errors, [])

    def test_a_spot_notice_from_imds_serve_runs_the_watch_hook(self) -> None:
        # The README's recipe: imds serve --spot-action terminate --after 1s, then
        # imds watch --once --exec ./drain.sh against it.
        directory = temporary_directory(self)
        drained = os.path.join(directory, "drained")
        drain = os.path.join(directory, "drain.py")
        with open(drain, "w", encoding="utf-8") as script:
            script.write(
                "import os, sys\n"
                f"with open({drained!r}, 'w') as out:\n"
                "    out.write(os.environ['IMDS_EVENT_ACTION'] + ' ' + sys.stdin.read())\n"
            )
        module = os.path.abspath(ec2_metadata.__file__)
        hook = f"{shlex.quote(sys.executable)} {shlex.quote(drain)}"
        command = [
            sys.executable, module, "serve", "--spot-action", "terminate", "--after", "1s", "--",
            sys.executable, module, "watch", "--once", "--interval", "0.2", "--exec", hook,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        event = json.loads(result.stdout)
        self.assertEqual((event["kind"], event["data"]["action"]), ("spot", "terminate"))
        with open(drained, encoding="utf-8") as out:
            action, _, document = out.read().partition(" ")
        self.assertEqual((action, json.loads(document)["key"]), ("terminate", event["key"]))


class EntryPointTests(LoopbackTestCase):
    """The command as a copied file, as ``python -m``, and the demo runner."""

    def run_python(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(
            [sys.executable, *argv],
            cwd=here,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    def test_the_copied_file_and_python_m_run_the_command(self) -> None:
        for argv in (("ec2_metadata.py", "--help"), ("-m", "ec2_metadata", "--help")):
            with self.subTest(argv):
                result = self.run_python(*argv)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn("usage: imds", result.stdout)
                self.assertIn("instance_identity_document", result.stdout)


# Issue 8: bounded time, interruptions, forks, lifetimes, IPv6-only, errors, desynchronisation


def drip(head: bytes, rest: bytes, interval: float = 0.25) -> Fault:
    """Write ``head`` at once, then ``rest`` one byte every ``interval`` seconds, then close
    (or stop as soon as the client hangs up)."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.wfile.write(head)
            for byte in rest:
                time.sleep(interval)
                handler.wfile.write(bytes([byte]))

    return answer


def kept_open(data: bytes) -> Fault:
    """Write ``data`` as the answer and keep the connection open for the next request."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.wfile.write(data)

    return answer


def ok_answer(body: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join(
        [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *headers, b"", body]
    )


class DeadlineTests(LoopbackTestCase):
    """`timeout` is the deadline of a whole attempt, whatever the server drips."""

    def assert_bounded(self, imds: FakeIMDS, bound: float) -> EC2MetadataConnectionError:
        client = imds.client(timeout=1, attempts=1)
        started = time.monotonic()
        with self.assertRaises(EC2MetadataConnectionError) as caught:
            client.instance_id
        # One attempt of one second; before the deadline covered the whole answer, each of
        # these took ten seconds and returned the value.
        self.assertLess(time.monotonic() - started, bound)
        self.assertIn("timed out", str(caught.exception))
        self.assertIn("slow or is throttling", str(caught.exception))
        self.assertNotIn("may not be running on EC2", str(caught.exception))
        return caught.exception

    def test_a_dripped_body(self) -> None:
        imds = self.serve()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"
        imds.inject("GET", "/latest/meta-data/instance-id", drip(head, b"i" * 40))
        self.assert_bounded(imds, 2.0)

    def test_dripped_headers(self) -> None:
        imds = self.serve()
        header = b"X-Slow: " + b"s" * 40 + b"\r\n"
        imds.inject("GET", "/latest/meta-data/instance-id", drip(b"HTTP/1.1 200 OK\r\n", header))
        self.assert_bounded(imds, 2.0)

    def test_a_dripped_token_answer(self) -> None:
        imds = self.serve()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"
        imds.inject("PUT", TOKEN_PATH, drip(head, b"t" * 40))
        error = self.assert_bounded(imds, 2.0)
        self.assertEqual(error.path, "api/token")

    def test_the_token_and_the_read_share_the_deadline_of_an_attempt(self) -> None:
        imds = self.serve()
        imds.inject("PUT", TOKEN_PATH, drip(b"", ok_answer(b"token-" * 4)[:-4], 0.05))
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n"
        imds.inject("GET", "/latest/meta-data/instance-id", drip(head, b"i-01234567", 0.05))
        imds.inject("GET", "/latest/meta-data/instance-id", drip(head, b"i-01234567", 0.05))
        client = imds.client(timeout=1, attempts=2)
        started = time.monotonic()
        with self.assertRaises(EC2MetadataConnectionError):
            client.instance_id  # a token answer of 2.5 s, then reads of 0.5 s and more
        # attempts x timeout + one pause of at most 0.2 s, with slack for a loaded machine.
        self.assertLess(time.monotonic() - started, 2 * 1 + 0.2 + 0.6)

    def test_a_401_renewal_adds_at_most_one_timeout(self) -> None:
        imds = self.serve()
        client = imds.client(timeout=0.5, attempts=1)
        self.assertEqual(client.mac, PRIMARY_MAC)
        imds.inject("GET", "/latest/meta-data/instance-id", Reply(401), never_answer)
        started = time.monotonic()
        with self.assertRaises(EC2MetadataConnectionError):
            client.instance_id  # 401, a new token, then a read that is never answered
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, (1 + 1) * 0.5 + 0.5)  # attempts x timeout + one renewal
        self.assertEqual(imds.count("PUT"), 2)


class InterruptionTests(LoopbackTestCase):
    """An exception raised inside a request (a signal handler's) leaves the client clean."""

    def interrupt_a_read(self, exception: type[BaseException]) -> tuple[FakeIMDS, EC2Metadata]:
        if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows
            self.skipTest("no interval timer on this platform")
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.mac, PRIMARY_MAC)  # a kept-alive connection and a token

        def late(handler: http.server.BaseHTTPRequestHandler) -> None:
            time.sleep(0.3)  # the answer comes after the interruption, on the same connection
            with contextlib.suppress(OSError):
                handler.wfile.write(ok_answer(INSTANCE_ID.encode()))

        def handler(signum: int, frame: object) -> None:
            raise exception("interrupted")

        imds.inject("GET", "/latest/meta-data/instance-id", late)
        previous = signal.signal(signal.SIGALRM, handler)
        self.addCleanup(signal.signal, signal.SIGALRM, previous)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with self.assertRaises(exception):
            client.instance_id
        return imds, client

    def assert_clean(self, imds: FakeIMDS, client: EC2Metadata) -> None:
        self.assertFalse(client._transport._lock.locked())
        self.assertIsNone(client._transport._connection)
        time.sleep(0.4)  # the late answer is now there, on the old connection
        client_attempts_used = imds.count("GET", "/latest/meta-data/ami-id")
        self.assertEqual(client.ami_id, AMI_ID)  # not the instance ID left on the connection
        self.assertEqual(imds.count("GET", "/latest/meta-data/ami-id"), client_attempts_used + 1)
        self.assertEqual(client.instance_id, INSTANCE_ID)
        self.assertEqual(imds.connections, 2)

    def test_keyboard_interrupt(self) -> None:
        self.assert_clean(*self.interrupt_a_read(KeyboardInterrupt))

    def test_an_exception_from_a_signal_handler(self) -> None:
        class Interrupted(Exception):
            pass

        self.assert_clean(*self.interrupt_a_read(Interrupted))


class ForkDuringFetchTests(LoopbackTestCase):
    """No lock is held across a fetch: a child forked meanwhile reads, clients never queue."""

    def test_a_child_forked_while_a_thread_fetches_reads_at_once(self) -> None:
        if not hasattr(os, "fork"):  # pragma: no cover - Windows
            self.skipTest("no fork on this platform")
        imds = self.serve()
        imds.inject("GET", "/latest/dynamic/instance-identity/document", slow_answer(1.5))
        busy = imds.client()
        fetching = threading.Thread(target=lambda: busy.region)
        fetching.start()
        self.addCleanup(fetching.join)
        time.sleep(0.3)  # the thread is inside the fetch of region
        with warnings.catch_warnings():
            # The fake's server threads live on in the parent only; the child uses none.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            os._exit(0 if imds.client().region == "eu-west-1" else 1)
        # On Python 3.9 to 3.11, functools.cached_property's lock was held in the child for
        # ever: the child hung.  A bounded wait, so that a failure does not hang the suite.
        deadline = time.monotonic() + 10
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < deadline:
            time.sleep(0.02)
            done, status = os.waitpid(pid, os.WNOHANG)
        if not done:  # pragma: no cover - the failure this test is for
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self.fail("the forked child hung reading region")
        self.assertEqual(status, 0)

    def test_clients_do_not_wait_on_each_other(self) -> None:
        slow, quick = self.serve(), self.serve()
        slow.inject("GET", "/latest/dynamic/instance-identity/document", slow_answer(1.0))
        fetching = threading.Thread(target=lambda: slow.client().region)
        fetching.start()
        self.addCleanup(fetching.join)
        time.sleep(0.2)
        started = time.monotonic()
        self.assertEqual(quick.client().region, "eu-west-1")
        self.assertLess(time.monotonic() - started, 0.7)


def slow_answer(seconds: float) -> Fault:
    """The normal answer, after ``seconds``."""

    def answer(handler: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        assert isinstance(handler, _FakeHandler)
        cast(Any, handler.server).fake._serve_path(handler)

    return answer


def credentials_expiring_in(seconds: float, key: str) -> str:
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    return json.dumps(dict(CREDENTIALS, AccessKeyId=key, Expiration=expiration))


ROLE_PATH = f"meta-data/iam/security-credentials/{ROLE_NAME}"


class LifetimeTests(LoopbackTestCase):
    """Each field is kept, never kept, or kept until a time its value names."""

    def test_credentials_are_kept_until_five_minutes_before_they_expire(self) -> None:
        imds = self.serve()
        imds.put(ROLE_PATH, credentials_expiring_in(3600, "ASIAFIRST"))
        client = imds.client()
        self.assertEqual(client.iam_security_credentials["AccessKeyId"], "ASIAFIRST")  # type: ignore[index]
        imds.put(ROLE_PATH, credentials_expiring_in(4 * 60, "ASIASECOND"))
        self.assertEqual(client.iam_security_credentials["AccessKeyId"], "ASIAFIRST")  # type: ignore[index]
        self.assertEqual(imds.count("GET", f"/latest/{ROLE_PATH}"), 1)
        del client.iam_security_credentials
        # Within five minutes of their Expiration: fetched again on each access.
        self.assertEqual(client.iam_security_credentials["AccessKeyId"], "ASIASECOND")  # type: ignore[index]
        imds.put(ROLE_PATH, credentials_expiring_in(6 * 3600, "ASIATHIRD"))
        self.assertEqual(client.iam_security_credentials["AccessKeyId"], "ASIATHIRD")  # type: ignore[index]
        self.assertEqual(client.iam_security_credentials["AccessKeyId"], "ASIATHIRD")  # type: ignore[index]
        self.assertEqual(imds.count("GET", f"/latest/{ROLE_PATH}"), 3)

    def test_no_role_is_kept(self) -> None:
        imds = self.serve()
        imds.put("meta-data/iam/security-credentials", {})
        client = imds.client()
        self.assertIsNone(client.iam_security_credentials)
        self.assertIsNone(client.iam_security_credentials)
        self.assertEqual(imds.count("GET"), 1)

    def test_the_profile_fields_follow_iam_info(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.instance_profile_name, "web-stack-WebProfile-O8XJ5GQZ2K1A")
        other = "arn:aws:iam::123456789012:instance-profile/other-profile"
        imds.put("meta-data/iam/info", json.dumps(dict(IAM_INFO, InstanceProfileArn=other)))
        self.assertEqual(client.instance_profile_arn, PROFILE_ARN)  # iam_info is kept
        del client.iam_info
        self.assertEqual(client.instance_profile_arn, other)
        self.assertEqual(client.instance_profile_name, "other-profile")
        imds.remove("meta-data/iam/info")
        del client.iam_info
        self.assertIsNone(client.instance_profile_id)
        self.assertIsNone(client.instance_profile_name)

    def test_region_and_account_follow_the_identity_document(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.region, "eu-west-1")
        document = dict(IDENTITY_DOCUMENT, region="us-east-2", accountId="210987654321")
        imds.put("dynamic/instance-identity/document", json.dumps(document))
        del client.instance_identity_document
        self.assertEqual((client.region, client.account_id), ("us-east-2", "210987654321"))

    def test_values_live_in_the_instance_dict(self) -> None:
        imds = self.serve()
        client = imds.client()
        self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(vars(client)["instance_type"], "t3.micro")
        client.instance_type = "set by hand"
        self.assertEqual(client.instance_type, "set by hand")
        with self.assertRaises(AttributeError):
            del client.ami_id  # never read
        with self.assertRaises(AttributeError):
            client.instance_action = "reboot"
        self.assertNotIn("instance_action", vars(client))
        self.assertIn("meta-data/ami-id", type(client).__dict__["ami_id"].__doc__)
        self.assertIsInstance(EC2Metadata.ami_id, ec2_metadata._Field)

    def test_the_readme_lists_exactly_the_uncached_attributes(self) -> None:
        readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "README.md")
        with open(readme, encoding="utf-8") as file:
            rows = [line for line in file if line.startswith("| `")]
        documented = {row.split("`")[1] for row in rows if "uncached" in row}
        declared = {
            name
            for name, value in vars(EC2Metadata).items()
            if isinstance(value, ec2_metadata._Field) and value.lifetime == "not kept"
        }
        self.assertEqual(documented, declared)
        self.assertEqual(declared, set(ATTRIBUTE_PATHS))
        for name in ec2_metadata._metadata_names(NetworkInterface):
            self.assertNotEqual(getattr(NetworkInterface, name, None), "not kept")


class IPv6OnlyTests(LoopbackTestCase):
    def test_no_ipv4_addresses(self) -> None:
        client = self.serve(ipv6_only_tree()).client()
        self.assertIsNone(client.private_ipv4)
        self.assertIsNone(client.public_ipv4)
        interface = client.network_interfaces[PRIMARY_MAC]
        self.assertEqual(interface.private_ipv4s, [])
        self.assertEqual(interface.public_ipv4s, [])
        self.assertEqual(interface.ipv6s, ["2a05:d018:1234:5600::10", "2a05:d018:1234:5600::11"])

    def test_the_full_dump_has_no_errors(self) -> None:
        imds = self.serve(ipv6_only_tree())
        os.environ[ENDPOINT_VARIABLE] = imds.url
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        with mock.patch.object(sys, "stdout", stdout):
            status = ec2_metadata.main([])
            stdout.flush()
        document = json.loads(stdout.buffer.getvalue())
        self.assertEqual(status, 0)
        self.assertNotIn("errors", document)
        self.assertIsNone(document["private_ipv4"])


def error_of(read: Callable[[], object]) -> EC2MetadataError:
    try:
        read()
    except EC2MetadataError as error:
        return error
    raise AssertionError("no error")  # pragma: no cover


def frame_locals(error: BaseException | None) -> Iterator[tuple[str, str]]:
    """Each (name, repr) of a local variable in every frame of ``error``'s traceback, and
    of its __cause__ and __context__, as error reporters record them."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback_ = error.__traceback__
        while traceback_ is not None:
            for name, value in traceback_.tb_frame.f_locals.items():
                yield f"{traceback_.tb_frame.f_code.co_name}.{name}", repr(value)
            traceback_ = traceback_.tb_next
        if error.__cause__ is not None:
            yield from frame_locals(error.__cause__)
        error = error.__context__


class ErrorMeaningTests(LoopbackTestCase):
    def test_a_token_request_refused_as_invalid(self) -> None:
        imds = self.serve()
        imds.inject("PUT", TOKEN_PATH, Reply(400, b"Bad Request"))
        error = error_of(lambda: imds.client().mac)
        self.assertIn("refused the token request as invalid", str(error))
        self.assertNotIn("does not offer IMDSv2", str(error))

    def test_a_get_forbidden(self) -> None:
        imds = self.serve()
        imds.inject("GET", MAC_PATH, Reply(403, b"Forbidden"))
        error = error_of(lambda: imds.client().mac)
        self.assertIsInstance(error, EC2MetadataHTTPError)
        self.assertIn("this path is not allowed", str(error))
        self.assertIn("turned off for this instance", str(error))

    def test_a_reset_after_connecting_asks_to_back_off(self) -> None:
        imds = self.serve()
        imds.inject("PUT", TOKEN_PATH, drop_connection)  # on a fresh connection
        error = error_of(lambda: imds.client(attempts=1).mac)
        self.assertIn("failed after the connection was made", str(error))
        self.assertIn("AWS asks clients to back off", str(error))
        self.assertNotIn("may not be running on EC2", str(error))

    def test_credentials_that_are_an_error_document(self) -> None:
        imds = self.serve()
        message = "EC2 cannot assume the role web-stack-WebRole-1TQ0ZJ3X6N4QF."
        document = {"Code": "AssumeRoleUnauthorizedAccess", "Message": message}
        imds.put(ROLE_PATH, json.dumps(dict(document, LastUpdated="2026-11-27T02:10:41Z")))
        error = error_of(lambda: imds.client().iam_security_credentials)
        self.assertIsInstance(error, EC2MetadataMalformedError)
        self.assertIn("'AssumeRoleUnauthorizedAccess'", str(error))
        self.assertIn(message, str(error))
        self.assertIn("is an error document", str(error))

    def test_the_token_is_in_no_local_of_any_frame_of_an_error(self) -> None:
        cases: dict[str, tuple[str, str, Fault, dict[str, Any]]] = {
            "403": ("GET", MAC_PATH, Reply(403), {}),
            "timeout": ("GET", MAC_PATH, never_answer, {"timeout": 0.2}),
            "reset": ("GET", MAC_PATH, drop_connection, {"attempts": 1}),
            "cut": ("GET", MAC_PATH, cut_answer(b"x" * 50, 80, chunked=True), {"attempts": 1}),
            "malformed": ("GET", "/latest/meta-data/ami-launch-index", Reply(200, b"x"), {}),
            "401 twice": ("GET", MAC_PATH, Reply(401), {}),
            "token cut": ("PUT", TOKEN_PATH, cut_answer(b"t" * 56, 120, chunked=True), {}),
        }
        for name, (method, path, fault, options) in cases.items():
            with self.subTest(name):
                imds = self.serve()
                client = imds.client(**options)
                self.assertEqual(client.instance_id, INSTANCE_ID)  # a token in hand
                imds.inject(method, path, *[fault] * 3)
                if method == "PUT":
                    client._transport._token.forget()
                attribute = "ami_launch_index" if "launch" in path else "mac"
                error = error_of(lambda: getattr(client, attribute))  # noqa: B023
                tokens = [*imds.tokens, "t" * 56]
                checked = 0
                for where, shown in frame_locals(error):
                    checked += 1
                    for token in tokens:
                        self.assertNotIn(token, shown, where)
                self.assertGreater(checked, 10)


class DesynchronisationTests(LoopbackTestCase):
    """A value is the whole answer to its own request, or an EC2MetadataError."""

    def test_an_interim_answer_closes_the_connection(self) -> None:
        imds = self.serve()
        early = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        imds.inject("GET", "/latest/meta-data/instance-id", kept_open(early + ok_answer(b"i-x")))
        client = imds.client(attempts=1)
        self.assertEqual(client.mac, PRIMARY_MAC)
        error = error_of(lambda: client.instance_id)
        self.assertIsInstance(error, EC2MetadataMalformedError)
        self.assertIn("an interim answer 103", str(error))
        self.assertEqual(client.instance_type, "t3.micro")  # never the answer left behind
        self.assertEqual(client.ami_id, AMI_ID)
        self.assertEqual(client.instance_id, INSTANCE_ID)

    def test_100_continue_is_skipped(self) -> None:
        imds = self.serve()
        answer = b"HTTP/1.1 100 Continue\r\n\r\n" + ok_answer(INSTANCE_ID.encode())
        imds.inject("GET", "/latest/meta-data/instance-id", kept_open(answer))
        client = imds.client(attempts=1)
        self.assertEqual(client.instance_id, INSTANCE_ID)
        self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(imds.connections, 1)

    def test_bytes_beyond_the_end_close_the_connection(self) -> None:
        imds = self.serve()
        stray = ok_answer(b"m9.stray")
        imds.inject("GET", MAC_PATH, kept_open(ok_answer(PRIMARY_MAC.encode()) + stray))
        client = imds.client(attempts=1)
        self.assertEqual(client.mac, PRIMARY_MAC)
        self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(imds.connections, 2)

    def test_bytes_arriving_after_the_answer_close_the_connection(self) -> None:
        imds = self.serve()

        def late_stray(handler: http.server.BaseHTTPRequestHandler) -> None:
            handler.wfile.write(ok_answer(PRIMARY_MAC.encode()))
            handler.wfile.flush()
            time.sleep(0.1)
            handler.wfile.write(ok_answer(b"m9.stray"))

        imds.inject("GET", MAC_PATH, late_stray)
        client = imds.client(attempts=1)
        self.assertEqual(client.mac, PRIMARY_MAC)
        time.sleep(0.3)
        self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(imds.connections, 2)

    def test_a_kept_alive_connection_reset_between_reads_is_replaced(self) -> None:
        imds = self.serve()

        def answer_then_reset(handler: http.server.BaseHTTPRequestHandler) -> None:
            handler.wfile.write(ok_answer(PRIMARY_MAC.encode()))
            handler.wfile.flush()
            linger = struct.pack("ii", 1, 0)  # close with a reset, not a FIN
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            handler.connection.close()
            handler.close_connection = True

        imds.inject("GET", MAC_PATH, answer_then_reset)
        client = imds.client(attempts=1)
        self.assertEqual(client.mac, PRIMARY_MAC)
        time.sleep(0.1)
        self.assertEqual(client.instance_type, "t3.micro")
        self.assertEqual(imds.connections, 2)
        self.assertEqual(imds.count("GET", "/latest/meta-data/instance-type"), 1)

    def test_answers_that_cannot_be_accounted_for(self) -> None:
        body = INSTANCE_ID.encode()
        cases = {
            "two lengths": ok_answer(body, b"Content-Length: 5"),
            "a length that is no number": ok_answer(body).replace(b"Length: 19", b"Length: +19"),
            "gzip": ok_answer(body, b"Transfer-Encoding: gzip"),
            "a folded header": ok_answer(body, b" folded"),
            "not HTTP": b"ICY 200 OK\r\n\r\n" + body,
            "a chunk size that is no number": b"HTTP/1.1 200 OK\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0x13\r\n" + body + b"\r\n0\r\n\r\n",
            "a chunk longer than its size": b"HTTP/1.1 200 OK\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\n" + body + b"\r\n0\r\n\r\n",
        }
        for name, answer in cases.items():
            with self.subTest(name):
                imds = self.serve()
                imds.inject("GET", "/latest/meta-data/instance-id", kept_open(answer))
                client = imds.client(attempts=1)
                error = error_of(lambda: client.instance_id)  # noqa: B023
                self.assertIsInstance(error, EC2MetadataMalformedError)
                self.assertIn("the connection was closed", str(error))
                self.assertEqual(client.instance_type, "t3.micro")
                self.assertEqual(imds.connections, 2)

    def test_an_empty_answer_ended_by_closing_is_cut(self) -> None:
        imds = self.serve()
        imds.inject("GET", MAC_PATH, raw_answer(b"HTTP/1.1 200 OK\r\n\r\n"))
        error = error_of(lambda: imds.client(attempts=1).mac)
        self.assertIn("closed before the answer's body", str(error))

    def test_listing_entries_that_are_not_one_path_segment(self) -> None:
        for entry in ("..", ".", "a/b", "a?b", "a#b", "a%2Fb", "a\x01b", "a\x7fb"):
            for where, attribute in [
                ("meta-data/tags/instance", "tags"),
                ("meta-data/network/interfaces/macs", "network_interfaces"),
                ("meta-data/iam/security-credentials", "iam_security_credentials"),
                ("meta-data/block-device-mapping", "block_device_mapping"),
            ]:
                with self.subTest(entry=entry, where=where):
                    imds = self.serve()
                    imds.put(where, Directory({}, f"first\n{entry}\n"))
                    client = imds.client()
                    error = error_of(lambda: getattr(client, attribute))  # noqa: B023
                    self.assertIsInstance(error, EC2MetadataMalformedError)
                    self.assertIn("cannot be a path segment", str(error))
                    self.assertEqual(imds.count("GET"), 1)  # the listing, and nothing else

    def test_tree_entries_that_are_not_one_path_segment(self) -> None:
        imds = self.serve()
        imds.put("meta-data/placement", Directory({}, "availability-zone\n../instance-id\n"))
        error = error_of(lambda: cast(MetadataTree, imds.client().tree["placement"])["zone"])
        self.assertIsInstance(error, EC2MetadataMalformedError)
        self.assertEqual(error.path, "meta-data/placement/")  # type: ignore[attr-defined]

    def test_public_key_indexes_and_association_addresses(self) -> None:
        imds = self.serve()
        imds.put("meta-data/public-keys", Directory({}, "1_0=web-key"))
        error = error_of(lambda: imds.client().public_keys)
        self.assertIn("must be a number", str(error))
        primary = f"meta-data/network/interfaces/macs/{PRIMARY_MAC}"
        imds.put(f"{primary}/public-ipv4s", "54.78.12.34/../..")
        error = error_of(lambda: imds.client().network_interfaces[PRIMARY_MAC].ipv4_associations)
        self.assertEqual(error.path, f"{primary}/public-ipv4s")  # type: ignore[attr-defined]

    def test_a_path_that_cannot_be_encoded(self) -> None:
        imds = self.serve()
        client = imds.client()
        for path in ("meta-data/\udcff", "meta-data/\ud800x"):
            with self.subTest(path=path):
                error = error_of(lambda: client.fetch(path))  # noqa: B023
                self.assertIsInstance(error, EC2MetadataConfigError)
                self.assertIn("cannot be sent", str(error))
        self.assertEqual(imds.count(), 0)

    def test_a_host_that_cannot_be_encoded(self) -> None:
        client = EC2Metadata(endpoint="http://" + "a" * 64 + ".example:1338")
        error = error_of(lambda: client.mac)
        self.assertIsInstance(error, EC2MetadataConfigError)
        self.assertIn("cannot be sent", str(error))


if __name__ == "__main__":  # pragma: no cover - run as a script
    unittest.main()
