// Helpers of the C++ tests of kplm.hpp: check macros and a sub-test runner
// (each sub-test runs in a forked child under a watchdog, as the C tests'
// test_run does, with its own LeakSanitizer check in ASan builds).
#ifndef KPLM_CPP_TEST_HPP
#define KPLM_CPP_TEST_HPP

#include <kplm.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

extern "C" int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

namespace cpptest {

[[noreturn]] inline void fail(const char *file, int line, const std::string &what) {
    std::fprintf(stderr, "%s:%d: %s\n", file, line, what.c_str());
    std::fflush(stderr);
    _exit(1);
}

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) cpptest::fail(__FILE__, __LINE__, "CHECK(" #cond ")");      \
    } while (0)

#define CHECK_EQ(a, b)                                                           \
    do {                                                                         \
        auto a_ = (a);                                                           \
        auto b_ = (b);                                                           \
        if (!(a_ == b_)) {                                                       \
            std::ostringstream os_;                                              \
            os_ << #a " == " << a_ << ", expected " #b " == " << b_;             \
            cpptest::fail(__FILE__, __LINE__, os_.str());                        \
        }                                                                        \
    } while (0)

// `expr` must throw kplm::Error with status `st`.
#define CHECK_THROWS_STATUS(expr, st)                                            \
    do {                                                                         \
        bool thrown_ = false;                                                    \
        try {                                                                    \
            (void)(expr);                                                        \
        } catch (const kplm::Error &e_) {                                        \
            thrown_ = true;                                                      \
            if (e_.status() != (st))                                             \
                cpptest::fail(__FILE__, __LINE__,                                \
                              std::string(#expr " threw ") + e_.what() +         \
                                  ", expected " + kplm_status_string(st));       \
        }                                                                        \
        if (!thrown_) cpptest::fail(__FILE__, __LINE__, #expr " did not throw"); \
    } while (0)

inline void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs fn in a forked child with a watchdog of `seconds`; prints PASS/FAIL.
// Returns 0 on success.
template <class Fn>
int run(const char *name, Fn fn, unsigned seconds = 60) {
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        return 1;
    }
    if (pid == 0) {
        std::signal(SIGALRM, [](int) { _exit(124); });
        alarm(seconds);
        try {
            fn();
        } catch (const std::exception &e) {
            std::fprintf(stderr, "uncaught exception: %s\n", e.what());
            _exit(1);
        }
        std::fflush(stdout);
        std::fflush(stderr);
        if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) {
            std::fprintf(stderr, "LeakSanitizer: the sub-test leaked memory (report above)\n");
            _exit(1);
        }
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            std::perror("waitpid");
            return 1;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        std::printf("PASS %s\n", name);
        return 0;
    }
    if (WIFSIGNALED(status))
        std::printf("FAIL %s (killed by signal %d: %s)\n", name, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 124)
        std::printf("FAIL %s (timed out after %u s)\n", name, seconds);
    else
        std::printf("FAIL %s (exit status %d)\n", name, WEXITSTATUS(status));
    std::fflush(stdout);
    return 1;
}

}  // namespace cpptest

#define RUN(fn) (failures += cpptest::run(#fn, fn) != 0)

#endif
