import DistillTensor
import DistillTestSupport
import DistillTraining
import Foundation
import Testing

// Distillation losses: golden values from PyTorch (LossGoldenValues.swift, written by
// scripts/golden/make_loss_golden.py, whose reference functions follow RepDistiller, mdistiller,
// DIST_KD and logit-standardization-KD), central-difference gradient checks, and properties.
// Expected values are float64 answers for the float32 inputs; the Swift side computes in Float32.

private typealias G = LossGolden

/// Shapes of the golden inputs.
private let logitShape = [6, 7], featureStudentShape = [4, 3, 4, 4], featureTeacherShape = [4, 5, 4, 4]
private let embeddingStudentShape = [6, 5], embeddingTeacherShape = [6, 8], regressionShape = [5, 3]

private func tensor(_ values: [Float], _ shape: [Int], grad: Bool = false) -> Tensor {
    Tensor(shape: shape, scalars: values, requiresGrad: grad)
}
private func student(grad: Bool = true) -> Tensor { tensor(G.student, logitShape, grad: grad) }
private func teacher() -> Tensor { tensor(G.teacher, logitShape) }

/// The loss's value and its gradient w.r.t. `input` (a fresh leaf).
private func valueAndGradient(_ input: Tensor, _ loss: (Tensor) -> Tensor) -> (Float, [Float]) {
    let l = loss(input)
    #expect(l.shape == [], "losses are scalars, got \(l.shape)")
    l.backward()
    return (l.item(), input.grad?.scalars ?? [])
}

/// Golden scalar: `|a − b| ≤ 1e-6 + rtol·|b|`.
private func expectScalar(_ a: Float, _ b: Float, rtol: Double = 1e-5, _ label: String,
                          sourceLocation: SourceLocation = #_sourceLocation) {
    assertClose([a], [b], atol: 1e-6, rtol: rtol, label, sourceLocation: sourceLocation)
}

// MARK: - Golden values: logit losses

// F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T ** 2
// (gradient by loss.backward() on s)
@Test("kd matches PyTorch's batchmean KL × T², value and student gradient", arguments: [Float(1), 4])
func kdGolden(temperature: Float) {
    let (v, g) = valueAndGradient(student()) { kdLoss(student: $0, teacher: teacher(), temperature: temperature) }
    expectScalar(v, temperature == 1 ? G.kdT1 : G.kdT4, "kd T=\(temperature)")
    assertClose(g, temperature == 1 ? G.kdT1Grad : G.kdT4Grad, atol: 1e-7, rtol: 1e-5, "kd gradient T=\(temperature)")
}

// w = w / w.sum(); avg = sum(wi * F.softmax(t / T, dim=1) for wi, t in zip(w, [teacher, teacher2]))
// F.kl_div(F.log_softmax(s / T, dim=1), avg, reduction="batchmean") * T ** 2      (w = [1, 3], T = 2)
@Test func softTargetsFromAveragedTeachersGolden() {
    let avg = averagedTeacherProbabilities([teacher(), tensor(G.teacher2, logitShape)], weights: [1, 3], temperature: 2)
    assertClose(avg.scalars, G.averagedProbabilities, atol: 1e-7, rtol: 1e-5, "averaged probabilities")
    #expect(!avg.requiresGrad)
    let v = softTargetLoss(student: student(), targetProbabilities: avg, temperature: 2)
    expectScalar(v.item(), G.softTargetAveraged, "soft targets, averaged teachers")
}

// F.kl_div(F.log_softmax(s / 3, dim=1), p, reduction="batchmean") * 9, p with exact zeros
// (kl_div's xlogy makes 0 · log 0 = 0)
@Test func softTargetsWithZeroProbabilitiesGolden() {
    let p = tensor(G.sparseTarget, logitShape)
    #expect(p.scalars.contains(0))
    let (v, g) = valueAndGradient(student()) { softTargetLoss(student: $0, targetProbabilities: p, temperature: 3) }
    #expect(v.isFinite && g.allSatisfy(\.isFinite))
    expectScalar(v, G.softTargetSparse, "soft targets with zeros")
    assertClose(g, G.softTargetSparseGrad, atol: 1e-7, rtol: 1e-5, "soft targets with zeros, gradient")
}

// logit-standardization-KD `normalize`: (z - z.mean(-1, keepdims=True)) / (1e-7 + z.std(-1, keepdims=True))
// (torch.std: unbiased); then kd_loss(normalize(s), normalize(t), T=2)
@Test func standardizedLogitsGolden() {
    let z = standardizedLogits(student(grad: false))
    assertClose(z.scalars, G.standardizedStudent, atol: 1e-6, rtol: 1e-5, "standardized logits")
    let v = kdLoss(student: standardizedLogits(student()), teacher: standardizedLogits(teacher()), temperature: 2)
    expectScalar(v.item(), G.kdStandardizedT2, "kd on standardized logits")
}

// mdistiller/distillers/DKD.py dkd_loss (see make_loss_golden.py): gt/other masks, cat_mask,
// tckd = kl_div(log(cat_mask(p_s)), cat_mask(p_t), sum) * T² / N,
// nckd = kl_div(log_softmax(s/T - 1000 gt), softmax(t/T - 1000 gt), sum) * T² / N,
// alpha * tckd + beta * nckd
@Test func dkdGolden() {
    let (v, g) = valueAndGradient(student()) { dkdLoss(student: $0, teacher: teacher(), labels: G.labels) }
    expectScalar(v, G.dkdDefault, "dkd α=1 β=8 T=4")
    assertClose(g, G.dkdDefaultGrad, atol: 1e-6, rtol: 1e-5, "dkd gradient")
    let custom = dkdLoss(student: student(), teacher: teacher(), labels: G.labels, alpha: 0.5, beta: 2, temperature: 2)
    expectScalar(custom.item(), G.dkdCustom, "dkd α=0.5 β=2 T=2")
}

// DIST_KD: y = (z / tau).softmax(1);
// inter = 1 - pearson(y_s, y_t).mean(); intra = 1 - pearson(y_s.T, y_t.T).mean()   (pearson over dim 1, eps 1e-8)
// beta * tau**2 * inter + gamma * tau**2 * intra
@Test func distGolden() {
    expectScalar(distLoss(student: student(), teacher: teacher()).item(), G.distDefault, "dist β=γ=T=1")
    let custom = distLoss(student: student(), teacher: teacher(), beta: 2, gamma: 3, temperature: 4)
    expectScalar(custom.item(), G.distCustom, "dist β=2 γ=3 T=4")
}

// MARK: - Golden values: feature and relation losses

// RepDistiller HintLoss: nn.MSELoss()(f_s, f_t)
@Test func fitnetsGolden() {
    let v = fitnetsLoss(student: tensor(G.featureAdapted, featureTeacherShape), teacher: tensor(G.featureTeacher, featureTeacherShape))
    expectScalar(v.item(), G.fitnets, "fitnets")
}

// RepDistiller Attention: at(f) = F.normalize(f.pow(p).mean(1).view(f.size(0), -1));
// (at(f_s) - at(f_t)).pow(2).mean()          (p = 3 uses f.abs().pow(3), the paper's |F|^p)
@Test("attention transfer matches RepDistiller's at_loss", arguments: [Float(2), 3])
func attentionTransferGolden(p: Float) {
    let v = attentionTransferLoss(student: tensor(G.featureStudent, featureStudentShape),
                                  teacher: tensor(G.featureTeacher, featureTeacherShape), p: p)
    expectScalar(v.item(), p == 2 ? G.atP2 : G.atP3, "at p=\(p)")
}

// RepDistiller Similarity: G = F.normalize(f.view(N, -1) @ f.view(N, -1).t()); ((G_t - G_s) ** 2).sum() / N**2
@Test func similarityPreservingGolden() {
    let v = similarityPreservingLoss(student: tensor(G.featureStudent, featureStudentShape),
                                     teacher: tensor(G.featureTeacher, featureTeacherShape))
    expectScalar(v.item(), G.sp, "sp")
}

// RepDistiller RKDLoss(w_d, w_a)(f_s, f_t): pdist(e, squared=False, eps=1e-12) with a zero diagonal,
// divided by the mean of d[d > 0]; angles bmm(normalize(e_j - e_i)) over all triplets;
// w_d * smooth_l1(d_s, d_t) + w_a * smooth_l1(a_s, a_t)
@Test func rkdGolden() {
    let s = tensor(G.embeddingStudent, embeddingStudentShape), t = tensor(G.embeddingTeacher, embeddingTeacherShape)
    let (v, g) = valueAndGradient(tensor(G.embeddingStudent, embeddingStudentShape, grad: true)) { rkdLoss(student: $0, teacher: t) }
    expectScalar(v, G.rkdDefault, "rkd 25/50")
    assertClose(g, G.rkdDefaultGrad, atol: 1e-6, rtol: 1e-5, "rkd gradient")
    expectScalar(rkdLoss(student: s, teacher: t, distanceWeight: 1, angleWeight: 0).item(), G.rkdDistanceOnly, "rkd distance term")
    expectScalar(rkdLoss(student: s, teacher: t, distanceWeight: 0, angleWeight: 1).item(), G.rkdAngleOnly, "rkd angle term")
    let maps = rkdLoss(student: tensor(G.featureStudent, featureStudentShape), teacher: tensor(G.featureTeacher, featureTeacherShape))
    expectScalar(maps.item(), G.rkdFeatureMaps, "rkd on feature maps (flattened)")
}

// RepDistiller PKT.cosine_similarity_loss(f_s, f_t, eps=1e-7): row-normalise, (cos + 1) / 2,
// row-normalise to probabilities, mean(P_t * log((P_t + eps) / (P_s + eps)))
@Test func pktGolden() {
    let t = tensor(G.embeddingTeacher, embeddingTeacherShape)
    let (v, g) = valueAndGradient(tensor(G.embeddingStudent, embeddingStudentShape, grad: true)) { pktLoss(student: $0, teacher: t) }
    expectScalar(v, G.pkt, "pkt")
    assertClose(g, G.pktGrad, atol: 1e-7, rtol: 1e-5, "pkt gradient")
}

// F.mse_loss(a, b); F.smooth_l1_loss(a, b) (beta = 1, with its gradient on a);
// 0.7 * F.mse_loss(a, b) + 0.3 * F.mse_loss(a, y)
@Test func regressionLossesGolden() {
    let b = tensor(G.regressionB, regressionShape), y = tensor(G.regressionTarget, regressionShape)
    expectScalar(mseLoss(tensor(G.regressionA, regressionShape), b).item(), G.mse, "mse")
    let (v, g) = valueAndGradient(tensor(G.regressionA, regressionShape, grad: true)) { smoothL1Loss($0, b) }
    expectScalar(v, G.smoothL1, "smooth L1")
    assertClose(g, G.smoothL1Grad, atol: 1e-7, rtol: 1e-5, "smooth L1 gradient")
    let r = regressionDistillationLoss(student: tensor(G.regressionA, regressionShape), teacher: b, target: y, teacherWeight: 0.7)
    expectScalar(r.item(), G.regressionDistillation, "regression distillation")
}

// MARK: - Gradient checks and the teacher's (absent) gradient

/// One loss of a student input (checked by central differences) and a teacher input.
struct LossCase: Sendable, CustomTestStringConvertible {
    let name: String
    let studentValues: [Float], studentShape: [Int]
    let teacherValues: [Float], teacherShape: [Int]
    let loss: @Sendable (Tensor, Tensor) -> Tensor
    var testDescription: String { name }

    init(_ name: String, _ s: ([Float], [Int]), _ t: ([Float], [Int]), _ loss: @escaping @Sendable (Tensor, Tensor) -> Tensor) {
        self.name = name
        (studentValues, studentShape) = s
        (teacherValues, teacherShape) = t
        self.loss = loss
    }
}

private let logitsPair = ((G.student, logitShape), (G.teacher, logitShape))
private let featurePair = ((G.featureStudent, featureStudentShape), (G.featureTeacher, featureTeacherShape))
private let embeddingPair = ((G.embeddingStudent, embeddingStudentShape), (G.embeddingTeacher, embeddingTeacherShape))

let lossCases: [LossCase] = [
    LossCase("kd T=1", logitsPair.0, logitsPair.1) { kdLoss(student: $0, teacher: $1, temperature: 1) },
    LossCase("kd T=4", logitsPair.0, logitsPair.1) { kdLoss(student: $0, teacher: $1, temperature: 4) },
    LossCase("soft targets T=3", logitsPair.0, (G.sparseTarget, logitShape)) {
        softTargetLoss(student: $0, targetProbabilities: $1, temperature: 3)
    },
    LossCase("kd on standardized logits", logitsPair.0, logitsPair.1) {
        kdLoss(student: standardizedLogits($0), teacher: standardizedLogits($1), temperature: 2)
    },
    LossCase("dkd", logitsPair.0, logitsPair.1) { dkdLoss(student: $0, teacher: $1, labels: G.labels) },
    LossCase("dkd α=0.5 β=2 T=2", logitsPair.0, logitsPair.1) {
        dkdLoss(student: $0, teacher: $1, labels: G.labels, alpha: 0.5, beta: 2, temperature: 2)
    },
    LossCase("dist", logitsPair.0, logitsPair.1) { distLoss(student: $0, teacher: $1) },
    LossCase("dist β=2 γ=3 T=4", logitsPair.0, logitsPair.1) { distLoss(student: $0, teacher: $1, beta: 2, gamma: 3, temperature: 4) },
    LossCase("fitnets", (G.featureAdapted, featureTeacherShape), featurePair.1) { fitnetsLoss(student: $0, teacher: $1) },
    LossCase("at p=2", featurePair.0, featurePair.1) { attentionTransferLoss(student: $0, teacher: $1) },
    LossCase("at p=3", featurePair.0, featurePair.1) { attentionTransferLoss(student: $0, teacher: $1, p: 3) },
    LossCase("sp", featurePair.0, featurePair.1) { similarityPreservingLoss(student: $0, teacher: $1) },
    LossCase("rkd", embeddingPair.0, embeddingPair.1) { rkdLoss(student: $0, teacher: $1) },
    LossCase("rkd on feature maps", featurePair.0, featurePair.1) { rkdLoss(student: $0, teacher: $1) },
    LossCase("pkt", embeddingPair.0, embeddingPair.1) { pktLoss(student: $0, teacher: $1) },
    LossCase("regression distillation", (G.regressionA, regressionShape), (G.regressionB, regressionShape)) {
        regressionDistillationLoss(student: $0, teacher: $1, target: Tensor(shape: regressionShape, scalars: G.regressionTarget), teacherWeight: 0.7)
    },
    LossCase("smooth L1 (teacher = second operand)", (G.regressionA, regressionShape), (G.regressionB, regressionShape)) {
        smoothL1Loss($0, $1.detached())
    },
    LossCase("mse (teacher = second operand)", (G.regressionA, regressionShape), (G.regressionB, regressionShape)) {
        mseLoss($0, $1.detached())
    },
]

/// ±1e-2 central differences (in Double, of the Float32 loss) against `backward()`. ε = 1e-2 rather
/// than 1e-3: with Float32 losses of size ~30 (dkd), rounding alone puts ~1e-3 into a 1e-3 quotient,
/// while 1e-2 keeps both rounding and truncation near 1e-4 (measured max abs error ≤ 1.5e-4).
@Test("gradient w.r.t. the student matches central differences", arguments: lossCases)
func studentGradient(_ c: LossCase) {
    let s = Tensor(shape: c.studentShape, scalars: c.studentValues, requiresGrad: true)
    let t = Tensor(shape: c.teacherShape, scalars: c.teacherValues)
    let report = expectGradients(c.name, inputs: [s, t], epsilon: 1e-2, atol: 1e-4, rtol: 2e-2) { c.loss($0[0], $0[1]) }
    #expect(report.checkedElements == s.count)
    #expect(report.inputsWithoutGradient.isEmpty, "\(c.name): \(report)")
}

@Test("no gradient reaches the teacher", arguments: lossCases)
func teacherGetsNoGradient(_ c: LossCase) {
    let s = Tensor(shape: c.studentShape, scalars: c.studentValues, requiresGrad: true)
    let t = Tensor(shape: c.teacherShape, scalars: c.teacherValues, requiresGrad: true)
    c.loss(s, t).backward()
    #expect(t.grad == nil, "\(c.name): the teacher received a gradient")
    #expect(s.grad?.isFinite == true, "\(c.name): the student's gradient is missing or not finite")
}

// MARK: - Properties

@Test func kdOfIdenticalLogitsIsZero() {
    for temperature: Float in [1, 4] {
        let s = student()
        let v = kdLoss(student: s, teacher: student(grad: false), temperature: temperature)
        #expect(v.item() == 0)
        v.backward()
        #expect(s.grad!.scalars.allSatisfy { Swift.abs($0) < 1e-7 })
    }
}

/// The KL term's gradient is `T · (softmax(s/T) − softmax(t/T)) / N` (METHODS.md).
@Test(arguments: [Float(1), 2, 4])
func kdGradientIsTemperatureTimesProbabilityGapOverBatch(temperature: Float) {
    let s = student()
    kdLoss(student: s, teacher: teacher(), temperature: temperature).backward()
    let expected = withNoGrad {
        (student(grad: false).scaled(1 / temperature).softmax(axis: 1) - teacher().scaled(1 / temperature).softmax(axis: 1))
            .scaled(temperature / Float(logitShape[0]))
    }
    assertClose(s.grad!.scalars, expected.scalars, atol: 1e-7, rtol: 1e-5, "T (p_s - p_t) / N")
}

@Test(arguments: [Float(1), 4])
func kdEqualsSoftTargetsAtTeacherProbabilities(temperature: Float) {
    let p = withNoGrad { teacher().scaled(1 / temperature).softmax(axis: 1) }
    let a = kdLoss(student: student(), teacher: teacher(), temperature: temperature).item()
    let b = softTargetLoss(student: student(), targetProbabilities: p, temperature: temperature).item()
    expectScalar(a, b, "kd vs soft targets")
    // A single teacher "averaged" is the same target.
    let single = averagedTeacherProbabilities([teacher()], temperature: temperature)
    assertClose(single.scalars, p.scalars, atol: 0, rtol: 0, "one teacher's average")
}

@Test func averagedProbabilitiesAreDistributionsAndEqualWeightsAreTheMean() {
    let t1 = teacher(), t2 = tensor(G.teacher2, logitShape)
    let avg = averagedTeacherProbabilities([t1, t2], temperature: 3)
    let rowSums = avg.sum(axis: 1).scalars
    assertClose(rowSums, [Float](repeating: 1, count: logitShape[0]), atol: 1e-6, rtol: 0, "row sums")
    let mean = (t1.scaled(1 / 3).softmax(axis: 1) + t2.scaled(1 / 3).softmax(axis: 1)).scaled(0.5)
    assertClose(avg.scalars, mean.scalars, atol: 1e-7, rtol: 1e-6, "equal weights")
    let scaled = averagedTeacherProbabilities([t1, t2], weights: [2, 2], temperature: 3)
    assertClose(scaled.scalars, avg.scalars, atol: 1e-7, rtol: 1e-6, "weights are normalised")
}

@Test func standardizedLogitsHaveRowMeanZeroAndUnbiasedStdOne() {
    let z = standardizedLogits(student(grad: false)).scalars
    let c = logitShape[1]
    for row in 0..<logitShape[0] {
        let r = z[(row * c)..<((row + 1) * c)].map(Double.init)
        let mean = r.reduce(0, +) / Double(c)
        let unbiasedVariance = r.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c - 1)
        #expect(Swift.abs(mean) < 1e-6, "row \(row) mean \(mean)")
        #expect(Swift.abs(unbiasedVariance.squareRoot() - 1) < 1e-5, "row \(row) std \(unbiasedVariance.squareRoot())")
    }
    // Invariant to a per-row shift and positive scale.
    let shifted = standardizedLogits(student(grad: false).scaled(3) + Tensor(shape: [6, 1], scalars: [1, -2, 3, 0, 5, -7]))
    assertClose(shifted.scalars, z, atol: 1e-5, rtol: 1e-5, "shift and scale")
    // A constant row gives zeros and a finite gradient.
    let constant = Tensor(shape: [1, 4], scalars: [2, 2, 2, 2], requiresGrad: true)
    let out = standardizedLogits(constant)
    #expect(out.scalars == [0, 0, 0, 0])
    (out * Tensor(shape: [1, 4], scalars: [1, -1, 2, 0.5])).sum().backward()
    #expect(constant.grad?.isFinite == true)
}

/// Zhao et al.'s decomposition, per sample: KD = TCKD + (1 − p_t^gt) · NCKD, i.e. DKD with
/// α = 1, β = 1 − p_t^gt equals KD (checked on each row as a batch of one).
@Test func dkdDecomposesKD() {
    let temperature: Float = 4
    let c = logitShape[1]
    for row in 0..<logitShape[0] {
        let s = Tensor(shape: [1, c], scalars: Array(G.student[(row * c)..<((row + 1) * c)]))
        let t = Tensor(shape: [1, c], scalars: Array(G.teacher[(row * c)..<((row + 1) * c)]))
        let label = G.labels[row]
        let pGT = t.scaled(1 / temperature).softmax(axis: 1).scalars[label]
        let kd = kdLoss(student: s, teacher: t, temperature: temperature).item()
        let dkd = dkdLoss(student: s, teacher: t, labels: [label], alpha: 1, beta: 1 - pGT, temperature: temperature).item()
        expectScalar(dkd, kd, rtol: 1e-4, "row \(row)")
    }
}

@Test func dkdOfIdenticalLogitsIsZero() {
    let v = dkdLoss(student: student(), teacher: student(grad: false), labels: G.labels)
    #expect(Swift.abs(v.item()) < 1e-5)
}

/// Not exactly 0 even in PyTorch: the `+ 1e-8` in the reference's Pearson denominator weighs
/// ~1e-6 against the centred probabilities' norms, times T²·(β + γ).
// dist(s, s, 1, 1, 1) and dist(s, s, 2, 2, 4) with DIST_KD's functions, in float64
@Test func distOfIdenticalLogitsIsTheReferenceResidual() {
    let plain = distLoss(student: student(), teacher: student(grad: false))
    assertClose([plain.item()], [G.distIdentical], atol: 5e-7, rtol: 0, "dist(s, s) T=1")
    let hot = distLoss(student: student(), teacher: student(grad: false), beta: 2, gamma: 2, temperature: 4)
    assertClose([hot.item()], [G.distIdenticalT4], atol: 64 * 5e-7, rtol: 0, "dist(s, s) T=4")
}

/// AT, SP, RKD and PKT compare normalised structure, so a scaled copy of the student as teacher
/// gives (nearly) zero loss; FitNets and MSE do not, and vanish only for equal inputs.
@Test func structureLossesIgnoreScale() {
    let f = tensor(G.featureStudent, featureStudentShape)
    let e = tensor(G.embeddingStudent, embeddingStudentShape)
    #expect(attentionTransferLoss(student: f, teacher: f.scaled(3)).item() < 1e-10)
    #expect(similarityPreservingLoss(student: f, teacher: f.scaled(3)).item() < 1e-10)
    #expect(rkdLoss(student: e, teacher: e.scaled(3)).item() < 1e-8)
    #expect(Swift.abs(pktLoss(student: e, teacher: e.scaled(3)).item()) < 1e-6)
    #expect(fitnetsLoss(student: f, teacher: f.copy()).item() == 0)
    #expect(fitnetsLoss(student: f, teacher: f.scaled(3)).item() > 0)
}

@Test func rkdHasFiniteGradientsWithRepeatedEmbeddings() {
    // Two identical rows: their distance sits at the pdist clamp, and their difference vector is zero.
    var values = G.embeddingStudent
    for j in 0..<5 { values[5 + j] = values[j] }
    let e = tensor(values, embeddingStudentShape, grad: true)
    let v = rkdLoss(student: e, teacher: tensor(G.embeddingTeacher, embeddingTeacherShape))
    #expect(v.item().isFinite)
    v.backward()
    #expect(e.grad?.isFinite == true)
}

@Test func smoothL1IsQuadraticInsideAndLinearOutside() {
    let a = Tensor([0, 0.5, -0.5, 2, -3])
    let b = Tensor.zeros([5])
    // (0 + 0.125 + 0.125 + 1.5 + 2.5) / 5
    expectScalar(smoothL1Loss(a, b).item(), 4.25 / 5, "smooth L1")
    expectScalar(mseLoss(a, b).item(), (0.25 + 0.25 + 4 + 9) / 5, "mse")
}
