// swift-tools-version: 6.1
//
// Arbiter: a two-phase-commit transaction coordinator for Swift services.
//
// The module graph mirrors the architecture (see docs/architecture.md):
//
//   ArbiterCore          pure protocol state machines; no I/O, no clock, no randomness of its own
//   ArbiterSimulation    deterministic simulator that drives ArbiterCore under faults (test support)
//   ArbiterStorage       SQLite (GRDB) decision log and participant store, group commit
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
        .executable(name: "arbiter", targets: ["arbiter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
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
        .executableTarget(
            name: "arbiter",
            dependencies: [
                "ArbiterCore",
                "ArbiterSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterCoreTests",
            dependencies: ["ArbiterCore", "ArbiterSimulation"],
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
    ]
)
