//! Archiving and call detail records.
//!
//! - [`record`]: what is kept (messages as sent, calls, sign-ins);
//! - [`policy`]: which conversations are kept and for how long, critical mode, legal holds;
//! - [`journal`]: the durable local queue between the servers and the archive;
//! - [`writer`]: the thread that empties the queue into the archive database;
//! - [`db`] and `store`: the archive database (SQLite or PostgreSQL), its tables, searches,
//!   purges and access log;
//! - [`query`], [`export`], [`report`]: searches, exports for legal discovery, summaries.

pub mod db;
pub mod export;
pub mod journal;
pub mod policy;
pub mod query;
pub mod record;
pub mod report;
mod store;
pub mod time;
pub mod writer;

pub use db::{ArchiveError, Db};
pub use policy::{Policies, Policy};
pub use query::Query;
pub use record::{Call, Direction, Message, Record, Registration};
pub use store::Purged;
