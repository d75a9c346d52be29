import DistillNN
import DistillTensor
import DistillTestSupport
import DistillText
import DistillTraining
import Foundation
import Testing

// Starting a narrow transformer student from the teacher's projected embeddings (`--init
// projected`: principalDirections and BertEncoder.projectEmbeddings in
// Sources/DistillNN/TransformerStudent.swift).

@Suite("Text student initialisation") struct TextStudentInitTests {
    /// Rows built as U·diag(s)·Vᵀ with known orthonormal V and s = 9, 5, 2, 1, 0.5, 0.1: the two
    /// leading directions are V's first two columns (up to sign), in that order.
    @Test func principalDirectionsOfAKnownMatrix() {
        let d = 6, n = 40
        // V: a rotation in the planes (0,1), (2,3), (4,5) — orthonormal by construction.
        var v = [Float](repeating: 0, count: d * d)
        for (p, angle) in [(0, 0.3), (2, 1.1), (4, -0.7)] as [(Int, Double)] {
            let (c, s) = (Float(cos(angle)), Float(sin(angle)))
            v[p * d + p] = c; v[p * d + p + 1] = -s; v[(p + 1) * d + p] = s; v[(p + 1) * d + p + 1] = c
        }
        let singular: [Float] = [9, 5, 2, 1, 0.5, 0.1]
        var g = SeededGenerator(seed: 3)
        var u = Tensor.randomNormal([n, d], std: 1, using: &g)
        // Orthonormal columns for U (Gram-Schmidt), so that s are the singular values.
        let p = u.data
        for j in 0..<d {
            for i in 0..<j {
                var dot: Float = 0
                for r in 0..<n { dot += p[r * d + i] * p[r * d + j] }
                for r in 0..<n { p[r * d + j] -= dot * p[r * d + i] }
            }
            var norm: Float = 0
            for r in 0..<n { norm += p[r * d + j] * p[r * d + j] }
            for r in 0..<n { p[r * d + j] /= norm.squareRoot() }
        }
        u = u * Tensor(shape: [1, d], scalars: singular)
        let x = u.matmul(Tensor(shape: [d, d], scalars: v).transposed())   // U·S·Vᵀ
        let directions = principalDirections(x, count: 2, seed: 9)
        #expect(directions.shape == [d, 2])
        for j in 0..<2 {
            let dot = (0..<d).reduce(Float(0)) { $0 + directions.data[$1 * 2 + j] * v[$1 * d + j] }
            #expect(abs(abs(dot) - 1) < 1e-4, "direction \(j): |cos| with V's column \(j) is \(abs(dot))")
        }
    }

    /// A narrow student starts from the projected embeddings and its projection from the same
    /// directions; it learns the teacher's vectors; a student as wide as the teacher is refused.
    @Test func projectedStudentDistils() throws {
        let fixture = try TinyTextTask()
        var settings = fixture.settings(student: "bert:1-8-2-16", run: "projected")
        settings.projectEmbeddings = true
        var logged: [String] = []
        let result = try TextDistillation.run(settings, teacher: fixture.teacher) { logged.append($0) }
        #expect(logged.contains { $0.contains("projected onto their 8 leading principal directions") }, "\(logged)")
        #expect(result.rows[1].report.teacherCosine > 0.8, "cos(teacher) \(result.rows[1].report.teacherCosine)")
        // The starting point, before training: embeddings = teacher's · P.
        let teacher = fixture.teacher.encoder!
        let student = try BertEncoder(TransformerConfig(vocabularySize: 45, hiddenSize: 8, layers: 1, heads: 2, intermediateSize: 16, maxPositions: 24), seed: 1)
        let directions = principalDirections(teacher.embeddings.wordEmbeddings.weight, count: 8)
        try student.projectEmbeddings(from: teacher, onto: directions)
        assertClose(student.embeddings.wordEmbeddings.weight, teacher.embeddings.wordEmbeddings.weight.matmul(directions), atol: 1e-6, rtol: 1e-5, "word embeddings")
        expectMessage(["directions [16, 4]"]) { try student.projectEmbeddings(from: teacher, onto: Tensor.zeros([16, 4])) }
        var wide = fixture.settings(student: "bert:1-16", run: "wide")
        wide.projectEmbeddings = true
        expectMessage(["--init projected", "narrower than the teacher"]) { _ = try TextDistillation.run(wide, teacher: fixture.teacher) }
    }
}
