import Foundation
import XCTest
@testable import KPLM
@testable import KPLMSinks

/// SPEC §10: credentials from every source pass the config's checks
/// (printable ASCII, no blanks, so no CR or LF that could start a header);
/// a bad one fails with a message naming its source, never its value.
final class CloudWatchCredentialChecksTests: XCTestCase {
    private let secretPart = "SECRETPART"

    private func assertRefused(_ body: () throws -> CloudWatchCredentials, naming source: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? MetricsError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(error.code, .sinkFailed, file: file, line: line)
            XCTAssertTrue(error.message.contains(source), "\(error.message)", file: file, line: line)
            XCTAssertFalse(error.message.contains(secretPart), "the value leaked: \(error.message)",
                           file: file, line: line)
        }
    }

    func testTheEnvironmentCannotInjectAHeader() {
        for (name, value) in [("AWS_SESSION_TOKEN", "TOK\(secretPart)\r\nX-Injected: yes"),
                              ("AWS_ACCESS_KEY_ID", "AKID\(secretPart)\n"),
                              ("AWS_SECRET_ACCESS_KEY", "se cret\(secretPart)")] {
            var values = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "tok"]
            values[name] = value
            let env = values
            assertRefused({ try CloudWatchEnvironment.credentials(explicit: nil, profile: nil, env: { env[$0] }) },
                          naming: "the environment")
        }
        // Clean values still pass.
        let env = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "se/cret+key", "AWS_SESSION_TOKEN": "t=="]
        XCTAssertEqual(try CloudWatchEnvironment.credentials(explicit: nil, profile: nil, env: { env[$0] }),
                       CloudWatchCredentials(accessKeyId: "AKID", secretAccessKey: "se/cret+key", sessionToken: "t=="))
    }

    func testALoneCRInTheCredentialsFileIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kplm-cred-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("credentials").path
        try "[default]\naws_access_key_id = AKID\naws_secret_access_key = s\r\(secretPart)\naws_session_token = t\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let env = ["AWS_SHARED_CREDENTIALS_FILE": path, "AWS_CONFIG_FILE": dir.path + "/none", "HOME": dir.path]
        assertRefused({ try CloudWatchEnvironment.credentials(explicit: nil, profile: nil, env: { env[$0] }) },
                      naming: "profile \"default\" of \(path)")
    }

    func testAMetadataAnswerCannotInjectAHeader() {
        let json = #"{"Code": "Success", "AccessKeyId": "AKID", "SecretAccessKey": "s", "Token": "T\#(secretPart)\r\nX-Injected: yes"}"#
        XCTAssertThrowsError(try CloudWatchRemoteCredentials.parse(json, from: "the instance metadata service")) { error in
            let message = (error as? MetricsError)?.message ?? "\(error)"
            XCTAssertTrue(message.contains("the instance metadata service"), message)
            XCTAssertFalse(message.contains(self.secretPart), message)
        }
    }
}
