"""Read the EC2 Instance Metadata Service (IMDSv2) with nothing but the standard library.

A quick example::

    >>> from ec2_metadata import ec2_metadata
    >>> ec2_metadata.region
    'eu-west-1'
    >>> ec2_metadata.network_interfaces[ec2_metadata.mac].subnet_id
    'subnet-0123456789abcdef0'

Each attribute is fetched on first access and then cached: ``del ec2_metadata.tags``
forgets one value, ``ec2_metadata.clear_all()`` forgets them all.  Every request carries
an IMDSv2 session token; the client never falls back to IMDSv1, never talks to a proxy
and never follows a redirect.  Every failure raises a subclass of `EC2MetadataError`.

Settings come from the keyword arguments of `EC2Metadata`, else from the environment
variables the AWS SDKs read (``AWS_EC2_METADATA_SERVICE_ENDPOINT``,
``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE``, ``AWS_EC2_METADATA_DISABLED``,
``AWS_METADATA_SERVICE_TIMEOUT``, ``AWS_METADATA_SERVICE_NUM_ATTEMPTS``), read when a
client makes its first request.
"""

from __future__ import annotations

import _thread
import _weakref
import os
import time
from collections.abc import Mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers know it
if TYPE_CHECKING:  # pragma: no cover
    import argparse
    import socket
    from collections.abc import Iterator
    from datetime import datetime
    from typing import (
        Any,
        Callable,
        ClassVar,
        Generic,
        Literal,
        NoReturn,
        TypedDict,
        TypeVar,
        Union,
        cast,
    )

    _T = TypeVar("_T")
    _Lifetime = Union[str, Callable[[Any], float]]
    _StringMapping = Mapping[str, str]
    _TreeMapping = Mapping[str, Union["MetadataTree", str]]
else:
    # Importing typing takes longer than importing all of this module, and nothing here
    # needs it at run time: annotations stay strings, and the TypedDicts are dict classes.
    class TypedDict(dict):
        def __init_subclass__(cls, total: bool = True) -> None:
            super().__init_subclass__()

    def cast(kind, value):
        return value

    class Generic:  # Generic[_T] is just a base class at run time
        def __class_getitem__(cls, parameters):
            return object

    _T = None
    # collections.abc classes can be subscripted only from Python 3.9 on.
    _StringMapping = _TreeMapping = Mapping


__all__ = [
    "EC2Metadata",
    "EC2MetadataConfigError",
    "EC2MetadataConnectionError",
    "EC2MetadataDisabledError",
    "EC2MetadataError",
    "EC2MetadataHTTPError",
    "EC2MetadataMalformedError",
    "EC2MetadataNotFoundError",
    "IamInfoDict",
    "IamSecurityCredentialsDict",
    "InstanceIdentityDocumentDict",
    "InstanceTags",
    "MetadataTree",
    "NetworkInterface",
    "PublicKey",
    "RebalanceRecommendation",
    "ScheduledEventDict",
    "SpotInstanceAction",
    "ec2_metadata",
    "main",
]

__version__ = "1.0.0"


# Errors ------------------------------------------------------------------------------


class EC2MetadataError(Exception):
    """The base class of every error this module raises."""


class EC2MetadataConfigError(EC2MetadataError, ValueError):
    """A keyword argument or environment variable has a value that cannot be used."""


class EC2MetadataDisabledError(EC2MetadataError):
    """``AWS_EC2_METADATA_DISABLED`` (or ``disabled=True``) forbids any request."""


class _PathError(EC2MetadataError):
    """An error about one metadata path, kept in `path`."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.path)


class EC2MetadataConnectionError(_PathError):
    """The service could not be reached, did not answer in time, or cut its answer short."""


class EC2MetadataHTTPError(_PathError):
    """The service answered a request with an error status (`status`) for `path`."""

    def __init__(self, message: str, status: int, path: str) -> None:
        super().__init__(message, path)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.status, self.path)


class EC2MetadataNotFoundError(EC2MetadataHTTPError):
    """The service answered 404 for a path that the attribute needs."""


class EC2MetadataMalformedError(_PathError):
    """The service answered, but with something that cannot be the value of `path`."""


# Public types ------------------------------------------------------------------------


class IamInfoDict(TypedDict):
    InstanceProfileArn: str
    InstanceProfileId: str
    LastUpdated: str


class IamSecurityCredentialsDict(TypedDict):
    LastUpdated: str
    Type: str
    AccessKeyId: str
    SecretAccessKey: str
    Token: str
    Expiration: str


class InstanceIdentityDocumentDict(TypedDict):
    accountId: str
    architecture: Literal["i386", "x86_64", "arm64"]
    availabilityZone: str
    billingProducts: list[str] | None
    marketplaceProductCodes: list[str] | None
    imageId: str
    instanceId: str
    instanceType: str
    kernelId: str | None
    pendingTime: str
    privateIp: str
    ramdiskId: str | None
    region: str
    version: str


class _ScheduledEventKeys(TypedDict):
    Code: str
    Description: str
    EventId: str
    NotBefore: datetime
    State: str


class ScheduledEventDict(_ScheduledEventKeys, total=False):
    """A scheduled maintenance event; its times are timezone-aware UTC datetimes."""

    NotAfter: datetime
    NotBeforeDeadline: datetime


class _Record:
    """A value made of named fields, compared and shown by them."""

    __slots__: tuple[str, ...] = ()

    def _asdict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._asdict().items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._asdict() == other._asdict()

    def __hash__(self) -> int:
        return hash(tuple(self._asdict().values()))


class RebalanceRecommendation(_Record):
    """EC2's signal that this spot instance is at elevated risk of interruption."""

    __slots__ = ("notice_time",)

    def __init__(self, notice_time: datetime) -> None:
        self.notice_time = notice_time
        """When the recommendation was made, as a timezone-aware UTC datetime."""


class SpotInstanceAction(_Record):
    """An action EC2 is about to take on this spot instance."""

    __slots__ = ("action", "time")

    def __init__(self, action: str, time: datetime) -> None:
        self.action = action
        """``"hibernate"``, ``"stop"`` or ``"terminate"``."""
        self.time = time
        """When the action will happen, approximately, as a timezone-aware UTC datetime."""


# Transport: settings, token, connection, retries --------------------------------------

_DEFAULT_ENDPOINTS = {"ipv4": "http://169.254.169.254", "ipv6": "http://[fd00:ec2::254]"}
_DEFAULT_TIMEOUT = 1.0
_DEFAULT_ATTEMPTS = 3
_MAX_TOKEN_TTL = 21600
_TOKEN_HEADER = "X-aws-ec2-metadata-token"
_TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
_TOKEN_PATH = "api/token"
_MAX_BODY = 1024 * 1024
_MAX_LINES = _MAX_BODY + 64 * 1024  # status, header, chunk-size and trailer lines of an answer
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
_HOP_LIMIT_FIX = (
    "aws ec2 modify-instance-metadata-options --instance-id ID --http-put-response-hop-limit 2"
)


class _Settings(_Record):
    """The settings of a client, resolved from its arguments and the environment."""

    __slots__ = (
        "attempts",
        "base_path",
        "disabled",
        "endpoint",
        "host",
        "port",
        "timeout",
        "token_ttl",
    )

    def __init__(
        self,
        *,
        endpoint: str,
        host: str,
        port: int,
        base_path: str,
        timeout: float,
        attempts: int,
        disabled: bool,
        token_ttl: int,
    ) -> None:
        self.endpoint = endpoint
        self.host = host
        self.port = port
        self.base_path = base_path
        self.timeout = timeout
        self.attempts = attempts
        self.disabled = disabled
        self.token_ttl = token_ttl


_VARIABLES = {
    "endpoint": _ENDPOINT_VARIABLE,
    "endpoint_mode": "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "timeout": "AWS_METADATA_SERVICE_TIMEOUT",
    "attempts": "AWS_METADATA_SERVICE_NUM_ATTEMPTS",
    "disabled": "AWS_EC2_METADATA_DISABLED",
}


def _setting(
    options: dict[str, Any], name: str, parse: Callable[[str, str], _T], default: _T
) -> _T:
    """The keyword argument if given, else the environment variable, else the default."""
    if name in options:
        return parse(str(options[name]), f"the {name}= argument")
    variable = _VARIABLES.get(name)
    raw = os.environ.get(variable, "").strip() if variable else ""
    if not raw:
        return default
    return parse(raw, cast(str, variable))


def _parse_timeout(raw: str, source: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise EC2MetadataConfigError(f"{source} must be a positive number of seconds, not {raw!r}")
    return value


def _positive_int_parser(upper: int) -> Callable[[str, str], int]:
    def parse(raw: str, source: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= upper:
            raise EC2MetadataConfigError(
                f"{source} must be a whole number from 1 to {upper}, not {raw!r}"
            )
        return value

    return parse


def _parse_disabled(raw: str, source: str) -> bool:
    if raw.lower() not in ("true", "false"):
        raise EC2MetadataConfigError(f"{source} must be true or false, not {raw!r}")
    return raw.lower() == "true"


def _parse_mode(raw: str, source: str) -> str:
    if raw.lower() not in _DEFAULT_ENDPOINTS:
        raise EC2MetadataConfigError(f"{source} must be IPv4 or IPv6, not {raw!r}")
    return raw.lower()


def _parse_endpoint(raw: str, source: str) -> tuple[str, str, int, str]:
    """Split an endpoint URL into (URL without trailing slash, host, port, path prefix)."""
    from urllib.parse import urlsplit

    problem = ""
    try:
        parts = urlsplit(raw)
        port = parts.port or 80
    except ValueError as error:
        problem = str(error)
    else:
        if parts.scheme != "http":
            problem = "the scheme must be http:// (the service speaks plain HTTP)"
        elif not parts.hostname:
            problem = "it names no host"
        elif parts.query or parts.fragment or parts.username or parts.password:
            problem = "it may not carry a query, a fragment or credentials"
    if problem:
        raise EC2MetadataConfigError(
            f"{source} must be a URL such as http://127.0.0.1:1338, not {raw!r}: {problem}"
        )
    base_path = parts.path.rstrip("/")
    return raw.rstrip("/"), cast(str, parts.hostname), port, base_path


def _resolve_settings(options: dict[str, Any]) -> _Settings:
    """The client's settings: each from its keyword argument, else the environment."""
    mode = _setting(options, "endpoint_mode", _parse_mode, "ipv4")
    default_endpoint = _parse_endpoint(_DEFAULT_ENDPOINTS[mode], "default")
    endpoint, host, port, base_path = _setting(
        options, "endpoint", _parse_endpoint, default_endpoint
    )
    return _Settings(
        endpoint=endpoint,
        host=host,
        port=port,
        base_path=base_path,
        timeout=_setting(options, "timeout", _parse_timeout, _DEFAULT_TIMEOUT),
        attempts=_setting(options, "attempts", _positive_int_parser(1000), _DEFAULT_ATTEMPTS),
        disabled=_setting(options, "disabled", _parse_disabled, False),
        token_ttl=_setting(
            options, "token_ttl", _positive_int_parser(_MAX_TOKEN_TTL), _MAX_TOKEN_TTL
        ),
    )


class _Retryable(Exception):
    """Carries an error that another attempt may cure (a 5xx, a 429, a broken answer)."""

    def __init__(self, error: EC2MetadataError) -> None:
        super().__init__(str(error))
        self.error = error


class _IdleConnectionClosed(Exception):
    """The server closed a kept-alive connection before this request: open a new one."""


# Messages: requests written and answers read by hand, every read within a deadline --------
#
# http.client reads an answer through a buffered file, so its timeout bounds each read of
# the socket, not the answer: a server that drips one byte a second keeps it reading for as
# long as it likes.  An answer here is read by `_Connection`, which gives every recv() only
# what is left of the attempt's deadline, and accounts for every byte on the connection.


class _Secret:
    """Bytes kept out of every repr (the token, and requests carrying it): error reporters
    record the repr of every local variable in a traceback's frames."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


class _Answer:
    """The status and body of one answer; its repr leaves out the body, which may be a token."""

    __slots__ = ("body", "status")

    def __init__(self, status: int) -> None:
        self.status = status
        self.body = bytearray()

    def __repr__(self) -> str:
        return f"<answer {self.status}, {len(self.body)} bytes>"


class _TooLong(Exception):
    """An answer went past its byte limit: refused, the connection closed."""


class _Unaccountable(Exception):
    """An answer the client cannot fully account for (an interim answer other than
    ``100 Continue``, a length it cannot trust, a line that is not HTTP)."""


class _CutShort(ConnectionError):
    """The server closed the connection before the answer ended."""


_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class _Connection:
    """One kept-alive HTTP/1.1 connection; every read is bounded by the caller's deadline.

    An answer is used only when its end is certain (a trusted length or the last chunk);
    anything left over after it, or an answer that does not say where it ends, means the
    connection is not used again.
    """

    def __init__(self, host: str, port: int, deadline: float) -> None:
        import socket

        self.address = (host, port)
        self._timeout_error = socket.timeout  # TimeoutError from 3.10 on, its own class before
        self._peek = socket.MSG_PEEK
        self.sock: socket.socket = socket.create_connection((host, port), _left(deadline))
        self._buffer = bytearray()
        self._line_budget = 0
        self.reused = False  # an answer was read on it before the current request
        self.received = False  # a byte of the current answer arrived
        self.keep_alive = True

    def close(self) -> None:
        self.sock.close()

    def idle(self) -> bool:
        """True when nothing arrived since the last answer: no stray bytes, no close, no reset.

        (Bytes already read past an answer closed the connection at once.)
        """
        self.sock.settimeout(0.0)  # a look, without waiting (select() fails past fd 1023)
        try:
            self.sock.recv(1, self._peek)
        except BlockingIOError:
            return True
        except OSError:
            pass  # reset by the server
        return False

    def exchange(self, request: _Secret, deadline: float) -> _Answer:
        """Send ``request``, read its answer; `keep_alive` then says if the connection is good."""
        self.received = False
        self.sock.settimeout(_left(deadline))
        self.sock.sendall(request.value)
        answer = self._read_answer(deadline)
        self.reused = True
        if self._buffer:  # bytes beyond the end of the answer: not ours to read
            self.keep_alive = False
        return answer

    def _read_answer(self, deadline: float) -> _Answer:
        self._line_budget = _MAX_LINES
        while True:
            version, status = self._status_line(deadline)
            lengths, encodings, closing = self._headers(deadline)
            if status != 100:
                break  # 100 Continue comes before the real answer; skip it
        if 100 <= status < 200:
            raise _Unaccountable(f"an interim answer {status} before the answer")
        answer = _Answer(status)
        self.keep_alive = version == b"HTTP/1.1" and not closing
        if status in (204, 304):
            return answer
        if encodings:
            if lengths or b",".join(encodings).strip().lower() != b"chunked":
                raise _Unaccountable("a Transfer-Encoding other than chunked alone")
            self._read_chunks(answer, deadline)
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                raise _Unaccountable("a Content-Length that cannot be trusted")
            length = int(lengths[0])
            if length > _MAX_BODY:
                raise _TooLong(
                    f"announced an answer of {length} bytes, more than the {_MAX_BODY}-byte limit"
                )
            answer.body += self._take(length, deadline)
        else:
            self._read_until_close(answer, deadline)
        return answer

    def _status_line(self, deadline: float) -> tuple[bytes, int]:
        parts = self._line(deadline).split(None, 2)
        if (
            len(parts) < 2
            or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise _Unaccountable("something that is not an HTTP status line")
        return parts[0], int(parts[1])

    def _headers(self, deadline: float) -> tuple[list[bytes], list[bytes], bool]:
        """The Content-Length and Transfer-Encoding values, and whether it says close."""
        lengths: list[bytes] = []
        encodings: list[bytes] = []
        closing = False
        while True:
            line = self._line(deadline)
            if not line:
                return lengths, encodings, closing
            name, colon, value = line.partition(b":")
            if not colon or line[:1] in (b" ", b"\t"):
                raise _Unaccountable("a header line that is not a header")
            name = name.strip().lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                encodings.append(value)
            elif name == b"connection":
                closing = closing or b"close" in value.lower().replace(b" ", b"").split(b",")

    def _read_chunks(self, answer: _Answer, deadline: float) -> None:
        while True:
            size_text = self._line(deadline).split(b";", 1)[0].strip()
            if not size_text or not _HEX_DIGITS.issuperset(size_text):
                raise _Unaccountable("a chunk size that is not a hexadecimal number")
            size = int(size_text, 16)
            if size == 0:
                break
            if len(answer.body) + size > _MAX_BODY:
                raise _TooLong(f"answered more than the {_MAX_BODY}-byte limit")
            answer.body += self._take(size, deadline)
            if self._line(deadline):
                raise _Unaccountable("a chunk longer than its size")
        while self._line(deadline):  # trailers, read and ignored
            pass

    def _read_until_close(self, answer: _Answer, deadline: float) -> None:
        """An answer with neither length nor chunks ends when the server closes."""
        self.keep_alive = False
        while self._fill(deadline, end_allowed=True):
            if len(self._buffer) > _MAX_BODY:
                raise _TooLong(f"answered more than the {_MAX_BODY}-byte limit")
        if not self._buffer:
            # Nothing, ended by closing: what an answer cut off in its headers looks like.
            raise _CutShort("the connection closed before the answer's body")
        answer.body += self._buffer
        del self._buffer[:]

    def _line(self, deadline: float) -> bytes:
        """The next line, without its line end; lines share the answer's byte budget."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                break
            if len(self._buffer) > self._line_budget:
                raise _TooLong(f"answered with more than {_MAX_LINES} bytes of lines")
            self._fill(deadline)
        self._line_budget -= end + 1
        if self._line_budget < 0:
            raise _TooLong(f"answered with more than {_MAX_LINES} bytes of lines")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            self._fill(deadline)
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken

    def _fill(self, deadline: float, *, end_allowed: bool = False) -> bool:
        """Add what the socket has to the buffer, waiting no later than ``deadline``.

        False at the end of the stream when ``end_allowed``; else the end is an error.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timeout_error("timed out")
        self.sock.settimeout(left)
        received = self.sock.recv(65536)
        if not received:
            if end_allowed:
                return False
            raise _CutShort("the connection closed before the answer ended")
        self.received = True
        self._buffer += received
        return True


def _left(deadline: float) -> float:
    """The seconds left before ``deadline``, never zero (which would mean non-blocking)."""
    return max(deadline - time.monotonic(), 0.001)


def _request_target(settings: _Settings, path: str) -> bytes:
    """``/latest/<path>`` under the endpoint, quoted, as it goes on the request line."""
    from urllib.parse import quote

    try:
        return f"{settings.base_path}/latest/{quote(path, safe='/:@=+,;')}".encode("ascii")
    except UnicodeEncodeError as error:
        raise EC2MetadataConfigError(
            f"the path {path!r} cannot be sent: it is not valid text ({error.reason})"
        ) from None


def _host_header(settings: _Settings) -> bytes:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    if settings.port != 80:
        host = f"{host}:{settings.port}"
    try:
        return host.encode("idna")
    except UnicodeError as error:
        raise EC2MetadataConfigError(
            f"the endpoint's host {settings.host!r} cannot be sent ({error})"
        ) from None


def _describe(error: BaseException) -> str:
    import socket

    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return str(error) or type(error).__name__


# Token and retry loop: one loop per access, with its deadline, attempts and 401 renewal --


class _Token:
    """The session token of a client, kept out of reprs, and when to ask for a new one."""

    __slots__ = ("_renew_at", "_value")

    def __init__(self) -> None:
        self._value: bytes | None = None
        self._renew_at = 0.0

    def usable(self) -> bool:
        return self._value is not None and time.monotonic() < self._renew_at

    def forget(self) -> None:
        self._value = None

    def accept(self, answer: _Answer, requested_at: float, ttl: int) -> bool:
        """Keep the token the answer holds; False when it holds none."""
        value = bytes(answer.body).strip()
        if not value or not all(33 <= byte <= 126 for byte in value):
            return False
        self._value = value
        # Renew a little early, timed from when the token was asked for, so that no request
        # is ever sent with a token this client knows to have expired.
        self._renew_at = requested_at + ttl - min(60.0, ttl / 10)
        return True

    def headers(self) -> _Secret:
        return _Secret(b"%s: %s\r\n" % (_TOKEN_HEADER.encode(), cast(bytes, self._value)))


class _Transport:
    """The settings, token, connection and retry loop of one client.

    One lock serialises requests, so threads share the token and never interleave HTTP on
    the connection.  After ``os.fork()`` the child drops the inherited connection and lock.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._lock = _thread.allocate_lock()
        self._settings: _Settings | None = None
        self._host = b""
        self._token_target = b""
        self._connection: _Connection | None = None
        self._token = _Token()
        key = id(self)
        _LIVE_TRANSPORTS[key] = _weakref.ref(self, lambda _: _LIVE_TRANSPORTS.pop(key, None))

    @property
    def settings(self) -> _Settings:
        with self._lock:
            return self._current_settings()

    def close(self) -> None:
        with self._lock:
            self._close()

    def reset(self) -> None:
        """Forget the token and the settings (read again on next use).

        The connection stays open for the next request, unless the settings read then
        name another endpoint.
        """
        with self._lock:
            self._settings = None
            self._token.forget()

    def __del__(self) -> None:
        # A client dropped with its connection open closes it, rather than leave the
        # socket to the garbage collector (and a ResourceWarning).
        self._close()

    def forget_after_fork(self) -> None:
        # The child must never talk over the parent's connection.  Closing the child's
        # copy of the socket leaves the parent's open: close() is not shutdown().  The
        # lock may have been held by a thread that does not exist in the child.
        self._lock = _thread.allocate_lock()
        self._close()

    def get(self, path: str) -> bytes:
        """GET ``latest/<path>``: the body of a 200 answer, else an EC2MetadataError.

        The whole access takes at most ``attempts`` x ``timeout``, plus the pauses between
        attempts, plus one ``timeout`` more when a 401 makes it renew the token.
        """
        with self._lock:
            settings = self._current_settings()
            if settings.disabled:
                raise EC2MetadataDisabledError(
                    f"not reading {path}: the instance metadata service is disabled by "
                    "AWS_EC2_METADATA_DISABLED (or disabled=True)"
                )
            target = _request_target(settings, path)
            attempt = 1
            renewed = False
            deadline = time.monotonic() + settings.timeout  # of this attempt: token, GET, all
            while True:
                try:
                    if not self._token.usable():
                        self._renew_token(settings, deadline)
                    answer = self._exchange(
                        settings,
                        "GET",
                        path,
                        target,
                        deadline=deadline,
                        headers=self._token.headers(),
                    )
                    if answer.status == 401 and not renewed:
                        # The token expired or was revoked (a stop and start does that):
                        # renew it, once per access, with a deadline of its own.
                        renewed = True
                        self._token.forget()
                        deadline = time.monotonic() + settings.timeout
                        continue
                    self._check_status(settings, "GET", path, answer.status)
                    return bytes(answer.body)
                except _IdleConnectionClosed:
                    continue  # nothing was lost: the same attempt goes on, on a new connection
                except _Retryable as failure:
                    if attempt >= settings.attempts:
                        raise failure.error from failure.__cause__
                    self._back_off(attempt, settings, failure.error)
                    attempt += 1
                    deadline = time.monotonic() + settings.timeout

    def _current_settings(self) -> _Settings:
        if self._settings is None:
            settings = _resolve_settings(self._options)
            self._host = _host_header(settings)
            self._token_target = _request_target(settings, _TOKEN_PATH)
            self._settings = settings
        return self._settings

    def _renew_token(self, settings: _Settings, deadline: float) -> None:
        requested_at = time.monotonic()
        ttl = _Secret(b"%s: %d\r\n" % (_TOKEN_TTL_HEADER.encode(), settings.token_ttl))
        answer = self._exchange(
            settings, "PUT", _TOKEN_PATH, self._token_target, deadline=deadline, headers=ttl
        )
        self._check_status(settings, "PUT", _TOKEN_PATH, answer.status)
        if not self._token.accept(answer, requested_at, settings.token_ttl):
            raise EC2MetadataMalformedError(
                f"the token request to {settings.endpoint} was answered with something that "
                f"is not a token ({len(answer.body)} bytes)",
                _TOKEN_PATH,
            )

    def _check_status(self, settings: _Settings, method: str, path: str, status: int) -> None:
        if status == 200:
            return
        what = f"{method} {settings.endpoint}/latest/{path}"
        if status == 404 and method == "GET":
            raise EC2MetadataNotFoundError(f"{what} answered 404: no such metadata", status, path)
        if status == 401 and method == "GET":
            reason = "the service rejected a token it had just issued"
        elif status == 403 and method == "GET":
            reason = (
                "this path is not allowed, or the instance metadata service is turned off for "
                "this instance (aws ec2 modify-instance-metadata-options --http-endpoint enabled)"
            )
        elif status == 403 and method == "PUT":
            reason = (
                "the service refused to issue a token (IMDS may be turned off for this instance)"
            )
        elif status == 400 and method == "PUT":
            reason = (
                "the service refused the token request as invalid (a token lifetime outside 1 "
                "to 21600 seconds, or a request it could not read); it does offer IMDSv2"
            )
        elif 300 <= status < 400:
            reason = "redirects are never followed"
        elif method == "PUT" and status in (404, 405):
            reason = "this service does not offer IMDSv2 tokens, and IMDSv1 is never used"
        else:
            reason = "the service answered an error"
        error = EC2MetadataHTTPError(f"{what} answered {status}: {reason}", status, path)
        if status in _RETRIED_STATUSES:
            raise _Retryable(error)
        raise error

    def _exchange(
        self,
        settings: _Settings,
        method: str,
        path: str,
        target: bytes,
        *,
        deadline: float,
        headers: _Secret,
    ) -> _Answer:
        """One request and its answer, within ``deadline``; any failure closes the connection."""
        request = _Secret(
            b"%s %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n"
            % (
                method.encode(),
                target,
                self._host,
                headers.value,
                b"Content-Length: 0\r\n" if method == "PUT" else b"",
            )
        )
        connection = self._connection_for(settings, method, path, deadline)
        try:
            try:
                answer = connection.exchange(request, deadline)
            except _TooLong as error:
                raise EC2MetadataMalformedError(f"{method} {path} {error}", path) from None
            except _Unaccountable as error:
                raise _Retryable(
                    EC2MetadataMalformedError(
                        f"{method} {settings.endpoint}/latest/{path} answered with {error}; "
                        "the connection was closed, so that nothing left on it can be read "
                        "as the answer to a later request",
                        path,
                    )
                ) from None
            except OSError as error:
                if (
                    connection.reused
                    and not connection.received
                    and isinstance(error, ConnectionError)
                ):
                    # The server closed the idle connection as this request went out.
                    raise _IdleConnectionClosed from None
                raise _Retryable(
                    self._connection_error(settings, method, path, error, connected=True)
                ) from error
        except BaseException:
            # KeyboardInterrupt, an exception from a signal handler, a broken answer: the
            # connection is half used, and nothing may ever be read from it again.
            self._close()
            raise
        if not connection.keep_alive:
            self._close()
        return answer

    def _connection_for(
        self, settings: _Settings, method: str, path: str, deadline: float
    ) -> _Connection:
        """The open connection if it is idle and still for these settings, else a new one."""
        connection = self._connection
        if connection is not None:
            if connection.address == (settings.host, settings.port) and connection.idle():
                return connection
            # clear_all() read other settings, or the server closed the connection or sent
            # bytes nobody asked for since the last answer.
            self._close()
        try:
            connection = _Connection(settings.host, settings.port, deadline)
        except OSError as error:
            # Not retried: nothing listens there, which is what being off EC2 looks like.
            raise self._connection_error(settings, method, path, error, connected=False) from error
        self._connection = connection
        return connection

    def _connection_error(
        self,
        settings: _Settings,
        method: str,
        path: str,
        error: BaseException,
        *,
        connected: bool,
    ) -> EC2MetadataConnectionError:
        what = f"{method} {settings.endpoint}/latest/{path}"
        if not connected:
            return EC2MetadataConnectionError(
                f"{what} failed (could not connect: {_describe(error)}; timeout "
                f"{settings.timeout:g}s). This program may not be running on EC2, or the "
                f"endpoint is wrong: to use another one, such as a local mock, set "
                f"{_ENDPOINT_VARIABLE}.",
                path,
            )
        message = (
            f"{what} failed after the connection was made ({_describe(error)}; timeout "
            f"{settings.timeout:g}s an attempt): the service is slow or is throttling "
            "requests, and AWS asks clients to back off and retry later."
        )
        if method == "PUT" and _describe(error) == "timed out":
            message += (
                " In a container on EC2 the token answer is dropped when the hop limit is 1;"
                f" allow a second hop with: {_HOP_LIMIT_FIX}"
            )
        return EC2MetadataConnectionError(message, path)

    def _back_off(self, attempt: int, settings: _Settings, error: EC2MetadataError) -> None:
        import logging
        import random

        delay = _pause(attempt) * random.uniform(0.5, 1.0)
        logging.getLogger(__name__).debug(
            "attempt %d of %d failed, retrying in %.2fs: %s",
            attempt,
            settings.attempts,
            delay,
            error,
        )
        time.sleep(delay)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _pause(attempt: int) -> float:
    """The longest pause after failed attempt number ``attempt`` (jittered down to half)."""
    return min(1.0, 0.05 * 2.0**attempt)


# Every transport alive, by id, as a weak reference: os.fork() must reach them all.
_LIVE_TRANSPORTS: dict[int, Callable[[], _Transport | None]] = {}


def _forget_connections_after_fork() -> None:
    for reference in list(_LIVE_TRANSPORTS.values()):
        transport = reference()
        if transport is not None:  # pragma: no branch - a dead one has left the dict already
            transport.forget_after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_forget_connections_after_fork)


# Parsers: text of an answer to a value; a ValueError means a malformed answer ----------


def _lines(text: str) -> list[str]:
    """A listing or multi-value answer: one item a line, blank lines and padding ignored."""
    return [line.strip() for line in text.split("\n") if line.strip()]


def _segment(name: str) -> str:
    """A listing's entry, refused unless it is one plain path segment.

    A name from a listing becomes part of a path.  ``..``, ``.``, or a name holding ``/``,
    ``?``, ``#``, ``%`` or a control character would make the client read another path (or
    the server normalise it into one), so the listing is reported as malformed instead.
    AWS allows none of these in tag keys, MACs, role or device names.
    """
    if name in ("", ".", "..") or any(
        character in "/?#%" or ord(character) < 32 or ord(character) == 127 for character in name
    ):
        raise ValueError(f"the listing has an entry that cannot be a path segment: {name!r}")
    return name


def _names(text: str) -> list[str]:
    """A directory listing's entries, without the trailing ``/`` of sub-directories."""
    return [_segment(line[:-1] if line.endswith("/") else line) for line in _lines(text)]


class _ErrorDocument(ValueError):
    """A JSON answer that is the service's error document (``Code`` other than Success)."""


def _json_object(text: str, *required: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    _require(value, *required)
    return value


def _require(value: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in value]
    if missing:
        raise ValueError(f"the JSON object lacks {', '.join(missing)}")


def _utc_datetime(value: object) -> datetime:
    from datetime import datetime, timezone

    if not isinstance(value, str):
        raise ValueError(f"expected a date and time, got {value!r}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _identity_document(text: str) -> InstanceIdentityDocumentDict:
    return cast(InstanceIdentityDocumentDict, _json_object(text, "accountId", "region"))


def _iam_info(text: str) -> IamInfoDict:
    return cast(IamInfoDict, _json_object(text, "InstanceProfileArn", "InstanceProfileId"))


def _credentials(text: str) -> IamSecurityCredentialsDict:
    data = _json_object(text)
    code = data.get("Code", "Success")
    if code != "Success":  # Code and Message say why; they hold no secret
        raise _ErrorDocument(
            f"the service answered an error instead of credentials: Code {code!r}, "
            f"Message {data.get('Message', '')!r}"
        )
    _require(data, "AccessKeyId", "SecretAccessKey", "Token", "Expiration")
    _utc_datetime(data["Expiration"])  # the lifetime of the kept value depends on it
    return cast(IamSecurityCredentialsDict, data)


def _spot_action(text: str) -> SpotInstanceAction:
    data = _json_object(text, "action", "time")
    return SpotInstanceAction(str(data["action"]), _utc_datetime(data["time"]))


def _mail_datetime(value: object) -> datetime:
    """A time written like ``21 Jan 2019 09:00:43 GMT``, as the event answers write it."""
    from datetime import timezone
    from email.utils import parsedate_to_datetime

    if not isinstance(value, str):
        raise ValueError(f"expected a date and time, got {value!r}")
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError) as error:  # 3.9 raises TypeError for nonsense
        raise ValueError(f"invalid date and time {value!r}") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


_EVENT_TIMES = ("NotBefore", "NotAfter", "NotBeforeDeadline")


def _scheduled_events(text: str) -> list[ScheduledEventDict]:
    import json

    events = json.loads(text)
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise ValueError("expected a JSON list of objects")
    for event in events:
        for key in _EVENT_TIMES:
            if key in event:
                event[key] = _mail_datetime(event[key])
    return cast("list[ScheduledEventDict]", events)


def _rebalance(text: str) -> RebalanceRecommendation:
    return RebalanceRecommendation(_utc_datetime(_json_object(text, "noticeTime")["noticeTime"]))


def _public_key_entries(text: str) -> list[tuple[int, str]]:
    """``0=my-key`` lines as (0, "my-key"); a line with no name (``0/``) is named by its index."""
    entries = []
    for line in _lines(text):
        index, _, name = line.rstrip("/").partition("=")
        if not (index.isascii() and index.isdigit()):
            raise ValueError(f"a public key's index must be a number, not {index!r}")
        entries.append((int(index), name or index))
    return entries


# Fields: each metadata attribute declared once: path, parser, absence and lifetime ------

# How long a field keeps its value.  A lifetime is one of these, or a function that gives,
# from the value itself, the time (time.time()) after which it is fetched again.
_KEPT = "kept"  # fetched on first access, then kept until `del` or clear_all()
_NOT_KEPT = "not kept"  # fetched on every access: it changes while the instance runs
_DERIVED = "derived"  # computed on every access from a field that is kept
# What a 404 gives: _RAISE raises EC2MetadataNotFoundError; None and _EMPTY (a new [])
# are the value instead.
_RAISE: NoReturn = cast("NoReturn", object())
_EMPTY: list[str] = []
_ABSENT = object()
# Credentials are fetched again this long before their Expiration.  IMDS offers new ones
# at least five minutes before the old ones expire, so at this point it has them.
_CREDENTIALS_REFRESH = 5 * 60.0


class _Node:
    """An object whose attributes are read from metadata paths under ``_prefix``."""

    _transport: _Transport
    _prefix: str

    def clear_all(self) -> None:
        """Forget every cached attribute, so that the next access fetches it again."""
        for klass in type(self).__mro__:
            for name, value in vars(klass).items():
                if isinstance(value, _Field):
                    self.__dict__.pop(name, None)

    def _read(self, path: str, parse: Callable[[str], _T]) -> _T:
        full_path = self._prefix + path
        body = self._transport.get(full_path)
        try:
            return parse(body.decode("utf-8"))
        except UnicodeDecodeError as error:
            problem = f"is not UTF-8 text ({error.reason} at byte {error.start})"
        except _ErrorDocument as error:
            problem = f"is an error document: {error}"
        except (ValueError, TypeError) as error:
            problem = f"cannot be parsed: {error}"
        raise EC2MetadataMalformedError(f"the answer to GET {full_path} {problem}", full_path)

    def _read_or_none(self, path: str, parse: Callable[[str], _T]) -> _T | None:
        try:
            return self._read(path, parse)
        except EC2MetadataNotFoundError:
            return None


class _Field(Generic[_T]):
    """A metadata attribute, read by ``read(node)`` and kept as its lifetime says.

    The design card names functools.cached_property, but on Python 3.9 to 3.11 it holds one
    lock per attribute, shared by every instance, for the whole network fetch: clients wait
    on each other, and a child forked while a thread fetches inherits the lock held and
    hangs on its first read of that attribute, in any client.  This descriptor takes no
    lock (two threads may both fetch; the first value kept wins).  Kept values live in the
    instance ``__dict__`` as with cached_property, so ``del node.name`` and `clear_all`
    forget them.
    """

    def __init__(self, read: Callable[[Any], _T], lifetime: _Lifetime, doc: str) -> None:
        self._read = read
        self.lifetime = lifetime
        self.__doc__ = doc
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, node: Any, owner: type | None = None) -> _T:
        if node is None:
            return cast("_T", self)
        lifetime = self.lifetime
        if lifetime is _NOT_KEPT or lifetime is _DERIVED:
            return self._read(node)
        kept = node.__dict__.get(self._name, _ABSENT)
        if kept is not _ABSENT and (isinstance(lifetime, str) or time.time() < lifetime(kept)):
            return cast("_T", kept)
        value = self._read(node)
        if isinstance(lifetime, str):
            return cast("_T", node.__dict__.setdefault(self._name, value))
        node.__dict__[self._name] = value
        return value

    def __set__(self, node: Any, value: _T) -> None:
        if self.lifetime is _NOT_KEPT or self.lifetime is _DERIVED:
            raise AttributeError(f"{self._name} is read from the service on every access")
        node.__dict__[self._name] = value

    def __delete__(self, node: Any) -> None:
        try:
            del node.__dict__[self._name]
        except KeyError:
            raise AttributeError(self._name) from None


def _field(path: str, parse: Callable[[str], _T], absent: _T, lifetime: _Lifetime) -> _Field[_T]:
    """The attribute at ``path``, parsed by ``parse``; a 404 gives ``absent`` (see _RAISE)."""
    if absent is _RAISE:

        def read(node: _Node) -> _T:
            return node._read(path, parse)

        return _Field(read, lifetime, f"From ``{path}``.")

    def read_or_absent(node: _Node) -> _T:
        value = node._read_or_none(path, parse)
        if value is None:
            return cast("_T", []) if isinstance(absent, list) else absent
        return value

    return _Field(read_or_absent, lifetime, f"From ``{path}``; {absent!r} when absent.")


def _computed(lifetime: _Lifetime) -> Callable[[Callable[[Any], _T]], _Field[_T]]:
    """Declares a method that computes an attribute as a field with ``lifetime``."""

    def declare(read: Callable[[Any], _T]) -> _Field[_T]:
        return _Field(read, lifetime, read.__doc__ or "")

    return declare


def _until_credentials_expire(credentials: IamSecurityCredentialsDict | None) -> float:
    """When credentials must be fetched again: a few minutes before their Expiration."""
    if credentials is None:
        return float("inf")  # no role: kept, as iam_info is
    return _utc_datetime(credentials["Expiration"]).timestamp() - _CREDENTIALS_REFRESH


def _checked_segment(name: str, listing_path: str) -> str:
    """``name`` from the listing at ``listing_path``, if it is one plain path segment."""
    try:
        return _segment(name)
    except ValueError as error:
        raise EC2MetadataMalformedError(
            f"the answer to GET {listing_path} cannot be parsed: {error}", listing_path
        ) from None


_IDENTITY = "dynamic/instance-identity/"


class EC2Metadata(_Node):
    """The metadata of the EC2 instance this program runs on.

    Attributes are fetched on first access and cached, except those documented as
    uncached.  The keyword arguments override the environment variables of the AWS SDKs:

    - ``endpoint``: a URL such as ``http://127.0.0.1:1338`` (``AWS_EC2_METADATA_SERVICE_ENDPOINT``)
    - ``endpoint_mode``: ``"IPv4"`` or ``"IPv6"`` (``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE``)
    - ``timeout``: the deadline of one attempt in seconds, 1 (``AWS_METADATA_SERVICE_TIMEOUT``)
    - ``attempts``: tries per request, 3 (``AWS_METADATA_SERVICE_NUM_ATTEMPTS``)
    - ``disabled``: refuse every request (``AWS_EC2_METADATA_DISABLED``)
    - ``token_ttl``: seconds a session token lives, 1 to 21600 (default 21600)

    ``session`` and ``pool_manager`` exist for code written for ec2-metadata 2.x and 3.x;
    this client makes its own connection, so passing one only gives a warning.
    """

    def __init__(
        self,
        session: object = None,
        *,
        endpoint: str | None = None,
        endpoint_mode: str | None = None,
        timeout: float | None = None,
        attempts: int | None = None,
        disabled: bool | None = None,
        token_ttl: int | None = None,
        pool_manager: object = None,
    ) -> None:
        if session is not None or pool_manager is not None:
            import warnings

            warnings.warn(
                "ec2_metadata makes its own connection and ignores session= and pool_manager=;"
                " use timeout=, attempts= and endpoint= to configure it",
                stacklevel=2,
            )
        given = {
            "endpoint": endpoint,
            "endpoint_mode": endpoint_mode,
            "timeout": timeout,
            "attempts": attempts,
            "disabled": disabled,
            "token_ttl": token_ttl,
        }
        self._options = {name: value for name, value in given.items() if value is not None}
        self._transport = _Transport(self._options)
        self._prefix = ""

    def __repr__(self) -> str:
        given = [f"{name}={value!r}" for name, value in self._options.items()]
        return f"EC2Metadata({', '.join(given)})"

    def clear_all(self) -> None:
        """Forget every cached attribute, the token and the settings (read again on next use)."""
        super().clear_all()
        self._transport.reset()

    def close(self) -> None:
        """Close the kept-alive connection; a later request opens a new one."""
        self._transport.close()

    def __enter__(self) -> EC2Metadata:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def service_url(self) -> str:
        """The URL every path is read under, e.g. ``http://169.254.169.254/latest/``."""
        return f"{self._transport.settings.endpoint}/latest/"

    # name = _field(path, parser, what a 404 gives, lifetime)
    ami_id = _field("meta-data/ami-id", str, _RAISE, _KEPT)
    ami_launch_index = _field("meta-data/ami-launch-index", int, _RAISE, _KEPT)
    ami_manifest_path = _field("meta-data/ami-manifest-path", str, _RAISE, _KEPT)
    availability_zone = _field("meta-data/placement/availability-zone", str, _RAISE, _KEPT)
    availability_zone_id = _field("meta-data/placement/availability-zone-id", str, None, _KEPT)
    domain = _field("meta-data/services/domain", str, _RAISE, _KEPT)
    hostname = _field("meta-data/hostname", str, _RAISE, _KEPT)
    iam_info = _field("meta-data/iam/info", _iam_info, None, _KEPT)
    instance_action = _field("meta-data/instance-action", str, _RAISE, _NOT_KEPT)
    instance_id = _field("meta-data/instance-id", str, _RAISE, _KEPT)
    instance_identity_document = _field(_IDENTITY + "document", _identity_document, _RAISE, _KEPT)
    instance_identity_pkcs7 = _field(_IDENTITY + "pkcs7", str, _RAISE, _KEPT)
    instance_identity_rsa2048 = _field(_IDENTITY + "rsa2048", str, _RAISE, _KEPT)
    instance_identity_signature = _field(_IDENTITY + "signature", str, _RAISE, _KEPT)
    instance_life_cycle = _field("meta-data/instance-life-cycle", str, _RAISE, _KEPT)
    instance_type = _field("meta-data/instance-type", str, _RAISE, _KEPT)
    ipv6 = _field("meta-data/ipv6", str, None, _KEPT)
    kernel_id = _field("meta-data/kernel-id", str, None, _KEPT)
    mac = _field("meta-data/mac", str, _RAISE, _KEPT)
    partition = _field("meta-data/services/partition", str, _RAISE, _KEPT)
    placement_group = _field("meta-data/placement/group-name", str, None, _KEPT)
    placement_host_id = _field("meta-data/placement/host-id", str, None, _KEPT)
    placement_partition_number = _field("meta-data/placement/partition-number", int, None, _KEPT)
    private_hostname = _field("meta-data/local-hostname", str, _RAISE, _KEPT)
    private_ipv4 = _field("meta-data/local-ipv4", str, None, _KEPT)  # None: IPv6-only
    product_codes = _field("meta-data/product-codes", _lines, _EMPTY, _KEPT)
    public_hostname = _field("meta-data/public-hostname", str, None, _KEPT)
    public_ipv4 = _field("meta-data/public-ipv4", str, None, _KEPT)
    ramdisk_id = _field("meta-data/ramdisk-id", str, None, _KEPT)
    reservation_id = _field("meta-data/reservation-id", str, _RAISE, _KEPT)
    security_groups = _field("meta-data/security-groups", _lines, _RAISE, _KEPT)
    spot_instance_action = _field("meta-data/spot/instance-action", _spot_action, None, _NOT_KEPT)

    @_computed(_NOT_KEPT)
    def autoscaling_target_lifecycle_state(self) -> str | None:
        """The Auto Scaling lifecycle state the instance is moving to, or None."""
        return self._read_or_none("meta-data/autoscaling/target-lifecycle-state", str)

    @_computed(_NOT_KEPT)
    def rebalance_recommendation(self) -> RebalanceRecommendation | None:
        """EC2's advice to move work off this spot instance, or None."""
        return self._read_or_none("meta-data/events/recommendations/rebalance", _rebalance)

    @_computed(_NOT_KEPT)
    def scheduled_events(self) -> list[ScheduledEventDict]:
        """The scheduled maintenance events of the instance ([] when none)."""
        events = self._read_or_none("meta-data/events/maintenance/scheduled", _scheduled_events)
        return events or []

    @_computed(_DERIVED)
    def account_id(self) -> str:
        """The AWS account ID, from the instance identity document."""
        return self.instance_identity_document["accountId"]

    @_computed(_DERIVED)
    def region(self) -> str:
        """The region, from the instance identity document."""
        return self.instance_identity_document["region"]

    @_computed(_DERIVED)
    def instance_profile_arn(self) -> str | None:
        """The instance profile's ARN, from `iam_info`, or None when no role is attached."""
        info = self.iam_info
        return None if info is None else info["InstanceProfileArn"]

    @_computed(_DERIVED)
    def instance_profile_id(self) -> str | None:
        """The instance profile's ID, from `iam_info`, or None when no role is attached."""
        info = self.iam_info
        return None if info is None else info["InstanceProfileId"]

    @_computed(_DERIVED)
    def instance_profile_name(self) -> str | None:
        """The last part of `instance_profile_arn`, or None when no role is attached."""
        arn = self.instance_profile_arn
        return None if arn is None else arn.rsplit("/", 1)[-1]

    @_computed(_until_credentials_expire)
    def iam_security_credentials(self) -> IamSecurityCredentialsDict | None:
        """The role's temporary credentials, or None when no role is attached.

        Kept until five minutes before their ``Expiration``, then fetched again.  The role
        is the one listed under ``iam/security-credentials/``: its name differs from the
        instance profile's when CloudFormation or Terraform made the profile.
        """
        roles = self._read_or_none("meta-data/iam/security-credentials/", _names)
        if not roles:
            return None
        return self._read(f"meta-data/iam/security-credentials/{roles[0]}", _credentials)

    @_computed(_KEPT)
    def block_device_mapping(self) -> dict[str, str]:
        """Each virtual device name (``ami``, ``root``, ``ebs1``...) to its device."""
        names = self._read_or_none("meta-data/block-device-mapping/", _names) or []
        return {name: self._read(f"meta-data/block-device-mapping/{name}", str) for name in names}

    @_computed(_KEPT)
    def network_interfaces(self) -> dict[str, NetworkInterface]:
        """The network interfaces, keyed by MAC address."""
        macs = self._read("meta-data/network/interfaces/macs/", _names)
        return {mac: NetworkInterface(mac, self) for mac in macs}

    @_computed(_KEPT)
    def public_keys(self) -> dict[str, PublicKey]:
        """The SSH public keys given at launch, keyed by name ({} when there are none)."""
        entries = self._read_or_none("meta-data/public-keys/", _public_key_entries) or []
        return {name: PublicKey(index, self) for index, name in entries}

    @_computed(_KEPT)
    def tags(self) -> InstanceTags:
        """The instance's tags; the instance must allow tags in its metadata."""
        try:
            names = self._read("meta-data/tags/instance/", _names)
        except EC2MetadataNotFoundError as error:
            raise EC2MetadataNotFoundError(
                f"{error} - instance tags are not in the metadata; allow them with: "
                "aws ec2 modify-instance-metadata-options --instance-id ID "
                "--instance-metadata-tags enabled",
                error.status,
                error.path,
            ) from None
        return InstanceTags(names, self)

    @_computed(_KEPT)
    def user_data(self) -> bytes | None:
        """The raw user data given at launch (not base64), or None when there is none."""
        try:
            return self._transport.get("user-data")
        except EC2MetadataNotFoundError:
            return None

    @_computed(_KEPT)
    def tree(self) -> MetadataTree:
        """The whole ``meta-data/`` tree, as nested read-only mappings fetched as needed."""
        return MetadataTree(self)

    def fetch(self, path: str) -> str:
        """Uncached. The text at any path, such as ``meta-data/placement/host-id``."""
        return self._read(_relative(path), str)

    def fetch_bytes(self, path: str) -> bytes:
        """Uncached. The bytes at any path, such as ``user-data``."""
        return self._transport.get(_relative(path))


class InstanceTags(_StringMapping):
    """The instance's tags: names from one listing, each value fetched once, when first read."""

    def __init__(self, names: list[str], parent: EC2Metadata) -> None:
        self._names = dict.fromkeys(names)
        self._values: dict[str, str] = {}
        self._parent = parent

    def __getitem__(self, name: str) -> str:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._values:
            self._values[name] = self._parent._read(f"meta-data/tags/instance/{name}", str)
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"InstanceTags({list(self._names)!r})"


class _Listed(_Node):
    """An object the client lists: a network interface by MAC, a public key by index."""

    _path_template: ClassVar[str]

    def __init__(self, key: object, parent: EC2Metadata | None) -> None:
        self._key = key
        self.parent = ec2_metadata if parent is None else parent
        self._transport = self.parent._transport
        self._prefix = self._path_template.format(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._key!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)):
            return NotImplemented
        return (self._key, self.parent) == (other._key, other.parent)

    def __hash__(self) -> int:
        return hash(self._key)


class NetworkInterface(_Listed):
    """One network interface of the instance, as found in `EC2Metadata.network_interfaces`."""

    _path_template = "meta-data/network/interfaces/macs/{}/"

    def __init__(self, mac: str, parent: EC2Metadata | None = None) -> None:
        super().__init__(mac, parent)
        self.mac = mac

    # name = _field(path below the interface, parser, what a 404 gives, lifetime)
    device_number = _field("device-number", int, _RAISE, _KEPT)
    interface_id = _field("interface-id", str, _RAISE, _KEPT)
    ipv4_prefix = _field("ipv4-prefix", _lines, _EMPTY, _KEPT)
    ipv6s = _field("ipv6s", _lines, _EMPTY, _KEPT)
    ipv6_prefix = _field("ipv6-prefix", _lines, _EMPTY, _KEPT)
    owner_id = _field("owner-id", str, _RAISE, _KEPT)
    private_hostname = _field("local-hostname", str, _RAISE, _KEPT)
    private_ipv4s = _field("local-ipv4s", _lines, _EMPTY, _KEPT)  # []: an IPv6-only interface
    public_hostname = _field("public-hostname", str, None, _KEPT)
    public_ipv4s = _field("public-ipv4s", _lines, _EMPTY, _KEPT)
    security_groups = _field("security-groups", _lines, _RAISE, _KEPT)
    security_group_ids = _field("security-group-ids", _lines, _RAISE, _KEPT)
    subnet_id = _field("subnet-id", str, _RAISE, _KEPT)
    subnet_ipv4_cidr_block = _field("subnet-ipv4-cidr-block", str, None, _KEPT)
    subnet_ipv6_cidr_blocks = _field("subnet-ipv6-cidr-blocks", _lines, _EMPTY, _KEPT)
    vpc_id = _field("vpc-id", str, _RAISE, _KEPT)
    vpc_ipv4_cidr_block = _field("vpc-ipv4-cidr-block", str, None, _KEPT)
    vpc_ipv4_cidr_blocks = _field("vpc-ipv4-cidr-blocks", _lines, _EMPTY, _KEPT)
    vpc_ipv6_cidr_blocks = _field("vpc-ipv6-cidr-blocks", _lines, _EMPTY, _KEPT)

    @_computed(_KEPT)
    def ipv4_associations(self) -> dict[str, list[str]]:
        """Each public IPv4 address of the interface, to the private addresses behind it.

        The addresses are those of `public_ipv4s`, which ``ipv4-associations/`` lists too.
        """
        listing = self._prefix + "public-ipv4s"
        return {
            ip: self._read(f"ipv4-associations/{_checked_segment(ip, listing)}", _lines)
            for ip in self.public_ipv4s
        }

    @_computed(_KEPT)
    def network_card_index(self) -> int | None:
        """The network card of the interface, or None when the service does not say.

        AWS documents ``network-card``; amazon-ec2-metadata-mock serves ``network-card-index``.
        """
        index = self._read_or_none("network-card", int)
        return self._read_or_none("network-card-index", int) if index is None else index


class PublicKey(_Listed):
    """One SSH public key given at launch, as found in `EC2Metadata.public_keys`."""

    _path_template = "meta-data/public-keys/{}/"

    def __init__(self, index: int, parent: EC2Metadata | None = None) -> None:
        super().__init__(index, parent)
        self.index = index

    openssh_key = _field("openssh-key", str, None, _KEPT)


def _relative(path: str) -> str:
    """A path as given by a user (``/latest/meta-data/mac``) relative to ``latest/``."""
    path = path.lstrip("/")
    return path[len("latest/") :] if path.startswith("latest/") else path


def _tree_entries(text: str) -> dict[str, str]:
    """A listing as each key to its path (ending in ``/`` for a directory)."""
    entries: dict[str, str] = {}
    for line in _lines(text):
        index, equals, name = line.partition("=")
        if equals and index.isascii() and index.isdigit():
            entries[name or index] = f"{index}/"
            continue
        name = _segment(line[:-1] if line.endswith("/") else line)
        if line.endswith("/") or entries.get(name, "").endswith("/"):
            # A name listed both as a leaf and as a directory is a directory.
            entries[name] = name + "/"
        else:
            entries[name] = name
    return entries


class MetadataTree(_TreeMapping):
    """A read-only view of a metadata directory, ``meta-data/`` by default.

    Sub-directories are trees and leaves are strings; the listing and each value are
    fetched on first access and then kept.  Keys are the names in the listing, without the
    trailing ``/``; a public key listed as ``0=my-key`` is the directory ``my-key``.
    """

    def __init__(self, client: EC2Metadata, path: str = "meta-data/") -> None:
        self._client = client
        self._path = path.rstrip("/") + "/"
        self._children: dict[str, MetadataTree | str] = {}
        self._listing: dict[str, str] | None = None

    @property
    def _entries(self) -> dict[str, str]:
        """Each key to its path below this directory (ending in ``/`` for a directory)."""
        if self._listing is None:
            self._listing = self._client._read(self._path, _tree_entries)
        return self._listing

    def __getitem__(self, key: str) -> MetadataTree | str:
        child = self._entries[key]
        if key not in self._children:
            path = self._path + child
            self._children[key] = (
                MetadataTree(self._client, path)
                if child.endswith("/")
                else self._client.fetch(path)
            )
        return self._children[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MetadataTree({self._path!r})"

    def to_dict(self) -> dict[str, Any]:
        """Everything below this directory, fetched now, as nested dicts of strings."""
        return {
            key: value.to_dict() if isinstance(value, MetadataTree) else value
            for key, value in self.items()
        }


ec2_metadata = EC2Metadata()


# Command line: imds, python -m ec2_metadata, python ec2_metadata.py -------------------

_NOT_METADATA = frozenset({"service_url", "tree"})


def _metadata_names(cls: type) -> list[str]:
    """The public metadata attributes of a class, sorted."""
    names = {
        name
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if isinstance(value, (_Field, property)) and not name.startswith("_")
    }
    return sorted(names - _NOT_METADATA)


def _plain(value: object, errors: dict[str, str], where: str) -> object:
    """A value as JSON can hold it; the failures of nested attributes go into ``errors``."""
    from datetime import datetime

    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, NetworkInterface):
        return {"mac": value.mac, **_snapshot(value, errors, where)}
    if isinstance(value, PublicKey):
        return {"index": value.index, **_snapshot(value, errors, where)}
    if isinstance(value, _Record):
        return _plain(value._asdict(), errors, where)
    if isinstance(value, Mapping):
        return {str(key): _plain(item, errors, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item, errors, where) for item in value]
    raise TypeError(f"cannot show {type(value).__name__} as JSON")  # pragma: no cover


def _snapshot(node: _Node, errors: dict[str, str], where: str = "") -> dict[str, object]:
    """Every metadata attribute of ``node``; one that fails is None, its error in ``errors``.

    Errors that would fail every attribute alike (no service, disabled, bad settings) are
    raised instead.
    """
    values: dict[str, object] = {}
    for name in _metadata_names(type(node)):
        path = f"{where}.{name}" if where else name
        try:
            values[name] = _plain(getattr(node, name), errors, path)
        except (EC2MetadataHTTPError, EC2MetadataMalformedError) as error:
            values[name] = None
            errors[path] = str(error)
    return values


def _usage(names: list[str]) -> str:
    return (
        "metadata names (snake_case or kebab-case):\n  "
        + "\n  ".join(names)
        + "\n\nA NAME containing '/' is read as a raw path, e.g. meta-data/placement/host-id."
    )


def _parser(names: list[str]) -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="imds",
        description="Read the EC2 instance metadata (IMDSv2). With no command: print every "
        "attribute as one JSON document.",
        epilog=_usage(names),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--endpoint", help=f"the service's URL (default: ${_ENDPOINT_VARIABLE})")
    parser.add_argument("--timeout", type=float, help="seconds to wait for each answer")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("all", help="every attribute as one JSON document (the default)")
    get = commands.add_parser("get", help="print one value", epilog=_usage(names))
    get.add_argument("name", metavar="NAME")
    get.add_argument("-n", dest="newline", action="store_false", help="omit the newline")
    as_json = commands.add_parser("json", help="print values as a JSON object")
    as_json.add_argument("names", metavar="NAME", nargs="+")
    commands.add_parser("tree", help="the whole meta-data/ tree as nested JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``imds`` command; returns its exit status (argparse exits 2 on bad usage)."""
    import json
    import sys

    names = _metadata_names(EC2Metadata)
    parser = _parser(names)
    args = parser.parse_args(argv)

    def attribute(name: str) -> str | None:
        """The attribute a NAME means, or None for a raw path; exits 2 for an unknown one."""
        if "/" in name:
            return None
        snake = name.replace("-", "_")
        if snake not in names:
            parser.error(f"unknown metadata name {name!r}; the names are: {', '.join(names)}")
        return snake

    def show(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

    client = EC2Metadata(endpoint=args.endpoint, timeout=args.timeout)
    errors: dict[str, str] = {}  # attributes inside a value that failed, and why
    try:
        if args.command == "get":
            name = attribute(args.name)
            value = client.fetch_bytes(args.name) if name is None else getattr(client, name)
            if value is not None:
                show(_get_output(value, errors, args.name) + (b"\n" if args.newline else b""))
        elif args.command == "json":
            wanted = {given: attribute(given) for given in args.names}
            document = {
                given: client.fetch(given)
                if name is None
                else _plain(getattr(client, name), errors, given)
                for given, name in wanted.items()
            }
            show(json.dumps(document, indent=2).encode() + b"\n")
        elif args.command == "tree":
            show(json.dumps(client.tree.to_dict(), indent=2).encode() + b"\n")
        else:
            document = _snapshot(client, errors)
            if errors:  # reported in the document: the rest of the dump is still good
                document["errors"] = dict(errors)
                errors.clear()
            show(json.dumps(document, indent=2).encode() + b"\n")
    except EC2MetadataConfigError as error:
        print(f"imds: {error}", file=sys.stderr)
        return 2
    except EC2MetadataError as error:
        print(f"imds: {error}", file=sys.stderr)
        return 1
    for where, message in errors.items():
        print(f"imds: {where}: {message}", file=sys.stderr)
    return 1 if errors else 0


def _get_output(value: object, errors: dict[str, str], name: str) -> bytes:
    """What ``imds get`` prints: text as is, bytes raw, a list one item a line, else JSON."""
    import json

    if isinstance(value, bytes):
        return value
    if isinstance(value, (str, int)):
        return str(value).encode()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value).encode()
    return json.dumps(_plain(value, errors, name), indent=2).encode()


if __name__ == "__main__":  # pragma: no cover - run as a script by the tests, in a subprocess
    raise SystemExit(main())
