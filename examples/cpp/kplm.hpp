// kplm.hpp -- a small header-only C++17 wrapper over the C ABI of kplm.h.
//
//   kplm::Manager m(kplm::Config().level(kplm::Level::Detailed));
//   m.set_sink(std::make_shared<MySink>());       // or kplm::FunctionSink
//   m.start();
//   kplm::Metric bytes = m.metric("UserRecordsDataPut", "my-stream");
//   bytes.put(512);
//   m.put("UserRecordsPut", 1.0, "my-stream", "shardId-000000000000");
//   m.close();                                     // or let ~Manager do it
//
// Errors are reported as kplm::Error (a std::runtime_error) carrying the
// kplm_status and kplm_status_string(). The try_* functions return the status
// instead of throwing, for hot paths that handle KPLM_ELIMIT themselves.
//
// Sinks implement kplm::Sink. Their callbacks may throw: an exception from
// open() makes start() fail, one from export_snapshots() refuses the batch
// (kplm keeps the data and offers it again at the next flush); exceptions
// from record() and close() are swallowed (they cannot be reported).
// Exceptions never cross the C ABI.
#ifndef KPLM_HPP
#define KPLM_HPP

#include <kplm.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kplm {

enum class Level { None = KPLM_LEVEL_NONE, Summary = KPLM_LEVEL_SUMMARY, Detailed = KPLM_LEVEL_DETAILED };

// ---------------------------------------------------------------------------
// Errors

class Error : public std::runtime_error {
public:
    Error(kplm_status status, const std::string &context)
        : std::runtime_error(context + ": " + kplm_status_string(status)), status_(status) {}
    kplm_status status() const noexcept { return status_; }

private:
    kplm_status status_;
};

namespace detail {
inline void check(kplm_status st, const char *context) {
    if (st != KPLM_OK) throw Error(st, context);
}
// NULL for an absent dimension; "" means absent for kplm too.
inline const char *opt(const std::string &s) noexcept { return s.empty() ? nullptr : s.c_str(); }
}  // namespace detail

inline std::string version() { return kplm_version(); }

// ---------------------------------------------------------------------------
// Views of what kplm hands to callbacks: valid only during the callback.

using Dimension = std::pair<std::string_view, std::string_view>;

class SnapshotView {
public:
    explicit SnapshotView(const kplm_snapshot &s) noexcept : s_(&s) {}
    std::string_view name() const noexcept { return s_->name; }
    std::uint64_t count() const noexcept { return s_->count; }
    double sum() const noexcept { return s_->sum; }
    double min() const noexcept { return s_->min; }
    double max() const noexcept { return s_->max; }
    double average() const noexcept { return s_->count ? s_->sum / double(s_->count) : 0.0; }
    double window_start() const noexcept { return s_->window_start; }
    double window_end() const noexcept { return s_->window_end; }
    double timestamp_unix() const noexcept { return s_->timestamp_unix; }
    std::size_t dimension_count() const noexcept { return s_->dimension_count; }
    Dimension dimension(std::size_t i) const noexcept {
        return {s_->dimensions[i].name, s_->dimensions[i].value};
    }
    // Value of the dimension called `name` ("stream", "shard", "error_code"),
    // empty when absent.
    std::string_view dimension(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < s_->dimension_count; i++)
            if (name == s_->dimensions[i].name) return s_->dimensions[i].value;
        return {};
    }
    const kplm_snapshot &raw() const noexcept { return *s_; }

private:
    const kplm_snapshot *s_;
};

// An owning copy of a snapshot, for keeping beyond a callback.
struct Snapshot {
    std::string name;
    std::uint64_t count = 0;
    double sum = 0, min = 0, max = 0;
    std::vector<std::pair<std::string, std::string>> dimensions;
    double window_start = 0, window_end = 0, timestamp_unix = 0;

    static Snapshot from(const SnapshotView &v) {
        Snapshot s;
        s.name = std::string(v.name());
        s.count = v.count();
        s.sum = v.sum();
        s.min = v.min();
        s.max = v.max();
        for (std::size_t i = 0; i < v.dimension_count(); i++) {
            Dimension d = v.dimension(i);
            s.dimensions.emplace_back(std::string(d.first), std::string(d.second));
        }
        s.window_start = v.window_start();
        s.window_end = v.window_end();
        s.timestamp_unix = v.timestamp_unix();
        return s;
    }
};

// The snapshots of one export, in kplm's order (name, then dimensions).
class Batch {
public:
    class iterator {
    public:
        explicit iterator(const kplm_snapshot *p) noexcept : p_(p) {}
        SnapshotView operator*() const noexcept { return SnapshotView(*p_); }
        iterator &operator++() noexcept {
            ++p_;
            return *this;
        }
        bool operator!=(const iterator &o) const noexcept { return p_ != o.p_; }
        bool operator==(const iterator &o) const noexcept { return p_ == o.p_; }

    private:
        const kplm_snapshot *p_;
    };

    Batch(const kplm_snapshot *s, std::size_t n) noexcept : s_(s), n_(n) {}
    std::size_t size() const noexcept { return n_; }
    bool empty() const noexcept { return n_ == 0; }
    SnapshotView operator[](std::size_t i) const noexcept { return SnapshotView(s_[i]); }
    iterator begin() const noexcept { return iterator(s_); }
    iterator end() const noexcept { return iterator(s_ + n_); }

private:
    const kplm_snapshot *s_;
    std::size_t n_;
};

class EventView {
public:
    explicit EventView(const kplm_event &e) noexcept : e_(&e) {}
    std::string_view name() const noexcept { return e_->name; }
    double value() const noexcept { return e_->value; }
    double timestamp() const noexcept { return e_->timestamp; }
    std::size_t dimension_count() const noexcept { return e_->dimension_count; }
    Dimension dimension(std::size_t i) const noexcept {
        return {e_->dimensions[i].name, e_->dimensions[i].value};
    }

private:
    const kplm_event *e_;
};

// ---------------------------------------------------------------------------
// Sinks

class Sink {
public:
    virtual ~Sink() = default;
    // Called by start(). Throw to fail the start (start() then throws ESINK).
    virtual void open() {}
    // Required. Runs on the uploader thread or on the thread calling flush()
    // or close(), never concurrently with open/close/another export. Throw
    // to refuse the batch: kplm keeps it and offers it again, merged.
    virtual void export_snapshots(const Batch &batch) = 0;
    // Return true to receive record() for every accepted put (on the
    // putting thread, possibly on several threads at once).
    virtual bool eventful() const { return false; }
    virtual void record(const EventView &event) { (void)event; }
    // Called once by close(), after the final export.
    virtual void close() {}
};

// A sink made of std::functions (export required, record optional).
class FunctionSink : public Sink {
public:
    using ExportFn = std::function<void(const Batch &)>;
    using RecordFn = std::function<void(const EventView &)>;

    explicit FunctionSink(ExportFn on_export, RecordFn on_record = nullptr)
        : on_export_(std::move(on_export)), on_record_(std::move(on_record)) {
        if (!on_export_) throw std::invalid_argument("kplm::FunctionSink needs an export function");
    }
    void export_snapshots(const Batch &batch) override { on_export_(batch); }
    bool eventful() const override { return static_cast<bool>(on_record_); }
    void record(const EventView &event) override { on_record_(event); }

private:
    ExportFn on_export_;
    RecordFn on_record_;
};

namespace detail {
// Trampolines from the C callbacks to a Sink (user_data). They stop every
// exception at the C boundary.
struct SinkCallbacks {
    static int open(void *ud) noexcept {
        try {
            static_cast<Sink *>(ud)->open();
            return 0;
        } catch (...) {
            return 1;
        }
    }
    static int export_snapshots(void *ud, const kplm_snapshot *s, std::size_t n) noexcept {
        try {
            static_cast<Sink *>(ud)->export_snapshots(Batch(s, n));
            return 0;
        } catch (...) {
            return 1;
        }
    }
    static void record(void *ud, const kplm_event *e) noexcept {
        try {
            static_cast<Sink *>(ud)->record(EventView(*e));
        } catch (...) {
        }
    }
    static void close(void *ud) noexcept {
        try {
            static_cast<Sink *>(ud)->close();
        } catch (...) {
        }
    }
};
}  // namespace detail

// ---------------------------------------------------------------------------
// Configuration

class Config {
public:
    using Clock = std::function<double()>;  // monotonic seconds

    Config() { kplm_config_init(&c_); }
    Config &level(Level l) {
        c_.level = static_cast<kplm_level>(l);
        return *this;
    }
    Config &upload_interval(std::chrono::duration<double, std::milli> d) {
        c_.upload_interval_ms = d.count();
        return *this;
    }
    Config &window_seconds(std::uint32_t s) {
        c_.window_seconds = s;
        return *this;
    }
    Config &max_metrics(std::uint32_t n) {
        c_.max_metrics = n;
        return *this;
    }
    Config &clock(Clock fn) {
        clock_ = fn ? std::make_shared<Clock>(std::move(fn)) : nullptr;
        return *this;
    }
    const kplm_config &raw() const noexcept { return c_; }
    const std::shared_ptr<Clock> &clock_fn() const noexcept { return clock_; }

private:
    kplm_config c_;
    std::shared_ptr<Clock> clock_;
};

namespace detail {
inline double clock_trampoline(void *ud) noexcept {
    try {
        return (*static_cast<Config::Clock *>(ud))();
    } catch (...) {
        return 0.0;
    }
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Metric handle and manager

class Manager;

// A resolved key. Cheap to copy; valid as long as its Manager lives.
class Metric {
public:
    Metric() noexcept = default;
    void put(double value = 1.0) const { detail::check(try_put(value), "kplm_metric_put"); }
    kplm_status try_put(double value = 1.0) const noexcept { return kplm_metric_put(m_, value); }
    explicit operator bool() const noexcept { return m_ != nullptr; }
    kplm_metric *raw() const noexcept { return m_; }

private:
    friend class Manager;
    explicit Metric(kplm_metric *m) noexcept : m_(m) {}
    kplm_metric *m_ = nullptr;
};

class Manager {
public:
    explicit Manager(const Config &config = Config()) : clock_(config.clock_fn()) {
        kplm_config c = config.raw();
        if (clock_) {
            c.clock = detail::clock_trampoline;
            c.clock_user_data = clock_.get();
        }
        detail::check(kplm_new(&c, &m_), "kplm_new");
    }
    ~Manager() { reset(); }

    Manager(const Manager &) = delete;
    Manager &operator=(const Manager &) = delete;
    Manager(Manager &&o) noexcept
        : m_(std::exchange(o.m_, nullptr)), sink_(std::move(o.sink_)), clock_(std::move(o.clock_)) {}
    Manager &operator=(Manager &&o) noexcept {
        if (this != &o) {
            reset();
            m_ = std::exchange(o.m_, nullptr);
            sink_ = std::move(o.sink_);
            clock_ = std::move(o.clock_);
        }
        return *this;
    }

    // Before start(). The manager keeps the sink alive until it is destroyed.
    void set_sink(std::shared_ptr<Sink> sink) {
        if (!sink) throw std::invalid_argument("kplm::Manager::set_sink: null sink");
        kplm_sink s{};
        s.user_data = sink.get();
        s.open = &detail::SinkCallbacks::open;
        s.export_snapshots = &detail::SinkCallbacks::export_snapshots;
        s.record = sink->eventful() ? &detail::SinkCallbacks::record : nullptr;
        s.close = &detail::SinkCallbacks::close;
        detail::check(kplm_set_sink(live(), &s), "kplm_set_sink");
        sink_ = std::move(sink);
    }

    void start() { detail::check(kplm_start(live()), "kplm_start"); }
    void flush() { detail::check(kplm_flush(live()), "kplm_flush"); }
    void close() { detail::check(kplm_close(live()), "kplm_close"); }

    void put(const char *name, double value = 1.0, const char *stream = nullptr,
             const char *shard_id = nullptr, const char *error_code = nullptr) {
        detail::check(try_put(name, value, stream, shard_id, error_code), "kplm_put");
    }
    void put(const std::string &name, double value, const std::string &stream = {},
             const std::string &shard_id = {}, const std::string &error_code = {}) {
        put(name.c_str(), value, detail::opt(stream), detail::opt(shard_id),
            detail::opt(error_code));
    }
    kplm_status try_put(const char *name, double value = 1.0, const char *stream = nullptr,
                        const char *shard_id = nullptr,
                        const char *error_code = nullptr) noexcept {
        return kplm_put(m_, name, value, stream, shard_id, error_code);
    }

    Metric metric(const char *name, const char *stream = nullptr, const char *shard_id = nullptr,
                  const char *error_code = nullptr) {
        kplm_metric *h = nullptr;
        detail::check(kplm_metric_get(live(), name, stream, shard_id, error_code, &h),
                      "kplm_metric_get");
        return Metric(h);
    }

    // Rolling-window statistics, copied out.
    std::vector<Snapshot> snapshots() const {
        std::vector<Snapshot> out;
        detail::check(kplm_snapshots(live(), &Manager::collect, &out), "kplm_snapshots");
        return out;
    }

    kplm_manager *raw() const noexcept { return m_; }

private:
    kplm_manager *live() const {
        if (!m_) throw std::logic_error("kplm::Manager used after being moved from");
        return m_;
    }
    void reset() noexcept {
        if (m_) kplm_free(m_);  // closes (final flush) if needed
        m_ = nullptr;
        sink_.reset();
        clock_.reset();
    }
    static int collect(void *ud, const kplm_snapshot *s) noexcept {
        try {
            static_cast<std::vector<Snapshot> *>(ud)->push_back(Snapshot::from(SnapshotView(*s)));
            return 0;
        } catch (...) {
            return 1;  // out of memory: stop early
        }
    }

    kplm_manager *m_ = nullptr;
    std::shared_ptr<Sink> sink_;
    std::shared_ptr<Config::Clock> clock_;
};

}  // namespace kplm

#endif  // KPLM_HPP
