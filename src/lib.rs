//! vhost-dax: a vhost-user backend that maps host memory straight into guests.
//!
//! Layers (see README and DESIGN.md): `device` speaks vhost-user, `fuse` owns the FUSE
//! wire format, `fs` the host filesystem, `dax` the life of every window mapping,
//! `frontend` is our side of the socket for tests and benchmarks, `config` turns command
//! lines and config files into validated device settings, `control` serves the DAX window's
//! control socket (pins a VMM holds on window ranges).

pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dax;
pub mod device;
pub mod frontend;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod sys;
