"""Benchmark our ec2_metadata.py against the ec2-metadata package, on a loopback fake IMDS.

Run from the repository root, with any Python 3.9+ (standard library only)::

    python bench/run.py                      # against ec2-metadata 3.0.0, a minute or two
    python bench/run.py --quick              # a smoke run of a few seconds
    python bench/run.py --upstream 2.14.0    # against 2.14.0 (requests) instead
    python bench/run.py --upstream 3.0.0 2.14.0

What is measured, for both clients side by side in one run:

1. Import cost: the cumulative microseconds that ``-X importtime`` gives the module, and the
   wall time of a process that only imports it, next to a bare ``python -I -c pass``.
2. A cold process that reads one attribute, ``instance_id`` (what ``imds get instance-id``
   does): its wall time, its CPU time (``os.wait4``) and its peak RSS (``VmHWM``, read by the
   process itself: on Linux a child's ``ru_maxrss`` starts from its spawner's peak RSS).
3. A full read of every attribute of the ec2-metadata README API, every network interface
   attribute, tag value and public key included, ROUNDS times with ``clear_all()`` between,
   inside a client process so that the fake's CPU is not counted: wall and CPU time
   (``time.process_time``) per read, and the requests and TCP connections the fake counted.

How: the upstream package is installed with pip into a throwaway venv under the user's cache
directory (``--cache-dir``), never into the environment running this script.  Both clients run
in that venv's interpreter, ``python -I -X pycache_prefix=...``, ours from this repository put
first on ``sys.path``, so site-packages differences cannot skew the comparison.  The clients
take turns run by run (ours first in even runs, upstream first in odd ones); each figure is the
median over the runs, and each ratio is the median of the ratios ours/upstream within a run.

The fake is the module's own ``ec2_metadata.FakeMetadataService`` on 127.0.0.1, serving its
instance with the example events.  Nothing may go anywhere else: this process and every
client process install ``bench_child``'s guard (the clients before any client module), which
guards ``socket.socket.connect`` and ``connect_ex`` so that an IPv4 or IPv6 address that is
not loopback raises before the real connect (see ``bench_child.py``).  Ours is pointed at
the fake with ``AWS_EC2_METADATA_SERVICE_ENDPOINT``; upstream, which hard-codes
``http://169.254.169.254/latest/``, has each of its URL attributes rewritten before its first
request.

Targets are printed with pass or miss next to each ratio; they are informational and the exit
status is 0 whatever they say.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ec2_metadata import FakeMetadataService

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TRAMPOLINE = (
    f"import sys; sys.path.insert(0, {str(BENCH)!r}); import bench_child; del sys.path[0]; "
    "bench_child.main(sys.argv[1:])"
)
DEFAULT_UPSTREAM = "3.0.0"
KIB = 1024  # bytes


@dataclass(frozen=True)
class Sizes:
    """How many times each thing is measured."""

    runs: int  # process runs per client for the import and cold one-attribute figures
    full_runs: int  # full-read processes per client
    rounds: int  # full reads per full-read process


DEFAULT_SIZES = Sizes(runs=80, full_runs=15, rounds=50)
QUICK_SIZES = Sizes(runs=3, full_runs=2, rounds=3)


# Interpreters and the throwaway venv ---------------------------------------------------


def interpreter(python: str) -> tuple[str, tuple[int, int]] | None:
    """The real executable behind ``python`` (not a shim) and its version, or None."""
    code = "import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)"
    done = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        return None
    major, minor, executable = done.stdout.strip().split(" ", 2)
    return executable, (int(major), int(minor))


def minimum_python(upstream: str) -> tuple[int, int]:
    """The oldest Python the upstream version installs on (3.x needs 3.10, 2.x 3.9)."""
    return (3, 10) if int(upstream.partition(".")[0]) >= 3 else (3, 9)


def choose_python(requested: str | None, upstreams: Sequence[str]) -> str:
    """The interpreter the venvs are made from: --python, else this one, else a newer one."""
    needed = max(minimum_python(version) for version in upstreams)
    if requested:
        found = interpreter(requested)
        if found is None or found[1] < needed:
            sys.exit(f"--python {requested} is not a Python {needed[0]}.{needed[1]}+")
        return found[0]
    if sys.version_info[:2] >= needed:
        return sys.executable
    for minor in range(20, needed[1] - 1, -1):
        on_path = shutil.which(f"python3.{minor}")
        found = interpreter(on_path) if on_path else None
        if found is not None and found[1] >= needed:
            return found[0]
    sys.exit(
        f"ec2-metadata {max(upstreams)} needs Python {needed[0]}.{needed[1]}+: "
        "run this with a newer Python or name one with --python"
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ec2_metadata-bench"


def upstream_venv(version: str, base_python: str, cache_dir: Path) -> Path:
    """The python of a venv holding ec2-metadata==version and nothing else; made on first use.

    setuptools, which ensurepip adds on older Pythons, is removed: its .pth file would run at
    the start of every process.
    """
    key = hashlib.sha256(os.path.realpath(base_python).encode()).hexdigest()[:10]
    home = cache_dir / f"venv-ec2-metadata-{version}-{key}"
    python = home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    ready = home / "bench-ready"
    if ready.exists() and python.exists():
        return python
    progress(f"installing ec2-metadata=={version} into {home} ...")
    subprocess.run(
        [base_python, "-I", "-m", "venv", "--clear", str(home)], check=True, capture_output=True
    )
    pip = [str(python), "-I", "-m", "pip", "--disable-pip-version-check", "-q"]
    install = [*pip, "install", f"ec2-metadata=={version}"]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(install)} failed:\n{done.stdout}{done.stderr}")
    subprocess.run([*pip, "uninstall", "-y", "setuptools"], capture_output=True, check=False)
    ready.write_text(version + "\n")
    return python


VENV_REPORT = """
import glob, json, platform, sysconfig
from importlib import metadata
purelib = sysconfig.get_paths()["purelib"]
print(json.dumps({
    "implementation": platform.python_implementation(),
    "version": platform.python_version(),
    "pth_files": sorted(glob.glob(purelib + "/*.pth")),
    "distributions": sorted(
        f"{d.metadata['Name']} {d.version}" for d in metadata.distributions()
        if d.metadata["Name"] != "pip"
    ),
}))
"""


def venv_report(python: Path) -> dict[str, Any]:
    """The venv's interpreter, .pth files and installed distributions (pip left out)."""
    done = subprocess.run(
        [str(python), "-I", "-c", VENV_REPORT], check=True, capture_output=True, text=True
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


# Child processes -----------------------------------------------------------------------


class Child(NamedTuple):
    wall: float  # seconds, from spawning to reaping
    cpu: float  # seconds of user + system time, from wait4
    maxrss_kib: float  # ru_maxrss from wait4, in KiB
    stdout: str
    stderr: str


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spawn(command: list[str], env: dict[str, str], cwd: Path) -> Child:
    """Run one child; its rusage comes from os.wait4 on its own pid."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
            cwd=cwd,
        )
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if process.returncode:
        raise RuntimeError(f"{command[-3:]} exited {process.returncode}:\n{stderr}")
    maxrss = usage.ru_maxrss / (KIB if sys.platform == "darwin" else 1)  # bytes there
    return Child(wall, usage.ru_utime + usage.ru_stime, maxrss, output.decode(), stderr)


def importtime_us(stderr: str, module: str = "ec2_metadata") -> int:
    """The cumulative microseconds of the top-level import of ``module`` in -X importtime.

    Its lines read ``import time: SELF | CUMULATIVE | NAME``, NAME indented by nesting.
    """
    for line in stderr.splitlines():
        fields = line.split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[2] == f" {module}":
            return int(fields[1])
    raise RuntimeError(f"no top-level import of {module} in:\n{stderr[-2000:]}")


@dataclass
class Bench:
    """Runs the children of one pair (ours, upstream) against one fake IMDS."""

    python: Path
    imds: FakeMetadataService
    workdir: Path
    sizes: Sizes
    parent_peak_kib: float = 0.0
    samples: dict[str, list[float]] = field(default_factory=dict)
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        # No proxy, no AWS_* setting but the endpoint; -I makes Python ignore PYTHON*.
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds.url,
        }

    def command(self, *args: str, importtime: bool = False) -> list[str]:
        options = ["-X", f"pycache_prefix={self.workdir / 'pycache'}"]
        if importtime:
            options += ["-X", "importtime"]
        return [str(self.python), "-I", *options, "-c", TRAMPOLINE, *args]

    def child(self, *args: str, importtime: bool = False) -> tuple[Child, int, int]:
        """Run a child; also the requests and TCP connections the fake counted for it."""
        with self.imds.lock:
            self.imds.request_count = 0
            self.imds.connections = 0
        done = spawn(self.command(*args, importtime=importtime), self.env, self.workdir)
        with self.imds.lock:
            return done, self.imds.request_count, self.imds.connections

    def record(self, name: str, value: float) -> None:
        self.samples.setdefault(name, []).append(value)

    def check_guard(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.child("guard-check")[0].stdout)
        if not (report["active"] and report["refuses_non_loopback"] and report["guarded"]):
            raise RuntimeError(f"the loopback guard does not work in the children: {report}")
        return report

    def warm_up(self) -> None:
        """Fill the pycache and the page cache; nothing is recorded."""
        self.child("nothing")
        for client in ("ours", "upstream"):
            self.child("import", client)
            self.child("one", client, self.imds.url)
            self.child("full", client, self.imds.url, "1")

    def process_runs(self, run: int) -> None:
        """One run of the process-level figures: bare, guard only, import, cold read."""
        self.record("bare", spawn(self.bare_command(), self.env, self.workdir).wall)
        self.record("nothing", self.child("nothing")[0].wall)
        for client in clients_in_turn(run):
            self.record(f"import_wall.{client}", self.child("import", client)[0].wall)
            traced = self.child("import", client, importtime=True)[0]
            self.record(f"importtime.{client}", importtime_us(traced.stderr) / 1e6)
            self.cold_read(client)

    def bare_command(self) -> list[str]:
        return [str(self.python), "-I", "-c", "pass"]

    def cold_read(self, client: str) -> None:
        done, requests, connections = self.child("one", client, self.imds.url)
        instance_id, vm_hwm, guarded = done.stdout.split()
        metadata: Any = self.imds.tree["meta-data"]
        if instance_id != metadata["instance-id"] or guarded != "1":
            raise RuntimeError(f"cold read by {client} gave {done.stdout!r}")
        self.parent_peak_kib = max(self.parent_peak_kib, own_peak_kib())
        self.record(f"cold_wall.{client}", done.wall)
        self.record(f"cold_cpu.{client}", done.cpu)
        self.record(f"cold_rss.{client}", (float(vm_hwm) or done.maxrss_kib) * KIB)
        self.record(f"cold_wait4_rss.{client}", done.maxrss_kib * KIB)
        self.record(f"cold_requests.{client}", requests)
        self.record(f"cold_connections.{client}", connections)

    def full_read(self, client: str) -> None:
        rounds = self.sizes.rounds
        done, requests, connections = self.child("full", client, self.imds.url, str(rounds))
        result = json.loads(done.stdout)
        if not result["guarded"]:
            raise RuntimeError(f"the full read by {client} ran unguarded")
        self.outcomes.setdefault(client, result["outcomes"])
        self.record(f"full_wall.{client}", statistics.median(result["wall"]))
        self.record(f"full_cpu.{client}", statistics.median(result["cpu"]))
        self.record(f"full_first_wall.{client}", result["wall"][0])
        self.record(f"full_requests.{client}", requests / rounds)
        self.record(f"full_connections.{client}", connections)

    def measure(self) -> None:
        self.warm_up()
        for run in range(self.sizes.runs):
            self.process_runs(run)
        for run in range(self.sizes.full_runs):
            for client in clients_in_turn(run):
                self.full_read(client)


def clients_in_turn(run: int) -> tuple[str, str]:
    return ("ours", "upstream") if run % 2 == 0 else ("upstream", "ours")


def own_peak_kib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (KIB if sys.platform == "darwin" else 1)


# The report ----------------------------------------------------------------------------


class Row(NamedTuple):
    label: str
    ours: str
    upstream: str
    ratio: str
    spread: str  # the range of the per-run ratios
    target: str
    verdict: str  # "pass", "miss" or ""


def milliseconds(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def mebibytes(size: float) -> str:
    return f"{size / KIB / KIB:.1f} MiB"


def count(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def verdict(passed: bool) -> str:
    return "pass" if passed else "miss"


@dataclass
class Report:
    samples: dict[str, list[float]]
    rows: list[Row] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratios(self, numerator: str, denominator: str) -> list[float]:
        """Per-run ratios: run i of ``numerator`` over run i of ``denominator``."""
        pairs = zip(self.samples[numerator], self.samples[denominator])
        return [top / bottom for top, bottom in pairs if bottom]

    def compare(
        self,
        label: str,
        name: str,
        show: Callable[[float], str],
        target: float | None = None,
        *,
        goal: tuple[str, bool] | None = None,
    ) -> None:
        """A row ours vs upstream with the median per-run ratio, and a target for that ratio
        or some other ``goal`` (its text, and whether it is met)."""
        ratios = self.ratios(f"{name}.ours", f"{name}.upstream")
        ratio = statistics.median(ratios)
        if target is not None:
            goal = (f"<= {target:g}x", ratio <= target)
        self.rows.append(
            Row(
                label,
                show(self.median(f"{name}.ours")),
                show(self.median(f"{name}.upstream")),
                f"{ratio:.2f}x",
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                goal[0] if goal else "",
                verdict(goal[1]) if goal else "",
            )
        )

    def build(self, rounds: int) -> list[Row]:
        ours_vs_bare = statistics.median(self.ratios("import_wall.ours", "bare"))
        upstream_vs_bare = statistics.median(self.ratios("import_wall.upstream", "bare"))
        requests = (self.median("full_requests.ours"), self.median("full_requests.upstream"))
        connections = self.median("full_connections.ours")
        self.compare("import: -X importtime, cumulative", "importtime", milliseconds)
        self.compare("import-only process, wall", "import_wall", milliseconds)
        bare, nothing = milliseconds(self.median("bare")), milliseconds(self.median("nothing"))
        self.rows += [
            Row("bare `python -I -c pass`, wall", bare, bare, "", "", "", ""),
            Row("interpreter + guard, no client, wall", nothing, nothing, "", "", "", ""),
            Row(
                "import-only process / bare interpreter",
                f"{ours_vs_bare:.2f}x",
                f"{upstream_vs_bare:.2f}x",
                "",
                "",
                "ours <= 1.6x",
                verdict(ours_vs_bare <= 1.6),
            ),
        ]
        self.compare("cold one-attribute process, wall", "cold_wall", milliseconds, 0.55)
        self.compare("cold one-attribute process, CPU", "cold_cpu", milliseconds)
        self.compare("cold one-attribute process, peak RSS", "cold_rss", mebibytes, 0.8)
        self.compare("cold one-attribute: requests", "cold_requests", count)
        self.compare("cold one-attribute: TCP connections", "cold_connections", count)
        self.compare("full read: wall per read", "full_wall", milliseconds, 0.6)
        self.compare("full read: client CPU per read", "full_cpu", milliseconds, 0.5)
        self.compare("full read: first read, wall", "full_first_wall", milliseconds)
        self.compare(
            "full read: requests per read",
            "full_requests",
            count,
            goal=("<= upstream", requests[0] <= requests[1]),
        )
        self.compare(
            f"full read: TCP connections per process ({rounds} reads)",
            "full_connections",
            count,
            goal=("ours = 1", connections == 1),
        )
        return self.rows


def text_table(rows: Sequence[Row], upstream: str) -> str:
    header = Row("", "ours", f"ec2-metadata {upstream}", "ours/up", "run range", "target", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:])
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row], upstream: str) -> str:
    lines = [
        f"| | ours | ec2-metadata {upstream} | ours / upstream | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        target = f"{row.target} ({row.verdict})" if row.target else ""
        lines.append(f"| {row.label} | {row.ours} | {row.upstream} | {row.ratio} | {target} |")
    return "\n".join(lines)


def outcome_notes(outcomes: dict[str, dict[str, str]], upstream: str) -> Iterator[str]:
    """The attributes whose full-read outcome differs between the two clients."""
    ours, theirs = outcomes.get("ours", {}), outcomes.get("upstream", {})
    for name in sorted(set(ours) | set(theirs)):
        mine, other = ours.get(name, "not read"), theirs.get(name, "not read")
        if mine != other:
            yield f"{name}: ours {mine}; {upstream} {other}"


# Main ----------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ec2_metadata.py against ec2-metadata on a loopback fake IMDS."
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument(
        "--upstream",
        nargs="+",
        default=[DEFAULT_UPSTREAM],
        metavar="VERSION",
        help=f"ec2-metadata version(s) to compare with (default {DEFAULT_UPSTREAM}; "
        "2.14.0 is the last one on requests)",
    )
    parser.add_argument("--python", help="the interpreter to make the venvs from")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="where the venvs are kept (default %(default)s)",
    )
    parser.add_argument("--runs", type=int, help="process runs per client (import, cold read)")
    parser.add_argument("--full-runs", type=int, help="full-read processes per client")
    parser.add_argument("--rounds", type=int, help="full reads per full-read process")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print only the Markdown tables (they end the normal output too)",
    )
    return parser.parse_args(argv)


def sizes_from(arguments: argparse.Namespace) -> Sizes:
    base = QUICK_SIZES if arguments.quick else DEFAULT_SIZES
    return Sizes(
        runs=arguments.runs or base.runs,
        full_runs=arguments.full_runs or base.full_runs,
        rounds=arguments.rounds or base.rounds,
    )


@dataclass
class Section:
    upstream: str
    python: Path
    environment: dict[str, Any]
    guard: dict[str, Any]
    rows: list[Row]
    differences: list[str]  # attributes the two clients read differently
    remarks: list[str]  # about the measurement itself


def measure_against(
    upstream: str, base_python: str, cache_dir: Path, sizes: Sizes, workdir: Path
) -> Section:
    import bench_child

    bench_child.install_guard()  # this process's sockets too: loopback only
    from ec2_metadata import FakeMetadataService

    python = upstream_venv(upstream, base_python, cache_dir)
    environment = venv_report(python)
    progress(f"measuring ours vs ec2-metadata {upstream} with {python} ...")
    with FakeMetadataService() as imds:
        imds.tree = FakeMetadataService.default_tree(with_events=True)
        bench = Bench(python, imds, workdir, sizes)
        guard = bench.check_guard()
        bench.measure()
    differences = list(outcome_notes(bench.outcomes, upstream))
    remarks = []
    wait4_rss = bench.samples["cold_wait4_rss.ours"] + bench.samples["cold_wait4_rss.upstream"]
    if min(wait4_rss) >= bench.parent_peak_kib * KIB * 0.99:
        remarks.append(
            f"wait4 gave every cold child a peak RSS >= {mebibytes(min(wait4_rss))}, this "
            f"process's own peak ({mebibytes(bench.parent_peak_kib * KIB)}): the spawner's "
            "high-water mark carries over exec, so the table uses each child's own VmHWM"
        )
    rows = Report(bench.samples).build(sizes.rounds)
    return Section(upstream, python, environment, guard, rows, differences, remarks)


def fingerprint(path: Path) -> str:
    """The version and a short hash of our module, which may be edited between runs."""
    text = path.read_bytes()
    version = next(
        (
            line.split(b'"')[1].decode()
            for line in text.splitlines()
            if line.startswith(b"__version__")
        ),
        "?",
    )
    return f"{path} (__version__ {version}, sha256 {hashlib.sha256(text).hexdigest()[:12]})"


def header_lines(base_python: str, sizes: Sizes, ours: str) -> list[str]:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return [
        f"date:     {now.isoformat()}",
        f"ours:     {ours}",
        f"platform: {platform.platform()}, machine {platform.machine()}, {os.cpu_count()} CPUs",
        (
            f"bench:    python bench/run.py under Python {platform.python_version()} "
            f"({sys.executable}); venvs made from {base_python}"
        ),
        (
            f"sizes:    {sizes.runs} process runs per client (import, cold read); "
            f"{sizes.full_runs} full-read processes per client x {sizes.rounds} reads each"
        ),
    ]


def section_lines(section: Section) -> list[str]:
    env = section.environment
    installed = ", ".join(env["distributions"])
    command = f"{section.python} -I -X pycache_prefix=<cache> -c <import bench_child> MODE"
    return [
        "",
        f"== ours vs ec2-metadata {section.upstream} ==",
        f"interpreter: {env['implementation']} {env['version']}, {section.python}",
        f"  site-packages: {installed}; .pth files: {env['pth_files'] or 'none'}",
        (
            f"ours:     {command} ours   (repo first on sys.path; endpoint from "
            "AWS_EC2_METADATA_SERVICE_ENDPOINT)"
        ),
        (
            f"upstream: {command} upstream   (from site-packages; its URL attributes rewritten "
            "to the fake before any request)"
        ),
        (
            f"guard:    bench_child guards socket.socket.connect/connect_ex before any client "
            f"import; guard-check: refuses non-loopback = {section.guard['refuses_non_loopback']}, "
            f"allows loopback = {section.guard['allows_loopback']}; every child reported guarded"
        ),
        "medians; 'run range' is the range of the per-run ratios; targets are informational",
        "",
        text_table(section.rows, section.upstream),
        *(["", "full-read outcomes that differ:"] if section.differences else []),
        *(f"  - {note}" for note in section.differences),
        *(["", "about the measurement:"] if section.remarks else []),
        *(f"  - {remark}" for remark in section.remarks),
    ]


def markdown_lines(section: Section, sizes: Sizes) -> list[str]:
    env = section.environment
    command = " ".join(["python bench/run.py", *sys.argv[1:]])
    return [
        "",
        (
            f"{env['implementation']} {env['version']}, {platform.system()} {platform.machine()}, "
            f"{datetime.date.today().isoformat()}; `{command}`, medians of "
            f"{sizes.runs} processes (import, cold read) and {sizes.full_runs} x {sizes.rounds} "
            "full reads per client, against a loopback fake IMDS; targets are informational."
        ),
        "",
        markdown_table(section.rows, section.upstream),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    sys.dont_write_bytecode = True  # importing ec2_metadata must not write to the repo
    sys.path.insert(0, str(REPO))
    sizes = sizes_from(arguments)
    base_python = choose_python(arguments.python, arguments.upstream)
    arguments.cache_dir.mkdir(parents=True, exist_ok=True)
    ours = fingerprint(REPO / "ec2_metadata.py")
    with tempfile.TemporaryDirectory(prefix="ec2_metadata-bench-") as scratch:
        sections = [
            measure_against(version, base_python, arguments.cache_dir, sizes, Path(scratch))
            for version in arguments.upstream
        ]
    output: list[str] = []
    if not arguments.markdown:
        output += header_lines(base_python, sizes, ours)
        if fingerprint(REPO / "ec2_metadata.py") != ours:
            output.append("WARNING:  ec2_metadata.py changed during the run")
        for section in sections:
            output += section_lines(section)
        output += ["", "Markdown:"]
    for section in sections:
        output += markdown_lines(section, sizes)
    print("\n".join(output))


if __name__ == "__main__":
    main()
