import CKPLMShims
import Glibc

/// The threads kplm starts (the uploader, the Prometheus server): a pthread
/// with a name (seen in ps, top, gdb) running a closure, which holds what it
/// captures until it returns.
package enum NamedThread {
    /// Why a thread did not start: pthread_create's error code.
    package struct StartFailure: Error {
        package let code: Int32
    }

    /// Starts a thread named `name` (at most 15 bytes) running `body`, and
    /// returns it (to join or detach).
    package static func start(named name: String,
                              _ body: @escaping @Sendable () -> Void) throws(StartFailure) -> pthread_t {
        let context = Unmanaged.passRetained(Job(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
            job.name.withCString { kplmshim_set_thread_name($0) }
            job.body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Job>.fromOpaque(context).release()
            throw StartFailure(code: rc)
        }
        return thread
    }

    /// What a new thread runs, handed over through pthread_create's argument.
    private final class Job {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }
}
