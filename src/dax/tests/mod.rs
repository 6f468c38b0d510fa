//! The ledger's tests. The unit, property and concurrency tests run under std; the loom
//! model runs only under `--cfg loom` (see the module documentation for the command).

#[cfg(not(loom))]
mod concurrency;
#[cfg(loom)]
mod loom_model;
#[cfg(not(loom))]
mod map_unmap;
#[cfg(not(loom))]
mod parts;
#[cfg(not(loom))]
mod pin_release;
#[cfg(not(loom))]
mod prop;
#[cfg(not(loom))]
pub(crate) mod support;
