#!/usr/bin/env bash
# Sets up vla-razor on a fresh Debian/Ubuntu machine, idempotently:
#   1. the system libraries ManiSkill needs: libGL/glib, and when there is no GPU the software Vulkan
#      driver (Mesa >= 24.3 lavapipe); Debian's chromium, which the report's test opens headless,
#   2. .venv at the repo root with torch==2.13.0 installed FIRST (an unpinned torch drags in CUDA wheels),
#   3. the project in editable mode with its test extras.
# Re-running it skips what is already done. Set VLA_RAZOR_SKIP_SYSTEM=1 to skip step 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3.11}
TORCH_PIN="torch==2.13.0"
# mplib, ManiSkill's motion planner (demonstrations), segfaults on numpy 2; the package itself takes both.
NUMPY_PIN="numpy<2"
MIN_MESA="24.3"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1; then sudo "$@";
  else die "need root to run: $* (install it by hand, or re-run as root)"; fi
}

has_gpu_driver() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1
}

mesa_ok() {  # true when an installed mesa-vulkan-drivers is new enough
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}' mesa-vulkan-drivers 2>/dev/null) || return 1
  case "$v" in "install ok installed "*) v=${v#install ok installed } ;; *) return 1 ;; esac
  dpkg --compare-versions "$v" ge "$MIN_MESA"
}

# Copies URIs and Signed-By of the machine's own Debian source, so no host name is written here.
write_backports_source() {
  local codename=$1 src=/etc/apt/sources.list.d/debian.sources dst=/etc/apt/sources.list.d/vla-razor-backports.sources
  [ -f "$dst" ] && return 0
  local uris="" signed=""
  if [ -f "$src" ]; then
    uris=$(awk '/^URIs:/ && !/security/ {print $2; exit}' "$src")
    signed=$(awk '/^Signed-By:/ {print $2; exit}' "$src")
  elif [ -f /etc/apt/sources.list ]; then
    uris=$(awk '$1=="deb" && $3=="'"$codename"'" {print $2; exit}' /etc/apt/sources.list)
  fi
  [ -n "$uris" ] || die "cannot find the machine's Debian apt mirror; install mesa-vulkan-drivers >= $MIN_MESA by hand"
  say "adding ${codename}-backports from the configured mirror $uris"
  {
    echo "Types: deb"
    echo "URIs: $uris"
    echo "Suites: ${codename}-backports"
    echo "Components: main"
    [ -n "$signed" ] && echo "Signed-By: $signed"
  } | as_root tee "$dst" >/dev/null
}

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

install_system() {
  if [ "${VLA_RAZOR_SKIP_SYSTEM:-0}" = 1 ]; then say "VLA_RAZOR_SKIP_SYSTEM=1: not touching system packages"; return; fi
  command -v dpkg-query >/dev/null 2>&1 || { say "not a Debian-family system: install libGL, glib and a Vulkan driver (Mesa >= $MIN_MESA) by hand"; return; }
  # SAPIEN's OpenCV needs libGL.so.1 and glib even without a screen; chromium renders the razor
  # report in its headless test (tests/test_quickstart.py).
  local missing=() need_mesa=0 p
  for p in libgl1 libglib2.0-0 chromium; do is_installed "$p" || missing+=("$p"); done
  if has_gpu_driver; then say "NVIDIA driver found: using its Vulkan device, no software driver needed"
  elif mesa_ok; then say "software Vulkan driver present (mesa-vulkan-drivers >= $MIN_MESA)"
  else need_mesa=1; fi
  [ "${#missing[@]}" -eq 0 ] && [ "$need_mesa" = 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${missing[*]} and a Vulkan driver (Mesa >= $MIN_MESA) by hand"
  as_root apt-get update -qq
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  [ "$need_mesa" = 1 ] || return 0
  # shellcheck disable=SC1091
  . /etc/os-release
  say "installing the Mesa software Vulkan driver (lavapipe >= $MIN_MESA) for ManiSkill"
  local candidate
  candidate=$(apt-cache policy mesa-vulkan-drivers | awk '/Candidate:/ {print $2}')
  if [ -n "$candidate" ] && [ "$candidate" != "(none)" ] && dpkg --compare-versions "$candidate" ge "$MIN_MESA"; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  elif [ "${ID:-}" = debian ]; then
    write_backports_source "$VERSION_CODENAME"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t "${VERSION_CODENAME}-backports" mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    die "this distribution offers mesa-vulkan-drivers ${candidate:-none} (< $MIN_MESA); install a newer Mesa by hand"
  fi
  mesa_ok || die "mesa-vulkan-drivers >= $MIN_MESA did not install"
  say "software Vulkan driver installed: $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
}

install_python() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.11 (or set PYTHON=...)"
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
  fi
  local py=.venv/bin/python
  if ! $py -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    say "installing $TORCH_PIN first (CPU build where the machine provides it)"
    $py -m pip install -q --upgrade pip
    $py -m pip install -q "$TORCH_PIN"
  fi
  # Skip the (slow) resolver when nothing that defines the install has changed.
  local stamp=.venv/.vla-razor-install-stamp want
  want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing vla-razor (editable) with its test extras"
    $py -m pip install -q -e ".[test]" "$TORCH_PIN" "$NUMPY_PIN"
    echo "$want" > "$stamp"
  else
    say "python packages up to date"
  fi
}

install_system
install_python
say "checking the installation"
.venv/bin/vla-razor doctor
say "done: activate with 'source .venv/bin/activate'"
