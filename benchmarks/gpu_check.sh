#!/usr/bin/env bash
# The GPU check of issue 14, in one script (every step has its own time limit; the limits add up to 595 s, so the
# whole run stays under 10 minutes). Run from anywhere on a machine with a CUDA GPU and this checkout installed
# (`make setup`, or `pip install -e '.[gpu,bench,cli]'`):
#
#     benchmarks/gpu_check.sh            # PYTHON=/path/to/python to choose the interpreter
#
# Steps, each writing benchmarks/gpu_*.json:
#   1. gpu_info.json      `seglab info --json`: versions, the GPU, which fused backend CUDA losses use (triton).
#   2. gpu_verify.json    Triton == reference on CUDA: the same checks as tests/kernels/test_triton.py (there under
#                         the interpreter), run compiled on the GPU, plus multi-tile and 150-class shapes: values and
#                         gradients of every kind (index / dense multiclass, sigmoid) and option against the eager
#                         backend and the reference losses, float64 / float32 / bfloat16, gradcheck of the op.
#   3. gpu_bench.json     `seglab bench --device cuda --against monai`: fwd+bwd time of every loss against
#                         F.cross_entropy and MONAI, and peak memory per loss (torch.cuda.max_memory_allocated, as a
#                         multiple of the logits) for seglab and MONAI. gpu_bench_bf16.json: the same in bfloat16.
#                         gpu_bench_eager.json: Dice+CE / Dice+focal with the eager backend forced (Triton's gain).
#   4. gpu_roofline.json  bytes moved per logit by the fused kernels and the achieved GB/s, against a plain copy
#                         (torch and Triton) and the device's nominal bandwidth (benchmarks/gpu_roofline.py).
#   5. gpu_summary.json   the headline numbers of 2-4 and the status of every step.
# Exit status: 0 when every step passed, 1 when one failed (the others still run), 2 without a usable GPU.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT=benchmarks

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to $PY (torch.cuda.is_available() is False, or torch does not import): run this on a GPU machine" >&2
  exit 2
fi
if [ -n "${TRITON_INTERPRET:-}" ] && [ "${TRITON_INTERPRET}" != "0" ]; then
  echo "gpu_check: TRITON_INTERPRET=$TRITON_INTERPRET is set: unset it (the GPU kernels must be compiled)" >&2
  exit 2
fi
if ! "$PY" -c 'import triton' 2>/dev/null; then
  echo "gpu_check: triton does not import in $PY: pip install 'seglab[gpu]'" >&2
  exit 2
fi
unset SEGLAB_FUSED SEGLAB_FUSED_BACKEND

declare -A STATUS
step() {  # step NAME SECONDS CMD...: run with a time limit, record ok / failed (exit code) / timeout
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  if [ $rc -eq 0 ]; then STATUS[$name]=ok
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then STATUS[$name]="timeout after ${limit}s"
  else STATUS[$name]="failed (exit $rc)"; fi
  echo "== $name: ${STATUS[$name]} in $((SECONDS - t0)) s"
}

step info 45 sh -c "\"$PY\" -m seglab info --json > $OUT/gpu_info.json"
step verify 210 "$PY" tests/kernels/test_triton.py --device cuda --large --json "$OUT/gpu_verify.json"
step bench 150 "$PY" -m seglab bench --device cuda --against monai --rounds 15 --out "$OUT/gpu_bench.json"
step bench_bf16 70 "$PY" -m seglab bench --device cuda --against monai --dtype bfloat16 --shapes 16x4x256x256,2x4x96x96x96 \
  --losses dice+ce,dice+focal,dice --rounds 15 --out "$OUT/gpu_bench_bf16.json"
step bench_eager 50 env SEGLAB_FUSED_BACKEND=eager "$PY" -m seglab bench --device cuda --losses dice+ce,dice+focal \
  --rounds 15 --no-memory --out "$OUT/gpu_bench_eager.json"
step roofline 70 "$PY" benchmarks/gpu_roofline.py --out "$OUT/gpu_roofline.json"

STATUS_JSON="{"
for k in "${!STATUS[@]}"; do STATUS_JSON+="\"$k\": \"${STATUS[$k]}\", "; done
STATUS_JSON="${STATUS_JSON%, }}"
"$PY" - "$OUT" "$STATUS_JSON" <<'EOF'
import json, os, sys
out, status = sys.argv[1], json.loads(sys.argv[2])

def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

s = {"status": status}
info = load("gpu_info.json")
if info:
    s["gpu"] = info["devices"]["cuda"]["devices"]
    s["cuda_backend"] = info.get("fused_cuda", {}).get("backend")
v = load("gpu_verify.json")
if v:
    cases = {k: r for k, r in v.items() if not k.endswith("#s")}
    s["verify"] = {"passed": sum(r == "ok" for r in cases.values()), "total": len(cases),
                   "failed": sorted(k for k, r in cases.items() if r != "ok")}
for name in ("gpu_bench.json", "gpu_bench_bf16.json", "gpu_bench_eager.json"):
    b = load(name)
    if not b:
        continue
    rows = {}
    for shape, res in b.get("shapes", {}).items():
        row = {}
        for k, r in res.items():
            if not isinstance(r, dict) or "ms" not in r:
                continue
            row[k] = {"ms": round(r["ms"], 4), "ratio_ce": round(r.get("ratio_ce", float("nan")), 3),
                      "peak_extra_x_logits": r.get("peak_extra_x_logits"),
                      **({"speedup_vs": r["speedup_vs"]} if r.get("speedup_vs") else {})}
        rows[shape] = row
    s[name.removesuffix(".json")] = {"fused_backend": b.get("settings", {}).get("fused_backend"), "shapes": rows}
r = load("gpu_roofline.json")
if r:
    s["roofline"] = {"nominal_bandwidth_GBps": r.get("nominal_bandwidth_GBps"), "rows": [
        {"shape": x["shape"], "dtype": x["dtype"], "kind": x["kind"], "bytes_per_logit": x["bytes_per_logit"],
         "GBps_fwd": round(x["GBps"]["triton_forward"]), "GBps_bwd": round(x["GBps"]["triton_backward"]),
         "GBps_copy": round(max(x["GBps"]["torch_copy"], x["GBps"]["triton_copy"])),
         "fraction_of_copy": x["fraction_of_copy"], "triton_over_eager": x["triton_over_eager"]} for x in r["rows"]]}
with open(os.path.join(out, "gpu_summary.json"), "w") as f:
    json.dump(s, f, indent=1)
print(json.dumps(s, indent=1)[:6000])
EOF

fail=0
for k in "${!STATUS[@]}"; do [ "${STATUS[$k]}" = ok ] || fail=1; done
if [ $fail -eq 0 ]; then echo "gpu_check: all steps passed (benchmarks/gpu_*.json)"; else
  echo "gpu_check: some steps did not pass — see above and benchmarks/gpu_summary.json" >&2; fi
exit $fail
