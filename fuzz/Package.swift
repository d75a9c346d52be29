// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for every DistillKit reader, kept out of the main package so that its
// `swift build` never needs libFuzzer. Build and run them with ../scripts/fuzz.sh; each target's
// `LLVMFuzzerTestOneInput` hands the input bytes to one parser and ignores the thrown errors
// (an error is the right answer to a malformed file; a crash, hang or huge allocation is not).
let targets: [(name: String, dependencies: [Target.Dependency])] = [
    ("FuzzIDX", []), ("FuzzNPY", []), ("FuzzNPZ", []), ("FuzzSafetensors", []), ("FuzzCSV", []),
    ("FuzzExperiment", []), ("FuzzSavedModel", []), ("FuzzONNX", []),
]

let package = Package(
    name: "DistillKitFuzz",
    dependencies: [.package(name: "DistillKit", path: "..")],
    targets: targets.map { t in
        .executableTarget(name: t.name, dependencies: [.product(name: "DistillKit", package: "DistillKit")] + t.dependencies)
    }
)
