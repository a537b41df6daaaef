//! The decision protocol: ask a peer for a region's finalized summary of one
//! epoch, with its certificate.
//!
//! A member that was offline or partitioned while its committee decided an
//! epoch cannot fetch the decision by id (it does not know the summary's hash),
//! so it asks by `(region, epoch)`. The answer is the responder's own
//! envelopes of the [`EpochSummary`](meshd_protocol::message::EpochSummary)
//! and the [`Certificate`](meshd_protocol::message::Certificate): the
//! certificate's 2f+1 commit signatures make the summary final whoever
//! relays it, so the requester checks them, not the relay.
//!
//! One request per stream, protocol id `/meshd/<network>/decision/1`.
//! Integers are little-endian; the response has the fetch protocol's layout
//! ([`crate::fetch`]) with at most [`MAX_DECISION_ENVELOPES`] envelopes.
//!
//! ```text
//! request  = region: u64 ‖ epoch: u64
//! response = status: u8 ‖ count: u64 ‖ count × (len: u64 ‖ envelope: [u8; len])
//! ```
//!
//! A responder that does not hold the decision answers `Ok` with no envelopes.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use meshd_protocol::codec::MAX_ENVELOPE_LEN;

use crate::fetch::{ENVELOPE_PREFIX, RESPONSE_OVERHEAD, Response, decode_response, encode_response};

/// Envelopes in a decision response: the summary and its certificate.
pub const MAX_DECISION_ENVELOPES: usize = 2;

/// Largest decision response: two envelopes of the largest size.
pub const MAX_DECISION_RESPONSE_BYTES: usize =
    RESPONSE_OVERHEAD + MAX_DECISION_ENVELOPES * (ENVELOPE_PREFIX + MAX_ENVELOPE_LEN);

/// Bytes of a request: region and epoch.
pub const REQUEST_LEN: usize = 16;

/// The protocol id of decision requests in `network`.
pub fn protocol(network: &str) -> StreamProtocol {
    // The network name is validated to [a-z0-9-], so the id is a valid protocol string.
    StreamProtocol::try_from_owned(format!("/meshd/{network}/decision/1"))
        .unwrap_or(StreamProtocol::new("/meshd/decision/1"))
}

/// A request for the decision of `region` (its H3 index) in `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The region's H3 cell index.
    pub region: u64,
    /// The epoch.
    pub epoch: u64,
}

impl Request {
    /// `region ‖ epoch`, little-endian.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[..8].copy_from_slice(&self.region.to_le_bytes());
        out[8..].copy_from_slice(&self.epoch.to_le_bytes());
        out
    }

    /// Decodes a request; `None` unless it is exactly [`REQUEST_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Option<Request> {
        let bytes: &[u8; REQUEST_LEN] = bytes.try_into().ok()?;
        let (region, epoch) = bytes.split_at(8);
        Some(Request {
            region: u64::from_le_bytes(region.try_into().ok()?),
            epoch: u64::from_le_bytes(epoch.try_into().ok()?),
        })
    }
}

/// The request-response codec of decision requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::with_capacity(REQUEST_LEN);
        io.take(REQUEST_LEN as u64 + 1).read_to_end(&mut bytes).await?;
        Request::decode(&bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a decision request is 16 bytes"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(MAX_DECISION_RESPONSE_BYTES as u64 + 1).read_to_end(&mut bytes).await?;
        if bytes.len() > MAX_DECISION_RESPONSE_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "decision response over the limit"));
        }
        match decode_response(&bytes) {
            Some(response) if response.envelopes.len() <= MAX_DECISION_ENVELOPES => Ok(response),
            Some(_) => {
                Err(io::Error::new(io::ErrorKind::InvalidData, "decision response has too many envelopes"))
            }
            None => Err(io::Error::new(io::ErrorKind::InvalidData, "malformed decision response")),
        }
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&request.encode()).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        mut response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        response.envelopes.truncate(MAX_DECISION_ENVELOPES);
        io.write_all(&encode_response(&response, MAX_DECISION_RESPONSE_BYTES)).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_sixteen_bytes_little_endian() {
        let request = Request { region: 0x0102_0304_0506_0708, epoch: 42 };
        let bytes = request.encode();
        assert_eq!(bytes[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(bytes[8], 42);
        assert_eq!(Request::decode(&bytes), Some(request));
        assert_eq!(Request::decode(&bytes[..15]), None);
        assert_eq!(Request::decode(&[0u8; 17]), None);
    }

    #[test]
    fn protocol_id_names_the_network() {
        assert_eq!(protocol("main").as_ref(), "/meshd/main/decision/1");
    }
}
