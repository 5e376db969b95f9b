//! Handing memory the daemon freed back to the system.
//!
//! glibc's allocator returns freed heap memory to the system only from the top of the heap.
//! A sync parses Cobot's answers, compiles a new snapshot and drops the old one; the new
//! snapshot is allocated while the temporaries still live, so when they are freed they leave
//! holes below it whose pages stay resident. With 10,000 members that was 5.6 MiB of the idle
//! daemon's 13.6 MiB of anonymous memory (BENCHMARKS.md). `malloc_trim(0)` gives the pages of
//! those holes back; the daemon calls [`release_freed`] after each sync attempt and reload.

/// Gives the pages the allocator holds free back to the system; true when any were released.
/// Costs a walk over the heap (about a millisecond for the daemon's), so it is called after
/// the rare large frees, not per request. Does nothing where the C library is not glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_freed() -> bool {
    // SAFETY: malloc_trim takes no pointers and works only on glibc's own free lists, under
    // the allocator's locks, so any thread may call it at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Gives the pages the allocator holds free back to the system (nothing to do here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_can_be_handed_back_at_any_time() {
        let big: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
        let keep = vec![1u8; 16];
        drop(big);
        // Whether anything was released depends on the heap's shape; it must not fail.
        let _ = super::release_freed();
        assert_eq!(keep, [1u8; 16]);
    }
}
