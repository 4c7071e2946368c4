#!/usr/bin/env bash
# The learning experiments of docs/experiments.md, end to end, on a CPU (about 1 hour on 2
# cores). Everything goes to $EXP (default ./runs/experiments). Uses the README-installed
# package (.venv); run `make setup` first.
set -euo pipefail
EXP=${EXP:-runs/experiments}
A=${ANNOTATOR:-.venv/bin/annotator}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$EXP"

# 1. a generated dataset: textured shapes, thin parts, clutter; our COCO export format
#    with an annotator's casual prompts stored per object; groups of 4 images
.venv/bin/python -m training.synthetic "$EXP/synth" --images 320 --size 256 --seed 0
DATA=(--data "$EXP/synth/instances.json" --images "$EXP/synth/images")

# 2. a tiny SAM from scratch (whole model), then two more runs from its checkpoint
$A train sam --backbone scratch:tiny "${DATA[@]}" --steps 1200 --batch-size 8 --lr 8e-4 \
    --warmup-steps 100 --out "$EXP/tiny-sam" --events "$EXP/tiny-sam/events.jsonl"
$A train sam --backbone "$EXP/tiny-sam/sam-sam-scratch-tiny-none.pth" "${DATA[@]}" --steps 1500 \
    --batch-size 8 --lr 8e-4 --schedule cosine --out "$EXP/tiny-sam2" --events "$EXP/tiny-sam2/events.jsonl"
$A train sam --backbone "$(ls "$EXP"/tiny-sam2/sam-*.pth)" "${DATA[@]}" --steps 1200 \
    --batch-size 8 --lr 6e-4 --warmup-steps 50 --schedule cosine --out "$EXP/tiny-sam3" \
    --events "$EXP/tiny-sam3/events.jsonl"
SAM=$(ls "$EXP"/tiny-sam3/sam-*.pth)

# 3. the plugins on the frozen tiny SAM, each with its paper's recipe
$A train hq-sam --backbone "$SAM" "${DATA[@]}" --steps 800 --batch-size 8 \
    --out "$EXP/hq-sam" --events "$EXP/hq-sam/events.jsonl"
$A train stable-sam --backbone "$SAM" "${DATA[@]}" --steps 800 --batch-size 8 \
    --out "$EXP/stable-sam" --events "$EXP/stable-sam/events.jsonl"

# 4. held-out evaluation (the validation side of the same group split), plugin beside SAM
HQ=$(ls "$EXP"/hq-sam/*.safetensors)
ST=$(ls "$EXP"/stable-sam/*.safetensors)
$A eval hq-sam --backbone "$SAM" --plugin "$HQ" "${DATA[@]}" --protocol tight-box,noisy-box \
    --prompts 20 --json "$EXP/eval-hq-sam.json"
$A eval hq-sam --backbone "$SAM" --plugin "$HQ" "${DATA[@]}" --protocol tight-box \
    --option hq_token_only=true --no-baseline --json "$EXP/eval-hq-sam-hq-only.json"
$A eval stable-sam --backbone "$SAM" --plugin "$ST" "${DATA[@]}" \
    --protocol noisy-box,1-point,3-point,tight-box --prompts 20 --json "$EXP/eval-stable-sam.json"
