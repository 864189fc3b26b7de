"""DynamoDB stream event sources, run locally: poll a table's stream and invoke its function.

Why: on AWS an event source mapping reads a table's stream, filters it (`FilterCriteria`),
batches it (`BatchSize`, `MaximumBatchingWindowInSeconds`) and invokes the function. Parley's
presence for large rooms arrives only that way, so without this `parley dev` would give large
rooms no presence at all. Here one task per mapping polls every shard of the stream from LATEST
(as of start-up; shards that appear later are read from their start), applies the filter patterns
the way Lambda does for the forms listed in `PatternRefused` (any other form refuses the mapping
at start-up, loudly, rather than letting everything through), and invokes the function in the
same worker pool as the routes with a stream-shaped event. A failed batch is retried (bounded)
and then dropped with a loud line, where AWS would send it to the on-failure destination.
Lambda's `BisectBatchOnFunctionError` is not emulated: the whole batch is retried.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from ..local_aws.account import REGION, aws_client
from .console import Console
from .integration import status_text
from .template import StreamEventSource
from .worker_pool import Invocation, LambdaRuntime

POLL_INTERVAL_S = 0.25  # Lambda polls each shard about four times a second
SHARD_REFRESH_S = 1.0  # how often the shard list is read again (shards split and close)
LOCAL_MAX_RETRIES = 3  # bound for a mapping whose MaximumRetryAttempts is -1 (AWS: until the record expires)
RETRY_DELAYS_S = (0.5, 1.0, 2.0)
Matcher = Callable[[Any, bool], bool]  # (value, present) -> matches


class PatternRefused(ValueError):
    """A filter pattern uses a form this emulator does not evaluate. Supported: nested objects,
    lists of literal strings, numbers, booleans and null, `{"prefix": s}`, `{"exists": bool}`."""


def compile_pattern(text: str) -> Callable[[dict[str, Any]], bool]:
    """One `FilterCriteria` pattern (JSON text) as a predicate on a stream record."""
    try:
        pattern = json.loads(text)
    except ValueError as exc:
        raise PatternRefused(f"pattern is not JSON: {text!r}") from exc
    if not isinstance(pattern, dict):
        raise PatternRefused(f"pattern must be a JSON object: {text!r}")
    return _compile_object(pattern)


def _compile_object(pattern: dict[str, Any]) -> Callable[[Any], bool]:
    fields: list[tuple[str, Callable[[Any], bool] | None, list[Matcher]]] = []
    for key, value in pattern.items():
        if isinstance(value, dict):
            fields.append((key, _compile_object(value), []))
        elif isinstance(value, list) and value:
            fields.append((key, None, [_compile_matcher(m) for m in value]))
        else:
            raise PatternRefused(f"field {key!r}: expected an object or a non-empty list of matchers, got {value!r}")

    def match(record: Any) -> bool:
        if not isinstance(record, dict):
            return False
        for key, nested, matchers in fields:
            present = key in record
            if nested is not None:
                if not (present and nested(record[key])):
                    return False
            elif not any(m(record.get(key), present) for m in matchers):
                return False
        return True

    return match


def _compile_matcher(spec: Any) -> Matcher:
    if spec is None or isinstance(spec, (str, int, float, bool)):
        return lambda value, present: present and (value == spec or (isinstance(value, list) and spec in value))
    if isinstance(spec, dict) and len(spec) == 1:
        (op, arg), = spec.items()
        if op == "prefix" and isinstance(arg, str):
            return lambda value, present: present and isinstance(value, str) and value.startswith(arg)
        if op == "exists" and isinstance(arg, bool):
            return lambda value, present: present is arg
    raise PatternRefused(f"matcher {json.dumps(spec)} is not supported locally (supported: literals, prefix, exists)")


def _jsonable(value: Any) -> Any:
    """A record as Lambda's JSON event carries it: binary as base64, the creation time as epoch seconds."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


@dataclass
class _Mapping:
    """One enabled mapping: its source, its filters, and where it has read to in each shard."""

    source: StreamEventSource
    filters: list[Callable[[dict[str, Any]], bool]]
    client: Any
    stream_arn: str = ""
    iterators: dict[str, str | None] = field(default_factory=dict)  # shard id -> next iterator (None: closed)
    last_read: dict[str, str] = field(default_factory=dict)  # shard id -> sequence number of the last record read
    refreshed_at: float = 0.0

    def wanted(self, record: dict[str, Any]) -> bool:
        return not self.filters or any(f(record) for f in self.filters)


class StreamEventPoller:
    """Every DynamoDB stream mapping of the stack, polled while the gateway runs."""

    def __init__(self, sources: list[StreamEventSource], table_names: dict[str, str], dynamodb_endpoint: str,
                 runtime: LambdaRuntime, console: Console, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S):
        self.sources = sources
        self.table_names = table_names  # table logical id -> name
        self.dynamodb_endpoint = dynamodb_endpoint
        self.runtime = runtime
        self.console = console
        self.retry_delays_s = retry_delays_s
        self.failed_batches: list[dict[str, Any]] = []  # what AWS would send to the on-failure destination
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Position every mapping at LATEST before the gateway serves, so no change made after start-up is missed."""
        for source in self.sources:
            try:
                filters = [compile_pattern(p) for p in source.filter_patterns]
            except PatternRefused as exc:
                self.console.line(f"!!! [{source.function}] stream event source {source.logical_id} NOT RUN locally: "
                                  f"{exc}. The function gets no events from {source.table}'s stream.")
                continue
            mapping = _Mapping(source, filters, aws_client("dynamodbstreams", self.dynamodb_endpoint))
            table = self.table_names[source.table]
            described = await asyncio.to_thread(aws_client("dynamodb", self.dynamodb_endpoint).describe_table, TableName=table)
            mapping.stream_arn = described["Table"].get("LatestStreamArn", "")
            if not mapping.stream_arn:
                self.console.line(f"!!! [{source.function}] table {table} has no stream locally: "
                                  f"stream event source {source.logical_id} NOT RUN.")
                continue
            await asyncio.to_thread(self._refresh_shards, mapping, True)
            self._tasks.append(asyncio.create_task(self._run(mapping)))
            self.console.line(f"DynamoDB stream of {table} -> {source.function}: {len(filters)} filter(s), "
                              f"batches of up to {source.batch_size} every {source.batching_window_s:g} s")

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _refresh_shards(self, mapping: _Mapping, at_start: bool) -> None:
        """Add shards not seen yet: at start-up open ones from LATEST; later ones (splits) from TRIM_HORIZON."""
        kwargs: dict[str, Any] = {"StreamArn": mapping.stream_arn}
        while True:
            desc = mapping.client.describe_stream(**kwargs)["StreamDescription"]
            for shard in desc.get("Shards", []):
                sid = shard["ShardId"]
                if sid in mapping.iterators:
                    continue
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                if at_start and closed:
                    mapping.iterators[sid] = None
                    continue
                kind = mapping.source.starting_position if at_start else "TRIM_HORIZON"
                mapping.iterators[sid] = mapping.client.get_shard_iterator(
                    StreamArn=mapping.stream_arn, ShardId=sid, ShardIteratorType=kind)["ShardIterator"]
            if not desc.get("LastEvaluatedShardId"):
                break
            kwargs["ExclusiveStartShardId"] = desc["LastEvaluatedShardId"]
        mapping.refreshed_at = time.monotonic()

    @staticmethod
    def _reposition(mapping: _Mapping, sid: str) -> None:
        """A new iterator after the last record read. DynamoDB Local refuses a LATEST iterator taken on an
        empty shard once records arrive (TrimmedDataAccessException); the table was empty then, so the
        shard's start is the same place. (An iterator also expires after 15 minutes on AWS.)"""
        after = mapping.last_read.get(sid)
        position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after} if after else {"ShardIteratorType": "TRIM_HORIZON"}
        mapping.iterators[sid] = mapping.client.get_shard_iterator(StreamArn=mapping.stream_arn, ShardId=sid, **position)["ShardIterator"]

    def _read(self, mapping: _Mapping) -> list[dict[str, Any]]:
        """One pass over every open shard: the records that pass the filters."""
        if time.monotonic() - mapping.refreshed_at >= SHARD_REFRESH_S:
            self._refresh_shards(mapping, False)
        out: list[dict[str, Any]] = []
        for sid, iterator in list(mapping.iterators.items()):
            if iterator is None:
                continue
            try:
                page = mapping.client.get_records(ShardIterator=iterator, Limit=1000)
            except (mapping.client.exceptions.TrimmedDataAccessException, mapping.client.exceptions.ExpiredIteratorException):
                self._reposition(mapping, sid)
                continue
            mapping.iterators[sid] = page.get("NextShardIterator")
            if page.get("Records"):
                mapping.last_read[sid] = page["Records"][-1]["dynamodb"]["SequenceNumber"]
            for raw in page.get("Records", []):
                record = _jsonable(raw)
                record["eventSourceARN"] = mapping.stream_arn
                record.setdefault("awsRegion", REGION)
                if mapping.wanted(record):
                    out.append(record)
        return out

    async def _run(self, mapping: _Mapping) -> None:
        """Gather records for the batching window (or until a full batch), then invoke; bounded waits throughout."""
        source = mapping.source
        pending: list[dict[str, Any]] = []
        first_at = 0.0
        while not self._stopping.is_set():
            try:
                records = await asyncio.to_thread(self._read, mapping)
            except Exception as exc:  # a local DynamoDB hiccup must not end the mapping
                self.console.line(f"[{source.function}] reading {source.table}'s stream failed: {exc!r}; retrying")
                records = []
            if records and not pending:
                first_at = time.monotonic()
            pending.extend(records)
            while pending and (len(pending) >= source.batch_size
                               or time.monotonic() - first_at >= source.batching_window_s):
                batch, pending = pending[:source.batch_size], pending[source.batch_size:]
                await self._deliver(source, batch)
                first_at = time.monotonic()
            try:
                await asyncio.wait_for(self._stopping.wait(), POLL_INTERVAL_S)
            except TimeoutError:
                pass

    async def _deliver(self, source: StreamEventSource, batch: list[dict[str, Any]]) -> None:
        """One batch, retried like the mapping's `MaximumRetryAttempts` (bounded locally); the shard waits meanwhile, as on AWS."""
        retries = source.max_retries if source.max_retries >= 0 else LOCAL_MAX_RETRIES
        event = {"Records": batch}
        inv: Invocation | None = None
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delays_s[min(attempt, len(self.retry_delays_s)) - 1])
            inv = await self.runtime.invoke(source.function, event, str(uuid.uuid4()))
            self.console.invocation(source.function, f"DynamoDB stream {len(batch)} record(s)", inv.duration_ms,
                                    status_text(inv), inv.init_ms)
            if inv.ok:
                return
            self.console.line(f"[{source.function}] stream batch of {len(batch)} failed (attempt {attempt + 1} of {retries + 1}): "
                              f"{(inv.error or {}).get('errorType', 'timeout' if inv.timed_out else 'Error')}")
        assert inv is not None
        self.failed_batches.append({"requestContext": {"functionArn": source.function, "condition": "RetryAttemptsExhausted",
                                                       "approximateInvokeCount": retries + 1}, "records": batch})
        self.console.line(f"!!! [{source.function}] stream batch of {len(batch)} record(s) FAILED after {retries + 1} attempts: "
                          "skipped here; on AWS it goes to the mapping's on-failure destination")
