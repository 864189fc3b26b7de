"""The local AWS the functions see: DynamoDB from DynamoDB Local (default), moto (`--dynamodb moto`)
or an endpoint the developer runs (`--dynamodb-endpoint`); moto's server for any other service,
started on the first call that needs it.

Why a composite: the gateway gets one object to start, describe and stop, whichever DynamoDB
serves the functions. SSM, Lambda `Invoke` and `@connections` are the gateway's own
(`parameter_store`, `gateway/lambda_invoke_api`, `gateway/connections_api`); everything else a
function might call (STS, S3, SQS, ...) reaches the gateway's port through `AWS_ENDPOINT_URL` and
is forwarded (`other_services`). Why moto starts only on demand: Parley's functions never call
such a service, and moto's process held 237 MiB of the 391 MiB `parley dev` took before its first
client, and a second of the ready line.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .account import aws_client
from .dynamodb_local import DynamoDBLocal, DynamoDBLocalError
from .moto_services import EmbeddedMoto
from .tables import Report, TableDefinition, TableUpgradeError, create_tables

DYNAMODB_CHOICES = ("local", "moto")


@dataclass
class LocalAws:
    """DynamoDB's endpoint for the functions, and moto once something asked for it."""

    dynamodb_endpoint: str
    moto: EmbeddedMoto | None = None
    dynamodb_local: DynamoDBLocal | None = None
    moto_mode: str = "subprocess"
    _moto_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = False

    @classmethod
    def start(cls, dynamodb: str = "local", dynamodb_endpoint: str | None = None, data_dir: Path | None = None,
              moto_mode: str = "subprocess") -> "LocalAws":
        """Start the DynamoDB the functions use, unless it is external (blocking: call it from a thread)."""
        if dynamodb not in DYNAMODB_CHOICES:
            raise ValueError(f"unknown DynamoDB {dynamodb!r}: expected one of {DYNAMODB_CHOICES}")
        if dynamodb_endpoint:
            return cls(dynamodb_endpoint, moto_mode=moto_mode)
        if dynamodb == "moto":
            moto = EmbeddedMoto.start(moto_mode)
            return cls(moto.endpoint, moto=moto, moto_mode=moto_mode)
        ddb = DynamoDBLocal.start(data_dir)
        return cls(ddb.endpoint, dynamodb_local=ddb, moto_mode=moto_mode)

    def moto_endpoint(self) -> str:
        """moto's endpoint, starting its server on the first call (blocking: call it from a thread)."""
        with self._moto_lock:
            if self._stopped:
                raise RuntimeError("the local AWS services are stopping")
            if self.moto is None:
                self.moto = EmbeddedMoto.start(self.moto_mode)
            return self.moto.endpoint

    @property
    def pid(self) -> int | None:
        """moto's subprocess pid (None when it has not started, or in thread mode)."""
        return self.moto.pid if self.moto else None

    def describe_dynamodb(self) -> str:
        """What serves DynamoDB, for the banner."""
        ddb = self.dynamodb_local
        if ddb is not None:
            kept = f"data in {ddb.data_dir}: kept between runs" if ddb.data_dir else "in memory: starts empty, gone on exit"
            return f"DynamoDB Local, java pid {ddb.pid}, {kept}"
        if self.moto is not None and self.dynamodb_endpoint == self.moto.endpoint:
            return f"moto, subprocess pid {self.moto.pid}" if self.moto.pid else "moto, in-process"
        return "external"

    def stop(self) -> None:
        with self._moto_lock:
            self._stopped = True
            for service in (self.dynamodb_local, self.moto):
                if service is not None:
                    service.stop()
            self.dynamodb_local = self.moto = None

    def client(self, service: str) -> Any:
        """A boto3 client for DynamoDB (the gateway's tables) or, starting it if need be, moto."""
        return aws_client(service, self.dynamodb_endpoint if service == "dynamodb" else self.moto_endpoint())

    def env(self) -> dict[str, str]:
        """The standard boto3 endpoint variable for DynamoDB (the gateway adds its own services')."""
        return {"AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint}

    def create_tables(self, tables: Sequence[TableDefinition], report: Report | None = None, rebuild: bool = True) -> list[str]:
        """Create the template's missing tables, bring kept ones up to it, enable TTL; returns the names created.

        A table UpdateTable cannot change is rebuilt, items kept, with its backup in the DynamoDB Local data
        folder, when `rebuild` (`parley dev`'s start; not a redeploy while functions write). A data folder it
        cannot read is reported with the fix; nothing is deleted.
        """
        ddb = self.dynamodb_local
        backup_dir = ddb.data_dir if rebuild and ddb is not None else None
        try:
            return create_tables(self.client("dynamodb"), tables, backup_dir, report)
        except TableUpgradeError:  # its own line names the fix
            raise
        except Exception as exc:  # botocore's ClientError / connection errors: one line for the developer
            if ddb is None or ddb.data_dir is None:
                raise
            raise DynamoDBLocalError(
                f"DynamoDB Local cannot use the data in {ddb.data_dir} ({type(exc).__name__}: {str(exc)[:200]}): "
                "move that folder away (nothing was deleted) and start again, or start clean with `make dev FRESH=1`"
            ) from None
