// C++ consumer of an installed kplm: includes <kplm.hpp> (the header-only
// C++17 API installed next to kplm.h), links -lkplm, records a few
// observations into a C++ sink, queries them, flushes, closes and checks
// what arrived. Exit 0 on success.
#include <kplm.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                            \
        }                                                                            \
    } while (0)

namespace {
struct CountingSink : kplm::Sink {
    int opened = 0, closed = 0, exports = 0;
    std::uint64_t puts = 0;
    void open() override { opened++; }
    void export_snapshots(const kplm::Batch &batch) override {
        exports++;
        for (kplm::SnapshotView s : batch)
            if (s.name() == "UserRecordsPut" && s.dimension("stream") == "s") puts += s.count();
    }
    void close() override { closed++; }
};
}  // namespace

int main() {
    try {
        std::printf("kplm %s (C++ API, header %d.%d.%d)\n", kplm::version().c_str(), KPLM_VERSION_MAJOR,
                    KPLM_VERSION_MINOR, KPLM_VERSION_PATCH);
        CHECK(kplm::version() == "1.2.0");
        auto sink = std::make_shared<CountingSink>();
        kplm::Manager m(kplm::Config().level(kplm::Level::Detailed));
        m.set_sink(sink);
        m.start();
        CHECK(sink->opened == 1);
        for (int i = 0; i < 10; i++) m.put("UserRecordsPut", 1.0, "s", "shardId-000000000000");
        CHECK(m.query_name("UserRecordsPut").count == 10);
        m.flush();
        CHECK(sink->exports == 1 && sink->puts == 10);
        try {
            m.put("", 1.0);
            CHECK(!"an empty name was accepted");
        } catch (const kplm::Error &e) {
            CHECK(e.status() == KPLM_EINVAL);
        }
        m.close();
        CHECK(sink->closed == 1);
        std::printf("C++ consumer OK: %llu puts\n", static_cast<unsigned long long>(sink->puts));
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "consumer_cpp: %s\n", e.what());
        return 1;
    }
}
