//! The body of a streamed answer of `GET /runtime/v1/secrets` (see
//! `service/delivery_stream.rs`): the same JSON as a whole answer, written
//! page by page into buffers that are wiped once sent.
//!
//! When the team changes while the answer is sent, or a read fails, the
//! body ends with an error: the connection is closed before the JSON (and,
//! in HTTP/1.1, the chunked body) is complete, so no client can take a
//! cut answer for a whole one.

use super::runtime::{item, WipingBuf};
use super::AppState;
use crate::service::delivery_stream::StreamCursor;
use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Every entry takes under 176 bytes besides its names and value (see
/// `runtime::render_scope`).
const ENTRY_OVERHEAD: usize = 176;

/// The body: the head, then one chunk per page, then the closing brackets.
pub fn body(state: Arc<AppState>, cursor: StreamCursor, revision: i64) -> Body {
    let head = Bytes::from(format!("{{\"revision\":{revision},\"secrets\":["));
    let state = Some((state, cursor, true));
    let rest = futures_util::stream::unfold(state, |state| async move {
        let (state, mut cursor, mut first) = state?;
        match state.service.next_delivery_page(&mut cursor).await {
            Ok(Some(page)) => {
                let capacity = page
                    .secrets
                    .iter()
                    .map(|s| s.value.len() + s.name.len() + s.canonical_name.len() + ENTRY_OVERHEAD)
                    .sum::<usize>();
                let mut buf = WipingBuf(Zeroizing::new(Vec::with_capacity(capacity)));
                for s in &page.secrets {
                    if !std::mem::take(&mut first) {
                        // Through the buffer, which wipes what it outgrows.
                        let _ = std::io::Write::write_all(&mut buf, b",");
                    }
                    // Serializing strings and integers into memory cannot fail.
                    let _ = serde_json::to_writer(&mut buf, &item(s));
                }
                // Rendered: the page's values (and its turn in the lane) go.
                drop(page);
                let chunk = Bytes::from_owner(buf.0);
                Some((Ok(chunk), Some((state, cursor, first))))
            }
            Ok(None) => Some((Ok(Bytes::from_static(b"]}")), None)),
            Err(e) => {
                tracing::warn!(error = %e, "a streamed runtime answer ended unfinished");
                Some((Err(std::io::Error::other("answer cut short")), None))
            }
        }
    });
    Body::from_stream(
        futures_util::stream::once(async { Ok::<_, std::io::Error>(head) }).chain(rest),
    )
}
