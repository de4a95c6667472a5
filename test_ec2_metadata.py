"""Tests of ec2_metadata against a loopback fake of the Instance Metadata Service.

Run with the standard library alone (``python -m unittest``) or under pytest.  No test
ever connects to anything but 127.0.0.1: a guard installed at import makes any other
connection fail the test that tried it.
"""

from __future__ import annotations

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
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
import unittest
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, NamedTuple, NoReturn, Protocol, TypeVar, Union, cast
from unittest import mock
from urllib.parse import unquote

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
PRIMARY_MAC = "0e:49:61:0f:c3:11"
SECONDARY_MAC = "0e:5a:77:21:b0:9f"
ROLE_NAME = "web-stack-WebRole-1TQ0ZJ3X6N4QF"
PROFILE_ARN = "arn:aws:iam::123456789012:instance-profile/web-stack-WebProfile-O8XJ5GQZ2K1A"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0123456789abcdef web@example\n"
USER_DATA = b"#!/bin/bash\necho hello > /tmp/hello\n"

IDENTITY_DOCUMENT = {
    "accountId": "123456789012",
    "architecture": "x86_64",
    "availabilityZone": "eu-west-1b",
    "billingProducts": None,
    "devpayProductCodes": None,
    "marketplaceProductCodes": None,
    "imageId": "ami-0a1b2c3d4e5f60718",
    "instanceId": "i-0123456789abcdef0",
    "instanceType": "t3.micro",
    "kernelId": None,
    "pendingTime": "2026-11-01T09:15:27Z",
    "privateIp": "172.31.16.25",
    "ramdiskId": None,
    "region": "eu-west-1",
    "version": "2017-09-30",
}
IAM_INFO = {
    "Code": "Success",
    "LastUpdated": "2026-11-27T02:10:41Z",
    "InstanceProfileArn": PROFILE_ARN,
    "InstanceProfileId": "AIPAZ4EXAMPLEPROFILE1",
}
CREDENTIALS = {
    "Code": "Success",
    "LastUpdated": "2026-11-27T02:10:41Z",
    "Type": "AWS-HMAC",
    "AccessKeyId": "ASIAZ4EXAMPLEKEY0001",
    "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEYxx",
    "Token": "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENvalue==",
    "Expiration": "2026-11-27T08:26:12Z",
}
SPOT_ACTION = {"action": "terminate", "time": "2026-11-27T04:02:00Z"}
SCHEDULED_EVENT = {
    "NotBefore": "4 Dec 2026 09:00:00 GMT",
    "Code": "system-reboot",
    "Description": "scheduled reboot",
    "EventId": "instance-event-0d59937288b749b32",
    "NotAfter": "4 Dec 2026 11:00:00 GMT",
    "State": "active",
}
PKCS7 = "MIAGCSqGSIb3DQEHAqCAMIACAQExCzAJBgUrDgMCGgUAMIAGCSqGSIb3DQEHAaCAJIAEggHbewog"
RSA2048 = "MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwGggCSABIIB"
SIGNATURE = "dExamplesignatureVGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ=="

Tree = dict[str, Union["Tree", str, bytes]]


class Directory(dict):  # type: ignore[type-arg]
    """A directory of the tree whose listing is not the plain one (``public-keys/``)."""

    def __init__(self, entries: Tree, listing: str) -> None:
        super().__init__(entries)
        self.listing = listing


def instance_tree(*, mock_quirks: bool = False) -> Tree:
    """The metadata of one realistic instance, in the form the fake serves.

    With ``mock_quirks``, answers look like amazon-ec2-metadata-mock's: tab-indented JSON
    and a ``public-keys/`` listing of ``0/`` with no key name.
    """

    def as_json(value: object) -> str:
        return json.dumps(value, indent="\t" if mock_quirks else 2)

    def interface(number: int, public: bool) -> Tree:
        data: Tree = {
            "device-number": str(number),
            "interface-id": f"eni-0{number}1234567890abcde",
            "local-hostname": f"ip-172-31-16-{25 + number}.eu-west-1.compute.internal",
            "local-ipv4s": f"172.31.16.{25 + number}\n172.31.16.{99 + number}",
            "mac": PRIMARY_MAC if number == 0 else SECONDARY_MAC,
            "owner-id": "123456789012",
            "security-group-ids": "sg-0aa11bb22cc33dd44\nsg-0ee55ff66aa77bb88",
            "security-groups": "web\nssh-access",
            "subnet-id": f"subnet-0{number}a1b2c3d4e5f6789",
            "subnet-ipv4-cidr-block": "172.31.16.0/20",
            "vpc-id": "vpc-0f1e2d3c4b5a69788",
            "vpc-ipv4-cidr-block": "172.31.0.0/16",
            "vpc-ipv4-cidr-blocks": "172.31.0.0/16\n100.64.0.0/16",
        }
        # AWS documents network-card; amazon-ec2-metadata-mock serves network-card-index.
        data["network-card-index" if mock_quirks or number else "network-card"] = str(number)
        if public:
            data.update(
                {
                    "ipv4-associations": {"54.78.12.34": "172.31.16.25"},
                    "ipv6s": "2a05:d018:1234:5600::10\n2a05:d018:1234:5600::11",
                    "ipv4-prefix": "172.31.16.48/28",
                    "ipv6-prefix": "2a05:d018:1234:5600:9c3f::/80",
                    "public-hostname": "ec2-54-78-12-34.eu-west-1.compute.amazonaws.com",
                    "public-ipv4s": "54.78.12.34",
                    "subnet-ipv6-cidr-blocks": "2a05:d018:1234:5600::/64",
                    "vpc-ipv6-cidr-blocks": "2a05:d018:1234:5600::/56",
                }
            )
        return data

    public_keys: Tree = {"0": {"openssh-key": SSH_KEY}}
    iam: Tree = {
        "info": as_json(IAM_INFO),
        "security-credentials": {ROLE_NAME: as_json(CREDENTIALS)},
    }
    event = (
        dict(SCHEDULED_EVENT, NotBeforeDeadline="6 Dec 2026 09:00:00 GMT")
        if mock_quirks
        else SCHEDULED_EVENT
    )
    return {
        "meta-data": {
            "ami-id": "ami-0a1b2c3d4e5f60718",
            "ami-launch-index": "0",
            "ami-manifest-path": "(unknown)",
            "autoscaling": {"target-lifecycle-state": "InService"},
            "block-device-mapping": {"ami": "/dev/xvda", "ebs1": "sdb", "root": "/dev/xvda"},
            "events": {
                "maintenance": {"scheduled": as_json([event])},
                "recommendations": {"rebalance": as_json({"noticeTime": "2026-11-27T03:50:00Z"})},
            },
            "hostname": "ip-172-31-16-25.eu-west-1.compute.internal",
            # The mock lists security-credentials both as a value and as a directory.
            "iam": Directory(iam, "info\nsecurity-credentials\nsecurity-credentials/")
            if mock_quirks
            else iam,
            "instance-action": "none",
            "instance-id": "i-0123456789abcdef0",
            "instance-life-cycle": "spot",
            "instance-type": "t3.micro",
            "ipv6": "2a05:d018:1234:5600::10",
            "kernel-id": "aki-dc9ed9af",
            "local-hostname": "ip-172-31-16-25.eu-west-1.compute.internal",
            "local-ipv4": "172.31.16.25",
            "mac": PRIMARY_MAC,
            "network": {
                "interfaces": {
                    "macs": {
                        PRIMARY_MAC: interface(0, public=True),
                        SECONDARY_MAC: interface(1, public=False),
                    }
                }
            },
            "placement": {
                "availability-zone": "eu-west-1b",
                "availability-zone-id": "euw1-az3",
                "group-name": "web-spread",
                "host-id": "h-0a1b2c3d4e5f60718",
                "partition-number": "3",
                "region": "eu-west-1",
            },
            "product-codes": "6njl1pau431dv1qxipg63mvah",
            "public-hostname": "ec2-54-78-12-34.eu-west-1.compute.amazonaws.com",
            "public-ipv4": "54.78.12.34",
            "public-keys": public_keys if mock_quirks else Directory(public_keys, "0=web-key"),
            "ramdisk-id": "ari-f4b3a3f1",
            "reservation-id": "r-0123456789abcdef0",
            "security-groups": "web\nssh-access",
            "services": {"domain": "amazonaws.com", "partition": "aws"},
            "spot": {"instance-action": as_json(SPOT_ACTION)},
            "tags": {"instance": {"Name": "web-1", "Environment": "production"}},
        },
        "dynamic": {
            "instance-identity": {
                "document": as_json(IDENTITY_DOCUMENT),
                "pkcs7": PKCS7,
                "rsa2048": RSA2048,
                "signature": SIGNATURE,
            }
        },
        "user-data": USER_DATA,
    }


class Clock(Protocol):
    """What times the tokens of a RecordingIMDS: the time module or a FakeClock."""

    def monotonic(self) -> float: ...


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


class FakeIMDS:
    """A stand-in for the Instance Metadata Service on 127.0.0.1 and a free port.

    It enforces IMDSv2 as the real service does: a token from ``PUT /latest/api/token``
    (400 without a TTL from 1 to 21600, 403 with ``X-Forwarded-For``), 401 for a GET
    without a valid token, 404 for unknown paths, and directory listings with a ``/``
    after sub-directories.  It records every request and counts TCP connections; tests
    can script faults per path and revoke tokens.
    """

    def __init__(
        self, tree: Tree | None = None, *, mock_quirks: bool = False, clock: Clock = time
    ) -> None:
        self.tree = instance_tree(mock_quirks=mock_quirks) if tree is None else tree
        self.clock = clock  # what times the tokens: the time module, or a FakeClock
        self.requests: list[Request] = []
        self.connections = 0
        self.tokens: dict[str, float] = {}
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.latency = 0.0
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHandler)
        self.server.daemon_threads = True
        self.server.imds = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeIMDS:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

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

    def remove(self, path: str) -> None:
        """Delete the entry at ``path`` (``meta-data/kernel-id``) so the fake answers 404."""
        *parents, name = path.split("/")
        node: Any = self.tree
        for part in parents:
            node = node[part]
        del node[name]

    def put(self, path: str, value: str | bytes | Tree) -> None:
        *parents, name = path.split("/")
        node: Any = self.tree
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = value

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # Serving

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
        elif method == "PUT":
            self._issue_token(handler, headers)
        elif not self._token_is_valid(headers.get(TOKEN_HEADER.lower())):
            handler.reply(401, b"")
        else:
            self._serve_path(handler)

    def _issue_token(self, handler: _FakeHandler, headers: dict[str, str]) -> None:
        if handler.path != "/latest/api/token":
            handler.reply(405 if handler.path.startswith("/latest/") else 404, b"")
            return
        if "x-forwarded-for" in headers:
            handler.reply(403, b"Forbidden")
            return
        ttl = headers.get(TTL_HEADER.lower(), "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            handler.reply(400, b"Bad Request")
            return
        token = secrets.token_urlsafe(42)
        with self.lock:
            self.tokens[token] = self.clock.monotonic() + int(ttl)
        handler.reply(200, token.encode(), ((TTL_HEADER, ttl),))

    def _token_is_valid(self, token: str | None) -> bool:
        with self.lock:
            expiry = self.tokens.get(token or "")
        return expiry is not None and self.clock.monotonic() < expiry

    def _serve_path(self, handler: _FakeHandler) -> None:
        if not handler.path.startswith("/latest/"):
            handler.reply(404, b"Not Found")
            return
        relative = unquote(handler.path[len("/latest/") :])
        node: Any = self.tree
        for part in relative.rstrip("/").split("/"):
            if not isinstance(node, dict) or part not in node:
                handler.reply(404, b"Not Found")
                return
            node = node[part]
        if isinstance(node, Directory):
            handler.reply(200, node.listing.encode())
        elif isinstance(node, dict):
            listing = "\n".join(f"{k}/" if isinstance(v, dict) else k for k, v in node.items())
            handler.reply(200, listing.encode())
        else:  # a value asked for with a trailing slash is served too, as the mock does
            handler.reply(200, node if isinstance(node, bytes) else node.encode())


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server_version = "EC2ws"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds
        # the body until the client's delayed ACK, 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        imds: FakeIMDS = self.server.imds  # type: ignore[attr-defined]
        with imds.lock:
            imds.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def do_GET(self) -> None:
        self.server.imds.answer(self, "GET")  # type: ignore[attr-defined]

    def do_PUT(self) -> None:
        self.server.imds.answer(self, "PUT")  # type: ignore[attr-defined]

    def reply(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
        with (
            mock.patch.object(sys.modules[__name__], "_unguarded_connect") as real,
            mock.patch(f"{__name__}._unguarded_connect_ex") as real_ex,
        ):
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
        imds.put("meta-data/tags/instance/team name%", "platform")
        tags = imds.client().tags
        self.assertEqual(tags["team name%"], "platform")
        self.assertEqual(imds.count("GET", "/latest/meta-data/tags/instance/team%20name%25"), 1)


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
        with (
            mock.patch.object(ec2_metadata, "time", clock),
            self.assertLogs("ec2_metadata", "DEBUG") as logs,
        ):
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
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://user:pw@127.0.0.1:1338"),
            ("AWS_EC2_METADATA_DISABLED", "yes"),
        ]
        for variable, value in cases:
            with (
                self.subTest(variable=variable, value=value),
                mock.patch.dict(os.environ, {variable: value}),
            ):
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
        cases: tuple[dict[str, Any], ...] = ({"session": object()}, {"pool_manager": object()})
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


class AnswerReaderTests(unittest.TestCase):
    """The byte budget and deadline on the lines of every answer."""

    def reader(self, data: bytes, budget: int, seconds: float = 60) -> Any:
        return ec2_metadata._AnswerReader(io.BufferedReader(io.BytesIO(data)), budget, seconds)

    def test_lines_within_the_budget_and_the_rest_from_the_file(self) -> None:
        reader = self.reader(b"status\r\nheader\r\nbody-bytes", budget=16)
        self.assertEqual(reader.readline(), b"status\r\n")
        self.assertEqual(reader.readline(), b"header\r\n")
        self.assertEqual(reader.read(4), b"body")  # the body: bounded by the size asked for
        self.assertEqual(reader.read(), b"-bytes")

    def test_lines_past_the_budget_stop(self) -> None:
        reader = self.reader(b"0123456789\r\n" * 3, budget=30)
        reader.readline()
        reader.readline()
        with self.assertRaises(ec2_metadata._AnswerTooLong):
            reader.readline()

    def test_a_line_past_the_deadline_times_out(self) -> None:
        reader = self.reader(b"line\n" * 3, budget=100, seconds=-1)
        with self.assertRaises(OSError) as caught:
            reader.readline()
        self.assertEqual(str(caught.exception), "timed out")


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
        self.assertIn("IncompleteRead", str(caught.exception))
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
                with (
                    mock.patch.object(ec2_metadata, "time", clock),
                    self.assertRaises(EC2MetadataHTTPError) as caught,
                ):
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
        with (
            mock.patch.object(ec2_metadata, "time", clock),
            self.assertRaises(EC2MetadataHTTPError) as caught,
        ):
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
        self.assertIn("the connection failed while waiting for the answer", str(caught.exception))
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
            with (
                mock.patch.object(ec2_metadata, "time", clock),
                self.assertRaises(EC2MetadataConnectionError) as caught,
            ):
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
        with (
            self.assertLogs(level="DEBUG") as logs,
            mock.patch.object(ec2_metadata, "time", FakeClock()),
        ):
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


class CommandLineTests(LoopbackTestCase):
    def imds(self, *argv: str) -> tuple[int, bytes, str]:
        """Run ``imds ARGV`` in this process: its exit status, stdout and stderr."""
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        stderr = io.StringIO()
        with mock.patch.object(sys, "stdout", stdout), mock.patch.object(sys, "stderr", stderr):
            try:
                status = ec2_metadata.main(list(argv))
            except SystemExit as exit:
                status = int(exit.code or 0)
            stdout.flush()
        return status, stdout.buffer.getvalue(), stderr.getvalue()

    def setUp(self) -> None:
        super().setUp()
        self.fake = self.serve()
        os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.fake.url

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
        status, out, _ = self.imds("tree")
        self.assertEqual(status, 0)
        self.assertEqual(json.loads(out), expected_tree(self.fake.tree["meta-data"]))  # type: ignore[arg-type]

    def test_a_failure_inside_a_value_fails_get(self) -> None:
        self.fake.remove(f"meta-data/network/interfaces/macs/{SECONDARY_MAC}/vpc-id")
        status, out, err = self.imds("get", "network-interfaces")
        self.assertEqual(status, 1)
        self.assertIsNone(json.loads(out)[SECONDARY_MAC]["vpc_id"])
        self.assertIn(f"imds: network-interfaces.{SECONDARY_MAC}.vpc_id:", err)

    def test_an_unknown_name_is_a_usage_error_listing_the_names(self) -> None:
        status, out, err = self.imds("get", "instance-idd")
        self.assertEqual((status, out), (2, b""))
        self.assertIn("unknown metadata name 'instance-idd'", err)
        self.assertIn("instance_id", err)

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

    def test_an_invalid_setting_is_a_usage_error(self) -> None:
        status, _, err = self.imds("--timeout", "-1", "get", "mac")
        self.assertEqual(status, 2)
        self.assertIn("the timeout= argument must be a positive number", err)

    def test_help_names_every_attribute(self) -> None:
        status, out, _ = self.imds("--help")
        self.assertEqual(status, 0)
        for name in ec2_metadata._metadata_names(EC2Metadata):
            self.assertIn(name, out.decode())
        self.assertEqual(self.imds("get", "--help")[0], 0)


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
    port = fake.server.server_address[1]
    again = FakeIMDS(fake.tree)
    again.server.server_close()
    again.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _FakeHandler)
    again.server.daemon_threads = True
    again.server.imds = again  # type: ignore[attr-defined]
    again.thread = threading.Thread(
        target=again.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    return again


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
    """Run ``imds ARGV`` in this process: its exit status, stdout and stderr.

    The fake's server threads share this stderr: what they print when a signal cuts a
    request short (the socketserver's report of a reset connection) is left out.
    """
    import re

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with mock.patch.object(sys, "stdout", stdout), mock.patch.object(sys, "stderr", stderr):
        try:
            status = ec2_metadata.main(list(argv))
        except SystemExit as exit:
            status = int(exit.code or 0)
        stdout.flush()
    server_noise = r"-{40}\nException occurred during processing of request .*?\n-{40}\n"
    return status, stdout.buffer.getvalue(), re.sub(server_noise, "", stderr.getvalue(), flags=re.S)


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
                self.assertIn("usage: imds watch", err)

    def test_a_closed_stdout_ends_it_with_status_1(self) -> None:
        class ClosedPipe(io.StringIO):
            def write(self, text: str) -> int:
                raise BrokenPipeError(32, "Broken pipe")

        self.fake.put(SPOT_PATH, spot_notice())
        stderr = io.StringIO()
        with (
            mock.patch.object(sys, "stdout", ClosedPipe()),
            mock.patch.object(sys, "stderr", stderr),
        ):
            status = ec2_metadata.main(["watch", "--exec", self.hook("record")])
        self.assertEqual(
            (status, stderr.getvalue()), (1, "imds: watch: stdout was closed: stopping\n")
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
        err = cast(Any, process.stderr).read()
        self.assertEqual(err, "imds: watch: stdout was closed: stopping\n")

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

    def test_the_demo_runs_a_command_against_the_fake(self) -> None:
        demo = ("test_ec2_metadata.py", "with-fake-imds", sys.executable, "-m", "ec2_metadata")
        result = self.run_python(*demo, "get", "region")
        self.assertEqual((result.returncode, result.stdout), (0, "eu-west-1\n"), result.stderr)
        self.assertIn("fake IMDS serving on http://127.0.0.1:", result.stderr)
        self.assertEqual(self.run_python(*demo, "get", "nothing").returncode, 2)

    def test_the_demo_points_the_command_at_the_fake(self) -> None:
        check = (
            "import os, sys; sys.exit(7 if os.environ[sys.argv[1]].startswith(sys.argv[2]) else 1)"
        )
        stderr = io.StringIO()
        with mock.patch.object(sys, "stderr", stderr):
            status = with_fake_imds(
                [
                    sys.executable,
                    "-c",
                    check,
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                    "http://127.0.0.1:",
                ]
            )
        self.assertEqual(status, 7)
        self.assertIn("fake IMDS serving on http://127.0.0.1:", stderr.getvalue())

    def test_the_demo_needs_a_command(self) -> None:
        stderr = io.StringIO()
        with mock.patch.object(sys, "stderr", stderr):
            self.assertEqual(with_fake_imds([]), 2)
        self.assertIn("usage:", stderr.getvalue())


def with_fake_imds(command: list[str]) -> int:
    """Serve the fake IMDS on a free loopback port and run ``command`` against it."""
    if not command:
        print("usage: python test_ec2_metadata.py with-fake-imds COMMAND...", file=sys.stderr)
        return 2
    with FakeIMDS() as imds:
        print(f"fake IMDS serving on {imds.url}", file=sys.stderr)
        env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":  # pragma: no cover - the two ways to run this file
    if sys.argv[1:2] == ["with-fake-imds"]:
        sys.exit(with_fake_imds(sys.argv[2:]))
    unittest.main()
