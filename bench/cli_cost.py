"""What the ``imds`` command costs per process, next to the API, on a loopback fake IMDS.

Run from the repository root with any Python 3.7+ (standard library only)::

    python3 bench/cli_cost.py            # 60 runs of each, about a minute
    python3 bench/cli_cost.py --runs 5   # a smoke run

Each run starts, in turn (the order rotates run by run), one process of each of these, all
reading ``instance_id`` from the tests' fake IMDS on 127.0.0.1:

- ``bare``: ``python3 -I -c pass``, the interpreter alone;
- ``api``: ``from ec2_metadata import ec2_metadata; print(ec2_metadata.instance_id)``;
- ``imds``: what the installed ``imds get instance-id`` runs: pip's console script imports
  ``re`` and ``sys``, then calls ``ec2_metadata.main()``;
- ``python3 -m``: ``python3 -m ec2_metadata get instance-id``;
- ``python3 file``: ``python3 ec2_metadata.py get instance-id``, the copied file, which Python
  compiles on every run (a script's bytecode is never cached).

It prints the median wall and CPU time (``os.wait4``) of each, and the median over the runs
of each one's difference from ``api`` within the same run.  Every client process first imports
``bench/bench_child.py``, whose guard refuses any connection that is not to loopback; to be
doubly sure, run it in a loopback-only network namespace::

    unshare -rn sh -c 'ip link set lo up; python3 bench/cli_cost.py'
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
GUARD = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import bench_child; del sys.path[0]; "
GUARD += f"bench_child.install_guard(); sys.path.insert(0, {str(REPO)!r}); "

KINDS = {
    "bare": ["-c", "pass"],
    "api": [
        "-c",
        GUARD + "from ec2_metadata import ec2_metadata; print(ec2_metadata.instance_id)",
    ],
    "imds": [
        "-c",
        GUARD + "import re; from ec2_metadata import main; sys.argv[0] = 'imds'; "
        "sys.exit(main(['get', 'instance-id']))",
    ],
    "python3 -m": [
        "-c",
        GUARD + "import runpy; sys.argv[1:] = ['get', 'instance-id']; "
        "runpy.run_module('ec2_metadata', run_name='__main__', alter_sys=True)",
    ],
    "python3 file": [
        "-c",
        GUARD + f"import runpy; sys.argv[:] = [{str(REPO / 'ec2_metadata.py')!r}, 'get', "
        f"'instance-id']; runpy.run_path(sys.argv[0], run_name='__main__')",
    ],
}


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float, bytes]:
    """Wall and CPU seconds of one child, and its output."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=str(REPO))
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.stdout.close()
    if status:
        raise RuntimeError(f"{command} failed with wait status {status}")
    return wall, usage.ru_utime + usage.ru_stime, output


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=60)
    runs = options.parse_args().runs
    sys.path.insert(0, str(REPO))
    from test_ec2_metadata import FakeIMDS  # its import guards this process's sockets too

    python = os.path.realpath(sys.executable)
    wall: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with FakeIMDS() as imds:
        env = {"PATH": os.environ.get("PATH", ""), "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url}
        kinds = list(KINDS)
        for run in range(-1, runs):  # run -1 warms the bytecode and page caches
            order = kinds[run % len(kinds) :] + kinds[: run % len(kinds)]
            for kind in order:
                seconds, cpu_seconds, output = run_once([python, "-I", *KINDS[kind]], env)
                if kind != "bare" and output != b"i-0123456789abcdef0\n":
                    raise RuntimeError(f"{kind} printed {output!r}")
                if run >= 0:
                    wall[kind].append(seconds)
                    cpu[kind].append(cpu_seconds)
    print(f"Python {sys.version.split()[0]}, {runs} runs; medians:")
    print("| process | wall | CPU | wall - api, same run | CPU - api, same run |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind in KINDS:
        extra_wall = statistics.median(a - b for a, b in zip(wall[kind], wall["api"]))
        extra_cpu = statistics.median(a - b for a, b in zip(cpu[kind], cpu["api"]))
        print(
            f"| {kind} | {statistics.median(wall[kind]) * 1000:.1f} ms "
            f"| {statistics.median(cpu[kind]) * 1000:.1f} ms "
            f"| {extra_wall * 1000:+.1f} ms | {extra_cpu * 1000:+.1f} ms |"
        )


if __name__ == "__main__":
    main()
