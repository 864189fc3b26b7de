"""The mappings' own DynamoDB Streams calls, against moto and DynamoDB Local over real sockets: what they
read is what boto3 reads, in the forms a Lambda event carries, and an error answer keeps its type."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Iterator

import pytest

from parley_local.gateway.stream_events import _event_record
from parley_local.gateway.streams_api import StreamsApi, StreamsError, error_code
from parley_local.local_aws.account import aws_client
from parley_local.local_aws.services import LocalAws

BLOB = bytes(range(256))


@pytest.fixture(scope="module")
def streamed_table(stream_backend: str) -> Iterator[tuple[LocalAws, str]]:
    aws = LocalAws.start(stream_backend, moto_mode="thread")
    ddb = aws.client("dynamodb")
    name = f"streams-api-{time.time_ns() % 10**9}"
    ddb.create_table(TableName=name, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST",
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "blob": {"B": BLOB}, "n": {"N": "1.5"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "blob": {"B": b"\x00"}, "n": {"N": "2"}})
    try:
        yield aws, name
    finally:
        aws.stop()


def _with_boto3(aws: LocalAws, arn: str) -> list[dict]:
    streams = aws_client("dynamodbstreams", aws.dynamodb_endpoint)  # the table's own endpoint, as the mappings read it
    out = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        out += streams.get_records(ShardIterator=it, Limit=1000)["Records"]
    return out


async def _with_streams_api(api: StreamsApi, arn: str) -> list[dict]:
    out = []
    for shard in (await api.describe_stream(arn))["Shards"]:
        it = await api.get_shard_iterator(arn, shard["ShardId"], "TRIM_HORIZON")
        out += (await api.get_records(it, 1000))["Records"]
    return out


def test_the_records_read_are_boto3s_in_the_event_forms(streamed_table: tuple[LocalAws, str]):
    aws, name = streamed_table
    arn = aws.client("dynamodb").describe_table(TableName=name)["Table"]["LatestStreamArn"]
    expected = _with_boto3(aws, arn)

    async def read() -> list[dict]:
        api = StreamsApi(aws.dynamodb_endpoint)
        try:
            return await _with_streams_api(api, arn)
        finally:
            await api.close()

    records = [_event_record(r) for r in asyncio.run(read())]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"] == [r["eventName"] for r in expected]
    first, second = (r["dynamodb"] for r in records)
    assert first["NewImage"]["blob"] == {"B": base64.b64encode(BLOB).decode()}  # base64 text, as in a Lambda event
    assert second["OldImage"]["blob"] == first["NewImage"]["blob"] and second["NewImage"]["n"] == {"N": "2"}
    for got, want in zip(records, expected):
        assert got["dynamodb"]["SequenceNumber"] == want["dynamodb"]["SequenceNumber"]
        assert got["dynamodb"]["Keys"] == want["dynamodb"]["Keys"]
        created = got["dynamodb"]["ApproximateCreationDateTime"]
        assert isinstance(created, int) and created == int(want["dynamodb"]["ApproximateCreationDateTime"].timestamp())


def test_an_error_answer_keeps_its_type(streamed_table: tuple[LocalAws, str]):
    aws, name = streamed_table
    arn = aws.client("dynamodb").describe_table(TableName=name)["Table"]["LatestStreamArn"]

    async def unknown_stream() -> None:
        api = StreamsApi(aws.dynamodb_endpoint)
        try:
            await api.describe_stream(arn.replace(name, name + "-gone"))
        finally:
            await api.close()

    with pytest.raises(StreamsError) as raised:
        asyncio.run(unknown_stream())
    assert raised.value.code == "ResourceNotFoundException", raised.value


def test_error_codes_are_the_short_names():
    assert error_code({"__type": "com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException"}) == "TrimmedDataAccessException"
    assert error_code({"__type": "ExpiredIteratorException", "message": "x"}) == "ExpiredIteratorException"
    assert error_code({"message": "no type"}) == "UnknownError" and error_code("not json") == "UnknownError"
