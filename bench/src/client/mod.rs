//! The load client: the same code drives every target. HTTP/1.1 keep-alive
//! connections, one tokio task per connection, spread over client threads
//! that each run a single-threaded event loop; requests built ahead of time.

mod conn;
mod load;
mod oneshot;
mod request;
mod result;

pub use load::{run, Spec};
pub use oneshot::{oneshot, wait_ready};
pub use request::RequestSet;
pub use result::{new_histogram, LoadResult};

#[cfg(test)]
mod tests;
