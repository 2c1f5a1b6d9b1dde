//! Nothing here: the end-to-end test lives in `tests/webdriver.rs` and is run by
//! `cargo xtask test`, which builds the release app, serves it from devhub and starts
//! chromedriver.
