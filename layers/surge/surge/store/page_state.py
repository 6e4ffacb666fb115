"""A Gradio session's `gr.State` values, kept between its calls on any worker.

Gradio keeps them in its one process (`SessionState`); here each session has one item of the state table,
`gstate#<session hash>` / `state`, with one attribute per state component (`c<block id>`: the value,
pickled; `t<block id>`: when it was written, for `gr.State(time_to_live=)`). A call reads the item once
(strongly consistent) when its event reads a state, and writes back only the states the call changed
(one `UpdateItem`), so two events of one session that write different states never undo each other.
Only workers write these items and unpickle them (no other role of the template may write `gstate#*`
keys): a value is unpickled only if a worker pickled it. An item expires `STATE_TTL_S` after its last
write, as Gradio drops a closed session's state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from surge.errors import Error
from surge.store.aws import Table, aws_errors, error_code, n, s

STATE_TTL_S = 24 * 3600
STATE_LIMIT_BYTES = 350_000
"""A session's states share one DynamoDB item (at most 400 KB)."""


def _key(session_hash: str) -> dict[str, Any]:
    return {"pk": s(f"gstate#{session_hash}"), "sk": s("state")}


class PageStateStore(Table):
    def load(self, session_hash: str, lives: Mapping[int, float] | None = None) -> dict[int, bytes]:
        """The session's kept states by block id, pickled (empty: none written yet). A state with a time
        to live (`lives`: block id → seconds, `gr.State(time_to_live=)`) last written longer ago than
        that is left out, as Gradio drops it: the call sees the state's initial value."""
        with aws_errors("Reading the session's state"):
            response: Any = self.client.get_item(
                TableName=self.settings.state_table_name, Key=_key(session_hash), ConsistentRead=True
            )
        item = response.get("Item") or {}
        now = time.time()
        kept: dict[int, bytes] = {}
        for name, value in item.items():
            if name[0] != "c" or "B" not in value:
                continue
            block_id = int(name[1:])
            life = (lives or {}).get(block_id)
            written = item.get(f"t{block_id}", {}).get("N")
            if life is not None and written is not None and now - float(written) > life:
                continue
            kept[block_id] = value["B"]
        return kept

    def save(self, session_hash: str, pickled: dict[int, bytes]) -> None:
        """Keep these states of the session (pickled; the session's other states stay as they are)."""
        if not pickled:
            return
        size = sum(len(value) for value in pickled.values())
        if size > STATE_LIMIT_BYTES:
            raise Error(too_large(size))
        names = {f"#c{block_id}": f"c{block_id}" for block_id in pickled}
        names.update({f"#t{block_id}": f"t{block_id}" for block_id in pickled})
        values = {f":c{block_id}": {"B": value} for block_id, value in pickled.items()}
        assignments = ", ".join(f"#c{block_id} = :c{block_id}, #t{block_id} = :now" for block_id in pickled)
        with aws_errors("Keeping the session's state"):
            try:
                self.client.update_item(
                    TableName=self.settings.state_table_name,
                    Key=_key(session_hash),
                    UpdateExpression=f"SET {assignments}, expires_at = :expires",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={
                        **values,
                        ":now": n(round(time.time(), 3)),
                        ":expires": n(int(time.time()) + STATE_TTL_S),
                    },
                )
            except ClientError as error:
                if error_code(error) == "ValidationException" and "size" in str(error).lower():
                    raise Error(too_large(size)) from None
                raise


def too_large(size: int) -> str:
    return (
        f"This session's gr.State values take over {STATE_LIMIT_BYTES} bytes ({size} written by this call); "
        "Surge keeps at most that per session (one DynamoDB item)."
    )
