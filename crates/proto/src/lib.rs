//! twinscope-proto
