#!/usr/bin/env bash
# Your own network, start to finish: torchvision's ResNet-18 trained briefly on Fashion-MNIST resized to 64x64,
# ASK_5a on layer3 and layer4 from those weights, its accuracy before and after fine-tuning, the counts, the
# bench and the fast ONNX export. About 20 minutes on 2 cores.  Usage: bash examples/own-network-session.sh [DIR]
set -euo pipefail
OUT=${1:-own-network-session}
PY=${PY:-.venv/bin/python}
DENSE_STEPS=${DENSE_STEPS:-400} FINE_TUNE_STEPS=${FINE_TUNE_STEPS:-150}
LIMIT=(${DATA_LIMIT:+--data-limit "$DATA_LIMIT"})  # a quick check: DENSE_STEPS=3 FINE_TUNE_STEPS=2 DATA_LIMIT=256
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
NET=(--arch torchvision:resnet18 --dataset fashion-mnist --input-size 64)
ASK=(--anycfg ASK_5a --layers 'layer[34].*')
ks() { "$PY" -m designer "$@"; }
field() { "$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }

ks prepare-data --home "$OUT/ws"
ks train --home "$OUT/ws" "${NET[@]}" --max-steps "$DENSE_STEPS" --batch-size 64 --lr 0.05 "${LIMIT[@]}" --name dense --json > "$OUT/dense.json"
ks export "${NET[@]}" --checkpoint "$(field "$OUT/dense.json" checkpoint)" --format weights --out "$OUT/dense.pt"
"$PY" -c "import sys, torch, torchvision; torchvision.models.resnet18(num_classes=10).load_state_dict(
    torch.load(sys.argv[1], weights_only=True)); print('dense.pt is a plain torchvision state_dict')" "$OUT/dense.pt"

ks count "${NET[@]}" | tail -1
ks count "${NET[@]}" "${ASK[@]}" | tail -1
ks evaluate --home "$OUT/ws" "${NET[@]}" --checkpoint "$OUT/dense.pt" "${LIMIT[@]}"
ks evaluate --home "$OUT/ws" "${NET[@]}" "${ASK[@]}" --checkpoint "$OUT/dense.pt" "${LIMIT[@]}"
ks train --home "$OUT/ws" "${NET[@]}" "${ASK[@]}" --checkpoint "$OUT/dense.pt" --max-steps "$FINE_TUNE_STEPS" \
    --batch-size 64 "${LIMIT[@]}" --lr 0.01 --warmup-epochs 0 --name ask-fine-tuned --json > "$OUT/ask.json"
echo "fine-tuned: $(field "$OUT/ask.json" test_acc)% test accuracy"
ks bench "${NET[@]}" "${ASK[@]}" --backend all --batch-size 32
ks export "${NET[@]}" "${ASK[@]}" --checkpoint "$(field "$OUT/ask.json" checkpoint)" --format onnx --out "$OUT/ask.onnx"
