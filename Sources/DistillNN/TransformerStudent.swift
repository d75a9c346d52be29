import DistillTensor

/// The architecture of a transformer text student (`bert:` specs): a `BertEncoder` whose mean
/// pooled vector is the sentence vector, followed by a linear map to the teacher's width when the
/// student is narrower (so the student's vector can be compared with the teacher's).
///
/// Two written forms:
/// - the short form people type, completed from the teacher's sizes by `resolve(_:teacher:)`:
///   `bert:L-H` (L layers of width H) or `bert:L-H-A-I` (A heads, feed-forward width I). Without
///   A and I, heads keep the teacher's head width (32 for all-MiniLM-L6-v2) and the feed-forward
///   block keeps the teacher's ratio (4×H);
/// - the full form saved in a model file's metadata, which rebuilds the model alone:
///   `bert:VOCABULARY-POSITIONS-LAYERS-HIDDEN-HEADS-INTERMEDIATE-OUTPUTS`, e.g.
///   `bert:30522-512-2-384-12-1536-384` (OUTPUTS = HIDDEN: no projection).
public struct TransformerStudentSpec: Equatable, Sendable {
    public var vocabulary: Int, positions: Int
    public var layers: Int, hidden: Int, heads: Int, intermediate: Int
    /// Width of the sentence vector: `hidden`, or the teacher's width through a linear map.
    public var outputs: Int

    public static let prefix = "bert:"

    public init(vocabulary: Int, positions: Int, layers: Int, hidden: Int, heads: Int, intermediate: Int, outputs: Int) {
        self.vocabulary = vocabulary; self.positions = positions; self.layers = layers; self.hidden = hidden
        self.heads = heads; self.intermediate = intermediate; self.outputs = outputs
    }

    static func numbers(_ spec: String) -> [Int]? {
        guard spec.hasPrefix(prefix) else { return nil }
        let parts = spec.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.allSatisfy({ $0 != nil && $0! >= 1 && $0! <= 1 << 24 }) else { return nil }
        return parts.map { $0! }
    }

    /// The full form (seven numbers), as saved with a model.
    public init(spec: String) throws {
        guard let n = Self.numbers(spec), n.count == 7 else {
            throw TensorError("model spec '\(spec.prefix(80))': a saved transformer student is written bert:VOCABULARY-POSITIONS-LAYERS-HIDDEN-HEADS-INTERMEDIATE-OUTPUTS, e.g. bert:30522-512-2-384-12-1536-384")
        }
        self.init(vocabulary: n[0], positions: n[1], layers: n[2], hidden: n[3], heads: n[4], intermediate: n[5], outputs: n[6])
        try config.validate()
    }

    /// The short form `bert:L-H` or `bert:L-H-A-I`, completed from the teacher's sizes (its
    /// vocabulary and positions, so that the embeddings can be copied; its width as the output).
    public static func resolve(_ spec: String, teacher: TransformerConfig) throws -> TransformerStudentSpec {
        let usage = "a transformer student is written bert:LAYERS-WIDTH or bert:LAYERS-WIDTH-HEADS-FFN, e.g. bert:2-384 or bert:3-256-8-1024"
        guard let n = numbers(spec), n.count == 2 || n.count == 4 else { throw TensorError("student '\(spec.prefix(80))': \(usage)") }
        let (layers, hidden) = (n[0], n[1])
        guard layers <= 64, hidden <= 4096 else { throw TensorError("student '\(spec)': at most 64 layers of width 4096") }
        var heads: Int, intermediate: Int
        if n.count == 4 {
            (heads, intermediate) = (n[2], n[3])
        } else if hidden == teacher.hiddenSize {
            (heads, intermediate) = (teacher.heads, teacher.intermediateSize)
        } else {
            guard hidden % teacher.headSize == 0 else {
                throw TensorError("student '\(spec)': width \(hidden) is not a multiple of the teacher's head width \(teacher.headSize); give the heads and feed-forward width (bert:\(layers)-\(hidden)-HEADS-FFN)")
            }
            heads = hidden / teacher.headSize
            intermediate = hidden * teacher.intermediateSize / teacher.hiddenSize
        }
        let resolved = TransformerStudentSpec(vocabulary: teacher.vocabularySize, positions: teacher.maxPositions, layers: layers,
                                              hidden: hidden, heads: heads, intermediate: intermediate, outputs: teacher.hiddenSize)
        do { try resolved.config.validate() } catch let error as TensorError { throw TensorError("student '\(spec)': \(error.message)") }
        return resolved
    }

    public var spec: String { "\(Self.prefix)\(vocabulary)-\(positions)-\(layers)-\(hidden)-\(heads)-\(intermediate)-\(outputs)" }
    public var hasProjection: Bool { outputs != hidden }

    /// The encoder's sizes; it L2-normalises its pooled vector only when no projection follows.
    public var config: TransformerConfig {
        TransformerConfig(vocabularySize: vocabulary, hiddenSize: hidden, layers: layers, heads: heads, intermediateSize: intermediate,
                          maxPositions: positions, normalizesEmbeddings: !hasProjection)
    }

    /// Parameters of the model `build` makes, without making it.
    public var parameterCount: Int {
        let embeddings = (vocabulary + positions + 2) * hidden + 2 * hidden
        let layer = 4 * (hidden * hidden + hidden) + 2 * hidden * intermediate + intermediate + hidden + 4 * hidden
        return embeddings + layers * layer + (hasProjection ? (hidden + 1) * outputs : 0)
    }

    /// `[BertEncoder]`, or `[BertEncoder, Linear(hidden → outputs)]`, with BERT's initialisation from `seed`.
    public func build(seed: UInt64) throws -> Sequential {
        let encoder = try BertEncoder(config, seed: seed)
        guard hasProjection else { return Sequential([encoder]) }
        var g = SeededGenerator(seed: seed ^ 0x9E37_79B9_7F4A_7C15)
        return Sequential([encoder, Linear(hidden, outputs, generator: &g)])
    }

    /// The student's encoder in a model `build` made (nil for any other model).
    public static func encoder(of model: Module) -> BertEncoder? {
        (model as? Sequential)?.layers.first as? BertEncoder
    }

    /// The default layer map: student layer m takes the teacher's layer ⌈(m+1)·N/M⌉ − 1, spread
    /// evenly and ending on the teacher's last layer (TinyBERT's uniform mapping, Jiao et al. 2020,
    /// arXiv:1909.10351, §3.3): 2 of 6 → [2, 5], 3 of 6 → [1, 3, 5].
    public static func uniformLayerMap(studentLayers m: Int, teacherLayers n: Int) -> [Int] {
        (0..<m).map { i in max(0, ((i + 1) * n + m - 1) / m - 1) }
    }

    /// Checks a layer map (the teacher's layer for each student layer) against both models.
    public func checkLayerMap(_ map: [Int], teacher: TransformerConfig) throws {
        guard map.count == layers else {
            throw TensorError("--layer-map \(map.map(String.init).joined(separator: ",")): \(map.count) layers named, the student has \(layers) (one teacher layer per student layer)")
        }
        if let bad = map.first(where: { $0 < 0 || $0 >= teacher.layers }) {
            throw TensorError("--layer-map: the teacher has no layer \(bad) (its layers are 0...\(teacher.layers - 1))")
        }
    }
}

/// The `count` leading principal directions of the rows of `x` [n, D] (uncentred: the leading
/// right singular vectors of x) as the orthonormal columns of a [D, count] matrix, by subspace
/// iteration on xᵀx (Golub & Van Loan, "Matrix Computations", §8.2.4) from a seeded start, with
/// Gram-Schmidt orthonormalisation after each product. Columns come out in order of decreasing
/// variance (each is re-sorted by its Rayleigh quotient at the end).
public func principalDirections(_ x: Tensor, count: Int, iterations: Int = 80, seed: UInt64 = 0) -> Tensor {
    precondition(x.rank == 2 && count >= 1 && count <= x.shape[1], "principalDirections: \(count) directions of rows \(x.shape)")
    let d = x.shape[1]
    let gram = withNoGrad { x.transposed().matmul(x) }                 // [D, D]
    var g = SeededGenerator(seed: seed)
    var q = Tensor.randomNormal([d, count], std: 1, using: &g)
    func orthonormalize(_ m: Tensor) {
        // Columns in place: modified Gram-Schmidt over a [D, k] row-major matrix.
        let p = m.data
        for j in 0..<count {
            for i in 0..<j {
                var dot: Double = 0
                for r in 0..<d { dot += Double(p[r * count + i]) * Double(p[r * count + j]) }
                for r in 0..<d { p[r * count + j] -= Float(dot) * p[r * count + i] }
            }
            var norm: Double = 0
            for r in 0..<d { norm += Double(p[r * count + j]) * Double(p[r * count + j]) }
            let scale = norm > 0 ? Float(1 / norm.squareRoot()) : 0
            for r in 0..<d { p[r * count + j] *= scale }
        }
    }
    orthonormalize(q)
    for _ in 0..<iterations {
        q = withNoGrad { gram.matmul(q) }.copy()
        orthonormalize(q)
    }
    // Sort the columns by variance (qᵢᵀ·G·qᵢ), largest first.
    let gq = withNoGrad { gram.matmul(q) }
    let variance = (0..<count).map { j in (0..<d).reduce(0.0) { $0 + Double(q.data[$1 * count + j]) * Double(gq.data[$1 * count + j]) } }
    let order = (0..<count).sorted { variance[$0] > variance[$1] }
    return Tensor(shape: [d, count], scalars: (0..<d).flatMap { r in order.map { q.data[r * count + $0] } })
}

extension BertEncoder {
    /// Starts this encoder's word, position and token-type embeddings from a wider teacher's,
    /// projected onto `directions` [teacher width, this width] (e.g. `principalDirections` of the
    /// teacher's word embeddings): row r becomes teacherRow_r · directions. The positions this
    /// encoder has are taken from the teacher's first rows. The layers are left as they are.
    public func projectEmbeddings(from teacher: BertEncoder, onto directions: Tensor) throws {
        let (mine, theirs) = (embeddings, teacher.embeddings)
        guard directions.shape == [teacher.config.hiddenSize, config.hiddenSize] else {
            throw TensorError("projected embeddings: directions \(directions.shape), expected [\(teacher.config.hiddenSize), \(config.hiddenSize)]")
        }
        guard config.vocabularySize == teacher.config.vocabularySize, config.maxPositions <= teacher.config.maxPositions,
              config.typeVocabularySize <= teacher.config.typeVocabularySize else {
            throw TensorError("projected embeddings: the student's vocabulary, positions or token types exceed the teacher's")
        }
        withNoGrad {
            mine.wordEmbeddings.weight.assign(theirs.wordEmbeddings.weight.matmul(directions))
            mine.positionEmbeddings.weight.assign(theirs.positionEmbeddings.weight.slice(axis: 0, start: 0, length: config.maxPositions).matmul(directions))
            mine.tokenTypeEmbeddings.weight.assign(theirs.tokenTypeEmbeddings.weight.slice(axis: 0, start: 0, length: config.typeVocabularySize).matmul(directions))
        }
    }
}
