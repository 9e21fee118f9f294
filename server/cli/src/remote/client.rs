//! The connection to a server: its arguments, the gRPC clients and how failures are reported.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};
use vexil_proto::v1 as pb;
use vexil_proto::v1::admin_service_client::AdminServiceClient;
use vexil_proto::v1::experiment_service_client::ExperimentServiceClient;

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

pub(crate) struct Client {
    pub(crate) admin: AdminServiceClient<Channel>,
    /// The connection, for the other services.
    pub(crate) channel: Channel,
    pub(crate) token: Option<String>,
    pub(crate) project: String,
    pub(crate) json: bool,
}

impl Client {
    /// The ExperimentService over the same connection.
    pub(crate) fn experiments(&self) -> ExperimentServiceClient<Channel> {
        ExperimentServiceClient::new(self.channel.clone())
    }

    pub(crate) async fn connect(conn: &Connection) -> Outcome<Client> {
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
            vexil_proto::authorize(&mut request, token)
                .map_err(|_| anyhow::anyhow!("the admin token holds characters a header cannot"))?;
        }
        Ok(request)
    }

    /// A flag with its configuration in `environment`.
    /// The version a write expects: `given`, else the current one of the flag itself or of
    /// its configuration in `environment`.
    pub(crate) async fn version_or_current(
        &mut self,
        given: Option<i64>,
        of: FlagPart,
        key: &str,
        environment: &str,
    ) -> Outcome<i64> {
        if let Some(version) = given {
            return Ok(version);
        }
        let (flag, config) = self.flag_in(key, environment).await?;
        Ok(match of {
            FlagPart::Flag => flag.version,
            FlagPart::Configuration => config.version,
        })
    }

    pub(crate) async fn flag_in(
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

/// What of a flag a write changes, and so whose version it expects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FlagPart {
    /// Its project-level fields (variations, archiving, deletion).
    Flag,
    /// Its configuration in one environment.
    Configuration,
}

/// A command run in one environment (`-e`, a global option like those of [`Connection`]).
#[derive(Debug, Args)]
pub struct InEnvironment<C: Subcommand> {
    #[command(subcommand)]
    pub(crate) command: C,
}

/// A command on the whole project.
#[derive(Debug, Args)]
pub struct InProject<C: Subcommand> {
    #[command(subcommand)]
    pub(crate) command: C,
}

/// The people-facing fields of a new project or environment.
#[derive(Debug, Args)]
pub(crate) struct Naming {
    /// A name for people; the key when not given.
    #[arg(long, default_value = "")]
    pub(crate) name: String,
    /// Free text for people.
    #[arg(long, default_value = "")]
    pub(crate) description: String,
}

/// A change of a project's or environment's people-facing fields; what is not given stays as
/// it is.
#[derive(Debug, Args)]
pub(crate) struct Renaming {
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// A new description.
    #[arg(long)]
    description: Option<String>,
}

impl Renaming {
    /// The name and description after the change, from the current ones.
    pub(crate) fn applied_to(self, name: String, description: String) -> Naming {
        Naming {
            name: self.name.unwrap_or(name),
            description: self.description.unwrap_or(description),
        }
    }
}

/// Every item of a paged list RPC of `service`: `$request` is the request for the page
/// `$page`, and `$items` the response's field that holds the items.
macro_rules! all_pages {
    ($c:expr, $service:expr, $rpc:ident, $items:ident, |$page:ident| $request:expr) => {
        $crate::remote::client::every_page(|$page| {
            let request = $c.req($request);
            let mut service = $service.clone();
            async move {
                let page = service.$rpc(request?).await?.into_inner();
                Ok((page.$items, page.next_page_token))
            }
        })
    };
}
pub(crate) use all_pages;

/// Every item of a paged list. `fetch` asks for one page and returns its items and the next
/// page's token, empty after the last page.
pub(crate) async fn every_page<T, F, Fut>(mut fetch: F) -> Outcome<Vec<T>>
where
    F: FnMut(pb::PageRequest) -> Fut,
    Fut: std::future::Future<Output = Outcome<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = pb::PageRequest {
            page_size: 500,
            page_token: std::mem::take(&mut page_token),
        };
        let (items, next) = fetch(page).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        page_token = next;
    }
}
