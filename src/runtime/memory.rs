//! Process-wide allocator settings for streaming workloads.

/// Makes glibc's `malloc` keep freed memory for reuse instead of handing it back to the kernel.
///
/// A run frees and reallocates the same buffers many times a second (HDF5's 1 MiB chunk
/// buffers, batch vectors). With glibc's defaults each of those large blocks is a fresh
/// `mmap`, and every page is zeroed by the kernel on first touch: on the smalldata benchmark
/// that halved the write rate. The `shotflow` binary and the benchmarks call this at start;
/// call it at the start of your own program for the same effect. No effect on other C
/// libraries or allocators (mimalloc, musl).
///
/// # Examples
///
/// ```
/// shotflow::runtime::keep_freed_memory();
/// ```
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
