//! Process-wide allocator settings for streaming workloads.

/// Makes glibc's `malloc` and mimalloc keep freed memory for reuse instead of handing it back
/// to the kernel.
///
/// A run frees and reallocates the same buffers many times a second (HDF5's 1 MiB chunk
/// buffers, batch vectors). With glibc's defaults each of those large blocks is a fresh
/// `mmap`, and every page is zeroed by the kernel on first touch: on the smalldata benchmark
/// that halved the write rate. mimalloc (the `shotflow` binary's allocator) purges freed
/// memory after a second by default; a karabo-bridge server allocating a 34 MB train every
/// 30 ms then spent two thirds of its time in the kernel zeroing pages. The `shotflow` binary
/// and the benchmarks call this at start; call it at the start of your own program for the
/// same effect. Resident memory then stays at the run's peak instead of shrinking when idle.
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
    // `mi_option_purge_delay` in mimalloc 3 (libmimalloc-sys names options only up to 14);
    // -1 = never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting an option only changes mimalloc's purge policy; safe at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
