//! The beacon radio frame, and what a witness reports about one it heard.
//!
//! # Frame format
//!
//! A beacon is a LoRaWAN *proprietary* frame (MHDR `0xE0`: MType 111,
//! Major 00), so LoRaWAN network servers ignore it, of exactly
//! [`FRAME_LEN`] = 20 bytes:
//!
//! | offset | length | field | value |
//! |---|---|---|---|
//! | 0 | 1 | MHDR | `0xE0` |
//! | 1 | 2 | magic | `"MD"` (`0x4D 0x44`) |
//! | 3 | 1 | format version | `0x01` |
//! | 4 | 16 | beacon id | [`BeaconId`] (see `meshd_protocol::beacon`) |
//!
//! Why these fields and no others:
//! - The magic and version tell a meshd beacon from other vendors' proprietary
//!   frames, which also start with `0xE0`: a random 20-byte proprietary frame
//!   passes with probability 2⁻²⁴. The version lets a later format coexist.
//! - No MIC and no signature: what makes a beacon unforgeable is its id, which
//!   nobody can compute before the region's previous summary is decided; the
//!   beaconer signs its beacon report over gossip. Corruption in the air is
//!   caught by the LoRa PHY CRC, which beacons are always sent with
//!   (frames without a CRC are not recognised).
//! - 20 bytes fit every LoRaWAN data rate of EU868 (51 bytes at DR0) and of
//!   US915 from DR1 (53 bytes; DR0 allows 11). The short frame keeps the
//!   airtime low: about 1.3 s at SF12/125 kHz, 57 ms at SF7/125 kHz.
//!
//! A beacon goes out with uplink polarity (`ipol` false, see
//! [`Txpk::lora_uplink_polarity`](crate::ingest::semtech::Txpk::lora_uplink_polarity)),
//! so neighbouring gateways receive it like any uplink.
//!
//! # Observations
//!
//! [`observe`] recognises a beacon in an [`UplinkFrame`] and extracts the
//! [`RadioFields`] a [`WitnessReport`]
//! carries: RSSI and SNR in tenths, frequency, data rate, reception time and
//! the concentrator counter `tmst`. A gateway's own beacons (the caller passes
//! the ids it transmitted recently) are ignored: a gateway cannot witness
//! itself.

use chirpstack_api::gw::{CrcStatus, UplinkFrame, modulation};
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::message::{BeaconId, DataRate, WitnessReport};

use crate::ingest::semtech::{GPS_EPOCH_UNIX_S, GPS_UTC_LEAP_SECONDS};

/// MHDR of a LoRaWAN proprietary frame: MType 111 (proprietary), RFU 000, Major 00.
pub const MHDR_PROPRIETARY: u8 = 0xE0;

/// Magic after the MHDR naming a meshd beacon ("MD").
pub const MAGIC: [u8; 2] = *b"MD";

/// Version of this frame format.
pub const FORMAT_VERSION: u8 = 1;

/// Length of a beacon frame: MHDR, magic, version, 16-byte id.
pub const FRAME_LEN: usize = 1 + MAGIC.len() + 1 + 16;

/// The beacon frame (PHYPayload) carrying `id`.
pub fn frame(id: &BeaconId) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[0] = MHDR_PROPRIETARY;
    frame[1..3].copy_from_slice(&MAGIC);
    frame[3] = FORMAT_VERSION;
    frame[4..].copy_from_slice(&id.0);
    frame
}

/// The beacon id in a PHYPayload, if it is a beacon frame of this format.
pub fn parse(phy_payload: &[u8]) -> Option<BeaconId> {
    let frame: &[u8; FRAME_LEN] = phy_payload.try_into().ok()?;
    if frame[0] != MHDR_PROPRIETARY || frame[1..3] != MAGIC || frame[3] != FORMAT_VERSION {
        return None;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&frame[4..]);
    Some(BeaconId(id))
}

/// The radio fields of a witness report, from the frame as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RadioFields {
    /// Received signal strength, tenths of dBm.
    pub rssi_ddbm: i16,
    /// Signal-to-noise ratio, tenths of dB.
    pub snr_ddb: i16,
    /// Frequency received on, Hz.
    pub frequency_hz: u32,
    /// Modulation received.
    pub datarate: DataRate,
    /// Reception time, Unix ms, when the gateway knows it (`time`, else GPS
    /// `tmms`); `None` leaves it to the caller's clock.
    pub received_at_ms: Option<u64>,
    /// The concentrator's microsecond counter at reception.
    pub tmst_us: u32,
}

/// A beacon heard by this gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The beacon.
    pub beacon_id: BeaconId,
    /// What the witness report will carry.
    pub radio: RadioFields,
}

impl Observation {
    /// The witness report of this observation. `region` and `epoch` are
    /// those of the beacon's report (looked up by the beacon id); `location`
    /// and `antenna_gain_ddbi` are the witness's own; `now_ms` (Unix ms, the
    /// daemon's clock) stands in for the reception time when the gateway gave
    /// none.
    pub fn witness_report(
        &self,
        region: Region,
        epoch: u64,
        location: Location,
        antenna_gain_ddbi: i16,
        now_ms: u64,
    ) -> WitnessReport {
        WitnessReport {
            region,
            epoch,
            beacon_id: self.beacon_id,
            location,
            antenna_gain_ddbi,
            rssi_ddbm: self.radio.rssi_ddbm,
            snr_ddb: self.radio.snr_ddb,
            frequency_hz: self.radio.frequency_hz,
            datarate: self.radio.datarate,
            received_at_ms: self.radio.received_at_ms.unwrap_or(now_ms),
            tmst_us: self.radio.tmst_us,
        }
    }
}

/// Why an uplink is not a witnessable beacon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotBeacon {
    /// The PHYPayload is not a beacon frame.
    #[error("not a beacon frame")]
    OtherFrame,
    /// A beacon frame without [`CrcStatus::CrcOk`].
    #[error("beacon frame without a valid CRC")]
    NoCrc,
    /// A beacon this gateway transmitted itself.
    #[error("the gateway's own beacon")]
    OwnBeacon,
    /// Not LoRa, or metadata missing or out of the report's integer ranges.
    #[error("radio metadata missing, not LoRa, or out of range")]
    InvalidMetadata,
}

impl NotBeacon {
    /// A stable snake_case name for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NotBeacon::OtherFrame => "other_frame",
            NotBeacon::NoCrc => "no_crc",
            NotBeacon::OwnBeacon => "own_beacon",
            NotBeacon::InvalidMetadata => "invalid_metadata",
        }
    }
}

/// Recognises a beacon in `frame` and extracts what a witness reports.
/// `own_recent` holds the ids this gateway transmitted recently; their
/// receptions are refused with [`NotBeacon::OwnBeacon`].
pub fn observe(frame: &UplinkFrame, own_recent: &[BeaconId]) -> Result<Observation, NotBeacon> {
    let beacon_id = parse(&frame.phy_payload).ok_or(NotBeacon::OtherFrame)?;
    let rx = frame.rx_info.as_ref().ok_or(NotBeacon::InvalidMetadata)?;
    if rx.crc_status != CrcStatus::CrcOk as i32 {
        return Err(NotBeacon::NoCrc);
    }
    if own_recent.contains(&beacon_id) {
        return Err(NotBeacon::OwnBeacon);
    }
    let radio = radio_fields(frame).ok_or(NotBeacon::InvalidMetadata)?;
    Ok(Observation { beacon_id, radio })
}

/// The radio fields of a LoRa uplink; `None` when not LoRa or out of range.
pub fn radio_fields(frame: &UplinkFrame) -> Option<RadioFields> {
    let tx = frame.tx_info.as_ref()?;
    let rx = frame.rx_info.as_ref()?;
    let Some(modulation::Parameters::Lora(lora)) = tx.modulation.as_ref()?.parameters.as_ref() else {
        return None;
    };
    let datarate = DataRate {
        spreading_factor: u8::try_from(lora.spreading_factor).ok()?,
        bandwidth_khz: u16::try_from(lora.bandwidth / 1000).ok()?,
    };
    let rssi_ddbm = i16::try_from(i64::from(rx.rssi) * 10).ok()?;
    let snr = f64::from(rx.snr) * 10.0;
    if !snr.is_finite() || snr.abs() > f64::from(i16::MAX) {
        return None;
    }
    let tmst_us = u32::from_be_bytes(rx.context.as_slice().try_into().ok()?);
    let from_utc = rx.gw_time.as_ref().and_then(|t| {
        let seconds = u64::try_from(t.seconds).ok()?;
        let ms = u64::try_from(t.nanos).ok()? / 1_000_000;
        seconds.checked_mul(1000)?.checked_add(ms)
    });
    let from_gps = rx.time_since_gps_epoch.as_ref().and_then(|d| {
        let gps_ms =
            u64::try_from(d.seconds).ok()?.checked_mul(1000)? + u64::try_from(d.nanos).ok()? / 1_000_000;
        gps_ms.checked_add((GPS_EPOCH_UNIX_S - GPS_UTC_LEAP_SECONDS) * 1000)
    });
    Some(RadioFields {
        rssi_ddbm,
        snr_ddb: snr.round() as i16,
        frequency_hz: tx.frequency,
        datarate,
        received_at_ms: from_utc.or(from_gps),
        tmst_us,
    })
}

#[cfg(test)]
mod tests {
    use chirpstack_api::gw::{LoraModulationInfo, Modulation, UplinkRxInfo, UplinkTxInfo};
    use chirpstack_api::prost_types::{Duration, Timestamp};

    use super::*;

    const ID: BeaconId = BeaconId([7; 16]);

    fn uplink(payload: Vec<u8>) -> UplinkFrame {
        UplinkFrame {
            phy_payload: payload,
            tx_info: Some(UplinkTxInfo {
                frequency: 868_100_000,
                modulation: Some(Modulation {
                    parameters: Some(modulation::Parameters::Lora(LoraModulationInfo {
                        bandwidth: 125_000,
                        spreading_factor: 9,
                        ..LoraModulationInfo::default()
                    })),
                }),
            }),
            rx_info: Some(UplinkRxInfo {
                rssi: -97,
                snr: -3.25,
                context: 123_456u32.to_be_bytes().to_vec(),
                crc_status: CrcStatus::CrcOk as i32,
                gw_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 250_000_000 }),
                ..UplinkRxInfo::default()
            }),
            ..UplinkFrame::default()
        }
    }

    #[test]
    fn a_frame_carries_its_id_after_mhdr_magic_and_version() {
        let frame = frame(&ID);
        assert_eq!(frame.len(), 20);
        assert_eq!(frame[..4], [0xE0, b'M', b'D', 1]);
        assert_eq!(parse(&frame), Some(ID));
    }

    #[test]
    fn other_frames_are_not_beacons() {
        let good = frame(&ID);
        assert_eq!(parse(&good[..19]), None, "too short");
        assert_eq!(parse(&[good.as_slice(), &[0]].concat()), None, "too long");
        for index in 0..4 {
            let mut bad = good;
            bad[index] ^= 1;
            assert_eq!(parse(&bad), None, "byte {index} changed");
        }
        assert_eq!(observe(&uplink(vec![0x40; 20]), &[]), Err(NotBeacon::OtherFrame));
    }

    #[test]
    fn a_heard_beacon_yields_the_witness_radio_fields() {
        let observation = observe(&uplink(frame(&ID).to_vec()), &[]).expect("a beacon");
        assert_eq!(observation.beacon_id, ID);
        assert_eq!(
            observation.radio,
            RadioFields {
                rssi_ddbm: -970,
                snr_ddb: -33,
                frequency_hz: 868_100_000,
                datarate: DataRate { spreading_factor: 9, bandwidth_khz: 125 },
                received_at_ms: Some(1_700_000_000_250),
                tmst_us: 123_456,
            }
        );
    }

    #[test]
    fn a_witness_report_carries_the_radio_fields_and_passes_the_range_rules() {
        use meshd_protocol::rules::witness;

        let observation = observe(&uplink(frame(&ID).to_vec()), &[]).expect("a beacon");
        let report = observation.witness_report(Region(5), 9, Location(6), 30, 42);
        assert_eq!((report.beacon_id, report.region, report.epoch), (ID, Region(5), 9));
        assert_eq!((report.location, report.antenna_gain_ddbi), (Location(6), 30));
        assert_eq!((report.rssi_ddbm, report.snr_ddb, report.tmst_us), (-970, -33, 123_456));
        assert_eq!(report.received_at_ms, 1_700_000_000_250, "the gateway's time wins over the clock");
        assert_eq!(witness::datarate_valid(report.datarate), Ok(()));
        assert_eq!(witness::rssi_in_range(report.rssi_ddbm), Ok(()));
        assert_eq!(witness::snr_in_range(report.snr_ddb), Ok(()));
        assert_eq!(witness::frequency_in_band(report.frequency_hz), Ok(()));

        let untimed =
            Observation { radio: RadioFields { received_at_ms: None, ..observation.radio }, ..observation };
        assert_eq!(untimed.witness_report(Region(5), 9, Location(6), 30, 42).received_at_ms, 42);
    }

    #[test]
    fn gps_time_gives_the_reception_time_when_utc_is_missing() {
        let mut frame = uplink(frame(&ID).to_vec());
        let rx = frame.rx_info.as_mut().expect("rx");
        rx.gw_time = None;
        rx.time_since_gps_epoch = Some(Duration { seconds: 1_000_000_000, nanos: 5_000_000 });
        let radio = observe(&frame, &[]).expect("a beacon").radio;
        assert_eq!(radio.received_at_ms, Some((1_000_000_000 + 315_964_800 - 18) * 1000 + 5));
    }

    #[test]
    fn own_beacons_and_frames_without_crc_are_refused() {
        assert_eq!(
            observe(&uplink(frame(&ID).to_vec()), &[BeaconId([1; 16]), ID]),
            Err(NotBeacon::OwnBeacon)
        );
        let mut no_crc = uplink(frame(&ID).to_vec());
        if let Some(rx) = no_crc.rx_info.as_mut() {
            rx.crc_status = CrcStatus::NoCrc as i32;
        }
        assert_eq!(observe(&no_crc, &[]), Err(NotBeacon::NoCrc));
    }

    #[test]
    fn fsk_beacons_have_no_witness_fields() {
        let mut frame = uplink(frame(&ID).to_vec());
        if let Some(tx) = frame.tx_info.as_mut() {
            tx.modulation =
                Some(Modulation { parameters: Some(modulation::Parameters::Fsk(Default::default())) });
        }
        assert_eq!(observe(&frame, &[]), Err(NotBeacon::InvalidMetadata));
    }
}
