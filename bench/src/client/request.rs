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
        })
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

    /// The request for the `n`th turn (wrapping around the items).
    pub fn build(&self, n: usize) -> Request<Full<Bytes>> {
        let item = &self.items[n % self.items.len()];
        let mut req = Request::new(Full::new(item.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = item.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}
