//! Typed views of header values, decoded on demand from the raw bytes a [`crate::Message`] keeps.

mod name;
mod name_addr;
mod params;
mod simple;
mod via;

pub use name::HeaderName;
pub use name_addr::{ContactValue, NameAddr};
pub use params::{param, split_list, Params};
pub use simple::{
    parse_content_length, parse_delta_seconds, parse_max_forwards, parse_media_type,
    parse_retry_after, validate_date, validate_option_tag, CSeq, MAX_CSEQ,
};
pub use via::{format_via, Via, MAGIC_COOKIE};
