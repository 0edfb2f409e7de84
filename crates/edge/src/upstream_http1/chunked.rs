//! The chunked transfer coding of response bodies (RFC 9112 7.1), decoded from a read
//! buffer. Data is handed out as slices of the buffer, never copied; chunk sizes are parsed by
//! httparse. Trailer fields come out as one header map after the last chunk.

use super::{Http1Error, MAX_HEAD, MAX_HEADERS};
use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// What [`ChunkedDecoder::decode`] found in the buffer.
#[derive(Debug)]
pub(super) enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
    NeedMore,
}

#[derive(Debug, Default)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk's data: this many bytes left.
    Data(u64),
    /// After a chunk's data: expecting its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// Decodes a chunked body (RFC 9112 7.1) from a read buffer, handing data out as slices of it.
#[derive(Debug, Default)]
pub(super) struct ChunkedDecoder {
    state: ChunkState,
}

impl ChunkedDecoder {
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Http1Error> {
        loop {
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() > 4096 => {
                        return Err(Http1Error::malformed("chunk size line too long"))
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(Http1Error::malformed("invalid chunk size line")),
                },
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    self.state = if take as u64 == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take as u64)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Http1Error::malformed("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] == b"\r\n" {
                        buf.advance(2);
                        return Ok(Decoded::End);
                    }
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if buf.len() > MAX_HEAD {
                            return Err(Http1Error::malformed("trailer section too long"));
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    let section = buf.split_to(end + 4).freeze();
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let parsed = match httparse::parse_headers(&section, &mut fields) {
                        Ok(httparse::Status::Complete((_, parsed))) => parsed,
                        _ => return Err(Http1Error::malformed("invalid trailer section")),
                    };
                    let mut trailers = HeaderMap::with_capacity(parsed.len());
                    for field in parsed {
                        let (Ok(name), Ok(value)) = (
                            HeaderName::from_bytes(field.name.as_bytes()),
                            HeaderValue::from_maybe_shared(section.slice_ref(field.value)),
                        ) else {
                            return Err(Http1Error::malformed("invalid trailer field"));
                        };
                        trailers.append(name, value);
                    }
                    return Ok(Decoded::Trailers(trailers));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `wire` to a decoder in pieces cut at `cuts`; returns the data and trailers.
    fn decode_in_pieces(
        wire: &[u8],
        cuts: &[usize],
    ) -> Result<(Vec<u8>, Option<HeaderMap>, usize), Http1Error> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        for cut in cuts {
            buf.extend_from_slice(&wire[fed..cut]);
            fed = cut;
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(d) => data.extend_from_slice(&d),
                    Decoded::NeedMore => break,
                    // What is left: in the buffer, and not fed yet.
                    Decoded::End => return Ok((data, None, buf.len() + wire.len() - fed)),
                    Decoded::Trailers(t) => {
                        return Ok((data, Some(t), buf.len() + wire.len() - fed))
                    }
                }
            }
        }
        Err(Http1Error::ClosedEarly("body"))
    }

    fn encode(chunks: &[Vec<u8>], trailer: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            wire.extend_from_slice(format!("{:X};ext=1\r\n", c.len()).as_bytes());
            wire.extend_from_slice(c);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n");
        if trailer {
            wire.extend_from_slice(b"Checksum: abc\r\nX-Other: 1\r\n");
        }
        wire.extend_from_slice(b"\r\n");
        wire
    }

    proptest! {
        #[test]
        fn any_split_of_a_chunked_body_decodes_to_its_data(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            trailer in any::<bool>(),
        ) {
            let mut wire = encode(&chunks, trailer);
            // What follows the body (the next response) stays in the buffer.
            wire.extend_from_slice(b"HTTP/1.1");
            let (data, trailers, left) = decode_in_pieces(&wire, &cuts).unwrap();
            prop_assert_eq!(data, chunks.concat());
            prop_assert_eq!(left, 8);
            match trailers {
                Some(t) => {
                    prop_assert!(trailer);
                    prop_assert_eq!(&t["checksum"], "abc");
                    prop_assert_eq!(&t["x-other"], "1");
                }
                None => prop_assert!(!trailer),
            }
        }

        #[test]
        fn garbage_never_panics(wire in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_in_pieces(&wire, &[3, 17]);
        }
    }

    #[test]
    fn malformed_framing_is_an_error() {
        for wire in [
            &b"zz\r\nhello\r\n"[..],
            b"5\r\nhelloXY0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nno colon here\r\n\r\n",
        ] {
            assert!(
                matches!(decode_in_pieces(wire, &[]), Err(Http1Error::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }
}
