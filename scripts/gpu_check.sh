#!/usr/bin/env bash
# The GPU check (docs/scaling.md), for a GPU machine that has Python 3.12, torch 2.11 with CUDA and numpy 2
# but no package registry, and whose working tree may carry at most 64 MiB per command.
#
#   bash scripts/gpu_check.sh prepare    # HERE (registry): wheels of ManiSkill, SAPIEN and every other
#                                        # dependency the GPU machine lacks, packed in pieces of 60 MiB
#                                        # under .whl/pieces/ (needs .venv-lerobot: Python 3.12, numpy 2)
#   bash scripts/gpu_check.sh receive    # THERE, once per piece carried (carry .whl/pieces/<piece>): keeps it
#                                        # in .gpu-cache/, which stays on the machine between commands
#   bash scripts/gpu_check.sh install    # THERE: unpacks the pieces, .venv-gpu (system torch), the wheels
#   bash scripts/gpu_check.sh run        # THERE: the GPU environment test, then the rollout throughput of
#                                        # the flow policy at 256 and 1024 envs, state and 64 px RGB
#                                        # (benchmarks/bench_gpu_rollout.py), JSON to $OUT when it is set
#
# Not in it yet: a PPO fine-tune on backend=gpu. PPO's rollouts still step the CPU backend
# (vla_razor/rl/rollout_worker.py); docs/scaling.md says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PIECE_MB=60
say() { printf '[gpu-check] %s\n' "$*"; }
die() { printf '[gpu-check] error: %s\n' "$*" >&2; exit 2; }

# What the GPU machine already has, so never packed: torch and its CUDA libraries, numpy.
PREINSTALLED='^(torch|numpy|triton|nvidia-.*|cuda-.*|lerobot|vla-razor|setuptools|pip|wheel)$'

prepare() {
  local py=.venv-lerobot/bin/python
  [ -x "$py" ] || die "prepare reads the dependency closure from .venv-lerobot (Python 3.12, numpy 2): run 'make setup-lerobot' first"
  rm -rf .whl/gpu .whl/pieces && mkdir -p .whl/gpu .whl/pieces
  PREINSTALLED="$PREINSTALLED" "$py" - > .whl/gpu/requirements.txt <<'EOF'
import importlib.metadata as md, os, re
skip = re.compile(os.environ["PREINSTALLED"])
def name(req):
    return re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")
seen, todo = {}, ["mani-skill", "vla-razor", "pytest"]
while todo:
    n = todo.pop()
    if n in seen:
        continue
    try:
        dist = md.distribution(n)
    except md.PackageNotFoundError:
        continue
    seen[n] = dist.version
    todo += [name(r) for r in dist.requires or [] if "extra ==" not in r]
for n, v in sorted(seen.items()):
    if not skip.match(n):
        print(f"{n}=={v}")
EOF
  say "$(wc -l < .whl/gpu/requirements.txt) wheels for Python 3.12 (the dependency closure of mani-skill and vla-razor, less torch and numpy)"
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform linux_x86_64 --platform any -d .whl/gpu -r .whl/gpu/requirements.txt
  tar -cf - -C .whl gpu | split -b "${PIECE_MB}m" -d - .whl/pieces/gpu.tar.
  say "$(du -sh .whl/gpu | cut -f1) in $(ls .whl/pieces | wc -l) pieces; on the GPU machine, one command per piece:"
  for piece in .whl/pieces/*; do say "  carry [$piece]: bash scripts/gpu_check.sh receive"; done
  say "then: bash scripts/gpu_check.sh install && bash scripts/gpu_check.sh run"
}

receive() {
  mkdir -p .gpu-cache
  local got=0
  for piece in .whl/pieces/gpu.tar.*; do
    [ -f "$piece" ] || continue
    cp "$piece" .gpu-cache/ && got=$((got + 1))
  done
  [ "$got" -gt 0 ] || die "no piece under .whl/pieces/: carry one (prepare made them)"
  say "kept $got piece(s); .gpu-cache/ holds $(ls .gpu-cache/gpu.tar.* | wc -l)"
}

install() {
  ls .gpu-cache/gpu.tar.* >/dev/null 2>&1 || die "no piece in .gpu-cache/: receive them first"
  rm -rf .gpu-cache/gpu
  cat .gpu-cache/gpu.tar.* | tar -xf - -C .gpu-cache || die "the pieces do not make a whole archive: receive every piece"
  command -v python3.12 >/dev/null || die "python3.12 not found"
  [ -x .venv-gpu/bin/python ] || python3.12 -m venv --system-site-packages .venv-gpu
  .venv-gpu/bin/python -c 'import torch, numpy; assert torch.cuda.is_available(), "torch sees no CUDA device"' \
    || die "the system Python needs torch with CUDA and numpy (this script installs neither)"
  .venv-gpu/bin/python -m pip install --quiet --no-index --no-deps .gpu-cache/gpu/*.whl
  # vla-razor without building it (no setuptools needed): the package as installed, envs/ and policies/ inside
  rm -rf .gpu-src && mkdir -p .gpu-src && cp -r vla_razor .gpu-src/ && cp -r envs .gpu-src/vla_razor/envs \
    && cp -r policies .gpu-src/vla_razor/policies
  say "installed: $(.venv-gpu/bin/python -c 'import torch, numpy, mani_skill, sapien; print(f"torch {torch.__version__}, numpy {numpy.__version__}, mani_skill {mani_skill.__version__}, sapien {sapien.__version__}")')"
}

run() {
  local py=.venv-gpu/bin/python
  [ -x "$py" ] || die "run 'bash scripts/gpu_check.sh install' first"
  "$py" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || die "no CUDA device: this is the GPU check"
  export PYTHONPATH="$PWD/.gpu-src" HF_HUB_OFFLINE=1
  nvidia-smi -L || true
  say "the GPU environment test"
  "$py" -m pytest -q -p no:cacheprovider tests/test_envs.py -k gpu
  say "rollout throughput (flow policy + physx_cuda), state and rgb, 256 and 1024 envs"
  local out=${OUT:-runs/gpu-check}
  mkdir -p "$out"
  "$py" benchmarks/bench_gpu_rollout.py --envs 256 1024 --obs state rgb | tee "$out/bench_gpu_rollout.jsonl"
}

case "${1:-}" in
  prepare | receive | install | run) "$1" ;;
  *) die "usage: bash scripts/gpu_check.sh prepare|receive|install|run" ;;
esac
