@testable import DistillONNX
import DistillTensor
import Foundation
import Testing

// ONNX's own backend tests, as Debian's libonnx-testdata ships them (apt-get install
// libonnx-testdata): /usr/share/libonnx-testdata/data/{node,pytorch-converted,pytorch-operator,
// simple}/<test>/model.onnx with test_data_set_0/input_N.pb and output_N.pb (TensorProtos).
//
// Every test whose operators and types DistillKit supports is run against test_data_set_0 and
// compared as onnx/backend/test/runner does: same shape, same element type, and
// np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-7) (NaN equals NaN), or the
// rtol/atol of the test's data.json when it has one.
//
// Two lists sit beside this file:
//   Conformance/conformance_expected_pass.txt  every test that passes; the suite FAILS if one of them stops
//                                  passing (a supported operator regressed).
//   Conformance/conformance_skipped.txt        every other test, with the reason: an unsupported operator or
//                                  type, sequence/optional data, or a known failure.
// Regenerate both after adding an operator:
//   DISTILL_ONNX_UPDATE_LISTS=1 swift test --filter ConformanceTests
// Without libonnx-testdata the suite is skipped with a message.

/// Where the corpus lives (DISTILL_ONNX_TESTDATA overrides).
let conformanceRoot = URL(fileURLWithPath: ProcessInfo.processInfo.environment["DISTILL_ONNX_TESTDATA"] ?? "/usr/share/libonnx-testdata/data")
let conformanceKinds = ["node", "pytorch-converted", "pytorch-operator", "simple"]
/// The committed lists: read from the test bundle, rewritten (DISTILL_ONNX_UPDATE_LISTS=1) in the source tree.
let listsSource = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Conformance")

/// The outcome of one backend test.
enum ConformanceOutcome: Equatable {
    case pass
    case skip(String)
    case fail(String)
}

/// Why a model cannot be attempted (an unsupported operator, type or data kind), or nil.
func skipReason(_ proto: Onnx_ModelProto) -> String? {
    var opsets: [String: Int] = [:]
    for o in proto.opsetImport { opsets[o.domain == "ai.onnx" ? "" : o.domain] = Int(o.version) }
    if let v = opsets[""], !ONNXModel.supportedOpsets.contains(v) { return "opset \(v)" }
    let missing = Set(proto.graph.node.compactMap { n -> String? in
        let domain = n.domain == "ai.onnx" ? "" : n.domain
        let key = domain.isEmpty ? n.opType : "\(domain):\(n.opType)"
        return ONNXOps.kernels[key] == nil ? (domain.isEmpty ? n.opType : "\(domain).\(n.opType)") : nil
    }).sorted()
    if !missing.isEmpty { return "unsupported op: \(missing.joined(separator: ", "))" }
    let initializers = Set(proto.graph.initializer.map(\.name))
    for v in proto.graph.input.filter({ !initializers.contains($0.name) }) + proto.graph.output {
        switch v.type.value {
        case .tensorType(let t)?:
            let type = ONNXDataType(rawValue: t.elemType) ?? .undefined
            if !type.isSupported { return "unsupported dtype: \(type)" }
        case .sequenceType?: return "sequence types"
        case .optionalType?: return "optional types"
        case .mapType?: return "map types"
        default: break
        }
    }
    for t in proto.graph.initializer {
        let type = ONNXDataType(rawValue: t.dataType) ?? .undefined
        if !type.isSupported { return "unsupported dtype: \(type)" }
    }
    return nil
}

/// Tolerances from the test's data.json, or the runner's defaults.
func tolerances(_ dir: URL) -> (rtol: Double, atol: Double) {
    var rtol = 1e-3, atol = 1e-7
    if let data = try? Data(contentsOf: dir.appendingPathComponent("data.json")),
       let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
        rtol = json["rtol"] as? Double ?? rtol
        atol = json["atol"] as? Double ?? atol
    }
    return (rtol, atol)
}

/// assert_allclose(actual, expected) as NumPy: |a − e| ≤ atol + rtol·|e|, NaN matching NaN.
func compare(_ actual: ONNXValue, _ expected: ONNXValue, rtol: Double, atol: Double) -> String? {
    guard actual.shape == expected.shape else { return "shape \(actual.shape), expected \(expected.shape)" }
    guard actual.dataType == expected.dataType else { return "type \(actual.dataType), expected \(expected.dataType)" }
    switch (actual, expected) {
    case (.string(let a), .string(let e)):
        return a.values == e.values ? nil : "strings differ"
    case (.int(let a), .int(let e)):
        guard let i = a.values.indices.first(where: { a.values[$0] != e.values[$0] }) else { return nil }
        return "element \(i): \(a.values[i]), expected \(e.values[i])"
    case (.float(let a), .float(let e)):
        var worst = 0.0, at = -1
        for i in 0..<a.count {
            let x = Double(a.data[i]), y = Double(e.data[i])
            if x.isNaN && y.isNaN { continue }
            if x == y { continue }
            let excess = Swift.abs(x - y) - (atol + rtol * Swift.abs(y))
            if excess > 0 || x.isNaN || y.isNaN, excess.isNaN || excess > worst || at < 0 { worst = excess.isNaN ? .infinity : excess; at = i }
        }
        return at < 0 ? nil : "element \(at): \(a.data[at]), expected \(e.data[at]) (\(a.count) elements)"
    default:
        return "kinds differ"
    }
}

/// Runs one backend test folder.
func runConformance(_ dir: URL) -> ConformanceOutcome {
    let modelURL = dir.appendingPathComponent("model.onnx")
    guard let data = try? Data(contentsOf: modelURL), let proto = try? Onnx_ModelProto(serializedBytes: data) else {
        return .skip("no readable model.onnx")
    }
    if let reason = skipReason(proto) { return .skip(reason) }
    let dataset = dir.appendingPathComponent("test_data_set_0")
    func load(_ prefix: String) -> [ONNXValue]? {
        var values: [ONNXValue] = []
        var i = 0
        while let bytes = try? Data(contentsOf: dataset.appendingPathComponent("\(prefix)_\(i).pb")) {
            guard let t = try? Onnx_TensorProto(serializedBytes: bytes), t.hasDataType || !t.dims.isEmpty || bytes.isEmpty,
                  let v = try? ONNXValue.decode(t, directory: dataset) else { return nil }
            values.append(v)
            i += 1
        }
        return values
    }
    guard let inputs = load("input"), let expected = load("output") else { return .skip("sequence types") }
    let model: ONNXModel
    do { model = try ONNXModel(data: data, directory: dir, source: dir.lastPathComponent) } catch {
        return .fail("load: \(error)")
    }
    guard inputs.count == model.inputs.count, expected.count == model.outputs.count else {
        return .fail("the data set has \(inputs.count) inputs and \(expected.count) outputs, the model \(model.inputs.count) and \(model.outputs.count)")
    }
    var feeds: [String: ONNXValue] = [:]
    for (info, v) in zip(model.inputs, inputs) { feeds[info.name] = v }
    let outputs: [String: ONNXValue]
    do { outputs = try model.run(feeds) } catch { return .fail("run: \(error)") }
    let (rtol, atol) = tolerances(dir)
    for (i, info) in model.outputs.enumerated() {
        guard let actual = outputs[info.name] else { return .fail("output \(i) missing") }
        if let problem = compare(actual, expected[i], rtol: rtol, atol: atol) { return .fail("output \(i) ('\(info.name)'): \(problem)") }
    }
    return .pass
}

/// Reads a committed list (one entry per line, `#` comments).
func readList(_ name: String) -> [String] {
    guard let url = Bundle.module.url(forResource: "Conformance/\(name)", withExtension: nil) ?? Optional(listsSource.appendingPathComponent(name)),
          let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
}

@Suite("ONNX backend conformance (libonnx-testdata)")
struct ConformanceTests {
    @Test("supported backend tests pass, and none that passed before fails",
          .enabled(if: FileManager.default.fileExists(atPath: conformanceRoot.appendingPathComponent("node").path),
                   "ONNX's backend tests are missing (\(conformanceRoot.path)); apt-get install libonnx-testdata (scripts/setup-tests.sh does)"))
    func backendTests() throws {
        try BLAS.ensureLoaded()
        var outcomes: [(String, ConformanceOutcome)] = []
        for kind in conformanceKinds {
            let folder = conformanceRoot.appendingPathComponent(kind)
            let tests = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
            for test in tests where FileManager.default.fileExists(atPath: folder.appendingPathComponent(test).appendingPathComponent("model.onnx").path) {
                if ProcessInfo.processInfo.environment["DISTILL_ONNX_VERBOSE"] != nil { print("conformance: \(kind)/\(test)") }
                outcomes.append(("\(kind)/\(test)", runConformance(folder.appendingPathComponent(test))))
            }
        }
        let passed = outcomes.filter { $0.1 == .pass }.map(\.0)
        let failed = outcomes.compactMap { name, o -> (String, String)? in if case .fail(let m) = o { return (name, m) }; return nil }
        let skipped = outcomes.compactMap { name, o -> (String, String)? in if case .skip(let m) = o { return (name, m) }; return nil }
        print("ONNX conformance: \(passed.count) of \(outcomes.count) backend tests pass (\(failed.count) known failures, \(skipped.count) skipped)")

        if ProcessInfo.processInfo.environment["DISTILL_ONNX_UPDATE_LISTS"] == "1" {
            let header = "# ONNX backend tests (libonnx-testdata) that DistillKit passes; Tests/DistillONNXTests/ConformanceTests.swift fails if one stops passing.\n# Regenerate: DISTILL_ONNX_UPDATE_LISTS=1 swift test --filter ConformanceTests\n"
            try (header + passed.joined(separator: "\n") + "\n").write(to: listsSource.appendingPathComponent("conformance_expected_pass.txt"), atomically: true, encoding: .utf8)
            let skipHeader = "# ONNX backend tests (libonnx-testdata) that DistillKit does not pass, with the reason.\n# Regenerate: DISTILL_ONNX_UPDATE_LISTS=1 swift test --filter ConformanceTests\n"
            let lines = (failed.map { "\($0.0): known failure: \($0.1)" } + skipped.map { "\($0.0): \($0.1)" }).sorted()
            try (skipHeader + lines.joined(separator: "\n") + "\n").write(to: listsSource.appendingPathComponent("conformance_skipped.txt"), atomically: true, encoding: .utf8)
            return
        }

        let expected = readList("conformance_expected_pass.txt")
        #expect(!expected.isEmpty, "conformance_expected_pass.txt is missing or empty")
        let results = Dictionary(outcomes, uniquingKeysWith: { a, _ in a })
        for name in expected {
            switch results[name] {
            case .pass?: continue
            case .fail(let m)?: Issue.record("\(name) passed before and now fails: \(m)")
            case .skip(let m)?: Issue.record("\(name) passed before and is now skipped: \(m)")
            case nil: Issue.record("\(name) passed before and is no longer in \(conformanceRoot.path)")
            }
        }
        let newPasses = Set(passed).subtracting(expected)
        if !newPasses.isEmpty {
            print("ConformanceTests: \(newPasses.count) tests pass that conformance_expected_pass.txt does not list (regenerate it): \(newPasses.sorted().prefix(10).joined(separator: ", "))")
        }
    }
}
