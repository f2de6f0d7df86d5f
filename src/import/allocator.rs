//! The C allocator told to keep the memory a bulk import gives back.
//!
//! Each chunk's buffers and builders (megabytes each) are freed once the
//! chunk is committed, and the next chunk's are allocated at once. glibc
//! hands allocations that large to `mmap` and returns them to the kernel
//! on `free` (or trims them off the heap), so every chunk's memory came
//! back zeroed from the kernel, a page fault per 4 KiB (page faults were
//! 7–8% of an import's CPU). Kept on the heap instead, the next chunk
//! reuses it: a quarter fewer faults, and with [`super::by_name`]'s
//! builder sizes 13% less CPU on the import bench. The cost is that the
//! process keeps its peak memory until it exits (peak RSS about 300 → 320
//! MB on that bench).
//!
//! Only `tripwire import` asks for this, before its threads start; other
//! allocators and platforms are left as they are.

/// Allocations up to this size come from the heap (glibc's largest
/// setting: 32 MiB on 64-bit); a chunk is 16 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Free memory at the heap's top kept rather than trimmed: all of it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;

/// Tells the allocator to keep freed memory for reuse: whether it took
/// the settings (false where there is no glibc to tell).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt changes two of glibc's thresholds under its own
        // lock; it reads no memory of ours.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_takes_the_settings() {
        // A threshold over glibc's largest would be refused (mallopt
        // answers 0), and the import would fault its memory in as before.
        assert!(super::keep_freed_memory());
    }
}
