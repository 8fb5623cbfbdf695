// swift-tools-version: 6.1
//
// Arbiter: a two-phase-commit transaction coordinator for Swift services.
//
// The module graph mirrors the architecture (see docs/architecture.md):
//
//   ArbiterCore          pure protocol state machines; no I/O, no clock, no randomness of its own
//   ArbiterSimulation    deterministic simulator that drives ArbiterCore under faults (test support)
//   ArbiterStorage       SQLite (GRDB) decision log and participant store, group commit
//   ArbiterRuntime       what every service needs besides storage and HTTP: timers, failpoints
//   ArbiterTesting       running real processes in tests, demos and benchmarks
//   arbiter              the command-line tool
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Arbiter",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ArbiterCore", targets: ["ArbiterCore"]),
        .library(name: "ArbiterSimulation", targets: ["ArbiterSimulation"]),
        .library(name: "ArbiterStorage", targets: ["ArbiterStorage"]),
        .library(name: "ArbiterCoordinator", targets: ["ArbiterCoordinator"]),
        .library(name: "ArbiterHTTP", targets: ["ArbiterHTTP"]),
        .library(name: "ArbiterClient", targets: ["ArbiterClient"]),
        .executable(name: "arbiter", targets: ["arbiter"]),
        .library(name: "ArbiterParticipant", targets: ["ArbiterParticipant"]),
        .executable(name: "bank-node", targets: ["bank-node"]),
        .executable(name: "bank-demo", targets: ["bank-demo"]),
        .executable(name: "bank-bench", targets: ["bank-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        .target(
            name: "ArbiterCore",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterSimulation",
            dependencies: ["ArbiterCore"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterStorage",
            dependencies: [
                "ArbiterCore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterRuntime",
            dependencies: ["ArbiterCore"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterCoordinator",
            dependencies: [
                "ArbiterCore", "ArbiterStorage", "ArbiterHTTP", "ArbiterRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterTesting",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "arbiter",
            dependencies: [
                "ArbiterCore", "ArbiterSimulation", "ArbiterCoordinator", "ArbiterClient", "ArbiterHTTP", "ArbiterParticipant",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterCoreTests",
            dependencies: ["ArbiterCore", "ArbiterSimulation"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterRuntimeTests",
            dependencies: ["ArbiterRuntime", "ArbiterCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterCoordinatorTests",
            dependencies: [
                "ArbiterCoordinator", "ArbiterClient", "ArbiterHTTP", "ArbiterCore", "ArbiterTesting", "arbiter",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterStorageTests",
            dependencies: [
                "ArbiterStorage",
                "ArbiterCore",
                // The tests write through GRDB's Database and quiet the writer's logger.
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterHTTP",
            dependencies: [
                "ArbiterCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterClient",
            dependencies: [
                "ArbiterCore",
                "ArbiterHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterHTTPTests",
            dependencies: [
                "ArbiterHTTP",
                "ArbiterClient",
                "ArbiterCore",
                "ArbiterTesting",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        // The participant library and its reference participant, the bank example.
        .target(
            name: "ArbiterParticipant",
            dependencies: [
                "ArbiterCore",
                "ArbiterStorage",
                "ArbiterHTTP",
                "ArbiterRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "BankExample",
            dependencies: [
                "ArbiterCore",
                "ArbiterParticipant",
                "ArbiterHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "examples/bank/Sources/BankExample",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bank-node",
            dependencies: [
                "ArbiterCore",
                "ArbiterParticipant",
                "ArbiterHTTP",
                "BankExample",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/bank/Sources/bank-node",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "BankCluster",
            dependencies: [
                "ArbiterClient", "ArbiterCore", "ArbiterHTTP", "ArbiterParticipant", "ArbiterTesting", "BankExample",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "examples/bank/Sources/BankCluster",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "bank-demo",
            dependencies: [
                "BankCluster", "ArbiterClient", "ArbiterCore", "ArbiterTesting", "arbiter", "bank-node",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "examples/bank/Sources/bank-demo",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BankDemoTests",
            dependencies: ["ArbiterTesting", "bank-demo", "bank-bench"],
            path: "Tests/BankDemoTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterParticipantTests",
            dependencies: [
                "ArbiterParticipant",
                "ArbiterCore",
                "ArbiterHTTP",
                "ArbiterStorage",
                "BankExample",
                "bank-node",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // The benchmark: runs `arbiter` and `bank-node` as processes (see docs/benchmark.md).
        .executableTarget(
            name: "bank-bench",
            dependencies: [
                "ArbiterCore",
                "ArbiterHTTP",
                "ArbiterClient",
                "BankCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "examples/bank/Bench",
            exclude: ["plot.py"],
            swiftSettings: swiftSettings
        ),
        // Real coordinator and bank-node processes on loopback, crashed at every protocol step and
        // killed at random under load (docs/testing.md). Depends on the executables so that
        // `swift test` builds them.
        .testTarget(
            name: "ArbiterEndToEndTests",
            dependencies: [
                "BankCluster", "arbiter", "bank-node",
                "ArbiterClient", "ArbiterCore", "ArbiterHTTP", "ArbiterParticipant", "ArbiterTesting", "BankExample",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
