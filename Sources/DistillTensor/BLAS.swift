import CBLASLoader
import Foundation
import Synchronization

/// Matrix products through OpenBLAS, with kernels chosen for this CPU.
///
/// OpenBLAS is loaded on first use (not linked) so that DistillKit can check the CPU's features
/// first and set `OPENBLAS_CORETYPE` to a kernel family the CPU supports (see
/// `Sources/CBLASLoader/blas_loader.c`); a value the user set is left alone.
public enum BLAS {
    private static let loaded: Result<Void, TensorError> = {
        var message = [CChar](repeating: 0, count: 512)
        if dk_blas_load(&message, Int32(message.count)) == 0 {
            // DistillKit splits work across cores itself (see `sgemm`), so OpenBLAS runs each
            // call on the calling thread: the two never compete for the same cores.
            dk_blas_set_threads(1)
            return .success(())
        }
        return .failure(TensorError(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
    }()

    /// Loads OpenBLAS if needed; throws with install advice when it is missing.
    public static func ensureLoaded() throws { try loaded.get() }

    private static func load() {
        if case .failure(let e) = loaded { fatalError(e.message) }
    }

    /// The kernel family in use and how it was chosen, e.g. "SkylakeX (OPENBLAS_CORETYPE=SkylakeX chosen ...)".
    public static var kernelDescription: String {
        load()
        return "\(String(cString: dk_blas_corename())) (\(String(cString: dk_blas_coretype_choice())))"
    }

    /// The kernel family name alone ("SkylakeX", "Haswell", "Prescott", ...).
    public static var coreName: String { load(); return String(cString: dk_blas_corename()) }

    /// Threads OpenBLAS may use inside one call.
    public static var threads: Int {
        get { load(); return Int(dk_blas_get_threads()) }
        set { load(); dk_blas_set_threads(Int32(newValue)) }
    }

    /// How a large product is split across threads: into blocks of C's rows or of its columns.
    public enum Split {
        /// Along the longer of m and n.
        case automatic
        /// Rows of C (each thread reads all of op(B)).
        case rows
        /// Columns of C (each thread reads all of op(A)).
        case columns
        /// Don't split: for code already running on a worker.
        case none
    }

    /// Row-major `C = alpha · op(A) · op(B) + beta · C` where C is [m, n], op(A) [m, k], op(B) [k, n].
    /// Large products are split into row or column blocks, one per `Parallel.workers` thread,
    /// pinned (see `Parallel.forEachChunk`): `linear` splits along a weight's output features in
    /// both its forward product and its weight gradient, so each core keeps its part of the weight.
    public static func sgemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
                             alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, split: Split = .automatic) {
        load()
        if m == 0 || n == 0 { return }
        if k == 0 {  // BLAS would still scale C by beta; do the same explicitly
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
            return
        }
        let workers = Parallel.workers
        let byRows = split == .rows || (split == .automatic && m >= n)
        guard split != .none && workers > 1 && m * n * k >= minimumSplitWork && (byRows ? m : n) >= 2 * workers else {
            dk_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha,
                     a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
            return
        }
        let A = SharedPointer(UnsafeMutablePointer(mutating: a)), B = SharedPointer(UnsafeMutablePointer(mutating: b))
        let C = SharedPointer(c)
        Parallel.forEachChunk(byRows ? m : n, chunks: workers) { _, r in
            if byRows {  // rows r of C need rows r of op(A)
                let aOff = transposeA ? r.lowerBound : r.lowerBound * lda
                dk_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(r.count), Int32(n), Int32(k), alpha,
                         A.p + aOff, Int32(lda), B.p, Int32(ldb), beta, C.p + r.lowerBound * ldc, Int32(ldc))
            } else {  // columns r of C need columns r of op(B)
                let bOff = transposeB ? r.lowerBound * ldb : r.lowerBound
                dk_sgemm(transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(r.count), Int32(k), alpha,
                         A.p, Int32(lda), B.p + bOff, Int32(ldb), beta, C.p + r.lowerBound, Int32(ldc))
            }
        }
    }

    /// Multiply-adds below which one thread is as fast as two (`distill bench gemm`, `bench kd`,
    /// `bench infer`): the MLP student's 256-row product (12.8M) ran at 91 GFLOP/s on one thread
    /// and 172 on two; its 128-row training step (6.4M per product) gained nothing from splitting.
    static let minimumSplitWork = 1 << 23
}

/// Splits `0..<count` into contiguous chunks run on `Parallel.workers` threads (a `WorkerPool`).
public enum Parallel {
    /// Runs `body(chunkIndex, range)` for exactly `chunks` (or fewer, if `count` is smaller)
    /// contiguous ranges covering `0..<count`, concurrently. With no more chunks than threads,
    /// chunk `c` always runs on the same thread (the caller for chunk 0): code that splits a weight the same
    /// way in its forward pass, its gradient and its optimizer step (`linear`, `Adam`) keeps each
    /// part in one core's cache. Measured on a 2-core VM (BENCHMARKS.md): when the other core had read a
    /// weight, Adam's stores to it ran 5× slower.
    public static func forEachChunk(_ count: Int, chunks: Int, _ body: @Sendable (Int, Range<Int>) -> Void) {
        let chunks = max(1, min(chunks, count))
        if count == 0 { return }
        if chunks == 1 { body(0, 0..<count); return }
        pool.run(chunks) { c in body(c, (count * c / chunks)..<(count * (c + 1) / chunks)) }
    }

    /// Runs `body(thread, items)` over `0..<count` in runs of `group` items, each run taken by
    /// whichever of `threads` threads is free next (`thread` < `threads` picks per-thread
    /// scratch). For independent items (a CNN's images): the two cores of a shared VM do not
    /// always run at the same speed, and with fixed halves the fast one waits for the slow one.
    /// Only for work whose result does not depend on which thread does it.
    public static func forEachShared(_ count: Int, group: Int, threads: Int, _ body: @Sendable (Int, Range<Int>) -> Void) {
        precondition(group >= 1, "Parallel.forEachShared: group \(group)")
        let threads = max(1, min(threads, workers, (count + group - 1) / group))
        if count == 0 { return }
        if threads == 1 { body(0, 0..<count); return }
        let next = SharedCounter()
        pool.run(threads) { t in
            while true {
                let start = next.take(group)
                if start >= count { return }
                body(t, start..<min(start + group, count))
            }
        }
    }

    /// The threads that run chunks besides the caller: `workers - 1` of them (none with
    /// `DISTILL_THREADS=1`: everything then runs on the calling thread), made on first use.
    private static let pool = WorkerPool(workers: workers - 1)

    /// Worker threads for DistillKit's own loops (convolutions, pooling, large GEMMs): the
    /// `DISTILL_THREADS` environment variable when set, else the number of active cores (shared
    /// out among the ranks mpirun started on this host, so that they do not oversubscribe it).
    nonisolated(unsafe) public static var workers: Int = {
        let environment = ProcessInfo.processInfo.environment
        if let text = environment["DISTILL_THREADS"], let n = Int(text), n >= 1 { return min(n, 256) }
        let ranksHere = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init).map { max(1, $0) } ?? 1
        return max(1, ProcessInfo.processInfo.activeProcessorCount / ranksHere)
    }()

    /// Runs `body(range)` on disjoint chunks covering `0..<count`. Runs inline when the work is
    /// small (`count * costPerItem` under ~64K) or when one worker is configured.
    public static func forChunks(_ count: Int, costPerItem: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
        let chunks = min(workers, count)
        if chunks <= 1 || count * costPerItem < 65_536 {
            if count > 0 { body(0..<count) }
            return
        }
        pool.run(chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }
}

/// An error caused by input the user gave (a shape, a file, a spec): thrown, never a crash.
public struct TensorError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A counter threads take runs of work from (`Parallel.forEachShared`).
private final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)
    /// The counter's value before adding `n`.
    func take(_ n: Int) -> Int { value.wrappingAdd(n, ordering: .relaxed).oldValue }
}
