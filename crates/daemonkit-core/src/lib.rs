//! Process surgery for Unix daemons.
//!
//! `daemonkit-core` holds everything that must happen at the system-call level when a program
//! becomes a daemon, as small safe wrappers, one module per concern:
//!
//! - [`exec`]: replacing the calling process with another program, keeping chosen descriptors.
//! - [`launch`]: double fork (a `vfork`-style `clone` on Linux) + `setsid` + `execve`, with
//!   signal, stdio and file-descriptor hygiene done between fork and exec using only
//!   async-signal-safe calls on data prepared beforehand.
//! - [`listen`]: listening sockets bound by a launcher and passed on to the daemons it starts.
//! - [`pidfile`]: pidfiles locked with `flock`, safe against symlinks, FIFOs, recycled pids and
//!   garbage content.
//! - [`logfile`]: log files opened for append safely (no symlinks, hard links or paths others
//!   can change, as root), and written whole line by whole line when the disk is full.
//! - [`holder`]: proving that a given process holds a pidfile's exclusive lock (Linux).
//! - [`stdio`]: descriptor helpers (pipes, `dup2`, close-on-exec).
//! - [`signals`]: race-free signalling through pidfds on Linux.
//! - [`privileges`]: resolving the user and groups a daemon runs as.
//! - [`notify`]: the systemd readiness protocol (`READY=1`, `STOPPING=1`).
//! - [`tree`]: process trees through `/proc` (descendants, groups, sessions), the child
//!   subreaper attribute, ending a tree with `SIGTERM` then `SIGKILL`.
//!
//! The crate is usable from Rust on its own; the Node.js binding (`daemonkit-napi`) is a thin
//! layer over it.
#![cfg(unix)]
#![deny(missing_docs)]

mod argv;
pub mod control;
pub mod exec;
mod fsutil;
pub mod holder;
pub mod launch;
pub mod listen;
pub mod logfile;
pub mod notify;
pub mod pidfile;
pub mod privileges;
pub mod signals;
pub mod stdio;
pub mod supervise;
pub mod tree;

pub use nix::errno::Errno;
