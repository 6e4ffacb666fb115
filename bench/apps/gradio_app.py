"""The same workloads served by Gradio itself: one process, `concurrency_limit=K` (K simulated devices).

Run as `python -m bench.apps.gradio_app --workload sim_gpu --devices 2 --port 7861`.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from bench.workloads import WORKLOADS, Workload, run_batch


def build(workload: Workload, devices: int) -> gr.Blocks:
    def batched(texts: list[str]) -> list[list[str]]:
        return [run_batch(workload, texts)]

    def single(text: str) -> str:
        return run_batch(workload, [text])[0]

    with gr.Blocks(title=f"bench {workload.name}") as demo:
        text_in = gr.Textbox()
        text_out = gr.Textbox()
        gr.Button().click(
            batched if workload.batch else single,
            text_in,
            text_out,
            api_name=workload.name,
            batch=workload.batch,
            max_batch_size=workload.max_batch_size,
            concurrency_limit=devices,
        )
    queued: gr.Blocks = demo.queue(max_size=workload.max_size, default_concurrency_limit=devices)
    return queued


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    demo = build(WORKLOADS[args.workload], args.devices)
    demo.launch(server_name="127.0.0.1", server_port=args.port, quiet=True, show_error=True, ssr_mode=False)


if __name__ == "__main__":
    main()
