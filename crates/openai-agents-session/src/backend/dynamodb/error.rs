//! The AWS SDK's errors as this library's [`ErrorKind`]s, and the classifications the retry
//! loops need (throttling, a failed condition, a cancelled transaction's reasons).

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use super::layout::Row;
use crate::error::{Error, ErrorKind, FailureCause, Operation};

pub(super) fn build_error(
    op: Operation,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::new(ErrorKind::Backend, op, "cannot build a DynamoDB request").with_source(e)
}

/// Maps an SDK error. A write whose answer was lost may have been applied: `OutcomeUnknown`.
pub(super) fn map_sdk<E, R>(op: Operation, table: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (kind, message) = match &err {
        SdkError::ConstructionFailure(_) => (ErrorKind::Config, "cannot build the DynamoDB request".to_owned()),
        SdkError::TimeoutError(_) if op.is_write() => (ErrorKind::OutcomeUnknown, "DynamoDB did not answer in time; the write may or may not have been applied".to_owned()),
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, "DynamoDB did not answer in time".to_owned()),
        SdkError::DispatchFailure(d) if d.is_timeout() && op.is_write() => (ErrorKind::OutcomeUnknown, "the request to DynamoDB timed out; the write may or may not have been applied".to_owned()),
        SdkError::DispatchFailure(d) if d.is_timeout() => (ErrorKind::Timeout, "the request to DynamoDB timed out".to_owned()),
        SdkError::DispatchFailure(_) => (ErrorKind::Connection, "cannot reach DynamoDB (check the endpoint and region)".to_owned()),
        SdkError::ResponseError(_) if op.is_write() => (ErrorKind::OutcomeUnknown, "the answer from DynamoDB was lost; the write may or may not have been applied".to_owned()),
        SdkError::ResponseError(_) => (ErrorKind::Connection, "the answer from DynamoDB was lost".to_owned()),
        SdkError::ServiceError(se) => match se.err().code() {
            Some("ResourceNotFoundException") => (
                ErrorKind::Config,
                format!("DynamoDB table {table:?} does not exist; create it with: agent-session init --url 'dynamodb://{table}?...'"),
            ),
            Some("ThrottlingException" | "ProvisionedThroughputExceededException" | "RequestLimitExceeded") => {
                (ErrorKind::Timeout, "DynamoDB kept throttling the request after retries".to_owned())
            }
            Some("UnrecognizedClientException" | "InvalidSignatureException" | "AccessDeniedException" | "MissingAuthenticationTokenException") => {
                (ErrorKind::Config, "DynamoDB refused the credentials".to_owned())
            }
            Some(code) => (ErrorKind::Backend, format!("DynamoDB answered {code}: {}", se.err().message().unwrap_or(""))),
            None => (ErrorKind::Backend, "DynamoDB failed".to_owned()),
        },
        _ => (ErrorKind::Backend, "DynamoDB failed".to_owned()),
    };
    let cause = match &err {
        SdkError::TimeoutError(_) => Some(FailureCause::Timeout),
        SdkError::DispatchFailure(d) if d.is_timeout() => Some(FailureCause::Timeout),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Some(FailureCause::Connection),
        _ => None,
    };
    let error = Error::new(kind, op, message).with_source(err);
    match cause {
        Some(cause) if kind == ErrorKind::OutcomeUnknown => error.with_cause(cause),
        _ => error,
    }
}

/// Why one action of a cancelled transaction failed: its code (`None` for actions that did
/// not fail, `ConditionalCheckFailed`, `TransactionConflict`...) and, for a failed condition of
/// an action that asked for it (`ReturnValuesOnConditionCheckFailure`), the item as stored.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reason {
    pub(super) code: String,
    pub(super) item: Option<Row>,
}

impl Reason {
    pub(super) fn failed_condition(&self) -> bool {
        self.code == "ConditionalCheckFailed"
    }
}

/// A cancelled transaction's reasons, one per action in order (`None` for other errors).
pub(super) fn cancellation_reasons<R>(
    err: &SdkError<TransactWriteItemsError, R>,
) -> Option<Vec<Reason>> {
    match err {
        SdkError::ServiceError(se) => match se.err() {
            TransactWriteItemsError::TransactionCanceledException(c) => Some(
                c.cancellation_reasons()
                    .iter()
                    .map(|r| Reason {
                        code: r.code().unwrap_or("None").to_owned(),
                        item: r.item().cloned(),
                    })
                    .collect(),
            ),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn is_throttling<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.as_service_error().and_then(|se| se.code()),
        Some(
            "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
        )
    )
}

pub(super) fn is_condition_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;

    fn service(code: &str) -> SdkError<GetItemError, ()> {
        let meta = ErrorMetadata::builder().code(code).message("why").build();
        SdkError::service_error(GetItemError::generic(meta), ())
    }

    fn boxed(text: &str) -> Box<dyn std::error::Error + Send + Sync> {
        text.into()
    }

    #[test]
    fn lost_answers_to_writes_are_outcome_unknown_with_their_cause() {
        let write = Operation::AddItems;
        let read = Operation::GetItems;
        let timeout = || SdkError::<GetItemError, ()>::timeout_error(boxed("slow"));
        let e = map_sdk(write, "t", timeout());
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown);
        assert_eq!(e.cause(), Some(FailureCause::Timeout));
        // A read is simply timed out (the kind implies its cause).
        let e = map_sdk(read, "t", timeout());
        assert_eq!(
            (e.kind(), e.cause()),
            (ErrorKind::Timeout, Some(FailureCause::Timeout))
        );
        assert_eq!(e.message(), "DynamoDB did not answer in time");

        let dispatch_timeout =
            || SdkError::<GetItemError, ()>::dispatch_failure(ConnectorError::timeout(boxed("t")));
        let e = map_sdk(write, "t", dispatch_timeout());
        assert_eq!(
            (e.kind(), e.cause()),
            (ErrorKind::OutcomeUnknown, Some(FailureCause::Timeout))
        );
        let e = map_sdk(read, "t", dispatch_timeout());
        assert_eq!(
            (e.kind(), e.cause()),
            (ErrorKind::Timeout, Some(FailureCause::Timeout))
        );

        // Not sent (no connection): not an unknown outcome.
        let refused =
            || SdkError::<GetItemError, ()>::dispatch_failure(ConnectorError::io(boxed("refused")));
        let e = map_sdk(write, "t", refused());
        assert_eq!(
            (e.kind(), e.cause()),
            (ErrorKind::Connection, Some(FailureCause::Connection))
        );
        assert_eq!(
            e.message(),
            "cannot reach DynamoDB (check the endpoint and region)"
        );

        let lost = || SdkError::<GetItemError, ()>::response_error(boxed("eof"), ());
        let e = map_sdk(write, "t", lost());
        assert_eq!(
            (e.kind(), e.cause()),
            (ErrorKind::OutcomeUnknown, Some(FailureCause::Connection))
        );
        let e = map_sdk(read, "t", lost());
        assert_eq!(
            (e.kind(), e.cause()),
            (ErrorKind::Connection, Some(FailureCause::Connection))
        );

        let e = map_sdk(
            write,
            "t",
            SdkError::<GetItemError, ()>::construction_failure(boxed("bad")),
        );
        assert_eq!((e.kind(), e.cause()), (ErrorKind::Config, None));
    }

    #[test]
    fn service_errors_are_named() {
        let op = Operation::GetItems;
        let e = map_sdk(op, "tbl", service("ResourceNotFoundException"));
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(
            e.message(),
            "DynamoDB table \"tbl\" does not exist; create it with: agent-session init --url 'dynamodb://tbl?...'"
        );
        let e = map_sdk(op, "t", service("ProvisionedThroughputExceededException"));
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = map_sdk(op, "t", service("AccessDeniedException"));
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.message(), "DynamoDB refused the credentials");
        let e = map_sdk(Operation::AddItems, "t", service("ValidationException"));
        assert_eq!((e.kind(), e.cause()), (ErrorKind::Backend, None));
        assert_eq!(e.message(), "DynamoDB answered ValidationException: why");
    }

    #[test]
    fn conditions_throttling_and_cancellations_are_recognised() {
        assert!(is_condition_failure(&service(
            "ConditionalCheckFailedException"
        )));
        assert!(!is_condition_failure(&service("ThrottlingException")));
        assert!(is_throttling(&service("ThrottlingException")));
        assert!(is_throttling(&service("RequestLimitExceeded")));
        assert!(!is_throttling(&service("ConditionalCheckFailedException")));

        let cancelled = TransactionCanceledException::builder()
            .cancellation_reasons(CancellationReason::builder().build())
            .cancellation_reasons(
                CancellationReason::builder()
                    .code("ConditionalCheckFailed")
                    .build(),
            )
            .build();
        let err = SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(cancelled),
            (),
        );
        let codes = |e: &SdkError<TransactWriteItemsError, ()>| {
            cancellation_reasons(e).map(|rs| rs.into_iter().map(|r| r.code).collect::<Vec<_>>())
        };
        assert_eq!(
            codes(&err),
            Some(vec!["None".to_owned(), "ConditionalCheckFailed".to_owned()])
        );
        let other = SdkError::<TransactWriteItemsError, ()>::timeout_error(boxed("slow"));
        assert_eq!(codes(&other), None);
        assert_eq!(cancellation_reasons(&other), None);
    }

    #[test]
    fn cancellation_reasons_carry_the_stored_item() {
        use aws_sdk_dynamodb::types::AttributeValue;
        let cancelled = TransactionCanceledException::builder()
            .cancellation_reasons(CancellationReason::builder().code("None").build())
            .cancellation_reasons(
                CancellationReason::builder()
                    .code("ConditionalCheckFailed")
                    .item("d", AttributeValue::N("1".into()))
                    .build(),
            )
            .cancellation_reasons(
                CancellationReason::builder()
                    .code("TransactionConflict")
                    .build(),
            )
            .build();
        let err = SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(cancelled),
            (),
        );
        let reasons = cancellation_reasons(&err).unwrap();
        assert_eq!(reasons.len(), 3);
        assert!(!reasons[0].failed_condition() && reasons[0].item.is_none());
        assert!(reasons[1].failed_condition());
        assert_eq!(
            reasons[1].item.as_ref().and_then(|i| i.get("d")),
            Some(&AttributeValue::N("1".into()))
        );
        assert_eq!(reasons[2].code, "TransactionConflict");
        assert!(!reasons[2].failed_condition());
    }
}
