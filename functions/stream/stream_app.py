"""Stream Lambda (StreamFunction): the session SSE routes, served by uvicorn under the Lambda Web Adapter."""

from __future__ import annotations

import os

from surge.front import build_service, create_stream_app
from surge.settings import Settings

app = create_stream_app(build_service(Settings.from_env(os.environ)))
