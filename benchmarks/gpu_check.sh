#!/usr/bin/env bash
# The GPU figures in one call on a lent GPU machine (JAX with CUDA, no TensorFlow, no package registry).
#
# Here, first:  bash benchmarks/gpu_check.sh --prepare
#   puts what the GPU machine lacks into benchmarks/gpu_carry/ (ignored by git, < 64 MiB): the real
#   Fashion-MNIST files and the wheels of Keras, Hydra/OmegaConf, Hydra's joblib launcher, MLflow (skinny,
#   with SQLAlchemy and Alembic) and their dependencies for CPython 3.12 (the machine's Python, KINDS.md),
#   less the packages that machine has already.
# There:        bash benchmarks/gpu_check.sh        (the device tool: carry benchmarks/gpu_carry, <= 9 min)
#   1. the seed CNN at batch 64 on the full training set, backend=jax, aug=mixup and aug=none: s/epoch;
#   2. 1, 2, 4 and 8 jobs at once on the one GPU: images per second of them all;
#   3. the harness end to end (Hydra multirun, MLflow SQLite store, report): the default sweep (6 jobs x 10
#      epochs, backend=jax) one job at a time, six at once (hydra/launcher=joblib), and packed
#      (hydra/launcher=packed): wall seconds of each, in one call (target for packed: <= 30 s);
#   4. packed programs of 1, 4, 16, 64 jobs in float32 and mixed_bfloat16 (model-epochs/s; targets >= 10 and
#      >= 15 at 64), beside the plain JAX ceiling of ../shared/probes/vmap_pack_probe.py in the same call;
#   5. (alone: PARTS=5) `-m experiment=label_noise_long` packed (36 jobs, 10,000 images, 100 epochs, probes
#      every epoch; ~65 min on the 2-core CPU), then its report (best-epoch columns, memorization.png).
# Figures go to stdout and, when $OUT is set (the device tool sets it), to $OUT/gpu_check.txt.
# PARTS="3 4" (default) picks the parts; SPE="32 128" repeats part 2 for each steps_per_execution (default 32).
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=benchmarks/gpu_carry
# What the harness needs there (pinned to what this venv runs); pip adds their dependencies.
NEEDS=(keras==3.15.1 hydra-core==1.3.2 omegaconf==2.3.0 hydra-joblib-launcher mlflow-skinny==3.17.2 sqlalchemy alembic)
# The GPU machine's own packages (device/KINDS.md, "Python packages already there"): not carried.
HAVE=" absl-py anyio attrs certifi charset-normalizer click cloudpickle filelock fsspec h11 h5py httpcore httpx idna
jinja2 joblib markdown-it-py markupsafe matplotlib mdurl ml-dtypes numpy packaging pandas pillow protobuf psutil
pyarrow pygments pyparsing python-dateutil pyyaml requests rich scipy six tabulate typing-extensions urllib3 werkzeug
zipp scikit-learn threadpoolctl "

if [ "${1:-}" = --prepare ]; then
  set -e
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
  # omegaconf's parser runtime is published as a source archive only: built here into a pure-Python wheel
  .venv/bin/python -m pip wheel --quiet --no-deps -w "$CARRY/wheels" antlr4-python3-runtime==4.9.3
  .venv/bin/python -m pip download --quiet --only-binary=:all: --find-links "$CARRY/wheels" -d "$CARRY/wheels" \
    --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    "${NEEDS[@]}"
  for wheel in "$CARRY"/wheels/*.whl; do  # keep what the GPU machine lacks
    name=$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]_.' '[:lower:]--')
    [[ "$HAVE" == *" $name "* ]] && rm "$wheel"
  done
  ls "$CARRY/wheels"
  cp "$(.venv/bin/python -m mixup_sweeps.data | tail -1)"/*.gz "$CARRY/fashion-mnist/" 2>/dev/null ||
    cp /usr/share/datasets/fashion-mnist/*.gz "$CARRY/fashion-mnist/"
  du -sh "$CARRY"
  exit 0
fi

REPORT=${OUT:-/tmp}/gpu_check.txt
exec > >(tee "$REPORT") 2>&1
echo "== $(date -u +%FT%TZ) $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PY=$(command -v python3 || command -v python)
"$PY" --version
"$PY" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|jax-cuda|keras|numpy|hydra|omegaconf|mlflow|pandas|matplotlib|scipy|h5py|optree|ml.dtypes|torch|tensorflow) ' || true

# What the machine lacks is installed from the carried wheels into a folder of its own (on PYTHONPATH);
# what it has (JAX with CUDA, NumPy, h5py, ...) stays its own.
SITE=/tmp/gpu-site missing=()
for wheel in "$CARRY"/wheels/*.whl; do
  name=$(basename "$wheel" | cut -d- -f1)
  "$PY" -m pip show "$name" >/dev/null 2>&1 || missing+=("$wheel")
done
echo "installing from $CARRY/wheels: ${#missing[@]} wheels"
[ ${#missing[@]} -eq 0 ] || "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "${missing[@]}" ||
  echo "!! could not install some of ${missing[*]}"
export PYTHONPATH=$SITE:$PWD
KERAS_BACKEND=jax "$PY" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__)"
export FASHION_MNIST_DIR=$PWD/$CARRY/fashion-mnist TF_CPP_MIN_LOG_LEVEL=2

PARTS=${PARTS:-3 4}
if [[ " $PARTS " == *" 1 "* ]]; then
  echo; echo "== 1. one job: seed CNN, batch 64, 58,000 images, backend=jax (epoch 1 compiles: left out)"
  timeout 150 "$PY" benchmarks/train_throughput.py --arms stream-jax --aug none mixup --epochs 5 --seeds 0
fi
if [[ " $PARTS " == *" 2 "* ]]; then
  for spe in ${SPE:-32}; do
    echo; echo "== 2. jobs at once on the one GPU (aug=mixup, backend=jax, each job its own process)"
    timeout 230 "$PY" benchmarks/train_throughput.py --arms stream-jax --aug mixup --epochs 4 \
      --steps-per-execution "$spe" --jobs-at-once 1 2 4 8
  done
fi
missing=()
for module in mlflow hydra_plugins.hydra_joblib_launcher pandas matplotlib scipy sqlalchemy psutil filelock; do
  "$PY" -c "import $module" 2>/dev/null || missing+=("$module")
done
[ ${#missing[@]} -eq 0 ] || echo "!! missing there: ${missing[*]} (parts 3 and 5 need them)"
sweep() {  # NAME ARGS...: the default sweep, backend=jax, in its own output dir; wall seconds
  local name=$1; shift
  local started=$SECONDS
  timeout 200 "$PY" -m mixup_sweeps.run -m experiment=default_sweep backend=jax "$@" \
    paths.output_dir=/tmp/gpu-$name > "/tmp/gpu-$name.log" 2>&1
  echo "$name: exit $?, $((SECONDS - started)) s wall (6 jobs x 10 epochs, start-up included)"
  grep -E "sweep parent run .* ended" "/tmp/gpu-$name.log" | tail -1
}
if [[ " $PARTS " == *" 3 "* ]]; then
  echo; echo "== 3. the default sweep end to end (Hydra multirun, MLflow SQLite store), backend=jax"
  sweep one-at-a-time
  sweep six-at-once hydra/launcher=joblib hydra.launcher.n_jobs=6
  sweep packed hydra/launcher=packed
  "$PY" -m mixup_sweeps.report --output-dir /tmp/gpu-packed | head -12
fi
if [[ " $PARTS " == *" 4 "* ]]; then
  echo; echo "== 4. packed programs of N jobs (seed CNN, 58,000 images, aug=mixup) and the plain-JAX ceiling"
  for precision in float32 mixed_bfloat16; do
    timeout 170 "$PY" benchmarks/train_throughput.py --packed 1 4 16 64 --aug mixup --epochs 3 --precision "$precision"
  done
  probe=../shared/probes/vmap_pack_probe.py
  [ -f "$probe" ] && timeout 120 "$PY" "$probe" 1,16,64 64 float32,bf16 || echo "probe not found at $probe"
fi
if [[ " $PARTS " == *" 5 "* ]]; then
  echo; echo "== 5. -m experiment=label_noise_long (36 jobs), packed"
  started=$SECONDS
  timeout 560 "$PY" -m mixup_sweeps.run -m experiment=label_noise_long backend=jax \
    hydra/launcher=packed paths.output_dir=/tmp/gpu-noise > /tmp/gpu-noise.log 2>&1
  echo "label_noise_long: exit $?, $((SECONDS - started)) s wall"; tail -3 /tmp/gpu-noise.log
  timeout 30 "$PY" -m mixup_sweeps.report --output-dir /tmp/gpu-noise --out "${OUT:-/tmp}/label_noise_long" \
    | head -12
fi
echo "== done $(date -u +%FT%TZ)"
