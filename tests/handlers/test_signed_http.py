"""`SigV4Signer` against botocore's `SigV4Auth`: the same headers for the requests Parley signs,
and a stand-in `@connections` that checks every signature as AWS does (`parley_testing.sigv4_check`)."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.aws.management_api import ManagementApiSender
from parley.aws.signed_http import SigV4Signer
from parley.core.model import FanoutJob
from parley_testing.fake_connections_api import FakeConnectionsApi
from parley_testing.sigv4_check import signature_problem

AT = datetime.datetime(2026, 11, 29, 23, 59, 59, tzinfo=datetime.timezone.utc)
TEMPORARY = Credentials("ASIAEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2luX2VjE//session+token==")
LONG_TERM = Credentials("AKIAEXAMPLEKEY", "another/secret+key")


def botocore_headers(credentials: Credentials, service: str, region: str, method: str, url: str, body: bytes,
                     headers: dict[str, str], at: datetime.datetime = AT) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
    return dict(request.headers.items())


def ours(credentials: Credentials, service: str, region: str, method: str, url: str, body: bytes,
         headers: dict[str, str], at: datetime.datetime = AT) -> dict[str, str]:
    return SigV4Signer(credentials, service, region, now=lambda: at).headers(method, url, body, headers)


CASES = [  # what Parley signs: PostToConnection, DeleteConnection, an async Invoke; on AWS and on `parley dev`
    ("execute-api", "POST", "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/@connections/Zx9%2Bab%2Fc%3D",
     b'{"type":"chat_message","data":{"message":"h\xc3\xa9llo"}}', {"Content-Type": "application/json"}),
    ("execute-api", "DELETE", "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/@connections/Zx9%3D", b"", {}),
    ("execute-api", "POST", "http://127.0.0.1:3001/local/@connections/AbC%3D", b"{}", {"Content-Type": "application/json"}),
    ("execute-api", "POST", "https://chat.example.com:443/v1/%40connections/AbC%3D", b"{}", {"Content-Type": "application/json"}),
    ("execute-api", "POST", "http://[::1]:3001/local/@connections/AbC%3D", b"{}", {"Content-Type": "application/json"}),
    ("lambda", "POST", "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/parley-FanoutFunction-AbC123/invocations",
     b'{"roomId":"r","shard":3}', {"X-Amz-Invocation-Type": "Event", "Content-Type": "application/json"}),
    ("lambda", "POST", "http://127.0.0.1:3001/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af/invocations",
     b"{}", {"X-Amz-Invocation-Type": "Event", "Content-Type": "application/json", "User-Agent": "not  signed"}),
    ("execute-api", "POST", "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/@connections/AbC%3D", b"{}",
     {"Content-Type": " application/json;   charset=utf-8 "}),  # SigV4 trims and folds a signed value's spaces
]


@pytest.mark.parametrize("credentials", [TEMPORARY, LONG_TERM], ids=["temporary", "long-term"])
@pytest.mark.parametrize("service,method,url,body,headers", CASES)
def test_the_same_headers_as_botocore(credentials, service, method, url, body, headers):
    assert ours(credentials, service, "eu-west-1", method, url, body, headers) == \
        botocore_headers(credentials, service, "eu-west-1", method, url, body, headers)


@settings(max_examples=150, deadline=None)
@given(connection_id=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-", min_size=1, max_size=40),
       body=st.binary(max_size=300), stage=st.sampled_from(["prod", "local", "v1-beta", "Stage_2"]),
       at=st.datetimes(min_value=datetime.datetime(2020, 1, 1), max_value=datetime.datetime(2040, 1, 1),
                       timezones=st.just(datetime.timezone.utc)))
def test_any_connection_id_body_and_time_signs_as_botocore_does(connection_id, body, stage, at):
    from urllib.parse import quote

    url = f"https://abc123.execute-api.us-east-1.amazonaws.com/{stage}/@connections/{quote(connection_id, safe='')}"
    headers = {"Content-Type": "application/json"}
    assert ours(TEMPORARY, "execute-api", "us-east-1", "POST", url, body, headers, at) == \
        botocore_headers(TEMPORARY, "execute-api", "us-east-1", "POST", url, body, headers, at)


def test_the_signing_key_follows_the_day_and_rotated_credentials():
    """The key is cached per day: across midnight, and after the runtime rotates the credentials
    (botocore's refreshable credentials hand out new ones), the signature is still botocore's."""
    clock = [AT]
    rotating = mock.Mock()
    rotating.get_frozen_credentials.return_value = TEMPORARY.get_frozen_credentials()
    signer = SigV4Signer(rotating, "execute-api", "us-east-1", now=lambda: clock[0])
    url = "https://abc123.execute-api.us-east-1.amazonaws.com/prod/@connections/AbC%3D"
    steps = [(AT, TEMPORARY), (AT + datetime.timedelta(seconds=2), TEMPORARY), (AT + datetime.timedelta(seconds=3), LONG_TERM)]
    for at, credentials in steps:
        clock[0] = at
        rotating.get_frozen_credentials.return_value = credentials.get_frozen_credentials()
        assert signer.headers("POST", url, b"{}", {}) == botocore_headers(credentials, "execute-api", "us-east-1", "POST", url, b"{}", {}, at)


def test_a_url_with_a_query_is_refused_not_signed_wrongly():
    with pytest.raises(ValueError, match="without a query"):
        ours(TEMPORARY, "lambda", "us-east-1", "POST", "https://lambda.us-east-1.amazonaws.com/x/invocations?Qualifier=1", b"", {})


def test_the_check_catches_a_wrong_signature():
    """The stand-in's check is botocore's algorithm: a request signed for another path fails it."""
    url = "http://127.0.0.1:3001/local/@connections/AbC%3D"
    headers = SigV4Signer(TEMPORARY, "execute-api", "us-east-1").headers("POST", url, b"{}", {"Content-Type": "application/json"})
    headers["Host"] = "127.0.0.1:3001"
    assert signature_problem(TEMPORARY, "POST", url, headers, b"{}") is None
    assert "mismatch" in (signature_problem(TEMPORARY, "POST", url.replace("AbC", "XyZ"), headers, b"{}") or "")
    assert "mismatch" in (signature_problem(TEMPORARY, "POST", url, headers, b"{ }") or "")


def test_the_sender_signs_every_post_and_delete_as_aws_checks_them():
    api = FakeConnectionsApi(credentials=TEMPORARY).start()
    try:
        sender = ManagementApiSender(api.url, credentials=TEMPORARY, region="eu-west-1")
        ids = tuple(f"id{n}+/=" for n in range(40))
        result = sender.send(FanoutJob('{"type":"x","data":"ünïcode"}'.encode(), ids))
        assert sender.close("id0+/=")
        assert api.bad_signatures == []
        assert result.delivered == set(ids)
        wrong = ManagementApiSender(api.url, credentials=Credentials(TEMPORARY.access_key, "not-the-secret", TEMPORARY.token),
                                    region="eu-west-1")
        refused = wrong.send(FanoutJob(b"{}", ("id1+/=",)))
        assert refused.failed == {"id1+/=": "InvalidSignatureException"}  # a 403 is not retried
        assert len(api.bad_signatures) == 1
    finally:
        api.stop()
