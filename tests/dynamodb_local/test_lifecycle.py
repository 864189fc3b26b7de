"""`parley dev` with DynamoDB Local, as a developer runs it: stopped with the gateway, never restarted
silently, data kept with `--dynamodb-data`, and one clear line (nothing deleted) for bad input."""

from __future__ import annotations

import copy
import hashlib
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from parley_local.gateway.template import load_stack
from parley_local.local_aws.account import aws_client
from parley_local.local_aws.dynamodb_local import DynamoDBLocal
from parley_local.local_aws.tables import create_tables
from parley_testing.dev_process import DevProcess
from parley_testing.gateway_thread import SMALL_TEMPLATE
from parley_testing.template import TEMPLATE
from parley_testing.waiting import wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
JAVA_PID = re.compile(r"DynamoDB:\s+(http://\S+) \(DynamoDB Local, java pid (\d+), (.*)\)")


def small_dev(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> DevProcess:
    return DevProcess(["--template", str(SMALL_TEMPLATE), "--port", "0", "--no-prewarm",
                       "--parameter-overrides", f"RecordDir={tmp_path / 'records'}", *extra], env=env)


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def errors(dev: DevProcess) -> list[str]:
    return [line for line in dev.output().splitlines() if line.startswith("parley dev: ")]


def test_ctrl_c_stops_dynamodb_local_with_the_gateway(tmp_path: Path, dynamodb_local: Any):
    dev = small_dev(tmp_path)
    try:
        m = dev.read_until(JAVA_PID, 120)
        java = int(m.group(2))
        assert m.group(3).startswith("in memory")
        dev.wait_ready(60)
        assert alive(java)
        dev.interrupt()
        assert dev.proc.wait(30) == 0
        wait_for(lambda: not alive(java), 10, what="java to exit with parley dev")
    finally:
        dev.kill()


def test_dynamodb_local_dying_stops_parley_dev_with_an_error(tmp_path: Path, dynamodb_local: Any):
    dev = small_dev(tmp_path)
    try:
        java = int(dev.read_until(JAVA_PID, 120).group(2))
        dev.wait_ready(60)
        os.kill(java, signal.SIGKILL)
        assert dev.proc.wait(30) == 1  # not restarted silently
        [line] = errors(dev)
        assert f"DynamoDB Local (java pid {java}) exited" in line and "Start parley dev again" in line
    finally:
        dev.kill()


def test_data_survives_a_restart_with_dynamodb_data(tmp_path: Path, dynamodb_local: Any):
    data = tmp_path / "ddb"
    for run in range(2):
        dev = small_dev(tmp_path, "--dynamodb-data", str(data))
        try:
            m = dev.read_until(JAVA_PID, 120)
            assert m.group(3) == f"data in {data}: kept between runs"
            dev.wait_ready(60)
            ddb = aws_client("dynamodb", m.group(1))
            table, key = "kept", {"pk": {"S": "kept across restarts"}}
            if run == 0:
                ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                 AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
                ddb.put_item(TableName=table, Item=key)
            else:
                assert ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"] == key
            dev.interrupt()
            assert dev.proc.wait(30) == 0
        finally:
            dev.kill()


def test_missing_java_is_one_line_naming_the_fix(tmp_path: Path):
    dev = small_dev(tmp_path, env={"PATH": str(tmp_path), "JAVA_HOME": ""})
    try:
        assert dev.proc.wait(60) == 1
        [line] = errors(dev)
        assert "java not found" in line and "apt-get install default-jre-headless" in line and "--dynamodb moto" in line
        assert "Traceback" not in dev.output()
    finally:
        dev.kill()


def test_unreadable_data_is_reported_and_kept(tmp_path: Path, dynamodb_local: Any):
    data = tmp_path / "ddb"
    data.mkdir()
    db = data / "shared-local-instance.db"
    db.write_bytes(b"not a database " * 400)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    dev = small_dev(tmp_path, "--dynamodb-data", str(data))
    try:
        assert dev.proc.wait(120) == 1
        [line] = errors(dev)
        assert f"cannot use the data in {data}" in line and "nothing was deleted" in line and "FRESH=1" in line
        assert "Traceback" not in dev.output()
    finally:
        dev.kill()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and sorted(data.iterdir()) == [db]


def test_dynamodb_data_that_is_a_file_is_refused(tmp_path: Path, dynamodb_local: Any):
    path = tmp_path / "a-file"
    path.write_text("mine")
    dev = small_dev(tmp_path, "--dynamodb-data", str(path))
    try:
        assert dev.proc.wait(60) == 1
        [line] = errors(dev)
        assert "is a file, not a folder" in line
    finally:
        dev.kill()
    assert path.read_text() == "mine"


def test_port_in_use_is_one_line_naming_the_fix(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dev = DevProcess(["--template", str(SMALL_TEMPLATE), "--port", str(port), "--no-prewarm", "--dynamodb", "moto",
                          "--parameter-overrides", f"RecordDir={tmp_path}"])
        try:
            assert dev.proc.wait(60) == 1
            [line] = errors(dev)
            assert f"port {port} on 127.0.0.1 is already in use" in line and f"PORT={port + 1}" in line
            assert "Traceback" not in dev.output()
        finally:
            dev.kill()


def test_a_data_folder_from_before_an_index_starts_with_the_index_and_its_history(tmp_path: Path, dynamodb_local: Any):
    """`make dev` on a data folder whose messages table predates ByChange: one line says the index was added,
    the ready line comes, and the old messages are there and in the index."""
    data = tmp_path / "ddb"
    tables = copy.deepcopy(load_stack(TEMPLATE, "parley").tables)
    [messages] = [t for t in tables if t.logical_id == "MessagesTable"]
    del messages.create_args["GlobalSecondaryIndexes"]
    messages.create_args["AttributeDefinitions"] = [a for a in messages.create_args["AttributeDefinitions"]
                                                     if a["AttributeName"] != "changedAtMs"]
    old = DynamoDBLocal.start(data)
    try:
        ddb = aws_client("dynamodb", old.endpoint)
        create_tables(ddb, tables)
        edited = {"roomId": {"S": "lobby"}, "messageId": {"S": "m1"}, "changedAtMs": {"N": "5"}, "text": {"S": "hi"}}
        ddb.put_item(TableName=messages.name, Item=edited)
        ddb.put_item(TableName=messages.name, Item={"roomId": {"S": "lobby"}, "messageId": {"S": "m2"}})
    finally:
        old.stop()
    dev = DevProcess(["--port", "0", "--no-prewarm", "--dynamodb-data", str(data)])
    try:
        dev.wait_ready(120)
        assert f"table {messages.name} gained index ByChange in place: every item kept" in dev.output()
        ddb = aws_client("dynamodb", dev.dynamodb_endpoint)
        assert ddb.query(TableName=messages.name, IndexName="ByChange", KeyConditionExpression="roomId = :r",
                         ExpressionAttributeValues={":r": {"S": "lobby"}})["Items"] == [edited]
        assert len(ddb.query(TableName=messages.name, KeyConditionExpression="roomId = :r",
                             ExpressionAttributeValues={":r": {"S": "lobby"}})["Items"]) == 2
        dev.interrupt()
        assert dev.proc.wait(30) == 0
    finally:
        dev.kill()
