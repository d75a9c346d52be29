import DistillNN
import Foundation
import DistillTensor

// Sentence-embedding distillation: the student's pooled embedding [N, D] is pulled toward the
// teacher's [N, D] for the same text. Conventions as in DistillationLosses.swift: scalar results,
// the teacher detached inside.

/// Embedding MSE (Reimers & Gurevych, EMNLP 2020, "Making Monolingual Sentence Embeddings
/// Multilingual using Knowledge Distillation", arXiv:2004.09813, eq. 1; sentence-transformers'
/// `MSELoss`):
///
///     L = mean over rows and dimensions of (s − t)²
///
/// With L2-normalised teacher embeddings (all-MiniLM-L6-v2's), the values are small (≈ 1/D per
/// element), so it is usually combined with the cosine term below.
public func embeddingMSELoss(student: Tensor, teacher: Tensor) -> Tensor {
    precondition(student.shape == teacher.shape, "embeddingMSELoss: student \(student.shape) and teacher \(teacher.shape) embeddings differ in shape")
    return mseLoss(student, teacher.detached())
}

/// Cosine embedding loss (DistilBERT's `L_cos`: Sanh, Debut, Chaumond, Wolf 2019, "DistilBERT, a
/// distilled version of BERT", arXiv:1910.01108, §2; PyTorch `CosineEmbeddingLoss` with target 1):
///
///     L = mean over rows of 1 − cos(s, t),   cos(s, t) = s·t / (‖s‖ ‖t‖)
///
/// Scale-free: it aligns directions, which is all that retrieval by cosine similarity uses.
public func cosineEmbeddingLoss(student: Tensor, teacher: Tensor) -> Tensor {
    precondition(student.shape == teacher.shape && student.rank == 2,
                 "cosineEmbeddingLoss: student \(student.shape) and teacher \(teacher.shape) must be the same [N, D]")
    let cosine = (l2Normalized(student, axis: 1) * l2Normalized(teacher.detached(), axis: 1)).sum(axis: 1)
    return (-cosine).mean() + 1
}

/// The objective of sentence-embedding distillation (label-free):
///
///     L = w_cos · L_cos(s, t) + w_mse · L_mse(s, t)
///
/// with `t` the teacher's embedding of the same training row (the mean when there are several
/// teachers). Labels are not used.
public final class EmbeddingObjective: TrainingObjective {
    public let cosineWeight: Float, mseWeight: Float

    public init(cosineWeight: Float = 1, mseWeight: Float = 0) {
        precondition(cosineWeight >= 0 && mseWeight >= 0 && cosineWeight + mseWeight > 0, "EmbeddingObjective: the weights must be ≥ 0, not both 0")
        self.cosineWeight = cosineWeight
        self.mseWeight = mseWeight
    }

    public var needsTeacher: Bool { true }
    public var needsLabels: Bool { false }
    public var termNames: [String] { ["cosine", "mse"] }

    public func loss(studentOutputs: Tensor, studentFeatures: [String: Tensor], teacherOutputs: [Tensor], teacherFeatures: [String: Tensor],
                     labels: [Int], indices: [Int], epoch: Int) throws -> (total: Tensor, parts: [String: Float]) {
        guard let first = teacherOutputs.first else { throw TrainingError(message: "embedding distillation needs the teacher's embeddings") }
        let teacher = teacherOutputs.dropFirst().reduce(first, +) / Float(teacherOutputs.count)
        guard teacher.shape == studentOutputs.shape else {
            throw TrainingError(message: "the student gives embeddings of shape \(studentOutputs.shape), the teacher \(teacher.shape): the student's output width must be the teacher's")
        }
        let cosine = cosineEmbeddingLoss(student: studentOutputs, teacher: teacher)
        let mse = embeddingMSELoss(student: studentOutputs, teacher: teacher)
        return (cosine * cosineWeight + mse * mseWeight, ["cosine": cosine.item(), "mse": mse.item()])
    }
}

/// In-batch contrastive loss for pairs, without a teacher (InfoNCE; Henderson et al. 2017,
/// "Efficient Natural Language Response Suggestion for Smart Reply", arXiv:1705.00652;
/// sentence-transformers' `MultipleNegativesRankingLoss`, scale 20):
///
///     L = mean over i of CE(scale · [cos(a_i, p_1), …, cos(a_i, p_N)], i)
///
/// Each anchor's own pair is the positive and the batch's other pairs are the negatives. It is
/// how a sentence encoder is trained from pairs alone: the baseline that distillation must beat.
public func contrastivePairLoss(anchors: Tensor, positives: Tensor, scale: Float = 20) -> Tensor {
    precondition(anchors.shape == positives.shape && anchors.rank == 2, "contrastivePairLoss: anchors \(anchors.shape) and positives \(positives.shape) must be the same [N, D]")
    let similarities = l2Normalized(anchors, axis: 1).matmul(l2Normalized(positives, axis: 1).transposed()) * scale
    return crossEntropy(logits: similarities, labels: Array(0..<anchors.shape[0]))
}

/// The objective of a text student trained from (description, summary) pairs alone: the student
/// runs as `PairEncoder`, whose output rows are the two vectors side by side.
public final class ContrastivePairObjective: TrainingObjective {
    public init() {}
    public var needsTeacher: Bool { false }
    public var needsLabels: Bool { false }
    public var termNames: [String] { ["contrastive"] }

    public func loss(studentOutputs: Tensor, studentFeatures: [String: Tensor], teacherOutputs: [Tensor], teacherFeatures: [String: Tensor],
                     labels: [Int], indices: [Int], epoch: Int) throws -> (total: Tensor, parts: [String: Float]) {
        let width = studentOutputs.shape[1] / 2
        let loss = contrastivePairLoss(anchors: studentOutputs.slice(axis: 1, start: 0, length: width),
                                       positives: studentOutputs.slice(axis: 1, start: width, length: width))
        return (loss, ["contrastive": loss.item()])
    }
}

/// Hidden-state transfer for transformers (TinyBERT's `L_hidn`: Jiao et al., Findings of EMNLP
/// 2020, "TinyBERT: Distilling BERT for Natural Language Understanding", arXiv:1909.10351, eq. 8):
///
///     L = Σ_{b,l} m_bl · ‖s_bl − t_bl‖² / (D · Σ_{b,l} m_bl)
///
/// the mean squared error over the real tokens only (mask m [B, L], 1 for a token, 0 for
/// padding), between the student's hidden states s [B, L, D] (already mapped to the teacher's
/// width D when the widths differ: TinyBERT's learned `W_h`) and the teacher's t [B, L, D].
public func hiddenStateLoss(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor {
    precondition(student.shape == teacher.shape && student.rank == 3, "hiddenStateLoss: student \(student.shape) and teacher \(teacher.shape) must be the same [B, L, D]")
    precondition(mask.shape == Array(student.shape.prefix(2)), "hiddenStateLoss: mask \(mask.shape) is not [B, L] of \(student.shape)")
    let tokens = max(mask.scalars.reduce(0, +), 1)
    let difference = student - teacher.detached()
    return (difference * difference * mask.reshaped(mask.shape + [1])).sum() / (tokens * Float(student.shape[2]))
}

/// Hidden-state transfer between mapped layers: for each pair (student layer, teacher layer),
/// `hiddenStateLoss` between the student's tapped output, through a learned linear map when the
/// widths differ, and the teacher's, averaged over the pairs.
public struct HiddenStateTransfer {
    /// Feature-tap paths, student and teacher, one pair per mapped layer.
    public var pairs: [(student: String, teacher: String)]
    /// `Linear(student width → teacher width)` per pair, or nil when the widths are equal; trained
    /// with the student, never part of it (like FitNets' regressors).
    public var projections: [Linear?]
    /// Token ids of the training rows [N, L] (0: padding), for the masks of a batch's rows.
    public var ids: Tensor
    public var weight: Float

    public init(pairs: [(student: String, teacher: String)], studentWidth: Int, teacherWidth: Int, ids: Tensor, weight: Float, seed: UInt64) {
        var g = SeededGenerator(seed: seed ^ 0x4849_4444_454E)
        self.pairs = pairs
        projections = pairs.map { _ in studentWidth == teacherWidth ? nil : Linear(studentWidth, teacherWidth, generator: &g) }
        self.ids = ids
        self.weight = weight
    }

    /// The mask [B, L'] of the rows `indices`, L' the tapped length (the batch's longest text).
    func mask(indices: [Int], length: Int) -> Tensor { tokenMask(ids, indices: indices, length: length) }

    func loss(studentFeatures: [String: Tensor], teacherFeatures: [String: Tensor], indices: [Int]) throws -> Tensor {
        var total: Tensor? = nil
        for (k, pair) in pairs.enumerated() {
            guard var s = studentFeatures[pair.student], let t = teacherFeatures[pair.teacher] else {
                throw TrainingError(message: "hidden-state transfer: no hidden states were recorded for \(pair.student) / \(pair.teacher)")
            }
            if let projection = projections[k] { s = projection(s) }
            guard s.shape == t.shape else {
                throw TrainingError(message: "hidden-state transfer: the student's \(pair.student) is \(s.shape), the teacher's \(pair.teacher) \(t.shape)")
            }
            let term = hiddenStateLoss(student: s, teacher: t, mask: mask(indices: indices, length: s.shape[1]))
            total = total.map { $0 + term } ?? term
        }
        return (total ?? Tensor(scalar: 0)) / Float(max(pairs.count, 1))
    }
}

/// Self-attention distribution transfer (MiniLM's `L_AT`: Wang, Wei, Dong, Bao, Yang, Zhou,
/// NeurIPS 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic Compression of
/// Pre-Trained Transformers", arXiv:2002.10957, eq. 6):
///
///     L = 1 / (A · Σ_{b,t} m_bt) · Σ_{b,a,t} m_bt · KL(T_{b,a,t,·} ‖ S_{b,a,t,·})
///
/// the KL divergence between the teacher's and the student's attention distributions of each
/// head a and each real query token t (mask m [B, L]: 1 for a token, 0 for padding; padding
/// keys get no mass on either side), summed over the keys, averaged over heads and real tokens.
/// Inputs are the attention *scores* (logits, padding keys at −1e9: `AttentionScores`),
/// student [B, A, L, L] and teacher [B, k·A, L, L]. MiniLM compares heads one to one (k = 1);
/// when the teacher has k times the student's heads, each student head is compared with the
/// mean of the distributions of k consecutive teacher heads (a DistillKit choice: a mean of
/// distributions is a distribution). The teacher is detached; T·log T (constant for the
/// student) is summed with 0·log 0 = 0.
public func attentionTransferLoss(studentScores: Tensor, teacherScores: Tensor, mask: Tensor) -> Tensor {
    precondition(studentScores.rank == 4 && teacherScores.rank == 4, "attentionTransferLoss: scores must be [B, heads, L, L], got \(studentScores.shape) and \(teacherScores.shape)")
    let (b, heads, l) = (studentScores.shape[0], studentScores.shape[1], studentScores.shape[2])
    let group = teacherScores.shape[1] / max(heads, 1)
    precondition(studentScores.shape[3] == l && teacherScores.shape[0] == b && Array(teacherScores.shape[2...]) == [l, l]
                 && group >= 1 && group * heads == teacherScores.shape[1],
                 "attentionTransferLoss: teacher scores \(teacherScores.shape) do not fit student scores \(studentScores.shape) (the teacher's heads must be a multiple of the student's)")
    precondition(mask.shape == [b, l], "attentionTransferLoss: mask \(mask.shape) is not [B, L] = [\(b), \(l)]")
    // The teacher's distributions, grouped to the student's heads: [B, A, L, L].
    let teacher: Tensor = withNoGrad {
        let p = teacherScores.detached().softmax(axis: -1)
        return group == 1 ? p : p.reshaped([b, heads, group, l, l]).mean(axis: 2)
    }
    let rows = mask.reshaped([b, 1, l, 1])
    let cross = -(teacher * studentScores.logSoftmax(axis: -1) * rows).sum()
    var negativeEntropy = 0.0
    for bi in 0..<b {
        for t in 0..<l where mask.data[bi * l + t] > 0 {
            for a in 0..<heads {
                let row = teacher.data + ((bi * heads + a) * l + t) * l
                for k in 0..<l where row[k] > 0 { negativeEntropy += Double(row[k]) * Foundation.log(Double(row[k])) }
            }
        }
    }
    let tokens = max(mask.scalars.reduce(0, +), 1)
    return (cross + Float(negativeEntropy)) / (tokens * Float(heads))
}

/// Attention transfer between layers: for each pair (student layer, teacher layer),
/// `attentionTransferLoss` between the layers' attention scores (feature taps on
/// `….attention.scores`), averaged over the pairs.
public struct AttentionTransfer {
    /// Feature-tap paths of the attention scores, student and teacher, one pair per layer compared.
    public var pairs: [(student: String, teacher: String)]
    /// Token ids of the training rows [N, L] (0: padding), for the masks of a batch's rows.
    public var ids: Tensor
    public var weight: Float

    /// `layers`: (student layer, teacher layer) pairs of a `bert:` student (`0.encoder.layer.N`).
    public init(layers: [(student: Int, teacher: Int)], ids: Tensor, weight: Float) {
        pairs = layers.map { ("0.encoder.layer.\($0.student).attention.scores", "0.encoder.layer.\($0.teacher).attention.scores") }
        self.ids = ids
        self.weight = weight
    }

    func loss(studentFeatures: [String: Tensor], teacherFeatures: [String: Tensor], indices: [Int]) throws -> Tensor {
        var total: Tensor? = nil
        for pair in pairs {
            guard let s = studentFeatures[pair.student], let t = teacherFeatures[pair.teacher] else {
                throw TrainingError(message: "attention transfer: no attention scores were recorded for \(pair.student) / \(pair.teacher)")
            }
            guard s.rank == 4, t.rank == 4, s.shape[0] == t.shape[0], Array(s.shape[2...]) == Array(t.shape[2...]),
                  t.shape[1] % s.shape[1] == 0 else {
                throw TrainingError(message: "attention transfer: the student's \(pair.student) is \(s.shape), the teacher's \(pair.teacher) \(t.shape) (the teacher's heads must be a multiple of the student's)")
            }
            let term = attentionTransferLoss(studentScores: s, teacherScores: t, mask: tokenMask(ids, indices: indices, length: s.shape[2]))
            total = total.map { $0 + term } ?? term
        }
        return (total ?? Tensor(scalar: 0)) / Float(max(pairs.count, 1))
    }
}

/// The mask [B, L'] of rows `indices` of token ids [N, L] (0: padding), L' the batch's tapped length.
func tokenMask(_ ids: Tensor, indices: [Int], length: Int) -> Tensor {
    let full = ids.shape[1]
    var values = [Float](repeating: 0, count: indices.count * length)
    for (r, row) in indices.enumerated() {
        for j in 0..<min(length, full) where ids.data[row * full + j] != 0 { values[r * length + j] = 1 }
    }
    return Tensor(shape: [indices.count, length], scalars: values)
}

/// Logit KD for the section classifier (Hinton, Vinyals, Dean 2015, arXiv:1503.02531): the
/// student's own linear head on its sentence vector learns the teacher's section head's logits
/// (the teacher's head, trained on the teacher's vectors, applied to them) and the labels,
///
///     L = ½ · T² · KL(softmax(t/T) ‖ softmax(s/T)) + ½ · CE(s, y)
///
/// the recipe `distill kd` defaults to (T = 2, α = ½).
public struct SectionDistillation {
    /// The student's head, `Linear(vector width → sections)`: trained with the student, saved beside it.
    public var head: Linear
    /// The teacher head's logits for every training row [N, C].
    public var teacherLogits: Tensor
    public var temperature: Float
    public var weight: Float

    public init(width: Int, teacherLogits: Tensor, temperature: Float = 2, weight: Float, seed: UInt64) {
        var g = SeededGenerator(seed: seed ^ 0x5345_4354)
        head = Linear(width, teacherLogits.shape[1], generator: &g)
        self.teacherLogits = teacherLogits
        self.temperature = temperature
        self.weight = weight
    }

    func loss(vectors: Tensor, labels: [Int], indices: [Int]) -> (kd: Tensor, ce: Tensor) {
        let logits = head(l2Normalized(vectors, axis: 1))
        let teacher = withNoGrad { teacherLogits.indexSelect(axis: 0, indices: indices) }
        return (kdLoss(student: logits, teacher: teacher, temperature: temperature), crossEntropy(logits: logits, labels: labels))
    }
}

/// The objective of a text student: the pooled-vector terms of `EmbeddingObjective`, plus, as
/// options, hidden-state transfer (`HiddenStateTransfer`), attention transfer
/// (`AttentionTransfer`) and logit KD for a section head (`SectionDistillation`).
public final class TextStudentObjective: TrainingObjective {
    public let embedding: EmbeddingObjective
    public let hidden: HiddenStateTransfer?
    public let section: SectionDistillation?
    public let attention: AttentionTransfer?

    public init(embedding: EmbeddingObjective, hidden: HiddenStateTransfer? = nil, section: SectionDistillation? = nil,
                attention: AttentionTransfer? = nil) {
        self.embedding = embedding; self.hidden = hidden; self.section = section; self.attention = attention
    }

    /// Whether a term needs the teacher's layers on each batch (its pooled vectors come from a cache).
    public var needsTeacherLayers: Bool { hidden != nil || attention != nil }
    public var needsTeacher: Bool { true }
    public var needsLabels: Bool { section != nil }
    public var termNames: [String] {
        embedding.termNames + (hidden == nil ? [] : ["hidden"]) + (attention == nil ? [] : ["attention"]) + (section == nil ? [] : ["section_kd", "section_ce"])
    }
    public var studentFeatureNames: [String] { (hidden?.pairs.map(\.student) ?? []) + (attention?.pairs.map(\.student) ?? []) }
    public var teacherFeatureNames: [String] { (hidden?.pairs.map(\.teacher) ?? []) + (attention?.pairs.map(\.teacher) ?? []) }
    public var adapterParameters: [Tensor] {
        (hidden?.projections.compactMap { $0 }.flatMap { $0.trainableParameters() } ?? []) + (section?.head.trainableParameters() ?? [])
    }

    public func loss(studentOutputs: Tensor, studentFeatures: [String: Tensor], teacherOutputs: [Tensor], teacherFeatures: [String: Tensor],
                     labels: [Int], indices: [Int], epoch: Int) throws -> (total: Tensor, parts: [String: Float]) {
        var (total, parts) = try embedding.loss(studentOutputs: studentOutputs, studentFeatures: studentFeatures, teacherOutputs: teacherOutputs,
                                                teacherFeatures: teacherFeatures, labels: labels, indices: indices, epoch: epoch)
        if let hidden {
            let term = try hidden.loss(studentFeatures: studentFeatures, teacherFeatures: teacherFeatures, indices: indices)
            total = total + term * hidden.weight
            parts["hidden"] = term.item()
        }
        if let attention {
            let term = try attention.loss(studentFeatures: studentFeatures, teacherFeatures: teacherFeatures, indices: indices)
            total = total + term * attention.weight
            parts["attention"] = term.item()
        }
        if let section {
            let (kd, ce) = section.loss(vectors: studentOutputs, labels: labels, indices: indices)
            total = total + (kd + ce) * (section.weight / 2)
            parts["section_kd"] = kd.item()
            parts["section_ce"] = ce.item()
        }
        return (total, parts)
    }
}
