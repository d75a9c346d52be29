#!/usr/bin/env bash
# Regenerates Sources/DistillONNX/Generated/onnx.pb.swift from scripts/onnx/onnx.proto.
#
# The generated file is committed, so building DistillKit never needs protoc. Run this only when
# onnx.proto changes. scripts/onnx/onnx.proto is Debian's /usr/include/onnx/onnx.proto from
# libonnx-dev (ONNX 1.12, IR version 8; it covers the ONNX-ML operators too, whose attributes use
# the same messages); pass --refresh to copy it again from there.
#
# Needs: protoc (apt-get install protobuf-compiler) and protoc-gen-swift from swift-protobuf at the
# version Package.resolved pins (1.39.0). Without PROTOC_GEN_SWIFT set, the plugin is built in a
# throwaway folder outside the repository (about 2-10 minutes):
#   git clone https://github.com/apple/swift-protobuf && cd swift-protobuf && git checkout 1.39.0
#   swift build -c release --product protoc-gen-swift
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--refresh" ]; then
  cp /usr/include/onnx/onnx.proto scripts/onnx/onnx.proto
fi

version=1.39.0
plugin="${PROTOC_GEN_SWIFT:-}"
if [ -z "$plugin" ]; then
  work="${TMPDIR:-/tmp}/distillkit-swift-protobuf-$version"
  if [ ! -x "$work/.build/release/protoc-gen-swift" ]; then
    source="${SWIFT_PROTOBUF_GIT:-https://github.com/apple/swift-protobuf.git}"
    [ -d "$work" ] || git clone -q "$source" "$work"
    (cd "$work" && git checkout -q "$version" && swift build -c release --product protoc-gen-swift)
  fi
  plugin="$work/.build/release/protoc-gen-swift"
fi

out=Sources/DistillONNX/Generated
mkdir -p "$out"
# Internal visibility: the protobuf messages are an implementation detail of DistillONNX, whose
# public API has its own types (ONNXModel, ONNXValue, ...). Tests reach them with @testable import.
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_opt=Visibility=Internal --swift_opt=FileNaming=DropPath \
  --proto_path=scripts/onnx --swift_out="$out" scripts/onnx/onnx.proto
echo "wrote $out/onnx.pb.swift ($(wc -c < "$out/onnx.pb.swift") bytes)"
