"""The local AWS the functions see: moto for every service, and DynamoDB from DynamoDB Local
(default), moto (`--dynamodb moto`) or an endpoint the developer runs (`--dynamodb-endpoint`).

Why a composite: the functions get one set of `AWS_ENDPOINT_URL*` variables, and the gateway one
object to start, describe and stop, whichever DynamoDB serves them. moto and DynamoDB Local start
in parallel: each takes seconds, and the ready line waits for both.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .account import aws_client
from .dynamodb_local import DynamoDBLocal, DynamoDBLocalError
from .moto_services import EmbeddedMoto
from .tables import TableDefinition, create_tables

DYNAMODB_CHOICES = ("local", "moto")


@dataclass
class LocalAws:
    """The endpoints the functions use: `endpoint` (moto: SSM and the rest) and `dynamodb_endpoint`."""

    endpoint: str
    dynamodb_endpoint: str
    moto: EmbeddedMoto | None = None
    dynamodb_local: DynamoDBLocal | None = None

    @classmethod
    def start(cls, dynamodb: str = "local", dynamodb_endpoint: str | None = None, data_dir: Path | None = None,
              moto_mode: str = "subprocess") -> "LocalAws":
        """Start moto and, unless DynamoDB is moto's or external, DynamoDB Local (blocking: call it from a thread)."""
        if dynamodb not in DYNAMODB_CHOICES:
            raise ValueError(f"unknown DynamoDB {dynamodb!r}: expected one of {DYNAMODB_CHOICES}")
        if dynamodb_endpoint or dynamodb == "moto":
            moto = EmbeddedMoto.start(moto_mode)
            return cls(moto.endpoint, dynamodb_endpoint or moto.endpoint, moto=moto)
        with ThreadPoolExecutor(2, thread_name_prefix="local-aws") as pool:
            moto_f = pool.submit(EmbeddedMoto.start, moto_mode)
            ddb_f = pool.submit(DynamoDBLocal.start, data_dir)
            moto_err, ddb_err = moto_f.exception(), ddb_f.exception()
        if moto_err or ddb_err:
            for fut, err in ((moto_f, moto_err), (ddb_f, ddb_err)):
                if err is None:
                    fut.result().stop()
            raise ddb_err or moto_err  # type: ignore[misc]
        moto, ddb = moto_f.result(), ddb_f.result()
        return cls(moto.endpoint, ddb.endpoint, moto=moto, dynamodb_local=ddb)

    @property
    def pid(self) -> int | None:
        """moto's subprocess pid (None in thread mode)."""
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
        for service in (self.dynamodb_local, self.moto):
            if service is not None:
                service.stop()
        self.dynamodb_local = self.moto = None

    def client(self, service: str) -> Any:
        return aws_client(service, self.dynamodb_endpoint if service == "dynamodb" else self.endpoint)

    def env(self) -> dict[str, str]:
        """The standard boto3 endpoint variables for the functions' environment."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint}

    def create_tables(self, tables: Sequence[TableDefinition]) -> list[str]:
        """Create the template's tables (missing ones only) and enable TTL; returns the names created.

        A DynamoDB Local data folder it cannot read is reported with the fix; nothing is deleted.
        """
        try:
            return create_tables(self.client("dynamodb"), tables)
        except Exception as exc:  # botocore's ClientError / connection errors: one line for the developer
            ddb = self.dynamodb_local
            if ddb is None or ddb.data_dir is None:
                raise
            raise DynamoDBLocalError(
                f"DynamoDB Local cannot use the data in {ddb.data_dir} ({type(exc).__name__}: {str(exc)[:200]}): "
                "move that folder away (nothing was deleted) and start again, or start clean with `make dev FRESH=1`"
            ) from None
