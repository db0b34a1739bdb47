"""pgqueuer under the load berth-bench puts on Berth in its `noop` scenario.

berth-bench's `peer` scenario runs this file with the interpreter of a private venv that
has pgqueuer installed (pinned in scripts/requirements/pgqueuer.txt), once per phase,
and parses the one JSON line it prints on stdout. Progress and errors go to stderr.

Phases (`--phase`):

- `install`: create pgqueuer's tables in the database, with its default (durable,
  logged) tables.
- `peak`: closed-loop submitters for `--seconds`, each enqueueing one job per call and
  waiting for the answer before the next, while the workers run.
- `paced`: the same submitters paced to `--rate` jobs per second in total.
- `drain`: `--jobs` jobs queued first in batches with no worker running, then the
  workers start and empty the queue.

Throughput is jobs divided by the time from the first submission (for `drain`: from the
workers' start) until the queue table is empty, which is when pgqueuer has recorded
every job as done. Latency is the time from an enqueue call returning to the handler
starting, per job.

Python runs one core's worth per process, so the submitters are spread over
`--producers` processes and the slots over `--workers` processes with `--concurrency`
slots each. Times are CLOCK_MONOTONIC, which all processes on the machine share, so a
timestamp taken in a producer and one taken in a worker can be subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import sys
import time

# The one entrypoint: a handler that does nothing.
ENTRYPOINT = "bench_noop"
# Jobs per INSERT when filling the queue for `drain`.
FILL_BATCH = 1000
# How often the parent looks whether the queue is empty.
POLL_SECONDS = 0.05
# A phase fails when the queue has not shrunk for this long.
STALL_SECONDS = 30.0


def log(message: str) -> None:
    print(f"pgqueuer_bench: {message}", file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest rank, as berth-bench's own figures are computed."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def connect(dsn: str):
    import asyncpg

    return await asyncpg.connect(dsn)


# ---------------------------------------------------------------------------------------
# Worker processes


def worker_main(dsn, concurrency, batch, go, stop, events) -> None:
    try:
        asyncio.run(worker(dsn, concurrency, batch, go, stop, events))
    except BaseException as e:  # reported to the parent, which fails the phase
        events.put(("error", f"worker: {e!r}"))
        raise


async def worker(dsn, concurrency, batch, go, stop, events) -> None:
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.models import Job

    conn = await connect(dsn)
    pgq = PgQueuer(AsyncpgDriver(conn))
    started: list[tuple[int, float]] = []

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        started.append((int(job.id), time.monotonic()))

    loop = asyncio.get_running_loop()
    events.put(("ready", None))
    await loop.run_in_executor(None, go.wait)

    async def watch_stop() -> None:
        await loop.run_in_executor(None, stop.wait)
        pgq.shutdown.set()

    watcher = asyncio.create_task(watch_stop())
    await pgq.run(batch_size=batch, max_concurrent_tasks=concurrency)
    await watcher
    await conn.close()
    events.put(("started", started))


# ---------------------------------------------------------------------------------------
# Producer processes


def producer_main(dsn, first, submitters, total, seconds, rate, go, events) -> None:
    try:
        asyncio.run(producer(dsn, first, submitters, total, seconds, rate, go, events))
    except BaseException as e:
        events.put(("error", f"producer: {e!r}"))
        raise


async def producer(dsn, first, submitters, total, seconds, rate, go, events) -> None:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conns = [await connect(dsn) for _ in range(submitters)]
    loop = asyncio.get_running_loop()
    events.put(("ready", None))
    await loop.run_in_executor(None, go.wait)
    start = time.monotonic()
    deadline = start + seconds

    async def submit_loop(index: int, queries: Queries) -> list[tuple[int, float]]:
        out: list[tuple[int, float]] = []
        period = total / rate if rate else 0.0
        # Staggered, so that the paced submitters interleave evenly.
        due = start + period * index / total
        while True:
            if rate:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # Behind schedule: carry on from now rather than catching up in a burst.
                due = max(due + period, time.monotonic())
            if time.monotonic() >= deadline:
                return out
            ids = await queries.enqueue(ENTRYPOINT, None)
            out.append((int(ids[0]), time.monotonic()))

    results = await asyncio.gather(
        *(
            submit_loop(first + i, Queries(AsyncpgDriver(conn)))
            for i, conn in enumerate(conns)
        )
    )
    for conn in conns:
        await conn.close()
    events.put(("submitted", [pair for result in results for pair in result]))


# ---------------------------------------------------------------------------------------
# The parent


class Phase:
    """The child processes of one phase and what they reported."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ctx = ctx
        self.events = ctx.Queue()
        self.processes: list = []
        self.submitted: list[tuple[int, float]] = []
        self.started: list[tuple[int, float]] = []

    def spawn(self, target, *args) -> None:
        process = self.ctx.Process(target=target, args=(*args, self.events), daemon=True)
        process.start()
        self.processes.append(process)

    def wait_for(self, kind: str, count: int) -> None:
        """Reads events until `count` of `kind` arrived; keeps the others it reads."""
        seen = 0
        while seen < count:
            try:
                event, value = self.events.get(timeout=120)
            except Exception as e:
                raise RuntimeError(f"no {kind!r} from a child process within 120 s") from e
            if event == "error":
                raise RuntimeError(value)
            if event == "submitted":
                self.submitted.extend(value)
            elif event == "started":
                self.started.extend(value)
            if event == kind:
                seen += 1

    def join(self) -> None:
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


async def queue_length(conn) -> int:
    return await conn.fetchval("SELECT count(*) FROM pgqueuer")


async def wait_empty(conn) -> tuple[float, int]:
    """Polls until the queue table is empty; returns when, and how many polls it took."""
    polls = 0
    last = None
    last_change = time.monotonic()
    while True:
        polls += 1
        remaining = await queue_length(conn)
        if remaining == 0:
            return time.monotonic(), polls
        if remaining != last:
            last, last_change = remaining, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise RuntimeError(f"{remaining} jobs left; none done for {STALL_SECONDS:.0f} s")
        await asyncio.sleep(POLL_SECONDS)


async def install(args) -> dict:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await connect(args.dsn)
    queries = Queries(AsyncpgDriver(conn))
    if not await queries.schema_is_installed():
        await queries.install()
    await conn.close()
    import pgqueuer

    return {"phase": "install", "pgqueuer_version": pgqueuer.__version__}


async def fill(dsn: str, jobs: int) -> float:
    """Queues `jobs` jobs in batches of FILL_BATCH; returns how long that took."""
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await connect(dsn)
    queries = Queries(AsyncpgDriver(conn))
    start = time.monotonic()
    left = jobs
    while left > 0:
        n = min(left, FILL_BATCH)
        await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
        left -= n
    elapsed = time.monotonic() - start
    await conn.close()
    return elapsed


async def run_phase(args) -> dict:
    phase = Phase()
    worker_go = phase.ctx.Event()
    producer_go = phase.ctx.Event()
    stop = phase.ctx.Event()
    fill_seconds = None
    if args.phase == "drain":
        log(f"queueing {args.jobs} jobs")
        fill_seconds = await fill(args.dsn, args.jobs)
    for _ in range(args.workers):
        phase.spawn(worker_main, args.dsn, args.concurrency, args.batch, worker_go, stop)
    phase.wait_for("ready", args.workers)
    poller = await connect(args.dsn)
    try:
        if args.phase == "drain":
            start = time.monotonic()
            worker_go.set()
            jobs = args.jobs
        else:
            worker_go.set()
            per = [args.submitters // args.producers] * args.producers
            for i in range(args.submitters % args.producers):
                per[i] += 1
            first = 0
            for count in per:
                phase.spawn(
                    producer_main,
                    args.dsn,
                    first,
                    count,
                    args.submitters,
                    args.seconds,
                    args.rate if args.phase == "paced" else None,
                    producer_go,
                )
                first += count
            phase.wait_for("ready", args.producers)
            start = time.monotonic()
            producer_go.set()
            phase.wait_for("submitted", args.producers)
            jobs = len(phase.submitted)
        submit_end = time.monotonic()
        done_at, polls = await wait_empty(poller)
    finally:
        stop.set()
        await poller.close()
    phase.wait_for("started", args.workers)
    phase.join()

    elapsed = done_at - start
    result = {
        "phase": args.phase,
        "jobs": jobs,
        "elapsed_seconds": elapsed,
        "throughput_per_second": jobs / elapsed if elapsed > 0 else float("nan"),
        # The parent's own polls of the queue table, to subtract from the counts.
        "own_statements": polls,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "batch": args.batch,
    }
    if fill_seconds is not None:
        result["fill_seconds"] = fill_seconds
    else:
        enqueued = dict(phase.submitted)
        latencies = []
        for job_id, started_at in phase.started:
            at = enqueued.pop(job_id, None)
            if at is not None:
                # A job can start before its enqueue call has returned: zero, not negative.
                latencies.append(max(0.0, started_at - at) * 1e3)
        latencies.sort()
        result.update(
            {
                "submitters": args.submitters,
                "producers": args.producers,
                "submit_seconds": submit_end - start,
                "latency_ms": {
                    "p50": percentile(latencies, 50.0),
                    "p99": percentile(latencies, 99.0),
                    "max": latencies[-1] if latencies else float("nan"),
                    "missing": len(enqueued),
                },
            }
        )
        if args.phase == "paced":
            result["target_rate_per_second"] = args.rate
            result["achieved_rate_per_second"] = jobs / (submit_end - start)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--phase", choices=["install", "peak", "paced", "drain"], required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--submitters", type=int, default=16)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    if args.phase == "paced" and args.rate <= 0:
        parser.error("--phase paced needs --rate")
    if args.phase == "install":
        result = asyncio.run(install(args))
    else:
        result = asyncio.run(run_phase(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
