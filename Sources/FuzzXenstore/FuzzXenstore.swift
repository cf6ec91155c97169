//===----------------------------------------------------------------------===//
//
// This source file is part of the Conch open source project
//
// Licensed under Apache License v2.0
//
//===----------------------------------------------------------------------===//

import FuzzHarnesses

// libFuzzer entry point. Build and run (see docs/TESTING.md):
//   swift build --sanitize=fuzzer --sanitize=address --product FuzzXenstore
//   SWIFT_BACKTRACE=enable=no .build/debug/FuzzXenstore FuzzTesting/Corpus/xenstore
// A plain `swift build` links this as an empty program.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzXenstore(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // SAFETY: libFuzzer guarantees `size` readable bytes at `data` for this call.
    XenstoreFuzzHarness.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
