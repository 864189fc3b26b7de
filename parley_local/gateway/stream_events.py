"""DynamoDB stream event sources, run locally: poll a table's stream and invoke its function.

Why: on AWS an event source mapping reads a table's stream, filters it (`FilterCriteria`),
batches it (`BatchSize`, `MaximumBatchingWindowInSeconds`) and invokes the function. Parley's
presence for large rooms arrives only that way, so without this `parley dev` would give large
rooms no presence at all. Here one task per mapping polls every shard of the stream from its
StartingPosition (as of start-up; shards that appear later are read from their start), applies the filter patterns
the way Lambda does for the forms listed in `PatternRefused` (any other form refuses the mapping
at start-up, loudly, rather than letting everything through), and invokes the function in the
same worker pool as the routes with a stream-shaped event. A failed batch is retried (bounded)
and then dropped with a loud line, where AWS would send it to the on-failure destination.
Lambda's `BisectBatchOnFunctionError` is not emulated: the whole batch is retried. A template
redeploy updates the running mappings in place (`redeploy`), so an updated one keeps its position
and the records it holds, as an UpdateEventSourceMapping does. A mapping that could not start (the
local DynamoDB refused, or the table has no stream yet) is tried again a few times on its own
(`RESTART_DELAYS_S`), and again on every redeploy until it runs: the developer who fixes the cause
expects it to run, as AWS keeps an event source mapping in `Creating` until its stream is there.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine

from ..local_aws.account import REGION, aws_client
from .console import Console
from .ids import uuid4_str
from .integration import status_text
from .streams_api import StreamsApi, StreamsError
from .template import StreamEventSource
from .environment import Invocation
from .worker_pool import LambdaRuntime

POLL_INTERVAL_S = 0.25  # Lambda polls each shard about four times a second
SHARD_REFRESH_S = 1.0  # while no shard is open: how soon the stream's first shard is found
SHARD_SAFETY_REFRESH_S = 15.0  # while one is open: new shards come as one closes, which reads the list at once
LOCAL_MAX_RETRIES = 3  # bound for a mapping whose MaximumRetryAttempts is -1 (AWS: until the record expires)
RETRY_DELAYS_S = (0.5, 1.0, 2.0)
RESTART_DELAYS_S = (1.0, 2.0, 4.0, 8.0)  # a mapping that could not start is tried again after these, then on a redeploy
Matcher = Callable[[Any, bool], bool]  # (value, present) -> matches
Filter = Callable[[dict[str, Any]], bool]  # one compiled FilterCriteria pattern


class StreamNotReady(RuntimeError):
    """The mapping's table has no stream (yet): it may get one (a redeploy adds it, or it is enabled), so the start is retried."""


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


def _event_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A record as GetRecords answered it, as Lambda's event carries it. The wire forms are the event's
    (binary as base64 text) but for the creation time, which the event gives in whole epoch seconds."""
    record = dict(raw)
    data = record.get("dynamodb")
    if isinstance(data, dict) and isinstance(data.get("ApproximateCreationDateTime"), float):
        record["dynamodb"] = {**data, "ApproximateCreationDateTime": int(data["ApproximateCreationDateTime"])}
    return record


@dataclass
class _Mapping:
    """One enabled mapping: its source, its filters, where it has read to in each shard, and what it holds."""

    source: StreamEventSource
    table: str  # the table's name: a mapping on another table is another mapping
    filters: list[Filter]
    client: StreamsApi  # the poller's, shared by its mappings
    stream_arn: str = ""
    iterators: dict[str, str | None] = field(default_factory=dict)  # shard id -> next iterator (None: closed)
    last_read: dict[str, str] = field(default_factory=dict)  # shard id -> sequence number of the last record read
    refreshed_at: float = 0.0
    pending: list[dict[str, Any]] = field(default_factory=list)  # read and wanted, not yet delivered
    first_pending_at: float = 0.0  # when the batching window of `pending` opened
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # removed by a redeploy, or the gateway stops

    def wanted(self, record: dict[str, Any]) -> bool:
        return not self.filters or any(f(record) for f in self.filters)

    def same_position(self, source: StreamEventSource, table: str) -> bool:
        """Whether `source` is this mapping updated in place (CloudFormation updates a mapping's function,
        filters and batching without interruption, so its position in the stream is kept) rather than
        a new one (another table or stream, or another StartingPosition: a replacement, which starts afresh)."""
        old = self.source
        return (old.logical_id, old.stream_arn, old.starting_position, self.table) == (
            source.logical_id, source.stream_arn, source.starting_position, table)


_Update = tuple[_Mapping, StreamEventSource, list[Filter]]  # a running mapping, its new source and filters


class StreamEventPoller:
    """Every DynamoDB stream mapping of the stack, polled while the gateway runs; `redeploy` applies a new template's."""

    def __init__(self, sources: list[StreamEventSource], table_names: dict[str, str], dynamodb_endpoint: str,
                 runtime: LambdaRuntime, console: Console, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S,
                 restart_delays_s: tuple[float, ...] | None = None):
        self.sources = sources
        self.table_names = table_names  # table logical id -> name
        self.dynamodb_endpoint = dynamodb_endpoint
        self._streams = StreamsApi(dynamodb_endpoint)  # the mappings' polls, on this loop (no boto3, no thread)
        self.runtime = runtime
        self.console = console
        self.retry_delays_s = retry_delays_s
        self.restart_delays_s = RESTART_DELAYS_S if restart_delays_s is None else restart_delays_s
        self.failed_batches: list[dict[str, Any]] = []  # what AWS would send to the on-failure destination
        self._mappings: dict[str, _Mapping] = {}  # logical id -> the running mapping
        self._tasks: set[asyncio.Task[None]] = set()  # the running mappings', the removed ones finishing a batch, the restarts
        self._unstarted: set[str] = set()  # logical ids whose start failed for a reason that may pass: tried again
        self._restarts: dict[str, asyncio.Task[None]] = {}  # logical id -> its pending restarts (`_restart`)

    async def start(self) -> None:
        """Position every mapping at its StartingPosition before the gateway serves, so no change made after start-up is missed."""
        for source in self.sources:
            mapping = await self._start(source, self.table_names)
            if mapping is not None:
                self._run_mapping(mapping)
                self.console.line(_running_line(mapping))

    async def redeploy(self, sources: list[StreamEventSource], table_names: dict[str, str]) -> None:
        """A new template's mappings, as CloudFormation applies them: an unchanged or updated mapping goes on from
        where it had read to (nothing read is lost or delivered twice; records it holds are re-filtered), a removed
        one stops (after the batch it is delivering), a new one starts at its StartingPosition, and so does one that
        could not start before, changed or not. One console line (and one per mapping that cannot start)."""
        moved = await self._moved_streams()
        if _with_tables(sources, table_names) == _with_tables(self.sources, self.table_names) and not self._unstarted and not moved:
            return
        for task in self._restarts.values():  # before any await: this redeploy tries them now
            task.cancel()
        self._restarts.clear()
        unstarted, self._unstarted = self._unstarted, set()
        kept, new = self._sort(sources, table_names, unstarted | moved)
        removed = sorted(set(self._mappings) - {mapping.source.logical_id for mapping, _, _ in kept})
        for lid in removed:  # first, before any await: a removed mapping invokes nothing more
            self._mappings.pop(lid).stopped.set()
        self.sources, self.table_names = sources, table_names
        started = []
        for source in new:
            mapping = await self._start(source, table_names)
            if mapping is not None:
                started.append(mapping)
        changes = []
        for mapping, source, filters in kept:  # last, with no await after: the running task sees the whole update at once
            if what := _what_changed(mapping.source, source):
                changes.append(f"changed {source.logical_id} ({', '.join(what)}; goes on from where it had read to)")
            mapping.source, mapping.filters = source, filters
            mapping.pending = [r for r in mapping.pending if mapping.wanted(r)]
        for mapping in started:
            self._run_mapping(mapping)
            lid = mapping.source.logical_id
            how = ("restarted on the table's new stream" if lid in moved else "replaced" if lid in removed
                   else "started" if lid in unstarted else "new")
            changes.append(f"{how} {lid} ({mapping.table} -> {mapping.source.function}, from {mapping.source.starting_position})")
        changes += [f"removed {lid} (stopped)" for lid in removed if lid not in self._mappings]
        changes += [f"removed {lid} (it had not started)" for lid in sorted(unstarted - {s.logical_id for s in sources})]
        if changes:
            self.console.line("DynamoDB stream mappings redeployed: " + "; ".join(changes))

    async def _moved_streams(self) -> set[str]:
        """Running mappings whose table now has another stream: the table was deleted and created again (by
        this redeploy, which creates missing tables, or by hand), so the stream they read gets nothing more.
        Like a mapping whose `StreamArn` changed, each starts afresh on the new stream."""
        moved: set[str] = set()
        if not self._mappings:
            return moved
        dynamodb = await asyncio.to_thread(aws_client, "dynamodb", self.dynamodb_endpoint)  # one client for them all
        for lid, mapping in self._mappings.items():
            try:
                described = await asyncio.to_thread(dynamodb.describe_table, TableName=mapping.table)
            except Exception:  # noqa: BLE001 - gone, or the local DynamoDB hiccuped: the template's view decides
                continue
            if described["Table"].get("LatestStreamArn", mapping.stream_arn) != mapping.stream_arn:
                moved.add(lid)
        return moved

    def _sort(self, sources: list[StreamEventSource], table_names: dict[str, str],
              unstarted: set[str]) -> tuple[list[_Update], list[StreamEventSource]]:
        """A new template's mappings: the running ones they update in place, and the ones to start afresh (new,
        replaced, or in `unstarted`: not started yet for a reason that may have passed, or reading a stream its
        table no longer has). One refused for good (a filter form this emulator does not evaluate) and unchanged
        is neither: it was said then."""
        before = dict(zip((s.logical_id for s in self.sources), _with_tables(self.sources, self.table_names)))
        kept: list[_Update] = []
        new: list[StreamEventSource] = []
        for source, table in _with_tables(sources, table_names):
            running = self._mappings.get(source.logical_id)
            if running is None and before.get(source.logical_id) == (source, table) and source.logical_id not in unstarted:
                continue
            if running is None or not running.same_position(source, table) or source.logical_id in unstarted:
                new.append(source)
                continue
            try:
                filters = running.filters if source.filter_patterns == running.source.filter_patterns else [
                    compile_pattern(p) for p in source.filter_patterns]
            except PatternRefused as exc:
                self.console.line(f"!!! [{source.function}] stream event source {source.logical_id} NOT RUN locally "
                                  f"any more: {exc}. The function gets no events from {table}'s stream.")
                continue
            kept.append((running, source, filters))
        return kept, new

    async def stop(self) -> None:
        for mapping in self._mappings.values():
            mapping.stopped.set()
        self._restarts.clear()  # their tasks are among `_tasks`
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._mappings.clear()
        await self._streams.close()

    async def _start(self, source: StreamEventSource, table_names: dict[str, str]) -> _Mapping | None:
        """`source` positioned at its StartingPosition, or None when it cannot start, said in one loud line: for
        good (its filters: until its entry changes), or for now (tried again on its own, and on every redeploy)."""
        try:
            return await self._positioned(source, table_names)
        except PatternRefused as exc:
            self.console.line(f"!!! [{source.function}] stream event source {source.logical_id} NOT RUN locally: "
                              f"{exc}. The function gets no events from {table_names[source.table]}'s stream.")
        except Exception as exc:  # noqa: BLE001 - the local DynamoDB refused, or no stream yet: apply the rest, try again
            self._unstarted.add(source.logical_id)
            delays = self.restart_delays_s
            again = f"trying again {len(delays)} time(s) over {sum(delays):g} s" if delays else "a redeploy tries it again"
            self.console.line(f"!!! [{source.function}] stream event source {source.logical_id} NOT RUN yet: {_reason(exc)}; {again}")
            if delays:
                self._restart_later(source, table_names, _reason(exc))
        return None

    def _restart_later(self, source: StreamEventSource, table_names: dict[str, str], reason: str) -> None:
        self._restarts[source.logical_id] = self._track(self._restart(source, table_names, reason))

    def _track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task `stop` cancels and waits for: a mapping's polling, or its pending restarts."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _restart(self, source: StreamEventSource, table_names: dict[str, str], reason: str) -> None:
        """Start a mapping that could not start, after each of `restart_delays_s` (bounded), with at most one line per
        attempt (when the reason changes) and one when it runs or when it gives up. A redeploy cancels this: it tries
        the mapping itself, with the template of the moment. Nothing was read before, so nothing can be lost."""
        lid = source.logical_id
        attempt = 1
        try:
            for attempt, delay in enumerate(self.restart_delays_s, 2):
                await asyncio.sleep(delay)
                try:
                    mapping = await self._positioned(source, table_names)
                except Exception as exc:  # noqa: BLE001 - as in `_start`
                    if _reason(exc) != reason:
                        reason = _reason(exc)
                        self.console.line(f"[{source.function}] stream event source {lid} still not running: {reason}")
                    continue
                self._unstarted.discard(lid)
                self._run_mapping(mapping)
                self.console.line(f"{_running_line(mapping)} (started on attempt {attempt})")
                return
            self.console.line(f"!!! [{source.function}] stream event source {lid} NOT RUN after {attempt} attempts: {reason}. "
                              "Fix that, then save the template (its redeploy starts it) or restart parley dev")
        finally:
            if self._restarts.get(lid) is asyncio.current_task():
                del self._restarts[lid]

    async def _positioned(self, source: StreamEventSource, table_names: dict[str, str]) -> _Mapping:
        """A mapping for `source` with an iterator at its StartingPosition on every shard. Raises PatternRefused
        (its filters: for good), StreamNotReady, or what the local DynamoDB raised (both may pass)."""
        table = table_names[source.table]
        filters = [compile_pattern(p) for p in source.filter_patterns]
        mapping = _Mapping(source, table, filters, self._streams)
        described = await asyncio.to_thread(aws_client("dynamodb", self.dynamodb_endpoint).describe_table, TableName=table)
        mapping.stream_arn = described["Table"].get("LatestStreamArn", "")
        if not mapping.stream_arn:
            raise StreamNotReady(f"table {table} has no stream locally (its StreamSpecification?)")
        await self._refresh_shards(mapping, True)
        return mapping

    def _run_mapping(self, mapping: _Mapping) -> None:
        self._mappings[mapping.source.logical_id] = mapping
        self._track(self._run(mapping))

    @staticmethod
    async def _refresh_shards(mapping: _Mapping, at_start: bool) -> None:
        """Add shards not seen yet: when the mapping starts, open ones from its StartingPosition (closed ones
        too from TRIM_HORIZON); later ones (splits) from TRIM_HORIZON."""
        after: str | None = None
        while True:
            desc = await mapping.client.describe_stream(mapping.stream_arn, after)
            for shard in desc.get("Shards", []):
                sid = shard["ShardId"]
                if sid in mapping.iterators:
                    continue
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                kind = mapping.source.starting_position if at_start else "TRIM_HORIZON"
                if closed and kind == "LATEST":
                    mapping.iterators[sid] = None
                    continue
                mapping.iterators[sid] = await mapping.client.get_shard_iterator(mapping.stream_arn, sid, kind)
            after = desc.get("LastEvaluatedShardId")
            if not after:
                break
        mapping.refreshed_at = time.monotonic()

    @staticmethod
    async def _reposition(mapping: _Mapping, sid: str) -> None:
        """A new iterator after the last record read. DynamoDB Local refuses a LATEST iterator taken on an
        empty shard once records arrive (TrimmedDataAccessException); the table was empty then, so the
        shard's start is the same place. (An iterator also expires after 15 minutes on AWS.)"""
        after = mapping.last_read.get(sid)
        kind = "AFTER_SEQUENCE_NUMBER" if after else "TRIM_HORIZON"
        mapping.iterators[sid] = await mapping.client.get_shard_iterator(mapping.stream_arn, sid, kind, after)

    async def _read(self, mapping: _Mapping) -> list[dict[str, Any]]:
        """One pass over every open shard: its new records, as the event carries them (not yet filtered)."""
        if shard_list_due(mapping.iterators, time.monotonic() - mapping.refreshed_at):
            await self._refresh_shards(mapping, False)
        out: list[dict[str, Any]] = []
        for sid, iterator in list(mapping.iterators.items()):
            if iterator is None:
                continue
            try:
                page = await mapping.client.get_records(iterator, 1000)
            except StreamsError as exc:
                if exc.code not in ("TrimmedDataAccessException", "ExpiredIteratorException"):
                    raise
                await self._reposition(mapping, sid)
                continue
            mapping.iterators[sid] = page.get("NextShardIterator")
            if mapping.iterators[sid] is None:  # the shard closed: its children are in the list now
                mapping.refreshed_at = -math.inf
            if page.get("Records"):
                mapping.last_read[sid] = page["Records"][-1]["dynamodb"]["SequenceNumber"]
            for raw in page.get("Records", []):
                record = _event_record(raw)
                record["eventSourceARN"] = mapping.stream_arn
                record.setdefault("awsRegion", REGION)
                out.append(record)
        return out

    async def _run(self, mapping: _Mapping) -> None:
        """Gather records for the batching window (or until a full batch), then invoke; bounded waits throughout.
        Filters apply here, on the loop, so a redeploy's new filters apply to every record taken in after it."""
        while not mapping.stopped.is_set():
            try:
                records = await self._read(mapping)
            except Exception as exc:  # a local DynamoDB hiccup must not end the mapping
                self.console.line(f"[{mapping.source.function}] reading {mapping.table}'s stream failed: {exc!r}; retrying")
                records = []
            if mapping.stopped.is_set():
                return
            records = [r for r in records if mapping.wanted(r)]
            if records and not mapping.pending:
                mapping.first_pending_at = time.monotonic()
            mapping.pending.extend(records)
            while mapping.pending and not mapping.stopped.is_set() and (
                    len(mapping.pending) >= mapping.source.batch_size
                    or time.monotonic() - mapping.first_pending_at >= mapping.source.batching_window_s):
                size = mapping.source.batch_size
                batch, mapping.pending = mapping.pending[:size], mapping.pending[size:]
                await self._deliver(mapping, batch)
                mapping.first_pending_at = time.monotonic()
            try:
                await asyncio.wait_for(mapping.stopped.wait(), POLL_INTERVAL_S)
            except TimeoutError:
                pass

    async def _deliver(self, mapping: _Mapping, batch: list[dict[str, Any]]) -> None:
        """One batch, retried like the mapping's `MaximumRetryAttempts` (bounded locally); the shard waits meanwhile, as on AWS.
        A mapping removed meanwhile retries no more."""
        source = mapping.source
        retries = source.max_retries if source.max_retries >= 0 else LOCAL_MAX_RETRIES
        event = {"Records": batch}
        inv: Invocation | None = None
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delays_s[min(attempt, len(self.retry_delays_s)) - 1])
                if mapping.stopped.is_set():
                    return
            inv = await self.runtime.invoke(source.function, event, uuid4_str())
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


def shard_list_due(iterators: dict[str, str | None], since_s: float) -> bool:
    """Whether to read the stream's shard list again, `since_s` after the last read.

    Why not every second: the list changes only when a shard closes (a split, or the stream's
    roll-over of its shards), and a shard's closing is seen where its records are read (no next
    iterator), which makes the next pass read the list (`since_s` is then infinite). Reading it once
    a second was a fifth of an idle `parley dev`'s calls to its DynamoDB. Until a shard is open there
    is nothing to see closing, so the list is read every `SHARD_REFRESH_S`; otherwise every
    `SHARD_SAFETY_REFRESH_S`, in case a local DynamoDB adds a shard without closing one."""
    has_open = any(iterator is not None for iterator in iterators.values())
    return since_s >= (SHARD_SAFETY_REFRESH_S if has_open else SHARD_REFRESH_S)


def _running_line(mapping: _Mapping) -> str:
    source = mapping.source
    return (f"DynamoDB stream of {mapping.table} -> {source.function}: {len(mapping.filters)} filter(s), "
            f"batches of up to {source.batch_size} every {source.batching_window_s:g} s")


def _reason(exc: Exception) -> str:
    """Why a mapping could not start, in a line: the local DynamoDB's error as it said it."""
    return str(exc) if isinstance(exc, StreamNotReady) else f"{type(exc).__name__}: {exc}"


def _with_tables(sources: list[StreamEventSource], table_names: dict[str, str]) -> list[tuple[StreamEventSource, str]]:
    """Each source with its table's name: the same source on a renamed table is another mapping."""
    return [(s, table_names.get(s.table, "")) for s in sources]


def _what_changed(old: StreamEventSource, new: StreamEventSource) -> list[str]:
    """An updated mapping's changes, as the redeploy line names them."""
    what = []
    if new.function != old.function:
        what.append(f"function {new.function}")
    if new.filter_patterns != old.filter_patterns:
        what.append(f"{len(new.filter_patterns)} filter(s)")
    if new.batch_size != old.batch_size:
        what.append(f"batch size {new.batch_size}")
    if new.batching_window_s != old.batching_window_s:
        what.append(f"batching window {new.batching_window_s:g} s")
    if new.max_retries != old.max_retries:
        what.append(f"retries {new.max_retries}")
    return what
