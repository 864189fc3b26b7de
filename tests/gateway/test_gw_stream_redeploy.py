"""A template redeploy applies the new DynamoDB stream event source mappings, as CloudFormation would,
without losing or re-delivering a record: over a real gateway serving a copy of the stream fixture stack
(tests/gateway/fixtures/template_stream.yaml), with items written before, during and after the edit.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from parley_local.local_aws.account import aws_client
from parley_testing.gateway_thread import FIXTURES, ListConsole, RunningGateway
from parley_testing.redeploys import lines_with
from parley_testing.waiting import wait_for

STREAM_TEMPLATE = FIXTURES / "template_stream.yaml"
A_ONLY = '{"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "a#"}]}}}}'
B_ONLY = A_ONLY.replace("a#", "b#")
DROPPED_EVENTS = """      Events:
        Dropped:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt EventsTable.StreamArn
            StartingPosition: LATEST
"""
ADDED_FUNCTIONS = """  NewFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: stream.handler
      Events:
        Added:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt EventsTable.StreamArn
            StartingPosition: LATEST

  HorizonFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: stream.handler
      Events:
        FromTheStart:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt EventsTable.StreamArn
            StartingPosition: TRIM_HORIZON

  EchoFunction:
"""


@pytest.fixture
def stream_stack(copy_stack: Callable[[Path], Path]) -> Path:
    return copy_stack(STREAM_TEMPLATE).parent


@pytest.fixture
def stream_gw(stream_backend: str, stream_stack: Path, tmp_path: Path) -> Iterator[RunningGateway]:
    """On both stream implementations (`stream_backend`)."""
    g = RunningGateway(stream_stack / "template.yaml", tmp_path / "records", stack_name=f"streams{time.time_ns() % 10**6}",
                       reload_interval=0.1, dynamodb=stream_backend).start()
    yield g
    g.stop()


def delivered(g: RunningGateway) -> dict[str, list[list[str]]]:
    """Function logical id -> the batches it was given, as lists of item keys."""
    out: dict[str, list[list[str]]] = {}
    for rec in g.records(event_type="OTHER"):
        out.setdefault(rec["function"].rsplit("-", 1)[-1], []).append(rec["keys"])  # {stack}-{logical id}
    return out


def keys_of(g: RunningGateway, function: str) -> list[str]:
    return [k for batch in delivered(g).get(function, []) for k in batch]


def test_a_redeploy_replaces_the_stream_mappings_without_losing_or_repeating_a_record(stream_gw: RunningGateway, stream_stack: Path):
    g = stream_gw
    ddb = aws_client("dynamodb", g.gateway.aws.dynamodb_endpoint)
    table = g.stack.tables[0].name
    written: list[str] = []

    def put(n: int) -> list[str]:
        keys = [f"{'ab'[i % 2]}#{i}" for i in range(len(written), len(written) + n)]
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in keys]})
        written.extend(keys)
        return keys

    before = put(6)
    # FilterFunction too: its own task reads the stream, and a record it has not read when the edit applies
    # is filtered with the new pattern, which the assertions on `before` below would take for a lost one.
    wait_for(lambda: len(keys_of(g, "DropFunction")) == 6 and len(keys_of(g, "KeepFunction")) == 6
             and keys_of(g, "FilterFunction") == [k for k in before if k[0] == "a"], 30,
             what="the first items through the mappings")
    template = stream_stack / "template.yaml"
    text = template.read_text()
    assert DROPPED_EVENTS in text and A_ONLY in text and "BatchSize: 50" in text
    template.write_text(text.replace(DROPPED_EVENTS, "").replace(A_ONLY, B_ONLY).replace("BatchSize: 50", "BatchSize: 2")
                        .replace("  EchoFunction:\n", ADDED_FUNCTIONS))
    during: list[str] = []
    deadline = time.monotonic() + 30
    while not [line for line in g.console.lines if "DynamoDB stream mappings redeployed" in line]:
        assert time.monotonic() < deadline, g.console.text()[-3000:]
        during += put(1)  # written while the gateway reloads: no mapping may lose one
        time.sleep(0.05)
    line = next(line for line in g.console.lines if "DynamoDB stream mappings redeployed" in line)
    assert during, "the redeploy was over before a write: nothing was written while it ran"
    after = put(10)  # one burst: the new batch size has to split it

    def done() -> bool:
        return (len(keys_of(g, "KeepFunction")) >= len(written) and len(keys_of(g, "HorizonFunction")) >= len(written)
                and set(after) <= set(keys_of(g, "NewFunction")) and {k for k in after if k[0] == "b"} <= set(keys_of(g, "FilterFunction")))

    wait_for(done, 30, what="every item through the new mappings")
    time.sleep(1.0)  # four more polls: a repeat or a stray delivery would show by now
    assert keys_of(g, "KeepFunction") == written  # unchanged: every record once, in order, across the redeploy
    assert keys_of(g, "HorizonFunction") == written  # new at TRIM_HORIZON: the stream from its start
    new = keys_of(g, "NewFunction")  # new at LATEST: nothing from before the edit, all after the line
    assert len(new) == len(set(new)) and not set(new) & set(before) and set(after) <= set(new)
    filtered = keys_of(g, "FilterFunction")  # updated: its position kept, its filters those of the moment
    assert len(filtered) == len(set(filtered))
    assert [k for k in filtered if k in before] == [k for k in before if k[0] == "a"]
    assert [k for k in filtered if k in after] == [k for k in after if k[0] == "b"]
    assert all(len(batch) <= 2 for batch in delivered(g)["FilterFunction"] if set(batch) & set(after))  # the new BatchSize
    assert not set(keys_of(g, "DropFunction")) & set(after)  # removed: stopped
    dropped = keys_of(g, "DropFunction")
    assert len(dropped) == len(set(dropped)) and dropped == written[:len(dropped)]
    assert "changed FilterFunctionFiltered (1 filter(s), batch size 2; goes on from where it had read to)" in line
    assert "new NewFunctionAdded (" in line and "-> NewFunction, from LATEST)" in line
    assert "new HorizonFunctionFromTheStart (" in line and "from TRIM_HORIZON)" in line
    assert "removed DropFunctionDropped (stopped)" in line
    assert "KeepFunction" not in line


def test_a_redeploy_adds_the_first_stream_mapping_of_a_stack_that_had_none(copy_stack: Callable[[Path], Path], tmp_path: Path):
    template = copy_stack(STREAM_TEMPLATE)
    template.write_text(re.sub(r"      Events:\n(?: {8,}.*\n)+", "", template.read_text()))  # the table, no mapping
    g = RunningGateway(template, tmp_path / "records", stack_name=f"nostreams{time.time_ns() % 10**6}", reload_interval=0.1).start()
    try:
        assert g.stack.stream_sources == []
        ddb = aws_client("dynamodb", g.gateway.aws.dynamodb_endpoint)
        table = g.stack.tables[0].name

        def put(keys: list[str]) -> None:
            ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in keys]})

        put(["a#0", "b#1"])
        template.write_text(template.read_text().replace("  EchoFunction:\n", ADDED_FUNCTIONS))
        line = wait_for(lambda: [text for text in g.console.lines if "DynamoDB stream mappings redeployed" in text], 30,
                        what="the redeploy's stream line")[0]
        assert "new NewFunctionAdded" in line and "new HorizonFunctionFromTheStart" in line
        put(["a#2", "b#3"])
        wait_for(lambda: keys_of(g, "NewFunction") == ["a#2", "b#3"] and keys_of(g, "HorizonFunction") == ["a#0", "b#1", "a#2", "b#3"],
                 30, what="the items through the first mappings")
    finally:
        g.stop()


NO_STREAM = "      StreamSpecification:\n        StreamViewType: KEYS_ONLY\n"


@pytest.fixture
def streamless_stack(stream_stack: Path) -> Path:
    """The stream fixture stack with its table's StreamSpecification left out: every mapping's start fails."""
    template = stream_stack / "template.yaml"
    text = template.read_text()
    assert NO_STREAM in text
    template.write_text(text.replace(NO_STREAM, ""))
    return template


def test_a_mapping_that_could_not_start_starts_on_the_next_redeploy_though_its_entry_did_not_change(
        stream_backend: str, streamless_stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """At start-up the table has no stream: each mapping says NOT RUN, is tried twice more (no line while the
    reason is the same), then says what to do. The developer adds the StreamSpecification: the table gets its
    stream, and the redeploy starts every mapping (their entries are unchanged) at its StartingPosition."""
    from parley_local.gateway import stream_events

    monkeypatch.setattr(stream_events, "RESTART_DELAYS_S", (0.1, 0.1), raising=False)
    g = RunningGateway(streamless_stack, tmp_path / "records", stack_name=f"nostream{time.time_ns() % 10**6}",
                       reload_interval=0.1, dynamodb=stream_backend).start()
    try:
        lids = ["KeepFunctionEverything", "FilterFunctionFiltered", "DropFunctionDropped"]
        for lid in lids:
            first = lines_with(g, f"stream event source {lid} NOT RUN yet: ")
            assert len(first) == 1 and "has no stream locally" in first[0] and "trying again 2 time(s) over 0.2 s" in first[0], first
        wait_for(lambda: all(lines_with(g, f"stream event source {lid} NOT RUN after 3 attempts") for lid in lids), 30,
                 what="the give-up lines")
        for lid in lids:
            assert len(lines_with(g, lid)) == 2, lines_with(g, lid)  # one when it failed, one when it gave up: none per attempt
            assert "Fix that, then save the template (its redeploy starts it) or restart parley dev" in lines_with(g, lid)[-1]
        ddb = aws_client("dynamodb", g.gateway.aws.dynamodb_endpoint)
        table = g.stack.tables[0].name
        ddb.put_item(TableName=table, Item={"pk": {"S": "a#before"}})  # written while the table has no stream: no mapping may get it

        streamless_stack.write_text(streamless_stack.read_text().replace(
            "        - {AttributeName: pk, KeyType: HASH}\n", "        - {AttributeName: pk, KeyType: HASH}\n" + NO_STREAM))
        line = wait_for(lambda: lines_with(g, "DynamoDB stream mappings redeployed"), 30, what="the redeploy's stream line")[0]
        for lid in lids:
            assert f"started {lid} (" in line and "from LATEST)" in line, line
        keys = ["a#0", "b#1", "a#2"]
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in keys]})
        wait_for(lambda: keys_of(g, "KeepFunction") == keys and keys_of(g, "DropFunction") == keys
                 and keys_of(g, "FilterFunction") == ["a#0", "a#2"], 30, what="the items through the started mappings")
        time.sleep(1.0)  # four more polls: a repeat would show by now
        assert keys_of(g, "KeepFunction") == keys and keys_of(g, "DropFunction") == keys
    finally:
        g.stop()


def test_a_mapping_that_could_not_start_starts_on_its_own_once_its_stream_is_there(
        stream_backend: str, streamless_stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No redeploy: the table's stream is enabled while the mappings wait to be tried again (as when a local
    DynamoDB comes back). Each starts on its own with one line, at its StartingPosition: the TRIM_HORIZON one
    gets what was written before it started, the LATEST one only what came after; each record once."""
    from parley_local.gateway import stream_events

    monkeypatch.setattr(stream_events, "RESTART_DELAYS_S", (0.5, 1.0, 1.0, 1.0, 1.0), raising=False)
    text = streamless_stack.read_text()
    streamless_stack.write_text(text.replace("StartingPosition: LATEST\n            BatchSize: 100",
                                             "StartingPosition: TRIM_HORIZON\n            BatchSize: 100"))
    g = RunningGateway(streamless_stack, tmp_path / "records", stack_name=f"latestream{time.time_ns() % 10**6}",
                       reload_interval=0.1, dynamodb=stream_backend).start()
    try:
        assert lines_with(g, "stream event source KeepFunctionEverything NOT RUN yet")
        ddb = aws_client("dynamodb", g.gateway.aws.dynamodb_endpoint)
        table = g.stack.tables[0].name
        ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
        early = ["a#0", "b#1"]
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in early]})
        lines = wait_for(lambda: [ln for ln in lines_with(g, "(started on attempt") if "-> DropFunction" in ln]
                         and [ln for ln in lines_with(g, "(started on attempt") if "-> KeepFunction" in ln], 30,
                         what="the mappings started on their own")
        assert lines
        late = ["a#2", "b#3"]
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": k}}}} for k in late]})
        wait_for(lambda: keys_of(g, "KeepFunction") == early + late and set(late) <= set(keys_of(g, "DropFunction")),
                 30, what="the items through the mappings started on their own")
        time.sleep(1.0)  # four more polls: a repeat would show by now
        assert keys_of(g, "KeepFunction") == early + late  # TRIM_HORIZON: from the stream's start, each once
        dropped = keys_of(g, "DropFunction")  # LATEST: from when it started (some early ones may follow that), each once
        assert len(dropped) == len(set(dropped)) and dropped[-2:] == late and set(dropped) <= set(early + late)
        assert not lines_with(g, "NOT RUN after"), g.console.text()[-2000:]
        for fn in ("KeepFunction", "DropFunction", "FilterFunction"):
            assert len([ln for ln in lines_with(g, "(started on attempt") if f"-> {fn}:" in ln]) == 1
    finally:
        g.stop()


async def test_a_mapping_the_local_dynamodb_refused_starts_once_it_answers(copy_stack: Callable[[Path], Path], tmp_path: Path):
    """The poller over moto, with a real worker pool: at its start, DescribeTable fails (its table is not there, as
    after a DynamoDB reset). The mapping says NOT RUN with the error once; when the table is there, an attempt of
    its own starts it, one line, and what is written after reaches the function, once."""
    from parley_local.gateway.stream_events import StreamEventPoller
    from parley_local.gateway.template import load_stack
    from parley_local.gateway.worker_pool import LambdaRuntime
    from parley_local.local_aws.services import LocalAws

    records = tmp_path / "records"
    stack = load_stack(copy_stack(STREAM_TEMPLATE), f"refused{time.time_ns() % 10**6}", {"RecordDir": str(records)})
    keep = next(source for source in stack.stream_sources if source.function == "KeepFunction")
    aws = await asyncio.to_thread(LocalAws.start, "moto", moto_mode="thread")
    console = ListConsole()
    runtime = LambdaRuntime(stack.functions, aws.env(), console, idle_timeout_s=0)
    poller = StreamEventPoller([keep], {t.logical_id: t.name for t in stack.tables}, aws.dynamodb_endpoint, runtime, console,
                               restart_delays_s=(0.3,) * 20)

    async def until(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + console.text()[-2000:]
            await asyncio.sleep(0.05)

    def keys() -> list[str]:
        return [k for path in sorted(records.glob("*.OTHER.*.json"), key=lambda p: int(p.name.split(".")[2]))
                for k in json.loads(path.read_text())["keys"]]

    try:
        await poller.start()
        refused = [line for line in console.lines if "KeepFunctionEverything NOT RUN yet: " in line]
        assert len(refused) == 1 and "ResourceNotFoundException" in refused[0], console.text()
        assert "trying again 20 time(s) over 6 s" in refused[0]
        await asyncio.sleep(0.7)  # two more attempts, the same error: no line
        assert len(console.lines) == 1, console.text()
        await asyncio.to_thread(aws.create_tables, stack.tables)
        await until(lambda: [line for line in console.lines if "(started on attempt" in line], "the mapping to start on its own")
        ddb = aws_client("dynamodb", aws.dynamodb_endpoint)
        for key in ("a#0", "b#1"):
            await asyncio.to_thread(ddb.put_item, TableName=stack.tables[0].name, Item={"pk": {"S": key}})
        await until(lambda: keys() == ["a#0", "b#1"] or len(keys()) > 2, "the items through the started mapping")
        await asyncio.sleep(1.0)  # four more polls: a repeat would show by now
        assert keys() == ["a#0", "b#1"]
        assert len([line for line in console.lines if "KeepFunctionEverything" in line or "-> KeepFunction" in line]) == 2
    finally:
        await poller.stop()
        await runtime.close()
        await asyncio.to_thread(aws.stop)


def test_a_table_created_again_is_read_on_its_new_stream(stream_gw: RunningGateway, stream_stack: Path):
    """A table deleted while `parley dev` runs (to start its data afresh) is created again by the next
    redeploy, with a stream of its own: the mappings on it start on that stream, as a mapping whose
    StreamArn changed does on AWS, and its records are delivered (before, they read the old stream forever)."""
    g = stream_gw
    ddb = aws_client("dynamodb", g.gateway.aws.dynamodb_endpoint)
    table = g.stack.tables[0].name
    ddb.put_item(TableName=table, Item={"pk": {"S": "a#before"}})
    wait_for(lambda: keys_of(g, "KeepFunction") == ["a#before"], 30, what="the first item through the mapping")
    old_stream = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    ddb.delete_table(TableName=table)
    template = stream_stack / "template.yaml"
    template.write_text(template.read_text() + "\n# saved again\n")
    line = wait_for(lambda: next((line for line in g.console.lines if "DynamoDB stream mappings redeployed" in line), None), 30,
                    what="the mappings' redeploy line")
    assert "restarted on the table's new stream" in line and "-> KeepFunction" in line, line
    assert ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"] != old_stream
    ddb.put_item(TableName=table, Item={"pk": {"S": "a#after"}})
    wait_for(lambda: keys_of(g, "KeepFunction") == ["a#before", "a#after"], 30, what="the item written to the new table")
