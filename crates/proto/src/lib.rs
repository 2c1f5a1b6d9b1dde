//! twinscope-proto: the pure protocol layer shared by the browser app and devhub.
//!
//! No IO, no clock, no web-sys, no tokio: bytes in, bytes out, time passed in as a number.
//!
//! - [`mqtt`]: the MQTT 3.1.1 codec, every packet type in both directions, strict about
//!   what it accepts and never panicking on untrusted input.
//! - [`iothub`]: the Azure IoT Hub device dialect: connection strings, SAS tokens,
//!   usernames, topics, property bags, twin documents.

pub mod iothub;
pub mod mqtt;
pub mod provisioning;
pub mod session;
pub mod text;
pub mod traffic;
