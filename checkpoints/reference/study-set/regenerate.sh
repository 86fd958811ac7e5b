#!/usr/bin/env bash
# The measure study's own set (run from the repository root):
#   bash checkpoints/reference/study-set/regenerate.sh        JOBS=2 (parallel runs)
# Jiang et al. (2020) build their study from networks whose hyper-parameters move the
# generalization gap; the reference networks all fit digits to within a point of the test
# accuracy, so they leave nothing to explain. Here: baseline ResNet-8s on digits (the digits
# preset: 12 epochs, cosine) over 4 axes, every combination, 2 replicates each —
#   train_fraction 0.1 / 0.3 / 1.0, optim.lr 0.02 / 0.1, batch_size 16 / 64,
#   optim.weight_decay 0 / 5e-4                               (24 configurations, 48 networks)
# Each network gets `flatkd eval --suite sharpness` (flatkd/presets/eval-study.yaml): the gap on
# its own training data, adaptive sharpness, PAC-Bayes σ, per-stage Hessian traces. Its
# checkpoint is then deleted (config.yaml and metrics.csv stay; the result records the sha256).
# flatkd report and the study take one result per (method, seed), so each configuration has
# seeds of its own: seed = 2·c + r. The study collapses the replicates of a configuration.
set -euo pipefail
set_dir=checkpoints/reference/study-set
one() {   # one FRACTION LR BATCH WD SEED
  local f=$1 lr=$2 b=$3 wd=$4 seed=$5 name="f$1-lr$2-b$3-wd$4-seed$5"
  local run=$set_dir/runs/$name result=$set_dir/results/$name.json
  [ -f "$result" ] && return 0
  rm -rf "$run"
  OMP_NUM_THREADS=1 flatkd train --method baseline --arch resnet8 --dataset digits \
    --set train_fraction="$f" --set optim.lr="$lr" --set batch_size="$b" \
    --set optim.weight_decay="$wd" --seed "$seed" --set save_optimizer=false \
    --out "$run" --quiet
  OMP_NUM_THREADS=1 flatkd eval --ckpt "$run/checkpoint.pt" --suite sharpness \
    --config flatkd/presets/eval-study.yaml --out "$result" --quiet
  rm -f "$run"/*.pt
  rm -rf "$run/tb"
}
export -f one
export set_dir
c=0
for f in 0.1 0.3 1.0; do for lr in 0.02 0.1; do for b in 16 64; do for wd in 0 0.0005; do
  for r in 0 1; do echo "$f $lr $b $wd $((2 * c + r))"; done
  c=$((c + 1))
done; done; done; done | xargs -P "${JOBS:-2}" -L 1 bash -c 'one "$@"' _
python -m flatkd.study "$set_dir/results" --out "$set_dir/study.json"
