//! vhost-user devices: descriptor chains, config space, the backend channel.

pub mod flush;
