#!/usr/bin/env bash
# The GPU check (docs/scaling.md), for a GPU machine that has Python 3.12, torch 2.11 with CUDA and numpy 2
# but no package registry, and whose working tree may carry at most 64 MiB per command.
#
#   bash scripts/gpu_check.sh prepare    # HERE (registry): wheels of ManiSkill (trimmed of the assets the
#                                        # check never loads), SAPIEN and every other dependency the GPU
#                                        # machine's image lacks (scripts/gpu_wheels.py), in pieces of 48 MiB
#                                        # under .whl/pieces/; the Vulkan loader's .deb files in .gl/
#                                        # (needs .venv-lerobot: Python 3.12, numpy 2)
#   bash scripts/gpu_check.sh receive    # THERE, once per piece carried (carry .whl/pieces/<piece>): keeps it
#                                        # in .gpu-cache/, which stays on the machine between commands
#   bash scripts/gpu_check.sh install    # THERE: unpacks the pieces, the wheels into .gpu-site/ (beside the
#                                        # system Python's torch and numpy)
#   bash scripts/gpu_check.sh run        # THERE (carry .gl): the GPU environment tests, short PPO fine-tunes
#                                        # on sim_backend=gpu at 256 and 1024 envs, state and 64 px RGB
#                                        # (benchmarks/bench_gpu_ppo.py), then the rollout throughput
#                                        # (benchmarks/bench_gpu_rollout.py); JSON to $OUT when it is set
#
# The last piece's command can do all three: receive && install && run.
set -euo pipefail
cd "$(dirname "$0")/.."
PIECE_MB=48
say() { printf '[gpu-check] %s\n' "$*"; }
die() { printf '[gpu-check] error: %s\n' "$*" >&2; exit 2; }

prepare() {
  local py=.venv-lerobot/bin/python
  [ -x "$py" ] || die "prepare reads the dependency closure from .venv-lerobot (Python 3.12, numpy 2): run 'make setup-lerobot' first"
  rm -rf .whl/pieces .whl/pack && mkdir -p .whl/gpu .whl/pieces
  "$py" scripts/gpu_wheels.py requirements > .whl/gpu/requirements.txt
  say "$(wc -l < .whl/gpu/requirements.txt) wheels for Python 3.12 (the dependency closure of mani-skill and vla-razor, less what the image has)"
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform linux_x86_64 --platform any -d .whl/gpu -r .whl/gpu/requirements.txt
  "$py" scripts/gpu_wheels.py pack .whl/gpu .whl/pack/gpu
  tar -cf - -C .whl/pack gpu | split -b "${PIECE_MB}m" -d - .whl/pieces/gpu.tar.
  # the Vulkan loader and the GL dispatch libraries (the GPU machine has the NVIDIA driver's ICD, maybe not these)
  mkdir -p .gl /tmp/amd64/partial
  local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq && (cd .gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>/dev/null)
  say "$(du -sh .whl/pack/gpu | cut -f1) in $(ls .whl/pieces | wc -l) pieces, $(ls .gl/*.deb | wc -l) .deb files in .gl; on the GPU machine, one command per piece:"
  for piece in .whl/pieces/*; do say "  carry [$piece]: bash scripts/gpu_check.sh receive"; done
  say "then (carry .gl): bash scripts/gpu_check.sh install && bash scripts/gpu_check.sh run"
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
  python3 -c 'import sys, torch, numpy; assert sys.version_info[:2] == (3, 12), sys.version; assert torch.cuda.is_available(), "torch sees no CUDA device"' \
    || die "the system python3 must be Python 3.12 with torch (CUDA) and numpy (this script installs neither)"
  rm -rf .gpu-site
  python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target .gpu-site .gpu-cache/gpu/*.whl
  # vla-razor without building it (no setuptools needed): the package as installed, envs/ and policies/ inside
  rm -rf .gpu-src && mkdir -p .gpu-src && cp -r vla_razor .gpu-src/ \
    && rm -rf .gpu-src/vla_razor/envs .gpu-src/vla_razor/policies \
    && cp -r envs .gpu-src/vla_razor/envs && cp -r policies .gpu-src/vla_razor/policies \
    && cp -r configs .gpu-src/vla_razor/configs  # envs/suites.py reads configs/ beside envs/
  say "installed: $(PYTHONPATH="$PWD/.gpu-src:$PWD/.gpu-site" python3 -c 'import torch, numpy, mani_skill, sapien; print(f"torch {torch.__version__}, numpy {numpy.__version__}, mani_skill {mani_skill.__version__}, sapien {sapien.__version__}")')"
}

vulkan() {
  # the loader from .gl/ when the machine has none; the NVIDIA driver's ICD where that machine keeps it
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    ls .gl/*.deb >/dev/null 2>&1 || die "no Vulkan loader on this machine and no .gl/*.deb carried (prepare downloads them)"
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local nv=/usr/local/nvidia/share
  if [ -f $nv/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json VK_ICD_FILENAMES=$nv/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
  fi
}

run() {
  [ -d .gpu-site ] || die "run 'bash scripts/gpu_check.sh install' first"
  python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || die "no CUDA device: this is the GPU check"
  vulkan
  export PYTHONPATH="$PWD/.gpu-src:$PWD/.gpu-site" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  local out=${OUT:-runs/gpu-check} envs=${GPU_CHECK_ENVS:-256 1024}
  mkdir -p "$out"
  nvidia-smi -L || true
  say "the GPU environment tests"
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_envs.py -k gpu 2>&1 | tee "$out/gpu_env_tests.log" || true
  say "PPO on sim_backend=gpu (flow policy), state and 64 px rgb, envs: $envs"
  # shellcheck disable=SC2086
  timeout "${GPU_CHECK_PPO_S:-330}" python3 benchmarks/bench_gpu_ppo.py --envs $envs --obs state rgb --iterations 3 \
    --decisions 8 --keep-going --out "$out/bench_gpu_ppo.jsonl" > "$out/bench_gpu_ppo.log" 2>&1 \
    || say "bench_gpu_ppo failed or ran out of time: the end of its log follows"
  grep -E '^\{|Error|error' "$out/bench_gpu_ppo.log" | tail -20 || true
  say "rollout throughput (flow policy sampling + physx_cuda), state and rgb, envs: $envs"
  # shellcheck disable=SC2086
  timeout "${GPU_CHECK_ROLLOUT_S:-120}" python3 benchmarks/bench_gpu_rollout.py --envs $envs --obs state rgb --decisions 10 \
    2>&1 | tee "$out/bench_gpu_rollout.jsonl" || true
}

case "${1:-}" in
  prepare | receive | install | run) "$1" ;;
  *) die "usage: bash scripts/gpu_check.sh prepare|receive|install|run" ;;
esac
