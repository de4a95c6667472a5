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
from functools import cache, cached_property

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; type checkers know it
if TYPE_CHECKING:  # pragma: no cover
    import argparse
    import http.client
    import subprocess
    import threading
    from collections.abc import Iterable, Iterator
    from datetime import datetime
    from typing import Any, Callable, ClassVar, Literal, TypedDict, TypeVar, cast

    _T = TypeVar("_T")
else:
    # Importing typing takes longer than importing all of this module, and nothing here
    # needs it at run time: annotations stay strings, and the TypedDicts are dict classes.
    class TypedDict(dict):
        def __init_subclass__(cls, total: bool = True) -> None:
            super().__init_subclass__()

    def cast(kind, value):
        return value


__all__ = [
    "AUTOSCALING_TRANSITION",
    "EVENT_KINDS",
    "REBALANCE_RECOMMENDATION",
    "SCHEDULED_EVENT",
    "SPOT_INTERRUPTION",
    "EC2Metadata",
    "EC2MetadataConfigError",
    "EC2MetadataConnectionError",
    "EC2MetadataDisabledError",
    "EC2MetadataError",
    "EC2MetadataHTTPError",
    "EC2MetadataMalformedError",
    "EC2MetadataNotFoundError",
    "Event",
    "EventWatcher",
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
    "watch",
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
    """Carries an error that another attempt may cure (a 5xx, a 429, a dropped connection)."""

    def __init__(self, error: EC2MetadataError) -> None:
        super().__init__(str(error))
        self.error = error


class _AnswerTooLong(Exception):
    """An answer's lines (headers, trailers, interim answers) went past their byte budget."""


class _AnswerReader:
    """The socket file under one answer, whose lines have a byte budget and a deadline.

    http.client reads status lines, headers, ``100 Continue`` answers, chunk sizes and
    trailers line by line, for as long as the server sends them.  The body it reads by
    size, and `_Transport` asks for no more than the limit.
    """

    def __init__(self, file: Any, budget: int, seconds: float) -> None:
        self._file = file
        self._left = budget
        self._deadline = time.monotonic() + seconds

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self._file.readline(limit)
        self._left -= len(line)
        if self._left < 0:
            raise _AnswerTooLong
        if time.monotonic() > self._deadline:
            from socket import timeout

            raise timeout("timed out")
        return line

    def __getattr__(self, name: str) -> Any:  # read, readinto, close...: the file's own
        return getattr(self._file, name)


@cache
def _response_class() -> type[http.client.HTTPResponse]:
    """http.client's answer, read through an `_AnswerReader` (made once, on first use)."""
    from http.client import HTTPResponse

    class Answer(HTTPResponse):
        def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(sock, *args, **kwargs)
            seconds = sock.gettimeout() or _DEFAULT_TIMEOUT
            self.fp = cast("Any", _AnswerReader(self.fp, _MAX_LINES, seconds))

    return Answer


def _describe(error: BaseException) -> str:
    from socket import timeout  # TimeoutError from Python 3.10 on, its own class on 3.9

    if isinstance(error, timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return str(error) or type(error).__name__


class _Transport:
    """The token, the one kept-alive connection and the retry rules of one client.

    One lock serialises requests, so threads share the token and never interleave HTTP on
    the connection.  After ``os.fork()`` the child drops the inherited connection and lock.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._lock = _thread.allocate_lock()
        self._settings: _Settings | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0
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
        name another endpoint or timeout.
        """
        with self._lock:
            self._settings = None
            self._token = None

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
        """GET ``latest/<path>``: the body of a 200 answer, else an EC2MetadataError."""
        with self._lock:
            settings = self._current_settings()
            if settings.disabled:
                raise EC2MetadataDisabledError(
                    f"not reading {path}: the instance metadata service is disabled by "
                    "AWS_EC2_METADATA_DISABLED (or disabled=True)"
                )
            attempt = 1
            while True:
                try:
                    return self._get_once(settings, path)
                except _Retryable as failure:
                    if attempt >= settings.attempts:
                        raise failure.error from failure.__cause__
                    self._back_off(attempt, settings, failure.error)
                    attempt += 1

    def _current_settings(self) -> _Settings:
        if self._settings is None:
            self._settings = _resolve_settings(self._options)
        return self._settings

    def _get_once(self, settings: _Settings, path: str) -> bytes:
        status, body = self._exchange(
            settings, "GET", path, {_TOKEN_HEADER: self._token_for(settings)}
        )
        if status == 401:
            # The token expired or was revoked (a stop and start does that): renew it once.
            self._token = None
            status, body = self._exchange(
                settings, "GET", path, {_TOKEN_HEADER: self._token_for(settings)}
            )
        self._check_status(settings, "GET", path, status)
        return body

    def _token_for(self, settings: _Settings) -> str:
        if self._token is not None and time.monotonic() < self._token_renew_at:
            return self._token
        requested_at = time.monotonic()
        status, body = self._exchange(
            settings, "PUT", _TOKEN_PATH, {_TOKEN_TTL_HEADER: str(settings.token_ttl)}
        )
        self._check_status(settings, "PUT", _TOKEN_PATH, status)
        token = body.strip()
        if not token or not all(33 <= byte <= 126 for byte in token):
            raise EC2MetadataMalformedError(
                f"the token request to {settings.endpoint} was answered with something that "
                f"is not a token ({len(body)} bytes)",
                _TOKEN_PATH,
            )
        self._token = token.decode("ascii")
        # Renew a little early, timed from when the token was asked for, so that no request
        # is ever sent with a token this client knows to have expired.
        self._token_renew_at = (
            requested_at + settings.token_ttl - min(60.0, settings.token_ttl / 10)
        )
        return self._token

    def _check_status(self, settings: _Settings, method: str, path: str, status: int) -> None:
        if status == 200:
            return
        what = f"{method} {settings.endpoint}/latest/{path}"
        if status == 404 and method == "GET":
            raise EC2MetadataNotFoundError(f"{what} answered 404: no such metadata", status, path)
        if status == 401 and method == "GET":
            reason = "the service rejected a token it had just issued"
        elif status == 403 and method == "PUT":
            reason = (
                "the service refused to issue a token (IMDS may be turned off for this instance)"
            )
        elif 300 <= status < 400:
            reason = "redirects are never followed"
        elif method == "PUT" and status in (400, 404, 405):
            reason = "this service does not offer IMDSv2 tokens, and IMDSv1 is never used"
        else:
            reason = "the service answered an error"
        error = EC2MetadataHTTPError(f"{what} answered {status}: {reason}", status, path)
        if status in _RETRIED_STATUSES:
            raise _Retryable(error)
        raise error

    def _exchange(
        self, settings: _Settings, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        from http.client import HTTPException
        from urllib.parse import quote

        url = f"{settings.base_path}/latest/{quote(path, safe='/:@=+,;')}"
        while True:
            connection, reused = self._connection_for(settings, method, path)
            response = None
            try:
                # Not request(): it would add an Accept-Encoding header the service ignores.
                connection.putrequest(method, url, skip_accept_encoding=True)
                for name, value in headers.items():
                    connection.putheader(name, value)
                connection.endheaders()
                response = connection.getresponse()
                return response.status, self._read_body(response, settings, method, path)
            except _AnswerTooLong:
                self._close()
                raise EC2MetadataMalformedError(
                    f"{method} {path} answered with more than {_MAX_LINES} bytes of status, "
                    "header and chunk lines",
                    path,
                ) from None
            except (OSError, HTTPException) as error:
                self._close()
                if reused and isinstance(error, ConnectionError):
                    continue  # the server closed the kept-alive connection; open a new one
                raise _Retryable(
                    self._connection_error(settings, method, path, error, connected=True)
                ) from error
            finally:
                # An answer that ends the connection owns the socket once it is returned.
                if response is not None:
                    response.close()

    def _connection_for(
        self, settings: _Settings, method: str, path: str
    ) -> tuple[http.client.HTTPConnection, bool]:
        """The open connection and True, or a newly opened one and False."""
        connection = self._connection
        if connection is not None and (connection.host, connection.port, connection.timeout) != (
            settings.host,
            settings.port,
            settings.timeout,
        ):
            self._close()  # clear_all() read new settings: this connection is not theirs
            connection = None
        if connection is not None and connection.sock is not None:
            return connection, True
        if connection is None:
            from http.client import HTTPConnection

            connection = HTTPConnection(settings.host, settings.port, timeout=settings.timeout)
            connection.response_class = _response_class()
            self._connection = connection
        try:
            connection.connect()
        except OSError as error:
            self._close()
            # Not retried: nothing listens there, which is what being off EC2 looks like.
            raise self._connection_error(settings, method, path, error, connected=False) from error
        return connection, False

    def _read_body(
        self, response: http.client.HTTPResponse, settings: _Settings, method: str, path: str
    ) -> bytes:
        from http.client import IncompleteRead

        announced = response.length  # None for a chunked answer or one ended by closing
        if announced is not None and announced > _MAX_BODY:
            self._close()
            raise EC2MetadataMalformedError(
                f"{method} {path} announced an answer of {announced} bytes, "
                f"more than the {_MAX_BODY}-byte limit",
                path,
            )
        # Read what was announced, or one byte past the limit to see that it is over it.
        body = response.read(_MAX_BODY + 1 if announced is None else announced)
        if len(body) > _MAX_BODY:
            self._close()
            raise EC2MetadataMalformedError(
                f"{method} {path} answered more than the {_MAX_BODY}-byte limit", path
            )
        if announced is not None and len(body) < announced:
            # read(amt) returns what came before the connection closed: never use a part.
            raise IncompleteRead(body, announced - len(body))
        if not body and announced is None and not response.chunked:
            # Nothing, ended by closing: what an answer cut off in its headers looks like.
            raise IncompleteRead(body)
        if not response.isclosed():  # an answer without a length ends when the server closes
            self._close()
        return body

    def _connection_error(
        self,
        settings: _Settings,
        method: str,
        path: str,
        error: BaseException,
        *,
        connected: bool,
    ) -> EC2MetadataConnectionError:
        if connected:
            cause = f"the connection failed while waiting for the answer: {_describe(error)}"
        else:
            cause = f"could not connect: {_describe(error)}"
        message = (
            f"{method} {settings.endpoint}/latest/{path} failed ({cause}; timeout "
            f"{settings.timeout:g}s). This program may not be running on EC2, or the endpoint "
            f"is wrong: to use another one, such as a local mock, set {_ENDPOINT_VARIABLE}."
        )
        if connected and method == "PUT" and _describe(error) == "timed out":
            message += (
                " In a container on EC2 the token answer is dropped when the hop limit is 1;"
                f" allow a second hop with: {_HOP_LIMIT_FIX}"
            )
        return EC2MetadataConnectionError(message, path)

    def _back_off(self, attempt: int, settings: _Settings, error: EC2MetadataError) -> None:
        import logging
        import random

        delay = min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0)
        logging.getLogger(__name__).debug(
            "attempt %d of %d failed, retrying in %.2fs: %s",
            attempt,
            settings.attempts,
            delay,
            error,
        )
        time.sleep(delay)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


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
    return [line.strip() for line in text.splitlines() if line.strip()]


def _names(text: str) -> list[str]:
    """A directory listing's entries, without the trailing ``/`` of sub-directories."""
    return [line.rstrip("/") for line in _lines(text)]


def _json_object(text: str, *required: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    missing = [key for key in required if key not in value]
    if missing:
        raise ValueError(f"the JSON object lacks {', '.join(missing)}")
    return value


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
    required = ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
    return cast(IamSecurityCredentialsDict, _json_object(text, *required))


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
    for line in _names(text):
        index, _, name = line.partition("=")
        entries.append((int(index), name or index))
    return entries


# Fields: each metadata attribute declared once, with its path and its parser ---------


class _Node:
    """An object whose attributes are read from metadata paths under ``_prefix``."""

    _transport: _Transport
    _prefix: str

    def clear_all(self) -> None:
        """Forget every cached attribute, so that the next access fetches it again."""
        for klass in type(self).__mro__:
            for name, value in vars(klass).items():
                if isinstance(value, cached_property):
                    self.__dict__.pop(name, None)

    def _read(self, path: str, parse: Callable[[str], _T]) -> _T:
        full_path = self._prefix + path
        body = self._transport.get(full_path)
        try:
            return parse(body.decode("utf-8"))
        except UnicodeDecodeError as error:
            problem = f"is not UTF-8 text ({error.reason} at byte {error.start})"
        except (ValueError, TypeError) as error:
            problem = f"cannot be parsed: {error}"
        raise EC2MetadataMalformedError(f"the answer to GET {full_path} {problem}", full_path)

    def _read_or_none(self, path: str, parse: Callable[[str], _T]) -> _T | None:
        try:
            return self._read(path, parse)
        except EC2MetadataNotFoundError:
            return None


def _field(path: str, parse: Callable[[str], _T]) -> cached_property[_T]:
    """A cached attribute read from ``path``; a 404 raises `EC2MetadataNotFoundError`."""

    def read(node: _Node) -> _T:
        return node._read(path, parse)

    read.__doc__ = f"From ``{path}``."
    return cached_property(read)


def _optional_field(path: str, parse: Callable[[str], _T]) -> cached_property[_T | None]:
    """A cached attribute read from ``path``, or None when the service answers 404."""

    def read(node: _Node) -> _T | None:
        return node._read_or_none(path, parse)

    read.__doc__ = f"From ``{path}``, or None when absent."
    return cached_property(read)


def _list_field(path: str) -> cached_property[list[str]]:
    """A cached list of the lines at ``path``, or [] when the service answers 404."""

    def read(node: _Node) -> list[str]:
        return node._read_or_none(path, _lines) or []

    read.__doc__ = f"The lines of ``{path}``, or [] when absent."
    return cached_property(read)


class EC2Metadata(_Node):
    """The metadata of the EC2 instance this program runs on.

    Attributes are fetched on first access and cached, except those documented as
    uncached.  The keyword arguments override the environment variables of the AWS SDKs:

    - ``endpoint``: a URL such as ``http://127.0.0.1:1338`` (``AWS_EC2_METADATA_SERVICE_ENDPOINT``)
    - ``endpoint_mode``: ``"IPv4"`` or ``"IPv6"`` (``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE``)
    - ``timeout``: seconds to connect or wait for an answer, 1 (``AWS_METADATA_SERVICE_TIMEOUT``)
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

    ami_id = _field("meta-data/ami-id", str)
    ami_launch_index = _field("meta-data/ami-launch-index", int)
    ami_manifest_path = _field("meta-data/ami-manifest-path", str)
    availability_zone = _field("meta-data/placement/availability-zone", str)
    availability_zone_id = _optional_field("meta-data/placement/availability-zone-id", str)
    domain = _field("meta-data/services/domain", str)
    hostname = _field("meta-data/hostname", str)
    iam_info = _optional_field("meta-data/iam/info", _iam_info)
    instance_id = _field("meta-data/instance-id", str)
    instance_identity_document = _field("dynamic/instance-identity/document", _identity_document)
    instance_life_cycle = _field("meta-data/instance-life-cycle", str)
    instance_identity_pkcs7 = _field("dynamic/instance-identity/pkcs7", str)
    instance_identity_rsa2048 = _field("dynamic/instance-identity/rsa2048", str)
    instance_identity_signature = _field("dynamic/instance-identity/signature", str)
    instance_type = _field("meta-data/instance-type", str)
    ipv6 = _optional_field("meta-data/ipv6", str)
    kernel_id = _optional_field("meta-data/kernel-id", str)
    mac = _field("meta-data/mac", str)
    partition = _field("meta-data/services/partition", str)
    private_hostname = _field("meta-data/local-hostname", str)
    private_ipv4 = _field("meta-data/local-ipv4", str)
    public_hostname = _optional_field("meta-data/public-hostname", str)
    placement_group = _optional_field("meta-data/placement/group-name", str)
    placement_host_id = _optional_field("meta-data/placement/host-id", str)
    placement_partition_number = _optional_field("meta-data/placement/partition-number", int)
    product_codes = _list_field("meta-data/product-codes")
    public_ipv4 = _optional_field("meta-data/public-ipv4", str)
    ramdisk_id = _optional_field("meta-data/ramdisk-id", str)
    reservation_id = _field("meta-data/reservation-id", str)
    security_groups = _field("meta-data/security-groups", _lines)

    @cached_property
    def account_id(self) -> str:
        """The AWS account ID, from the instance identity document."""
        return self.instance_identity_document["accountId"]

    @cached_property
    def region(self) -> str:
        """The region, from the instance identity document."""
        return self.instance_identity_document["region"]

    @cached_property
    def instance_profile_arn(self) -> str | None:
        """The instance profile's ARN, from `iam_info`, or None when no role is attached."""
        info = self.iam_info
        return None if info is None else info["InstanceProfileArn"]

    @cached_property
    def instance_profile_id(self) -> str | None:
        """The instance profile's ID, from `iam_info`, or None when no role is attached."""
        info = self.iam_info
        return None if info is None else info["InstanceProfileId"]

    @cached_property
    def instance_profile_name(self) -> str | None:
        """The last part of `instance_profile_arn`, or None when no role is attached."""
        arn = self.instance_profile_arn
        return None if arn is None else arn.rsplit("/", 1)[-1]

    @cached_property
    def iam_security_credentials(self) -> IamSecurityCredentialsDict | None:
        """The role's temporary credentials, or None when no role is attached.

        The role is the one listed under ``iam/security-credentials/``: its name differs
        from the instance profile's when CloudFormation or Terraform made the profile.
        """
        roles = self._read_or_none("meta-data/iam/security-credentials/", _names)
        if not roles:
            return None
        return self._read(f"meta-data/iam/security-credentials/{roles[0]}", _credentials)

    @cached_property
    def block_device_mapping(self) -> dict[str, str]:
        """Each virtual device name (``ami``, ``root``, ``ebs1``...) to its device."""
        names = self._read_or_none("meta-data/block-device-mapping/", _names) or []
        return {name: self._read(f"meta-data/block-device-mapping/{name}", str) for name in names}

    @cached_property
    def network_interfaces(self) -> dict[str, NetworkInterface]:
        """The network interfaces, keyed by MAC address."""
        macs = self._read("meta-data/network/interfaces/macs/", _names)
        return {mac: NetworkInterface(mac, self) for mac in macs}

    @cached_property
    def public_keys(self) -> dict[str, PublicKey]:
        """The SSH public keys given at launch, keyed by name ({} when there are none)."""
        entries = self._read_or_none("meta-data/public-keys/", _public_key_entries) or []
        return {name: PublicKey(index, self) for index, name in entries}

    @cached_property
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

    @cached_property
    def user_data(self) -> bytes | None:
        """The raw user data given at launch (not base64), or None when there is none."""
        try:
            return self._transport.get("user-data")
        except EC2MetadataNotFoundError:
            return None

    @property
    def autoscaling_target_lifecycle_state(self) -> str | None:
        """Uncached. The Auto Scaling lifecycle state the instance is moving to, or None."""
        return self._read_or_none("meta-data/autoscaling/target-lifecycle-state", str)

    @property
    def instance_action(self) -> str:
        """Uncached. A pending reboot or bundling action, ``"none"`` when there is none."""
        return self._read("meta-data/instance-action", str)

    @property
    def rebalance_recommendation(self) -> RebalanceRecommendation | None:
        """Uncached. EC2's advice to move work off this spot instance, or None."""
        return self._read_or_none("meta-data/events/recommendations/rebalance", _rebalance)

    @property
    def scheduled_events(self) -> list[ScheduledEventDict]:
        """Uncached. The scheduled maintenance events of the instance ([] when none)."""
        events = self._read_or_none("meta-data/events/maintenance/scheduled", _scheduled_events)
        return events or []

    @property
    def spot_instance_action(self) -> SpotInstanceAction | None:
        """Uncached. The action about to happen to this spot instance, or None."""
        return self._read_or_none("meta-data/spot/instance-action", _spot_action)

    @cached_property
    def tree(self) -> MetadataTree:
        """The whole ``meta-data/`` tree, as nested read-only mappings fetched as needed."""
        return MetadataTree(self)

    def fetch(self, path: str) -> str:
        """Uncached. The text at any path, such as ``meta-data/placement/host-id``."""
        return self._read(_relative(path), str)

    def fetch_bytes(self, path: str) -> bytes:
        """Uncached. The bytes at any path, such as ``user-data``."""
        return self._transport.get(_relative(path))


class InstanceTags(Mapping[str, str]):
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

    device_number = _field("device-number", int)
    interface_id = _field("interface-id", str)
    ipv4_prefix = _list_field("ipv4-prefix")
    ipv6s = _list_field("ipv6s")
    ipv6_prefix = _list_field("ipv6-prefix")
    owner_id = _field("owner-id", str)
    private_hostname = _field("local-hostname", str)
    private_ipv4s = _field("local-ipv4s", _lines)
    public_hostname = _optional_field("public-hostname", str)
    public_ipv4s = _list_field("public-ipv4s")
    security_groups = _field("security-groups", _lines)
    security_group_ids = _field("security-group-ids", _lines)
    subnet_id = _field("subnet-id", str)
    subnet_ipv4_cidr_block = _optional_field("subnet-ipv4-cidr-block", str)
    subnet_ipv6_cidr_blocks = _list_field("subnet-ipv6-cidr-blocks")
    vpc_id = _field("vpc-id", str)
    vpc_ipv4_cidr_block = _optional_field("vpc-ipv4-cidr-block", str)
    vpc_ipv4_cidr_blocks = _list_field("vpc-ipv4-cidr-blocks")
    vpc_ipv6_cidr_blocks = _list_field("vpc-ipv6-cidr-blocks")

    @cached_property
    def ipv4_associations(self) -> dict[str, list[str]]:
        """Each public IPv4 address of the interface, to the private addresses behind it.

        The addresses are those of `public_ipv4s`, which ``ipv4-associations/`` lists too.
        """
        return {ip: self._read(f"ipv4-associations/{ip}", _lines) for ip in self.public_ipv4s}

    @cached_property
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

    openssh_key = _optional_field("openssh-key", str)


def _relative(path: str) -> str:
    """A path as given by a user (``/latest/meta-data/mac``) relative to ``latest/``."""
    path = path.lstrip("/")
    return path[len("latest/") :] if path.startswith("latest/") else path


class MetadataTree(Mapping[str, "MetadataTree | str"]):
    """A read-only view of a metadata directory, ``meta-data/`` by default.

    Sub-directories are trees and leaves are strings; the listing and each value are
    fetched on first access and then kept.  Keys are the names in the listing, without the
    trailing ``/``; a public key listed as ``0=my-key`` is the directory ``my-key``.
    """

    def __init__(self, client: EC2Metadata, path: str = "meta-data/") -> None:
        self._client = client
        self._path = path.rstrip("/") + "/"
        self._children: dict[str, MetadataTree | str] = {}

    @cached_property
    def _entries(self) -> dict[str, str]:
        """Each key to its path below this directory (ending in ``/`` for a directory)."""
        entries: dict[str, str] = {}
        for line in self._client._read(self._path, _lines):
            index, equals, name = line.partition("=")
            if equals and index.isdigit():
                entries[name or index] = f"{index}/"
            elif line.endswith("/") or entries.get(line, "").endswith("/"):
                # A name listed both as a leaf and as a directory is a directory.
                entries[line.rstrip("/")] = line.rstrip("/") + "/"
            else:
                entries[line] = line
        return entries

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


# Watch: spot, rebalance, maintenance and Auto Scaling notices -------------------------

SPOT_INTERRUPTION = "spot"
REBALANCE_RECOMMENDATION = "rebalance"
SCHEDULED_EVENT = "scheduled"
AUTOSCALING_TRANSITION = "autoscaling"
EVENT_KINDS = (SPOT_INTERRUPTION, REBALANCE_RECOMMENDATION, SCHEDULED_EVENT, AUTOSCALING_TRANSITION)

_NOTICE_PATHS = {
    SPOT_INTERRUPTION: "meta-data/spot/instance-action",
    REBALANCE_RECOMMENDATION: "meta-data/events/recommendations/rebalance",
    SCHEDULED_EVENT: "meta-data/events/maintenance/scheduled",
    AUTOSCALING_TRANSITION: "meta-data/autoscaling/target-lifecycle-state",
}
# The Auto Scaling target state of an instance that nothing is happening to: when it is the
# first state a watch sees, it is not reported (any other first state is, from nothing).
_STEADY_STATE = "InService"
_MAX_WATCH_BACKOFF = 30.0  # seconds between polls while the service fails, at most


class Event(_Record):
    """A notice for this instance, as a watch reports it: once, when it first sees it."""

    __slots__ = ("data", "key", "kind", "seen_at", "time")

    def __init__(
        self, kind: str, key: str, time: datetime, data: dict[str, Any], seen_at: datetime
    ) -> None:
        self.kind = kind
        """One of `EVENT_KINDS`: ``"spot"``, ``"rebalance"``, ``"scheduled"``, ``"autoscaling"``."""
        self.key = key
        """What makes the event itself, the same at every poll: ``spot:terminate:<time>``,
        ``rebalance:<noticeTime>``, ``scheduled:<EventId>:<State>``, or
        ``autoscaling:<previous state>-><state>`` (``autoscaling:->Terminated`` from none)."""
        self.time = time
        """When it happens, as a timezone-aware UTC datetime: the spot action's time, the
        rebalance noticeTime, the scheduled event's NotBefore, or for Auto Scaling (whose
        notice has no time) when the transition was seen."""
        self.data = data
        """The notice, every field the service gave, its times as timezone-aware UTC
        datetimes; for Auto Scaling ``{"previous": "InService", "state": "Terminated"}``."""
        self.seen_at = seen_at
        """When the watch first saw it, as a timezone-aware UTC datetime."""

    def __hash__(self) -> int:
        return hash((self.kind, self.key))

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON can hold it, its times as ISO 8601 strings."""
        fields = ("kind", "key", "time", "seen_at", "data")
        return {name: _json_ready(getattr(self, name)) for name in fields}


def _json_ready(value: object) -> object:
    from datetime import datetime

    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value


def _spot_notice(text: str) -> dict[str, Any]:
    data = _json_object(text)
    data["time"] = _spot_action(text).time
    return data


def _rebalance_notice(text: str) -> dict[str, Any]:
    data = _json_object(text)
    data["noticeTime"] = _rebalance(text).notice_time
    return data


def _scheduled_notices(text: str) -> list[dict[str, Any]]:
    events = cast("list[dict[str, Any]]", _scheduled_events(text))
    for event in events:
        if not isinstance(event.get("EventId"), str) or not isinstance(event.get("State"), str):
            raise ValueError("a scheduled event lacks its EventId or State")
    return events


class EventWatcher:
    """What a watch has seen, and one poll at a time of the notices it watches.

    Each `poll` makes one GET per kind watched (four at most) through the client, so over
    its kept-alive connection and with its token; a 404 means no notice.  An event is
    reported once, by its `Event.key`, however many polls see it and whatever errors come
    between them.  Notices already there at the first poll are reported by it.
    """

    def __init__(
        self, client: EC2Metadata | None = None, kinds: Iterable[str] | None = None
    ) -> None:
        chosen = EVENT_KINDS if kinds is None else tuple(kinds)
        unknown = sorted(set(chosen) - set(EVENT_KINDS))
        if unknown:
            raise EC2MetadataConfigError(
                f"unknown event kind {', '.join(map(repr, unknown))}; "
                f"the kinds are: {', '.join(EVENT_KINDS)}"
            )
        self.client = ec2_metadata if client is None else client
        self.kinds = tuple(kind for kind in EVENT_KINDS if kind in chosen)
        self.errors: list[EC2MetadataError] = []
        """The errors of the last poll, one per notice it could not read ([] when none)."""
        self._answered = 0  # reads of the last poll that the service answered
        self._reported: set[str] = set()
        self._state: str | None = None  # the last Auto Scaling target state read

    def poll(self) -> list[Event]:
        """Read the notices once: the events not reported before, in the order of `kinds`.

        A read that fails is recorded in `errors` and tried again at the next poll; when
        the service cannot be reached at all, the rest of this poll is skipped.  Settings
        errors (`EC2MetadataConfigError`, `EC2MetadataDisabledError`) are raised.
        """
        from datetime import datetime, timezone

        now = datetime.now(timezone.utc)
        self.errors = []
        self._answered = 0
        events: list[Event] = []
        for kind in self.kinds:
            try:
                events.extend(self._read(kind, now))
                self._answered += 1
            except (EC2MetadataConfigError, EC2MetadataDisabledError):
                raise
            except EC2MetadataError as error:
                self.errors.append(error)
                if isinstance(error, EC2MetadataConnectionError):
                    break
        return events

    def _read(self, kind: str, now: datetime) -> list[Event]:
        path = _NOTICE_PATHS[kind]
        read = self.client._read_or_none
        if kind == SPOT_INTERRUPTION:
            spot = read(path, _spot_notice)
            found = [] if spot is None else [self._spot(spot, now)]
        elif kind == REBALANCE_RECOMMENDATION:
            rebalance = read(path, _rebalance_notice)
            found = [] if rebalance is None else [self._rebalance(rebalance, now)]
        elif kind == SCHEDULED_EVENT:
            found = [self._scheduled(event, now) for event in read(path, _scheduled_notices) or []]
        else:
            return self._transition(read(path, str), now)
        fresh = []
        for event in found:
            if event.key not in self._reported:
                self._reported.add(event.key)
                fresh.append(event)
        return fresh

    @staticmethod
    def _spot(data: dict[str, Any], now: datetime) -> Event:
        key = f"spot:{data['action']}:{data['time'].isoformat()}"
        return Event(SPOT_INTERRUPTION, key, data["time"], data, now)

    @staticmethod
    def _rebalance(data: dict[str, Any], now: datetime) -> Event:
        key = f"rebalance:{data['noticeTime'].isoformat()}"
        return Event(REBALANCE_RECOMMENDATION, key, data["noticeTime"], data, now)

    @staticmethod
    def _scheduled(data: dict[str, Any], now: datetime) -> Event:
        key = f"scheduled:{data['EventId']}:{data['State']}"
        return Event(SCHEDULED_EVENT, key, data.get("NotBefore", now), data, now)

    def _transition(self, answer: str | None, now: datetime) -> list[Event]:
        state = (answer or "").strip()
        previous = self._state
        # No state (not in a group, or out of it): nothing to report; the last state stays.
        if not state or state == previous:
            return []
        self._state = state
        if previous is None and state == _STEADY_STATE:
            return []
        key = f"autoscaling:{previous or ''}->{state}"
        data: dict[str, Any] = {"previous": previous, "state": state}
        return [Event(AUTOSCALING_TRANSITION, key, now, data, now)]


def watch(
    interval: float = 5.0,
    *,
    kinds: Iterable[str] | None = None,
    client: EC2Metadata | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Event]:
    """Poll for notices every ``interval`` seconds (with 10% jitter); yield each new `Event`.

    ``kinds`` limits the watch to some of `EVENT_KINDS`; ``client`` is the module's
    `ec2_metadata` unless given.  It polls until ``stop`` is set, or for ever: leave the
    loop to end it.  Errors of the service (5xx, throttling, timeouts, 401, a service that
    restarts or refuses connections) never end it: the first is logged as a warning on
    the ``ec2_metadata`` logger, and the recovery too.  While no read of a poll succeeds,
    polls back off, up to 30 s apart (or ``8 * interval`` if less); while some do, the
    others keep the interval.  Settings errors are raised.
    """
    import logging
    import random

    if not interval > 0:
        raise EC2MetadataConfigError(f"the watch interval must be positive, not {interval!r}")
    log = logging.getLogger(__name__)
    watcher = EventWatcher(client, kinds)
    longest = max(interval, min(_MAX_WATCH_BACKOFF, 8 * interval))
    failed_polls = 0
    failing_since = 0.0
    while True:
        events = watcher.poll()
        if watcher.errors:
            if not failed_polls:
                failing_since = time.monotonic()
                log.warning(
                    "watch: %s (polling on, backing off up to %gs between polls)",
                    watcher.errors[0],
                    longest,
                )
            failed_polls += 1
            # A notice that cannot be read must not slow down the others: back off only
            # while the service answers nothing.
            down = not watcher._answered
            delay = min(longest, interval * 2 ** min(failed_polls, 16)) if down else interval
        else:
            if failed_polls:
                log.warning(
                    "watch: the service answers again, after %d failed polls in %.1fs",
                    failed_polls,
                    time.monotonic() - failing_since,
                )
            failed_polls = 0
            delay = interval
        yield from events
        delay *= random.uniform(0.9, 1.1)
        if stop is None:
            time.sleep(delay)
        elif stop.wait(delay):
            return


# The watch on the command line: imds watch


class _Stopped(BaseException):
    """SIGTERM or SIGINT arrived: the watch ends (raised by the signal handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """Turns SIGTERM and SIGINT into `_Stopped`, except while an event is being written."""

    def __init__(self) -> None:
        self.deferring = False
        self.pending: int | None = None

    def handle(self, signum: int, frame: object) -> None:
        if self.deferring:
            self.pending = signum
        else:
            raise _Stopped(signum)

    def resume(self) -> None:
        self.deferring = False
        if self.pending is not None:
            raise _Stopped(self.pending)


# What a hook finds in its environment, from the fields of an event's data.
_HOOK_VARIABLES = {
    "action": "IMDS_EVENT_ACTION",
    "EventId": "IMDS_EVENT_ID",
    "Code": "IMDS_EVENT_CODE",
    "State": "IMDS_EVENT_STATE",
    "state": "IMDS_EVENT_STATE",
    "previous": "IMDS_EVENT_PREVIOUS_STATE",
}
_HOOK_GRACE = 5.0  # seconds a hook has to exit after SIGTERM, before SIGKILL


def _hook_environment(event: Event) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        IMDS_EVENT_KIND=event.kind,
        IMDS_EVENT_KEY=event.key,
        IMDS_EVENT_TIME=event.time.isoformat(),
        IMDS_EVENT_SEEN_AT=event.seen_at.isoformat(),
    )
    for field, variable in _HOOK_VARIABLES.items():
        value = event.data.get(field)
        if isinstance(value, str):
            environment[variable] = value
    return environment


def _end_hook(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the hook's process group; SIGKILL to what is left of it after the grace
    period.  Returns once the hook and the processes it started have ended (or been killed)."""
    import signal

    deadline = time.monotonic() + _HOOK_GRACE
    if not hasattr(os, "killpg"):  # pragma: no cover - Windows, where a hook has no group
        process.terminate()
        if _wait_until(deadline, lambda: process.poll() is not None):
            return
        process.kill()
        process.wait()
        return
    _signal_group(process.pid, signal.SIGTERM)
    # The shell may have forked the command: wait for the whole group, not just the shell.
    if _wait_until(deadline, lambda: process.poll() is not None and _group_gone(process.pid)):
        return
    _signal_group(process.pid, signal.SIGKILL)  # pragma: no cover - a hook ignoring SIGTERM
    process.wait()  # pragma: no cover


def _signal_group(group: int, signum: int) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError):  # every process of it has ended
        os.killpg(group, signum)


def _group_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_until(deadline: float, done: Callable[[], bool]) -> bool:
    """Whether ``done()`` became true before ``deadline`` (a time.monotonic() value)."""
    while not done():
        if time.monotonic() >= deadline:
            return False  # pragma: no cover - a hook ignoring SIGTERM
        time.sleep(0.01)
    return True


def _say(message: str) -> None:
    import sys

    print(f"imds: {message}", file=sys.stderr, flush=True)


class _HookRunner:
    """Runs the --exec command once per event, in order, one at a time, in a thread of its
    own: the watch goes on polling (and printing) while a hook runs."""

    def __init__(self, command: str, timeout: float) -> None:
        import queue
        import threading

        self.command = command
        self.timeout = timeout
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._lock = threading.Lock()
        self._running: tuple[subprocess.Popen[bytes], Event] | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="imds-watch-hooks", daemon=True)
        self._thread.start()

    def submit(self, event: Event) -> None:
        self._queue.put(event)

    def finish(self) -> None:
        """Wait for the hooks of every event submitted."""
        self._queue.put(None)
        self._thread.join()

    def stop(self) -> None:
        """End the running hook (SIGTERM, then SIGKILL) and run no more."""
        with self._lock:
            self._stopping = True
            running = self._running
        if running is not None:
            process, event = running
            _say(f"stopping the hook for {event.key}: imds is exiting")
            _end_hook(process)
        self._queue.put(None)
        self._thread.join(_HOOK_GRACE)

    def _work(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            self._run(event)

    def _run(self, event: Event) -> None:
        import json
        import subprocess

        with self._lock:
            if self._stopping:
                return
            try:
                process = subprocess.Popen(
                    self.command,
                    shell=True,
                    stdin=subprocess.PIPE,
                    stdout=2,  # stdout is for events only: what the hook prints goes to stderr
                    env=_hook_environment(event),
                    start_new_session=True,  # its own process group, ended as one
                )
            except OSError as error:
                _say(f"the hook for {event.key} could not start: {error}")
                return
            self._running = (process, event)
        try:
            process.communicate(json.dumps(event.to_dict()).encode() + b"\n", self.timeout)
        except subprocess.TimeoutExpired:
            _say(f"the hook for {event.key} ran past its {self.timeout:g}s timeout: ending it")
            _end_hook(process)
            return
        finally:
            with self._lock:
                self._running = None
        status = process.returncode
        if status != 0 and not self._stopping:
            how = f"exit status {status}" if status > 0 else f"signal {-status}"
            _say(f"the hook for {event.key} failed with {how}")


def _positive_seconds(text: str) -> float:
    import argparse

    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


_WATCH_EPILOG = """\
Each new notice is printed once, as one JSON object on one line. Service errors never end
the watch: the first of an outage and the recovery are reported on stderr. SIGTERM and
SIGINT end it with status 0 (a running hook gets SIGTERM and 5 s before SIGKILL).

A hook's environment: IMDS_EVENT_KIND, IMDS_EVENT_KEY, IMDS_EVENT_TIME and
IMDS_EVENT_SEEN_AT (ISO 8601, UTC); IMDS_EVENT_ACTION (spot); IMDS_EVENT_ID and
IMDS_EVENT_CODE (scheduled); IMDS_EVENT_STATE (scheduled, autoscaling);
IMDS_EVENT_PREVIOUS_STATE (autoscaling, except for the first state seen)."""


def _add_watch_arguments(parser: argparse.ArgumentParser) -> None:
    import argparse

    parser.description = (
        "Watch for spot interruptions, rebalance recommendations, scheduled maintenance "
        "and Auto Scaling lifecycle transitions."
    )
    parser.epilog = _WATCH_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--interval",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds between polls, with 10%% jitter (default: 5, as AWS advises)",
    )
    parser.add_argument(
        "--kind",
        dest="kinds",
        action="append",
        choices=EVENT_KINDS,
        help="watch this kind only (repeat for more; default: all)",
    )
    parser.add_argument(
        "--exec",
        dest="hook",
        metavar="CMD",
        help="run CMD with /bin/sh once per event: the event as JSON on its stdin, its "
        "fields in IMDS_EVENT_* variables, its output on stderr",
    )
    parser.add_argument(
        "--hook-timeout",
        type=_positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="end a hook still running after this long (default: 60)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="exit 0 after the first event (and its hook); 128+N if signal N comes first",
    )


def _watch_command(args: argparse.Namespace, client: EC2Metadata) -> int:
    """``imds watch``: one JSON line per event; SIGTERM or SIGINT exit 0."""
    import contextlib
    import json
    import logging
    import signal
    import sys

    log = logging.getLogger(__name__)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setFormatter(logging.Formatter("imds: %(message)s"))
    log.addHandler(to_stderr)
    hooks = _HookRunner(args.hook, args.hook_timeout) if args.hook else None
    signals = _Signals()
    handlers = {
        signum: signal.signal(signum, signals.handle) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    reported = False
    events = watch(args.interval, kinds=args.kinds, client=client)
    try:
        while True:  # the watch never ends by itself
            event = next(events)
            signals.deferring = True
            try:
                sys.stdout.write(json.dumps(event.to_dict()) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                _say("watch: stdout was closed: stopping")
                # Keep Python's flush of stdout at exit quiet: what is left goes nowhere.
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
            reported = True
            if hooks is not None:
                hooks.submit(event)
            signals.resume()
            if args.once:
                if hooks is not None:
                    hooks.finish()
                return 0
    except _Stopped as stopped:
        # --once promises an event when it exits 0: `imds watch --once && ./drain.sh`.
        return 128 + stopped.signum if args.once and not reported else 0
    finally:
        signals.deferring = True  # a second signal now must not cut the cleanup short
        if hooks is not None:
            hooks.stop()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        log.removeHandler(to_stderr)


# Command line: imds, python -m ec2_metadata, python ec2_metadata.py -------------------

_NOT_METADATA = frozenset({"service_url", "tree"})


def _metadata_names(cls: type) -> list[str]:
    """The public metadata attributes of a class, sorted."""
    names = {
        name
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if isinstance(value, (cached_property, property)) and not name.startswith("_")
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
    _add_watch_arguments(
        commands.add_parser(
            "watch",
            help="print spot, rebalance, maintenance and Auto Scaling notices as they come",
        )
    )
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
        elif args.command == "watch":
            return _watch_command(args, client)
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
