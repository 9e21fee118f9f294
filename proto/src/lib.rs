//! The Vexil gRPC contract, package `vexil.v1`, as generated Rust.
//!
//! Messages, clients (`*_client`) and servers (`*_server`) for `AdminService`,
//! `EvaluationService`, `SyncService`, `EventService` and `ExperimentService`. The `.proto`
//! files in this crate's `vexil/v1/` folder are the source of truth; they are compiled at build
//! time by the pure-Rust `protox` compiler, so no system `protoc` is needed.
//!
//! Well-known types (`google.protobuf.Value`, `Struct`, `Timestamp`) are those of
//! [`prost_types`], re-exported here. [`model`] converts between the messages and the
//! engine's flag model, for the server, the `vexil` command and the SDK core alike.

pub use prost_types;

pub mod model;

/// The package `vexil.v1`.
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("vexil.v1");
}

/// The encoded `FileDescriptorSet` of every `vexil.v1` file and its imports, for
/// `tonic-reflection` (`register_encoded_file_descriptor_set`).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vexil_descriptor.bin"));

/// Puts `credential` (an admin token or an SDK key) on `request` as its bearer credential,
/// the way every Vexil client authenticates. Fails, leaving the request without one, when the
/// credential holds characters a header cannot carry (none that the server issues does).
pub fn authorize<T>(
    request: &mut tonic::Request<T>,
    credential: &str,
) -> Result<(), tonic::metadata::errors::InvalidMetadataValue> {
    let value = format!("Bearer {credential}").parse()?;
    request.metadata_mut().insert("authorization", value);
    Ok(())
}

/// The canonical name of a gRPC status code (`OK`, `NOT_FOUND`, …), as the server's metrics
/// label it and the `vexil` command prints it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The name of an experiment alert kind (`guardrail_regressed`, …), as the server's metrics
/// and audit log label it and the `vexil` command prints it.
pub fn experiment_alert_kind_name(kind: i32) -> &'static str {
    use v1::ExperimentAlertKind as Kind;
    match Kind::try_from(kind) {
        Ok(Kind::SignificanceReached) => "significance_reached",
        Ok(Kind::GuardrailRegressed) => "guardrail_regressed",
        Ok(Kind::SampleRatioMismatch) => "sample_ratio_mismatch",
        Ok(Kind::Unspecified) | Err(_) => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_holds_every_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .filter(|f| f.package() == "vexil.v1")
            .flat_map(|f| f.service.iter().map(|s| s.name().to_owned()))
            .collect();
        for name in [
            "AdminService",
            "EvaluationService",
            "SyncService",
            "EventService",
            "ExperimentService",
        ] {
            assert!(services.iter().any(|s| s == name), "missing {name}");
        }
        assert!(
            set.file
                .iter()
                .any(|f| f.name() == "google/protobuf/struct.proto")
        );
    }

    /// Every message, field, oneof, enum, enum value, service and RPC of `vexil.v1` has a
    /// comment: the contract is documented where it is defined.
    #[test]
    fn every_element_is_documented() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let mut missing = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == "vexil.v1") {
            let info = file.source_code_info.as_ref().expect("source info is kept");
            let documented = |path: &[i32]| {
                info.location
                    .iter()
                    .any(|l| l.path == path && !l.leading_comments().trim().is_empty())
            };
            let mut check = |path: Vec<i32>, name: String| {
                if !documented(&path) {
                    missing.push(format!("{}: {name}", file.name()));
                }
            };
            for (m, message) in file.message_type.iter().enumerate() {
                let m = m as i32;
                check(vec![4, m], message.name().to_owned());
                for (f, field) in message.field.iter().enumerate() {
                    check(
                        vec![4, m, 2, f as i32],
                        format!("{}.{}", message.name(), field.name()),
                    );
                }
                for (o, oneof) in message.oneof_decl.iter().enumerate() {
                    if oneof.name().starts_with('_') {
                        continue; // synthetic oneof of a proto3 `optional` field
                    }
                    check(
                        vec![4, m, 8, o as i32],
                        format!("{}.{}", message.name(), oneof.name()),
                    );
                }
                assert!(message.nested_type.is_empty() && message.enum_type.is_empty());
            }
            for (e, enumeration) in file.enum_type.iter().enumerate() {
                let e = e as i32;
                check(vec![5, e], enumeration.name().to_owned());
                for (v, value) in enumeration.value.iter().enumerate() {
                    check(vec![5, e, 2, v as i32], value.name().to_owned());
                }
            }
            for (s, service) in file.service.iter().enumerate() {
                let s = s as i32;
                check(vec![6, s], service.name().to_owned());
                for (r, method) in service.method.iter().enumerate() {
                    check(
                        vec![6, s, 2, r as i32],
                        format!("{}.{}", service.name(), method.name()),
                    );
                }
            }
        }
        assert!(missing.is_empty(), "undocumented: {missing:#?}");
    }

    #[test]
    fn serve_oneof_round_trips() {
        use super::v1::{Serve, serve};
        let serve = Serve {
            kind: Some(serve::Kind::Variation(2)),
            experiment: None,
        };
        let bytes = serve.encode_to_vec();
        assert_eq!(Serve::decode(bytes.as_slice()).unwrap(), serve);
    }
}
