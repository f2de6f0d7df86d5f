//! The crate's error: every failure says whose fault it is, which decides the
//! exit code in exactly one place (`Error::exit_code`).

use crate::config::ConfigError;
use crate::import::ImportError;
use crate::sql::QueryError;
use crate::store::StoreError;

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Bad input, config or SQL: the user can fix it.
    User,
    /// Storage or the file system failed.
    External,
    /// A bug in tripwire.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    /// The server could not listen or serve.
    #[error("server: {0}")]
    Server(String),
}

impl Error {
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config(_) | Error::Usage(_) => Fault::User,
            Error::Import(ImportError::Store(_)) | Error::Store(_) | Error::Server(_) => {
                Fault::External
            }
            Error::Import(_) => Fault::User,
            Error::Query(QueryError::Sql(_)) => Fault::User,
            Error::Query(QueryError::Store(_)) => Fault::External,
            Error::Query(QueryError::Engine(_)) => Fault::Internal,
        }
    }

    /// 2 for the user's errors, 3 for storage, 70 (EX_SOFTWARE) for bugs.
    pub fn exit_code(&self) -> u8 {
        match self.fault() {
            Fault::User => 2,
            Fault::External => 3,
            Fault::Internal => 70,
        }
    }
}
