#!/usr/bin/env bash
# Sets up .venv-lerobot, idempotently: Python 3.12 (LeRobot 0.6.1 needs it), LeRobot pinned with its
# dataset, diffusion, pi and smolvla extras, ManiSkill, and vla-razor in editable mode with its `lerobot`
# and test extras. The system libraries come from scripts/setup.sh (run it first; `make setup-lerobot`
# does). On Python 3.12 the registry's torch is a CUDA build (LeRobot caps torch below 2.12); it runs on
# the CPU. numpy is 2.x here, so ManiSkill's motion planner (mplib) cannot run in this environment:
# generate demonstrations in .venv, both environments read them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-lerobot

say() { printf '\033[1m[setup-lerobot]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup-lerobot] error:\033[0m %s\n' "$*" >&2; exit 1; }

# A python3.12 that runs: $PYTHON312, then PATH (a pyenv shim on PATH may not run), then pyenv's versions.
find_python312() {
  local c
  for c in "${PYTHON312:-}" python3.12 "$(command -v pyenv >/dev/null 2>&1 && pyenv root)"/versions/3.12*/bin/python3.12 \
    "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY=$(find_python312) || die "LeRobot 0.6.1 needs Python 3.12 and none was found (looked at \$PYTHON312, python3.12 on PATH and pyenv's versions). Install it (e.g. 'pyenv install 3.12') or set PYTHON312=/path/to/python3.12, then run 'make setup-lerobot' again. Everything but the LeRobot integration works without it, in .venv."
  say "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
py=$VENV/bin/python
stamp=$VENV/.vla-razor-install-stamp
want=$(cat pyproject.toml scripts/setup_lerobot.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  start=$(date +%s)
  say "installing LeRobot, ManiSkill and vla-razor (editable, extras lerobot + test); the first time takes a few minutes and about 6.6 GB"
  $py -m pip install -q --upgrade pip
  $py -m pip install -q -e ".[lerobot,test]"
  echo "$want" > "$stamp"
  say "installed in $(( $(date +%s) - start )) s; $VENV holds $(du -sh "$VENV" | cut -f1)"
else
  say "python packages up to date"
fi
$py - <<'EOF'
import lerobot, numpy, torch, mani_skill, sys
print(f"[setup-lerobot] python {sys.version.split()[0]}, lerobot {lerobot.__version__}, torch {torch.__version__}, "
      f"numpy {numpy.__version__}, mani_skill {mani_skill.__version__}")
EOF
