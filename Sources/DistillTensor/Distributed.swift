import CMPILoader
import Foundation

/// What a group of processes (ranks) that train one model together can do: sum values over all
/// ranks in place, copy bytes from one rank to the others, wait for each other.
///
/// Three kinds: `SingleProcess` (the usual run: everything is a no-op), `MPICommunicator` (Open
/// MPI, loaded only under `mpirun`), and `InProcessGroup` (threads of one process standing for
/// ranks, for tests). Every rank must make the same calls in the same order with the same sizes.
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws
    func barrier() throws
}

/// The ranks of a data-parallel run and the few collective operations training needs.
///
/// `Distributed.world` is this process's group: one rank (size 1) unless the process was started
/// by `mpirun`, in which case Open MPI is loaded and started on first use (see
/// `Sources/CMPILoader/mpi_loader.h`). Data parallelism in `Trainer`: every rank holds the same
/// model, takes its contiguous `share` of each global batch, and `allreduceMean` makes every
/// rank's gradients the global batch's mean gradient before the (identical) optimizer steps.
///
/// ```swift
/// let world = try Distributed.world
/// let mine = world.share(of: batch.count)        // rows lo..<hi of the global batch
/// // ... forward and backward on those rows (a mean over them) ...
/// try world.allreduceMean(gradients, weight: Float(mine.count) / Float(batch.count))
/// ```
public final class Distributed: @unchecked Sendable {
    public let communicator: any Communicator
    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    /// Rank 0: the one that writes files and prints.
    public var isMain: Bool { rank == 0 }
    public var isDistributed: Bool { size > 1 }

    /// Time spent in `allreduceMean` and the bytes each rank handed to it, since the start.
    public private(set) var reduceSeconds = 0.0
    public private(set) var bytesReduced = 0
    public private(set) var reductions = 0
    /// The flat buffer gradients are reduced in (kept between steps).
    private var buffer: [Float] = []

    public init(_ communicator: any Communicator) { self.communicator = communicator }

    /// This process's group: `mpirun`'s world when started by it, else a single rank. Throws when
    /// started by `mpirun` and Open MPI cannot be loaded or started (the message names the packages).
    public static var world: Distributed {
        get throws {
            switch started {
            case .success(let world): return world
            case .failure(let error): throw error
            }
        }
    }

    private static let started: Result<Distributed, TensorError> = {
        var message = [CChar](repeating: 0, count: 1024)
        switch dk_mpi_init(&message, Int32(message.count)) {
        case 1: return .success(Distributed(MPICommunicator()))
        case 0: return .success(Distributed(SingleProcess()))
        default: return .failure(TensorError(String(cString: message)))
        }
    }()

    /// "Open MPI v4.1.4, ..." under mpirun, else nil.
    public static var libraryVersion: String? {
        let text = String(cString: dk_mpi_library_version())
        return text.isEmpty ? nil : text
    }

    // MARK: Sharding

    /// This rank's contiguous rows of `rows`: rank r of n takes rows `rows·r/n ..< rows·(r+1)/n`,
    /// so shares differ by at most one row and, in rank order, cover every row once.
    public func share(of rows: Int) -> Range<Int> { Self.share(of: rows, rank: rank, size: size) }

    public static func share(of rows: Int, rank: Int, size: Int) -> Range<Int> {
        (rows * rank / size)..<(rows * (rank + 1) / size)
    }

    // MARK: Collectives

    /// Replaces each tensor, on every rank, with Σ over ranks of `weight_rank · tensor_rank`, all
    /// tensors flattened into one buffer for one `MPI_Allreduce`. With `weight` = this rank's rows
    /// / the global batch's rows and each rank's gradients a mean over its own rows, the result is
    /// the mean over the global batch whatever the shares; the default, 1 / size, is the plain
    /// mean. `scalars` travel in the same buffer, summed without weighting, and are returned.
    @discardableResult
    public func allreduceMean(_ tensors: [Tensor], weight: Float? = nil, scalars: [Float] = []) throws -> [Float] {
        guard isDistributed else { return scalars }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let w = weight ?? 1 / Float(size)
        let total = tensors.reduce(0) { $0 + $1.count } + scalars.count
        if buffer.count != total { buffer = [Float](repeating: 0, count: total) }
        var result: [Float] = []
        try buffer.withUnsafeMutableBufferPointer { flat in
            var offset = 0
            for t in tensors {
                let p = t.data
                for i in 0..<t.count { flat[offset + i] = p[i] * w }
                offset += t.count
            }
            for (i, s) in scalars.enumerated() { flat[offset + i] = s }
            try communicator.allreduceSum(flat)
            offset = 0
            for t in tensors {
                t.data.update(from: flat.baseAddress! + offset, count: t.count)
                offset += t.count
            }
            result = Array(flat[offset..<total])
        }
        reduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        bytesReduced += total * MemoryLayout<Float>.size
        reductions += 1
        return result
    }

    /// Sums `values` over every rank, in place.
    public func allreduceSum(_ values: inout [Double]) throws {
        guard isDistributed else { return }
        try values.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
    }

    /// Averages each tensor over the ranks in place (batch-norm running statistics).
    public func average(_ tensors: [Tensor]) throws {
        guard isDistributed, !tensors.isEmpty else { return }
        var flat: [Double] = []
        for t in tensors { for i in 0..<t.count { flat.append(Double(t.data[i])) } }
        try allreduceSum(&flat)
        var offset = 0
        for t in tensors {
            for i in 0..<t.count { t.data[i] = Float(flat[offset + i] / Double(size)) }
            offset += t.count
        }
    }

    /// `data` as rank `root` has it, on every rank (its length first, then its bytes).
    public func broadcast(_ data: inout Data, root: Int = 0) throws {
        guard isDistributed else { return }
        var length = UInt64(data.count)
        try withUnsafeMutableBytes(of: &length) { try communicator.broadcast($0, root: root) }
        if rank != root { data = Data(count: Int(length)) }
        guard length > 0 else { return }
        try data.withUnsafeMutableBytes { try communicator.broadcast($0, root: root) }
    }

    public func barrier() throws { if isDistributed { try communicator.barrier() } }

    /// Stops with an error on every rank when a rank's `configuration` (the resolved settings, as
    /// text) differs from rank 0's: a hash broadcast from rank 0, then a sum of who differs.
    /// Ranks started with different arguments would otherwise train different things in lockstep,
    /// or wait for each other forever.
    public func requireSameConfiguration(_ configuration: String) throws {
        guard isDistributed else { return }
        var hash = Self.fnv1a(configuration)
        let mine = hash
        try withUnsafeMutableBytes(of: &hash) { try communicator.broadcast($0, root: 0) }
        var differs = [Double](repeating: 0, count: size)
        differs[rank] = hash == mine ? 0 : 1
        try allreduceSum(&differs)
        let ranks = differs.indices.filter { differs[$0] != 0 }
        guard ranks.isEmpty else {
            throw TensorError("rank\(ranks.count > 1 ? "s" : "") \(ranks.map(String.init).joined(separator: ", ")) of \(size) started with a different configuration from rank 0 (settings hash \(String(format: "%016llx", hash)) on rank 0\(rank == 0 ? "" : ", \(String(format: "%016llx", mine)) here")); every rank must get the same command line and the same data")
        }
    }

    /// 64-bit FNV-1a of the text's UTF-8 bytes.
    public static func fnv1a(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

/// One process: every collective is a no-op.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {}
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func barrier() throws {}
}

/// `MPI_COMM_WORLD` of Open MPI, through the dlopen shim (Sources/CMPILoader).
final class MPICommunicator: Communicator {
    let rank = Int(dk_mpi_rank()), size = Int(dk_mpi_size())

    private func check(_ body: (UnsafeMutablePointer<CChar>, Int32) -> Int32) throws {
        var message = [CChar](repeating: 0, count: 1024)
        let rc = message.withUnsafeMutableBufferPointer { body($0.baseAddress!, Int32($0.count)) }
        if rc != 0 { throw TensorError(String(cString: message)) }
    }

    func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        try check { dk_mpi_allreduce_sum_float(values.baseAddress, values.count, $0, $1) }
    }
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        try check { dk_mpi_allreduce_sum_double(values.baseAddress, values.count, $0, $1) }
    }
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        try check { dk_mpi_broadcast(bytes.baseAddress, bytes.count, Int32(root), $0, $1) }
    }
    func barrier() throws { try check { dk_mpi_barrier($0, $1) } }
}

/// Ranks as threads of one process, for tests: `InProcessGroup.worlds(size: 2)` gives one
/// `Distributed` per rank; run each on its own thread. Sums are taken in rank order, so every
/// rank gets bit-identical results (as with MPI).
public final class InProcessGroup: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var deposits: [[UInt8]]
    private var result: [UInt8] = []

    init(size: Int) { self.size = size; deposits = Array(repeating: [], count: size) }

    public static func worlds(size: Int) -> [Distributed] {
        let group = InProcessGroup(size: size)
        return (0..<size).map { Distributed(Member(group: group, rank: $0)) }
    }

    /// Each rank hands its bytes in; the last to arrive combines them; all take the result.
    func exchange(rank: Int, _ bytes: UnsafeMutableRawBufferPointer, combine: ([[UInt8]]) -> [UInt8]) {
        condition.lock()
        defer { condition.unlock() }
        let myGeneration = generation
        deposits[rank] = Array(bytes)
        arrived += 1
        if arrived == size {
            result = combine(deposits)
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == myGeneration { condition.wait() }
        }
        result.withUnsafeBytes { bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<bytes.count])) }
    }

    final class Member: Communicator, @unchecked Sendable {
        let group: InProcessGroup, rank: Int
        var size: Int { group.size }
        init(group: InProcessGroup, rank: Int) { self.group = group; self.rank = rank }

        private func sum<T: BinaryFloatingPoint>(_ values: UnsafeMutableBufferPointer<T>) {
            group.exchange(rank: rank, UnsafeMutableRawBufferPointer(values)) { all in
                var total = [T](repeating: 0, count: values.count)
                for d in all { d.withUnsafeBytes { raw in for (i, v) in raw.bindMemory(to: T.self).enumerated() { total[i] += v } } }
                return total.withUnsafeBytes { Array($0) }
            }
        }
        func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws { sum(values) }
        func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws { sum(values) }
        func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
            group.exchange(rank: rank, bytes) { $0[root] }
        }
        func barrier() throws {
            group.exchange(rank: rank, UnsafeMutableRawBufferPointer(start: nil, count: 0)) { _ in [] }
        }
    }
}
