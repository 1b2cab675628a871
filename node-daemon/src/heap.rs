//! Handing freed heap back to the kernel. glibc keeps freed memory for reuse; after a
//! spike that will not come back soon (the eBPF loader parsing the kernel's BTF) or after
//! each cycle's transient copies, RSS would otherwise stay at the high-water mark.

/// Returns the free pages of the heap to the kernel (glibc only; elsewhere a no-op).
pub(crate) fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
