//! The one conversion from the storage's errors to gRPC statuses.

use tonic::Status;

use crate::storage::StorageError;

/// The gRPC status for a storage error. Database details stay in the server's log.
pub fn from_storage(err: StorageError) -> Status {
    match &err {
        StorageError::NotFound { .. } => Status::not_found(err.to_string()),
        StorageError::AlreadyExists { .. } => Status::already_exists(err.to_string()),
        StorageError::Conflict { .. } => Status::aborted(err.to_string()),
        StorageError::InvalidArgument(message) => Status::invalid_argument(message.clone()),
        StorageError::FailedPrecondition(message) => Status::failed_precondition(message.clone()),
        StorageError::Contention(_) => Status::unavailable(err.to_string()),
        StorageError::Corrupt(_)
        | StorageError::Migrate(_)
        | StorageError::Open(_)
        | StorageError::Database(_) => {
            tracing::error!(error = ?err, "storage failure");
            Status::internal("internal storage error")
        }
    }
}

impl From<StorageError> for Status {
    fn from(err: StorageError) -> Status {
        from_storage(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ResourceKind;
    use tonic::Code;

    #[test]
    fn conflicts_are_aborted_and_name_both_versions() {
        let status = from_storage(StorageError::Conflict {
            kind: ResourceKind::Flag,
            key: "checkout".into(),
            expected: 3,
            actual: 5,
        });
        assert_eq!(status.code(), Code::Aborted);
        assert!(status.message().contains('3') && status.message().contains('5'));
    }

    #[test]
    fn database_errors_do_not_leak() {
        let status = from_storage(StorageError::Database(sqlx::Error::Protocol(
            "SELECT secret FROM t".into(),
        )));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"));
    }
}
