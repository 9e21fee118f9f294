import Foundation
import XCTest

import Vexil

/// Creating and closing many clients leaks nothing: the resident memory after 10,000 clients
/// stays where it was after the first 1,000.
final class LifecycleTests: XCTestCase {
    func testTenThousandClientsWithFlatMemory() async throws {
        let bootstrap = try ClientTests.bootstrapFile(ClientTests.ruleset)
        let alice = Context.user("alice").build()
        var options = VexilOptions(sdkKey: "vxl-server-lifecycle")
        options.offline = true
        options.bootstrapFile = bootstrap

        func cycle(_ count: Int) async throws {
            for i in 0..<count {
                let client = try VexilClient(options: options)
                let changes = client.changes()  // a listener to release too
                XCTAssertEqual(client.stringVariation("banner", context: alice, default: "x"), "hello")
                if i % 2 == 0 {
                    await client.close()  // explicit close
                }  // else: released here, closed by deinit
                _ = changes
            }
        }

        try await cycle(1_000)
        let warmed = residentBytes()
        try await cycle(9_000)
        let after = residentBytes()
        let growth = after - warmed
        print("lifecycle: resident \(warmed / 1_048_576) MiB after 1,000 clients, \(after / 1_048_576) MiB after 10,000")
        XCTAssertLessThan(growth, 16 * 1_048_576, "memory grew by \(growth / 1024) KiB over 9,000 clients")
    }
}

/// Resident set size of this process (Linux: /proc/self/statm).
func residentBytes() -> Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = statm.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}
