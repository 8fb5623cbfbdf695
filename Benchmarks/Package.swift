// swift-tools-version: 6.1
//
// Micro-benchmarks of Arbiter's hot paths, with ordo-one/benchmark (package-benchmark).
// A package of its own, so that the root package's `swift build` and `swift test` never build or
// run them:
//
//     cd Benchmarks && swift package benchmark
//
// See docs/benchmark.md.
import PackageDescription

let package = Package(
    name: "ArbiterBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // The root package, by path; its name is "Arbiter" whatever the checkout's directory is called.
        .package(name: "Arbiter", path: ".."),
        // MallocInterposer only: the runtime interposer (the default's other trait) is not mirrored here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "ArbiterMicro",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ArbiterCore", package: "Arbiter"),
                .product(name: "ArbiterHTTP", package: "Arbiter"),
                .product(name: "ArbiterStorage", package: "Arbiter"),
            ],
            path: "Benchmarks/ArbiterMicro",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
