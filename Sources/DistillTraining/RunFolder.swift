import DistillNN
import DistillTensor
import Foundation

/// The folder a run writes: `config.json` (the resolved configuration), `metrics.jsonl` (one
/// line per epoch), `checkpoint.safetensors` (student, optimizer and adapter state after the last
/// finished epoch), `best.safetensors` and `student.safetensors` (loadable models), and
/// `summary.json` / `summary.txt`, and `report.html` (`RunReport`). Every file is written atomically (temporary file + rename), so a
/// kill at any moment leaves the previous version intact, and a failed write (a full disk) leaves
/// the previous checkpoint in place. A checkpoint written on Ctrl-C also records the batch
/// position inside the epoch.
public struct RunFolder: Sendable {
    public let url: URL
    public init(_ url: URL) { self.url = url }

    public var config: URL { url.appendingPathComponent("config.json") }
    public var metrics: URL { url.appendingPathComponent("metrics.jsonl") }
    public var checkpoint: URL { url.appendingPathComponent("checkpoint.safetensors") }
    public var bestModel: URL { url.appendingPathComponent("best.safetensors") }
    public var finalModel: URL { url.appendingPathComponent("student.safetensors") }
    public var report: URL { url.appendingPathComponent("report.html") }

    public var lockFile: URL { url.appendingPathComponent(".lock") }

    /// A model argument as a file: a run folder (`runs/kd`, the natural thing to type) stands for
    /// its `best.safetensors`; any other path is returned as given.
    public static func modelFile(_ path: String) -> String {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else { return path }
        let best = RunFolder(URL(fileURLWithPath: path)).bestModel.path
        return FileManager.default.fileExists(atPath: best) ? best : path
    }

    /// Creates the folder (errors in words when a file is in the way or it is not writable), takes
    /// its lock for the rest of this process (a second run writing the same folder at the same
    /// time is refused, naming the folder and the process that holds it), and removes temporary
    /// files that a killed run left behind.
    ///
    /// `replacingEarlierRun` (a run that starts afresh): an earlier run's checkpoint, metrics,
    /// models, summaries and report in the folder are removed, so that a later `--resume` cannot
    /// continue the earlier run's checkpoint under the new configuration, and no file of the
    /// earlier run is taken for one of this run.
    public func create(replacingEarlierRun: Bool = false) throws {
        try OutputFolder.create(url, what: "run folder")
        try RunFolder.lock(self)
        AtomicFile.removeLeftovers(in: url)
        guard replacingEarlierRun else { return }
        for file in [checkpoint, metrics, bestModel, finalModel, report, teacherRecord, url.appendingPathComponent("summary.json"), url.appendingPathComponent("summary.txt")]
        where FileManager.default.fileExists(atPath: file.path) {
            do { try FileManager.default.removeItem(at: file) } catch {
                throw TensorError("\(file.path): cannot remove the earlier run's file before starting afresh (\(error.localizedDescription))")
            }
        }
    }

    /// Open lock files by folder path; a lock is held until the process exits (the kernel
    /// releases an `flock` when its holder dies, kill -9 included).
    nonisolated(unsafe) private static var held: [String: Int32] = [:]
    private static let heldLock = NSLock()

    static func lock(_ run: RunFolder) throws {
        let key = run.url.standardizedFileURL.path
        heldLock.lock()
        defer { heldLock.unlock() }
        if held[key] != nil { return }
        let fd = open(run.lockFile.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TensorError("\(run.url.path): cannot create the run folder's lock file (\(String(cString: strerror(errno))))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, 31, 0)
            let owner = String(decoding: buffer.prefix(max(0, n)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw TensorError("\(run.url.path): another run is writing this folder (process \(owner.isEmpty ? "unknown" : owner)); wait for it to finish, or choose another --output")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        held[key] = fd
    }

    /// `teachers.json`: the size and a hash of each file the run reads its teacher from (models,
    /// then cached outputs), so that `--resume` notices a teacher replaced at the same path.
    public var teacherRecord: URL { url.appendingPathComponent("teachers.json") }

    /// Size and FNV-1a hash of a file's bytes: "1234:9f0e…".
    static func fingerprint(ofFile path: String) throws -> String {
        let data = try InputFile.read(URL(fileURLWithPath: path), what: "teacher")
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        data.withUnsafeBytes { bytes in
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        }
        return "\(data.count):\(String(hash, radix: 16))"
    }

    /// Records the fingerprints of the teacher files `paths` (a run starting afresh).
    func recordTeachers(_ paths: [String]) throws {
        try writeJSON(try paths.map { try Self.fingerprint(ofFile: $0) }, to: teacherRecord)
    }

    /// Throws, naming the file, when a teacher file differs from the one recorded when the run
    /// started: resuming would finish the run with another teacher. A run folder without a
    /// record (written before there was one) passes.
    func checkTeachers(_ paths: [String]) throws {
        guard FileManager.default.fileExists(atPath: teacherRecord.path),
              let recorded = try? JSONSerialization.jsonObject(with: InputFile.read(teacherRecord, what: "teacher record", limit: 1 << 20)) as? [String] else { return }
        for (path, before) in zip(paths, recorded) where try Self.fingerprint(ofFile: path) != before {
            throw TensorError("--resume \(url.path): the teacher \(path) is not the file this run started with (size:hash \(before) then, \(try Self.fingerprint(ofFile: path)) now); put that teacher back, or start the run afresh without --resume")
        }
    }

    /// The epochs an interrupted run of `experiment` in this folder has finished: nil unless the
    /// folder holds a checkpoint of the same settings, short of `experiment`'s epochs, whose
    /// teacher files are the ones it started with (so `--resume` would continue it).
    public func interruptedEpochs(of experiment: Experiment) -> Int? {
        guard let bytes = try? checkpointBytes(), let recorded = try? readExperiment(), experiment.settingsDiffering(from: recorded).isEmpty,
              (try? checkTeachers(experiment.teachers)) != nil,
              let metadata = try? Safetensors.decode(bytes, name: checkpoint.path, including: { _ in false }).metadata,
              let done = Int(metadata[SavedModel.checkpointKey] ?? ""), done >= 0 else { return nil }
        let midEpoch = Int(metadata["distillkit.next_batch"] ?? "0") ?? 0 > 0
        return done < experiment.options.epochs || midEpoch ? done : nil
    }

    /// What a failed run leaves, for its error message: where the last good checkpoint is, or
    /// that none was written yet.
    public var checkpointNote: String {
        FileManager.default.fileExists(atPath: checkpoint.path)
            ? "the last good checkpoint is kept in \(url.path)" : "no checkpoint had been written yet in \(url.path)"
    }

    /// The experiment recorded in `config.json`, for `--resume`; errors name the file.
    public func readExperiment() throws -> Experiment {
        let saved = try readConfig()
        do { return try Experiment(saved) } catch let error as TensorError {
            throw TensorError("\(config.path): \(error.message)")
        }
    }

    public func writeJSON(_ object: Any, to file: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: file)
    }

    public func readConfig() throws -> [String: Any] {
        if InputFile.problem(at: url.path) == "no such file" {
            throw TensorError("\(url.path): no such run folder to resume")
        }
        if InputFile.problem(at: config.path) == "no such file" {
            throw TensorError("\(url.path) is not a run folder DistillKit can resume (no config.json)")
        }
        let data = try InputFile.read(config, what: "the run's configuration", limit: 16 << 20)
        guard let parsed = try? JSONSerialization.jsonObject(with: data) else {
            throw TensorError("\(config.path): not valid JSON; the run's configuration is damaged")
        }
        guard let object = parsed as? [String: Any] else {
            throw TensorError("\(config.path): not a JSON object of settings")
        }
        return object
    }

    /// The lines of metrics.jsonl, one dictionary per epoch (empty when there are none yet).
    public func readMetrics() -> [[String: Any]] {
        guard let text = try? String(contentsOf: metrics, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Rewrites metrics.jsonl with the lines of epochs before `epoch` plus `line` (so a resumed
    /// run never duplicates an epoch).
    func appendMetrics(_ line: [String: Any], epoch: Int) throws {
        var lines: [String] = []
        if let old = try? String(contentsOf: metrics, encoding: .utf8) {
            for l in old.split(separator: "\n") {
                if let obj = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], let e = obj["epoch"] as? Int, e < epoch {
                    lines.append(String(l))
                }
            }
        }
        lines.append(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
        try AtomicFile.write(Data((lines.joined(separator: "\n") + "\n").utf8), to: metrics)
    }

    /// Where a checkpoint stands: `epochsDone` whole epochs, then `nextBatch` batches of the next
    /// one (0 at an epoch boundary; more after a Ctrl-C mid-epoch), with that epoch's running
    /// loss sums so its metrics line comes out as if the run had never stopped.
    struct CheckpointState {
        var epochsDone = 0
        var bestAccuracy = 0.0
        var nextBatch = 0
        /// "seen", "loss" and "part.<term>" running sums of the unfinished epoch.
        var sums: [String: Double] = [:]
    }

    func saveCheckpoint(student: Module, optimizer: any Optimizer, adapters: [Tensor], state: CheckpointState) throws {
        var tensors: [String: Tensor] = [:]
        for (k, v) in student.stateDict() { tensors["student.\(k)"] = v }
        for (k, v) in optimizer.stateDict() { tensors["optimizer.\(k)"] = v }
        for (i, a) in adapters.enumerated() { tensors["adapter.\(i)"] = a }
        var metadata = [SavedModel.checkpointKey: String(state.epochsDone), "distillkit.best_accuracy": String(state.bestAccuracy)]
        if state.nextBatch > 0 {
            metadata["distillkit.next_batch"] = String(state.nextBatch)
            // Doubles print in their shortest round-tripping form, so the sums come back exactly.
            for (k, v) in state.sums { metadata["distillkit.sum.\(k)"] = String(v) }
        }
        try Safetensors.save(tensors, to: checkpoint, metadata: metadata)
    }

    /// The checkpoint file's bytes, or nil when there is none yet.
    func checkpointBytes() throws -> Data? {
        guard FileManager.default.fileExists(atPath: checkpoint.path) else { return nil }
        return try InputFile.read(checkpoint, what: "checkpoint")
    }

    /// Restores the checkpoint into `student`, `optimizer` and `adapters`; from `bytes` when given
    /// (another rank's copy of the file, empty when it had none), else from the file.
    func loadCheckpoint(student: Module, optimizer: any Optimizer, adapters: [Tensor], bytes: Data? = nil) throws -> CheckpointState {
        // Killed before the first checkpoint: start again.
        guard let data = try bytes.map({ $0.isEmpty ? nil : $0 }) ?? checkpointBytes() else { return CheckpointState() }
        let (tensors, meta) = try Safetensors.decode(data, name: checkpoint.path)
        if let (name, tensor) = tensors.first(where: { $0.value.firstNonFiniteIndex != nil }) {
            throw TensorError("\(checkpoint.path): tensor '\(name)' holds \(tensor.data[tensor.firstNonFiniteIndex!]); the checkpoint is damaged")
        }
        func part(_ prefix: String) -> [String: Tensor] {
            Dictionary(uniqueKeysWithValues: tensors.filter { $0.key.hasPrefix(prefix) }.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
        }
        var state = CheckpointState(epochsDone: Int(meta[SavedModel.checkpointKey] ?? "0") ?? 0,
                                    bestAccuracy: Double(meta["distillkit.best_accuracy"] ?? "0") ?? 0,
                                    nextBatch: Int(meta["distillkit.next_batch"] ?? "0") ?? 0)
        for (k, v) in meta where k.hasPrefix("distillkit.sum.") { state.sums[String(k.dropFirst(15))] = Double(v) }
        guard state.epochsDone >= 0, state.epochsDone <= Experiment.maxEpochs, state.nextBatch >= 0, state.bestAccuracy.isFinite,
              state.sums.values.allSatisfy({ $0.isFinite && Swift.abs($0) < 0x1p53 }) else {
            throw TensorError("\(checkpoint.path): corrupt position in the checkpoint metadata")
        }
        try student.loadStateDict(part("student."), source: checkpoint.path)
        do { try optimizer.loadStateDict(part("optimizer.")) } catch let error as TensorError {
            throw TensorError("\(checkpoint.path): \(error.message)")
        }
        for (i, a) in adapters.enumerated() {
            guard let saved = tensors["adapter.\(i)"], saved.shape == a.shape else { throw TensorError("\(checkpoint.path): adapter \(i) missing or of the wrong shape") }
            a.assign(saved)
        }
        return state
    }
}
