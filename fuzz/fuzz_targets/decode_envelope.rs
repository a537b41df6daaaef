//! Untrusted gossip bytes: an envelope decodes to a value or an error; what
//! decodes re-encodes to the same bytes, opens or fails cleanly, and gets a
//! signature verdict without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_protocol::{codec, signature, Domain};

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = codec::decode_envelope(data) {
        let encoded = codec::encode_envelope(&envelope).expect("a decoded envelope re-encodes");
        assert_eq!(encoded, data, "one encoding per value");
        let _ = envelope.open();
        let _ = signature::verify(&Domain::new("fuzz"), &envelope);
    }
});
