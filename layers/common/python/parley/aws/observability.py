"""Powertools Logger, Metrics and Tracer, configured once, with tokens redacted from every log line."""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

# A JWT (three base64url parts, the first starting with `{"`) or a `token=` query value.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*")
_TOKEN_PARAM = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Remove bearer material from a log line: a leaked token is a session anyone can replay.

    The case-insensitive `token=` scan costs about ten times the `lower()` check that skips it on
    the lines (nearly all) that have no `token=`; it runs on every line the functions log."""
    text = _JWT.sub(REDACTED, text)
    return _TOKEN_PARAM.sub(r"\1" + REDACTED, text) if "token=" in text.lower() else text


def _serialize(log: dict[str, Any]) -> str:
    return redact(json.dumps(log, default=str, separators=(",", ":"), ensure_ascii=False))


_SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "parley")
logger = Logger(service=_SERVICE, json_serializer=_serialize)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Parley"))

# The X-Ray SDK (with wrapt and asyncio) adds about 100 ms to every cold start, and X-Ray bills
# per trace, i.e. per chat message. So the Tracer exists only where tracing is switched on
# (template parameter TracingMode=Active clears POWERTOOLS_TRACE_DISABLED).
TRACING = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() not in ("1", "true", "yes")
tracer: Tracer | None = Tracer(service=_SERVICE) if TRACING else None

# Requests that broadcast nothing have no metrics; that is normal, not worth a warning per call.
warnings.filterwarnings("ignore", message="No application metrics to publish")


def count(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def instrumented(handler: Handler) -> Handler:
    """Powertools around every route. The correlation id (the event's `requestId`) is appended by each
    handler from the event it parsed anyway: the Logger's `correlation_id_path` runs a JMESPath query
    per invocation, half of this wrapper's CPU (benchmarks/handler_cpu_bench.py)."""
    traced = tracer.capture_lambda_handler(handler) if tracer is not None else handler
    flushed = metrics.log_metrics(traced)
    return logger.inject_lambda_context(clear_state=True)(flushed)
