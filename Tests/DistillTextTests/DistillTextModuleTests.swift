import Testing
@testable import DistillText

@Suite struct DistillTextModuleTests {
    @Test func moduleLinks() { #expect(Bool(true)) }
}
