//! username
