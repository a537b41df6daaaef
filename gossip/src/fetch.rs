//! The fetch protocol: ask a peer for envelopes by id.
//!
//! Consensus needs the reports a proposal names; a member that missed some in
//! gossip fetches them from the proposer or any peer that has them.
//!
//! One request per stream, protocol id `/meshd/<network>/fetch/1`. The
//! requester writes the request and closes its write side; the responder
//! writes the response and closes. Integers are little-endian.
//!
//! ```text
//! request  = count: u64 ‖ count × id: [u8; 32]
//! response = status: u8 ‖ count: u64 ‖ count × (len: u64 ‖ envelope: [u8; len])
//! ```
//!
//! A request must be exactly `8 + 32·count` bytes with `count` at most the
//! responder's limit ([`MAX_FETCH_IDS`] at most); a responder that reads more
//! bytes than its limit allows stops reading and answers
//! [`Status::TooLarge`]. Each envelope is encoded as on gossip and at most
//! [`MAX_ENVELOPE_LEN`] bytes; ids the responder does not have are left out.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use meshd_protocol::Hash32;
use meshd_protocol::codec::MAX_ENVELOPE_LEN;

/// Most ids any request may carry on the wire. 4096 ids make a 131 KiB
/// request; a responder's configured limit is at most this.
pub const MAX_FETCH_IDS: usize = 4096;

/// Bytes of a response around its envelopes: status (1) and count (8).
pub const RESPONSE_OVERHEAD: usize = 1 + 8;

/// Bytes before each envelope in a response: its length (8).
pub const ENVELOPE_PREFIX: usize = 8;

/// The protocol id of fetch in `network`.
pub fn protocol(network: &str) -> StreamProtocol {
    // The network name is validated to [a-z0-9-], so the id is a valid protocol string.
    StreamProtocol::try_from_owned(format!("/meshd/{network}/fetch/1"))
        .unwrap_or(StreamProtocol::new("/meshd/fetch/1"))
}

/// How a responder answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The envelopes it has among those asked for.
    Ok = 0,
    /// The requester exceeded its fetch rate; retry later or elsewhere.
    RateLimited = 1,
    /// The responder has too many requests pending; retry later or elsewhere.
    Busy = 2,
    /// The request was larger than the responder accepts.
    TooLarge = 3,
}

impl Status {
    fn from_byte(byte: u8) -> Option<Status> {
        [Status::Ok, Status::RateLimited, Status::Busy, Status::TooLarge]
            .into_iter()
            .find(|s| *s as u8 == byte)
    }
}

/// A request as read from or written to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The ids asked for.
    Ids(Vec<Hash32>),
    /// The request was over the reader's limit (only ever read, never written).
    Oversized,
}

/// A response as read from or written to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// How the responder answered.
    pub status: Status,
    /// Encoded envelopes (each as on gossip).
    pub envelopes: Vec<Vec<u8>>,
}

impl Response {
    /// A response with a status and no envelopes.
    pub fn refusal(status: Status) -> Self {
        Response { status, envelopes: Vec::new() }
    }
}

/// Encodes a request.
pub fn encode_request(ids: &[Hash32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 32 * ids.len());
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes a request of at most `max_ids` ids; `None` when malformed.
pub fn decode_request(bytes: &[u8], max_ids: usize) -> Option<Vec<Hash32>> {
    let (count, rest) = bytes.split_first_chunk::<8>()?;
    let count = usize::try_from(u64::from_le_bytes(*count)).ok()?;
    if count > max_ids || rest.len() != count.checked_mul(32)? {
        return None;
    }
    Some(
        rest.chunks_exact(32)
            .map(|chunk| {
                let mut id = [0u8; 32];
                id.copy_from_slice(chunk);
                Hash32(id)
            })
            .collect(),
    )
}

/// Encodes a response, keeping the envelopes that fit in `max_bytes` in order
/// (the requester asks again for the rest).
pub fn encode_response(response: &Response, max_bytes: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count = 0u64;
    let mut size = RESPONSE_OVERHEAD;
    for envelope in &response.envelopes {
        let added = ENVELOPE_PREFIX + envelope.len();
        if envelope.len() > MAX_ENVELOPE_LEN || size + added > max_bytes {
            continue;
        }
        size += added;
        count += 1;
        body.extend_from_slice(&(envelope.len() as u64).to_le_bytes());
        body.extend_from_slice(envelope);
    }
    let mut out = Vec::with_capacity(size);
    out.push(response.status as u8);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a response; `None` when malformed (bad status, lengths that do not
/// add up, or an envelope over [`MAX_ENVELOPE_LEN`]).
pub fn decode_response(bytes: &[u8]) -> Option<Response> {
    let (&status, rest) = bytes.split_first()?;
    let status = Status::from_byte(status)?;
    let (count, mut rest) = rest.split_first_chunk::<8>()?;
    let count = u64::from_le_bytes(*count);
    // Every envelope takes at least its 8-byte prefix: a count above that is a lie.
    if count > (rest.len() / ENVELOPE_PREFIX) as u64 {
        return None;
    }
    let mut envelopes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if len > MAX_ENVELOPE_LEN || len > tail.len() {
            return None;
        }
        let (envelope, tail) = tail.split_at(len);
        envelopes.push(envelope.to_vec());
        rest = tail;
    }
    rest.is_empty().then_some(Response { status, envelopes })
}

/// The request-response codec of fetch, with this node's limits.
#[derive(Clone, Debug)]
pub struct Codec {
    /// Most ids this node accepts in a request.
    pub max_ids: usize,
    /// Largest response this node reads or writes.
    pub max_response_bytes: usize,
}

impl Codec {
    fn max_request_bytes(&self) -> usize {
        8 + 32 * self.max_ids
    }
}

/// Reads the stream to its end, or up to `limit + 1` bytes.
async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    Ok(buf)
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let limit = self.max_request_bytes();
        let bytes = read_bounded(io, limit).await?;
        if bytes.len() > limit {
            return Ok(Request::Oversized);
        }
        match decode_request(&bytes, self.max_ids) {
            Some(ids) => Ok(Request::Ids(ids)),
            // A count over our limit in a short request is oversized too.
            None if count_of(&bytes) > self.max_ids as u64 => Ok(Request::Oversized),
            None => Err(io::Error::new(io::ErrorKind::InvalidData, "malformed fetch request")),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_bounded(io, self.max_response_bytes).await?;
        if bytes.len() > self.max_response_bytes {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "fetch response over the limit"));
        }
        decode_response(&bytes)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed fetch response"))
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let ids = match request {
            Request::Ids(ids) => ids,
            Request::Oversized => Vec::new(),
        };
        io.write_all(&encode_request(&ids)).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode_response(&response, self.max_response_bytes)).await?;
        io.close().await
    }
}

fn count_of(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |count| u64::from_le_bytes(*count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u8) -> Vec<Hash32> {
        (0..n).map(|i| Hash32([i; 32])).collect()
    }

    #[test]
    fn requests_round_trip_within_the_limit() {
        let request = ids(5);
        assert_eq!(decode_request(&encode_request(&request), 5), Some(request.clone()));
        assert_eq!(decode_request(&encode_request(&request), 4), None);
    }

    #[test]
    fn requests_with_wrong_lengths_are_malformed() {
        let mut bytes = encode_request(&ids(2));
        bytes.push(0);
        assert_eq!(decode_request(&bytes, 10), None);
        assert_eq!(decode_request(&bytes[..20], 10), None);
        assert_eq!(decode_request(&u64::MAX.to_le_bytes(), 10), None);
    }

    #[test]
    fn responses_round_trip_and_keep_what_fits() {
        let response =
            Response { status: Status::Ok, envelopes: vec![vec![1; 100], vec![2; 200], vec![3; 50]] };
        let all = encode_response(&response, 1 << 20);
        assert_eq!(decode_response(&all), Some(response.clone()));
        // Room for the first and third only.
        let cut =
            decode_response(&encode_response(&response, RESPONSE_OVERHEAD + 2 * 8 + 150)).expect("decodes");
        assert_eq!(cut.envelopes, vec![vec![1; 100], vec![3; 50]]);
    }

    #[test]
    fn responses_with_lying_lengths_are_malformed() {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode_response(&bytes), None);
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&(MAX_ENVELOPE_LEN as u64 + 1).to_le_bytes());
        assert_eq!(decode_response(&bytes), None);
        assert_eq!(decode_response(&[9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    #[tokio::test]
    async fn codec_reports_oversized_requests_instead_of_failing() {
        use libp2p::request_response::Codec as _;
        let mut codec = Codec { max_ids: 4, max_response_bytes: 1 << 20 };
        let protocol = protocol("test");
        let mut small = futures::io::Cursor::new(encode_request(&ids(4)));
        assert_eq!(codec.read_request(&protocol, &mut small).await.ok(), Some(Request::Ids(ids(4))));
        let mut large = futures::io::Cursor::new(encode_request(&ids(200)));
        assert_eq!(codec.read_request(&protocol, &mut large).await.ok(), Some(Request::Oversized));
        let mut lying = futures::io::Cursor::new(encode_request(&ids(200))[..40].to_vec());
        assert_eq!(codec.read_request(&protocol, &mut lying).await.ok(), Some(Request::Oversized));
    }
}
