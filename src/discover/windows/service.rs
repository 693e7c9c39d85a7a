//! The Windows service (placeholder until written).
