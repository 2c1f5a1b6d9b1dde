//! Power tools' plain logic (no web-sys): template fields, the telemetry generator's plan,
//! schedule and billing, and method-answer rules. Natively tested; the UI only calls them.

pub mod fleet;
pub mod generator;
pub mod num;
pub mod profiles;
pub mod provision;
pub mod rules;
pub mod template;
