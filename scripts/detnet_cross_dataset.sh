#!/usr/bin/env bash
# The supplementary's Table 1 (cross-dataset evaluation) for the lite DetNet: one model
# trained on each 3D body source alone, one on the three together (combined3d), one on all
# six sources (combined: the training mix of the packaged weights), all with the same
# budget (STEPS steps of 9 images, composed per source as in training; the rate drops to
# 1e-4 at 3/4 of them, or earlier by the plateau rule), then every model evaluated on every
# 3D source's held-out images:
# PCK at 150 mm after Procrustes on the basic keypoints. The packaged weights (trained far
# longer) get a row of their own.
#
# usage: scripts/detnet_cross_dataset.sh [DATA] [OUT] [STEPS] [SAMPLES]
#   DATA: folders from `fullcap train detnet-data` (default runs/detnet_data)
#   OUT: run folders and the table (default runs/xds); STEPS default 6000; SAMPLES 200
# Each training resumes if it was stopped. ONLY="NAME..." trains just those models and skips
# the table, e.g. two at a time on two cores (one thread each):
#   ONLY="h36m_like mtc_like" scripts/detnet_cross_dataset.sh &
#   ONLY="humbi_like combined" scripts/detnet_cross_dataset.sh; wait
# TRAIN=0 only makes the table.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-runs/detnet_data}
out=${2:-runs/xds}
steps=${3:-6000}
samples=${4:-200}
fc=.venv/bin/fullcap
sources=(h36m_like mtc_like humbi_like)
models=("${sources[@]}" combined3d combined)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

trap 'exit 130' INT TERM
stopped() {
    echo "$1 stopped before step $2; run the script again to resume it" >&2
    exit 1
}
step_of() {
    .venv/bin/python -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True)['step'])" "$1/last.pt"
}

train_one() {
    local name=$1 run=$out/$1 args=()
    if [[ -f $run/weights.safetensors && $(cat "$run/done" 2>/dev/null) == "$steps" ]]; then
        return
    fi
    if [[ ! -f $run/last.pt ]]; then
        if [[ $name == combined ]]; then
            args=(--data "$data"/*/train --val "$data"/*/val --factor 1)
        elif [[ $name == combined3d ]]; then  # the three 3D body sources, 3 images of each
            args=(--data) && for s in "${sources[@]}"; do args+=("$data/$s/train"); done
            args+=(--val) && for s in "${sources[@]}"; do args+=("$data/$s/val"); done
            args+=(--counts) && for s in "${sources[@]}"; do args+=("$s=3"); done
        else
            args=(--data "$data/$name/train" --val "$data/$name/val" --counts "$name=9")
        fi
        args+=(--preset lite --sigma-3d 2)
    fi
    "$fc" train detnet --out "$run" --steps $((steps * 3 / 4)) "${args[@]}"
    # a stopped run (time limit, Ctrl-C, kill) exits 0: go on only if it got there
    [[ $(step_of "$run") -ge $((steps * 3 / 4)) ]] || stopped "$run" $((steps * 3 / 4))
    "$fc" train detnet --out "$run" --steps "$steps" --lr 1e-4
    [[ $(step_of "$run") -ge $steps ]] || stopped "$run" "$steps"
    "$fc" train detnet-export "$run/last.pt" "$run/weights.safetensors"
    echo "$steps" >"$run/done"
}

if [[ ${TRAIN:-1} != 0 ]]; then
    for m in ${ONLY:-${models[@]}}; do
        train_one "$m"
    done
fi
[[ -n ${ONLY:-} ]] && exit 0

specs=()
for m in "${models[@]}"; do
    [[ -f $out/$m/weights.safetensors ]] && specs+=("$m=$out/$m/weights.safetensors")
done
specs+=("packaged=detnet_lite")
val=()
for s in "${sources[@]}"; do val+=("$data/$s/val"); done
"$fc" eval detnet-cross --models "${specs[@]}" --data "${val[@]}" --samples "$samples" \
    | tee "$out/table.txt"
