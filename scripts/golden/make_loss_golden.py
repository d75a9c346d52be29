#!/usr/bin/env python3
"""Golden values for DistillKit's distillation losses, computed by PyTorch.

Run from the repository root with the reference environment (torch 2.13 CPU, numpy):

    /root/.venvs/torchref/bin/python scripts/golden/make_loss_golden.py

It rewrites Tests/DistillTrainingTests/LossGoldenValues.swift: the float32 inputs (numpy
RandomState with fixed seeds, so every run writes the same file) and the expected losses and
gradients as Swift array literals. The test target declares no resources, so the numbers live in
Swift source. Expected values are computed in float64 from the float32 inputs, so they are the
exact answers the Float32 Swift code is compared against.

Each reference function below re-implements the loss the way the reference code does
(RepDistiller distiller_zoo/, mdistiller DKD.py, DIST_KD's DIST, logit-standardization-KD);
LossTests.swift quotes the relevant one above each test.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "Tests", "DistillTrainingTests", "LossGoldenValues.swift"))


# ---------------------------------------------------------------------------------------------
# Reference implementations (float64 in, float64 out).

def kd_loss(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T ** 2


def soft_target_loss(s, p, T):
    # kl_div uses xlogy(p, p), so 0 * log 0 = 0.
    return F.kl_div(F.log_softmax(s / T, dim=1), p, reduction="batchmean") * T ** 2


def averaged_teacher_probabilities(ts, weights, T):
    w = torch.tensor(weights, dtype=torch.float64)
    w = w / w.sum()
    return sum(wi * F.softmax(t / T, dim=1) for wi, t in zip(w, ts))


def standardize(z, eps=1e-7):
    # logit-standardization-KD, utils `normalize`: torch.std is unbiased by default.
    mean = z.mean(dim=-1, keepdim=True)
    stdv = z.std(dim=-1, keepdim=True)
    return (z - mean) / (eps + stdv)


def dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature):
    # mdistiller/distillers/DKD.py, dkd_loss with _get_gt_mask, _get_other_mask, cat_mask.
    gt_mask = torch.zeros_like(logits_student).scatter_(1, target.unsqueeze(1), 1).bool()
    other_mask = torch.ones_like(logits_student).scatter_(1, target.unsqueeze(1), 0).bool()

    def cat_mask(t, mask1, mask2):
        return torch.cat([(t * mask1).sum(dim=1, keepdims=True), (t * mask2).sum(1, keepdims=True)], dim=1)

    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    pred_student = cat_mask(pred_student, gt_mask, other_mask)
    pred_teacher = cat_mask(pred_teacher, gt_mask, other_mask)
    log_pred_student = torch.log(pred_student)
    tckd_loss = F.kl_div(log_pred_student, pred_teacher, reduction="sum") * (temperature ** 2) / target.shape[0]
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd_loss = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * (temperature ** 2) / target.shape[0]
    return alpha * tckd_loss + beta * nckd_loss


def dist_loss(z_s, z_t, beta, gamma, tau):
    # DIST_KD, losses/dist_kd.py.
    def cosine_similarity(a, b, eps=1e-8):
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    def pearson_correlation(a, b, eps=1e-8):
        return cosine_similarity(a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1), eps)

    def inter_class_relation(y_s, y_t):
        return 1 - pearson_correlation(y_s, y_t).mean()

    def intra_class_relation(y_s, y_t):
        return inter_class_relation(y_s.transpose(0, 1), y_t.transpose(0, 1))

    y_s = (z_s / tau).softmax(dim=1)
    y_t = (z_t / tau).softmax(dim=1)
    inter_loss = tau ** 2 * inter_class_relation(y_s, y_t)
    intra_loss = tau ** 2 * intra_class_relation(y_s, y_t)
    return beta * inter_loss + gamma * intra_loss


def fitnets_loss(f_s, f_t):
    return F.mse_loss(f_s, f_t)  # RepDistiller HintLoss: nn.MSELoss()


def at_loss(f_s, f_t, p=2):
    # RepDistiller Attention.at_loss (equal spatial sizes); |f| for odd p, as the paper writes.
    def at(f):
        return F.normalize(f.abs().pow(p).mean(1).view(f.size(0), -1))
    return (at(f_s) - at(f_t)).pow(2).mean()


def sp_loss(f_s, f_t):
    # RepDistiller Similarity.similarity_loss.
    bsz = f_s.shape[0]
    f_s = f_s.view(bsz, -1)
    f_t = f_t.view(bsz, -1)
    G_s = F.normalize(torch.mm(f_s, torch.t(f_s)))
    G_t = F.normalize(torch.mm(f_t, torch.t(f_t)))
    G_diff = G_t - G_s
    return (G_diff * G_diff).view(-1, 1).sum(0)[0] / (bsz * bsz)


def rkd_pdist(e, squared=False, eps=1e-12):
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps)
    if not squared:
        res = res.sqrt()
    res = res.clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def rkd_loss(f_s, f_t, w_d=25, w_a=50):
    # RepDistiller RKDLoss.forward.
    student = f_s.view(f_s.shape[0], -1)
    teacher = f_t.view(f_t.shape[0], -1)
    with torch.no_grad():
        t_d = rkd_pdist(teacher, squared=False)
        mean_td = t_d[t_d > 0].mean()
        t_d = t_d / mean_td
    d = rkd_pdist(student, squared=False)
    mean_d = d[d > 0].mean()
    d = d / mean_d
    loss_d = F.smooth_l1_loss(d, t_d)
    with torch.no_grad():
        td = teacher.unsqueeze(0) - teacher.unsqueeze(1)
        norm_td = F.normalize(td, p=2, dim=2)
        t_angle = torch.bmm(norm_td, norm_td.transpose(1, 2)).view(-1)
    sd = student.unsqueeze(0) - student.unsqueeze(1)
    norm_sd = F.normalize(sd, p=2, dim=2)
    s_angle = torch.bmm(norm_sd, norm_sd.transpose(1, 2)).view(-1)
    loss_a = F.smooth_l1_loss(s_angle, t_angle)
    return w_d * loss_d + w_a * loss_a


def pkt_loss(output_net, target_net, eps=0.0000001):
    # RepDistiller PKT.cosine_similarity_loss.
    output_net_norm = torch.sqrt(torch.sum(output_net ** 2, dim=1, keepdim=True))
    output_net = output_net / (output_net_norm + eps)
    target_net_norm = torch.sqrt(torch.sum(target_net ** 2, dim=1, keepdim=True))
    target_net = target_net / (target_net_norm + eps)
    model_similarity = torch.mm(output_net, output_net.transpose(0, 1))
    target_similarity = torch.mm(target_net, target_net.transpose(0, 1))
    model_similarity = (model_similarity + 1.0) / 2.0
    target_similarity = (target_similarity + 1.0) / 2.0
    model_similarity = model_similarity / torch.sum(model_similarity, dim=1, keepdim=True)
    target_similarity = target_similarity / torch.sum(target_similarity, dim=1, keepdim=True)
    return torch.mean(target_similarity * torch.log((target_similarity + eps) / (model_similarity + eps)))


def regression_distillation_loss(s, t, y, w):
    return w * F.mse_loss(s, t) + (1 - w) * F.mse_loss(s, y)


# ---------------------------------------------------------------------------------------------
# Inputs and outputs.

def randn(seed, *shape, scale=1.0):
    return (np.random.RandomState(seed).standard_normal(shape) * scale).astype(np.float32)


def f64(a, grad=False):
    return torch.tensor(a.astype(np.float64), dtype=torch.float64, requires_grad=grad)


def loss_and_grad(fn, x32, *rest):
    x = f64(x32, grad=True)
    loss = fn(x, *rest)
    loss.backward()
    return loss.item(), x.grad.numpy()


def swift_floats(values):
    flat = np.asarray(values, dtype=np.float64).ravel()
    parts = ["%.9g" % v for v in flat]
    lines, line = [], ""
    for p in parts:
        if len(line) + len(p) + 2 > 100:
            lines.append(line.rstrip())
            line = ""
        line += p + ", "
    lines.append(line.rstrip().rstrip(","))
    return "[\n" + "\n".join("        " + l for l in lines) + ",\n    ]"


def main():
    consts = []  # (name, comment, swift type, literal)

    def floats(name, values, comment=""):
        shape = list(np.asarray(values).shape)
        consts.append((name, (comment + " " if comment else "") + f"shape {shape}", "[Float]", swift_floats(values)))

    def scalar(name, value, comment=""):
        consts.append((name, comment, "Float", "%.9g" % value))

    def ints(name, values, comment=""):
        consts.append((name, comment, "[Int]", "[" + ", ".join(str(int(v)) for v in values) + "]"))

    # Logits: N = 6 samples, C = 7 classes.
    N, C = 6, 7
    s32 = randn(101, N, C, scale=2.0)
    t32 = randn(102, N, C, scale=2.0)
    t2_32 = randn(103, N, C, scale=2.0)
    labels = np.random.RandomState(104).randint(0, C, size=N)
    floats("student", s32, "student logits")
    floats("teacher", t32, "teacher logits")
    floats("teacher2", t2_32, "a second teacher's logits")
    ints("labels", labels, "class indices")
    s, t, t2 = f64(s32), f64(t32), f64(t2_32)
    lab = torch.tensor(labels, dtype=torch.long)

    for T in (1.0, 4.0):
        v, g = loss_and_grad(lambda x: kd_loss(x, t, T), s32)
        tag = "T%d" % T
        scalar("kd" + tag, v, f"kd_loss(student, teacher, T={T:g})")
        floats("kd" + tag + "Grad", g, "d kd / d student")

    # Soft targets: weighted two-teacher average at T = 2, and a target with exact zeros.
    avg = averaged_teacher_probabilities([t, t2], [1.0, 3.0], 2.0)
    floats("averagedProbabilities", avg.numpy(), "averaged_teacher_probabilities([teacher, teacher2], [1, 3], T=2)")
    scalar("softTargetAveraged", soft_target_loss(s, avg, 2.0).item(), "soft_target_loss(student, averaged, T=2)")
    sparse = np.abs(randn(105, N, C))
    sparse[sparse < 0.6] = 0.0
    sparse[:, 0] += 0.1  # no empty row
    sparse = (sparse / sparse.sum(axis=1, keepdims=True)).astype(np.float32)
    floats("sparseTarget", sparse, "probabilities with exact zeros")
    v, g = loss_and_grad(lambda x: soft_target_loss(x, f64(sparse), 3.0), s32)
    scalar("softTargetSparse", v, "soft_target_loss(student, sparseTarget, T=3)")
    floats("softTargetSparseGrad", g)

    # Logit standardisation.
    floats("standardizedStudent", standardize(s).numpy(), "standardize(student)")
    scalar("kdStandardizedT2", kd_loss(standardize(s), standardize(t), 2.0).item(),
           "kd_loss(standardize(student), standardize(teacher), T=2)")

    # DKD.
    v, g = loss_and_grad(lambda x: dkd_loss(x, t, lab, 1.0, 8.0, 4.0), s32)
    scalar("dkdDefault", v, "dkd_loss(student, teacher, labels, alpha=1, beta=8, T=4)")
    floats("dkdDefaultGrad", g, "d dkd / d student")
    scalar("dkdCustom", dkd_loss(s, t, lab, 0.5, 2.0, 2.0).item(), "dkd_loss(..., alpha=0.5, beta=2, T=2)")

    # DIST.
    scalar("distDefault", dist_loss(s, t, 1.0, 1.0, 1.0).item(), "dist(student, teacher, beta=1, gamma=1, tau=1)")
    scalar("distCustom", dist_loss(s, t, 2.0, 3.0, 4.0).item(), "dist(..., beta=2, gamma=3, tau=4)")
    # Not 0: the + 1e-8 in the Pearson denominator leaves a residual.
    scalar("distIdentical", dist_loss(s, s, 1.0, 1.0, 1.0).item(), "dist(student, student, beta=1, gamma=1, tau=1)")
    scalar("distIdenticalT4", dist_loss(s, s, 2.0, 2.0, 4.0).item(), "dist(student, student, beta=2, gamma=2, tau=4)")

    # Feature maps: [4, 3, 4, 4] student, [4, 5, 4, 4] teacher; an adapted student [4, 5, 4, 4].
    fs32 = randn(201, 4, 3, 4, 4)
    ft32 = randn(202, 4, 5, 4, 4)
    fa32 = randn(203, 4, 5, 4, 4)
    floats("featureStudent", fs32)
    floats("featureTeacher", ft32)
    floats("featureAdapted", fa32, "adapted student feature")
    fs, ft, fa = f64(fs32), f64(ft32), f64(fa32)
    scalar("fitnets", fitnets_loss(fa, ft).item(), "fitnets_loss(featureAdapted, featureTeacher)")
    scalar("atP2", at_loss(fs, ft, 2).item(), "at_loss(featureStudent, featureTeacher, p=2)")
    scalar("atP3", at_loss(fs, ft, 3).item(), "at_loss(featureStudent, featureTeacher, p=3), with |f|")
    scalar("sp", sp_loss(fs, ft).item(), "sp_loss(featureStudent, featureTeacher)")

    # Embeddings: [6, 5] student, [6, 8] teacher.
    es32 = randn(301, 6, 5)
    et32 = randn(302, 6, 8)
    floats("embeddingStudent", es32)
    floats("embeddingTeacher", et32)
    es, et = f64(es32), f64(et32)
    v, g = loss_and_grad(lambda x: rkd_loss(x, et), es32)
    scalar("rkdDefault", v, "rkd_loss(embeddingStudent, embeddingTeacher, w_d=25, w_a=50)")
    floats("rkdDefaultGrad", g)
    scalar("rkdDistanceOnly", rkd_loss(es, et, 1, 0).item(), "rkd_loss(..., w_d=1, w_a=0)")
    scalar("rkdAngleOnly", rkd_loss(es, et, 0, 1).item(), "rkd_loss(..., w_d=0, w_a=1)")
    scalar("rkdFeatureMaps", rkd_loss(fs, ft).item(), "rkd_loss(featureStudent, featureTeacher) (flattened)")
    v, g = loss_and_grad(lambda x: pkt_loss(x, et), es32)
    scalar("pkt", v, "pkt_loss(embeddingStudent, embeddingTeacher)")
    floats("pktGrad", g)

    # Plain regression losses.
    a32 = randn(401, 5, 3, scale=1.5)
    b32 = randn(402, 5, 3, scale=1.5)
    y32 = randn(403, 5, 3, scale=1.5)
    floats("regressionA", a32)
    floats("regressionB", b32)
    floats("regressionTarget", y32)
    a, b, y = f64(a32), f64(b32), f64(y32)
    scalar("mse", F.mse_loss(a, b).item(), "F.mse_loss(regressionA, regressionB)")
    v, g = loss_and_grad(lambda x: F.smooth_l1_loss(x, b), a32)
    scalar("smoothL1", v, "F.smooth_l1_loss(regressionA, regressionB)")
    floats("smoothL1Grad", g)
    scalar("regressionDistillation", regression_distillation_loss(a, b, y, 0.7).item(),
           "0.7 * mse(A, B) + 0.3 * mse(A, target)")

    out = [
        "// Generated by scripts/golden/make_loss_golden.py — do not edit by hand. Regenerate with:",
        "//     /root/.venvs/torchref/bin/python scripts/golden/make_loss_golden.py",
        "// Inputs are float32 (numpy RandomState, fixed seeds); expected values are PyTorch "
        + torch.__version__.split("+")[0] + " in float64",
        "// from those inputs, printed with 9 significant digits. The reference functions are in the script.",
        "",
        "enum LossGolden {",
    ]
    for name, comment, typ, literal in consts:
        if comment:
            out.append(f"    /// {comment}")
        out.append(f"    static let {name}: {typ} = {literal}")
    out.append("}")
    with open(OUT, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{os.path.relpath(OUT)}: {len(consts)} constants, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
