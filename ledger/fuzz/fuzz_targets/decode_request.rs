//! Fuzz target: a client request frame (what the node's server decodes from the network) never
//! panics the decoder, nor do the system contracts' argument decoders.
#![no_main]

use bpu_ledger::api::Request;
use bpu_ledger::system;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = postcard::from_bytes::<Request>(data);
    let none = |_: &[u8]| Ok(None);
    let ok = |_: &[u8]| Ok(());
    let _ = system::lifecycle("install", data, &none, &ok);
    let _ = system::lifecycle("activate", data, &none, &ok);
    let _ = system::membership("add_member", data, &none);
    let _ = system::membership("set_roles", data, &none);
});
