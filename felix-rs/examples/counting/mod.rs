//! Heap accounting for the scale examples: the system allocator wrapped
//! in `stats_alloc`'s counter, so what a stage keeps is the live count
//! after it minus the count before.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// The allocator every example that includes this module runs on.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes live on the heap now, in MB.
pub fn live_mb() -> f64 {
    let s = GLOBAL.stats();
    let live = s.bytes_allocated as f64 - s.bytes_deallocated as f64 + s.bytes_reallocated as f64;
    live / 1048576.0
}

/// `VmRSS` / `VmHWM` of this process, in MB.
pub fn process_memory_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Samples the live heap every millisecond on a thread of its own until
/// the returned guard is dropped; the guard tells the highest sample.
pub struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<f64>>,
}

impl PeakSampler {
    /// Starts sampling.
    pub fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = live_mb();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(live_mb());
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            peak
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling: the highest live heap seen, in MB.
    pub fn finish(mut self) -> f64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .expect("finished once")
            .join()
            .expect("the sampler does not panic")
    }
}
