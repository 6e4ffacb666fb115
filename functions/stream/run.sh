#!/bin/sh
# StreamFunction's handler: the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs this,
# then forwards each API Gateway request to uvicorn on AWS_LWA_PORT and streams the response back.
# uvicorn comes with the function (requirements.txt); the core and the app come from the layers.
export PYTHONPATH="${LAMBDA_TASK_ROOT}:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
# UVICORN_WORKERS > 1 only on managed instances, where one environment serves many streams and one
# process is held to about one vCPU by the GIL.
exec python -m uvicorn --host 127.0.0.1 --port "${AWS_LWA_PORT:-8000}" --workers "${UVICORN_WORKERS:-1}" \
  --no-access-log stream_app:app
