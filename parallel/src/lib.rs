//! Computing per-item work of a slice on several threads, with results in the items' order: a
//! batch of submissions' texts assessed before the scorer folds them in log order
//! (`gata-scoring`), a batch of images decoded and resized before the DVA's model scores them
//! (`gata-stream-processors`). Only the per-item work runs in parallel; what depends on order
//! stays on one thread, so results equal computing one item at a time.

use std::{
    any::Any,
    num::NonZeroUsize,
    panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    sync::{Condvar, Mutex, PoisonError},
    thread,
};

/// Items one thread takes at least when each costs microseconds (a text to assess): below
/// this, starting a thread costs more than it saves. Items that cost milliseconds (an image to
/// decode) are worth a thread each.
pub const SMALL_ITEMS_PER_THREAD: usize = 32;

/// The threads this machine runs at once (1 when unknown).
pub fn available_threads() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// `f` of every item, in order, computed on up to `threads` threads (the caller's among them),
/// each taking `per_thread` items at least. A panic in `f` is resumed on the caller's thread.
pub fn map_ordered<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, items.len().div_ceil(per_thread.max(1)).max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    thread::scope(|scope| {
        let rest: Vec<_> =
            items.chunks(chunk).skip(1).map(|c| scope.spawn(move || c.iter().map(f).collect::<Vec<R>>())).collect();
        let mut out: Vec<R> = Vec::with_capacity(items.len());
        out.extend(items[..chunk].iter().map(f));
        for handle in rest {
            out.extend(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    })
}

/// Items computed together by one thread in [`map_fold_ordered`].
const CHUNK: usize = 64;
/// Chunks computed ahead of the fold, at most: bounds the results waiting in memory.
const AHEAD: usize = 64;

/// Folds `f` of every item into `fold`, in order, while `f` of the items after them is computed
/// on up to `threads` threads: the fold (one thread, ordered) and the computing overlap, and the
/// folding thread computes too whenever its next results are not ready yet. Results wait in
/// memory for at most [`AHEAD`] chunks of [`CHUNK`] items. A panic in `f` is resumed on the
/// caller's thread.
pub fn map_fold_ordered<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
    mut fold: impl FnMut(&T, R),
) {
    let chunks: Vec<&[T]> = items.chunks(CHUNK).collect();
    let helpers = threads.clamp(1, chunks.len().max(1)) - 1;
    let compute = |c: usize| catch_unwind(AssertUnwindSafe(|| chunks[c].iter().map(&f).collect::<Vec<R>>()));
    let state = Mutex::new(Chunks { claimed: 0, folding: 0, done: (0..chunks.len()).map(|_| None).collect() });
    let changed = Condvar::new();
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let wait = |g| changed.wait(g).unwrap_or_else(PoisonError::into_inner);
    let finish = |c: usize, result| {
        lock().done[c] = Some(result);
        changed.notify_all();
    };
    thread::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|| {
                loop {
                    let mut g = lock();
                    let c = loop {
                        if g.claimed == chunks.len() {
                            return;
                        }
                        if let Some(c) = g.claim() {
                            break c;
                        }
                        g = wait(g);
                    };
                    drop(g);
                    finish(c, compute(c));
                }
            });
        }
        // However the fold ends (a panic in `f` or in `fold` included), the helpers stop.
        let _stop = Stop { state: &state, changed: &changed };
        for (i, chunk) in chunks.iter().enumerate() {
            let results = loop {
                let mut g = lock();
                if let Some(done) = g.done[i].take() {
                    g.folding = i + 1;
                    changed.notify_all();
                    break done;
                }
                // Not ready: compute a chunk that is waiting, or wait for the one being computed.
                if let Some(c) = g.claim() {
                    drop(g);
                    finish(c, compute(c));
                } else {
                    drop(wait(g));
                }
            };
            let results = results.unwrap_or_else(|panic| resume_unwind(panic));
            for (item, r) in chunk.iter().zip(results) {
                fold(item, r);
            }
        }
    });
}

/// What the threads of [`map_fold_ordered`] share.
struct Chunks<R> {
    /// Chunks taken by a thread so far (they are taken in order).
    claimed: usize,
    /// The chunk being folded.
    folding: usize,
    /// Results of computed chunks not yet folded.
    done: Vec<Option<Computed<R>>>,
}

/// One chunk's results, or the payload of the panic that ended its computing.
type Computed<R> = Result<Vec<R>, Box<dyn Any + Send>>;

/// Ends [`map_fold_ordered`]'s helpers when dropped: nothing is left for them to take.
struct Stop<'a, R> {
    state: &'a Mutex<Chunks<R>>,
    changed: &'a Condvar,
}

impl<R> Drop for Stop<'_, R> {
    fn drop(&mut self) {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        g.claimed = g.done.len();
        self.changed.notify_all();
    }
}

impl<R> Chunks<R> {
    /// Takes the next chunk, unless all are taken or it would run too far ahead of the fold.
    fn claim(&mut self) -> Option<usize> {
        (self.claimed < self.done.len() && self.claimed < self.folding + AHEAD).then(|| {
            self.claimed += 1;
            self.claimed - 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order_whatever_the_threads() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [0, 1, 2, 3, 7, 64] {
            let out = map_ordered(&items, threads, SMALL_ITEMS_PER_THREAD, |x| x * 3);
            assert_eq!(out, items.iter().map(|x| x * 3).collect::<Vec<_>>(), "{threads} threads");
        }
        assert!(map_ordered(&[] as &[u64], 4, SMALL_ITEMS_PER_THREAD, |x| *x).is_empty());
    }

    #[test]
    fn folds_see_every_result_in_order_whatever_the_threads() {
        let items: Vec<u64> = (0..10_000).collect();
        for threads in [0, 1, 2, 3, 8] {
            let mut seen = Vec::new();
            map_fold_ordered(&items, threads, |x| x * 3, |item, r| seen.push((*item, r)));
            assert_eq!(seen, items.iter().map(|x| (*x, x * 3)).collect::<Vec<_>>(), "{threads} threads");
        }
        map_fold_ordered(&[] as &[u64], 4, |x| *x, |_, _| unreachable!("nothing to fold"));
    }

    #[test]
    fn a_panic_while_computing_reaches_the_caller() {
        // Far past what is computed ahead of the fold, so helpers are left waiting for room.
        let items: Vec<u64> = (0..100_000).collect();
        let caught = std::panic::catch_unwind(|| {
            map_fold_ordered(&items, 3, |x| if *x == 700 { panic!("item 700") } else { *x }, |_, _| {});
        });
        let panic = caught.expect_err("the panic is resumed");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"item 700"));
        let caught = std::panic::catch_unwind(|| {
            map_fold_ordered(&items, 3, |x| *x, |x, _| assert!(*x < 500, "fold stops at 500"));
        });
        assert!(caught.is_err(), "a panic in the fold ends the helpers and reaches the caller");
    }

    #[test]
    fn several_threads_run_for_a_large_batch() {
        let items: Vec<u64> = (0..256).collect();
        let ids = map_ordered(&items, 4, SMALL_ITEMS_PER_THREAD, |_| thread::current().id());
        let each = map_ordered(&items[..3], 3, 1, |_| thread::current().id());
        assert_eq!(each.iter().collect::<std::collections::HashSet<_>>().len(), 3, "a thread for each costly item");
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!(ids[0], thread::current().id(), "the caller takes the first chunk");
    }
}
