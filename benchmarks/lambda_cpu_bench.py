"""Fan-out at the CPU share a Lambda function of a given MemorySize gets (1,769 MB = one vCPU).

Each run is a fresh process that starts moto's DynamoDB server and the `@connections` stand-in
(`--latency-ms` per post) uncapped, seeds the room, and then moves itself into a Linux cgroup-v1
CPU quota of `100000 * MemorySize / 1769` us per 100000 us before timing:

- `--mode handler`: the real `chat_message` handler fanning out to the whole room itself;
- `--mode shard`: one fan-out shard (`ChatService.deliver_shard`, claims included) of that size,
  as FanoutFunction runs it for a room above FanoutShardSize.

Where the cgroup CPU controller is not writable (not Linux, not root, cgroup v2 only) it says so
and exits 0 without figures.

    .venv/bin/python benchmarks/lambda_cpu_bench.py --members 250 1000 --memory-mb 256 1024 --mode shard
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ConnectionsStandIn, time_chat_message  # sets the benchmark environment before parley is imported

CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
VCPU_MB = 1769


def cgroup_available() -> str | None:
    """None when a CPU quota can be set here, else why not."""
    if not (CPU_CGROUP / "cpu.cfs_quota_us").exists():
        return f"no cgroup-v1 CPU controller at {CPU_CGROUP}"
    probe = CPU_CGROUP / f"parley-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as error:
        return f"cannot create a cgroup under {CPU_CGROUP}: {error}"
    return None


class CpuQuota:
    """This process (all its threads) in a cgroup with MemorySize's share of one CPU."""

    def __init__(self, memory_mb: int) -> None:
        self.path = CPU_CGROUP / f"parley-bench-{os.getpid()}"
        self.quota_us = PERIOD_US * memory_mb // VCPU_MB

    def __enter__(self) -> "CpuQuota":
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc: object) -> None:
        (CPU_CGROUP / "cgroup.procs").write_text(str(os.getpid()))
        self.path.rmdir()


def run(members: int, memory_mb: int, latency_ms: float, mode: str) -> dict:
    import boto3

    from parley_testing.lambda_events import connection_id
    from parley_testing.moto_process import MotoServer
    from parley_testing.template import create_tables_from_template, load_template

    api = ConnectionsStandIn(latency_ms)
    moto = MotoServer().start()
    os.environ["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"] = api.url
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = moto.endpoint
    try:
        create_tables_from_template(boto3.client("dynamodb"), load_template())
        import parley.aws.lambda_routes as routes
        from parley.core.ids import new_ulid
        from parley.core.model import Member, ShardJob

        for n in range(members):
            routes._store.join_room(Member("bench", connection_id(n), f"user{n}", f"User {n}", n))
        recipients = tuple((connection_id(n), f"user{n}") for n in range(members))
        with CpuQuota(memory_mb):
            if mode == "handler":
                seconds, fanout_seconds, _ = time_chat_message("bench")
            else:
                job = ShardJob("bench", new_ulid(), 0, '{"type":"message_received","data":{}}', recipients)
                service = routes._service_for_endpoint(api.url)
                started = time.perf_counter()
                result = service.deliver_shard(job)
                seconds = fanout_seconds = time.perf_counter() - started
                assert len(result.delivered) == members, result
        posts = api.calls()
    finally:
        moto.stop()
        api.stop()
    return {"mode": mode, "members": members, "memory_mb": memory_mb, "latency_ms": latency_ms,
            "seconds": seconds, "fanout_seconds": fanout_seconds, "posts": posts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--memory-mb", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--mode", choices=["handler", "shard"], default="shard")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.environ.get("PARLEY_BENCH_CHILD"):
        print(json.dumps(run(args.members[0], args.memory_mb[0], args.latency_ms, args.mode)))
        return
    why_not = cgroup_available()
    if why_not:
        print(f"skipped: {why_not}; a Lambda CPU share cannot be imposed here")
        return
    rows = []
    print(f"{args.mode} fan-out under Lambda's CPU share, +{args.latency_ms:g} ms per post (moto and @connections uncapped)")
    for memory in args.memory_mb:
        for members in args.members:
            out = subprocess.run(
                [sys.executable, __file__, "--members", str(members), "--memory-mb", str(memory), "--latency-ms", str(args.latency_ms),
                 "--mode", args.mode],
                env={**os.environ, "PARLEY_BENCH_CHILD": "1"}, capture_output=True, text=True, timeout=900, check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {memory:5d} MB ({memory / VCPU_MB:.3f} vCPU) {members:6d} connections: fan-out {row['fanout_seconds']:.3f} s "
                  f"(whole {row['seconds']:.3f} s, {row['posts']} posts)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
