import Foundation
import XCTest

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A real `vexil-server` on free loopback ports with its own SQLite data directory, as
/// conformance/run starts it. The binaries come from `VEXIL_BIN_DIR` (the cargo target's
/// `debug` folder, where `vexil-server` and the `vexil` admin CLI are built); sdk-swift/ci.sh
/// sets it.
final class TestServer {
    let workdir: URL
    let port: UInt16
    let httpPort: UInt16
    let adminToken: String
    let serverKey: String
    let mobileKey: String
    private let binDir: String
    private var process: Process?

    var endpoint: String { "http://127.0.0.1:\(port)" }

    init() throws {
        guard let binDir = ProcessInfo.processInfo.environment["VEXIL_BIN_DIR"] else {
            throw TestServerError("VEXIL_BIN_DIR is not set: run the tests through sdk-swift/ci.sh")
        }
        self.binDir = binDir
        workdir = FileManager.default.temporaryDirectory.appendingPathComponent("vexil-swift-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: workdir, withIntermediateDirectories: true)
        port = try freePort()
        httpPort = try freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(binDir)/vexil-server")
        process.arguments = [
            "--listen", "127.0.0.1:\(port)", "--http-listen", "127.0.0.1:\(httpPort)",
            "--data-dir", workdir.appendingPathComponent("data").path,
            "--heartbeat-interval", "0.5", "--version-check-interval", "0.5",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date(timeIntervalSinceNow: 30)
        while (try? httpGet(port: httpPort, path: "/readyz")) == nil {
            if Date() > deadline || !process.isRunning {
                process.terminate()
                throw TestServerError("vexil-server did not become ready")
            }
            usleep(50_000)
        }
        let credentials = try JSONSerialization.jsonObject(
            with: Data(contentsOf: workdir.appendingPathComponent("data/credentials.json"))) as? [String: Any]
        guard let token = (credentials?["admin_token"] as? [String: Any])?["token"] as? String,
            let keys = (credentials?["sdk_keys"] as? [String: Any])?["production"] as? [String: Any],
            let server = keys["server"] as? String, let mobile = keys["mobile"] as? String
        else { throw TestServerError("credentials.json: unexpected content") }
        adminToken = token
        serverKey = server
        mobileKey = mobile
    }

    deinit { stop() }

    func stop() {
        if let process, process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        process = nil
        try? FileManager.default.removeItem(at: workdir)
    }

    /// Runs the `vexil` admin CLI against this server (production environment).
    func cli(_ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(binDir)/vexil")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["VEXIL_SERVER"] = endpoint
        environment["VEXIL_TOKEN"] = adminToken
        environment["VEXIL_ENVIRONMENT"] = "production"
        process.environment = environment
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw TestServerError("vexil \(arguments.joined(separator: " ")): \(message)")
        }
    }

    /// Imports flags (JSON objects in the form of conformance/SCHEMA.md).
    func importFlags(_ flags: [[String: Any]]) throws {
        let file = workdir.appendingPathComponent("import-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: ["flags": flags, "segments": []]).write(to: file)
        try cli("import", file.path)
    }

    /// The value of a Prometheus metric line starting with `prefix` (0 when absent).
    func metric(_ prefix: String) throws -> Double {
        let body = try httpGet(port: httpPort, path: "/metrics")
        for line in body.split(separator: "\n") where line.hasPrefix(prefix + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }
}

struct TestServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A free TCP port on the loopback interface.
func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestServerError("socket failed") }
    defer { close(fd) }
    var address = loopback(port: 0)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestServerError("bind failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return UInt16(bigEndian: address.sin_port)
}

private func loopback(port: UInt16) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return address
}

/// A plain HTTP/1.0 GET on loopback; the body, or an error unless the status is 200.
func httpGet(port: UInt16, path: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestServerError("socket failed") }
    defer { close(fd) }
    var address = loopback(port: port)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw TestServerError("connect failed") }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard send(fd, request, request.count, 0) == request.count else { throw TestServerError("send failed") }
    var response = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response.append(contentsOf: buffer[0..<n])
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.hasPrefix("HTTP/1.0 200") || text.hasPrefix("HTTP/1.1 200") else {
        throw TestServerError("GET \(path): \(text.prefix(40))")
    }
    guard let split = text.range(of: "\r\n\r\n") else { return "" }
    return String(text[split.upperBound...])
}
