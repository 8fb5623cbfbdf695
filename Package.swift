// swift-tools-version: 6.2
//
// Arbiter: a two-phase-commit transaction coordinator for Swift services.
//
// The module graph mirrors the architecture (docs/architecture.md); targets below are declared in
// this order, each after the modules it depends on:
//
//   ArbiterCore          the protocol as pure state machines: ids, messages, votes, outcomes, backoff;
//                        events in, effects out; no I/O, no clock, no randomness of its own
//   ArbiterStorage       SQLite (GRDB): the coordinator's decision log, the participant's store,
//                        migrations from schemas/*.sql, the one writer of each database
//   ArbiterRuntime       the services' loops over their storage and transport seams (CoordinatorLoop,
//                        ParticipantLoop, their timers, and the thread that runs them), failpoints
//   ArbiterSimulation    the deterministic simulator: both services' real loops over a simulated
//                        disk, network and clock, checking the invariants (the tests and
//                        `arbiter simulate`)
//   ArbiterHTTP          the wire protocol: DTOs, strict JSON, errors, bearer secrets, HTTP clients;
//                        the dashboards' login, sessions and operator middleware
//   ArbiterCoordinator   the coordinator service: its loop over SQLite and HTTP, participant links,
//                        HTTP API, metrics
//   ArbiterClient        the Swift client of the coordinator API (library product for users)
//   ArbiterParticipant   the participant library that services embed: Resource, ParticipantNode
//                        (library product for users)
//   ArbiterPostgres      the decision store a coordinator cluster shares, on PostgreSQL (postgres-nio):
//                        leases, fencing by owner and epoch, takeover
//   ArbiterParticipantPostgres  the participant library over PostgreSQL: a PostgresResource's stage
//                        is SQL in a transaction the node prepares (PREPARE TRANSACTION) and commits
//                        (library product for users)
//   ArbiterTesting       running real processes and temporary directories in tests, demo, benchmark
//   ArbiterCommandLine   the flags every Arbiter server takes (TLS, connection limits, OTLP trace
//                        export) and their other sources (ARBITER_ variables, a configuration
//                        file), shared by the `arbiter` and `bank-node` commands
//   arbiter              the command-line tool: coordinator, txn, participant, simulate
//   BankExample          examples/bank: the reference participant's resource and routes
//   bank-node            examples/bank: the bank participant service
//   BankCluster          examples/bank: a coordinator and banks as processes, with invariant checks
//   bank-demo            examples/bank: the transfer-money demo (`swift run bank-demo`)
//   bank-bench           examples/bank/Bench: the end-to-end benchmark (docs/benchmark.md)
//
// Test targets come last, one per module plus the demo's and the end-to-end suite. Packages that
// only tests and the commands use (Yams, HummingbirdTesting, swift-configuration, swift-otel) do not
// reach a library product's targets, and the benchmark needs no package of its own. The
// micro-benchmarks are a separate package, Benchmarks/.
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
        .library(name: "ArbiterHTTP", targets: ["ArbiterHTTP"]),
        .library(name: "ArbiterCoordinator", targets: ["ArbiterCoordinator"]),
        .library(name: "ArbiterClient", targets: ["ArbiterClient"]),
        .library(name: "ArbiterParticipant", targets: ["ArbiterParticipant"]),
        .library(name: "ArbiterParticipantPostgres", targets: ["ArbiterParticipantPostgres"]),
        .executable(name: "arbiter", targets: ["arbiter"]),
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
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        // The OTLP exporter of the two servers' `--otlp-endpoint`; OTLP/HTTP only (its default
        // traits add OTLP/gRPC, which would build grpc-swift too).
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
        // The environment and the configuration file behind the two servers' options
        // (ConfigurationSources), with its JSON and YAML traits (its default is JSON alone).
        // async-http-client and Hummingbird already depend on it, with none of its traits.
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["JSON", "YAML"]),
        // The decision store a coordinator cluster shares (ArbiterPostgres).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // Already a dependency of postgres-nio; the PostgreSQL participant's own connections use
        // its SHA-256, HMAC and MD5 to authenticate (SCRAM-SHA-256, md5).
        .package(url: "https://github.com/apple/swift-crypto", "3.9.0"..<"5.0.0"),
    ],
    targets: [
        .target(
            name: "ArbiterCore",
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
            dependencies: ["ArbiterCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterSimulation",
            dependencies: ["ArbiterCore", "ArbiterRuntime"],
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
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterCoordinator",
            dependencies: [
                "ArbiterCore", "ArbiterStorage", "ArbiterHTTP", "ArbiterRuntime", "ArbiterPostgres",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
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
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
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
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterPostgres",
            dependencies: [
                "ArbiterCore", "ArbiterRuntime", "ArbiterStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterParticipantPostgres",
            dependencies: [
                "ArbiterCore", "ArbiterHTTP", "ArbiterRuntime", "ArbiterStorage", "ArbiterParticipant", "ArbiterPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterTesting",
            dependencies: [
                // The recording tracer of the tracing tests (one per test process: see W3CRecordingTracer).
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ArbiterCommandLine",
            dependencies: [
                "ArbiterHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "arbiter",
            dependencies: [
                "ArbiterCore", "ArbiterSimulation", "ArbiterCoordinator", "ArbiterClient", "ArbiterHTTP", "ArbiterParticipant",
                "ArbiterRuntime", "ArbiterCommandLine", "ArbiterPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The reference participant (examples/bank): its resource and routes, its service, and the
        // harness that runs a coordinator and banks as processes for the demo, the benchmark and tests.
        .target(
            name: "BankExample",
            dependencies: [
                "ArbiterCore",
                "ArbiterParticipant",
                "ArbiterParticipantPostgres",
                "ArbiterHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
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
                "ArbiterRuntime",
                "ArbiterCommandLine",
                "ArbiterParticipantPostgres",
                "ArbiterPostgres",
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
        // The benchmark: runs `arbiter` and `bank-node` as processes (see docs/benchmark.md). Built by
        // `swift build -c release` at .build/release/bank-bench, where the peer comparison expects it.
        .executableTarget(
            name: "bank-bench",
            dependencies: [
                "ArbiterCore",
                "ArbiterHTTP",
                "ArbiterClient",
                "ArbiterTesting",
                "BankCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "examples/bank/Bench",
            exclude: ["plot.py", "stores.sh", "pgbench-xa-floor.sql", "pgbench-arbiter-branch.sql"],
            swiftSettings: swiftSettings
        ),
        // Tests: one target per module, then the demo's and the end-to-end suites.
        .testTarget(
            name: "ArbiterCoreTests",
            dependencies: ["ArbiterCore", "ArbiterSimulation"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterPostgresTests",
            // ArbiterSimulation: the same rules are checked on the simulator's shared store.
            dependencies: ["ArbiterPostgres", "ArbiterCore", "ArbiterRuntime", "ArbiterSimulation", "ArbiterStorage", "ArbiterTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterParticipantPostgresTests",
            dependencies: [
                "ArbiterParticipantPostgres", "ArbiterParticipant", "ArbiterPostgres", "ArbiterCore", "ArbiterHTTP", "ArbiterTesting", "BankExample",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterStorageTests",
            dependencies: [
                "ArbiterStorage",
                "ArbiterCore",
                "ArbiterTesting",
                // The tests write through GRDB's Database and quiet the writer's logger.
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterRuntimeTests",
            dependencies: ["ArbiterRuntime", "ArbiterCore", "ArbiterTesting", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterCommandLineTests",
            dependencies: ["ArbiterCommandLine", "ArbiterTesting"],
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
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterCoordinatorTests",
            dependencies: [
                "ArbiterCoordinator", "ArbiterClient", "ArbiterHTTP", "ArbiterCore", "ArbiterPostgres", "ArbiterTesting", "arbiter",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ArbiterParticipantTests",
            dependencies: [
                "ArbiterParticipant",
                "ArbiterTesting",
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
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BankDemoTests",
            dependencies: ["ArbiterTesting", "bank-demo", "bank-bench"],
            path: "Tests/BankDemoTests",
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
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
