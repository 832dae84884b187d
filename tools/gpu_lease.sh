#!/usr/bin/env bash
# Train face runs on a lent GPU machine that receives only a copy of this working tree, at most 64 MiB a call,
# and can reach no network (this workplace's `device` tool). The face sets, the teacher's cached targets and two
# wheels do not fit in one call, so they travel in parts, one call each, and wait on the machine (kept warm
# between calls) until `train` puts them together. Runs come back as one .tgz each (no last.pt); unpack them
# into runs/ here and report them with bench/faces.py (without --train-only), which measures them on this
# machine's crops and writes their records.
#
#   here:  tools/gpu_lease.sh pack                  # -> .lease/part0 .. .lease/partN (git-ignored), N printed
#   there: tools/gpu_lease.sh recv                  # one call per part, carrying .lease/partK and nothing else
#   there: tools/gpu_lease.sh train EXPERIMENT STEPS SECONDS PROTOCOL...   # carrying the last part
#   here:  for f in FILES_AT/*.tgz; do tar -xzf $f -C runs; done
#          python bench/faces.py --experiment EXPERIMENT --steps STEPS --protocols ... --out bench/results/X.md
#
# STEPS is bench/faces.py's --steps ("-" for the experiment's own schedule, so runs named <name>-<protocol>);
# SECONDS caps the training: a run stopped there keeps its checkpoint on the machine, and the same `train`
# call again (while the machine is warm) resumes it. Each protocol trains in its own process, side by side on
# the one GPU. Measured on an H100 (2026-11-24): the 183 MB payload went in five calls of about 10 s each;
# crops took 65 s; eight 6,000-step runs of experiments/faces_student96_grey.toml side by side, 5 min.
# Consistent teaching (distill_views = "consistent") needs no dlib there: the payload carries the teacher's
# weights as PyTorch reads them, and the crop step also cuts the teacher's master chips. On a GPU, use
# experiments/faces_student96_consistent_online.toml (teacher_pool = 0: a fresh view every step).
set -uo pipefail
cd "$(dirname "$0")/.."
STASH=/root/siamface-lease
PART_MIB=46  # + the tracked tree (about 10 MiB) stays under the 64 MiB a call may carry

pack() {
  local py=.venv/bin/python data=../shared/data tmp
  [ -f .cache/teacher/lfw.npz ] || echo "no fixed teacher targets in .cache/teacher (a face distill run here makes" \
    "them): only distill_views = consistent runs can train there" >&2
  # The teacher's weights as PyTorch reads them (training/teacher_net.py), for distill_views = consistent:
  # the machine needs no dlib.
  $py -c 'from pathlib import Path; from training.teacher_net import load_teacher_net; load_teacher_net(Path(".cache"))' \
    || exit 1
  tmp=$(mktemp -d)
  mkdir -p "$tmp/shared/teacher" "$tmp/shared/wheels"
  cp .cache/teacher/*.pt "$tmp/shared/teacher/" && { cp .cache/teacher/*.npz "$tmp/shared/teacher/" 2>/dev/null; true; }
  # The image's OpenCV 5 has no Haar cascades (BlazeFace's fallback); pytorch-metric-learning is not there.
  $py -m pip download -q --no-deps --only-binary=:all: -d "$tmp/shared/wheels" \
    "opencv-python-headless==$($py -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')" \
    "pytorch-metric-learning==$($py -c 'import importlib.metadata as m; print(m.version("pytorch-metric-learning"))')" \
    || exit 1
  tar -cf "$tmp/payload.tar" -C "$data/.." data/lfw data/orl_faces data/yaleb --transform 's,^data/,shared/data/,' \
    && tar -rf "$tmp/payload.tar" -C "$tmp" shared/teacher shared/wheels || exit 1
  rm -rf .lease && mkdir -p .lease/split
  split -b "${PART_MIB}M" -d -a 1 "$tmp/payload.tar" .lease/split/part. || exit 1
  (cd .lease/split && sha256sum part.* > parts.sha256)
  local n=0
  for f in .lease/split/part.*; do mkdir -p ".lease/part$n" && mv "$f" ".lease/part$n/"; n=$((n + 1)); done
  mv .lease/split/parts.sha256 ".lease/part$((n - 1))/" && rmdir .lease/split
  rm -rf "$tmp"
  du -sh .lease/part*
  echo "$n parts: one recv call each for part0..part$((n - 2)), then train carrying part$((n - 1))"
}

recv() {
  mkdir -p $STASH && cp .lease/part*/* $STASH/ && ls -la $STASH
  nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
}

train() {
  local experiment=$1 steps=$2 seconds=$3 started=$SECONDS
  shift 3
  [ $# -gt 0 ] || { echo "train EXPERIMENT STEPS SECONDS PROTOCOL...: no protocol" >&2; exit 2; }
  mkdir -p $STASH /tmp/lease-logs && cp .lease/part*/* $STASH/ 2>/dev/null
  if [ ! -d ../shared/wheels ]; then
    (cd $STASH && sha256sum -c parts.sha256) || exit 1
    cat $STASH/part.* | tar -x -C .. || exit 1
  fi
  mkdir -p .cache/teacher && cp ../shared/teacher/* .cache/teacher/ || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/lease-site \
    ../shared/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/lease-site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
  # Crops once per machine, the three sets side by side, with the experiment's own crop recipe (and the
  # teacher's master chips where it teaches consistently).
  python3 - "$experiment" 2> /tmp/lease-logs/crops.log <<'EOF' || { tail -n 5 /tmp/lease-logs/crops.log; exit 1; }
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from training.config import resolve
from training.consistent import teacher_chip_block
from training.data.face_cache import default_face_block, load_face_crops

cfg = resolve(sys.argv[1])
face = default_face_block(detector=cfg.face_detector)


def build(name: str) -> int:
    if cfg.distill_views == "consistent":
        load_face_crops(Path(cfg.data_root), Path(cfg.cache_dir), (name,), teacher_chip_block(face), channels=3)
    return len(load_face_crops(Path(cfg.data_root), Path(cfg.cache_dir), (name,), face, channels=cfg.channels))


with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("fork")) as pool:  # a stdin script
    for name, n in zip(cfg.face_set_names, pool.map(build, cfg.face_set_names), strict=True):
        print(f"crops {name}: {n}", flush=True)
EOF
  echo "crops ready at $((SECONDS - started)) s"
  local left=$((seconds - (SECONDS - started)))
  local schedule=() p
  [ "$steps" = "-" ] || schedule=(--steps "$steps")
  for p in "$@"; do
    timeout -s INT "$left" python3 bench/faces.py --experiment "$experiment" --protocols "$p" "${schedule[@]}" \
      --train-only > "/tmp/lease-logs/$p.log" 2>&1 &
  done
  wait
  echo "training stopped at $((SECONDS - started)) s"
  for p in "$@"; do
    echo "== $p"
    tr '\r' '\n' < "/tmp/lease-logs/$p.log" | grep -E '^step |Error' | tail -n 2
  done
  local d
  for d in runs/*/; do
    d=$(basename "$d")
    if [ -f "runs/$d/metrics.json" ]; then
      tar -czf "$OUT/$d.tgz" --exclude last.pt -C runs "$d" && echo "packed $d"
    else
      echo "unfinished $d (run the same train call again to resume)"
    fi
  done
}

case "${1:-}" in
  pack) pack ;;
  recv) recv ;;
  train) shift && train "$@" ;;
  *) sed -n '2,20p' "$0" >&2 && exit 2 ;;
esac
