//! FUSE operations against the daemon binary, through our frontend and a real socket:
//! every request is a descriptor chain in guest memory, served by the device's queue
//! thread and answered into guest memory. Each module covers an area with its normal
//! results and its errors, checking the host side of the shared directory where that is
//! what a user would see; `malformed` sends what no well-behaved guest sends. Scenarios
//! declared with `over_both_transports!` also run in process against the library's
//! `Server` and `PassthroughFs`, with no device around them.

#[path = "../common/mod.rs"]
mod common;
#[macro_use]
mod support;

mod attrs;
mod dirs;
mod files;
mod malformed;
mod names;
mod options;
mod payload;
mod pool;
mod stats;
