//! Any bytes as a request of the RPCs that take outside input (the first byte picks the
//! RPC, the rest is its protobuf message), called on the server's services in this process
//! with valid credentials: every call answers or refuses with a status that names the
//! problem; none panics or fails inside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vexil_fuzz::{authed, pb, refused_cleanly, served};
use vexil_proto::v1::admin_service_server::AdminService;
use vexil_proto::v1::evaluation_service_server::EvaluationService;
use vexil_proto::v1::event_service_server::EventService;

/// Fills an empty project or environment with the server's own, so that inputs reach past
/// the lookup.
fn place(project: &mut String, environment: Option<&mut String>) {
    if project.is_empty() {
        *project = "default".into();
    }
    if let Some(environment) = environment
        && environment.is_empty()
    {
        *environment = "production".into();
    }
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&rpc, bytes)) = data.split_first() else {
        return;
    };
    let s = served();
    let root = s.root_token.as_str();
    match rpc % 13 {
        0 => {
            let Some(mut m) = decode::<pb::CreateFlagRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, None);
            refused_cleanly(
                "CreateFlag",
                &s.runtime.block_on(s.admin.create_flag(authed(m, root))),
            );
        }
        1 => {
            let Some(mut m) = decode::<pb::UpdateFlagRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, None);
            refused_cleanly(
                "UpdateFlag",
                &s.runtime.block_on(s.admin.update_flag(authed(m, root))),
            );
        }
        2 => {
            let Some(mut m) = decode::<pb::UpdateFlagConfigurationRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, Some(&mut m.environment_key));
            let result = s
                .runtime
                .block_on(s.admin.update_flag_configuration(authed(m, root)));
            refused_cleanly("UpdateFlagConfiguration", &result);
        }
        3 => {
            let Some(mut m) = decode::<pb::ToggleFlagRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, Some(&mut m.environment_key));
            refused_cleanly(
                "ToggleFlag",
                &s.runtime.block_on(s.admin.toggle_flag(authed(m, root))),
            );
        }
        4 => {
            let Some(mut m) = decode::<pb::CreateSegmentRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, Some(&mut m.environment_key));
            refused_cleanly(
                "CreateSegment",
                &s.runtime.block_on(s.admin.create_segment(authed(m, root))),
            );
        }
        5 => {
            let Some(mut m) = decode::<pb::UpdateSegmentRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, Some(&mut m.environment_key));
            refused_cleanly(
                "UpdateSegment",
                &s.runtime.block_on(s.admin.update_segment(authed(m, root))),
            );
        }
        6 => {
            let Some(mut m) = decode::<pb::ImportEnvironmentRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, Some(&mut m.environment_key));
            let result = s
                .runtime
                .block_on(s.admin.import_environment(authed(m, root)));
            refused_cleanly("ImportEnvironment", &result);
        }
        7 => {
            let Some(mut m) = decode::<pb::CreateEnvironmentRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, None);
            let result = s
                .runtime
                .block_on(s.admin.create_environment(authed(m, root)));
            refused_cleanly("CreateEnvironment", &result);
        }
        8 => {
            let Some(mut m) = decode::<pb::UpdateEnvironmentRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, None);
            let result = s
                .runtime
                .block_on(s.admin.update_environment(authed(m, root)));
            refused_cleanly("UpdateEnvironment", &result);
        }
        9 => {
            let Some(mut m) = decode::<pb::EraseContextRequest>(bytes) else {
                return;
            };
            place(&mut m.project_key, None);
            refused_cleanly(
                "EraseContext",
                &s.runtime.block_on(s.admin.erase_context(authed(m, root))),
            );
        }
        10 => {
            let Some(m) = decode::<pb::PublishRequest>(bytes) else {
                return;
            };
            let result = s
                .runtime
                .block_on(s.events.publish(authed(m, &s.server_key)));
            refused_cleanly("Publish", &result);
        }
        11 => {
            let Some(m) = decode::<pb::EvaluateRequest>(bytes) else {
                return;
            };
            let result = s
                .runtime
                .block_on(s.evaluation.evaluate(authed(m, &s.server_key)));
            refused_cleanly("Evaluate", &result);
        }
        _ => {
            let Some(m) = decode::<pb::EvaluateAllRequest>(bytes) else {
                return;
            };
            let result = s
                .runtime
                .block_on(s.evaluation.evaluate_all(authed(m, &s.client_key)));
            refused_cleanly("EvaluateAll", &result);
        }
    }
});
