#!/usr/bin/env bash
# The portrait motion generator's whole recipe (PORTRAIT_MODEL_CARD.md), resumable:
#   nohup bash models/training/portrait/train.sh [RUN_DIR] >> RUN_DIR/train.log 2>&1 &
# A stage that finished (RUN_DIR/<stage>.done) is skipped; one that was stopped resumes from its
# last checkpoint (data: its missing chunks; teacher.pt every 100 steps; student.pt every 50).
# Each stage logs to RUN_DIR/<stage>.log, one line per checkpoint. Ends with RUN_DIR/portrait.safetensors
# and its held-out figures RUN_DIR/eval.json; it never writes models/weights. Needs the Debian packages
# espeak-ng and flite (data), festival and festvox-kdlpc16k (the held-out festival voice of the eval).
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"   # the repo root (also from a copy in runs/)
RUN=${1:-runs/portrait}
PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH=$PWD OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUN"
TAG=""

stage() {   # [TAG=-x] stage NAME ARGS...: run `python -m models.training NAME ARGS` unless NAME$TAG finished
    local name=$1$TAG; shift
    if [[ -f "$RUN/$name.done" ]]; then echo "$(date -u +%FT%TZ) $name: done before, skipped"; return; fi
    echo "$(date -u +%FT%TZ) $name: start"
    "$PY" -m models.training "${name%$TAG}" --out "$RUN" "$@" >> "$RUN/$name.log" 2>&1
    touch "$RUN/$name.done"
    echo "$(date -u +%FT%TZ) $name: finished"
}

stage portrait-data --clips 2000 --seconds 6
TAG=-flite stage portrait-data --engine flite --clips 400 --seconds 6
stage portrait-teacher --steps 8000 --batch 64 --lr 1e-3
stage portrait-student --steps 400 --batch 48 --lr 2e-4 --teacher-steps 8 --truth-weight 3
stage portrait-export --which student --target "$RUN/portrait.safetensors"
stage portrait-eval --target "$RUN/portrait.safetensors" --voices 6 --render --json "$RUN/eval.json"
