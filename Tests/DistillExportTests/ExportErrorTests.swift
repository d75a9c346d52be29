import Testing
@testable import DistillExport

@Suite struct ExportErrorTests {
    @Test func namesTheFormat() {
        let error = ExportError(format: "Core ML", "layer 3 (GroupNorm) has no Core ML equivalent")
        #expect(error.description == "Core ML export: layer 3 (GroupNorm) has no Core ML equivalent")
    }
}
