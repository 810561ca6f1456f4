import XCTest
import KPLMTestSupport
@testable import KPLM
@testable import KPLMSinks

/// The SigV4 signer against the published aws-sig-v4-test-suite vectors
/// (credentials AKIDEXAMPLE, region us-east-1, service "service", 20150830T123600Z),
/// and a CloudWatch-shaped request signed by botocore's SigV4Auth.
final class SigV4Tests: XCTestCase {
    private let key = "AKIDEXAMPLE"
    private let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    private let date = "20150830T123600Z"
    private let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    private func sign(_ method: String, query: String = "", extra: [(name: String, value: String)] = [],
                      body: String = "") -> SigV4.Signature {
        SigV4.sign(method: method, path: "/", query: query,
                   headers: [("Host", "example.amazonaws.com"), ("X-Amz-Date", date)] + extra,
                   payload: Array(body.utf8), accessKeyId: key, secretAccessKey: secret, region: "us-east-1",
                   service: "service", amzDate: date)
    }

    private func check(_ s: SigV4.Signature, canonical: String, stringToSignHash: String, signedHeaders: String,
                       signature: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(s.canonicalRequest, canonical, file: file, line: line)
        XCTAssertEqual(s.stringToSign, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                       + stringToSignHash, file: file, line: line)
        XCTAssertEqual(s.authorization, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                       + "SignedHeaders=\(signedHeaders), Signature=\(signature)", file: file, line: line)
    }

    func testGetVanilla() {
        check(sign("GET"),
              canonical: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(emptyHash)",
              stringToSignHash: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
              signedHeaders: "host;x-amz-date",
              signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    func testPostVanilla() {
        check(sign("POST"),
              canonical: "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(emptyHash)",
              stringToSignHash: "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
              signedHeaders: "host;x-amz-date",
              signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
    }

    func testGetVanillaQueryOrderKeyCase() {
        check(sign("GET", query: "Param2=value2&Param1=value1"),
              canonical: "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                  + "host;x-amz-date\n\(emptyHash)",
              stringToSignHash: "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
              signedHeaders: "host;x-amz-date",
              signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    func testPostXWWWFormURLEncoded() {
        check(sign("POST", extra: [("Content-Type", "application/x-www-form-urlencoded")], body: "Param1=value1"),
              canonical: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
                  + "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
                  + "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
              stringToSignHash: "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
              signedHeaders: "content-type;host;x-amz-date",
              signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    /// Header canonicalisation: names lowercased and sorted, values trimmed
    /// with inner blank runs collapsed, repeated names joined with ",".
    func testCanonicalHeaders() {
        let c = SigV4.canonicalHeaders([("My-Header1", "  value1  a   b "), ("Host", "h"), ("my-header1", "value2")])
        XCTAssertEqual(c.block, "host:h\nmy-header1:value1 a b,value2\n")
        XCTAssertEqual(c.signed, "host;my-header1")
        XCTAssertEqual(SigV4.uriEncode("a b/~c*", keepSlash: true), "a%20b/~c%2A")
        XCTAssertEqual(SigV4.uriEncode("a/b"), "a%2Fb")
    }

    /// A PutMetricData-shaped request (session token, gzip, a port in the
    /// Host header) signed by botocore's SigV4Auth (service monitoring,
    /// region eu-west-1).
    func testCloudWatchRequestMatchesBotocore() {
        let s = SigV4.sign(method: "POST", path: "/",
                           headers: [("Host", "127.0.0.1:5000"), ("X-Amz-Date", date),
                                     ("X-Amz-Target", "GraniteServiceVersion20100801.PutMetricData"),
                                     ("Content-Type", "application/x-amz-json-1.0"), ("Content-Encoding", "gzip"),
                                     ("X-Amz-Security-Token", "TOKEN/abc+=")],
                           payload: Array("{\"Namespace\":\"N\",\"MetricData\":[]}".utf8), accessKeyId: key,
                           secretAccessKey: secret, region: "eu-west-1", service: "monitoring", amzDate: date)
        XCTAssertEqual(s.canonicalRequest, "POST\n/\n\ncontent-encoding:gzip\ncontent-type:application/x-amz-json-1.0\n"
                       + "host:127.0.0.1:5000\nx-amz-date:20150830T123600Z\nx-amz-security-token:TOKEN/abc+=\n"
                       + "x-amz-target:GraniteServiceVersion20100801.PutMetricData\n\n"
                       + "content-encoding;content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n"
                       + "7d510858b06dd55d7c2c68dec59eeb3f058cdb981676a9ff6b85cfa9554d5db1")
        XCTAssertEqual(s.signature, "eb6ad7fdcfc7aa6505faa3958176269f3a993cc14269dc967b224020944358a5")
    }

    func testHashesAndDate() {
        XCTAssertEqual(SigV4.hex(SigV4.sha256(Array("abc".utf8))),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // RFC 4231 test case 2.
        XCTAssertEqual(SigV4.hex(SigV4.hmac(Array("Jefe".utf8), Array("what do ya want for nothing?".utf8))),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        XCTAssertEqual(SigV4.amzDate(1_440_938_160), "20150830T123600Z")
        XCTAssertEqual(SigV4.amzDate(0.9), "19700101T000000Z")
    }
}
