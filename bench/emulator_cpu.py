"""Server CPU per AWS call of the local emulator (`surge_local.emulator`), the figures in its docstring.

Starts the emulator processes, provisions one table and one queue, makes sequential calls of each kind
the stack makes most (one client, one thread) and divides the emulator processes' CPU time
(user + system, from /proc) by the calls. SendMessage is measured at a queue depth of `--depth`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from surge_local.launcher import emulator_client_kwargs, free_port, wait_for_port

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def per_call_ms(pids: list[int], calls: int, call: Callable[[int], Any]) -> float:
    before = sum(cpu_s(pid) for pid in pids)
    for i in range(calls):
        call(i)
    return (sum(cpu_s(pid) for pid in pids) - before) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--depth", type=int, default=1000, help="messages already queued when SendMessage is timed")
    parser.add_argument("--fidelity", action="store_true")
    args = parser.parse_args()
    port = free_port()
    argv = [sys.executable, "-m", "surge_local.emulator", "--port", str(port)] + (["--fidelity"] * args.fidelity)
    server = subprocess.Popen(argv)
    try:
        wait_for_port(port, 30)
        config = Config(retries={"mode": "standard", "max_attempts": 1})
        kwargs: Any = emulator_client_kwargs(f"http://127.0.0.1:{port}")
        dynamodb = boto3.client("dynamodb", config=config, **kwargs)
        sqs = boto3.client("sqs", config=config, **kwargs)
        dynamodb.create_table(
            TableName="state",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk")],
        )
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        key = {"pk": {"S": "counters"}, "sk": {"S": "app"}}
        dynamodb.put_item(TableName="state", Item={**key, "waiting": {"N": "0"}})

        def transact(i: int) -> None:
            dynamodb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "state", "Item": {"pk": {"S": f"job#{i}"}, "sk": {"S": "job"}}}},
                    {
                        "Update": {
                            "TableName": "state",
                            "Key": key,
                            "UpdateExpression": "ADD waiting :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
            time.sleep(0.002 if args.fidelity else 0)  # below the one item's write cap

        for start in range(0, args.depth, 10):
            entries: Any = [{"Id": str(n), "MessageBody": "{}"} for n in range(start, min(start + 10, args.depth))]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        pids = [server.pid]
        figures = {
            "GetItem": per_call_ms(pids, args.calls, lambda _: dynamodb.get_item(TableName="state", Key=key)),
            "TransactWriteItems": per_call_ms(pids, args.calls, transact),
            f"SendMessage (depth {args.depth})": per_call_ms(
                pids, args.calls, lambda _: sqs.send_message(QueueUrl=url, MessageBody="{}")
            ),
        }
        for name, ms in figures.items():
            print(f"{name:32} {ms:6.2f} ms server CPU per call")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
