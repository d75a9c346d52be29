import DistillTestSupport
import Foundation
import Testing

/// `DISTILL_MAX_CPU_ISA` caps the instruction sets of DistillKit's own kernels, OpenBLAS and
/// oneDNN together (an AVX-512 machine then runs what an AVX2-only one would), and a value it
/// does not know is a clear error, not a silently uncapped run.
@Suite("DISTILL_MAX_CPU_ISA", .enabled(if: distillBinary != nil, "needs the distill binary (swift build)"))
struct CPULimitTests {
    /// The JSON report of `distill bench infer` on cnn-tiny for one call (what runs DistillKit's
    /// kernels and OpenBLAS) or, with `training`, of `distill bench train` for one step (which
    /// also names oneDNN's implementation), with `environment`.
    static func report(_ environment: [String: String], training: Bool = false) throws -> [String: Any] {
        let arguments = training ? ["bench", "train", "--model", "cnn-tiny", "--batch", "16", "--steps", "1", "--repeats", "1", "--json"]
                                 : ["bench", "infer", "--model", "cnn-tiny", "--calls", "1", "--json"]
        let result = try runDistill(arguments, environment: environment)
        #expect(result.status == 0, "\(result.error)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
    }

    @Test func avx2CapsEveryKernelFamily() throws {
        // The uncapped run says what this CPU has; the cap can only lower it. OPENBLAS_CORETYPE
        // and ONEDNN_MAX_CPU_ISA are cleared: this test process may have set them for itself.
        let native = try Self.report(["DISTILL_MAX_CPU_ISA": "", "OPENBLAS_CORETYPE": "", "ONEDNN_MAX_CPU_ISA": ""])
        let nativeKernels = try #require(native["kernels"] as? String)
        #expect(["avx512", "avx2", "scalar"].contains(nativeKernels), "\(nativeKernels)")
        let capped = try Self.report(["DISTILL_MAX_CPU_ISA": "avx2", "OPENBLAS_CORETYPE": "", "ONEDNN_MAX_CPU_ISA": ""], training: true)
        let kernels = try #require(capped["kernels"] as? String)
        let blas = try #require(capped["blas"] as? String)
        let convolution = try #require(capped["convolution"] as? String)
        if nativeKernels == "scalar" {
            #expect(kernels.hasPrefix("scalar"), "\(kernels)")
            return
        }
        #expect(kernels == "avx2 (DISTILL_MAX_CPU_ISA=avx2)")
        #expect(blas.hasPrefix("Haswell"), "OpenBLAS must run its AVX2 kernels: \(blas)")
        if nativeKernels == "avx512" {
            #expect(blas.contains("DISTILL_MAX_CPU_ISA=avx2"), "\(blas)")
            #expect((native["blas"] as? String)?.hasPrefix("SkylakeX") == true)
        }
        if convolution.hasPrefix("oneDNN") {
            #expect(convolution.contains("avx2") && !convolution.contains("avx512"), "oneDNN must run its AVX2 code: \(convolution)")
        }
        let scalar = try Self.report(["DISTILL_MAX_CPU_ISA": "scalar", "OPENBLAS_CORETYPE": "", "ONEDNN_MAX_CPU_ISA": ""])
        #expect(scalar["kernels"] as? String == "scalar (DISTILL_MAX_CPU_ISA=scalar)")
        #expect((scalar["blas"] as? String)?.hasPrefix("Prescott") == true, "\(scalar["blas"] ?? "")")
    }

    @Test func anUnknownValueIsAClearError() throws {
        let result = try runDistill(["bench", "infer", "--calls", "1"], environment: ["DISTILL_MAX_CPU_ISA": "avx1024"])
        #expect(result.status == 1)
        #expect(result.error.contains("DISTILL_MAX_CPU_ISA=avx1024") && result.error.contains("avx512, avx2 or scalar"), "\(result.error)")
    }
}
