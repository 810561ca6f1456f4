// Lifetime of what kplm.hpp hands to kplm: a C++ sink (and the manager's
// clock function) must stay alive until kplm has called the sink's close
// callback, which a final export that outlives export_timeout_ms runs on
// kplm's uploader thread after ~Manager has returned (kplm.h, kplm_close).
// Every path releases the sink exactly once: never started, replaced, open
// failed and retried, level NONE, refused set_sink, moved managers, and
// built-in sinks (released when not handed over). Run under ASan (and its
// leak check, per sub-test) by scripts/sanitize.sh.
#include "cpp_test.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <optional>
#include <vector>

namespace {

// Calls seen by TrackedSink objects (one sub-test per process: globals are fine).
std::atomic<int> g_opens{0}, g_exports{0}, g_closes{0}, g_destroyed{0}, g_constructed{0};
std::atomic<int> g_closed_before_destroyed{1};  // 0 once a sink is destroyed before its close ran
std::atomic<bool> g_release_export{false};

enum class ExportMode { Quick, Sleep, Gate };

struct TrackedSink : kplm::Sink {
    explicit TrackedSink(ExportMode mode = ExportMode::Quick, int fail_opens = 0)
        : mode_(mode), fail_opens_(fail_opens) {
        g_constructed++;
    }
    ~TrackedSink() override {
        if (opened_ != closed_) g_closed_before_destroyed = 0;
        g_destroyed++;
    }
    void open() override {
        g_opens++;
        if (fail_opens_ > 0) {
            fail_opens_--;
            throw std::runtime_error("open refused");
        }
        opened_++;
    }
    void export_snapshots(const kplm::Batch &batch) override {
        g_exports++;
        if (mode_ == ExportMode::Sleep) cpptest::sleep_ms(1000);  // export_timeout is 100 ms
        if (mode_ == ExportMode::Gate) {
            // Longer than export_timeout_ms: until the test lets it go.
            for (int i = 0; i < 2000 && !g_release_export.load(); i++) cpptest::sleep_ms(10);
        }
        // Touches the object after the wait: a use-after-free under ASan if
        // the sink was destroyed meanwhile.
        for (kplm::SnapshotView s : batch) names_.emplace_back(s.name());
    }
    void close() override {
        closed_++;
        g_closes++;
    }

    ExportMode mode_;
    int fail_opens_;
    int opened_ = 0, closed_ = 0;
    std::vector<std::string> names_;
};

kplm::Config detailed(double export_timeout_ms = 10000) {
    return kplm::Config()
        .level(kplm::Level::Detailed)
        .upload_interval(std::chrono::minutes(10))
        .export_timeout(std::chrono::duration<double, std::milli>(export_timeout_ms));
}

bool wait_for(const std::atomic<int> &counter, int value, int ms) {
    for (int i = 0; i < ms / 10 && counter.load() < value; i++) cpptest::sleep_ms(10);
    return counter.load() >= value;
}

// The case of the issue: the final export is still running (blocked) when
// the Manager is destroyed; the sink and the clock outlive it until close.
void final_export_outlives_manager() {
    auto clock_token = std::make_shared<int>(1);
    std::weak_ptr<int> clock_alive = clock_token;
    double t0 = cpptest::now_seconds();
    double destroy_ms = 0;
    {
        kplm::Config config = detailed(100).clock([token = std::move(clock_token), t0] {
            return 1000.0 + (cpptest::now_seconds() - t0);
        });
        std::optional<kplm::Manager> m;
        m.emplace(config);
        m->set_sink(std::make_shared<TrackedSink>(ExportMode::Gate));
        m->start();
        m->put("UserRecordsPut", 1.0, "s");
        config = kplm::Config();  // the Manager holds its own copy of the clock
        double before = cpptest::now_seconds();
        // ~Manager: close waits 100 ms for the final export, then returns.
        m.reset();
        destroy_ms = (cpptest::now_seconds() - before) * 1000;
    }
    std::printf("  manager destroyed in %.0f ms with the final export still running\n", destroy_ms);
    CHECK_EQ(g_exports.load(), 1);
    CHECK_EQ(g_closes.load(), 0);
    CHECK_EQ(g_destroyed.load(), 0);           // kept alive for kplm
    CHECK(!clock_alive.expired());             // the clock too
    g_release_export = true;
    CHECK(wait_for(g_destroyed, 1, 10000));    // released by the close callback
    CHECK_EQ(g_closes.load(), 1);
    CHECK_EQ(g_closed_before_destroyed.load(), 1);
    for (int i = 0; i < 100 && !clock_alive.expired(); i++) cpptest::sleep_ms(10);
    CHECK(clock_alive.expired());
}

// The same with an export that simply sleeps (1 s against a 100 ms
// export_timeout): the process waits until the close callback has run.
void sleeping_export_outlives_manager() {
    {
        kplm::Manager m(detailed(100));
        m.set_sink(std::make_shared<TrackedSink>(ExportMode::Sleep));
        m.start();
        m.put("UserRecordsPut", 2.0);
        CHECK_THROWS_STATUS(m.close(), KPLM_ESINK);  // timed out: completes in the background
    }
    CHECK(wait_for(g_destroyed, 1, 10000));
    CHECK_EQ(g_exports.load(), 1);
    CHECK_EQ(g_closes.load(), 1);
    CHECK_EQ(g_closed_before_destroyed.load(), 1);
}

void normal_close_releases_at_reset() {
    auto sink = std::make_shared<TrackedSink>();
    std::weak_ptr<TrackedSink> weak = sink;
    {
        kplm::Manager m(detailed());
        m.set_sink(std::move(sink));
        m.start();
        m.put("UserRecordsPut");
        m.close();
        CHECK_EQ(g_closes.load(), 1);
        CHECK(!weak.expired());  // the Manager's share
    }
    CHECK(weak.expired());
    CHECK_EQ(g_destroyed.load(), 1);
    CHECK_EQ(g_exports.load(), 1);
}

void never_started_released_at_reset() {
    {
        kplm::Manager m(detailed());
        m.set_sink(std::make_shared<TrackedSink>());
        m.put("UserRecordsPut");
    }
    CHECK_EQ(g_destroyed.load(), 1);
    CHECK_EQ(g_opens.load() + g_closes.load() + g_exports.load(), 0);  // close before start: no sink call
}

void replaced_sink_released() {
    kplm::Manager m(detailed());
    m.set_sink(std::make_shared<TrackedSink>());
    m.set_sink(std::make_shared<TrackedSink>());
    CHECK_EQ(g_destroyed.load(), 1);  // the first, never opened
    m.start();
    m.put("UserRecordsPut");
    m.close();
    CHECK_EQ(g_closes.load(), 1);
    m = kplm::Manager();  // move assignment resets the first manager
    CHECK_EQ(g_destroyed.load(), 2);
    CHECK_EQ(g_closed_before_destroyed.load(), 1);
}

void open_failure_then_retry() {
    {
        kplm::Manager m(detailed());
        m.set_sink(std::make_shared<TrackedSink>(ExportMode::Quick, 1));
        CHECK_THROWS_STATUS(m.start(), KPLM_ESINK);
        CHECK_EQ(g_closes.load(), 0);
        m.start();
        m.put("UserRecordsPut");
    }
    CHECK_EQ(g_opens.load(), 2);
    CHECK_EQ(g_closes.load(), 1);
    CHECK_EQ(g_destroyed.load(), 1);
    CHECK_EQ(g_closed_before_destroyed.load(), 1);
    {
        // Open fails, never retried: no close, released at reset.
        kplm::Manager m(detailed());
        m.set_sink(std::make_shared<TrackedSink>(ExportMode::Quick, 1));
        CHECK_THROWS_STATUS(m.start(), KPLM_ESINK);
    }
    CHECK_EQ(g_closes.load(), 1);
    CHECK_EQ(g_destroyed.load(), 2);
}

void level_none_releases_at_reset() {
    {
        kplm::Manager m;  // level NONE: start opens nothing
        m.set_sink(std::make_shared<TrackedSink>());
        m.start();
        m.put("UserRecordsPut");
        m.close();
    }
    CHECK_EQ(g_opens.load() + g_closes.load(), 0);
    CHECK_EQ(g_destroyed.load(), 1);
}

void refused_set_sink_releases() {
    kplm::Manager m(detailed());
    m.set_sink(std::make_shared<TrackedSink>());
    m.start();
    CHECK_THROWS_STATUS(m.set_sink(std::make_shared<TrackedSink>()), KPLM_ESTATE);
    CHECK_EQ(g_destroyed.load(), 1);  // the refused one
    CHECK_THROWS_STATUS(m.set_sink(kplm::make_sink(kplm::DogStatsDConfig().port(9))), KPLM_ESTATE);
    m.close();
    CHECK_EQ(g_closes.load(), 1);
}

void moved_manager_keeps_sink() {
    kplm::Manager b(detailed());
    {
        kplm::Manager a(detailed());
        a.set_sink(std::make_shared<TrackedSink>());
        a.start();
        a.put("UserRecordsPut");
        b = std::move(a);
        CHECK_THROWS_STATUS(b.set_sink(std::make_shared<TrackedSink>()), KPLM_ESTATE);
        CHECK_EQ(g_destroyed.load(), 1);
        CHECK_THROWS_STATUS(a.start(), KPLM_EINVAL);  // moved from
    }
    CHECK_EQ(g_closes.load(), 0);  // ~a (moved from) did nothing
    b.flush();
    CHECK_EQ(g_exports.load(), 1);
    kplm::Manager c(std::move(b));
    c.close();
    CHECK_EQ(g_closes.load(), 1);
}

// A built-in sink is the manager's once set_sink succeeded; one never
// handed over (or refused) is released by ~BuiltinSink (LeakSanitizer
// checks both).
void builtin_sink_ownership() {
    {
        kplm::BuiltinSink unused = kplm::make_sink(kplm::DogStatsDConfig().port(9));
        CHECK(static_cast<bool>(unused));
        kplm::BuiltinSink moved = std::move(unused);
        CHECK(!unused && moved);
    }
    {
        kplm::Manager m(detailed());
        kplm::BuiltinSink s = kplm::make_sink(kplm::DogStatsDConfig().port(9));
        m.set_sink(std::move(s));
        CHECK(!s);
        m.set_sink(kplm::make_sink(kplm::EmfConfig().destination(kplm::EmfDestination::File).path("/dev/null")));
        m.start();
        m.put("UserRecordsPut");
        m.flush();
        CHECK_THROWS_STATUS(m.set_sink(kplm::make_sink(kplm::DogStatsDConfig())), KPLM_ESTATE);
    }
    {
        // Refused by a closed manager: released when the argument goes.
        kplm::Manager m(detailed());
        m.close();
        kplm::BuiltinSink s = kplm::make_sink(kplm::PrometheusConfig().port(1));
        CHECK_THROWS_STATUS(m.set_sink(std::move(s)), KPLM_ESTATE);
    }
}

// A built-in sink's final export outliving the Manager (OTLP to a peer that
// never answers): there is no close callback to wait for, so the clock
// function stays alive for the rest of the process.
void builtin_final_export_keeps_clock() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    CHECK(bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0);
    CHECK(listen(fd, 8) == 0);  // never accepts: the request gets no answer
    CHECK(getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) == 0);
    std::string endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1/metrics";

    auto token = std::make_shared<int>(1);
    std::weak_ptr<int> clock_alive = token;
    {
        kplm::Manager m(detailed(100).clock([token = std::move(token)] { return 50.0; }));
        m.set_sink(kplm::make_sink(kplm::OtlpConfig().endpoint(endpoint).timeout(std::chrono::milliseconds(800)).max_retries(0)));
        m.start();
        m.put("UserRecordsPut");
    }
    CHECK(!clock_alive.expired());
    cpptest::sleep_ms(1500);  // let the background export give up before the process exits
    close(fd);
}

}  // namespace

int main() {
    setvbuf(stdout, nullptr, _IONBF, 0);
    int failures = 0;
    RUN(final_export_outlives_manager);
    RUN(sleeping_export_outlives_manager);
    RUN(normal_close_releases_at_reset);
    RUN(never_started_released_at_reset);
    RUN(replaced_sink_released);
    RUN(open_failure_then_retry);
    RUN(level_none_releases_at_reset);
    RUN(refused_set_sink_releases);
    RUN(moved_manager_keeps_sink);
    RUN(builtin_sink_ownership);
    RUN(builtin_final_export_keeps_clock);
    std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "OK", failures);
    return failures ? 1 : 0;
}
