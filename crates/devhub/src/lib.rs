//! devhub: a local Azure IoT Hub for twinscope's demos and tests.
//!
//! - [`hub`]: the hub's logic with no IO: packets and service calls in, actions out.
//! - [`store`]: SQLite persistence.

pub mod guard;
pub mod http;
pub mod hub;
pub mod net;
pub mod rest;
pub mod store;
pub mod tls;
