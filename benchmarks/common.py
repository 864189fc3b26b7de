"""Helpers shared by the benchmarks: environment, moto's DynamoDB server, the `@connections`
stand-in, a Lambda context, and a recorder that turns every DynamoDB call into capacity units
computed from item sizes by DynamoDB's published rules.

Importing this module sets the environment the handlers read at import, so import it before
anything from `parley`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from parley_testing.functions import LambdaContext, import_the_layer
from parley_testing.template import ROOT

import_the_layer()  # the benchmarks run handlers in this process, as Lambda runs them with /opt/python

TABLE_ENV = dict(
    MEMBERSHIPS_TABLE="test-MembershipsTable", MESSAGES_TABLE="test-MessagesTable", IDEMPOTENCY_TABLE="test-IdempotencyTable",
)
os.environ.update(
    AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR", POWERTOOLS_METRICS_DISABLED="true",
    **TABLE_ENV,
)

# Prices from /work/shared/AWS_WEBSOCKET_REFERENCE.md (us-east-1, late 2026).
PRICE_APIGW_MESSAGE = 1.00 / 1e6
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_LAMBDA_ARM_GB_S = 0.0000133334
PRICE_WRU = 0.625 / 1e6
PRICE_RRU = 0.125 / 1e6


Context = partial(LambdaContext, function_name="bench", aws_request_id="bench")


# ------------------------------------------------------------------ Lambda's CPU share and price
CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
# Lambda's throttling interval: AWS does not publish it. A third-party measurement
# (github.com/pwrdrvr/lambda-throttling, README "Throttle Interval Awareness") found Lambda throttles
# CPU in 20 ms intervals, so that is the default here. It matters for short handlers: one that needs
# less CPU than its period's quota (at 512 MB, 28.9 ms of every 100 ms) runs at full speed, so a
# 100 ms period prices a ~20 ms-of-CPU handler as if it were uncapped. PARLEY_CFS_PERIOD_MS=100 runs
# the older, more generous model for comparison (docs/benchmarks.md shows both).
CFS_PERIOD_US = int(float(os.environ.get("PARLEY_CFS_PERIOD_MS", "20")) * 1000)
MAX_CPU_SHARES = 262_144
VCPU_MB = 1769  # Lambda: 1,769 MB of MemorySize buys one vCPU, and CPU scales linearly with memory


def vcpu_share(memory_mb: int) -> float:
    return memory_mb / VCPU_MB


def memory_size(function_id: str) -> int:
    """A function's MemorySize in template.yaml (its own, else the Globals one)."""
    from parley_testing.template import load_template

    template = load_template()
    own = template["Resources"][function_id]["Properties"].get("MemorySize")
    return int(own if own is not None else template["Globals"]["Function"]["MemorySize"])


def lambda_usd(memory_mb: int, seconds: float) -> float:
    """One arm64 invocation's price: the request, plus GB-s with the duration billed per started ms."""
    billed = math.ceil(seconds * 1000) / 1000
    return PRICE_LAMBDA_REQUEST + memory_mb / 1024 * billed * PRICE_LAMBDA_ARM_GB_S


def cgroup_unavailable() -> str | None:
    """None when a Lambda CPU share can be imposed here (a writable cgroup-v1 CPU controller), else why not."""
    if not (CPU_CGROUP / "cpu.cfs_quota_us").exists():
        return f"no cgroup-v1 CPU controller at {CPU_CGROUP}"
    probe = CPU_CGROUP / f"parley-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as error:
        return f"cannot create a cgroup under {CPU_CGROUP}: {error}"
    return None


class CpuGroup:
    """A cgroup-v1 CPU group holding this process (all its threads, and the processes it starts
    afterwards until they move): with `memory_mb`, capped at that MemorySize's share of one CPU,
    a CFS quota of `CFS_PERIOD_US * MemorySize / 1769` us per `CFS_PERIOD_US` (20 ms unless
    PARLEY_CFS_PERIOD_MS says otherwise), as Lambda allots it; without,
    uncapped. Either way it gets the largest CPU weight, so that on a machine busy with other
    work (other engineers' tests share these 2 cores) the group gets its share when it needs it:
    the weight only matters under contention, the quota is the cap.

    On exit every process still in the group (this one included) is moved back to the root
    group and the group is removed."""

    def __init__(self, memory_mb: int | None = None, role: str = "bench") -> None:
        self.memory_mb = memory_mb
        self.path = CPU_CGROUP / f"parley-{role}-{os.getpid()}"
        self.quota_us = CFS_PERIOD_US * memory_mb // VCPU_MB if memory_mb else -1

    def __enter__(self) -> "CpuGroup":
        self.path.mkdir()
        try:
            (self.path / "cpu.shares").write_text(str(MAX_CPU_SHARES))
            (self.path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
            (self.path / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            self.path.rmdir()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (CPU_CGROUP / "cgroup.procs").write_text(pid)
            except ProcessLookupError:  # exited meanwhile
                pass
        self.path.rmdir()


def CpuQuota(memory_mb: int) -> CpuGroup:  # noqa: N802  (reads as the context it is)
    """This process at MemorySize's CPU share (see CpuGroup); the services it calls stay outside."""
    return CpuGroup(memory_mb, role="lambda")


def ServicesGroup() -> contextlib.AbstractContextManager[Any]:  # noqa: N802
    """Uncapped, with the largest weight: for the process that starts DynamoDB Local and the
    stand-ins (which inherit the group), so AWS's side is not starved by other work here.
    Nothing where no cgroup can be made."""
    return contextlib.nullcontext() if cgroup_unavailable() else CpuGroup(None, role="services")


def time_chat_message(room: str = "bench") -> tuple[float, float, dict[str, Any]]:
    """Invoke the real `chat_message` handler once, as the room's first member (`user0`).

    Returns the whole handler's seconds, the fan-out's seconds (the sender's `send` alone, apart
    from the DynamoDB calls around it) and the reply frame.
    """
    from parley.aws.management_api import ManagementApiSender
    from parley_testing.lambda_events import connection_id, message_event
    from parley_testing.functions import load_function

    timings: list[float] = []
    original_send = ManagementApiSender.send

    def timed_send(self, job):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return original_send(self, job)
        finally:
            timings.append(time.perf_counter() - t0)

    ManagementApiSender.send = timed_send  # type: ignore[method-assign]
    try:
        chat = load_function("chat_message")
        event = message_event(connection_id(0), "user0", {"type": "chat_message", "data": {"roomId": room, "message": "hi"}})
        started = time.perf_counter()
        response = chat.lambda_handler(event, Context())
        elapsed = time.perf_counter() - started
    finally:
        ManagementApiSender.send = original_send  # type: ignore[method-assign]
    return elapsed, max(timings), json.loads(response["body"])


class ConnectionsStandIn:
    """`parley_testing.fake_connections_api` in its own process; counts the PostToConnection calls it served."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "parley_testing.fake_connections_api", "--latency-ms", str(latency_ms)],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self._lines: list[tuple[float, int, int]] = []  # (received at, calls, max in flight)
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = dict(p.split("=") for p in line.split() if "=" in p)
            with self._cv:
                self._lines.append((time.monotonic(), int(parts.get("calls", 0)), int(parts.get("max_in_flight", 0))))
                self._cv.notify_all()

    def calls(self) -> int:
        """Calls served so far, from a status line the server printed after this moment (it prints every second)."""
        asked = time.monotonic()
        with self._cv:
            ok = self._cv.wait_for(lambda: self._lines and self._lines[-1][0] > asked + 0.01, timeout=5)
            if not ok:
                raise RuntimeError("@connections stand-in stopped reporting")
            return self._lines[-1][1]

    def max_in_flight(self) -> int:
        """The most calls it has seen in flight at once (from a status line printed after this moment)."""
        self.calls()
        with self._cv:
            return self._lines[-1][2]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def publish(report: str, data: dict[str, Any], json_path: Path | None) -> None:
    """Print a benchmark's report and, with `--json`, keep its figures for run_all.py to render."""
    print(report)
    if json_path:
        json_path.write_text(json.dumps(data, indent=1))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ------------------------------------------------------------------ DynamoDB capacity by item size
def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: x}) for x in v)
    if kind == "L":
        return 3 + sum(1 + value_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(x) for k, x in v.items())
    return 0


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB item size: attribute names plus values (docs: 'Item sizes and formats')."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass
class TableInfo:
    keys: tuple[str, ...]
    indexes: dict[str, tuple[tuple[str, ...], str]]  # name -> (index keys, projection type)


def table_infos() -> dict[str, TableInfo]:
    from parley_testing.template import load_template

    infos = {}
    for logical_id, resource in load_template()["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        indexes = {
            gsi["IndexName"]: (tuple(k["AttributeName"] for k in gsi["KeySchema"]), gsi["Projection"]["ProjectionType"])
            for gsi in props.get("GlobalSecondaryIndexes", [])
        }
        infos[f"test-{logical_id}"] = TableInfo(tuple(k["AttributeName"] for k in props["KeySchema"]), indexes)
    return infos


@dataclass
class Tally:
    rru: float = 0.0
    wru: float = 0.0
    reported_units: float = 0.0
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        return {"rru": self.rru, "wru": self.wru, "reported_units": self.reported_units, "calls": dict(self.calls)}


class CapacityRecorder:
    """Wraps botocore's `BaseClient._make_api_call` (PynamoDB and boto3 both go through it).

    The units are computed here from the sizes of the items each call read or wrote (DynamoDB's
    published rules), keeping a shadow copy of every item so deletes and updates know the old size:
      write: ceil(KB) per item written (max of old and new), plus 1 per GSI entry written;
      read: sum of item (or index entry) sizes read by a Query/Scan page, rounded up to 4 KB,
            0.5 per 4 KB eventually consistent, 1 strongly consistent; GetItem likewise.
    moto's own figure is kept alongside as `reported_units`.
    """

    def __init__(self) -> None:
        self.tables = table_infos()
        self.shadow: dict[tuple[str, tuple], dict[str, Any]] = {}
        self.tally: Tally | None = None
        self._lock = threading.Lock()
        self._client: Any = None
        self._installed = False

    def install(self) -> "CapacityRecorder":
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        recorder = self

        def wrapped(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            response = original(client, operation_name, api_params)
            if client.meta.service_model.service_name == "dynamodb":
                recorder._observe(client, operation_name, api_params, response)
            return response

        BaseClient._make_api_call = wrapped  # type: ignore[method-assign]
        self._original = original
        return self

    def uninstall(self) -> None:
        """Stop recording: timed runs must not pay for this bookkeeping (or its extra GetItems)."""
        from botocore.client import BaseClient

        BaseClient._make_api_call = self._original  # type: ignore[method-assign]

    def measure(self) -> "Tally":
        self.tally = Tally()
        return self.tally

    def stop(self) -> Tally:
        tally, self.tally = self.tally or Tally(), None
        return tally

    # ---- bookkeeping ---------------------------------------------------------------------
    def _key(self, table: str, item: dict[str, Any]) -> tuple[str, tuple]:
        return table, tuple(json.dumps(item[k], sort_keys=True) for k in self.tables[table].keys)

    def _index_writes(self, table: str, item: dict[str, Any] | None) -> float:
        if not item:
            return 0.0
        units = 0.0
        for keys, projection in self.tables[table].indexes.values():
            if all(k in item for k in keys):  # sparse: only items carrying the index keys
                attrs = set(keys) | set(self.tables[table].keys)
                size = item_size({k: item[k] for k in attrs}) if projection == "KEYS_ONLY" else item_size(item)
                units += math.ceil((size + 100) / 1024)
        return units

    def _write(self, table: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> float:
        size = max(item_size(old) if old else 0, item_size(new) if new else 0)
        units = max(1, math.ceil(size / 1024))
        # A GSI entry is deleted and/or put when an indexed item is written.
        units += max(self._index_writes(table, old), self._index_writes(table, new))
        return units

    @staticmethod
    def _read_units(nbytes: int, consistent: bool) -> float:
        return max(1, math.ceil(nbytes / 4096)) * (1.0 if consistent else 0.5)

    def _observe(self, client: Any, op: str, params: dict[str, Any], response: dict[str, Any]) -> None:
        with self._lock:
            tally = self.tally
            units_r = units_w = 0.0
            table = params.get("TableName", "")
            if op == "PutItem":
                key = self._key(table, params["Item"])
                units_w = self._write(table, self.shadow.get(key), params["Item"])
                self.shadow[key] = params["Item"]
            elif op == "DeleteItem":
                key = self._key(table, params["Key"])
                units_w = self._write(table, self.shadow.pop(key, None) or response.get("Attributes"), None)
            elif op == "UpdateItem":
                key = self._key(table, params["Key"])
                new = self._fetch(client, table, params["Key"])
                units_w = self._write(table, self.shadow.get(key), new)
                if new:
                    self.shadow[key] = new
            elif op == "BatchWriteItem":
                for tname, requests in params["RequestItems"].items():
                    unprocessed = response.get("UnprocessedItems", {}).get(tname, [])
                    for request in requests:
                        if request in unprocessed:
                            continue
                        if "PutRequest" in request:
                            item = request["PutRequest"]["Item"]
                            key = self._key(tname, item)
                            units_w += self._write(tname, self.shadow.get(key), item)
                            self.shadow[key] = item
                        else:
                            key = self._key(tname, request["DeleteRequest"]["Key"])
                            units_w += self._write(tname, self.shadow.pop(key, None), None)
            elif op == "GetItem":
                item = self.shadow.get(self._key(table, params["Key"])) or response.get("Item") or {}
                units_r = self._read_units(item_size(item), bool(params.get("ConsistentRead")))
            elif op in ("Query", "Scan"):
                index = params.get("IndexName")
                nbytes = 0
                for item in response.get("Items", []):
                    if index is None and ("ProjectionExpression" in params or "AttributesToGet" in params):
                        try:  # a projection still reads (and bills) the whole item
                            item = self.shadow.get(self._key(table, item), item)
                        except KeyError:
                            pass
                    nbytes += item_size(item)
                units_r = self._read_units(nbytes, bool(params.get("ConsistentRead")))
            else:
                return
            if tally is None:
                return
            tally.calls[op] += 1
            tally.rru += units_r
            tally.wru += units_w
            consumed = response.get("ConsumedCapacity")
            for entry in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
                tally.reported_units += float(entry.get("CapacityUnits", 0))

    def _fetch(self, client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The item after an UpdateItem, read past the recorder (it costs nothing in the tally)."""
        return self._original(client, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}).get("Item")


def decimal_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value))


def patient_dynamodb(read_timeout_seconds: int = 120) -> None:
    """Give PynamoDB a long read timeout in benchmark processes only.

    moto's response serializer costs about 1 ms per item, so its answer to a Query of a 5,000-member
    room takes 5-20 s on a busy 2-core machine: past the 5 s timeout the template-tuned tables use
    (real DynamoDB answers in tens of milliseconds). Call before the first DynamoDB call.
    """
    import inspect

    import parley.aws.tables as tables

    for _, model in inspect.getmembers(tables, inspect.isclass):
        if issubclass(model, tables.Model) and model is not tables.Model and hasattr(model, "Meta"):
            model.Meta.read_timeout_seconds = read_timeout_seconds
            model._connection = None  # type: ignore[attr-defined]
