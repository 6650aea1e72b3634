#!/usr/bin/env bash
# The CUDA target's check on a machine with a GPU (issue 15's "GPU check"): every example through
# `kcomp run --target cuda --check --json` (each must report "mode": "gpu" and "ok": true), then
# `kcomp bench cuda --json`.  Results go to $OUT (or ./gpu-check).
#
# Such machines have torch but may have no network: build the wheels here first and carry them,
#     pip wheel --no-deps -w wheels . && pip download -d wheels lark networkx rich threadpoolctl
# and this script installs from ./wheels when kcomp is not importable.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
if ! python -c "import kcomp" 2>/dev/null; then
    python -m pip install -q --no-index --find-links wheels kcomp lark networkx rich threadpoolctl || exit 2
fi
python - <<'PY' > "$out/gpu.txt" 2>&1
import torch
print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
cat "$out/gpu.txt"
fail=0
for f in examples/*.kc; do
    name=$(basename "$f" .kc)
    if ! timeout 300 kcomp run "$f" --target cuda:sm_90 --check --json > "$out/$name.json" 2> "$out/$name.err"; then
        fail=1
    fi
    python - "$out/$name.json" <<'PY' || fail=1
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['kernel']:18s} mode={r.get('mode')} ok={r['ok']} max_rel_err={r.get('max_rel_err')}")
sys.exit(0 if r["ok"] and r.get("mode") == "gpu" else 1)
PY
done
timeout 600 kcomp bench cuda --json > "$out/bench.json" 2> "$out/bench.err" || fail=1
python -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=1)[:4000])" "$out/bench.json"
exit $fail
