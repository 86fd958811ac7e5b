#!/usr/bin/env bash
# Regenerates every reference checkpoint and result in this folder (run from the repository root):
#   bash checkpoints/reference/regenerate.sh          (SEEDS="1 2" bash … for a subset of seeds;
#   TRAIN_ONLY=1 skips the evaluations)
# Each line below is the exact command for one file; finished runs are skipped.
# Checkpoints are student-only archives (checkpoint_networks=student, no optimizer state): they
# evaluate like any checkpoint; metrics.csv keeps the teacher's curve.
set -euo pipefail
ref=checkpoints/reference
# run_one METHOD INTERVAL SEED SUITE [extra flatkd train args]: train into NAME.partial, rename
# when finished (archives cannot resume, so an interrupted run starts afresh), then evaluate.
# A run is finished when its checkpoint or its result exists: seeds 3 and 4 of baseline, self
# and spaced-self and the Table 4 runs of seeds 1 and 2 keep config.yaml, metrics.csv and the
# result only (the result records the checkpoint's sha256; this script regenerates the file),
# to keep the folder under 15 MB. The step-matched control of spaced-self is controls.sh.
run_one() {
  local method=$1 interval=$2 seed=$3 suite=$4; shift 4
  local run=$ref/runs/$method-seed$seed result=$ref/results/$method-seed$seed.json
  if [ ! -f "$run/checkpoint.pt" ] && [ ! -f "$result" ]; then
    rm -rf "$run.partial"
    flatkd train --method "$method" --arch resnet8 --dataset digits --seed "$seed" \
      ${interval:+--interval "$interval"} "$@" --set save_optimizer=false \
      --set checkpoint_networks=student --out "$run.partial" --quiet
    rm -rf "$run"
    mv "$run.partial" "$run"
  fi
  if [ ! -f "$result" ] && [ -z "${TRAIN_ONLY:-}" ]; then
    flatkd eval --ckpt "$run/checkpoint.pt" --suite "$suite" \
      --config flatkd/presets/eval-quick.yaml --out "$result" --quiet
  fi
}
# the headline comparisons: baseline, online vs spaced-online, self vs spaced-self; 5 seeds.
# Seeds 3 and 4 of baseline, self and spaced-self keep config.yaml, metrics.csv and the result
# only (the folder stays under 15 MB).
for seed in ${SEEDS:-0 1 2 3 4}; do
  for spec in "online:" "spaced-online:1.5" "baseline:" "self:" "spaced-self:1.0"; do
    run_one "${spec%%:*}" "${spec#*:}" "$seed" flatness,robustness
    case "${spec%%:*}" in online|spaced-online) continue ;; esac
    if [ "$seed" -ge 3 ] && [ -f "$ref/results/${spec%%:*}-seed$seed.json" ]; then
      rm -f "$ref/runs/${spec%%:*}-seed$seed/checkpoint.pt"
    fi
  done
done
# Offline KD and the constant-ahead teacher (paper Tables 10, 11): 3 seeds. The offline teacher
# is a baseline ResNet-8 (seed 10, the digits preset) trained first; constant-ahead keeps its
# teacher 1.5 epochs (135 steps) ahead.
teacher=$ref/runs/offline-teacher
if [ ! -f "$teacher/checkpoint.pt" ]; then
  rm -rf "$teacher.partial"
  flatkd train --method baseline --arch resnet8 --dataset digits --seed 10 \
    --set save_optimizer=false --out "$teacher.partial" --quiet
  mv "$teacher.partial" "$teacher"
fi
for seed in ${SEEDS:-0 1 2}; do
  [ "$seed" -le 2 ] || continue
  run_one offline "" "$seed" flatness,robustness --set teacher_ckpt="$teacher/checkpoint.pt"
  run_one constant-ahead 1.5 "$seed" flatness,robustness
done

# Table 4 on digits (spacing as a plug-in): LSKD and CTKD inside online ("w/ KD") vs spaced
# ("w/ Ours") KD, and TSB's peer group teaching a student online vs spaced; 3 seeds; w/o KD is
# the baseline above. Evaluated with the robustness suite only (clean accuracy, corruptions,
# BIM; eval-quick.yaml): the flatness suite would multiply the evaluation time on 2 cores.
# One method pair at a time (all its seeds), so an interrupted regeneration leaves whole pairs.
for spec in "online+lskd:" "spaced-online+lskd:1.5" "online+ctkd:" "spaced-online+ctkd:1.5" \
            "tsb:" "spaced-tsb:1.5"; do
  for seed in ${SEEDS:-0 1 2}; do
    [ "$seed" -le 2 ] || continue
    run_one "${spec%%:*}" "${spec#*:}" "$seed" robustness
    if [ "$seed" -ne 0 ] && [ -f "$ref/results/${spec%%:*}-seed$seed.json" ]; then
      rm -f "$ref/runs/${spec%%:*}-seed$seed/checkpoint.pt"
    fi
  done
done
