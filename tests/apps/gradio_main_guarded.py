"""A Gradio app whose queue settings and launch live under `if __name__ == "__main__":`, as many apps write
them: an import does not run that block, and `load_app` runs only its `queue`/`launch` calls from it."""

from __future__ import annotations

import argparse

import gradio as gr


def shout(text: str) -> str:
    return text.upper()


demo = gr.Interface(shout, "text", "text", api_name="shout")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--upload-limit", default="1mb")
    return parser.parse_args()


if __name__ == "__main__":
    args = _arguments()
    print("the rest of the guarded block ran")
    # The port needs `args`, which only the block defines: Surge has no use for it; the rest is taken.
    demo.queue(max_size=8, default_concurrency_limit=3).launch(server_port=args.port)
    # So does a setting Surge takes: run without it, and said.
    demo.launch(show_error=True, max_threads=7, max_file_size=args.upload_limit)
