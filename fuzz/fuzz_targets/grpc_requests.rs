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

/// The server's own project, for requests that name none, so that inputs reach past the
/// lookup.
const PROJECT: &str = "default";
/// The server's own environment, likewise.
const ENVIRONMENT: &str = "production";

fuzz_target!(|data: &[u8]| {
    let Some((&rpc, bytes)) = data.split_first() else {
        return;
    };
    let s = served();
    let root_token = s.root_token.as_str();
    let (server_key, client_key) = (s.server_key.as_str(), s.client_key.as_str());
    // Decodes the rest of the input as the request, fills the fields named after `;` that
    // are empty, calls the RPC with the credential and checks how it answered.
    macro_rules! call {
        ($request:ident, $service:ident.$method:ident, $secret:ident
            $(; $($field:ident = $value:expr),+)?) => {{
            let Ok(m) = pb::$request::decode(bytes) else {
                return;
            };
            $(let mut m = m;
            $(if m.$field.is_empty() {
                m.$field = $value.into();
            })+)?
            let result = s.runtime.block_on(s.$service.$method(authed(m, $secret)));
            refused_cleanly(stringify!($request).trim_end_matches("Request"), &result);
        }};
    }
    match rpc % 13 {
        0 => call!(CreateFlagRequest, admin.create_flag, root_token; project_key = PROJECT),
        1 => call!(UpdateFlagRequest, admin.update_flag, root_token; project_key = PROJECT),
        2 => call!(UpdateFlagConfigurationRequest, admin.update_flag_configuration, root_token;
            project_key = PROJECT, environment_key = ENVIRONMENT),
        3 => call!(ToggleFlagRequest, admin.toggle_flag, root_token;
            project_key = PROJECT, environment_key = ENVIRONMENT),
        4 => call!(CreateSegmentRequest, admin.create_segment, root_token;
            project_key = PROJECT, environment_key = ENVIRONMENT),
        5 => call!(UpdateSegmentRequest, admin.update_segment, root_token;
            project_key = PROJECT, environment_key = ENVIRONMENT),
        6 => call!(ImportEnvironmentRequest, admin.import_environment, root_token;
            project_key = PROJECT, environment_key = ENVIRONMENT),
        7 => call!(CreateEnvironmentRequest, admin.create_environment, root_token;
            project_key = PROJECT),
        8 => call!(UpdateEnvironmentRequest, admin.update_environment, root_token;
            project_key = PROJECT),
        9 => call!(EraseContextRequest, admin.erase_context, root_token; project_key = PROJECT),
        10 => call!(PublishRequest, events.publish, server_key),
        11 => call!(EvaluateRequest, evaluation.evaluate, server_key),
        _ => call!(EvaluateAllRequest, evaluation.evaluate_all, client_key),
    }
});
