//! The Semtech UDP packet forwarder protocol, GWMP v2 (`PROTOCOL.md` of
//! Semtech's `packet_forwarder`, version 2 of the datagram header; JSON
//! revision 1.6): a pure codec, and in [`server`] the UDP task that speaks it
//! with many forwarders at once.
//!
//! # Datagrams
//!
//! Every datagram starts with a 4-byte header: the protocol version (2), a
//! 2-byte random token and an identifier. Upstream datagrams (forwarder →
//! meshd) carry the gateway's 8-byte EUI after it:
//!
//! | identifier | name | direction | after the header |
//! |---|---|---|---|
//! | 0x00 | PUSH_DATA | up | EUI, JSON `{"rxpk":[…],"stat":{…}}` |
//! | 0x01 | PUSH_ACK | down | — (same token) |
//! | 0x02 | PULL_DATA | up | EUI (keep-alive that opens the downlink path) |
//! | 0x03 | PULL_RESP | down | JSON `{"txpk":{…}}` |
//! | 0x04 | PULL_ACK | down | — (same token) |
//! | 0x05 | TX_ACK | up | EUI, optional JSON `{"txpk_ack":{…}}` (same token as the PULL_RESP) |
//!
//! [`Packet::decode`] reads any of them and never panics; each way a
//! datagram can be wrong is a [`DecodeError`] variant, which the server counts.
//!
//! # From `rxpk` to [`UplinkFrame`]
//!
//! [`Rxpk::to_uplink`] converts one received frame to ChirpStack's
//! [`UplinkFrame`]: `data` (base64) → `phy_payload`; `freq` (MHz) →
//! `tx_info.frequency` (Hz); `datr` `"SF7BW125"` → LoRa modulation (with `codr`),
//! a number → FSK bit rate; `rssis` (signal RSSI, when the forwarder sends it)
//! or else `rssi` (channel RSSI) → `rx_info.rssi`; `lsnr` → `rx_info.snr`;
//! `time` → `gw_time`; `tmms` (GPS ms) → `time_since_gps_epoch`; `tmst` → the
//! 4-byte big-endian `context`, as ChirpStack's own bridge stores it (a
//! downlink answering the frame needs it back).
//!
//! CRC status: `stat` 1 (CRC OK) converts to [`CrcStatus::CrcOk`]. `stat` −1
//! (bad CRC) is refused with [`RxpkError::BadCrc`]: a corrupted frame says
//! nothing reliable, and the server counts and drops it. `stat` 0 means the
//! frame was *sent without* a PHY CRC; it converts to [`CrcStatus::NoCrc`] so
//! that the conversion stays faithful, but nothing in meshd trusts such a frame:
//! LoRaWAN uplinks and meshd beacons are always sent with a CRC, so
//! [`crate::ingest::beacon`] refuses to recognise a beacon without
//! [`CrcStatus::CrcOk`].

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use chirpstack_api::gw::{
    CodeRate, CrcStatus, FskModulationInfo, LoraModulationInfo, Modulation, UplinkFrame, UplinkRxInfo,
    UplinkTxInfo, modulation,
};
use chirpstack_api::prost_types::{Duration, Timestamp};
use meshd_protocol::message::DataRate;
use serde::{Deserialize, Serialize};

pub mod server;

/// The only protocol version this codec speaks: GWMP v2 (`PROTOCOL_VERSION`
/// of every packet forwarder since 2015). Version 1 lacked TX_ACK; there is no
/// version 3.
pub const PROTOCOL_VERSION: u8 = 2;

/// Length of the header every datagram starts with: version, token, identifier.
pub const HEADER_LEN: usize = 4;

/// Length of the header of upstream datagrams: [`HEADER_LEN`] plus the 8-byte
/// gateway EUI.
pub const UP_HEADER_LEN: usize = HEADER_LEN + 8;

/// Largest radio frame a `rxpk` or `txpk` may carry, bytes: 255 is the largest
/// LoRa PHY payload (its length field is one byte).
pub const MAX_PHY_PAYLOAD_LEN: usize = 255;

/// A gateway's 64-bit extended unique identifier (the "MAC address" of the
/// protocol), which names a forwarder.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Eui64(pub [u8; 8]);

impl std::fmt::Display for Eui64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a text is not an [`Eui64`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a gateway EUI-64; write it as 16 hex digits")]
pub struct ParseEuiError(pub String);

impl std::str::FromStr for Eui64 {
    type Err = ParseEuiError;

    /// 16 hex digits, any case, as ChirpStack and the config write it.
    fn from_str(text: &str) -> Result<Eui64, ParseEuiError> {
        let mut bytes = [0u8; 8];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseEuiError(text.chars().take(32).collect()))?;
        Ok(Eui64(bytes))
    }
}

impl std::fmt::Debug for Eui64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Eui64({self})")
    }
}

/// The identifier byte of a datagram (its fourth byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Identifier {
    /// Forwarder → server: received frames and status.
    PushData = 0x00,
    /// Server → forwarder: acknowledges a PUSH_DATA.
    PushAck = 0x01,
    /// Forwarder → server: keep-alive that opens the downlink path.
    PullData = 0x02,
    /// Server → forwarder: a frame to transmit.
    PullResp = 0x03,
    /// Server → forwarder: acknowledges a PULL_DATA.
    PullAck = 0x04,
    /// Forwarder → server: outcome of a PULL_RESP.
    TxAck = 0x05,
}

impl Identifier {
    /// The identifier of a byte, if it is one of the six.
    pub fn from_byte(byte: u8) -> Option<Identifier> {
        Some(match byte {
            0x00 => Identifier::PushData,
            0x01 => Identifier::PushAck,
            0x02 => Identifier::PullData,
            0x03 => Identifier::PullResp,
            0x04 => Identifier::PullAck,
            0x05 => Identifier::TxAck,
            _ => return None,
        })
    }
}

/// Why a datagram could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than its identifier's fixed header.
    #[error("datagram of {len} bytes is shorter than its header")]
    TruncatedHeader {
        /// The datagram's length.
        len: usize,
    },
    /// The first byte is not [`PROTOCOL_VERSION`].
    #[error("protocol version {0}, expected {PROTOCOL_VERSION}")]
    WrongVersion(u8),
    /// The fourth byte is none of the six identifiers.
    #[error("unknown identifier {0:#04x}")]
    UnknownIdentifier(u8),
    /// The JSON body is not valid JSON or not the expected object.
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
}

impl DecodeError {
    /// A stable snake_case name for metrics labels and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecodeError::TruncatedHeader { .. } => "truncated_header",
            DecodeError::WrongVersion(_) => "wrong_version",
            DecodeError::UnknownIdentifier(_) => "unknown_identifier",
            DecodeError::MalformedJson(_) => "malformed_json",
        }
    }
}

/// One GWMP datagram, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Packet {
    /// Received frames and/or gateway status.
    PushData {
        /// Token to echo in the PUSH_ACK.
        token: u16,
        /// The forwarder.
        gateway: Eui64,
        /// The JSON body.
        body: PushBody,
    },
    /// Acknowledges a PUSH_DATA.
    PushAck {
        /// The PUSH_DATA's token.
        token: u16,
    },
    /// Keep-alive opening the downlink path.
    PullData {
        /// Token to echo in the PULL_ACK.
        token: u16,
        /// The forwarder.
        gateway: Eui64,
    },
    /// A frame to transmit.
    PullResp {
        /// Token the TX_ACK will echo.
        token: u16,
        /// The JSON body.
        body: PullRespBody,
    },
    /// Acknowledges a PULL_DATA.
    PullAck {
        /// The PULL_DATA's token.
        token: u16,
    },
    /// Outcome of a PULL_RESP.
    TxAck {
        /// The PULL_RESP's token.
        token: u16,
        /// The forwarder.
        gateway: Eui64,
        /// The outcome: an empty body means success.
        result: TxResult,
    },
}

impl Packet {
    /// Decodes a datagram. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TruncatedHeader { len: bytes.len() });
        }
        if bytes[0] != PROTOCOL_VERSION {
            return Err(DecodeError::WrongVersion(bytes[0]));
        }
        let token = u16::from_be_bytes([bytes[1], bytes[2]]);
        let identifier = Identifier::from_byte(bytes[3]).ok_or(DecodeError::UnknownIdentifier(bytes[3]))?;
        let up = |bytes: &[u8]| -> Result<(Eui64, usize), DecodeError> {
            let eui = bytes
                .get(HEADER_LEN..UP_HEADER_LEN)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .ok_or(DecodeError::TruncatedHeader { len: bytes.len() })?;
            Ok((Eui64(eui), UP_HEADER_LEN))
        };
        Ok(match identifier {
            Identifier::PushData => {
                let (gateway, start) = up(bytes)?;
                Packet::PushData { token, gateway, body: json(&bytes[start..])? }
            }
            Identifier::PushAck => Packet::PushAck { token },
            Identifier::PullData => {
                let (gateway, _) = up(bytes)?;
                Packet::PullData { token, gateway }
            }
            Identifier::PullResp => Packet::PullResp { token, body: json(&bytes[HEADER_LEN..])? },
            Identifier::PullAck => Packet::PullAck { token },
            Identifier::TxAck => {
                let (gateway, start) = up(bytes)?;
                let rest = &bytes[start..];
                // The forwarder sends no JSON at all on success; some pad with
                // a NUL or whitespace.
                let result = if rest.iter().all(|b| *b == 0 || b.is_ascii_whitespace()) {
                    Ok(TxAckOk { warning: None })
                } else {
                    json::<TxAckBody>(rest)?.txpk_ack.into_result()
                };
                Packet::TxAck { token, gateway, result }
            }
        })
    }

    /// Encodes the datagram.
    pub fn encode(&self) -> Vec<u8> {
        let (token, identifier, gateway) = match self {
            Packet::PushData { token, gateway, .. } => (*token, Identifier::PushData, Some(gateway)),
            Packet::PushAck { token } => (*token, Identifier::PushAck, None),
            Packet::PullData { token, gateway } => (*token, Identifier::PullData, Some(gateway)),
            Packet::PullResp { token, .. } => (*token, Identifier::PullResp, None),
            Packet::PullAck { token } => (*token, Identifier::PullAck, None),
            Packet::TxAck { token, gateway, .. } => (*token, Identifier::TxAck, Some(gateway)),
        };
        let mut out = vec![PROTOCOL_VERSION];
        out.extend_from_slice(&token.to_be_bytes());
        out.push(identifier as u8);
        if let Some(gateway) = gateway {
            out.extend_from_slice(&gateway.0);
        }
        // Serialising these plain structs (no maps with non-string keys, no
        // non-finite floats from our own constructors) cannot fail; an empty
        // body is the fallback should it ever.
        match self {
            Packet::PushData { body, .. } => out.extend(serde_json::to_vec(body).unwrap_or_default()),
            Packet::PullResp { body, .. } => out.extend(serde_json::to_vec(body).unwrap_or_default()),
            Packet::TxAck { result: Err(error), .. } => {
                let body = TxAckBody {
                    txpk_ack: TxpkAck { error: Some(error.code().to_owned()), ..TxpkAck::default() },
                };
                out.extend(serde_json::to_vec(&body).unwrap_or_default());
            }
            Packet::TxAck { result: Ok(TxAckOk { warning: Some(power) }), .. } => {
                let body = TxAckBody {
                    txpk_ack: TxpkAck {
                        warn: Some("TX_POWER".to_owned()),
                        value: Some(serde_json::Value::from(*power)),
                        ..TxpkAck::default()
                    },
                };
                out.extend(serde_json::to_vec(&body).unwrap_or_default());
            }
            _ => {}
        }
        out
    }
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    // The reference forwarder never sends a trailing NUL, but some C
    // forwarders do; tolerate trailing NULs and whitespace.
    let end = bytes.iter().rposition(|b| *b != 0 && !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    serde_json::from_slice(&bytes[..end]).map_err(|e| DecodeError::MalformedJson(e.to_string()))
}

/// The JSON body of a PUSH_DATA.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PushBody {
    /// Received frames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rxpk: Vec<Rxpk>,
    /// The gateway's periodic status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
}

/// A data rate as the protocol writes it: `"SF7BW125"` for LoRa, a bit rate
/// number for FSK.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Datr {
    /// LoRa: `"SF<sf>BW<kHz>"`.
    Lora(String),
    /// FSK: bits per second.
    Fsk(u32),
}

impl Datr {
    /// The LoRa data rate `"SF<sf>BW<kHz>"`.
    pub fn lora(rate: DataRate) -> Datr {
        Datr::Lora(format!("SF{}BW{}", rate.spreading_factor, rate.bandwidth_khz))
    }

    /// Parses `"SF<sf>BW<kHz>"`; `None` for FSK or anything else.
    pub fn parse_lora(&self) -> Option<DataRate> {
        let Datr::Lora(text) = self else { return None };
        let rest = text.strip_prefix("SF")?;
        let (sf, bw) = rest.split_once("BW")?;
        let spreading_factor: u8 = sf.parse().ok()?;
        let bandwidth_khz: u16 = bw.parse().ok()?;
        Some(DataRate { spreading_factor, bandwidth_khz })
    }
}

/// One received frame of a PUSH_DATA (`rxpk` object). Fields the forwarder
/// may omit are optional; unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rxpk {
    /// UTC time of reception, ISO 8601 compact (`2020-10-01T09:30:52.592567Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// GPS time of reception, ms since 1980-01-06.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    /// Concentrator microsecond counter at the end of reception.
    pub tmst: u32,
    /// Centre frequency, MHz.
    pub freq: f64,
    /// IF channel.
    #[serde(default)]
    pub chan: u32,
    /// RF chain.
    #[serde(default)]
    pub rfch: u32,
    /// CRC status: 1 OK, −1 bad, 0 sent without CRC.
    pub stat: i8,
    /// `"LORA"` or `"FSK"`.
    pub modu: String,
    /// Data rate.
    pub datr: Datr,
    /// LoRa coding rate (`"4/5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codr: Option<String>,
    /// Channel RSSI, dBm.
    pub rssi: f64,
    /// Signal RSSI, dBm (SX1302 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssis: Option<f64>,
    /// LoRa SNR, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f64>,
    /// Payload size, bytes.
    pub size: u32,
    /// Base64 payload.
    pub data: String,
}

/// Why an `rxpk` does not convert to an [`UplinkFrame`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RxpkError {
    /// `stat` −1: the frame failed its CRC.
    #[error("frame failed its CRC")]
    BadCrc,
    /// `data` is not base64, longer than 255 bytes, or disagrees with `size`.
    #[error("payload is not valid base64 of the announced size")]
    InvalidData,
    /// `freq` is not a positive frequency representable in Hz as u32.
    #[error("frequency out of range")]
    InvalidFrequency,
    /// `datr`/`modu` is neither `SF<n>BW<n>` LoRa nor an FSK bit rate, or `stat` is not −1, 0 or 1.
    #[error("unknown modulation, data rate or CRC status")]
    InvalidModulation,
    /// `rssi`, `rssis` or `lsnr` is not a finite number in range.
    #[error("signal strength out of range")]
    InvalidSignal,
}

impl RxpkError {
    /// A stable snake_case name for metrics labels and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            RxpkError::BadCrc => "bad_crc",
            RxpkError::InvalidData => "invalid_data",
            RxpkError::InvalidFrequency => "invalid_frequency",
            RxpkError::InvalidModulation => "invalid_modulation",
            RxpkError::InvalidSignal => "invalid_signal",
        }
    }
}

/// Base64 of the packet forwarder: standard alphabet, padding optional (the
/// reference forwarder pads `rxpk` data, and `txpk` padding is optional).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Seconds from the Unix epoch to the GPS epoch (1980-01-06T00:00:00Z).
pub const GPS_EPOCH_UNIX_S: u64 = 315_964_800;

/// Leap seconds between GPS time and UTC: 18 since 2017-01-01, the last
/// one IERS has announced. A new leap second would shift `tmms`-derived
/// times by one second, well inside the witness rules' time allowance.
pub const GPS_UTC_LEAP_SECONDS: u64 = 18;

impl Rxpk {
    /// Converts to ChirpStack's [`UplinkFrame`] for `gateway` (see the module
    /// docs for the field mapping).
    pub fn to_uplink(&self, gateway: Eui64) -> Result<UplinkFrame, RxpkError> {
        let crc_status = match self.stat {
            1 => CrcStatus::CrcOk,
            0 => CrcStatus::NoCrc,
            -1 => return Err(RxpkError::BadCrc),
            _ => return Err(RxpkError::InvalidModulation),
        };
        // Base64 of 255 bytes is at most 340 characters; refuse longer text
        // before decoding it.
        if self.data.len() > MAX_PHY_PAYLOAD_LEN.div_ceil(3) * 4 {
            return Err(RxpkError::InvalidData);
        }
        let phy_payload = BASE64.decode(self.data.as_bytes()).map_err(|_| RxpkError::InvalidData)?;
        if phy_payload.len() > MAX_PHY_PAYLOAD_LEN || phy_payload.len() != self.size as usize {
            return Err(RxpkError::InvalidData);
        }
        let frequency = mhz_to_hz(self.freq).ok_or(RxpkError::InvalidFrequency)?;
        let parameters = match (self.modu.as_str(), &self.datr) {
            ("LORA", datr) => {
                let rate = datr.parse_lora().ok_or(RxpkError::InvalidModulation)?;
                let code_rate = match self.codr.as_deref() {
                    None => CodeRate::CrUndefined,
                    Some(text) => text.parse().map_err(|_| RxpkError::InvalidModulation)?,
                };
                modulation::Parameters::Lora(LoraModulationInfo {
                    bandwidth: u32::from(rate.bandwidth_khz) * 1000,
                    spreading_factor: u32::from(rate.spreading_factor),
                    code_rate: code_rate as i32,
                    ..LoraModulationInfo::default()
                })
            }
            ("FSK", Datr::Fsk(bits_per_second)) => modulation::Parameters::Fsk(FskModulationInfo {
                datarate: *bits_per_second,
                ..FskModulationInfo::default()
            }),
            _ => return Err(RxpkError::InvalidModulation),
        };
        let rssi =
            finite_in(self.rssis.unwrap_or(self.rssi), -300.0, 100.0).ok_or(RxpkError::InvalidSignal)?;
        let snr = match self.lsnr {
            Some(snr) => finite_in(snr, -100.0, 100.0).ok_or(RxpkError::InvalidSignal)?,
            None => 0.0,
        };
        let gw_time = self.time.as_deref().and_then(parse_utc);
        let time_since_gps_epoch = self.tmms.map(|ms| Duration {
            seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
            nanos: ((ms % 1000) * 1_000_000) as i32,
        });
        Ok(UplinkFrame {
            phy_payload,
            tx_info: Some(UplinkTxInfo {
                frequency,
                modulation: Some(Modulation { parameters: Some(parameters) }),
            }),
            rx_info: Some(UplinkRxInfo {
                gateway_id: gateway.to_string(),
                gw_time,
                time_since_gps_epoch,
                rssi: rssi.round() as i32,
                snr: snr as f32,
                channel: self.chan,
                rf_chain: self.rfch,
                context: self.tmst.to_be_bytes().to_vec(),
                crc_status: crc_status as i32,
                ..UplinkRxInfo::default()
            }),
            ..UplinkFrame::default()
        })
    }
}

fn finite_in(value: f64, min: f64, max: f64) -> Option<f64> {
    (value.is_finite() && (min..=max).contains(&value)).then_some(value)
}

/// MHz (Hz precision) to Hz, if positive and representable.
fn mhz_to_hz(mhz: f64) -> Option<u32> {
    let hz = (mhz * 1e6).round();
    (hz.is_finite() && hz > 0.0 && hz <= f64::from(u32::MAX)).then_some(hz as u32)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC), as the forwarder writes `time`.
pub fn parse_utc(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter().try_fold(0i64, |acc, d| acc.checked_mul(10)?.checked_add(i64::from(d - b'0')))
    };
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') || bytes.get(10) != Some(&b'T') {
        return None;
    }
    if bytes.get(13) != Some(&b':') || bytes.get(16) != Some(&b':') || bytes.last() != Some(&b'Z') {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut nanos = 0i64;
    let end = bytes.len() - 1;
    if end > 19 {
        if bytes[19] != b'.' || end - 20 > 9 || end == 20 {
            return None;
        }
        let fraction = digits(20..end)?;
        nanos = fraction * 10i64.pow(9 - (end - 20) as u32);
    } else if end != 19 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp { seconds: days * 86_400 + hour * 3600 + minute * 60 + second, nanos: nanos as i32 })
}

/// The gateway status object of a PUSH_DATA (`stat`). All fields optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Gateway system time, `"2014-01-12 08:59:28 GMT"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// GPS latitude, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lati: Option<f64>,
    /// GPS longitude, degrees.
    #[serde(default, rename = "long", skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    /// GPS altitude, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alti: Option<f64>,
    /// Frames received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxnb: Option<u64>,
    /// Frames received with a valid CRC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxok: Option<u64>,
    /// Frames forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxfw: Option<u64>,
    /// Percentage of upstream datagrams acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ackr: Option<f64>,
    /// Downlink datagrams received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwnb: Option<u64>,
    /// Frames transmitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txnb: Option<u64>,
}

/// The JSON body of a PULL_RESP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PullRespBody {
    /// The frame to transmit.
    pub txpk: Txpk,
}

/// A frame to transmit (`txpk` object).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Txpk {
    /// Transmit immediately (ignores `tmst` and `tmms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imme: bool,
    /// Transmit when the concentrator counter reaches this value, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmst: Option<u32>,
    /// Transmit at this GPS time, ms since 1980-01-06 (needs a GPS lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    /// Centre frequency, MHz.
    pub freq: f64,
    /// RF chain.
    pub rfch: u32,
    /// Conducted power, dBm.
    pub powe: i32,
    /// `"LORA"`.
    pub modu: String,
    /// Data rate.
    pub datr: Option<Datr>,
    /// Coding rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codr: Option<String>,
    /// Inverted polarity (LoRaWAN downlinks use it; beacons must not).
    pub ipol: bool,
    /// Payload size, bytes.
    pub size: u32,
    /// Base64 payload.
    pub data: String,
    /// Send without a PHY CRC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ncrc: bool,
}

/// When a [`Txpk`] goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxTiming {
    /// As soon as the forwarder gets it.
    Immediately,
    /// When the concentrator's microsecond counter reads this value.
    Counter(u32),
    /// At this GPS time, ms since 1980-01-06.
    GpsMs(u64),
}

/// The LoRa coding rate of beacons: 4/5, the LoRaWAN default, the least
/// airtime.
pub const BEACON_CODING_RATE: &str = "4/5";

impl Txpk {
    /// A LoRa transmission of `phy_payload` with uplink polarity (not
    /// inverted), so that neighbouring gateways receive it as an uplink — how
    /// a beacon is heard. RF chain 0: the chain every concentrator can
    /// transmit on.
    pub fn lora_uplink_polarity(
        phy_payload: &[u8],
        frequency_hz: u32,
        rate: DataRate,
        power_dbm: i32,
        timing: TxTiming,
    ) -> Txpk {
        let (imme, tmst, tmms) = match timing {
            TxTiming::Immediately => (true, None, None),
            TxTiming::Counter(us) => (false, Some(us), None),
            TxTiming::GpsMs(ms) => (false, None, Some(ms)),
        };
        Txpk {
            imme,
            tmst,
            tmms,
            freq: f64::from(frequency_hz) / 1e6,
            rfch: 0,
            powe: power_dbm,
            modu: "LORA".to_owned(),
            datr: Some(Datr::lora(rate)),
            codr: Some(BEACON_CODING_RATE.to_owned()),
            ipol: false,
            size: phy_payload.len() as u32,
            data: general_purpose::STANDARD.encode(phy_payload),
            ncrc: false,
        }
    }

    /// The payload bytes, if `data` is valid base64.
    pub fn payload(&self) -> Option<Vec<u8>> {
        BASE64.decode(self.data.as_bytes()).ok()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TxAckBody {
    txpk_ack: TxpkAck,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct TxpkAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<serde_json::Value>,
}

impl TxpkAck {
    fn into_result(self) -> TxResult {
        match self.error.as_deref() {
            None | Some("NONE") | Some("") => {
                let warning = match (self.warn.as_deref(), self.value) {
                    (Some("TX_POWER"), Some(value)) => value.as_i64().and_then(|v| i32::try_from(v).ok()),
                    _ => None,
                };
                Ok(TxAckOk { warning })
            }
            Some(code) => Err(TxError::from_code(code)),
        }
    }
}

/// The outcome a TX_ACK reports.
pub type TxResult = Result<TxAckOk, TxError>;

/// The forwarder accepted a transmission.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxAckOk {
    /// `warn: TX_POWER`: accepted, but at this power (dBm) instead of the one asked.
    pub warning: Option<i32>,
}

/// Why a forwarder rejected a transmission (TX_ACK `error`).
///
/// Retryable ([`TxError::is_retryable`]) are the scheduling conflicts, which
/// another transmit time avoids: [`TooLate`](TxError::TooLate),
/// [`TooEarly`](TxError::TooEarly), [`CollisionPacket`](TxError::CollisionPacket),
/// [`CollisionBeacon`](TxError::CollisionBeacon), and
/// [`GpsUnlocked`](TxError::GpsUnlocked) (retry with counter timing, or once
/// the GPS has a fix). Not retryable are the configuration mismatches that
/// the same request meets again: [`TxFreq`](TxError::TxFreq),
/// [`TxPower`](TxError::TxPower) and [`Unknown`](TxError::Unknown).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// `TOO_LATE`: too late to program the transmission.
    #[error("TOO_LATE: too late to program the transmission")]
    TooLate,
    /// `TOO_EARLY`: the transmit time is too far ahead.
    #[error("TOO_EARLY: transmit time too far ahead")]
    TooEarly,
    /// `COLLISION_PACKET`: another frame is scheduled then.
    #[error("COLLISION_PACKET: another frame is scheduled at that time")]
    CollisionPacket,
    /// `COLLISION_BEACON`: a Class-B beacon is scheduled then.
    #[error("COLLISION_BEACON: a Class-B beacon is scheduled at that time")]
    CollisionBeacon,
    /// `TX_FREQ`: the RF chain cannot transmit on that frequency.
    #[error("TX_FREQ: frequency not supported by the RF chain")]
    TxFreq,
    /// `TX_POWER` as an error (forwarders before protocol v1.5): power not supported.
    #[error("TX_POWER: transmit power not supported")]
    TxPower,
    /// `GPS_UNLOCKED`: GPS timing asked but the GPS has no fix.
    #[error("GPS_UNLOCKED: GPS time asked but the GPS is unlocked")]
    GpsUnlocked,
    /// Any other error code (the forwarder's own `UNKNOWN`, or a newer one).
    #[error("unknown TX_ACK error {0:?}")]
    Unknown(String),
}

impl TxError {
    /// The error of a TX_ACK `error` code.
    pub fn from_code(code: &str) -> TxError {
        match code {
            "TOO_LATE" => TxError::TooLate,
            "TOO_EARLY" => TxError::TooEarly,
            "COLLISION_PACKET" => TxError::CollisionPacket,
            "COLLISION_BEACON" => TxError::CollisionBeacon,
            "TX_FREQ" => TxError::TxFreq,
            "TX_POWER" => TxError::TxPower,
            "GPS_UNLOCKED" => TxError::GpsUnlocked,
            other => TxError::Unknown(other.chars().take(64).collect()),
        }
    }

    /// The protocol's error code.
    pub fn code(&self) -> &str {
        match self {
            TxError::TooLate => "TOO_LATE",
            TxError::TooEarly => "TOO_EARLY",
            TxError::CollisionPacket => "COLLISION_PACKET",
            TxError::CollisionBeacon => "COLLISION_BEACON",
            TxError::TxFreq => "TX_FREQ",
            TxError::TxPower => "TX_POWER",
            TxError::GpsUnlocked => "GPS_UNLOCKED",
            TxError::Unknown(code) => code,
        }
    }

    /// Whether the same transmission may succeed at another time (see the type's docs).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TxError::TooLate
                | TxError::TooEarly
                | TxError::CollisionPacket
                | TxError::CollisionBeacon
                | TxError::GpsUnlocked
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EUI: Eui64 = Eui64([0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1]);

    fn push(json: &str) -> Vec<u8> {
        let mut bytes = vec![2, 0x12, 0x34, 0x00];
        bytes.extend_from_slice(&EUI.0);
        bytes.extend_from_slice(json.as_bytes());
        bytes
    }

    #[test]
    fn protocol_example_rxpk_converts_to_an_uplink_frame() {
        let json = r#"{"rxpk":[{"tmst":3512348611,"time":"2020-10-01T09:30:52.592567Z","tmms":1285579871592,
            "ftime":85224290,"chan":2,"rfch":0,"freq":866.349812,"mid":3,"stat":1,"modu":"LORA",
            "datr":"SF7BW125","codr":"4/6","rssi":-35,"rssis":-37,"lsnr":5.1,"foff":-3313,"size":4,"data":"AQIDBA=="}]}"#;
        let Ok(Packet::PushData { token, gateway, body }) = Packet::decode(&push(json)) else {
            panic!("not a PUSH_DATA")
        };
        assert_eq!((token, gateway), (0x1234, EUI));
        let frame = body.rxpk[0].to_uplink(gateway).expect("valid rxpk");
        assert_eq!(frame.phy_payload, [1, 2, 3, 4]);
        let tx = frame.tx_info.expect("tx info");
        assert_eq!(tx.frequency, 866_349_812);
        let Some(modulation::Parameters::Lora(lora)) = tx.modulation.and_then(|m| m.parameters) else {
            panic!("not LoRa")
        };
        assert_eq!(
            (lora.spreading_factor, lora.bandwidth, lora.code_rate),
            (7, 125_000, CodeRate::Cr46 as i32)
        );
        let rx = frame.rx_info.expect("rx info");
        assert_eq!(rx.rssi, -37, "signal RSSI preferred over channel RSSI");
        assert!((rx.snr - 5.1).abs() < 1e-6);
        assert_eq!(rx.context, 3_512_348_611u32.to_be_bytes());
        assert_eq!(rx.gateway_id, "aa555a0000000001");
        assert_eq!(rx.crc_status, CrcStatus::CrcOk as i32);
        assert_eq!(rx.gw_time, Some(Timestamp { seconds: 1_601_544_652, nanos: 592_567_000 }));
        assert_eq!(rx.time_since_gps_epoch, Some(Duration { seconds: 1_285_579_871, nanos: 592_000_000 }));
    }

    #[test]
    fn fsk_rxpk_converts_with_its_bit_rate() {
        let json = r#"{"rxpk":[{"tmst":1,"chan":9,"rfch":1,"freq":869.1,"stat":1,"modu":"FSK","datr":50000,
            "rssi":-75,"size":3,"data":"AAEC"}]}"#;
        let Ok(Packet::PushData { body, .. }) = Packet::decode(&push(json)) else {
            panic!("not a PUSH_DATA")
        };
        let frame = body.rxpk[0].to_uplink(EUI).expect("valid");
        let params = frame.tx_info.and_then(|t| t.modulation).and_then(|m| m.parameters);
        assert_eq!(
            params,
            Some(modulation::Parameters::Fsk(FskModulationInfo { datarate: 50_000, frequency_deviation: 0 }))
        );
    }

    #[test]
    fn bad_crc_is_refused_and_no_crc_is_marked() {
        let mut rxpk = Rxpk {
            time: None,
            tmms: None,
            tmst: 5,
            freq: 868.1,
            chan: 0,
            rfch: 0,
            stat: -1,
            modu: "LORA".into(),
            datr: Datr::Lora("SF12BW125".into()),
            codr: Some("4/5".into()),
            rssi: -120.0,
            rssis: None,
            lsnr: Some(-12.5),
            size: 1,
            data: "AA==".into(),
        };
        assert_eq!(rxpk.to_uplink(EUI), Err(RxpkError::BadCrc));
        rxpk.stat = 0;
        let rx = rxpk.to_uplink(EUI).expect("no CRC converts").rx_info.expect("rx");
        assert_eq!(rx.crc_status, CrcStatus::NoCrc as i32);
        rxpk.size = 2;
        assert_eq!(rxpk.to_uplink(EUI), Err(RxpkError::InvalidData));
    }

    #[test]
    fn headers_that_are_short_versioned_wrongly_or_unknown_are_refused() {
        assert_eq!(Packet::decode(&[2, 0, 0]), Err(DecodeError::TruncatedHeader { len: 3 }));
        assert_eq!(Packet::decode(&[2, 0, 0, 2, 1, 2]), Err(DecodeError::TruncatedHeader { len: 6 }));
        assert_eq!(Packet::decode(&[1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]), Err(DecodeError::WrongVersion(1)));
        assert_eq!(Packet::decode(&[2, 0, 0, 9]), Err(DecodeError::UnknownIdentifier(9)));
        assert!(matches!(Packet::decode(&push("{\"rxpk\":[")), Err(DecodeError::MalformedJson(_))));
    }

    #[test]
    fn every_packet_round_trips_through_its_encoding() {
        let txpk = Txpk::lora_uplink_polarity(
            &[0xE0, 1, 2],
            868_100_000,
            DataRate { spreading_factor: 9, bandwidth_khz: 125 },
            14,
            TxTiming::Counter(42),
        );
        let packets = [
            Packet::PushAck { token: 7 },
            Packet::PullAck { token: 8 },
            Packet::PullData { token: 9, gateway: EUI },
            Packet::PullResp { token: 10, body: PullRespBody { txpk } },
            Packet::TxAck { token: 11, gateway: EUI, result: Ok(TxAckOk::default()) },
            Packet::TxAck { token: 12, gateway: EUI, result: Ok(TxAckOk { warning: Some(20) }) },
            Packet::TxAck { token: 13, gateway: EUI, result: Err(TxError::CollisionBeacon) },
            Packet::PushData {
                token: 14,
                gateway: EUI,
                body: PushBody { rxpk: vec![], stat: Some(Stat::default()) },
            },
        ];
        for packet in packets {
            assert_eq!(Packet::decode(&packet.encode()), Ok(packet.clone()), "{packet:?}");
        }
    }

    #[test]
    fn tx_ack_errors_map_to_typed_results() {
        let ack = |json: &str| {
            let mut bytes = vec![2, 0, 1, 5];
            bytes.extend_from_slice(&EUI.0);
            bytes.extend_from_slice(json.as_bytes());
            match Packet::decode(&bytes) {
                Ok(Packet::TxAck { result, .. }) => result,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(ack(""), Ok(TxAckOk { warning: None }));
        assert_eq!(ack(r#"{"txpk_ack":{"error":"NONE"}}"#), Ok(TxAckOk { warning: None }));
        assert_eq!(ack(r#"{"txpk_ack":{"warn":"TX_POWER","value":20}}"#), Ok(TxAckOk { warning: Some(20) }));
        for (code, error, retryable) in [
            ("TOO_LATE", TxError::TooLate, true),
            ("TOO_EARLY", TxError::TooEarly, true),
            ("COLLISION_PACKET", TxError::CollisionPacket, true),
            ("COLLISION_BEACON", TxError::CollisionBeacon, true),
            ("GPS_UNLOCKED", TxError::GpsUnlocked, true),
            ("TX_FREQ", TxError::TxFreq, false),
            ("TX_POWER", TxError::TxPower, false),
            ("UNKNOWN", TxError::Unknown("UNKNOWN".into()), false),
        ] {
            let result = ack(&format!(r#"{{"txpk_ack":{{"error":"{code}"}}}}"#));
            assert_eq!(result, Err(error.clone()));
            assert_eq!(error.is_retryable(), retryable, "{code}");
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn utc_times_parse_with_and_without_fractions() {
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(Timestamp { seconds: 0, nanos: 0 }));
        assert_eq!(
            parse_utc("2000-03-01T00:00:01.5Z"),
            Some(Timestamp { seconds: 951_868_801, nanos: 500_000_000 })
        );
        for bad in [
            "",
            "2020-10-01T09:30:52",
            "2020-13-01T00:00:00Z",
            "2020-10-01T09:30:52.Z",
            "2020-10-01 09:30:52Z",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic_the_decoder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Ok(Packet::PushData { gateway, body, .. }) = Packet::decode(&bytes) {
                for rxpk in body.rxpk {
                    let _ = rxpk.to_uplink(gateway);
                }
            }
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_header_never_panic(
            id in 0u8..6,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        ) {
            let mut bytes = vec![2, 1, 2, id];
            bytes.extend_from_slice(&EUI.0);
            bytes.extend_from_slice(&body);
            let _ = Packet::decode(&bytes);
        }

        #[test]
        fn arbitrary_rxpk_values_never_panic_the_conversion(
            stat in proptest::num::i8::ANY,
            freq in proptest::num::f64::ANY,
            rssi in proptest::num::f64::ANY,
            lsnr in proptest::num::f64::ANY,
            datr in ".{0,12}",
            codr in ".{0,6}",
            data in "[A-Za-z0-9+/=]{0,400}",
            size in proptest::num::u32::ANY,
        ) {
            let rxpk = Rxpk {
                time: Some(datr.clone()), tmms: Some(u64::MAX), tmst: 0, freq, chan: 0, rfch: 0, stat,
                modu: "LORA".into(), datr: Datr::Lora(datr), codr: Some(codr), rssi, rssis: None,
                lsnr: Some(lsnr), size, data,
            };
            let _ = rxpk.to_uplink(EUI);
        }
    }
}
