//! ExperimentService end to end over loopback gRPC: metrics, the experiment lifecycle and
//! its audit trail, validation, roles, results on hand-computed data, multiple exposures,
//! flag usage and stale flags, an SDK-driven experiment whose known lift the results
//! recover, and guarded ramps, which the same comparison rolls back.

use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::event_service_client::EventServiceClient;
use vexil_proto::v1::experiment_service_client::ExperimentServiceClient;
use vexil_server::convert::{json_to_value, timestamp};

use vexil_testing::{
    ENV, PROJECT, StartsWith, TestServer, authed, expect_code, expect_error, halves, metric,
    results_request,
};

mod guarded_ramps;

struct Fixture {
    server: TestServer,
    token: String,
    admin: AdminServiceClient<Channel>,
    experiments: ExperimentServiceClient<Channel>,
    events: EventServiceClient<Channel>,
}

impl Fixture {
    async fn new(server: TestServer) -> Fixture {
        let channel = server.channel().await;
        Fixture {
            token: server.root_token(),
            admin: AdminServiceClient::new(channel.clone()),
            experiments: ExperimentServiceClient::new(channel.clone()),
            events: EventServiceClient::new(channel),
            server,
        }
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        authed(message, &self.token)
    }

    async fn create_flag(&mut self, key: &str, rules: Vec<pb::Rule>) -> pb::FlagConfiguration {
        let request = self.req(pb::CreateFlagRequest {
            project_key: PROJECT.into(),
            key: key.into(),
            kind: pb::FlagKind::Bool as i32,
            variations: vec![json_to_value(&json!(false)), json_to_value(&json!(true))],
            off_variation: Some(0),
            fallthrough: Some(fixed(0)),
            ..Default::default()
        });
        self.admin.create_flag(request).await.unwrap();
        let config = self.config(key).await;
        let request = self.req(pb::UpdateFlagConfigurationRequest {
            project_key: PROJECT.into(),
            environment_key: ENV.into(),
            key: key.into(),
            expected_version: config.version,
            configuration: Some(pb::FlagConfiguration {
                on: true,
                rules,
                ..config
            }),
        });
        self.admin
            .update_flag_configuration(request)
            .await
            .unwrap()
            .into_inner()
    }

    async fn config(&mut self, key: &str) -> pb::FlagConfiguration {
        let request = self.req(pb::GetFlagRequest {
            project_key: PROJECT.into(),
            key: key.into(),
            environment_keys: vec![ENV.into()],
        });
        let flag = self.admin.get_flag(request).await.unwrap().into_inner();
        flag.configurations
            .into_iter()
            .find(|c| c.environment_key == ENV)
            .expect("configuration in the environment")
    }

    async fn create_metric(&mut self, key: &str, event: &str, kind: pb::MetricKind) -> pb::Metric {
        self.try_create_metric(metric(key, event, kind))
            .await
            .unwrap()
    }

    async fn try_create_metric(&mut self, metric: pb::Metric) -> Result<pb::Metric, tonic::Status> {
        let request = self.req(pb::CreateMetricRequest {
            metric: Some(metric),
        });
        self.experiments
            .create_metric(request)
            .await
            .map(|r| r.into_inner())
    }

    async fn create_experiment(
        &mut self,
        x: pb::Experiment,
    ) -> Result<pb::Experiment, tonic::Status> {
        let request = self.req(pb::CreateExperimentRequest {
            experiment: Some(x),
        });
        self.experiments
            .create_experiment(request)
            .await
            .map(|r| r.into_inner())
    }

    async fn start(&mut self, key: &str, version: i64) -> Result<pb::Experiment, tonic::Status> {
        let request = self.req(pb::StartExperimentRequest {
            project_key: PROJECT.into(),
            environment_key: ENV.into(),
            key: key.into(),
            expected_version: version,
        });
        self.experiments
            .start_experiment(request)
            .await
            .map(|r| r.into_inner())
    }

    async fn results(&mut self, key: &str, until: Option<i64>) -> pb::ExperimentResults {
        let request = self.req(results_request(key, until));
        self.experiments
            .get_experiment_results(request)
            .await
            .unwrap()
            .into_inner()
    }

    async fn get_experiment(&mut self, key: &str) -> pb::Experiment {
        let request = self.req(pb::GetExperimentRequest {
            project_key: PROJECT.into(),
            environment_key: ENV.into(),
            key: key.into(),
        });
        self.experiments
            .get_experiment(request)
            .await
            .unwrap()
            .into_inner()
    }

    async fn publish(&mut self, batch: pb::PublishRequest) {
        let key = self.server.sdk_key(ENV, "server");
        self.events.publish(authed(batch, &key)).await.unwrap();
    }

    async fn audit_actions(&mut self, kind: &str, key: &str) -> Vec<String> {
        let request = self.req(pb::ListAuditEntriesRequest {
            project_key: PROJECT.into(),
            resource_kind: kind.into(),
            resource_key: key.into(),
            ..Default::default()
        });
        let entries = self
            .admin
            .list_audit_entries(request)
            .await
            .unwrap()
            .into_inner()
            .entries;
        entries.into_iter().rev().map(|e| e.action).collect()
    }
}

fn fixed(variation: u32) -> pb::Serve {
    pb::Serve {
        kind: Some(pb::serve::Kind::Variation(variation)),
        experiment: None,
    }
}

fn user(key: &str) -> Option<pb::Context> {
    Some(pb::Context {
        kind: "user".into(),
        key: key.into(),
        ..Default::default()
    })
}

fn goal(metric: &str) -> Option<pb::ExperimentMetric> {
    Some(pb::ExperimentMetric {
        metric_key: metric.into(),
        direction: pb::MetricDirection::Increase as i32,
    })
}

/// A valid conversion experiment on `flag`'s fallthrough.
fn design(key: &str, flag: &str) -> pb::Experiment {
    pb::Experiment {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        key: key.into(),
        hypothesis: "A green button sells more".into(),
        flag_key: flag.into(),
        variations: halves(),
        primary_metric: goal("purchase-rate"),
        minimum_detectable_effect: 0.1,
        baseline_mean: 0.2,
        ..Default::default()
    }
}

fn exposure(key: &str, variation: u32, ms: i64, experiment: &str) -> pb::ExposureEvent {
    pb::ExposureEvent {
        time: Some(timestamp(ms)),
        flag_key: "button".into(),
        flag_version: 1,
        experiment_key: experiment.into(),
        variation,
        context: user(key),
        in_experiment: true,
    }
}

fn track(key: &str, name: &str, ms: i64, value: Option<f64>) -> pb::TrackEvent {
    pb::TrackEvent {
        time: Some(timestamp(ms)),
        name: name.into(),
        context: user(key),
        value,
        data: None,
    }
}

fn batch(id: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        batch_id: id.into(),
        sdk_name: "vexil-test".into(),
        sdk_version: "0".into(),
        ..Default::default()
    }
}

// ----- lifecycle ---------------------------------------------------------------------------------

async fn lifecycle(server: TestServer) {
    let mut f = Fixture::new(server).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_metric("revenue", "purchase", pb::MetricKind::Sum)
        .await;
    f.create_flag("button", vec![]).await;

    let mut x = design("green-button", "button");
    x.guardrail_metrics = vec![pb::ExperimentMetric {
        metric_key: "revenue".into(),
        direction: pb::MetricDirection::Increase as i32,
    }];
    x.layer = "checkout".into();
    x.traffic_allocation = 50_000;
    let created = f.create_experiment(x).await.unwrap();
    assert_eq!(created.status, pb::ExperimentStatus::Draft as i32);
    assert_eq!(created.version, 1);
    assert_eq!(created.alpha, 0.05);
    assert_eq!(created.power, 0.8);
    let planned =
        vexil_stats::required_sample_size(&vexil_stats::Design::conversion(0.2, 0.1)).unwrap();
    assert_eq!(created.required_sample_size, planned);
    assert!(planned > 1000, "a 10% relative lift on 20% needs thousands");

    // Same key again.
    let again = f.create_experiment(design("green-button", "button")).await;
    expect_code(again, Code::AlreadyExists);

    // A stale version changes nothing.
    expect_code(f.start("green-button", 7).await, Code::Aborted);
    let running = f.start("green-button", 1).await.unwrap();
    assert_eq!(running.status, pb::ExperimentStatus::Running as i32);
    assert!(running.started_at.is_some());
    let config = f.config("button").await;
    let serve = config.fallthrough.unwrap();
    let Some(pb::serve::Kind::Rollout(rollout)) = serve.kind else {
        panic!("the fallthrough is a rollout while the experiment runs");
    };
    assert_eq!(rollout.variations, halves());
    let allocation = serve.experiment.expect("the serve carries the experiment");
    assert_eq!(allocation.key, "green-button");
    assert_eq!(allocation.traffic_allocation, Some(50_000));
    assert_eq!(allocation.layer, "checkout");
    expect_code(
        f.start("green-button", running.version).await,
        Code::FailedPrecondition,
    );

    // The list filters by status and flag.
    let request = f.req(pb::ListExperimentsRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        status: pb::ExperimentStatus::Running as i32,
        ..Default::default()
    });
    let listed = f
        .experiments
        .list_experiments(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.experiments.len(), 1);
    let request = f.req(pb::ListExperimentsRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        status: pb::ExperimentStatus::Draft as i32,
        ..Default::default()
    });
    let listed = f
        .experiments
        .list_experiments(request)
        .await
        .unwrap()
        .into_inner();
    assert!(listed.experiments.is_empty());

    // Stop: the serve becomes the control.
    let request = f.req(pb::StopExperimentRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        key: "green-button".into(),
        expected_version: running.version,
    });
    let stopped = f
        .experiments
        .stop_experiment(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.status, pb::ExperimentStatus::Stopped as i32);
    assert!(stopped.stopped_at.is_some());
    assert_eq!(f.config("button").await.fallthrough, Some(fixed(0)));

    // Decide: an unknown variation is refused, naming the field; then ship variation 1.
    let decide = |variation, version| pb::DecideExperimentRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        key: "green-button".into(),
        expected_version: version,
        variation,
        rationale: "green wins".into(),
        roll_back: false,
        apply: true,
    };
    let refused = f
        .experiments
        .decide_experiment(f.req(decide(5, stopped.version)))
        .await;
    expect_error(refused, Code::InvalidArgument, StartsWith("variation:"));
    let decided = f
        .experiments
        .decide_experiment(f.req(decide(1, stopped.version)))
        .await
        .unwrap()
        .into_inner();
    let decision = decided.decision.expect("decision recorded");
    assert_eq!(decision.variation, 1);
    assert!(decision.applied && !decision.rolled_back);
    assert_eq!(decision.rationale, "green wins");
    assert_eq!(f.config("button").await.fallthrough, Some(fixed(1)));
    let twice = f
        .experiments
        .decide_experiment(f.req(decide(1, decided.version)))
        .await;
    expect_code(twice, Code::FailedPrecondition);

    // Every step is in the audit log, the flag's changes too.
    assert_eq!(
        f.audit_actions("experiment", "green-button").await,
        [
            "experiment.create",
            "experiment.start",
            "experiment.stop",
            "experiment.decide"
        ]
    );
    let flag_actions = f.audit_actions("flag_config", "button").await;
    assert!(flag_actions.ends_with(&[
        "experiment.start".to_owned(),
        "experiment.stop".to_owned(),
        "experiment.decide".to_owned()
    ]));
    assert_eq!(
        f.audit_actions("metric", "revenue").await,
        ["metric.create"]
    );

    // A rule's experiment, rolled back to the rule's serve before the start.
    f.create_flag(
        "banner",
        vec![pb::Rule {
            id: "beta".into(),
            clauses: vec![],
            serve: Some(fixed(1)),
            description: String::new(),
        }],
    )
    .await;
    let mut x = design("banner-test", "banner");
    x.rule_id = "beta".into();
    let created = f.create_experiment(x).await.unwrap();
    let running = f.start("banner-test", created.version).await.unwrap();
    let rule_serve = f.config("banner").await.rules[0].serve.clone().unwrap();
    assert_eq!(rule_serve.experiment.unwrap().key, "banner-test");
    let mut roll_back = decide(0, running.version);
    roll_back.key = "banner-test".into();
    roll_back.roll_back = true;
    let decided = f
        .experiments
        .decide_experiment(f.req(roll_back))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.status, pb::ExperimentStatus::Stopped as i32);
    assert!(decided.decision.unwrap().rolled_back);
    assert_eq!(f.config("banner").await.rules[0].serve, Some(fixed(1)));

    f.server.stop().await;
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    lifecycle(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    if let Some(server) = TestServer::postgres().await {
        lifecycle(server).await;
    }
}

/// Starting an experiment whose range overlaps a running one of its layer is refused by the
/// engine's validation, and nothing changes.
#[tokio::test]
async fn overlapping_layer_ranges_are_refused_by_validation() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_flag("button", vec![]).await;
    f.create_flag("banner", vec![]).await;
    for (key, flag) in [("first", "button"), ("second", "banner")] {
        let mut x = design(key, flag);
        x.layer = "shared".into();
        x.traffic_allocation = 60_000;
        f.create_experiment(x).await.unwrap();
    }
    f.start("first", 1).await.unwrap();
    let before = f.config("banner").await;
    expect_error(f.start("second", 1).await, Code::InvalidArgument, "layer");
    assert_eq!(f.config("banner").await, before);
    let request = f.req(pb::GetExperimentRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        key: "second".into(),
    });
    let second = f
        .experiments
        .get_experiment(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.status, pb::ExperimentStatus::Draft as i32);
    assert_eq!(second.version, 1);
    f.server.stop().await;
}

// ----- validation and roles ----------------------------------------------------------------------

/// A change that makes a valid design invalid.
type Mutation = Box<dyn Fn(&mut pb::Experiment)>;

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_metric("basket", "purchase", pb::MetricKind::Mean)
        .await;
    f.create_flag("button", vec![]).await;

    let cases: Vec<(&str, Mutation)> = vec![
        ("experiment.key:", Box::new(|x| x.key = String::new())),
        (
            "experiment.flag_key:",
            Box::new(|x| x.flag_key = "nope".into()),
        ),
        (
            "experiment.rule_id:",
            Box::new(|x| x.rule_id = "nope".into()),
        ),
        (
            "experiment.variations:",
            Box::new(|x| x.variations[1].weight = 40_000),
        ),
        (
            "experiment.variations[1].variation:",
            Box::new(|x| x.variations[1].variation = 9),
        ),
        (
            "experiment.variations[1].variation:",
            Box::new(|x| x.variations[1].variation = 0),
        ),
        (
            "experiment.variations:",
            Box::new(|x| x.variations.truncate(1)),
        ),
        (
            "experiment.traffic_allocation:",
            Box::new(|x| x.traffic_allocation = 100_001),
        ),
        (
            "experiment.layer_offset:",
            Box::new(|x| {
                x.traffic_allocation = 60_000;
                x.layer_offset = 50_000;
            }),
        ),
        (
            "experiment.primary_metric:",
            Box::new(|x| x.primary_metric = None),
        ),
        (
            "experiment.primary_metric.metric_key:",
            Box::new(|x| x.primary_metric = goal("unknown")),
        ),
        (
            "experiment.guardrail_metrics[0].metric_key:",
            Box::new(|x| x.guardrail_metrics = vec![goal("ghost").unwrap()]),
        ),
        (
            "experiment.guardrail_metrics[0].metric_key:",
            Box::new(|x| x.guardrail_metrics = vec![goal("purchase-rate").unwrap()]),
        ),
        ("experiment.alpha:", Box::new(|x| x.alpha = 0.7)),
        ("experiment.alpha:", Box::new(|x| x.alpha = f64::NAN)),
        ("experiment.power:", Box::new(|x| x.power = 1.0)),
        (
            "experiment.minimum_detectable_effect:",
            Box::new(|x| x.minimum_detectable_effect = 0.0),
        ),
        (
            "experiment.baseline_mean:",
            Box::new(|x| x.baseline_mean = -1.0),
        ),
        (
            "experiment.baseline_mean:",
            Box::new(|x| x.baseline_mean = 1.5),
        ),
        (
            "experiment.baseline_std_dev:",
            Box::new(|x| {
                x.primary_metric = goal("basket");
                x.baseline_mean = 30.0;
            }),
        ),
    ];
    for (field, change) in cases {
        let mut x = design("bad", "button");
        change(&mut x);
        let status = expect_code(f.create_experiment(x).await, Code::InvalidArgument);
        assert!(
            status.message().starts_with(field),
            "expected an error about {field}, got: {}",
            status.message()
        );
    }
    let missing = f
        .experiments
        .create_experiment(f.req(pb::CreateExperimentRequest { experiment: None }))
        .await;
    assert!(
        expect_code(missing, Code::InvalidArgument)
            .message()
            .starts_with("experiment:")
    );
    // Nothing was half-written.
    let request = f.req(pb::ListExperimentsRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        ..Default::default()
    });
    let listed = f
        .experiments
        .list_experiments(request)
        .await
        .unwrap()
        .into_inner();
    assert!(listed.experiments.is_empty());

    // Metrics.
    let bad_metrics = [
        (
            "metric.kind:",
            metric("m", "e", pb::MetricKind::Unspecified),
        ),
        ("metric.event_name:", metric("m", "", pb::MetricKind::Count)),
        (
            "metric.key:",
            metric("has space", "e", pb::MetricKind::Count),
        ),
    ];
    for (field, metric) in bad_metrics {
        expect_error(
            f.try_create_metric(metric).await,
            Code::InvalidArgument,
            StartsWith(field),
        );
    }
    let duplicate = f
        .try_create_metric(metric("basket", "x", pb::MetricKind::Count))
        .await;
    expect_code(duplicate, Code::AlreadyExists);
    f.server.stop().await;
}

#[tokio::test]
async fn viewers_read_and_editors_write() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_flag("button", vec![]).await;
    f.create_experiment(design("green-button", "button"))
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for role in [pb::Role::Viewer, pb::Role::Editor] {
        let request = f.req(pb::CreateAdminTokenRequest {
            principal: format!("{role:?}"),
            roles: vec![pb::RoleBinding {
                project_key: PROJECT.into(),
                role: role as i32,
            }],
            ..Default::default()
        });
        tokens.push(
            f.admin
                .create_admin_token(request)
                .await
                .unwrap()
                .into_inner()
                .secret,
        );
    }
    let (viewer, editor) = (&tokens[0], &tokens[1]);
    let get = || pb::GetExperimentRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        key: "green-button".into(),
    };
    f.experiments
        .get_experiment(authed(get(), viewer))
        .await
        .unwrap();
    f.experiments
        .list_metrics(authed(
            pb::ListMetricsRequest {
                project_key: PROJECT.into(),
                page: None,
            },
            viewer,
        ))
        .await
        .unwrap();
    f.experiments
        .get_experiment_results(authed(results_request("green-button", None), viewer))
        .await
        .unwrap();
    let start = || pb::StartExperimentRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        key: "green-button".into(),
        expected_version: 1,
    };
    expect_code(
        f.experiments
            .start_experiment(authed(start(), viewer))
            .await,
        Code::PermissionDenied,
    );
    let create = pb::CreateExperimentRequest {
        experiment: Some(design("other", "button")),
    };
    expect_code(
        f.experiments
            .create_experiment(authed(create.clone(), viewer))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        f.experiments
            .create_experiment(authed(create.clone(), "not-a-token"))
            .await,
        Code::Unauthenticated,
    );
    f.experiments
        .create_experiment(authed(create, editor))
        .await
        .unwrap();
    let started = f
        .experiments
        .start_experiment(authed(start(), editor))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.status, pb::ExperimentStatus::Running as i32);
    f.server.stop().await;
}

/// Many experiments of one environment page through the list, each exactly once.
#[tokio::test]
async fn experiment_lists_page_by_key() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_flag("button", vec![]).await;
    for i in 0..25 {
        f.create_experiment(design(&format!("x-{i:03}"), "button"))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let request = f.req(pb::ListExperimentsRequest {
            project_key: PROJECT.into(),
            environment_key: ENV.into(),
            flag_key: "button".into(),
            page: Some(pb::PageRequest {
                page_size: 10,
                page_token: token.clone(),
            }),
            ..Default::default()
        });
        let page = f
            .experiments
            .list_experiments(request)
            .await
            .unwrap()
            .into_inner();
        assert!(page.experiments.len() <= 10);
        seen.extend(page.experiments.into_iter().map(|x| x.key));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("x-{i:03}")).collect();
    assert_eq!(seen, expected);
    f.server.stop().await;
}

// ----- results ----------------------------------------------------------------------------------

/// Exposures and events of a small experiment whose statistics are computed by hand:
///
/// * control (0): a (buys 10 then 5), b (nothing), c (buys 20; an earlier purchase before its
///   exposure does not count), d (nothing)
/// * treatment (1): e (buys 30), f (buys 10 and 10), g (nothing), h (buys 40)
/// * z is exposed to both variations and excluded.
async fn results_on_hand_computed_data(server: TestServer) {
    let mut f = Fixture::new(server).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_metric("revenue", "purchase", pb::MetricKind::Sum)
        .await;
    f.create_metric("purchases", "purchase", pb::MetricKind::Count)
        .await;
    f.create_metric("basket", "purchase", pb::MetricKind::Mean)
        .await;
    f.create_flag("button", vec![]).await;
    let mut x = design("hand", "button");
    x.guardrail_metrics = ["revenue", "purchases", "basket"]
        .iter()
        .map(|k| goal(k).unwrap())
        .collect();
    f.create_experiment(x).await.unwrap();

    let t0 = 1_700_000_000_000_i64;
    let mut first = batch("hand-1");
    for (i, (key, variation)) in [
        ("a", 0),
        ("b", 0),
        ("c", 0),
        ("d", 0),
        ("e", 1),
        ("f", 1),
        ("g", 1),
        ("h", 1),
        ("z", 0),
    ]
    .iter()
    .enumerate()
    {
        first
            .exposures
            .push(exposure(key, *variation, t0 + i as i64, "hand"));
    }
    // An exposure of another experiment does not count here.
    first.exposures.push(exposure("q", 0, t0, "elsewhere"));
    // Events: c's first purchase is before its exposure.
    first.track_events = vec![
        track("c", "purchase", t0 - 1000, Some(99.0)),
        track("a", "purchase", t0 + 100, Some(10.0)),
        track("a", "purchase", t0 + 200, Some(5.0)),
        track("c", "purchase", t0 + 300, Some(20.0)),
        track("e", "purchase", t0 + 400, Some(30.0)),
        track("f", "purchase", t0 + 500, Some(10.0)),
        track("z", "purchase", t0 + 500, Some(1000.0)),
        track("a", "other-event", t0 + 500, Some(7.0)),
    ];
    f.publish(first).await;
    // A second batch, later: f buys again, h buys, z is seen with the treatment.
    let mut second = batch("hand-2");
    second.exposures.push(exposure("z", 1, t0 + 5000, "hand"));
    second.exposures.push(exposure("a", 0, t0 + 5000, "hand"));
    second.track_events = vec![
        track("f", "purchase", t0 + 6000, Some(10.0)),
        track("h", "purchase", t0 + 7000, Some(40.0)),
    ];
    f.publish(second.clone()).await;
    // A retried batch is not counted twice.
    f.publish(second).await;

    let results = f.results("hand", None).await;
    assert_eq!(results.multiple_exposure_contexts, 1);
    let units: Vec<(u32, u64)> = results
        .exposures
        .iter()
        .map(|e| (e.variation, e.units))
        .collect();
    assert_eq!(units, [(0, 4), (1, 4)]);
    assert!(!results.srm_detected);
    assert!(
        (results.srm_p_value - 1.0).abs() < 1e-12,
        "4 vs 4 is a perfect split"
    );
    assert_eq!(results.metrics.len(), 4);
    assert!(results.metrics[0].primary);

    // Per-context values by hand, control then treatment.
    let expected: [(&str, [f64; 4], [f64; 4]); 3] = [
        ("purchase-rate", [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0]),
        ("revenue", [15.0, 0.0, 20.0, 0.0], [30.0, 20.0, 0.0, 40.0]),
        ("purchases", [2.0, 0.0, 1.0, 0.0], [1.0, 2.0, 0.0, 1.0]),
    ];
    for (m, (key, control, treatment)) in expected.iter().enumerate() {
        let metric = &results.metrics[m];
        assert_eq!(metric.metric.as_ref().unwrap().metric_key, *key);
        let c = vexil_stats::Summary::from_values(control);
        let t = vexil_stats::Summary::from_values(treatment);
        check_variation(&metric.variations[0], &c);
        check_variation(&metric.variations[1], &t);
        let kind = if m == 0 {
            vexil_stats::MetricKind::Conversion
        } else if *key == "purchases" {
            vexil_stats::MetricKind::Count
        } else {
            vexil_stats::MetricKind::Mean
        };
        let settings =
            vexil_stats::Settings::tuned_for(0.05, results.required_sample_size).unwrap();
        let comparison = vexil_stats::compare(kind, &c, &t, &settings).unwrap();
        let lift = metric.variations[1].absolute_lift.as_ref().unwrap();
        assert_close(lift.estimate, comparison.absolute_lift);
        assert_close(lift.lower, comparison.absolute_interval.lower);
        assert_close(lift.upper, comparison.absolute_interval.upper);
        assert_close(metric.variations[1].p_value.unwrap(), comparison.p_value);
        assert_close(
            metric.variations[1].sequential_p_value.unwrap(),
            comparison.sequential_p_value,
        );
        match (
            metric.variations[1].relative_lift.as_ref(),
            comparison.relative_interval,
        ) {
            (Some(relative), Some(interval)) => {
                assert_close(relative.estimate, comparison.relative_lift.unwrap());
                assert_close(relative.lower, interval.lower);
                assert_close(relative.upper, interval.upper);
            }
            (None, None) => assert_eq!(
                metric.variations[1].relative_lift_note,
                comparison.relative_undefined.unwrap().to_string()
            ),
            (got, want) => panic!("relative lift {got:?}, expected {want:?}"),
        }
        // Bayesian: every metric here is "higher is better".
        let b = vexil_stats::bayesian(kind, &c, &t, 0.05).unwrap();
        let got = &metric.variations[1];
        assert_close(got.chance_to_beat_control.unwrap(), b.chance_above);
        assert_close(got.expected_loss.unwrap(), b.expected_loss_above);
        assert_close(got.expected_loss_of_control.unwrap(), b.expected_loss_below);
        let credible = got.credible_interval.as_ref().unwrap();
        assert_close(credible.lower, b.credible_interval.lower);
        assert_close(credible.upper, b.credible_interval.upper);
        assert!(metric.variations[0].chance_to_beat_control.is_none());
        assert!(metric.variations[0].absolute_lift.is_none());
    }
    // Mean of values over the contexts that bought: control a 7.5, c 20; treatment e 30,
    // f 10, h 40.
    let basket = &results.metrics[3];
    check_variation(
        &basket.variations[0],
        &vexil_stats::Summary::from_values(&[7.5, 20.0]),
    );
    check_variation(
        &basket.variations[1],
        &vexil_stats::Summary::from_values(&[30.0, 10.0, 40.0]),
    );
    // Holm across the four comparisons.
    let raw: Vec<f64> = results
        .metrics
        .iter()
        .filter_map(|m| m.variations[1].p_value)
        .collect();
    assert_eq!(raw.len(), 4);
    let adjusted: Vec<f64> = results
        .metrics
        .iter()
        .filter_map(|m| m.variations[1].adjusted_p_value)
        .collect();
    assert_eq!(adjusted, vexil_stats::holm(&raw));
    assert!(results.metrics[0].variations[1].power.is_some());
    assert_close(
        results.sample_collected,
        4.0 / results.required_sample_size as f64,
    );

    // As of a time before the second batch: z is not yet multiple, f bought once, h never.
    let earlier = f.results("hand", Some(t0 + 4000)).await;
    assert_eq!(earlier.multiple_exposure_contexts, 0);
    let units: Vec<u64> = earlier.exposures.iter().map(|e| e.units).collect();
    assert_eq!(units, [5, 4]);
    check_variation(
        &earlier.metrics[1].variations[1],
        &vexil_stats::Summary::from_values(&[30.0, 10.0, 0.0, 0.0]),
    );
    check_variation(
        &earlier.metrics[1].variations[0],
        &vexil_stats::Summary::from_values(&[15.0, 0.0, 20.0, 0.0, 1000.0]),
    );
    f.server.stop().await;
}

fn check_variation(result: &pb::VariationMetricResult, expected: &vexil_stats::Summary) {
    assert_eq!(result.units, expected.n);
    assert_close(result.sum, expected.sum());
    assert_close(result.mean, expected.mean());
    assert_close(result.variance, expected.variance());
}

#[track_caller]
fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

/// A one-sided experiment: the primary metric is tested for an improvement, the guardrail for
/// a regression; p-values, bounds and the sample size follow.
#[tokio::test]
async fn one_sided_results_test_each_metric_one_way() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_metric("revenue", "purchase", pb::MetricKind::Sum)
        .await;
    f.create_flag("button", vec![]).await;
    let mut x = design("sided", "button");
    x.guardrail_metrics = vec![goal("revenue").unwrap()];
    x.one_sided = true;
    let created = f.create_experiment(x.clone()).await.unwrap();
    assert!(created.one_sided);
    x.key = "two-sided".into();
    x.one_sided = false;
    let two_sided = f.create_experiment(x).await.unwrap();
    assert!(
        created.required_sample_size < two_sided.required_sample_size,
        "one-sided {} against two-sided {}",
        created.required_sample_size,
        two_sided.required_sample_size
    );

    let t0 = 1_700_000_000_000_i64;
    let mut events = batch("sided-1");
    // Control: 1 of 5 buys (10); treatment: 4 of 5 buy (5, 6, 7, 8).
    let spend = [[10.0, 0.0, 0.0, 0.0, 0.0], [5.0, 6.0, 7.0, 8.0, 0.0]];
    for (variation, amounts) in spend.iter().enumerate() {
        for (i, amount) in amounts.iter().enumerate() {
            let key = format!("u{variation}-{i}");
            events
                .exposures
                .push(exposure(&key, variation as u32, t0, "sided"));
            if *amount > 0.0 {
                events
                    .track_events
                    .push(track(&key, "purchase", t0 + 10, Some(*amount)));
            }
        }
    }
    f.publish(events).await;
    let results = f.results("sided", None).await;
    assert!(results.one_sided);
    let settings = vexil_stats::Settings::tuned_for(0.05, created.required_sample_size).unwrap();
    let checks = [
        (
            vexil_stats::MetricKind::Conversion,
            vexil_stats::Alternative::Greater,
            [[1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0]],
        ),
        (
            vexil_stats::MetricKind::Mean,
            vexil_stats::Alternative::Less,
            spend,
        ),
    ];
    for (m, (kind, alternative, values)) in checks.iter().enumerate() {
        let c = vexil_stats::Summary::from_values(&values[0]);
        let t = vexil_stats::Summary::from_values(&values[1]);
        let settings = vexil_stats::Settings {
            alternative: *alternative,
            ..settings
        };
        let expected = vexil_stats::compare(*kind, &c, &t, &settings).unwrap();
        let got = &results.metrics[m].variations[1];
        assert_close(got.p_value.unwrap(), expected.p_value);
        assert_close(got.sequential_p_value.unwrap(), expected.sequential_p_value);
        let lift = got.absolute_lift.as_ref().unwrap();
        match alternative {
            // The primary metric's improvement: a lower bound.
            vexil_stats::Alternative::Greater => {
                assert_close(lift.lower, expected.absolute_interval.lower);
                assert_eq!(lift.upper, 1.0, "a rate difference is at most 1");
                let sequence = got.sequential_absolute_lift.as_ref().unwrap();
                assert_eq!(sequence.upper, f64::INFINITY);
            }
            // The guardrail's regression: an upper bound.
            _ => {
                assert_eq!(lift.lower, f64::NEG_INFINITY);
                assert_close(lift.upper, expected.absolute_interval.upper);
            }
        }
    }
    // The treatment raised both: the primary improves; the guardrail did not regress.
    assert!(results.metrics[0].variations[1].p_value.unwrap() < 0.05);
    assert!(results.metrics[1].variations[1].p_value.unwrap() > 0.5);
    assert!(!results.metrics[1].variations[1].significant);
    f.server.stop().await;
}

/// Publishes `n` exposed contexts per arm of experiment `key`, of which the given shares
/// convert (event `purchase`).
async fn publish_conversions(f: &mut Fixture, key: &str, n: usize, rates: [f64; 2]) {
    let t0 = 1_700_000_000_000_i64;
    let mut events = batch(&format!("{key}-conversions"));
    for (variation, rate) in rates.iter().enumerate() {
        let converting = (n as f64 * rate).round() as usize;
        for i in 0..n {
            let context = format!("{key}-{variation}-{i}");
            events
                .exposures
                .push(exposure(&context, variation as u32, t0, key));
            if i < converting {
                events
                    .track_events
                    .push(track(&context, "purchase", t0 + 10, None));
            }
        }
    }
    f.publish(events).await;
}

/// The watch of running experiments: a guardrail that regresses is reported in the results,
/// raised once (audit log, counter) however many rounds see it, exported as a gauge while it
/// lasts, and stops the experiment when its design asks for it; the primary metric's
/// significance is raised too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_raises_alerts_once_and_stops_on_a_guardrail_regression() {
    let options = vexil_testing::ServerOptions {
        http: true,
        experiment_watch_interval: Some(std::time::Duration::from_millis(200)),
        ..Default::default()
    };
    let server = TestServer::start(vexil_testing::TestDatabase::sqlite(), options).await;
    let mut f = Fixture::new(server).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_metric("retention", "return", pb::MetricKind::Conversion)
        .await;
    f.create_flag("button", vec![]).await;
    // Two experiments on their own flags: one stops on a regression, one only reports it.
    for (key, flag, stop) in [("guarded", "button", true), ("reported", "other", false)] {
        if flag != "button" {
            f.create_flag(flag, vec![]).await;
        }
        let mut x = design(key, flag);
        x.guardrail_metrics = vec![goal("retention").unwrap()];
        x.stop_on_guardrail_regression = stop;
        let created = f.create_experiment(x).await.unwrap();
        f.start(key, created.version).await.unwrap();
        // The primary metric clearly improves; the guardrail `retention` collapses.
        publish_conversions(&mut f, key, 300, [0.1, 0.4]).await;
        let mut returns = batch(&format!("{key}-returns"));
        for (variation, rate) in [0.8, 0.2].iter().enumerate() {
            for i in 0..(300.0 * rate) as usize {
                let context = format!("{key}-{variation}-{i}");
                returns
                    .track_events
                    .push(track(&context, "return", 1_700_000_000_100, None));
            }
        }
        f.publish(returns).await;
    }

    let results = f.results("reported", None).await;
    let kinds: Vec<i32> = results.alerts.iter().map(|a| a.kind).collect();
    assert!(
        kinds.contains(&(pb::ExperimentAlertKind::SignificanceReached as i32))
            && kinds.contains(&(pb::ExperimentAlertKind::GuardrailRegressed as i32)),
        "{:?}",
        results.alerts
    );
    let regression = results
        .alerts
        .iter()
        .find(|a| a.kind == pb::ExperimentAlertKind::GuardrailRegressed as i32)
        .unwrap();
    assert_eq!(regression.metric_key, "retention");
    assert_eq!(regression.variation, 1);

    // The guarded experiment stops itself; the other keeps running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let guarded = f.get_experiment("guarded").await;
        if guarded.status == pb::ExperimentStatus::Stopped as i32 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not stopped: {guarded:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The serve went back to control for everyone.
    let config = f.config("button").await;
    assert_eq!(config.fallthrough, Some(fixed(0)));
    // Several more rounds: each alert is still raised once.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let reported = f.get_experiment("reported").await;
    assert_eq!(reported.status, pb::ExperimentStatus::Running as i32);
    let actions = f.audit_actions("experiment", "reported").await;
    let alerts = actions.iter().filter(|a| *a == "experiment.alert").count();
    assert_eq!(
        alerts, 2,
        "significance and regression, once each: {actions:?}"
    );
    let actions = f.audit_actions("experiment", "guarded").await;
    assert!(
        actions.iter().any(|a| a == "experiment.stop"),
        "{actions:?}"
    );
    // Gauges: the running experiment's alerts are active; the stopped one's are gone.
    let gauge = |experiment: &str, kind: &str| {
        format!(
            "vexil_experiment_alerts{{environment=\"{PROJECT}/{ENV}\",experiment=\"{experiment}\",kind=\"{kind}\"}}"
        )
    };
    assert_eq!(
        f.server
            .metric(&gauge("reported", "guardrail_regressed"))
            .await,
        1.0
    );
    assert_eq!(
        f.server
            .metric(&gauge("guarded", "guardrail_regressed"))
            .await,
        0.0
    );
    let raised = format!(
        "vexil_experiment_alerts_raised_total{{environment=\"{PROJECT}/{ENV}\",kind=\"guardrail_regressed\"}}"
    );
    assert_eq!(f.server.metric(&raised).await, 2.0);
    f.server.stop().await;
}

/// A ratio metric, revenue per visit: each context's purchase values over its visits (a
/// visit without a value counts 1), compared by the delta method; and the validation of its
/// denominator.
#[tokio::test]
async fn ratio_metrics_compare_revenue_per_visit() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    // The denominator is required for a ratio, refused for anything else.
    for (kind, denominator) in [(pb::MetricKind::Ratio, ""), (pb::MetricKind::Sum, "visit")] {
        let bad = pb::Metric {
            denominator_event_name: denominator.into(),
            ..metric("bad", "purchase", kind)
        };
        expect_error(
            f.try_create_metric(bad).await,
            Code::InvalidArgument,
            StartsWith("metric.denominator_event_name:"),
        );
    }
    let per_visit = pb::Metric {
        denominator_event_name: "visit".into(),
        ..metric("revenue-per-visit", "purchase", pb::MetricKind::Ratio)
    };
    let metric = f.try_create_metric(per_visit).await.unwrap();
    assert_eq!(metric.denominator_event_name, "visit");
    f.create_flag("button", vec![]).await;
    let mut x = design("per-visit", "button");
    x.guardrail_metrics = vec![goal("revenue-per-visit").unwrap()];
    f.create_experiment(x).await.unwrap();

    let t0 = 1_700_000_000_000_i64;
    // (visits, purchase values) per context; the last context of each arm has no event.
    let arms: [Vec<(usize, Vec<f64>)>; 2] = [
        vec![
            (3, vec![10.0]),
            (1, vec![]),
            (2, vec![5.0, 5.0]),
            (4, vec![20.0]),
            (0, vec![]),
        ],
        vec![
            (2, vec![30.0]),
            (2, vec![15.0]),
            (1, vec![]),
            (5, vec![40.0, 10.0]),
            (0, vec![]),
        ],
    ];
    let mut events = batch("per-visit-1");
    let mut expected = Vec::new();
    for (variation, contexts) in arms.iter().enumerate() {
        let mut pairs = Vec::new();
        for (i, (visits, purchases)) in contexts.iter().enumerate() {
            let key = format!("v{variation}-{i}");
            events
                .exposures
                .push(exposure(&key, variation as u32, t0, "per-visit"));
            for _ in 0..*visits {
                events.track_events.push(track(&key, "visit", t0 + 5, None));
            }
            for value in purchases {
                events
                    .track_events
                    .push(track(&key, "purchase", t0 + 10, Some(*value)));
            }
            pairs.push((purchases.iter().sum::<f64>(), *visits as f64));
        }
        expected.push(vexil_stats::PairSummary::from_pairs(&pairs));
    }
    f.publish(events).await;
    let results = f.results("per-visit", None).await;
    let metric = &results.metrics[1];
    assert_eq!(
        metric.definition.as_ref().unwrap().kind,
        pb::MetricKind::Ratio as i32
    );
    for (v, want) in expected.iter().enumerate() {
        assert_eq!(metric.variations[v].units, 5);
        assert_close(metric.variations[v].mean, want.ratio());
    }
    let settings = vexil_stats::Settings::tuned_for(0.05, results.required_sample_size).unwrap();
    let comparison = vexil_stats::compare_ratio(&expected[0], &expected[1], &settings).unwrap();
    let got = &metric.variations[1];
    assert_close(got.p_value.unwrap(), comparison.p_value);
    let lift = got.absolute_lift.as_ref().unwrap();
    assert_close(lift.estimate, comparison.absolute_lift);
    assert_close(lift.lower, comparison.absolute_interval.lower);
    assert_close(
        got.variance,
        expected[1].linearized("treatment").unwrap().variance(),
    );
    assert!(got.chance_to_beat_control.is_some());
    f.server.stop().await;
}

/// A quantile metric, p90 of latency: each context's mean latency, its p90 per variation with a
/// distribution-free interval, compared with the engine's comparison of the same values; the
/// level's validation; and a p99.9 with too few contexts gets a note, not a number.
#[tokio::test]
async fn quantile_metrics_compare_p90_latency() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    // The level is required for a quantile, strictly inside (0, 1); refused for other kinds.
    for (kind, level) in [
        (pb::MetricKind::Quantile, 0.0),
        (pb::MetricKind::Quantile, 1.0),
        (pb::MetricKind::Quantile, f64::NAN),
        (pb::MetricKind::Mean, 0.9),
    ] {
        let bad = pb::Metric {
            quantile: level,
            ..metric("bad", "latency", kind)
        };
        expect_error(
            f.try_create_metric(bad).await,
            Code::InvalidArgument,
            StartsWith("metric.quantile:"),
        );
    }
    for (key, level) in [("latency-p90", 0.9), ("latency-p999", 0.999)] {
        let quantile = pb::Metric {
            quantile: level,
            ..metric(key, "latency", pb::MetricKind::Quantile)
        };
        let created = f.try_create_metric(quantile).await.unwrap();
        assert_eq!(created.quantile, level);
    }
    f.create_flag("button", vec![]).await;
    let mut x = design("latency", "button");
    x.guardrail_metrics = ["latency-p90", "latency-p999"]
        .map(|key| pb::ExperimentMetric {
            metric_key: key.into(),
            direction: pb::MetricDirection::Decrease as i32,
        })
        .to_vec();
    f.create_experiment(x).await.unwrap();

    // Latencies spread over a wide range, the treatment 60 % slower; each context sends two
    // page loads (its value is their mean), and one context in ten none with a value.
    let t0 = 1_700_000_000_000_i64;
    let mut events = batch("latency-1");
    let mut unit_means: Vec<Vec<f64>> = vec![Vec::new(); 2];
    let mut state = 7_u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for (variation, means) in unit_means.iter_mut().enumerate() {
        for i in 0..800 {
            let key = format!("l{variation}-{i}");
            events
                .exposures
                .push(exposure(&key, variation as u32, t0, "latency"));
            if i % 10 == 9 {
                events
                    .track_events
                    .push(track(&key, "latency", t0 + 5, None));
                continue;
            }
            let slow = if variation == 1 { 1.6 } else { 1.0 };
            let loads: Vec<f64> = (0..2)
                .map(|_| (100.0 * (-(1.0 - uniform()).ln()) * slow).round())
                .collect();
            for (j, value) in loads.iter().enumerate() {
                events
                    .track_events
                    .push(track(&key, "latency", t0 + 5 + j as i64, Some(*value)));
            }
            means.push(loads.iter().sum::<f64>() / 2.0);
        }
    }
    f.publish(events).await;
    let results = f.results("latency", None).await;
    let metric = &results.metrics[1];
    assert_eq!(
        metric.definition.as_ref().unwrap().kind,
        pb::MetricKind::Quantile as i32
    );
    let expected: Vec<_> = unit_means
        .iter()
        .map(|values| vexil_stats::QuantileSummary::from_values(values, 0.9, 0.05).unwrap())
        .collect();
    for (want, got) in expected.iter().zip(&metric.variations) {
        assert_close(got.mean, want.estimate);
        let interval = got.quantile_interval.as_ref().unwrap();
        assert_close(interval.lower, want.lower);
        assert_close(interval.upper, want.upper);
        assert_close(interval.level, 0.95);
    }
    let settings = vexil_stats::Settings {
        alternative: vexil_stats::Alternative::TwoSided,
        ..vexil_stats::Settings::tuned_for(0.05, results.required_sample_size).unwrap()
    };
    let comparison = vexil_stats::compare_quantiles(&expected[0], &expected[1], &settings).unwrap();
    let got = &metric.variations[1];
    assert_close(got.p_value.unwrap(), comparison.p_value);
    let lift = got.absolute_lift.as_ref().unwrap();
    assert_close(lift.estimate, comparison.absolute_lift);
    assert_close(lift.lower, comparison.absolute_interval.lower);
    assert_close(lift.upper, comparison.absolute_interval.upper);
    // 60 % slower over 720 contexts per arm: a clear regression of the guardrail, which the
    // always-valid test sees too (hence the alert).
    assert!(lift.lower > 0.0, "{lift:?}");
    assert_eq!(got.improvement, Some(false));
    assert!(got.chance_to_beat_control.unwrap() < 0.01);
    assert!(
        results.alerts.iter().any(
            |a| a.kind == pb::ExperimentAlertKind::GuardrailRegressed as i32
                && a.metric_key == "latency-p90"
        ),
        "{:?}",
        results.alerts
    );
    // 720 contexts with a value are too few for a 95 % interval of the p99.9: a note says how
    // many are needed, and no number stands in for the quantile.
    let needed = vexil_stats::quantile_ranks(720, 0.999, 0.05)
        .unwrap_err()
        .to_string();
    for small in &results.metrics[2].variations {
        assert!(small.quantile_interval.is_none() && small.p_value.is_none());
        assert_eq!(small.mean, 0.0);
        assert_eq!(small.note, needed);
    }
    f.server.stop().await;
}

/// CUPED: each metric adjusted by the same metric over the days before each context's first
/// exposure; results match the engine's adjustment of pairs computed here by hand.
#[tokio::test]
async fn cuped_adjusts_metrics_by_their_history() {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    f.create_metric("spend", "purchase", pb::MetricKind::Sum)
        .await;
    f.create_flag("button", vec![]).await;
    let mut x = design("history", "button");
    x.guardrail_metrics = vec![goal("spend").unwrap()];
    x.cuped_lookback_days = 91;
    expect_error(
        f.create_experiment(x.clone()).await,
        Code::InvalidArgument,
        StartsWith("experiment.cuped_lookback_days:"),
    );
    x.cuped_lookback_days = 7;
    let created = f.create_experiment(x).await.unwrap();
    assert_eq!(created.cuped_lookback_days, 7);

    let t0 = 1_700_000_000_000_i64;
    let day = 24 * 3_600_000_i64;
    // (spend before, spend after) per context: heavy spenders stay heavy. A purchase 8 days
    // before is outside the lookback and must not count.
    let arms: [Vec<(f64, f64)>; 2] = [
        vec![
            (100.0, 90.0),
            (0.0, 0.0),
            (50.0, 40.0),
            (10.0, 0.0),
            (80.0, 95.0),
            (0.0, 5.0),
        ],
        vec![
            (100.0, 120.0),
            (0.0, 10.0),
            (50.0, 60.0),
            (10.0, 20.0),
            (80.0, 85.0),
            (0.0, 0.0),
        ],
    ];
    let mut events = batch("history-1");
    let mut spend = Vec::new();
    let mut bought = Vec::new();
    for (variation, contexts) in arms.iter().enumerate() {
        let (mut spend_pairs, mut bought_pairs) = (Vec::new(), Vec::new());
        for (i, (before, after)) in contexts.iter().enumerate() {
            let key = format!("h{variation}-{i}");
            events
                .exposures
                .push(exposure(&key, variation as u32, t0, "history"));
            events
                .track_events
                .push(track(&key, "purchase", t0 - 8 * day, Some(1_000.0)));
            if *before > 0.0 {
                events
                    .track_events
                    .push(track(&key, "purchase", t0 - 2 * day, Some(*before)));
            }
            if *after > 0.0 {
                events
                    .track_events
                    .push(track(&key, "purchase", t0 + 10, Some(*after)));
            }
            spend_pairs.push((*after, *before));
            bought_pairs.push((
                f64::from(u8::from(*after > 0.0)),
                f64::from(u8::from(*before > 0.0)),
            ));
        }
        spend.push(vexil_stats::PairSummary::from_pairs(&spend_pairs));
        bought.push(vexil_stats::PairSummary::from_pairs(&bought_pairs));
    }
    f.publish(events).await;
    let results = f.results("history", None).await;
    let settings = vexil_stats::Settings::tuned_for(0.05, results.required_sample_size).unwrap();
    for (m, pairs) in [(0, &bought), (1, &spend)] {
        let (control, treatment, reduction) = vexil_stats::cuped(&pairs[0], &pairs[1]).unwrap();
        let expected = vexil_stats::compare(
            vexil_stats::MetricKind::Mean,
            &control,
            &treatment,
            &settings,
        )
        .unwrap();
        let got = &results.metrics[m].variations[1];
        assert_close(got.cuped_variance_reduction.unwrap(), reduction);
        assert_close(got.p_value.unwrap(), expected.p_value);
        let lift = got.absolute_lift.as_ref().unwrap();
        assert_close(lift.estimate, expected.absolute_lift);
        assert_close(lift.lower, expected.absolute_interval.lower);
    }
    // History explains most of the spend.
    let reduction = results.metrics[1].variations[1]
        .cuped_variance_reduction
        .unwrap();
    assert!(reduction > 0.5, "{reduction}");
    assert!(
        results.metrics[0].variations[0]
            .cuped_variance_reduction
            .is_none()
    );
    f.server.stop().await;
}

#[tokio::test]
async fn results_on_sqlite() {
    results_on_hand_computed_data(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn results_on_postgres() {
    if let Some(server) = TestServer::postgres().await {
        results_on_hand_computed_data(server).await;
    }
}

// ----- flag usage ------------------------------------------------------------------------------

async fn usage_and_stale_flags(server: TestServer) {
    let mut f = Fixture::new(server).await;
    for key in ["busy", "quiet", "settled", "fresh", "fresh-settled"] {
        f.create_flag(key, vec![]).await;
    }
    let hour = 3_600_000_i64;
    let now = vexil_server::storage::now_millis();
    // Only flags older than the report's period can be judged stale: date the first three
    // thirty days back and leave the "fresh" ones created just now.
    set_flags_created_at(
        &f.server.database_url(),
        &["busy", "quiet", "settled"],
        now - 30 * 24 * hour,
    )
    .await;
    let this_hour = now - now.rem_euclid(hour);
    let summary =
        |flag: &str, start: i64, counters: Vec<(Option<u32>, i32, u64)>| pb::EvaluationSummary {
            start: Some(timestamp(start)),
            end: Some(timestamp(start + 10_000)),
            flag_key: flag.into(),
            counters: counters
                .into_iter()
                .map(|(variation, error_kind, count)| pb::EvaluationCounter {
                    flag_version: 2,
                    variation,
                    error_kind,
                    count,
                })
                .collect(),
        };
    let mut first = batch("usage-1");
    first.summaries = vec![
        summary(
            "busy",
            this_hour - 2 * hour + 60_000,
            vec![(Some(0), 0, 5), (Some(1), 0, 7)],
        ),
        summary(
            "busy",
            this_hour - 2 * hour + 120_000,
            vec![(Some(0), 0, 1)],
        ),
        summary(
            "busy",
            this_hour - hour,
            vec![(None, pb::ErrorKind::WrongType as i32, 2)],
        ),
        summary("settled", this_hour - hour, vec![(Some(1), 0, 40)]),
        summary("fresh-settled", this_hour - hour, vec![(Some(0), 0, 9)]),
    ];
    f.publish(first).await;
    let mut second = batch("usage-2");
    second.summaries = vec![summary(
        "settled",
        this_hour - hour + 5000,
        vec![(Some(1), 0, 2)],
    )];
    f.publish(second).await;

    let request = f.req(pb::GetFlagUsageRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        start: Some(timestamp(this_hour - 3 * hour)),
        ..Default::default()
    });
    let buckets = f
        .experiments
        .get_flag_usage(request)
        .await
        .unwrap()
        .into_inner()
        .buckets;
    let got: Vec<(String, i64, Option<u32>, i32, u64)> = buckets
        .iter()
        .map(|b| {
            (
                b.flag_key.clone(),
                b.hour.as_ref().unwrap().seconds * 1000,
                b.variation,
                b.error_kind,
                b.count,
            )
        })
        .collect();
    let wrong_type = pb::ErrorKind::WrongType as i32;
    assert_eq!(
        got,
        [
            ("busy".to_owned(), this_hour - 2 * hour, Some(0), 0, 6),
            ("busy".to_owned(), this_hour - 2 * hour, Some(1), 0, 7),
            ("busy".to_owned(), this_hour - hour, None, wrong_type, 2),
            ("fresh-settled".to_owned(), this_hour - hour, Some(0), 0, 9),
            ("settled".to_owned(), this_hour - hour, Some(1), 0, 42),
        ]
    );
    let request = f.req(pb::GetFlagUsageRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        flag_key: "settled".into(),
        ..Default::default()
    });
    let only = f
        .experiments
        .get_flag_usage(request)
        .await
        .unwrap()
        .into_inner()
        .buckets;
    assert_eq!(only.len(), 1);
    let request = f.req(pb::GetFlagUsageRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        start: Some(timestamp(now)),
        end: Some(timestamp(now - 1)),
        ..Default::default()
    });
    let status = expect_code(
        f.experiments.get_flag_usage(request).await,
        Code::InvalidArgument,
    );
    assert!(status.message().starts_with("start:"));

    let request = f.req(pb::ListStaleFlagsRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        days: 7,
    });
    let stale = f
        .experiments
        .list_stale_flags(request)
        .await
        .unwrap()
        .into_inner()
        .flags;
    let got: Vec<(String, i32, Option<u32>, u64)> = stale
        .iter()
        .map(|s| (s.flag_key.clone(), s.reason, s.variation, s.evaluations))
        .collect();
    assert_eq!(
        got,
        [
            (
                "quiet".to_owned(),
                pb::StaleReason::NotEvaluated as i32,
                None,
                0
            ),
            (
                "settled".to_owned(),
                pb::StaleReason::SingleVariation as i32,
                Some(1),
                42
            ),
        ]
    );
    assert_eq!(
        stale[1].last_evaluated.as_ref().unwrap().seconds * 1000,
        this_hour - hour
    );
    let request = f.req(pb::ListStaleFlagsRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        days: 5000,
    });
    let status = expect_code(
        f.experiments.list_stale_flags(request).await,
        Code::InvalidArgument,
    );
    assert!(status.message().starts_with("days:"));
    f.server.stop().await;
}

/// Sets the creation time of the default project's flags `keys` straight in the server's
/// database: no RPC can create a flag in the past.
async fn set_flags_created_at(database_url: &str, keys: &[&str], created_at: i64) {
    use sqlx::Connection;
    let statement = "UPDATE flags SET created_at = $1 WHERE key = $2 \
                     AND project_id = (SELECT id FROM projects WHERE key = $3)";
    if database_url.starts_with("sqlite:") {
        let mut db = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        for key in keys {
            let done = sqlx::query(statement)
                .bind(created_at)
                .bind(*key)
                .bind(PROJECT)
                .execute(&mut db)
                .await
                .unwrap();
            assert_eq!(done.rows_affected(), 1, "flag {key}");
        }
        db.close().await.unwrap();
    } else {
        let mut db = sqlx::PgConnection::connect(database_url).await.unwrap();
        for key in keys {
            let done = sqlx::query(statement)
                .bind(created_at)
                .bind(*key)
                .bind(PROJECT)
                .execute(&mut db)
                .await
                .unwrap();
            assert_eq!(done.rows_affected(), 1, "flag {key}");
        }
        db.close().await.unwrap();
    }
}

#[tokio::test]
async fn usage_on_sqlite() {
    usage_and_stale_flags(TestServer::sqlite().await).await;
}

#[tokio::test]
async fn usage_on_postgres() {
    if let Some(server) = TestServer::postgres().await {
        usage_and_stale_flags(server).await;
    }
}

// ----- end to end with the SDK -------------------------------------------------------------------

/// A small deterministic generator (SplitMix64), so that the simulated users are the same on
/// every run.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Conversion probability per variation: the treatment's true lift is +0.08 (absolute).
const TRUE_RATES: [f64; 2] = [0.20, 0.28];
const SDK_CONTEXTS: usize = 4000;

/// What the SDK saw, to check the server's counts against.
#[derive(Debug, Default)]
struct Simulated {
    exposed: [u64; 2],
    converted: [u64; 2],
}

/// Evaluates the experiment's flag for every simulated user through a ready `client`, and
/// tracks the conversions drawn from the true rates.
fn simulate_users(client: vexil_core::Client) -> Simulated {
    let mut rng = SplitMix(0x5EED_2026);
    let mut seen = Simulated::default();
    for i in 0..SDK_CONTEXTS {
        let context = vexil_core::Context::user(&format!("user-{i}")).unwrap();
        let detail = client.bool_variation_detail("checkout-button", &context, false);
        assert!(detail.in_experiment, "every context is in the experiment");
        assert_eq!(detail.experiment_key.as_deref(), Some("sdk-test"));
        let variation = detail.variation.expect("a variation");
        seen.exposed[variation] += 1;
        if rng.next_f64() < TRUE_RATES[variation] {
            seen.converted[variation] += 1;
            client.track("checkout", &context, None).unwrap();
        }
    }
    assert!(
        client.flush(std::time::Duration::from_secs(30)),
        "events flushed"
    );
    client.close();
    seen
}

async fn sdk_experiment_recovers_the_lift(server: TestServer) {
    let mut f = Fixture::new(server).await;
    f.create_metric("checkout-rate", "checkout", pb::MetricKind::Conversion)
        .await;
    f.create_flag("checkout-button", vec![]).await;
    let mut x = design("sdk-test", "checkout-button");
    x.primary_metric = goal("checkout-rate");
    let created = f.create_experiment(x).await.unwrap();
    f.start("sdk-test", created.version).await.unwrap();

    let client = f
        .server
        .ready_client(ENV, "server", |mut config| {
            config.events.capacity = 50_000;
            config.events.flush_interval = std::time::Duration::from_millis(200);
            config
        })
        .await;
    let seen = tokio::task::spawn_blocking(move || simulate_users(client))
        .await
        .unwrap();

    let results = f.results("sdk-test", None).await;
    let units: Vec<u64> = results.exposures.iter().map(|e| e.units).collect();
    assert_eq!(units, seen.exposed, "every exposure arrived once");
    assert_eq!(results.multiple_exposure_contexts, 0);
    assert!(
        !results.srm_detected,
        "50/50 split, p = {}",
        results.srm_p_value
    );
    let metric = &results.metrics[0];
    for v in 0..2 {
        assert_eq!(metric.variations[v].units, seen.exposed[v]);
        assert_close(metric.variations[v].sum, seen.converted[v] as f64);
    }
    let lift = metric.variations[1].absolute_lift.as_ref().unwrap();
    let true_lift = TRUE_RATES[1] - TRUE_RATES[0];
    assert!(
        lift.lower <= true_lift && true_lift <= lift.upper,
        "the true lift {true_lift} is in [{}, {}]",
        lift.lower,
        lift.upper
    );
    let sequential = metric.variations[1]
        .sequential_absolute_lift
        .as_ref()
        .unwrap();
    assert!(sequential.lower <= true_lift && true_lift <= sequential.upper);
    assert!(
        metric.variations[1].significant,
        "a lift this large is detected"
    );
    assert_eq!(metric.variations[1].improvement, Some(true));
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_experiment_on_sqlite() {
    sdk_experiment_recovers_the_lift(TestServer::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_experiment_on_postgres() {
    if let Some(server) = TestServer::postgres().await {
        sdk_experiment_recovers_the_lift(server).await;
    }
}

// ----- scale ------------------------------------------------------------------------------------

/// An environment runs `count` experiments at once (one per flag, each in its own
/// layer), every flag carries its own, and the running ones page through the list.
async fn many_experiments_run_in_one_environment(count: usize) {
    let mut f = Fixture::new(TestServer::sqlite().await).await;
    f.create_metric("purchase-rate", "purchase", pb::MetricKind::Conversion)
        .await;
    let flags: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            json!({
                "key": format!("flag-{i:04}"), "kind": "bool", "variations": [false, true],
                "on": true, "off_variation": 0, "fallthrough": {"variation": 0}
            })
        })
        .collect();
    let request = f.req(pb::ImportEnvironmentRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        ruleset_json: json!({ "flags": flags }).to_string(),
        expected_version: None,
    });
    f.admin.import_environment(request).await.unwrap();
    for i in 0..count {
        let key = format!("x-{i:04}");
        let created = f
            .create_experiment(design(&key, &format!("flag-{i:04}")))
            .await
            .unwrap();
        f.start(&key, created.version).await.unwrap();
    }
    let mut running = 0;
    let mut token = String::new();
    loop {
        let request = f.req(pb::ListExperimentsRequest {
            project_key: PROJECT.into(),
            environment_key: ENV.into(),
            status: pb::ExperimentStatus::Running as i32,
            page: Some(pb::PageRequest {
                page_size: 300,
                page_token: token.clone(),
            }),
            ..Default::default()
        });
        let page = f
            .experiments
            .list_experiments(request)
            .await
            .unwrap()
            .into_inner();
        running += page.experiments.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(running, count);
    let request = f.req(pb::ExportEnvironmentRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
    });
    let exported: serde_json::Value = serde_json::from_str(
        &f.admin
            .export_environment(request)
            .await
            .unwrap()
            .into_inner()
            .ruleset_json,
    )
    .unwrap();
    let carrying = exported["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|flag| flag["fallthrough"]["experiment"]["key"].is_string())
        .count();
    assert_eq!(carrying, count);
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_experiments_run_in_one_environment() {
    many_experiments_run_in_one_environment(100).await;
}

/// The full 1,000: every start validates the environment's whole ruleset, which takes
/// minutes in a debug build; run with `cargo test --release -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in debug builds; run with --release -- --ignored"]
async fn a_thousand_experiments_run_in_one_environment() {
    many_experiments_run_in_one_environment(1000).await;
}
