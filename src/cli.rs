//! The command line, seen only by the binary: what may be typed (`args`), its resolution into
//! library requests (`request`), one file per command (`commands`), and the terminal side
//! (progress, events, errors, stdout).

pub mod args;
pub mod bar_layout;
pub mod commands;
pub mod errors;
pub mod events;
pub mod manpage;
pub mod progress;
pub mod request;
pub mod stdout;
pub mod suggest;
pub mod verify_args;

pub use args::{parse_args, Cli, Command};
