//! The engine's error type. Every variant that concerns user input names the file and,
//! where there is one, the line, key or tensor, so the binary can print it as one line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written. The I/O error is part of the message, not a
    /// separate cause, so `{:#}` chains print it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file was read but its content is wrong: `what` names the line, key or tensor.
    #[error("{}: {what}", path.display())]
    Format { path: PathBuf, what: String },
    /// A value given by the caller (config, flag, argument) is invalid.
    #[error("{0}")]
    Invalid(String),
    /// A training step's loss or gradient norm was NaN or infinite; the step was not
    /// applied (the weights and optimizer state are unchanged).
    #[error("non-finite {what} at step {step}; that update was not applied")]
    NonFinite { what: String, step: u64 },
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }

    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            what: what.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
