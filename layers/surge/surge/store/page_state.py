"""A Gradio session's `gr.State` values and component updates, kept between its calls on any worker.

Gradio keeps them in its one process (`SessionState`); here each session has one item of the state table,
`gstate#<session hash>` / `state`, with one attribute per state component (`c<block id>`: the value,
pickled; `t<block id>`: when it was written, for `gr.State(time_to_live=)`) and one per property an event
changed of a component that a later call preprocesses (`p<block id>_<property>`, pickled: a dropdown's
`choices`, a slider's `maximum`, which Gradio checks an input against). A call reads the item once
(strongly consistent) when its event reads a state, and writes back only the states the call changed
(one `UpdateItem`; several when a call writes more than one expression holds), so two events of one
session that write different states never undo each other.
Only workers write these items and unpickle them (no other role of the template may write `gstate#*`
keys): a value is unpickled only if a worker pickled it. An item expires `STATE_TTL_S` after its last
write, as Gradio drops a closed session's state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from surge.errors import Error
from surge.store.aws import Table, aws_errors, error_code, in_groups, n, s

STATE_TTL_S = 24 * 3600
STATE_LIMIT_BYTES = 350_000
"""A session's states share one DynamoDB item (at most 400 KB)."""


def _key(session_hash: str) -> dict[str, Any]:
    return {"pk": s(f"gstate#{session_hash}"), "sk": s("state")}


@dataclass
class Kept:
    """A session's kept item: states by block id, and changed component properties by block id, by name
    (pickled)."""

    states: dict[int, bytes] = field(default_factory=dict)
    props: dict[int, dict[str, bytes]] = field(default_factory=dict)


class PageStateStore(Table):
    def load(self, session_hash: str, lives: Mapping[int, float] | None = None) -> Kept:
        """The session's kept states and component properties (empty: none written yet). A state with a
        time to live (`lives`: block id → seconds, `gr.State(time_to_live=)`) last written longer ago
        than that is left out, as Gradio drops it: the call sees the state's initial value."""
        with aws_errors("Reading the session's state"):
            response: Any = self.client.get_item(
                TableName=self.settings.state_table_name, Key=_key(session_hash), ConsistentRead=True
            )
        item = response.get("Item") or {}
        now = time.time()
        kept = Kept()
        for name, value in item.items():
            if "B" not in value:
                continue
            if name[0] == "p":
                block, prop = name[1:].split("_", 1)
                kept.props.setdefault(int(block), {})[prop] = value["B"]
                continue
            if name[0] != "c":
                continue
            block_id = int(name[1:])
            life = (lives or {}).get(block_id)
            written = item.get(f"t{block_id}", {}).get("N")
            if life is not None and written is not None and now - float(written) > life:
                continue
            kept.states[block_id] = value["B"]
        return kept

    def save(
        self,
        session_hash: str,
        pickled: dict[int, bytes],
        props: Mapping[int, Mapping[str, bytes]] | None = None,
        dropped: Mapping[int, list[str]] | None = None,
    ) -> None:
        """Keep these states of the session (pickled) and these component properties (`props`, pickled;
        `dropped`: properties back to what the app declares), in one write (several past what one
        expression holds, `EXPRESSION_BUDGET`); the session's others stay as they are."""
        props = {block_id: changed for block_id, changed in (props or {}).items() if changed}
        dropped = {block_id: names for block_id, names in (dropped or {}).items() if names}
        if not pickled and not props and not dropped:
            return
        size = sum(len(value) for value in pickled.values()) + sum(
            len(value) for changed in props.values() for value in changed.values()
        )
        if size > STATE_LIMIT_BYTES:
            raise Error(too_large(size))
        parts = [
            _Part(
                "SET",
                f"#c{block_id} = :c{block_id}, #t{block_id} = :now",
                {f"#c{block_id}": f"c{block_id}", f"#t{block_id}": f"t{block_id}"},
                {f":c{block_id}": {"B": value}, ":now": n(round(time.time(), 3))},
            )
            for block_id, value in pickled.items()
        ]
        for block_id, changed in props.items():
            for k, (prop, value) in enumerate(changed.items()):
                parts.append(
                    _Part(
                        "SET",
                        f"#p{block_id}_{k} = :p{block_id}_{k}",
                        {f"#p{block_id}_{k}": f"p{block_id}_{prop}"},
                        {f":p{block_id}_{k}": {"B": value}},
                    )
                )
        for block_id, gone in dropped.items():
            for k, prop in enumerate(gone):
                parts.append(_Part("REMOVE", f"#r{block_id}_{k}", {f"#r{block_id}_{k}": f"p{block_id}_{prop}"}, {}))
        for group in in_groups(parts, lambda part: len(part.text) + 2, EXPRESSION_BUDGET):
            self._update(session_hash, group, size)

    def _update(self, session_hash: str, parts: list[_Part], size: int) -> None:
        sets = [part.text for part in parts if part.clause == "SET"]
        removals = [part.text for part in parts if part.clause == "REMOVE"]
        expression = f"SET {', '.join([*sets, 'expires_at = :expires'])}"
        if removals:
            expression += f" REMOVE {', '.join(removals)}"
        names = {key: name for part in parts for key, name in part.names.items()}
        values = {key: value for part in parts for key, value in part.values.items()}
        with aws_errors("Keeping the session's state"):
            try:
                self.client.update_item(
                    TableName=self.settings.state_table_name,
                    Key=_key(session_hash),
                    UpdateExpression=expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**values, ":expires": n(int(time.time()) + STATE_TTL_S)},
                )
            except ClientError as error:
                if error_code(error) == "ValidationException" and "size" in str(error).lower():
                    raise Error(too_large(size)) from None
                raise


@dataclass
class _Part:
    """One assignment or removal of an update, with the names and values it uses."""

    clause: str
    text: str
    names: dict[str, str]
    values: dict[str, Any]


EXPRESSION_BUDGET = 1_000
"""Characters of assignments one update carries (about 40 states or 60 properties): DynamoDB refuses an
expression over 4 KB, and moto's parser (the local stack) recursed too deep past about 1.5 KB (a call
writing 60 states failed there), so a larger write goes in several updates of the item. Each costs the
item's size in write units: a call that writes that much is rare."""


def too_large(size: int) -> str:
    return (
        f"This session's gr.State values take over {STATE_LIMIT_BYTES} bytes ({size} written by this call); "
        "Surge keeps at most that per session (one DynamoDB item)."
    )
