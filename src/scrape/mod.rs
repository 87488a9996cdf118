//! Scraping: fetch a `/metrics` payload ([`fetch`]), parse it ([`parse`]) and
//! group its samples into families ([`family`]). Parsing is pure and borrows
//! from the payload; only [`fetch`] does I/O.

pub mod family;
pub mod fetch;
pub mod labels;
pub mod parse;
pub mod style;

pub use family::{Catalog, FamilyMeta, Role};
pub use labels::{Labels, Value};
pub use parse::{Entry, Format, Kind, LineError, LineErrorKind, ParseReport, Parser, Sample};
