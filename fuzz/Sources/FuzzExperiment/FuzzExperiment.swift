import DistillNN
import DistillTraining
import Foundation

/// YAML experiment files: Yams, the depth and expansion limits, the settings, and the student
/// spec they name (built with a small parameter budget so that a legitimately large model is an
/// error here rather than a slow allocation).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzExperiment(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    guard let experiment = try? Experiment.parse(yaml: text, name: "fuzz.yaml") else { return 0 }
    _ = try? ModelZoo.build(experiment.student, inputShape: [1, 28, 28], numClasses: 10, maxParameters: 1 << 18)
    return 0
}
