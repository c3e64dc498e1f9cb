// swift-tools-version: 6.1
// flowgate: a ZeroMQ + MessagePack inference server for offline-RL flow policies (QIPO) with
// energy-model reliability checks (MC-ETM), and the offline trainer that shares its numerical core.
import PackageDescription

let package = Package(
    name: "flowgate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "flowgate", targets: ["flowgate"]),
        .library(name: "FlowgateCommon", targets: ["FlowgateCommon"]),
        .library(name: "FlowgateCore", targets: ["FlowgateCore"]),
        .library(name: "FlowgateModelFormat", targets: ["FlowgateModelFormat"]),
        .library(name: "FlowgateAlgorithms", targets: ["FlowgateAlgorithms"]),
        .library(name: "FlowgateTraining", targets: ["FlowgateTraining"]),
        .library(name: "FlowgateProtocol", targets: ["FlowgateProtocol"]),
        .library(name: "FlowgateServer", targets: ["FlowgateServer"]),
        .library(name: "FlowgateClient", targets: ["FlowgateClient"]),
        .library(name: "FlowgateEval", targets: ["FlowgateEval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        // Prometheus /metrics: swift-metrics API, swift-prometheus registry, SwiftNIO's HTTP/1 codec
        // for the listener (see docs/architecture.md for why not FlyingFox or Hummingbird).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Elementary functions (exp, log, tanh, sin, cos) on Float and Double without per-file
        // Glibc/Darwin shims; already in the graph through hdrhistogram-swift.
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
        // Graceful shutdown on SIGTERM/SIGINT and SIGHUP reload for serve, broker and train
        // (ServiceGroup, UnixSignals) instead of hand-written DispatchSource signal code.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // Typed POSIX calls (open, write, fsync, rename) with EINTR retries for AtomicFile; already
        // in the graph through swift-nio.
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // C system libraries (Debian packages; found through pkg-config).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // No pkgConfig for libzmq: Debian's libzmq.pc adds `-isystem /usr/include/mit-krb5` (from its
        // GSSAPI build), which SwiftPM refuses with a warning on every build; zmq.h is in
        // /usr/include and the modulemap links zmq, so nothing from the .pc file is needed.
        .systemLibrary(name: "CZeroMQ", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CMsgPack", pkgConfig: "msgpack", providers: [.apt(["libmsgpack-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        // libxsmm (static library): JIT-generated kernels for the small products a policy server
        // issues (DenseKernels in FlowgateCore; docs/benchmarks.md has the measurement).
        .systemLibrary(name: "CXSMM", pkgConfig: "libxsmm", providers: [.apt(["libxsmm-dev"])]),
        // C kernels behind FlowgateCore.DenseKernels: libxsmm dispatch, AVX2+FMA fused bias +
        // activation epilogues (runtime CPU check), and BLIS loaded privately for `bench kernels`.
        .target(name: "CFlowgateKernels", dependencies: ["CXSMM", "COpenBLAS"], linkerSettings: [.linkedLibrary("dl")]),

        // Small pieces every layer shares, with no dependencies (the client links no BLAS): SplitMix64,
        // percentiles and quantiles, the monotonic clock.
        .target(name: "FlowgateCommon"),
        // Numerical core, pure computation: tensors, layers (forward/backward on BLAS), losses,
        // optimisers, RNG.
        .target(
            name: "FlowgateCore",
            dependencies: [
                "FlowgateCommon", "COpenBLAS", "CFlowgateKernels", .product(name: "RealModule", package: "swift-numerics"),
            ]),
        // The model-file format and its I/O: safetensors, manifest, model directories, atomic writes.
        .target(
            name: "FlowgateModelFormat",
            dependencies: ["FlowgateCore", .product(name: "SystemPackage", package: "swift-system")]),
        // Algorithms: flow policy + sampler, critic, energy transition model, action selection.
        .target(name: "FlowgateAlgorithms", dependencies: ["FlowgateCommon", "FlowgateCore", "FlowgateModelFormat"]),
        // Training: datasets (npz, hdf5), trainers, checkpoints, progress, training logs.
        .target(
            name: "FlowgateTraining",
            dependencies: [
                "FlowgateCommon", "FlowgateCore", "FlowgateModelFormat", "FlowgateAlgorithms", "CZlib", "CHDF5",
                .product(name: "RealModule", package: "swift-numerics"),
            ]),
        // Benchmarks behind `flowgate bench dense` and `bench train` (the executable only formats).
        .target(
            name: "FlowgateBenchmarks",
            dependencies: ["FlowgateCommon", "FlowgateCore", "FlowgateAlgorithms", "FlowgateTraining", "CFlowgateKernels"]),
        // Wire protocol: MessagePack codec (msgpack-c) and protocol v1 message types.
        .target(name: "FlowgateProtocol", dependencies: ["CMsgPack"]),
        // One thin libzmq wrapper (sockets, contexts, errors naming the failing call), package-internal.
        .target(name: "FlowgateZMQ", dependencies: ["CZeroMQ"]),
        // Server: ZeroMQ sockets, dynamic batching, worker pool, telemetry, Prometheus metrics and probes.
        .target(
            name: "FlowgateServer",
            dependencies: [
                "FlowgateCommon", "FlowgateCore", "FlowgateAlgorithms", "FlowgateProtocol", "FlowgateZMQ", "CZeroMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        // Process lifecycle shared by serve, broker and train: a blocking loop run as a
        // swift-service-lifecycle Service on its own thread, stopped on SIGTERM/SIGINT, and SIGHUP.
        .target(
            name: "FlowgateLifecycle",
            dependencies: [
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The deterministic toy model behind `flowgate serve --demo` and `bench serve --demo` (not a
        // policy; kept out of the server library).
        .target(name: "FlowgateDemo", dependencies: ["FlowgateCommon", "FlowgateProtocol", "FlowgateServer"]),
        // Client library (used by tests and the load tester).
        .target(
            name: "FlowgateClient",
            dependencies: [
                "FlowgateCommon", "FlowgateProtocol", "FlowgateZMQ", "CZeroMQ",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]),
        // `flowgate eval`: serves a model in-process and runs the Python pybullet runner against it.
        .target(
            name: "FlowgateEval",
            dependencies: ["FlowgateServer", .product(name: "Logging", package: "swift-log")]),
        // The one thin executable.
        .executableTarget(
            name: "flowgate",
            dependencies: [
                "FlowgateCommon", "FlowgateCore", "FlowgateModelFormat", "FlowgateAlgorithms", "FlowgateTraining",
                "FlowgateBenchmarks", "FlowgateProtocol", "FlowgateServer", "FlowgateDemo", "FlowgateClient", "FlowgateZMQ",
                "FlowgateLifecycle",
                "FlowgateEval",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // Helpers shared by the test targets (finite-difference gradient checks, seeded data).
        .target(name: "FlowgateTestSupport", dependencies: ["FlowgateCore"], path: "Tests/FlowgateTestSupport"),
        .testTarget(name: "FlowgateCommonTests", dependencies: ["FlowgateCommon"]),
        .testTarget(name: "FlowgateCoreTests", dependencies: ["FlowgateCore", "FlowgateTestSupport"]),
        .testTarget(name: "FlowgateModelFormatTests", dependencies: ["FlowgateModelFormat", "FlowgateCore", "FlowgateCommon"]),
        .testTarget(
            name: "FlowgateAlgorithmsTests",
            dependencies: ["FlowgateAlgorithms", "FlowgateModelFormat", "FlowgateCore", "FlowgateTestSupport"]),
        .testTarget(
            name: "FlowgateTrainingTests",
            dependencies: [
                "FlowgateTraining", "FlowgateAlgorithms", "FlowgateModelFormat", "FlowgateCore", "FlowgateTestSupport",
                .product(name: "RealModule", package: "swift-numerics"),
            ]),
        .testTarget(
            name: "FlowgateLifecycleTests",
            dependencies: [
                "FlowgateLifecycle", .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "FlowgateEvalTests", dependencies: ["FlowgateEval"]),
        .testTarget(name: "FlowgateProtocolTests", dependencies: ["FlowgateProtocol", "FlowgateCore"]),
        .testTarget(
            name: "FlowgateServerTests",
            dependencies: [
                "FlowgateServer", "FlowgateClient", "FlowgateProtocol", "FlowgateAlgorithms", "FlowgateCore",
                "FlowgateCommon", "FlowgateDemo", "FlowgateZMQ", "FlowgateModelFormat",
            ]),
    ]
)
