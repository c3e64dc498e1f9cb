#!/usr/bin/env bash
# Collect every dataset the trainer uses, one process after another (one core; others need CPU too).
#   clients/python/collect_all.sh [OUT_DIR]     default /work/data
set -euo pipefail
OUT=${1:-/work/data}
PY=${PYTHON:-python}
mkdir -p "$OUT"
run() { # name env kind steps
    echo "== $1" >&2
    "$PY" -m flowgate_client.collect --env "$2" --kind "$3" --steps "$4" --seed 0 --compress --out "$OUT/$1.npz"
}
run hopper-medium                    HopperBulletEnv                 medium        200000
run hopper-expert                    HopperBulletEnv                 expert        100000
run hopper-random                    HopperBulletEnv                 random         50000
run inverted-double-pendulum-medium  InvertedDoublePendulumBulletEnv medium        100000
run inverted-double-pendulum-expert  InvertedDoublePendulumBulletEnv expert        100000
run inverted-double-pendulum-random  InvertedDoublePendulumBulletEnv random         50000
run hopper-medium-replay             HopperBulletEnv                 medium-replay 200000
run hopper-medium-expert             HopperBulletEnv                 medium-expert 200000
run walker2d-medium                  Walker2DBulletEnv               medium        200000
run walker2d-medium-replay           Walker2DBulletEnv               medium-replay 200000
run halfcheetah-medium               HalfCheetahBulletEnv            medium        200000
run halfcheetah-medium-replay        HalfCheetahBulletEnv            medium-replay 200000
