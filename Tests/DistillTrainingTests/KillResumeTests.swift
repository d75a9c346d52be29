import DistillData
import DistillTensor
import DistillTestSupport
import Foundation
import Testing

/// The real `distill` binary, killed at several points of a run and resumed with `--resume`,
/// must end with a `student.safetensors` byte-for-byte equal to that of a run never interrupted.
/// Needs the binary (built next to the test bundle by `swift build`, or `$DISTILL_BINARY`) and
/// Debian's dataset-fashion-mnist.
private let haveFashionMNIST = (try? FashionMNIST.load()) != nil

@Suite("KillResume", .serialized, .enabled(if: distillBinary != nil && haveFashionMNIST, "needs the distill binary (swift build) and dataset-fashion-mnist"))
struct KillResumeTests {
    static let binary = distillBinary

    static let trainArguments = ["train", "--model", "mlp:784-32-10", "--train-limit", "3000", "--epochs", "4", "--seed", "3", "--quiet"]

    static func folder(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("distillkit-kill-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: url)
        return url
    }

    static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = binary!
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// Runs to the end; returns the exit status.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Int32 {
        let p = try start(arguments, environment: environment)
        p.waitUntilExit()
        return p.terminationStatus
    }

    static func metricsLines(_ folder: URL) -> Int {
        ((try? String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    /// Waits (up to 120 s) until `condition` holds or the process ends; false if it ended first.
    static func wait(for p: Process, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            if condition() { return true }
            if !p.isRunning { return false }
            usleep(5_000)
        }
        return false
    }

    static func straightRun() throws -> Data {
        let folder = folder("straight")
        #expect(try run(trainArguments + ["--output", folder.path]) == 0)
        return try Data(contentsOf: folder.appendingPathComponent("student.safetensors"))
    }

    /// SIGKILL at several moments: right after the run folder appears (before any checkpoint),
    /// after 1 and after 3 epochs' metrics, and a second kill during the resumed run.
    @Test func killedRunsResumeToBitIdenticalWeights() throws {
        let expected = try Self.straightRun()
        let points: [(String, [(URL) -> Bool])] = [
            ("config", [{ FileManager.default.fileExists(atPath: $0.appendingPathComponent("config.json").path) }]),
            ("epoch1", [{ Self.metricsLines($0) >= 1 }]),
            ("epoch3", [{ Self.metricsLines($0) >= 3 }]),
            ("twice", [{ Self.metricsLines($0) >= 1 }, { Self.metricsLines($0) >= 2 }]),
        ]
        for (name, kills) in points {
            let folder = Self.folder(name)
            defer { try? FileManager.default.removeItem(at: folder) }
            for (k, condition) in kills.enumerated() {
                let arguments = k == 0 ? Self.trainArguments + ["--output", folder.path] : ["train", "--resume", folder.path, "--quiet"]
                let p = try Self.start(arguments)
                let reached = Self.wait(for: p, until: { condition(folder) })
                if p.isRunning { kill(p.processIdentifier, SIGKILL) }
                p.waitUntilExit()
                #expect(reached, "\(name): the run ended before kill point \(k + 1)")
            }
            #expect(try Self.run(["train", "--resume", folder.path, "--quiet"]) == 0, "\(name): resume failed")
            let resumed = try Data(contentsOf: folder.appendingPathComponent("student.safetensors"))
            #expect(resumed == expected, "\(name): the resumed run's weights differ from the uninterrupted run's")
            #expect(Self.metricsLines(folder) == 4, "\(name): metrics.jsonl must hold each epoch once")
        }
    }

    /// Ctrl-C in the middle of an epoch: the process saves a checkpoint with its batch position
    /// and exits promptly with status 130; --resume continues at the next batch.
    @Test func ctrlCStopsCleanlyAndResumesAtTheNextBatch() throws {
        let expected = try Self.straightRun()
        let folder = Self.folder("sigint")
        defer { try? FileManager.default.removeItem(at: folder) }
        let p = try Self.start(Self.trainArguments + ["--output", folder.path])
        #expect(Self.wait(for: p, until: { Self.metricsLines(folder) >= 1 }))
        usleep(150_000)  // into the second epoch
        kill(p.processIdentifier, SIGINT)
        let signalled = Date()
        p.waitUntilExit()
        #expect(Date().timeIntervalSince(signalled) < 5, "Ctrl-C must stop within a step, not at the end of the run")
        #expect(p.terminationStatus == 130 || p.terminationStatus == 0, "exit status \(p.terminationStatus)")
        let checkpoint = try Safetensors.decode(Data(contentsOf: folder.appendingPathComponent("checkpoint.safetensors")), name: "checkpoint")
        if p.terminationStatus == 130 {
            #expect(checkpoint.metadata["distillkit.next_batch"] != nil || checkpoint.metadata["distillkit.epochs_done"] != "1",
                    "a Ctrl-C inside an epoch records the batch position")
        }
        #expect(try Self.run(["train", "--resume", folder.path, "--quiet"]) == 0)
        #expect(try Data(contentsOf: folder.appendingPathComponent("student.safetensors")) == expected)
        #expect(Self.metricsLines(folder) == 4)
    }

    /// A write that fails (files limited to 64 KiB with `ulimit -f`, as a full disk would) stops
    /// the run with a message naming the file, and the previous checkpoint stays intact.
    @Test func aFailingDiskKeepsTheLastCheckpoint() throws {
        let folder = Self.folder("ulimit")
        defer { try? FileManager.default.removeItem(at: folder) }
        let p = try Self.start(Self.trainArguments + ["--output", folder.path])
        #expect(Self.wait(for: p, until: { Self.metricsLines(folder) >= 1 && FileManager.default.fileExists(atPath: folder.appendingPathComponent("checkpoint.safetensors").path) }))
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        let checkpoint = folder.appendingPathComponent("checkpoint.safetensors")
        let before = try Data(contentsOf: checkpoint)
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/bash")
        let errors = Pipe()
        shell.arguments = ["-c", "trap '' XFSZ; ulimit -f 64; exec \"$0\" train --resume \"$1\" --quiet", Self.binary!.path, folder.path]
        shell.standardOutput = FileHandle.nullDevice
        shell.standardError = errors
        try shell.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        shell.waitUntilExit()
        #expect(shell.terminationStatus != 0)
        #expect(message.contains("cannot write the"), "\(message)")
        #expect(message.contains("the previous checkpoint in \(folder.path) is intact"), "\(message)")
        #expect(try Data(contentsOf: checkpoint) == before)
        #expect(try Self.run(["train", "--resume", folder.path, "--quiet"]) == 0, "with room again, the run finishes")
    }

    /// The same command and seed with 1 or 4 threads. MLPs: bit-identical whatever DISTILL_THREADS
    /// and OPENBLAS_NUM_THREADS (every parallel loop writes disjoint outputs; OpenBLAS splits GEMMs
    /// the same way). Convolutions: bit-identical across OpenBLAS threads, but DISTILL_THREADS
    /// changes the last bits, because the weight gradient is summed from one partial sum per
    /// worker (Ops/Conv.swift); this test records that so the README's claim stays true.
    @Test func threadCounts() throws {
        func weights(_ model: String, _ limit: String, distill: String, blas: String) throws -> Data {
            let folder = Self.folder("threads-\(model)-\(distill)-\(blas)")
            defer { try? FileManager.default.removeItem(at: folder) }
            let arguments = ["train", "--model", model, "--train-limit", limit, "--epochs", "1", "--seed", "3", "--quiet", "--output", folder.path]
            #expect(try Self.run(arguments, environment: ["DISTILL_THREADS": distill, "OPENBLAS_NUM_THREADS": blas]) == 0)
            return try Data(contentsOf: folder.appendingPathComponent("student.safetensors"))
        }
        let mlp = try weights("mlp:784-256-10", "3000", distill: "1", blas: "1")
        #expect(try weights("mlp:784-256-10", "3000", distill: "4", blas: "4") == mlp, "an MLP must not depend on the thread counts")
        let cnn = try weights("cnn-tiny", "600", distill: "2", blas: "1")
        #expect(try weights("cnn-tiny", "600", distill: "2", blas: "4") == cnn, "a CNN must not depend on OpenBLAS's thread count")
        let oneWorker = try weights("cnn-tiny", "600", distill: "1", blas: "1")
        #expect(oneWorker == cnn, "a CNN must not depend on DISTILL_THREADS (the batch is split into a fixed number of chunks)")
    }
}
