import CKernels
import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// Fake quantization against the int8 path's own rounding (bit for bit), and the
/// quantization-aware student (Sources/DistillNN/QuantizationAwareTraining.swift) against the int8
/// plan it stands for.
@Suite struct QuantizationAwareTests {
    @Test func fakeQuantizedWeightIsTheInt8WeightDequantized() {
        let w = Tensor.testNormal([6, 3, 3, 3], seed: 5, requiresGrad: false)
        w.data[7] = 25  // an outlier in channel 0
        for j in 27..<54 { w.data[j] = 0 }  // channel 1 all zero
        #expect(w.fakeQuantizedPerChannel().scalars == QuantizedWeight(quantizing: w).dequantized.scalars)
    }

    @Test func fakeQuantizedActivationIsTheQuantizedBytesDequantized() {
        // dk_int8_quantize (AVX-512 where the CPU has it, scalar otherwise): the int8 plan's input rounding.
        let x = Tensor.testUniform([1000], seed: 8, low: -3, high: 5, requiresGrad: false)
        for (low, high) in [(Float(-1), Float(2)), (0, 4.5), (-2.5, 0.7)] {
            let q = ActivationQuantization(low: low, high: high)
            var bytes = [UInt8](repeating: 0, count: x.count)
            dk_int8_quantize(x.data, x.count, 1 / q.scale, q.zeroPoint, &bytes)
            let expected = bytes.map { (Float($0) - Float(q.zeroPoint)) * q.scale }
            #expect(x.fakeQuantized(scale: q.scale, zeroPoint: q.zeroPoint).scalars == expected, "range \(low)...\(high)")
        }
    }

    @Test func quantizationAwareStudentFollowsTheInt8Plan() throws {
        for (name, model, shape) in try QuantizationTests.models() {
            model.eval()
            let samples = Tensor.testUniform([300] + shape, seed: 9, low: -1, high: 1, requiresGrad: false)
            let logits = withNoGrad { model(samples) }
            let info = SavedModelDescription(spec: name, inputShape: shape, numClasses: logits.shape[1], extra: [:])
            // Fake quantization rounds each weight to its nearest step: the same student as nearest rounding.
            let student = try Quantizer.quantize(model, info: info, samples: samples, labels: logits.argmaxLastAxis(), rounding: .nearest).student
            let qat = try Quantizer.quantizationAwareStudent(of: model, for: student)
            #expect(qat.isTraining)
            // Its parameters are copies: the float model's stay out of any optimizer step.
            let floatTensors = Set(model.namedParameters().map { ObjectIdentifier($0.tensor) })
            #expect(qat.namedParameters().allSatisfy { !floatTensors.contains(ObjectIdentifier($0.tensor)) && $0.tensor.requiresGrad })
            qat.eval()
            let x = Tensor.testUniform([37] + shape, seed: 10, low: -1, high: 1, requiresGrad: false)
            let fake = withNoGrad { qat(x) }, int8 = try QuantizedPlan(student)(x)
            // The same rounding, up to the order of float sums: a few bytes may land one step apart.
            let range = int8.scalars.map(Swift.abs).max()!
            let worst = zip(fake.scalars, int8.scalars).map { Swift.abs($0 - $1) }.max()!
            #expect(worst < 0.02 * range, "\(name): fake-quantized logits differ from the int8 plan's by \(worst), logits span ±\(range)")
            let float = withNoGrad { model(x) }
            let floatWorst = zip(float.scalars, int8.scalars).map { Swift.abs($0 - $1) }.max()!
            #expect(worst <= floatWorst, "\(name): the fake-quantized student is no closer to the int8 plan (\(worst)) than the float model (\(floatWorst))")
            // Converted back untouched, it is the same int8 student.
            #expect(try Quantizer.quantizedStudent(fromQuantizationAware: qat, template: student) == student)
        }
    }

    @Test func aStudentOfAnotherModelIsRejected() throws {
        var g = SeededGenerator(seed: 1)
        let a = Sequential([Linear(4, 5, generator: &g), ReLU(), Linear(5, 2, generator: &g)])
        let b = Sequential([Linear(4, 5, generator: &g), ReLU(), Linear(5, 6, generator: &g), ReLU(), Linear(6, 2, generator: &g)])
        let samples = Tensor.testUniform([20, 4], seed: 2, low: -1, high: 1, requiresGrad: false)
        let student = try Quantizer.quantize(a, info: SavedModelDescription(spec: "a", inputShape: [4], numClasses: 2, extra: [:]),
                                             samples: samples, labels: Array(repeating: 0, count: 20)).student
        #expect { try Quantizer.quantizationAwareStudent(of: b, for: student) } throws: { error in
            "\(error)".contains("quantize this model first")
        }
    }
}
