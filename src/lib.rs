//! twinscope: an Azure IoT Hub device in the browser.
//!
//! The app is a library so that browser tests can mount its components.
//! Layers (see `../shared/design/ARCHITECTURE.md`): `ui -> client -> proto`, never back.
//! `ui` holds Leptos components and the plain models they read; `client` is the only code
//! that touches browser APIs; `tools` holds the power tools' plain logic (templates,
//! generator, method rules).

pub mod client;
pub mod tools;
pub mod ui;

pub use ui::App;
