#!/usr/bin/env bash
# The learning experiments of docs/experiments.md, end to end, on a CPU (about 4.5 hours on 2
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
# figures (docs/evaluation.md): learning curves, host vs plugin with the paired bootstrap
# intervals, and host vs plugin masks on the same noisy boxes (FIGURES, default docs/figures)
.venv/bin/python scripts/plot_experiments.py --out "${FIGURES:-docs/figures}" \
    --curves "$EXP/hq-sam" "$EXP/stable-sam" --evals "$EXP/eval-hq-sam.json" "$EXP/eval-stable-sam.json" \
    --examples "$EXP/eval-stable-sam.json" --backbone "$SAM" --plugin "$ST" "${DATA[@]}" --protocol noisy-box

# ---- PMG-SAM and IP-SAM (docs/experiments.md, their two sections; about 1.5 hours on 2 cores) ----
# 5. small PMG-SAM branches pre-trained here on the salient targets of the same data (the
#    training side of the split only), saved as a timm Hiera state dict and a u2netp.pth
.venv/bin/python -m training.pretrain_branches "${DATA[@]}" --out "$EXP/branches" \
    --hiera-steps 300 --u2net-steps 300 --batch-size 8 --lr 1e-3
HIERA="$EXP/branches/small_hiera.pth"    # u2net.pth beside it
PMG_CONFIG='{"image_size": 256, "u2net_size": 64, "hiera_channels": [16, 32, 64, 128],
  "u2_channels": [64, 64, 64, 64, 64, 64], "adapter_channels": 8, "growth": 8, "gn_groups": 8,
  "premask_size": 64, "transformer_dim": 64, "num_heads": 4, "mlp_dim": 256,
  "premask_patch": 8, "iou_head_hidden_dim": 64}'
HIERA_SPEC='{"variant": "hiera_tiny_224", "embed_dim": 16, "num_heads": 1,
  "stages": [1, 2, 3, 1], "pretrain_img_size": 256}'
$A train pmg-sam --backbone "$HIERA" "${DATA[@]}" --steps 200 --batch-size 8 --lr 8e-4 \
    --schedule cosine --warmup-steps 20 --option config="$PMG_CONFIG" --option hiera="$HIERA_SPEC" \
    --out "$EXP/pmg-sam" --events "$EXP/pmg-sam/events.jsonl"
$A train pmg-sam --backbone "$HIERA" "${DATA[@]}" --steps 350 --batch-size 8 --lr 5e-4 \
    --schedule cosine --warmup-steps 10 --option config="$PMG_CONFIG" --option hiera="$HIERA_SPEC" \
    --option start_from="$(ls "$EXP"/pmg-sam/*.safetensors)" --out "$EXP/pmg-sam2" \
    --events "$EXP/pmg-sam2/events.jsonl"
PMG=$(ls "$EXP"/pmg-sam2/*.safetensors)
$A eval pmg-sam --backbone "$HIERA" --plugin "$PMG" "${DATA[@]}" --baseline "$SAM" \
    --json "$EXP/eval-pmg-sam.json"

# 6. a tiny SAM 2 from scratch (whole model, official {"model": ...} layout; its own folders,
#    not the tiny SAM's tiny-sam2/), 800 more steps from it, then IP-SAM on
#    generated camouflage data (objects cut from their own background)
$A train sam2 --backbone scratch:tiny "${DATA[@]}" --steps 1000 --batch-size 8 --lr 8e-4 \
    --warmup-steps 100 --schedule cosine --out "$EXP/sam2-tiny" --events "$EXP/sam2-tiny/events.jsonl"
$A train sam2 --backbone "$EXP/sam2-tiny/sam2-sam2-scratch-tiny-none.pt" "${DATA[@]}" --steps 800 \
    --batch-size 8 --lr 8e-4 --warmup-steps 50 --schedule cosine --out "$EXP/sam2-tiny-b" \
    --events "$EXP/sam2-tiny-b/events.jsonl"
SAM2=$(ls "$EXP"/sam2-tiny-b/sam2-*.pt)
.venv/bin/python -m training.synthetic_camo "$EXP/camo" --images 320 --size 256 --seed 0
CAMO=(--data "$EXP/camo/instances.json" --images "$EXP/camo/images")
IP_CONFIG='{"image_size": 256, "transformer_dim": 32, "lora_rank": 4, "num_heads": 2,
  "mlp_dim": 128, "psg_hidden": 16, "lateral_hidden": 16, "refine_width": 32,
  "refine_bottleneck": 16}'
$A train ip-sam --backbone "$SAM2" "${CAMO[@]}" --steps 1200 --batch-size 4 --lr 1e-3 \
    --grad-clip 1.0 --option config="$IP_CONFIG" --out "$EXP/ip-sam" --events "$EXP/ip-sam/events.jsonl"
IP=$(ls "$EXP"/ip-sam/*.safetensors)
$A eval ip-sam --backbone "$SAM2" --plugin "$IP" "${CAMO[@]}" --json "$EXP/eval-ip-sam.json"
# IP-SAM's own ablation baseline (LoRA + task decoder, null prompts), same recipe
IP_NULL=${IP_CONFIG%\}}', "prompts": "null", "psg": false, "output_tokens": "learned",
  "lateral": false, "refine": false}'
$A train ip-sam --backbone "$SAM2" "${CAMO[@]}" --steps 1200 --batch-size 4 --lr 1e-3 \
    --grad-clip 1.0 --option config="$IP_NULL" --out "$EXP/ip-sam-null" --events "$EXP/ip-sam-null/events.jsonl"
$A eval ip-sam --backbone "$SAM2" --plugin "$(ls "$EXP"/ip-sam-null/*.safetensors)" "${CAMO[@]}" \
    --json "$EXP/eval-ip-sam-null.json"

# ---- Hosts with the papers' weaknesses, and SAM-MI (docs/experiments.md, the sections
#      "Retraining on weak hosts" and "SAM-MI"; about 2 hours on 2 cores) ----
# 7. Stable-SAM's host: a tiny SAM trained on tight boxes only (no clicks, no noisy boxes)
BOX_MIX='{"tight-box": 1}'
$A train sam --backbone scratch:tiny "${DATA[@]}" --steps 1200 --batch-size 8 --lr 8e-4 \
    --warmup-steps 100 --prompt-mix "$BOX_MIX" --out "$EXP/boxsam1" --events "$EXP/boxsam1/events.jsonl"
$A train sam --backbone "$(ls "$EXP"/boxsam1/sam-*.pth)" "${DATA[@]}" --steps 1500 --batch-size 8 \
    --lr 8e-4 --schedule cosine --prompt-mix "$BOX_MIX" --out "$EXP/boxsam2" --events "$EXP/boxsam2/events.jsonl"
BOXSAM=$(ls "$EXP"/boxsam2/sam-*.pth)
$A eval sam --backbone "$BOXSAM" "${DATA[@]}" --protocol tight-box,noisy-box,1-point,3-point \
    --prompts 5 --json "$EXP/eval-boxsam2-host.json"
$A train stable-sam --backbone "$BOXSAM" "${DATA[@]}" --steps 800 --batch-size 8 \
    --out "$EXP/stable" --events "$EXP/stable/events.jsonl"
$A eval stable-sam --backbone "$BOXSAM" --plugin "$(ls "$EXP"/stable/*.safetensors)" "${DATA[@]}" \
    --protocol tight-box,noisy-box,1-point,3-point --prompts 5 --json "$EXP/eval-stable.json"
$A train stable-sam --backbone "$BOXSAM" "${DATA[@]}" --steps 800 --batch-size 8 --option drp=false \
    --out "$EXP/stable-dsp" --events "$EXP/stable-dsp/events.jsonl"          # the +DSP ablation
$A eval stable-sam --backbone "$BOXSAM" --plugin "$(ls "$EXP"/stable-dsp/*.safetensors)" "${DATA[@]}" \
    --protocol tight-box,noisy-box,1-point,3-point --prompts 5 --json "$EXP/eval-stable-dsp-full.json"

# 7b. the same on crowded scenes (4-7 touching objects in one colour family) with a host
#     trained on tight boxes and accurate (centre) clicks
.venv/bin/python -m training.synthetic "$EXP/crowd" --crowded --images 320 --size 256 --seed 0
CROWD=(--data "$EXP/crowd/instances.json" --images "$EXP/crowd/images")
CROWD_MIX='{"tight-box": 2, "center-point": 1}'
$A train sam --backbone scratch:tiny "${CROWD[@]}" --steps 1200 --batch-size 8 --lr 8e-4 \
    --warmup-steps 100 --prompt-mix "$CROWD_MIX" --out "$EXP/crowdsam1" --events "$EXP/crowdsam1/events.jsonl"
$A train sam --backbone "$(ls "$EXP"/crowdsam1/sam-*.pth)" "${CROWD[@]}" --steps 1500 --batch-size 8 \
    --lr 8e-4 --schedule cosine --prompt-mix "$CROWD_MIX" --out "$EXP/crowdsam2" --events "$EXP/crowdsam2/events.jsonl"
CROWDSAM=$(ls "$EXP"/crowdsam2/sam-*.pth)
$A train stable-sam --backbone "$CROWDSAM" "${CROWD[@]}" --steps 800 --batch-size 8 \
    --out "$EXP/cstable" --events "$EXP/cstable/events.jsonl"
$A eval stable-sam --backbone "$CROWDSAM" --plugin "$(ls "$EXP"/cstable/*.safetensors)" "${CROWD[@]}" \
    --protocol tight-box,noisy-box,1-point,center-point --prompts 5 --json "$EXP/eval-cstable.json"

# 8. HQ-SAM's host: 8 px patches (32x32 tokens, a 128x128 mask grid at 256 px), trained briefly
$A train sam --backbone scratch:tiny --option patch_size=8 "${DATA[@]}" --steps 900 --batch-size 8 \
    --lr 8e-4 --warmup-steps 100 --schedule cosine --out "$EXP/finesam" --events "$EXP/finesam/events.jsonl"
FINESAM=$(ls "$EXP"/finesam/sam-*.pth)
THIN=legged,ring,stick-figure,cup,wire
$A train hq-sam --backbone "$FINESAM" "${DATA[@]}" --steps 500 --batch-size 8 \
    --out "$EXP/hq" --events "$EXP/hq/events.jsonl"
$A eval hq-sam --backbone "$FINESAM" --plugin "$(ls "$EXP"/hq/*.safetensors)" "${DATA[@]}" \
    --protocol tight-box,noisy-box --prompts 3 --json "$EXP/eval-hq.json"
$A eval hq-sam --backbone "$FINESAM" --plugin "$(ls "$EXP"/hq/*.safetensors)" "${DATA[@]}" \
    --protocol tight-box --categories "$THIN" --json "$EXP/eval-hq-thin.json"
$A train hq-sam --backbone "$FINESAM" "${DATA[@]}" --steps 500 --batch-size 8 --option fusion=false \
    --out "$EXP/hq-nofuse" --events "$EXP/hq-nofuse/events.jsonl"          # no global-local fusion
$A eval hq-sam --backbone "$FINESAM" --plugin "$(ls "$EXP"/hq-nofuse/*.safetensors)" "${DATA[@]}" \
    --protocol tight-box --categories "$THIN" --json "$EXP/eval-hq-nofuse-thin.json"

# 9. SAM-MI: a random small CLIP (it cannot know unseen names), a tiny SAM on the default
#    prompt mix (SAM-MI asks it about points), trained on 6 of the 8 categories
$A train sam --backbone scratch:tiny "${DATA[@]}" --steps 1200 --batch-size 8 --lr 8e-4 \
    --warmup-steps 100 --out "$EXP/mixsam1" --events "$EXP/mixsam1/events.jsonl"
$A train sam --backbone "$(ls "$EXP"/mixsam1/sam-*.pth)" "${DATA[@]}" --steps 1000 --batch-size 8 \
    --lr 8e-4 --schedule cosine --out "$EXP/mixsam2" --events "$EXP/mixsam2/events.jsonl"
MIXSAM=$(ls "$EXP"/mixsam2/sam-*.pth)
mkdir -p "$EXP/mi"
.venv/bin/python scripts/sam_mi_experiment_inputs.py "$EXP/synth/instances.json" "$EXP/mi" \
    --unseen blob,cup                       # clip_small_random.pt, config.json, seen6.json
MI_CFG=$(cat "$EXP/mi/config.json")
MI=(--option clip="$EXP/mi/clip_small_random.pt" --option config="$MI_CFG")
$A train sam-mi --backbone "$MIXSAM" --data "$EXP/mi/seen6.json" --images "$EXP/synth/images" "${MI[@]}" \
    --option stage=1 --steps 500 --batch-size 8 --lr 1e-3 --grad-clip 1.0 \
    --out "$EXP/mi/stage1" --events "$EXP/mi/stage1/events.jsonl"
$A train sam-mi --backbone "$MIXSAM" --data "$EXP/mi/seen6.json" --images "$EXP/synth/images" "${MI[@]}" \
    --option stage=2 --option start_from="$(ls "$EXP"/mi/stage1/*.safetensors)" --steps 700 \
    --batch-size 4 --lr 1e-3 --grad-clip 1.0 --out "$EXP/mi/stage2" --events "$EXP/mi/stage2/events.jsonl"
$A eval sam-mi --backbone "$MIXSAM" --plugin "$(ls "$EXP"/mi/stage2/*.safetensors)" \
    --option clip="$EXP/mi/clip_small_random.pt" "${DATA[@]}" --json "$EXP/eval-sam-mi.json"
# 9b. the same with a small CLIP trained here on the 6 seen names (crops + dense patches)
.venv/bin/python -m training.pretrain_clip --data "$EXP/mi/seen6.json" --images "$EXP/synth/images" \
    --out "$EXP/mi/clip_trained" --steps 400 --batch-size 32
MIT=(--option clip="$EXP/mi/clip_trained/clip_small.pt" --option config="$MI_CFG")
$A train sam-mi --backbone "$MIXSAM" --data "$EXP/mi/seen6.json" --images "$EXP/synth/images" "${MIT[@]}" \
    --option stage=1 --steps 500 --batch-size 8 --lr 1e-3 --grad-clip 1.0 \
    --out "$EXP/mi/t-stage1" --events "$EXP/mi/t-stage1/events.jsonl"
$A train sam-mi --backbone "$MIXSAM" --data "$EXP/mi/seen6.json" --images "$EXP/synth/images" "${MIT[@]}" \
    --option stage=2 --option start_from="$(ls "$EXP"/mi/t-stage1/*.safetensors)" --steps 700 \
    --batch-size 4 --lr 1e-3 --grad-clip 1.0 --out "$EXP/mi/t-stage2" --events "$EXP/mi/t-stage2/events.jsonl"
$A eval sam-mi --backbone "$MIXSAM" --plugin "$(ls "$EXP"/mi/t-stage2/*.safetensors)" \
    --option clip="$EXP/mi/clip_trained/clip_small.pt" "${DATA[@]}" --json "$EXP/eval-sam-mi-trained-clip.json"
# 9c. stage 2 again with SAM's mask filters open (the tiny host's predicted IoUs are below
#     AMG's defaults, which drop every mask), evaluated with the same filters
OPEN='{"pred_iou_thresh": 0, "stability_score_thresh": 0}'
$A train sam-mi --backbone "$MIXSAM" --data "$EXP/mi/seen6.json" --images "$EXP/synth/images" "${MIT[@]}" \
    --option stage=2 --option sam_options="$OPEN" --option start_from="$(ls "$EXP"/mi/t-stage1/*.safetensors)" \
    --steps 700 --batch-size 4 --lr 1e-3 --grad-clip 1.0 --out "$EXP/mi/o-stage2" --events "$EXP/mi/o-stage2/events.jsonl"
$A eval sam-mi --backbone "$MIXSAM" --plugin "$(ls "$EXP"/mi/o-stage2/*.safetensors)" \
    --option clip="$EXP/mi/clip_trained/clip_small.pt" --option pred_iou_thresh=0 \
    --option stability_score_thresh=0 "${DATA[@]}" --json "$EXP/eval-sam-mi-open.json"

# figures of sections 7-8
.venv/bin/python scripts/plot_experiments.py --out "${FIGURES:-docs/figures}" \
    --curves "$EXP/boxsam1" "$EXP/boxsam2" "$EXP/finesam" "$EXP/stable" "$EXP/hq" \
    --evals "$EXP/eval-stable.json" "$EXP/eval-cstable.json" "$EXP/eval-hq.json" "$EXP/eval-hq-thin.json" \
    --examples "$EXP/eval-stable.json" --backbone "$BOXSAM" --plugin "$(ls "$EXP"/stable/*.safetensors)" \
    "${DATA[@]}" --protocol 1-point
