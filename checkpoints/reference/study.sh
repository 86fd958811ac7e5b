#!/usr/bin/env bash
# Regenerates study.json, the measure-vs-generalization study of the reference networks (run
# from the repository root, after regenerate.sh):
#   bash checkpoints/reference/study.sh
# 1. every reference checkpoint gets `flatkd eval --suite sharpness` (generalization gap on its
#    training data, adaptive sharpness, PAC-Bayes σ, per-stage curvature) with the reduced sizes
#    of flatkd/presets/eval-study.yaml, into a scratch folder (kept out of this folder: results/
#    already holds each network's flatness and robustness result, and one network's suites may not be split over
#    two files that `flatkd report` reads together);
# 2. python -m flatkd.study merges those with results/ by checkpoint and writes study.json.
set -euo pipefail
ref=checkpoints/reference
scratch=${STUDY_SCRATCH:-$(mktemp -d)}
mkdir -p "$scratch"
for run in "$ref"/runs/*/; do
  name=$(basename "$run")
  [ -f "$run/checkpoint.pt" ] && [ -f "$ref/results/$name.json" ] || continue
  [ -f "$scratch/$name.json" ] || flatkd eval --ckpt "$run/checkpoint.pt" --suite sharpness \
    --config flatkd/presets/eval-study.yaml --out "$scratch/$name.json" --quiet
done
python -m flatkd.study "$ref/results" "$scratch" --out "$ref/study.json"
