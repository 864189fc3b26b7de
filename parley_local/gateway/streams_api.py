"""The three DynamoDB Streams calls a local event source mapping makes, over the gateway's own event loop.

Why not boto3: a mapping polls each shard four times a second, as Lambda does, for as long as
`parley dev` runs, mostly finding nothing. Through botocore each poll cost the gateway about 1 ms
of CPU plus a thread hop (signing, the endpoint resolver, its event hooks, urllib3), and the polls
were three quarters of an idle gateway's CPU. These are plain JSON-protocol POSTs to the local
DynamoDB (AWS's DynamoDB Local or moto), which check no signature: the request carries the
`Authorization` form and credential scope an SDK would send, so moto reads the Region from it.

What the answers carry is what the wire carries: binary attributes stay base64 text and
`ApproximateCreationDateTime` stays epoch seconds, the forms a Lambda event uses.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp

from ..local_aws.account import FAKE_CREDENTIALS, REGION

TARGET_PREFIX = "DynamoDBStreams_20120810."
CALL_TIMEOUT_S = 10.0  # a local call; a hung DynamoDB Local must not hang the mapping for ever


class StreamsError(Exception):
    """An error answer: `code` is the exception's short name (e.g. `TrimmedDataAccessException`)."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.code = code


class StreamsApi:
    """DescribeStream, GetShardIterator and GetRecords against one local endpoint; one connection pool."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/") + "/"
        self._session: aiohttp.ClientSession | None = None

    async def describe_stream(self, stream_arn: str, exclusive_start_shard_id: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"StreamArn": stream_arn}
        if exclusive_start_shard_id:
            params["ExclusiveStartShardId"] = exclusive_start_shard_id
        return (await self._call("DescribeStream", params))["StreamDescription"]

    async def get_shard_iterator(self, stream_arn: str, shard_id: str, iterator_type: str, sequence_number: str | None = None) -> str:
        params = {"StreamArn": stream_arn, "ShardId": shard_id, "ShardIteratorType": iterator_type}
        if sequence_number is not None:
            params["SequenceNumber"] = sequence_number
        return str((await self._call("GetShardIterator", params))["ShardIterator"])

    async def get_records(self, shard_iterator: str, limit: int = 1000) -> dict[str, Any]:
        return await self._call("GetRecords", {"ShardIterator": shard_iterator, "Limit": limit})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if self._session is None:  # made on first use: a session belongs to the running loop
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S))
        async with self._session.post(self.endpoint, data=json.dumps(params), headers=_headers(operation)) as response:
            body = await response.read()
            status = response.status
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {}
        if status != 200 or not isinstance(answer, dict):
            raise StreamsError(error_code(answer), str(answer.get("message") or answer.get("Message") or body[:200]), status)
        return answer


def error_code(answer: Any) -> str:
    """`com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException` (or a bare name) -> `TrimmedDataAccessException`."""
    kind = answer.get("__type", "") if isinstance(answer, dict) else ""
    return str(kind).rsplit("#", 1)[-1] or "UnknownError"


def _headers(operation: str) -> dict[str, str]:
    day = time.strftime("%Y%m%d", time.gmtime())
    return {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": TARGET_PREFIX + operation,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={FAKE_CREDENTIALS['AWS_ACCESS_KEY_ID']}/{day}/{REGION}/dynamodb/aws4_request, "
                         "SignedHeaders=content-type;host;x-amz-target, Signature=0",
    }
