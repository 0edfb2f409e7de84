//! HTTP/1.1 on one upstream connection: writing a request (its head, then its body streamed with
//! Content-Length or chunked framing) and reading the response (its head, then its body framed
//! by Content-Length, chunked, or the connection's close).
//!
//! Written here rather than taken from hyper's client connection, which edge used before: hyper
//! drives each connection as a state machine fed through an mpsc channel and answers through a
//! oneshot, and delivers response bodies through another channel. With HTTP/2 clients that
//! dispatch was about 7 % of edge's CPU per request (docs/benchmarks.md, "edge"). Here the
//! request's own task writes and reads the socket, and a response body is handed out as
//! slices of the read buffer. Parsing stays with httparse (the parser hyper uses); this module
//! does the framing only.
//!
//! What it does not do: connect, pool, retry, or time out. [`upstream`](crate::upstream)
//! owns connections and decides when one is reused. It speaks to origin servers as a proxy's
//! client: no upgrades (101), no `Expect: 100-continue` handling beyond skipping interim
//! responses, no pipelining (one request at a time).

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode, Version};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

mod chunked;
use chunked::{ChunkedDecoder, Decoded};

/// A response head (status line and header fields) larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// Header fields in a response head or trailer section, at most (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// Read buffer space asked for when the shared read space runs low.
const READ_SIZE: usize = 16 * 1024;
/// Below this much free read space, more is asked for before reading.
const MIN_READ: usize = 2 * 1024;

/// Where connections read into: one buffer shared by all the connections of a serving thread.
///
/// What a read brings is split off it and kept by the connection that read it (response heads
/// and bodies are handed on as slices of it), so consecutive reads of different connections
/// land next to each other in memory that is still in the cache, and an idle connection holds
/// no buffer. (With a buffer per connection, each of hundreds of connections read into memory
/// of its own, and the cache misses on it were a visible part of the CPU per request.)
pub type ReadSpace = std::rc::Rc<std::cell::RefCell<BytesMut>>;

/// A new, empty [`ReadSpace`].
pub fn read_space() -> ReadSpace {
    std::rc::Rc::new(std::cell::RefCell::new(BytesMut::new()))
}
/// Request body bytes queued for writing before the body is polled for more.
const MAX_QUEUED: usize = 64 * 1024;
/// Buffers handed to one vectored write.
const MAX_SLICES: usize = 16;

/// What went wrong on an upstream connection.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// Reading or writing the socket failed.
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed (or was reset) before any byte of a response arrived. On a
    /// reused connection this is the upstream having closed it while idle.
    #[error("the upstream closed the connection before answering")]
    ClosedBeforeResponse,
    /// The connection closed in the middle of the response head or body.
    #[error("the upstream closed the connection in the middle of the response {0}")]
    ClosedEarly(&'static str),
    /// The response is not HTTP/1.x as RFC 9112 frames it.
    #[error("malformed response from the upstream: {0}")]
    Malformed(String),
    /// The client's request body could not be read (the client went away or sent too much).
    #[error("reading the request body: {0}")]
    RequestBody(Box<dyn std::error::Error + Send + Sync>),
    /// The upstream sent nothing of the response body for this long (set by the pool, which
    /// owns the timers: this module does not time out).
    #[error("the upstream sent nothing of the response body for {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
}

impl Http1Error {
    fn malformed(what: impl Into<String>) -> Http1Error {
        Http1Error::Malformed(what.into())
    }
}

/// Encodes a request head for `method` and `target` (origin-form) with `headers`, adding the
/// framing of a body that `body` describes, and returns how the body is to be framed.
///
/// Framing follows the request's own Content-Length when it has a valid one, else the body's
/// exact size, else chunked. A body that is already at its end is sent as no body at all.
pub fn encode_head(
    out: &mut BytesMut,
    method: &Method,
    target: &str,
    headers: &mut HeaderMap,
    body: &impl Body,
) -> Framing {
    // Our own framing replaces whatever the client's connection used.
    headers.remove(header::TRANSFER_ENCODING);
    let framing = if body.is_end_stream() {
        Framing::None
    } else if let Some(length) = content_length(headers.get_all(header::CONTENT_LENGTH).iter()) {
        Framing::Length(length)
    } else if let Some(length) = body.size_hint().exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        Framing::Length(length)
    } else {
        headers.remove(header::CONTENT_LENGTH);
        Framing::Chunked
    };
    out.reserve(
        64 + target.len()
            + headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>(),
    );
    out.extend_from_slice(method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The value of Content-Length fields when they are valid and agree, else `None`.
fn content_length<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> Option<u64> {
    let first = parse_length(values.next()?.as_bytes())?;
    values
        .all(|v| parse_length(v.as_bytes()) == Some(first))
        .then_some(first)
}

fn parse_length(value: &[u8]) -> Option<u64> {
    // Digits only (RFC 9110 8.6): no sign, no spaces, no empty value; at most 19 digits so
    // that it fits.
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request body being sent.
struct Upload<B> {
    body: B,
    framing: Framing,
    /// Bytes still allowed under Content-Length framing.
    remaining: u64,
}

/// How the response body in progress is delimited.
#[derive(Debug)]
enum Incoming {
    /// No exchange in progress, or its body has been read to its end.
    Done,
    /// This many bytes remain.
    Length(u64),
    /// Chunked.
    Chunked(ChunkedDecoder),
    /// Until the upstream closes the connection.
    UntilClose,
}

/// One upstream connection speaking HTTP/1.1, over any byte stream `T` (TCP, TLS, or an
/// in-memory pipe in tests), sending request bodies of type `B`.
///
/// A request goes through [`start`](Connection::start), then
/// [`poll_response`](Connection::poll_response) until the response head, then
/// [`poll_body`](Connection::poll_body) until the response body ends. Both keep sending the
/// request body while they read, so an upstream that answers while reading the upload (an echo,
/// an early error) is served. [`is_reusable`](Connection::is_reusable) then says whether
/// another request may follow.
pub struct Connection<T, B> {
    io: T,
    /// Read and not yet consumed: the rest of a response that came in pieces.
    read: BytesMut,
    space: ReadSpace,
    /// Bytes to write, in order: request heads, body data, chunk framing.
    write: VecDeque<Bytes>,
    queued: usize,
    /// Whether the written bytes still need a flush (TLS buffers records).
    unflushed: bool,
    upload: Option<Upload<B>>,
    incoming: Incoming,
    /// The request in progress is HEAD: its response has no body whatever its headers say.
    head_request: bool,
    /// Whether the connection can carry another request once this exchange ends.
    keep_alive: bool,
    /// A write failed while the response was awaited; reported if no response comes.
    write_error: Option<std::io::Error>,
    /// Where each header field of a response head is (reused, to spare an allocation).
    field_offsets: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl<T, B> std::fmt::Debug for Connection<T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("incoming", &self.incoming)
            .field("uploading", &self.upload.is_some())
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl<T, B> Connection<T, B>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A new connection over `io`, idle, reading into `space`.
    pub fn new(io: T, space: ReadSpace) -> Self {
        Connection {
            io,
            read: BytesMut::new(),
            space,
            write: VecDeque::new(),
            queued: 0,
            unflushed: false,
            upload: None,
            incoming: Incoming::Done,
            head_request: false,
            keep_alive: true,
            write_error: None,
            field_offsets: Vec::new(),
        }
    }

    /// Whether the exchange is over and the connection can carry another request.
    pub fn is_reusable(&self) -> bool {
        self.keep_alive
            && matches!(self.incoming, Incoming::Done)
            && self.upload.is_none()
            && self.write.is_empty()
            && !self.unflushed
            && self.read.is_empty()
            && self.write_error.is_none()
    }

    /// Checks an idle connection before reuse: false when the upstream closed it or sent
    /// something unasked. Registers `cx` for nothing useful: an idle connection has no task.
    pub fn poll_idle_is_open(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.is_reusable() {
            return false;
        }
        // Ready means closed (0), unasked bytes, or an error: not usable.
        self.poll_read_more(cx).is_pending()
    }

    /// Starts an exchange: `head` (from [`encode_head`]) is queued, and `body` is sent with
    /// `framing` as the response is awaited. The connection must be idle.
    pub fn start(&mut self, method: &Method, head: Bytes, framing: Framing, body: Option<B>) {
        debug_assert!(self.is_reusable(), "start on a busy connection");
        self.head_request = *method == Method::HEAD;
        self.queued += head.len();
        self.write.push_back(head);
        self.upload = match (framing, body) {
            (Framing::None, _) | (_, None) => None,
            (framing, Some(body)) => Some(Upload {
                body,
                framing,
                remaining: match framing {
                    Framing::Length(n) => n,
                    _ => 0,
                },
            }),
        };
    }

    /// Writes what is queued; Ready when all of it is written and flushed.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.write.is_empty() {
            let written = if self.write.len() == 1 || !self.io.is_write_vectored() {
                ready!(Pin::new(&mut self.io).poll_write(cx, &self.write[0]))?
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let n = self.write.len().min(MAX_SLICES);
                for (slice, bytes) in slices.iter_mut().zip(self.write.iter()) {
                    *slice = IoSlice::new(bytes);
                }
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]))?
            };
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.unflushed = true;
            self.queued -= written;
            let mut left = written;
            while left > 0 {
                let front = &mut self.write[0];
                if front.len() <= left {
                    left -= front.len();
                    self.write.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        if self.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Moves the request body along: writes what is queued, polls the body for more while
    /// there is room. Pending means waiting on the socket or the body (both wake `cx`); Ready
    /// means the upload is complete (or there was none).
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Http1Error>> {
        loop {
            if self.queued >= MAX_QUEUED || self.upload.is_none() {
                ready!(self.poll_write_queued(cx))?;
                if self.upload.is_none() {
                    return Poll::Ready(Ok(()));
                }
            }
            let Some(upload) = &mut self.upload else {
                continue;
            };
            let framing = upload.framing;
            let frame = match Pin::new(&mut upload.body).poll_frame(cx) {
                Poll::Pending => {
                    // Nothing more for now: write what is there.
                    ready!(self.poll_write_queued(cx))?;
                    return Poll::Pending;
                }
                Poll::Ready(frame) => frame,
            };
            match frame {
                None => {
                    let short = matches!(&self.upload, Some(u) if u.remaining > 0);
                    self.upload = None;
                    if framing == Framing::Chunked {
                        self.queue(Bytes::from_static(b"0\r\n\r\n"));
                    } else if short {
                        // The client's body ended short of its Content-Length: the upstream
                        // would wait for the rest, so the exchange cannot go on.
                        return self.upload_failed(
                            "the request body ended before its Content-Length".into(),
                        );
                    }
                }
                Some(Err(e)) => return self.upload_failed(e.into()),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) if framing == Framing::Chunked => {
                        self.queue(Bytes::from(format!("{:x}\r\n", data.len())));
                        self.queue(data);
                        self.queue(Bytes::from_static(b"\r\n"));
                    }
                    Ok(data) => {
                        let Some(upload) = &mut self.upload else {
                            continue;
                        };
                        if data.len() as u64 > upload.remaining {
                            return self.upload_failed(
                                "the request body is longer than its Content-Length".into(),
                            );
                        }
                        upload.remaining -= data.len() as u64;
                        self.queue(data);
                    }
                    // Trailers: sent when the framing can carry them, else dropped.
                    Err(frame) => {
                        if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), framing) {
                            let mut out = BytesMut::from(&b"0\r\n"[..]);
                            for (name, value) in trailers.iter() {
                                out.extend_from_slice(name.as_str().as_bytes());
                                out.extend_from_slice(b": ");
                                out.extend_from_slice(value.as_bytes());
                                out.extend_from_slice(b"\r\n");
                            }
                            out.extend_from_slice(b"\r\n");
                            self.queue(out.freeze());
                            self.upload = None;
                        }
                    }
                },
            }
        }
    }

    fn upload_failed(
        &mut self,
        cause: Box<dyn std::error::Error + Send + Sync>,
    ) -> Poll<Result<(), Http1Error>> {
        self.upload = None;
        self.keep_alive = false;
        Poll::Ready(Err(Http1Error::RequestBody(cause)))
    }

    fn queue(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.write.push_back(bytes);
    }

    /// Uploads while the response is read: an upload error ends the exchange for the
    /// connection, but a response that arrives anyway is still delivered.
    fn drive_upload(&mut self, cx: &mut Context<'_>) -> Result<(), Http1Error> {
        if self.upload.is_none() && self.write.is_empty() && !self.unflushed {
            return Ok(());
        }
        match self.poll_upload(cx) {
            Poll::Ready(Err(Http1Error::Io(e))) => {
                // The upstream may have answered and closed its read side (an early 413):
                // stop writing, keep reading.
                self.upload = None;
                self.write.clear();
                self.queued = 0;
                self.unflushed = false;
                self.keep_alive = false;
                self.write_error = Some(e);
                Ok(())
            }
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads more into the read buffer; Ready(0) at the end of the stream.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let mut space = self.space.borrow_mut();
        if space.capacity() < MIN_READ {
            space.reserve(READ_SIZE);
        }
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut *space
        ))?;
        let got = space.split();
        if self.read.is_empty() {
            self.read = got;
        } else {
            // Free when the two are adjacent in the shared space (nothing else was read in
            // between), a copy otherwise.
            self.read.unsplit(got);
        }
        Poll::Ready(Ok(n))
    }

    /// Sends the request along and reads until the final response head (interim 1xx
    /// responses are skipped). The body is then read with [`poll_body`](Self::poll_body).
    pub fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<()>, Http1Error>> {
        loop {
            self.drive_upload(cx)?;
            if !self.read.is_empty() {
                if let Some(response) = self.parse_head()? {
                    return Poll::Ready(Ok(response));
                }
            }
            match ready!(self.poll_read_more(cx)) {
                Ok(0) => {
                    self.keep_alive = false;
                    return Poll::Ready(Err(if !self.read.is_empty() {
                        Http1Error::ClosedEarly("head")
                    } else {
                        match self.write_error.take() {
                            Some(e) => Http1Error::Io(e),
                            None => Http1Error::ClosedBeforeResponse,
                        }
                    }));
                }
                Ok(_) => {}
                Err(e) => {
                    self.keep_alive = false;
                    // A reset with nothing received is the idle-close race too.
                    return Poll::Ready(Err(
                        if self.read.is_empty()
                            && matches!(
                                e.kind(),
                                std::io::ErrorKind::ConnectionReset
                                    | std::io::ErrorKind::ConnectionAborted
                                    | std::io::ErrorKind::BrokenPipe
                            )
                        {
                            Http1Error::ClosedBeforeResponse
                        } else {
                            Http1Error::Io(e)
                        },
                    ));
                }
            }
        }
    }

    /// Parses a final response head from the read buffer, if complete; interim responses are
    /// consumed and skipped.
    fn parse_head(&mut self) -> Result<Option<Response<()>>, Http1Error> {
        loop {
            // Parsed in two steps, because the parser's fields borrow the read buffer: first
            // the head's length and where each field is, then the head is split off the buffer
            // and the header values become slices of it rather than copies.
            let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                &self.read,
                &mut fields,
            ) {
                Ok(httparse::Status::Complete(length)) => length,
                Ok(httparse::Status::Partial) if self.read.len() > MAX_HEAD => {
                    return Err(Http1Error::malformed(format!(
                        "response head longer than {} KiB",
                        MAX_HEAD / 1024
                    )))
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Http1Error::malformed(format!(
                        "more than {MAX_HEADERS} header fields"
                    )))
                }
                Err(e) => return Err(Http1Error::malformed(e.to_string())),
            };
            let code = parsed.code.unwrap_or_default();
            let status = StatusCode::from_u16(code)
                .map_err(|_| Http1Error::malformed(format!("status {code}")))?;
            let version = if parsed.version == Some(0) {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(Http1Error::malformed(
                        "101 Switching Protocols, which was not asked for",
                    ));
                }
                self.read.advance(length);
                if self.read.is_empty() {
                    return Ok(None);
                }
                continue;
            }
            let start = self.read.as_ptr() as usize;
            self.field_offsets.clear();
            self.field_offsets
                .extend(parsed.headers.iter().map(|field| {
                    let name = field.name.as_ptr() as usize - start;
                    let value = field.value.as_ptr() as usize - start;
                    (
                        name..name + field.name.len(),
                        value..value + field.value.len(),
                    )
                }));
            let head = self.read.split_to(length).freeze();
            let mut headers = HeaderMap::with_capacity(self.field_offsets.len());
            for (name, value) in self.field_offsets.drain(..) {
                let name = HeaderName::from_bytes(&head[name])
                    .map_err(|_| Http1Error::malformed("invalid header field name"))?;
                let value = HeaderValue::from_maybe_shared(head.slice(value))
                    .map_err(|_| Http1Error::malformed(format!("value of {name}")))?;
                headers.append(name, value);
            }
            self.keep_alive &= keeps_alive(version, &headers);
            self.incoming = self.body_framing(status, &mut headers)?;
            let mut response = Response::new(());
            *response.status_mut() = status;
            *response.version_mut() = version;
            *response.headers_mut() = headers;
            return Ok(Some(response));
        }
    }

    /// How the response body is delimited (RFC 9112 6.3).
    fn body_framing(
        &mut self,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> Result<Incoming, Http1Error> {
        if self.head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Incoming::Done);
        }
        if headers.contains_key(header::TRANSFER_ENCODING) {
            // Transfer-Encoding overrides Content-Length, which must then not be passed on.
            headers.remove(header::CONTENT_LENGTH);
            let last = headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .rfind(|coding| !coding.is_empty());
            return Ok(match last {
                Some(coding) if coding.eq_ignore_ascii_case("chunked") => {
                    Incoming::Chunked(ChunkedDecoder::default())
                }
                _ => {
                    self.keep_alive = false;
                    Incoming::UntilClose
                }
            });
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return match content_length(headers.get_all(header::CONTENT_LENGTH).iter()) {
                Some(0) => Ok(Incoming::Done),
                Some(length) => Ok(Incoming::Length(length)),
                None => Err(Http1Error::malformed(
                    "invalid or conflicting Content-Length",
                )),
            };
        }
        self.keep_alive = false;
        Ok(Incoming::UntilClose)
    }

    /// Whether the response body has been read to its end.
    pub fn body_is_end(&self) -> bool {
        matches!(self.incoming, Incoming::Done)
    }

    /// The response body's remaining size, when known.
    pub fn body_size_hint(&self) -> SizeHint {
        match self.incoming {
            Incoming::Done => SizeHint::with_exact(0),
            Incoming::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }

    /// The next frame of the response body (data, or trailers of a chunked body); `None` at
    /// its end. The request body keeps going up meanwhile.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Http1Error>>> {
        loop {
            if let Err(e) = self.drive_upload(cx) {
                self.keep_alive = false;
                return Poll::Ready(Some(Err(e)));
            }
            match &mut self.incoming {
                Incoming::Done => return Poll::Ready(None),
                Incoming::Length(remaining) => {
                    if !self.read.is_empty() {
                        let take = (*remaining).min(self.read.len() as u64) as usize;
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            self.incoming = Incoming::Done;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(
                            self.read.split_to(take).freeze(),
                        ))));
                    }
                }
                Incoming::Chunked(decoder) => match decoder.decode(&mut self.read) {
                    Err(e) => {
                        self.keep_alive = false;
                        self.incoming = Incoming::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        self.incoming = Incoming::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        self.incoming = Incoming::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                },
                Incoming::UntilClose => {
                    if !self.read.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(self.read.split().freeze()))));
                    }
                }
            }
            match ready!(self.poll_read_more(cx)) {
                Ok(0) => {
                    self.keep_alive = false;
                    let complete = matches!(self.incoming, Incoming::UntilClose);
                    self.incoming = Incoming::Done;
                    return Poll::Ready(if complete {
                        None
                    } else {
                        Some(Err(Http1Error::ClosedEarly("body")))
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    self.keep_alive = false;
                    self.incoming = Incoming::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }
}

/// Whether a response lets the connection carry another request (RFC 9112 9.3).
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &str| {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if version == Version::HTTP_10 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

#[cfg(test)]
mod tests;
