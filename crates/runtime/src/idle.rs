//! What a model's pool workers do between the parallel sections of a run.
//!
//! A run is a chain of kernels, each split over the pool's threads. Between two of them
//! (and while one thread finishes a section alone) the other workers have nothing to do.
//! Rayon parks a worker after a few rounds of looking for work, and the next section then
//! waits for the operating system to wake it. On the 2-vCPU KVM guest of BENCHMARKS.md, a
//! `join` of two 20 µs halves after a 50 or 200 µs serial gap took 49.5-56.3 µs (median)
//! instead of 21: the parked worker came too late to take its half.
//!
//! [`IdleWorkers::Spin`] keeps the other workers polling for work for as long as a run
//! lasts, as ONNX Runtime's intra-op pool does by default
//! (`session.intra_op.allow_spinning`); between runs they park as before. A polling worker
//! offers its CPU to the operating system every 64 rounds without work (`sched_yield`),
//! so other busy threads still get it.
//!
//! [`IdleWorkers::Sleep`], rayon's own parking, is the default: on that same guest whole
//! models ran 0.96-0.99x the time with polling in one comparison and 1.08-1.11x in another
//! about 40 minutes later (`scripts/bench_modes.py --compare idle`, BENCHMARKS.md). A polling vCPU
//! may share its host core with the working one, or be descheduled by the hypervisor for
//! spinning; on a guest like this one the gain is not reliable.
use std::sync::atomic::{AtomicBool, Ordering};

/// What a model's idle pool workers do while one of its runs is in progress (`--idle`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdleWorkers {
    /// Poll for work until the run ends, so each parallel section starts on every thread
    /// at once.
    Spin,
    /// Park after a few rounds without work, as the thread pool does by itself, and be
    /// woken by the next section (the default).
    #[default]
    Sleep,
}

impl std::str::FromStr for IdleWorkers {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<IdleWorkers, crate::Error> {
        match s {
            "spin" => Ok(IdleWorkers::Spin),
            "sleep" => Ok(IdleWorkers::Sleep),
            other => Err(crate::Error::Invalid(format!(
                "idle workers `{other}`: expected spin or sleep"
            ))),
        }
    }
}

/// Runs `f` on `pool`; under [`IdleWorkers::Spin`] the pool's other workers poll for work
/// until `f` returns (or unwinds).
pub(crate) fn install<R: Send>(
    pool: &rayon::ThreadPool,
    idle: IdleWorkers,
    f: impl FnOnce() -> R + Send,
) -> R {
    let helpers = pool.current_num_threads().saturating_sub(1);
    if idle == IdleWorkers::Sleep || helpers == 0 {
        return pool.install(f);
    }
    pool.install(|| {
        let done = AtomicBool::new(false);
        let owner = rayon::current_thread_index();
        rayon::in_place_scope(|s| {
            for _ in 0..helpers {
                s.spawn(|_| poll(&done, owner));
            }
            // Set on return and on unwind alike: the scope waits for the pollers.
            let _end = SetOnDrop(&done);
            f()
        })
    })
}

/// Runs the pool's pending jobs until `done`.
fn poll(done: &AtomicBool, owner: Option<usize>) {
    // The run's own thread took this job back from its queue (the other workers were all
    // busy): it must go back to the run, which is below on its stack.
    if rayon::current_thread_index() == owner {
        return;
    }
    let mut idle_rounds = 0u32;
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_rounds = 0,
            Some(rayon::Yield::Idle) => {
                idle_rounds += 1;
                // Now and then, let any other runnable thread have this CPU.
                if idle_rounds.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            None => return,
        }
    }
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .expect("pool")
    }

    #[test]
    fn runs_nested_parallel_work_and_returns_its_value() {
        for n in [1, 2, 3] {
            let p = pool(n);
            for idle in [IdleWorkers::Spin, IdleWorkers::Sleep] {
                let got = install(&p, idle, || {
                    use rayon::prelude::*;
                    (0..10_000u64).into_par_iter().map(|x| x * x).sum::<u64>()
                });
                assert_eq!(got, (0..10_000u64).map(|x| x * x).sum::<u64>());
            }
        }
    }

    #[test]
    fn pollers_end_with_the_run_and_the_pool_stays_usable() {
        let p = pool(2);
        for _ in 0..50 {
            let t = Instant::now();
            install(&p, IdleWorkers::Spin, || {
                rayon::join(|| (), || ());
            });
            assert!(t.elapsed() < Duration::from_secs(5));
        }
        // Runs from several threads at once share the pool without hanging.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        install(&p, IdleWorkers::Spin, || {
                            rayon::join(|| std::hint::black_box(1), || 2)
                        });
                    }
                });
            }
        });
    }

    #[test]
    fn a_panic_in_the_run_ends_the_pollers() {
        let p = pool(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            install(&p, IdleWorkers::Spin, || panic!("boom"))
        }));
        assert!(r.is_err());
        assert_eq!(install(&p, IdleWorkers::Spin, || 7), 7);
    }

    #[test]
    fn parses_its_names() {
        assert_eq!("spin".parse::<IdleWorkers>().ok(), Some(IdleWorkers::Spin));
        assert_eq!(
            "sleep".parse::<IdleWorkers>().ok(),
            Some(IdleWorkers::Sleep)
        );
        assert!("nap".parse::<IdleWorkers>().is_err());
    }
}
