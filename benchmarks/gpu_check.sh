#!/usr/bin/env bash
# The GPU figures in one call on a lent GPU machine (JAX with CUDA, no TensorFlow, no package registry).
#
# Here, first:  bash benchmarks/gpu_check.sh --prepare
#   puts what the GPU machine lacks into benchmarks/gpu_carry/ (ignored by git, < 64 MiB): the real
#   Fashion-MNIST files and the wheels of Keras, Hydra/OmegaConf and their small dependencies, for
#   CPython 3.10-3.13 (the machine's version is not known in advance).
# There:        bash benchmarks/gpu_check.sh        (the device tool: carry benchmarks/gpu_carry, <= 8 min)
#   1. the seed CNN at batch 64 on the full training set, backend=jax, aug=mixup and aug=none: s/epoch;
#   2. 1, 2, 4 and 8 jobs at once on the one GPU: images per second of them all;
#   3. the harness end to end (Hydra multirun, MLflow store, 4 jobs through joblib) when Hydra's launcher,
#      MLflow and the rest can be imported there; otherwise it says so (the training path ran in 1-2).
# Figures go to stdout and, when $OUT is set (the device tool sets it), to $OUT/gpu_check.txt.
# PARTS="1 2 3" (default) picks the parts; SPE="32 128" repeats part 2 for each steps_per_execution (default 32).
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=benchmarks/gpu_carry
PYTHONS=(3.10 3.11 3.12 3.13)
PURE=(keras==3.15.1 hydra-core==1.3.2 omegaconf==2.3.0 absl-py rich namex
      markdown-it-py mdurl pygments packaging typing-extensions)
BINARY=(h5py optree pyyaml)

if [ "${1:-}" = --prepare ]; then
  set -e
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
  pip=(.venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: -d "$CARRY/wheels")
  "${pip[@]}" "${PURE[@]}"
  # omegaconf's parser runtime is published as a source archive only: built here into a pure-Python wheel
  .venv/bin/python -m pip wheel --quiet --no-deps -w "$CARRY/wheels" antlr4-python3-runtime==4.9.3
  for version in "${PYTHONS[@]}"; do
    "${pip[@]}" --python-version "$version" --implementation cp --abi "cp${version/./}" \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
      "${BINARY[@]}"
  done
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
for pkg in keras hydra-core omegaconf antlr4-python3-runtime absl-py rich namex markdown-it-py mdurl pygments \
           optree pyyaml typing-extensions packaging h5py; do
  "$PY" -m pip show "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
echo "installing from $CARRY/wheels: ${missing[*]:-nothing}"
[ ${#missing[@]} -eq 0 ] || "$PY" -m pip install --quiet --no-index --no-deps --find-links "$CARRY/wheels" \
  --target "$SITE" "${missing[@]}" || echo "!! could not install ${missing[*]} from $CARRY/wheels"
export PYTHONPATH=$SITE:$PWD
KERAS_BACKEND=jax "$PY" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__)"
export FASHION_MNIST_DIR=$PWD/$CARRY/fashion-mnist TF_CPP_MIN_LOG_LEVEL=2

PARTS=${PARTS:-1 2 3}
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
[[ " $PARTS " == *" 3 "* ]] || { echo "== done $(date -u +%FT%TZ)"; exit 0; }

echo; echo "== 3. the harness end to end: 4 jobs through hydra/launcher=joblib on one GPU"
missing=()
for module in mlflow hydra_plugins.hydra_joblib_launcher pandas matplotlib scipy sqlalchemy; do
  "$PY" -c "import $module" 2>/dev/null || missing+=("$module")
done
if [ ${#missing[@]} -eq 0 ]; then
  timeout 150 "$PY" -m mixup_sweeps.run -m backend=jax hydra/launcher=joblib hydra.launcher.n_jobs=4 \
    seed=0,1,2,3 trainer.epochs=3 paths.output_dir=/tmp/gpu-harness
  "$PY" -m mixup_sweeps.report --output-dir /tmp/gpu-harness | head -30
else
  echo "not run: ${missing[*]} not on this machine (MLflow and its stack are too large to carry);"
  echo "parts 1-2 ran the harness's training path (augment, models, train.make_optimizer, fit)."
fi
echo "== done $(date -u +%FT%TZ)"
