//! Requests prepared before a measurement starts, so that the timed loop
//! only clones reference-counted parts.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, Uri};
use std::net::SocketAddr;

struct Item {
    uri: Uri,
    body: Bytes,
}

/// A cycle of requests to one server: same method and headers, each item
/// with its own path and body. Connections take items in turn from a shared
/// counter, so together they cycle over every item.
pub struct RequestSet {
    method: Method,
    headers: HeaderMap,
    items: Vec<Item>,
    /// Requests sent one after the other on one connection per turn, and
    /// counted as one (OpenBao reads a team of 100 with 100 GETs).
    unit: usize,
}

impl RequestSet {
    pub fn new(addr: SocketAddr, method: Method, auth: (HeaderName, &str)) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        // hyper's connection-level client sends exactly the headers given;
        // HTTP/1.1 servers (Go's in particular) reject a request without Host.
        headers.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
        headers.insert(auth.0, HeaderValue::from_str(auth.1)?);
        if method == Method::POST {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(RequestSet {
            method,
            headers,
            items: Vec::new(),
            unit: 1,
        })
    }

    /// Each turn sends `n` consecutive items in sequence and counts as one
    /// request: a success when all `n` answer 200.
    pub fn with_unit(mut self, n: usize) -> Self {
        self.unit = n.max(1);
        self
    }

    pub fn unit(&self) -> usize {
        self.unit
    }

    pub fn push(&mut self, path: &str, body: impl Into<Bytes>) -> anyhow::Result<()> {
        self.items.push(Item {
            uri: path.parse()?,
            body: body.into(),
        });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The `n`th request (wrapping around the items); a turn of a set with a
    /// unit of `u` sends requests `turn * u` to `turn * u + u - 1`.
    pub fn build(&self, n: usize) -> Request<Full<Bytes>> {
        let item = &self.items[n % self.items.len()];
        let mut req = Request::new(Full::new(item.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = item.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}
