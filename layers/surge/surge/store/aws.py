"""The DynamoDB client, AWS error translation, and transactions whose refused items are named by tag."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from surge.errors import Unavailable
from surge.settings import Settings

T = TypeVar("T")

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=128,
    connect_timeout=3,
    read_timeout=10,
)


def client_config(settings: Settings) -> Config:
    """The SDK's settings for every AWS client of a process: connections sized for its threads."""
    return BOTO_CONFIG.merge(Config(max_pool_connections=settings.boto_max_pool_connections))


TRANSACTION_LIMIT = 100
TRANSACTION_BYTES = 3_800_000
"""DynamoDB refuses a transaction whose items add up to over 4 MB (a batch's results can: 16 of 280 kB);
a margin under it for the estimate."""
CONFLICT_RETRIES = 8
"""How often a transaction cancelled only by `TransactionConflict` (another transaction touched one of
its items at the same moment: real DynamoDB does this on hot items) is sent again. Nothing of a
cancelled transaction was applied, so a retry cannot drift a counter."""


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Translate a failed AWS call into `Unavailable` (the caller's request changed nothing).

    Condition failures pass through as `ClientError`: `Transaction.commit` and the callers of single
    conditional writes decide what a refused condition means.
    """
    try:
        yield
    except ClientError as error:
        if error_code(error) in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            raise
        raise Unavailable(f"{what} failed; please try again shortly.") from error
    except BotoCoreError as error:
        raise Unavailable(f"{what} failed; please try again shortly.") from error


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def in_groups(items: Sequence[T], size: Callable[[T], int], budget: int, most: int | None = None) -> list[list[T]]:
    """`items` in order, in groups of at most `most` whose `size`s add up to at most `budget` (an item over
    it goes alone): what one request of DynamoDB's may carry (a transaction's 4 MB and 100 items, an
    update expression's 4 KB)."""
    groups: list[list[T]] = []
    used = 0
    for item in items:
        if not groups or used + size(item) > budget or len(groups[-1]) == most:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += size(item)
    return groups


def n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def s(value: str) -> dict[str, str]:
    return {"S": value}


class Clock:
    """Strictly increasing nanosecond stamps within a process, so a writer's records keep their order."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


CLOCK = Clock()


class Table:
    """Shared by the store's concept adapters: the settings and one lazily built client."""

    def __init__(self, settings: Settings, client: DynamoDBClient | None = None) -> None:
        self.settings = settings
        if client is not None:
            self.__dict__["client"] = client

    @cached_property
    def client(self) -> DynamoDBClient:
        return boto3.client("dynamodb", config=client_config(self.settings))

    def query(self, what: str, *, paginate: bool = True, **kwargs: Any) -> list[dict[str, Any]]:
        """The items of one query: every page, or only the first when `paginate` is False (a `Limit`)."""
        items: list[dict[str, Any]] = []
        while True:
            with aws_errors(what):
                response: Any = self.client.query(**kwargs)
            items.extend(response.get("Items", []))
            if not paginate or "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def scan(self, what: str, **kwargs: Any) -> list[dict[str, Any]]:
        """The items of a whole-table scan (every page)."""
        items: list[dict[str, Any]] = []
        while True:
            with aws_errors(what):
                response: Any = self.client.scan(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def state_partition(self, what: str, pk: str, **extra: Any) -> list[dict[str, Any]]:
        """The items of one partition of the state table (the first page only when `Limit` is given)."""
        return self.query(
            what,
            paginate="Limit" not in extra,
            TableName=self.settings.state_table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": s(pk)},
            **extra,
        )


class Conflicted(Unavailable):
    """A transaction kept meeting concurrent ones on its items: nothing of it was applied."""


@dataclass(frozen=True)
class Refused:
    """The outcome of a cancelled transaction: which tags a condition refused, with their old items."""

    tags: dict[str, dict[str, Any] | None]


@dataclass
class Transaction:
    """Transaction items, each with a tag; `commit` names the tags whose condition failed.

    Callers never decode `CancellationReasons` by position: the index arithmetic lives here once.
    """

    what: str
    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, tag: str, kind: str, operation: dict[str, Any]) -> None:
        if "ConditionExpression" in operation:
            operation = {**operation, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        self.items.append((tag, {kind: operation}))

    def commit(
        self, client: DynamoDBClient, token: str | None = None, conflict_retries: int = CONFLICT_RETRIES
    ) -> Refused | None:
        """Apply every item or none. Returns None when applied, else the refused tags (their old items,
        None where the item did not exist). Conflicts with other transactions are retried here up to
        `conflict_retries` times, then raise `Conflicted`; any other failure raises `Unavailable`."""
        kwargs: dict[str, Any] = {"TransactItems": [item for _, item in self.items]}
        if token:
            kwargs["ClientRequestToken"] = token
        delay = 0.01
        for attempt in range(conflict_retries + 1):
            try:
                with aws_errors(self.what):
                    client.transact_write_items(**kwargs)
                return None
            except ClientError as error:
                reasons = error.response.get("CancellationReasons", [])
                codes = [reason.get("Code") for reason in reasons]
                if error_code(error) != "TransactionCanceledException" or len(codes) != len(self.items):
                    raise Unavailable(f"{self.what} failed; please try again shortly.") from error
                refused: dict[str, dict[str, Any] | None] = {
                    tag: dict(reason["Item"]) if reason.get("Item") else None
                    for (tag, _), reason in zip(self.items, reasons, strict=True)
                    if reason.get("Code") == "ConditionalCheckFailed"
                }
                if refused:
                    return Refused(refused)
                if "TransactionConflict" not in codes:
                    raise Unavailable(f"{self.what} failed; please try again shortly.") from error
                if attempt == conflict_retries:
                    raise Conflicted(f"{self.what} failed; please try again shortly.") from error
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)
        raise Unavailable(f"{self.what} failed; please try again shortly.")
