//! The DAX ledger (filled by the ledger work).
