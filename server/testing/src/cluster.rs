//! Several servers on one database.

use vexil_server::live::LiveSettings;

use crate::database::TestDatabase;
use crate::server::{ServerOptions, TestServer};

/// The signing secret every instance of a cluster shares, so that a token issued by one
/// is accepted by all.
const JWT_SECRET: &str = "live-tests-secret-0123456789";

/// Servers sharing one database (and, through `redis_url` in their live settings, one
/// Redis), each with its HTTP port; the first one's start wrote the credentials.
#[derive(Debug)]
pub struct Cluster {
    pub instances: Vec<TestServer>,
    database: TestDatabase,
    options: ServerOptions,
}

impl Cluster {
    /// One instance on a fresh SQLite database.
    pub async fn sqlite(live: LiveSettings) -> Cluster {
        Cluster::start(TestDatabase::sqlite(), 1, live, ServerOptions::default()).await
    }

    /// `count` instances on a fresh Postgres database; `None` when skipping Postgres was
    /// asked for (see [`TestDatabase::postgres`]).
    pub async fn postgres(count: usize, live: LiveSettings) -> Option<Cluster> {
        Cluster::postgres_with(count, live, ServerOptions::default()).await
    }

    /// Like [`Cluster::postgres`], each instance with `options` (its live settings, HTTP
    /// port and signing secret aside).
    pub async fn postgres_with(
        count: usize,
        live: LiveSettings,
        options: ServerOptions,
    ) -> Option<Cluster> {
        let database = TestDatabase::postgres().await?;
        Some(Cluster::start(database, count, live, options).await)
    }

    /// `count` instances on `database`, each with `options` (its live settings, HTTP port
    /// and signing secret aside).
    pub async fn start(
        database: TestDatabase,
        count: usize,
        live: LiveSettings,
        options: ServerOptions,
    ) -> Cluster {
        let mut cluster = Cluster {
            instances: Vec::new(),
            database,
            options: ServerOptions {
                live,
                http: true,
                jwt_secret: Some(JWT_SECRET.into()),
                ..options
            },
        };
        for _ in 0..count {
            cluster.add_instance().await;
        }
        cluster
    }

    /// Starts one more instance on the cluster's database (on SQLite, in the same data
    /// folder); returns its index.
    pub async fn add_instance(&mut self) -> usize {
        let credentials = self.instances.first().map(|first| &first.credentials);
        let instance =
            TestServer::start_on(&self.database, self.options.clone(), credentials).await;
        self.instances.push(instance);
        self.instances.len() - 1
    }

    /// The first start's admin token (admin on every project).
    pub fn root_token(&self) -> String {
        self.instances[0].root_token()
    }

    /// The first start's SDK key of `kind` for `env`.
    pub fn sdk_key(&self, env: &str, kind: &str) -> String {
        self.instances[0].sdk_key(env, kind)
    }

    /// Stops every instance gracefully (checking that each ran without error), then removes
    /// the database.
    pub async fn stop(mut self) {
        for instance in self.instances.drain(..) {
            instance.stop().await;
        }
        self.database.remove().await;
    }
}
