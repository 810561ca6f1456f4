// The whole C++ API of kplm.hpp against the library: every wrapper function
// is reached at least once, values go through to the C API and back, and
// failures arrive as kplm::Error carrying the kplm_status.
#include "cpp_test.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

// Snapshots and events a FunctionSink received, copied.
struct Received {
    std::mutex lock;
    std::vector<std::vector<kplm::Snapshot>> batches;
    std::vector<std::string> events;
};

std::shared_ptr<kplm::FunctionSink> recording_sink(Received &r, bool eventful) {
    kplm::FunctionSink::RecordFn on_record = nullptr;
    if (eventful)
        on_record = [&r](const kplm::EventView &e) {
            std::lock_guard<std::mutex> g(r.lock);
            std::string text(e.name());
            for (std::size_t i = 0; i < e.dimension_count(); i++)
                text += "|" + std::string(e.dimension(i).first) + "=" + std::string(e.dimension(i).second);
            text += "=" + std::to_string(e.value());
            CHECK(e.timestamp() >= 0 && e.raw().name == e.name().data());
            r.events.push_back(text);
        };
    return std::make_shared<kplm::FunctionSink>(
        [&r](const kplm::Batch &batch) {
            std::lock_guard<std::mutex> g(r.lock);
            std::vector<kplm::Snapshot> copy;
            for (kplm::SnapshotView s : batch) copy.push_back(kplm::Snapshot::from(s));
            r.batches.push_back(std::move(copy));
        },
        on_record);
}

const kplm::Snapshot *find(const std::vector<kplm::Snapshot> &v, const std::string &name) {
    for (const auto &s : v)
        if (s.name == name) return &s;
    return nullptr;
}

void helpers() {
    CHECK_EQ(kplm::version(), std::string(kplm_version()));
    CHECK_EQ(kplm::status_string(KPLM_EINVAL), std::string(kplm_status_string(KPLM_EINVAL)));
    CHECK(kplm::metric_unit(KPLM_METRIC_USER_RECORDS_DATA_PUT) == kplm::Unit::Bytes);
    CHECK(kplm::metric_unit(std::string("BufferingTime")) == kplm::Unit::Milliseconds);
    CHECK(kplm::metric_unit("Mine") == kplm::Unit::None);
    CHECK(kplm::metric_level("UserRecordsPut") == kplm::Level::Summary);
    CHECK(kplm::metric_level(std::string("UserRecordsDataPut")) == kplm::Level::Detailed);
    CHECK_EQ(std::string(kplm::unit_name(kplm::Unit::Count)), std::string("Count"));
    CHECK_EQ(kplm::cumulative, 0u);
    kplm::Error e(KPLM_ELIMIT, "ctx");
    CHECK(e.status() == KPLM_ELIMIT);
    CHECK_EQ(std::string(e.what()), std::string("ctx: ") + kplm_status_string(KPLM_ELIMIT));
}

void config_errors() {
    CHECK_THROWS_STATUS(kplm::Manager(kplm::Config().window_seconds(0)), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::Manager(kplm::Config().max_metrics(0)), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::Manager(kplm::Config().export_timeout(std::chrono::milliseconds(0))), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::Manager(kplm::Config().upload_interval(std::chrono::milliseconds(-1))), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::Manager(kplm::Config().granularity(static_cast<kplm::Granularity>(9))), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::Manager(kplm::Config().metric_namespace("")), KPLM_EINVAL);
    kplm::Config c = kplm::Config().level(kplm::Level::Summary).window_seconds(5).max_metrics(7)
                         .export_timeout(std::chrono::seconds(2)).granularity(kplm::Granularity::Shard)
                         .kpl_level_filter(true).metric_namespace("NS").clock([] { return 1.0; });
    kplm_config raw = c.raw();
    CHECK(raw.level == KPLM_LEVEL_SUMMARY && raw.window_seconds == 5 && raw.max_metrics == 7);
    CHECK(raw.export_timeout_ms == 2000 && raw.granularity == KPLM_GRANULARITY_SHARD);
    CHECK(raw.kpl_level_filter == 1 && std::string(raw.metric_namespace) == "NS");
    CHECK(c.clock_fn() && (*c.clock_fn())() == 1.0);
}

void lifecycle_puts_and_queries() {
    Received r;
    double t = 100.0;
    kplm::Manager m(kplm::Config().level(kplm::Level::Detailed).upload_interval(std::chrono::minutes(10))
                        .window_seconds(10).max_metrics(3).clock([&t] { return t; }));
    CHECK(m.raw() != nullptr);
    CHECK_EQ(m.metric_namespace(), std::string("KinesisProducerLibrary"));
    CHECK_THROWS_STATUS(m.flush(), KPLM_ESTATE);  // before start
    CHECK(m.try_flush() == KPLM_ESTATE);
    CHECK_THROWS_STATUS(m.set_sink(std::shared_ptr<kplm::Sink>()), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.set_sink(kplm::BuiltinSink()), KPLM_EINVAL);
    m.set_sink(recording_sink(r, true));
    m.start();
    CHECK_THROWS_STATUS(m.start(), KPLM_ESTATE);

    m.put("UserRecordsPut", 2.0, "orders", "shardId-1");
    m.put(std::string("UserRecordsPut"), 3.0, std::string("orders"), std::string("shardId-1"));
    CHECK(m.try_put("ErrorsByCode", 1.0, "orders", nullptr, "Throttled") == KPLM_OK);
    kplm::Metric bytes = m.metric("UserRecordsDataPut", "orders");
    CHECK(bytes && bytes.raw() != nullptr);
    bytes.put(100);
    CHECK(bytes.try_put(300) == KPLM_OK);
    kplm::Metric same = m.metric(std::string("UserRecordsDataPut"), std::string("orders"));
    CHECK(same.raw() == bytes.raw());
    CHECK(!kplm::Metric());

    // Errors carry the status.
    CHECK_THROWS_STATUS(m.put("", 1.0), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.put("X", std::nan("")), KPLM_EINVAL);
    CHECK_THROWS_STATUS(bytes.put(std::numeric_limits<double>::infinity()), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.metric(""), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::Metric().put(), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.put("FourthKey", 1.0), KPLM_ELIMIT);  // max_metrics 3
    CHECK(m.try_put("FourthKey") == KPLM_ELIMIT);
    CHECK_THROWS_STATUS(m.metric("FourthKey"), KPLM_ELIMIT);
    CHECK_THROWS_STATUS(m.add_dimension("Env", "prod", kplm::Granularity::Global), KPLM_ESTATE);

    // Queries.
    kplm::Statistics q = m.query("UserRecordsPut", "orders", "shardId-1");
    CHECK_EQ(q.count, 2u);
    CHECK_EQ(q.sum, 5.0);
    CHECK_EQ(q.min, 2.0);
    CHECK_EQ(q.max, 3.0);
    CHECK_EQ(q.average(), 2.5);
    q = m.query(std::string("UserRecordsDataPut"), std::string("orders"), {}, {}, 5);
    CHECK_EQ(q.count, 2u);
    CHECK_EQ(q.sum, 400.0);
    CHECK_EQ(m.query_name("UserRecordsPut", 1).count, 2u);
    CHECK_EQ(m.query_name(KPLM_METRIC_REFUSED).count, 3u);
    CHECK_EQ(m.query_name("Nothing").count, 0u);
    kplm::Statistics out;
    CHECK(m.try_query(out, "ErrorsByCode", "orders", nullptr, "Throttled") == KPLM_OK && out.count == 1);
    CHECK(m.try_query(out, "ErrorsByCode", nullptr, nullptr, nullptr, 11) == KPLM_EINVAL);  // beyond the window
    CHECK_THROWS_STATUS(m.query("UserRecordsPut", nullptr, nullptr, nullptr, 11), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.query_name("", 1), KPLM_EINVAL);
    CHECK(m.try_query_name(out, "UserRecordsDataPut") == KPLM_OK && out.max == 300.0);
    CHECK(m.try_query_name(out, nullptr) == KPLM_EINVAL);

    // Snapshots: owning copies, a visit that stops, one that throws.
    std::vector<kplm::Snapshot> window = m.snapshots();
    CHECK_EQ(window.size(), 4u);  // ErrorsByCode, KplmMetricsRefused, UserRecordsDataPut, UserRecordsPut
    const kplm::Snapshot *data = find(window, "UserRecordsDataPut");
    CHECK(data && data->count == 2 && data->dimensions.size() == 1);
    CHECK(data->dimensions[0].first == "stream" && data->dimensions[0].second == "orders");
    CHECK_EQ(data->window_end, 101.0);
    int visits = 0;
    m.for_each_snapshot([&visits](const kplm::SnapshotView &) { return ++visits < 2; });
    CHECK_EQ(visits, 2);
    visits = 0;
    m.for_each_snapshot([&visits](const kplm::SnapshotView &) { visits++; });
    CHECK_EQ(visits, 4);
    bool rethrown = false;
    try {
        m.for_each_snapshot([](const kplm::SnapshotView &) { throw std::runtime_error("visit"); });
    } catch (const std::runtime_error &e) {
        rethrown = std::string(e.what()) == "visit";
    }
    CHECK(rethrown);

    // Flush: everything reaches the sink.
    t = 101.0;
    m.flush();
    CHECK(m.try_flush() == KPLM_OK);  // nothing new
    {
        std::lock_guard<std::mutex> g(r.lock);
        CHECK_EQ(r.batches.size(), 1u);
        CHECK_EQ(r.batches[0].size(), 4u);
        const kplm::Snapshot *puts = find(r.batches[0], "UserRecordsPut");
        CHECK(puts && puts->count == 2 && puts->sum == 5.0 && puts->dimensions.size() == 2);
        CHECK(puts->timestamp_unix > 1e9 && puts->window_start == 100.0);
        CHECK_EQ(r.events.size(), 5u);  // the accepted puts only
        CHECK_EQ(r.events[0], std::string("UserRecordsPut|stream=orders|shard=shardId-1=2.000000"));
    }
    m.close();
    CHECK(m.try_close() == KPLM_OK);  // idempotent
    CHECK_THROWS_STATUS(m.put("UserRecordsPut"), KPLM_ECLOSED);
    CHECK(m.try_put("UserRecordsPut") == KPLM_ECLOSED);
    CHECK_THROWS_STATUS(m.flush(), KPLM_ECLOSED);
    CHECK_EQ(m.snapshots().size(), 4u);  // the retained window

    // A moved-from manager refuses everything with KPLM_EINVAL.
    kplm::Manager other(std::move(m));
    CHECK_THROWS_STATUS(m.start(), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.put("X"), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.metric_namespace(), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.query_name("X"), KPLM_EINVAL);
    CHECK(m.raw() == nullptr && other.raw() != nullptr);
}

// A batch and its views, inside the export callback.
void batch_and_views() {
    std::atomic<int> checked{0};
    auto sink = std::make_shared<kplm::FunctionSink>([&checked](const kplm::Batch &b) {
        CHECK(!b.empty() && b.size() == 2 && b.data() != nullptr);
        std::size_t n = 0;
        for (auto it = b.begin(); it != b.end(); ++it) n++;
        CHECK(n == 2 && b.begin() == b.begin() && (*b.begin()).name() == "A");
        kplm::SnapshotView v = b[1];
        CHECK(v.name() == "B" && v.count() == 2 && v.sum() == 6 && v.min() == 2 && v.max() == 4);
        CHECK(v.average() == 3 && v.window_start() == 10 && v.window_end() == 11 && v.timestamp_unix() > 1e9);
        CHECK(v.dimension_count() == 2 && v.dimension(0).first == "stream" && v.dimension(0).second == "s");
        CHECK(v.dimension("shard") == "sh" && v.dimension("error_code").empty() && &v.raw() == b.data() + 1);
        checked++;
    });
    CHECK_THROWS_STATUS(kplm::FunctionSink(nullptr), KPLM_EINVAL);
    kplm::Manager m(kplm::Config().level(kplm::Level::Detailed).clock([] { return 10.5; }));
    m.set_sink(sink);
    m.start();
    m.put("A");
    m.put("B", 2, "s", "sh");
    m.put("B", 4, "s", "sh");
    m.flush();
    CHECK_EQ(checked.load(), 1);
}

// Sink callbacks that throw: open fails start, export refuses the batch
// (kept and offered again), record and close are swallowed.
struct Moody : kplm::Sink {
    int fail_open = 1, fail_export = 1, exports = 0;
    std::uint64_t exported = 0;
    void open() override {
        if (fail_open-- > 0) throw std::runtime_error("no");
    }
    void export_snapshots(const kplm::Batch &b) override {
        exports++;
        if (fail_export-- > 0) throw std::runtime_error("later");
        for (kplm::SnapshotView s : b) exported += s.count();
    }
    bool eventful() const override { return true; }
    void record(const kplm::EventView &) override { throw std::runtime_error("ignored"); }
    void close() override { throw std::runtime_error("ignored too"); }
};

void throwing_sink_callbacks() {
    auto sink = std::make_shared<Moody>();
    kplm::Manager m(kplm::Config().level(kplm::Level::Detailed));
    m.set_sink(sink);
    CHECK_THROWS_STATUS(m.start(), KPLM_ESINK);
    m.start();
    m.put("UserRecordsPut");
    CHECK_THROWS_STATUS(m.flush(), KPLM_ESINK);
    m.put("UserRecordsPut");
    m.flush();
    CHECK_EQ(sink->exports, 2);
    CHECK_EQ(sink->exported, 2u);  // nothing lost
    m.close();
    // The default Sink: open, record and close do nothing.
    struct Plain : kplm::Sink {
        void export_snapshots(const kplm::Batch &) override {}
    } plain;
    plain.open();
    plain.close();
    CHECK(!plain.eventful());
}

// Granularity, extra dimensions, the KPL level filter and the namespace.
void kpl_output_options() {
    kplm::Manager m(kplm::Config().level(kplm::Level::Summary).granularity(kplm::Granularity::Stream)
                        .kpl_level_filter(true).metric_namespace("MyApp"));
    CHECK_EQ(m.metric_namespace(), std::string("MyApp"));
    m.add_dimension("Env", "prod", kplm::Granularity::Global);
    CHECK_THROWS_STATUS(m.add_dimension("", "x", kplm::Granularity::Global), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.add_dimension("Env", "x", kplm::Granularity::None), KPLM_EINVAL);
    m.put("UserRecordsPut", 1, "orders");
    m.put("UserRecordsDataPut", 10, "orders");  // Detailed: filtered out at Summary
    std::vector<kplm::Snapshot> lines = m.snapshots();
    CHECK_EQ(lines.size(), 2u);  // UserRecordsPut: the global line and the StreamName one
    for (const auto &l : lines) {
        CHECK(l.name == "UserRecordsPut");
        CHECK(!l.dimensions.empty() && l.dimensions[0].first == "Env" && l.dimensions[0].second == "prod");
    }
    CHECK(lines[1].dimensions.size() == 2 && lines[1].dimensions[1].first == KPLM_DIMENSION_STREAM_NAME);
}

void cloudwatch_bodies() {
    kplm::Manager m(kplm::Config().level(kplm::Level::Detailed));
    m.put("UserRecordsPut", 1, "orders");
    m.put("UserRecordsDataPut", 512, "orders");
    std::vector<kplm::Snapshot> snaps = m.snapshots();
    CHECK_EQ(snaps.size(), 2u);
    std::string bodies;
    std::size_t datums = 0;
    double now = snaps[0].timestamp_unix;
    std::size_t dropped = kplm::cloudwatch_requests(snaps, "MyApp", now, [&](std::string_view body, std::size_t n) {
        bodies += body;
        datums += n;
    });
    CHECK_EQ(dropped, 0u);
    CHECK_EQ(datums, 2u);
    CHECK(bodies.find("\"Namespace\":\"MyApp\"") != std::string::npos);
    CHECK(bodies.find("\"Unit\":\"Bytes\"") != std::string::npos);
    CHECK(bodies.find("StreamName") != std::string::npos);
    CHECK_THROWS_STATUS(kplm::cloudwatch_requests(snaps, "AWS/Kinesis", now, [](std::string_view, std::size_t) {}),
                        KPLM_EINVAL);
    bool rethrown = false;
    try {
        kplm::cloudwatch_requests(snaps, "MyApp", now,
                                  [](std::string_view, std::size_t) { throw std::out_of_range("emit"); });
    } catch (const std::out_of_range &) {
        rethrown = true;
    }
    CHECK(rethrown);

    // From an export callback's batch (the wall clock of now).
    std::atomic<std::size_t> from_batch{0};
    auto sink = std::make_shared<kplm::FunctionSink>([&from_batch](const kplm::Batch &b) {
        kplm::cloudwatch_requests(b, "KinesisProducerLibrary",
                                  [&from_batch](std::string_view, std::size_t n) { from_batch += n; });
    });
    kplm::Manager e(kplm::Config().level(kplm::Level::Detailed));
    e.set_sink(sink);
    e.start();
    e.put("UserRecordsPut", 1, "orders");
    e.flush();
    CHECK_EQ(from_batch.load(), 1u);
}

int udp_socket(std::uint16_t &port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    CHECK(getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    return fd;
}

void builtin_sinks() {
    // DogStatsD: every setter, checked on the wire.
    std::uint16_t port = 0;
    int fd = udp_socket(port);
    {
        kplm::Manager m(kplm::Config().level(kplm::Level::Detailed).clock([] { return 5.0; }));
        m.set_sink(kplm::make_sink(kplm::DogStatsDConfig().host("127.0.0.1").port(port).prefix("kpl")
                                       .tags({"env:CI"}).tag("team:a").max_datagram_bytes(1400)));
        m.start();
        m.put("UserRecordsPut", 2, "orders");
        m.flush();
        pollfd p{fd, POLLIN, 0};
        CHECK(poll(&p, 1, 5000) == 1);
        char buf[2048];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        CHECK(n > 0);
        buf[n] = 0;
        CHECK_EQ(std::string(buf).substr(0, std::string(buf).find('\n')),
                 std::string("kpl.UserRecordsPut.count:1|c|#env:CI,team:a,stream:orders"));
    }
    close(fd);

    // EMF into a file, under its namespace.
    char path[] = "/tmp/kplm_cpp_emf_XXXXXX";
    int tmp = mkstemp(path);
    CHECK(tmp >= 0);
    close(tmp);
    {
        kplm::Manager m(kplm::Config().level(kplm::Level::Detailed));
        m.set_sink(kplm::make_sink(kplm::EmfConfig().destination(kplm::EmfDestination::File).path(path)
                                       .cw_namespace("EmfNs").host("127.0.0.1").port(25888)
                                       .timeout(std::chrono::seconds(1))));
        m.start();
        m.put("UserRecordsPut", 1, "orders");
        m.close();
    }
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    unlink(path);
    CHECK(text.find("\"Namespace\":\"EmfNs\"") != std::string::npos);
    CHECK(text.find("UserRecordsPut") != std::string::npos);

    // The others: built (every setter), then released unused or set.
    kplm::BuiltinSink prom = kplm::make_sink(kplm::PrometheusConfig().address("127.0.0.1").port(9464).prefix(""));
    kplm::BuiltinSink otlp = kplm::make_sink(kplm::OtlpConfig().endpoint("http://127.0.0.1:4318/v1/metrics")
                                                 .timeout(std::chrono::seconds(1)).max_retries(1)
                                                 .service_name("svc").headers({"X-A: 1"}).header("X-B: 2")
                                                 .compression(kplm::OtlpCompression::Gzip));
    kplm::BuiltinSink cw = kplm::make_sink(kplm::CloudWatchConfig().region("us-east-1")
                                               .endpoint("http://127.0.0.1:1").cw_namespace("Cw")
                                               .credentials("AKID", "SECRET", std::string("TOKEN"))
                                               .profile("default").timeout(std::chrono::seconds(1))
                                               .max_retries(0));
    kplm::BuiltinSink cw2 = kplm::make_sink(kplm::CloudWatchConfig().region("eu-west-1").access_key_id("A")
                                                .secret_access_key("S").session_token("T"));
    CHECK(prom && otlp && cw && cw2);
    CHECK(prom.raw().export_snapshots != nullptr);
    kplm_sink taken = cw2.release();  // the caller's to release now
    CHECK(!cw2);
    kplm_sink_release(&taken);
    kplm::Manager m(kplm::Config().level(kplm::Level::Detailed));
    m.set_sink(std::move(otlp));

    // Refused configs: kplm::Error with KPLM_EINVAL.
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::DogStatsDConfig().port(0)), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::DogStatsDConfig().tag("")), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::EmfConfig().destination(kplm::EmfDestination::File)), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::EmfConfig().destination(kplm::EmfDestination::Udp).port(0)),
                        KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::PrometheusConfig().port(0)), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::OtlpConfig().endpoint("ftp://x/v1/metrics")), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::OtlpConfig().timeout(std::chrono::milliseconds(0))), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::OtlpConfig().header("Host: x")), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::OtlpConfig().compression(static_cast<kplm::OtlpCompression>(7))),
                        KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::CloudWatchConfig().region("Not A Region")), KPLM_EINVAL);
    CHECK_THROWS_STATUS(kplm::make_sink(kplm::CloudWatchConfig().region("us-east-1").access_key_id("only")),
                        KPLM_EINVAL);
}

}  // namespace

// Distribution metrics: set before start, quantiles within the accuracy.
void distributions() {
    double t = 100.0;
    kplm::Manager m(kplm::Config().level(kplm::Level::Detailed).upload_interval(std::chrono::minutes(10))
                        .window_seconds(10).clock([&t] { return t; }));
    m.set_distribution("RequestTime", 0.01);
    CHECK_THROWS_STATUS(m.set_distribution("X", 0.2), KPLM_EINVAL);
    CHECK(std::isnan(m.quantile("RequestTime", 0.5, "orders")));
    for (int i = 1; i <= 1000; i++) m.put("RequestTime", i, "orders");
    double p99 = m.quantile("RequestTime", 0.99, "orders");
    CHECK(std::fabs(p99 - 990) <= 0.01 * 990);
    CHECK_EQ(m.quantile("RequestTime", 0, "orders"), 1.0);     // the exact minimum
    CHECK_EQ(m.quantile("RequestTime", 1, "orders", 10), 1000.0);
    CHECK_THROWS_STATUS(m.quantile("Plain", 0.5), KPLM_EINVAL);
    CHECK_THROWS_STATUS(m.quantile("RequestTime", 1.5), KPLM_EINVAL);
    m.start();
    CHECK_THROWS_STATUS(m.set_distribution("Later", 0.01), KPLM_ESTATE);
    m.close();
    kplm::Manager kpl(kplm::Config().level(kplm::Level::Detailed).kpl_distributions(true));
    kpl.put("BufferingTime", 5.0);
    CHECK_EQ(kpl.quantile("BufferingTime", 0.5), 5.0);
}

int main() {
    setvbuf(stdout, nullptr, _IONBF, 0);
    int failures = 0;
    RUN(helpers);
    RUN(config_errors);
    RUN(lifecycle_puts_and_queries);
    RUN(distributions);
    RUN(batch_and_views);
    RUN(throwing_sink_callbacks);
    RUN(kpl_output_options);
    RUN(cloudwatch_bodies);
    RUN(builtin_sinks);
    std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "OK", failures);
    return failures ? 1 : 0;
}
