//! Allocator tuning for a long-running process (glibc only; other C
//! libraries keep their defaults): platform code, so it lives behind the
//! platform seam with the rest. Each `unsafe` block says why it is sound
//! (`clippy::undocumented_unsafe_blocks` is denied).

/// Tunes glibc's allocator, before any thread starts. Arenas are capped at
/// two: glibc gives each thread that allocates concurrently an arena of its
/// own (up to 8 per core), and memory freed in one stays resident there;
/// with the discovery threads of every pass, the tokio workers and the
/// blocking pool, that cost ~5–9 MB of RSS on a busy host (bench/serve.sh)
/// for no speed we could measure. And blocks from 256 KiB up are always
/// their own mappings, returned whole when freed: left to itself glibc
/// raises that threshold to the largest block freed so far (up to 32 MB),
/// after which the per-pass tables and encoded bodies are carved from the
/// heap and leave it fragmented (bench/soak.sh).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tunables; it takes no pointer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Hands freed heap back to the kernel. glibc keeps freed memory in its
/// arenas; with the old snapshot (a few MB) freed at every publish, that
/// would count as resident for nothing.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free
    // lists; it takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
