"""Surge: Gradio's queue on AWS managed services. Users import `App`, `Error` and `Progress` from here."""

from surge.application import App, Function, Progress
from surge.errors import Error

__all__ = ["App", "Error", "Function", "Progress"]
