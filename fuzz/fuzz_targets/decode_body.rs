//! Untrusted message bodies of every kind: the first byte picks the kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_protocol::codec;
use meshd_protocol::message::Kind;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let kind = Kind::ALL[usize::from(selector) % Kind::ALL.len()];
    if let Ok(message) = codec::decode_body(kind, body) {
        assert_eq!(codec::encode_body(&message).expect("re-encodes"), body);
    }
});
