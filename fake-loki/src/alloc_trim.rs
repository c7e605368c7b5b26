//! Handing freed heap back to the OS after a large rejected push.
//!
//! glibc keeps freed small allocations in its arenas; a decoded push of a million
//! streams left 2 GB resident after it was refused (issue 14 item 6). `malloc_trim`
//! returns every free page of every arena. It walks the free lists, so it runs only
//! after pushes that were both large and refused, and never twice at once.

use std::sync::atomic::{AtomicBool, Ordering};

/// Decoded pushes at least this large are worth trimming after.
pub const TRIM_AFTER_BYTES: usize = 1 << 20;

static TRIMMING: AtomicBool = AtomicBool::new(false);

/// Returns free heap pages to the OS (a no-op while another thread is doing it).
pub fn trim() {
    if TRIMMING.swap(true, Ordering::Acquire) {
        return;
    }
    release();
    TRIMMING.store(false, Ordering::Release);
}
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release() {
    // SAFETY: malloc_trim only inspects and madvises the allocator's own free lists;
    // it takes the arena locks itself and has no preconditions on the caller.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() {}
