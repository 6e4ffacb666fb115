"""Gradio's `sse_v3` wire protocol: /config, /info, and the messages of a session's event stream."""

from __future__ import annotations

import copy
import math
from typing import Any

from surge.application import COMPONENT_NOTES, COMPONENT_TYPES, App, Function
from surge.errors import BadRequest

GRADIO_VERSION = "6.31.0"
"""Reported in /config; gradio_client needs a 6.x version to stay offline and use /cancel."""


def finite(value: Any) -> Any:
    """`value` with NaN and ±Infinity floats as None: Gradio's queue writes its messages with orjson, which
    sends them as `null` (Python's json writes `NaN`, which JavaScript's JSON.parse, so the page and
    `@gradio/client`, refuses)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    return value


def config(app: App) -> dict[str, Any]:
    own = app.wire_config()
    if own is not None:
        return own
    components: list[dict[str, Any]] = []
    dependencies: list[dict[str, Any]] = []
    for function in app.functions:
        input_ids = _add_components(components, function.inputs, function, "input")
        output_ids = _add_components(components, function.outputs, function, "output")
        dependencies.append(
            {
                "id": function.fn_index,
                "api_name": function.api_name,
                "inputs": input_ids,
                "outputs": output_ids,
                "batch": function.batch,
                "max_batch_size": function.max_batch_size,
                "concurrency_limit": app.concurrency_limit(function.concurrency_id),
                "concurrency_id": function.concurrency_id,
                "types": {"generator": function.is_generator, "cancel": False},
                "queue": True,
            }
        )
    return {
        "version": GRADIO_VERSION,
        "mode": "blocks",
        "title": app.title,
        "protocol": "sse_v3",
        "api_prefix": "/gradio_api",
        "connect_heartbeat": False,
        "enable_queue": True,
        "max_size": app.max_size,
        "components": components,
        "dependencies": dependencies,
    }


def _add_components(components: list[dict[str, Any]], types: list[str], function: Function, role: str) -> list[int]:
    ids = []
    for position, component_type in enumerate(types):
        component_id = len(components) + 1
        label = function.parameters[position].name if role == "input" else f"output {position}"
        components.append({"id": component_id, "type": component_type, "props": {"label": label, "show_label": True}})
        ids.append(component_id)
    return ids


def named_inputs(parameters: list[dict[str, Any]], named: dict[str, Any]) -> list[Any]:
    """The inputs in order from inputs by name (`POST /gradio_api/call/v2/<api_name>`, the curl command of
    Gradio's "Use via API" page), with `parameters` from the endpoint's API info: a missing one takes its
    default, and an unknown or missing required one is refused in Gradio's words."""
    named = {
        key: value
        for key, value in named.items()
        if key != "oauth_token" or "oauth_token" in {p.get("parameter_name") for p in parameters}
    }
    names = [p.get("parameter_name") or f"argument {i}" for i, p in enumerate(parameters)]
    unknown = sorted(set(named) - set(names))
    if unknown:
        raise BadRequest(
            f"Parameter `{unknown[0]}` is not a valid key-word argument. See the app's API page for its usage."
        )
    data: list[Any] = []
    for name, parameter in zip(names, parameters, strict=True):
        if name in named:
            data.append(named[name])
        elif parameter.get("parameter_has_default"):
            data.append(parameter.get("parameter_default"))
        else:
            raise BadRequest(f"No value provided for required argument: {name}")
    return data


def info(app: App) -> dict[str, Any]:
    own = app.wire_info()
    if own is not None:
        return own
    named = {}
    for function in app.functions:
        named[f"/{function.api_name}"] = {
            "parameters": [
                {
                    "label": p.name,
                    "parameter_name": p.name,
                    "parameter_has_default": p.has_default,
                    "parameter_default": p.default,
                    "python_type": {
                        "type": COMPONENT_TYPES[p.component],
                        "description": COMPONENT_NOTES.get(p.component, ""),
                    },
                    "component": p.component.capitalize(),
                    "type": {"type": COMPONENT_TYPES[p.component]},
                }
                for p in function.parameters
            ],
            "returns": [
                {
                    "label": f"output {i}",
                    "python_type": {"type": COMPONENT_TYPES[c], "description": COMPONENT_NOTES.get(c, "")},
                    "component": c.capitalize(),
                    "type": {"type": COMPONENT_TYPES[c]},
                }
                for i, c in enumerate(function.outputs)
            ],
            "api_visibility": "public",
        }
    return {"named_endpoints": named, "unnamed_endpoints": {}}


def estimation(event_id: str, rank: int, queue_size: int, rank_eta: float | None) -> dict[str, Any]:
    return {
        "msg": "estimation",
        "event_id": event_id,
        "rank": rank,
        "queue_size": queue_size,
        "rank_eta": None if rank_eta is None else round(rank_eta, 3),
    }


def process_starts(event_id: str, eta: float | None) -> dict[str, Any]:
    return {"msg": "process_starts", "event_id": event_id, "eta": eta}


def progress(
    event_id: str, value: float | None, index: int | None, length: int | None, desc: str | None, unit: str
) -> dict[str, Any]:
    unit_data = {"index": index, "length": length, "unit": unit, "progress": value, "desc": desc}
    return {"msg": "progress", "event_id": event_id, "progress_data": [unit_data]}


def generating(event_id: str, data: list[Any]) -> dict[str, Any]:
    return {
        "msg": "process_generating",
        "event_id": event_id,
        "output": {"data": data, "is_generating": True},
        "success": True,
        "time_limit": None,  # Gradio's: a `.stream()` event's, which Surge refuses at start
    }


def log(
    event_id: str, message: str, level: str, title: str, duration: float | None = 10, visible: bool = True
) -> dict[str, Any]:
    """A notice to the visitor (Gradio's `gr.Info`, `gr.Warning`, `gr.Success`): a toast on the page."""
    return {
        "msg": "log",
        "event_id": event_id,
        "log": message,
        "level": level,
        "title": title,
        "duration": duration,
        "visible": visible,
    }


def completed(event_id: str, data: list[Any], duration: float, average_duration: float | None) -> dict[str, Any]:
    """A success, with every key of Gradio's own (a client reading `avg_time` or `used_cache` finds them;
    Surge renders nothing server-side and caches no call's output). As Gradio's, `cache_duration` is the
    run's duration and the average counts this run (the first completion's is its own duration)."""
    return {
        "msg": "process_completed",
        "event_id": event_id,
        "output": {
            "data": data,
            "is_generating": False,
            "duration": round(duration, 4),
            "average_duration": None if average_duration is None else round(average_duration, 4),
            "render_config": None,
            "changed_state_ids": [],
            "used_cache": None,
        },
        "success": True,
        "title": None,
        "used_cache": None,
        "cache_duration": round(duration, 4),
        "avg_time": None if average_duration is None else round(average_duration, 4),
    }


def failed(
    event_id: str,
    message: str | None,
    title: str = "Error",
    duration: float | None = 10,
    plain: bool = False,
    visible: bool = True,
) -> dict[str, Any]:
    """An error completion. `output` holds exactly Gradio's keys (gradio_client fails on any other): a
    `gr.Error`'s, or Surge's own, with its title and duration; an exception the app raised (`plain`),
    as Gradio's `error_payload` gives it: `error` alone, its message only under `show_error` (then
    `visible` too), so that the page marks the output and shows no toast of its own."""
    output: dict[str, Any] = {"error": message}
    if not plain:
        output.update(title=title, visible=visible, duration=duration)
    elif message is not None:
        output["visible"] = True
    return {"msg": "process_completed", "event_id": event_id, "output": output, "success": False, "title": title}


def queue_status(waiting: int) -> dict[str, Any]:
    """`GET /gradio_api/queue/status`, as Gradio's: an estimation with the queue's size and no rank."""
    return {"msg": "estimation", "event_id": None, "rank": None, "queue_size": waiting, "rank_eta": None}


def cancelled(event_id: str) -> dict[str, Any]:
    """What Gradio sends a cancelled waiting job so that the client's stream ends."""
    return {"msg": "process_completed", "event_id": event_id, "output": {}, "success": True}


def unknown_call() -> dict[str, Any]:
    """What a curl API stream of no such call (or one already read) gets, as Gradio's: `event: error`,
    `data: "404: Not Found"`."""
    return {"msg": "process_completed", "event_id": None, "success": False, "output": "404: Not Found"}


def heartbeat() -> dict[str, Any]:
    return {"msg": "heartbeat", "event_id": None}


def close_stream() -> dict[str, Any]:
    return {"msg": "close_stream", "event_id": None}


def diff(previous: list[Any], current: list[Any]) -> list[Any]:
    """Per-output edit lists for a generator chunk after the first (Gradio's `sse_v3` encoding)."""
    edits: list[Any] = []
    for old, new in zip(previous, current, strict=True):
        if old == new:
            edits.append([])
        elif isinstance(old, str) and isinstance(new, str) and new.startswith(old):
            edits.append([["append", [], new[len(old) :]]])
        else:
            edits.append([["replace", [], new]])
    return edits


def apply_diff(value: Any, edits: list[Any]) -> Any:
    """`value` after one output's edit list of a generator chunk (Gradio's `sse_v3` encoding: `replace`,
    `append`, `add` and `delete`, each at a path of keys and list indexes; `diff` above and
    `gradio.utils.diff` write them). The value is copied, never changed in place."""
    result = copy.deepcopy(value)
    for action, path, new in edits:
        result = _edit(result, action, path, new)
    return result


def _edit(value: Any, action: str, path: list[Any], new: Any) -> Any:
    if not path:
        if action in ("replace", "append"):
            return new if action == "replace" else value + new
        raise ValueError(f"cannot {action} at the root of an output")
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    last = int(path[-1]) if isinstance(parent, list) else path[-1]
    if action == "replace":
        parent[last] = new
    elif action == "append":
        parent[last] = parent[last] + new
    elif action == "add" and isinstance(parent, list):
        parent.insert(last, new)
    elif action == "add":
        parent[last] = new
    elif action == "delete":
        del parent[last]
    else:
        raise ValueError(f"unknown edit {action!r}")
    return value
