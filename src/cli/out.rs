//! Standard output for the commands people pipe: `benchrun inspect FILE | head`
//! must end quietly when the reader goes away, not panic as `println!` does
//! on a closed pipe.

use std::fmt;
use std::io::{self, Write};

/// Writes `args` to standard output. A closed pipe ends the command with
/// success (the reader has what it wanted); any other write error ends it
/// with a message and a failure.
pub fn write(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("benchrun: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// `print!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*)) };
}

/// `println!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}
