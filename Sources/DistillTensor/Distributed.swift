import CMPILoader
import Foundation

/// What a group of processes (ranks) that train one model together can do: sum values over all
/// ranks in place, copy bytes from one rank to the others, wait for each other, and pass messages
/// from one rank to another (a sweep's work queue, gathering rows on rank 0).
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
    /// Sends `bytes` to rank `destination`, labelled `tag`; messages between two ranks with the
    /// same tag arrive in the order they were sent.
    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws
    /// The sender and length of a message with `tag` from `source` (nil: any rank) that has
    /// arrived and not been received yet, or nil; never waits.
    func probe(from source: Int?, tag: Int) throws -> (source: Int, bytes: Int)?
    /// Receives the message `probe` found (exactly `bytes.count` bytes from `source` with `tag`).
    func receive(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws
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

    /// Floats per allreduce bucket (see `allreduceMean`): `DISTILL_BUCKET_BYTES` / 4 when set,
    /// else `defaultBucketBytes` / 4.
    public var bucketCapacity: Int

    public init(_ communicator: any Communicator) {
        self.communicator = communicator
        let bytes = ProcessInfo.processInfo.environment["DISTILL_BUCKET_BYTES"].flatMap(Int.init) ?? Self.defaultBucketBytes
        bucketCapacity = max(1, bytes / MemoryLayout<Float>.size)
    }

    /// The default bucket: 4 MiB of gradients per `MPI_Allreduce` (every student of the zoo fits
    /// in one; see BENCHMARKS.md, "Open MPI", for the measurement).
    public static let defaultBucketBytes = 4 << 20

    /// One process on its own, whatever `world` is: for work that each rank does alone (the runs
    /// of a sweep spread over the ranks).
    public static var oneProcess: Distributed { Distributed(SingleProcess()) }

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
        default: return .failure(TensorError(cText(message)))
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

    /// This rank's rows of `rows` in whole blocks of `block` rows (the last block may be short):
    /// the blocks are shared out as `share` shares rows. Evaluation and teacher outputs run in
    /// the same batches as in one process, so every row's outputs are the same bits.
    public func blockShare(of rows: Int, block: Int) -> Range<Int> { Self.blockShare(of: rows, block: block, rank: rank, size: size) }

    public static func blockShare(of rows: Int, block: Int, rank: Int, size: Int) -> Range<Int> {
        precondition(block > 0, "blockShare: blocks must hold at least one row")
        let blocks = share(of: (rows + block - 1) / block, rank: rank, size: size)
        return min(rows, blocks.lowerBound * block)..<min(rows, blocks.upperBound * block)
    }

    // MARK: Collectives

    /// Replaces each tensor, on every rank, with Σ over ranks of `weight_rank · tensor_rank`. With
    /// `weight` = this rank's rows / the global batch's rows and each rank's gradients a mean over
    /// its own rows, the result is the mean over the global batch whatever the shares; the
    /// default, 1 / size, is the plain mean. `scalars` travel after the tensors, summed without
    /// weighting, and are returned.
    ///
    /// Buckets: the tensors and scalars, laid end to end, are reduced in windows of at most
    /// `bucketCapacity` floats, one `MPI_Allreduce` per window (a tensor may straddle two), so
    /// the extra memory is one bucket however large the model, and a model of many small tensors
    /// still makes one call rather than one per tensor.
    @discardableResult
    public func allreduceMean(_ tensors: [Tensor], weight: Float? = nil, scalars: [Float] = []) throws -> [Float] {
        guard isDistributed else { return scalars }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let w = weight ?? 1 / Float(size)
        var sums = scalars
        let total = tensors.reduce(0) { $0 + $1.count } + scalars.count
        let windows = Self.buckets(total: total, capacity: bucketCapacity)
        let largest = windows.map(\.count).max() ?? 0
        if buffer.count < largest { buffer = [Float](repeating: 0, count: largest) }
        try sums.withUnsafeMutableBufferPointer { scalarValues in
            var segments = tensors.map { (values: $0.data, count: $0.count, scale: w) }
            if let base = scalarValues.baseAddress { segments.append((base, scalarValues.count, 1)) }
            let sizes = segments.map(\.count)
            try buffer.withUnsafeMutableBufferPointer { flat in
                for window in windows {
                    let pieces = Self.pieces(of: sizes, in: window)
                    for p in pieces {
                        let source = segments[p.segment], out = flat.baseAddress! + p.bucketOffset
                        for i in 0..<p.count { out[i] = source.values[p.segmentOffset + i] * source.scale }
                    }
                    try communicator.allreduceSum(UnsafeMutableBufferPointer(rebasing: flat[0..<window.count]))
                    for p in pieces {
                        (segments[p.segment].values + p.segmentOffset).update(from: flat.baseAddress! + p.bucketOffset, count: p.count)
                    }
                }
            }
        }
        reduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        bytesReduced += total * MemoryLayout<Float>.size
        reductions += 1
        bucketsReduced += windows.count
        return sums
    }

    /// Allreduce calls made by `allreduceMean` since the start (one per bucket).
    public private(set) var bucketsReduced = 0

    /// `0..<total` cut into consecutive windows of `capacity` (the last one shorter).
    public static func buckets(total: Int, capacity: Int) -> [Range<Int>] {
        precondition(capacity > 0, "buckets: the capacity must be positive")
        return stride(from: 0, to: total, by: capacity).map { $0..<min($0 + capacity, total) }
    }

    /// The parts of segments of `sizes`, laid end to end, that fall in `window`: for each, the
    /// segment, where the part starts in it, where it goes in the bucket, and its length.
    public static func pieces(of sizes: [Int], in window: Range<Int>) -> [(segment: Int, segmentOffset: Int, bucketOffset: Int, count: Int)] {
        var result: [(segment: Int, segmentOffset: Int, bucketOffset: Int, count: Int)] = []
        var start = 0
        for (k, size) in sizes.enumerated() {
            let lo = max(start, window.lowerBound), hi = min(start + size, window.upperBound)
            if lo < hi { result.append((k, lo - start, lo - window.lowerBound, hi - lo)) }
            start += size
            if start >= window.upperBound { break }
        }
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

    // MARK: Messages

    /// Sends `data` to rank `destination` with `tag` (see `Communicator.send`).
    public func send(_ data: Data, to destination: Int, tag: Int) throws {
        guard (0..<size).contains(destination), destination != rank else {
            throw TensorError("rank \(rank) of \(size) cannot send a message to rank \(destination)")
        }
        try data.withUnsafeBytes { try communicator.send($0, to: destination, tag: tag) }
    }

    /// A message with `tag` from `source` (nil: any rank) that has arrived, received, or nil if
    /// none has; never waits.
    public func poll(from source: Int? = nil, tag: Int) throws -> (source: Int, data: Data)? {
        guard let found = try communicator.probe(from: source, tag: tag) else { return nil }
        var data = Data(count: found.bytes)
        try data.withUnsafeMutableBytes { try communicator.receive($0, from: found.source, tag: tag) }
        return (found.source, data)
    }

    /// The next message with `tag` from `source` (nil: any rank), waiting for it without keeping
    /// a core busy: Open MPI's blocking receive spins, which would take the core of a rank that is
    /// still training on the same host; this checks at most every `longestSleep` seconds.
    public func receive(from source: Int? = nil, tag: Int, longestSleep: Double = 0.05) throws -> (source: Int, data: Data) {
        var sleep = 0.0005
        while true {
            if let message = try poll(from: source, tag: tag) { return message }
            Thread.sleep(forTimeInterval: sleep)
            sleep = min(sleep * 2, longestSleep)
        }
    }

    /// Every rank's `data`, in rank order, on rank `root` (nil on the others). Each rank sends its
    /// bytes to the root in pieces of at most 1 GiB (MPI counts are 32-bit).
    public func gather(_ data: Data, root: Int = 0) throws -> [Data]? {
        guard isDistributed else { return [data] }
        let piece = 1 << 30, tag = Self.gatherTag
        if rank != root {
            var length = UInt64(data.count)
            try send(Data(bytes: &length, count: 8), to: root, tag: tag)
            for start in stride(from: data.startIndex, to: data.endIndex, by: piece) {
                try send(data[start..<min(start + piece, data.endIndex)], to: root, tag: tag)
            }
            return nil
        }
        var all: [Data] = []
        for r in 0..<size {
            if r == root { all.append(data); continue }
            let header = try receive(from: r, tag: tag, longestSleep: 0.005).data
            guard header.count == 8 else { throw TensorError("rank \(r) sent a malformed gather header (\(header.count) bytes)") }
            let length = Int(header.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            var bytes = Data(capacity: length)
            while bytes.count < length { bytes.append(try receive(from: r, tag: tag, longestSleep: 0.005).data) }
            guard bytes.count == length else { throw TensorError("rank \(r) sent \(bytes.count) bytes where it announced \(length)") }
            all.append(bytes)
        }
        return all
    }

    /// Every rank's `data`, in rank order, on every rank (one broadcast from each rank in turn).
    public func allgather(_ data: Data) throws -> [Data] {
        guard isDistributed else { return [data] }
        return try (0..<size).map { r in
            var part = r == rank ? data : Data()
            try broadcast(&part, root: r)
            return part
        }
    }

    /// The message tag `gather` uses (others must not use it while a gather runs).
    public static let gatherTag = 0x6761

    /// Stops with an error on every rank when a rank's `configuration` (the resolved settings, as
    /// text) or its `data` (a fingerprint of the rows it loaded, `fnv1a(words:)`) differs from
    /// rank 0's: both hashes broadcast from rank 0, then a sum of who differs in what. Ranks
    /// started with different arguments, or that read a different file under the same path (one
    /// host's copy of the data not the others'), would otherwise train different things in
    /// lockstep, or wait for each other forever.
    public func requireSameConfiguration(_ configuration: String, data: UInt64 = 0) throws {
        guard isDistributed else { return }
        let mine = [Self.fnv1a(configuration), data]
        var rootHashes = mine
        try rootHashes.withUnsafeMutableBytes { try communicator.broadcast($0, root: 0) }
        // Per rank: 1 when its settings differ from rank 0's, 2 when its data do (3: both).
        var differs = [Double](repeating: 0, count: size)
        differs[rank] = (rootHashes[0] == mine[0] ? 0 : 1) + (rootHashes[1] == mine[1] ? 0 : 2)
        try allreduceSum(&differs)
        func ranks(_ bit: Int) -> [Int] { differs.indices.filter { Int(differs[$0]) & bit != 0 } }
        func named(_ list: [Int]) -> String { "rank\(list.count > 1 ? "s" : "") \(list.map(String.init).joined(separator: ", ")) of \(size)" }
        func hex(_ value: UInt64) -> String { String(format: "%016llx", value) }
        let settings = ranks(1), rows = ranks(2)
        if !settings.isEmpty {
            throw TensorError("\(named(settings)) started with a different configuration from rank 0 (settings hash \(hex(rootHashes[0])) on rank 0\(rank == 0 ? "" : ", \(hex(mine[0])) here")); every rank must get the same command line and the same data")
        }
        if !rows.isEmpty {
            throw TensorError("\(named(rows)) loaded different data from rank 0 with the same settings (data fingerprint \(hex(rootHashes[1])) on rank 0\(rank == 0 ? "" : ", \(hex(mine[1])) here")): the files under the data path differ between hosts; give every host the same copy, or put the data on shared storage")
        }
    }

    /// 64-bit FNV-1a of the text's UTF-8 bytes.
    public static func fnv1a(_ text: String) -> UInt64 {
        var h = fnvOffset
        for b in text.utf8 { h = (h ^ UInt64(b)) &* fnvPrime }
        return h
    }

    /// FNV-1a taken 8 bytes at a time (a trailing part byte by byte), continuing from `hash`: a
    /// fingerprint of large data (a data set's values) at about a word per cycle, where the
    /// byte-wise hash would take 8 times as long. Not `fnv1a(_:)`'s value for the same bytes.
    public static func fnv1a(words bytes: UnsafeRawBufferPointer, continuing hash: UInt64 = fnvOffset) -> UInt64 {
        var h = hash
        let whole = bytes.count / 8
        for i in 0..<whole { h = (h ^ bytes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) &* fnvPrime }
        for i in (8 * whole)..<bytes.count { h = (h ^ UInt64(bytes[i])) &* fnvPrime }
        return h
    }

    public static let fnvOffset: UInt64 = 0xCBF2_9CE4_8422_2325
    static let fnvPrime: UInt64 = 0x0000_0100_0000_01B3

    /// Every rank has agreed to stop now (all leave after the same step, e.g. on a signal, with
    /// rank 0's checkpoint written): a non-zero exit status then ends MPI normally instead of
    /// aborting the job as if this rank had failed (Sources/CMPILoader/include/mpi_loader.h).
    public func exitTogether() {
        if communicator is MPICommunicator { dk_mpi_exit_together() }
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
    public func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        throw TensorError("a single process has no rank \(destination) to send a message to")
    }
    public func probe(from source: Int?, tag: Int) throws -> (source: Int, bytes: Int)? { nil }
    public func receive(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        throw TensorError("a single process has no rank \(source) to receive a message from")
    }
}

/// `MPI_COMM_WORLD` of Open MPI, through the dlopen shim (Sources/CMPILoader).
final class MPICommunicator: Communicator {
    let rank = Int(dk_mpi_rank()), size = Int(dk_mpi_size())

    private func check(_ body: (UnsafeMutablePointer<CChar>, Int32) -> Int32) throws {
        var message = [CChar](repeating: 0, count: 1024)
        let rc = message.withUnsafeMutableBufferPointer { body($0.baseAddress!, Int32($0.count)) }
        if rc != 0 { throw TensorError(cText(message)) }
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
    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        try check { dk_mpi_send(bytes.baseAddress, bytes.count, Int32(destination), Int32(tag), $0, $1) }
    }
    func probe(from source: Int?, tag: Int) throws -> (source: Int, bytes: Int)? {
        var found: Int32 = 0, from: Int32 = 0, bytes = 0
        try check { dk_mpi_probe(Int32(source ?? -1), Int32(tag), &found, &from, &bytes, $0, $1) }
        return found != 0 ? (Int(from), bytes) : nil
    }
    func receive(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try check { dk_mpi_receive(bytes.baseAddress, bytes.count, Int32(source), Int32(tag), $0, $1) }
    }
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
    /// Messages sent and not yet received, per destination rank, in the order they were sent.
    private var mailboxes: [[(source: Int, tag: Int, bytes: [UInt8])]]
    private let mail = NSLock()

    init(size: Int) {
        self.size = size
        deposits = Array(repeating: [], count: size)
        mailboxes = Array(repeating: [], count: size)
    }

    func post(_ bytes: UnsafeRawBufferPointer, from source: Int, to destination: Int, tag: Int) {
        mail.lock(); defer { mail.unlock() }
        mailboxes[destination].append((source, tag, Array(bytes)))
    }

    /// The first waiting message for `rank` matching `source` and `tag`: its index and sender.
    private func firstMatch(for rank: Int, from source: Int?, tag: Int) -> (index: Int, source: Int, bytes: Int)? {
        guard let i = mailboxes[rank].firstIndex(where: { $0.tag == tag && (source == nil || $0.source == source) }) else { return nil }
        return (i, mailboxes[rank][i].source, mailboxes[rank][i].bytes.count)
    }

    func peek(for rank: Int, from source: Int?, tag: Int) -> (source: Int, bytes: Int)? {
        mail.lock(); defer { mail.unlock() }
        return firstMatch(for: rank, from: source, tag: tag).map { ($0.source, $0.bytes) }
    }

    func take(for rank: Int, into buffer: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        mail.lock(); defer { mail.unlock() }
        guard let match = firstMatch(for: rank, from: source, tag: tag), match.bytes == buffer.count else {
            throw TensorError("rank \(rank): no message of \(buffer.count) bytes with tag \(tag) from rank \(source) is waiting")
        }
        let message = mailboxes[rank].remove(at: match.index)
        message.bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

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
        func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
            group.post(bytes, from: rank, to: destination, tag: tag)
        }
        func probe(from source: Int?, tag: Int) throws -> (source: Int, bytes: Int)? { group.peek(for: rank, from: source, tag: tag) }
        func receive(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
            try group.take(for: rank, into: bytes, from: source, tag: tag)
        }
    }
}

/// The text of a NUL-terminated C buffer filled by the MPI shim.
private func cText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
