//! The TLS server side of a client connection: rustls's unbuffered API under tokio's
//! `AsyncRead`/`AsyncWrite`, with buffers that exist only while there is something in them.
//!
//! Why not tokio-rustls (which the edge still uses toward backends): its rustls connection keeps
//! a 4 KiB receive buffer, zero-filled and so resident, for as long as the connection lives.
//! The edge holds many idle keep-alive connections (every browser keeps some open), so that
//! buffer was about half of the memory of each (bench/edge.sh, "memory per idle connection").
//! Here the stream owns its buffers and gives them back whenever it waits for the client with
//! nothing in flight: an idle connection holds rustls's state and nothing else. Written here
//! because no maintained crate adapts rustls's unbuffered API to tokio.
//!
//! What it must not do: keep data it has accepted from the caller without making progress on
//! it (every write is encrypted at once and sent as far as the socket takes it; `poll_flush`
//! sends the rest), or leave TLS records for the peer unsent while it waits for the peer
//! (handshake flights, key-update answers and alerts go out before any read waits). The one
//! exception is a wait the peer is not part of: TLS 1.3's session tickets, when the client's
//! request came with its last handshake message, wait for the response to it.
//!
//! One task owns a stream and polls both directions, as hyper does; there is no split.

use rustls::server::{ServerConfig, ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus,
};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Room taken for a read from the socket: one full TLS record (16 KiB of payload plus the
/// header, content type and AEAD tag) with some spare, so one read takes a whole record.
const RECEIVE_CAPACITY: usize = 16 * 1024 + 512;

/// Bytes of plaintext encrypted per `poll_write`; more waits for the socket.
const MAX_WRITE: usize = 64 * 1024;

/// Encrypted bytes that may wait for the socket before `poll_write` waits too.
const WRITE_BACKLOG: usize = 64 * 1024;

/// Bytes a TLS record adds to its payload, at most (TLS 1.2 AES-GCM: header 5, explicit nonce
/// 8, tag 16; TLS 1.3: header 5, content type 1, tag 16). rustls says when it needs more.
const RECORD_OVERHEAD: usize = 32;

/// The configs a client connection is accepted with: the edge's, and the same issuing one
/// TLS 1.3 session ticket instead of two, for a client that offers to resume a session.
///
/// Why one after a resumption: a ticket should serve one connection only (RFC 8446, C.4), so a
/// client that resumed has used one and needs one in its place; the second ticket of a full
/// handshake is for a second connection opened at once, and the client still holds that one.
/// OpenSSL's servers (haproxy, nginx) do the same by default. rustls sends its configured count
/// after every handshake, so the choice is made here, from the ClientHello, before the
/// connection exists: on the client's offer, where OpenSSL decides on the resumption itself,
/// so a client whose ticket is refused (expired, its key rotated out) gets one ticket after
/// the full handshake that follows. Both configs share the ticket keys and the certificates.
#[derive(Clone)]
pub struct ServerConfigs {
    full: Arc<ServerConfig>,
    resuming: Arc<ServerConfig>,
}

impl ServerConfigs {
    /// The pair for `config`: itself, and a copy sending at most one ticket.
    pub fn new(config: ServerConfig) -> ServerConfigs {
        let mut resuming = config.clone();
        resuming.send_tls13_tickets = config.send_tls13_tickets.min(1);
        ServerConfigs {
            full: Arc::new(config),
            resuming: Arc::new(resuming),
        }
    }

    /// The config for a client whose first bytes are `client_hello`.
    fn for_client_hello(&self, client_hello: &[u8]) -> &Arc<ServerConfig> {
        if offers_session_resumption(client_hello) {
            &self.resuming
        } else {
            &self.full
        }
    }
}

/// A server-side TLS connection to a client.
pub struct TlsServerStream {
    io: TcpStream,
    conn: UnbufferedServerConnection,
    /// TLS bytes read from the socket that rustls has not consumed yet.
    received: Vec<u8>,
    /// Decrypted bytes the caller has not read yet, from `plaintext_read` on.
    plaintext: Vec<u8>,
    plaintext_read: usize,
    /// TLS bytes for the client not yet written to the socket, from `sent` on.
    outgoing: Vec<u8>,
    sent: usize,
    /// No more application data will come: the client sent close_notify or closed its side.
    read_closed: bool,
    /// close_notify has been encoded for the client.
    close_notify_sent: bool,
    /// TLS 1.3's session tickets wait in `outgoing` for the first response: the client's
    /// first request came with its Finished, so that response is on its way and the client
    /// waits for nothing else. Without this they went out in a write of their own, because
    /// hyper reads ahead (to see a client close) while the request is served.
    tickets_wait_for_response: bool,
}

/// Where a round of record processing stopped.
enum Stopped {
    /// rustls needs more bytes from the client (mid-handshake, or between records).
    NeedsData,
    /// The handshake is over and nothing is pending: the caller may write.
    Writable,
    /// This many bytes of the caller's data were encrypted.
    Written(usize),
    /// Both sides sent close_notify.
    Closed,
}

impl TlsServerStream {
    /// Completes the TLS handshake on `io` with the config of `configs` that fits the client.
    pub async fn accept(mut io: TcpStream, configs: &ServerConfigs) -> io::Result<Self> {
        // The first record (the ClientHello) is read before the connection exists: whether it
        // offers to resume a session chooses the config.
        let mut received = Vec::new();
        while !first_record_complete(&received) {
            let read = std::future::poll_fn(|cx| {
                // A client that sends nothing holds no buffer: readiness first, and the buffer
                // given back when the read finds nothing (a new socket can read as ready once).
                ready!(io.poll_read_ready(cx))?;
                if received.capacity() - received.len() < RECEIVE_CAPACITY / 2 {
                    received.reserve(RECEIVE_CAPACITY);
                }
                let read = tokio_util::io::poll_read_buf(Pin::new(&mut io), cx, &mut received);
                if read.is_pending() && received.is_empty() {
                    received = Vec::new();
                }
                read
            });
            if read.await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection during the TLS handshake",
                ));
            }
        }
        let config = configs.for_client_hello(&received).clone();
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut stream = TlsServerStream {
            io,
            conn,
            received,
            plaintext: Vec::new(),
            plaintext_read: 0,
            outgoing: Vec::new(),
            sent: 0,
            read_closed: false,
            close_notify_sent: false,
            tickets_wait_for_response: false,
        };
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        stream.release_idle_buffers();
        Ok(stream)
    }

    /// The protocol ALPN chose, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Waits until the client has sent something (or closed), holding no buffer meanwhile;
    /// returns at once if a request came right behind the handshake's last message.
    pub async fn wait_for_input(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_input(cx)).await
    }

    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.plaintext_read < self.plaintext.len() || !self.received.is_empty() {
                return Poll::Ready(Ok(()));
            }
            // A read, not readiness alone: tokio reports a socket readable until a read has
            // come back empty, which the handshake's last read did not.
            match ready!(self.poll_receive(cx)) {
                Ok(0) => {
                    self.read_closed = true;
                    return Poll::Ready(Ok(()));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            self.process(None, None, false)?;
            if !self.conn.is_handshaking() {
                // What TLS 1.3 leaves (session tickets) is nothing the client waits for: it
                // goes out with the first response if the request is already here (one write
                // and one segment fewer per connection), or before the wait for it otherwise.
                // TLS 1.2 leaves the server's Finished, which the client does wait for.
                if self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                    self.tickets_wait_for_response = self.sent < self.outgoing.len()
                        && (!self.received.is_empty()
                            || self.plaintext_read < self.plaintext.len());
                    return Poll::Ready(Ok(()));
                }
                return self.poll_send(cx);
            }
            // Our flight goes out before we wait for the client's answer to it.
            ready!(self.poll_send(cx))?;
            if ready!(self.poll_receive(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection during the TLS handshake",
                )));
            }
        }
    }

    /// Lets rustls consume what has been received and produce what is due, until it needs the
    /// socket. Decrypted data goes to `read_into` while it has room, the rest is kept; `write`
    /// is encrypted once the connection is writable, and so is close_notify if `close`.
    fn process(
        &mut self,
        mut read_into: Option<&mut ReadBuf<'_>>,
        write: Option<&[u8]>,
        close: bool,
    ) -> io::Result<Stopped> {
        let TlsServerStream {
            conn,
            received,
            plaintext,
            outgoing,
            read_closed,
            close_notify_sent,
            ..
        } = self;
        let error = loop {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(received);
            let stopped = match state {
                Err(error) => {
                    received.drain(..discard);
                    break error;
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let payload = record.map_err(tls_error)?.payload;
                        let direct = match read_into.as_deref_mut() {
                            // Straight into the caller's buffer when nothing is waiting before it.
                            Some(buf) if plaintext.is_empty() => {
                                let n = payload.len().min(buf.remaining());
                                buf.put_slice(&payload[..n]);
                                n
                            }
                            _ => 0,
                        };
                        plaintext.extend_from_slice(&payload[direct..]);
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_handshake(&mut encode, outgoing)?;
                    None
                }
                // What was encoded waits in `outgoing`; every path that waits for the client
                // sends it first, so it counts as transmitted here.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Stopped::NeedsData),
                Ok(ConnectionState::PeerClosed) => {
                    *read_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => Some(Stopped::Closed),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    if let Some(data) = write {
                        let data = &data[..data.len().min(MAX_WRITE)];
                        let start = outgoing.len();
                        let records = data.len().div_ceil(16 * 1024).max(1);
                        let mut room = data.len() + records * RECORD_OVERHEAD;
                        let written = loop {
                            outgoing.resize(start + room, 0);
                            match traffic.encrypt(data, &mut outgoing[start..]) {
                                Ok(n) => break n,
                                Err(EncryptError::InsufficientSize(e))
                                    if e.required_size > room =>
                                {
                                    room = e.required_size;
                                }
                                Err(e) => {
                                    outgoing.truncate(start);
                                    return Err(io::Error::other(e.to_string()));
                                }
                            }
                        };
                        outgoing.truncate(start + written);
                        Some(Stopped::Written(data.len()))
                    } else if close && !*close_notify_sent {
                        let start = outgoing.len();
                        outgoing.resize(start + 64, 0);
                        let written = traffic
                            .queue_close_notify(&mut outgoing[start..])
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        outgoing.truncate(start + written);
                        *close_notify_sent = true;
                        Some(Stopped::Writable)
                    } else {
                        Some(Stopped::Writable)
                    }
                }
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    // The server config never offers 0-RTT, so a client cannot send it.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "TLS early data, which this server never offers",
                    ));
                }
                Ok(_) => {
                    return Err(io::Error::other(
                        "a TLS connection state this edge does not know",
                    ))
                }
            };
            received.drain(..discard);
            if let Some(stopped) = stopped {
                return Ok(stopped);
            }
        };
        Err(self.fail(error))
    }

    /// After rustls refused the connection: encodes the alert it queued for the client and
    /// sends what the socket takes now, so the client learns why.
    fn fail(&mut self, error: rustls::Error) -> io::Error {
        let TlsServerStream {
            conn,
            received,
            outgoing,
            ..
        } = self;
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) =
            conn.process_tls_records(received).state
        {
            // The connection is lost either way; the alert is a courtesy.
            let _ = encode_handshake(&mut encode, outgoing);
        }
        if self.sent < self.outgoing.len() {
            let _ = self.io.try_write(&self.outgoing[self.sent..]);
        }
        tls_error(error)
    }

    /// Writes `outgoing` to the socket until it is empty or the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads from the socket into `received`'s spare room (not zero-filled first); 0 is EOF.
    /// Before it waits for the client, it sends what the client is owed (so no record is held
    /// back while the peer waits too) and gives back the buffers that hold nothing. Reading
    /// first and sending only when there is nothing to read lets records that are due anyway
    /// (session tickets, a key update's answer) go out with the response to what was read.
    ///
    /// The read goes through `TcpStream::poll_read` rather than `try_read_buf`: a read that
    /// fills less than the room it had shows the socket drained, and tokio then clears the
    /// socket's readiness, so the next call waits without asking the kernel; with
    /// `try_read_buf` every request cost a second `recvfrom` that found nothing (EAGAIN).
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Readiness first, so that a connection with nothing to read takes no receive buffer.
        let read = if self.io.poll_read_ready(cx)?.is_pending() {
            Poll::Pending
        } else {
            if self.received.capacity() - self.received.len() < RECEIVE_CAPACITY / 2 {
                self.received.reserve(RECEIVE_CAPACITY);
            }
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.received)
        };
        if read.is_pending() {
            if self.sent < self.outgoing.len() && !self.tickets_wait_for_response {
                // A full socket registers for a wake-up here and is retried then.
                if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            self.release_idle_buffers();
        }
        read
    }

    /// Gives back the buffers that hold nothing; an idle connection then holds rustls's
    /// state alone.
    fn release_idle_buffers(&mut self) {
        if self.received.is_empty() {
            self.received = Vec::new();
        }
        if self.sent == self.outgoing.len() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        if self.plaintext_read == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.plaintext_read = 0;
        }
    }
}

impl AsyncRead for TlsServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plaintext_read < this.plaintext.len() {
                let waiting = &this.plaintext[this.plaintext_read..];
                let n = waiting.len().min(buf.remaining());
                buf.put_slice(&waiting[..n]);
                this.plaintext_read += n;
                if this.plaintext_read == this.plaintext.len() {
                    this.plaintext.clear();
                    this.plaintext_read = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            let stopped = this.process(Some(buf), None, false)?;
            if buf.filled().len() > before {
                // Records rustls produced on the way (a key update's answer) go out with the
                // next write, or before the next wait for the client.
                return Poll::Ready(Ok(()));
            }
            if this.plaintext_read < this.plaintext.len() || this.read_closed {
                continue;
            }
            if let Stopped::Closed = stopped {
                return Poll::Ready(Ok(()));
            }
            match this.poll_receive(cx) {
                Poll::Ready(Ok(0)) => {
                    // The client closed without close_notify: what it sent in whole records
                    // stands, a record cut short is an error.
                    this.read_closed = true;
                    if !this.received.is_empty() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "client closed the connection in the middle of a TLS record",
                        )));
                    }
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for TlsServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.tickets_wait_for_response = false;
        if this.outgoing.len() - this.sent >= WRITE_BACKLOG {
            ready!(this.poll_send(cx))?;
        }
        match this.process(None, Some(data), false)? {
            Stopped::Written(n) => {
                // As far as the socket takes it now; the rest waits for poll_flush or the
                // next write, and a full socket has registered for a wake-up.
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(n))
            }
            Stopped::Closed => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Stopped::NeedsData | Stopped::Writable => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS handshake not complete",
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.process(None, None, false)?;
        // Held tickets are not the caller's to flush (a write ends the hold): hyper flushes
        // on every turn of its loop, written or not.
        if !this.tickets_wait_for_response {
            ready!(this.poll_send(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tickets_wait_for_response = false;
        if !this.close_notify_sent {
            this.process(None, None, true)?;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Appends the handshake (or alert) record rustls has ready to `outgoing`, taking the room
/// rustls asks for.
fn encode_handshake(
    encode: &mut EncodeTlsData<'_, ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    let required = match encode.encode(&mut []) {
        Err(EncodeError::InsufficientSize(e)) => e.required_size,
        Ok(_) | Err(EncodeError::AlreadyEncoded) => 0,
    };
    let start = outgoing.len();
    outgoing.resize(start + required, 0);
    let written = encode
        .encode(&mut outgoing[start..])
        .map_err(|e| io::Error::other(e.to_string()))?;
    outgoing.truncate(start + written);
    Ok(())
}

/// TLS record content type of handshake messages, and the ClientHello's handshake type.
const HANDSHAKE_RECORD: u8 = 22;
const CLIENT_HELLO: u8 = 1;
/// The ClientHello extension that offers sessions to resume (RFC 8446, 4.2.11).
const PRE_SHARED_KEY_EXTENSION: u16 = 41;

/// Whether `received` holds the whole first TLS record, or enough to see that it is not a
/// handshake record (plain HTTP, say), which rustls then refuses.
fn first_record_complete(received: &[u8]) -> bool {
    match received {
        [HANDSHAKE_RECORD, _, _, high, low, rest @ ..] => {
            let length = usize::from(u16::from_be_bytes([*high, *low]));
            // rustls refuses a record longer than TLS allows; no need to wait for it.
            rest.len() >= length || length > RECEIVE_CAPACITY
        }
        [HANDSHAKE_RECORD, ..] | [] => false,
        _ => true,
    }
}

/// Whether the ClientHello in the first record of `received` offers a session to resume
/// (has the pre_shared_key extension). Only a peek to choose the number of session tickets:
/// rustls parses and checks the message itself, and anything this cannot read (a
/// ClientHello split over records, a malformed one) counts as no offer. Written here because
/// rustls's unbuffered API has no hook before it takes its config.
fn offers_session_resumption(received: &[u8]) -> bool {
    /// Reads big-endian lengths and skips fields, failing at the end of the input.
    struct Cursor<'a>(&'a [u8]);
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = rest;
            Some(head)
        }
        fn number(&mut self, bytes: usize) -> Option<usize> {
            Some(
                self.take(bytes)?
                    .iter()
                    .fold(0, |n, &b| n << 8 | usize::from(b)),
            )
        }
        fn skip_vector(&mut self, length_bytes: usize) -> Option<()> {
            let n = self.number(length_bytes)?;
            self.take(n).map(|_| ())
        }
    }
    let offered = || -> Option<bool> {
        let mut record = Cursor(received);
        if record.number(1)? != usize::from(HANDSHAKE_RECORD) {
            return None;
        }
        record.take(2)?; // legacy record version
        let length = record.number(2)?;
        let mut message = Cursor(record.take(length)?);
        if message.number(1)? != usize::from(CLIENT_HELLO) {
            return None;
        }
        let length = message.number(3)?;
        let mut hello = Cursor(message.take(length)?);
        hello.take(2 + 32)?; // legacy version, random
        hello.skip_vector(1)?; // legacy session id
        hello.skip_vector(2)?; // cipher suites
        hello.skip_vector(1)?; // legacy compression methods
        let length = hello.number(2)?;
        let mut extensions = Cursor(hello.take(length)?);
        while !extensions.0.is_empty() {
            if extensions.number(2)? == usize::from(PRE_SHARED_KEY_EXTENSION) {
                return Some(true);
            }
            extensions.skip_vector(2)?;
        }
        Some(false)
    };
    offered().unwrap_or(false)
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests;
