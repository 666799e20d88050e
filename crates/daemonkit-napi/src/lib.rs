//! Node-API binding of `daemonkit-core`: conversion only, no policy.
//!
//! Errors reach JavaScript as `Error`s whose `code` is stable: an errno name (`"EACCES"`), or
//! one of `"EPIDFILEUNSAFE"`, `"ELAUNCH"`, `"EINVALIDARG"`.
#![deny(clippy::all)]

// napi-rs registers the exports only outside `cfg(test)`: there every item looks unused.
#[cfg(unix)]
#[cfg_attr(test, allow(dead_code))]
mod control;
#[cfg(unix)]
#[cfg_attr(test, allow(dead_code))]
mod supervise;
#[cfg(unix)]
#[cfg_attr(test, allow(dead_code))]
mod unix;
