// SPDX-License-Identifier: Apache-2.0
//
// kplm.hpp -- the header-only C++17 API of kplm, over the C ABI of kplm.h.
// Installed next to kplm.h; link -lkplm (CMake: kplm::kplm).
//
//   kplm::Manager m(kplm::Config().level(kplm::Level::Detailed));
//   m.set_sink(std::make_shared<MySink>());       // a kplm::Sink, or a built-in:
//   // m.set_sink(kplm::make_sink(kplm::PrometheusConfig().port(9464)));
//   m.start();
//   kplm::Metric bytes = m.metric("UserRecordsDataPut", "my-stream");
//   bytes.put(512);
//   m.put("UserRecordsPut", 1.0, "my-stream", "shardId-000000000000");
//   kplm::Statistics s = m.query_name("UserRecordsPut");
//   m.close();                                     // or let ~Manager do it
//
// Errors are reported as kplm::Error (a std::runtime_error) carrying the
// kplm_status and kplm_status_string(). The try_* functions return the status
// instead of throwing, for hot paths that handle KPLM_ELIMIT themselves.
// Exceptions never cross the C ABI: every callback kplm calls is noexcept.
//
// Sinks implement kplm::Sink. Their callbacks may throw: an exception from
// open() makes start() fail, one from export_snapshots() refuses the batch
// (kplm keeps the data and offers it again at the next flush); exceptions
// from record() and close() are swallowed (they cannot be reported).
//
// Lifetime: a Manager keeps its sink (and its clock function) alive for as
// long as kplm may call it. A final export that outlives export_timeout_ms
// completes on kplm's uploader thread after ~Manager (or reset by move
// assignment) has returned; the sink is then released by its close callback,
// on that thread (so a Sink's destructor may run there). A sink that was never
// opened is released with the Manager. With a built-in sink nothing tells
// when a late export is done: if close fails or times out, a Config::clock
// function is kept for the rest of the process. A Manager must not be
// destroyed from a callback of its own sink.
//
// Built-in sinks (DogStatsD, EMF, Prometheus, OTLP, CloudWatch) are made
// from a config object with kplm::make_sink(); the returned BuiltinSink owns
// the C sink until Manager::set_sink() succeeds, and releases it otherwise.
//
// Thread-safety follows kplm.h: puts, metric handles, queries, snapshots,
// flush and close may be called from any thread at once; set_sink, the
// destructor and assignment must not overlap another call on the same Manager.
#ifndef KPLM_HPP
#define KPLM_HPP

#include <kplm.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace kplm {

enum class Level { None = KPLM_LEVEL_NONE, Summary = KPLM_LEVEL_SUMMARY, Detailed = KPLM_LEVEL_DETAILED };

enum class Granularity {
    None = KPLM_GRANULARITY_NONE,
    Global = KPLM_GRANULARITY_GLOBAL,
    Stream = KPLM_GRANULARITY_STREAM,
    Shard = KPLM_GRANULARITY_SHARD
};

enum class Unit {
    None = KPLM_UNIT_NONE,
    Count = KPLM_UNIT_COUNT,
    Bytes = KPLM_UNIT_BYTES,
    Milliseconds = KPLM_UNIT_MILLISECONDS
};

// query()'s `seconds` for statistics since the manager was created.
inline constexpr std::uint32_t cumulative = KPLM_CUMULATIVE;

// ---------------------------------------------------------------------------
// Errors

inline std::string status_string(kplm_status status) { return kplm_status_string(status); }

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
// A C string field: the value set in a C++ config, else the C default.
inline void set_if(const char *&field, const std::optional<std::string> &value) noexcept {
    if (value) field = value->c_str();
}
inline double wall_now() noexcept {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Helpers without a manager

inline std::string version() { return kplm_version(); }

// The unit and KPL level of a metric name (KPL metrics; Unit::None and
// Level::Detailed for any other name).
inline Unit metric_unit(const char *name) noexcept { return static_cast<Unit>(kplm_metric_unit(name)); }
inline Unit metric_unit(const std::string &name) noexcept { return metric_unit(name.c_str()); }
inline Level metric_level(const char *name) noexcept { return static_cast<Level>(kplm_metric_level(name)); }
inline Level metric_level(const std::string &name) noexcept { return metric_level(name.c_str()); }
// CloudWatch's name of a unit ("Count"); static.
inline const char *unit_name(Unit unit) noexcept { return kplm_unit_name(static_cast<kplm_unit>(unit)); }

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
    // Value of the dimension called `name` ("stream", "shard", "error_code",
    // or the KPL's names with a granularity), empty when absent.
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

// The statistics kplm_query returns (count 0 and zeros when empty).
struct Statistics {
    std::uint64_t count = 0;
    double sum = 0, min = 0, max = 0;
    double average() const noexcept { return count ? sum / double(count) : 0.0; }
    static Statistics from(const kplm_statistics &s) noexcept { return {s.count, s.sum, s.min, s.max}; }
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
    const kplm_snapshot *data() const noexcept { return s_; }

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
    const kplm_event &raw() const noexcept { return *e_; }

private:
    const kplm_event *e_;
};

// ---------------------------------------------------------------------------
// CloudWatch request bodies (kplm_cloudwatch_requests)

namespace detail {
template <class Emit>
struct EmitContext {
    Emit *emit;
    std::exception_ptr error;
    static int call(void *ud, const char *body, std::size_t len, std::size_t datums) noexcept {
        auto *self = static_cast<EmitContext *>(ud);
        try {
            (*self->emit)(std::string_view(body, len), datums);
            return 0;
        } catch (...) {
            self->error = std::current_exception();
            return 1;
        }
    }
};
}  // namespace detail

// Turns snapshots into CloudWatch PutMetricData request bodies (AWS JSON
// 1.0): emit(std::string_view body, std::size_t datums) is called once per
// request, the body valid during the call. Returns how many snapshots could
// not be sent. Throws kplm::Error (KPLM_EINVAL for a bad namespace); an
// exception from emit stops the requests and is rethrown.
template <class Emit>
std::size_t cloudwatch_requests(const kplm_snapshot *s, std::size_t n, const std::string &cw_namespace,
                                double wall_now, Emit &&emit) {
    using E = std::remove_reference_t<Emit>;
    detail::EmitContext<E> ctx{&emit, nullptr};
    std::size_t dropped = 0;
    kplm_status st = kplm_cloudwatch_requests(s, n, cw_namespace.c_str(), wall_now,
                                              &detail::EmitContext<E>::call, &ctx, &dropped);
    if (ctx.error) std::rethrow_exception(ctx.error);
    detail::check(st, "kplm_cloudwatch_requests");
    return dropped;
}

// The same for an export's batch, at the current wall-clock time.
template <class Emit>
std::size_t cloudwatch_requests(const Batch &batch, const std::string &cw_namespace, Emit &&emit) {
    return cloudwatch_requests(batch.data(), batch.size(), cw_namespace, detail::wall_now(),
                               std::forward<Emit>(emit));
}

// The same for owning copies (Manager::snapshots()).
template <class Emit>
std::size_t cloudwatch_requests(const std::vector<Snapshot> &snapshots, const std::string &cw_namespace,
                                double wall_now, Emit &&emit) {
    std::vector<std::vector<kplm_dimension>> dims(snapshots.size());
    std::vector<kplm_snapshot> raw(snapshots.size());
    for (std::size_t i = 0; i < snapshots.size(); i++) {
        const Snapshot &s = snapshots[i];
        for (const auto &d : s.dimensions) dims[i].push_back(kplm_dimension{d.first.c_str(), d.second.c_str()});
        kplm_snapshot &r = raw[i];
        r = kplm_snapshot{};
        r.name = s.name.c_str();
        r.count = s.count;
        r.sum = s.sum;
        r.min = s.min;
        r.max = s.max;
        r.dimensions = dims[i].data();
        r.dimension_count = dims[i].size();
        r.window_start = s.window_start;
        r.window_end = s.window_end;
        r.timestamp_unix = s.timestamp_unix;
    }
    return cloudwatch_requests(raw.data(), raw.size(), cw_namespace, wall_now, std::forward<Emit>(emit));
}

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
    // Called once after the final export (by close(), or later on the
    // uploader thread if that export outlived export_timeout_ms). Not
    // called for a sink that was never started.
    virtual void close() {}
};

// A sink made of std::functions (export required, record optional).
class FunctionSink : public Sink {
public:
    using ExportFn = std::function<void(const Batch &)>;
    using RecordFn = std::function<void(const EventView &)>;

    explicit FunctionSink(ExportFn on_export, RecordFn on_record = nullptr)
        : on_export_(std::move(on_export)), on_record_(std::move(on_record)) {
        if (!on_export_) throw Error(KPLM_EINVAL, "kplm::FunctionSink (no export function)");
    }
    void export_snapshots(const Batch &batch) override { on_export_(batch); }
    bool eventful() const override { return static_cast<bool>(on_record_); }
    void record(const EventView &event) override { on_record_(event); }

private:
    ExportFn on_export_;
    RecordFn on_record_;
};

// A built-in sink (make_sink) not yet handed to a manager: move-only; its
// destructor releases it (kplm_sink_release) unless Manager::set_sink took it.
class BuiltinSink {
public:
    BuiltinSink() noexcept : s_{} {}
    // Adopts a sink filled by a kplm_sink_* constructor.
    explicit BuiltinSink(const kplm_sink &adopted) noexcept : s_(adopted) {}
    ~BuiltinSink() { kplm_sink_release(&s_); }
    BuiltinSink(const BuiltinSink &) = delete;
    BuiltinSink &operator=(const BuiltinSink &) = delete;
    BuiltinSink(BuiltinSink &&o) noexcept : s_(o.release()) {}
    BuiltinSink &operator=(BuiltinSink &&o) noexcept {
        if (this != &o) {
            kplm_sink_release(&s_);
            s_ = o.release();
        }
        return *this;
    }
    explicit operator bool() const noexcept { return s_.export_snapshots != nullptr; }
    // Gives up ownership: the caller must hand the result to kplm_set_sink
    // or kplm_sink_release.
    kplm_sink release() noexcept { return std::exchange(s_, kplm_sink{}); }
    const kplm_sink &raw() const noexcept { return s_; }

private:
    kplm_sink s_;
};

// Config objects of the built-in sinks: the C defaults (kplm_*_config_init),
// then the setters' values. Strings are copied; kplm copies them again.

// DogStatsD over UDP (kplm_sink_dogstatsd).
class DogStatsDConfig {
public:
    DogStatsDConfig() { kplm_dogstatsd_config_init(&c_); }
    DogStatsDConfig &host(std::string h) { return set(host_, std::move(h)); }
    DogStatsDConfig &port(std::uint16_t p) { c_.port = p; return *this; }
    DogStatsDConfig &prefix(std::string p) { return set(prefix_, std::move(p)); }
    DogStatsDConfig &tags(std::vector<std::string> t) { tags_ = std::move(t); return *this; }
    DogStatsDConfig &tag(std::string t) { tags_.push_back(std::move(t)); return *this; }
    DogStatsDConfig &max_datagram_bytes(std::uint32_t n) { c_.max_datagram_bytes = n; return *this; }
    // The C config, its pointers into this object (valid while it is unchanged).
    kplm_dogstatsd_config raw(std::vector<const char *> &tag_pointers) const {
        kplm_dogstatsd_config c = c_;
        detail::set_if(c.host, host_);
        detail::set_if(c.prefix, prefix_);
        tag_pointers.clear();
        for (const std::string &t : tags_) tag_pointers.push_back(t.c_str());
        c.tags = tag_pointers.empty() ? nullptr : tag_pointers.data();
        c.tag_count = tag_pointers.size();
        return c;
    }

private:
    DogStatsDConfig &set(std::optional<std::string> &field, std::string v) { field = std::move(v); return *this; }
    kplm_dogstatsd_config c_;
    std::optional<std::string> host_, prefix_;
    std::vector<std::string> tags_;
};

enum class EmfDestination {
    Stdout = KPLM_EMF_STDOUT,
    File = KPLM_EMF_FILE,
    Tcp = KPLM_EMF_TCP,
    Udp = KPLM_EMF_UDP
};

// CloudWatch Embedded Metric Format (kplm_sink_emf).
class EmfConfig {
public:
    EmfConfig() { kplm_emf_config_init(&c_); }
    EmfConfig &destination(EmfDestination d) { c_.destination = static_cast<kplm_emf_destination>(d); return *this; }
    EmfConfig &path(std::string p) { return set(path_, std::move(p)); }
    EmfConfig &host(std::string h) { return set(host_, std::move(h)); }
    EmfConfig &port(std::uint16_t p) { c_.port = p; return *this; }
    EmfConfig &cw_namespace(std::string ns) { return set(namespace_, std::move(ns)); }
    EmfConfig &timeout(std::chrono::duration<double, std::milli> d) { c_.timeout_ms = d.count(); return *this; }
    kplm_emf_config raw() const {
        kplm_emf_config c = c_;
        detail::set_if(c.path, path_);
        detail::set_if(c.host, host_);
        detail::set_if(c.cw_namespace, namespace_);
        return c;
    }

private:
    EmfConfig &set(std::optional<std::string> &field, std::string v) { field = std::move(v); return *this; }
    kplm_emf_config c_;
    std::optional<std::string> path_, host_, namespace_;
};

// Prometheus exposition over HTTP (kplm_sink_prometheus).
class PrometheusConfig {
public:
    PrometheusConfig() { kplm_prometheus_config_init(&c_); }
    PrometheusConfig &address(std::string a) { return set(address_, std::move(a)); }
    PrometheusConfig &port(std::uint16_t p) { c_.port = p; return *this; }
    // "" = no prefix; unset = the default "kplm_".
    PrometheusConfig &prefix(std::string p) { return set(prefix_, std::move(p)); }
    kplm_prometheus_config raw() const {
        kplm_prometheus_config c = c_;
        detail::set_if(c.address, address_);
        detail::set_if(c.prefix, prefix_);
        return c;
    }

private:
    PrometheusConfig &set(std::optional<std::string> &field, std::string v) { field = std::move(v); return *this; }
    kplm_prometheus_config c_;
    std::optional<std::string> address_, prefix_;
};

enum class OtlpCompression {
    Default = KPLM_OTLP_COMPRESSION_DEFAULT,  // OTEL_EXPORTER_OTLP_(METRICS_)COMPRESSION, else none
    None = KPLM_OTLP_COMPRESSION_NONE,
    Gzip = KPLM_OTLP_COMPRESSION_GZIP
};

// OTLP/HTTP metrics export (kplm_sink_otlp). What is left unset comes from
// the OTEL_EXPORTER_OTLP_* environment variables, as kplm.h describes.
class OtlpConfig {
public:
    OtlpConfig() { kplm_otlp_config_init(&c_); }
    OtlpConfig &endpoint(std::string e) { return set(endpoint_, std::move(e)); }
    OtlpConfig &timeout(std::chrono::duration<double, std::milli> d) { c_.timeout_ms = d.count(); return *this; }
    OtlpConfig &max_retries(std::uint32_t n) { c_.max_retries = n; return *this; }
    OtlpConfig &service_name(std::string s) { return set(service_name_, std::move(s)); }
    // Extra request headers, "Name: value".
    OtlpConfig &headers(std::vector<std::string> h) { headers_ = std::move(h); return *this; }
    OtlpConfig &header(std::string h) { headers_.push_back(std::move(h)); return *this; }
    OtlpConfig &compression(OtlpCompression c) { c_.compression = static_cast<std::uint32_t>(c); return *this; }
    // The C config, its pointers into this object (valid while it is unchanged).
    kplm_otlp_config raw(std::vector<const char *> &header_pointers) const {
        kplm_otlp_config c = c_;
        detail::set_if(c.endpoint, endpoint_);
        detail::set_if(c.service_name, service_name_);
        header_pointers.clear();
        for (const std::string &h : headers_) header_pointers.push_back(h.c_str());
        if (!header_pointers.empty()) {
            c.headers = header_pointers.data();
            c.header_count = header_pointers.size();
        }
        return c;
    }

private:
    OtlpConfig &set(std::optional<std::string> &field, std::string v) { field = std::move(v); return *this; }
    kplm_otlp_config c_;
    std::optional<std::string> endpoint_, service_name_;
    std::vector<std::string> headers_;
};

// Amazon CloudWatch PutMetricData (kplm_sink_cloudwatch).
class CloudWatchConfig {
public:
    CloudWatchConfig() { kplm_cloudwatch_config_init(&c_); }
    CloudWatchConfig &region(std::string r) { return set(region_, std::move(r)); }
    CloudWatchConfig &endpoint(std::string e) { return set(endpoint_, std::move(e)); }
    CloudWatchConfig &cw_namespace(std::string ns) { return set(namespace_, std::move(ns)); }
    CloudWatchConfig &access_key_id(std::string k) { return set(access_key_id_, std::move(k)); }
    CloudWatchConfig &secret_access_key(std::string k) { return set(secret_access_key_, std::move(k)); }
    CloudWatchConfig &session_token(std::string t) { return set(session_token_, std::move(t)); }
    // Static credentials in one call (the token only for temporary ones).
    CloudWatchConfig &credentials(std::string id, std::string secret, std::optional<std::string> token = {}) {
        access_key_id_ = std::move(id);
        secret_access_key_ = std::move(secret);
        session_token_ = std::move(token);
        return *this;
    }
    CloudWatchConfig &profile(std::string p) { return set(profile_, std::move(p)); }
    CloudWatchConfig &timeout(std::chrono::duration<double, std::milli> d) { c_.timeout_ms = d.count(); return *this; }
    CloudWatchConfig &max_retries(std::uint32_t n) { c_.max_retries = n; return *this; }
    kplm_cloudwatch_config raw() const {
        kplm_cloudwatch_config c = c_;
        detail::set_if(c.region, region_);
        detail::set_if(c.endpoint, endpoint_);
        detail::set_if(c.cw_namespace, namespace_);
        detail::set_if(c.access_key_id, access_key_id_);
        detail::set_if(c.secret_access_key, secret_access_key_);
        detail::set_if(c.session_token, session_token_);
        detail::set_if(c.profile, profile_);
        return c;
    }

private:
    CloudWatchConfig &set(std::optional<std::string> &field, std::string v) { field = std::move(v); return *this; }
    kplm_cloudwatch_config c_;
    std::optional<std::string> region_, endpoint_, namespace_, access_key_id_, secret_access_key_,
        session_token_, profile_;
};

// A built-in sink from its config. Throws kplm::Error (KPLM_EINVAL for a
// config kplm refuses, KPLM_ENOMEM).
inline BuiltinSink make_sink(const DogStatsDConfig &config) {
    std::vector<const char *> tags;
    kplm_dogstatsd_config c = config.raw(tags);
    kplm_sink s{};
    detail::check(kplm_sink_dogstatsd(&c, &s), "kplm_sink_dogstatsd");
    return BuiltinSink(s);
}
inline BuiltinSink make_sink(const EmfConfig &config) {
    kplm_emf_config c = config.raw();
    kplm_sink s{};
    detail::check(kplm_sink_emf(&c, &s), "kplm_sink_emf");
    return BuiltinSink(s);
}
inline BuiltinSink make_sink(const PrometheusConfig &config) {
    kplm_prometheus_config c = config.raw();
    kplm_sink s{};
    detail::check(kplm_sink_prometheus(&c, &s), "kplm_sink_prometheus");
    return BuiltinSink(s);
}
inline BuiltinSink make_sink(const OtlpConfig &config) {
    std::vector<const char *> headers;
    kplm_otlp_config c = config.raw(headers);
    kplm_sink s{};
    detail::check(kplm_sink_otlp(&c, &s), "kplm_sink_otlp");
    return BuiltinSink(s);
}
inline BuiltinSink make_sink(const CloudWatchConfig &config) {
    kplm_cloudwatch_config c = config.raw();
    kplm_sink s{};
    detail::check(kplm_sink_cloudwatch(&c, &s), "kplm_sink_cloudwatch");
    return BuiltinSink(s);
}

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
    // How long flush() waits for another thread's export, and close() for
    // the final one (which then completes in the background).
    Config &export_timeout(std::chrono::duration<double, std::milli> d) {
        c_.export_timeout_ms = d.count();
        return *this;
    }
    Config &granularity(Granularity g) {
        c_.granularity = static_cast<kplm_granularity>(g);
        return *this;
    }
    // Export and report only the metrics within the level, as the KPL does.
    Config &kpl_level_filter(bool on) {
        c_.kpl_level_filter = on ? 1 : 0;
        return *this;
    }
    // BufferingTime and RequestTime as distribution metrics at 1% (see quantile).
    Config &kpl_distributions(bool on) {
        c_.kpl_distributions = on ? 1 : 0;
        return *this;
    }
    Config &metric_namespace(std::string ns) {
        namespace_ = std::move(ns);
        return *this;
    }
    Config &clock(Clock fn) {
        clock_ = fn ? std::make_shared<Clock>(std::move(fn)) : nullptr;
        return *this;
    }
    // The C config (without the clock), its namespace pointing into this
    // object (valid while it is unchanged).
    kplm_config raw() const noexcept {
        kplm_config c = c_;
        detail::set_if(c.metric_namespace, namespace_);
        return c;
    }
    const std::shared_ptr<Clock> &clock_fn() const noexcept { return clock_; }

private:
    kplm_config c_;
    std::optional<std::string> namespace_;
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

// What a C++ sink's user_data points to: the sink and the manager's clock
// (a final export reads it too). The Manager holds one reference; kplm
// holds another from a successful open to close (library_ref), so a final
// export that outlives the Manager still finds both alive, and close
// releases them. A sink never opened is released with the Manager.
struct SinkLife : std::enable_shared_from_this<SinkLife> {
    std::shared_ptr<Sink> sink;
    std::shared_ptr<Config::Clock> clock;
    std::shared_ptr<SinkLife> library_ref;  // touched only by open and close (serialised by kplm)
};

// Trampolines from the C callbacks to a Sink. They stop every exception at
// the C boundary.
struct SinkCallbacks {
    static int open(void *ud) noexcept {
        auto *life = static_cast<SinkLife *>(ud);
        try {
            life->sink->open();
            life->library_ref = life->shared_from_this();
            return 0;
        } catch (...) {
            return 1;
        }
    }
    static int export_snapshots(void *ud, const kplm_snapshot *s, std::size_t n) noexcept {
        try {
            static_cast<SinkLife *>(ud)->sink->export_snapshots(Batch(s, n));
            return 0;
        } catch (...) {
            return 1;
        }
    }
    static void record(void *ud, const kplm_event *e) noexcept {
        try {
            static_cast<SinkLife *>(ud)->sink->record(EventView(*e));
        } catch (...) {
        }
    }
    static void close(void *ud) noexcept {
        auto *life = static_cast<SinkLife *>(ud);
        // kplm calls nothing of this sink after close: its reference goes
        // (possibly the last one) once Sink::close has returned.
        std::shared_ptr<SinkLife> keep = std::move(life->library_ref);
        try {
            life->sink->close();
        } catch (...) {
        }
    }
};

// Keeps a clock function reachable for the rest of the process: for a
// manager whose close failed or timed out with a built-in sink, whose final
// export may read the clock after the Manager is gone, with no callback to
// say when it is done. A rare, bounded leak rather than a use-after-free.
inline void keep_forever(std::shared_ptr<Config::Clock> clock) {
    static std::mutex *lock = new std::mutex;
    static auto *kept = new std::vector<std::shared_ptr<Config::Clock>>;
    std::lock_guard<std::mutex> guard(*lock);
    kept->push_back(std::move(clock));
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
    // Closes (final flush) and frees the manager; errors are ignored (call
    // close() first to see them). See "Lifetime" at the top.
    ~Manager() { reset(); }

    Manager(const Manager &) = delete;
    Manager &operator=(const Manager &) = delete;
    Manager(Manager &&o) noexcept
        : m_(std::exchange(o.m_, nullptr)),
          sink_(std::move(o.sink_)),
          clock_(std::move(o.clock_)) {}
    Manager &operator=(Manager &&o) noexcept {
        if (this != &o) {
            reset();
            m_ = std::exchange(o.m_, nullptr);
            sink_ = std::move(o.sink_);
            clock_ = std::move(o.clock_);
        }
        return *this;
    }

    // Before start(); replaces an earlier sink. The manager keeps the sink
    // alive as long as kplm may call it (see "Lifetime" at the top).
    void set_sink(std::shared_ptr<Sink> sink) {
        if (!sink) throw Error(KPLM_EINVAL, "kplm::Manager::set_sink (null sink)");
        auto life = std::make_shared<detail::SinkLife>();
        bool eventful = sink->eventful();
        life->sink = std::move(sink);
        life->clock = clock_;
        kplm_sink s{};
        s.user_data = life.get();
        s.open = &detail::SinkCallbacks::open;
        s.export_snapshots = &detail::SinkCallbacks::export_snapshots;
        s.record = eventful ? &detail::SinkCallbacks::record : nullptr;
        s.close = &detail::SinkCallbacks::close;
        detail::check(kplm_set_sink(live(), &s), "kplm_set_sink");
        sink_ = std::move(life);  // an earlier sink was never opened: released here
    }

    // A built-in sink (make_sink). Once this returns the manager owns it; if
    // it throws, `sink` is released as it goes out of scope.
    void set_sink(BuiltinSink sink) {
        if (!sink) throw Error(KPLM_EINVAL, "kplm::Manager::set_sink (empty BuiltinSink)");
        kplm_sink s = sink.raw();
        detail::check(kplm_set_sink(live(), &s), "kplm_set_sink");
        (void)sink.release();  // the manager's now
        sink_.reset();
    }

    // Extra dimension on every line, at a granularity (before start()).
    void add_dimension(const std::string &name, const std::string &value, Granularity granularity) {
        detail::check(kplm_add_dimension(live(), name.c_str(), value.c_str(),
                                         static_cast<kplm_granularity>(granularity)),
                      "kplm_add_dimension");
    }

    void start() { detail::check(kplm_start(live()), "kplm_start"); }
    void flush() { detail::check(try_flush(), "kplm_flush"); }
    kplm_status try_flush() noexcept { return kplm_flush(m_); }
    // Final flush, then the sink's close. Throws ESINK if the final export
    // failed or outlived export_timeout (it then completes in the background).
    void close() { detail::check(try_close(), "kplm_close"); }
    kplm_status try_close() noexcept { return kplm_close(m_); }

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
    Metric metric(const std::string &name, const std::string &stream = {},
                  const std::string &shard_id = {}, const std::string &error_code = {}) {
        return metric(name.c_str(), detail::opt(stream), detail::opt(shard_id), detail::opt(error_code));
    }

    // Statistics of one key (formed as put forms it) over the last `seconds`
    // (1..window_seconds) or, with kplm::cumulative, since creation.
    Statistics query(const char *name, const char *stream = nullptr, const char *shard_id = nullptr,
                     const char *error_code = nullptr, std::uint32_t seconds = cumulative) const {
        Statistics out;
        detail::check(try_query(out, name, stream, shard_id, error_code, seconds), "kplm_query");
        return out;
    }
    Statistics query(const std::string &name, const std::string &stream = {}, const std::string &shard_id = {},
                     const std::string &error_code = {}, std::uint32_t seconds = cumulative) const {
        return query(name.c_str(), detail::opt(stream), detail::opt(shard_id), detail::opt(error_code),
                     seconds);
    }
    kplm_status try_query(Statistics &out, const char *name, const char *stream = nullptr,
                          const char *shard_id = nullptr, const char *error_code = nullptr,
                          std::uint32_t seconds = cumulative) const noexcept {
        kplm_statistics s{};
        kplm_status st = kplm_query(m_, name, stream, shard_id, error_code, seconds, &s);
        if (st == KPLM_OK) out = Statistics::from(s);
        return st;
    }
    // Every key of one metric name, merged.
    Statistics query_name(const std::string &name, std::uint32_t seconds = cumulative) const {
        Statistics out;
        detail::check(try_query_name(out, name.c_str(), seconds), "kplm_query_name");
        return out;
    }
    kplm_status try_query_name(Statistics &out, const char *name,
                               std::uint32_t seconds = cumulative) const noexcept {
        kplm_statistics s{};
        kplm_status st = kplm_query_name(m_, name, seconds, &s);
        if (st == KPLM_OK) out = Statistics::from(s);
        return st;
    }

    // Makes `name` a distribution metric (before start; 0 < a <= 0.1).
    void set_distribution(const char *name, double relative_accuracy) {
        detail::check(kplm_set_distribution(live(), name, relative_accuracy), "kplm_set_distribution");
    }
    // The value at quantile q (0..1) of one key of a distribution metric
    // (its stream only, or none), over the last `seconds` or, with
    // kplm::cumulative, since creation: within a·|x| of the exact sample
    // quantile x. NaN with no observation.
    double quantile(const char *name, double q, const char *stream = nullptr,
                    std::uint32_t seconds = cumulative) const {
        kplm_dimension dim{"stream", stream};
        double out = 0;
        detail::check(kplm_query_quantile(m_, name, stream ? &dim : nullptr, stream ? 1 : 0, seconds, q, &out),
                      "kplm_query_quantile");
        return out;
    }

    // Visits the rolling-window statistics, in export order, on this thread:
    // visit(SnapshotView) returns void, or bool (false stops). An exception
    // from visit stops the visits and is rethrown.
    template <class Visit>
    void for_each_snapshot(Visit &&visit) const {
        using V = std::remove_reference_t<Visit>;
        struct Context {
            V *visit;
            std::exception_ptr error;
            static int call(void *ud, const kplm_snapshot *s) noexcept {
                auto *self = static_cast<Context *>(ud);
                try {
                    if constexpr (std::is_same_v<decltype((*self->visit)(SnapshotView(*s))), void>) {
                        (*self->visit)(SnapshotView(*s));
                        return 0;
                    } else {
                        return (*self->visit)(SnapshotView(*s)) ? 0 : 1;
                    }
                } catch (...) {
                    self->error = std::current_exception();
                    return 1;
                }
            }
        };
        Context ctx{&visit, nullptr};
        kplm_status st = kplm_snapshots(live(), &Context::call, &ctx);
        if (ctx.error) std::rethrow_exception(ctx.error);
        detail::check(st, "kplm_snapshots");
    }

    // Rolling-window statistics, copied out.
    std::vector<Snapshot> snapshots() const {
        std::vector<Snapshot> out;
        for_each_snapshot([&out](const SnapshotView &s) { out.push_back(Snapshot::from(s)); });
        return out;
    }

    // The namespace sinks publish under (Config::metric_namespace).
    std::string metric_namespace() const { return kplm_namespace(live()); }

    kplm_manager *raw() const noexcept { return m_; }

private:
    kplm_manager *live() const {
        if (!m_) throw Error(KPLM_EINVAL, "kplm::Manager (moved from)");
        return m_;
    }
    void reset() noexcept {
        if (m_) {
            // A final export that times out goes on after kplm_free: a C++
            // sink (and the clock it holds) is then released by its close
            // callback (detail::SinkLife); sink_ is only the Manager's share.
            kplm_status closed = kplm_close(m_);
            kplm_free(m_);
            if (closed == KPLM_ESINK && clock_ && !sink_) {
                // A built-in sink: nothing tells when its export is done.
                try {
                    detail::keep_forever(clock_);
                } catch (...) {
                }
            }
        }
        m_ = nullptr;
        sink_.reset();
        clock_.reset();
    }

    kplm_manager *m_ = nullptr;
    std::shared_ptr<detail::SinkLife> sink_;  // the C++ sink set last, if any
    std::shared_ptr<Config::Clock> clock_;
};

}  // namespace kplm

#endif  // KPLM_HPP
