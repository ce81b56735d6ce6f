//! The worker pool: at most `jobs` threads, each holding at most one connection, so `jobs` bounds
//! the open connections of a run, not the files. A worker takes every artifact once (cache
//! lookup, then its download); once none is left to start it helps a running download that is
//! worth splitting (see `split`), so every connection keeps busy until the last byte.
//!
//! Threads are bounded by the work as well: one per artifact at first, and more only when a
//! download is offered for splitting (up to one per piece it can be cut into), so `--jobs
//! 250000` for six files starts six threads. A thread that cannot be started (a low `ulimit
//! -u`) leaves the run with the workers it has; with none at all, the calling thread does the
//! work itself.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use anyhow::anyhow;

use super::cache::Cache;
use super::fetch::{self, Ctx, Outcome};
use super::progress::Reporter;
use super::split::{self, Split, SPLIT_MIN_PIECE};
use super::ResolveOptions;
use crate::plan::Artifact;

/// Locks `m`; a panic of another holder does not poison the state for everyone else (each worker
/// reports its own failure).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`Condvar::wait`], tolerating poison like [`lock`].
pub(super) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(PoisonError::into_inner)
}

/// Resolves every artifact of `unique` over at most `opts.jobs` connections; one outcome each, in
/// the same order.
pub(super) fn run(
    cache: &Cache,
    opts: &ResolveOptions,
    reporter: &Reporter,
    unique: &[&Artifact],
) -> Vec<Outcome> {
    let pool = Pool::new(unique.len());
    let ctx = Ctx::new(cache, opts, reporter, &pool);
    let outcomes: Mutex<Vec<Option<Outcome>>> =
        Mutex::new((0..unique.len()).map(|_| None).collect());
    // A panic below (an HTTP library that cannot start a thread of its own panics) fails that
    // artifact, not the run.
    let work = || loop {
        match pool.next_job() {
            Job::Artifact(i) => {
                let _running = Running(&pool);
                let outcome =
                    catch_unwind(AssertUnwindSafe(|| fetch::resolve_one(&ctx, unique[i])))
                        .unwrap_or_else(|_| Outcome::Failed(panicked(unique[i])));
                lock(&outcomes)[i] = Some(outcome);
            }
            Job::Piece(split, i) => {
                if catch_unwind(AssertUnwindSafe(|| split::help(&ctx, &split, i))).is_err() {
                    split.fail(anyhow!("a download thread panicked"));
                }
            }
            Job::Exit => break,
        }
    };
    std::thread::scope(|s| {
        let mut cap = opts.jobs.max(1);
        let mut started = 0;
        while let Some(wanted) = pool.wait_for_demand(started, cap) {
            while started < wanted {
                match std::thread::Builder::new()
                    .name("resolve".into())
                    .spawn_scoped(s, work)
                {
                    Ok(_) => started += 1,
                    Err(e) => {
                        if started > 0 {
                            reporter.note(&format!(
                                "cannot start more than {started} download thread(s) ({e}); \
                                 going on with those"
                            ));
                        }
                        cap = started;
                        break;
                    }
                }
            }
            if started == 0 {
                // Not even one thread: this one does all the work, one artifact after another.
                work();
                break;
            }
        }
    });
    outcomes
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed(anyhow!("worker thread panicked"))))
        .collect()
}

fn panicked(art: &Artifact) -> anyhow::Error {
    anyhow!(
        "{} {}: fetching it failed in a thread that panicked (see above)",
        art.component,
        art.file_name
    )
}

/// Hands out the work: artifacts first, then pieces of running downloads.
pub(super) struct Pool {
    state: Mutex<PoolState>,
    wake: Condvar,
}

struct PoolState {
    next: usize,
    total: usize,
    /// Artifacts taken and not finished: while any is, an idle worker may still get a piece.
    running: usize,
    splits: Vec<Arc<Split>>,
}

enum Job {
    Artifact(usize),
    Piece(Arc<Split>, usize),
    Exit,
}

impl Pool {
    fn new(total: usize) -> Pool {
        Pool {
            state: Mutex::new(PoolState {
                next: 0,
                total,
                running: 0,
                splits: Vec::new(),
            }),
            wake: Condvar::new(),
        }
    }

    fn next_job(&self) -> Job {
        let mut st = lock(&self.state);
        loop {
            if st.next < st.total {
                st.next += 1;
                st.running += 1;
                return Job::Artifact(st.next - 1);
            }
            let mut offers: Vec<(u64, &Arc<Split>)> = st
                .splits
                .iter()
                .filter_map(|s| s.stealable().map(|left| (left, s)))
                .collect();
            // The largest share left anywhere: that is the download that would finish last.
            offers.sort_by_key(|(left, _)| std::cmp::Reverse(*left));
            if let Some(job) = offers
                .into_iter()
                .find_map(|(_, s)| s.steal().map(|i| Job::Piece(Arc::clone(s), i)))
            {
                return job;
            }
            if st.running == 0 {
                return Job::Exit;
            }
            st = wait(&self.wake, st);
        }
    }

    /// Waits until the work could use more than `started` workers (at most `cap`), or is done.
    /// `Some(n)`: start workers up to `n` in all; `None`: nothing is left to start workers for.
    fn wait_for_demand(&self, started: usize, cap: usize) -> Option<usize> {
        let mut st = lock(&self.state);
        loop {
            if st.next == st.total && st.running == 0 {
                return None;
            }
            // One worker per artifact not yet finished, and one per piece a running download can
            // still be cut into (at least `SPLIT_MIN_PIECE` each).
            let pieces: u64 = st.splits.iter().map(|s| s.len / SPLIT_MIN_PIECE).sum();
            let demand = (st.total - st.next + st.running)
                .saturating_add(usize::try_from(pieces).unwrap_or(usize::MAX))
                .min(cap);
            if demand > started || started == 0 {
                return Some(demand.max(1));
            }
            st = wait(&self.wake, st);
        }
    }

    /// Wakes idle workers after something they wait for changed. Taking the lock first means a
    /// worker between its check and its wait cannot miss this.
    pub(super) fn poke(&self) {
        drop(lock(&self.state));
        self.wake.notify_all();
    }

    /// Offers pieces of `split` to idle workers.
    pub(super) fn add(&self, split: Arc<Split>) {
        lock(&self.state).splits.push(split);
        self.wake.notify_all();
    }

    pub(super) fn remove(&self, split: &Arc<Split>) {
        lock(&self.state).splits.retain(|s| !Arc::ptr_eq(s, split));
    }
}

/// Marks an artifact finished even if resolving it panicked, so idle workers can still exit.
struct Running<'a>(&'a Pool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).running -= 1;
        self.0.wake.notify_all();
    }
}
