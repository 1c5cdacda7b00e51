//! Coffer operator (work in progress).
