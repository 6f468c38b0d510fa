//! vhost-dax: a vhost-user backend that maps host memory straight into guests.
//!
//! Layers (see README): `device` speaks vhost-user, `dax` owns the life of every
//! window mapping, `frontend` is our side of the socket for tests and benchmarks.

pub mod dax;
pub mod fs;
pub mod fuse;
