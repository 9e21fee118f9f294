//! The subcommands that talk to a Vexil server's AdminService.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;

use crate::convert::{self, FlagFile};

/// Where the server is and who is calling.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The server's address.
    #[arg(
        long,
        global = true,
        env = "VEXIL_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// An admin token (see `credentials.json` in the server's data directory at first start).
    #[arg(long, global = true, env = "VEXIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The project.
    #[arg(long, global = true, env = "VEXIL_PROJECT", default_value = "default")]
    pub project: String,
    /// A PEM file of the certificate authority that signed an https server's certificate.
    #[arg(long, global = true, env = "VEXIL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The environment a command works in.
#[derive(Debug, Clone, Args)]
pub struct EnvironmentArg {
    /// The environment.
    #[arg(
        short = 'e',
        long,
        global = true,
        env = "VEXIL_ENVIRONMENT",
        default_value = "development"
    )]
    pub environment: String,
}

#[derive(Debug, Args)]
pub struct FlagsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    env: EnvironmentArg,
    #[command(subcommand)]
    command: FlagsCommand,
}

#[derive(Debug, Subcommand)]
enum FlagsCommand {
    /// List the project's flags, with their state in the environment.
    List {
        /// Only flags whose key or name contains this text.
        #[arg(long)]
        query: Option<String>,
        /// Only flags carrying this tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Also list archived flags.
        #[arg(long, conflicts_with = "only_archived")]
        archived: bool,
        /// Only list archived flags.
        #[arg(long)]
        only_archived: bool,
    },
    /// Show a flag with its configuration in the environment.
    Get {
        /// The flag's key.
        key: String,
        /// Print the flag in the environment as a flag file (canonical JSON), the form that
        /// `create` and `update` read.
        #[arg(long)]
        file_form: bool,
    },
    /// Create a flag from a flag file (canonical flag JSON); its targets, rules,
    /// prerequisites and on/off state are set in the environment.
    Create {
        /// The flag file; may also carry "name", "description" and "tags".
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        meta: FlagMeta,
    },
    /// Replace a flag from a flag file: its project-level fields and its configuration in
    /// the environment.
    Update {
        /// The flag file; its key names the flag.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        meta: FlagMeta,
        /// The configuration version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Turn a flag on or off in the environment.
    Toggle {
        /// The flag's key.
        key: String,
        /// The new state.
        state: OnOff,
        /// The configuration version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Archive a flag (it leaves every environment's ruleset), or restore it.
    Archive {
        /// The flag's key.
        key: String,
        /// Restore an archived flag instead.
        #[arg(long)]
        restore: bool,
        /// The flag version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Evaluations per flag and variation per hour, as SDKs reported them.
    Usage {
        /// Only this flag.
        key: Option<String>,
        /// From this time (RFC 3339, a date, or epoch seconds); 24 hours ago when not given.
        #[arg(long)]
        since: Option<String>,
        /// Up to this time; now when not given.
        #[arg(long)]
        until: Option<String>,
    },
    /// Flags not evaluated, or serving a single variation to everyone, for N days (only flags
    /// created more than N days ago are judged).
    Stale {
        /// The period looked back, in days.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Delete a flag and its configuration in every environment.
    Delete {
        /// The flag's key.
        key: String,
        /// The flag version the deletion is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
}

/// People-facing fields given as options; they win over the file's.
#[derive(Debug, Args)]
struct FlagMeta {
    /// The flag's name.
    #[arg(long)]
    name: Option<String>,
    /// The flag's description.
    #[arg(long)]
    description: Option<String>,
    /// A tag (repeatable); replaces the file's tags.
    #[arg(long = "tag")]
    tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct SegmentsArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    env: EnvironmentArg,
    #[command(subcommand)]
    command: SegmentsCommand,
}

#[derive(Debug, Subcommand)]
enum SegmentsCommand {
    /// List the environment's segments.
    List,
    /// Show one segment.
    Get {
        /// The segment's key.
        key: String,
    },
    /// Create a segment from a segment file (canonical segment JSON, plus optional "name"
    /// and "description").
    Create {
        /// The segment file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a segment from a segment file; its key names the segment.
    Update {
        /// The segment file.
        #[arg(long)]
        file: PathBuf,
        /// The segment version the change is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
    /// Delete a segment (refused while a flag or segment refers to it).
    Delete {
        /// The segment's key.
        key: String,
        /// The segment version the deletion is based on; fetched when not given.
        #[arg(long)]
        expected_version: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    env: EnvironmentArg,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List the environment's SDK keys (never their secrets).
    List {
        /// Every environment of the project.
        #[arg(long)]
        all_environments: bool,
        /// Also list revoked and expired keys.
        #[arg(long)]
        include_revoked: bool,
    },
    /// Issue an SDK key for the environment; its secret is printed once.
    Issue {
        /// What the key may do.
        #[arg(long, value_enum)]
        kind: KeyKind,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke an SDK key at once.
    Revoke {
        /// The key's id (see `keys list`).
        id: i64,
    },
    /// Issue a replacement for an SDK key; the old one stops working at once or at a time.
    Rotate {
        /// The key's id (see `keys list`).
        id: i64,
        /// When the old key stops working (RFC 3339, a date, or epoch seconds); at once
        /// when not given.
        #[arg(long)]
        old_key_expires_at: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyKind {
    Server,
    Client,
    Mobile,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List audit entries of the project, newest first.
    List {
        /// Only entries about a resource: a kind (flag, flag_config, segment, sdk_key,
        /// environment, project, admin_token) or kind:key, such as flag:checkout.
        #[arg(long)]
        resource: Option<String>,
        /// Only entries by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries at or after this time (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this time (RFC 3339, a date, or epoch seconds).
        #[arg(long)]
        until: Option<String>,
        /// Only entries of this environment (no default: every environment).
        #[arg(short = 'e', long)]
        environment: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    env: EnvironmentArg,
    /// Write the ruleset to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    env: EnvironmentArg,
    /// A ruleset file: {"flags": [...], "segments": [...]}.
    file: PathBuf,
    /// The environment version the import is based on; any when not given.
    #[arg(long)]
    expected_version: Option<i64>,
}

/// A command that talks to the server.
#[derive(Debug)]
pub enum Remote {
    Flags(FlagsArgs),
    Segments(SegmentsArgs),
    Keys(KeysArgs),
    Audit(AuditArgs),
    Export(ExportArgs),
    Import(ImportArgs),
    Experiments(Box<crate::experiments::ExperimentsArgs>),
    Metrics(crate::experiments::MetricsArgs),
}

/// A failure to report: a status from the server, or anything else.
pub(crate) enum Failure {
    Status(Status),
    Other(anyhow::Error),
}

impl From<Status> for Failure {
    fn from(status: Status) -> Failure {
        Failure::Status(status)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Other(error)
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Other(error.into())
    }
}

pub(crate) type Outcome<T = ()> = Result<T, Failure>;

/// The canonical name of a gRPC status code.
fn code_name(code: Code) -> &'static str {
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

/// Runs a remote command; every failure is printed on standard error and exits 1.
pub fn run(command: Remote) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("vexil: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let conn = match &command {
        Remote::Flags(a) => a.conn.clone(),
        Remote::Segments(a) => a.conn.clone(),
        Remote::Keys(a) => a.conn.clone(),
        Remote::Audit(a) => a.conn.clone(),
        Remote::Export(a) => a.conn.clone(),
        Remote::Import(a) => a.conn.clone(),
        Remote::Experiments(a) => a.conn.clone(),
        Remote::Metrics(a) => a.conn.clone(),
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Status(status)) => {
            let message = status.message().trim();
            let message = if message.is_empty() {
                "(no message)"
            } else {
                message
            };
            eprintln!("vexil: {}: {message}", code_name(status.code()));
            let no_token = conn.token.as_deref().is_none_or(|t| t.trim().is_empty());
            if status.code() == Code::Unauthenticated && no_token {
                eprintln!("vexil: no admin token was given; use --token or set VEXIL_TOKEN");
            }
            if status.code() == Code::Unavailable {
                eprintln!("vexil: is a Vexil server running at {}?", conn.server);
            }
            ExitCode::FAILURE
        }
        Err(Failure::Other(error)) => {
            eprintln!("vexil: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Remote) -> Outcome {
    match command {
        Remote::Flags(a) => {
            let client = Client::connect(&a.conn).await?;
            flags(client, &a.env.environment, a.command).await
        }
        Remote::Segments(a) => {
            let client = Client::connect(&a.conn).await?;
            segments(client, &a.env.environment, a.command).await
        }
        Remote::Keys(a) => {
            let client = Client::connect(&a.conn).await?;
            keys(client, &a.env.environment, a.command).await
        }
        Remote::Audit(a) => {
            let client = Client::connect(&a.conn).await?;
            audit(client, a.command).await
        }
        Remote::Export(a) => {
            let client = Client::connect(&a.conn).await?;
            export(client, &a.env.environment, a.output.as_deref()).await
        }
        Remote::Import(a) => {
            let client = Client::connect(&a.conn).await?;
            import(client, &a.env.environment, &a.file, a.expected_version).await
        }
        Remote::Experiments(a) => {
            let client = Client::connect(&a.conn).await?;
            crate::experiments::experiments(client, *a).await
        }
        Remote::Metrics(a) => {
            let client = Client::connect(&a.conn).await?;
            crate::experiments::metrics(client, a).await
        }
    }
}

pub(crate) struct Client {
    admin: AdminServiceClient<Channel>,
    /// The connection, for the other services.
    pub(crate) channel: Channel,
    token: Option<String>,
    pub(crate) project: String,
    pub(crate) json: bool,
}

impl Client {
    async fn connect(conn: &Connection) -> Outcome<Client> {
        let mut endpoint = Endpoint::from_shared(conn.server.clone())
            .with_context(|| format!("--server {:?} is not a valid address", conn.server))?;
        if conn.server.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(path) = &conn.ca_cert {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(tls)
                .context("cannot set up TLS for the server address")?;
        }
        let channel = endpoint
            .connect_timeout(std::time::Duration::from_secs(10))
            .connect()
            .await
            .map_err(|error| {
                let mut text = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !text.contains(&cause_text) {
                        text.push_str(": ");
                        text.push_str(&cause_text);
                    }
                    source = cause.source();
                }
                anyhow::anyhow!("cannot connect to {}: {text}", conn.server)
            })?;
        Ok(Client {
            admin: AdminServiceClient::new(channel.clone()),
            channel,
            token: conn
                .token
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            project: conn.project.clone(),
            json: conn.json,
        })
    }

    /// A request carrying the admin token.
    pub(crate) fn req<T>(&self, message: T) -> Outcome<Request<T>> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| anyhow::anyhow!("the admin token holds characters a header cannot"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// A flag with its configuration in `environment`.
    async fn flag_in(
        &mut self,
        key: &str,
        environment: &str,
    ) -> Outcome<(pb::Flag, pb::FlagConfiguration)> {
        let request = self.req(pb::GetFlagRequest {
            project_key: self.project.clone(),
            key: key.to_owned(),
            environment_keys: vec![environment.to_owned()],
        })?;
        let flag = self.admin.get_flag(request).await?.into_inner();
        let config = flag
            .configurations
            .iter()
            .find(|c| c.environment_key == environment)
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("flag {key:?} has no configuration in environment {environment:?}")
            })?;
        Ok((flag, config))
    }
}

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Prints rows under headers, in aligned columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(37).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

pub(crate) fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map_or_else(|| "-".to_owned(), convert::format_time)
}

fn print_flag(flag: &pb::Flag) {
    println!("key:         {}", flag.key);
    println!("name:        {}", flag.name);
    if !flag.description.is_empty() {
        println!("description: {}", flag.description);
    }
    println!("kind:        {}", convert::kind_name(flag.kind));
    let variations: Vec<String> = flag
        .variations
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{i}={}", vexil_proto::model::value_to_json(v)))
        .collect();
    println!("variations:  {}", variations.join(", "));
    if !flag.tags.is_empty() {
        println!("tags:        {}", flag.tags.join(", "));
    }
    println!("client side: {}", flag.client_side);
    println!("archived:    {}", flag.archived);
    println!("version:     {}", flag.version);
    println!("updated:     {}", time(flag.updated_at.as_ref()));
    for config in &flag.configurations {
        println!();
        println!(
            "environment {}: {} (configuration version {})",
            config.environment_key,
            on_off(config.on),
            config.version
        );
        let mut body = serde_json::Map::new();
        let full = convert::configuration_json(config);
        for field in [
            "off_variation",
            "targets",
            "rules",
            "fallthrough",
            "prerequisites",
            "salt",
        ] {
            if let Some(value) = full.get(field) {
                body.insert(field.to_owned(), value.clone());
            }
        }
        let text = serde_json::to_string_pretty(&Value::Object(body)).unwrap_or_default();
        for line in text.lines() {
            println!("  {line}");
        }
    }
}

// ----- flags ---------------------------------------------------------------------------------

fn read_flag_file(path: &Path, meta: &FlagMeta) -> Outcome<FlagFile> {
    let json = convert::read_json(path)?;
    let mut file = convert::flag_file(&json).with_context(|| format!("{}", path.display()))?;
    if let Some(name) = &meta.name {
        file.name = Some(name.clone());
    }
    if let Some(description) = &meta.description {
        file.description = Some(description.clone());
    }
    if !meta.tags.is_empty() {
        file.tags = Some(meta.tags.clone());
    }
    Ok(file)
}

async fn flags(mut c: Client, environment: &str, command: FlagsCommand) -> Outcome {
    match command {
        FlagsCommand::Usage { key, since, until } => {
            crate::experiments::usage(&c, environment, key, since, until).await?;
        }
        FlagsCommand::Stale { days } => {
            crate::experiments::stale(&c, environment, days).await?;
        }
        FlagsCommand::List {
            query,
            tags,
            archived,
            only_archived,
        } => {
            let filter = if only_archived {
                pb::ArchivedFilter::Only
            } else if archived {
                pb::ArchivedFilter::Include
            } else {
                pb::ArchivedFilter::Unspecified
            };
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = c.req(pb::ListFlagsRequest {
                    project_key: c.project.clone(),
                    page: Some(pb::PageRequest {
                        page_size: 500,
                        page_token: page_token.clone(),
                    }),
                    tags: tags.clone(),
                    query: query.clone().unwrap_or_default(),
                    kind: pb::FlagKind::Unspecified as i32,
                    archived: filter as i32,
                    environment_key: environment.to_owned(),
                })?;
                let page = c.admin.list_flags(request).await?.into_inner();
                all.extend(page.flags);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if c.json {
                print_json(&Value::Array(all.iter().map(convert::flag_json).collect()));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|f| {
                    let state = f
                        .configurations
                        .iter()
                        .find(|c| c.environment_key == environment)
                        .map_or("-", |c| on_off(c.on));
                    let mut state = state.to_owned();
                    if f.archived {
                        state.push_str(" (archived)");
                    }
                    vec![
                        f.key.clone(),
                        convert::kind_name(f.kind).to_owned(),
                        state,
                        f.version.to_string(),
                        f.name.clone(),
                        f.tags.join(","),
                    ]
                })
                .collect();
            table(
                &["KEY", "KIND", environment, "VERSION", "NAME", "TAGS"],
                &rows,
            );
            if all.is_empty() {
                println!("(no flags in project {})", c.project);
            }
        }
        FlagsCommand::Get { key, file_form } => {
            let (flag, config) = c.flag_in(&key, environment).await?;
            if file_form {
                print_json(&convert::flag_file_json(&flag, &config));
            } else if c.json {
                print_json(&convert::flag_json(&flag));
            } else {
                print_flag(&flag);
            }
        }
        FlagsCommand::Create { file, meta } => {
            let file = read_flag_file(&file, &meta)?;
            let request = c.req(pb::CreateFlagRequest {
                project_key: c.project.clone(),
                key: file.key.clone(),
                name: file.name.clone().unwrap_or_default(),
                description: file.description.clone().unwrap_or_default(),
                kind: file.kind,
                variations: file.variations.clone(),
                tags: file.tags.clone().unwrap_or_default(),
                client_side: file.client_side,
                off_variation: file.configuration.off_variation,
                fallthrough: file.configuration.fallthrough.clone(),
            })?;
            let created = c.admin.create_flag(request).await?.into_inner();
            if file.has_configuration()
                && let Err(failure) = configure(&mut c, environment, &file, None).await
            {
                // Leave nothing half made: the flag goes again, and the reason is reported.
                if let Ok(request) = c.req(pb::DeleteFlagRequest {
                    project_key: c.project.clone(),
                    key: created.key.clone(),
                    expected_version: created.version,
                }) {
                    let _ = c.admin.delete_flag(request).await;
                }
                return Err(failure);
            }
            let (flag, _) = c.flag_in(&created.key, environment).await?;
            if c.json {
                print_json(&convert::flag_json(&flag));
            } else {
                println!(
                    "created flag {} in project {} ({} in {environment})",
                    flag.key,
                    c.project,
                    on_off(flag.configurations.first().is_some_and(|c| c.on))
                );
            }
        }
        FlagsCommand::Update {
            file,
            meta,
            expected_version,
        } => {
            let file = read_flag_file(&file, &meta)?;
            let (current, _) = c.flag_in(&file.key, environment).await?;
            if current.kind != file.kind {
                return Err(anyhow::anyhow!(
                    "kind: a flag's kind cannot change (flag {:?} is {})",
                    file.key,
                    convert::kind_name(current.kind)
                )
                .into());
            }
            configure(&mut c, environment, &file, expected_version).await?;
            let name = file.name.clone().unwrap_or_else(|| current.name.clone());
            let description = file
                .description
                .clone()
                .unwrap_or_else(|| current.description.clone());
            let tags = file.tags.clone().unwrap_or_else(|| current.tags.clone());
            if name != current.name
                || description != current.description
                || tags != current.tags
                || file.variations != current.variations
                || file.client_side != current.client_side
            {
                let request = c.req(pb::UpdateFlagRequest {
                    project_key: c.project.clone(),
                    key: file.key.clone(),
                    expected_version: current.version,
                    name,
                    description,
                    variations: file.variations.clone(),
                    tags,
                    client_side: file.client_side,
                })?;
                c.admin.update_flag(request).await?;
            }
            let (flag, config) = c.flag_in(&file.key, environment).await?;
            if c.json {
                print_json(&convert::flag_json(&flag));
            } else {
                println!(
                    "updated flag {} in {environment} (configuration version {})",
                    flag.key, config.version
                );
            }
        }
        FlagsCommand::Toggle {
            key,
            state,
            expected_version,
        } => {
            let expected_version = match expected_version {
                Some(v) => v,
                None => c.flag_in(&key, environment).await?.1.version,
            };
            let on = matches!(state, OnOff::On);
            let request = c.req(pb::ToggleFlagRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key: key.clone(),
                expected_version,
                on,
            })?;
            let config = c.admin.toggle_flag(request).await?.into_inner();
            if c.json {
                print_json(&convert::configuration_json(&config));
            } else {
                println!(
                    "flag {key} is {} in {environment} (configuration version {})",
                    on_off(config.on),
                    config.version
                );
            }
        }
        FlagsCommand::Archive {
            key,
            restore,
            expected_version,
        } => {
            let expected_version = match expected_version {
                Some(v) => v,
                None => c.flag_in(&key, environment).await?.0.version,
            };
            let request = c.req(pb::ArchiveFlagRequest {
                project_key: c.project.clone(),
                key: key.clone(),
                expected_version,
                archived: !restore,
            })?;
            let flag = c.admin.archive_flag(request).await?.into_inner();
            if c.json {
                print_json(&convert::flag_json(&flag));
            } else if flag.archived {
                println!("archived flag {key}");
            } else {
                println!("restored flag {key}");
            }
        }
        FlagsCommand::Delete {
            key,
            expected_version,
        } => {
            let expected_version = match expected_version {
                Some(v) => v,
                None => c.flag_in(&key, environment).await?.0.version,
            };
            let request = c.req(pb::DeleteFlagRequest {
                project_key: c.project.clone(),
                key: key.clone(),
                expected_version,
            })?;
            c.admin.delete_flag(request).await?;
            if c.json {
                print_json(&json!({"deleted": key}));
            } else {
                println!("deleted flag {key}");
            }
        }
    }
    Ok(())
}

/// Replaces the flag's configuration in `environment` with the file's.
async fn configure(
    c: &mut Client,
    environment: &str,
    file: &FlagFile,
    expected_version: Option<i64>,
) -> Outcome<pb::FlagConfiguration> {
    let expected_version = match expected_version {
        Some(v) => v,
        None => c.flag_in(&file.key, environment).await?.1.version,
    };
    let request = c.req(pb::UpdateFlagConfigurationRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        key: file.key.clone(),
        expected_version,
        configuration: Some(file.configuration.clone()),
    })?;
    Ok(c.admin
        .update_flag_configuration(request)
        .await?
        .into_inner())
}

// ----- segments ------------------------------------------------------------------------------

async fn segments(mut c: Client, environment: &str, command: SegmentsCommand) -> Outcome {
    match command {
        SegmentsCommand::List => {
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = c.req(pb::ListSegmentsRequest {
                    project_key: c.project.clone(),
                    environment_key: environment.to_owned(),
                    page: Some(pb::PageRequest {
                        page_size: 500,
                        page_token: page_token.clone(),
                    }),
                })?;
                let page = c.admin.list_segments(request).await?.into_inner();
                all.extend(page.segments);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if c.json {
                print_json(&Value::Array(
                    all.iter().map(convert::segment_json).collect(),
                ));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|s| {
                    let count = |lists: &[pb::SegmentTarget]| {
                        lists
                            .iter()
                            .map(|l| l.values.len())
                            .sum::<usize>()
                            .to_string()
                    };
                    vec![
                        s.key.clone(),
                        count(&s.included),
                        count(&s.excluded),
                        s.rules.len().to_string(),
                        s.version.to_string(),
                        s.name.clone(),
                    ]
                })
                .collect();
            table(
                &["KEY", "INCLUDED", "EXCLUDED", "RULES", "VERSION", "NAME"],
                &rows,
            );
            if all.is_empty() {
                println!("(no segments in {environment})");
            }
        }
        SegmentsCommand::Get { key } => {
            let segment = get_segment(&mut c, environment, &key).await?;
            print_json(&convert::segment_json(&segment));
        }
        SegmentsCommand::Create { file } => {
            let json = convert::read_json(&file)?;
            let segment =
                convert::segment_file(&json).with_context(|| format!("{}", file.display()))?;
            let request = c.req(pb::CreateSegmentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                segment: Some(segment),
            })?;
            let segment = c.admin.create_segment(request).await?.into_inner();
            if c.json {
                print_json(&convert::segment_json(&segment));
            } else {
                println!("created segment {} in {environment}", segment.key);
            }
        }
        SegmentsCommand::Update {
            file,
            expected_version,
        } => {
            let json = convert::read_json(&file)?;
            let segment =
                convert::segment_file(&json).with_context(|| format!("{}", file.display()))?;
            let expected_version = match expected_version {
                Some(v) => v,
                None => {
                    get_segment(&mut c, environment, &segment.key)
                        .await?
                        .version
                }
            };
            let request = c.req(pb::UpdateSegmentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                expected_version,
                segment: Some(segment),
            })?;
            let segment = c.admin.update_segment(request).await?.into_inner();
            if c.json {
                print_json(&convert::segment_json(&segment));
            } else {
                println!(
                    "updated segment {} in {environment} (version {})",
                    segment.key, segment.version
                );
            }
        }
        SegmentsCommand::Delete {
            key,
            expected_version,
        } => {
            let expected_version = match expected_version {
                Some(v) => v,
                None => get_segment(&mut c, environment, &key).await?.version,
            };
            let request = c.req(pb::DeleteSegmentRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                key: key.clone(),
                expected_version,
            })?;
            c.admin.delete_segment(request).await?;
            if c.json {
                print_json(&json!({"deleted": key}));
            } else {
                println!("deleted segment {key} from {environment}");
            }
        }
    }
    Ok(())
}

async fn get_segment(c: &mut Client, environment: &str, key: &str) -> Outcome<pb::Segment> {
    let request = c.req(pb::GetSegmentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        key: key.to_owned(),
    })?;
    Ok(c.admin.get_segment(request).await?.into_inner())
}

// ----- SDK keys ------------------------------------------------------------------------------

fn print_issued(c: &Client, issued: &pb::IssueSdkKeyResponse) {
    let Some(key) = &issued.key else {
        println!("{}", issued.secret);
        return;
    };
    if c.json {
        let mut value = convert::sdk_key_json(key);
        value["secret"] = Value::from(issued.secret.as_str());
        print_json(&value);
    } else {
        println!(
            "issued {} key {} for {}/{}",
            convert::sdk_key_kind_name(key.kind),
            key.id,
            key.project_key,
            key.environment_key
        );
        println!("secret (shown only this once): {}", issued.secret);
    }
}

async fn keys(mut c: Client, environment: &str, command: KeysCommand) -> Outcome {
    match command {
        KeysCommand::List {
            all_environments,
            include_revoked,
        } => {
            let request = c.req(pb::ListSdkKeysRequest {
                project_key: c.project.clone(),
                environment_key: if all_environments {
                    String::new()
                } else {
                    environment.to_owned()
                },
                include_revoked,
            })?;
            let keys = c.admin.list_sdk_keys(request).await?.into_inner().keys;
            if c.json {
                print_json(&Value::Array(
                    keys.iter().map(convert::sdk_key_json).collect(),
                ));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    let state = if k.revoked_at.is_some() {
                        format!("revoked {}", time(k.revoked_at.as_ref()))
                    } else if k.expires_at.is_some() {
                        format!("expires {}", time(k.expires_at.as_ref()))
                    } else {
                        "valid".to_owned()
                    };
                    vec![
                        k.id.to_string(),
                        k.environment_key.clone(),
                        convert::sdk_key_kind_name(k.kind).to_owned(),
                        format!("{}…", k.prefix),
                        k.name.clone(),
                        time(k.created_at.as_ref()),
                        state,
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "ENVIRONMENT",
                    "KIND",
                    "PREFIX",
                    "NAME",
                    "CREATED",
                    "STATE",
                ],
                &rows,
            );
        }
        KeysCommand::Issue { kind, name } => {
            let kind = match kind {
                KeyKind::Server => pb::SdkKeyKind::Server,
                KeyKind::Client => pb::SdkKeyKind::Client,
                KeyKind::Mobile => pb::SdkKeyKind::Mobile,
            };
            let request = c.req(pb::IssueSdkKeyRequest {
                project_key: c.project.clone(),
                environment_key: environment.to_owned(),
                kind: kind as i32,
                name,
            })?;
            let issued = c.admin.issue_sdk_key(request).await?.into_inner();
            print_issued(&c, &issued);
        }
        KeysCommand::Revoke { id } => {
            let request = c.req(pb::RevokeSdkKeyRequest {
                project_key: c.project.clone(),
                id,
            })?;
            let key = c.admin.revoke_sdk_key(request).await?.into_inner();
            if c.json {
                print_json(&convert::sdk_key_json(&key));
            } else {
                println!("revoked key {}", key.id);
            }
        }
        KeysCommand::Rotate {
            id,
            old_key_expires_at,
        } => {
            let old_key_expires_at = match old_key_expires_at.as_deref() {
                Some(text) => Some(convert::parse_time(text).context("--old-key-expires-at")?),
                None => None,
            };
            let request = c.req(pb::RotateSdkKeyRequest {
                project_key: c.project.clone(),
                id,
                old_key_expires_at,
            })?;
            let issued = c.admin.rotate_sdk_key(request).await?.into_inner();
            print_issued(&c, &issued);
        }
    }
    Ok(())
}

// ----- audit log -----------------------------------------------------------------------------

async fn audit(mut c: Client, command: AuditCommand) -> Outcome {
    let AuditCommand::List {
        resource,
        actor,
        since,
        until,
        environment,
        limit,
    } = command;
    let (resource_kind, resource_key) = match resource.as_deref() {
        None => (String::new(), String::new()),
        Some(text) => match text.split_once(':') {
            Some((kind, key)) => (kind.to_owned(), key.to_owned()),
            None => (text.to_owned(), String::new()),
        },
    };
    let since = match since.as_deref() {
        Some(text) => Some(convert::parse_time(text).context("--since")?),
        None => None,
    };
    let until = match until.as_deref() {
        Some(text) => Some(convert::parse_time(text).context("--until")?),
        None => None,
    };
    let mut entries = Vec::new();
    let mut page_token = String::new();
    while entries.len() < limit as usize {
        let want = (limit as usize - entries.len()).min(1000) as u32;
        let request = c.req(pb::ListAuditEntriesRequest {
            page: Some(pb::PageRequest {
                page_size: want,
                page_token: page_token.clone(),
            }),
            project_key: c.project.clone(),
            environment_key: environment.clone().unwrap_or_default(),
            resource_kind: resource_kind.clone(),
            resource_key: resource_key.clone(),
            actor: actor.clone().unwrap_or_default(),
            since,
            until,
        })?;
        let page = c.admin.list_audit_entries(request).await?.into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    entries.truncate(limit as usize);
    if c.json {
        print_json(&Value::Array(
            entries.iter().map(convert::audit_json).collect(),
        ));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|a| {
            let resource = if a.resource_key.is_empty() {
                a.resource_kind.clone()
            } else {
                format!("{}:{}", a.resource_kind, a.resource_key)
            };
            vec![
                a.id.to_string(),
                time(a.time.as_ref()),
                a.actor.clone(),
                a.action.clone(),
                resource,
                if a.environment_key.is_empty() {
                    "-".to_owned()
                } else {
                    a.environment_key.clone()
                },
                a.after.as_ref().map_or_else(String::new, |v| {
                    short(&vexil_proto::model::value_to_json(v))
                }),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TIME",
            "ACTOR",
            "ACTION",
            "RESOURCE",
            "ENVIRONMENT",
            "AFTER",
        ],
        &rows,
    );
    Ok(())
}

// ----- export and import ---------------------------------------------------------------------

async fn export(mut c: Client, environment: &str, output: Option<&Path>) -> Outcome {
    let request = c.req(pb::ExportEnvironmentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
    })?;
    let exported = c.admin.export_environment(request).await?.into_inner();
    let ruleset: Value = serde_json::from_str(&exported.ruleset_json)
        .context("the server's export is not valid JSON")?;
    let text = serde_json::to_string_pretty(&ruleset).context("cannot print the ruleset")?;
    match output {
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            if c.json {
                print_json(
                    &json!({"file": path.display().to_string(), "version": exported.version}),
                );
            } else {
                eprintln!(
                    "exported {}/{environment} at version {} to {}",
                    c.project,
                    exported.version,
                    path.display()
                );
            }
        }
        None => println!("{text}"),
    }
    Ok(())
}

async fn import(
    mut c: Client,
    environment: &str,
    file: &Path,
    expected_version: Option<i64>,
) -> Outcome {
    let ruleset = convert::read_json(file)?;
    if !ruleset.is_object() {
        return Err(anyhow::anyhow!(
            "{}: expected a ruleset object {{\"flags\": [...], \"segments\": [...]}}",
            file.display()
        )
        .into());
    }
    let request = c.req(pb::ImportEnvironmentRequest {
        project_key: c.project.clone(),
        environment_key: environment.to_owned(),
        ruleset_json: ruleset.to_string(),
        expected_version,
    })?;
    let done = c.admin.import_environment(request).await?.into_inner();
    if c.json {
        print_json(&json!({
            "version": done.version,
            "created_flags": done.created_flags,
            "updated_flags": done.updated_flags,
            "segments": done.segments,
        }));
    } else {
        println!(
            "imported into {}/{environment}: {} flags created, {} flags updated, {} segments; environment version {}",
            c.project,
            done.created_flags.len(),
            done.updated_flags.len(),
            done.segments.len(),
            done.version
        );
    }
    Ok(())
}
