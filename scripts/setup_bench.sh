#!/usr/bin/env bash
# A second venv, .venv-bench, holding fullcap beside MediaPipe Holistic so that
# `fullcap bench capture` times both on the same frames in one process.
#
#   scripts/setup_bench.sh        # then: .venv-bench/bin/fullcap bench capture
#
# Why a separate venv: mediapipe 0.10.14 (the last release whose wheel carries the Holistic
# models usable offline) needs numpy < 2 and protobuf < 5; fullcap's own venv uses numpy 2.
# mediapipe is installed without its dependency list (it names jax, jaxlib and sounddevice,
# which Holistic does not use) plus the packages Holistic does import. OpenCV comes as
# opencv-contrib-python-headless < 4.12 (the last line built against numpy 1), which also
# provides the cv2 that fullcap uses.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-bench"
PY="$VENV/bin/python"
STAMP="$VENV/.fullcap-bench-setup"
KEY="$(cat pyproject.toml "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
  exit 0
fi
echo "setup-bench: creating $VENV"
"${PYTHON:-python3}" -m venv "$VENV"
# `pip install -q ARGS`, hiding the expected notes (missing local index folders, mediapipe's
# unused dependencies); pip's exit status is kept.
pip_q() {
  local log status=0
  log="$(mktemp)"
  "$PY" -m pip install -q "$@" 2>"$log" || status=$?
  grep -v -e "^WARNING: Location" -e "dependency resolver" -e "^mediapipe .* requires" \
    "$log" >&2 || true
  rm -f "$log"
  return "$status"
}
pip_q ${FULLCAP_TORCH:-torch==2.13.0} || pip_q "torch>=2.4"
pip_q "numpy<2" "opencv-contrib-python-headless>=4.8,<4.12" "roma>=1.5" "safetensors>=0.4" \
  "rich>=13" "moderngl>=5.10"
pip_q --no-deps mediapipe==0.10.14
pip_q absl-py attrs flatbuffers "protobuf>=4.25.3,<5" matplotlib
pip_q --no-deps -e .
"$PY" -c "import mediapipe, torch, cv2, numpy, fullcap; cv2.HOGDescriptor()"
echo "$KEY" > "$STAMP"
echo "setup-bench: done: $VENV"
