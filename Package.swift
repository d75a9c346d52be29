// swift-tools-version:6.0
import PackageDescription

// Module map (dependencies point one way):
//   CKernels -> {CBLASLoader, CDNNLLoader} -> DistillTensor -> DistillNN (+ CKernels) -> {DistillData, DistillONNX, DistillExport, DistillText} -> DistillTraining -> {DistillKit (library), distill (CLI)}
let package = Package(
    name: "DistillKit",
    products: [
        .executable(name: "distill", targets: ["distill"]),
        .library(name: "DistillKit", targets: ["DistillKit", "DistillTensor", "DistillNN", "DistillData", "DistillONNX", "DistillExport", "DistillText", "DistillTraining"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // `swift package generate-documentation --target DistillKit` (scripts/docs.sh): the DocC articles.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // OpenBLAS, loaded at run time after choosing its CPU kernels (see Sources/CBLASLoader/blas_loader.c).
        .target(name: "CBLASLoader", dependencies: ["CKernels"], linkerSettings: [.linkedLibrary("dl")]),
        // oneDNN's convolutions, loaded at run time when installed (see Sources/CDNNLLoader/dnnl_conv.c).
        .target(name: "CDNNLLoader", dependencies: ["CKernels"], linkerSettings: [.linkedLibrary("dl")]),
        // Open MPI, loaded at run time only under mpirun (see Sources/CMPILoader/mpi_loader.c).
        .target(name: "CMPILoader", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "DistillTensor", dependencies: ["CBLASLoader", "CKernels", "CDNNLLoader", "CMPILoader"]),
        // Elementwise kernels in C, vectorised per CPU at run time (Swift compiles for baseline SSE2).
        .target(name: "CKernels"),
        .target(name: "DistillNN", dependencies: ["DistillTensor", "CKernels"]),
        // zlib, for gzipped IDX files and deflated .npz entries (Debian's zlib1g-dev).
        .systemLibrary(name: "SystemZlib", path: "Sources/SystemZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "DistillData", dependencies: ["DistillTensor", "CKernels", "SystemZlib"]),
        // ONNX: protobuf code generated from onnx.proto (scripts/onnx/generate.sh), import and export.
        .target(name: "DistillONNX", dependencies: ["DistillTensor", "DistillNN", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Shipping a student without ONNX: C source, Core ML and LiteRT (TFLite) files.
        .target(name: "DistillExport", dependencies: ["DistillTensor", "DistillNN", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Text: a WordPiece tokenizer, BERT-style transformer encoders (all-MiniLM-L6-v2), text corpora.
        .target(name: "DistillText", dependencies: ["DistillTensor", "DistillNN", "DistillData"]),
        .target(name: "DistillTraining", dependencies: ["DistillTensor", "DistillNN", "DistillData", "DistillONNX", "DistillExport", "DistillText", "Yams"]),
        // One import for library users: re-exports every module above.
        .target(name: "DistillKit", dependencies: ["DistillTensor", "DistillNN", "DistillData", "DistillONNX", "DistillExport", "DistillText", "DistillTraining"]),
        .executableTarget(name: "distill", dependencies: [
            "DistillTraining", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "DistillTestSupport", dependencies: ["DistillTensor"]),
        .testTarget(name: "DistillKitTests", dependencies: ["DistillKit"]),
        .testTarget(name: "DistillTensorTests", dependencies: ["DistillTensor", "DistillTestSupport"],
                    resources: [.copy("Golden")]),
        .testTarget(name: "DistillNNTests", dependencies: ["DistillNN", "CKernels", "DistillTestSupport"]),
        .testTarget(name: "DistillDataTests", dependencies: ["DistillData", "DistillTestSupport"], resources: [.copy("Malformed")]),
        .testTarget(name: "DistillTrainingTests", dependencies: ["DistillTraining", "DistillTestSupport"]),
        // The command line as users run it: help snapshots and one test per error path (needs the built binary).
        .testTarget(name: "DistillCLITests", dependencies: ["DistillTestSupport"], exclude: ["HelpSnapshots"]),
        .testTarget(name: "DistillExportTests", dependencies: ["DistillExport", "DistillTraining", "DistillTestSupport"]),
        .testTarget(name: "DistillTextTests", dependencies: ["DistillText", "DistillTestSupport"]),
        .testTarget(name: "DistillONNXTests", dependencies: ["DistillONNX", "DistillTraining", "DistillTestSupport"],
                    resources: [.copy("Conformance")]),
    ]
)
