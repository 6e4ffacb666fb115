"""An unchanged Gradio app on Surge: a sepia filter as a `gr.Interface`, image in, image out.

`make run APP=examples.gradio_image_app:demo` serves Gradio's own page at `/`; the photo goes to the
worker through S3 and the result comes back the same way. The same file runs in Gradio itself with
`python examples/gradio_image_app.py`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def sepia(photo: np.ndarray, strength: float = 1.0, progress: gr.Progress = gr.Progress()) -> np.ndarray:
    """Blend the photo with its sepia tone by `strength` (0: unchanged, 1: full sepia)."""
    if photo is None:
        raise gr.Error("Upload a photo first.")
    progress(0.5, desc="toning")
    rgb = photo[..., :3].astype(np.float64)
    toned = rgb @ SEPIA.T
    blended = (1 - strength) * rgb + strength * toned
    result: np.ndarray = np.clip(blended, 0, 255).astype(np.uint8)
    return result


demo = gr.Interface(
    sepia,
    [gr.Image(type="numpy", label="photo"), gr.Slider(0, 1, value=1.0, label="strength")],
    gr.Image(type="numpy", format="png", label="sepia"),
    title="Sepia on Surge",
    api_name="sepia",
    concurrency_limit=4,
)
demo.queue(max_size=200)

if __name__ == "__main__":
    demo.launch()
