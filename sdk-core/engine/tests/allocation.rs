//! Evaluating a flag for a built context allocates nothing on the heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use vexil_engine::{Ruleset, ValueKind};

#[path = "../benches/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn bool_evaluation_does_not_allocate() {
    let ruleset = Ruleset::from_value(&fixtures::bench_ruleset()).unwrap();
    let user = fixtures::user();
    let keys = ["simple", "two-clauses", "ten-rules", "chain-1", "rollout"];
    // Warm up: the regex engine fills its per-thread cache on first use.
    for key in keys {
        ruleset.evaluate(key, &user, ValueKind::Bool);
    }
    for key in keys {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let mut served = 0;
        for _ in 0..100 {
            if ruleset.bool_variation(key, &user, false) {
                served += 1;
            }
        }
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        assert_eq!(after - before, 0, "{key} allocated");
        assert!(served == 0 || served == 100, "{key} is deterministic");
    }
}
