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
