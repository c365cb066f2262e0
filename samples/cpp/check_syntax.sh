#!/usr/bin/env bash
# Compile-check the TensorRT part of the sample without TensorRT's libraries or a GPU:
#   samples/cpp/check_syntax.sh TENSORRT_INCLUDE_DIR [CUDA_INCLUDE_DIR]
# TENSORRT_INCLUDE_DIR holds NvInferRuntime.h (an installed TensorRT, or include/ of the public
# NVIDIA/TensorRT repository at a release tag); CUDA_INCLUDE_DIR holds cuda_runtime_api.h (default:
# $CUDA_HOME/include, else /usr/local/cuda/include). Every source is compiled with -fsyntax-only and
# warnings as errors, so a call that the headers mark deprecated fails the check too. Nothing is
# linked or run. CXX picks the compiler (default g++).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 TENSORRT_INCLUDE_DIR [CUDA_INCLUDE_DIR]" >&2
    exit 2
fi
trt_include=$1
cuda_include=${2:-${CUDA_HOME:-/usr/local/cuda}/include}
cxx=${CXX:-g++}
here=$(cd "$(dirname "$0")" && pwd)

if [[ ! -f $trt_include/NvInferRuntime.h ]]; then
    echo "$0: no NvInferRuntime.h in $trt_include: give TensorRT's include folder" >&2
    exit 2
fi
if [[ ! -f $cuda_include/cuda_runtime_api.h ]]; then
    echo "$0: no cuda_runtime_api.h in $cuda_include: give CUDA's include folder as 2nd argument" >&2
    exit 2
fi

version=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' \
    | "$cxx" -E -P -x c++ -isystem "$trt_include" - | tail -n 1 | tr -d ' ')
echo "TensorRT headers $version ($trt_include), CUDA headers $cuda_include, $("$cxx" --version | head -n 1)"

for source in "$here"/src/*.cpp "$here"/tests/*.cpp; do
    # -isystem: warnings inside the vendor headers are theirs; deprecations still fire at our calls.
    "$cxx" -std=c++17 -fsyntax-only -Wall -Wextra -Wpedantic -Werror \
        -I"$here/src" -isystem "$trt_include" -isystem "$cuda_include" "$source"
    echo "  ok  ${source#"$here"/}"
done
