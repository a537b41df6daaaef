//! Ids and hashes come from config files, HTTP requests and the CLI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_protocol::{GatewayId, Hash32, MeterId};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = text.parse::<GatewayId>() {
            assert_eq!(id.to_string().parse::<GatewayId>(), Ok(id));
        }
        let _ = text.parse::<MeterId>();
        let _ = text.parse::<Hash32>();
    }
});
