"""API Lambda (ApiFunction): the front's buffered routes (config, info, join, cancel) under Mangum."""

from __future__ import annotations

import os

from mangum import Mangum

from surge.front import build_service, create_api_app
from surge.settings import Settings

handler = Mangum(create_api_app(build_service(Settings.from_env(os.environ))), lifespan="off")
