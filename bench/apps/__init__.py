"""The benchmark's workloads, served by Surge (`surge_apps`) and by Gradio (`gradio_app`)."""
