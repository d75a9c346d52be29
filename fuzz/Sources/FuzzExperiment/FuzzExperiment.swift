import DistillNN
import DistillTensor
import DistillTraining
import Foundation

/// YAML experiment files: Yams, the depth and expansion limits, the settings, and the student
/// spec they name (built with a small parameter budget so that a legitimately large model is an
/// error here rather than a slow allocation). A student the shape check accepts for 1×8×8 images
/// or 16 features is run on one example, so the check and the layers must agree.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzExperiment(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    guard let experiment = try? Experiment.parse(yaml: text, name: "fuzz.yaml") else { return 0 }
    for shape in [[1, 8, 8], [16]] {
        guard let model = try? ModelZoo.build(experiment.student, inputShape: shape, numClasses: 3, maxParameters: 1 << 16),
              let output = try? ModelShapes.check(model, inputShape: shape, numClasses: 3) else { continue }
        model.eval()
        let y = withNoGrad { model(Tensor.zeros([1] + shape)) }
        precondition(y.shape == [1] + output, "ModelShapes said \(output), the model gave \(y.shape) for \(experiment.student)")
    }
    return 0
}
