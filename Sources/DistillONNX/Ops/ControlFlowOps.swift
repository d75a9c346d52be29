import DistillTensor
import Foundation

// If, Loop and Scan: operators that run sub-graphs (built at load, see ControlFlow.swift).
// Every sub-graph node run and every iteration is charged to the control-flow step budget, so a
// hostile trip count ends in an error rather than a hang.

extension ONNXOps {
    /// If: runs `then_branch` when `cond` (a one-element tensor) is true, else `else_branch`;
    /// the node's outputs are the branch's outputs.
    static func If(_ c: OpContext) throws -> [ONNXValue] {
        try ControlFlow.metered {
            let flow = try c.controlFlow
            let branch = try flow.graph(try truth(c.input(0), "cond") ? "then_branch" : "else_branch")
            let results = try branch.run([], outer: flow.outerValues(c))
            guard results.count >= c.outputCount else {
                throw ONNXError("\(branch.attribute) computes \(results.count) outputs; the node has \(c.outputCount)")
            }
            return results
        }
    }

    /// Loop: inputs M (optional trip count), cond (optional) and the initial carried values; the
    /// body maps (iteration number, condition, carried values) to (condition, carried values, scan
    /// outputs). As the spec's table says: with neither M nor cond it runs until the step budget
    /// ends it; with M only, M times (the body's condition is ignored); with cond only, while
    /// the condition holds; with both, at most M times while it holds. Outputs: the final carried
    /// values, then each scan output's values stacked along a new first axis.
    static func Loop(_ c: OpContext) throws -> [ONNXValue] {
        try ControlFlow.metered {
            let flow = try c.controlFlow
            let body = try flow.graph("body")
            let declared = flow.declaredInputs(c)
            let tripCount: Int64? = try declared.first.flatMap { $0 }.map { m in
                guard m.count == 1, case .int(let t) = m else { throw ONNXError("M must be one integer, got \(m.typeDescription)") }
                return t.values[0]
            }
            let conditioned = declared.count > 1 && declared[1] != nil
            var condition = try declared.count > 1 ? declared[1].map { try truth($0, "cond") } ?? true : true
            var carried = try declared.dropFirst(2).enumerated().map { i, v -> ONNXValue in
                guard let v else { throw ONNXError("loop-carried input \(i + 2) is missing") }
                return v
            }
            guard body.inputs.count == 2 + carried.count, body.outputs.count >= 1 + carried.count else {
                throw ONNXError("body takes \(body.inputs.count) inputs and returns \(body.outputs.count) outputs; with \(carried.count) carried values it must take \(2 + carried.count) and return at least \(1 + carried.count)")
            }
            let scanCount = body.outputs.count - 1 - carried.count
            var scans = [[ONNXValue]](repeating: [], count: scanCount)
            var scanElements = [Int](repeating: 0, count: scanCount)
            let outer = flow.outerValues(c)
            var iteration: Int64 = 0
            while condition, tripCount.map({ iteration < $0 }) ?? true {
                try ControlFlow.spend(1)
                let results = try body.run([int64Value([], [iteration]), boolValue([], [condition])] + carried, outer: outer)
                if conditioned { condition = try truth(results[0], "the body's condition") }
                carried = Array(results[1..<1 + carried.count])
                for k in 0..<scanCount {
                    try appendScanOutput(results[1 + carried.count + k], to: &scans[k], elements: &scanElements[k], "scan output \(k)")
                }
                iteration += 1
            }
            let stacked = try scans.enumerated().map { k, values in
                values.isEmpty ? body.emptyStack(ofOutput: 1 + carried.count + k) : try stack(values, axis: 0)
            }
            return carried + stacked
        }
    }

    /// Scan: runs `body` once per slice of the scan inputs, threading the state values through.
    /// Opset 9 and later: inputs are N initial states then `num_scan_inputs` scan inputs, sliced
    /// along `scan_input_axes` (forward, or backward where `scan_input_directions` is 1); each
    /// scan output is stacked along `scan_output_axes` (in reverse where `scan_output_directions`
    /// is 1). Opset 8: a leading optional `sequence_lens`, every input with a batch axis first and
    /// the sequence axis second, `directions` for the scan inputs; each batch row scans its own
    /// length and shorter outputs are padded with zeros.
    static func Scan(_ c: OpContext) throws -> [ONNXValue] {
        try ControlFlow.metered {
            let flow = try c.controlFlow
            let body = try flow.graph("body")
            guard let scanInputCount = try c.attributes.int("num_scan_inputs", nil, in: 1...Int.max) else {
                throw ONNXError("attribute 'num_scan_inputs' is required")
            }
            if c.opset < 9 { return try batchedScan(c, body: body, flow: flow, scanInputCount: scanInputCount) }
            let declared = try flow.declaredInputs(c).enumerated().map { i, v -> ONNXValue in
                guard let v else { throw ONNXError("input \(i) is missing") }
                return v
            }
            guard scanInputCount <= declared.count else { throw ONNXError("num_scan_inputs is \(scanInputCount) but the node has \(declared.count) inputs") }
            let stateCount = declared.count - scanInputCount
            let scanInputs = Array(declared[stateCount...])
            let inputAxes = try (c.attributes.ints("scan_input_axes") ?? Array(repeating: 0, count: scanInputCount))
                .enumerated().map { i, axis in try normalizedAxis(axis, rank: i < scanInputs.count ? scanInputs[i].shape.count : 0, name: "scan_input_axes") }
            let inputReversed = try flags(c.attributes.ints("scan_input_directions"), count: scanInputCount, "scan_input_directions")
            let outputCount = body.outputs.count - stateCount
            guard outputCount >= 0 else { throw ONNXError("body returns \(body.outputs.count) outputs, fewer than the \(stateCount) states") }
            let outputAxes = try c.attributes.ints("scan_output_axes") ?? Array(repeating: 0, count: outputCount)
            let outputReversed = try flags(c.attributes.ints("scan_output_directions"), count: outputCount, "scan_output_directions")
            guard inputAxes.count == scanInputCount, outputAxes.count == outputCount else {
                throw ONNXError("scan_input_axes and scan_output_axes must name one axis per scan input (\(scanInputCount)) and output (\(outputCount))")
            }
            let length = scanInputs[0].shape[inputAxes[0]]
            for (x, axis) in zip(scanInputs, inputAxes) where x.shape[axis] != length {
                throw ONNXError("scan inputs differ in length: \(scanInputs[0].typeDescription) along axis \(inputAxes[0]), \(x.typeDescription) along axis \(axis)")
            }
            let (states, outputs) = try scanSequence(body, states: Array(declared[..<stateCount]), scanInputs: scanInputs, axes: inputAxes,
                                                     reversed: inputReversed, length: length, outer: flow.outerValues(c))
            let stacked = try outputs.enumerated().map { k, values -> ONNXValue in
                guard let first = values.first else { return body.emptyStack(ofOutput: stateCount + k) }
                let axis = try normalizedAxis(outputAxes[k], rank: first.shape.count + 1, name: "scan_output_axes")
                return try stack(outputReversed[k] ? values.reversed() : values, axis: axis)
            }
            return states + stacked
        }
    }

    /// Scan of opset 8: each batch row scanned on its own (see `Scan`), results stacked by row.
    private static func batchedScan(_ c: OpContext, body: Subgraph, flow: ControlFlowGraphs, scanInputCount: Int) throws -> [ONNXValue] {
        let declared = flow.declaredInputs(c)
        let sequenceLengths = try declared.first.flatMap { $0 }.map { v -> [Int] in
            guard case .int(let t) = v else { throw ONNXError("sequence_lens must be integers, got \(v.typeDescription)") }
            return t.values.map { Int(clamping: $0) }
        }
        let values = try declared.dropFirst().enumerated().map { i, v -> ONNXValue in
            guard let v, v.shape.count >= 1 else { throw ONNXError("input \(i + 1) is missing or has no batch axis") }
            return v
        }
        guard scanInputCount <= values.count else { throw ONNXError("num_scan_inputs is \(scanInputCount) but the node has \(values.count) state and scan inputs") }
        let stateCount = values.count - scanInputCount
        let batch = values[0].shape[0]
        let sequence = values[stateCount].shape.count >= 2 ? values[stateCount].shape[1] : -1
        for v in values where v.shape[0] != batch { throw ONNXError("inputs differ in batch size: \(values[0].typeDescription) and \(v.typeDescription)") }
        for v in values[stateCount...] where v.shape.count < 2 || v.shape[1] != sequence {
            throw ONNXError("scan inputs must share batch and sequence extents: \(values[stateCount].typeDescription) and \(v.typeDescription)")
        }
        if let sequenceLengths, sequenceLengths.count != batch || sequenceLengths.contains(where: { $0 < 0 || $0 > sequence }) {
            throw ONNXError("sequence_lens \(describeShape(sequenceLengths)) must hold one length in 0...\(sequence) per batch row (\(batch))")
        }
        let reversed = try flags(c.attributes.ints("directions"), count: scanInputCount, "directions")
        let outer = flow.outerValues(c)
        var rowStates: [[ONNXValue]] = [], rowOutputs: [[ONNXValue]] = []
        for b in 0..<batch {
            let row = values.map { slice($0, axis: 0, at: b) }
            let length = sequenceLengths?[b] ?? sequence
            let (states, outputs) = try scanSequence(body, states: Array(row[..<stateCount]), scanInputs: Array(row[stateCount...]),
                                                     axes: Array(repeating: 0, count: scanInputCount), reversed: reversed, length: length, outer: outer)
            rowStates.append(states)
            rowOutputs.append(try outputs.enumerated().map { k, steps in
                guard let first = steps.first else { return body.emptyStack(ofOutput: stateCount + k) }
                let stacked = try stack(steps, axis: 0)
                guard steps.count < sequence else { return stacked }
                return try ONNXValue.concatenated([stacked, zeros(like: first, shape: [sequence - steps.count] + first.shape)], axis: 0)
            })
        }
        guard batch > 0 else { throw ONNXError("the batch is empty") }
        let states = try (0..<stateCount).map { i in try stack(rowStates.map { $0[i] }, axis: 0) }
        let outputs = try (0..<(body.outputs.count - stateCount)).map { k in try stack(rowOutputs.map { $0[k] }, axis: 0) }
        return states + outputs
    }

    /// The scan proper: `length` runs of `body`, each on the states and slice t (or length−1−t
    /// where reversed) of every scan input; returns the final states and each output's values in
    /// iteration order.
    private static func scanSequence(_ body: Subgraph, states initial: [ONNXValue], scanInputs: [ONNXValue], axes: [Int],
                                     reversed: [Bool], length: Int, outer: [String: ONNXValue]) throws -> ([ONNXValue], [[ONNXValue]]) {
        guard body.inputs.count == initial.count + scanInputs.count, body.outputs.count >= initial.count else {
            throw ONNXError("body takes \(body.inputs.count) inputs and returns \(body.outputs.count) outputs; with \(initial.count) states and \(scanInputs.count) scan inputs it must take \(initial.count + scanInputs.count)")
        }
        var states = initial
        var outputs = [[ONNXValue]](repeating: [], count: body.outputs.count - initial.count)
        var elements = [Int](repeating: 0, count: outputs.count)
        for t in 0..<length {
            try ControlFlow.spend(1)
            let slices = scanInputs.indices.map { i in slice(scanInputs[i], axis: axes[i], at: reversed[i] ? length - 1 - t : t) }
            let results = try body.run(states + slices, outer: outer)
            states = Array(results[..<states.count])
            for k in outputs.indices {
                try appendScanOutput(results[states.count + k], to: &outputs[k], elements: &elements[k], "scan output \(k)")
            }
        }
        return (states, outputs)
    }

    /// Appends one iteration's scan output after checking the stack it will become against the
    /// memory budget: each output alone is checked, but 2^20 iterations of a [1000, 1000] output
    /// would stack into 4 TB.
    private static func appendScanOutput(_ value: ONNXValue, to values: inout [ONNXValue], elements: inout Int, _ what: String) throws {
        elements = CheckedSize.add(elements, value.count) ?? Int.max
        try checkedElementCount([elements], "\(what) stacked over \(values.count + 1) iterations", elementBytes: storageBytes(value.dataType))
        values.append(value)
    }

    /// Whether a condition (a tensor of one element, BOOL or numeric) is true.
    private static func truth(_ v: ONNXValue, _ what: String) throws -> Bool {
        guard v.count == 1 else { throw ONNXError("\(what) must hold one value, got \(v.typeDescription)") }
        return try v.doubles()[0] != 0
    }

    /// A direction attribute (0 forward, 1 reverse) as one flag per value, all forward when absent.
    private static func flags(_ values: [Int]?, count: Int, _ name: String) throws -> [Bool] {
        guard let values else { return Array(repeating: false, count: count) }
        guard values.count == count, values.allSatisfy({ $0 == 0 || $0 == 1 }) else {
            throw ONNXError("\(name) \(describeShape(values)) must hold \(count) values, each 0 (forward) or 1 (reverse)")
        }
        return values.map { $0 == 1 }
    }

    /// Index `index` of `value` along `axis`, that axis removed.
    private static func slice(_ value: ONNXValue, axis: Int, at index: Int) -> ONNXValue {
        var strides = stridesOf(value.shape), shape = value.shape
        let offset = index * strides[axis]
        strides.remove(at: axis); shape.remove(at: axis)
        return value.restrided(offset: offset, strides: strides, shape: shape)
    }

    /// Values of one type and shape stacked along a new axis `axis`.
    private static func stack(_ values: [ONNXValue], axis: Int) throws -> ONNXValue {
        let parts = try values.map { v -> ONNXValue in
            guard v.shape == values[0].shape else {
                throw ONNXError("cannot stack \(values[0].typeDescription) and \(v.typeDescription): every iteration must give the same shape")
            }
            var shape = v.shape
            shape.insert(1, at: axis)
            return try v.reshaped(shape)
        }
        return try ONNXValue.concatenated(parts, axis: axis)
    }

    /// Zeros of `like`'s type in `shape` (opset-8 Scan's padding).
    private static func zeros(like: ONNXValue, shape: [Int]) throws -> ONNXValue {
        let n = try checkedElementCount(shape, "padding")
        switch like {
        case .float: return floatValue(shape, [Float](repeating: 0, count: n))
        case .int(let t): return .int(IntTensor(shape: shape, values: [Int64](repeating: 0, count: n), type: t.type))
        case .string: return .string(StringTensor(shape: shape, values: [String](repeating: "", count: n)))
        }
    }
}
