//! The decoder of stored records (account, key, audit): corrupt bytes give an error,
//! never a panic, an abort or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keyledger::testing::fuzz_decode_records(data);
});
