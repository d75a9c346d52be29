import DistillData
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// Mutated copies of valid files: every reader must either decode them or throw `DataError`,
/// never trap. Deterministic (seeded) and small enough to run in well under a second.
@Suite struct FuzzTests {
    /// `count` mutants of `bytes`: random byte flips, truncations and insertions.
    func mutants(of bytes: [UInt8], count: Int, seed: UInt64) -> [[UInt8]] {
        var g = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            var b = bytes
            switch g.nextInt(below: 3) {
            case 0:
                for _ in 0...g.nextInt(below: 4) where !b.isEmpty { b[g.nextInt(below: b.count)] = UInt8(truncatingIfNeeded: g.next()) }
            case 1:
                b = Array(b.prefix(g.nextInt(below: b.count + 1)))
            default:
                b.insert(contentsOf: (0..<g.nextInt(below: 9)).map { _ in UInt8(truncatingIfNeeded: g.next()) }, at: g.nextInt(below: b.count + 1))
            }
            return b
        }
    }

    func survives(_ body: () throws -> Void) -> Bool {
        do { try body(); return true } catch is DataError { return true } catch { return false }
    }

    @Test func idx() throws {
        let raw = try [UInt8](IDX.encode(shape: [2, 3, 4], values: (0..<24).map(UInt8.init)))
        let gz = try [UInt8](Gzip.compress(Data(raw)))
        for (k, m) in (mutants(of: raw, count: 300, seed: 1) + mutants(of: gz, count: 300, seed: 2)).enumerated() {
            #expect(survives { _ = try IDX.decodeFloats(Data(m), name: "m") }, "mutant \(k)")
        }
    }

    @Test func npy() throws {
        let good = [UInt8](NPY.encode(Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])))
        // Mutate the header region more often: that is where the parsing happens.
        for (k, m) in mutants(of: Array(good.prefix(80)), count: 400, seed: 3).enumerated() {
            let bytes = m + good.dropFirst(80)
            #expect(survives { _ = try NPY.decode(Data(bytes), name: "m"); _ = try NPY.decodeInts(Data(bytes), name: "m") }, "mutant \(k)")
        }
    }

    @Test func csv() throws {
        let good = Array("a,b,\"c, d\",label\n1,x,\"q \"\"z\"\"\",cat\n2,y,3,dog\r\n3,x,4,cat\n".utf8)
        for (k, m) in mutants(of: good, count: 400, seed: 4).enumerated() {
            #expect(survives { _ = try CSVTable.parse(Data(m), name: "m").dataset(labelColumn: "label") }, "mutant \(k)")
        }
    }

    @Test func npz() throws {
        let dir = try TemporaryDirectory()
        let good = try [UInt8](NPZ.encode(["w": Tensor([1, 2, 3]), "b": Tensor([4])], compressed: true))
        for (k, m) in mutants(of: good, count: 150, seed: 5).enumerated() {
            let url = try dir.write("m\(k).npz", m)
            #expect(survives { _ = try NPZ.read(url) }, "mutant \(k)")
        }
    }
}
