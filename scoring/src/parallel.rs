//! Assessing a batch of submissions on several threads. What a text says on its own
//! ([`Prepared`](crate::Prepared)) has no order dependency; only the scorer's fold does. So a
//! batch is assessed in parallel and then folded in order on one thread, with results identical
//! to scoring one submission at a time.

use std::{num::NonZeroUsize, thread};

/// Items one thread takes at least: below this, starting a thread costs more than it saves.
const MIN_PER_THREAD: usize = 32;

/// The threads this machine runs at once (1 when unknown).
pub fn available_threads() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// `f` of every item, in order, computed on up to `threads` threads (the caller's among them).
/// A panic in `f` is resumed on the caller's thread.
pub fn map_ordered<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, items.len().div_ceil(MIN_PER_THREAD).max(1));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_order_whatever_the_threads() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [0, 1, 2, 3, 7, 64] {
            let out = map_ordered(&items, threads, |x| x * 3);
            assert_eq!(out, items.iter().map(|x| x * 3).collect::<Vec<_>>(), "{threads} threads");
        }
        assert!(map_ordered(&[] as &[u64], 4, |x| *x).is_empty());
    }

    #[test]
    fn several_threads_run_for_a_large_batch() {
        let items: Vec<u64> = (0..256).collect();
        let ids = map_ordered(&items, 4, |_| thread::current().id());
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!(ids[0], thread::current().id(), "the caller takes the first chunk");
    }
}
