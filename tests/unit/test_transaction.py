"""Transactions name their refused items by tag, and a conflict with another transaction is sent again
(nothing of a cancelled transaction was applied, so a retry cannot drift a counter)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from surge.errors import Unavailable
from surge.store.aws import Transaction


def _client() -> object:
    return boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _transaction() -> Transaction:
    transaction = Transaction("Test")
    for tag in ("job", "counter"):
        transaction.add(
            tag,
            "Update",
            {
                "TableName": "t",
                "Key": {"pk": {"S": tag}},
                "UpdateExpression": "SET a = :a",
                "ExpressionAttributeValues": {":a": {"N": "1"}},
                "ConditionExpression": "b = :a",
            },
        )
    return transaction


def _cancelled(stubber: Stubber, *codes: str, item: dict[str, object] | None = None) -> None:
    reasons = [
        {"Code": code, **({"Item": item} if item and code == "ConditionalCheckFailed" else {})} for code in codes
    ]
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="cancelled",
        response_meta={},
        modeled_fields={"CancellationReasons": reasons},
    )


def test_a_conflicted_transaction_is_sent_again_until_it_applies() -> None:
    client = _client()
    with Stubber(client) as stubber:  # type: ignore[arg-type]
        _cancelled(stubber, "None", "TransactionConflict")
        _cancelled(stubber, "TransactionConflict", "None")
        stubber.add_response("transact_write_items", {})
        assert _transaction().commit(client) is None  # type: ignore[arg-type]
        stubber.assert_no_pending_responses()


def test_refused_items_are_named_by_tag_with_their_old_item() -> None:
    client = _client()
    with Stubber(client) as stubber:  # type: ignore[arg-type]
        _cancelled(stubber, "None", "ConditionalCheckFailed", item={"waiting": {"N": "7"}})
        refused = _transaction().commit(client)  # type: ignore[arg-type]
    assert refused is not None and refused.tags == {"counter": {"waiting": {"N": "7"}}}


def test_a_transaction_that_keeps_conflicting_fails_as_unavailable() -> None:
    client = _client()
    with Stubber(client) as stubber:  # type: ignore[arg-type]
        for _ in range(20):
            _cancelled(stubber, "TransactionConflict", "None")
        with pytest.raises(Unavailable):
            _transaction().commit(client)  # type: ignore[arg-type]


def test_items_go_in_groups_within_a_requests_budget_and_count_in_order() -> None:
    """What one DynamoDB request may carry: a group never passes the budget (an item over it goes alone)
    nor the count, and the order is kept."""
    from surge.store.aws import in_groups

    sizes = [3, 3, 3, 9, 1, 1, 1, 1]
    groups = in_groups(list(range(len(sizes))), lambda i: sizes[i], budget=6, most=3)
    assert groups == [[0, 1], [2], [3], [4, 5, 6], [7]]
    assert in_groups([], len, budget=6) == []
