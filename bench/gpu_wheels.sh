#!/usr/bin/env bash
# Wheels for bench/gpu_check.sh on a GPU machine without network: the packages the scan
# needs that a CUDA image with PyTorch usually lacks, for CPython 3.12 on x86-64 Linux.
# Run where a package registry is reachable, from the repository root; writes .whl/
# (keep it out of git: `echo /.whl/ >> .git/info/exclude`). About 4 MB.
#
#   bash bench/gpu_wheels.sh [PYTHON_VERSION]   # default 3.12
set -eu -o pipefail
cd "$(dirname "$0")/.."
PY=${1:-3.12}
PIP=${PIP:-python3 -m pip}
rm -rf .whl && mkdir -p .whl
# open_clip_torch and its two small needs the image lacks; pyexiv2 writes the metadata.
# (torch, torchvision, timm, huggingface_hub, safetensors, numpy, pillow, scikit-image,
# pyyaml come with the image: the scan runs on the image's own versions of those.)
$PIP download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl \
  "open_clip_torch==3.3.0" "ftfy==6.3.1" "wcwidth==0.9.4" "pyexiv2==2.16.0"
ls -la .whl
