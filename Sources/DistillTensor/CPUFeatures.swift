import CKernels
import Foundation

/// The instruction sets DistillKit's kernels use: the CPU's widest, unless the environment
/// variable `DISTILL_MAX_CPU_ISA` caps them at `avx2` or `scalar` (`avx512`, the default, is no
/// cap). The cap also reaches OpenBLAS and oneDNN when they load (through `OPENBLAS_CORETYPE` and
/// `ONEDNN_MAX_CPU_ISA`, unless those are set), so that an AVX-512 machine runs what an AVX2-only
/// one would: to measure it, or to reproduce its results. Read once per process.
public enum CPUFeatures {
    /// The environment variable that caps the instruction sets.
    public static let limitVariable = "DISTILL_MAX_CPU_ISA"

    /// Throws, naming the variable and its valid values, when `DISTILL_MAX_CPU_ISA` holds anything
    /// else than `avx512`, `avx2` or `scalar` (the kernels would otherwise run uncapped silently).
    public static func checkEnvironment() throws {
        guard dk_cpu_isa_limit() < 0 else { return }
        let value = ProcessInfo.processInfo.environment[limitVariable] ?? ""
        throw TensorError("\(limitVariable)=\(value): expected avx512, avx2 or scalar (the widest instruction set DistillKit's kernels may use)")
    }

    /// The level DistillKit's own kernels run at here: "avx512", "avx2" or "scalar", followed by
    /// the cap when one is set, e.g. "avx2 (DISTILL_MAX_CPU_ISA=avx2)".
    public static var kernelDescription: String {
        let level = ["scalar", "avx2", "avx512"][Int(dk_cpu_kernel_level())]
        let limit = Int(dk_cpu_isa_limit())
        return (0...1).contains(limit) ? "\(level) (\(limitVariable)=\(["scalar", "avx2"][limit]))" : level
    }
}
