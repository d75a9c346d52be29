import CKernels
import Foundation
import DistillNN
import DistillTensor
import DistillTestSupport
import Testing

/// The planned MLP forward pass against the module's own, at batch sizes on both sides of the
/// small-batch kernel's cut-off, and the models it must refuse.
@Suite struct InferencePlanTests {
    func input(_ rows: Int, _ shape: [Int], seed: UInt64) -> Tensor {
        var g = SeededGenerator(seed: seed)
        return Tensor.randomNormal([rows] + shape, using: &g)
    }

    @Test(arguments: ["mlp:784-64-10", "mlp:64-128-32-10", "mlp:5-3", "mlp:37-19-7"])
    func plannedOutputsMatchTheModule(spec: String) throws {
        let model = try ModelZoo.build(spec, seed: 3)
        model.eval()
        let inputs = Int(spec.dropFirst(4).split(separator: "-")[0])!
        let shape = inputs == 784 ? [1, 28, 28] : [inputs]
        let plan = try #require(InferencePlan(model, exampleShape: shape))
        #expect(plan.inputSize == inputs)
        for rows in [1, 3, 7, 8, 100] {
            let x = input(rows, shape, seed: UInt64(rows))
            let expected = withNoGrad { model(x) }
            let got = plan(x)
            #expect(got.shape == expected.shape)
            assertClose(got.scalars, expected.scalars, atol: 1e-5, rtol: 1e-5, "\(spec) at batch \(rows)")
        }
    }

    @Test func reluZeroesNegativesAndNaNLikeTheModule() throws {
        let model = try ModelZoo.build("mlp:4-3-2", seed: 1)
        let plan = try #require(InferencePlan(model, exampleShape: [4]))
        let x = Tensor(shape: [2, 4], scalars: [.nan, 1, 2, 3, -1, -2, -3, -4])
        let expected = withNoGrad { model(x) }.scalars, got = plan(x).scalars
        #expect(got.map(\.isNaN) == expected.map(\.isNaN))
        assertClose(got.map { $0.isNaN ? 0 : $0 }, expected.map { $0.isNaN ? 0 : $0 }, atol: 1e-6, rtol: 1e-6, "NaN row")
    }

    @Test func modelsOutsideThePlanAreRefused() throws {
        #expect(InferencePlan(try ModelZoo.build("resnet8", seed: 0), exampleShape: [1, 28, 28]) == nil, "residual blocks")
        #expect(InferencePlan(try ModelZoo.build("mlp:784-64-10", seed: 0), exampleShape: [10]) == nil, "wrong input size")
        var g = SeededGenerator(seed: 0)
        #expect(InferencePlan(Sequential([ReLU(), Linear(3, 2, generator: &g)]), exampleShape: [3]) == nil, "ReLU before any layer")
        #expect(InferencePlan(Sequential([Linear(3, 2, generator: &g), Tanh()]), exampleShape: [3]) == nil, "unplanned activation")
        #expect(InferencePlan(Sequential([Linear(3, 2, generator: &g), Linear(4, 2, generator: &g)]), exampleShape: [3]) == nil, "shapes that do not chain")
    }
}

/// The small-batch layer kernel for each instruction set this CPU has, against a Double reference,
/// at sizes that leave tails in both the vector loop (`in`) and the four-outputs loop (`out`).
@Suite struct LinearKernelTests {
    /// `relu?(x·wᵀ + b)` in Double, for x [rows, inputs] and w [outputs, inputs].
    func referenceLayer(_ x: [Float], _ w: [Float], _ b: [Float]?, rows: Int, inputs: Int, outputs: Int, relu: Bool) -> [Float] {
        (0..<(rows * outputs)).map { j in
            let r = j / outputs, o = j % outputs
            var s = b.map { Double($0[o]) } ?? 0
            for i in 0..<inputs { s += Double(x[r * inputs + i]) * Double(w[o * inputs + i]) }
            return Float(relu ? max(s, 0) : s)
        }
    }

    @Test(arguments: [0, 1, 2] as [Int32])
    func everyInstructionSetComputesTheLayer(level: Int32) throws {
        var g = SeededGenerator(seed: 5)
        for (rows, inputs, outputs) in [(1, 784, 64), (3, 37, 7), (2, 64, 10), (1, 5, 1), (7, 16, 4)] {
            for (useBias, relu) in [(true, true), (false, false), (true, false)] {
                let x = (0..<(rows * inputs)).map { _ in Float.random(in: -1...1, using: &g) }
                let w = (0..<(outputs * inputs)).map { _ in Float.random(in: -1...1, using: &g) }
                let b = (0..<outputs).map { _ in Float.random(in: -1...1, using: &g) }
                var y = [Float](repeating: .nan, count: rows * outputs)
                let status = b.withUnsafeBufferPointer { bias in
                    dk_linear_small_level(level, x, w, useBias ? bias.baseAddress : nil, &y, rows, inputs, outputs, relu ? 1 : 0)
                }
                guard status == 0 else {
                    try #require(level > 0, "SSE2 is always available")
                    return
                }
                let expected = referenceLayer(x, w, useBias ? b : nil, rows: rows, inputs: inputs, outputs: outputs, relu: relu)
                assertClose(y, expected, atol: 1e-4, rtol: 1e-5, "level \(level), \(rows)x\(inputs)->\(outputs), bias \(useBias), relu \(relu)")
            }
        }
    }
}

extension InferencePlanTests {
    /// A tabular student's standardisation, done inside the plan, equals standardising first.
    @Test func standardisationInsideThePlan() throws {
        let model = try ModelZoo.build("mlp:5-4-3", seed: 2)
        let shift: [Float] = [1, -2, 0.5, 3, 0], scale: [Float] = [0.5, 2, 1, 0.25, 1]
        let plan = try #require(InferencePlan(model, exampleShape: [5], standardize: (shift, scale)))
        #expect(InferencePlan(model, exampleShape: [5], standardize: ([1], [1])) == nil, "statistics of the wrong width")
        for rows in [1, 9] {
            let x = input(rows, [5], seed: 4)
            let standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - shift[i % 5]) * scale[i % 5] })
            assertClose(plan(x).scalars, withNoGrad { model(standardized) }.scalars, atol: 1e-5, rtol: 1e-5, "batch \(rows)")
        }
        // Rows split across the threads, each block standardised in its own stripe of the buffers.
        let wide = try ModelZoo.build("mlp:64-600-8", seed: 3)
        let wideShift = (0..<64).map { Float($0) / 10 }, wideScale = (0..<64).map { 1 + Float($0 % 7) / 4 }
        let widePlan = try #require(InferencePlan(wide, exampleShape: [64], standardize: (wideShift, wideScale)))
        let x = input(257, [64], seed: 5)
        let standardized = Tensor(shape: x.shape, scalars: x.scalars.enumerated().map { i, v in (v - wideShift[i % 64]) * wideScale[i % 64] })
        assertClose(widePlan(x).scalars, withNoGrad { wide(standardized) }.scalars, atol: 1e-4, rtol: 1e-4, "257 rows, split")
    }
}

extension LinearKernelTests {
    /// The packed many-row kernel (AVX-512 or AVX2, whichever this CPU has; skipped elsewhere) against
    /// a Double reference, with row counts off the four-row blocks and output counts off the vectors and
    /// blocks; single rows with odd and even input counts (AVX2's two sums of a lone row).
    @Test func packedKernelComputesTheLayer() throws {
        var g = SeededGenerator(seed: 6)
        for (rows, inputs, outputs) in [(13, 37, 10), (8, 784, 64), (5, 20, 70), (4, 3, 1), (1, 129, 40), (1, 128, 512), (1, 1, 3)] {
            for (useBias, relu) in [(true, true), (false, false)] {
                let padded = (outputs + 15) / 16 * 16
                let x = (0..<(rows * inputs)).map { _ in Float.random(in: -1...1, using: &g) }
                let w = (0..<(outputs * inputs)).map { _ in Float.random(in: -1...1, using: &g) }
                let b = (0..<padded).map { $0 < outputs ? Float.random(in: -1...1, using: &g) : 0 }
                var packed = [Float](repeating: 0, count: inputs * padded)
                for o in 0..<outputs { for k in 0..<inputs { packed[k * padded + o] = w[o * inputs + k] } }
                var y = [Float](repeating: .nan, count: rows * outputs)
                let status = b.withUnsafeBufferPointer { bias in
                    dk_linear_packed(x, packed, useBias ? bias.baseAddress : nil, &y, rows, inputs, outputs, padded, relu ? 1 : 0)
                }
                guard status == 0 else { return }  // neither AVX-512 nor AVX2 here: callers use BLAS
                let expected = referenceLayer(x, w, useBias ? b : nil, rows: rows, inputs: inputs, outputs: outputs, relu: relu)
                assertClose(y, expected, atol: 1e-4, rtol: 1e-5, "\(rows)x\(inputs)->\(outputs), bias \(useBias), relu \(relu)")
            }
        }
    }
}

/// The vectorised exp kernel for each instruction set this CPU has: within 2 ulp-ish of a Double
/// reference over the whole float range, the edges (underflow, overflow, NaN) as libm has them,
/// and the same bits from every instruction set (a tail of 1..15 values included).
@Suite struct ExpKernelTests {
    @Test func matchesDoubleExpAndAgreesAcrossInstructionSets() throws {
        var g = SeededGenerator(seed: 7)
        var values: [Float] = (0..<4099).map { _ in Float.random(in: -87 ... 88, using: &g) }
        values += [0, -0.0, 1, -1, 1e-8, -1e-8, 88.7, -87.3, 0.5 * Float(M_LN2), -0.5 * Float(M_LN2)]
        var results: [[Float]] = []
        for level in 0...2 {
            var x = values
            guard dk_exp_inplace_level(Int32(level), &x, x.count) == 0 else { continue }
            results.append(x)
            for (v, e) in zip(values, x) {
                let want = Foundation.exp(Double(v))
                #expect(abs(Double(e) - want) <= 3e-7 * want, "exp(\(v)) = \(e), want \(want) (level \(level))")
            }
        }
        #expect(!results.isEmpty)
        for r in results.dropFirst() { #expect(r.map(\.bitPattern) == results[0].map(\.bitPattern), "instruction sets disagree") }
    }

    @Test func edgesFollowLibm() {
        var x: [Float] = [-.infinity, -100, -87.5, 89, .infinity, .nan, -.nan]
        dk_exp_inplace(&x, x.count)
        #expect(x[0] == 0 && x[1] == 0 && x[2] == 0)
        #expect(x[3] == .infinity && x[4] == .infinity)
        #expect(x[5].isNaN && x[6].isNaN)
    }
}
