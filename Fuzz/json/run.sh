#!/usr/bin/env bash
# Builds and runs the libFuzzer harness of the wire protocol's JSON (main.swift; see its header).
#
#   Fuzz/json/run.sh            the short run CI makes: 200,000 inputs (at most 3 minutes)
#   Fuzz/json/run.sh long       10,000,000 inputs, the campaign's figure
#   Fuzz/json/run.sh build      only build .build/json-fuzz
#   Fuzz/json/run.sh run ARGS…  the fuzzer with libFuzzer's own arguments (after the corpus)
#
# The harness is compiled with swiftc, not SwiftPM: the JSON files of ArbiterHTTP need only
# ArbiterCore, swift-http-types' HTTPTypes (APIError's status) and two ByteBuffer conveniences of
# NIOCore (NIOCoreShim stands in for them), so the instrumented build takes about a minute instead
# of building Hummingbird and NIO with the fuzzer's instrumentation. HTTPTypes comes from the
# package's checkouts (`swift package resolve` fetches them if there are none).
#
# The corpus grows in Fuzz/json/.build/corpus (not committed; JSON_FUZZ_OUT moves .build), seeded
# from Fuzz/json/seeds; crashing inputs are written to .build/artifacts. Exit status: libFuzzer's
# (0: no crash).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${JSON_FUZZ_OUT:-$here/.build}"  # where the build, corpus and crashes go
mode="${1:-short}"
[ $# -gt 0 ] && shift

mkdir -p "$out/corpus" "$out/artifacts"

http_types="$root/.build/checkouts/swift-http-types/Sources/HTTPTypes"
if [ ! -d "$http_types" ]; then
    (cd "$root" && swift package resolve >/dev/null)
fi

# Objects are built for the machine's swiftc; lld keeps the linker quiet about ASan's symbols.
swiftc=(swiftc -use-ld=lld -parse-as-library -O -g)
# The package's language settings (Package.swift) for Arbiter's own modules, instrumented for
# coverage and built with the address sanitizer.
instrumented=(-sanitize=fuzzer,address -swift-version 6 -enable-upcoming-feature ExistentialAny
    -enable-upcoming-feature InternalImportsByDefault)

build() {
    local started=$SECONDS
    "${swiftc[@]}" -wmo -module-name NIOCore -emit-module -emit-module-path "$out/NIOCore.swiftmodule" \
        -emit-library -static -suppress-warnings -o "$out/libNIOCore.a" "$here/NIOCoreShim/NIOCore.swift"
    "${swiftc[@]}" -wmo -module-name HTTPTypes -emit-module -emit-module-path "$out/HTTPTypes.swiftmodule" \
        -emit-library -static -suppress-warnings -o "$out/libHTTPTypes.a" "$http_types"/*.swift
    "${swiftc[@]}" "${instrumented[@]}" -wmo -module-name ArbiterCore -emit-module \
        -emit-module-path "$out/ArbiterCore.swiftmodule" -emit-library -static -o "$out/libArbiterCore.a" \
        "$root"/Sources/ArbiterCore/*.swift
    # The harness joins the module of the files it tests (ArbiterHTTP), to reach their internal API.
    "${swiftc[@]}" "${instrumented[@]}" -module-name ArbiterHTTP -I "$out" -L "$out" \
        -lArbiterCore -lHTTPTypes -lNIOCore -o "$out/json-fuzz" \
        "$here/main.swift" \
        "$root"/Sources/ArbiterHTTP/JSON/*.swift \
        "$root"/Sources/ArbiterHTTP/DTO/*.swift \
        "$root"/Sources/ArbiterHTTP/Errors/*.swift \
        "$root"/Sources/ArbiterHTTP/WireLimits.swift \
        "$root"/Sources/ArbiterHTTP/URLAuthority.swift \
        "$root"/Sources/ArbiterHTTP/PercentEncoding.swift
    echo "json-fuzz: built in $((SECONDS - started))s"
}

fuzz() {
    # No stack of every allocation (most of ASan's cost on Swift's many small allocations); a
    # report still shows the stack of the bad access.
    export ASAN_OPTIONS="${ASAN_OPTIONS:-malloc_context_size=0}"
    # -max_len: bodies beyond 8 KiB add nothing the parser's loops have not seen; -timeout: an
    # input taking a second is a finding (the parser is linear); -rss_limit_mb: ASan's shadow.
    "$out/json-fuzz" "$out/corpus" "$here/seeds" \
        -dict="$here/json.dict" -max_len=8192 -timeout=5 -rss_limit_mb=4096 \
        -artifact_prefix="$out/artifacts/" -print_final_stats=1 "$@"
}

case "$mode" in
    build) build ;;
    # `build; fuzz`, not `build && fuzz`: bash ignores `set -e` inside a function run as the left
    # side of `&&`, so a failed compile would go on to run a stale or missing binary.
    short) build; fuzz -runs=200000 -max_total_time=180 "$@" ;;
    long) build; fuzz -runs=10000000 "$@" ;;
    run) fuzz "$@" ;;
    *) echo "usage: $0 [short|long|build|run ARGS…]" >&2; exit 2 ;;
esac
