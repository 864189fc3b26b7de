"""The fake AWS account the local stack lives in: region, account id, credentials, and a client for it.

Why one module: the template resolver (ARNs), the Lambda workers (their environment) and the
local services (their clients) must all agree on these values.
"""

from __future__ import annotations

from typing import Any

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIALOCALGATEWAYKEY0",
    "AWS_SECRET_ACCESS_KEY": "local-gateway-fake-secret-access-key",
    "AWS_SESSION_TOKEN": "local-gateway-fake-session-token",
}


def aws_client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for a local endpoint, with the gateway's fake credentials."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
    )


def load_client_models(services: tuple[str, ...]) -> None:
    """Import boto3 and load these services' models into its default session, so that the next
    `aws_client` for them is quick (about 0.3 s of `parley dev`'s start, done while java starts)."""
    for service in services:
        aws_client(service, "http://127.0.0.1:9")  # no request is made
