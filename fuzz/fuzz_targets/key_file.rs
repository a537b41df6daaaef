//! Key files come from disk and may be anything: parse never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_protocol::keys::KeyFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = KeyFile::parse(text);
    }
});
