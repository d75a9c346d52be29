import DistillNN
import DistillTensor
import Foundation

/// DistillKit's model/checkpoint bundle: a safetensors file whose metadata names the
/// architecture; the model is rebuilt from that spec and the weights loaded into it. Whatever
/// description `ModelShapes` accepts must then run: the target builds it (weights or not, with a
/// small parameter budget) and runs one example of the declared shape through it, so a gap
/// between the shape check and the real layers is a crash here. An int8 file (`distill
/// quantize`) that the reader accepts runs one example through its integer plan the same way.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSavedModel(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    if let (model, info) = try? SavedModel.decode(data, name: "fuzz.safetensors"), model.layers.first is QuantizedModel {
        let output = try? ModelShapes.check(model, inputShape: info.inputShape, numClasses: info.numClasses)
        precondition(output != nil, "the int8 reader accepted a file whose shapes do not check")
        if info.inputShape.reduce(1, *) <= 4096 {
            let y = withNoGrad { model(Tensor.zeros([1] + info.inputShape)) }
            precondition(y.shape == [1, info.numClasses], "an int8 student of \(info.numClasses) classes gave \(y.shape)")
        }
        return 0
    }
    guard let meta = try? Safetensors.decode(data, name: "fuzz.safetensors").metadata, let spec = meta["distillkit.spec"] else { return 0 }
    let shape = (meta["distillkit.input_shape"] ?? "4").split(separator: ",").compactMap { Int($0) }
    let classes = Int(meta["distillkit.num_classes"] ?? "") ?? 3
    runIfValid(spec: spec, inputShape: shape, numClasses: classes)
    return 0
}

/// Builds `spec` for `inputShape` and, when ModelShapes accepts it and it is small, runs one example.
func runIfValid(spec: String, inputShape: [Int], numClasses: Int) {
    guard (try? ModelShapes.checkExampleShape(inputShape, what: "fuzz")) != nil, inputShape.reduce(1, *) <= 4096,
          let model = try? ModelZoo.build(spec, inputShape: inputShape, numClasses: numClasses, maxParameters: 1 << 16),
          let output = try? ModelShapes.check(model, inputShape: inputShape, numClasses: numClasses) else { return }
    model.eval()
    let y = withNoGrad { model(Tensor.zeros([1] + inputShape)) }
    precondition(y.shape == [1] + output, "ModelShapes said \(output), the model gave \(y.shape) for \(spec) on \(inputShape)")
}
