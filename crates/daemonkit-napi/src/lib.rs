//! Node-API binding of `daemonkit-core`: conversion only, no policy.
//!
//! Errors reach JavaScript as `Error`s whose `code` is stable: an errno name (`"EACCES"`), or
//! one of `"EPIDFILEUNSAFE"`, `"ELAUNCH"`, `"EINVALIDARG"`.
#![deny(clippy::all)]

// napi-rs registers the exports only outside `cfg(test)`: there every item looks unused.
#[cfg(unix)]
#[cfg_attr(test, allow(dead_code))]
mod supervise;
#[cfg(unix)]
#[cfg_attr(test, allow(dead_code))]
mod unix;

#[cfg(not(unix))]
mod unsupported {
    use napi_derive::napi;

    /// Every entry point of the binding is Unix-only; on other systems only this exists.
    #[napi]
    pub fn supported() -> bool {
        false
    }
}
