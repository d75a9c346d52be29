@testable import DistillONNX
import DistillTensor
import Foundation
import Testing

// If, Loop and Scan on small graphs built here: both branches, every combination of Loop's
// optional trip count and condition, scan outputs, Scan's directions and axes, values read from
// enclosing graphs, and hostile files (a missing outer value, a 2^62 trip count, deep nesting).

/// A graph-valued attribute (`then_branch`, `body`) holding a graph of `nodes`.
func graphAttribute(_ name: String, nodes: [Onnx_NodeProto], inputs: [Onnx_ValueInfoProto] = [], outputs: [Onnx_ValueInfoProto],
                    initializers: [Onnx_TensorProto] = []) -> Onnx_AttributeProto {
    var g = Onnx_GraphProto()
    g.name = name; g.node = nodes; g.input = inputs; g.output = outputs; g.initializer = initializers
    var a = Onnx_AttributeProto()
    a.name = name; a.type = .graph; a.g = g
    return a
}

func boolTensor(_ name: String, _ value: Bool) -> Onnx_TensorProto {
    var t = Onnx_TensorProto()
    t.name = name; t.dataType = ONNXDataType.bool.rawValue; t.int32Data = [value ? 1 : 0]
    return t
}

func floats(_ v: ONNXValue?) -> [Float] { v?.floatTensor?.scalars ?? [] }

@Suite("Control flow: If, Loop, Scan")
struct ControlFlowTests {
    /// y = x + x when cond holds, −x otherwise: both branches read x from the main graph.
    @Test func ifRunsTheChosenBranch() throws {
        let then = graphAttribute("then_branch", nodes: [makeNode("Add", ["x", "x"], ["t"])], outputs: [tensorInfo("t", [2])])
        let otherwise = graphAttribute("else_branch", nodes: [makeNode("Neg", ["x"], ["e"])], outputs: [tensorInfo("e", [2])])
        let model = try load(makeModel(nodes: [makeNode("If", ["cond"], ["y"], name: "if", [then, otherwise])],
                                       inputs: [tensorInfo("cond", [], type: .bool), tensorInfo("x", [2])], outputs: [tensorInfo("y", [2])]))
        let x = ONNXValue.float(Tensor([1, -2]))
        #expect(floats(try model.run(["cond": boolValue([], [true]), "x": x])["y"]) == [2, -4])
        #expect(floats(try model.run(["cond": boolValue([], [false]), "x": x])["y"]) == [-1, 2])
    }

    /// A Loop whose body adds the iteration number to acc, continues while acc < limit (an
    /// outer value) and scans acc. `tripCount` and `condition` nil leave those inputs empty.
    func loopModel(tripCount: Int64?, condition: Bool?) throws -> ONNXModel {
        let body = graphAttribute("body", nodes: [
            makeNode("Cast", ["i"], ["i_float"], [intAttribute("to", Int(ONNXDataType.float.rawValue))]),
            makeNode("Add", ["acc", "i_float"], ["acc_out"]),
            makeNode("Less", ["acc_out", "limit"], ["cond_out"]),
            makeNode("Identity", ["acc_out"], ["scanned"]),
        ], inputs: [tensorInfo("i", [], type: .int64), tensorInfo("cond_in", [], type: .bool), tensorInfo("acc", [1])],
           outputs: [tensorInfo("cond_out", [], type: .bool), tensorInfo("acc_out", [1]), tensorInfo("scanned", [1])])
        var initializers = [floatTensor("limit", [], [5]), floatTensor("acc0", [1], [0])]
        if let tripCount { initializers.append(int64Tensor("M", [], [tripCount])) }
        if let condition { initializers.append(boolTensor("cond", condition)) }
        let loop = makeNode("Loop", [tripCount == nil ? "" : "M", condition == nil ? "" : "cond", "acc0"], ["acc_final", "acc_all"], name: "loop", [body])
        return try load(makeModel(nodes: [loop], inputs: [], outputs: [tensorInfo("acc_final", [1]), tensorInfo("acc_all", [nil, 1])], initializers: initializers))
    }

    @Test func loopWithTripCountOnlyIgnoresTheBodyCondition() throws {
        let out = try loopModel(tripCount: 5, condition: nil).run([:])
        #expect(floats(out["acc_final"]) == [10])
        #expect(out["acc_all"]?.shape == [5, 1])
        #expect(floats(out["acc_all"]) == [0, 1, 3, 6, 10])
    }

    @Test func loopWithConditionOnlyRunsWhileItHolds() throws {
        let out = try loopModel(tripCount: nil, condition: true).run([:])
        #expect(floats(out["acc_final"]) == [6])
        #expect(floats(out["acc_all"]) == [0, 1, 3, 6])
    }

    @Test func loopWithBothStopsAtTheFirstLimit() throws {
        let out = try loopModel(tripCount: 2, condition: true).run([:])
        #expect(floats(out["acc_final"]) == [1])
        #expect(out["acc_all"]?.shape == [2, 1])
    }

    @Test func loopWithAFalseConditionRunsNoIteration() throws {
        let out = try loopModel(tripCount: 10, condition: false).run([:])
        #expect(floats(out["acc_final"]) == [0])
        #expect(out["acc_all"]?.shape == [0, 1])
    }

    @Test func loopWithNeitherRunsUntilTheBudgetEndsIt() throws {
        let model = try loopModel(tripCount: nil, condition: nil)
        let message = errorMessage { _ = try ONNXModel.withLimits(maxElements: 1 << 20, maxSteps: 10_000) { try model.run([:]) } }
        #expect(message.contains("steps"), "\(message)")
        #expect(message.contains("'loop'"), "\(message)")
    }

    /// A trip count of 2^62 with a condition that stays true ends in an error, not a hang.
    @Test func hugeTripCountIsStoppedByTheStepBudget() throws {
        let body = graphAttribute("body", nodes: [makeNode("Identity", ["cond_in"], ["cond_out"]), makeNode("Identity", ["v"], ["v_out"])],
                                  inputs: [tensorInfo("i", [], type: .int64), tensorInfo("cond_in", [], type: .bool), tensorInfo("v", [1])],
                                  outputs: [tensorInfo("cond_out", [], type: .bool), tensorInfo("v_out", [1])])
        let model = try load(makeModel(nodes: [makeNode("Loop", ["M", "cond", "v0"], ["v"], [body])], inputs: [], outputs: [tensorInfo("v", [1])],
                                       initializers: [int64Tensor("M", [], [1 << 62]), boolTensor("cond", true), floatTensor("v0", [1], [1])]))
        let message = errorMessage { _ = try ONNXModel.withLimits(maxElements: 1 << 20, maxSteps: 5_000) { try model.run([:]) } }
        #expect(message.contains("more than 5000 steps"), "\(message)")
    }

    /// Scan over the columns of x (axis 1), last column first, summing into a state; the
    /// partial sums are stacked along axis 1, in reverse when scan_output_directions is 1.
    @Test(arguments: [0, 1]) func scanWithReversedDirectionAndAxes(outputDirection: Int) throws {
        let body = graphAttribute("body", nodes: [makeNode("Add", ["s", "column"], ["s_out"]), makeNode("Identity", ["s_out"], ["partial"])],
                                  inputs: [tensorInfo("s", [2]), tensorInfo("column", [2])], outputs: [tensorInfo("s_out", [2]), tensorInfo("partial", [2])])
        let scan = makeNode("Scan", ["s0", "x"], ["s_final", "partials"], [
            body, intAttribute("num_scan_inputs", 1), intsAttribute("scan_input_axes", [-1]), intsAttribute("scan_input_directions", [1]),
            intsAttribute("scan_output_axes", [1]), intsAttribute("scan_output_directions", [outputDirection]),
        ])
        let model = try load(makeModel(nodes: [scan], inputs: [tensorInfo("x", [2, 3])], outputs: [tensorInfo("s_final", [2]), tensorInfo("partials", [2, 3])],
                                       initializers: [floatTensor("s0", [2], [0, 0])]))
        let out = try model.run(["x": .float(Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6]))])
        #expect(floats(out["s_final"]) == [6, 15])
        #expect(out["partials"]?.shape == [2, 3])
        #expect(floats(out["partials"]) == (outputDirection == 0 ? [3, 5, 6, 6, 11, 15] : [6, 5, 3, 15, 11, 6]))
    }

    /// An If inside a Loop body reads w and flag from the main graph, two levels up.
    @Test func nestedSubgraphsReadTheMainGraph() throws {
        let then = graphAttribute("then_branch", nodes: [makeNode("Mul", ["acc", "w"], ["t"])], outputs: [tensorInfo("t", [1])])
        let otherwise = graphAttribute("else_branch", nodes: [makeNode("Neg", ["acc"], ["e"])], outputs: [tensorInfo("e", [1])])
        let body = graphAttribute("body", nodes: [makeNode("Identity", ["cond_in"], ["cond_out"]), makeNode("If", ["flag"], ["acc_out"], [then, otherwise])],
                                  inputs: [tensorInfo("i", [], type: .int64), tensorInfo("cond_in", [], type: .bool), tensorInfo("acc", [1])],
                                  outputs: [tensorInfo("cond_out", [], type: .bool), tensorInfo("acc_out", [1])])
        let model = try load(makeModel(nodes: [makeNode("Loop", ["M", "", "acc0"], ["y"], [body])],
                                       inputs: [tensorInfo("flag", [], type: .bool), tensorInfo("w", [1])], outputs: [tensorInfo("y", [1])],
                                       initializers: [int64Tensor("M", [], [3]), floatTensor("acc0", [1], [1])]))
        #expect(floats(try model.run(["flag": boolValue([], [true]), "w": .float(Tensor([2]))])["y"]) == [8])
        #expect(floats(try model.run(["flag": boolValue([], [false]), "w": .float(Tensor([2]))])["y"]) == [-1])
    }

    @Test func missingOuterValueIsRefusedAtLoad() throws {
        let then = graphAttribute("then_branch", nodes: [makeNode("Neg", ["nowhere"], ["t"])], outputs: [tensorInfo("t", [1])])
        let otherwise = graphAttribute("else_branch", nodes: [makeNode("Neg", ["x"], ["e"])], outputs: [tensorInfo("e", [1])])
        let message = errorMessage {
            _ = try load(makeModel(nodes: [makeNode("If", ["cond"], ["y"], name: "if", [then, otherwise])],
                                   inputs: [tensorInfo("cond", [], type: .bool), tensorInfo("x", [1])], outputs: [tensorInfo("y", [1])]))
        }
        #expect(message.contains("'nowhere'"), "\(message)")
    }

    @Test func unknownOperatorInsideASubgraphIsRefusedAtLoadWithItsNode() throws {
        let then = graphAttribute("then_branch", nodes: [makeNode("Frobnicate", ["x"], ["t"], name: "odd")], outputs: [tensorInfo("t", [1])])
        let otherwise = graphAttribute("else_branch", nodes: [makeNode("Neg", ["x"], ["e"])], outputs: [tensorInfo("e", [1])])
        let message = errorMessage {
            _ = try load(makeModel(nodes: [makeNode("If", ["cond"], ["y"], name: "if", [then, otherwise])],
                                   inputs: [tensorInfo("cond", [], type: .bool), tensorInfo("x", [1])], outputs: [tensorInfo("y", [1])]))
        }
        #expect(message.contains("'odd'") && message.contains("then_branch") && message.contains("not implemented"), "\(message)")
    }

    /// 40 Ifs, each inside the previous one's then_branch.
    @Test func deepNestingIsRefusedAtLoad() throws {
        var innermost = graphAttribute("then_branch", nodes: [makeNode("Neg", ["x"], ["y40"])], outputs: [tensorInfo("y40", [1])])
        for level in stride(from: 39, through: 0, by: -1) {
            let otherwise = graphAttribute("else_branch", nodes: [makeNode("Neg", ["x"], ["e\(level)"])], outputs: [tensorInfo("e\(level)", [1])])
            let node = makeNode("If", ["cond"], ["y\(level)"], [innermost, otherwise])
            innermost = graphAttribute("then_branch", nodes: [node], outputs: [tensorInfo("y\(level)", [1])])
        }
        let top = innermost.g.node[0]
        let message = errorMessage {
            // Built in memory: the protobuf decoder's own depth limit (100 messages) would refuse the file first.
            _ = try ONNXModel(proto: makeModel(nodes: [top], inputs: [tensorInfo("cond", [], type: .bool), tensorInfo("x", [1])], outputs: [tensorInfo("y0", [1])]),
                              directory: nil, source: "test.onnx")
        }
        #expect(message.contains("nested more than 32"), "\(message)")
    }

    /// The node limit counts the nodes of every graph: two branches of 250,001 nodes each are refused.
    @Test func nodesOfSubgraphsCountAgainstTheNodeLimit() throws {
        let half = Limits.maxNodes / 2 + 1
        func branch(_ name: String) -> Onnx_AttributeProto {
            graphAttribute(name, nodes: (0..<half).map { makeNode("Identity", [$0 == 0 ? "x" : "\(name)\($0 - 1)"], ["\(name)\($0)"]) },
                           outputs: [tensorInfo("\(name)\(half - 1)", [1])])
        }
        let message = errorMessage {
            _ = try ONNXModel(proto: makeModel(nodes: [makeNode("If", ["cond"], ["y"], [branch("then_branch"), branch("else_branch")])],
                                               inputs: [tensorInfo("cond", [], type: .bool), tensorInfo("x", [1])], outputs: [tensorInfo("y", [1])]),
                              directory: nil, source: "test.onnx")
        }
        #expect(message.contains("more than \(Limits.maxNodes) nodes"), "\(message)")
    }

    @Test func sequenceValuedSubgraphsAreRefused() throws {
        var output = Onnx_ValueInfoProto()
        output.name = "t"; output.type.sequenceType.elemType.tensorType.elemType = ONNXDataType.float.rawValue
        let then = graphAttribute("then_branch", nodes: [makeNode("Neg", ["x"], ["t"])], outputs: [output])
        let otherwise = graphAttribute("else_branch", nodes: [makeNode("Neg", ["x"], ["e"])], outputs: [tensorInfo("e", [1])])
        let message = errorMessage {
            _ = try load(makeModel(nodes: [makeNode("If", ["cond"], ["y"], [then, otherwise])],
                                   inputs: [tensorInfo("cond", [], type: .bool), tensorInfo("x", [1])], outputs: [tensorInfo("y", [1])]))
        }
        #expect(message.contains("sequence"), "\(message)")
    }
}
