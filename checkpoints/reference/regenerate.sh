#!/usr/bin/env bash
# Regenerates every reference checkpoint and result in this folder (run from the repository root):
#   bash checkpoints/reference/regenerate.sh          (SEEDS="1 2" bash … for a subset)
# Each line below is the exact command for one file; finished runs are skipped.
set -euo pipefail
ref=checkpoints/reference
for seed in ${SEEDS:-0 1 2}; do
  for spec in "baseline:" "online:" "spaced-online:1.5" "self:" "spaced-self:1.0"; do
    method=${spec%%:*}; interval=${spec#*:}
    run=$ref/runs/$method-seed$seed
    if [ ! -f "$run/checkpoint.pt" ]; then
      flatkd train --method "$method" --arch resnet8 --dataset digits --seed "$seed" \
        ${interval:+--interval "$interval"} --set save_optimizer=false --out "$run" --quiet
    fi
    result=$ref/results/$method-seed$seed.json
    if [ ! -f "$result" ]; then
      flatkd eval --ckpt "$run/checkpoint.pt" --suite all --config flatkd/presets/eval-quick.yaml \
        --out "$result" --quiet
    fi
  done
done
