// swift-tools-version:5.9
//
// The Vexil Swift SDK. `Generated/` is not in the repository: `ci.sh` (or `scripts/generate.sh`)
// builds the native library `libvexil_uniffi` and generates its bindings there with the pinned
// uniffi bindgen. Link against the library with `-Xlinker -L<dir>` (see README.md); release
// builds for Apple platforms ship it as an XCFramework instead (see README.md).
import PackageDescription

let package = Package(
    name: "Vexil",
    platforms: [.macOS(.v12), .iOS(.v15), .tvOS(.v15), .watchOS(.v8)],
    products: [
        .library(name: "Vexil", targets: ["Vexil"]),
        .executable(name: "vexil-swift-testee", targets: ["VexilConformanceTestee"]),
    ],
    targets: [
        // The C declarations of the native library, and the instruction to link it.
        .systemLibrary(name: "vexil_uniffiFFI", path: "Generated/vexil_uniffiFFI"),
        // The generated uniffi bindings: internal to the SDK.
        .target(name: "VexilNative", dependencies: ["vexil_uniffiFFI"], path: "Generated/VexilNative"),
        // The public API.
        .target(name: "Vexil", dependencies: ["VexilNative"], path: "Sources/Vexil"),
        // The conformance testee (conformance/PROTOCOL.md), through the public API only.
        .executableTarget(
            name: "VexilConformanceTestee", dependencies: ["Vexil"],
            path: "Sources/VexilConformanceTestee"),
        .testTarget(name: "VexilTests", dependencies: ["Vexil"], path: "Tests/VexilTests"),
    ]
)
