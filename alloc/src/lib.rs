//! The `ringrift` binary's memory allocator, chosen once per process from its environment.
//!
//! Every role is one binary, but the roles want different allocators. The API server and the
//! controllers parse and copy JSON all day: with glibc's malloc the API server spent a quarter of
//! its time allocating, so the default is mimalloc. An idle agent allocates almost nothing, and
//! there the figure that matters is its resident memory on every GPU box: whatever starts an
//! agent (`ringrift up`, `ringrift join`'s unit file, the chart) sets
//! `RINGRIFT_ALLOCATOR=system` (see docs/benchmarks.md, "Idle agent footprint").
//!
//! The choice is read at the process's first allocation, before `main` runs and while the
//! process has one thread, and never changes after: every block is freed by the allocator that
//! gave it out.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

/// The environment variable that chooses the allocator: `system` for the C library's malloc,
/// anything else (or nothing) for mimalloc.
pub const VARIABLE: &str = "RINGRIFT_ALLOCATOR";

/// [`VARIABLE`] as the C string `getenv` takes.
const VARIABLE_C: &CStr = c"RINGRIFT_ALLOCATOR";

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

static CHOSEN: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Which allocator this process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// mimalloc, the default.
    Mimalloc,
    /// The C library's malloc (`RINGRIFT_ALLOCATOR=system`).
    System,
}

/// The allocator this process chose (deciding now if nothing was allocated yet).
#[must_use]
pub fn chosen() -> Choice {
    if chosen_code() == SYSTEM {
        Choice::System
    } else {
        Choice::Mimalloc
    }
}

/// What a value of [`VARIABLE`] chooses.
fn parse(value: Option<&CStr>) -> u8 {
    match value {
        Some(v) if v.to_bytes() == b"system" => SYSTEM,
        _ => MIMALLOC,
    }
}

#[inline]
fn chosen_code() -> u8 {
    match CHOSEN.load(Ordering::Acquire) {
        UNDECIDED => decide(),
        code => code,
    }
}

#[cold]
#[inline(never)]
#[allow(unsafe_code)]
fn decide() -> u8 {
    // SAFETY: `getenv` is given a NUL-terminated name and does not allocate. It is first called
    // at the process's first allocation, before `main` and any thread the program starts, so
    // nothing can be changing the environment while it reads; the pointer it returns is read
    // at once, before anything else runs on this thread.
    let value = unsafe {
        let raw = libc::getenv(VARIABLE_C.as_ptr());
        (!raw.is_null()).then(|| CStr::from_ptr(raw))
    };
    let code = parse(value);
    // Should two threads get here at once, both read the same environment; the first to store
    // wins, and both use what was stored.
    match CHOSEN.compare_exchange(UNDECIDED, code, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => code,
        Err(stored) => stored,
    }
}

/// The global allocator: mimalloc or the system's, as [`VARIABLE`] chose.
pub struct Allocator;

// SAFETY: every call goes to one of two correct allocators, always the same one for the whole
// life of the process (`CHOSEN` is written once, before the first block is handed out), so each
// block is freed or resized by the allocator that allocated it. The callers' obligations are
// passed on unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Allocator {
    // Not inlined: under link-time optimization every allocation site would get its own copy
    // of both paths, and the binary (whose pages an idle agent maps) grows by a megabyte.
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe {
            if chosen_code() == SYSTEM {
                System.alloc(layout)
            } else {
                MiMalloc.alloc(layout)
            }
        }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe {
            if chosen_code() == SYSTEM {
                System.alloc_zeroed(layout)
            } else {
                MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the same allocator (see above); the caller's contract for
        // `dealloc`, passed on.
        unsafe {
            if chosen_code() == SYSTEM {
                System.dealloc(ptr, layout);
            } else {
                MiMalloc.dealloc(ptr, layout);
            }
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from the same allocator (see above); the caller's contract for
        // `realloc`, passed on.
        unsafe {
            if chosen_code() == SYSTEM {
                System.realloc(ptr, layout, new_size)
            } else {
                MiMalloc.realloc(ptr, layout, new_size)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_word_system_chooses_the_system_allocator() {
        assert_eq!(parse(Some(c"system")), SYSTEM);
        assert_eq!(parse(None), MIMALLOC);
        assert_eq!(parse(Some(c"")), MIMALLOC);
        assert_eq!(parse(Some(c"mimalloc")), MIMALLOC);
        assert_eq!(parse(Some(c"System ")), MIMALLOC);
    }

    #[test]
    fn the_choice_is_made_once_and_kept() {
        let first = chosen();
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
        assert_eq!(chosen(), first);
    }
}
