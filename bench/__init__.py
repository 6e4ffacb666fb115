"""The viral-load benchmark: Surge's local stack and Gradio side by side, driven by one sse_v3 load generator."""
