"""The client side of the benchmark: what each child process of ``bench/run.py`` runs.

``run.py`` starts every child as ``python -I -X pycache_prefix=DIR -c TRAMPOLINE MODE ...``,
where the trampoline imports this module by name and calls `main`.  Importing this module
installs the loopback guard first, before any client module can be imported: from then
on ``socket.socket.connect`` and ``connect_ex`` raise `NonLoopbackConnection` for any
IPv4 or IPv6 address that is not loopback, before the real connect is tried.

The guard costs nothing until ``socket`` is imported: it is a finder at the head of
``sys.meta_path`` that patches the ``socket`` module the moment that module has been
executed.  So an import-only child of our client, which never imports ``socket``, pays for
the guard no more than a child of the upstream client, which does.

Modes (each prints one JSON object on stdout, except ``import`` and ``nothing``):

- ``nothing``: the interpreter and the guard, no client (a baseline)
- ``import CLIENT``: import the client module, nothing else
- ``one CLIENT URL``: read ``instance_id`` from the fake at URL, as ``imds get instance-id``
  would, then report it with the process's peak RSS
- ``full CLIENT URL ROUNDS``: read every attribute ROUNDS times, ``clear_all()`` between
- ``guard-check``: show that the guard is installed and refuses a non-loopback address

CLIENT is ``ours`` (``ec2_metadata.py`` of the repository this file is in) or ``upstream``
(the ``ec2_metadata`` package installed in the interpreter's site-packages).
"""

import os
import sys
import time

# Neither ``from typing import ...`` nor ``from __future__ import annotations`` (hence the
# quoted annotations): the import cost of each client is measured in these processes, and a
# module this file imported first would not be counted in the client's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

# The loopback guard ----------------------------------------------------------------------


class NonLoopbackConnection(RuntimeError):
    """A client tried to connect to an address that is not loopback.

    Not an OSError, so that no client takes it for a network failure and retries."""


def is_loopback(family: int, address: object) -> bool:
    """True for an AF_INET or AF_INET6 address tuple whose host is a numeric loopback address.

    A host name is never loopback here: the clients resolve names before they connect, so a
    name reaching ``connect`` would be resolved by it, out of the guard's sight.
    """
    import socket

    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return False
    try:
        packed = socket.inet_pton(family, address[0].split("%", 1)[0])
    except (OSError, ValueError):
        return False
    if family == socket.AF_INET:
        return packed[0] == 127
    mapped_ipv4 = packed[:12] == bytes(10) + b"\xff\xff"
    return packed == bytes(15) + b"\x01" or (mapped_ipv4 and packed[12] == 127)


def _patch_socket(socket_module: "ModuleType") -> None:
    socket_class: Any = socket_module.socket
    if getattr(socket_class.connect, "loopback_guard", False):
        return
    real_connect = socket_class.connect
    real_connect_ex = socket_class.connect_ex
    internet = (socket_module.AF_INET, socket_module.AF_INET6)

    def check(sock: "Any", address: object) -> None:
        if sock.family in internet and not is_loopback(sock.family, address):
            raise NonLoopbackConnection(f"benchmark guard: refused to connect to {address!r}")

    def connect(sock: "Any", address: object) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: "Any", address: object) -> int:
        check(sock, address)
        result: int = real_connect_ex(sock, address)
        return result

    connect.loopback_guard = True  # type: ignore[attr-defined]
    connect_ex.loopback_guard = True  # type: ignore[attr-defined]
    socket_class.connect = connect
    socket_class.connect_ex = connect_ex


class _GuardSocketOnImport:
    """A meta path finder that patches ``socket`` right after the module is executed."""

    def find_spec(self, name: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if name != "socket":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        real_exec_module = loader.exec_module

        def exec_module(module: "ModuleType") -> None:
            real_exec_module(module)
            _patch_socket(module)

        loader.exec_module = exec_module
        return spec


def install_guard() -> None:
    if "socket" in sys.modules:
        _patch_socket(sys.modules["socket"])
    elif not any(isinstance(finder, _GuardSocketOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _GuardSocketOnImport())


def guard_is_active() -> bool:
    """True when ``socket`` is guarded, or not imported yet while the finder waits for it."""
    socket_module = sys.modules.get("socket")
    if socket_module is None:
        return any(isinstance(finder, _GuardSocketOnImport) for finder in sys.meta_path)
    connect = socket_module.socket.connect
    connect_ex = socket_module.socket.connect_ex
    return bool(getattr(connect, "loopback_guard", False)) and bool(
        getattr(connect_ex, "loopback_guard", False)
    )


install_guard()  # before anything else can import a client


# The clients -----------------------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_SERVICE = "http://169.254.169.254/"
UPSTREAM_URL_ATTRIBUTES = ("service_url", "dynamic_url", "metadata_url", "userdata_url")

# Every attribute of the ec2-metadata README API, the same set for both clients.
ATTRIBUTES = (
    "account_id",
    "ami_id",
    "ami_launch_index",
    "ami_manifest_path",
    "autoscaling_target_lifecycle_state",
    "availability_zone",
    "availability_zone_id",
    "domain",
    "iam_info",
    "iam_security_credentials",
    "instance_action",
    "instance_id",
    "instance_identity_document",
    "instance_life_cycle",
    "instance_profile_arn",
    "instance_profile_id",
    "instance_profile_name",
    "instance_type",
    "kernel_id",
    "mac",
    "partition",
    "private_hostname",
    "private_ipv4",
    "public_hostname",
    "public_ipv4",
    "public_keys",
    "region",
    "reservation_id",
    "security_groups",
    "spot_instance_action",
    "tags",
    "user_data",
    "network_interfaces",
)
INTERFACE_ATTRIBUTES = (
    "device_number",
    "interface_id",
    "ipv4_associations",
    "ipv6s",
    "ipv6_prefix",
    "mac",
    "owner_id",
    "private_hostname",
    "private_ipv4s",
    "public_hostname",
    "public_ipv4s",
    "security_groups",
    "security_group_ids",
    "subnet_id",
    "subnet_ipv4_cidr_block",
    "subnet_ipv6_cidr_blocks",
    "vpc_id",
    "vpc_ipv4_cidr_block",
    "vpc_ipv4_cidr_blocks",
    "vpc_ipv6_cidr_blocks",
)


class BenchSetupError(Exception):
    """The client is not the one asked for, or could not be pointed at the fake."""


def import_client(which: str) -> "ModuleType":
    """Import ``ec2_metadata``: ours from the repository, or upstream from site-packages."""
    if which == "ours":
        sys.path.insert(0, REPO)
    elif which != "upstream":
        raise BenchSetupError(f"unknown client {which!r}")
    import ec2_metadata

    from_repo = os.path.dirname(os.path.abspath(ec2_metadata.__file__ or "")) == REPO
    if from_repo != (which == "ours"):
        raise BenchSetupError(f"asked for {which}, imported {ec2_metadata.__file__}")
    return ec2_metadata


def point_at_fake(which: str, client: "Any", url: str) -> None:
    """Make sure every request of ``client`` goes to ``url``, or raise before any request.

    Ours reads ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (set by run.py), which this checks.
    Upstream hard-codes ``http://169.254.169.254/latest/`` in instance attributes set by
    its ``__init__``: each of them is rewritten, and none may be left pointing there.
    """
    if which == "ours":
        if not client.service_url.startswith(url + "/"):
            raise BenchSetupError(f"ours would read {client.service_url}, not {url}")
        return
    state = vars(client)
    for name, value in list(state.items()):
        if isinstance(value, str) and value.startswith(REAL_SERVICE):
            setattr(client, name, url + "/" + value[len(REAL_SERVICE) :])
    missing = [name for name in UPSTREAM_URL_ATTRIBUTES if not state.get(name, "").startswith(url)]
    left = [
        name
        for name, value in state.items()
        if isinstance(value, str) and ("169.254" in value or "fd00:ec2" in value)
    ]
    if missing or left:
        raise BenchSetupError(f"upstream URLs not pointed at the fake: {missing + left}")


# What the children do ------------------------------------------------------------------


def peak_rss_kib() -> "int | None":
    """This process's own peak RSS (VmHWM), or None where /proc is missing.

    Not ``ru_maxrss``: on Linux a child's ``ru_maxrss`` starts from its parent's peak RSS
    when it is spawned (the high-water mark is carried over exec), so it reads the
    parent's size whenever the child is the smaller of the two.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def failures(which: str, module: "ModuleType") -> tuple[type[BaseException], ...]:
    """The errors a read may raise and the full read reports (anything else is a bug here).

    Upstream 3.x raises urllib3's HTTPError, 2.x requests' (an OSError); an attribute that a
    version lacks raises AttributeError.
    """
    if which == "ours":
        return (module.EC2MetadataError, AttributeError)
    found: list[type[BaseException]] = [AttributeError, LookupError, OSError, ValueError]
    urllib3 = sys.modules.get("urllib3")
    if urllib3 is not None:
        found.append(urllib3.exceptions.HTTPError)
    return tuple(found)


class _Reader:
    """Reads attributes, and items of mappings, giving back the value or the error."""

    def __init__(self, failures: tuple[type[BaseException], ...]) -> None:
        self.failures = failures

    def attribute(self, owner: object, name: str) -> object:
        try:
            return getattr(owner, name)
        except self.failures as error:
            return error

    def item(self, mapping: "Any", key: str) -> object:
        try:
            return mapping[key]
        except self.failures as error:
            return error

    def everything(self, client: object) -> dict[str, object]:
        """Every attribute, of each interface, each tag value and each key."""
        values = {name: self.attribute(client, name) for name in ATTRIBUTES}
        interfaces = values["network_interfaces"]
        if isinstance(interfaces, dict):
            for mac, interface in interfaces.items():
                for name in INTERFACE_ATTRIBUTES:
                    values[f"network_interfaces[{mac}].{name}"] = self.attribute(interface, name)
        tags: Any = values["tags"]
        if not isinstance(tags, BaseException):
            for name in list(tags):
                values[f"tags[{name}]"] = self.item(tags, name)
        keys = values["public_keys"]
        if isinstance(keys, dict):
            for name, key in keys.items():
                values[f"public_keys[{name}].openssh_key"] = self.attribute(key, "openssh_key")
        return values


def describe(value: object) -> str:
    """``ok``, ``empty`` (None, "", [] or {}) or the exception's type and message."""
    if isinstance(value, AttributeError):
        return f"missing ({value})"
    if isinstance(value, BaseException):
        return f"error: {type(value).__name__}: {value}"
    return "empty" if value is None or value in ("", b"", [], {}) else "ok"


def full_read(which: str, url: str, rounds: int) -> "dict[str, Any]":
    module = import_client(which)
    client = module.ec2_metadata
    point_at_fake(which, client, url)
    reader = _Reader(failures(which, module))
    walls: list[float] = []
    cpus: list[float] = []
    values: dict[str, object] = {}
    for _ in range(rounds):
        client.clear_all()
        wall, cpu = time.perf_counter(), time.process_time()
        values = reader.everything(client)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {
        "wall": walls,
        "cpu": cpus,
        "outcomes": {name: describe(value) for name, value in values.items()},
    }


def one_attribute(which: str, url: str) -> "tuple[str, int | None]":
    """``instance_id`` and the peak RSS of this process once it has read it."""
    client = import_client(which).ec2_metadata
    point_at_fake(which, client, url)
    instance_id: str = client.instance_id
    return instance_id, peak_rss_kib()


def guard_check() -> "dict[str, Any]":
    """Import socket through the guard and see it refuse an address that is not loopback.

    The address is tried on a socket that is already closed: were the guard missing, the
    real connect would fail with EBADF before anything reached the network.
    """
    import socket

    refused = False
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.close()
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1, on a closed socket
    except NonLoopbackConnection:
        refused = True
    except OSError:
        refused = False
    return {
        "active": guard_is_active(),
        "refuses_non_loopback": refused,
        "allows_loopback": is_loopback(socket.AF_INET, ("127.0.0.1", 80))
        and is_loopback(socket.AF_INET6, ("::1", 80, 0, 0)),
    }


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "nothing":
        return
    if mode == "import":
        import_client(args[0])
        return
    if mode == "one":
        # Plain text, not JSON: importing json would add to the process being measured.
        instance_id, rss = one_attribute(args[0], args[1])
        sys.stdout.write(f"{instance_id} {rss or 0} {int(guard_is_active())}\n")
        return
    import json

    if mode == "full":
        result = full_read(args[0], args[1], int(args[2]))
    elif mode == "guard-check":
        result = guard_check()
    else:
        raise BenchSetupError(f"unknown mode {mode!r}")
    result["guarded"] = guard_is_active()
    sys.stdout.write(json.dumps(result) + "\n")
