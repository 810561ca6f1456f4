// The C producer example again, through the C++ API <kplm.hpp> (installed
// with kplm.h): worker threads report KPL metrics for two streams, a Sink
// subclass prints each flushed snapshot, the uploader runs every 500 ms, and
// after about two seconds the manager is closed. Errors arrive as kplm::Error.
#include <kplm.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

class PrintingSink : public kplm::Sink {
public:
    void open() override { std::printf("[sink] open\n"); }

    void export_snapshots(const kplm::Batch &batch) override {
        std::lock_guard<std::mutex> guard(lock_);
        ++batches_;
        std::printf("[sink] batch %d: %zu snapshot(s)\n", batches_, batch.size());
        for (kplm::SnapshotView s : batch) {
            std::ostringstream dims;
            for (std::size_t i = 0; i < s.dimension_count(); i++) {
                kplm::Dimension d = s.dimension(i);
                dims << (i ? "," : "") << d.first << '=' << d.second;
            }
            std::printf("  %-20.*s {%s} count=%llu avg=%.1f min=%.1f max=%.1f\n",
                        static_cast<int>(s.name().size()), s.name().data(), dims.str().c_str(),
                        static_cast<unsigned long long>(s.count()), s.average(), s.min(),
                        s.max());
            snapshots_++;
        }
    }

    void close() override { std::printf("[sink] close\n"); }

    int batches() const {
        std::lock_guard<std::mutex> guard(lock_);
        return batches_;
    }

private:
    mutable std::mutex lock_;
    int batches_ = 0;
    unsigned long snapshots_ = 0;
};

const char *const kStreams[] = {"orders", "clicks"};
const char *const kShards[] = {"shardId-000000000000", "shardId-000000000001"};

}  // namespace

int main() {
    try {
        std::cout << "kplm " << kplm::version() << " (C++ wrapper)\n";

        kplm::Manager manager(kplm::Config()
                                  .level(kplm::Level::Detailed)
                                  .upload_interval(std::chrono::milliseconds(500)));
        auto sink = std::make_shared<PrintingSink>();
        manager.set_sink(sink);
        manager.start();

        std::atomic<bool> stop{false};
        std::vector<std::thread> workers;
        for (int id = 0; id < 4; id++) {
            workers.emplace_back([&manager, &stop, id] {
                const char *stream = kStreams[id % 2];
                std::mt19937 rng(static_cast<unsigned>(id) + 1u);
                std::uniform_int_distribution<int> size(100, 999), wait(0, 249), shard(0, 1);
                // Resolved once, used for every record.
                kplm::Metric bytes = manager.metric("UserRecordsDataPut", stream);
                kplm::Metric buffering = manager.metric("BufferingTime", stream);
                while (!stop.load()) {
                    for (int i = 0; i < 50; i++) {
                        manager.put("UserRecordsPut", 1.0, stream, kShards[shard(rng)]);
                        bytes.put(size(rng));
                        buffering.put(wait(rng));
                        if (wait(rng) == 0)
                            manager.put(std::string("ErrorsByCode"), 1.0, std::string(stream),
                                        std::string(kShards[0]), std::string("InternalFailure"));
                    }
                    std::this_thread::sleep_for(std::chrono::milliseconds(5));
                }
            });
        }

        std::this_thread::sleep_for(std::chrono::seconds(2));
        stop = true;
        for (auto &t : workers) t.join();

        // Bad input comes back as an exception carrying the status.
        try {
            manager.put("", 1.0);
            std::cerr << "an empty metric name was accepted\n";
            return 1;
        } catch (const kplm::Error &e) {
            if (e.status() != KPLM_EINVAL) throw;
            std::cout << "refused as expected: " << e.what() << '\n';
        }

        std::vector<kplm::Snapshot> window = manager.snapshots();
        std::cout << window.size() << " metric(s) in the rolling window\n";

        manager.close();  // final flush, then the sink's close
        if (sink->batches() == 0) {
            std::cerr << "nothing was exported\n";
            return 1;
        }
        std::cout << sink->batches() << " batch(es) exported\n";
        return 0;
    } catch (const std::exception &e) {
        std::cerr << "producer_cpp: " << e.what() << '\n';
        return 1;
    }
}
