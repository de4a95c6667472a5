"""Benchmark ``imds watch``: a long watch against a loopback fake IMDS, and what it costs.

Run from the repository root, with any Python 3.9+ (standard library only)::

    python bench/watch.py                    # 10,000 polls, about a minute
    python bench/watch.py --polls 1000       # a shorter run

What is measured, in one run:

1. A watch (`ec2_metadata.watch`, the loop ``imds watch`` runs) in a child process, polling
   the fake every ``--interval`` seconds (1 ms by default, with the watch's 10% jitter) for
   ``--polls`` polls, with a token lifetime of ``--token-ttl`` seconds.  The fake counts the
   GET and PUT requests and the TCP connections; the child reports its RSS (``VmRSS``) and
   its open file descriptors after 100 polls and at a few later points, and the CPU time
   (``time.process_time``) of the polls after the first 100.
2. Baseline, in the same run: ``imds get instance-action`` as a process of its own, ``--runs``
   times; its CPU time (user + system, from ``getrusage(RUSAGE_CHILDREN)``), median.

It prints the connections, the token requests next to the number of token lifetimes the run
lasted, RSS and file descriptors after 100 polls against the end, and CPU per poll as a ratio
to the one-shot process.  The fake serves the tests' instance, which has a spot notice, a
rebalance recommendation and a scheduled event posted: each is reported at the first poll and
then seen again at every poll, and must not be reported again.

The fake is ``test_ec2_metadata.FakeIMDS`` on 127.0.0.1.  Nothing may go anywhere else: this
process imports ``test_ec2_metadata``, which guards its sockets, and every child process
imports ``bench_child`` before ``ec2_metadata``, which guards ``socket.socket.connect`` and
``connect_ex`` so that an address that is not loopback raises before the real connect; each
child reports that its guard was active.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CHECKPOINTS = (100, 1000, 5000)  # polls after which the child notes its RSS and descriptors
GUARDED = (
    f"import sys; sys.path.insert(0, {str(BENCH)!r}); import bench_child; "
    f"sys.path[0] = {str(REPO)!r}; "
)
ONE_SHOT = GUARDED + "import ec2_metadata; sys.exit(ec2_metadata.main(['get', 'instance-action']))"
KIB = 1024


# The child: the watch itself -------------------------------------------------------------


def resident_kib() -> int:
    """This process's resident set size now (``VmRSS``), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself opened


class PollCounter(threading.Event):
    """The watch's stop event: sleeps the pause asked for, notes figures, stops after N polls."""

    def __init__(self, polls: int) -> None:
        super().__init__()
        self.polls = polls
        self.done = 0
        self.notes: dict[int, dict[str, float]] = {}

    def note(self) -> None:
        self.notes[self.done] = {
            "rss_kib": resident_kib(),
            "fds": open_descriptors(),
            "cpu_s": time.process_time(),
            "wall_s": time.monotonic(),
        }

    def wait(self, timeout: float | None = None) -> bool:
        self.done += 1
        if self.done in CHECKPOINTS or self.done == self.polls:
            self.note()
        if self.done >= self.polls:
            return True
        time.sleep(timeout or 0.0)
        return False


def child(url: str, polls: int, interval: float, token_ttl: int) -> None:
    """Watch the fake at ``url`` for ``polls`` polls; print the figures as one JSON object."""
    sys.path.insert(0, str(BENCH))
    import bench_child  # the loopback guard, before ec2_metadata is imported

    sys.path[0] = str(REPO)
    import ec2_metadata

    client = ec2_metadata.EC2Metadata(endpoint=url, token_ttl=token_ttl)
    counter = PollCounter(polls)
    counter.note()  # poll 0: before the first
    events = [event.key for event in ec2_metadata.watch(interval, client=client, stop=counter)]
    result = {"events": events, "notes": counter.notes, "guarded": bench_child.guard_is_active()}
    print(json.dumps(result))


# The parent: the fake, the children, the figures -----------------------------------------


def one_shot_cpu(url: str, runs: int) -> list[float]:
    """CPU seconds (user + system) of each ``imds get instance-action`` process."""
    env = dict(os.environ, AWS_EC2_METADATA_SERVICE_ENDPOINT=url)
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-I", "-c", ONE_SHOT],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or done.stdout != "none\n":
            raise RuntimeError(f"imds get instance-action failed: {done.stderr or done.stdout}")
        times.append(
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
        )
    return times


def run_watch(url: str, polls: int, interval: float, token_ttl: int) -> dict[str, Any]:
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import watch; watch.main(sys.argv[1:])"
    args = ["child", url, str(polls), str(interval), str(token_ttl)]
    done = subprocess.run(
        [sys.executable, "-I", "-c", code, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the watch failed: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    if not result["guarded"]:
        raise RuntimeError("the watch ran without the loopback guard")
    result["notes"] = {int(polls): note for polls, note in result["notes"].items()}
    return result


def report(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from test_ec2_metadata import FakeIMDS  # also guards this process's sockets

    with FakeIMDS() as imds:
        one_shot = one_shot_cpu(imds.url, args.runs)
        with imds.lock:
            del imds.requests[:]
            imds.connections = 0
        result = run_watch(imds.url, args.polls, args.interval, args.token_ttl)
        gets, puts, connections = imds.count("GET"), imds.count("PUT"), imds.connections

    notes = result["notes"]
    first, end = notes[100], notes[args.polls]
    watched = end["wall_s"] - notes[0]["wall_s"]
    renew_every = args.token_ttl - min(60.0, args.token_ttl / 10)  # what the client does
    cpu_per_poll = (end["cpu_s"] - first["cpu_s"]) / (args.polls - 100)
    one_shot_median = statistics.median(one_shot)

    print(
        f"imds watch against a loopback fake IMDS: {args.polls} polls every {args.interval:g}s "
        f"(+-10% jitter), token lifetime {args.token_ttl}s; Python "
        f"{sys.version.split()[0]} on {os.uname().sysname} {os.uname().machine}, "
        f"{os.cpu_count()} CPUs"
    )
    print()
    print(f"events reported: {len(result['events'])} ({', '.join(result['events'])})")
    print(f"wall time: {watched:.1f}s ({watched / args.polls * 1000:.2f} ms a poll)")
    print(f"GET requests: {gets} ({gets / args.polls:.2f} a poll; at most 4)")
    print(f"TCP connections: {connections} (target: 1)")
    lifetimes = math.ceil(watched / renew_every)
    print(
        f"token requests: {puts}, for {watched:.1f}s of watching = {lifetimes} token lifetime(s) "
        f"of {args.token_ttl}s renewed {args.token_ttl - renew_every:g}s early "
        f"(target: one per lifetime)"
    )
    print()
    print(f"{'after polls':>12} {'RSS':>10} {'open fds':>9}")
    for polls in sorted(notes):
        note = notes[polls]
        print(f"{polls:>12} {note['rss_kib'] / KIB:>6.2f} MiB {note['fds']:>9}")
    print(
        f"growth after the first 100 polls: RSS {(end['rss_kib'] - first['rss_kib'])} KiB, "
        f"fds {end['fds'] - first['fds']} (target: none)"
    )
    print()
    print(
        f"CPU per poll (polls 100 to {args.polls}): {cpu_per_poll * 1e6:.0f} us; "
        f"one `imds get instance-action` process: {one_shot_median * 1000:.1f} ms CPU "
        f"(median of {args.runs}); ratio {cpu_per_poll / one_shot_median:.4f} "
        f"(1 process = {one_shot_median / cpu_per_poll:.0f} polls)"
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["child"]:
        url, polls, interval, token_ttl = argv[1:5]
        child(url, int(polls), float(interval), int(token_ttl))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--polls", type=int, default=10_000, help="polls to watch (>= 200)")
    parser.add_argument("--interval", type=float, default=0.001, help="seconds between polls")
    parser.add_argument("--token-ttl", type=int, default=10, help="token lifetime, seconds")
    parser.add_argument("--runs", type=int, default=20, help="one-shot processes to time")
    args = parser.parse_args(argv)
    if args.polls < 200:
        parser.error("--polls must be at least 200")
    report(args)


if __name__ == "__main__":
    main(sys.argv[1:])
