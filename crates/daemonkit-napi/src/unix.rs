//! The Unix binding, one module per concern. Each module converts; `daemonkit-core` decides.

mod fds;
mod launch;
mod listen;
mod notify;
mod pidfile;
mod process;

use daemonkit_core::Errno;
use napi::bindgen_prelude::*;

type Result<T> = napi::Result<T>;

/// An error for JavaScript with a stable `code`. It is thrown right away (napi-rs has no custom
/// codes on returned errors); the returned `PendingException` tells napi-rs it is already thrown.
fn coded(env: &Env, code: &str, message: impl ToString) -> napi::Error {
    let _ = env.throw_error(&message.to_string(), Some(code));
    napi::Error::from_status(Status::PendingException)
}

/// An error whose `code` is the errno's name (`"EACCES"`), its message `what` and the errno's text.
fn errno_error(env: &Env, errno: Errno, what: &str) -> napi::Error {
    coded(env, &format!("{errno:?}"), format!("{what}: {}", errno.desc()))
}

