"""A Gradio app written as Hugging Face Spaces write them: `demo.launch(...)` at the end of the module, not
under `if __name__ == "__main__"`. Import it only through `load_app`, which holds the launch: imported
directly, it starts Gradio's own server and never returns."""

from __future__ import annotations

import gradio as gr


def reverse(text: str) -> str:
    if text == "boom":
        raise RuntimeError("internal detail")
    return text[::-1]


demo = gr.Interface(reverse, "text", "text", title="Reverser", api_name="reverse")
demo.queue(default_concurrency_limit=2).launch(show_error=True, max_threads=7, max_file_size="1mb", theme="soft")
