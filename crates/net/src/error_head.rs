//! JSON bodies for hyper's own error answers (issue 9, finding 4).
//!
//! When hyper cannot parse a request head (a NUL byte or a folded line in a
//! header, conflicting framing headers, an over-long URI, too many or too
//! large headers) it answers by itself, before any service runs, with a
//! bodiless `400`, `414` or `431` and closes the connection. This IO wrapper
//! sits between hyper and the socket and recognizes exactly that write: one
//! whole response head, with one of those three status lines and
//! `content-length: 0`, at the start of a write. It replaces it with the same
//! status carrying the body `api/error.rs` gives it (the one place error
//! bodies are decided; this file only frames it). Nothing is parsed from the
//! client: only hyper's own output is inspected, and every other write passes
//! through untouched.
//!
//! hyper writes that head only when no response is in progress
//! (`Writing::Init`), so it always starts a write (the first buffer of a
//! vectored write); a JSON body of ours never starts with `HTTP/1.1 `.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Vectored writes up to this size are copied into one buffer on the stack.
const SMALL_WRITE: usize = 4096;

pub struct JsonErrorHeads<T> {
    inner: T,
    /// A rewritten head still to be written, and how much of it was.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonErrorHeads<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The statuses hyper answers on its own: the status line's start, its
/// code and its reason phrase.
fn status_of(status_line: &[u8]) -> Option<(u16, &'static str)> {
    const CASES: [(&[u8], u16, &str); 3] = [
        (b"HTTP/1.1 400 ", 400, "400 Bad Request"),
        (b"HTTP/1.1 414 ", 414, "414 URI Too Long"),
        (b"HTTP/1.1 431 ", 431, "431 Request Header Fields Too Large"),
    ];
    CASES
        .iter()
        .find(|(prefix, _, _)| status_line.starts_with(prefix))
        .map(|(_, code, status)| (*code, *status))
}

/// Returns the replacement for `buf` when it is exactly one of hyper's
/// bodiless error heads.
pub(crate) fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    let (code, status) = status_of(buf)?;
    // Exactly one complete head and nothing after it.
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    lines.next()?;
    let mut bodiless = false;
    let mut date = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            bodiless = value == "0";
        } else if name.eq_ignore_ascii_case("date") {
            date = Some(value);
        }
    }
    if !bodiless {
        return None;
    }
    // What the body says is decided where every other error's is.
    let body = tessera_wire::error::unparsable_request_body(code)?;
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        out.push_str("date: ");
        out.push_str(date);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    metrics::counter!("tessera_http_parse_errors_total", "status" => &status[..3]).increment(1);
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> JsonErrorHeads<T> {
    /// Writes what is left of a rewritten head.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrorHeads<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrorHeads<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(replacement) = rewrite(buf) {
            self.pending = replacement;
            // hyper's bytes are taken whole; ours go out now or on the next
            // write, flush or shutdown.
            if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// hyper hands a response over as its head followed by the body's own
    /// buffers (no copy of the body); its bodiless error answers are a head
    /// alone, so the first buffer is where one is recognized.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(replacement) = rewrite(first) {
                self.pending = replacement;
                if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(first.len()));
            }
        }
        // A small response (most of them) goes out as one plain write: as
        // cheap as the copy hyper used to make, without its buffer.
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if bufs.len() > 1 && total <= SMALL_WRITE {
            let mut one = [0u8; SMALL_WRITE];
            let mut at = 0;
            for b in bufs {
                one[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
            return Pin::new(&mut self.inner).poll_write(cx, &one[..at]);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    // Vectored when the socket is: otherwise hyper copies every body into
    // one buffer with its head (measured: the copy, and the fresh pages it
    // needed, were most of the cost of answering 1,000 waiters at once).
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn rewrites_only_hypers_bodiless_error_heads() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(head).unwrap()).unwrap();
        let (h, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(h.starts_with("HTTP/1.1 431 "));
        assert!(h.contains(&format!("content-length: {}", body.len())));
        assert!(h.contains("date: Mon, 01 Jan 2024"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "INVALID_REQUEST");

        // Our own answers (with a body) and anything else pass through.
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}").is_none());
        assert!(rewrite(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"{\"code\":\"x\"}").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
    }
}
