#!/usr/bin/env bash
# Every CUDA-only check of Dreamer in one command, for a lent GPU machine (see docs/gpu.md).
#
#   bash bench/gpu_check.sh            # from the repo root; results in $OUT, else bench/results/
#
# Steps, each under `timeout`, cut to a shared wall-clock budget (GPU_CHECK_BUDGET_S, default
# 450 s) so the whole run ends inside 8 minutes, and none stops the ones after it:
#   1. machine and versions (nvidia-smi, python, torch, nvcc, Python headers)
#   2. carried wheels: .whl/*.whl -> /tmp/site (no index, no deps); PYTHONPATH=/tmp/site:<repo>
#   3. builds, side by side: nvdiffrast from third_party/nvdiffrast (pip --no-build-isolation
#      --no-deps, into /tmp/site-nvdiffrast), gsplat's and nerfacc's JIT CUDA extensions (each
#      warmed by one call),
#      both for this card's arch only (TORCH_CUDA_ARCH_LIST) with MAX_JOBS=16
#   4. python -m pytest -m gpu on the test files that hold gpu-marked tests
#   5. python -m bench.gpu_bench (writes gpu_<gpu-name>.json)
# Files written to the results folder (at most 8 come back from the device tool):
#   gpu_check.log (everything), build_nvdiffrast.log, build_gsplat.log, build_nerfacc.log,
#   pytest_gpu.log, gpu_<gpu-name>.json.
# Without CUDA (a CPU machine) the builds are skipped, the gpu tests skip themselves and the
# benchmark runs in --smoke mode, so the script can be tried anywhere.

set -u
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
RES=${OUT:-$ROOT/bench/results}
mkdir -p "$RES" || exit 1
RES=$(cd "$RES" && pwd)
BUDGET=${GPU_CHECK_BUDGET_S:-450}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
SITE=${GPU_CHECK_SITE:-/tmp/site}
NVDR_SITE=${SITE}-nvdiffrast
PY=${PYTHON:-python3}
T0=$(date +%s)

exec > >(tee -a "$RES/gpu_check.log") 2>&1

elapsed() { echo $(($(date +%s) - T0)); }
# step_timeout CAP RESERVE: CAP seconds, cut so that RESERVE seconds of the budget stay for later
# steps (never under 5 s: a step whose share is spent fails fast instead of being skipped silently)
step_timeout() {
    local left=$((BUDGET - $(elapsed) - $2))
    ((left > $1)) && left=$1
    ((left < 5)) && left=5
    echo "$left"
}
banner() { echo; echo "==== [$(elapsed)s] $*"; }
declare -A RC=()

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export MAX_JOBS=${MAX_JOBS:-16}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/torch_extensions}
PYBIN=$(dirname "$(command -v "$PY")")
export PATH="$PYBIN:$PATH"  # ninja from the Python environment, for torch's extension builds

# ---------------------------------------------------------------------------------------- 1
banner "1. machine and versions (budget ${BUDGET}s, results in $RES)"
timeout 20 nvidia-smi || echo "nvidia-smi: not available"
echo "nproc $(nproc); $(free -g 2>/dev/null | sed -n 2p)"
command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not on PATH"
timeout 60 "$PY" - <<'EOF'
import os, platform, sys, sysconfig
import torch
inc = sysconfig.get_paths()["include"]
print(f"python {platform.python_version()} at {sys.executable}; Python.h present: {os.path.exists(inc + '/Python.h')}")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"gpu: {p.name}, capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB")
EOF
CUDA_OK=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

# ---------------------------------------------------------------------------------------- 2
banner "2. carried wheels"
shopt -s nullglob
whl=("$WHEELS"/*.whl)
if ((${#whl[@]})); then
    timeout "$(step_timeout 90 330)" "$PY" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$SITE" "${whl[@]}"
    RC[wheels]=$?
    echo "installed ${#whl[@]} wheels into $SITE (rc ${RC[wheels]})"
else
    echo "no wheels in $WHEELS: using what the machine has"
    RC[wheels]=skipped
fi
export PYTHONPATH="$SITE:$NVDR_SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
timeout 60 "$PY" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
names = "torch diffusers transformers huggingface_hub gsplat trimesh pydantic numpy safetensors typing_extensions"
for name in names.split():
    try:
        print(f"  {name}=={version(name)}")
    except PackageNotFoundError:
        print(f"  {name}: MISSING")
EOF

# ---------------------------------------------------------------------------------------- 3
banner "3. CUDA builds: nvdiffrast + gsplat JIT (side by side)"
GSPLAT_OK=0
if [[ $CUDA_OK == 1 ]] && command -v nvcc >/dev/null; then
    ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
    export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH}
    BT=$(step_timeout 300 200)
    echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS timeout ${BT}s"
    if [[ -f third_party/nvdiffrast/setup.py ]]; then
        (
            s=$(date +%s)
            timeout "$BT" "$PY" -m pip install --no-build-isolation --no-deps --no-index --no-cache-dir \
                --target "$NVDR_SITE" ./third_party/nvdiffrast
            rc=$?
            echo "nvdiffrast build rc $rc in $(($(date +%s) - s))s"
            exit $rc
        ) >"$RES/build_nvdiffrast.log" 2>&1 &
        NVDR_PID=$!
    else
        echo "third_party/nvdiffrast missing (name it in carry): nvdiffrast tests skip" | tee "$RES/build_nvdiffrast.log"
        NVDR_PID=
    fi
    (
        timeout "$BT" "$PY" - <<'EOF'
import time
t0 = time.time()
import torch
from gsplat.cuda._backend import _C
assert _C is not None, "gsplat: no CUDA extension"
print(f"gsplat extension ready after {time.time() - t0:.1f}s")
from bench.bench_gaussians import scene
from renderers.gaussians import rasterize_gaussians
s = scene(2000, 64, 2, "cuda")
s["means"].requires_grad_(True)
r = rasterize_gaussians(**s, width=64, height=64, backend="gsplat")
r.rgb.sum().backward()
torch.cuda.synchronize()
print(f"gsplat render+backward ok, alpha mean {r.alpha.mean().item():.3f}; {time.time() - t0:.1f}s in all")
EOF
    ) >"$RES/build_gsplat.log" 2>&1 &
    GS_PID=$!
    (
        timeout "$BT" "$PY" - <<'EOF'
import time
t0 = time.time()
import torch
from nerfacc import OccGridEstimator
est = OccGridEstimator([-1.0] * 3 + [1.0] * 3, resolution=32).cuda()
est.update_every_n_steps(0, lambda p: torch.ones(len(p), device=p.device) * 0.5, n=1)
rays_o = torch.tensor([[0.0, 0.0, 2.5]], device="cuda")
rays_d = torch.tensor([[0.0, 0.0, -1.0]], device="cuda")
ray_indices, _, _ = est.sampling(rays_o, rays_d, render_step_size=0.05)
torch.cuda.synchronize()
print(f"nerfacc extension ready, {len(ray_indices)} samples; {time.time() - t0:.1f}s")
EOF
    ) >"$RES/build_nerfacc.log" 2>&1 &
    NF_PID=$!
    wait "$GS_PID"
    RC[gsplat]=$?
    wait "$NF_PID"
    RC[nerfacc]=$?
    if [[ -n $NVDR_PID ]]; then
        wait "$NVDR_PID"
        RC[nvdiffrast]=$?
    else
        RC[nvdiffrast]=missing
    fi
    [[ ${RC[gsplat]} == 0 ]] && GSPLAT_OK=1
    for name in gsplat nerfacc nvdiffrast; do
        echo "--- build_$name.log (rc ${RC[$name]}), last lines:"
        tail -n 15 "$RES/build_$name.log"
    done
    timeout 60 "$PY" -c "import nvdiffrast.torch as dr, torch; dr.RasterizeCudaContext(); print('nvdiffrast', dr.__file__)" \
        || echo "nvdiffrast: not importable"
else
    echo "no CUDA device or no nvcc: builds skipped"
    RC[gsplat]=skipped
    RC[nerfacc]=skipped
    RC[nvdiffrast]=skipped
fi

# ---------------------------------------------------------------------------------------- 4
banner "4. pytest -m gpu"
mapfile -t GPU_TESTS < <(grep -rlE --include='test_*.py' 'mark\.gpu' tests | sort)
echo "files with gpu tests: ${GPU_TESTS[*]}"
DESELECT=()
# a failed gsplat build must not be retried (minutes) inside the test that needs it
[[ $CUDA_OK == 1 && $GSPLAT_OK == 0 ]] && DESELECT=(-k "not gsplat")
# only these files: the rest of tests/ imports the studio's packages, which the GPU machine lacks
timeout "$(step_timeout 120 140)" "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider -o timeout=110 \
    "${DESELECT[@]}" "${GPU_TESTS[@]}" 2>&1 | tee "$RES/pytest_gpu.log"
RC[pytest]=$?

# ---------------------------------------------------------------------------------------- 5
banner "5. benchmark"
BENCH_ARGS=(--out "$RES")
if [[ $CUDA_OK != 1 ]]; then
    BENCH_ARGS+=(--smoke)
elif [[ $GSPLAT_OK == 0 ]]; then
    BENCH_ARGS+=(--no-gsplat)
fi
TB=$(step_timeout 400 10)
timeout "$TB" "$PY" -m bench.gpu_bench "${BENCH_ARGS[@]}" --budget-s $((TB > 40 ? TB - 30 : 10))
RC[bench]=$?

# ---------------------------------------------------------------------------------------- summary
banner "summary (rc; 124 = timed out)"
for k in wheels gsplat nerfacc nvdiffrast pytest bench; do echo "  $k: ${RC[$k]:-not run}"; done
grep -E "passed|failed|skipped|error" "$RES/pytest_gpu.log" | tail -n 3
echo "results in $RES:"
ls -l "$RES"
echo "total $(elapsed)s"
