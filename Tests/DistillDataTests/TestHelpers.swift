import DistillData
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// Expects `body` to throw a `DataError` whose message contains every fragment.
func expectDataError(_ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation,
                     _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected a DataError containing \(fragments), nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as DataError {
        for fragment in fragments where !error.message.contains(fragment) {
            Issue.record("error message \"\(error.message)\" lacks \"\(fragment)\"", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected a DataError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
}

/// Little-endian bytes of a fixed-width integer.
func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
/// Big-endian bytes of a fixed-width integer.
func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

/// `count` bytes from a seeded generator, eight at a time: incompressible test data, made quickly even in debug builds.
func randomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var generator = SeededGenerator(seed: seed)
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var i = 0
        while i < count {
            var word = generator.next()
            for _ in 0 ..< min(8, count - i) { buffer[i] = UInt8(truncatingIfNeeded: word); word >>= 8; i += 1 }
        }
        initialized = count
    }
}
