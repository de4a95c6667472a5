"""Read the EC2 Instance Metadata Service (IMDSv2) with nothing but the standard library.

A quick example::

    >>> from ec2_metadata import ec2_metadata
    >>> ec2_metadata.region
    'eu-west-1'
    >>> ec2_metadata.network_interfaces[ec2_metadata.mac].subnet_id
    'subnet-00a1b2c3d4e5f6789'

Each attribute is fetched on first access and then cached: ``del ec2_metadata.tags``
forgets one value, ``ec2_metadata.clear_all()`` forgets them all.  Every request carries
an IMDSv2 session token; the client never falls back to IMDSv1, never talks to a proxy
and never follows a redirect.  Every failure raises a subclass of `EC2MetadataError`.

Settings come from the keyword arguments of `EC2Metadata`, else from the environment
variables the AWS SDKs read (``AWS_EC2_METADATA_SERVICE_ENDPOINT``,
``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE``, ``AWS_EC2_METADATA_DISABLED``,
``AWS_METADATA_SERVICE_TIMEOUT``, ``AWS_METADATA_SERVICE_NUM_ATTEMPTS``), else from the
AWS config file, read when a client makes its first request.

The same file is the ``imds`` command (``python3 ec2_metadata.py --help``): ``get``,
``json``, ``tree``, ``watch`` (spot, rebalance, maintenance and Auto Scaling notices, with
a hook), ``doctor`` (why metadata fails here) and ``serve`` (a fake service for tests,
also `FakeMetadataService`).  Each loads what it needs only when it runs.
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
    import subprocess
    import threading
    from collections.abc import Iterable, Iterator
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
    # needs it at run time: annotations stay strings.  The TypedDicts are declared on this
    # stand-in, and each becomes a real typing.TypedDict when first asked for (see
    # `_typed_dict`).
    class TypedDict(dict):
        def __init_subclass__(cls, total: bool = True) -> None:
            super().__init_subclass__()
            cls.__total__ = total

    def cast(kind, value):
        return value

    class Generic:  # Generic[_T] is just a base class at run time
        def __class_getitem__(cls, parameters):
            return object

    _T = None
    # collections.abc classes can be subscripted only from Python 3.9 on.
    _StringMapping = _TreeMapping = Mapping


__all__ = [
    "AUTOSCALING_TRANSITION",
    "EVENT_KINDS",
    "REBALANCE_RECOMMENDATION",
    "SCHEDULED_EVENT",
    "SPOT_INTERRUPTION",
    "TOKEN_HEADER",
    "TOKEN_HEADER_TTL",
    "TOKEN_TTL_SECONDS",
    "BaseLazyObject",
    "Check",
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
    "FakeMetadataService",
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
    "diagnose",
    "ec2_metadata",
    "main",
    "watch",
]

__version__ = "1.0.0"


def __dir__() -> list[str]:
    """The public names, without the modules and helpers that the module uses."""
    dunders = {name for name in globals() if name.startswith("__") and name.endswith("__")}
    return sorted(dunders.union(__all__))


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


_TYPED_DICT_DECLARATIONS: dict[str, type] = {}
_TYPED_DICTS: dict[tuple[str, str], type] = {}
if not TYPE_CHECKING:  # pragma: no branch - always true at run time
    # At run time the classes above are only the declarations of the public TypedDicts:
    # taken out of the namespace here, each is built as a real TypedDict by the module's
    # __getattr__ (PEP 562) when a program first imports or reads it.
    for declaration in (
        IamInfoDict,
        IamSecurityCredentialsDict,
        InstanceIdentityDocumentDict,
        _ScheduledEventKeys,
        ScheduledEventDict,
    ):
        _TYPED_DICT_DECLARATIONS[declaration.__name__] = globals().pop(declaration.__name__)
    del declaration

    def __getattr__(name):
        if name in _TYPED_DICT_DECLARATIONS and name in __all__:
            return _typed_dict(name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _typed_dict(name: str, flavour: str = "typing") -> type:
    """The TypedDict class declared as ``name`` above, built on first use with the
    TypedDict of module ``flavour``.

    Python 3.7 has no TypedDict: there the declaration, a dict subclass, is the class.
    """
    import sys

    if (flavour, name) in _TYPED_DICTS:
        return _TYPED_DICTS[flavour, name]
    declaration = _TYPED_DICT_DECLARATIONS[name]
    if sys.version_info < (3, 8):
        return declaration  # pragma: no cover - run by the 3.7 tests, not measured there
    import types
    import typing
    from datetime import datetime
    from importlib import import_module

    module: Any = import_module(flavour)
    # The annotations are strings such as "list[str] | None"; Python 3.8 can evaluate
    # neither list[str] nor X | None, so each is evaluated as typing.List[str] and a Union.
    names: dict[str, Any] = {"__builtins__": {}, "None": None, "str": str}
    names.update(datetime=datetime, Literal=module.Literal, List=typing.List)

    def evaluate(annotation: str) -> object:
        options = [eval(part.replace("list[", "List["), names) for part in annotation.split("|")]
        return typing.Union[tuple(options)] if len(options) > 1 else options[0]

    fields = {key: evaluate(text) for key, text in vars(declaration)["__annotations__"].items()}
    total = vars(declaration)["__total__"]
    parent = declaration.__bases__[0].__name__
    if parent in _TYPED_DICT_DECLARATIONS:
        body = {"__annotations__": fields, "__module__": __name__, "__doc__": declaration.__doc__}
        bases = (_typed_dict(parent, flavour),)
        built = types.new_class(name, bases, {"total": total}, lambda ns: ns.update(body))
    else:
        built = module.TypedDict(name, fields, total=total)
        built.__module__ = __name__
        built.__doc__ = declaration.__doc__
    if flavour == "typing" and sys.version_info < (3, 12):
        # pydantic refuses typing's TypedDicts before Python 3.12 and asks for those of
        # typing_extensions (which it installs): through its schema hook, it gets one.
        def pydantic_schema(cls: type, source: object, handler: Callable[[type], Any]) -> Any:
            return handler(_typed_dict(name, "typing_extensions"))

        built.__get_pydantic_core_schema__ = classmethod(pydantic_schema)  # type: ignore[attr-defined]
    _TYPED_DICTS[flavour, name] = built
    return built


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
TOKEN_TTL_SECONDS = 21600
"""The longest life a session token may have, in seconds, and the one this client asks for."""
TOKEN_HEADER = "X-aws-ec2-metadata-token"
TOKEN_HEADER_TTL = "X-aws-ec2-metadata-token-ttl-seconds"
_TOKEN_HEADER = TOKEN_HEADER
_TOKEN_TTL_HEADER = TOKEN_HEADER_TTL
_TOKEN_PATH = "api/token"
_MAX_BODY = 1024 * 1024
_MAX_LINES = _MAX_BODY + 64 * 1024  # status, header, chunk-size and trailer lines of an answer
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_ENDPOINT_VARIABLE = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
_HOP_LIMIT_FIX = (
    "aws ec2 modify-instance-metadata-options --instance-id ID --http-put-response-hop-limit 2"
)


class _Settings(_Record):
    """The settings of a client, and where each came from (`sources`, for ``imds doctor``)."""

    __slots__ = (
        "attempts",
        "base_path",
        "disabled",
        "endpoint",
        "endpoint_mode",
        "host",
        "port",
        "sources",
        "timeout",
        "token_ttl",
    )

    def __init__(
        self,
        *,
        endpoint: str,
        endpoint_mode: str,
        host: str,
        port: int,
        base_path: str,
        timeout: float,
        attempts: int,
        disabled: bool,
        token_ttl: int,
        sources: dict[str, str],
    ) -> None:
        self.endpoint = endpoint
        self.endpoint_mode = endpoint_mode
        self.host = host
        self.port = port
        self.base_path = base_path
        self.timeout = timeout
        self.attempts = attempts
        self.disabled = disabled
        self.token_ttl = token_ttl
        self.sources = sources
        """Each setting's name to where its value came from: ``"argument timeout="``,
        ``"environment variable AWS_METADATA_SERVICE_TIMEOUT"``, ``"config file PATH, profile
        NAME, key metadata_service_timeout"`` or ``"default"``."""


_VARIABLES = {
    "endpoint": _ENDPOINT_VARIABLE,
    "endpoint_mode": "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
    "timeout": "AWS_METADATA_SERVICE_TIMEOUT",
    "attempts": "AWS_METADATA_SERVICE_NUM_ATTEMPTS",
    "disabled": "AWS_EC2_METADATA_DISABLED",
}

# The keys of the AWS shared config file that the SDKs read for the same settings.
_CONFIG_KEYS = {
    "endpoint": "ec2_metadata_service_endpoint",
    "endpoint_mode": "ec2_metadata_service_endpoint_mode",
    "timeout": "metadata_service_timeout",
    "attempts": "metadata_service_num_attempts",
}


class _ConfigProfile:
    """The profile of the AWS shared config file that the SDKs would use, read on first need.

    The file is ``$AWS_CONFIG_FILE`` (default ``~/.aws/config``) and the profile
    ``$AWS_PROFILE`` (default ``default``).  Like the SDKs, a missing or unreadable file
    and a missing profile count as empty; a file that is not in the INI format is an error.
    """

    def __init__(self) -> None:
        self.path = os.path.expanduser(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config")
        self.profile = os.environ.get("AWS_PROFILE") or "default"
        self._values: dict[str, str] | None = None

    def get(self, key: str) -> str:
        """The key's value in the profile, stripped; "" when it is not there."""
        if self._values is None:
            self._values = self._read()
        return self._values.get(key, "").strip()

    def where(self, key: str) -> str:
        return f"config file {self.path}, profile {self.profile}, key {key}"

    def _read(self) -> dict[str, str]:
        try:
            with open(self.path, encoding="utf-8") as file:  # the one stat when there is none
                text = file.read()
        except (OSError, UnicodeDecodeError):
            return {}
        from configparser import ConfigParser, Error

        parser = ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text, self.path)
        except Error as error:
            problem = str(error).splitlines()[0]
            raise EC2MetadataConfigError(
                f"the AWS config file {self.path} cannot be read as an INI file ({problem}); "
                "fix it, or point AWS_CONFIG_FILE at another file"
            ) from None
        sections = [f"profile {self.profile}"]
        if self.profile == "default":
            sections.append("default")
        for section in sections:
            if parser.has_section(section):
                return dict(parser.items(section))
        return {}


class _SettingSources:
    """Reads each setting from the first source that has it, and remembers which one.

    The sources, strongest first: the keyword arguments, the environment variables, the
    AWS config file, the defaults.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._config = _ConfigProfile()
        self.used: dict[str, str] = {}

    def get(self, name: str, parse: Callable[[str, str], _T], default: _T) -> _T:
        if name in self._options:
            self.used[name] = f"argument {name}="
            return parse(str(self._options[name]), f"the {name}= argument")
        variable = _VARIABLES.get(name, "")
        raw = os.environ.get(variable, "").strip() if variable else ""
        if raw:
            self.used[name] = f"environment variable {variable}"
            return parse(raw, variable)
        key = _CONFIG_KEYS.get(name, "")
        raw = self._config.get(key) if key else ""
        if raw:
            self.used[name] = self._config.where(key)
            return parse(raw, f"{key} in profile {self._config.profile!r} of {self._config.path}")
        self.used[name] = "default"
        return default


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


def _without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``: it may be a secret."""
    scheme, separator, rest = url.rpartition("://")
    authority_end = min((rest.find(mark) for mark in "/?#" if mark in rest), default=len(rest))
    at = rest.rfind("@", 0, authority_end)
    if at < 0:
        return url
    return f"{scheme}{separator}***{rest[at:]}"


_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:%")


def _parse_endpoint(raw: str, source: str) -> tuple[str, str, int, str]:
    """Split an endpoint URL into (URL without trailing slash, host, port, path prefix).

    Everything that would fail only at the first connection is refused here instead, and
    no message repeats the URL's user-info, which may be a password.
    """
    from urllib.parse import urlsplit

    problem = ""
    port = None
    try:
        raw.encode("ascii")
        parts = urlsplit(raw)
    except UnicodeEncodeError:
        problem = "it has characters that are not ASCII"
    except ValueError as error:  # "Invalid IPv6 URL"
        problem = str(error)
    else:
        try:
            port = parts.port
        except ValueError:
            problem = "its port is not a number from 1 to 65535"
    if not problem:
        if parts.scheme != "http":
            problem = "the scheme must be http:// (the service speaks plain HTTP)"
        elif parts.username is not None or parts.password is not None:
            problem = "it may not carry a user name or password"
        elif not parts.hostname:
            problem = "it names no host"
        elif not set(parts.hostname) <= _HOST_CHARACTERS:
            problem = "its host is not a host name or an IP address"
        elif port == 0:
            problem = "port 0 cannot be connected to"
        elif parts.query or parts.fragment or raw.endswith(("?", "#")):
            problem = "it may not carry a query or a fragment"
        elif parts.path.rstrip("/").endswith("/latest"):
            problem = "leave out the /latest: the client adds it to every path"
    if problem:
        raise EC2MetadataConfigError(
            f"{source} must be a URL such as http://127.0.0.1:1338, "
            f"not {_without_userinfo(raw)!r}: {problem}"
        )
    return raw.rstrip("/"), cast(str, parts.hostname), port or 80, parts.path.rstrip("/")


_parse_attempts = _positive_int_parser(1000)
_parse_token_ttl = _positive_int_parser(TOKEN_TTL_SECONDS)
_PARSERS: dict[str, Callable[[str, str], object]] = {
    "endpoint": _parse_endpoint,
    "endpoint_mode": _parse_mode,
    "timeout": _parse_timeout,
    "attempts": _parse_attempts,
    "disabled": _parse_disabled,
    "token_ttl": _parse_token_ttl,
}


def _check_options(options: dict[str, Any]) -> None:
    """Raise `EC2MetadataConfigError` for a keyword argument that cannot be used."""
    for name, value in options.items():
        _PARSERS[name](str(value), f"the {name}= argument")


def _resolve_settings(options: dict[str, Any]) -> _Settings:
    """The client's settings, each from the strongest source that has it."""
    sources = _SettingSources(options)
    mode = sources.get("endpoint_mode", _parse_mode, "ipv4")
    default_endpoint = _parse_endpoint(_DEFAULT_ENDPOINTS[mode], "default")
    endpoint, host, port, base_path = sources.get("endpoint", _parse_endpoint, default_endpoint)
    return _Settings(
        endpoint=endpoint,
        endpoint_mode=mode,
        host=host,
        port=port,
        base_path=base_path,
        timeout=sources.get("timeout", _parse_timeout, _DEFAULT_TIMEOUT),
        attempts=sources.get("attempts", _parse_attempts, _DEFAULT_ATTEMPTS),
        disabled=sources.get("disabled", _parse_disabled, False),
        token_ttl=sources.get("token_ttl", _parse_token_ttl, TOKEN_TTL_SECONDS),
        sources=sources.used,
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
    """A failure to connect or to be answered, in a few words."""
    import errno
    import socket

    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "network unreachable"
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
    return cast("InstanceIdentityDocumentDict", _json_object(text, "accountId", "region"))


def _iam_info(text: str) -> IamInfoDict:
    return cast("IamInfoDict", _json_object(text, "InstanceProfileArn", "InstanceProfileId"))


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
    return cast("IamSecurityCredentialsDict", data)


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


BaseLazyObject = _Node  # ec2-metadata's name for it


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


def _check_connection_maker(name: str, given: object) -> None:
    """Refuse a ``session``/``pool_manager`` argument that is no requests or urllib3 object.

    Such a value is a mistake, most often an endpoint passed by position, which would
    otherwise be ignored while the client read another service.
    """
    if given is None or callable(getattr(given, "request", None)):
        return
    if isinstance(given, str):
        hint = f"; to read the service at that URL, pass endpoint={_without_userinfo(given)!r}"
    else:
        hint = "; to point the client at another service, pass endpoint="
    raise EC2MetadataConfigError(
        f"the {name} argument must be a requests.Session or urllib3.PoolManager (kept for code "
        f"written for ec2-metadata 2.x and 3.x), not {type(given).__name__}{hint}"
    )


class _ServiceUrl:
    """One of ec2-metadata's URL attributes: the URL every path is read under, e.g.
    ``http://169.254.169.254/latest/``, then ``below`` it.  Assigning one points the client
    at the endpoint that the URL is under."""

    def __init__(self, below: str) -> None:
        self.below = below
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, client: EC2Metadata | None, owner: type | None = None) -> str:
        if client is None:
            return cast(str, self)
        return f"{client._transport.settings.endpoint}/latest/{self.below}"

    def __set__(self, client: EC2Metadata, url: object) -> None:
        suffix = "/latest/" + self.below
        text = url if isinstance(url, str) else ""
        if not text.rstrip("/").endswith(suffix.rstrip("/")):
            shown = _without_userinfo(text) if text else url
            raise EC2MetadataConfigError(
                f"{self.name} must be a URL ending in {suffix}, such as "
                f"http://127.0.0.1:1338{suffix}, not {shown!r}"
            )
        endpoint = text.rstrip("/")[: -len(suffix.rstrip("/"))]
        _parse_endpoint(endpoint, f"the endpoint of {self.name}")
        client._options["endpoint"] = endpoint
        client._transport.reset()


class EC2Metadata(_Node):
    """The metadata of the EC2 instance this program runs on.

    Attributes are fetched on first access and cached, except those documented as
    uncached.  The keyword arguments override the environment variables of the AWS SDKs,
    which override the keys of the AWS config file (see the README):

    - ``endpoint``: a URL such as ``http://127.0.0.1:1338`` (``AWS_EC2_METADATA_SERVICE_ENDPOINT``)
    - ``endpoint_mode``: ``"IPv4"`` or ``"IPv6"`` (``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE``)
    - ``timeout``: the deadline of one attempt in seconds, 1 (``AWS_METADATA_SERVICE_TIMEOUT``)
    - ``attempts``: tries per request, 3 (``AWS_METADATA_SERVICE_NUM_ATTEMPTS``)
    - ``disabled``: refuse every request (``AWS_EC2_METADATA_DISABLED``)
    - ``token_ttl``: seconds a session token lives, 1 to 21600 (default 21600)

    ``session`` (a ``requests.Session``, ec2-metadata 2.x) and ``pool_manager`` (a
    ``urllib3.PoolManager``, 3.x) are accepted for code written for those packages; this
    client makes its own connection, so passing one only gives a warning.

    A keyword argument that cannot be used raises `EC2MetadataConfigError` at once; the
    environment and the AWS config file are read at the first request.
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
        for name, given in (("session", session), ("pool_manager", pool_manager)):
            _check_connection_maker(name, given)
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
        _check_options(self._options)
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

    # ec2-metadata's URL attributes.  Code written for it points the client elsewhere by
    # assigning one (``client.service_url = "http://127.0.0.1:1338/latest/"``): here that
    # sets the endpoint that every later request goes to.
    service_url = _ServiceUrl("")
    metadata_url = _ServiceUrl("meta-data/")
    dynamic_url = _ServiceUrl("dynamic/")
    userdata_url = _ServiceUrl("user-data/")

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


def _watch_options(parser: argparse.ArgumentParser) -> None:
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


def _watch_command(args: argparse.Namespace) -> int:
    """``imds watch``: one JSON line per event; SIGTERM or SIGINT exit 0."""
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
    events = watch(args.interval, kinds=args.kinds, client=_client(args))
    try:
        while True:  # the watch never ends by itself
            event = next(events)
            signals.deferring = True
            _write((json.dumps(event.to_dict()) + "\n").encode())  # stops it if stdout closed
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


# Doctor: why metadata fails here, and the fix -----------------------------------------

_OK, _WARN, _FAIL, _SKIPPED = "ok", "warn", "fail", "skipped"
_DOCTOR_MAX_WAIT = 2.0  # seconds for any one probe, whatever timeout is configured
_DOCTOR_TOKEN_TTL = "60"  # the probe's token is thrown away at once
_CLOCK_TOLERANCE = 300.0  # seconds: AWS refuses most requests signed 5 minutes off its clock
_PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_CONTAINER_WORDS = ("docker", "kubepods", "containerd", "libpod", "lxc")
_MODIFY_OPTIONS = "aws ec2 modify-instance-metadata-options --instance-id ID "
_NO_SERVICE_FIX = (
    "off EC2 there is no metadata service: set AWS_EC2_METADATA_DISABLED=true so that AWS "
    "tools stop waiting for it, or point AWS_EC2_METADATA_SERVICE_ENDPOINT at a mock; on EC2, "
    "look for a firewall rule that drops it (iptables -S OUTPUT)"
)
_CLOCK_FIX = (
    "sync the clock: on EC2, chrony with the Amazon Time Sync Service (169.254.169.123), "
    "then sudo chronyc makestep"
)


class Check(_Record):
    """One finding of `diagnose`.

    ``status`` is ``"ok"``, ``"warn"``, ``"fail"`` or ``"skipped"``; ``finding`` is one
    line; ``fix`` is the command or setting that cures a warning or a failure, else None.
    """

    __slots__ = ("name", "status", "finding", "fix")  # noqa: RUF023 - the order shown

    def __init__(self, name: str, status: str, finding: str, fix: str | None = None) -> None:
        self.name = name
        self.status = status
        self.finding = finding
        self.fix = fix


class _Probe(_Record):
    """What one bounded probe of the service gave: an HTTP status, or the problem."""

    __slots__ = ("date", "problem", "seconds", "status")

    def __init__(
        self, status: int | None, problem: str, seconds: float, date: datetime | None = None
    ) -> None:
        self.status = status
        self.problem = problem  # "timed out", "connection refused"... ("" with a status)
        self.seconds = seconds
        self.date = date  # the answer's Date header: the service's clock

    def answered(self) -> bool:
        return self.status is not None


class _Skip(Exception):
    """A check that cannot run, and why."""


def _connect_probe(host: str, port: int, wait: float) -> _Probe:
    """Open and close one TCP connection: status 0 when it opened, else the problem."""
    import socket

    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=wait).close()
    except OSError as error:
        return _Probe(None, _describe(error), time.monotonic() - started)
    return _Probe(0, "", time.monotonic() - started)


def _host_and_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 80


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _readable_duration(seconds: float) -> str:
    """``seconds`` in the unit a person would use: ``42s``, ``17 min``, ``5 h``, ``3 days``."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f}s"


def _read_file(root: str, path: str) -> str | None:
    """The text of the file at ``path`` below ``root``, stripped; None when unreadable."""
    try:
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as file:
            return file.read(65536).strip()
    except OSError:
        return None


def _dmi(root: str) -> dict[str, str]:
    """The DMI values any user may read, by name, as far as they exist."""
    values = {}
    for name in ("sys_vendor", "board_vendor", "bios_vendor", "bios_version", "product_name"):
        value = _read_file(root, f"sys/class/dmi/id/{name}")
        if value is not None:
            values[name] = value
    return values


def _container_markers(root: str) -> list[str]:
    """What says this process runs in a container: marker files, or its cgroups' names."""
    markers = [
        f"/{path}"
        for path in (".dockerenv", "run/.containerenv")
        if os.path.exists(os.path.join(root, path))
    ]
    for path in ("proc/1/cgroup", "proc/self/cgroup"):
        text = (_read_file(root, path) or "").lower()
        words = [word for word in _CONTAINER_WORDS if word in text]
        if words:
            markers.append(f"/{path} names {words[0]}")
            break
    return markers


def _no_proxy_covers(entries: list[str], host: str) -> bool:
    """Whether a NO_PROXY list (names, domains, addresses, CIDR blocks, ``*``) covers host."""
    import ipaddress

    for entry in entries:
        name = entry.strip().strip("[]").lower().lstrip("*").lstrip(".")
        if entry.strip() == "*" or name == host.lower() or host.lower().endswith("." + name):
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                return True
        except ValueError:
            continue
    return False


def _public_credential_fields(text: str) -> dict[str, str]:
    """The fields of a credentials answer that are not secret; the keys are never kept."""
    document = _json_object(text)
    return {
        key: str(document[key]) for key in ("Code", "LastUpdated", "Expiration") if key in document
    }


class _Doctor:
    """One run of the checks of `diagnose`, in order, each bounded in time."""

    def __init__(
        self,
        options: dict[str, Any],
        root: str,
        ipv6_endpoint: str,
        now: Callable[[], datetime],
    ) -> None:
        self.options = options
        self.root = root
        self.ipv6_endpoint = ipv6_endpoint
        self.now = now
        self.settings: _Settings | None = None
        self.mode = "ipv4"
        self.wait = _DOCTOR_MAX_WAIT
        self.dmi: dict[str, str] = {}
        self.on_ec2 = False
        self.connected: _Probe | None = None
        self.token: _Probe | None = None
        self.tokenless: _Probe | None = None
        self.client: EC2Metadata | None = None
        self.no_client = "the settings are invalid (see settings)"
        self.stalled = ""
        self.credential_times: dict[str, datetime] = {}

    def run(self) -> list[Check]:
        settings = self.check_settings()
        proxy = self.check_proxy()
        ec2 = self.check_ec2()
        markers = _container_markers(self.root)
        connect = self.check_connect()
        token = self.check_token(markers)
        imdsv1 = self.check_imdsv1()
        container = self.check_container(markers)
        tags = self.with_client("tags", self.check_tags)
        iam = self.with_client("iam-role", self.check_iam)
        ipv6 = self.check_ipv6()
        clock = self.check_clock()
        if self.client is not None:
            self.client.close()
        return [settings, proxy, ec2, container, connect, token, imdsv1, tags, iam, ipv6, clock]

    # Settings

    def check_settings(self) -> Check:
        try:
            settings = _resolve_settings(self.options)
        except EC2MetadataConfigError as error:
            return Check("settings", _FAIL, str(error), "correct or unset that setting")
        self.settings = settings
        self.mode = settings.endpoint_mode
        self.wait = min(settings.timeout, _DOCTOR_MAX_WAIT)
        sources = settings.sources
        shown = {
            "endpoint": settings.endpoint,
            "endpoint_mode": "IPv6" if self.mode == "ipv6" else "IPv4",
            "timeout": f"{settings.timeout:g}s",
            "attempts": str(settings.attempts),
            "disabled": str(settings.disabled).lower(),
        }
        finding = "; ".join(
            f"{name.replace('_', ' ')} {value} ({sources[name]})" for name, value in shown.items()
        )
        if settings.disabled:
            source = sources["disabled"]
            return Check(
                "settings",
                _FAIL,
                f"{finding}: every metadata read fails at once",
                f"set it to false, or remove it, where it comes from: {source}",
            )
        return Check("settings", _OK, finding)

    def check_proxy(self) -> Check:
        host = self.settings.host if self.settings else "169.254.169.254"
        names = [name for name in _PROXY_VARIABLES if os.environ.get(name, "").strip()]
        if not names:
            return Check("proxy", _OK, f"no {', '.join(_PROXY_VARIABLES)} in the environment")
        no_proxy = os.environ.get("NO_PROXY", "") or os.environ.get("no_proxy", "")
        entries = [entry.strip() for entry in no_proxy.split(",") if entry.strip()]
        if _no_proxy_covers(entries, host):
            return Check("proxy", _OK, f"{', '.join(names)} set; NO_PROXY covers {host}")
        wanted = [
            *entries,
            *[item for item in (host, "169.254.169.254", "fd00:ec2::254") if item not in entries],
        ]
        return Check(
            "proxy",
            _WARN,
            f"{', '.join(names)} set, and NO_PROXY does not cover {host}: this client ignores "
            "proxies, but other tools here (the AWS CLI, SDKs, curl) send their metadata "
            "requests, tokens and credentials to the proxy, which cannot reach the service",
            f"export NO_PROXY={','.join(dict.fromkeys(wanted))} (and no_proxy alike)",
        )

    # Where it runs

    def check_ec2(self) -> Check:
        self.dmi = _dmi(self.root)
        if not self.dmi:
            return Check(
                "ec2",
                _SKIPPED,
                "no DMI files in /sys/class/dmi/id (not Linux, or hidden from this container)",
            )
        found = ", ".join(f"{name} {value!r}" for name, value in self.dmi.items())
        vendors = (self.dmi.get("sys_vendor"), self.dmi.get("board_vendor"))
        if "Amazon EC2" in vendors:
            self.on_ec2 = True
            return Check("ec2", _OK, f"an EC2 instance (Nitro): {found}")
        if "amazon" in self.dmi.get("bios_version", "").lower():
            self.on_ec2 = True
            return Check("ec2", _OK, f"an EC2 instance (Xen): {found}")
        return Check("ec2", _WARN, f"not an EC2 instance, by its DMI: {found}", _NO_SERVICE_FIX)

    def check_container(self, markers: list[str]) -> Check:
        if not markers:
            return Check(
                "container",
                _OK,
                "not in a container: no /.dockerenv, /run/.containerenv or container cgroup",
            )
        found = f"in a container: {', '.join(markers)}"
        if self.token is not None and self.token.status == 200:
            return Check("container", _OK, f"{found}; the token answer reaches it")
        if self.token is not None and self.token.problem == "timed out":
            return Check(
                "container",
                _WARN,
                f"{found}: the token answer must travel one hop more than to the host",
                _HOP_LIMIT_FIX,
            )
        return Check("container", _OK, found)

    # The service

    def check_connect(self) -> Check:
        if self.settings is None:
            return Check("connect", _SKIPPED, f"skipped: {self.no_client}")
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        self.connected = probe = _connect_probe(settings.host, settings.port, self.wait)
        if probe.answered():
            return Check("connect", _OK, f"connected to {where} in {_ms(probe.seconds)}")
        self.no_client = "could not connect (see connect)"
        if probe.problem == "timed out":
            finding = f"connecting to {where} timed out after {self.wait:g}s: nothing answers there"
        else:
            finding = f"could not connect to {where} ({probe.problem}, {_ms(probe.seconds)})"
        return Check("connect", _FAIL, finding, _NO_SERVICE_FIX)

    def request(self, method: str, path: str, headers: dict[str, str]) -> _Probe:
        """One request on its own connection; the answer's body is never read."""
        from email.utils import parsedate_to_datetime
        from http.client import HTTPConnection, HTTPException

        settings = cast(_Settings, self.settings)
        connection = HTTPConnection(settings.host, settings.port, timeout=self.wait)
        started = time.monotonic()
        try:
            connection.putrequest(
                method, f"{settings.base_path}/latest/{path}", skip_accept_encoding=True
            )
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
        except (OSError, HTTPException) as error:
            return _Probe(None, _describe(error), time.monotonic() - started)
        finally:
            connection.close()
        seconds = time.monotonic() - started
        try:
            date: datetime | None = parsedate_to_datetime(response.getheader("Date", ""))
        except (TypeError, ValueError, IndexError):
            date = None
        if date is not None and date.tzinfo is None:  # "-0000": a UTC time, by RFC 5322
            from datetime import timezone

            date = date.replace(tzinfo=timezone.utc)
        return _Probe(response.status, "", seconds, date)

    def check_token(self, markers: list[str]) -> Check:
        if self.connected is None or not self.connected.answered():
            return Check("token", _SKIPPED, f"skipped: {self.no_client}")
        self.token = token = self.request(
            "PUT", _TOKEN_PATH, {_TOKEN_TTL_HEADER: _DOCTOR_TOKEN_TTL}
        )
        # The one request without a token this project ever sends; its body is never read.
        self.tokenless = tokenless = self.request("GET", "meta-data/", {})
        self.no_client = "no token (see token)"
        if token.status == 200:
            self.no_client = ""
            settings = cast(_Settings, self.settings)
            self.client = EC2Metadata(
                endpoint=settings.endpoint,
                timeout=self.wait,
                attempts=1,
                disabled=False,
                token_ttl=int(_DOCTOR_TOKEN_TTL),
            )
            return Check("token", _OK, f"token issued in {_ms(token.seconds)}")
        if token.status == 403:
            return Check(
                "token",
                _FAIL,
                "the token request was refused (403): the metadata service is turned off for "
                "this instance",
                _MODIFY_OPTIONS + "--http-endpoint enabled",
            )
        if token.answered():
            return Check(
                "token",
                _FAIL,
                f"the token request was answered {token.status}: this is not an IMDSv2 service "
                "(a 4xx), or it is in trouble (a 5xx)",
                "check AWS_EC2_METADATA_SERVICE_ENDPOINT, or try again in a minute",
            )
        if token.problem == "timed out" and (tokenless.answered() or markers):
            why = (
                f"a GET without a token was answered ({tokenless.status})"
                if tokenless.answered()
                else "this runs in a container"
            )
            return Check(
                "token",
                _FAIL,
                f"connected, but the token answer never came within {self.wait:g}s, while {why}: "
                "a PUT response hop limit of 1 drops the token answer on its way into a container",
                _HOP_LIMIT_FIX,
            )
        finding = f"connected, but the token request failed ({token.problem}, {_ms(token.seconds)})"
        if tokenless.answered():
            return Check("token", _FAIL, finding, "try again; if it persists, check the endpoint")
        return Check(
            "token",
            _FAIL,
            f"{finding}, and a GET was not answered either: this is not the metadata service",
            _NO_SERVICE_FIX,
        )

    def check_imdsv1(self) -> Check:
        tokenless = self.tokenless
        if tokenless is None:
            return Check("imdsv1", _SKIPPED, f"skipped: {self.no_client}")
        if tokenless.status == 200:
            return Check(
                "imdsv1",
                _WARN,
                "IMDSv1 is on: a GET of meta-data/ without a token was answered 200 (its body "
                "was discarded); any request forgery in an application here can read the "
                "metadata and the role's credentials",
                _MODIFY_OPTIONS + "--http-tokens required",
            )
        if tokenless.status in (401, 403):
            return Check(
                "imdsv1",
                _OK,
                f"IMDSv1 is off: a GET without a token was refused ({tokenless.status})",
            )
        outcome = f"answered {tokenless.status}" if tokenless.answered() else tokenless.problem
        return Check(
            "imdsv1", _SKIPPED, f"a GET without a token was not answered plainly ({outcome})"
        )

    def read(self, path: str, parse: Callable[[str], _T]) -> _T | None:
        """The value at ``path`` (None on a 404), through the client; bounded by one wait."""
        if self.stalled:
            raise _Skip(self.stalled)
        try:
            return cast(EC2Metadata, self.client)._read_or_none(path, parse)
        except EC2MetadataConnectionError as error:
            self.stalled = f"an earlier request got no answer ({error.path})"
            raise

    def with_client(self, name: str, check: Callable[[], Check]) -> Check:
        if self.client is None:
            return Check(name, _SKIPPED, f"skipped: {self.no_client}")
        try:
            return check()
        except _Skip as skip:
            return Check(name, _SKIPPED, f"skipped: {skip}")
        except EC2MetadataError as error:
            return Check(
                name,
                _FAIL,
                str(error),
                "the service answered the token but not this: try again, with a longer --timeout",
            )

    def check_tags(self) -> Check:
        names = self.read("meta-data/tags/instance/", _names)
        if names is None:
            return Check(
                "tags",
                _WARN,
                "the instance's tags are not in the metadata (meta-data/tags/instance/ answered "
                "404)",
                _MODIFY_OPTIONS + "--instance-metadata-tags enabled",
            )
        return Check("tags", _OK, f"the instance's tags are in the metadata ({len(names)})")

    def check_iam(self) -> Check:
        info = self.read("meta-data/iam/info", _iam_info)
        roles = self.read("meta-data/iam/security-credentials/", _names) or []
        profile = None if info is None else info["InstanceProfileArn"].rsplit("/", 1)[-1]
        if not roles:
            if profile is None:
                return Check(
                    "iam-role",
                    _WARN,
                    "no IAM role is attached: AWS tools here find no credentials ('Unable to "
                    "locate credentials')",
                    "aws ec2 associate-iam-instance-profile --instance-id ID "
                    "--iam-instance-profile Name=PROFILE",
                )
            return Check(
                "iam-role",
                _FAIL,
                f"instance profile {profile} is attached, but no role's credentials are listed",
                f"aws iam add-role-to-instance-profile --instance-profile-name {profile} "
                "--role-name ROLE",
            )
        role = roles[0]
        fields = self.read(f"meta-data/iam/security-credentials/{role}", _public_credential_fields)
        if fields is None or fields.get("Code", "Success") != "Success":
            outcome = "404" if fields is None else f"code {fields['Code']}"
            return Check(
                "iam-role",
                _FAIL,
                f"role {role} is listed, but its credentials were not issued ({outcome})",
                "the role's trust policy must let ec2.amazonaws.com assume it (sts:AssumeRole)",
            )
        finding = f"role {role}"
        for key in ("LastUpdated", "Expiration"):
            try:
                self.credential_times[key] = _utc_datetime(fields.get(key))
            except ValueError:
                continue
        if "Expiration" in self.credential_times:
            expiration = self.credential_times["Expiration"]
            left = (expiration - self.now()).total_seconds()
            when = (
                f"in {_readable_duration(left)}"
                if left >= 0
                else f"{_readable_duration(-left)} ago"
            )
            finding += f"; its credentials expire at {expiration:%Y-%m-%d %H:%M:%S}Z ({when})"
        if profile is None or profile == role:
            return Check("iam-role", _OK, f"{finding}; instance profile {profile or 'unknown'}")
        return Check(
            "iam-role",
            _WARN,
            f"{finding}; its name differs from the instance profile's ({profile}): code that "
            "builds the credentials path from the profile's name gets a 404",
            "nothing to change on the instance: read the role's name from "
            "meta-data/iam/security-credentials/ (as this client does), not from the profile",
        )

    def check_ipv6(self) -> Check:
        if self.mode == "ipv6":
            reason = "the endpoint mode is IPv6"
        elif self.connected is not None and not self.connected.answered() and self.on_ec2:
            reason = "the IPv4 endpoint cannot be reached on this EC2 instance"
        elif self.client is None:
            return Check("ipv6", _SKIPPED, f"skipped: {self.no_client}")
        else:
            try:
                address = self.read("meta-data/local-ipv4", str)
            except (_Skip, EC2MetadataError) as error:
                return Check(
                    "ipv6",
                    _SKIPPED,
                    f"skipped: cannot tell whether the instance has an IPv4 address: {error}",
                )
            if address is not None:
                return Check(
                    "ipv6",
                    _OK,
                    f"not needed: IPv4 mode, and the instance has an IPv4 address ({address})",
                )
            reason = "the instance has no IPv4 address"
        host, port = _host_and_port(self.ipv6_endpoint)
        probe = _connect_probe(host, port, self.wait)
        if probe.answered():
            finding = (
                f"{reason}; the IPv6 endpoint {self.ipv6_endpoint} accepts connections "
                f"({_ms(probe.seconds)})"
            )
            if self.mode == "ipv4" and self.connected is not None and not self.connected.answered():
                return Check(
                    "ipv6", _WARN, finding, "export AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6"
                )
            return Check("ipv6", _OK, finding)
        return Check(
            "ipv6",
            _FAIL if self.mode == "ipv6" else _WARN,
            f"{reason}, but the IPv6 endpoint {self.ipv6_endpoint} cannot be reached "
            f"({probe.problem})",
            _MODIFY_OPTIONS + "--http-protocol-ipv6 enabled (Nitro instances only)",
        )

    def check_clock(self) -> Check:
        now = self.now()
        evidence: list[tuple[float, str]] = []  # (local clock minus the service's, why)
        answer = self.token if self.token is not None and self.token.date else self.tokenless
        if answer is not None and answer.date is not None:
            skew = (now - answer.date).total_seconds()
            evidence.append((skew, "the Date of the service's answer"))
        updated = self.credential_times.get("LastUpdated")
        if updated is not None and updated > now:
            # The service wrote LastUpdated in its past: the local clock is behind.
            evidence.append(((now - updated).total_seconds(), "the credentials' LastUpdated"))
        expiration = self.credential_times.get("Expiration")
        if expiration is not None and expiration < now:
            # The service never hands out expired credentials: the local clock is ahead.
            evidence.append(((now - expiration).total_seconds(), "the credentials' Expiration"))
        if not evidence and self.credential_times:
            return Check(
                "clock",
                _OK,
                "the local clock is past the credentials' LastUpdated and before their Expiration",
            )
        if not evidence:
            return Check("clock", _SKIPPED, "nothing from the service to compare the clock with")
        skew, source = max(evidence, key=lambda item: abs(item[0]))
        direction = "ahead of" if skew > 0 else "behind"
        off_by = _readable_duration(abs(skew))
        finding = f"the local clock is {off_by} {direction} the service's, by {source}"
        if abs(skew) <= _CLOCK_TOLERANCE:
            return Check("clock", _OK, finding)
        return Check(
            "clock",
            _WARN,
            f"{finding}: AWS refuses requests signed more than 5 minutes off its clock",
            _CLOCK_FIX,
        )


def diagnose(
    *,
    endpoint: str | None = None,
    endpoint_mode: str | None = None,
    timeout: float | None = None,
    attempts: int | None = None,
    disabled: bool | None = None,
    root: str = "/",
    ipv6_endpoint: str | None = None,
    now: Callable[[], datetime] | None = None,
) -> list[Check]:
    """Check why instance metadata may fail here, and say how to fix each problem.

    The settings are those of `EC2Metadata`.  ``root`` is where the DMI and container files
    are read (``/sys/class/dmi/id/...``, ``/.dockerenv``...), ``ipv6_endpoint`` is the IPv6
    endpoint to probe (the real one by default), ``now`` the local clock (UTC).  Every probe
    waits at most the timeout, and never more than 2 seconds.  No secret is ever returned.
    """
    from datetime import datetime, timezone

    given = {
        "endpoint": endpoint,
        "endpoint_mode": endpoint_mode,
        "timeout": timeout,
        "attempts": attempts,
        "disabled": disabled,
    }
    options = {name: value for name, value in given.items() if value is not None}
    clock = now or (lambda: datetime.now(timezone.utc))
    doctor = _Doctor(options, root, ipv6_endpoint or _DEFAULT_ENDPOINTS["ipv6"], clock)
    return doctor.run()


def _doctor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


def _doctor_command(args: argparse.Namespace) -> int:
    """``imds doctor``: the checks as a table (or JSON); 1 when one failed, else 0."""
    import json
    import sys

    checks = diagnose(**_client_options(args))
    failed = any(check.status == _FAIL for check in checks)
    if args.json:
        document = {"ok": not failed, "checks": [check._asdict() for check in checks]}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(_doctor_table(checks))
    sys.stdout.flush()
    return 1 if failed else 0


def _doctor_table(checks: list[Check]) -> str:
    width = max(len(check.name) for check in checks)
    lines = [f"{'CHECK':<{width}}  {'STATUS':<7}  FINDING"]
    for check in checks:
        lines.append(f"{check.name:<{width}}  {check.status:<7}  {check.finding}")
        if check.fix:
            lines.append(f"{'':<{width}}  {'':<7}  fix: {check.fix}")
    counts = {
        status: sum(check.status == status for check in checks)
        for status in (_FAIL, _WARN, _OK, _SKIPPED)
    }
    lines.append("")
    lines.append(", ".join(f"{count} {status}" for status, count in counts.items()))
    return "\n".join(lines) + "\n"


# Fake service: imds serve and a test double ---------------------------------------------

_SPOT_ACTIONS = ("hibernate", "stop", "terminate")
_EVENT_CODES = (
    "instance-reboot",
    "system-reboot",
    "system-maintenance",
    "instance-retirement",
    "instance-stop",
)
_SPOT_NOTICE_SECONDS = 120  # how long before the action EC2 gives the notice
_FAKE_SERVER_CLASSES: dict[str, Any] = {}  # the handler and server classes, built on first use

if TYPE_CHECKING:  # pragma: no cover - the classes `_fake_server_classes` builds at run time
    import http.server

    class _FakeHandler(http.server.BaseHTTPRequestHandler):
        def reply(
            self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()
        ) -> None: ...

    class _FakeServer(http.server.ThreadingHTTPServer):
        fake: FakeMetadataService


class _FakeDirectory(dict):  # type: ignore[type-arg]
    """A directory of a fake tree whose listing is given, not made from its names.

    ``public-keys/`` is one: the service lists its key ``0`` as ``0=web-key``.
    """

    def __init__(self, entries: dict[str, Any], listing: str) -> None:
        super().__init__(entries)
        self.listing = listing


def _fake_server_classes() -> tuple[type[_FakeHandler], type[_FakeServer]]:
    """The HTTP handler and server of `FakeMetadataService`, made on first use.

    Built here rather than at import, so that ``import ec2_metadata`` loads neither
    http.server nor socketserver.
    """
    if not _FAKE_SERVER_CLASSES:
        import http.server
        import socket

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            fake: FakeMetadataService

            def __init__(self, address: tuple[str, int], handler: Any) -> None:
                if ":" in address[0]:
                    self.address_family = socket.AF_INET6
                super().__init__(address, handler)

            def handle_error(self, request: Any, client_address: Any) -> None:
                import sys

                # A client that hangs up or resets mid-request is no error of the service's.
                if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
                    super().handle_error(request, client_address)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10
            server_version = "EC2ws"
            sys_version = ""
            server: Server

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm
                # holds the body until the client's delayed ACK, 40 ms a request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.server.fake._count_connection()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: a test run or a terminal is no place for an access log."""

            def do_GET(self) -> None:
                self.server.fake.answer(cast("_FakeHandler", self), "GET")

            def do_PUT(self) -> None:
                self.server.fake.answer(cast("_FakeHandler", self), "PUT")

            def reply(
                self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                for name, value in headers:
                    self.send_header(name, value)
                if not any(name.lower() == "content-length" for name, _ in headers):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        _FAKE_SERVER_CLASSES.update(handler=Handler, server=Server)
    return _FAKE_SERVER_CLASSES["handler"], _FAKE_SERVER_CLASSES["server"]


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fake_document(value: object) -> str:
    import json

    return json.dumps(value, indent=2)


def _event_time(moment: datetime) -> str:
    """A time as the event answers write it: ``4 Dec 2026 09:00:00 GMT``."""
    return f"{moment.day} {moment.strftime('%b %Y %H:%M:%S')} GMT"


def _iso_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_FAKE_RENEWAL: list[datetime] = []  # when the fake's credentials were "renewed", made once


def _fake_credentials_renewed_at() -> datetime:
    """Ten minutes before the first fake was made, to the second."""
    if not _FAKE_RENEWAL:
        from datetime import datetime, timedelta, timezone

        now = datetime.now(timezone.utc).replace(microsecond=0)
        _FAKE_RENEWAL.append(now - timedelta(minutes=10))
    return _FAKE_RENEWAL[0]


def _fake_instance_tree(with_events: bool) -> dict[str, Any]:
    """The metadata of a made-up spot instance in eu-west-1 (see `FakeMetadataService`)."""
    primary_mac, secondary_mac = "0e:49:61:0f:c3:11", "0e:5a:77:21:b0:9f"
    role = "web-stack-WebRole-1TQ0ZJ3X6N4QF"

    def interface(number: int, public: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "device-number": str(number),
            "interface-id": f"eni-0{number}1234567890abcde",
            "local-hostname": f"ip-172-31-16-{25 + number}.eu-west-1.compute.internal",
            "local-ipv4s": f"172.31.16.{25 + number}\n172.31.16.{99 + number}",
            "mac": primary_mac if number == 0 else secondary_mac,
            "network-card": str(number),
            "owner-id": "123456789012",
            "security-group-ids": "sg-0aa11bb22cc33dd44\nsg-0ee55ff66aa77bb88",
            "security-groups": "web\nssh-access",
            "subnet-id": f"subnet-0{number}a1b2c3d4e5f6789",
            "subnet-ipv4-cidr-block": "172.31.16.0/20",
            "vpc-id": "vpc-0f1e2d3c4b5a69788",
            "vpc-ipv4-cidr-block": "172.31.0.0/16",
            "vpc-ipv4-cidr-blocks": "172.31.0.0/16\n100.64.0.0/16",
        }
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

    profile = "arn:aws:iam::123456789012:instance-profile/web-stack-WebProfile-O8XJ5GQZ2K1A"
    # Credentials that were renewed a little while ago and expire in six hours, as on a
    # running instance: fixed for the life of the process, so that every fake agrees.
    from datetime import timedelta

    updated = _fake_credentials_renewed_at()
    iam_info = {
        "Code": "Success",
        "LastUpdated": _iso_time(updated),
        "InstanceProfileArn": profile,
        "InstanceProfileId": "AIPAZ4EXAMPLEPROFILE1",
    }
    credentials = {  # fake, and marked so: ASIAFAKE..., EXAMPLE, SECRETKEY
        "Code": "Success",
        "LastUpdated": _iso_time(updated),
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAFAKEEXAMPLEKEY01",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEYxx",
        "Token": "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENvalue==",
        "Expiration": _iso_time(updated + timedelta(hours=6)),
    }
    identity = {
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
    ssh_key = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly0123456789abcdef web@example\n"
    )
    events: dict[str, Any] = {"maintenance": {"scheduled": "[]"}}
    if with_events:
        event = {
            "NotBefore": "4 Dec 2026 09:00:00 GMT",
            "Code": "system-reboot",
            "Description": "scheduled reboot",
            "EventId": "instance-event-0d59937288b749b32",
            "NotAfter": "4 Dec 2026 11:00:00 GMT",
            "State": "active",
        }
        events["maintenance"]["scheduled"] = _fake_document([event])
        events["recommendations"] = {
            "rebalance": _fake_document({"noticeTime": "2026-11-27T03:50:00Z"})
        }
    metadata: dict[str, Any] = {
        "ami-id": "ami-0a1b2c3d4e5f60718",
        "ami-launch-index": "0",
        "ami-manifest-path": "(unknown)",
        "autoscaling": {"target-lifecycle-state": "InService"},
        "block-device-mapping": {"ami": "/dev/xvda", "ebs1": "sdb", "root": "/dev/xvda"},
        "events": events,
        "hostname": "ip-172-31-16-25.eu-west-1.compute.internal",
        "iam": {
            "info": _fake_document(iam_info),
            "security-credentials": {role: _fake_document(credentials)},
        },
        "instance-action": "none",
        "instance-id": "i-0123456789abcdef0",
        "instance-life-cycle": "spot",
        "instance-type": "t3.micro",
        "ipv6": "2a05:d018:1234:5600::10",
        "kernel-id": "aki-dc9ed9af",
        "local-hostname": "ip-172-31-16-25.eu-west-1.compute.internal",
        "local-ipv4": "172.31.16.25",
        "mac": primary_mac,
        "network": {
            "interfaces": {
                "macs": {
                    primary_mac: interface(0, public=True),
                    secondary_mac: interface(1, public=False),
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
        "public-keys": _FakeDirectory({"0": {"openssh-key": ssh_key}}, "0=web-key"),
        "ramdisk-id": "ari-f4b3a3f1",
        "reservation-id": "r-0123456789abcdef0",
        "security-groups": "web\nssh-access",
        "services": {"domain": "amazonaws.com", "partition": "aws"},
        "tags": {"instance": {"Name": "web-1", "Environment": "production"}},
    }
    if with_events:
        metadata["spot"] = {
            "instance-action": _fake_document(
                {"action": "terminate", "time": "2026-11-27T04:02:00Z"}
            )
        }
    return {
        "meta-data": metadata,
        "dynamic": {
            "instance-identity": {
                "document": _fake_document(identity),
                "pkcs7": "MIAGCSqGSIb3DQEHAqCAMIACAQExCzAJBgUrDgMCGgUAMIAGCSqGSIb3DQEHAaCA"
                "JIAEggHbewog",
                "rsa2048": "MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0B"
                "BwGggCSABIIB",
                "signature": "dExamplesignatureVGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==",
            }
        },
        "user-data": b"#!/bin/bash\necho hello > /tmp/hello\n",
    }


class FakeMetadataService:
    """A fake Instance Metadata Service, for tests and for trying code without an instance.

    It serves a made-up spot instance (``i-0123456789abcdef0`` in ``eu-west-1``, with two
    network interfaces, tags, a public key, an IAM role with fake credentials, the identity
    document and user data) on a loopback port, and enforces IMDSv2 as AWS documents it.
    ``data`` sets or adds paths, as `set` does.  The simulated events (`interrupt_spot`,
    `recommend_rebalance`, `schedule_event`, `set_target_lifecycle_state`) can be delayed by
    ``after`` seconds: they happen at the first request that comes after that time.

    Example::

        with FakeMetadataService({"meta-data/tags/instance/Name": "test-box"}) as imds:
            client = EC2Metadata(endpoint=imds.url)
            assert client.tags["Name"] == "test-box"
            imds.interrupt_spot("stop")
            assert client.spot_instance_action.action == "stop"

    The server binds when the object is made, serves from a thread between `start` and
    `stop` (or inside ``with``), and binds to loopback only, unless
    ``allow_non_loopback=True``.  ``port=0`` takes a free port; `url` tells which.
    """

    def __init__(
        self,
        data: Mapping[str, object] | None = None,
        *,
        allow_imdsv1: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_non_loopback: bool = False,
    ) -> None:
        if not (allow_non_loopback or _is_loopback(host)):
            raise EC2MetadataConfigError(
                f"the fake service binds to loopback only, not {host!r}; "
                "pass allow_non_loopback=True (imds serve --allow-non-loopback) to serve others"
            )
        self.tree: dict[str, Any] = _fake_instance_tree(with_events=False)
        """The served data: directories are dicts, values str or bytes, relative to /latest/."""
        self.allow_imdsv1 = allow_imdsv1
        """Answer GETs that carry no token, as IMDSv1 does (a bad token still gets 401)."""
        self.clock: Any = time
        """What times tokens and delays: anything with a ``monotonic()``."""
        self.lock = _thread.allocate_lock()
        """Guards the service's state from its serving threads (`set` and the rest take it)."""
        self.tokens: dict[str, float] = {}
        """Each token issued, to the `clock` time at which it expires."""
        self.request_count = 0
        """The requests answered so far."""
        self.connections = 0
        """The TCP connections accepted so far."""
        self._due: list[tuple[float, Callable[[], None]]] = []
        self._event_ids: set[str] = set()
        self._thread: Any = None
        for path, value in (data or {}).items():
            self.set(path, value)
        handler_class, server_class = _fake_server_classes()
        self.server = server_class((host.strip("[]"), port), handler_class)
        self.server.fake = self

    @staticmethod
    def default_tree(*, with_events: bool = False) -> dict[str, Any]:
        """A fresh copy of the data the service starts with.

        ``with_events`` adds a spot interruption notice, a rebalance recommendation and a
        scheduled reboot, with fixed times, as the documentation's examples show them.
        """
        return _fake_instance_tree(with_events)

    @property
    def url(self) -> str:
        """The service's endpoint, such as ``http://127.0.0.1:1338``."""
        host, port = self.server.server_address[:2]
        shown = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def start(self) -> None:
        """Serve requests from a background thread."""
        import threading

        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> FakeMetadataService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Data

    def set(self, path: str, value: object) -> None:
        """Serve ``value`` at ``path`` (``meta-data/tags/instance/Owner``), made as needed.

        Text and bytes are served as they are, a list of strings one item a line, None
        removes the path, and anything else (a dict, a list of dicts, a number) is served
        as a JSON document.
        """
        if value is None:
            self.remove(path)
            return
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            value = "\n".join(value)
        elif not isinstance(value, (str, bytes)):
            value = _fake_document(value)
        *parents, name = self._parts(path)
        with self.lock:
            node = self.tree
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise EC2MetadataConfigError(
                        f"cannot set {path!r}: {part!r} is a value, not a directory"
                    )
            node[name] = value

    def remove(self, path: str) -> None:
        """Remove ``path`` (a value or a whole directory), so that the service answers 404.

        Raises KeyError when there is nothing at ``path``.
        """
        *parents, name = self._parts(path)
        with self.lock:
            node: Any = self.tree
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or name not in node:
                raise KeyError(path)
            del node[name]

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far, as a stop and start of the instance does."""
        with self.lock:
            self.tokens.clear()

    @staticmethod
    def _parts(path: str) -> list[str]:
        parts = _relative(path).strip("/").split("/")
        if not all(parts):
            raise EC2MetadataConfigError(f"{path!r} is not a metadata path")
        return parts

    # Simulated events

    def interrupt_spot(self, action: str = "terminate", *, after: float = 0) -> None:
        """After ``after`` seconds, give a spot interruption notice: ``action`` in two minutes.

        ``action`` is ``terminate``, ``stop`` or ``hibernate``; a ``terminate`` also sets
        ``spot/termination-time``.
        """
        if action not in _SPOT_ACTIONS:
            raise EC2MetadataConfigError(
                f"the spot action must be one of {', '.join(_SPOT_ACTIONS)}, not {action!r}"
            )

        def notice() -> None:
            when = _iso_time(_now(_SPOT_NOTICE_SECONDS))
            self.set("meta-data/spot/instance-action", {"action": action, "time": when})
            if action == "terminate":
                self.set("meta-data/spot/termination-time", when)

        self._after(after, notice)

    def recommend_rebalance(self, *, after: float = 0) -> None:
        """After ``after`` seconds, give a rebalance recommendation (noticed at that time)."""

        def recommend() -> None:
            notice = {"noticeTime": _iso_time(_now(0))}
            self.set("meta-data/events/recommendations/rebalance", notice)

        self._after(after, recommend)

    def schedule_event(
        self,
        code: str = "system-reboot",
        *,
        starts_in: float = 7 * 24 * 3600,
        duration: float = 2 * 3600,
        description: str = "scheduled reboot",
        after: float = 0,
    ) -> str:
        """After ``after`` seconds, schedule a maintenance event; returns its ``EventId``.

        The event's window opens ``starts_in`` seconds after it is scheduled and lasts
        ``duration`` seconds.  `cancel_event` and `complete_event` end it.
        """
        if code not in _EVENT_CODES:
            raise EC2MetadataConfigError(
                f"the event code must be one of {', '.join(_EVENT_CODES)}, not {code!r}"
            )
        import secrets

        event_id = f"instance-event-{secrets.token_hex(9)[:17]}"
        self._event_ids.add(event_id)

        def schedule() -> None:
            event = {
                "NotBefore": _event_time(_now(starts_in)),
                "Code": code,
                "Description": description,
                "EventId": event_id,
                "NotAfter": _event_time(_now(starts_in + duration)),
                "State": "active",
            }
            self._change_events(lambda events: [*events, event])

        self._after(after, schedule)
        return event_id

    def cancel_event(self, event_id: str, *, after: float = 0) -> None:
        """After ``after`` seconds, mark the scheduled event ``event_id`` canceled."""
        self._end_event(event_id, "canceled", after)

    def complete_event(self, event_id: str, *, after: float = 0) -> None:
        """After ``after`` seconds, mark the scheduled event ``event_id`` completed."""
        self._end_event(event_id, "completed", after)

    def set_target_lifecycle_state(self, state: str = "Terminated", *, after: float = 0) -> None:
        """After ``after`` seconds, move the Auto Scaling target lifecycle state to ``state``."""
        self._after(after, lambda: self.set("meta-data/autoscaling/target-lifecycle-state", state))

    def _after(self, seconds: float, change: Callable[[], None]) -> None:
        if seconds <= 0:
            change()
            return
        with self.lock:
            self._due.append((self.clock.monotonic() + seconds, change))

    def _apply_due_changes(self) -> None:
        if not self._due:  # the usual case, with no lock to take
            return
        with self.lock:
            now = self.clock.monotonic()
            due = [change for when, change in self._due if when <= now]
            self._due = [(when, change) for when, change in self._due if when > now]
        for change in due:
            change()

    def _change_events(self, change: Callable[[list[dict[str, Any]]], list[Any]]) -> None:
        import json

        try:
            events = json.loads(self.tree["meta-data"]["events"]["maintenance"]["scheduled"])
        except (KeyError, TypeError, ValueError):  # removed, or replaced by something else
            events = []
        self.set("meta-data/events/maintenance/scheduled", change(events))

    def _end_event(self, event_id: str, state: str, after: float) -> None:
        if event_id not in self._event_ids:
            raise KeyError(f"no scheduled event {event_id!r}")

        def end(events: list[dict[str, Any]]) -> list[Any]:
            for event in events:
                if event.get("EventId") == event_id:
                    event["State"] = state
                    event["Description"] = f"[{state.capitalize()}] {event['Description']}"
            return events

        self._after(after, lambda: self._change_events(end))

    # Serving

    def _count_connection(self) -> None:
        with self.lock:
            self.connections += 1

    def answer(self, handler: _FakeHandler, method: str) -> None:
        """Answer one request, ``GET`` or ``PUT``, as the real service would."""
        self._apply_due_changes()
        headers = {name.lower(): value for name, value in handler.headers.items()}
        with self.lock:
            self.request_count += 1
        token = headers.get(_TOKEN_HEADER.lower())
        if method == "PUT":
            self._issue_token(handler, headers)
        elif (token is not None or not self.allow_imdsv1) and not self._token_is_valid(token):
            handler.reply(401, b"")
        else:
            self._serve_path(handler)

    def _issue_token(self, handler: _FakeHandler, headers: dict[str, str]) -> None:
        import secrets

        if handler.path != "/latest/api/token":
            handler.reply(405 if handler.path.startswith("/latest/") else 404, b"")
            return
        if "x-forwarded-for" in headers:
            handler.reply(403, b"Forbidden")
            return
        ttl = headers.get(_TOKEN_TTL_HEADER.lower(), "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= TOKEN_TTL_SECONDS:
            handler.reply(400, b"Bad Request")
            return
        token = secrets.token_urlsafe(42)
        with self.lock:
            self.tokens[token] = self.clock.monotonic() + int(ttl)
        handler.reply(200, token.encode(), ((_TOKEN_TTL_HEADER, ttl),))

    def _token_is_valid(self, token: str | None) -> bool:
        with self.lock:
            expiry = self.tokens.get(token or "")
        return expiry is not None and self.clock.monotonic() < expiry

    def _serve_path(self, handler: _FakeHandler) -> None:
        from urllib.parse import unquote

        if not handler.path.startswith("/latest/"):
            handler.reply(404, b"Not Found")
            return
        relative = unquote(handler.path[len("/latest/") :])
        with self.lock:
            body = self._body(relative)
        if body is None:
            handler.reply(404, b"Not Found")
        else:
            handler.reply(200, body)

    def _body(self, relative: str) -> bytes | None:
        """What the service answers for a path below ``/latest/``; None when nothing is there."""
        node: Any = self.tree
        for part in relative.rstrip("/").split("/"):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if isinstance(node, _FakeDirectory):
            return node.listing.encode()
        if isinstance(node, dict):
            return "\n".join(
                f"{k}/" if isinstance(v, dict) else k for k, v in node.items()
            ).encode()
        # A value asked for with a trailing slash is served too, as the mock does.
        return node if isinstance(node, bytes) else str(node).encode()


def _now(seconds_ahead: float) -> datetime:
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=seconds_ahead)


# The serve command (imds serve), kept with the fake it serves


def _duration(text: str) -> float:
    """Seconds from ``10s``, ``500ms``, ``2m``, ``1h`` or a plain number of seconds."""
    import argparse

    units = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))
    number, scale = text.strip(), 1.0
    for suffix, seconds in units:
        if number.endswith(suffix):
            number, scale = number[: -len(suffix)], seconds
            break
    try:
        value = float(number) * scale
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 10s, 500ms or 2m")
    return value


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve a fake IMDSv2 of a made-up instance, for trying and testing code without an "
        "instance. With COMMAND (after --): serve on a free port, run COMMAND with "
        f"{_ENDPOINT_VARIABLE} set, and exit with its status."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port to listen on (default: 1338; a free one with COMMAND)"
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow a --host that is not loopback (anyone who can reach it reads the fake)",
    )
    parser.add_argument(
        "--data",
        metavar="FILE.json",
        action="append",
        default=[],
        help="a JSON object of path to value: text as is, a list of strings one a line, "
        "null removes the path, other values become JSON documents",
    )
    parser.add_argument(
        "--imdsv1", action="store_true", help="also answer GETs without a token (IMDSv1)"
    )
    events = parser.add_argument_group("simulated events, each at --after")
    events.add_argument(
        "--after",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="when the events happen: 10s, 500ms, 2m (default: at once)",
    )
    events.add_argument(
        "--spot-action", choices=_SPOT_ACTIONS, help="a spot interruption notice of this action"
    )
    events.add_argument("--rebalance", action="store_true", help="a rebalance recommendation")
    events.add_argument(
        "--scheduled-event",
        metavar="CODE",
        choices=_EVENT_CODES,
        help="a maintenance event: " + ", ".join(_EVENT_CODES),
    )
    events.add_argument(
        "--cancel-event-after",
        type=_duration,
        metavar="DURATION",
        help="cancel the --scheduled-event this long after the start",
    )
    events.add_argument(
        "--asg-state",
        metavar="STATE",
        help="the Auto Scaling target lifecycle state to move to, such as Terminated",
    )
    parser.add_argument(
        "command_line", metavar="-- COMMAND", nargs="*", help="a command to run against the fake"
    )


def _read_fake_data(files: list[str]) -> list[tuple[str, dict[str, object]]]:
    import json

    documents = []
    for name in files:
        try:
            with open(name, encoding="utf-8") as file:
                document = json.load(file)
        except OSError as error:
            raise EC2MetadataConfigError(f"--data {name}: {error.strerror or error}") from None
        except ValueError as error:
            raise EC2MetadataConfigError(f"--data {name}: not JSON: {error}") from None
        if not isinstance(document, dict):
            raise EC2MetadataConfigError(
                f"--data {name} must hold a JSON object of path to value, not {document!r:.40}"
            )
        documents.append((name, document))
    return documents


def _fake_from_arguments(args: argparse.Namespace) -> FakeMetadataService:
    """The service that ``imds serve`` arguments describe, its data set and events due."""
    if args.cancel_event_after is not None and not args.scheduled_event:
        raise EC2MetadataConfigError("--cancel-event-after needs a --scheduled-event")
    port = args.port if args.port is not None else (0 if args.command_line else 1338)
    if not 0 <= port <= 65535:
        raise EC2MetadataConfigError(f"--port must be from 0 to 65535, not {port}")
    documents = _read_fake_data(args.data)
    try:
        service = FakeMetadataService(
            allow_imdsv1=args.imdsv1,
            host=args.host,
            port=port,
            allow_non_loopback=args.allow_non_loopback,
        )
    except OSError as error:
        raise EC2MetadataConfigError(
            f"cannot listen on {args.host} port {port}: {error.strerror or error}"
        ) from None
    for name, document in documents:
        for path, value in document.items():
            try:
                service.set(path, value)
            except (KeyError, EC2MetadataConfigError) as error:
                service.stop()
                problem = f"nothing at {path!r} to remove" if value is None else str(error)
                raise EC2MetadataConfigError(f"--data {name}: {problem}") from None
    if args.spot_action:
        service.interrupt_spot(args.spot_action, after=args.after)
    if args.rebalance:
        service.recommend_rebalance(after=args.after)
    if args.scheduled_event:
        event = service.schedule_event(args.scheduled_event, after=args.after)
        if args.cancel_event_after is not None:
            service.cancel_event(event, after=max(args.cancel_event_after, args.after))
    if args.asg_state:
        service.set_target_lifecycle_state(args.asg_state, after=args.after)
    return service


def _serve_command(args: argparse.Namespace) -> int:
    """``imds serve``: serve until Ctrl-C or SIGTERM, or for as long as COMMAND runs."""
    import sys

    command: list[str] = args.command_line  # argparse drops the "--" before it
    try:
        service = _fake_from_arguments(args)
    except EC2MetadataConfigError as error:
        print(f"imds serve: {error}", file=sys.stderr)
        return 2
    with service:
        if command:
            print(f"imds serve: fake IMDS on {service.url}", file=sys.stderr)
            return _run_against(service.url, command)
        return _serve_until_stopped(service.url)


def _run_against(url: str, command: list[str]) -> int:
    """Run ``command`` with the endpoint variable set to ``url``; its exit status."""
    import subprocess
    import sys

    environment = dict(os.environ, **{_ENDPOINT_VARIABLE: url})
    try:
        status = subprocess.run(command, env=environment, check=False).returncode
    except OSError as error:
        print(f"imds serve: cannot run {command[0]}: {error.strerror or error}", file=sys.stderr)
        return 127
    except KeyboardInterrupt:
        return 130
    return status if status >= 0 else 128 - status  # killed by a signal: as a shell says


def _serve_until_stopped(url: str) -> int:
    """Print how to use the service, then wait for Ctrl-C or SIGTERM: a stop asked for is 0."""
    import signal

    def stop(signal_number: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)  # before printing: a stop may follow at once
    try:
        print(f"imds serve: fake IMDS on {url} (Ctrl-C to stop); to use it:")
        print(f"export {_ENDPOINT_VARIABLE}={url}", flush=True)
        while True:  # pragma: no branch - left by a signal only
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


# Command line: imds, python3 -m ec2_metadata, python3 ec2_metadata.py -----------------

_NOT_METADATA = frozenset({"tree"})  # a field that is no metadata


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


# The exit statuses of imds, as the README documents them.
_EXIT_ERROR = 1  # the metadata could not be read, or the output could not be written
_EXIT_USAGE = 2  # the command line is wrong: a command, a name, an option or its value
_EXIT_SETTING = 3  # a setting from the environment (AWS_...) has a value that cannot be used
_EXIT_ABSENT = 4  # with --fail: a value asked for is absent
_EXIT_INTERRUPTED = 130  # Ctrl-C

# What the dump and the tree leave out unless --show-secrets is given.  AccessKeyId stays:
# it names the key (CloudTrail logs it) and is no use without the other two.
_SECRET_KEYS = frozenset({"SecretAccessKey", "Token"})
_REDACTED = "<redacted>"

# Lists that are printed as JSON even when empty (the others print one item a line).
_JSON_LISTS = frozenset({"scheduled_events"})


class _UsageError(Exception):
    """The command line is wrong; the message says how, in the command line's terms."""


class _Absent(Exception):
    """The value asked for is absent: None, or a 404 for what it is read from."""


class _OutputError(Exception):
    """Standard output could not be written (a full disk, a closed pipe)."""


class _Command(_Record):
    """One subcommand of imds: what it does, its line in ``imds --help``, and its options.

    ``run`` takes the parsed arguments and returns the exit status; ``options`` adds the
    command's own arguments to its parser (the shared ones are added to every command).
    """

    __slots__ = ("help", "options", "run")

    def __init__(
        self,
        run: Callable[[argparse.Namespace], int],
        help: str,
        options: Callable[[argparse.ArgumentParser], None] | None = None,
    ) -> None:
        self.run = run
        self.help = help
        self.options = options


def _usage(names: list[str]) -> str:
    """The names, one a line, as the help of ``imds``, ``imds get`` and ``imds json`` ends."""
    return "names (write them with - or _, in any case):\n  " + "\n  ".join(names)


_RAW_PATHS_HELP = """
A NAME with a '/' in it is a raw path below latest/, read as it is:
meta-data/placement/host-id, dynamic/instance-identity/document, user-data.
A path that starts with none of meta-data/, dynamic/ and user-data is read
under meta-data/: placement/host-id, tags/instance/Name."""


def _shared_options(parser: argparse.ArgumentParser, default: object) -> None:
    """The options every command takes, before or after it (checked by `_client`)."""
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        default=default,
        help=f"the service's URL, such as http://127.0.0.1:1338 (default: ${_ENDPOINT_VARIABLE},"
        " else from the endpoint mode)",
    )
    parser.add_argument(
        "--endpoint-mode",
        metavar="MODE",
        default=default,
        help="IPv4 (http://169.254.169.254) or IPv6 (http://[fd00:ec2::254]) "
        "(default: $AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE, else IPv4)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        default=default,
        help="to connect, and for each answer (default: $AWS_METADATA_SERVICE_TIMEOUT, else 1)",
    )
    parser.add_argument(
        "--attempts",
        metavar="N",
        default=default,
        help="tries per request (default: $AWS_METADATA_SERVICE_NUM_ATTEMPTS, else 3)",
    )


def _secrets_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--show-secrets",
        action="store_true",
        default=default,
        help="print the values of SecretAccessKey and Token, which are <redacted> otherwise",
    )


def _dump_options(parser: argparse.ArgumentParser) -> None:
    import argparse

    _secrets_option(parser, argparse.SUPPRESS)


def _get_options(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print one value: text as it is, with a newline unless it ends with one; a list\n"
        "one item a line (nothing when empty); tags one key=value a line; user-data and\n"
        "any answer that is not UTF-8 as its exact bytes; anything else (scheduled-events\n"
        "always) as JSON. An absent value prints nothing and exits 0, or 4 with --fail."
    )
    parser.epilog = _usage(_metadata_names(EC2Metadata)) + "\n" + _RAW_PATHS_HELP
    parser.add_argument("name", metavar="NAME", help="a name below, or a raw path")
    parser.add_argument(
        "key",
        metavar="KEY",
        nargs="?",
        help="one entry of a mapping: a tag (imds get tags Name), a device, an interface...",
    )
    parser.add_argument(
        "-n", dest="newline", action="store_false", help="add no newline after text or JSON"
    )
    _fail_option(parser)


def _json_options(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the values as one JSON object keyed by the names as given. An absent value\n"
        "is null, or exits 4 with --fail."
    )
    parser.epilog = _usage(_metadata_names(EC2Metadata)) + "\n" + _RAW_PATHS_HELP
    parser.add_argument("names", metavar="NAME", nargs="+", help="a name below, or a raw path")
    _fail_option(parser)


def _fail_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--fail",
        action="store_true",
        help="exit 4, printing nothing, when a value is absent (as curl -f does on a 404)",
    )


def _parser(names: list[str]) -> argparse.ArgumentParser:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    parser = Parser(
        prog="imds",
        description="Read the EC2 instance metadata (IMDSv2). With no command: print every\n"
        "attribute as one JSON document, as imds all does.",
        epilog=_usage(names)
        + "\n\nimds get --help says how values are printed and how raw paths are read.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _shared_options(parser, None)
    _secrets_option(parser, False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in _COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.help, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        # SUPPRESS: an option left out after the command keeps its value from before it.
        _shared_options(sub, argparse.SUPPRESS)
        if command.options is not None:
            command.options(sub)
    return parser


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the shared options give; a bad value is a usage error naming its option.

    Checked here, so that any setting that fails later comes from the environment.
    """
    options: dict[str, Any] = {}
    for name in ("endpoint", "endpoint_mode", "timeout", "attempts"):
        raw = getattr(args, name)
        if raw is not None:
            try:
                _PARSERS[name](raw, "--" + name.replace("_", "-"))
            except EC2MetadataConfigError as error:
                raise _UsageError(f"imds: {error}") from None
            options[name] = raw
    if "timeout" in options:
        options["timeout"] = float(options["timeout"])
    if "attempts" in options:
        options["attempts"] = int(options["attempts"])
    return options


def _client(args: argparse.Namespace) -> EC2Metadata:
    """The client the shared options ask for."""
    return EC2Metadata(**_client_options(args))


def _attribute(given: str, command: str) -> str | None:
    """The attribute a NAME means, or None for a raw path (one with a ``/``)."""
    if "/" in given:
        return None
    names = _metadata_names(EC2Metadata)
    snake = given.replace("-", "_").lower()
    if snake in names:
        return snake
    import difflib

    close = difflib.get_close_matches(snake, names, n=1, cutoff=0.6)
    shown = [name if "_" in given else name.replace("_", "-") for name in close]
    hint = f"did you mean {shown[0]}? " if shown else ""
    path = f"{given}/" if given in ("meta-data", "dynamic") else _raw_path(given)
    raise _UsageError(
        f"imds {command}: unknown name {given!r}; {hint}A raw path needs a '/': "
        f"{path} (see imds {command} --help)"
    )


def _raw_path(given: str) -> str:
    """A raw path as read: below ``latest/``, and under ``meta-data/`` unless it says where."""
    path = _relative(given)
    if path.startswith(("meta-data/", "dynamic/", "user-data")):
        return path
    return "meta-data/" + path


def _lookup(client: EC2Metadata, given: str, command: str) -> object:
    """The value of a NAME or raw path: bytes or text for a path; `_Absent` when absent."""
    name = _attribute(given, command)
    try:
        if name is None:
            path = _raw_path(given)
            body = client.fetch_bytes(path)
            if path.startswith("user-data"):
                return body
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                return body
        value = getattr(client, name)
    except EC2MetadataNotFoundError as error:
        raise _Absent(f"{given} is absent: {error}") from None
    if value is None:
        raise _Absent(f"{given} is absent: the service has no such entry")
    return value


def _get_output(value: object, errors: dict[str, str], name: str, *, newline: bool = True) -> bytes:
    """What ``imds get`` prints: see the description of ``imds get --help``."""
    end = "\n" if newline else ""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return (value if value.endswith("\n") else value + end).encode()
    if isinstance(value, int):
        return f"{value}{end}".encode()
    if isinstance(value, InstanceTags):
        lines = [f"{key}={tag}" for key, tag in value.items()]
        return ("\n".join(lines) + end).encode() if lines else b""
    if (
        isinstance(value, list)
        and name.replace("-", "_").lower() not in _JSON_LISTS
        and all(isinstance(item, str) for item in value)
    ):
        return ("\n".join(value) + end).encode() if value else b""
    import json  # here: printing an ID or an address does not need it

    return (json.dumps(_plain(value, errors, name), indent=2) + end).encode()


def _redacted(value: object, *, in_text: bool = False) -> object:
    """A plain value with the values of `_SECRET_KEYS` replaced, at any depth.

    With ``in_text`` (for the tree, whose leaves are text), a leaf that is a JSON object
    holding one of them (a credentials document) is redacted too, and shown as JSON again.
    """
    if isinstance(value, dict):
        return {
            key: _REDACTED if key in _SECRET_KEYS else _redacted(item, in_text=in_text)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item, in_text=in_text) for item in value]
    if in_text and isinstance(value, str) and any(key in value for key in _SECRET_KEYS):
        import json

        try:
            document = json.loads(value)
        except ValueError:
            return value
        return json.dumps(_redacted(document), indent=2)
    return value


def _write(data: bytes) -> None:
    """Write to standard output now; a failure is an `_OutputError`."""
    import sys

    if sys.stdout is None:  # started with standard output closed (>&-)
        raise _OutputError("standard output is closed")
    try:
        sys.stdout.flush()
        if data:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
    except OSError as error:
        raise _OutputError(error) from None


def _write_json(document: object) -> None:
    import json

    _write(json.dumps(document, indent=2).encode() + b"\n")


def _run_all(args: argparse.Namespace) -> int:
    errors: dict[str, str] = {}
    document = _snapshot(_client(args), errors)
    if not args.show_secrets:
        document = cast("dict[str, object]", _redacted(document))
    if errors:  # reported in the document: the rest of the dump is still good
        document["errors"] = errors
    _write_json(document)
    return 0


def _run_tree(args: argparse.Namespace) -> int:
    tree = _client(args).tree.to_dict()
    _write_json(tree if args.show_secrets else _redacted(tree, in_text=True))
    return 0


def _run_get(args: argparse.Namespace) -> int:
    import sys

    errors: dict[str, str] = {}  # attributes inside the value that failed, and why
    value = _lookup(_client(args), args.name, "get")
    if args.key is not None:
        if not isinstance(value, Mapping):
            raise _UsageError(f"imds get: {args.name} has no keys: KEY is only for mappings")
        if args.key not in value:
            raise _Absent(f"{args.name} has no key {args.key!r}")
        value = value[args.key]
    _write(_get_output(value, errors, args.name, newline=args.newline))
    for where, message in errors.items():
        print(f"imds: {where}: {message}", file=sys.stderr)
    return _EXIT_ERROR if errors else 0


def _run_json(args: argparse.Namespace) -> int:
    import sys

    client = _client(args)
    errors: dict[str, str] = {}
    document: dict[str, object] = {}
    for given in args.names:
        try:
            document[given] = _plain(_lookup(client, given, "json"), errors, given)
        except _Absent:
            if args.fail:
                raise
            document[given] = None
    _write_json(document)
    for where, message in errors.items():
        print(f"imds: {where}: {message}", file=sys.stderr)
    return _EXIT_ERROR if errors else 0


# Every subcommand of imds.  To add one: a function taking the parsed arguments and returning
# the exit status, a function adding its own options (if any), and one line here.
_COMMANDS: dict[str, _Command] = {
    "all": _Command(_run_all, "every attribute as one JSON document (the default)", _dump_options),
    "get": _Command(_run_get, "print one value, for shell scripts", _get_options),
    "json": _Command(_run_json, "print values as one JSON object", _json_options),
    "tree": _Command(_run_tree, "the whole meta-data/ tree as nested JSON", _dump_options),
    "watch": _Command(
        _watch_command,
        "print spot, rebalance, maintenance and Auto Scaling notices as they come",
        _watch_options,
    ),
    "doctor": _Command(
        _doctor_command, "check why metadata fails here, and print the fixes", _doctor_options
    ),
    "serve": _Command(_serve_command, "serve a fake IMDS, for tests", _serve_options),
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``imds`` command; returns its exit status, as the README's table gives them."""
    import sys

    try:
        try:
            args = _parser(_metadata_names(EC2Metadata)).parse_args(argv)
        except SystemExit as done:  # after --help or --version (argparse ignores write errors)
            _write(b"")
            return int(done.code or 0)
        return _run(args)
    except _UsageError as error:
        print(error, file=sys.stderr)
        return _EXIT_USAGE
    except _OutputError as error:
        print(f"imds: cannot write the output: {error}", file=sys.stderr)
        _discard_output()
        return _EXIT_ERROR
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    """Run the command ``args`` name; metadata errors and absence become exit statuses."""
    import sys

    try:
        return _COMMANDS[args.command or "all"].run(args)
    except _Absent as error:
        if not getattr(args, "fail", False):
            return 0
        print(f"imds: {error}", file=sys.stderr)
        return _EXIT_ABSENT
    except EC2MetadataConfigError as error:  # `_client` checked the command line's settings
        print(f"imds: {error}", file=sys.stderr)
        return _EXIT_SETTING
    except EC2MetadataError as error:
        message = str(error)
        if args.endpoint is not None:
            message = message.replace(f"set {_ENDPOINT_VARIABLE}", "pass another --endpoint")
        print(f"imds: {message}", file=sys.stderr)
        return _EXIT_ERROR


def _discard_output() -> None:
    """Point standard output at the null device, so that the flush at exit cannot fail too."""
    import sys

    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or not a file: nothing to flush
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)


if __name__ == "__main__":  # pragma: no cover - run as a script by the tests, in a subprocess
    raise SystemExit(main())
