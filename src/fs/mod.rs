//! Passthrough filesystem.
