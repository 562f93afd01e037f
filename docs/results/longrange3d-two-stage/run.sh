#!/bin/bash
# The pair of docs/benchmarks.md section 10 (2026-12-02): ./run.sh atlas3d_tiny atlas & ./run.sh atlas3d_tiny_window window
# usage: run.sh MODEL TAG. Stage 1 ran with the then-default optim.lr 2e-3 (the default is 4e-3 since; see config.yaml)
cd /work/main && . .venv/bin/activate
M=$1; T=$2; O=/tmp/r3d/final
COMMON="--data.task longrange3d --model.name $M --optim.batch_size 16 --data.train_samples 1000 --run.progress never"
s=$(date +%s.%N)
atlas-vision train $COMMON --data.target count --data.val_samples 250 --epochs 7 --schedule.min_lr 2e-4 --out $O/${T}_count > $O/${T}_count.log 2>&1
m=$(date +%s.%N)
atlas-vision train $COMMON --model.init_from $O/${T}_count --data.val_samples 500 --epochs 3 --optim.lr 5e-4 --schedule.warmup_epochs 0.5 --out $O/${T}_same > $O/${T}_same.log 2>&1
e=$(date +%s.%N)
echo "$T stage1 $(echo "$m - $s" | bc) s stage2 $(echo "$e - $m" | bc) s total $(echo "$e - $s" | bc) s" > $O/${T}_wall.txt
