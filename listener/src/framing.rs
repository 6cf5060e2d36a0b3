//! The control socket's framing, with no I/O of its own so it can be driven by any number of
//! partial, non-blocking reads and writes (and tested byte by byte).
//!
//! Request: u32 little-endian length (1..=4096), then that many bytes of UTF-8 command text.
//! Reply: u32 little-endian length (0..=16 MiB), then the body.

/// Length prefix size, both directions.
pub const HEADER: usize = 4;
/// Largest request body.
pub const MAX_REQUEST: usize = 4096;
/// Largest reply body.
pub const MAX_REPLY: usize = 16 * 1024 * 1024;

/// A request that cannot be answered. `fatal` ones leave the stream at an unknown offset, so the
/// connection must close after the error reply; the others keep frame boundaries intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub why: String,
    pub fatal: bool,
}

/// What a decoder has after the bytes it was just given.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The frame is not complete yet.
    Incomplete,
    /// One whole request, UTF-8 checked.
    Request(String),
    /// A frame that must be answered with an error.
    Error(FrameError),
}

/// Collects one request frame. It asks for exactly the bytes the current frame still needs and
/// never more, so whatever follows a frame stays in the socket for the next request; its buffer
/// is at most `HEADER + MAX_REQUEST` bytes and grows only as the declared length is known.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    buf: Vec<u8>,
    /// Header plus body length, once the header is in.
    want: Option<usize>,
}

impl RequestDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while no byte of a frame has arrived (EOF here is a clean end, not a cut request).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes still missing from the current frame (never zero between frames).
    pub fn missing(&self) -> usize {
        self.want.unwrap_or(HEADER) - self.buf.len()
    }

    /// Feeds bytes; consumes at most `missing()` of them and returns how many it took. Callers
    /// that read with a buffer of `missing()` bytes always have everything taken.
    pub fn feed(&mut self, bytes: &[u8]) -> (usize, Decoded) {
        let take = bytes.len().min(self.missing());
        self.buf.extend_from_slice(&bytes[..take]);
        if self.want.is_none() && self.buf.len() == HEADER {
            let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let len = len as usize;
            if len == 0 {
                return (take, self.fail("empty request (length 0)".into()));
            }
            if len > MAX_REQUEST {
                return (
                    take,
                    self.fail(format!(
                        "request length {len} exceeds the {MAX_REQUEST} byte limit"
                    )),
                );
            }
            self.want = Some(HEADER + len);
            self.buf.reserve_exact(len);
        }
        match self.want {
            Some(want) if self.buf.len() == want => {
                let body = std::mem::take(&mut self.buf).split_off(HEADER);
                self.want = None;
                let decoded = match String::from_utf8(body) {
                    Ok(text) => Decoded::Request(text),
                    Err(_) => Decoded::Error(FrameError {
                        why: "request is not UTF-8".into(),
                        fatal: false,
                    }),
                };
                (take, decoded)
            }
            _ => (take, Decoded::Incomplete),
        }
    }

    fn fail(&mut self, why: String) -> Decoded {
        *self = Self::default();
        Decoded::Error(FrameError { why, fatal: true })
    }
}

/// A reply frame (header included) built from the supervisor's chunks. The 16 MiB bound is
/// checked on every chunk, so an over-long reply never holds more than the limit in memory.
#[derive(Debug)]
pub struct ReplyAssembler {
    frame: Vec<u8>,
    too_large: bool,
}

impl Default for ReplyAssembler {
    fn default() -> Self {
        ReplyAssembler {
            frame: vec![0; HEADER],
            too_large: false,
        }
    }
}

impl ReplyAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one chunk; past the limit, the body is dropped and the reply becomes an error.
    pub fn push(&mut self, chunk: &str) {
        if self.too_large {
            return;
        }
        if self.frame.len() - HEADER + chunk.len() > MAX_REPLY {
            self.too_large = true;
            self.frame = Vec::new();
            return;
        }
        self.frame.extend_from_slice(chunk.as_bytes());
    }

    /// The whole frame, ready to send.
    pub fn finish(self) -> Vec<u8> {
        if self.too_large {
            return error_frame("reply too large");
        }
        let mut frame = self.frame;
        let len = (frame.len() - HEADER) as u32; // <= MAX_REPLY, checked in push
        frame[..HEADER].copy_from_slice(&len.to_le_bytes());
        frame
    }
}

/// A reply frame with this body (which must be at most `MAX_REPLY` bytes; internal replies are).
pub fn reply_frame(body: &str) -> Vec<u8> {
    let mut assembler = ReplyAssembler::new();
    assembler.push(body);
    assembler.finish()
}

/// The frame of an `error: <why>` reply.
pub fn error_frame(why: &str) -> Vec<u8> {
    reply_frame(&format!("error: {why}\n"))
}

/// A request frame, for clients and tests.
pub fn request_frame(text: &str) -> Vec<u8> {
    let mut frame = (text.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// A frame on its way out, tolerant of partial writes.
#[derive(Debug)]
pub struct Outgoing {
    frame: Vec<u8>,
    sent: usize,
}

impl Outgoing {
    pub fn new(frame: Vec<u8>) -> Self {
        Outgoing { frame, sent: 0 }
    }

    pub fn pending(&self) -> &[u8] {
        &self.frame[self.sent..]
    }

    pub fn advance(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.frame.len());
    }

    pub fn is_done(&self) -> bool {
        self.sent == self.frame.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(d: &mut RequestDecoder, bytes: &[u8]) -> Vec<Decoded> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (n, decoded) = d.feed(rest);
            assert!(n > 0, "decoder took nothing");
            rest = &rest[n..];
            if decoded != Decoded::Incomplete {
                out.push(decoded);
            }
        }
        out
    }

    #[test]
    fn whole_and_byte_by_byte() {
        let frame = request_frame("show paths");
        let mut d = RequestDecoder::new();
        assert_eq!(
            feed_all(&mut d, &frame),
            [Decoded::Request("show paths".into())]
        );
        assert!(d.is_idle());
        for b in &frame[..frame.len() - 1] {
            assert_eq!(d.feed(std::slice::from_ref(b)), (1, Decoded::Incomplete));
            assert!(!d.is_idle());
        }
        assert_eq!(
            d.feed(&frame[frame.len() - 1..]),
            (1, Decoded::Request("show paths".into()))
        );
    }

    #[test]
    fn never_reads_past_a_frame() {
        let mut two = request_frame("pause");
        two.extend(request_frame("resume"));
        let mut d = RequestDecoder::new();
        assert_eq!(d.missing(), HEADER);
        let (n, decoded) = d.feed(&two);
        assert_eq!((n, decoded), (HEADER, Decoded::Incomplete));
        assert_eq!(d.missing(), 5);
        let (n, decoded) = d.feed(&two[HEADER..]);
        assert_eq!((n, decoded), (5, Decoded::Request("pause".into())));
        assert_eq!(
            feed_all(&mut d, &two[9..]),
            [Decoded::Request("resume".into())]
        );
    }

    #[test]
    fn bad_lengths_are_fatal() {
        for len in [0u32, 4097, 1 << 20, u32::MAX] {
            let mut d = RequestDecoder::new();
            let (n, decoded) = d.feed(&len.to_le_bytes());
            assert_eq!(n, HEADER);
            let Decoded::Error(e) = decoded else {
                panic!("{len}: {decoded:?}")
            };
            assert!(e.fatal, "{len}");
            assert!(
                e.why.contains(if len == 0 { "empty" } else { "exceeds" }),
                "{e:?}"
            );
            assert!(d.is_idle());
        }
        let mut d = RequestDecoder::new();
        let max = "x".repeat(MAX_REQUEST);
        assert_eq!(
            feed_all(&mut d, &request_frame(&max)),
            [Decoded::Request(max)]
        );
    }

    #[test]
    fn invalid_utf8_keeps_framing() {
        let mut bytes = 3u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, b'a']);
        bytes.extend(request_frame("pause"));
        let mut d = RequestDecoder::new();
        let got = feed_all(&mut d, &bytes);
        assert_eq!(
            got,
            [
                Decoded::Error(FrameError {
                    why: "request is not UTF-8".into(),
                    fatal: false
                }),
                Decoded::Request("pause".into())
            ]
        );
    }

    #[test]
    fn replies_join_chunks_and_enforce_the_limit() {
        let mut a = ReplyAssembler::new();
        a.push("hello ");
        a.push("");
        a.push("world\n");
        let frame = a.finish();
        assert_eq!(&frame[..HEADER], &12u32.to_le_bytes());
        assert_eq!(&frame[HEADER..], b"hello world\n");

        let chunk = "y".repeat(60 * 1024);
        let mut a = ReplyAssembler::new();
        let mut total = 0;
        while total + chunk.len() <= MAX_REPLY {
            a.push(&chunk);
            total += chunk.len();
        }
        a.push(&"z".repeat(MAX_REPLY - total));
        let frame = a.finish();
        assert_eq!(frame.len(), HEADER + MAX_REPLY);

        let mut a = ReplyAssembler::new();
        a.push(&"y".repeat(MAX_REPLY));
        a.push("!");
        a.push("more");
        assert_eq!(a.finish(), error_frame("reply too large"));
        assert_eq!(reply_frame(""), 0u32.to_le_bytes());
    }

    #[test]
    fn outgoing_partial_writes() {
        let mut o = Outgoing::new(b"abcdef".to_vec());
        o.advance(2);
        assert_eq!(o.pending(), b"cdef");
        assert!(!o.is_done());
        o.advance(4);
        assert!(o.is_done());
        assert!(o.pending().is_empty());
    }
}
