//! Fuzz target: strict decoding of a block never panics, and whatever decodes re-encodes to the input.
#![no_main]

use bpu_ledger::{Block, Wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Block::decode(data) {
        assert_eq!(v.encode(), data);
    }
});
