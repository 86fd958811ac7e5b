#!/usr/bin/env bash
# Step-budget control for the spaced self-KD comparison (run from the repository root, after
# regenerate.sh): bash checkpoints/reference/controls.sh
# Spaced self-KD (paper Alg. 4) replays every buffered batch with the full self-KD loss, so its
# student takes twice the optimizer steps of self KD over the same 12 epochs (2,160 vs 1,080).
# This trains self KD for 24 epochs (2,160 steps, the same cosine schedule stretched) with the
# reference seeds, evaluated like the reference runs. Each run keeps config.yaml, metrics.csv
# and its result (which records the checkpoint's sha256); the checkpoint is deleted.
set -euo pipefail
ctl=checkpoints/reference/controls
for seed in ${SEEDS:-0 1 2 3 4}; do
  run=$ctl/runs/self-e24-seed$seed result=$ctl/results/self-e24-seed$seed.json
  [ -f "$result" ] && continue
  rm -rf "$run.partial" "$run"
  flatkd train --method self --arch resnet8 --dataset digits --seed "$seed" --epochs 24 \
    --set save_optimizer=false --set checkpoint_networks=student --out "$run.partial" --quiet
  mv "$run.partial" "$run"
  flatkd eval --ckpt "$run/checkpoint.pt" --suite flatness,robustness \
    --config flatkd/presets/eval-quick.yaml --out "$result" --quiet
  rm -f "$run/checkpoint.pt"
done
