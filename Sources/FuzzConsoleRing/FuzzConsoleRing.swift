//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import FuzzHarnesses

// libFuzzer entry point: scripts/fuzz.sh SECONDS FuzzConsoleRing (see docs/TESTING.md).
// A plain `swift build` links this as an empty program.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConsoleRing(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // SAFETY: libFuzzer guarantees `size` readable bytes at `data` for this call.
    ConsoleRingFuzzHarness.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
