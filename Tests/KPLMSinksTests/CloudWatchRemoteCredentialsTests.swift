import Foundation
import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

/// The container and instance-metadata credentials of the CloudWatch sink,
/// against scripted loopback servers.
final class CloudWatchRemoteCredentialsTests: XCTestCase {
    private func credentialsJSON(_ id: String, expiration: String?, token: String = "SESSION") -> String {
        var fields = [#""Code" : "Success""#, #""Type" : "AWS-HMAC""#, #""AccessKeyId" : "\#(id)""#,
                      #""SecretAccessKey" : "se\/cret+key""#, #""Token" : "\#(token)""#]
        if let expiration { fields.append(#""Expiration" : "\#(expiration)""#) }
        return "{\n  " + fields.joined(separator: ",\n  ") + "\n}"
    }

    private func imdsAnswers(_ server: ScriptedHTTPServer, id: String, expiration: String?) {
        server.answer(.status(200, body: "IMDS-TOKEN"), .status(200, body: "kplm-role\n"),
                      .status(200, body: credentialsJSON(id, expiration: expiration)))
    }

    private func line(_ r: ScriptedHTTPServer.Request) -> String {
        r.head.components(separatedBy: "\r\n").first ?? ""
    }

    func testISO8601() {
        let p = CloudWatchRemoteCredentials.iso8601
        XCTAssertEqual(p("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(p("2015-08-30T12:36:00Z"), 1_440_938_160)
        XCTAssertEqual(p("2000-02-29T23:59:59Z"), 951_868_799)
        XCTAssertEqual(p("2015-08-30T12:36:00.5Z"), 1_440_938_160.5)
        XCTAssertEqual(p("2015-08-30T13:36:00+01:00"), 1_440_938_160)
        XCTAssertEqual(p("2015-08-30T11:36:00-01:00"), 1_440_938_160)
        for bad in ["", "2015-08-30", "2015-08-30T12:36:00", "2015-13-30T12:36:00Z", "2015-08-30T12:36:00ZZ",
                    "2015-08-30T25:36:00Z", "2015-08-30T12:36:00.Z", "2015-08-30T12:36:00+0100", "x015-08-30T12:36:00Z"] {
            XCTAssertNil(p(bad), bad)
        }
    }

    func testJSONValuesAndParsing() throws {
        let v = CloudWatchSink.jsonString
        XCTAssertEqual(v(#"{"A" : "x\/y\"z\\\u0041\n"}"#, "A"), "x/y\"z\\A\n")
        XCTAssertEqual(v(#"{"B":"1","A":"2"}"#, "A"), "2")
        XCTAssertNil(v(#"{"A": 3}"#, "A"))
        XCTAssertNil(v(#"{"A": "unterminated}"#, "A"))
        XCTAssertNil(v(#"{"B": "A"}"#, "A"))
        let fetched = try CloudWatchRemoteCredentials.parse(credentialsJSON("AKID", expiration: "2015-08-30T12:36:00Z"),
                                                            from: "test")
        XCTAssertEqual(fetched.credentials,
                       CloudWatchCredentials(accessKeyId: "AKID", secretAccessKey: "se/cret+key", sessionToken: "SESSION"))
        XCTAssertEqual(fetched.expiration, 1_440_938_160)
        XCTAssertThrowsError(try CloudWatchRemoteCredentials.parse(#"{"Code":"AssumeRoleUnauthorizedAccess"}"#, from: "t"))
        XCTAssertThrowsError(try CloudWatchRemoteCredentials.parse(#"{"AccessKeyId":"A"}"#, from: "t"))
        XCTAssertThrowsError(try CloudWatchRemoteCredentials.parse(#"{"AccessKeyId":"A B","SecretAccessKey":"s"}"#,
                                                                   from: "t"))
    }

    func testAllowedContainerURLs() {
        let ok = CloudWatchRemoteCredentials.isAllowedContainerURL
        for url in ["https://creds.example.com/x", "http://127.0.0.1:8080/creds", "http://127.1.2.3/c",
                    "http://localhost/c", "http://[::1]:9/c", "http://169.254.170.2/v2/credentials/id",
                    "http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials"] {
            XCTAssertTrue(ok(url), url)
        }
        for url in ["http://example.com/c", "http://10.0.0.1/c", "http://128.0.0.1/c", "http://127.0.0/c",
                    "ftp://127.0.0.1/c", "http://127.0.0.1.example.com/c"] {
            XCTAssertFalse(ok(url), url)
        }
    }

    func testInstanceMetadataFlowCachingAndRefresh() throws {
        let imds = try ScriptedHTTPServer(defaultAnswer: .status(500))
        defer { imds.stop() }
        let env = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url("/")]
        let remote = CloudWatchRemoteCredentials(env: { env[$0] })
        let expiration = 1_440_938_160.0   // 2015-08-30T12:36:00Z
        imdsAnswers(imds, id: "AKID1", expiration: "2015-08-30T12:36:00Z")
        let first = try remote.credentials(now: expiration - 3600)
        XCTAssertEqual(first, CloudWatchCredentials(accessKeyId: "AKID1", secretAccessKey: "se/cret+key",
                                                    sessionToken: "SESSION"))
        let r = imds.requests
        XCTAssertEqual(r.map(line), ["PUT /latest/api/token HTTP/1.1",
                                     "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1",
                                     "GET /latest/meta-data/iam/security-credentials/kplm-role HTTP/1.1"])
        XCTAssertEqual(r[0].header("X-aws-ec2-metadata-token-ttl-seconds"), "21600")
        XCTAssertNil(r[0].header("X-aws-ec2-metadata-token"))
        XCTAssertEqual(r[1].header("X-aws-ec2-metadata-token"), "IMDS-TOKEN")
        XCTAssertEqual(r[2].header("X-aws-ec2-metadata-token"), "IMDS-TOKEN")

        // Fresh: served from the cache.
        XCTAssertEqual(try remote.credentials(now: expiration - 301), first)
        XCTAssertEqual(imds.requests.count, 3)
        // Within five minutes of the expiration: fetched again.
        imdsAnswers(imds, id: "AKID2", expiration: "2015-08-30T13:36:00Z")
        XCTAssertEqual(try remote.credentials(now: expiration - 299).accessKeyId, "AKID2")
        XCTAssertEqual(imds.requests.count, 6)
        // A failed refresh keeps using credentials that have not expired ...
        XCTAssertEqual(try remote.credentials(now: expiration + 3600 - 10).accessKeyId, "AKID2")
        XCTAssertEqual(imds.requests.count, 7, "the token request failed (500)")
        // ... but never expired ones.
        XCTAssertThrowsError(try remote.credentials(now: expiration + 3600 + 1)) { error in
            XCTAssertTrue("\(error)".contains("HTTP 500"), "\(error)")
        }
    }

    func testInstanceMetadataWithoutExpirationIsNotCached() throws {
        let imds = try ScriptedHTTPServer(defaultAnswer: .status(500))
        defer { imds.stop() }
        let env = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url()]
        let remote = CloudWatchRemoteCredentials(env: { env[$0] })
        imdsAnswers(imds, id: "A", expiration: nil)
        imdsAnswers(imds, id: "B", expiration: "not a time")
        XCTAssertEqual(try remote.credentials(now: 0).accessKeyId, "A")
        XCTAssertEqual(try remote.credentials(now: 0).accessKeyId, "B")
        XCTAssertThrowsError(try remote.credentials(now: 0))
    }

    func testInstanceMetadataFailures() throws {
        let imds = try ScriptedHTTPServer(defaultAnswer: .status(404))
        defer { imds.stop() }
        let env = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url()]
        let remote = CloudWatchRemoteCredentials(env: { env[$0] })
        // No role attached.
        imds.answer(.status(200, body: "T"), .status(200, body: "\n"))
        XCTAssertThrowsError(try remote.credentials(now: 0)) { XCTAssertTrue("\($0)".contains("no IAM role"), "\($0)") }
        // A role name that would change the path.
        imds.answer(.status(200, body: "T"), .status(200, body: "../x"))
        XCTAssertThrowsError(try remote.credentials(now: 0)) { XCTAssertTrue("\($0)".contains("unusable"), "\($0)") }
        // Disabled: nothing is asked.
        let before = imds.requests.count
        let disabled = CloudWatchRemoteCredentials(env: { (env.merging(["AWS_EC2_METADATA_DISABLED": "TRUE"]) { a, _ in a })[$0] })
        XCTAssertThrowsError(try disabled.credentials(now: 0)) { XCTAssertTrue("\($0)".contains("disabled"), "\($0)") }
        XCTAssertEqual(imds.requests.count, before)
        // Nobody listening: a transport failure, retried AWS_METADATA_SERVICE_NUM_ATTEMPTS times.
        let closed = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1", "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "2",
                      "AWS_METADATA_SERVICE_TIMEOUT": "0.5"]
        XCTAssertThrowsError(try CloudWatchRemoteCredentials(env: { closed[$0] }).credentials(now: 0)) {
            XCTAssertTrue("\($0)".contains("instance metadata service at http://127.0.0.1:1"), "\($0)")
        }
        let badTimeout = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url(), "AWS_METADATA_SERVICE_TIMEOUT": "0"]
        XCTAssertThrowsError(try CloudWatchRemoteCredentials(env: { badTimeout[$0] }).credentials(now: 0))
        // The default endpoints.
        XCTAssertEqual(CloudWatchRemoteCredentials(env: { _ in nil }).instanceMetadataEndpoint, "http://169.254.169.254")
        XCTAssertEqual(CloudWatchRemoteCredentials(env: { $0 == "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE" ? "IPv6" : nil })
                        .instanceMetadataEndpoint, "http://[fd00:ec2::254]")
    }

    private func remote(_ env: [String: String]) -> CloudWatchRemoteCredentials {
        CloudWatchRemoteCredentials(env: { env[$0] })
    }

    func testContainerCredentials() throws {
        let agent = try ScriptedHTTPServer(defaultAnswer: .status(200, body: credentialsJSON("AKIDC", expiration: nil)))
        defer { agent.stop() }
        // Full URI with a token.
        var env = ["AWS_CONTAINER_CREDENTIALS_FULL_URI": agent.url("/v1/credentials"),
                   "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Basic abc",
                   "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1"]
        XCTAssertEqual(try remote(env).credentials(now: 0).accessKeyId, "AKIDC")
        XCTAssertEqual(line(agent.requests[0]), "GET /v1/credentials HTTP/1.1")
        XCTAssertEqual(agent.requests[0].header("Authorization"), "Basic abc")
        // The token file wins over the variable (trailing line end trimmed).
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kplm-token-\(UUID().uuidString)")
        try "Bearer from-file\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = file.path
        _ = try remote(env).credentials(now: 0)
        XCTAssertEqual(agent.requests[1].header("Authorization"), "Bearer from-file")
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = file.path + ".missing"
        XCTAssertThrowsError(try remote(env).credentials(now: 0))
        // A failing agent is an error, not a fall-through to instance metadata.
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] = nil
        agent.answer(.status(403))
        XCTAssertThrowsError(try remote(env).credentials(now: 0)) {
            XCTAssertTrue("\($0)".contains("container credentials endpoint"), "\($0)")
        }
        // A full URI elsewhere is refused.
        let far = ["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://192.0.2.1/creds"]
        XCTAssertThrowsError(try CloudWatchRemoteCredentials(env: { far[$0] }).credentials(now: 0)) {
            XCTAssertTrue("\($0)".contains("neither https"), "\($0)")
        }
        // The relative URI goes to the ECS agent's address.
        let relative = CloudWatchRemoteCredentials(env: { $0 == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" ? "v2/c/id" : nil })
        let request = try XCTUnwrap(try relative.containerRequest())
        XCTAssertEqual(request.0, "http://169.254.170.2/v2/c/id")
        XCTAssertTrue(request.1.isEmpty)
    }

    func testSinkSignsWithInstanceMetadataCredentials() throws {
        let imds = try ScriptedHTTPServer(defaultAnswer: .status(500))
        defer { imds.stop() }
        let cloudWatch = try ScriptedHTTPServer(defaultAnswer: .status(200, body: "{}"))
        defer { cloudWatch.stop() }
        imdsAnswers(imds, id: "AKIDIMDS", expiration: "2999-01-01T00:00:00Z")
        let env = ["AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url(), "HOME": "/nonexistent"]
        let sink = try CloudWatchSink(configuration: .init(region: "us-east-1", endpoint: cloudWatch.url()),
                                      environment: { env[$0] })
        let snapshot = MetricSnapshot(name: "UserRecordsPut", count: 1, sum: 1, min: 1, max: 1, dimensions: [],
                                      windowStart: 0, windowEnd: 1, timestampUnix: Date().timeIntervalSince1970,
                                      namespace: "NS")
        try sink.export([snapshot])
        try sink.export([snapshot])
        XCTAssertEqual(imds.requests.count, 3, "fetched once, then cached")
        XCTAssertEqual(cloudWatch.requests.count, 2)
        for r in cloudWatch.requests {
            XCTAssertEqual(r.header("X-Amz-Security-Token"), "SESSION")
            XCTAssertTrue(r.header("Authorization")?.contains("Credential=AKIDIMDS/") == true)
        }
        // With no source at all, the error says where the sink looked.
        let none = ["HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"]
        let lost = try CloudWatchSink(configuration: .init(region: "us-east-1", endpoint: cloudWatch.url()),
                                      environment: { none[$0] })
        XCTAssertThrowsError(try lost.export([snapshot])) { error in
            XCTAssertEqual((error as? MetricsError)?.code, .sinkFailed)
            XCTAssertTrue("\(error)".contains("no AWS credentials found") && "\(error)".contains("disabled"), "\(error)")
        }
    }
}
