#!/usr/bin/env bash
# A separate venv for benchmarks/bench_grpo_vs_trl.py: TRL pulls numpy 2, which the core environment
# cannot take (ManiSkill's motion planner mplib needs numpy<2). So the comparison runs in .venv-bench,
# with the same torch pin and transformers as .venv, TRL, and vla-razor installed without its
# dependencies (the LLM track imports neither ManiSkill nor mplib).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
TORCH_PIN="torch==2.13.0"
if [ ! -x .venv-bench/bin/python ]; then
  "$PYTHON" -m venv .venv-bench
fi
py=.venv-bench/bin/python
$py -m pip install -q --upgrade pip
$py -m pip install -q "$TORCH_PIN"   # first, pinned: an unpinned torch drags in CUDA wheels
TRANSFORMERS=$(.venv/bin/python -c "import transformers; print(transformers.__version__)" 2>/dev/null || echo "")
$py -m pip install -q "$TORCH_PIN" "transformers${TRANSFORMERS:+==$TRANSFORMERS}" trl datasets safetensors tensorboard tqdm PyYAML scipy
$py -m pip install -q --no-deps -e .
$py -c "import trl, transformers, torch, numpy; print('trl', trl.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__, '| numpy', numpy.__version__)"
