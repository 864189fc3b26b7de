"""Powertools Logger, Metrics and Tracer, configured once, with tokens redacted from every log line."""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

# A JWT (three base64url parts, the first starting with `{"`) or a `token=` query value.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*")
_TOKEN_PARAM = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Remove bearer material from a log line: a leaked token is a session anyone can replay."""
    return _TOKEN_PARAM.sub(r"\1" + REDACTED, _JWT.sub(REDACTED, text))


def _serialize(log: dict[str, Any]) -> str:
    return redact(json.dumps(log, default=str, separators=(",", ":"), ensure_ascii=False))


logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "parley"), json_serializer=_serialize)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Parley"))
tracer = Tracer(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "parley"))

# Requests that broadcast nothing have no metrics; that is normal, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def count(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
