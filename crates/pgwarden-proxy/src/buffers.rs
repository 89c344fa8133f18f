//! Per-thread spare I/O buffers, lent to sessions for a burst of activity.
//!
//! A client between transactions holds no buffer (an idle client should cost little memory),
//! yet allocating and freeing three buffers per transaction costs CPU and gives the next
//! transaction cold memory. Like PgBouncer's shared I/O buffers, an idle session gives its
//! buffers back here and the next active one takes them, most recently used first (still in
//! the CPU's cache). The cache is per thread (no lock), bounded, and keeps only buffers of the
//! ordinary size: one that grew for a large result is freed instead.

use std::cell::RefCell;

use bytes::BytesMut;

/// Capacity of a lent buffer.
pub(crate) const BUFFER_SIZE: usize = 8 * 1024;

/// Buffers kept per thread at most (64 × 8 KiB = 512 KiB): enough for the sessions that go
/// idle and active within one turn of the runtime; a spare is reused within microseconds.
const KEEP: usize = 64;

/// A buffer that grew past this is freed when given back, not kept.
const KEEP_AT_MOST: usize = 4 * BUFFER_SIZE;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least [`BUFFER_SIZE`] bytes.
pub(crate) fn take() -> BytesMut {
    SPARE.with(|spare| take_from(&mut spare.borrow_mut()))
}

/// The most recently given spare, or a new buffer.
fn take_from(spare: &mut Vec<BytesMut>) -> BytesMut {
    spare
        .pop()
        .unwrap_or_else(|| BytesMut::with_capacity(BUFFER_SIZE))
}

/// Makes sure `buf` has a buffer of its own (taken here when it has none).
pub(crate) fn ensure(buf: &mut BytesMut) {
    ensure_all([buf]);
}

/// Gives `buf`'s buffer back (it must be empty) and leaves `buf` without one.
pub(crate) fn give(buf: &mut BytesMut) {
    give_all([buf]);
}

/// Gives several buffers back at once (each must be empty), leaving each without one.
pub(crate) fn give_all<const N: usize>(bufs: [&mut BytesMut; N]) {
    if bufs.iter().all(|b| b.capacity() == 0) {
        return;
    }
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        for buf in bufs {
            debug_assert!(buf.is_empty(), "only empty buffers are given back");
            if buf.capacity() == 0 {
                continue;
            }
            let mut b = std::mem::take(buf);
            b.clear();
            // Space consumed at the front is reclaimed without copying (the buffer is
            // empty); a buffer shared with a `Bytes` still alive cannot be, and is freed.
            if b.try_reclaim(BUFFER_SIZE) && b.capacity() <= KEEP_AT_MOST && spare.len() < KEEP {
                spare.push(b);
            }
        }
    });
}

/// [`ensure`] for several buffers, with one look at the spares.
pub(crate) fn ensure_all<const N: usize>(bufs: [&mut BytesMut; N]) {
    if bufs.iter().all(|b| b.capacity() > 0) {
        return;
    }
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        for buf in bufs {
            if buf.capacity() == 0 {
                *buf = take_from(&mut spare);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    #[test]
    fn a_given_buffer_is_lent_again_without_allocating() {
        let mut a = take();
        a.put_slice(b"hello");
        a.advance(5);
        let ptr = a.as_ptr();
        give(&mut a);
        assert_eq!(a.capacity(), 0, "the session keeps nothing");
        let b = take();
        assert!(b.capacity() >= BUFFER_SIZE);
        assert!(b.is_empty());
        // The same memory, reclaimed from the front.
        assert_eq!(b.as_ptr(), ptr.wrapping_sub(5));
    }

    #[test]
    fn grown_or_shared_buffers_are_not_kept() {
        // Drain what other tests of this thread left.
        while SPARE.with(|s| s.borrow_mut().pop()).is_some() {}
        let mut big = BytesMut::with_capacity(KEEP_AT_MOST * 2);
        give(&mut big);
        let mut shared = take();
        shared.put_slice(b"abc");
        let frozen = shared.split().freeze();
        give(&mut shared);
        assert_eq!(SPARE.with(|s| s.borrow().len()), 0);
        drop(frozen);
        let mut fine = take();
        give(&mut fine);
        assert_eq!(SPARE.with(|s| s.borrow().len()), 1);
    }
}
