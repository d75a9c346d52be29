@testable import DistillONNX
import DistillNN
import DistillTensor
import Foundation
import Testing

// The Swift half of tests/interop/test_onnx_import.py and test_onnx_export.py, which run
//   swift test --filter ONNXInteropTests
// with DISTILL_ONNX_INTEROP_DIR set to a folder they prepared:
//   cases/<name>/model.onnx + input_N.pb   models built with onnx.helper or exported by skl2onnx;
//                                         DistillKit writes output_N.pb (every graph output, in
//                                         order) or error.txt, and Python compares with onnxruntime.
//   students.txt + images.pb              model specs, one per line, and Fashion-MNIST images;
//                                         DistillKit writes <spec>.safetensors (seeded weights,
//                                         random batch-norm statistics), <spec>.onnx (its export)
//                                         and <spec>.logits.pb (the native model's logits on the
//                                         images), which Python runs through onnxruntime.
// Without the variable the test is skipped, so a plain `swift test` is unaffected.

/// A file-system-safe name for a model spec (`mlp:784-64-10` → `mlp_784-64-10`).
func safeName(_ spec: String) -> String { spec.replacingOccurrences(of: ":", with: "_") }

func readTensorProto(_ url: URL) throws -> ONNXValue {
    try ONNXValue.decode(try Onnx_TensorProto(serializedBytes: try Data(contentsOf: url)), directory: url.deletingLastPathComponent())
}

func writeTensorProto(_ value: ONNXValue, name: String, to url: URL) throws {
    let data: Data = try value.encoded(name: name).serializedBytes()
    try data.write(to: url)
}

@Suite("ONNX interchange with onnxruntime (driven by tests/interop)")
struct ONNXInteropTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["DISTILL_ONNX_INTEROP_DIR"] != nil))
    func interchange() throws {
        try BLAS.ensureLoaded()
        let folder = URL(fileURLWithPath: ProcessInfo.processInfo.environment["DISTILL_ONNX_INTEROP_DIR"]!)
        let fm = FileManager.default
        let cases = folder.appendingPathComponent("cases")
        for name in ((try? fm.contentsOfDirectory(atPath: cases.path)) ?? []).sorted() {
            let dir = cases.appendingPathComponent(name)
            do {
                let model = try ONNXModel(contentsOf: dir.appendingPathComponent("model.onnx"))
                var feeds: [String: ONNXValue] = [:]
                for (i, info) in model.inputs.enumerated() { feeds[info.name] = try readTensorProto(dir.appendingPathComponent("input_\(i).pb")) }
                let outputs = try model.run(feeds)
                for (i, info) in model.outputs.enumerated() {
                    try writeTensorProto(outputs[info.name]!, name: info.name, to: dir.appendingPathComponent("output_\(i).pb"))
                }
            } catch {
                try "\(error)".write(to: dir.appendingPathComponent("error.txt"), atomically: true, encoding: .utf8)
            }
        }

        let studentList = folder.appendingPathComponent("students.txt")
        guard let specs = try? String(contentsOf: studentList, encoding: .utf8) else { return }
        let images = try readTensorProto(folder.appendingPathComponent("images.pb")).floatTensor!
        for spec in specs.split(separator: "\n").map(String.init).filter({ !$0.isEmpty }) {
            let model = try ModelZoo.build(spec, inputShape: Array(images.shape.dropFirst()), numClasses: 10, seed: 3)
            var g = SeededGenerator(seed: 9)
            for (name, t, _) in model.namedTensors() where name.hasSuffix("running_mean") || name.hasSuffix("running_var") {
                t.assign(name.hasSuffix("running_var") ? Tensor.randomUniform(t.shape, low: 0.5, high: 2, using: &g)
                                                       : Tensor.randomUniform(t.shape, low: -0.3, high: 0.3, using: &g))
            }
            let base = folder.appendingPathComponent(safeName(spec))
            let info = SavedModel(spec: spec, inputShape: Array(images.shape.dropFirst()), numClasses: 10)
            try info.save(model, to: base.appendingPathExtension("safetensors"))
            try ONNXExport.write(model, inputShape: info.inputShape, to: base.appendingPathExtension("onnx"), metadata: ["distillkit.spec": spec])
            model.eval()
            let logits = withNoGrad { model(images) }
            try writeTensorProto(.float(logits), name: "logits", to: URL(fileURLWithPath: base.path + ".logits.pb"))
        }
    }
}
