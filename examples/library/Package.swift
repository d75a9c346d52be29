// swift-tools-version:6.0
// A program that uses DistillKit as a library: the README's "DistillKit as a library" example.
// Build and run from this folder: `swift run distil-blobs` (scripts/test.sh does, as part of the tests).
import PackageDescription

let package = Package(
    name: "distil-blobs",
    dependencies: [
        // This checkout; in a project of your own: .package(url: "<DistillKit's git URL>", branch: "main")
        .package(name: "DistillKit", path: "../.."),
    ],
    targets: [
        .executableTarget(name: "distil-blobs", dependencies: [.product(name: "DistillKit", package: "DistillKit")]),
    ]
)
