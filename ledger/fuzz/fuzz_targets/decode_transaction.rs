//! Fuzz target: strict decoding of a transaction never panics, and whatever decodes re-encodes to the input.
#![no_main]

use bpu_ledger::{Transaction, Wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Transaction::decode(data) {
        assert_eq!(v.encode(), data);
    }
});
