#!/usr/bin/env bash
# Regenerates study.json, the measure-vs-generalization study of the reference networks (run
# from the repository root, after regenerate.sh):
#   bash checkpoints/reference/study.sh
# 1. every reference checkpoint gets `flatkd eval --suite sharpness` (generalization gap on the
#    whole splits, adaptive sharpness, PAC-Bayes σ, per-stage curvature) with the reduced sizes
#    below, into a scratch folder (kept out of this folder: results/ already holds each
#    network's flatness and robustness result, and one network's suites may not be split over
#    two files that `flatkd report` reads together);
# 2. python -m flatkd.study merges those with results/ by checkpoint and writes study.json.
set -euo pipefail
ref=checkpoints/reference
scratch=${STUDY_SCRATCH:-$(mktemp -d)}
mkdir -p "$scratch"
cat > "$scratch/study-quick.yaml" <<'YAML'
sharpness:
  samples: 256
  average_draws: 5
pacbayes:
  draws: 3
  max_evals: 8
layers:
  samples: 128
  max_iter: 10
  trace_probes: 5
YAML
for run in "$ref"/runs/*/; do
  name=$(basename "$run")
  [ -f "$run/checkpoint.pt" ] && [ -f "$ref/results/$name.json" ] || continue
  [ -f "$scratch/$name.json" ] || flatkd eval --ckpt "$run/checkpoint.pt" --suite sharpness \
    --config "$scratch/study-quick.yaml" --out "$scratch/$name.json" --quiet
done
python -m flatkd.study "$ref/results" "$scratch" --out "$ref/study.json"
