#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| replicache_dynamodb_fuzz::checks::pull(data));
